//! The pull loop: lease tasks for free slots, run them through the handler, heartbeat, send the
//! answers back (retrying until the server has them), drain on shutdown.
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use task_api::{HeartbeatLease, HeartbeatRequest};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::{CallError, ServerClient};
use crate::gpu::Slot;
use crate::handler::{Progress, TaskHandler};

mod link;
pub mod outbox;
mod pool;
mod pull;

use link::Link;
use outbox::Outbox;
use pool::Pool;

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
    prefetch: u32,
    outbox_dir: PathBuf,
    handler: Option<Arc<dyn TaskHandler>>,
}

impl ProcessorBuilder {
    /// Task server base URL, or the comma-separated URLs of its replicas (failed over in turn).
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.server = url.into();
        self
    }
    /// Worker token.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }
    /// Name shown in `/user/workers` (default `HOST:PID`; the binary keeps one per package
    /// cache, see `start.rs`).
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
    /// Most leases held ahead of the free slots, per slot kind (0: none; at most 999). The
    /// server grants only what the functions' runtimes allow.
    pub fn prefetch(mut self, n: u32) -> Self {
        self.prefetch = n.min(999);
        self
    }
    /// Where answers wait on disk when the server is away long enough for them to outgrow
    /// [`outbox::MEMORY_BYTES`] (default: the system's temporary directory).
    pub fn outbox_dir(mut self, dir: PathBuf) -> Self {
        self.outbox_dir = dir;
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
            client: ServerClient::new(&self.server, self.token)?,
            worker_id,
            incarnation: Uuid::now_v7(),
            outbox_dir: self.outbox_dir,
            slots: self.slots,
            gpu_names: self.gpu_names,
            datasets: self.datasets,
            default_timeout: self.default_timeout,
            drain_timeout: self.drain_timeout,
            prefetch: self.prefetch,
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
    /// This run (see `RequestTask::incarnation`): the server takes back the leases of earlier
    /// runs of `worker_id` as soon as it sees this one.
    incarnation: Uuid,
    outbox_dir: PathBuf,
    slots: Vec<Slot>,
    gpu_names: Vec<String>,
    datasets: Vec<String>,
    default_timeout: Duration,
    drain_timeout: Duration,
    prefetch: u32,
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

/// How this processor's runtimes compare with what the server predicted for them (each lease's
/// `expected_ms`, from every processor's answers): Σ actual / Σ expected over roughly the last
/// 200 successful tasks (exponentially weighted), sent with each heartbeat so the ETA counts a
/// slower processor's slots for less. A ratio of sums, not a mean of ratios: it weighs each task
/// by its length, as the ETA does, so a thousand noisy 1 ms tasks do not outvote the long ones.
/// A function's first [`SpeedMeter::WARM_UP`] runs here are not compared: the server's
/// predictions for it come from its first few answers (a line through three points, the first
/// call's compile in the mean), and a ratio against them would weigh on the ETA for hundreds of
/// tasks after the predictions settled.
#[derive(Debug, Default)]
struct SpeedMeter {
    actual_ms: f64,
    expected_ms: f64,
    samples: u64,
    /// Runs seen per function (package@version/function), up to `WARM_UP`.
    runs: HashMap<String, u32>,
}

impl SpeedMeter {
    /// Predictions this short are mostly dispatch noise: not compared.
    const MIN_EXPECTED_MS: f64 = 1.0;
    /// Weight kept by the older tasks at each new one.
    const DECAY: f64 = 0.995;

    /// Runs of a function on this processor before its predictions are compared.
    const WARM_UP: u32 = 20;
    /// Functions whose runs are counted; past it the counts start over (bounded memory).
    const FUNCTIONS: usize = 4096;

    fn record(&mut self, function: &str, actual_ms: f64, expected_ms: Option<f64>) {
        if self.runs.len() >= Self::FUNCTIONS && !self.runs.contains_key(function) {
            self.runs.clear();
        }
        let runs = self.runs.entry(function.to_string()).or_default();
        if *runs < Self::WARM_UP {
            *runs += 1;
            return;
        }
        let Some(expected) = expected_ms.filter(|e| *e >= Self::MIN_EXPECTED_MS) else {
            return;
        };
        let actual = actual_ms.clamp(0.01 * expected, 100.0 * expected);
        self.actual_ms = self.actual_ms * Self::DECAY + actual;
        self.expected_ms = self.expected_ms * Self::DECAY + expected;
        self.samples += 1;
    }

    /// Reported once a few tasks were compared.
    fn value(&self) -> Option<f64> {
        (self.samples >= 5).then(|| (self.actual_ms / self.expected_ms).clamp(0.01, 100.0))
    }
}

struct Shared {
    client: ServerClient,
    worker_id: String,
    incarnation: Uuid,
    link: Arc<Link>,
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
    speed: Mutex<SpeedMeter>,
    outbox: Arc<Outbox>,
    /// The pools (GPU, CPU), for heartbeats and shutdown.
    pools: Vec<Arc<Pool>>,
    /// Stops the pull loops.
    stop_pulling: CancellationToken,
    /// Set when the server refused the token: the processor exits with this error.
    fatal: Mutex<Option<String>>,
    /// Broadcasts applied, reported with the next heartbeat.
    applied: Mutex<Vec<task_api::BroadcastApplied>>,
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
            prefetch: 512,
            outbox_dir: std::env::temp_dir(),
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
        let (gpu_slots, cpu_slots): (Vec<Slot>, Vec<Slot>) =
            self.slots.iter().cloned().partition(Slot::is_gpu);
        tracing::info!(
            worker_id = %self.worker_id,
            incarnation = %self.incarnation,
            server = %self.client.bases(),
            "processor started: {} GPU slot(s), {} CPU slot(s), prefetch up to {}",
            gpu_slots.len(),
            cpu_slots.len(),
            self.prefetch
        );
        let pools: Vec<Arc<Pool>> = [(true, gpu_slots), (false, cpu_slots)]
            .into_iter()
            .filter(|(_, slots)| !slots.is_empty())
            .map(|(gpu, slots)| Arc::new(Pool::new(gpu, slots, self.prefetch)))
            .collect();
        let shared = Arc::new(self.shared(pools.clone()));
        let pullers: Vec<_> = pools
            .iter()
            .map(|p| tokio::spawn(pull::pull_loop(shared.clone(), p.clone())))
            .collect();
        let stop_heartbeats = CancellationToken::new();
        let heartbeats = tokio::spawn(heartbeat_loop(shared.clone(), stop_heartbeats.clone()));
        let outbox = tokio::spawn(outbox::outbox_loop(
            shared.client.clone(),
            shared.outbox.clone(),
            shared.link.clone(),
        ));

        tokio::select! {
            _ = shutdown => tracing::info!("shutting down: no new tasks; draining"),
            _ = shared.stop_pulling.cancelled() => {}
        }
        shared.stop_pulling.cancel();
        for p in pullers {
            let _ = p.await;
        }
        self.hand_back_held(&shared).await;
        self.drain(&shared).await;
        stop_heartbeats.cancel();
        let _ = heartbeats.await;
        let fatal = shared.fatal.lock().unwrap().take();
        // Every task has queued its answer; closing the outbox lets it deliver the rest and end.
        shared.outbox.close();
        if tokio::time::timeout(Duration::from_secs(30), outbox)
            .await
            .is_err()
        {
            tracing::error!("answers still undelivered after 30 s; their leases will expire and the tasks will run again");
        }
        pull::goodbye(&shared).await;
        match fatal {
            Some(e) => Err(anyhow::anyhow!(e)),
            None => {
                tracing::info!("processor stopped");
                Ok(())
            }
        }
    }

    fn shared(&self, pools: Vec<Arc<Pool>>) -> Shared {
        Shared {
            client: self.client.clone(),
            worker_id: self.worker_id.clone(),
            incarnation: self.incarnation,
            link: Arc::default(),
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
            speed: Mutex::new(SpeedMeter::default()),
            outbox: Arc::new(Outbox::new(self.outbox_dir.clone(), outbox::MEMORY_BYTES)),
            pools,
            stop_pulling: CancellationToken::new(),
            fatal: Mutex::new(None),
            applied: Mutex::new(Vec::new()),
        }
    }

    /// Prefetched leases never started: back to the queue at once, their attempt unused.
    async fn hand_back_held(&self, shared: &Shared) {
        let held: Vec<_> = shared
            .pools
            .iter()
            .flat_map(|p| p.take_all_held())
            .collect();
        if !held.is_empty() {
            tracing::info!("handing back {} prefetched task(s)", held.len());
            pull::release(shared, held).await;
        }
    }

    /// Running tasks get `drain_timeout` to finish; the rest are stopped and handed back.
    async fn drain(&self, shared: &Shared) {
        let drained = tokio::time::timeout(self.drain_timeout, wait_idle(shared)).await;
        if drained.is_ok() {
            return;
        }
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
        let _ = tokio::time::timeout(Duration::from_secs(10), wait_idle(shared)).await;
    }
}

/// Until every slot is free (no task running or about to start).
async fn wait_idle(shared: &Shared) {
    loop {
        let idle = shared.all_idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if shared.pools.iter().all(|p| p.is_idle()) {
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

/// Between two heartbeats for the leases (every `heartbeat_interval_ms` the server sets), a
/// light one without leases this often asks for broadcasts, so they arrive within seconds.
const BROADCAST_POLL: Duration = Duration::from_secs(2);

async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let min_gap = Duration::from_millis(250);
    let (mut last, mut last_full) = (Instant::now(), Instant::now());
    loop {
        let interval = Duration::from_millis(shared.heartbeat_ms.load(Ordering::Relaxed));
        let full_at = last_full + interval;
        let mut full = true;
        // Reports of applied broadcasts go out at once.
        let poll = match shared.applied.lock().unwrap().is_empty() {
            true => BROADCAST_POLL,
            false => min_gap,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(full_at.min(last + poll).into()) => {
                full = Instant::now() >= full_at;
            }
            _ = shared.progress_changed.notified() => {
                tokio::time::sleep_until((last + min_gap).into()).await;
            }
            _ = stop.cancelled() => return,
        }
        last = Instant::now();
        if full {
            last_full = last;
        }
        heartbeat_once(&shared, full).await;
    }
}

/// One heartbeat for every running and held lease (`full`; else for none: a light one that
/// only reports and asks for broadcasts); stops what the server says to stop.
async fn heartbeat_once(shared: &Shared, full: bool) {
    let running: HashMap<Uuid, Arc<Running>> = shared
        .running
        .lock()
        .unwrap()
        .iter()
        .map(|(id, r)| (*id, r.clone()))
        .collect();
    let mut leases: Vec<HeartbeatLease> = running
        .iter()
        .filter(|_| full)
        .map(|(id, r)| HeartbeatLease {
            id: *id,
            lease_epoch: r.lease_epoch,
            progress: r.progress.get(),
        })
        .collect();
    leases.extend(
        shared
            .pools
            .iter()
            .filter(|_| full)
            .flat_map(|p| p.held_refs())
            .map(|l| HeartbeatLease {
                id: l.id,
                lease_epoch: l.lease_epoch,
                progress: None,
            }),
    );
    // Sent while idle too: it keeps this processor listed as live and carries broadcasts.
    let req = HeartbeatRequest {
        worker_id: Some(shared.worker_id.clone()),
        leases,
        capabilities: None,
        dispatch_ms: shared.dispatch.lock().unwrap().value(),
        speed: shared.speed.lock().unwrap().value(),
        incarnation: Some(shared.incarnation),
        broadcasts_since: shared.handler.broadcasts_since(),
        applied: {
            let mut a = shared.applied.lock().unwrap();
            let n = a.len().min(100);
            a.drain(..n).collect()
        },
    };
    let result = shared.client.heartbeat(&req).await;
    if result.is_err() {
        // The reports go with the next heartbeat.
        let mut a = shared.applied.lock().unwrap();
        a.splice(0..0, req.applied);
    }
    match result {
        Ok(resp) => {
            shared.link.up();
            apply_heartbeat(shared, &running, resp).await
        }
        Err(e @ CallError::Unavailable { .. }) => shared.link.lost("heartbeat", &e),
        Err(e) => tracing::warn!("heartbeat failed: {e}"),
    }
}

/// Stops what the server says to stop, hands broadcasts to the handler.
async fn apply_heartbeat(
    shared: &Shared,
    running: &HashMap<Uuid, Arc<Running>>,
    resp: task_api::HeartbeatResponse,
) {
    for b in &resp.broadcasts {
        if let Some(applied) = shared.handler.update(b).await {
            tracing::info!(broadcast = %b.id, package = %b.package, instances = applied.instances, "broadcast applied");
            shared.applied.lock().unwrap().push(applied);
        }
    }
    for (ids, why) in [
        (&resp.cancelled, "cancelled by its owner"),
        (&resp.lost, "lease lost"),
    ] {
        for id in ids {
            if let Some(r) = running.get(id) {
                tracing::info!(task = %id, "{why}: stopping it");
                r.silenced.store(true, Ordering::SeqCst);
                r.cancel.cancel();
            }
        }
        for p in &shared.pools {
            let n = p.lock().forget(ids);
            if n > 0 {
                tracing::info!("{n} prefetched task(s) {why}: dropped unstarted");
            }
        }
    }
    if !resp.cancelled.is_empty() {
        // The rest of a cancelled batch may be held here too: hand the prefetch back rather than
        // run it; the server keeps what is still wanted queued, in place.
        let held: Vec<_> = shared
            .pools
            .iter()
            .flat_map(|p| p.take_all_held())
            .collect();
        if !held.is_empty() {
            pull::release(shared, held).await;
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

    #[test]
    fn speed_meter_compares_runtimes_with_their_predictions() {
        let warmed = || {
            let mut m = SpeedMeter::default();
            for _ in 0..SpeedMeter::WARM_UP {
                m.record("f", 1.0, Some(1000.0));
            }
            m
        };
        let mut m = warmed();
        assert_eq!(m.value(), None, "a function's first runs are not compared");
        for _ in 0..10 {
            m.record("f", 5.0, None);
            m.record("f", 0.3, Some(0.1));
        }
        assert_eq!(
            m.value(),
            None,
            "nothing predicted, or too short to compare"
        );
        for ms in [10.0, 40.0, 200.0, 20.0, 100.0] {
            m.record("f", 2.0 * ms, Some(ms));
        }
        assert!((m.value().unwrap() - 2.0).abs() < 1e-9, "twice as slow");
        // Many short tasks that run late do not outvote one long one that is on time.
        let mut m = warmed();
        for _ in 0..50 {
            m.record("f", 2.0, Some(1.0));
        }
        m.record("f", 1000.0, Some(1000.0));
        assert!(m.value().unwrap() < 1.06, "{:?}", m.value());
        m.record("f", 1e12, Some(1.0));
        assert!(m.value().unwrap() <= 100.0, "clamped");
        // Another function warms up on its own.
        let before = m.value();
        m.record("g", 1e6, Some(1.0));
        assert_eq!(m.value(), before);
    }
}
