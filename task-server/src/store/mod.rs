//! Durable state behind the [`Store`] and [`StoreReads`] traits. Three layers:
//! - `queries/<dialect>/*.sql`: the SQL text, one file per statement;
//! - [`statements`](self::statements): one Rust function per statement, typed parameters and
//!   typed rows ([`rows`]), written once and expanded per dialect;
//! - [`core`]: the domain decisions (retry policy, answer/heartbeat/cancel/reap outcomes,
//!   statistics merging), written once above the statements.
//!
//! Each backend (`sqlite/`, `postgres/`) adds only what is its own: SQLite's single writer with
//! group commit, PostgreSQL's replica notifications and shared statistics. The conformance suite
//! (`tests/it/store_conformance.rs`) runs unchanged against both.
use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{json, Map, Value};
use task_api::{HeartbeatLease, Lease, LeaseRef, TaskError, TaskState};
use uuid::Uuid;

use crate::cost::Cost;
use crate::stats::{FunctionStats, Predictors, QueueLoad};

pub mod core;
pub mod postgres;
pub mod rows;
pub mod sqlite;
mod statements;

/// Rows one reaper pass, or one sweep of a restarted processor's old leases, touches at most
/// (callers loop while a pass comes back full).
pub const REAP_LIMIT: i64 = 1000;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// What store methods return.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Store failures. Bad input never gets here: the domain layer validates first.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored JSON column did not parse.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// Policy the store applies when it moves tasks between states.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// First retry delay, ms; doubles each attempt.
    pub backoff_base_ms: i64,
    /// Cap of the retry delay, ms.
    pub backoff_max_ms: i64,
    /// How long finished tasks are kept when the task names no `ttl_s`, seconds.
    pub default_result_ttl_s: i64,
    /// Slack past `timeout_s` before the server fails a running task itself (the processor
    /// enforces the timeout exactly; this is the backstop for a processor that hangs).
    pub timeout_grace_ms: i64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backoff_base_ms: 1000,
            backoff_max_ms: 300_000,
            default_result_ttl_s: 7 * 24 * 3600,
            timeout_grace_ms: 1000,
        }
    }
}

/// A validated task, ready to insert. Serialized as one element of the insert's JSON array.
#[derive(Debug, Clone, Serialize)]
pub struct NewTask {
    /// UUID v7.
    pub id: Uuid,
    /// '' when none.
    pub package: String,
    /// '' when none.
    pub version: String,
    /// Function name.
    pub function: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// Higher first.
    pub priority: i32,
    /// ≥ 1.
    pub max_attempts: u32,
    /// Per-attempt limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
    /// Result retention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// Owner-scoped dedup key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// sha256 of the request body (idempotency comparisons).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    /// sha256 of package@version/function/args/kwargs (memoization).
    pub args_hash: String,
    /// Reuse finished answers.
    pub memoize: bool,
    /// GPUs needed.
    pub req_gpus: u32,
    /// Memory needed, MiB.
    pub req_memory_mb: u64,
    /// Datasets needed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub req_datasets: Vec<String>,
    /// Cost measures (cost.rs).
    pub cost: Cost,
    /// `waiting` (it waits for `depends_on`) or `queued`.
    pub state: TaskState,
    /// Not leased before this time, ms (`not_before`/`delay_s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// The tasks it waits for (graph.rs), each once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Uuid>,
    /// Where its cost measures are, measured once it is queued (a waiting task only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_at: Option<crate::cost::CostAt>,
    /// Its function's cap, when the manifest limits the function (caps.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_fn: Option<String>,
    /// Its submit's concurrency key, scoped to the owner (caps.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_key: Option<String>,
    /// The limits of those caps, recorded with it.
    #[serde(skip)]
    pub limits: Vec<crate::caps::CapLimit>,
    /// The blobs its arguments name (`{"$file": "sha256:…"}`), each once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

impl NewTask {
    /// Whether a cap holds it (it is inserted gated).
    pub fn capped(&self) -> bool {
        self.cap_fn.is_some() || self.cap_key.is_some()
    }

    /// The limits `tasks` carry and the caps a gate pass should open after inserting them
    /// (none when no task is capped).
    pub fn gates(tasks: &[NewTask]) -> (Vec<crate::caps::CapLimit>, Vec<String>) {
        let mut limits: Vec<crate::caps::CapLimit> = Vec::new();
        let mut keys = Vec::new();
        for t in tasks.iter().filter(|t| t.capped()) {
            for l in &t.limits {
                if !limits.iter().any(|x| x.key == l.key) {
                    limits.push(l.clone());
                }
            }
            if t.state == TaskState::Queued {
                keys.extend(t.cap_fn.iter().chain(&t.cap_key).cloned());
            }
        }
        keys.sort_unstable();
        keys.dedup();
        (limits, keys)
    }

    /// Waiting tasks of `tasks` that wait for a task outside them (which may have finished
    /// before the edges were committed: the insert settles these at once).
    pub fn waiting_on_others(tasks: &[NewTask]) -> Vec<Uuid> {
        let ours: std::collections::HashSet<Uuid> = tasks.iter().map(|t| t.id).collect();
        tasks
            .iter()
            .filter(|t| t.depends_on.iter().any(|d| !ours.contains(d)))
            .map(|t| t.id)
            .collect()
    }

    /// The files `tasks` take (JSON `[[task, sha256], …]`); `None` when none takes one.
    pub fn files_json(tasks: &[NewTask]) -> Option<String> {
        let pairs: Vec<(Uuid, &str)> = tasks
            .iter()
            .flat_map(|t| t.files.iter().map(move |f| (t.id, f.as_str())))
            .collect();
        (!pairs.is_empty()).then(|| json!(pairs).to_string())
    }

    /// The edges of `tasks` (JSON `[[task, dep], …]`) and the tasks they point at (JSON ids);
    /// `None` when no task waits.
    pub fn edges_json(tasks: &[NewTask]) -> Option<(String, String)> {
        let edges: Vec<(Uuid, Uuid)> = tasks
            .iter()
            .flat_map(|t| t.depends_on.iter().map(move |d| (t.id, *d)))
            .collect();
        if edges.is_empty() {
            return None;
        }
        let mut deps: Vec<Uuid> = edges.iter().map(|e| e.1).collect();
        deps.sort_unstable();
        deps.dedup();
        Some((json!(edges).to_string(), json!(deps).to_string()))
    }
}

/// Caps of each kind (functions, concurrency keys) one sweeping gate pass opens, at most.
pub const GATE_SWEEP_KEYS: i64 = 500;

/// Broadcasts made this recently are sent again with every heartbeat that asks for newer ones:
/// a PostgreSQL `seq` can become visible after a higher one, and a processor that already saw a
/// broadcast recognises it by id.
pub const BROADCAST_REPEAT_MS: i64 = 60_000;

/// A broadcast to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBroadcastRecord {
    /// Broadcast id.
    pub id: Uuid,
    /// Target package.
    pub package: String,
    /// Target versions (exact or a requirement); `None`: all.
    pub version: Option<String>,
    /// Payload.
    pub payload: serde_json::Value,
    /// Who made it (token subject).
    pub created_by: String,
    /// ms.
    pub created_at: i64,
}

/// One owner's copy of a blob (files.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct FileRow {
    /// Hex sha256 of the bytes.
    pub sha256: String,
    /// Token subject it belongs to (its quota).
    pub owner: String,
    /// Where the bytes are in the blob store.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Uploaded (or last uploaded again), ms.
    pub created_at: i64,
}

/// What recording an upload did.
#[derive(Debug, Clone, PartialEq)]
pub enum AddFile {
    /// Recorded: the upload's object is now this copy.
    Added,
    /// The owner already had these bytes, at this key (renewed): the upload's object is spare.
    Existed(String),
    /// Refused: the owner's files already take `used` bytes.
    OverQuota {
        /// Bytes the owner's files take.
        used: u64,
    },
}

/// Who reads a blob, for `file_for`.
#[derive(Debug, Clone, PartialEq)]
pub enum FileReader {
    /// Any blob.
    Admin,
    /// A user: its own uploads and the files its tasks take.
    User(String),
    /// A worker token: the files of the tasks it holds leases on.
    Worker(String),
}

impl FileReader {
    /// The kind and subject the statement takes.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            FileReader::Admin => ("admin", ""),
            FileReader::User(s) => ("user", s),
            FileReader::Worker(s) => ("worker", s),
        }
    }
}

/// A task's owner and lease, for a worker's upload of its output.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseOf {
    /// The task's owner.
    pub owner: String,
    /// Its state.
    pub state: TaskState,
    /// Token subject of the worker holding (or that last held) its lease.
    pub holder: Option<String>,
    /// The lease's fencing token.
    pub epoch: i64,
}

/// Copies of blobs one expiry pass removes, at most.
pub const EXPIRE_FILES: i64 = 500;

/// A recurring schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    /// Schedule id.
    pub id: Uuid,
    /// Whose tasks it submits.
    pub owner: String,
    /// Five fields, or six with seconds first.
    pub cron: String,
    /// IANA time zone the cron fields are read in.
    pub timezone: String,
    /// What each tick submits.
    pub task: task_api::TaskSpec,
    /// The next tick, ms.
    pub next_at: i64,
    /// ms.
    pub created_at: i64,
    /// Ticks that submitted a task.
    pub fired: u64,
    /// The task of the last tick that fired.
    pub last_task: Option<Uuid>,
}

/// What settling waiting tasks did (graph.rs decides, the store applies).
#[derive(Debug, Clone, Default)]
pub struct Settled {
    /// Waiting tasks queued (their dependencies all succeeded).
    pub queued: usize,
    /// Waiting tasks finished without running: failed with `dependency_failed`, or succeeded
    /// with a memoized answer for the same substituted arguments.
    pub finished: Vec<Finished>,
    /// Caps of the capped tasks queued: a gate pass should open them.
    pub gates: Vec<String>,
}

/// Result of a single submit.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitOutcome {
    /// Inserted.
    Created,
    /// Same owner, key and body as an existing task: that task.
    Existing {
        /// The existing task.
        id: Uuid,
        /// Its state now.
        state: TaskState,
    },
    /// Same owner and key, different body.
    Conflict {
        /// The task holding the key.
        id: Uuid,
    },
}

/// What a worker asks for.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Who takes the leases.
    pub holder: Holder,
    /// At most this many.
    pub max_tasks: u32,
    /// GPUs free on the asking worker.
    pub gpus: u32,
    /// Memory per task, MiB (`None`: unlimited).
    pub memory_mb: Option<u64>,
    /// Datasets the worker holds.
    pub datasets: Vec<String>,
    /// Now, ms.
    pub now: i64,
    /// Lease length, ms.
    pub lease_ttl_ms: i64,
    /// The asking processor's run, recorded on each lease.
    pub incarnation: Option<Uuid>,
    /// The lease request's id, recorded on each lease (see [`Store::granted`]).
    pub request_id: Option<Uuid>,
    /// Only tasks that need a GPU.
    pub gpu_only: bool,
    /// Each lease's `expected_ms` is its task's predicted runtime by these.
    pub predictors: Option<Arc<Predictors>>,
    /// The processor runs chained leases (`RequestTask::chains`): lease the chains behind the
    /// tasks claimed (see `rows::chain_heads`).
    pub chains: bool,
    /// Predicted work the processor holds already, ms (`RequestTask::held_ms`): chained
    /// leases take what is left of their budget.
    pub held_ms: f64,
}

/// A heartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatIn {
    /// Who sends it.
    pub holder: Holder,
    /// The leases still held.
    pub leases: Vec<HeartbeatLease>,
    /// Now, ms.
    pub now: i64,
    /// Lease length, ms.
    pub lease_ttl_ms: i64,
}

/// What became of each lease in a heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatOutcome {
    /// Extended.
    pub extended: Vec<Uuid>,
    /// Cancelled by the owner: stop.
    pub cancelled: Vec<Uuid>,
    /// Not held any more: stop, do not answer.
    pub lost: Vec<Uuid>,
    /// Current leases (epoch matching) that another worker holds: nothing changed for them.
    pub foreign: Vec<Uuid>,
}

/// Who holds a lease: the worker id and the token subject it runs under. Heartbeats and answers
/// apply only when both match the lease; one that names no worker id speaks for every worker of
/// its subject (the token is the credential; worker ids tell a subject's processors apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The worker id (`lease_worker`); always set for a claim.
    pub worker_id: Option<String>,
    /// Its token subject (`lease_owner`).
    pub owner: String,
}

/// How an attempt ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerKind {
    /// Return value.
    Ok(Value),
    /// Never retry.
    Fatal(TaskError),
    /// Retry if attempts are left.
    Retryable(TaskError),
}

/// One answer from a worker.
#[derive(Debug, Clone)]
pub struct AnswerIn {
    /// Task.
    pub id: Uuid,
    /// Fencing token; `None` (the seed's protocol): the current lease, if the sender holds it.
    pub lease_epoch: Option<i64>,
    /// Who sends it.
    pub holder: Holder,
    /// Outcome.
    pub kind: AnswerKind,
    /// Worker-measured runtime.
    pub runtime_ms: Option<f64>,
}

/// A task that reached a terminal state (for waking waiters).
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Task.
    pub id: Uuid,
    /// Its batch.
    pub batch_id: Option<Uuid>,
    /// Terminal state.
    pub state: TaskState,
    /// The finished row as waiters see it, when the statement that finished it returned it
    /// (answers do): lets a parked `?wait=` caller answer without reading the row again.
    pub snapshot: Option<Snapshot>,
}

/// What `request_answer` shows of a finished task; JSON columns kept as text until needed.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Attempts started.
    pub attempt: u32,
    /// Progress 0–100.
    pub progress: Option<f64>,
    /// Answer JSON text.
    pub answer: Option<String>,
    /// Error JSON text.
    pub error: Option<String>,
}

/// What became of one answer.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerOutcome {
    /// Applied; `finished` when the task is now terminal, else it went back to the queue.
    Accepted {
        /// Set when terminal.
        finished: Option<Finished>,
    },
    /// This very lease's answer was already accepted (a retried request): nothing changed.
    Duplicate,
    /// The lease is no longer current (expired and re-leased, cancelled): nothing changed.
    Stale {
        /// State now.
        state: TaskState,
    },
    /// The current lease is someone else's: nothing changed.
    NotHolder,
    /// No such task.
    NotFound,
}

/// What a task looks like to an answer that did not apply, for [`classify_unapplied`].
#[derive(Debug, Clone)]
pub struct UnappliedRow {
    /// State now.
    pub state: TaskState,
    /// Current lease epoch.
    pub lease_epoch: i64,
    /// Epoch whose answer was accepted.
    pub answered_epoch: Option<i64>,
    /// The current (or last) lease's worker id.
    pub lease_worker: Option<String>,
    /// The current (or last) lease's token subject.
    pub lease_owner: Option<String>,
}

/// What became of a processor sighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Recorded.
    Recorded,
    /// The worker id belongs to another token subject: nothing written.
    Taken,
    /// A newer run of this worker id was seen: this one is over, nothing written.
    Superseded,
}

/// Why leases were taken from their holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLoss {
    /// The holder stopped heartbeating until the lease expired.
    Expired,
    /// The holder's processor started again under the same worker id.
    Restarted,
}

/// What the reaper did.
#[derive(Debug, Clone, Default)]
pub struct ReapOutcome {
    /// Expired leases put back in the queue.
    pub requeued: usize,
    /// Expired leases failed for good (out of attempts, or timed out).
    pub failed: Vec<Finished>,
    /// Finished tasks past their retention, deleted.
    pub deleted: usize,
    /// Chained leases (`Lease::follows`) taken back: `waiting` again, to be settled.
    pub unchained: Vec<Uuid>,
}

/// What became of a cancel.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// Now cancelled; a worker holding it learns at its next heartbeat.
    Cancelled(Finished),
    /// Already terminal.
    AlreadyFinished(TaskState),
    /// No such task.
    NotFound,
}

/// How many tasks of one function are in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCount {
    /// State.
    pub state: TaskState,
    /// Package ('' when the task names none).
    pub package: String,
    /// Function.
    pub function: String,
    /// Tasks.
    pub n: u64,
}

/// A task row as read back.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    /// Task id.
    pub id: Uuid,
    /// Queue position (also the list cursor).
    pub seq: i64,
    /// Submitter.
    pub owner: String,
    /// '' when none.
    pub package: String,
    /// '' when none.
    pub version: String,
    /// Function.
    pub function: String,
    /// State.
    pub state: TaskState,
    /// Priority.
    pub priority: i32,
    /// Attempts started.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Progress 0–100.
    pub progress: Option<f64>,
    /// Answer JSON.
    pub answer: Option<Value>,
    /// Last error.
    pub error: Option<TaskError>,
    /// Runtime of the answered attempt.
    pub runtime_ms: Option<f64>,
    /// ms.
    pub created_at: i64,
    /// ms.
    pub finished_at: Option<i64>,
    /// Batch.
    pub batch_id: Option<Uuid>,
    /// The current (or last) attempt's lease.
    pub lease: Option<LeaseInfo>,
    /// Attempts that ended because their processor stopped or restarted.
    pub lost_leases: u32,
    /// Positional arguments (read by `get_task` only).
    pub args: Option<Vec<Value>>,
    /// Keyword arguments (read by `get_task` only).
    pub kwargs: Option<serde_json::Map<String, Value>>,
    /// Attempts that ended with the task going back to the queue (read by `get_task` only).
    pub past_attempts: Vec<task_api::AttemptView>,
}

pub use task_api::LeaseInfo;

/// A batch row.
#[derive(Debug, Clone)]
pub struct BatchRecord {
    /// Batch id.
    pub id: Uuid,
    /// Submitter.
    pub owner: String,
    /// Tasks in it.
    pub total: u64,
    /// ms.
    pub created_at: i64,
}

/// One finished task of a batch, in completion order.
#[derive(Debug, Clone)]
pub struct BatchResult {
    /// Task id.
    pub id: Uuid,
    /// Position in the submitted list.
    pub index: u64,
    /// Terminal state.
    pub state: TaskState,
    /// Answer when succeeded.
    pub answer: Option<Value>,
    /// Error when failed or cancelled.
    pub error: Option<TaskError>,
    /// Completion cursor.
    pub finish_seq: i64,
}

impl BatchResult {
    /// As the results route shows it.
    pub fn into_item(self) -> task_api::BatchResultItem {
        task_api::BatchResultItem {
            id: self.id,
            index: self.index,
            state: self.state,
            answer: self.answer,
            error: self.error,
        }
    }
}

/// A processor as last seen (`running` is filled on read).
pub use task_api::WorkerInfo as WorkerRecord;

/// Filter for listing tasks.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Only this owner's tasks (`None`: everyone's, admin only).
    pub owner: Option<String>,
    /// Only this state.
    pub state: Option<TaskState>,
    /// Only tasks older than this cursor (seq).
    pub before: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// The reads of the durable queue: the same statements and conversions on every backend
/// (implemented once, by `statements::store_reads!`).
#[async_trait]
pub trait StoreReads: Send + Sync + 'static {
    /// Queued (waiting or queued, not yet running) tasks of `owner`.
    async fn pending_count(&self, owner: &str) -> Result<u64>;
    /// A copy of blob `sha256` that `reader` may read: its key and size.
    async fn file_for(&self, sha256: &str, reader: &FileReader) -> Result<Option<(String, u64)>>;
    /// Those of `shas` that `owner` may not name in a task.
    async fn unreadable_files(&self, owner: &str, shas: &[String]) -> Result<Vec<String>>;
    /// Bytes of `owner`'s files.
    async fn file_usage(&self, owner: &str) -> Result<u64>;
    /// Who owns task `id` and who holds its lease.
    async fn lease_of(&self, id: Uuid) -> Result<Option<LeaseOf>>;
    /// The newest memoizing task of `owner` with these arguments that is not failed or cancelled.
    async fn find_memoized(
        &self,
        owner: &str,
        args_hash: &str,
    ) -> Result<Option<(Uuid, TaskState)>>;
    /// The finished results of batch `id` in input order from index `from` on, up to the first
    /// task not finished yet (tasks deleted or expired are skipped); each result's
    /// `finish_seq` is its index + 1, the cursor of the next page.
    async fn batch_results_ordered(
        &self,
        id: Uuid,
        from: u64,
        limit: u32,
    ) -> Result<Vec<BatchResult>>;
    /// Schedules of `owner` (`None`: everyone's), oldest first, at most `limit`.
    async fn schedules_of(&self, owner: Option<&str>, limit: u32) -> Result<Vec<ScheduleRecord>>;
    /// Schedules whose next tick is at or before `now`, earliest first.
    async fn due_schedules(&self, now: i64, limit: u32) -> Result<Vec<ScheduleRecord>>;
    /// Broadcasts after `since` (0: the latest per target), plus any of the last
    /// [`BROADCAST_REPEAT_MS`] before `now`, oldest first, at most 100.
    async fn broadcasts_since(&self, since: i64, now: i64) -> Result<Vec<task_api::Broadcast>>;
    /// A broadcast and what processors reported of it.
    async fn broadcast(
        &self,
        id: Uuid,
    ) -> Result<Option<(task_api::Broadcast, Vec<task_api::BroadcastReport>)>>;
    /// The waiting tasks (of batch `batch`, or all), at most `limit`, with what they wait for:
    /// the estimate's critical path.
    async fn waiting_graph(
        &self,
        batch: Option<Uuid>,
        limit: u32,
    ) -> Result<crate::graph::WaitingGraph>;
    /// The owner of each of `ids` that exists.
    async fn owners_of(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, String>>;
    /// One task.
    async fn get_task(&self, id: Uuid) -> Result<Option<TaskRecord>>;
    /// A page of tasks, newest first.
    async fn list_tasks(&self, q: ListQuery) -> Result<Vec<TaskRecord>>;
    /// One batch.
    async fn get_batch(&self, id: Uuid) -> Result<Option<BatchRecord>>;
    /// Whether a batch still has unfinished tasks (cheap: the long-polls ask it at every wake).
    async fn batch_open(&self, id: Uuid) -> Result<bool>;
    /// Task counts of a batch by state.
    async fn batch_counts(&self, id: Uuid) -> Result<HashMap<TaskState, u64>>;
    /// A page of batches, newest first: one owner's, or (`None`) everyone's.
    async fn list_batches(&self, owner: Option<&str>, limit: u32) -> Result<Vec<BatchRecord>>;
    /// Tasks by state: one owner's, or (`None`) everyone's.
    async fn state_counts(&self, owner: Option<&str>) -> Result<HashMap<TaskState, u64>>;
    /// Every task counted by (state, package, function): the metrics' gauge. A scan of the
    /// tasks table, for a scrape every few seconds, never a request path.
    async fn task_counts(&self) -> Result<Vec<TaskCount>>;
    /// What is queued/running: whole queue, one batch, or the part ahead of (and including) a task.
    async fn queue_load(&self, scope: LoadScope, now: i64) -> Result<QueueLoad>;
    /// Processors seen since `since` (ms).
    async fn workers(&self, since: i64) -> Result<Vec<WorkerRecord>>;
    /// Whether a delayed (backoff) task became ready in `(after, upto]`.
    async fn became_ready(&self, after: i64, upto: i64) -> Result<bool>;
    /// When queued tasks become due in `(after, upto]`, earliest first (at most 64 times).
    async fn due_times(&self, after: i64, upto: i64) -> Result<Vec<i64>>;
    /// Cheap liveness probe of the database.
    async fn ping(&self) -> Result<()>;
}

/// A page of [`ListQuery`] as the list statements bind it.
#[derive(Debug, Clone)]
pub struct Page {
    /// Only this state.
    pub state: Option<&'static str>,
    /// Only tasks older than this seq.
    pub before: Option<i64>,
    /// Page size.
    pub limit: i64,
}

impl Page {
    /// The page of a query (its owner filter picks the statement).
    pub fn of(q: &ListQuery) -> Page {
        Page {
            state: q.state.map(|s| s.as_str()),
            before: q.before,
            limit: q.limit as i64,
        }
    }
}

/// A processor's sign of life between full sightings.
#[derive(Debug, Clone)]
pub struct WorkerTouch {
    /// The worker id.
    pub worker_id: String,
    /// The token subject it must belong to (else nothing changes).
    pub owner: String,
    /// Now, ms.
    pub now: i64,
    /// Its dispatch overhead per task, ms, when it reported one.
    pub dispatch_ms: Option<f64>,
    /// Its runtimes against the predictions, when it reported them.
    pub speed: Option<f64>,
}

/// The durable queue's writes (and the reads that go through a backend's own state). Every
/// method is one transaction.
#[async_trait]
pub trait Store: StoreReads {
    /// Inserts one task, honouring its idempotency key.
    async fn submit_one(&self, owner: &str, task: NewTask, now: i64) -> Result<SubmitOutcome>;
    /// Records an upload (see `statements::add_file`).
    async fn add_file(&self, f: FileRow, quota: u64) -> Result<AddFile>;
    /// Records that task `task` takes (or returned) blob `sha256`.
    async fn attach_file(&self, task: Uuid, sha256: &str) -> Result<()>;
    /// Removes up to [`EXPIRE_FILES`] copies uploaded before `cutoff` that no task takes;
    /// their keys, whose objects the caller deletes.
    async fn expire_files(&self, cutoff: i64) -> Result<Vec<String>>;
    /// Inserts batch `id` of owner `by` and its tasks (no idempotency keys inside batches).
    async fn submit_batch(&self, by: &str, id: Uuid, tasks: Vec<NewTask>, now: i64) -> Result<()>;
    /// Leases up to `max_tasks` ready tasks in priority, then FIFO, order; one statement.
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Lease>>;
    /// The current leases that lease request `request_id` of `holder` took, in grant order: a
    /// processor that got no answer sends the request again and gets these instead of new ones.
    async fn granted(&self, holder: Holder, request_id: Uuid) -> Result<Vec<Lease>>;
    /// Extends the given leases.
    async fn heartbeat(&self, hb: HeartbeatIn) -> Result<HeartbeatOutcome>;
    /// Puts never-started leases of `holder` back in the queue with their attempt unused; the
    /// ids released (the others were not current leases of `holder`).
    async fn release(&self, holder: Holder, leases: Vec<LeaseRef>) -> Result<Vec<Uuid>>;
    /// Puts every lease the run `incarnation` of `holder` still has back in the queue, attempt
    /// unused (the run ended holding nothing: these never reached it); the ids.
    async fn release_run(&self, holder: Holder, incarnation: Uuid) -> Result<Vec<Uuid>>;
    /// Applies answers (fenced by lease epoch) and updates runtime statistics.
    async fn answer(&self, answers: Vec<AnswerIn>, now: i64) -> Result<Vec<AnswerOutcome>>;
    /// Cancels a non-terminal task.
    async fn cancel(&self, id: Uuid, by: &str, now: i64) -> Result<CancelOutcome>;
    /// A gate pass over every cap that has gated tasks (the reaper's, each pass): it opens
    /// what finishes that did not open their caps left (cancels, deletes, expired leases, a
    /// crash between two commits) and hands out a rate's next start slots. The tasks it let
    /// through.
    async fn open_gates(&self, now: i64) -> Result<usize>;
    /// Records a broadcast; its seq.
    async fn add_broadcast(&self, b: NewBroadcastRecord) -> Result<i64>;
    /// Records the broadcasts processor `worker_id` applied (unknown ids and repeats ignored).
    async fn ack_broadcasts(
        &self,
        worker_id: &str,
        applied: Vec<task_api::BroadcastApplied>,
    ) -> Result<()>;
    /// Records a new schedule.
    async fn add_schedule(&self, s: ScheduleRecord) -> Result<()>;
    /// Deletes schedule `id` (of `owner`, unless `None`); whether it existed.
    async fn delete_schedule(&self, id: Uuid, owner: Option<&str>) -> Result<bool>;
    /// Moves schedule `id` from tick `from` to tick `to`, recording the task `from` submitted;
    /// `false` (nothing changed) when another replica moved it first.
    async fn advance_schedule(
        &self,
        id: Uuid,
        from: i64,
        to: i64,
        task: Option<Uuid>,
    ) -> Result<bool>;
    /// Cancels every unfinished task of batch `id`; what it cancelled.
    async fn cancel_batch(&self, id: Uuid, by: &str, now: i64) -> Result<Vec<Finished>>;
    /// Deletes a task at `now`; returns what it was (the tasks waiting for it fail at `now`).
    async fn delete(&self, id: Uuid, now: i64) -> Result<Option<Finished>>;
    /// Expired leases back to the queue (or failed), expired results deleted.
    async fn reap(&self, now: i64) -> Result<ReapOutcome>;
    /// Records a processor sighting of run `incarnation`; nothing is written when the worker id
    /// belongs to another token subject or a newer run of it was seen.
    async fn upsert_worker(&self, w: WorkerRecord, incarnation: Option<Uuid>) -> Result<Sighting>;
    /// Leases `holder` took in runs older than `incarnation`, back to the queue (or failed) as
    /// lost leases: the processor restarted, nobody works on them.
    async fn requeue_orphans(
        &self,
        holder: Holder,
        incarnation: Uuid,
        now: i64,
    ) -> Result<ReapOutcome>;
    /// Refreshes a known processor's last_seen and, when given, its dispatch overhead (only
    /// when `owner` is the subject the worker id belongs to).
    async fn touch_worker(&self, t: WorkerTouch) -> Result<()>;
    /// Finished tasks of a batch after `after` (completion cursor), in completion order.
    async fn batch_results(&self, id: Uuid, after: i64, limit: u32) -> Result<Vec<BatchResult>>;
    /// All runtime statistics.
    async fn stats(&self) -> Result<Vec<FunctionStats>>;
    /// Settles waiting tasks none of whose dependencies is unfinished any more (a crash
    /// between an answer's commit and the settling of its dependents leaves such tasks); how
    /// many it queued or failed.
    async fn settle_stuck(&self, now: i64) -> Result<usize>;
    /// Flushes pending writes and closes.
    async fn close(&self);
    /// What other server replicas sharing this database did (work queued, tasks finished), and
    /// what settling task graphs did, for waking this replica's long-polls.
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<StoreEvent>> {
        None
    }
}

/// A change another replica made that parked callers here care about.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    /// Tasks became ready to lease.
    Work,
    /// Tasks become ready to lease at this time (ms): a rate's next start slot.
    WorkAt(i64),
    /// A task finished.
    Task(Uuid),
    /// A task of this batch finished.
    Batch(Uuid),
}

/// Which part of the queue an estimate covers.
#[derive(Debug, Clone, Copy)]
pub enum LoadScope {
    /// Everything.
    All,
    /// One batch.
    Batch(Uuid),
    /// Tasks that run before (or are) the task at this priority and seq.
    Ahead {
        /// Its priority.
        priority: i32,
        /// Its seq.
        seq: i64,
    },
}
