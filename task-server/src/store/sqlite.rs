//! Embedded SQLite store: WAL, `synchronous=NORMAL`, ONE writer connection fed by a channel that
//! group-commits whatever is pending in one transaction, and a pool of read-only connections.
//!
//! Because the writer is the only one, it keeps two pieces of state in memory that a multi-writer
//! backend would keep in the database: the next completion sequence number and the runtime
//! statistics cache (authoritative copy, written through on every change).
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row};
use task_api::{Lease, Resources, TaskError, TaskPayload, TaskState};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::*;
use crate::stats::{FnKey, FunctionStats, QueueLoad, Sketch};

/// Jobs a single group commit takes at most; bounds one transaction's latency.
const MAX_GROUP: usize = 256;
/// Writer queue depth: submitters wait (backpressure) rather than queue without bound.
const WRITER_QUEUE: usize = 4096;
/// How often statistics changed by answers are written (a kill -9 loses at most this much).
const STATS_FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How often the WAL is checkpointed into the database file (PASSIVE: never blocks the writer).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Rows the reaper touches per pass.
const REAP_LIMIT: i64 = 1000;

/// The embedded default store.
pub struct SqliteStore {
    tx: mpsc::Sender<Job>,
    read: SqlitePool,
    writer: Mutex<Option<JoinHandle<()>>>,
}

enum Op {
    SubmitOne {
        owner: String,
        task: NewTask,
        now: i64,
    },
    SubmitBatch {
        owner: String,
        batch_id: Uuid,
        tasks: Vec<NewTask>,
        now: i64,
    },
    Claim(ClaimRequest),
    Heartbeat(HeartbeatIn),
    Answer {
        answers: Vec<AnswerIn>,
        now: i64,
    },
    Cancel {
        id: Uuid,
        by: String,
        now: i64,
    },
    Delete {
        id: Uuid,
    },
    Reap {
        now: i64,
    },
    UpsertWorker(WorkerRecord),
    TouchWorker {
        worker_id: String,
        owner: String,
        now: i64,
        dispatch_ms: Option<f64>,
    },
    /// Read the writer's statistics (authoritative: the table may lag by one flush).
    Stats,
    /// Commit what is pending, then stop taking jobs.
    Shutdown,
}

impl Op {
    /// Ops that issue exactly one write statement (on their common path), so a group holding
    /// only this op needs no explicit transaction.
    fn is_single_statement(&self) -> bool {
        match self {
            Op::SubmitOne { task, .. } => task.idempotency_key.is_none(),
            Op::Claim(_)
            | Op::Delete { .. }
            | Op::UpsertWorker(_)
            | Op::TouchWorker { .. }
            | Op::Shutdown => true,
            // The answer UPDATE is one statement; the follow-up SELECT only runs for answers that
            // did not apply, and reads what this single writer itself committed.
            Op::Answer { .. } | Op::Heartbeat(_) | Op::Cancel { .. } => true,
            Op::Stats => true,
            Op::SubmitBatch { .. } | Op::Reap { .. } => false,
        }
    }
}

enum Reply {
    Submit(SubmitOutcome),
    Unit,
    Bool(bool),
    Claim(Vec<Lease>),
    Heartbeat(HeartbeatOutcome),
    Answer(Vec<AnswerOutcome>),
    Cancel(CancelOutcome),
    Delete(Option<Finished>),
    Reap(ReapOutcome),
    Stats(Vec<FunctionStats>),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and runs migrations.
    pub async fn open(path: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        Self::open_with(SqliteConnectOptions::new().filename(path), config).await
    }

    /// Opens from a `sqlite:` URL.
    pub async fn open_url(url: &str, config: StoreConfig) -> Result<Self, StoreError> {
        Self::open_with(SqliteConnectOptions::from_str(url)?, config).await
    }

    /// Applies the tuning every path gets (WAL, NORMAL sync, busy timeout, caches), then opens.
    async fn open_with(
        opts: SqliteConnectOptions,
        config: StoreConfig,
    ) -> Result<Self, StoreError> {
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
        let mut conn = SqliteConnection::connect_with(&opts).await?;
        // Checkpoints (which fsync) run beside the writer, never inside one of its commits.
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(&mut conn)
            .await?;
        let checkpointer = tokio::spawn(checkpoint_loop(
            SqliteConnection::connect_with(&opts).await?,
        ));
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(opts.read_only(true))
            .await?;
        let mut writer = Writer::load(conn, config).await?;
        let (tx, mut rx) = mpsc::channel::<Job>(WRITER_QUEUE);
        let handle = tokio::spawn(async move {
            let mut flush = tokio::time::interval(STATS_FLUSH_EVERY);
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let first = tokio::select! {
                    biased;
                    job = rx.recv() => match job {
                        Some(job) => job,
                        None => break,
                    },
                    _ = flush.tick() => {
                        writer.flush_stats().await;
                        continue;
                    }
                };
                let mut jobs = vec![first];
                while jobs.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let stop = jobs.iter().position(|j| matches!(j.op, Op::Shutdown));
                let stopper = stop.map(|i| jobs.remove(i));
                if !jobs.is_empty() {
                    writer.run_group(jobs).await;
                }
                if let Some(stopper) = stopper {
                    rx.close();
                    // Jobs that raced in before close() still get done.
                    let mut late = Vec::new();
                    while let Ok(j) = rx.try_recv() {
                        late.push(j);
                    }
                    late.retain(|j| !matches!(j.op, Op::Shutdown));
                    if !late.is_empty() {
                        writer.run_group(late).await;
                    }
                    let _ = stopper.reply.send(Ok(Reply::Unit));
                    break;
                }
            }
            checkpointer.abort();
            writer.close().await;
        });
        Ok(SqliteStore {
            tx,
            read,
            writer: Mutex::new(Some(handle)),
        })
    }

    async fn call(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
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

macro_rules! expect_reply {
    ($r:expr, $v:path) => {
        match $r? {
            $v(x) => Ok(x),
            _ => unreachable!("writer answered with the wrong reply kind"),
        }
    };
}

/// The writer's in-memory state, staged per transaction so a rollback forgets it.
struct Writer {
    conn: SqliteConnection,
    config: StoreConfig,
    next_finish_seq: i64,
    stats: HashMap<FnKey, FunctionStats>,
    /// Statistics changed by committed answers but not yet written (written right after the
    /// replies of their group went out, so they stay off the answer's critical path).
    dirty: HashSet<FnKey>,
}

#[derive(Default)]
struct Staged {
    finish_seq_used: i64,
    stats: HashMap<FnKey, FunctionStats>,
}

impl Writer {
    async fn load(mut conn: SqliteConnection, config: StoreConfig) -> Result<Self, StoreError> {
        let max: Option<i64> = sqlx::query_scalar("SELECT max(finish_seq) FROM tasks")
            .fetch_one(&mut conn)
            .await?;
        let rows = sqlx::query("SELECT * FROM function_stats")
            .fetch_all(&mut conn)
            .await?;
        let mut stats = HashMap::new();
        for row in rows {
            let st = stats_from_row(&row)?;
            stats.insert(st.key.clone(), st);
        }
        Ok(Writer {
            conn,
            config,
            next_finish_seq: max.unwrap_or(0) + 1,
            stats,
            dirty: HashSet::new(),
        })
    }

    /// Writes the statistics of answers committed since the last flush, in one transaction.
    async fn flush_stats(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let keys: Vec<FnKey> = self.dirty.drain().collect();
        let result = async {
            let mut tx = self.conn.begin().await?;
            for k in &keys {
                if let Some(st) = self.stats.get(k) {
                    upsert_stats(&mut tx, st).await?;
                }
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "writing runtime statistics failed; will retry");
            self.dirty.extend(keys);
        }
    }

    async fn close(mut self) {
        self.flush_stats().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }

    /// Runs every job in one transaction. If the transaction fails as a whole, each job is run
    /// again alone so one bad job cannot fail its neighbours.
    async fn run_group(&mut self, jobs: Vec<Job>) {
        if jobs.len() > 1 {
            match self.try_group(&jobs).await {
                Ok(replies) => {
                    for (job, r) in jobs.into_iter().zip(replies) {
                        let _ = job.reply.send(Ok(r));
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, jobs = jobs.len(), "group commit failed; retrying jobs one by one")
                }
            }
        }
        for job in jobs {
            let r = self.try_group(std::slice::from_ref(&job)).await;
            let _ = job
                .reply
                .send(r.map(|mut v| v.pop().expect("one reply per job")));
        }
    }

    async fn try_group(&mut self, jobs: &[Job]) -> Result<Vec<Reply>, StoreError> {
        let mut staged = Staged::default();
        if let [job] = jobs {
            if job.op.is_single_statement() {
                // Autocommit: one statement is its own transaction; saves BEGIN and COMMIT.
                let base = self.next_finish_seq;
                let reply = exec(
                    &mut self.conn,
                    &self.config,
                    &self.stats,
                    &mut staged,
                    base,
                    &job.op,
                )
                .await?;
                self.commit_staged(staged);
                return Ok(vec![reply]);
            }
        }
        let mut tx = self.conn.begin().await?;
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let base = self.next_finish_seq + staged.finish_seq_used;
            let r = exec(
                &mut tx,
                &self.config,
                &self.stats,
                &mut staged,
                base,
                &job.op,
            )
            .await;
            match r {
                Ok(reply) => replies.push(reply),
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            }
        }
        tx.commit().await?;
        self.commit_staged(staged);
        Ok(replies)
    }

    fn commit_staged(&mut self, staged: Staged) {
        self.next_finish_seq += staged.finish_seq_used;
        self.dirty.extend(staged.stats.keys().cloned());
        self.stats.extend(staged.stats);
    }
}

/// Columns of an inserted task, bound per row (`state` is always 'queued').
const INSERT_COLUMNS: &str = "INSERT INTO tasks (id, owner, package, version, function, args, kwargs, state, \
     priority, max_attempts, timeout_s, available_at, created_at, ttl_s, idempotency_key, request_hash, \
     batch_id, batch_index, args_hash, memoize, req_gpus, req_memory_mb, req_datasets) VALUES ";
const INSERT_ROW: &str = "(?,?,?,?,?,?,?,'queued',?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
/// Rows per INSERT statement (22 bound values each, far below SQLite's 32,766 limit).
const INSERT_CHUNK: usize = 100;

/// Inserts tasks with multi-row VALUES statements (bound parameters, no JSON parsing).
async fn insert_tasks(
    conn: &mut SqliteConnection,
    owner: &str,
    now: i64,
    batch: Option<Uuid>,
    tasks: &[NewTask],
) -> Result<(), StoreError> {
    let batch = batch.map(|b| b.to_string());
    for (c, chunk) in tasks.chunks(INSERT_CHUNK).enumerate() {
        let mut sql =
            String::with_capacity(INSERT_COLUMNS.len() + chunk.len() * (INSERT_ROW.len() + 1));
        sql.push_str(INSERT_COLUMNS);
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(INSERT_ROW);
        }
        let mut q = sqlx::query(&sql);
        for (i, t) in chunk.iter().enumerate() {
            let index = batch.as_ref().map(|_| (c * INSERT_CHUNK + i) as i64);
            let datasets = (!t.req_datasets.is_empty())
                .then(|| serde_json::to_string(&t.req_datasets))
                .transpose()?;
            q = q
                .bind(t.id.to_string())
                .bind(owner)
                .bind(&t.package)
                .bind(&t.version)
                .bind(&t.function)
                .bind(serde_json::to_string(&t.args)?)
                .bind(serde_json::to_string(&t.kwargs)?)
                .bind(t.priority)
                .bind(t.max_attempts as i64)
                .bind(t.timeout_s.map(|x| x as i64))
                .bind(now)
                .bind(now)
                .bind(t.ttl_s.map(|x| x.min(i64::MAX as u64) as i64))
                .bind(&t.idempotency_key)
                .bind(&t.request_hash)
                .bind(batch.clone())
                .bind(index)
                .bind(&t.args_hash)
                .bind(t.memoize)
                .bind(t.req_gpus as i64)
                .bind(t.req_memory_mb.min(i64::MAX as u64) as i64)
                .bind(datasets);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

const CLAIM: &str = r#"
UPDATE tasks SET state = 'leased', lease_epoch = lease_epoch + 1, attempt = attempt + 1,
       lease_worker = ?1, lease_owner = ?9, leased_at = ?2, progress = NULL,
       timeout_at = CASE WHEN timeout_s IS NULL THEN NULL ELSE ?2 + timeout_s * 1000 + ?8 END,
       lease_deadline = CASE WHEN timeout_s IS NULL THEN ?3 ELSE min(?3, ?2 + timeout_s * 1000 + ?8) END
WHERE seq IN (
    SELECT seq FROM tasks
    WHERE state = 'queued' AND available_at <= ?2 AND req_gpus <= ?4 AND req_memory_mb <= ?5
      AND (req_datasets IS NULL OR NOT EXISTS (
            SELECT 1 FROM json_each(tasks.req_datasets) AS d
            WHERE d.value NOT IN (SELECT value FROM json_each(?6))))
    ORDER BY priority DESC, seq
    LIMIT ?7)
RETURNING id, package, version, function, args, kwargs, timeout_s, attempt, max_attempts,
          lease_epoch, lease_deadline, req_gpus, req_memory_mb, req_datasets
"#;

const HEARTBEAT: &str = r#"
WITH a AS MATERIALIZED (
  SELECT j.value->>'id' AS id, j.value->>'lease_epoch' AS epoch, j.value->>'progress' AS progress
  FROM json_each(?1) AS j)
UPDATE tasks SET lease_deadline = CASE WHEN tasks.timeout_at IS NULL THEN ?2 ELSE min(?2, tasks.timeout_at) END,
       progress = coalesce(a.progress, tasks.progress)
FROM a
WHERE tasks.id = a.id AND tasks.state = 'leased' AND tasks.lease_epoch = a.epoch
  AND (?3 IS NULL OR tasks.lease_worker = ?3) AND coalesce(tasks.lease_owner, ?4) = ?4
RETURNING tasks.id
"#;

// Cancelled leases of this holder; current leases (epoch matching) of anyone else.
const HEARTBEAT_OTHERS: &str = r#"
SELECT tasks.id, tasks.state = 'cancelled' AS cancelled FROM tasks JOIN json_each(?1) AS a ON tasks.id = a.value->>'id'
WHERE tasks.lease_epoch = a.value->>'lease_epoch' AND (
  (tasks.state = 'cancelled' AND (?2 IS NULL OR tasks.lease_worker = ?2) AND coalesce(tasks.lease_owner, ?3) = ?3)
  OR (tasks.state = 'leased' AND NOT ((?2 IS NULL OR tasks.lease_worker = ?2) AND coalesce(tasks.lease_owner, ?3) = ?3)))
"#;

// Each answer's fields are pulled out of the JSON once (MATERIALIZED), not once per use.
// `retry` below: a retryable error with attempts left.
const ANSWER: &str = r#"
WITH a AS MATERIALIZED (
  SELECT j.key AS k, j.value->>'id' AS id, j.value->>'epoch' AS epoch, j.value->>'kind' AS kind,
         j.value->>'worker' AS worker, j.value->>'owner' AS owner,
         j.value->'answer' AS answer, j.value->'error' AS error, j.value->>'runtime_ms' AS runtime_ms
  FROM json_each(?6) AS j)
UPDATE tasks SET
  state = CASE WHEN a.kind = 'ok' THEN 'succeeded'
               WHEN a.kind = 'fatal' OR tasks.attempt >= tasks.max_attempts THEN 'failed'
               ELSE 'queued' END,
  answer = CASE WHEN a.kind = 'ok' THEN a.answer END,
  error = CASE WHEN a.kind = 'ok' THEN NULL ELSE a.error END,
  runtime_ms = coalesce(a.runtime_ms, ?1 - tasks.leased_at),
  answered_epoch = tasks.lease_epoch,
  progress = CASE WHEN a.kind = 'ok' THEN 100.0 ELSE tasks.progress END,
  available_at = CASE WHEN a.kind = 'retryable' AND tasks.attempt < tasks.max_attempts
                      THEN ?1 + min(?2 << min(tasks.attempt - 1, 30), ?3) ELSE tasks.available_at END,
  finished_at = CASE WHEN a.kind = 'retryable' AND tasks.attempt < tasks.max_attempts THEN NULL ELSE ?1 END,
  finish_seq = CASE WHEN a.kind = 'retryable' AND tasks.attempt < tasks.max_attempts THEN NULL ELSE ?4 + a.k END,
  expires_at = CASE WHEN a.kind = 'retryable' AND tasks.attempt < tasks.max_attempts THEN NULL
                    ELSE ?1 + coalesce(tasks.ttl_s, ?5) * 1000 END,
  lease_deadline = NULL, timeout_at = NULL
FROM a
WHERE tasks.id = a.id AND tasks.state = 'leased' AND tasks.lease_epoch = coalesce(a.epoch, tasks.lease_epoch)
  AND (a.worker IS NULL OR tasks.lease_worker = a.worker) AND coalesce(tasks.lease_owner, a.owner) = a.owner
RETURNING tasks.id, tasks.state, tasks.batch_id, tasks.package, tasks.version, tasks.function, tasks.runtime_ms,
          tasks.attempt, tasks.progress, tasks.answer, tasks.error
"#;

const REAP_SELECT: &str =
    "SELECT id FROM tasks WHERE state = 'leased' AND lease_deadline <= ?1 ORDER BY lease_deadline LIMIT ?2";

// `done` below: timed out, or out of attempts.
const REAP_UPDATE: &str = r#"
UPDATE tasks SET
  state = CASE WHEN (timeout_at IS NOT NULL AND timeout_at <= ?1) OR attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
  error = CASE WHEN timeout_at IS NOT NULL AND timeout_at <= ?1
               THEN json_object('kind', 'timeout', 'message',
                    'attempt ' || attempt || ' of ' || max_attempts || ' ran past its timeout of ' || timeout_s || ' s')
               ELSE json_object('kind', 'lease_expired', 'message',
                    'worker ' || coalesce(lease_worker, '?') || ' stopped heartbeating during attempt '
                    || attempt || ' of ' || max_attempts) END,
  available_at = CASE WHEN (timeout_at IS NOT NULL AND timeout_at <= ?1) OR attempt >= max_attempts THEN available_at
                      ELSE ?1 + min(?2 << min(attempt - 1, 30), ?3) END,
  finished_at = CASE WHEN (timeout_at IS NOT NULL AND timeout_at <= ?1) OR attempt >= max_attempts THEN ?1 END,
  finish_seq = CASE WHEN (timeout_at IS NOT NULL AND timeout_at <= ?1) OR attempt >= max_attempts THEN ?4 + a.key END,
  expires_at = CASE WHEN (timeout_at IS NOT NULL AND timeout_at <= ?1) OR attempt >= max_attempts
                    THEN ?1 + coalesce(ttl_s, ?5) * 1000 END,
  lease_deadline = NULL, timeout_at = NULL
FROM json_each(?6) AS a
WHERE tasks.id = a.value AND tasks.state = 'leased'
RETURNING tasks.id, tasks.state, tasks.batch_id
"#;

const CANCEL: &str = r#"
UPDATE tasks SET state = 'cancelled', finished_at = ?1, finish_seq = ?2,
       expires_at = ?1 + coalesce(ttl_s, ?3) * 1000,
       error = json_object('kind', 'cancelled', 'message', 'cancelled by ' || ?4)
WHERE id = ?5 AND state IN ('waiting', 'queued', 'leased')
RETURNING batch_id
"#;

const TASK_COLUMNS: &str = "id, seq, owner, package, version, function, state, priority, attempt, \
     max_attempts, progress, answer, error, runtime_ms, created_at, finished_at, batch_id";

async fn exec(
    conn: &mut SqliteConnection,
    config: &StoreConfig,
    stats: &HashMap<FnKey, FunctionStats>,
    staged: &mut Staged,
    finish_base: i64,
    op: &Op,
) -> Result<Reply, StoreError> {
    match op {
        Op::SubmitOne { owner, task, now } => {
            if let Some(key) = &task.idempotency_key {
                let existing = sqlx::query(
                    "SELECT id, request_hash, state FROM tasks WHERE owner = ?1 AND idempotency_key = ?2",
                )
                .bind(owner)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(row) = existing {
                    let id = parse_uuid(row.try_get("id")?)?;
                    let hash: Option<String> = row.try_get("request_hash")?;
                    return Ok(Reply::Submit(if hash == task.request_hash {
                        SubmitOutcome::Existing {
                            id,
                            state: parse_state(row.try_get("state")?)?,
                        }
                    } else {
                        SubmitOutcome::Conflict { id }
                    }));
                }
            }
            insert_tasks(conn, owner, *now, None, std::slice::from_ref(task)).await?;
            Ok(Reply::Submit(SubmitOutcome::Created))
        }
        Op::SubmitBatch {
            owner,
            batch_id,
            tasks,
            now,
        } => {
            sqlx::query(
                "INSERT INTO batches (id, owner, total, created_at) VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(batch_id.to_string())
            .bind(owner)
            .bind(tasks.len() as i64)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            insert_tasks(conn, owner, *now, Some(*batch_id), tasks).await?;
            Ok(Reply::Unit)
        }
        Op::Claim(req) => {
            let rows = sqlx::query(CLAIM)
                .bind(&req.holder.worker_id)
                .bind(req.now)
                .bind(req.now + req.lease_ttl_ms)
                .bind(req.gpus as i64)
                .bind(
                    req.memory_mb
                        .map(|m| m.min(i64::MAX as u64) as i64)
                        .unwrap_or(i64::MAX),
                )
                .bind(serde_json::to_string(&req.datasets)?)
                .bind(req.max_tasks as i64)
                .bind(config.timeout_grace_ms)
                .bind(&req.holder.owner)
                .fetch_all(&mut *conn)
                .await?;
            let mut leases = Vec::with_capacity(rows.len());
            for row in rows {
                leases.push(lease_from_row(&row)?);
            }
            Ok(Reply::Claim(leases))
        }
        Op::Heartbeat(hb) => {
            let items = heartbeat_json(hb);
            let extended: Vec<String> = sqlx::query_scalar(HEARTBEAT)
                .bind(&items)
                .bind(hb.now + hb.lease_ttl_ms)
                .bind(&hb.holder.worker_id)
                .bind(&hb.holder.owner)
                .fetch_all(&mut *conn)
                .await?;
            let mut out = HeartbeatOutcome::default();
            for id in &extended {
                out.extended.push(parse_uuid(id)?);
            }
            if out.extended.len() < hb.leases.len() {
                let others: Vec<(String, bool)> = sqlx::query_as(HEARTBEAT_OTHERS)
                    .bind(&items)
                    .bind(&hb.holder.worker_id)
                    .bind(&hb.holder.owner)
                    .fetch_all(&mut *conn)
                    .await?;
                for (id, cancelled) in &others {
                    let list = if *cancelled {
                        &mut out.cancelled
                    } else {
                        &mut out.foreign
                    };
                    list.push(parse_uuid(id)?);
                }
                out.lost = lost_leases(hb, &out);
            }
            Ok(Reply::Heartbeat(out))
        }
        Op::Answer { answers, now } => {
            let items: Vec<Value> = answers.iter().map(answer_json).collect();
            let rows = sqlx::query(ANSWER)
                .bind(now)
                .bind(config.backoff_base_ms)
                .bind(config.backoff_max_ms)
                .bind(finish_base)
                .bind(config.default_result_ttl_s)
                .bind(serde_json::to_string(&items)?)
                .fetch_all(&mut *conn)
                .await?;
            staged.finish_seq_used += answers.len() as i64;
            let mut applied: HashMap<Uuid, AnswerOutcome> = HashMap::with_capacity(rows.len());
            let mut touched: HashMap<FnKey, Vec<(f64, bool)>> = HashMap::new();
            for row in rows {
                let id = parse_uuid(row.try_get("id")?)?;
                let state = parse_state(row.try_get("state")?)?;
                let key = FnKey {
                    package: row.try_get("package")?,
                    version: row.try_get("version")?,
                    function: row.try_get("function")?,
                };
                let runtime: Option<f64> = row.try_get("runtime_ms")?;
                touched
                    .entry(key)
                    .or_default()
                    .push((runtime.unwrap_or(0.0), state == TaskState::Succeeded));
                let finished = state
                    .is_terminal()
                    .then(|| -> Result<Finished, StoreError> {
                        Ok(Finished {
                            id,
                            batch_id: opt_uuid(row.try_get("batch_id")?)?,
                            state,
                            snapshot: Some(Snapshot {
                                attempt: row.try_get::<i64, _>("attempt")? as u32,
                                progress: row.try_get("progress")?,
                                answer: row.try_get("answer")?,
                                error: row.try_get("error")?,
                            }),
                        })
                    });
                applied.insert(
                    id,
                    AnswerOutcome::Accepted {
                        finished: finished.transpose()?,
                    },
                );
            }
            for (key, samples) in touched {
                let mut st = staged
                    .stats
                    .get(&key)
                    .or_else(|| stats.get(&key))
                    .cloned()
                    .unwrap_or_else(|| FunctionStats::new(key.clone()));
                for (ms, ok) in samples {
                    st.record(ms, ok, *now);
                }
                staged.stats.insert(key, st);
            }
            let mut out = Vec::with_capacity(answers.len());
            let missing: Vec<&AnswerIn> = answers
                .iter()
                .filter(|a| !applied.contains_key(&a.id))
                .collect();
            let mut rest: HashMap<Uuid, UnappliedRow> = HashMap::new();
            if !missing.is_empty() {
                let ids: Vec<String> = missing.iter().map(|a| a.id.to_string()).collect();
                let rows = sqlx::query(
                    "SELECT id, state, lease_epoch, answered_epoch, lease_worker, lease_owner FROM tasks \
                     WHERE id IN (SELECT value FROM json_each(?1))",
                )
                .bind(serde_json::to_string(&ids)?)
                .fetch_all(&mut *conn)
                .await?;
                for row in rows {
                    rest.insert(
                        parse_uuid(row.try_get("id")?)?,
                        UnappliedRow {
                            state: parse_state(row.try_get("state")?)?,
                            lease_epoch: row.try_get("lease_epoch")?,
                            answered_epoch: row.try_get("answered_epoch")?,
                            lease_worker: row.try_get("lease_worker")?,
                            lease_owner: row.try_get("lease_owner")?,
                        },
                    );
                }
            }
            let mut seen = HashSet::new();
            for a in answers {
                if let Some(o) = applied.get(&a.id) {
                    // A batch naming the same lease twice: the first one applied.
                    out.push(if seen.insert(a.id) {
                        o.clone()
                    } else {
                        AnswerOutcome::Duplicate
                    });
                    continue;
                }
                out.push(classify_unapplied(a, rest.get(&a.id)));
            }
            Ok(Reply::Answer(out))
        }
        Op::Cancel { id, by, now } => {
            let row = sqlx::query(CANCEL)
                .bind(now)
                .bind(finish_base)
                .bind(config.default_result_ttl_s)
                .bind(by)
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                staged.finish_seq_used += 1;
                return Ok(Reply::Cancel(CancelOutcome::Cancelled(Finished {
                    id: *id,
                    batch_id: opt_uuid(row.try_get("batch_id")?)?,
                    state: TaskState::Cancelled,
                    snapshot: None,
                })));
            }
            let state: Option<String> = sqlx::query_scalar("SELECT state FROM tasks WHERE id = ?1")
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
            Ok(Reply::Cancel(match state {
                Some(s) => CancelOutcome::AlreadyFinished(parse_state(&s)?),
                None => CancelOutcome::NotFound,
            }))
        }
        Op::Delete { id } => {
            let row = sqlx::query("DELETE FROM tasks WHERE id = ?1 RETURNING state, batch_id")
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
            Ok(Reply::Delete(match row {
                Some(row) => Some(Finished {
                    id: *id,
                    batch_id: opt_uuid(row.try_get("batch_id")?)?,
                    state: parse_state(row.try_get("state")?)?,
                    snapshot: None,
                }),
                None => None,
            }))
        }
        Op::Reap { now } => {
            let ids: Vec<String> = sqlx::query_scalar(REAP_SELECT)
                .bind(now)
                .bind(REAP_LIMIT)
                .fetch_all(&mut *conn)
                .await?;
            let mut out = ReapOutcome::default();
            if !ids.is_empty() {
                let rows = sqlx::query(REAP_UPDATE)
                    .bind(now)
                    .bind(config.backoff_base_ms)
                    .bind(config.backoff_max_ms)
                    .bind(finish_base)
                    .bind(config.default_result_ttl_s)
                    .bind(serde_json::to_string(&ids)?)
                    .fetch_all(&mut *conn)
                    .await?;
                staged.finish_seq_used += ids.len() as i64;
                for row in rows {
                    let state = parse_state(row.try_get("state")?)?;
                    if state.is_terminal() {
                        out.failed.push(Finished {
                            id: parse_uuid(row.try_get("id")?)?,
                            batch_id: opt_uuid(row.try_get("batch_id")?)?,
                            state,
                            snapshot: None,
                        });
                    } else {
                        out.requeued += 1;
                    }
                }
            }
            out.deleted = sqlx::query(
                "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE expires_at <= ?1 LIMIT ?2)",
            )
            .bind(now)
            .bind(REAP_LIMIT)
            .execute(&mut *conn)
            .await?
            .rows_affected() as usize;
            // A batch record goes once its tasks are all gone and it is past the result TTL (walking
            // `batches_created` from the oldest, so recent batches are never read).
            sqlx::query(
                "DELETE FROM batches WHERE id IN (SELECT id FROM batches WHERE created_at <= ?1 \
                 AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.batch_id = batches.id) ORDER BY created_at LIMIT ?2)",
            )
            .bind(now - config.default_result_ttl_s * 1000)
            .bind(REAP_LIMIT)
            .execute(&mut *conn)
            .await?;
            Ok(Reply::Reap(out))
        }
        Op::UpsertWorker(w) => {
            let n = sqlx::query(
                "INSERT INTO workers (worker_id, owner, slots, capabilities, first_seen, last_seen, dispatch_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6) \
                 ON CONFLICT(worker_id) DO UPDATE SET slots = excluded.slots, \
                 capabilities = excluded.capabilities, last_seen = excluded.last_seen, \
                 dispatch_ms = COALESCE(excluded.dispatch_ms, workers.dispatch_ms) \
                 WHERE workers.owner = excluded.owner",
            )
            .bind(&w.worker_id)
            .bind(&w.owner)
            .bind(w.slots as i64)
            .bind(serde_json::to_string(&w.capabilities)?)
            .bind(w.last_seen)
            .bind(w.dispatch_ms)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            Ok(Reply::Bool(n > 0))
        }
        Op::TouchWorker {
            worker_id,
            owner,
            now,
            dispatch_ms,
        } => {
            sqlx::query(
                "UPDATE workers SET last_seen = max(last_seen, ?2), \
                 dispatch_ms = COALESCE(?3, dispatch_ms) WHERE worker_id = ?1 AND owner = ?4",
            )
            .bind(worker_id)
            .bind(now)
            .bind(dispatch_ms)
            .bind(owner)
            .execute(&mut *conn)
            .await?;
            Ok(Reply::Unit)
        }
        Op::Stats => {
            let mut all: Vec<FunctionStats> = stats
                .iter()
                .filter(|(k, _)| !staged.stats.contains_key(*k))
                .map(|(_, v)| v.clone())
                .chain(staged.stats.values().cloned())
                .collect();
            all.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(Reply::Stats(all))
        }
        Op::Shutdown => Ok(Reply::Unit),
    }
}

async fn upsert_stats(conn: &mut SqliteConnection, st: &FunctionStats) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO function_stats (package, version, function, count, failures, mean_ms, var_ms, sketch, last_seen) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT(package, version, function) DO UPDATE SET count = excluded.count, \
         failures = excluded.failures, mean_ms = excluded.mean_ms, var_ms = excluded.var_ms, \
         sketch = excluded.sketch, last_seen = excluded.last_seen",
    )
    .bind(&st.key.package)
    .bind(&st.key.version)
    .bind(&st.key.function)
    .bind(st.count as i64)
    .bind(st.failures as i64)
    .bind(st.mean_ms)
    .bind(st.var_ms)
    .bind(serde_json::to_string(&st.sketch)?)
    .bind(st.last_seen)
    .execute(conn)
    .await?;
    Ok(())
}

fn stats_from_row(row: &SqliteRow) -> Result<FunctionStats, StoreError> {
    let sketch: String = row.try_get("sketch")?;
    Ok(FunctionStats {
        key: FnKey {
            package: row.try_get("package")?,
            version: row.try_get("version")?,
            function: row.try_get("function")?,
        },
        count: row.try_get::<i64, _>("count")? as u64,
        failures: row.try_get::<i64, _>("failures")? as u64,
        mean_ms: row.try_get("mean_ms")?,
        var_ms: row.try_get("var_ms")?,
        sketch: serde_json::from_str::<Sketch>(&sketch)?,
        last_seen: row.try_get("last_seen")?,
    })
}

fn opt_uuid(s: Option<String>) -> Result<Option<Uuid>, StoreError> {
    s.as_deref().map(parse_uuid).transpose()
}

fn json_col<T: serde::de::DeserializeOwned>(s: Option<String>) -> Result<Option<T>, StoreError> {
    Ok(match s {
        Some(s) => Some(serde_json::from_str(&s)?),
        None => None,
    })
}

fn lease_from_row(row: &SqliteRow) -> Result<Lease, StoreError> {
    let package: String = row.try_get("package")?;
    let version: String = row.try_get("version")?;
    let args: String = row.try_get("args")?;
    let kwargs: String = row.try_get("kwargs")?;
    Ok(Lease {
        id: parse_uuid(row.try_get("id")?)?,
        task: TaskPayload {
            package: crate::stats::non_empty(&package),
            version: crate::stats::non_empty(&version),
            function: row.try_get("function")?,
            args: serde_json::from_str(&args)?,
            kwargs: serde_json::from_str(&kwargs)?,
            timeout_s: row
                .try_get::<Option<i64>, _>("timeout_s")?
                .map(|t| t as u32),
            attempt: row.try_get::<i64, _>("attempt")? as u32,
            max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
            resources: Resources {
                gpus: row.try_get::<i64, _>("req_gpus")? as u32,
                memory_mb: row.try_get::<i64, _>("req_memory_mb")? as u64,
                datasets: json_col(row.try_get("req_datasets")?)?.unwrap_or_default(),
            },
        },
        lease_epoch: row.try_get("lease_epoch")?,
        lease_deadline: row.try_get("lease_deadline")?,
    })
}

fn task_from_row(row: &SqliteRow) -> Result<TaskRecord, StoreError> {
    Ok(TaskRecord {
        id: parse_uuid(row.try_get("id")?)?,
        seq: row.try_get("seq")?,
        owner: row.try_get("owner")?,
        package: row.try_get("package")?,
        version: row.try_get("version")?,
        function: row.try_get("function")?,
        state: parse_state(row.try_get("state")?)?,
        priority: row.try_get::<i64, _>("priority")? as i32,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        progress: row.try_get("progress")?,
        answer: json_col(row.try_get("answer")?)?,
        error: json_col::<TaskError>(row.try_get("error")?)?,
        runtime_ms: row.try_get("runtime_ms")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        batch_id: opt_uuid(row.try_get("batch_id")?)?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<FnKey, StoreError> {
    Ok(FnKey {
        package: row.try_get("package")?,
        version: row.try_get("version")?,
        function: row.try_get("function")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit_one(
        &self,
        owner: &str,
        task: NewTask,
        now: i64,
    ) -> Result<SubmitOutcome, StoreError> {
        let op = Op::SubmitOne {
            owner: owner.to_string(),
            task,
            now,
        };
        expect_reply!(self.call(op).await, Reply::Submit)
    }

    async fn submit_batch(
        &self,
        owner: &str,
        batch_id: Uuid,
        tasks: Vec<NewTask>,
        now: i64,
    ) -> Result<(), StoreError> {
        let op = Op::SubmitBatch {
            owner: owner.to_string(),
            batch_id,
            tasks,
            now,
        };
        self.call(op).await.map(|_| ())
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Lease>, StoreError> {
        expect_reply!(self.call(Op::Claim(req)).await, Reply::Claim)
    }

    async fn heartbeat(&self, hb: HeartbeatIn) -> Result<HeartbeatOutcome, StoreError> {
        expect_reply!(self.call(Op::Heartbeat(hb)).await, Reply::Heartbeat)
    }

    async fn answer(
        &self,
        answers: Vec<AnswerIn>,
        now: i64,
    ) -> Result<Vec<AnswerOutcome>, StoreError> {
        expect_reply!(self.call(Op::Answer { answers, now }).await, Reply::Answer)
    }

    async fn cancel(&self, id: Uuid, by: &str, now: i64) -> Result<CancelOutcome, StoreError> {
        let op = Op::Cancel {
            id,
            by: by.to_string(),
            now,
        };
        expect_reply!(self.call(op).await, Reply::Cancel)
    }

    async fn delete(&self, id: Uuid) -> Result<Option<Finished>, StoreError> {
        expect_reply!(self.call(Op::Delete { id }).await, Reply::Delete)
    }

    async fn reap(&self, now: i64) -> Result<ReapOutcome, StoreError> {
        expect_reply!(self.call(Op::Reap { now }).await, Reply::Reap)
    }

    async fn upsert_worker(&self, w: WorkerRecord) -> Result<bool, StoreError> {
        expect_reply!(self.call(Op::UpsertWorker(w)).await, Reply::Bool)
    }

    async fn touch_worker(
        &self,
        worker_id: &str,
        owner: &str,
        now: i64,
        dispatch_ms: Option<f64>,
    ) -> Result<(), StoreError> {
        let op = Op::TouchWorker {
            worker_id: worker_id.to_string(),
            owner: owner.to_string(),
            now,
            dispatch_ms,
        };
        self.call(op).await.map(|_| ())
    }

    async fn pending_count(&self, owner: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasks WHERE owner = ?1 AND state IN ('waiting', 'queued')",
        )
        .bind(owner)
        .fetch_one(&self.read)
        .await?;
        Ok(n as u64)
    }

    async fn find_memoized(
        &self,
        owner: &str,
        args_hash: &str,
    ) -> Result<Option<(Uuid, TaskState)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, state FROM tasks WHERE args_hash = ?1 AND memoize = 1 AND owner = ?2 \
             AND state IN ('waiting', 'queued', 'leased', 'succeeded') ORDER BY seq DESC LIMIT 1",
        )
        .bind(args_hash)
        .bind(owner)
        .fetch_optional(&self.read)
        .await?;
        match row {
            Some(row) => Ok(Some((
                parse_uuid(row.try_get("id")?)?,
                parse_state(row.try_get("state")?)?,
            ))),
            None => Ok(None),
        }
    }

    async fn get_task(&self, id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn list_tasks(&self, q: ListQuery) -> Result<Vec<TaskRecord>, StoreError> {
        let filter = if q.owner.is_some() {
            "owner = ?1"
        } else {
            "?1 IS NULL"
        };
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE {filter} AND (?2 IS NULL OR state = ?2) \
             AND (?3 IS NULL OR seq < ?3) ORDER BY seq DESC LIMIT ?4"
        );
        let rows = sqlx::query(&sql)
            .bind(q.owner)
            .bind(q.state.map(|s| s.as_str()))
            .bind(q.before)
            .bind(q.limit as i64)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn get_batch(&self, id: Uuid) -> Result<Option<BatchRecord>, StoreError> {
        let row = sqlx::query("SELECT id, owner, total, created_at FROM batches WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(BatchRecord {
                id: parse_uuid(row.try_get("id")?)?,
                owner: row.try_get("owner")?,
                total: row.try_get::<i64, _>("total")? as u64,
                created_at: row.try_get("created_at")?,
            })),
        }
    }

    async fn batch_counts(&self, id: Uuid) -> Result<HashMap<TaskState, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS n FROM tasks WHERE batch_id = ?1 GROUP BY state",
        )
        .bind(id.to_string())
        .fetch_all(&self.read)
        .await?;
        let mut out = HashMap::new();
        for row in rows {
            out.insert(
                parse_state(row.try_get("state")?)?,
                row.try_get::<i64, _>("n")? as u64,
            );
        }
        Ok(out)
    }

    async fn batch_results(
        &self,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<BatchResult>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, batch_index, state, answer, error, finish_seq FROM tasks \
             WHERE batch_id = ?1 AND finish_seq > ?2 ORDER BY finish_seq LIMIT ?3",
        )
        .bind(id.to_string())
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BatchResult {
                    id: parse_uuid(row.try_get("id")?)?,
                    index: row.try_get::<i64, _>("batch_index")? as u64,
                    state: parse_state(row.try_get("state")?)?,
                    answer: json_col(row.try_get("answer")?)?,
                    error: json_col(row.try_get("error")?)?,
                    finish_seq: row.try_get("finish_seq")?,
                })
            })
            .collect()
    }

    async fn queue_load(&self, scope: LoadScope, now: i64) -> Result<QueueLoad, StoreError> {
        let (filter, a, b): (&str, Option<String>, Option<i64>) = match scope {
            LoadScope::All => ("?1 IS NULL AND ?2 IS NULL", None, None),
            LoadScope::Batch(id) => ("batch_id = ?1 AND ?2 IS NULL", Some(id.to_string()), None),
            LoadScope::Ahead { priority, seq } => (
                "(priority > CAST(?1 AS INTEGER) OR (priority = CAST(?1 AS INTEGER) AND seq <= ?2))",
                Some(priority.to_string()),
                Some(seq),
            ),
        };
        let queued_sql = format!(
            "SELECT package, version, function, count(*) AS n FROM tasks \
             WHERE state = 'queued' AND {filter} GROUP BY package, version, function"
        );
        let rows = sqlx::query(&queued_sql)
            .bind(&a)
            .bind(b)
            .fetch_all(&self.read)
            .await?;
        let mut load = QueueLoad::default();
        for row in rows {
            load.queued
                .push((key_from_row(&row)?, row.try_get::<i64, _>("n")? as u64));
        }
        // Tasks ahead of a given one include everything running now.
        let running_filter = match scope {
            LoadScope::Batch(_) => "batch_id = ?1",
            _ => "?1 IS NULL OR ?1 IS NOT NULL",
        };
        let running_sql = format!(
            "SELECT package, version, function, leased_at FROM tasks WHERE state = 'leased' AND ({running_filter})"
        );
        let rows = sqlx::query(&running_sql)
            .bind(&a)
            .fetch_all(&self.read)
            .await?;
        for row in rows {
            let leased_at: Option<i64> = row.try_get("leased_at")?;
            load.running.push((
                key_from_row(&row)?,
                (now - leased_at.unwrap_or(now)).max(0) as f64,
            ));
        }
        Ok(load)
    }

    async fn stats(&self) -> Result<Vec<FunctionStats>, StoreError> {
        expect_reply!(self.call(Op::Stats).await, Reply::Stats)
    }

    async fn workers(&self, since: i64) -> Result<Vec<WorkerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.worker_id, w.owner, w.slots, w.capabilities, w.first_seen, w.last_seen, w.dispatch_ms, \
             (SELECT count(*) FROM tasks t WHERE t.state = 'leased' AND t.lease_worker = w.worker_id) AS running \
             FROM workers w WHERE w.last_seen >= ?1 ORDER BY w.worker_id",
        )
        .bind(since)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let caps: String = row.try_get("capabilities")?;
                Ok(WorkerRecord {
                    worker_id: row.try_get("worker_id")?,
                    owner: row.try_get("owner")?,
                    slots: row.try_get::<i64, _>("slots")? as u32,
                    capabilities: serde_json::from_str(&caps)?,
                    first_seen: row.try_get("first_seen")?,
                    last_seen: row.try_get("last_seen")?,
                    running: row.try_get::<i64, _>("running")? as u64,
                    dispatch_ms: row.try_get("dispatch_ms")?,
                })
            })
            .collect()
    }

    async fn became_ready(&self, after: i64, upto: i64) -> Result<bool, StoreError> {
        let hit: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM tasks WHERE state = 'queued' AND available_at > ?1 AND available_at <= ?2 LIMIT 1",
        )
        .bind(after)
        .bind(upto)
        .fetch_optional(&self.read)
        .await?;
        Ok(hit.is_some())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Job {
                op: Op::Shutdown,
                reply,
            })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        if let Some(handle) = self.writer.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
        self.read.close().await;
    }
}
