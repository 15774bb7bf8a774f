//! Fleet control: broadcasts from an operator to every processor.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Body of `POST /admin/broadcast`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBroadcast {
    /// The package whose loaded instances receive the payload.
    pub package: String,
    /// Which versions: an exact version (`1.2.0`) or a semver requirement (`^1.2`, `>=1, <2`);
    /// absent: every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Any JSON (at most 64 KiB as text): the WASM `update` export's argument, or the
    /// `payload` of a native program's `update` line.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// A broadcast as processors receive it and operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Broadcast {
    /// Broadcast id.
    pub id: Uuid,
    /// Its place in the order broadcasts were made (processors ask for those after the last
    /// they saw).
    pub seq: i64,
    /// Target package.
    pub package: String,
    /// Target versions (exact or a requirement); absent: every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The payload.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// When it was made, ms since the Unix epoch.
    pub created_at: i64,
}

/// Answer of `POST /admin/broadcast` (201).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BroadcastCreated {
    /// The broadcast.
    pub broadcast: Broadcast,
    /// Processors live now: each gets it with its next heartbeat (about a second).
    pub live_processors: Vec<String>,
}

/// What a processor reports, with a heartbeat, once it applied a broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastApplied {
    /// The broadcast.
    pub id: Uuid,
    /// When the processor had handed it to every idle loaded instance of the package (a busy
    /// one gets it before its next task; instances started later, right after `init`), ms
    /// since the Unix epoch.
    pub applied_at: i64,
    /// Loaded instances it reached then.
    pub instances: u32,
    /// The first instance's error (an `update` that trapped or a program that exited), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One processor's report on a broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BroadcastReport {
    /// Processor (worker id).
    pub worker_id: String,
    /// When it applied the broadcast, ms since the Unix epoch.
    pub applied_at: i64,
    /// Loaded instances it reached then.
    pub instances: u32,
    /// The first instance's error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Answer of `GET /admin/broadcasts/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BroadcastStatus {
    /// The broadcast.
    pub broadcast: Broadcast,
    /// Processors that applied it, in the order they did.
    pub applied: Vec<BroadcastReport>,
    /// Live processors that have not reported it yet.
    pub pending: Vec<String>,
}
