//! The pull loop: lease tasks for free slots, run them through the handler, heartbeat, send the
//! answers back (retrying until the server has them), drain on shutdown.
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use task_api::{
    Capabilities, HeartbeatLease, HeartbeatRequest, Lease, RequestTask, SubmitAnswer, TaskError,
    TaskErrorKind,
};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::{CallError, ServerClient};
use crate::gpu::Slot;
use crate::handler::{Progress, TaskContext, TaskFailure, TaskHandler};

/// Builds a [`Processor`].
pub struct ProcessorBuilder {
    server: String,
    token: Option<String>,
    worker_id: Option<String>,
    slots: Vec<Slot>,
    gpu_names: Vec<String>,
    datasets: Vec<String>,
    default_timeout: Duration,
    drain_timeout: Duration,
    handler: Option<Arc<dyn TaskHandler>>,
}

impl ProcessorBuilder {
    /// Task server base URL.
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.server = url.into();
        self
    }
    /// Worker token.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
    /// Name shown in `/user/workers` (default `HOST:PID`).
    pub fn worker_id(mut self, id: Option<String>) -> Self {
        self.worker_id = id;
        self
    }
    /// The slots (see [`crate::gpu::plan_slots`]); default: one CPU slot.
    pub fn slots(mut self, slots: Vec<Slot>) -> Self {
        self.slots = slots;
        self
    }
    /// GPU names advertised to the server.
    pub fn gpu_names(mut self, names: Vec<String>) -> Self {
        self.gpu_names = names;
        self
    }
    /// Datasets held here.
    pub fn datasets(mut self, datasets: Vec<String>) -> Self {
        self.datasets = datasets;
        self
    }
    /// Limit of a task that sets no `timeout_s`.
    pub fn default_timeout(mut self, d: Duration) -> Self {
        self.default_timeout = d;
        self
    }
    /// How long shutdown waits for running tasks before handing them back.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = d;
        self
    }
    /// What runs the tasks (required).
    pub fn handler(mut self, h: Arc<dyn TaskHandler>) -> Self {
        self.handler = Some(h);
        self
    }
    /// The processor.
    pub fn build(self) -> anyhow::Result<Processor> {
        let handler = self
            .handler
            .ok_or_else(|| anyhow::anyhow!("a processor needs a task handler"))?;
        if self.slots.is_empty() {
            anyhow::bail!("a processor needs at least one slot (--cpu-slots ≥ 1 or a GPU)");
        }
        let worker_id = self.worker_id.unwrap_or_else(default_worker_id);
        Ok(Processor {
            client: ServerClient::new(&self.server, self.token),
            worker_id,
            slots: self.slots,
            gpu_names: self.gpu_names,
            datasets: self.datasets,
            default_timeout: self.default_timeout,
            drain_timeout: self.drain_timeout,
            handler,
        })
    }
}

fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "processor".into());
    format!("{host}:{}", std::process::id())
}

/// A configured processor; [`Processor::run`] serves until shut down.
pub struct Processor {
    client: ServerClient,
    worker_id: String,
    slots: Vec<Slot>,
    gpu_names: Vec<String>,
    datasets: Vec<String>,
    default_timeout: Duration,
    drain_timeout: Duration,
    handler: Arc<dyn TaskHandler>,
}

/// One task being run here.
struct Running {
    lease_epoch: i64,
    progress: Arc<Progress>,
    cancel: CancellationToken,
    /// Set when the answer must not be sent (owner cancelled, lease lost).
    silenced: AtomicBool,
    /// Set when shutdown hands the task back.
    handed_back: AtomicBool,
}

/// Free slots of one kind (GPU or CPU), each with when it became free (or when the last idle
/// wait ended), to measure dispatch overhead.
struct Pool {
    gpu: bool,
    free: Mutex<Vec<(Slot, Instant)>>,
}

impl Pool {
    /// The idle time so far was not overhead (nothing was ready, or the server was unreachable).
    fn restart_clocks(&self) {
        let now = Instant::now();
        for (_, at) in self.free.lock().unwrap().iter_mut() {
            *at = now;
        }
    }
}

/// Mean idle time of a slot between two tasks while work was waiting (the lease round trip):
/// an exponentially weighted mean over roughly the last 50 tasks, sent with each heartbeat so
/// the server's ETA can count it.
#[derive(Debug, Default)]
struct DispatchMeter {
    mean_ms: f64,
    samples: u64,
}

impl DispatchMeter {
    /// Gaps longer than this are stalls (server restart, backoff), not dispatch.
    const MAX_GAP: Duration = Duration::from_secs(5);

    fn record(&mut self, gap: Duration) {
        if gap > Self::MAX_GAP {
            return;
        }
        let ms = gap.as_secs_f64() * 1000.0;
        self.samples += 1;
        let alpha = (1.0 / self.samples as f64).max(0.02);
        self.mean_ms += alpha * (ms - self.mean_ms);
    }

    /// Reported once a few tasks were measured.
    fn value(&self) -> Option<f64> {
        (self.samples >= 5).then_some(self.mean_ms)
    }
}

struct Shared {
    client: ServerClient,
    worker_id: String,
    handler: Arc<dyn TaskHandler>,
    default_timeout: Duration,
    total_slots: u32,
    gpu_names: Vec<String>,
    datasets: Vec<String>,
    running: Mutex<HashMap<Uuid, Arc<Running>>>,
    slot_freed: Notify,
    all_idle: Notify,
    progress_changed: Arc<Notify>,
    heartbeat_ms: AtomicU64,
    dispatch: Mutex<DispatchMeter>,
    outbox: mpsc::UnboundedSender<SubmitAnswer>,
    /// Stops the pull loops.
    stop_pulling: CancellationToken,
    /// Set when the server refused the token: the processor exits with this error.
    fatal: Mutex<Option<String>>,
}

impl Processor {
    /// A builder with defaults: one CPU slot, 1 h default timeout, 30 s drain.
    pub fn builder() -> ProcessorBuilder {
        ProcessorBuilder {
            server: "http://127.0.0.1:7700".into(),
            token: None,
            worker_id: None,
            slots: vec![Slot {
                index: 0,
                gpus: vec![],
            }],
            gpu_names: vec![],
            datasets: vec![],
            default_timeout: Duration::from_secs(3600),
            drain_timeout: Duration::from_secs(30),
            handler: None,
        }
    }

    /// The name this processor reports.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Its slots: one per GPU plus the CPU slots.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Pulls and runs tasks until `shutdown` resolves (or the server refuses the token), then
    /// drains: no new leases, running tasks get `drain_timeout` to finish, the rest are handed
    /// back, and every answer is delivered before it returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            client: self.client.clone(),
            worker_id: self.worker_id.clone(),
            handler: self.handler.clone(),
            default_timeout: self.default_timeout,
            total_slots: self.slots.len() as u32,
            gpu_names: self.gpu_names.clone(),
            datasets: self.datasets.clone(),
            running: Mutex::new(HashMap::new()),
            slot_freed: Notify::new(),
            all_idle: Notify::new(),
            progress_changed: Arc::new(Notify::new()),
            heartbeat_ms: AtomicU64::new(1000),
            dispatch: Mutex::new(DispatchMeter::default()),
            outbox: tx,
            stop_pulling: CancellationToken::new(),
            fatal: Mutex::new(None),
        });
        let (gpu_slots, cpu_slots): (Vec<Slot>, Vec<Slot>) =
            self.slots.iter().cloned().partition(Slot::is_gpu);
        tracing::info!(
            worker_id = %self.worker_id,
            server = %self.client.base(),
            "processor started: {} GPU slot(s), {} CPU slot(s)",
            gpu_slots.len(),
            cpu_slots.len()
        );
        let mut pullers = Vec::new();
        for (gpu, slots) in [(true, gpu_slots), (false, cpu_slots)] {
            if slots.is_empty() {
                continue;
            }
            let started = Instant::now();
            let pool = Arc::new(Pool {
                gpu,
                free: Mutex::new(slots.into_iter().map(|s| (s, started)).collect()),
            });
            pullers.push(tokio::spawn(pull_loop(shared.clone(), pool)));
        }
        let stop_heartbeats = CancellationToken::new();
        let heartbeats = tokio::spawn(heartbeat_loop(shared.clone(), stop_heartbeats.clone()));
        let outbox = tokio::spawn(outbox_loop(shared.client.clone(), rx));

        tokio::select! {
            _ = shutdown => tracing::info!("shutting down: no new tasks; draining"),
            _ = shared.stop_pulling.cancelled() => {}
        }
        shared.stop_pulling.cancel();
        for p in pullers {
            let _ = p.await;
        }
        let drained = tokio::time::timeout(self.drain_timeout, wait_idle(&shared)).await;
        if drained.is_err() {
            let running: Vec<_> = shared.running.lock().unwrap().values().cloned().collect();
            tracing::warn!(
                "{} task(s) still running after {:?}: handing them back to the server",
                running.len(),
                self.drain_timeout
            );
            for r in running {
                r.handed_back.store(true, Ordering::SeqCst);
                r.cancel.cancel();
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), wait_idle(&shared)).await;
        }
        stop_heartbeats.cancel();
        let _ = heartbeats.await;
        let fatal = shared.fatal.lock().unwrap().take();
        // Every task has queued its answer; closing the channel lets the outbox finish.
        drop(shared);
        if tokio::time::timeout(Duration::from_secs(30), outbox)
            .await
            .is_err()
        {
            tracing::error!("answers still undelivered after 30 s; their leases will expire and the tasks will run again");
        }
        match fatal {
            Some(e) => Err(anyhow::anyhow!(e)),
            None => {
                tracing::info!("processor stopped");
                Ok(())
            }
        }
    }
}

async fn wait_idle(shared: &Shared) {
    loop {
        let idle = shared.all_idle.notified();
        if shared.running.lock().unwrap().is_empty() {
            return;
        }
        idle.await;
    }
}

/// Exponential backoff with jitter, 100 ms to 10 s.
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let base = 100u64 << self.0.min(7);
        self.0 += 1;
        let ms = base.min(10_000);
        Duration::from_millis(ms / 2 + rand::random_range(0..=ms / 2))
    }
}

async fn pull_loop(shared: Arc<Shared>, pool: Arc<Pool>) {
    let mut backoff = Backoff(0);
    let kind = if pool.gpu { "GPU" } else { "CPU" };
    loop {
        if shared.stop_pulling.is_cancelled() {
            return;
        }
        let freed = shared.slot_freed.notified();
        let free = pool.free.lock().unwrap().len() as u32;
        if free == 0 {
            tokio::select! {
                _ = freed => continue,
                _ = shared.stop_pulling.cancelled() => return,
            }
        }
        let req = RequestTask {
            worker_id: Some(shared.worker_id.clone()),
            max_tasks: free,
            capabilities: Capabilities {
                slots: Some(shared.total_slots),
                gpus: if pool.gpu { 1 } else { 0 },
                gpu_names: shared.gpu_names.clone(),
                memory_mb: None,
                datasets: shared.datasets.clone(),
                packages: shared.handler.cached_packages(),
                extra: Default::default(),
            },
            wait_s: Some(30.0),
        };
        let resp = tokio::select! {
            r = shared.client.request_tasks(&req) => r,
            _ = shared.stop_pulling.cancelled() => return,
        };
        match resp {
            Ok(r) => {
                if backoff.0 > 0 {
                    tracing::info!("{kind} pull loop: server reachable again");
                }
                backoff = Backoff(0);
                shared
                    .heartbeat_ms
                    .store(r.heartbeat_interval_ms.max(100), Ordering::Relaxed);
                if r.waited {
                    pool.restart_clocks();
                }
                let granted = Instant::now();
                // Fewer leases than asked for: the queue ran dry for the other slots, so their
                // idle time from here on is not dispatch overhead either.
                let ran_dry = (r.leases.len() as u32) < free;
                for lease in r.leases {
                    let slot = pool.free.lock().unwrap().pop();
                    match slot {
                        Some((slot, free_since)) => {
                            if !r.waited {
                                shared
                                    .dispatch
                                    .lock()
                                    .unwrap()
                                    .record(granted.saturating_duration_since(free_since));
                            }
                            tokio::spawn(run_one(shared.clone(), pool.clone(), slot, lease));
                        }
                        None => {
                            // Cannot happen (max_tasks = free slots); hand it back rather than hold it.
                            tracing::error!(task = %lease.id, "more leases than free slots; handing one back");
                            let _ = shared.outbox.send(failure_answer(
                                &shared.worker_id,
                                &lease,
                                &TaskFailure::retryable("processor had no free slot"),
                                0.0,
                            ));
                        }
                    }
                }
                if ran_dry {
                    pool.restart_clocks();
                }
            }
            Err(e @ CallError::Auth { .. }) => {
                let e = e.to_string();
                tracing::error!("{e}; stopping");
                *shared.fatal.lock().unwrap() = Some(e);
                shared.stop_pulling.cancel();
                return;
            }
            Err(e) => {
                let wait = backoff.next();
                tracing::warn!("{kind} pull loop: {e}; retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.stop_pulling.cancelled() => return,
                }
                pool.restart_clocks();
            }
        }
    }
}

fn failure_answer(
    worker_id: &str,
    lease: &Lease,
    f: &TaskFailure,
    runtime_ms: f64,
) -> SubmitAnswer {
    SubmitAnswer {
        id: lease.id,
        lease_epoch: Some(lease.lease_epoch),
        worker_id: Some(worker_id.to_string()),
        answer: None,
        error: Some(TaskError {
            kind: f.kind,
            message: f.message.clone(),
        }),
        runtime_ms: Some(runtime_ms),
    }
}

async fn run_one(shared: Arc<Shared>, pool: Arc<Pool>, slot: Slot, lease: Lease) {
    let id = lease.id;
    let running = Arc::new(Running {
        lease_epoch: lease.lease_epoch,
        progress: Arc::new(Progress::new(shared.progress_changed.clone())),
        cancel: CancellationToken::new(),
        silenced: AtomicBool::new(false),
        handed_back: AtomicBool::new(false),
    });
    shared.running.lock().unwrap().insert(id, running.clone());
    let limit = lease
        .task
        .timeout_s
        .map(|s| Duration::from_secs(s.into()))
        .unwrap_or(shared.default_timeout);
    let started = Instant::now();
    let ctx = TaskContext {
        id,
        slot: slot.clone(),
        progress: running.progress.clone(),
        cancel: running.cancel.clone(),
        deadline: started + limit,
    };
    tracing::debug!(task = %id, slot = slot.index, function = %lease.task.function, "running");
    // The handler honours ctx.deadline itself; this outer limit is only a backstop.
    let outcome = match tokio::time::timeout(
        limit + Duration::from_secs(5),
        shared.handler.process_task(&lease.task, &ctx),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(TaskFailure::timeout(format!(
            "the task ran past its {}s time limit",
            limit.as_secs()
        ))),
    };
    let runtime_ms = started.elapsed().as_secs_f64() * 1000.0;
    if running.handed_back.load(Ordering::SeqCst) {
        let _ = shared.outbox.send(failure_answer(
            &shared.worker_id,
            &lease,
            &TaskFailure::retryable(
                "the processor shut down before the task finished; handed back",
            ),
            runtime_ms,
        ));
    } else if running.silenced.load(Ordering::SeqCst) {
        tracing::info!(task = %id, "stopped: cancelled by its owner or lease lost; no answer sent");
    } else {
        let answer = match outcome {
            Ok(v) => SubmitAnswer {
                id,
                lease_epoch: Some(lease.lease_epoch),
                worker_id: Some(shared.worker_id.clone()),
                answer: Some(v),
                error: None,
                runtime_ms: Some(runtime_ms),
            },
            Err(f) => {
                let f = if f.kind == TaskErrorKind::Cancelled {
                    // Cancelled without being told by the server: not the owner's doing.
                    TaskFailure::retryable(f.message)
                } else {
                    f
                };
                tracing::info!(task = %id, kind = ?f.kind, "task failed: {}", f.message);
                failure_answer(&shared.worker_id, &lease, &f, runtime_ms)
            }
        };
        let _ = shared.outbox.send(answer);
    }
    {
        let mut r = shared.running.lock().unwrap();
        r.remove(&id);
        if r.is_empty() {
            shared.all_idle.notify_waiters();
        }
    }
    pool.free.lock().unwrap().push((slot, Instant::now()));
    shared.slot_freed.notify_waiters();
}

async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let min_gap = Duration::from_millis(250);
    let mut last = Instant::now();
    loop {
        let interval = Duration::from_millis(shared.heartbeat_ms.load(Ordering::Relaxed));
        tokio::select! {
            _ = tokio::time::sleep_until((last + interval).into()) => {}
            _ = shared.progress_changed.notified() => {
                tokio::time::sleep_until((last + min_gap).into()).await;
            }
            _ = stop.cancelled() => return,
        }
        last = Instant::now();
        let leases: Vec<(Uuid, Arc<Running>)> = shared
            .running
            .lock()
            .unwrap()
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        // Sent while idle too: it keeps this processor listed as live and carries broadcasts.
        let req = HeartbeatRequest {
            worker_id: Some(shared.worker_id.clone()),
            leases: leases
                .iter()
                .map(|(id, r)| HeartbeatLease {
                    id: *id,
                    lease_epoch: r.lease_epoch,
                    progress: r.progress.get(),
                })
                .collect(),
            capabilities: None,
            dispatch_ms: shared.dispatch.lock().unwrap().value(),
        };
        match shared.client.heartbeat(&req).await {
            Ok(resp) => {
                for payload in &resp.broadcasts {
                    shared.handler.update(payload).await;
                }
                let by_id: HashMap<Uuid, Arc<Running>> = leases.into_iter().collect();
                for (ids, why) in [
                    (resp.cancelled, "cancelled by its owner"),
                    (resp.lost, "lease lost"),
                ] {
                    for id in ids {
                        if let Some(r) = by_id.get(&id) {
                            tracing::info!(task = %id, "{why}: stopping it");
                            r.silenced.store(true, Ordering::SeqCst);
                            r.cancel.cancel();
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("heartbeat failed: {e}"),
        }
    }
}

/// Delivers answers in batches, retrying with backoff until the server has them. Ends when every
/// sender is gone and the queue is empty.
async fn outbox_loop(client: ServerClient, mut rx: mpsc::UnboundedReceiver<SubmitAnswer>) {
    let mut backoff = Backoff(0);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 500 {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        loop {
            match client.submit_answers(&batch).await {
                Ok(results) => {
                    backoff = Backoff(0);
                    for r in results {
                        match r.status {
                            200 => {}
                            409 => {
                                tracing::info!(task = %r.id, "answer not recorded: the lease is no longer ours (task re-leased, cancelled or finished)")
                            }
                            _ => {
                                tracing::warn!(task = %r.id, status = r.status, code = ?r.code, "answer refused")
                            }
                        }
                    }
                    break;
                }
                Err(CallError::Rejected {
                    status,
                    code,
                    message,
                }) => {
                    tracing::error!("{} answer(s) refused as a whole ({status} {code}: {message}); dropped, their leases will expire", batch.len());
                    break;
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(
                        "could not deliver {} answer(s): {e}; retrying in {wait:?}",
                        batch.len()
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_meter_reports_recent_gaps_and_skips_stalls() {
        let mut m = DispatchMeter::default();
        for _ in 0..4 {
            m.record(Duration::from_millis(2));
        }
        assert_eq!(m.value(), None, "too few samples to report");
        m.record(Duration::from_millis(2));
        assert!((m.value().unwrap() - 2.0).abs() < 1e-9);
        m.record(Duration::from_secs(30));
        assert!(
            (m.value().unwrap() - 2.0).abs() < 1e-9,
            "a stall is not dispatch"
        );
        for _ in 0..500 {
            m.record(Duration::from_millis(10));
        }
        assert!((m.value().unwrap() - 10.0).abs() < 0.1, "tracks a change");
    }
}
