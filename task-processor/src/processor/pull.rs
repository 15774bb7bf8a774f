//! The pull loop of one pool: lease tasks for free slots plus the prefetch the server allows,
//! carrying the answers waiting in the outbox; run them; hand back prefetched leases that wait
//! too long.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use task_api::{
    Capabilities, Lease, ReleaseRequest, RequestTask, RequestTaskResponse, SubmitAnswer,
    TaskErrorKind,
};
use tokio_util::sync::CancellationToken;

use super::outbox::log_results;
use super::pool::{Held, Pool};
use super::{Backoff, Running, Shared};
use crate::client::CallError;
use crate::gpu::Slot;
use crate::handler::{Progress, TaskContext, TaskFailure};

/// What the pull loop does next.
enum Next {
    /// Ask for leases: `max_tasks` for free slots (long-polling) plus `prefetch` ahead.
    Ask { max_tasks: u32, prefetch: u32 },
    /// Nothing to ask for: wait for a slot to free up or a held lease to go overdue.
    Wait(Option<Instant>),
}

fn next_step(pool: &Pool) -> Next {
    let st = pool.lock();
    let free = st.free.len() as u32;
    let held = st.held.len();
    if free > 0 {
        let prefetch = st.prefetch.ask.min(1000 - free.min(1000));
        return Next::Ask {
            max_tasks: free,
            prefetch,
        };
    }
    if st.prefetch.wants_refill(held) {
        let room = (st.prefetch.cap as usize).saturating_sub(held) as u32;
        return Next::Ask {
            max_tasks: 0,
            prefetch: st.prefetch.ask.min(room),
        };
    }
    Next::Wait(st.next_overdue())
}

pub(super) async fn pull_loop(shared: Arc<Shared>, pool: Arc<Pool>) {
    let mut backoff = Backoff(0);
    let kind = if pool.gpu { "GPU" } else { "CPU" };
    // A request that got no answer: sent again as it was, so that leases the server granted it
    // before the answer was lost come back, instead of waiting out their TTL.
    let mut unanswered: Option<RequestTask> = None;
    loop {
        if shared.stop_pulling.is_cancelled() {
            if let Some(req) = unanswered {
                shared.outbox.put_back(req.answers);
            }
            return;
        }
        let Some(req) = next_request(&shared, &pool, &mut unanswered).await else {
            continue;
        };
        let polls = req.max_tasks > 0;
        if polls {
            shared.outbox.polling(true);
        }
        let resp = tokio::select! {
            r = shared.client.request_tasks(&req) => Some(r),
            _ = shared.stop_pulling.cancelled() => None,
        };
        if polls {
            shared.outbox.polling(false);
        }
        let Some(resp) = resp else {
            // Whether the server got them is unknown: send them again (a replay is harmless).
            shared.outbox.put_back(req.answers);
            return;
        };
        match resp {
            Ok(r) => {
                backoff = Backoff(0);
                shared.link.up();
                log_results(&r.answers);
                granted(&shared, &pool, &req, r);
            }
            Err(e) if is_fatal(&e) => {
                shared.outbox.put_back(req.answers);
                let e = e.to_string();
                tracing::error!("{e}; stopping");
                *shared.fatal.lock().unwrap() = Some(e);
                shared.stop_pulling.cancel();
                return;
            }
            Err(e) => {
                let wait = backoff.next();
                if let CallError::Unavailable { .. } = e {
                    shared.link.lost("asking for tasks", &e);
                    unanswered = Some(req);
                } else {
                    tracing::warn!("{kind} pull loop: {e}; retrying in {wait:?}");
                    shared.outbox.put_back(req.answers);
                }
                // A stop ends the wait; the top of the loop hands back what is unsent.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.stop_pulling.cancelled() => {}
                }
                pool.restart_clocks();
            }
        }
    }
}

/// The next lease request: the one that got no answer, sent again as it was, or a new one when
/// the pool has something to ask for. `None` after waiting for a slot to free up or a held lease
/// to go overdue (or for a stop).
async fn next_request(
    shared: &Arc<Shared>,
    pool: &Arc<Pool>,
    unanswered: &mut Option<RequestTask>,
) -> Option<RequestTask> {
    if let Some(req) = unanswered.take() {
        return Some(RequestTask { again: true, ..req });
    }
    let woke = shared.slot_freed.notified();
    tokio::pin!(woke);
    woke.as_mut().enable();
    match next_step(pool) {
        Next::Ask {
            max_tasks,
            prefetch,
        } => Some(lease_request(shared, pool, max_tasks, prefetch)),
        Next::Wait(overdue) => {
            let until = overdue.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = &mut woke => {}
                _ = tokio::time::sleep_until(until.into()) => hand_back_overdue(shared, pool).await,
                _ = shared.stop_pulling.cancelled() => {}
            }
            None
        }
    }
}

/// Errors retrying cannot mend: the token refused, or a newer run of this worker id working.
fn is_fatal(e: &CallError) -> bool {
    match e {
        CallError::Auth { .. } => true,
        CallError::Rejected { code, .. } => code == "superseded",
        CallError::Unavailable { .. } => false,
    }
}

/// A GPU slot asks only for GPU tasks while a CPU slot of this processor is free (a CPU task
/// would take the GPU slot from the next GPU task), and then polls briefly, so that it takes
/// CPU tasks again soon after the CPU slots fill up.
const GPU_ONLY_WAIT_S: f64 = 1.0;

fn lease_request(shared: &Shared, pool: &Pool, max_tasks: u32, prefetch: u32) -> RequestTask {
    let gpu_only = pool.gpu
        && shared
            .pools
            .iter()
            .any(|p| !p.gpu && !p.lock().free.is_empty());
    let gpu_slots = shared
        .pools
        .iter()
        .filter(|p| p.gpu)
        .map(|p| p.size as u32)
        .sum();
    RequestTask {
        worker_id: Some(shared.worker_id.clone()),
        max_tasks,
        prefetch,
        held_ms: Some(pool.lock().held_ms().min(3_600_000.0)),
        answers: shared.outbox.take(),
        capabilities: Capabilities {
            slots: Some(shared.total_slots),
            gpu_slots: (gpu_slots > 0).then_some(gpu_slots),
            gpus: if pool.gpu { 1 } else { 0 },
            gpu_names: shared.gpu_names.clone(),
            memory_mb: None,
            datasets: shared.datasets.clone(),
            packages: shared.handler.cached_packages(),
            extra: Default::default(),
        },
        gpu_only,
        wait_s: Some(if gpu_only { GPU_ONLY_WAIT_S } else { 30.0 }),
        incarnation: Some(shared.incarnation),
        request_id: Some(uuid::Uuid::now_v7()),
        again: false,
        chains: true,
    }
}

/// Puts a grant to work: leases fill the free slots, the rest are held for the next slot to
/// free up.
fn granted(shared: &Arc<Shared>, pool: &Arc<Pool>, req: &RequestTask, r: RequestTaskResponse) {
    shared
        .heartbeat_ms
        .store(r.heartbeat_interval_ms.max(100), Ordering::Relaxed);
    let now = Instant::now();
    let got = r.leases.len() as u32;
    let starts;
    let orphans;
    let record_gaps;
    {
        let mut st = pool.lock();
        // Idle time is dispatch overhead only while work was waiting: not when this request had
        // to wait for work, nor after a grant that left the queue dry.
        record_gaps = !r.waited && !st.dry;
        if r.waited {
            st.restart_clocks(now);
        }
        for lease in r.leases {
            st.held.push_back(Held { lease, since: now });
        }
        orphans = st.take_orphans(|id| shared.running.lock().unwrap().contains_key(&id));
        starts = st.take_starts();
        st.dry = r.drained;
        let extra = got.saturating_sub(req.max_tasks);
        let held = st.held.len();
        st.prefetch.granted(req.prefetch, extra, held, r.drained);
        // Fewer leases than free slots: the queue ran dry for the others, so their idle time
        // from here on is not dispatch overhead either.
        st.restart_clocks(now);
    }
    for (slot, free_since, lease) in starts {
        if record_gaps {
            shared
                .dispatch
                .lock()
                .unwrap()
                .record(now.saturating_duration_since(free_since));
        }
        spawn_slot(shared, pool, slot, lease);
    }
    hand_back_chained(shared, orphans);
}

/// Hands back chained leases that cannot run here (the task they follow did not succeed here,
/// or its answer cannot be substituted here): the server settles them as waiting tasks.
fn hand_back_chained(shared: &Arc<Shared>, leases: Vec<Lease>) {
    if leases.is_empty() {
        return;
    }
    tracing::debug!(
        "handing back {} chained task(s) that cannot run here",
        leases.len()
    );
    let shared = shared.clone();
    tokio::spawn(async move { release(&shared, leases).await });
}

/// Hands back the held leases that waited past the hold: the slots are busier than expected.
async fn hand_back_overdue(shared: &Shared, pool: &Pool) {
    let overdue = {
        let mut st = pool.lock();
        let overdue = st.take_overdue(Instant::now());
        if !overdue.is_empty() {
            st.prefetch.stalled = true;
        }
        overdue
    };
    if !overdue.is_empty() {
        tracing::info!(
            "{} prefetched task(s) waited over {:?} for a busy slot: handing them back",
            overdue.len(),
            super::pool::PREFETCH_HOLD
        );
        release(shared, overdue).await;
    }
}

/// `POST /worker/release`, in chunks of 1,000; a lease the server cannot take back expires.
pub(super) async fn release(shared: &Shared, leases: Vec<Lease>) {
    for chunk in leases.chunks(1000) {
        let req = ReleaseRequest {
            worker_id: Some(shared.worker_id.clone()),
            leases: chunk.iter().map(Lease::lease_ref).collect(),
            ended: None,
        };
        match shared.client.release(&req).await {
            Ok(r) if !r.not_released.is_empty() => tracing::info!(
                "{} of {} lease(s) were no longer ours to hand back",
                r.not_released.len(),
                chunk.len()
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                "could not hand back {} prefetched lease(s): {e}; they run again once their lease expires",
                chunk.len()
            ),
        }
    }
}

/// The last word of a stopping run that holds nothing any more: whatever the server still
/// records as this run's (a grant on its way as the poll was dropped) goes back to the queue now,
/// its attempt unused, instead of after the lease TTL.
pub(super) async fn goodbye(shared: &Shared) {
    let req = ReleaseRequest {
        worker_id: Some(shared.worker_id.clone()),
        leases: Vec::new(),
        ended: Some(shared.incarnation),
    };
    match shared.client.release(&req).await {
        Ok(r) if !r.released.is_empty() => tracing::info!(
            "{} task(s) granted as this processor stopped went back to the queue",
            r.released.len()
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!("goodbye not delivered: {e}"),
    }
}

/// Runs `lease` in `slot`, then the held leases while there are any, then frees the slot. The
/// held leases chained behind the task just run (see `Lease::follows`) can start once it
/// succeeded, with its answer in place of their references: this slot takes the next, free
/// slots the others. When the task did not succeed, its chain is handed back.
async fn run_slot(shared: Arc<Shared>, pool: Arc<Pool>, slot: Slot, lease: Lease) {
    let mut next = Some(lease);
    while let Some(lease) = next.take() {
        let id = lease.id;
        let followed = pool.lock().is_followed(id);
        let answer = run_one(&shared, &slot, lease, followed).await;
        let mut st = pool.lock();
        st.prefetch.stalled = false;
        let mut back = Vec::new();
        let mut starts = Vec::new();
        if followed {
            back = st.unblock(id, answer.as_ref());
        }
        if !shared.stop_pulling.is_cancelled() {
            next = st.take_next();
            starts = st.take_starts();
        }
        if next.is_some() {
            shared.dispatch.lock().unwrap().record(Duration::ZERO);
        } else {
            st.free.push((slot.clone(), Instant::now()));
        }
        drop(st);
        for (slot, _, lease) in starts {
            spawn_slot(&shared, &pool, slot, lease);
        }
        hand_back_chained(&shared, back);
        // Wakes the pull loop: a slot is free, or the held leases may want a refill.
        shared.slot_freed.notify_waiters();
        if next.is_none() {
            shared.all_idle.notify_waiters();
        }
    }
}

/// [`run_slot`] on a task of its own (boxed: a slot can start another).
fn spawn_slot(shared: &Arc<Shared>, pool: &Arc<Pool>, slot: Slot, lease: Lease) {
    let run: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(run_slot(shared.clone(), pool.clone(), slot, lease));
    tokio::spawn(run);
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
        error: Some(task_api::TaskError {
            kind: f.kind,
            message: f.message.clone(),
        }),
        runtime_ms: Some(runtime_ms),
    }
}

/// Runs one lease and queues its answer; the answer value when it succeeded and `keep` asks
/// for it (a chained lease follows it).
async fn run_one(
    shared: &Shared,
    slot: &Slot,
    lease: Lease,
    keep: bool,
) -> Option<serde_json::Value> {
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
        lease_epoch: lease.lease_epoch,
        slot: slot.clone(),
        progress: running.progress.clone(),
        cancel: running.cancel.clone(),
        deadline: started + limit,
        setup: Arc::default(),
    };
    tracing::debug!(task = %id, slot = slot.index, function = %lease.task.function, "running");
    let busy = metrics::gauge!("crpc_processor_busy_slots", "class" => slot.class());
    busy.increment(1.0);
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
    // The function's own time: a package install before it is not the function's runtime.
    let runtime_ms = started
        .elapsed()
        .saturating_sub(ctx.setup.get())
        .as_secs_f64()
        * 1000.0;
    busy.decrement(1.0);
    record_run(&lease, &outcome, runtime_ms);
    if outcome.is_ok() {
        let mut speed = shared.speed.lock().unwrap();
        let t = &lease.task;
        let function = format!(
            "{}@{}/{}",
            t.package.as_deref().unwrap_or(""),
            t.version.as_deref().unwrap_or(""),
            t.function
        );
        speed.record(&function, runtime_ms, lease.expected_ms);
    }
    let answer = answer_of(shared, &lease, &running, outcome, runtime_ms);
    let kept = answer
        .as_ref()
        .filter(|_| keep)
        .and_then(|a| a.answer.clone());
    if let Some(answer) = answer {
        shared.outbox.push(answer);
    }
    shared.running.lock().unwrap().remove(&id);
    kept
}

/// `crpc_processor_run_seconds{package, function, outcome}`: the function's own time (an
/// install before it excluded); outcome `ok` or the failure's kind.
fn record_run(lease: &Lease, outcome: &Result<serde_json::Value, TaskFailure>, runtime_ms: f64) {
    let outcome = match outcome {
        Ok(_) => "ok",
        Err(f) => f.kind.as_str(),
    };
    let package = lease.task.package.clone().unwrap_or_default();
    metrics::histogram!("crpc_processor_run_seconds", "package" => package, "function" => lease.task.function.clone(), "outcome" => outcome)
        .record(runtime_ms / 1000.0);
}

/// What to tell the server about a finished run, if anything.
fn answer_of(
    shared: &Shared,
    lease: &Lease,
    running: &Running,
    outcome: Result<serde_json::Value, TaskFailure>,
    runtime_ms: f64,
) -> Option<SubmitAnswer> {
    let worker_id = &shared.worker_id;
    if running.handed_back.load(Ordering::SeqCst) {
        let why = "the processor shut down before the task finished; handed back";
        return Some(failure_answer(
            worker_id,
            lease,
            &TaskFailure::retryable(why),
            runtime_ms,
        ));
    }
    if running.silenced.load(Ordering::SeqCst) {
        tracing::info!(task = %lease.id, "stopped: cancelled by its owner or lease lost; no answer sent");
        return None;
    }
    Some(match outcome {
        Ok(v) => SubmitAnswer {
            id: lease.id,
            lease_epoch: Some(lease.lease_epoch),
            worker_id: Some(worker_id.clone()),
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
            tracing::info!(task = %lease.id, kind = ?f.kind, "task failed: {}", f.message);
            failure_answer(worker_id, lease, &f, runtime_ms)
        }
    })
}
