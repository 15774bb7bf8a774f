//! The writes of the SQLite store as typed commands for the single writer: each runs the shared
//! statements on the writer's connection and hands the rows to the shared decisions in
//! `store::core`.
use async_trait::async_trait;
use task_api::{Lease, LeaseRef};
use uuid::Uuid;

use super::writer::{Command, Ctx};
use super::{insert, sql};
use crate::stats::FunctionStats;
use crate::store::core::{self, Applied};
use crate::store::rows::{leased_caps, leases_in_order, DbId, ExpiredRow};
use crate::store::{
    AnswerIn, AnswerOutcome, CancelOutcome, ClaimRequest, Finished, HeartbeatIn, HeartbeatOutcome,
    Holder, LeaseLoss, NewTask, ReapOutcome, Result, Sighting, SubmitOutcome, WorkerRecord,
    WorkerTouch, GATE_SWEEP_KEYS, REAP_LIMIT,
};

pub(super) struct SubmitOne {
    pub owner: String,
    pub task: NewTask,
    pub now: i64,
}

#[async_trait]
impl Command for SubmitOne {
    type Reply = SubmitOutcome;

    fn single_statement(&self) -> bool {
        self.task.idempotency_key.is_none()
            && self.task.depends_on.is_empty()
            && !self.task.capped()
            && self.task.files.is_empty()
    }

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<SubmitOutcome> {
        if let Some(key) = &self.task.idempotency_key {
            if let Some(row) = sql::idempotent(&mut *ctx.conn, &self.owner, key).await? {
                return core::keyed_outcome(row, &self.task.request_hash);
            }
        }
        let task = std::slice::from_ref(&self.task);
        insert::tasks(ctx.conn, &self.owner, self.now, None, task).await?;
        link(ctx, task, self.now).await?;
        let (limits, keys) = NewTask::gates(task);
        ctx.gate(self.now, &limits, keys, false).await?;
        Ok(SubmitOutcome::Created)
    }
}

pub(super) struct SubmitBatch {
    pub owner: String,
    pub id: Uuid,
    pub tasks: Vec<NewTask>,
    pub now: i64,
}

#[async_trait]
impl Command for SubmitBatch {
    type Reply = ();

    fn single_statement(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        let (id, n) = (DbId(self.id), self.tasks.len() as i64);
        insert::batch(&mut *ctx.conn, id, &self.owner, n, self.now).await?;
        insert::tasks(ctx.conn, &self.owner, self.now, Some(id), &self.tasks).await?;
        link(ctx, &self.tasks, self.now).await?;
        let (limits, keys) = NewTask::gates(&self.tasks);
        ctx.gate(self.now, &limits, keys, false).await?;
        Ok(())
    }
}

/// Records the files newly inserted tasks take and the edges of the waiting ones, and settles
/// at once those that wait for tasks outside the insert (these may have finished already).
async fn link(ctx: &mut Ctx<'_>, tasks: &[NewTask], now: i64) -> Result<()> {
    if let Some(pairs) = NewTask::files_json(tasks) {
        sql::attach_files(&mut *ctx.conn, &pairs).await?;
    }
    let Some((edges, deps)) = NewTask::edges_json(tasks) else {
        return Ok(());
    };
    sql::link(&mut *ctx.conn, &edges, &deps).await?;
    ctx.settle(now, Vec::new(), NewTask::waiting_on_others(tasks))
        .await?;
    Ok(())
}

pub(super) struct Claim(pub ClaimRequest);

#[async_trait]
impl Command for Claim {
    type Reply = Vec<Lease>;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Vec<Lease>> {
        let rows = sql::claim(&mut *ctx.conn, &self.0, ctx.config.timeout_grace_ms).await?;
        ctx.gate(self.0.now, &[], leased_caps(&rows), true).await?;
        leases_in_order(rows, self.0.predictors.as_deref())
    }
}

pub(super) struct Heartbeat(pub HeartbeatIn);

#[async_trait]
impl Command for Heartbeat {
    type Reply = HeartbeatOutcome;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<HeartbeatOutcome> {
        let hb = &self.0;
        let items = core::heartbeat_json(hb);
        let deadline = hb.now.saturating_add(hb.lease_ttl_ms);
        let extended = sql::heartbeat(&mut *ctx.conn, &items, deadline, &hb.holder).await?;
        let others = if core::heartbeat_incomplete(hb, &extended) {
            sql::heartbeat_others(&mut *ctx.conn, &items, &hb.holder).await?
        } else {
            Vec::new()
        };
        Ok(core::heartbeat_outcome(hb, extended, others))
    }
}

pub(super) struct Release {
    pub holder: Holder,
    pub leases: Vec<LeaseRef>,
}

#[async_trait]
impl Command for Release {
    type Reply = Vec<Uuid>;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Vec<Uuid>> {
        let items = core::lease_refs_json(&self.leases);
        let rows = sql::release(&mut *ctx.conn, &items, &self.holder).await?;
        let (ids, unchained) = core::released(rows);
        ctx.settle(crate::queue::now_ms(), Vec::new(), unchained)
            .await?;
        Ok(ids)
    }
}

pub(super) struct Granted {
    pub holder: Holder,
    pub request_id: Uuid,
}

#[async_trait]
impl Command for Granted {
    type Reply = Vec<Lease>;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Vec<Lease>> {
        let id = self.request_id.to_string();
        leases_in_order(sql::granted(&mut *ctx.conn, &self.holder, &id).await?, None)
    }
}

pub(super) struct ReleaseRun {
    pub holder: Holder,
    pub incarnation: Uuid,
}

#[async_trait]
impl Command for ReleaseRun {
    type Reply = Vec<Uuid>;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Vec<Uuid>> {
        let run = self.incarnation.to_string();
        let rows = sql::release_run(&mut *ctx.conn, &self.holder, &run).await?;
        let (ids, unchained) = core::released(rows);
        ctx.settle(crate::queue::now_ms(), Vec::new(), unchained)
            .await?;
        Ok(ids)
    }
}

pub(super) struct Answer {
    pub answers: Vec<AnswerIn>,
    pub now: i64,
}

#[async_trait]
impl Command for Answer {
    type Reply = Vec<AnswerOutcome>;

    /// The answer UPDATE is one statement; the follow-up SELECT only runs for answers that did
    /// not apply, and reads what this single writer itself committed.
    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Vec<AnswerOutcome>> {
        let items = core::answers_json(&self.answers);
        let at = ctx.finishing(self.now);
        let rows = sql::answer(&mut *ctx.conn, &at, &items).await?;
        ctx.use_numbers(self.answers.len());
        let mut applied = Applied::from_rows(rows, self.now)?;
        let finished = std::mem::take(&mut applied.settle);
        let unchained = std::mem::take(&mut applied.unchained);
        ctx.settle(self.now, finished, unchained).await?;
        let gates = std::mem::take(&mut applied.gates);
        ctx.gate(self.now, &[], gates, false).await?;
        for (key, samples) in &applied.samples {
            let st = core::merge_samples(ctx.stats_of(key), key, samples);
            ctx.staged.stats.insert(key.clone(), st);
        }
        let rest = match applied.unapplied_json(&self.answers) {
            Some(ids) => sql::lease_states(&mut *ctx.conn, &ids).await?,
            None => Vec::new(),
        };
        applied.outcomes(&self.answers, rest)
    }
}

pub(super) struct Cancel {
    pub id: Uuid,
    pub by: String,
    pub now: i64,
}

#[async_trait]
impl Command for Cancel {
    type Reply = CancelOutcome;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<CancelOutcome> {
        let at = ctx.finishing(self.now);
        let error = core::cancel_error(&self.by);
        let updated = sql::cancel(&mut *ctx.conn, &at, &error, DbId(self.id)).await?;
        let state = match updated {
            Some(_) => {
                ctx.use_numbers(1);
                ctx.settle(self.now, vec![self.id], Vec::new()).await?;
                None
            }
            None => sql::task_state(&mut *ctx.conn, DbId(self.id)).await?,
        };
        core::cancel_outcome(self.id, updated, state)
    }
}

pub(super) struct CancelBatch {
    pub id: Uuid,
    pub by: String,
    pub now: i64,
}

#[async_trait]
impl Command for CancelBatch {
    type Reply = Vec<Finished>;

    fn single_statement(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Vec<Finished>> {
        let at = ctx.finishing(self.now);
        let error = core::cancel_error(&self.by);
        let rows = sql::cancel_batch(&mut *ctx.conn, &at, &error, DbId(self.id)).await?;
        ctx.use_numbers(rows.len());
        let done: Vec<Finished> = rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<_>>()?;
        let ids = done.iter().map(|f| f.id).collect();
        ctx.settle(self.now, ids, Vec::new()).await?;
        Ok(done)
    }
}

pub(super) struct Delete(pub Uuid, pub i64);

#[async_trait]
impl Command for Delete {
    type Reply = Option<Finished>;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Option<Finished>> {
        let row = sql::delete(&mut *ctx.conn, DbId(self.0)).await?;
        let out: Option<Finished> = row.map(TryInto::try_into).transpose()?;
        if out.is_some() {
            ctx.settle(self.1, vec![self.0], Vec::new()).await?;
        }
        Ok(out)
    }
}

pub(super) struct SettleStuck(pub i64);

#[async_trait]
impl Command for SettleStuck {
    type Reply = usize;

    fn single_statement(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<usize> {
        let stuck = sql::stuck_waiting(&mut *ctx.conn, REAP_LIMIT).await?;
        let ids = stuck.into_iter().map(|d| d.0).collect();
        ctx.settle(self.0, Vec::new(), ids).await
    }
}

pub(super) struct Reap(pub i64);

#[async_trait]
impl Command for Reap {
    type Reply = ReapOutcome;

    fn single_statement(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<ReapOutcome> {
        let now = self.0;
        let expired = sql::expired(&mut *ctx.conn, now, REAP_LIMIT).await?;
        let mut out = take_leases(ctx, &expired, now, LeaseLoss::Expired).await?;
        out.deleted = sql::delete_expired(&mut *ctx.conn, now, REAP_LIMIT).await? as usize;
        let old = now.saturating_sub(ctx.config.default_result_ttl_s.saturating_mul(1000));
        sql::delete_batches(&mut *ctx.conn, old, REAP_LIMIT).await?;
        Ok(out)
    }
}

/// Takes `rows`' leases from their holder; the completion numbers it may use are reserved.
async fn take_leases(
    ctx: &mut Ctx<'_>,
    rows: &[ExpiredRow],
    now: i64,
    loss: LeaseLoss,
) -> Result<ReapOutcome> {
    let at = ctx.finishing(now);
    let out = sql::take_leases(&mut *ctx.conn, &at, rows, loss).await?;
    ctx.use_numbers(rows.len());
    let failed = out.failed.iter().map(|f| f.id).collect();
    ctx.settle(now, failed, out.unchained.clone()).await?;
    Ok(out)
}

pub(super) struct RequeueOrphans {
    pub holder: Holder,
    pub incarnation: Uuid,
    pub now: i64,
}

#[async_trait]
impl Command for RequeueOrphans {
    type Reply = ReapOutcome;

    fn single_statement(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<ReapOutcome> {
        let run = self.incarnation.to_string();
        let rows = sql::orphaned(&mut *ctx.conn, &self.holder, &run, REAP_LIMIT).await?;
        take_leases(ctx, &rows, self.now, LeaseLoss::Restarted).await
    }
}

pub(super) struct UpsertWorker(pub WorkerRecord, pub Option<Uuid>);

#[async_trait]
impl Command for UpsertWorker {
    type Reply = Sighting;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Sighting> {
        let run = self.1.map(|i| i.to_string());
        let written = sql::upsert_worker(&mut *ctx.conn, &self.0, run.as_deref()).await?;
        let mut stored = None;
        if written == 0 {
            stored = sql::worker_holder(&mut *ctx.conn, &self.0.worker_id).await?;
        }
        Ok(core::sighting(written, stored, &self.0.owner))
    }
}

pub(super) struct TouchWorker(pub WorkerTouch);

#[async_trait]
impl Command for TouchWorker {
    type Reply = ();

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        let t = &self.0;
        sql::touch_worker(&mut *ctx.conn, t).await
    }
}

/// Reads the writer's statistics (authoritative: the table may lag by one flush).
pub(super) struct Stats;

#[async_trait]
impl Command for Stats {
    type Reply = Vec<FunctionStats>;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Vec<FunctionStats>> {
        let mut all: Vec<FunctionStats> = ctx
            .stats
            .iter()
            .filter(|(k, _)| !ctx.staged.stats.contains_key(*k))
            .map(|(_, v)| v.clone())
            .chain(ctx.staged.stats.values().cloned())
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }
}

/// Commit what is pending, then stop taking jobs.
pub(super) struct Shutdown;

#[async_trait]
impl Command for Shutdown {
    type Reply = ();

    fn is_shutdown(&self) -> bool {
        true
    }

    async fn run(&self, _ctx: &mut Ctx<'_>) -> Result<()> {
        Ok(())
    }
}

pub(super) struct OpenGates(pub i64);

#[async_trait]
impl Command for OpenGates {
    type Reply = usize;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<usize> {
        let keys = sql::gated_keys(&mut *ctx.conn, GATE_SWEEP_KEYS).await?;
        ctx.gate(self.0, &[], keys, false).await
    }
}

pub(super) struct AddBroadcast(pub crate::store::NewBroadcastRecord);

#[async_trait]
impl Command for AddBroadcast {
    type Reply = i64;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<i64> {
        sql::add_broadcast(&mut *ctx.conn, &self.0).await
    }
}

pub(super) struct AckBroadcasts {
    pub worker_id: String,
    pub applied: Vec<task_api::BroadcastApplied>,
}

#[async_trait]
impl Command for AckBroadcasts {
    type Reply = ();

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        sql::ack_broadcasts(&mut *ctx.conn, &self.worker_id, &self.applied).await
    }
}

pub(super) struct AddSchedule(pub crate::store::ScheduleRecord);

#[async_trait]
impl Command for AddSchedule {
    type Reply = ();

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        sql::add_schedule(&mut *ctx.conn, &self.0).await
    }
}

pub(super) struct DeleteSchedule {
    pub id: Uuid,
    pub owner: Option<String>,
}

#[async_trait]
impl Command for DeleteSchedule {
    type Reply = bool;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<bool> {
        let n = sql::delete_schedule(&mut *ctx.conn, DbId(self.id), self.owner.as_deref()).await?;
        Ok(n > 0)
    }
}

pub(super) struct AdvanceSchedule {
    pub id: Uuid,
    pub from: i64,
    pub to: i64,
    pub task: Option<Uuid>,
}

#[async_trait]
impl Command for AdvanceSchedule {
    type Reply = bool;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<bool> {
        let task = self.task.map(DbId);
        let n =
            sql::advance_schedule(&mut *ctx.conn, DbId(self.id), self.from, self.to, task).await?;
        Ok(n > 0)
    }
}

pub(super) struct RecordFile {
    pub file: crate::store::FileRow,
    pub quota: u64,
}

#[async_trait]
impl Command for RecordFile {
    type Reply = crate::store::AddFile;

    fn single_statement(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<crate::store::AddFile> {
        sql::add_file(&mut *ctx.conn, &self.file, self.quota).await
    }
}

pub(super) struct ExpireFiles(pub i64);

#[async_trait]
impl Command for ExpireFiles {
    type Reply = Vec<String>;

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<Vec<String>> {
        sql::expire_files(&mut *ctx.conn, self.0, crate::store::EXPIRE_FILES).await
    }
}

pub(super) struct AttachFiles(pub String);

#[async_trait]
impl Command for AttachFiles {
    type Reply = ();

    async fn run(&self, ctx: &mut Ctx<'_>) -> Result<()> {
        sql::attach_files(&mut *ctx.conn, &self.0).await
    }
}
