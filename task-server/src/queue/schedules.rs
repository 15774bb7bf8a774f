//! Recurring schedules: create, list, delete, and firing the ticks that are due (the reaper's
//! pass, on every replica). A tick submits its task under the idempotency key
//! `schedule:<id>:<tick>`, so whichever replicas see it due, one task exists per tick; the
//! schedule then moves on by compare and set. Ticks missed while no server ran fire once, at
//! start: the schedule moves to the first tick after now.
use task_api::{
    DeleteScheduleResponse, NewSchedule, Role, ScheduleListResponse, ScheduleResponse, ScheduleView,
};
use uuid::Uuid;

use super::{now_ms, Queue, QueueError};
use crate::auth::Caller;
use crate::schedule::{rfc3339, Cadence};
use crate::store::ScheduleRecord;

/// Schedules one owner may have.
pub const MAX_SCHEDULES: u32 = 1000;
/// Due schedules one pass fires at most.
const FIRE_LIMIT: u32 = 500;

impl Queue {
    /// Validates and records a schedule; its task is checked as a submit would check it.
    pub async fn create_schedule(
        &self,
        caller: &Caller,
        s: NewSchedule,
    ) -> Result<ScheduleResponse, QueueError> {
        let cadence = Cadence::parse(&s.cron, s.timezone.as_deref())
            .map_err(|e| QueueError::invalid(e.field, e.message))?;
        if s.task.idempotency_key.is_some() {
            return Err(QueueError::invalid(
                "task.idempotency_key",
                "each tick of a schedule has its own idempotency key; leave it out",
            ));
        }
        let check = self
            .new_task(&caller.sub, s.task.clone(), "task.", Uuid::now_v7(), None)
            .await?;
        self.check_visible(caller, std::slice::from_ref(&check), "")
            .await?;
        let mine = self
            .store
            .schedules_of(Some(&caller.sub), MAX_SCHEDULES)
            .await?;
        if mine.len() as u32 >= MAX_SCHEDULES {
            return Err(QueueError::invalid(
                "cron",
                format!("an owner may have at most {MAX_SCHEDULES} schedules; delete some"),
            ));
        }
        let now = now_ms();
        let rec = ScheduleRecord {
            id: Uuid::now_v7(),
            owner: caller.sub.clone(),
            cron: s.cron.split_whitespace().collect::<Vec<_>>().join(" "),
            timezone: cadence.timezone().to_string(),
            task: s.task,
            next_at: cadence.next_after(now).unwrap_or(i64::MAX),
            created_at: now,
            fired: 0,
            last_task: None,
        };
        self.store.add_schedule(rec.clone()).await?;
        Ok(ScheduleResponse {
            success: true,
            schedule: view(rec),
        })
    }

    /// The caller's schedules (an admin's: everyone's).
    pub async fn list_schedules(
        &self,
        caller: &Caller,
    ) -> Result<ScheduleListResponse, QueueError> {
        let owner = (!caller.is_admin()).then_some(caller.sub.as_str());
        let all = self.store.schedules_of(owner, MAX_SCHEDULES).await?;
        Ok(ScheduleListResponse {
            success: true,
            schedules: all.into_iter().map(view).collect(),
        })
    }

    /// Deletes one of the caller's schedules (tasks it already submitted stay).
    pub async fn delete_schedule(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<DeleteScheduleResponse, QueueError> {
        let owner = (!caller.is_admin()).then_some(caller.sub.as_str());
        match self.store.delete_schedule(id, owner).await? {
            true => Ok(DeleteScheduleResponse { success: true, id }),
            false => Err(QueueError::NoSchedule(id)),
        }
    }

    /// Fires every schedule whose tick has come; how many ticks submitted a task.
    pub async fn fire_schedules(&self) -> Result<usize, QueueError> {
        let now = now_ms();
        let mut fired = 0;
        for s in self.store.due_schedules(now, FIRE_LIMIT).await? {
            fired += usize::from(self.fire(s, now).await?);
        }
        Ok(fired)
    }

    /// Fires one due tick: submits its task (one per tick whichever replica does it) and moves
    /// the schedule to its first tick after now. A tick whose task cannot be submitted
    /// (validation, quota) is skipped with a warning; one that meets an unavailable registry
    /// or database is tried again on the next pass.
    async fn fire(&self, s: ScheduleRecord, now: i64) -> Result<bool, QueueError> {
        let next = Cadence::parse(&s.cron, Some(&s.timezone))
            .ok()
            .and_then(|c| c.next_after(now.max(s.next_at)))
            .unwrap_or(i64::MAX);
        let owner = Caller {
            sub: s.owner.clone(),
            role: Role::User,
        };
        let mut spec = s.task.clone();
        spec.idempotency_key = Some(format!("schedule:{}:{}", s.id, s.next_at));
        let task = match self.submit(&owner, spec).await {
            Ok((r, _)) => Some(r.id),
            Err(e) if retry_later(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(schedule = %s.id, tick = s.next_at, error = %e, "schedule tick skipped: its task was refused");
                None
            }
        };
        let moved = self
            .store
            .advance_schedule(s.id, s.next_at, next, task)
            .await?;
        Ok(moved && task.is_some())
    }
}

/// Whether a tick's submit failed for a reason that passes (the database, the registry).
fn retry_later(e: &QueueError) -> bool {
    use actix_web::ResponseError;
    match e {
        QueueError::Store(_) => true,
        QueueError::Resolve(a) => {
            a.status_code() == actix_web::http::StatusCode::SERVICE_UNAVAILABLE
        }
        _ => false,
    }
}

fn view(s: ScheduleRecord) -> ScheduleView {
    ScheduleView {
        id: s.id,
        owner: s.owner,
        cron: s.cron,
        timezone: s.timezone,
        task: s.task,
        next_at: rfc3339(s.next_at),
        next_at_ms: s.next_at,
        created_at: s.created_at,
        fired: s.fired,
        last_task: s.last_task,
    }
}
