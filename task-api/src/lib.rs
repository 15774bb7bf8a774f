//! Wire types shared by every crpc part: the task server, processors, the registry and clients.
//!
//! Serde only, no I/O. Field names follow the seed API (`package`, `function`, `args`, `kwargs`,
//! `id`, `task`, `answer`, `time`) so the seed's curl calls keep working.
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod files;
pub mod fleet;
pub mod refs;
pub mod task;
pub mod views;
pub mod worker;

pub use auth::{Claims, Role, JWT_AUDIENCE, JWT_ISSUER};
pub use error::{ApiErrorBody, ErrorDetail};
pub use files::FileStored;
pub use fleet::{
    Broadcast, BroadcastApplied, BroadcastCreated, BroadcastReport, BroadcastStatus, NewBroadcast,
};
pub use task::{
    AnswerResponse, AttemptView, LeaseInfo, Resources, SubmitBatch, SubmitBatchResponse,
    SubmitResponse, TaskDetail, TaskError, TaskErrorKind, TaskPayload, TaskSpec, TaskState,
    TaskView,
};
pub use views::{
    BatchListResponse, BatchResultItem, BatchResultsResponse, BatchStatusResponse, BatchSummary,
    CancelBatchResponse, CancelResponse, ClassBacklog, DeleteResponse, DeleteScheduleResponse,
    EstimateResponse, Eta, FunctionEstimate, FunctionStatsView, HealthResponse, HistogramBin,
    NewSchedule, ScheduleListResponse, ScheduleResponse, ScheduleView, SingleTaskResponse,
    StatsResponse, SubmitAnswerResponse, SubmitAnswersResponse, SummaryResponse, TaskListResponse,
    WorkerInfo, WorkerView, WorkersResponse,
};
pub use worker::{
    Capabilities, HeartbeatLease, HeartbeatRequest, HeartbeatResponse, Lease, LeaseRef,
    ReleaseRequest, ReleaseResponse, RequestTask, RequestTaskResponse, SubmitAnswer,
    SubmitAnswerResult,
};

/// Deserialize a field so that an explicit JSON `null` is `Some(Value::Null)` and an absent field
/// (with `#[serde(default)]`) is `None`: a function may legitimately return `null`.
pub fn present<'de, D>(d: D) -> Result<Option<serde_json::Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    serde_json::Value::deserialize(d).map(Some)
}
