//! What the dashboard reads besides the task routes: one task in full, the batches, the
//! caller's tasks by state. Users see their own; admins everyone's.
use task_api::{
    AttemptView, BatchListResponse, BatchSummary, SummaryResponse, TaskDetail, TaskState,
};
use uuid::Uuid;

use super::reads::{every_state, finished_count, task_view};
use super::{Queue, QueueError};
use crate::auth::Caller;
use crate::store::TaskRecord;

/// Most batches one list returns.
pub const MAX_BATCHES: u32 = 100;

impl Queue {
    /// `GET /user/tasks/{id}`: the task with its arguments and answer.
    pub async fn task_detail(&self, caller: &Caller, id: Uuid) -> Result<TaskDetail, QueueError> {
        let mut t = self.visible_task(caller, id).await?;
        let args = t.args.take().unwrap_or_default();
        let kwargs = t.kwargs.take().unwrap_or_default();
        let answer = t.answer.take();
        let attempts = attempts(&mut t);
        Ok(TaskDetail {
            success: true,
            task: task_view(t),
            args,
            kwargs,
            answer,
            attempts,
        })
    }

    /// `GET /user/batches`: newest first, with counts by state.
    pub async fn list_batches(
        &self,
        caller: &Caller,
        limit: u32,
    ) -> Result<BatchListResponse, QueueError> {
        if !(1..=MAX_BATCHES).contains(&limit) {
            return Err(QueueError::BadQuery(format!(
                "limit must be 1 to {MAX_BATCHES}"
            )));
        }
        let owner = caller.owner_filter();
        let mut batches = Vec::new();
        for b in self.store.list_batches(owner.as_deref(), limit).await? {
            let counts = self.store.batch_counts(b.id).await?;
            let finished = finished_count(b.total, &counts);
            batches.push(BatchSummary {
                batch_id: b.id,
                owner: b.owner,
                total: b.total,
                finished,
                done: finished >= b.total,
                counts: every_state(&counts),
                created_at: b.created_at,
            });
        }
        Ok(BatchListResponse {
            success: true,
            batches,
        })
    }

    /// `GET /user/summary`: the caller's tasks by state.
    pub async fn summary(&self, caller: &Caller) -> Result<SummaryResponse, QueueError> {
        let counts = self
            .store
            .state_counts(caller.owner_filter().as_deref())
            .await?;
        Ok(SummaryResponse {
            success: true,
            total: counts.values().sum(),
            counts: every_state(&counts),
        })
    }
}

/// The earlier attempts the store logged, then the current or last one from the lease columns
/// (unless it is already logged: a task back in the queue).
fn attempts(t: &mut TaskRecord) -> Vec<AttemptView> {
    let mut out = std::mem::take(&mut t.past_attempts);
    let outcome = match t.state {
        TaskState::Leased => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "cancelled",
        TaskState::Queued | TaskState::Waiting => return out,
    };
    let logged = out.last().is_some_and(|a| a.attempt >= t.attempt);
    if let (Some(lease), false, true) = (&t.lease, logged, t.attempt > 0) {
        let ended = t.state.is_terminal();
        out.push(AttemptView {
            attempt: t.attempt,
            worker_id: Some(lease.worker_id.clone()),
            started_at: Some(lease.leased_at),
            ended_at: if ended { t.finished_at } else { None },
            outcome: outcome.to_string(),
            error: if ended { t.error.clone() } else { None },
        });
    }
    out
}
