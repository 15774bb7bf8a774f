//! The pluggable part of a processor: what running one task means (the seed's overridable
//! `process_task`). The default, [`crate::PackageHandler`], installs the task's package and runs
//! it; tests and embedders may plug in their own.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use task_api::{TaskErrorKind, TaskPayload};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::gpu::Slot;

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TaskFailure {
    /// `retryable`, `fatal` or `timeout` (a timeout is final, like Celery's time limit).
    pub kind: TaskErrorKind,
    /// Shown to the task's owner.
    pub message: String,
}

impl TaskFailure {
    /// Not worth another attempt.
    pub fn fatal(message: impl Into<String>) -> Self {
        TaskFailure {
            kind: TaskErrorKind::Fatal,
            message: message.into(),
        }
    }
    /// Worth another attempt.
    pub fn retryable(message: impl Into<String>) -> Self {
        TaskFailure {
            kind: TaskErrorKind::Retryable,
            message: message.into(),
        }
    }
    /// Ran past its time limit.
    pub fn timeout(message: impl Into<String>) -> Self {
        TaskFailure {
            kind: TaskErrorKind::Timeout,
            message: message.into(),
        }
    }
    /// Returned a value of another type than the function declares (final).
    pub fn bad_return(message: impl Into<String>) -> Self {
        TaskFailure {
            kind: TaskErrorKind::BadReturn,
            message: message.into(),
        }
    }
    /// Stopped because the owner cancelled it or the lease was lost (never sent back).
    pub fn cancelled(message: impl Into<String>) -> Self {
        TaskFailure {
            kind: TaskErrorKind::Cancelled,
            message: message.into(),
        }
    }
}

/// Progress of one running task, shared with the heartbeat loop.
#[derive(Debug)]
pub struct Progress {
    bits: AtomicU64,
    changed: Arc<Notify>,
}

impl Progress {
    pub(crate) fn new(changed: Arc<Notify>) -> Progress {
        Progress {
            bits: AtomicU64::new(f64::NAN.to_bits()),
            changed,
        }
    }

    /// A progress cell nobody listens to (benchmarks, embedders running instances directly).
    pub fn detached() -> Progress {
        Progress::new(Arc::new(Notify::new()))
    }

    /// Sets progress (clamped to 0–100; NaN ignored) and wakes the heartbeat loop.
    pub fn set(&self, pct: f64) {
        if pct.is_nan() {
            return;
        }
        let pct = pct.clamp(0.0, 100.0);
        let old = f64::from_bits(self.bits.swap(pct.to_bits(), Ordering::Relaxed));
        if old != pct {
            self.changed.notify_one();
        }
    }

    /// Last value set, if any.
    pub fn get(&self) -> Option<f64> {
        let v = f64::from_bits(self.bits.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }
}

/// What a handler gets besides the task.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// Task id.
    pub id: Uuid,
    /// The lease's fencing token (outputs are uploaded under it).
    pub lease_epoch: i64,
    /// The slot it runs on.
    pub slot: Slot,
    /// Report progress here.
    pub progress: Arc<Progress>,
    /// Cancelled when the owner cancels, the lease is lost, or the processor hands tasks back.
    pub cancel: CancellationToken,
    /// When the attempt must be over (its `timeout_s` or the processor's default).
    pub deadline: Instant,
    /// Time the handler spent installing the package before running the function: left out
    /// of the reported runtime, so a cold start does not skew the function's statistics.
    pub setup: Arc<SetupTime>,
}

/// Setup time of one task, recorded by the handler.
#[derive(Debug, Default)]
pub struct SetupTime(std::sync::atomic::AtomicU64);

impl SetupTime {
    /// Adds `d`.
    pub fn add(&self, d: std::time::Duration) {
        self.0.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Recorded so far.
    pub fn get(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Runs tasks. One call per task; calls for different slots run concurrently, never two for
/// the same slot.
#[async_trait::async_trait]
pub trait TaskHandler: Send + Sync + 'static {
    /// Runs one task and returns its answer.
    async fn process_task(
        &self,
        task: &TaskPayload,
        ctx: &TaskContext,
    ) -> Result<Value, TaskFailure>;

    /// A broadcast from the server (`POST /admin/broadcast`): hand it to the loaded instances
    /// of its package. What to report to the server, or `None` for one already received.
    async fn update(&self, _broadcast: &task_api::Broadcast) -> Option<task_api::BroadcastApplied> {
        None
    }

    /// The highest broadcast `seq` received, which the next heartbeat asks after; `None`: this
    /// handler takes no broadcasts.
    fn broadcasts_since(&self) -> Option<i64> {
        None
    }

    /// `name@version` of packages ready to run here (advertised for routing).
    fn cached_packages(&self) -> Vec<String> {
        Vec::new()
    }
}
