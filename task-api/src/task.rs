//! Tasks as users submit and read them.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Lifecycle state. Mirrored by a CHECK constraint in every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// A DAG task whose inputs are not done yet.
    Waiting,
    /// Ready to be leased (possibly delayed by a retry backoff).
    Queued,
    /// Leased to a worker until its lease deadline.
    Leased,
    /// Answered.
    Succeeded,
    /// Failed for good (fatal error, timeout, or out of attempts).
    Failed,
    /// Cancelled by its owner.
    Cancelled,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 6] = [
        TaskState::Waiting,
        TaskState::Queued,
        TaskState::Leased,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    /// The name stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Waiting => "waiting",
            TaskState::Queued => "queued",
            TaskState::Leased => "leased",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Whether the task will never change state again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }
}

impl std::str::FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown state `{s}` (expected waiting, queued, leased, succeeded, failed or cancelled)")
            })
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a task needs from the worker that takes it (routing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// GPUs the task needs; ≥1 means only GPU slots take it.
    #[serde(default)]
    pub gpus: u32,
    /// Memory the task needs, MiB.
    #[serde(default)]
    pub memory_mb: u64,
    /// Datasets the worker must hold (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
}

impl Resources {
    /// True when the task can run anywhere.
    pub fn is_empty(&self) -> bool {
        self.gpus == 0 && self.memory_mb == 0 && self.datasets.is_empty()
    }
}

/// The body of `POST /user/submit_task` (and each element of a batch). Only `function` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Package that holds the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Function name inside the package.
    pub function: String,
    /// Semver requirement (resolved to an exact version once the registry is wired in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<Value>,
    /// Keyword arguments.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    /// Higher runs first (-1000 to 1000). Default 0.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
    /// Wall-clock limit of one attempt, seconds (1 to 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 604800)]
    pub timeout_s: Option<u32>,
    /// Attempts before the task fails for good (1 to 100; server default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    /// Same key + same body → same task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Routing requirements.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Reuse a finished answer for the same arguments.
    #[serde(default)]
    pub memoize: bool,
    /// How long the finished result is kept, seconds (at most 365 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 31536000)]
    pub ttl_s: Option<u64>,
    /// Tasks that must succeed before this one is queued, without using their answers (task
    /// ids, or `#N` for an earlier task of the same batch). Values of `args`/`kwargs` may also be
    /// `{"$ref": ID, "path"?: "/json/pointer"}`: the task waits for that task and gets its answer
    /// (or the part the pointer names) in place of the reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Not leased before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Not leased before this many seconds from now (0 to 365 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 31536000)]
    pub delay_s: Option<f64>,
    /// Tasks of this owner with the same key run at most `max_concurrent` at a time, across
    /// every processor (e.g. one per customer); the others stay queued, not failed. 1 to 200
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// With `concurrency_key`: how many of its tasks may be leased at once (1 to 100,000;
    /// default 1). The latest submit's value is the key's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100000)]
    pub max_concurrent: Option<u32>,
}

/// `201 {"success": true, "id": "…"}` (200 when an idempotency key matched an existing task).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitResponse {
    /// Always `true`.
    pub success: bool,
    /// Task id (UUID v7).
    pub id: Uuid,
    /// The task's state right after submit.
    pub state: TaskState,
    /// The exact package version stored on the task, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Body of `POST /user/submit_batch`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatch {
    /// The tasks, in input order.
    pub tasks: Vec<TaskSpec>,
}

/// Answer of `POST /user/submit_batch`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitBatchResponse {
    /// Always `true`.
    pub success: bool,
    /// Id of the batch, for `/user/batches/{id}`.
    pub batch_id: Uuid,
    /// Task ids in input order.
    pub ids: Vec<Uuid>,
}

/// How a task attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskErrorKind {
    /// Worth another attempt (worker reported it).
    Retryable,
    /// Never worth another attempt (worker reported it).
    Fatal,
    /// The attempt ran past the task's `timeout_s`.
    Timeout,
    /// The worker stopped heartbeating.
    LeaseExpired,
    /// The owner cancelled it.
    Cancelled,
    /// The function returned a value that is not of its declared `returns` type (final: the
    /// processor checked it, and another attempt would return the same).
    BadReturn,
    /// A task it refers to (`$ref` or `after`) failed, was cancelled or deleted; the message
    /// names it.
    DependencyFailed,
}

impl TaskErrorKind {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskErrorKind::Retryable => "retryable",
            TaskErrorKind::Fatal => "fatal",
            TaskErrorKind::Timeout => "timeout",
            TaskErrorKind::LeaseExpired => "lease_expired",
            TaskErrorKind::Cancelled => "cancelled",
            TaskErrorKind::BadReturn => "bad_return",
            TaskErrorKind::DependencyFailed => "dependency_failed",
        }
    }
}

/// An error attached to a task: the last one seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskError {
    /// Category.
    pub kind: TaskErrorKind,
    /// Human text from the worker or the server.
    pub message: String,
}

/// What a worker needs to run a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskPayload {
    /// Package, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Exact version, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Function name.
    pub function: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// Wall-clock limit of this attempt, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// Routing requirements.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

/// `GET /user/request_answer/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnswerResponse {
    /// Always `true` (errors use the error body).
    pub success: bool,
    /// Task id.
    pub id: Uuid,
    /// Current state.
    pub state: TaskState,
    /// The function's return value, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    /// The last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// 0–100, as last reported by the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Attempts started so far.
    pub attempt: u32,
}

/// A task as listed by `GET /user/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskView {
    /// Task id.
    pub id: Uuid,
    /// Who submitted it.
    pub owner: String,
    /// Package, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Exact version, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Function.
    pub function: String,
    /// Current state.
    pub state: TaskState,
    /// Priority.
    pub priority: i32,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// Submit time, ms since the Unix epoch.
    pub created_at: i64,
    /// Finish time, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// Runtime of the answered attempt, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_ms: Option<f64>,
    /// The batch it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<Uuid>,
    /// The current (or last) attempt: who ran it and when it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseInfo>,
    /// Attempts that ended because their processor stopped or restarted.
    #[serde(default)]
    pub lost_leases: u32,
}

/// The lease of a task's current (or last) attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseInfo {
    /// The processor that took it.
    pub worker_id: String,
    /// When the attempt started, ms since the Unix epoch.
    pub leased_at: i64,
    /// When the lease runs out unless heartbeats extend it, ms since the Unix epoch.
    pub deadline: i64,
}

/// One attempt of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// 1 for the first.
    pub attempt: u32,
    /// The processor that ran it.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// When it started, ms since the Unix epoch.
    #[serde(default)]
    pub started_at: Option<i64>,
    /// When it ended, ms since the Unix epoch (null while it runs).
    #[serde(default)]
    pub ended_at: Option<i64>,
    /// `retried` (it ended and the task went back to the queue), `running`, `succeeded`,
    /// `failed` or `cancelled`.
    #[serde(default = "retried")]
    pub outcome: String,
    /// How it failed, when it did.
    #[serde(default)]
    pub error: Option<TaskError>,
}

fn retried() -> String {
    "retried".into()
}

/// `GET /user/tasks/{id}`: everything about one task.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskDetail {
    /// Always true.
    pub success: bool,
    /// The task as listed.
    #[serde(flatten)]
    pub task: TaskView,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// The answer, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    /// Every attempt so far, oldest first, with who ran it and when.
    pub attempts: Vec<AttemptView>,
}
