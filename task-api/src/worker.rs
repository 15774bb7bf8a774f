//! What processors send and receive.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::task::{TaskError, TaskPayload};

/// What a worker offers; the server routes tasks by it and shows it in `/user/workers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Capabilities {
    /// Slots the worker runs in all (for the ETA). Defaults to `max_tasks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// GPUs free for the tasks asked for now.
    #[serde(default)]
    pub gpus: u32,
    /// How many of `slots` are GPU slots (for the per-class backlog). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_slots: Option<u32>,
    /// GPU names, for display.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_names: Vec<String>,
    /// Memory available to one task, MiB; absent = not limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Datasets held locally.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<String>,
    /// Packages already in the local cache (`name@version`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// Anything else a processor wants to show (host name, version…).
    #[serde(default, flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Body of `POST /worker/request_task`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestTask {
    /// Stable name of this processor (defaults to the token subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Free slots: this many leases are granted when that many are ready, and only for them
    /// does the request long-poll. 0 to 1,000; default 1. 0 asks for prefetch (or delivers
    /// `answers`) only and never waits.
    #[serde(default = "one")]
    pub max_tasks: u32,
    /// Extra leases this processor is willing to hold beyond `max_tasks` (prefetch), 0 to
    /// 1,000 - `max_tasks`; default 0. The server grants fewer: only tasks whose predicted
    /// runtime (their function's cost model at their arguments) is under 1 s, while the expected work held stays within 50 ms per
    /// slot (`held_ms` included). A prefetched lease is heartbeated like a running one and
    /// handed back with `POST /worker/release` if it does not start soon.
    #[serde(default)]
    pub prefetch: u32,
    /// Expected work (ms, by the `expected_ms` of the leases) this processor already holds
    /// prefetched and not started. 0 to 3,600,000; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_ms: Option<f64>,
    /// Answers delivered with this request (at most 1,000), applied before any lease is
    /// granted, with one result each in the response, as `POST /worker/submit_answer` would.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<SubmitAnswer>,
    /// Routing information.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Only tasks that need a GPU: a GPU slot asks this while its processor has a CPU slot
    /// free, so a CPU task does not take a GPU slot a GPU task could use. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gpu_only: bool,
    /// Long-poll up to this many seconds when nothing is queued (≤ 30; default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_s: Option<f64>,
    /// This run of the processor: a UUIDv7 made new at each start (time-ordered). When a
    /// newer incarnation of a `worker_id` shows up, the leases of the older ones are requeued
    /// at once (lost leases, no backoff) instead of waiting out their TTL, and requests of an
    /// older incarnation are refused (409 `superseded`): only one run per `worker_id` works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<Uuid>,
    /// Names this request (any UUID, new per request): the leases it takes record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    /// This is `request_id` sent again because no answer came back: the leases that request
    /// already took (if the server committed it before the answer was lost) are granted again
    /// instead of new ones. Needs `request_id`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub again: bool,
    /// This processor runs chained leases (see [`Lease::follows`]): the server may lease,
    /// behind a task of a chain, the tasks that follow it one after another.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chains: bool,
}

fn one() -> u32 {
    1
}

/// One leased task.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    /// Task id.
    pub id: Uuid,
    /// What to run.
    pub task: TaskPayload,
    /// Fencing token: send it back with heartbeats and the answer.
    pub lease_epoch: i64,
    /// Lease ends then (ms since the Unix epoch) unless extended by a heartbeat.
    pub lease_deadline: i64,
    /// The task's predicted runtime, ms (its function's cost model at its arguments), when
    /// the server has statistics for the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_ms: Option<f64>,
    /// A chained lease (only to a request with `chains`): the task waits for the task `follows`
    /// alone, which is leased to the same processor, and its arguments still hold the
    /// references to that task. The processor runs it after `follows` succeeded there, with
    /// that answer substituted (`task_api::refs::substitute`), or hands it back (`release`):
    /// the server then settles it as any waiting task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<Uuid>,
}

impl Lease {
    /// The lease by id and epoch (for heartbeats and hand-backs).
    pub fn lease_ref(&self) -> LeaseRef {
        LeaseRef {
            id: self.id,
            lease_epoch: self.lease_epoch,
        }
    }
}

/// Answer of `POST /worker/request_task`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestTaskResponse {
    /// Always `true`.
    pub success: bool,
    /// 0..max_tasks leases for the free slots, then any prefetched ones, each group in priority
    /// then FIFO order.
    pub leases: Vec<Lease>,
    /// One result per answer the request carried, in order (absent when it carried none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<SubmitAnswerResult>,
    /// Heartbeat at least this often, ms.
    pub heartbeat_interval_ms: u64,
    /// `true` when nothing was ready at once and the request was parked (long poll): the time
    /// it took is idle time, not dispatch overhead.
    #[serde(default)]
    pub waited: bool,
    /// `true` when fewer tasks were ready for this worker than `max_tasks + prefetch`: the queue
    /// ran dry, so a slot's idle time until its next lease is not dispatch overhead either.
    #[serde(default)]
    pub drained: bool,
}

/// One lease in a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatLease {
    /// Task id.
    pub id: Uuid,
    /// The epoch `request_task` returned.
    pub lease_epoch: i64,
    /// 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
}

/// Body of `POST /worker/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Processor name (defaults to the token subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// The leases the worker still holds.
    #[serde(default)]
    pub leases: Vec<HeartbeatLease>,
    /// Fresh capabilities, optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Measured dispatch overhead, ms: how long one of this processor's slots sits idle between
    /// two tasks while work is waiting (lease round trip, hand-off), averaged over recent tasks.
    /// The server adds it per queued task to `eta_s`. 0 to 3,600,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_ms: Option<f64>,
    /// How slow this processor runs tasks against the server's predictions (`expected_ms`):
    /// recent Σ actual / Σ expected runtime, 1 for an average processor, 2 for one that takes
    /// twice as long. The ETA counts its slots as 1/speed slots. 0.01 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// This run of the processor (see [`RequestTask::incarnation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<Uuid>,
    /// Asks for the broadcasts made after this `seq` (0: the latest per target, for a
    /// processor that just started). Absent: send none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcasts_since: Option<i64>,
    /// Broadcasts this processor applied since its last heartbeat (at most 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<crate::BroadcastApplied>,
}

/// Answer of `POST /worker/heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatResponse {
    /// Always `true`.
    pub success: bool,
    /// Leases extended.
    pub extended: Vec<Uuid>,
    /// Leases whose task the owner cancelled: stop them.
    pub cancelled: Vec<Uuid>,
    /// Leases no longer held (expired and re-leased, deleted): stop them, do not answer.
    pub lost: Vec<Uuid>,
    /// New deadline of the extended leases, ms since the Unix epoch.
    pub lease_deadline: i64,
    /// Broadcasts made after `broadcasts_since` (and any of the last minute, which a processor
    /// recognises by id), oldest first; with `broadcasts_since: 0`, the latest broadcast per
    /// target. Empty when the request did not ask.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broadcasts: Vec<crate::Broadcast>,
}

/// Body of `POST /worker/submit_answer` (single form; the batch form is `{"answers": [...]}`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitAnswer {
    /// Task id.
    pub id: Uuid,
    /// The epoch `request_task` returned (fencing). Absent (the seed's protocol): the task's
    /// current lease, which only its holder may answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_epoch: Option<i64>,
    /// The worker id the lease was taken under (defaults to the token subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Return value: exactly one of `answer` and `error`.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub answer: Option<Value>,
    /// Failure: `kind` retryable or fatal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// Measured run time, ms (server measures lease→answer when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_ms: Option<f64>,
}

/// Per-answer outcome in the batch form's response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitAnswerResult {
    /// Task id.
    pub id: Uuid,
    /// 200 accepted (or already accepted), 404 unknown, 409 stale lease, 422 invalid.
    pub status: u16,
    /// snake_case code for non-200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A lease named by id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRef {
    /// Task id.
    pub id: Uuid,
    /// The epoch `request_task` returned.
    pub lease_epoch: i64,
}

/// Body of `POST /worker/release`: leases handed back before they started.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Processor name (default: the token subject); as in `request_task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// The leases (at most 1,000).
    #[serde(default)]
    pub leases: Vec<LeaseRef>,
    /// Set by a processor run (incarnation) that is stopping and holds nothing any more: every
    /// lease still recorded as this run's goes back too, its attempt unused (a grant that was on
    /// its way as the processor stopped, which it never received). Needs `worker_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Uuid>,
}

/// Answer of `POST /worker/release`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseResponse {
    /// Always true.
    pub success: bool,
    /// Back in the queue, `attempt` as before the lease.
    pub released: Vec<Uuid>,
    /// Not current leases of this worker (expired, cancelled, answered, another's): unchanged.
    pub not_released: Vec<Uuid>,
}
