//! The domain layer between HTTP handlers and the store: validation, ownership, long-polls,
//! wake-ups, worker bookkeeping and estimates. Handlers parse, call one method here, and map the
//! result; nothing here knows about HTTP beyond the error type.
//!
//! By concern: `submit.rs` (validation, quotas, inserts), `reads.rs` (answers, lists, batches,
//! cancel/delete), `estimate.rs` (estimates, statistics, processors), `workers.rs` (leases,
//! heartbeats, answers), `reaper.rs` (the background pass); the one long-poll is
//! [`Queue::long_poll`].
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::resolver::Resolver;
use crate::store::{Finished, Store, StoreEvent};
use crate::waiters::{batch_key, task_key, Waiters};

mod error;
mod estimate;
mod fleet;
mod overview;
mod prefetch;
mod reads;
mod reaper;
mod schedules;
mod submit;
mod workers;

pub use error::QueueError;
pub use reads::{task_view, ResultOrder};
pub use workers::Grant;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Queue policy set at start-up.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Lease length; heartbeats extend by this much.
    pub lease_ttl: Duration,
    /// Attempts when a task names none.
    pub default_max_attempts: u32,
    /// Longest worker long-poll.
    pub max_worker_wait: Duration,
    /// Longest `?wait=` of user routes.
    pub max_user_wait: Duration,
    /// A processor counts as live this long after it was last heard from.
    pub live_window: Duration,
    /// Most tasks in one `submit_batch`.
    pub max_batch_tasks: usize,
    /// Most queued (waiting or queued, not yet running) tasks one owner may have (0: no cap).
    pub max_queued_per_owner: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            lease_ttl: Duration::from_secs(30),
            default_max_attempts: 3,
            max_worker_wait: Duration::from_secs(30),
            max_user_wait: Duration::from_secs(60),
            live_window: Duration::from_secs(45),
            max_queued_per_owner: 1_000_000,
            max_batch_tasks: 10_000,
        }
    }
}

/// Processors' sightings are written at most this often (plus whenever capabilities change).
const WORKER_UPSERT_EVERY_MS: i64 = 2000;

/// What a replica last wrote of a processor (sightings are throttled per replica).
struct Sighted {
    /// When, ms.
    at: i64,
    /// Hash of its capabilities, token subject and run.
    fingerprint: u64,
    /// Whether a dispatch overhead was stored.
    dispatch_stored: bool,
    /// Whether a speed was stored.
    speed_stored: bool,
    /// Its run (incarnation) whose older runs' leases this replica took back.
    run: Option<uuid::Uuid>,
}

/// The task queue service.
pub struct Queue {
    store: Arc<dyn Store>,
    cfg: QueueConfig,
    waiters: Waiters,
    work: Notify,
    /// Per worker: what this replica last wrote of it.
    seen: Mutex<HashMap<String, Sighted>>,
    shutdown: CancellationToken,
    resolver: Option<Arc<Resolver>>,
    /// Per owner: when its queued tasks were counted, and the count since (plus what this
    /// replica accepted after), for `max_queued_per_owner`.
    pending: Mutex<HashMap<String, (Instant, u64)>>,
    /// Mean runtimes behind prefetch sizing, and when they were read.
    predictors: Mutex<Option<(Instant, Arc<crate::stats::Predictors>)>>,
}

/// How long a count of an owner's queued tasks is trusted.
const PENDING_RECOUNT: Duration = Duration::from_secs(10);

impl Queue {
    /// Processors last heard from at or after this (ms) count as live (`live_window`).
    pub(super) fn live_cutoff(&self) -> i64 {
        now_ms() - self.cfg.live_window.as_millis() as i64
    }

    /// A queue over `store`; long-polls end early when `shutdown` fires.
    pub fn new(
        store: Arc<dyn Store>,
        cfg: QueueConfig,
        shutdown: CancellationToken,
        resolver: Option<Arc<Resolver>>,
    ) -> Self {
        Queue {
            store,
            cfg,
            waiters: Waiters::default(),
            work: Notify::new(),
            seen: Mutex::new(HashMap::new()),
            shutdown,
            resolver,
            pending: Mutex::new(HashMap::new()),
            predictors: Mutex::new(None),
        }
    }

    /// Wakes this replica's long-polls when other replicas sharing the database queue or finish
    /// work (a no-op for single-writer stores).
    pub fn forward_store_events(self: &Arc<Self>) {
        let Some(mut rx) = self.store.events() else {
            return;
        };
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    // Missed some: wake everything; parked callers re-check the database.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => StoreEvent::Work,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(queue) = queue.upgrade() else { return };
                match ev {
                    StoreEvent::Work => queue.work.notify_waiters(),
                    StoreEvent::WorkAt(at) => queue.wake_at(at),
                    StoreEvent::Task(id) => queue.waiters.notify(&task_key(&id)),
                    StoreEvent::Batch(id) => queue.waiters.notify(&batch_key(&id)),
                }
            }
        });
    }

    /// Wakes the waiting processors at `at` (ms).
    fn wake_at(self: &Arc<Self>, at: i64) {
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            let wait = (at - now_ms()).max(0) as u64;
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            if let Some(q) = queue.upgrade() {
                q.work.notify_waiters();
            }
        });
    }

    /// The store (health checks, shutdown).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Whether shutdown started.
    pub fn draining(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The one long-poll: runs `check` until it says done (`(state, true)`), `deadline`
    /// passes or shutdown begins, waiting for `wake` (or the deadline) between checks; returns
    /// the last state. The waiter is registered before each check, so a wake-up that comes
    /// between a check and the wait is never missed.
    async fn long_poll<S, Fut>(
        &self,
        wake: &Notify,
        deadline: Instant,
        mut check: impl FnMut() -> Fut,
    ) -> Result<S, QueueError>
    where
        Fut: Future<Output = Result<(S, bool), QueueError>>,
    {
        loop {
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (state, done) = check().await?;
            if done || Instant::now() >= deadline || self.draining() {
                return Ok(state);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// A task reached a terminal state: counted, and its waiters woken.
    fn finished(&self, f: &Finished) {
        crate::metrics::finished(f.state);
        self.wake_finished(f);
    }

    /// Wakes the waiters of a task that finished or went away.
    fn wake_finished(&self, f: &Finished) {
        if f.snapshot.is_some() {
            self.waiters.publish(&task_key(&f.id), Arc::new(f.clone()));
        } else {
            self.waiters.notify(&task_key(&f.id));
        }
        if let Some(b) = &f.batch_id {
            self.waiters.notify(&batch_key(b));
        }
    }
}

/// `secs` (finite, ≥ 0) as a duration of at most `max`: clamped before conversion, since
/// `Duration::from_secs_f64` panics past `u64::MAX` seconds (`?wait=1e20`).
fn clamped_secs(secs: f64, max: Duration) -> Duration {
    Duration::from_secs_f64(secs.min(max.as_secs_f64()))
}

pub(crate) fn sha256_hex(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}
