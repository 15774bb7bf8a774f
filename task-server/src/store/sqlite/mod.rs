//! Embedded SQLite store: WAL, `synchronous=NORMAL`, ONE writer connection fed by a channel that
//! group-commits whatever is pending in one transaction (`writer.rs`, commands in
//! `commands.rs`), and a pool of read-only connections for the reads.
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Connection;
use task_api::{Lease, LeaseRef};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::rows::DbId;
use super::statements::{statements, store_reads};
use super::*;
use crate::stats::FunctionStats;
use commands::*;
use writer::{job, Command, Job, Writer, WRITER_QUEUE};

mod commands;
mod insert;
mod writer;

/// The shared statements, SQLite dialect.
pub(crate) mod sql {
    super::statements!(sqlx::Sqlite, "sqlite");

    /// The highest completion number handed out.
    pub const MAX_FINISH_SEQ: &str = sql_file!("sqlite", "max_finish_seq");
}

/// How often the WAL is checkpointed into the database file (PASSIVE: never blocks the writer).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The embedded default store.
pub struct SqliteStore {
    tx: mpsc::Sender<Box<dyn Job>>,
    /// What the writer settled beside the commands' own results (a task graph's waiting
    /// tasks queued or failed), for waking long-polls.
    events: tokio::sync::broadcast::Sender<StoreEvent>,
    read: SqlitePool,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and runs migrations.
    pub async fn open(path: &Path, config: StoreConfig) -> Result<Self> {
        Self::open_with(SqliteConnectOptions::new().filename(path), config).await
    }

    /// Opens from a `sqlite:` URL.
    pub async fn open_url(url: &str, config: StoreConfig) -> Result<Self> {
        Self::open_with(SqliteConnectOptions::from_str(url)?, config).await
    }

    /// Applies the tuning every path gets (WAL, NORMAL sync, busy timeout, caches), migrates,
    /// and starts the writer.
    async fn open_with(opts: SqliteConnectOptions, config: StoreConfig) -> Result<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000");
        // Migrations through a one-connection pool: `run(&mut conn)` makes a future that is not
        // `Send` (sqlx's Acquire is not general over lifetimes).
        let migrate = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&migrate).await?;
        migrate.close().await;
        let (events, _) = tokio::sync::broadcast::channel(4096);
        let writer = Self::spawn_writer(&opts, config, events.clone()).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(opts.read_only(true))
            .await?;
        let (tx, handle) = writer;
        Ok(SqliteStore {
            tx,
            events,
            read,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// The writer task and its checkpointer.
    async fn spawn_writer(
        opts: &SqliteConnectOptions,
        config: StoreConfig,
        events: tokio::sync::broadcast::Sender<StoreEvent>,
    ) -> Result<(mpsc::Sender<Box<dyn Job>>, JoinHandle<()>)> {
        let mut conn = SqliteConnection::connect_with(opts).await?;
        // Checkpoints (which fsync) run beside the writer, never inside one of its commits.
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(&mut conn)
            .await?;
        let checkpointer =
            tokio::spawn(checkpoint_loop(SqliteConnection::connect_with(opts).await?));
        let mut writer = Writer::load(conn, config, events).await?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let handle = tokio::spawn(async move {
            writer.serve(rx).await;
            checkpointer.abort();
            writer.close().await;
        });
        Ok((tx, handle))
    }

    /// Runs a command on the writer and waits for its reply.
    async fn call<C: Command>(&self, cmd: C) -> Result<C::Reply> {
        let (job, reply) = job(cmd);
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        reply.await.map_err(|_| StoreError::Closed)?
    }
}

async fn checkpoint_loop(mut conn: SqliteConnection) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
        }
    }
}

store_reads!(SqliteStore, read);

#[async_trait]
impl Store for SqliteStore {
    async fn submit_one(&self, owner: &str, task: NewTask, now: i64) -> Result<SubmitOutcome> {
        let owner = owner.to_string();
        self.call(SubmitOne { owner, task, now }).await
    }

    async fn submit_batch(&self, by: &str, id: Uuid, tasks: Vec<NewTask>, now: i64) -> Result<()> {
        let owner = by.to_string();
        self.call(SubmitBatch {
            owner,
            id,
            tasks,
            now,
        })
        .await
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Lease>> {
        self.call(Claim(req)).await
    }

    async fn heartbeat(&self, hb: HeartbeatIn) -> Result<HeartbeatOutcome> {
        self.call(Heartbeat(hb)).await
    }

    async fn release(&self, holder: Holder, leases: Vec<LeaseRef>) -> Result<Vec<Uuid>> {
        self.call(Release { holder, leases }).await
    }

    async fn granted(&self, holder: Holder, request_id: Uuid) -> Result<Vec<Lease>> {
        self.call(Granted { holder, request_id }).await
    }

    async fn release_run(&self, holder: Holder, incarnation: Uuid) -> Result<Vec<Uuid>> {
        self.call(ReleaseRun {
            holder,
            incarnation,
        })
        .await
    }

    async fn answer(&self, answers: Vec<AnswerIn>, now: i64) -> Result<Vec<AnswerOutcome>> {
        self.call(Answer { answers, now }).await
    }

    async fn cancel(&self, id: Uuid, by: &str, now: i64) -> Result<CancelOutcome> {
        let by = by.to_string();
        self.call(Cancel { id, by, now }).await
    }

    async fn open_gates(&self, now: i64) -> Result<usize> {
        self.call(OpenGates(now)).await
    }

    async fn add_broadcast(&self, b: NewBroadcastRecord) -> Result<i64> {
        self.call(AddBroadcast(b)).await
    }

    async fn ack_broadcasts(
        &self,
        worker_id: &str,
        applied: Vec<task_api::BroadcastApplied>,
    ) -> Result<()> {
        let worker_id = worker_id.to_string();
        self.call(AckBroadcasts { worker_id, applied }).await
    }

    async fn add_schedule(&self, s: ScheduleRecord) -> Result<()> {
        self.call(AddSchedule(s)).await
    }

    async fn add_file(&self, file: FileRow, quota: u64) -> Result<AddFile> {
        self.call(RecordFile { file, quota }).await
    }

    async fn attach_file(&self, task: Uuid, sha256: &str) -> Result<()> {
        let pairs = serde_json::json!([[task, sha256]]).to_string();
        self.call(AttachFiles(pairs)).await
    }

    async fn expire_files(&self, cutoff: i64) -> Result<Vec<String>> {
        self.call(ExpireFiles(cutoff)).await
    }

    async fn delete_schedule(&self, id: Uuid, owner: Option<&str>) -> Result<bool> {
        let owner = owner.map(str::to_string);
        self.call(DeleteSchedule { id, owner }).await
    }

    async fn advance_schedule(
        &self,
        id: Uuid,
        from: i64,
        to: i64,
        task: Option<Uuid>,
    ) -> Result<bool> {
        self.call(AdvanceSchedule { id, from, to, task }).await
    }

    async fn cancel_batch(&self, id: Uuid, by: &str, now: i64) -> Result<Vec<Finished>> {
        let by = by.to_string();
        self.call(CancelBatch { id, by, now }).await
    }

    async fn delete(&self, id: Uuid, now: i64) -> Result<Option<Finished>> {
        self.call(Delete(id, now)).await
    }

    async fn reap(&self, now: i64) -> Result<ReapOutcome> {
        self.call(Reap(now)).await
    }

    async fn upsert_worker(&self, w: WorkerRecord, incarnation: Option<Uuid>) -> Result<Sighting> {
        self.call(UpsertWorker(w, incarnation)).await
    }

    async fn requeue_orphans(
        &self,
        holder: Holder,
        incarnation: Uuid,
        now: i64,
    ) -> Result<ReapOutcome> {
        self.call(RequeueOrphans {
            holder,
            incarnation,
            now,
        })
        .await
    }

    async fn touch_worker(&self, t: WorkerTouch) -> Result<()> {
        self.call(TouchWorker(t)).await
    }

    /// Completion numbers are assigned by the writer as tasks finish: a read-only query.
    async fn batch_results(&self, id: Uuid, after: i64, limit: u32) -> Result<Vec<BatchResult>> {
        let rows = sql::batch_results(&self.read, DbId(id), after, limit as i64).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn stats(&self) -> Result<Vec<FunctionStats>> {
        self.call(Stats).await
    }

    async fn settle_stuck(&self, now: i64) -> Result<usize> {
        self.call(SettleStuck(now)).await
    }

    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<StoreEvent>> {
        Some(self.events.subscribe())
    }

    async fn close(&self) {
        let _ = self.call(Shutdown).await;
        if let Some(handle) = self.writer.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
        self.read.close().await;
    }
}
