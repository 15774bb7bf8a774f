//! PostgreSQL store for several stateless server replicas on one database.
//!
//! Every method is one transaction on a pooled connection; claims lock rows with
//! `FOR UPDATE SKIP LOCKED` inside the one claiming statement; the reaper does the same, so it can
//! run on every replica at once. Runtime statistics are updated under a row lock in the answer's
//! transaction (keys in sorted order, so replicas cannot deadlock), which merges concurrent writers
//! exactly. Replicas wake each other with `LISTEN/NOTIFY` on one channel.
//!
//! Batch-result cursors: with many writers, a number handed out at finish time could become
//! visible after a higher one and a reader would skip it. So `finish_seq` is assigned when results
//! are read, under a per-batch advisory lock, only to rows already committed: numbers follow
//! visibility order, and a cursor never skips.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use task_api::{Lease, Resources, TaskError, TaskPayload, TaskState};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::*;
use crate::stats::{FnKey, FunctionStats, QueueLoad, Sketch};

const CHANNEL: &str = "crpc_events";

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

const REAP_LIMIT: i64 = 1000;

/// The scale-out store.
pub struct PgStore {
    pool: PgPool,
    /// Same database, `synchronous_commit = off`: for leases, heartbeats and worker sightings,
    /// whose loss in a PostgreSQL crash is harmless (a lost lease leaves the task queued, and its
    /// holder's answer is refused with 409 and the task runs again: at-least-once execution,
    /// exactly-once acceptance). Submits and answers stay on the durable pool.
    fast: PgPool,
    config: StoreConfig,
    events: broadcast::Sender<StoreEvent>,
    listener: tokio::task::JoinHandle<()>,
    /// Runtime samples of committed answers not yet merged into `function_stats`.
    pending: Arc<Pending>,
    flusher: tokio::task::JoinHandle<()>,
    /// Held by the background flusher for the whole of a flush, so `close` never aborts it
    /// between taking the samples and committing them (they would be lost).
    flush_lock: Arc<tokio::sync::Mutex<()>>,
    announcer: Arc<Announcer>,
    announce_task: tokio::task::JoinHandle<()>,
}

/// Runtime samples (ms, succeeded, when) per function, waiting to be merged.
type Pending = std::sync::Mutex<BTreeMap<FnKey, Vec<(f64, bool, i64)>>>;

/// How often this replica merges its samples into the shared statistics rows. Locking the row
/// inside every answer's transaction would serialise all answers to one function on that lock
/// for the length of a commit (an fsync): ~500 answers/s at most, whatever the replica count.
const STATS_FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Merges samples into the statistics rows, each under its row lock (keys in sorted order, so
/// replicas cannot deadlock). Replaying raw samples keeps the merge exact across replicas.
async fn flush_stats(pool: &PgPool, pending: &Pending) -> Result<(), StoreError> {
    let batch = std::mem::take(&mut *pending.lock().expect("pending lock"));
    if batch.is_empty() {
        return Ok(());
    }
    let result = async {
        let mut tx = pool.begin().await?;
        for (key, samples) in &batch {
            sqlx::query(
                "INSERT INTO function_stats (package, version, function, count, failures, mean_ms, var_ms, sketch, last_seen) \
                 VALUES ($1, $2, $3, 0, 0, 0, 0, '{}', 0) ON CONFLICT DO NOTHING",
            )
            .bind(&key.package)
            .bind(&key.version)
            .bind(&key.function)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query("SELECT * FROM function_stats WHERE package = $1 AND version = $2 AND function = $3 FOR UPDATE")
                .bind(&key.package)
                .bind(&key.version)
                .bind(&key.function)
                .fetch_one(&mut *tx)
                .await?;
            let mut st = stats_from_row(&row)?;
            for (ms, ok, at) in samples {
                st.record(*ms, *ok, *at);
            }
            sqlx::query(
                "UPDATE function_stats SET count = $4, failures = $5, mean_ms = $6, var_ms = $7, sketch = $8, last_seen = $9 \
                 WHERE package = $1 AND version = $2 AND function = $3",
            )
            .bind(&key.package)
            .bind(&key.version)
            .bind(&key.function)
            .bind(st.count as i64)
            .bind(st.failures as i64)
            .bind(st.mean_ms)
            .bind(st.var_ms)
            .bind(serde_json::to_string(&st.sketch)?)
            .bind(st.last_seen)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok::<(), StoreError>(())
    }
    .await;
    if result.is_err() {
        // Put them back for the next flush.
        let mut p = pending.lock().expect("pending lock");
        for (k, v) in batch {
            p.entry(k).or_default().extend(v);
        }
    }
    result
}

const INSERT: &str = r#"
INSERT INTO tasks (id, owner, package, version, function, args, kwargs, state, priority, max_attempts,
                   timeout_s, available_at, created_at, ttl_s, idempotency_key, request_hash, batch_id,
                   batch_index, args_hash, memoize, req_gpus, req_memory_mb, req_datasets)
SELECT (v->>'id')::uuid, $2, v->>'package', v->>'version', v->>'function', v->'args', v->'kwargs', 'queued',
       (v->>'priority')::bigint, (v->>'max_attempts')::bigint, (v->>'timeout_s')::bigint, $3, $3,
       (v->>'ttl_s')::bigint, v->>'idempotency_key', v->>'request_hash', $4::uuid,
       CASE WHEN $4::uuid IS NULL THEN NULL ELSE e.n - 1 END, v->>'args_hash', (v->>'memoize')::boolean,
       (v->>'req_gpus')::bigint, (v->>'req_memory_mb')::bigint, v->'req_datasets'
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS e(v, n)
"#;

const CLAIM: &str = r#"
UPDATE tasks SET state = 'leased', lease_epoch = lease_epoch + 1, attempt = attempt + 1,
       lease_worker = $1, lease_owner = $9, leased_at = $2, progress = NULL,
       timeout_at = CASE WHEN timeout_s IS NULL THEN NULL ELSE $2 + timeout_s * 1000 + $8 END,
       lease_deadline = CASE WHEN timeout_s IS NULL THEN $3 ELSE LEAST($3, $2 + timeout_s * 1000 + $8) END
WHERE seq = ANY(ARRAY(
    SELECT seq FROM tasks
    WHERE state = 'queued' AND available_at <= $2 AND req_gpus <= $4 AND req_memory_mb <= $5
      AND (req_datasets IS NULL OR req_datasets <@ $6::jsonb)
    ORDER BY priority DESC, seq
    LIMIT $7
    FOR UPDATE SKIP LOCKED))
RETURNING id, package, version, function, args::text AS args, kwargs::text AS kwargs, timeout_s, attempt,
          max_attempts, lease_epoch, lease_deadline, req_gpus, req_memory_mb, req_datasets::text AS req_datasets
"#;

const HEARTBEAT: &str = r#"
WITH a AS (SELECT (v->>'id')::uuid AS id, (v->>'lease_epoch')::bigint AS epoch, (v->>'progress')::float8 AS progress
           FROM jsonb_array_elements($1::jsonb) v)
UPDATE tasks t SET lease_deadline = CASE WHEN t.timeout_at IS NULL THEN $2 ELSE LEAST($2, t.timeout_at) END,
       progress = COALESCE(a.progress, t.progress)
FROM a WHERE t.id = a.id AND t.state = 'leased' AND t.lease_epoch = a.epoch
  AND ($3::text IS NULL OR t.lease_worker = $3) AND COALESCE(t.lease_owner, $4) = $4
RETURNING t.id
"#;

// Cancelled leases of this holder; current leases (epoch matching) of anyone else.
const HEARTBEAT_OTHERS: &str = r#"
SELECT t.id, t.state = 'cancelled' AS cancelled
FROM tasks t JOIN jsonb_array_elements($1::jsonb) v ON t.id = (v->>'id')::uuid
WHERE t.lease_epoch = (v->>'lease_epoch')::bigint AND (
  (t.state = 'cancelled' AND ($2::text IS NULL OR t.lease_worker = $2) AND COALESCE(t.lease_owner, $3) = $3)
  OR (t.state = 'leased' AND NOT (($2::text IS NULL OR t.lease_worker = $2) AND COALESCE(t.lease_owner, $3) = $3)))
"#;

// `retry` below: a retryable error with attempts left.
const ANSWER: &str = r#"
WITH a AS (SELECT (v->>'id')::uuid AS id, (v->>'epoch')::bigint AS epoch, v->>'kind' AS kind,
                  v->>'worker' AS worker, v->>'owner' AS owner,
                  v->'answer' AS answer, v->'error' AS error, (v->>'runtime_ms')::float8 AS runtime_ms
           FROM jsonb_array_elements($4::jsonb) v)
UPDATE tasks t SET
  state = CASE WHEN a.kind = 'ok' THEN 'succeeded'
               WHEN a.kind = 'fatal' OR t.attempt >= t.max_attempts THEN 'failed'
               ELSE 'queued' END,
  answer = CASE WHEN a.kind = 'ok' THEN a.answer END,
  error = CASE WHEN a.kind = 'ok' THEN NULL ELSE a.error END,
  runtime_ms = COALESCE(a.runtime_ms, ($1 - t.leased_at)::float8),
  answered_epoch = t.lease_epoch,
  progress = CASE WHEN a.kind = 'ok' THEN 100.0 ELSE t.progress END,
  available_at = CASE WHEN a.kind = 'retryable' AND t.attempt < t.max_attempts
                      THEN $1 + LEAST($2 * (1::bigint << LEAST(t.attempt - 1, 30)::int), $3) ELSE t.available_at END,
  finished_at = CASE WHEN a.kind = 'retryable' AND t.attempt < t.max_attempts THEN NULL ELSE $1 END,
  finish_order = CASE WHEN a.kind = 'retryable' AND t.attempt < t.max_attempts THEN NULL ELSE nextval('finish_order_counter') END,
  expires_at = CASE WHEN a.kind = 'retryable' AND t.attempt < t.max_attempts THEN NULL
                    ELSE $1 + COALESCE(t.ttl_s, $5) * 1000 END,
  lease_deadline = NULL, timeout_at = NULL
FROM a WHERE t.id = a.id AND t.state = 'leased' AND t.lease_epoch = COALESCE(a.epoch, t.lease_epoch)
  AND (a.worker IS NULL OR t.lease_worker = a.worker) AND COALESCE(t.lease_owner, a.owner) = a.owner
RETURNING t.id, t.state, t.batch_id, t.package, t.version, t.function, t.runtime_ms, t.attempt, t.progress,
          t.answer::text AS answer, t.error::text AS error
"#;

// `done` below: timed out, or out of attempts.
const REAP: &str = r#"
UPDATE tasks t SET
  state = CASE WHEN (t.timeout_at IS NOT NULL AND t.timeout_at <= $1) OR t.attempt >= t.max_attempts THEN 'failed' ELSE 'queued' END,
  error = CASE WHEN t.timeout_at IS NOT NULL AND t.timeout_at <= $1
               THEN jsonb_build_object('kind', 'timeout', 'message',
                    'attempt ' || t.attempt || ' of ' || t.max_attempts || ' ran past its timeout of ' || t.timeout_s || ' s')
               ELSE jsonb_build_object('kind', 'lease_expired', 'message',
                    'worker ' || COALESCE(t.lease_worker, '?') || ' stopped heartbeating during attempt '
                    || t.attempt || ' of ' || t.max_attempts) END,
  available_at = CASE WHEN (t.timeout_at IS NOT NULL AND t.timeout_at <= $1) OR t.attempt >= t.max_attempts THEN t.available_at
                      ELSE $1 + LEAST($2 * (1::bigint << LEAST(t.attempt - 1, 30)::int), $3) END,
  finished_at = CASE WHEN (t.timeout_at IS NOT NULL AND t.timeout_at <= $1) OR t.attempt >= t.max_attempts THEN $1 END,
  finish_order = CASE WHEN (t.timeout_at IS NOT NULL AND t.timeout_at <= $1) OR t.attempt >= t.max_attempts
                      THEN nextval('finish_order_counter') END,
  expires_at = CASE WHEN (t.timeout_at IS NOT NULL AND t.timeout_at <= $1) OR t.attempt >= t.max_attempts
                    THEN $1 + COALESCE(t.ttl_s, $4) * 1000 END,
  lease_deadline = NULL, timeout_at = NULL
WHERE t.seq = ANY(ARRAY(SELECT seq FROM tasks WHERE state = 'leased' AND lease_deadline <= $1
                         ORDER BY lease_deadline LIMIT $5 FOR UPDATE SKIP LOCKED))
RETURNING t.id, t.state, t.batch_id
"#;

const CANCEL: &str = r#"
UPDATE tasks SET state = 'cancelled', finished_at = $1, finish_order = nextval('finish_order_counter'), expires_at = $1 + COALESCE(ttl_s, $2) * 1000,
       error = jsonb_build_object('kind', 'cancelled', 'message', 'cancelled by ' || $3::text)
WHERE id = $4 AND state IN ('waiting', 'queued', 'leased')
RETURNING batch_id
"#;

const TASK_COLUMNS: &str = "id, seq, owner, package, version, function, state, priority, attempt, max_attempts, \
     progress, answer::text AS answer, error::text AS error, runtime_ms, created_at, finished_at, batch_id";

impl PgStore {
    /// Connects, migrates (safe with several replicas starting at once: sqlx takes an advisory
    /// lock) and starts listening for other replicas' events.
    pub async fn open(url: &str, config: StoreConfig) -> Result<Self, StoreError> {
        let opts = url
            .parse::<sqlx::postgres::PgConnectOptions>()?
            .options(QUEUE_PLANNER);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let fast_opts = opts.options([("synchronous_commit", "off")]);
        let fast = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(fast_opts)
            .await?;
        let (events, _) = broadcast::channel(4096);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let tx = events.clone();
        let listener = tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        for p in n.payload().split(',') {
                            let ev = match p.split_once(':') {
                                None if p == "w" => Some(StoreEvent::Work),
                                Some(("t", id)) => Uuid::parse_str(id).ok().map(StoreEvent::Task),
                                Some(("b", id)) => Uuid::parse_str(id).ok().map(StoreEvent::Batch),
                                _ => None,
                            };
                            if let Some(ev) = ev {
                                let _ = tx.send(ev);
                            }
                        }
                    }
                    Err(e) => {
                        // PgListener reconnects on the next recv; wake everyone in case we missed
                        // notifications meanwhile (parked callers re-check the database).
                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                        let _ = tx.send(StoreEvent::Work);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let pending: Arc<Pending> = Arc::default();
        let flush_lock = Arc::new(tokio::sync::Mutex::new(()));
        let (fpool, fpending, flock) = (pool.clone(), pending.clone(), flush_lock.clone());
        let flusher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(STATS_FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let _flushing = flock.lock().await;
                if let Err(e) = flush_stats(&fpool, &fpending).await {
                    tracing::warn!(error = %e, "writing runtime statistics failed; will retry");
                }
            }
        });
        let announcer = Arc::new(Announcer::default());
        // NOTIFYs go through the `synchronous_commit = off` pool: a notification is a hint (parked
        // callers re-check the database), so it need not wait for a WAL flush.
        let announce_task = tokio::spawn(announce_loop(fast.clone(), announcer.clone()));
        Ok(PgStore {
            announcer,
            announce_task,
            pool,
            fast,
            config,
            events,
            listener,
            pending,
            flusher,
            flush_lock,
        })
    }
}

/// Coalesces notifications. Hot transactions never NOTIFY themselves: PostgreSQL serialises the
/// commits of transactions that notified on one global lock. Instead, after a commit, the items are
/// handed here, and a background task sends them at once when idle, else what accumulated
/// during a 2 ms window, as a few NOTIFYs of comma-separated items.
#[derive(Default)]
struct Announcer {
    pending: std::sync::Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
}

/// At most one NOTIFY per window while busy.
const ANNOUNCE_WINDOW: Duration = Duration::from_millis(2);

/// Largest NOTIFY payload sent (PostgreSQL's limit is 8000 bytes).
const PAYLOAD_MAX: usize = 7000;

impl Announcer {
    /// Queues items for the next NOTIFY; call only after the change they announce committed.
    fn announce(&self, items: impl IntoIterator<Item = String>) {
        let mut p = self.pending.lock().expect("announcer lock");
        let before = p.len();
        p.extend(items);
        if p.len() > before {
            self.wake.notify_one();
        }
    }
}

async fn announce_loop(pool: PgPool, ann: Arc<Announcer>) {
    let mut last_sent: Option<Instant> = None;
    loop {
        ann.wake.notified().await;
        // Idle (nothing sent within the window): send at once, so a lone submit or answer wakes the
        // other replicas without delay. Busy: wait out the window, so a burst of commits goes
        // out as one NOTIFY.
        if let Some(since) = last_sent.map(|t| t.elapsed()) {
            if since < ANNOUNCE_WINDOW {
                tokio::time::sleep(ANNOUNCE_WINDOW - since).await;
            }
        }
        let items = std::mem::take(&mut *ann.pending.lock().expect("announcer lock"));
        let mut payloads: Vec<String> = Vec::new();
        let mut cur = String::new();
        for item in items {
            if !cur.is_empty() && cur.len() + item.len() + 1 > PAYLOAD_MAX {
                payloads.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(',');
            }
            cur.push_str(&item);
        }
        if !cur.is_empty() {
            payloads.push(cur);
        }
        if let Err(e) = sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(CHANNEL)
            .bind(&payloads)
            .execute(&pool)
            .await
        {
            // Parked callers also time out and re-check; nothing is lost, only woken later.
            tracing::warn!(error = %e, "NOTIFY failed");
        }
        last_sent = Some(Instant::now());
    }
}

fn finished_payloads(f: &[Finished]) -> Vec<String> {
    let mut out = HashSet::new();
    for f in f {
        out.insert(format!("t:{}", f.id));
        if let Some(b) = f.batch_id {
            out.insert(format!("b:{b}"));
        }
    }
    out.into_iter().collect()
}

fn json_text<T: serde::de::DeserializeOwned>(s: Option<String>) -> Result<Option<T>, StoreError> {
    Ok(match s {
        Some(s) => Some(serde_json::from_str(&s)?),
        None => None,
    })
}

fn key_from_row(row: &PgRow) -> Result<FnKey, StoreError> {
    Ok(FnKey {
        package: row.try_get("package")?,
        version: row.try_get("version")?,
        function: row.try_get("function")?,
    })
}

fn task_from_row(row: &PgRow) -> Result<TaskRecord, StoreError> {
    Ok(TaskRecord {
        id: row.try_get("id")?,
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
        answer: json_text(row.try_get("answer")?)?,
        error: json_text::<TaskError>(row.try_get("error")?)?,
        runtime_ms: row.try_get("runtime_ms")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        batch_id: row.try_get("batch_id")?,
    })
}

fn lease_from_row(row: &PgRow) -> Result<Lease, StoreError> {
    let package: String = row.try_get("package")?;
    let version: String = row.try_get("version")?;
    let args: String = row.try_get("args")?;
    let kwargs: String = row.try_get("kwargs")?;
    Ok(Lease {
        id: row.try_get("id")?,
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
                datasets: json_text(row.try_get("req_datasets")?)?.unwrap_or_default(),
            },
        },
        lease_epoch: row.try_get("lease_epoch")?,
        lease_deadline: row.try_get("lease_deadline")?,
    })
}

fn stats_from_row(row: &PgRow) -> Result<FunctionStats, StoreError> {
    let sketch: String = row.try_get("sketch")?;
    Ok(FunctionStats {
        key: key_from_row(row)?,
        count: row.try_get::<i64, _>("count")? as u64,
        failures: row.try_get::<i64, _>("failures")? as u64,
        mean_ms: row.try_get("mean_ms")?,
        var_ms: row.try_get("var_ms")?,
        sketch: serde_json::from_str::<Sketch>(&sketch)?,
        last_seen: row.try_get("last_seen")?,
    })
}

fn ms(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

#[async_trait]
impl Store for PgStore {
    async fn submit_one(
        &self,
        owner: &str,
        task: NewTask,
        now: i64,
    ) -> Result<SubmitOutcome, StoreError> {
        // One statement (its own transaction) on the common path: insert, and notify the
        // replicas only when a row was inserted.
        let sql = format!(
            "WITH ins AS ({INSERT} ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL \
             DO NOTHING RETURNING id) SELECT id FROM ins"
        );
        let inserted: Option<Uuid> = sqlx::query_scalar(&sql)
            .bind(serde_json::to_string(std::slice::from_ref(&task))?)
            .bind(owner)
            .bind(now)
            .bind(None::<Uuid>)
            .fetch_optional(&self.pool)
            .await?;
        if inserted.is_some() {
            self.announcer.announce(["w".to_string()]);
            return Ok(SubmitOutcome::Created);
        }
        let row = sqlx::query(
            "SELECT id, request_hash, state FROM tasks WHERE owner = $1 AND idempotency_key = $2",
        )
        .bind(owner)
        .bind(&task.idempotency_key)
        .fetch_one(&self.pool)
        .await?;
        let id: Uuid = row.try_get("id")?;
        let hash: Option<String> = row.try_get("request_hash")?;
        Ok(if hash == task.request_hash {
            SubmitOutcome::Existing {
                id,
                state: parse_state(row.try_get("state")?)?,
            }
        } else {
            SubmitOutcome::Conflict { id }
        })
    }

    async fn submit_batch(
        &self,
        owner: &str,
        batch_id: Uuid,
        tasks: Vec<NewTask>,
        now: i64,
    ) -> Result<(), StoreError> {
        // One statement, so one round trip and its own transaction: the batch row and its tasks
        // commit together. (A BEGIN … COMMIT here kept backends idle in transaction, waiting
        // for a CPU-starved replica's next command.)
        let sql = format!(
            "WITH b AS (INSERT INTO batches (id, owner, total, created_at) VALUES ($4, $2, $5, $3)) {INSERT}"
        );
        sqlx::query(&sql)
            .bind(serde_json::to_string(&tasks)?)
            .bind(owner)
            .bind(now)
            .bind(Some(batch_id))
            .bind(tasks.len() as i64)
            .execute(&self.pool)
            .await?;
        self.announcer.announce(["w".to_string()]);
        Ok(())
    }

    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Lease>, StoreError> {
        let rows = sqlx::query(CLAIM)
            .bind(&req.holder.worker_id)
            .bind(req.now)
            .bind(req.now + req.lease_ttl_ms)
            .bind(req.gpus as i64)
            .bind(req.memory_mb.map(ms).unwrap_or(i64::MAX))
            .bind(serde_json::to_string(&req.datasets)?)
            .bind(req.max_tasks as i64)
            .bind(self.config.timeout_grace_ms)
            .bind(&req.holder.owner)
            .fetch_all(&self.fast)
            .await?;
        rows.iter().map(lease_from_row).collect()
    }

    async fn heartbeat(&self, hb: HeartbeatIn) -> Result<HeartbeatOutcome, StoreError> {
        let items = heartbeat_json(&hb);
        let mut out = HeartbeatOutcome {
            extended: sqlx::query_scalar(HEARTBEAT)
                .bind(&items)
                .bind(hb.now + hb.lease_ttl_ms)
                .bind(&hb.holder.worker_id)
                .bind(&hb.holder.owner)
                .fetch_all(&self.fast)
                .await?,
            ..Default::default()
        };
        if out.extended.len() < hb.leases.len() {
            let others: Vec<(Uuid, bool)> = sqlx::query_as(HEARTBEAT_OTHERS)
                .bind(&items)
                .bind(&hb.holder.worker_id)
                .bind(&hb.holder.owner)
                .fetch_all(&self.pool)
                .await?;
            for (id, cancelled) in others {
                if cancelled {
                    out.cancelled.push(id);
                } else {
                    out.foreign.push(id);
                }
            }
            out.lost = lost_leases(&hb, &out);
        }
        Ok(out)
    }

    async fn answer(
        &self,
        answers: Vec<AnswerIn>,
        now: i64,
    ) -> Result<Vec<AnswerOutcome>, StoreError> {
        let items: Vec<Value> = answers.iter().map(answer_json).collect();
        // The UPDATE is its own transaction (one round trip). Answers it did not apply are
        // classified afterwards by a read that, under READ COMMITTED, would see the same
        // committed rows inside a transaction as outside one.
        let rows = sqlx::query(ANSWER)
            .bind(now)
            .bind(self.config.backoff_base_ms)
            .bind(self.config.backoff_max_ms)
            .bind(serde_json::to_string(&items)?)
            .bind(self.config.default_result_ttl_s)
            .fetch_all(&self.pool)
            .await?;
        let mut applied: HashMap<Uuid, AnswerOutcome> = HashMap::with_capacity(rows.len());
        let mut touched: BTreeMap<FnKey, Vec<(f64, bool)>> = BTreeMap::new();
        let mut finished = Vec::new();
        let mut requeued = false;
        for row in &rows {
            let id: Uuid = row.try_get("id")?;
            let state = parse_state(row.try_get("state")?)?;
            let runtime: Option<f64> = row.try_get("runtime_ms")?;
            touched
                .entry(key_from_row(row)?)
                .or_default()
                .push((runtime.unwrap_or(0.0), state == TaskState::Succeeded));
            let f = if state.is_terminal() {
                let f = Finished {
                    id,
                    batch_id: row.try_get("batch_id")?,
                    state,
                    snapshot: Some(Snapshot {
                        attempt: row.try_get::<i64, _>("attempt")? as u32,
                        progress: row.try_get("progress")?,
                        answer: row.try_get("answer")?,
                        error: row.try_get("error")?,
                    }),
                };
                finished.push(f.clone());
                Some(f)
            } else {
                requeued = true;
                None
            };
            applied.insert(id, AnswerOutcome::Accepted { finished: f });
        }
        let mut payloads = finished_payloads(&finished);
        if requeued {
            payloads.push("w".into());
        }
        // Committed: wake the waiters and keep the runtime samples before anything else can fail.
        self.announcer.announce(payloads);
        {
            let mut p = self.pending.lock().expect("pending lock");
            for (key, samples) in touched {
                p.entry(key)
                    .or_default()
                    .extend(samples.into_iter().map(|(ms, ok)| (ms, ok, now)));
            }
        }
        let missing: Vec<Uuid> = answers
            .iter()
            .map(|a| a.id)
            .filter(|id| !applied.contains_key(id))
            .collect();
        let mut rest: HashMap<Uuid, UnappliedRow> = HashMap::new();
        if !missing.is_empty() {
            for row in sqlx::query(
                "SELECT id, state, lease_epoch, answered_epoch, lease_worker, lease_owner \
                 FROM tasks WHERE id = ANY($1)",
            )
            .bind(&missing)
            .fetch_all(&self.pool)
            .await?
            {
                rest.insert(
                    row.try_get("id")?,
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
        Ok(answers
            .iter()
            .map(|a| match applied.get(&a.id) {
                Some(o) if seen.insert(a.id) => o.clone(),
                Some(_) => AnswerOutcome::Duplicate,
                None => classify_unapplied(a, rest.get(&a.id)),
            })
            .collect())
    }

    async fn cancel(&self, id: Uuid, by: &str, now: i64) -> Result<CancelOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(CANCEL)
            .bind(now)
            .bind(self.config.default_result_ttl_s)
            .bind(by)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let out = match row {
            Some(row) => {
                let f = Finished {
                    id,
                    batch_id: row.try_get("batch_id")?,
                    state: TaskState::Cancelled,
                    snapshot: None,
                };
                CancelOutcome::Cancelled(f)
            }
            None => match sqlx::query_scalar::<_, String>("SELECT state FROM tasks WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(s) => CancelOutcome::AlreadyFinished(parse_state(&s)?),
                None => CancelOutcome::NotFound,
            },
        };
        tx.commit().await?;
        if let CancelOutcome::Cancelled(f) = &out {
            self.announcer
                .announce(finished_payloads(std::slice::from_ref(f)));
        }
        Ok(out)
    }

    async fn delete(&self, id: Uuid) -> Result<Option<Finished>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("DELETE FROM tasks WHERE id = $1 RETURNING state, batch_id")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let out = match row {
            Some(row) => {
                let f = Finished {
                    id,
                    batch_id: row.try_get("batch_id")?,
                    state: parse_state(row.try_get("state")?)?,
                    snapshot: None,
                };
                Some(f)
            }
            None => None,
        };
        tx.commit().await?;
        if let Some(f) = &out {
            self.announcer
                .announce(finished_payloads(std::slice::from_ref(f)));
        }
        Ok(out)
    }

    async fn reap(&self, now: i64) -> Result<ReapOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(REAP)
            .bind(now)
            .bind(self.config.backoff_base_ms)
            .bind(self.config.backoff_max_ms)
            .bind(self.config.default_result_ttl_s)
            .bind(REAP_LIMIT)
            .fetch_all(&mut *tx)
            .await?;
        let mut out = ReapOutcome::default();
        for row in rows {
            let state = parse_state(row.try_get("state")?)?;
            if state.is_terminal() {
                out.failed.push(Finished {
                    id: row.try_get("id")?,
                    batch_id: row.try_get("batch_id")?,
                    state,
                    snapshot: None,
                });
            } else {
                out.requeued += 1;
            }
        }
        out.deleted = sqlx::query(
            "DELETE FROM tasks WHERE seq = ANY(ARRAY(SELECT seq FROM tasks WHERE expires_at <= $1 \
             ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))",
        )
        .bind(now)
        .bind(REAP_LIMIT)
        .execute(&mut *tx)
        .await?
        .rows_affected() as usize;
        // A batch record goes once its tasks are all gone and it is past the result TTL (walking
        // `batches_created` from the oldest, so recent batches are never read).
        sqlx::query(
            "DELETE FROM batches WHERE id = ANY(ARRAY(SELECT id FROM batches WHERE created_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.batch_id = batches.id) ORDER BY created_at LIMIT $2 \
             FOR UPDATE SKIP LOCKED))",
        )
        .bind(now - self.config.default_result_ttl_s * 1000)
        .bind(REAP_LIMIT)
        .execute(&mut *tx)
        .await?;
        let mut payloads = finished_payloads(&out.failed);
        if out.requeued > 0 {
            payloads.push("w".into());
        }
        tx.commit().await?;
        self.announcer.announce(payloads);
        Ok(out)
    }

    async fn upsert_worker(&self, w: WorkerRecord) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO workers (worker_id, owner, slots, capabilities, first_seen, last_seen, dispatch_ms) \
             VALUES ($1, $2, $3, $4::jsonb, $5, $5, $6) \
             ON CONFLICT (worker_id) DO UPDATE SET slots = excluded.slots, \
             capabilities = excluded.capabilities, last_seen = GREATEST(workers.last_seen, excluded.last_seen), \
             dispatch_ms = COALESCE(excluded.dispatch_ms, workers.dispatch_ms) \
             WHERE workers.owner = excluded.owner",
        )
        .bind(&w.worker_id)
        .bind(&w.owner)
        .bind(w.slots as i64)
        .bind(serde_json::to_string(&w.capabilities)?)
        .bind(w.last_seen)
        .bind(w.dispatch_ms)
        .execute(&self.fast)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn touch_worker(
        &self,
        worker_id: &str,
        owner: &str,
        now: i64,
        dispatch_ms: Option<f64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE workers SET last_seen = GREATEST(last_seen, $2), \
             dispatch_ms = COALESCE($3, dispatch_ms) WHERE worker_id = $1 AND owner = $4",
        )
        .bind(worker_id)
        .bind(now)
        .bind(dispatch_ms)
        .bind(owner)
        .execute(&self.fast)
        .await?;
        Ok(())
    }

    async fn pending_count(&self, owner: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasks WHERE owner = $1 AND state IN ('waiting', 'queued')",
        )
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    async fn find_memoized(
        &self,
        owner: &str,
        args_hash: &str,
    ) -> Result<Option<(Uuid, TaskState)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, state FROM tasks WHERE args_hash = $1 AND memoize AND owner = $2 \
             AND state IN ('waiting', 'queued', 'leased', 'succeeded') ORDER BY seq DESC LIMIT 1",
        )
        .bind(args_hash)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some((
                row.try_get("id")?,
                parse_state(row.try_get("state")?)?,
            ))),
            None => Ok(None),
        }
    }

    async fn get_task(&self, id: Uuid) -> Result<Option<TaskRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn list_tasks(&self, q: ListQuery) -> Result<Vec<TaskRecord>, StoreError> {
        let filter = if q.owner.is_some() {
            "owner = $1"
        } else {
            "$1::text IS NULL"
        };
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE {filter} AND ($2::text IS NULL OR state = $2) \
             AND ($3::bigint IS NULL OR seq < $3) ORDER BY seq DESC LIMIT $4"
        ))
        .bind(q.owner)
        .bind(q.state.map(|s| s.as_str()))
        .bind(q.before)
        .bind(q.limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn get_batch(&self, id: Uuid) -> Result<Option<BatchRecord>, StoreError> {
        let row = sqlx::query("SELECT id, owner, total, created_at FROM batches WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some(BatchRecord {
                id: row.try_get("id")?,
                owner: row.try_get("owner")?,
                total: row.try_get::<i64, _>("total")? as u64,
                created_at: row.try_get("created_at")?,
            })),
        }
    }

    async fn batch_counts(&self, id: Uuid) -> Result<HashMap<TaskState, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT state, count(*) AS n FROM tasks WHERE batch_id = $1 GROUP BY state",
        )
        .bind(id)
        .fetch_all(&self.pool)
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
        // Number the batch's newly visible finished rows, one sequencer per batch at a time.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE tasks t SET finish_seq = o.fs FROM \
             (SELECT seq, nextval('finish_seq_counter') AS fs FROM \
               (SELECT seq FROM tasks WHERE batch_id = $1 AND finished_at IS NOT NULL AND finish_seq IS NULL \
                ORDER BY finish_order, seq) x) o \
             WHERE t.seq = o.seq",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let rows = sqlx::query(
            "SELECT id, batch_index, state, answer::text AS answer, error::text AS error, finish_seq FROM tasks \
             WHERE batch_id = $1 AND finish_seq > $2 ORDER BY finish_seq LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BatchResult {
                    id: row.try_get("id")?,
                    index: row.try_get::<i64, _>("batch_index")? as u64,
                    state: parse_state(row.try_get("state")?)?,
                    answer: json_text(row.try_get("answer")?)?,
                    error: json_text(row.try_get("error")?)?,
                    finish_seq: row.try_get("finish_seq")?,
                })
            })
            .collect()
    }

    async fn queue_load(&self, scope: LoadScope, now: i64) -> Result<QueueLoad, StoreError> {
        let (filter, batch, prio, seq): (&str, Option<Uuid>, Option<i64>, Option<i64>) = match scope
        {
            LoadScope::All => (
                "$1::uuid IS NULL AND $2::bigint IS NULL AND $3::bigint IS NULL",
                None,
                None,
                None,
            ),
            LoadScope::Batch(id) => (
                "batch_id = $1 AND $2::bigint IS NULL AND $3::bigint IS NULL",
                Some(id),
                None,
                None,
            ),
            LoadScope::Ahead { priority, seq } => (
                "$1::uuid IS NULL AND (priority > $2 OR (priority = $2 AND seq <= $3))",
                None,
                Some(priority as i64),
                Some(seq),
            ),
        };
        let mut load = QueueLoad::default();
        let rows = sqlx::query(&format!(
            "SELECT package, version, function, count(*) AS n FROM tasks WHERE state = 'queued' AND {filter} \
             GROUP BY package, version, function"
        ))
        .bind(batch)
        .bind(prio)
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            load.queued
                .push((key_from_row(&row)?, row.try_get::<i64, _>("n")? as u64));
        }
        let running_filter = if matches!(scope, LoadScope::Batch(_)) {
            "batch_id = $1"
        } else {
            "$1::uuid IS NULL"
        };
        let rows = sqlx::query(&format!(
            "SELECT package, version, function, leased_at FROM tasks WHERE state = 'leased' AND {running_filter}"
        ))
        .bind(batch)
        .fetch_all(&self.pool)
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
        // This replica's own recent samples first, so its readers never see them missing.
        flush_stats(&self.pool, &self.pending).await?;
        let rows = sqlx::query(
            "SELECT * FROM function_stats WHERE count > 0 ORDER BY package, version, function",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stats_from_row).collect()
    }

    async fn workers(&self, since: i64) -> Result<Vec<WorkerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.worker_id, w.owner, w.slots, w.capabilities::text AS capabilities, w.first_seen, w.last_seen, w.dispatch_ms, \
             (SELECT count(*) FROM tasks t WHERE t.state = 'leased' AND t.lease_worker = w.worker_id) AS running \
             FROM workers w WHERE w.last_seen >= $1 ORDER BY w.worker_id",
        )
        .bind(since)
        .fetch_all(&self.pool)
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
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'queued' AND available_at > $1 AND available_at <= $2)",
        )
        .bind(after)
        .bind(upto)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        // Not in the middle of a flush: its samples would be lost with the aborted task.
        let _flushing = self.flush_lock.lock().await;
        self.flusher.abort();
        self.announce_task.abort();
        if let Err(e) = flush_stats(&self.pool, &self.pending).await {
            tracing::warn!(error = %e, "could not write the last runtime statistics");
        }
        self.listener.abort();
        self.pool.close().await;
    }

    fn events(&self) -> Option<broadcast::Receiver<StoreEvent>> {
        Some(self.events.subscribe())
    }
}
