//! Fleet control: broadcasts from an operator to every loaded instance of a package. A
//! broadcast is recorded once; every processor asks for the ones it has not seen with each
//! heartbeat (`broadcasts_since`), hands each to the matching instances (WASM `update`, a native
//! program's `update` line; instances started later get the latest right after `init`) and
//! reports back (`applied`), which `GET /admin/broadcasts/{id}` shows.
use task_api::{Broadcast, BroadcastApplied, BroadcastCreated, BroadcastStatus, NewBroadcast};
use uuid::Uuid;

use super::{now_ms, Queue, QueueError};
use crate::auth::Caller;
use crate::store::NewBroadcastRecord;

/// A payload's size as JSON text, at most.
pub const MAX_BROADCAST_BYTES: usize = 64 * 1024;
/// Reports one heartbeat may carry, at most.
pub const MAX_APPLIED: usize = 100;

impl Queue {
    /// `POST /admin/broadcast`: validates and records a broadcast.
    pub async fn broadcast(
        &self,
        caller: &Caller,
        b: NewBroadcast,
    ) -> Result<BroadcastCreated, QueueError> {
        if !crpc_package::manifest::valid_package_name(&b.package) {
            return Err(QueueError::invalid(
                "package",
                "a package name is 1–64 of a-z, 0-9, '-' and '_', starting with a letter",
            ));
        }
        if let Some(v) = &b.version {
            version_spec(v)?;
        }
        let size = b.payload.to_string().len();
        if size > MAX_BROADCAST_BYTES {
            return Err(QueueError::invalid(
                "payload",
                format!("{size} bytes as JSON; at most {MAX_BROADCAST_BYTES}"),
            ));
        }
        let now = now_ms();
        let record = NewBroadcastRecord {
            id: Uuid::now_v7(),
            package: b.package,
            version: b.version,
            payload: b.payload,
            created_by: caller.sub.clone(),
            created_at: now,
        };
        let seq = self.store.add_broadcast(record.clone()).await?;
        tracing::info!(id = %record.id, package = %record.package, by = %record.created_by, "broadcast made");
        Ok(BroadcastCreated {
            broadcast: Broadcast {
                id: record.id,
                seq,
                package: record.package,
                version: record.version,
                payload: record.payload,
                created_at: now,
            },
            live_processors: self.live_worker_ids().await?,
        })
    }

    /// `GET /admin/broadcasts/{id}`: the broadcast, who applied it and when, who has not yet.
    pub async fn broadcast_status(&self, id: Uuid) -> Result<BroadcastStatus, QueueError> {
        let (broadcast, applied) = self
            .store
            .broadcast(id)
            .await?
            .ok_or(QueueError::NoBroadcast(id))?;
        let pending = self
            .live_worker_ids()
            .await?
            .into_iter()
            .filter(|w| !applied.iter().any(|a| &a.worker_id == w))
            .collect();
        Ok(BroadcastStatus {
            broadcast,
            applied,
            pending,
        })
    }

    /// A heartbeat's part: records what the processor applied, returns what it has not seen.
    pub(super) async fn heartbeat_broadcasts(
        &self,
        worker_id: &str,
        since: Option<i64>,
        applied: Vec<BroadcastApplied>,
    ) -> Result<Vec<Broadcast>, QueueError> {
        if applied.len() > MAX_APPLIED {
            return Err(QueueError::invalid(
                "applied",
                format!("{} reports; at most {MAX_APPLIED}", applied.len()),
            ));
        }
        if !applied.is_empty() {
            self.store.ack_broadcasts(worker_id, applied).await?;
        }
        match since {
            Some(since) => Ok(self.store.broadcasts_since(since, now_ms()).await?),
            None => Ok(Vec::new()),
        }
    }

    /// Worker ids heard from within the live window.
    async fn live_worker_ids(&self) -> Result<Vec<String>, QueueError> {
        let cutoff = self.live_cutoff();
        let mut ids: Vec<String> = self
            .store
            .workers(cutoff)
            .await?
            .into_iter()
            .filter(|w| w.last_seen >= cutoff)
            .map(|w| w.worker_id)
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// An exact version or a semver requirement, or a 422 naming `version`.
fn version_spec(v: &str) -> Result<(), QueueError> {
    let ok = v.len() <= 128
        && (semver::Version::parse(v).is_ok() || semver::VersionReq::parse(v).is_ok());
    if ok {
        Ok(())
    } else {
        Err(QueueError::invalid(
            "version",
            "an exact version (1.2.0) or a semver requirement (^1.2, >=1, <2), at most 128 characters",
        ))
    }
}
