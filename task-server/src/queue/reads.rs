//! What users read: answers (long-polled), task lists, batches, and cancel/delete.
use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use task_api::{
    AnswerResponse, BatchResultsResponse, BatchStatusResponse, CancelResponse, DeleteResponse,
    TaskListResponse, TaskState, TaskView,
};
use tokio::time::Instant;
use uuid::Uuid;

use super::QueueError;
use super::{clamped_secs, now_ms, Queue};
use crate::auth::Caller;
use crate::stats::non_empty;
use crate::store::{
    BatchRecord, BatchResult, CancelOutcome, Finished, ListQuery, LoadScope, TaskRecord,
};
use crate::waiters::{batch_key, task_key};

impl Queue {
    /// A task the caller may see, else 404.
    pub async fn visible_task(&self, caller: &Caller, id: Uuid) -> Result<TaskRecord, QueueError> {
        match self.store.get_task(id).await? {
            Some(t) if caller.may_see(&t.owner) => Ok(t),
            _ => Err(QueueError::NoTask(id)),
        }
    }

    /// The answer (or state) of a task; with `wait`, parks until terminal or the wait ends.
    /// Once the caller is known to see the task, a wake-up that carries the finished row
    /// answers without reading it again.
    pub async fn request_answer(
        &self,
        caller: &Caller,
        id: Uuid,
        wait: Option<f64>,
    ) -> Result<AnswerResponse, QueueError> {
        let deadline = Instant::now() + self.user_wait(wait)?;
        let waiter = self.waiters.subscribe(task_key(&id));
        let checked_owner = std::cell::Cell::new(false);
        let check = || async {
            // The snapshot is parsed only once it may be used (the owner was checked).
            let snapshot = checked_owner
                .get()
                .then(|| waiter.slot.finished())
                .flatten()
                .and_then(|f| answer_from_snapshot(&f));
            if let Some(resp) = snapshot {
                return Ok((resp, true));
            }
            let t = self.visible_task(caller, id).await?;
            checked_owner.set(true);
            let done = t.state.is_terminal();
            Ok((answer_of(t), done))
        };
        self.long_poll(&waiter.slot.notify, deadline, check).await
    }

    /// A page of the caller's tasks, newest first.
    pub async fn list(
        &self,
        caller: &Caller,
        state: Option<TaskState>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<TaskListResponse, QueueError> {
        let limit = limit.clamp(1, 1000);
        let rows = self
            .store
            .list_tasks(ListQuery {
                owner: caller.owner_filter(),
                state,
                before,
                limit,
            })
            .await?;
        let next = (rows.len() as u32 == limit)
            .then(|| rows.last().map(|r| r.seq))
            .flatten();
        Ok(TaskListResponse {
            success: true,
            tasks: rows.into_iter().map(task_view).collect(),
            next,
        })
    }

    /// Cancels a task the caller owns.
    pub async fn cancel(&self, caller: &Caller, id: Uuid) -> Result<CancelResponse, QueueError> {
        self.visible_task(caller, id).await?;
        match self.store.cancel(id, &caller.sub, now_ms()).await? {
            CancelOutcome::Cancelled(f) => {
                self.finished(&f);
                Ok(CancelResponse {
                    success: true,
                    id,
                    state: TaskState::Cancelled,
                })
            }
            CancelOutcome::AlreadyFinished(state) => Err(QueueError::AlreadyFinished { id, state }),
            CancelOutcome::NotFound => Err(QueueError::NoTask(id)),
        }
    }

    /// Cancels every unfinished task of a batch the caller owns, in one statement.
    pub async fn cancel_batch(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<task_api::CancelBatchResponse, QueueError> {
        self.visible_batch(caller, id).await?;
        let done = self.store.cancel_batch(id, &caller.sub, now_ms()).await?;
        for f in &done {
            self.finished(f);
        }
        Ok(task_api::CancelBatchResponse {
            success: true,
            batch_id: id,
            cancelled: done.len() as u64,
        })
    }

    /// Deletes a task the caller owns (a running one is cancelled on its worker).
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> Result<DeleteResponse, QueueError> {
        self.visible_task(caller, id).await?;
        match self.store.delete(id, now_ms()).await? {
            Some(f) => {
                self.wake_finished(&f);
                Ok(DeleteResponse {
                    success: true,
                    id,
                    deleted: true,
                    state_was: f.state,
                })
            }
            None => Err(QueueError::NoTask(id)),
        }
    }

    /// Counts by state, ETA; with `wait`, parks until every task finished or the wait ends.
    pub async fn batch_status(
        &self,
        caller: &Caller,
        id: Uuid,
        wait: Option<f64>,
    ) -> Result<BatchStatusResponse, QueueError> {
        let deadline = Instant::now() + self.user_wait(wait)?;
        let waiter = self.waiters.subscribe(batch_key(&id));
        // Each wake asks only whether the batch is done; the counts are read once, at the end.
        let batch = self.visible_batch(caller, id).await?;
        let check = || async {
            let done = !self.store.batch_open(id).await?;
            Ok(((), done))
        };
        self.long_poll(&waiter.slot.notify, deadline, check).await?;
        let counts = self.store.batch_counts(id).await?;
        let finished = finished_count(batch.total, &counts);
        let mut est = self.estimate_scope(LoadScope::Batch(id)).await?;
        let cap = self.capacity().await?;
        let (eta, _) = self.graph_eta(&mut est, &cap, Some(id), None).await?;
        let counts = every_state(&counts);
        Ok(BatchStatusResponse {
            success: true,
            batch_id: id,
            total: batch.total,
            finished,
            done: finished >= batch.total,
            counts,
            time: est.time,
            eta,
            created_at: batch.created_at,
        })
    }

    /// Finished results of a batch after `after`, in completion order (imap_unordered).
    pub async fn batch_results(
        &self,
        caller: &Caller,
        id: Uuid,
        after: i64,
        limit: u32,
        wait: Option<f64>,
        order: ResultOrder,
    ) -> Result<BatchResultsResponse, QueueError> {
        let deadline = Instant::now() + self.user_wait(wait)?;
        let limit = limit.clamp(1, 1000);
        let waiter = self.waiters.subscribe(batch_key(&id));
        self.visible_batch(caller, id).await?;
        let check = || async {
            // Whether every task had finished is read BEFORE the results: a task finishing
            // between the two reads must not let us say `done` without having returned it.
            let all_finished = !self.store.batch_open(id).await?;
            let results: Vec<BatchResult> = match order {
                ResultOrder::Finished => self.store.batch_results(id, after, limit).await?,
                ResultOrder::Submitted => {
                    let from = after.max(0) as u64;
                    self.store.batch_results_ordered(id, from, limit).await?
                }
            };
            let ready = !results.is_empty() || all_finished;
            Ok(((results, all_finished), ready))
        };
        let (results, all_finished) = self.long_poll(&waiter.slot.notify, deadline, check).await?;
        let next = results.last().map(|r| r.finish_seq).unwrap_or(after);
        let done = all_finished && (results.len() as u32) < limit;
        Ok(BatchResultsResponse {
            success: true,
            batch_id: id,
            results: results.into_iter().map(BatchResult::into_item).collect(),
            next,
            done,
        })
    }

    /// Streams a batch's results as they finish, one page at a time, each page a long-poll
    /// of at most the user wait limit, until every result is out or the server stops. A batch
    /// the caller cannot see is refused before the stream starts.
    pub async fn stream_results(
        self: std::sync::Arc<Self>,
        caller: Caller,
        id: Uuid,
        order: ResultOrder,
    ) -> Result<
        impl futures_util::Stream<Item = Result<task_api::BatchResultItem, QueueError>>,
        QueueError,
    > {
        self.visible_batch(&caller, id).await?;
        let wait = Some(self.cfg.max_user_wait.as_secs_f64());
        let start = (self, caller, 0i64, false);
        Ok(
            futures_util::stream::unfold(start, move |(queue, caller, after, done)| async move {
                if done || queue.draining() {
                    return None;
                }
                let page = queue
                    .batch_results(&caller, id, after, 1000, wait, order)
                    .await;
                Some(match page {
                    Ok(p) => {
                        let items: Vec<_> = p.results.into_iter().map(Ok).collect();
                        (items, (queue, caller, p.next, p.done))
                    }
                    Err(e) => (vec![Err(e)], (queue, caller, after, true)),
                })
            })
            .flat_map(futures_util::stream::iter),
        )
    }

    pub(super) async fn visible_batch(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<BatchRecord, QueueError> {
        match self.store.get_batch(id).await? {
            Some(b) if caller.may_see(&b.owner) => Ok(b),
            _ => Err(QueueError::NoBatch(id)),
        }
    }

    fn user_wait(&self, wait: Option<f64>) -> Result<Duration, QueueError> {
        let w = wait.unwrap_or(0.0);
        if !w.is_finite() || w < 0.0 {
            return Err(QueueError::BadQuery(
                "wait must be a number of seconds ≥ 0".into(),
            ));
        }
        Ok(clamped_secs(w, self.cfg.max_user_wait))
    }
}

/// The answer of a finished task from what the finishing statement returned.
fn answer_from_snapshot(f: &Finished) -> Option<AnswerResponse> {
    let snap = f.snapshot.as_ref()?;
    let parse = |s: &Option<String>| s.as_deref().map(serde_json::from_str).transpose().ok();
    Some(AnswerResponse {
        success: true,
        id: f.id,
        state: f.state,
        answer: parse(&snap.answer)?,
        error: parse(&snap.error)?
            .map(|v: Value| serde_json::from_value(v))
            .transpose()
            .ok()?,
        progress: snap.progress,
        attempt: snap.attempt,
    })
}

/// What `request_answer` shows of a task read from the store.
fn answer_of(t: TaskRecord) -> AnswerResponse {
    AnswerResponse {
        success: true,
        id: t.id,
        state: t.state,
        answer: t.answer,
        error: t.error,
        progress: t.progress,
        attempt: t.attempt,
    }
}

/// Tasks of a batch that will not change any more: terminal ones, and ones that are gone
/// (deleted by their owner, or expired before the others finished).
/// Counts by state name, every state present (zeros included).
pub(super) fn every_state(
    counts: &HashMap<TaskState, u64>,
) -> std::collections::BTreeMap<String, u64> {
    TaskState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), counts.get(s).copied().unwrap_or(0)))
        .collect()
}

pub(super) fn finished_count(total: u64, counts: &HashMap<TaskState, u64>) -> u64 {
    let pending: u64 = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    total.saturating_sub(pending)
}

/// Renders a stored task for listing.
pub fn task_view(t: TaskRecord) -> TaskView {
    TaskView {
        id: t.id,
        owner: t.owner,
        package: non_empty(&t.package),
        version: non_empty(&t.version),
        function: t.function,
        state: t.state,
        priority: t.priority,
        attempt: t.attempt,
        max_attempts: t.max_attempts,
        progress: t.progress,
        error: t.error,
        created_at: t.created_at,
        finished_at: t.finished_at,
        runtime_ms: t.runtime_ms,
        lease: t.lease,
        lost_leases: t.lost_leases,
        batch_id: t.batch_id,
    }
}

/// The order batch results come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultOrder {
    /// As they finish (the cursor is the completion order): `imap_unordered`.
    #[default]
    Finished,
    /// In input order, each page up to the first task not finished yet: `Pool.map`/`imap`.
    Submitted,
}
