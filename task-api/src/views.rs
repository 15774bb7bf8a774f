//! Response bodies of the task server's read and control routes (users), and of the worker
//! routes that are not in `worker.rs`. Every route answers with one of these types (or the error
//! body); clients deserialize them instead of indexing JSON by string.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{TaskError, TaskPayload, TaskState, TaskView};

/// `GET /user/estimate_time_left[?task_id=]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EstimateResponse {
    /// Always true.
    pub success: bool,
    /// The task asked about, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Uuid>,
    /// Its state, when it already finished (then everything else is zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TaskState>,
    /// Core-seconds of work ahead on one average core (the seed's meaning).
    pub time: f64,
    /// Wall seconds on the live processors (`eta_s`, with its 10th and 90th percentiles);
    /// `null` when none is live.
    #[serde(flatten)]
    pub eta: Eta,
    /// Per capability class (`cpu`, `gpu`): the work queued for it and how long its slots take
    /// to drain it (the autoscaling signal).
    #[serde(default)]
    pub backlog: Vec<ClassBacklog>,
    /// Slots of the live processors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_slots: Option<u64>,
    /// Their reported dispatch overhead per task, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_ms: Option<f64>,
    /// Tasks queued in the scope.
    pub queued: u64,
    /// Tasks running in the scope.
    pub running: u64,
    /// Tasks waiting for others in the scope (task graphs); their work is in `time`, and
    /// `eta_s` is at least the graph's critical path.
    #[serde(default)]
    pub waiting: u64,
    /// Per-function breakdown, largest first.
    pub per_function: Vec<FunctionEstimate>,
    /// 0..1: how far the estimate can be trusted: per function, the samples behind its
    /// statistics (full at 30) times how well its cost model explains its runtimes (r²; 0.5
    /// when it fell back to the mean), weighted by each function's share of the work.
    pub confidence: f64,
}

/// When a queue (or batch, or task) is expected to be done, in wall seconds from now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Eta {
    /// The estimate; `null` when no processor is live.
    pub eta_s: Option<f64>,
    /// 10th percentile: done this soon one time in ten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_p10_s: Option<f64>,
    /// 90th percentile: done by then nine times in ten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_p90_s: Option<f64>,
}

impl Eta {
    /// Nothing left.
    pub fn done() -> Eta {
        Eta {
            eta_s: Some(0.0),
            eta_p10_s: Some(0.0),
            eta_p90_s: Some(0.0),
        }
    }
}

/// The work of one capability class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClassBacklog {
    /// `gpu` (tasks that need a GPU) or `cpu` (the rest).
    pub class: String,
    /// Tasks queued.
    pub queued: u64,
    /// Tasks running.
    pub running: u64,
    /// Core-seconds of work left.
    pub time: f64,
    /// Live slots of the class (GPU slots; CPU slots).
    pub slots: u64,
    /// Wall seconds those slots need for it; `null` when the class has no live slot.
    pub backlog_s: Option<f64>,
}

/// One function's share of an estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionEstimate {
    /// Package (null when none).
    pub package: Option<String>,
    /// Version (null when none).
    pub version: Option<String>,
    /// Function.
    pub function: String,
    /// Tasks queued.
    pub queued: u64,
    /// Tasks running.
    pub running: u64,
    /// Mean runtime, ms (the global prior when `known` is false).
    pub mean_ms: f64,
    /// Whether the estimate comes from this function's own statistics (false: the global prior).
    pub known: bool,
    /// What each task's runtime is estimated from: `cost:NAME` (the declared cost argument's
    /// fitted line), `arg:I` (the undeclared argument at position I, whose line explains the
    /// runtimes), `mean` (no argument explains them: every task takes the mean), `prior`.
    #[serde(default)]
    pub model: String,
    /// 0..1: samples behind the model (full at 30) times how well it explains the runtimes.
    #[serde(default)]
    pub confidence: f64,
    /// Core-seconds this function adds to the queue.
    pub time: f64,
}

/// `GET /user/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatsResponse {
    /// Always true.
    pub success: bool,
    /// Every function that ran.
    pub functions: Vec<FunctionStatsView>,
}

/// Runtime statistics of one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionStatsView {
    /// Package (null when none).
    pub package: Option<String>,
    /// Version (null when none).
    pub version: Option<String>,
    /// Function.
    pub function: String,
    /// Attempts that ended (succeeded or failed).
    pub count: u64,
    /// Of those, failed.
    pub failures: u64,
    /// Mean runtime, ms (recent-weighted).
    pub mean_ms: f64,
    /// Standard deviation, ms.
    pub stddev_ms: f64,
    /// Median runtime, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<f64>,
    /// Last sample, ms since the epoch.
    pub last_seen: i64,
    /// Runtimes of every attempt answered, in log-spaced bins (each ~1.5× wider than the last),
    /// from the fastest to the slowest; empty before the first answer.
    #[serde(default)]
    pub histogram: Vec<HistogramBin>,
}

/// One bin of a runtime histogram: `count` runtimes in `[lo_ms, hi_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistogramBin {
    /// Lower bound, ms.
    pub lo_ms: f64,
    /// Upper bound, ms.
    pub hi_ms: f64,
    /// Runtimes in the bin.
    pub count: u64,
}

/// `GET /user/workers[?all=true]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkersResponse {
    /// Always true.
    pub success: bool,
    /// Slots of the live processors.
    pub live_slots: u64,
    /// Processors heard from within the live window (or ever).
    pub workers: Vec<WorkerView>,
}

/// A processor as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerInfo {
    /// Processor name.
    pub worker_id: String,
    /// Token subject it authenticated as.
    pub owner: String,
    /// Slots it runs.
    pub slots: u32,
    /// What it advertised (`Capabilities` as it sent them).
    pub capabilities: Value,
    /// ms since the epoch.
    pub first_seen: i64,
    /// ms since the epoch.
    pub last_seen: i64,
    /// Leases it holds now.
    pub running: u64,
    /// Its last reported dispatch overhead per task, ms (see `HeartbeatRequest::dispatch_ms`).
    pub dispatch_ms: Option<f64>,
    /// Its last reported runtime against the predictions (see `HeartbeatRequest::speed`).
    #[serde(default)]
    pub speed: Option<f64>,
}

/// A processor in `GET /user/workers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerView {
    /// What it is.
    #[serde(flatten)]
    pub worker: WorkerInfo,
    /// Heard from within the live window.
    pub live: bool,
}

/// `GET /user/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskListResponse {
    /// Always true.
    pub success: bool,
    /// Newest first.
    pub tasks: Vec<TaskView>,
    /// Cursor of the next page; `null` on the last.
    pub next: Option<i64>,
}

/// `POST /user/tasks/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CancelResponse {
    /// Always true.
    pub success: bool,
    /// The task.
    pub id: Uuid,
    /// `cancelled`.
    pub state: TaskState,
}

/// `DELETE /user/tasks/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeleteResponse {
    /// Always true.
    pub success: bool,
    /// The task.
    pub id: Uuid,
    /// Always true.
    pub deleted: bool,
    /// Its state when deleted.
    pub state_was: TaskState,
}

/// `GET /user/batches/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchStatusResponse {
    /// Always true.
    pub success: bool,
    /// The batch.
    pub batch_id: Uuid,
    /// Tasks submitted.
    pub total: u64,
    /// Tasks that will not change any more (terminal, or deleted).
    pub finished: u64,
    /// Every task finished.
    pub done: bool,
    /// Tasks per state (every state, zeros included).
    pub counts: BTreeMap<String, u64>,
    /// Core-seconds of its work left.
    pub time: f64,
    /// Wall seconds on the live processors (with percentiles); `null` when none is live.
    #[serde(flatten)]
    pub eta: Eta,
    /// ms since the epoch.
    pub created_at: i64,
}

/// `GET /user/batches`: the caller's batches (admin: everyone's), newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchListResponse {
    /// Always true.
    pub success: bool,
    /// Newest first.
    pub batches: Vec<BatchSummary>,
}

/// One batch in the list (its ETA: `GET /user/batches/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchSummary {
    /// The batch.
    pub batch_id: Uuid,
    /// Who submitted it.
    pub owner: String,
    /// Tasks submitted.
    pub total: u64,
    /// Tasks that will not change any more.
    pub finished: u64,
    /// Every task finished.
    pub done: bool,
    /// Tasks per state (every state, zeros included).
    pub counts: BTreeMap<String, u64>,
    /// ms since the epoch.
    pub created_at: i64,
}

/// `GET /user/summary`: the caller's tasks (admin: everyone's) by state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SummaryResponse {
    /// Always true.
    pub success: bool,
    /// Tasks per state (every state, zeros included).
    pub counts: BTreeMap<String, u64>,
    /// Tasks the server holds for the caller.
    pub total: u64,
}

/// `GET /user/batches/{id}/results`: one page, in completion order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResultsResponse {
    /// Always true.
    pub success: bool,
    /// The batch.
    pub batch_id: Uuid,
    /// Finished tasks after the cursor.
    pub results: Vec<BatchResultItem>,
    /// Cursor for the next page.
    pub next: i64,
    /// Every task finished and this page holds the last of them.
    pub done: bool,
}

/// One finished task of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResultItem {
    /// Task id.
    pub id: Uuid,
    /// Position in the submitted list.
    pub index: u64,
    /// Terminal state.
    pub state: TaskState,
    /// Answer, when succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    /// Error, when failed or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
}

/// `POST /worker/submit_answer`, single form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitAnswerResponse {
    /// Always true.
    pub success: bool,
    /// The task.
    pub id: Uuid,
    /// This lease's answer had already been accepted (a retried request); nothing changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
}

/// `POST /worker/submit_answer`, batch form (`{"answers": [...]}`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitAnswersResponse {
    /// Always true.
    pub success: bool,
    /// One per answer, in order.
    pub results: Vec<crate::SubmitAnswerResult>,
}

/// `GET /worker/request_task` (the seed's single-task form): `id` and `task` are `null` when
/// nothing is queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SingleTaskResponse {
    /// Always true.
    pub success: bool,
    /// The leased task.
    pub id: Option<Uuid>,
    /// What to run.
    pub task: Option<TaskPayload>,
    /// Fencing token to quote when answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_epoch: Option<i64>,
    /// ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_deadline: Option<i64>,
    /// Heartbeat at least this often, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
}

/// `GET /health/live` and `/health/ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthResponse {
    /// Always true.
    pub success: bool,
    /// `alive` or `ready`.
    pub status: String,
}

/// Answer of `POST /user/batches/{id}/cancel`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CancelBatchResponse {
    /// Always `true`.
    pub success: bool,
    /// The batch.
    pub batch_id: Uuid,
    /// Tasks it cancelled (those not finished yet; 0 when all had).
    pub cancelled: u64,
}

/// Body of `POST /user/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first;
    /// `*`, lists, ranges, steps and names (`MON`, `JAN`) as in cron.
    pub cron: String,
    /// IANA time zone the fields are read in, e.g. `Europe/Paris` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// What each tick submits (without `idempotency_key`: each tick has its own).
    pub task: crate::TaskSpec,
}

/// A recurring schedule.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// Schedule id.
    pub id: Uuid,
    /// Whose tasks it submits.
    pub owner: String,
    /// The cron expression.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// What each tick submits.
    pub task: crate::TaskSpec,
    /// The next tick (RFC 3339, UTC).
    pub next_at: String,
    /// The next tick, Unix ms.
    pub next_at_ms: i64,
    /// Created, Unix ms.
    pub created_at: i64,
    /// Ticks that submitted a task so far.
    pub fired: u64,
    /// The task the last tick submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_task: Option<Uuid>,
}

/// Answer of `POST /user/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleResponse {
    /// Always `true`.
    pub success: bool,
    /// The schedule.
    pub schedule: ScheduleView,
}

/// Answer of `GET /user/schedules`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleListResponse {
    /// Always `true`.
    pub success: bool,
    /// Oldest first.
    pub schedules: Vec<ScheduleView>,
}

/// Answer of `DELETE /user/schedules/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeleteScheduleResponse {
    /// Always `true`.
    pub success: bool,
    /// The schedule.
    pub id: Uuid,
}
