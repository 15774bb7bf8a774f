//! PostgreSQL store for several stateless server replicas on one database.
//!
//! Every method is one transaction on a pooled connection; claims lock rows with
//! `FOR UPDATE SKIP LOCKED` inside the one claiming statement; the reaper does the same, so it can
//! run on every replica at once. Runtime statistics are merged by each replica under row locks
//! (`stats.rs`). Replicas wake each other with `LISTEN/NOTIFY` on one channel (`events.rs`).
//!
//! Batch-result cursors: with many writers, a number handed out at finish time could become
//! visible after a higher one and a reader would skip it. So `finish_seq` is assigned when results
//! are read, under a per-batch advisory lock, only to rows already committed: numbers follow
//! visibility order, and a cursor never skips.
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use task_api::{Lease, LeaseRef};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::core::{self, Applied, Finishing, RetryPolicy};
use super::rows::DbId;
use super::statements::{sql_file, statements, store_reads};
use super::*;
use crate::stats::FunctionStats;
use events::Announcer;
use stats::Samples;

mod events;
mod stats;

/// The shared statements, PostgreSQL dialect.
pub(crate) mod sql {
    super::statements!(sqlx::Postgres, "postgres");
}

/// Planner settings of every connection. The queue table turns over faster than autovacuum
/// re-analyzes it (its naptime is a minute), and sqlx caches each statement's plan per
/// connection: a plan chosen from statistics taken while the table was nearly empty stays in use
/// while the table grows to 200,000 rows. Measured (auto_explain) on a 200,000-task burst:
/// - the claim read every queued row through `tasks_delayed` and sorted them (32,400 rows,
///   140 ms per claim; over 1 s on a deep queue) instead of walking `tasks_ready` in order and
///   stopping at `LIMIT`;
/// - the answer hashed every `leased` entry of `tasks_leased` (159,554, mostly dead; 50–70 ms per
///   batch of 100) instead of looking its ids up in the unique index;
/// - the expiry sweep read the table sequentially (60 ms per reaper tick).
///
/// Every statement of this store has an index made for it, so sequential scans, sorts and
/// bitmap scans are priced out (not forbidden: a plan that needs one still runs, such as the
/// small sort of a batch's newly finished rows). JIT is off: the penalty puts such a plan's cost
/// far above `jit_above_cost`, and compiling it took 120 ms (over 1 s under load) for a statement
/// that runs in 2 ms; no statement here is long enough to gain from JIT anyway.
const QUEUE_PLANNER: [(&str, &str); 4] = [
    ("enable_seqscan", "off"),
    ("enable_sort", "off"),
    ("enable_bitmapscan", "off"),
    ("jit", "off"),
];

/// One task (with its idempotency key honoured) or a batch with its record, each one statement:
/// one round trip and its own transaction. (A BEGIN … COMMIT here kept backends idle in
/// transaction, waiting for a CPU-starved replica's next command.)
static SUBMIT_ONE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH ins AS ({} ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL \
         DO NOTHING RETURNING id) SELECT id FROM ins",
        sql_file!("postgres", "insert_tasks")
    )
});
static SUBMIT_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH b AS (INSERT INTO batches (id, owner, total, created_at) VALUES ($4, $2, $6, $3)) {}",
        sql_file!("postgres", "insert_tasks")
    )
});

/// The scale-out store.
pub struct PgStore {
    pool: PgPool,
    /// Same database, `synchronous_commit = off`: for leases, heartbeats and worker sightings,
    /// whose loss in a PostgreSQL crash is harmless (a lost lease leaves the task queued, and its
    /// holder's answer is refused with 409 and the task runs again: at-least-once execution,
    /// exactly-once acceptance). Submits and answers stay on the durable pool.
    fast: PgPool,
    config: StoreConfig,
    retry: RetryPolicy,
    events: broadcast::Sender<StoreEvent>,
    samples: Arc<Samples>,
    announcer: Arc<Announcer>,
    /// Listener, statistics flusher, announcer.
    tasks: [JoinHandle<()>; 3],
}

impl PgStore {
    /// Connects, migrates (safe with several replicas starting at once: sqlx takes an advisory
    /// lock) and starts listening for other replicas' events.
    pub async fn open(url: &str, config: StoreConfig) -> Result<Self> {
        let opts = url.parse::<PgConnectOptions>()?.options(QUEUE_PLANNER);
        let pool = Self::pool(opts.clone(), 16).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let fast = Self::pool(opts.options([("synchronous_commit", "off")]), 8).await?;
        let (events, _) = broadcast::channel(4096);
        let listener = events::listen(&pool, events.clone()).await?;
        let samples = Arc::new(Samples::default());
        let flusher = tokio::spawn(samples.clone().run(pool.clone()));
        let announcer = Arc::new(Announcer::default());
        let announce = tokio::spawn(announcer.clone().run(fast.clone()));
        Ok(PgStore {
            pool,
            fast,
            retry: RetryPolicy::new(&config),
            config,
            events,
            samples,
            announcer,
            tasks: [listener, flusher, announce],
        })
    }

    async fn pool(opts: PgConnectOptions, max: u32) -> Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?)
    }

    fn finishing(&self, now: i64) -> Finishing<'_> {
        Finishing {
            now,
            delays: self.retry.delays_json(),
            first_number: 0,
            ttl_s: self.config.default_result_ttl_s,
        }
    }

    /// Records the edges of newly inserted waiting tasks and the files tasks take (inside the
    /// insert's transaction).
    async fn link(tx: &mut sqlx::PgConnection, tasks: &[NewTask]) -> Result<()> {
        if let Some((edges, deps)) = NewTask::edges_json(tasks) {
            sql::link(&mut *tx, &edges, &deps).await?;
        }
        if let Some(pairs) = NewTask::files_json(tasks) {
            sql::attach_files(&mut *tx, &pairs).await?;
        }
        Ok(())
    }

    /// Settles waiting tasks after a commit (see `statements::settle`) in a transaction of its
    /// own, and announces what it did. A failure here (a deadlock with another replica settling
    /// the same tasks) is logged and left to the reaper's sweep ([`Store::settle_stuck`]): what
    /// was committed before stays committed.
    async fn settle(&self, now: i64, from: Vec<Uuid>, candidates: Vec<Uuid>) -> usize {
        if from.is_empty() && candidates.is_empty() {
            return 0;
        }
        let result = async {
            let mut tx = self.pool.begin().await?;
            let out = sql::settle(&mut tx, &self.finishing(now), from, candidates).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(out)
        }
        .await;
        match result {
            Ok(mut out) => {
                let mut wake = events::finished_items(&out.finished);
                wake.extend((out.queued > 0).then(events::work_item));
                self.announcer.announce(wake);
                self.gate(now, &[], std::mem::take(&mut out.gates), false)
                    .await;
                out.queued + out.finished.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "settling waiting tasks failed; the reaper's sweep will");
                0
            }
        }
    }

    /// A gate pass (see `statements::gate`) in a transaction of its own, after the commit that
    /// queued or finished capped tasks; what it lets through is announced as work. A failure
    /// is logged and left to the reaper's gate pass ([`Store::open_gates`]).
    async fn gate(
        &self,
        now: i64,
        limits: &[crate::caps::CapLimit],
        keys: Vec<String>,
        leased: bool,
    ) -> usize {
        if keys.is_empty() && limits.is_empty() {
            return 0;
        }
        let result = async {
            let mut tx = self.pool.begin().await?;
            let opened = sql::gate(&mut tx, now, limits, keys, leased).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(opened)
        }
        .await;
        match result {
            Ok(opened) => {
                if opened.through > 0 {
                    self.announcer.announce([events::work_item()]);
                }
                for at in opened.due {
                    let announcer = self.announcer.clone();
                    tokio::spawn(async move {
                        let wait = (at - crate::queue::now_ms()).max(0) as u64;
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        announcer.announce([events::work_item()]);
                    });
                }
                opened.through
            }
            Err(e) => {
                tracing::warn!(error = %e, "a gate pass failed; the reaper's will");
                0
            }
        }
    }

    /// Wakes the other replicas' waiters for tasks that finished.
    fn announce_finished(&self, f: &[Finished]) {
        self.announcer.announce(events::finished_items(f));
    }

    /// Wakes the waiters of what taking leases did: failed tasks, and work requeued.
    fn announce_taken(&self, out: &ReapOutcome) {
        let mut wake = events::finished_items(&out.failed);
        wake.extend((out.requeued > 0).then(events::work_item));
        self.announcer.announce(wake);
    }
}

store_reads!(PgStore, pool);

#[async_trait]
impl Store for PgStore {
    async fn submit_one(&self, owner: &str, task: NewTask, now: i64) -> Result<SubmitOutcome> {
        let tasks = std::slice::from_ref(&task);
        let query = sqlx::query_scalar(&SUBMIT_ONE)
            .bind(serde_json::to_string(tasks)?)
            .bind(owner)
            .bind(now)
            .bind(None::<DbId>)
            .bind(i64::from(task.priority));
        // One statement, unless the task waits or is capped: then its edges and its caps'
        // limits commit with it.
        let (limits, keys) = NewTask::gates(tasks);
        let inserted: Option<DbId> =
            if task.depends_on.is_empty() && !task.capped() && task.files.is_empty() {
                query.fetch_optional(&self.pool).await?
            } else {
                let mut tx = self.pool.begin().await?;
                let inserted = query.fetch_optional(&mut *tx).await?;
                if inserted.is_some() {
                    Self::link(&mut tx, tasks).await?;
                    sql::cap_limits(&mut *tx, &limits, now).await?;
                }
                tx.commit().await?;
                inserted
            };
        if inserted.is_some() {
            self.announcer.announce([events::work_item()]);
            self.settle(now, Vec::new(), NewTask::waiting_on_others(tasks))
                .await;
            self.gate(now, &[], keys, false).await;
            return Ok(SubmitOutcome::Created);
        }
        let key = task.idempotency_key.as_deref().unwrap_or_default();
        match sql::idempotent(&self.pool, owner, key).await? {
            Some(row) => core::keyed_outcome(row, &task.request_hash),
            None => Err(StoreError::Corrupt(format!(
                "task {} was not inserted",
                task.id
            ))),
        }
    }

    async fn submit_batch(&self, by: &str, id: Uuid, tasks: Vec<NewTask>, now: i64) -> Result<()> {
        let query = sqlx::query(&SUBMIT_BATCH)
            .bind(serde_json::to_string(&tasks)?)
            .bind(by)
            .bind(now)
            .bind(Some(DbId(id)))
            .bind(tasks.first().map_or(0, |t| i64::from(t.priority)))
            .bind(tasks.len() as i64);
        let (limits, keys) = NewTask::gates(&tasks);
        if tasks
            .iter()
            .all(|t| t.depends_on.is_empty() && t.files.is_empty())
            && limits.is_empty()
        {
            query.execute(&self.pool).await?;
        } else {
            let mut tx = self.pool.begin().await?;
            query.execute(&mut *tx).await?;
            Self::link(&mut tx, &tasks).await?;
            sql::cap_limits(&mut *tx, &limits, now).await?;
            tx.commit().await?;
        }
        self.announcer.announce([events::work_item()]);
        self.settle(now, Vec::new(), NewTask::waiting_on_others(&tasks))
            .await;
        self.gate(now, &[], keys, false).await;
        Ok(())
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Lease>> {
        let mut conn = self.fast.acquire().await?;
        let rows = sql::claim(&mut conn, &req, self.config.timeout_grace_ms).await?;
        drop(conn);
        self.gate(req.now, &[], super::rows::leased_caps(&rows), true)
            .await;
        super::rows::leases_in_order(rows, req.predictors.as_deref())
    }

    /// On the durable pool: a hand-back lost in a crash would leave the task leased until its
    /// lease expired, and then count the attempt.
    async fn release(&self, holder: Holder, leases: Vec<LeaseRef>) -> Result<Vec<Uuid>> {
        let items = core::lease_refs_json(&leases);
        let rows = sql::release(&self.pool, &items, &holder).await?;
        let (ids, unchained) = core::released(rows);
        if !ids.is_empty() {
            self.announcer.announce([events::work_item()]);
        }
        self.settle(crate::queue::now_ms(), Vec::new(), unchained)
            .await;
        Ok(ids)
    }

    async fn granted(&self, holder: Holder, request_id: Uuid) -> Result<Vec<Lease>> {
        let rows = sql::granted(&self.pool, &holder, &request_id.to_string()).await?;
        super::rows::leases_in_order(rows, None)
    }

    async fn release_run(&self, holder: Holder, incarnation: Uuid) -> Result<Vec<Uuid>> {
        let rows = sql::release_run(&self.pool, &holder, &incarnation.to_string()).await?;
        let (ids, unchained) = core::released(rows);
        if !ids.is_empty() {
            self.announcer.announce([events::work_item()]);
        }
        self.settle(crate::queue::now_ms(), Vec::new(), unchained)
            .await;
        Ok(ids)
    }

    async fn heartbeat(&self, hb: HeartbeatIn) -> Result<HeartbeatOutcome> {
        let items = core::heartbeat_json(&hb);
        let deadline = hb.now.saturating_add(hb.lease_ttl_ms);
        let extended = sql::heartbeat(&self.fast, &items, deadline, &hb.holder).await?;
        let mut others = Vec::new();
        if core::heartbeat_incomplete(&hb, &extended) {
            others = sql::heartbeat_others(&self.pool, &items, &hb.holder).await?;
        }
        Ok(core::heartbeat_outcome(&hb, extended, others))
    }

    /// The UPDATE is its own transaction (one round trip). Answers it did not apply are
    /// classified afterwards by a read that, under READ COMMITTED, would see the same committed
    /// rows inside a transaction as outside one.
    async fn answer(&self, answers: Vec<AnswerIn>, now: i64) -> Result<Vec<AnswerOutcome>> {
        let items = core::answers_json(&answers);
        let rows = sql::answer(&self.pool, &self.finishing(now), &items).await?;
        let mut applied = Applied::from_rows(rows, now)?;
        // Committed: wake the waiters and keep the runtime samples before anything else can fail.
        let mut wake = events::finished_items(applied.finished());
        wake.extend(applied.requeued().then(events::work_item));
        self.announcer.announce(wake);
        self.samples.add(std::mem::take(&mut applied.samples));
        let unchained = std::mem::take(&mut applied.unchained);
        self.settle(now, std::mem::take(&mut applied.settle), unchained)
            .await;
        self.gate(now, &[], std::mem::take(&mut applied.gates), false)
            .await;
        let mut rest = Vec::new();
        if let Some(ids) = applied.unapplied_json(&answers) {
            rest = sql::lease_states(&self.pool, &ids).await?;
        }
        applied.outcomes(&answers, rest)
    }

    async fn cancel(&self, id: Uuid, by: &str, now: i64) -> Result<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        let error = core::cancel_error(by);
        let updated = sql::cancel(&mut *tx, &self.finishing(now), &error, DbId(id)).await?;
        let mut state = None;
        if updated.is_none() {
            state = sql::task_state(&mut *tx, DbId(id)).await?;
        }
        tx.commit().await?;
        let out = core::cancel_outcome(id, updated, state)?;
        if let CancelOutcome::Cancelled(f) = &out {
            self.announce_finished(std::slice::from_ref(f));
            self.settle(now, vec![id], Vec::new()).await;
        }
        Ok(out)
    }

    async fn open_gates(&self, now: i64) -> Result<usize> {
        let keys = sql::gated_keys(&self.pool, GATE_SWEEP_KEYS).await?;
        Ok(self.gate(now, &[], keys, false).await)
    }

    async fn add_broadcast(&self, b: NewBroadcastRecord) -> Result<i64> {
        sql::add_broadcast(&self.pool, &b).await
    }

    async fn ack_broadcasts(
        &self,
        worker_id: &str,
        applied: Vec<task_api::BroadcastApplied>,
    ) -> Result<()> {
        sql::ack_broadcasts(&self.pool, worker_id, &applied).await
    }

    async fn add_schedule(&self, s: ScheduleRecord) -> Result<()> {
        sql::add_schedule(&self.pool, &s).await
    }

    async fn add_file(&self, f: FileRow, quota: u64) -> Result<AddFile> {
        let mut tx = self.pool.begin().await?;
        let added = sql::add_file(&mut tx, &f, quota).await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn attach_file(&self, task: Uuid, sha256: &str) -> Result<()> {
        sql::attach_files(&self.pool, &json!([[task, sha256]]).to_string()).await
    }

    async fn expire_files(&self, cutoff: i64) -> Result<Vec<String>> {
        sql::expire_files(&self.pool, cutoff, EXPIRE_FILES).await
    }

    async fn delete_schedule(&self, id: Uuid, owner: Option<&str>) -> Result<bool> {
        Ok(sql::delete_schedule(&self.pool, DbId(id), owner).await? > 0)
    }

    async fn advance_schedule(
        &self,
        id: Uuid,
        from: i64,
        to: i64,
        task: Option<Uuid>,
    ) -> Result<bool> {
        let task = task.map(DbId);
        Ok(sql::advance_schedule(&self.pool, DbId(id), from, to, task).await? > 0)
    }

    async fn cancel_batch(&self, id: Uuid, by: &str, now: i64) -> Result<Vec<Finished>> {
        let error = core::cancel_error(by);
        let rows = sql::cancel_batch(&self.pool, &self.finishing(now), &error, DbId(id)).await?;
        let done: Vec<Finished> = rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<_>>()?;
        self.announce_finished(&done);
        let ids = done.iter().map(|f| f.id).collect();
        self.settle(now, ids, Vec::new()).await;
        Ok(done)
    }

    async fn delete(&self, id: Uuid, now: i64) -> Result<Option<Finished>> {
        let row = sql::delete(&self.pool, DbId(id)).await?;
        let out: Option<Finished> = row.map(TryInto::try_into).transpose()?;
        if let Some(f) = &out {
            self.announce_finished(std::slice::from_ref(f));
            self.settle(now, vec![id], Vec::new()).await;
        }
        Ok(out)
    }

    async fn reap(&self, now: i64) -> Result<ReapOutcome> {
        let mut tx = self.pool.begin().await?;
        let expired = sql::expired(&mut *tx, now, REAP_LIMIT).await?;
        let at = self.finishing(now);
        let mut out = sql::take_leases(&mut *tx, &at, &expired, LeaseLoss::Expired).await?;
        out.deleted = sql::delete_expired(&mut *tx, now, REAP_LIMIT).await? as usize;
        let old = now.saturating_sub(self.config.default_result_ttl_s.saturating_mul(1000));
        sql::delete_batches(&mut *tx, old, REAP_LIMIT).await?;
        tx.commit().await?;
        self.announce_taken(&out);
        let failed = out.failed.iter().map(|f| f.id).collect();
        self.settle(now, failed, out.unchained.clone()).await;
        Ok(out)
    }

    async fn upsert_worker(&self, w: WorkerRecord, incarnation: Option<Uuid>) -> Result<Sighting> {
        let run = incarnation.map(|i| i.to_string());
        let written = sql::upsert_worker(&self.fast, &w, run.as_deref()).await?;
        let mut stored = None;
        if written == 0 {
            stored = sql::worker_holder(&self.fast, &w.worker_id).await?;
        }
        Ok(core::sighting(written, stored, &w.owner))
    }

    async fn requeue_orphans(
        &self,
        holder: Holder,
        incarnation: Uuid,
        now: i64,
    ) -> Result<ReapOutcome> {
        let mut tx = self.pool.begin().await?;
        let rows = sql::orphaned(&mut *tx, &holder, &incarnation.to_string(), REAP_LIMIT).await?;
        let at = self.finishing(now);
        let out = sql::take_leases(&mut *tx, &at, &rows, LeaseLoss::Restarted).await?;
        tx.commit().await?;
        self.announce_taken(&out);
        let failed = out.failed.iter().map(|f| f.id).collect();
        self.settle(now, failed, out.unchained.clone()).await;
        Ok(out)
    }

    async fn touch_worker(&self, t: WorkerTouch) -> Result<()> {
        sql::touch_worker(&self.fast, &t).await
    }

    /// Numbers the batch's newly visible finished rows (one sequencer per batch at a time),
    /// then reads past the cursor.
    async fn batch_results(&self, id: Uuid, after: i64, limit: u32) -> Result<Vec<BatchResult>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql_file!("postgres", "number_results"))
            .bind(DbId(id))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let rows = sql::batch_results(&self.pool, DbId(id), after, limit as i64).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// This replica's own recent samples first, so its readers never see them missing.
    async fn settle_stuck(&self, now: i64) -> Result<usize> {
        let stuck = sql::stuck_waiting(&self.pool, REAP_LIMIT).await?;
        let ids = stuck.into_iter().map(|d| d.0).collect();
        Ok(self.settle(now, Vec::new(), ids).await)
    }

    async fn stats(&self) -> Result<Vec<FunctionStats>> {
        self.samples.flush(&self.pool).await?;
        let rows = sql::function_stats(&self.pool).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn close(&self) {
        {
            // Not in the middle of a flush: its samples would be lost with the aborted task.
            let _quiet = self.samples.quiesce().await;
            self.tasks.iter().for_each(JoinHandle::abort);
        }
        if let Err(e) = self.samples.flush(&self.pool).await {
            tracing::warn!(error = %e, "could not write the last runtime statistics");
        }
        self.pool.close().await;
    }

    fn events(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        Some(self.events.subscribe())
    }
}
