//! The domain layer between HTTP handlers and the store: validation, ownership, long-polls,
//! wake-ups, worker bookkeeping and estimates. Handlers parse, call one method here, and map the
//! result; nothing here knows about HTTP beyond the error type.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crpc_package::manifest::{valid_exact_version, valid_package_name, valid_version_req};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use task_api::{
    AnswerResponse, Capabilities, HeartbeatRequest, HeartbeatResponse, Lease, RequestTask,
    RequestTaskResponse, SubmitAnswer, SubmitBatch, SubmitBatchResponse, SubmitResponse,
    TaskErrorKind, TaskSpec, TaskState, TaskView,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::resolver::Resolver;
use crate::stats::{estimate, non_empty, Estimate, FnKey};
use crate::store::{
    AnswerIn, AnswerKind, AnswerOutcome, BatchResult, CancelOutcome, ClaimRequest, Finished,
    HeartbeatIn, Holder, ListQuery, LoadScope, NewTask, Store, StoreEvent, SubmitOutcome,
    TaskRecord, WorkerRecord,
};
use crate::waiters::{batch_key, task_key, Waiters};

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

/// The task queue service.
pub struct Queue {
    store: Arc<dyn Store>,
    cfg: QueueConfig,
    waiters: Waiters,
    work: Notify,
    /// Per worker: last row write (ms), capabilities fingerprint, whether a dispatch overhead
    /// was stored.
    seen: Mutex<HashMap<String, (i64, u64, bool)>>,
    shutdown: CancellationToken,
    resolver: Option<Arc<Resolver>>,
    /// Per owner: when its queued tasks were counted, and the count since (plus what this
    /// replica accepted after), for `max_queued_per_owner`.
    pending: Mutex<HashMap<String, (Instant, u64)>>,
}

/// How long a count of an owner's queued tasks is trusted.
const PENDING_RECOUNT: Duration = Duration::from_secs(10);

impl Queue {
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
                    StoreEvent::Task(id) => queue.waiters.notify(&task_key(&id)),
                    StoreEvent::Batch(id) => queue.waiters.notify(&batch_key(&id)),
                }
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

    // ---------------------------------------------------------------- users: submit

    /// Submits one task. `Ok((response, true))` when a new task was created.
    pub async fn submit(
        &self,
        caller: &Caller,
        spec: TaskSpec,
    ) -> Result<(SubmitResponse, bool), ApiError> {
        let task = self.new_task(spec, "").await?;
        if task.memoize {
            if let Some((id, state)) = self
                .store
                .find_memoized(&caller.sub, &task.args_hash)
                .await?
            {
                return Ok((submitted(id, state, &task.version), false));
            }
        }
        let (id, version) = (task.id, task.version.clone());
        self.reserve_quota(&caller.sub, 1).await?;
        match self.store.submit_one(&caller.sub, task, now_ms()).await? {
            SubmitOutcome::Created => {
                self.work.notify_waiters();
                Ok((submitted(id, TaskState::Queued, &version), true))
            }
            SubmitOutcome::Existing { id, state } => Ok((submitted(id, state, &version), false)),
            SubmitOutcome::Conflict { id } => Err(ApiError::new(
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                format!("idempotency_key is already used by task {id} with a different body"),
            )
            .with_details(json!({"field": "idempotency_key", "task_id": id}))),
        }
    }

    /// Submits a batch (the seed's `Pool.map`).
    pub async fn submit_batch(
        &self,
        caller: &Caller,
        batch: SubmitBatch,
    ) -> Result<SubmitBatchResponse, ApiError> {
        if batch.tasks.is_empty() {
            return Err(ApiError::invalid(
                "tasks",
                "tasks must hold at least one task",
            ));
        }
        if batch.tasks.len() > self.cfg.max_batch_tasks {
            return Err(ApiError::invalid(
                "tasks",
                format!(
                    "a batch holds at most {} tasks; split it",
                    self.cfg.max_batch_tasks
                ),
            ));
        }
        let mut tasks = Vec::with_capacity(batch.tasks.len());
        for (i, spec) in batch.tasks.into_iter().enumerate() {
            if spec.idempotency_key.is_some() {
                return Err(ApiError::invalid(
                    &format!("tasks[{i}].idempotency_key"),
                    "idempotency keys are per task submit; a batch is identified by its batch_id",
                ));
            }
            tasks.push(self.new_task(spec, &format!("tasks[{i}].")).await?);
        }
        self.reserve_quota(&caller.sub, tasks.len() as u64).await?;
        let batch_id = Uuid::now_v7();
        let ids = tasks.iter().map(|t| t.id).collect();
        self.store
            .submit_batch(&caller.sub, batch_id, tasks, now_ms())
            .await?;
        self.work.notify_waiters();
        Ok(SubmitBatchResponse {
            success: true,
            batch_id,
            ids,
        })
    }

    /// 429 `queue_full` when `owner` would have more than `max_queued_per_owner` queued
    /// tasks with `adding` more; else counts them as added. The count plus what this replica
    /// accepted since is an upper bound (started tasks are not subtracted), so the database is
    /// asked again only when that bound would pass the cap (at most once a second) or every
    /// [`PENDING_RECOUNT`] (to see other replicas' submits): the hot path almost never counts.
    async fn reserve_quota(&self, owner: &str, adding: u64) -> Result<(), ApiError> {
        let cap = self.cfg.max_queued_per_owner;
        if cap == 0 {
            return Ok(());
        }
        let known = self.pending_counts().get(owner).copied();
        let stale = known.is_none_or(|(at, n)| {
            at.elapsed() >= PENDING_RECOUNT
                || (n + adding > cap && at.elapsed() >= Duration::from_secs(1))
        });
        let now = match known {
            Some((_, n)) if !stale => n,
            _ => {
                let n = self.store.pending_count(owner).await?;
                self.pending_counts()
                    .insert(owner.to_string(), (Instant::now(), n));
                n
            }
        };
        if now + adding > cap {
            return Err(ApiError::new(
                actix_web::http::StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!("`{owner}` has {now} queued tasks; at most {cap} (--max-queued-per-owner)"),
            )
            .with_details(json!({"retry_after_s": 1, "queued": now, "limit": cap})));
        }
        if let Some(e) = self.pending_counts().get_mut(owner) {
            e.1 += adding;
        }
        Ok(())
    }

    fn pending_counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u64)>> {
        self.pending.lock().expect("pending lock")
    }

    async fn new_task(&self, mut spec: TaskSpec, prefix: &str) -> Result<NewTask, ApiError> {
        let field = |f: &str| format!("{prefix}{f}");
        let name_ok = |s: &str, max: usize| {
            !s.is_empty()
                && s.len() <= max
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-:".contains(c))
        };
        if !name_ok(&spec.function, 256) {
            return Err(ApiError::invalid(
                &field("function"),
                "function must be 1-256 characters of letters, digits, `_ . - :`",
            ));
        }
        if let Some(p) = &spec.package {
            if !valid_package_name(p) {
                return Err(ApiError::invalid(
                    &field("package"),
                    "package must match [a-z0-9][a-z0-9_-]{0,63}",
                ));
            }
        }
        if let Some(v) = &spec.version {
            // Names and versions become cache paths on every processor: only what semver
            // accepts gets through. Without a registry nothing resolves a requirement, so the
            // version must be exact.
            let (ok, what) = match self.resolver {
                Some(_) => (valid_version_req(v), "a semver requirement such as `^1.2` or `=1.0.0`"),
                None => (
                    valid_exact_version(v),
                    "an exact semver version such as `1.2.0` (this server has no --registry to resolve requirements)",
                ),
            };
            if !ok {
                return Err(ApiError::invalid(
                    &field("version"),
                    format!("version must be {what}, at most 64 characters"),
                ));
            }
        }
        if !(-1000..=1000).contains(&spec.priority) {
            return Err(ApiError::invalid(
                &field("priority"),
                "priority must be between -1000 and 1000",
            ));
        }
        if let Some(t) = spec.timeout_s {
            if t == 0 || t > 7 * 24 * 3600 {
                return Err(ApiError::invalid(
                    &field("timeout_s"),
                    "timeout_s must be 1 s to 7 days",
                ));
            }
        }
        let max_attempts = spec.max_attempts.unwrap_or(self.cfg.default_max_attempts);
        if !(1..=100).contains(&max_attempts) {
            return Err(ApiError::invalid(
                &field("max_attempts"),
                "max_attempts must be 1 to 100",
            ));
        }
        if let Some(k) = &spec.idempotency_key {
            if k.is_empty() || k.len() > 256 {
                return Err(ApiError::invalid(
                    &field("idempotency_key"),
                    "idempotency_key must be 1-256 characters",
                ));
            }
        }
        if let Some(t) = spec.ttl_s {
            if t == 0 || t > 365 * 24 * 3600 {
                return Err(ApiError::invalid(
                    &field("ttl_s"),
                    "ttl_s must be 1 s to 365 days",
                ));
            }
        }
        if spec.resources.gpus > 64 {
            return Err(ApiError::invalid(
                &field("resources.gpus"),
                "resources.gpus must be at most 64",
            ));
        }
        if spec.resources.datasets.len() > 32
            || spec.resources.datasets.iter().any(|d| !name_ok(d, 128))
        {
            return Err(ApiError::invalid(
                &field("resources.datasets"),
                "at most 32 datasets, each 1-128 characters of letters, digits, `_ . - :`",
            ));
        }
        // The request hash is of the body as sent, before resolution fills in the version.
        let request_hash = spec.idempotency_key.as_ref().map(|_| {
            let mut body = spec.clone();
            body.idempotency_key = None;
            sha256_hex(&json!(body))
        });
        if let Some(resolver) = &self.resolver {
            let r = resolver.resolve(&spec, prefix).await?;
            spec.package = Some(r.package);
            spec.version = Some(r.version);
            if spec.resources.is_empty() {
                spec.resources = r.resources;
            }
        }
        let package = spec.package.clone().unwrap_or_default();
        let version = spec.version.clone().unwrap_or_default();
        let args_hash = sha256_hex(&json!([
            package,
            version,
            spec.function,
            spec.args,
            spec.kwargs
        ]));
        Ok(NewTask {
            id: Uuid::now_v7(),
            package,
            version,
            function: spec.function,
            args: spec.args,
            kwargs: spec.kwargs,
            priority: spec.priority,
            max_attempts,
            timeout_s: spec.timeout_s,
            ttl_s: spec.ttl_s,
            idempotency_key: spec.idempotency_key,
            request_hash,
            args_hash,
            memoize: spec.memoize,
            req_gpus: spec.resources.gpus,
            req_memory_mb: spec.resources.memory_mb,
            req_datasets: spec.resources.datasets,
        })
    }

    // ---------------------------------------------------------------- users: read

    /// A task the caller may see, else 404.
    pub async fn visible_task(&self, caller: &Caller, id: Uuid) -> Result<TaskRecord, ApiError> {
        match self.store.get_task(id).await? {
            Some(t) if caller.may_see(&t.owner) => Ok(t),
            _ => Err(ApiError::no_task(id)),
        }
    }

    /// The answer (or state) of a task; with `wait`, parks until terminal or the wait ends.
    pub async fn request_answer(
        &self,
        caller: &Caller,
        id: Uuid,
        wait: Option<f64>,
    ) -> Result<AnswerResponse, ApiError> {
        let wait = self.user_wait(wait)?;
        let deadline = Instant::now() + wait;
        let waiter = self.waiters.subscribe(task_key(&id));
        let mut checked_owner = false;
        loop {
            let notified = waiter.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if checked_owner {
                if let Some(resp) = waiter
                    .slot
                    .finished()
                    .and_then(|f| answer_from_snapshot(&f))
                {
                    return Ok(resp);
                }
            }
            let t = self.visible_task(caller, id).await?;
            checked_owner = true;
            if t.state.is_terminal() || Instant::now() >= deadline || self.draining() {
                return Ok(AnswerResponse {
                    success: true,
                    id: t.id,
                    state: t.state,
                    answer: t.answer,
                    error: t.error,
                    progress: t.progress,
                    attempt: t.attempt,
                });
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// A page of the caller's tasks, newest first.
    pub async fn list(
        &self,
        caller: &Caller,
        state: Option<TaskState>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<TaskView>, Option<i64>), ApiError> {
        let limit = limit.clamp(1, 1000);
        let rows = self
            .store
            .list_tasks(ListQuery {
                owner: caller.owner_filter(),
                state,
                before,
                limit,
            })
            .await?;
        let next = (rows.len() as u32 == limit)
            .then(|| rows.last().map(|r| r.seq))
            .flatten();
        Ok((rows.into_iter().map(task_view).collect(), next))
    }

    /// Cancels a task the caller owns.
    pub async fn cancel(&self, caller: &Caller, id: Uuid) -> Result<TaskState, ApiError> {
        self.visible_task(caller, id).await?;
        match self.store.cancel(id, &caller.sub, now_ms()).await? {
            CancelOutcome::Cancelled(f) => {
                self.finished(&f);
                Ok(TaskState::Cancelled)
            }
            CancelOutcome::AlreadyFinished(state) => Err(ApiError::conflict(
                "already_finished",
                format!("task {id} already finished ({state}); nothing to cancel"),
            )
            .with_details(json!({"state": state}))),
            CancelOutcome::NotFound => Err(ApiError::no_task(id)),
        }
    }

    /// Deletes a task the caller owns (a running one is cancelled on its worker).
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> Result<TaskState, ApiError> {
        self.visible_task(caller, id).await?;
        match self.store.delete(id).await? {
            Some(f) => {
                self.finished(&f);
                Ok(f.state)
            }
            None => Err(ApiError::no_task(id)),
        }
    }

    /// Counts by state, ETA; with `wait`, parks until every task finished or the wait ends.
    pub async fn batch_status(
        &self,
        caller: &Caller,
        id: Uuid,
        wait: Option<f64>,
    ) -> Result<Value, ApiError> {
        let wait = self.user_wait(wait)?;
        let deadline = Instant::now() + wait;
        let waiter = self.waiters.subscribe(batch_key(&id));
        loop {
            let notified = waiter.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch = self.visible_batch(caller, id).await?;
            let counts = self.store.batch_counts(id).await?;
            let finished = finished_count(batch.total, &counts);
            let done = finished >= batch.total;
            if done || Instant::now() >= deadline || self.draining() {
                let est = self.estimate_scope(LoadScope::Batch(id)).await?;
                let cap = self.capacity().await?;
                let by_state: serde_json::Map<String, Value> = TaskState::ALL
                    .iter()
                    .map(|s| {
                        (
                            s.as_str().to_string(),
                            json!(counts.get(s).copied().unwrap_or(0)),
                        )
                    })
                    .collect();
                return Ok(json!({
                    "success": true,
                    "batch_id": id,
                    "total": batch.total,
                    "finished": finished,
                    "done": done,
                    "counts": by_state,
                    "time": est.time,
                    "eta_s": cap.eta(&est),
                    "created_at": batch.created_at,
                }));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// Finished results of a batch after `after`, in completion order (imap_unordered).
    pub async fn batch_results(
        &self,
        caller: &Caller,
        id: Uuid,
        after: i64,
        limit: u32,
        wait: Option<f64>,
    ) -> Result<Value, ApiError> {
        let wait = self.user_wait(wait)?;
        let limit = limit.clamp(1, 1000);
        let deadline = Instant::now() + wait;
        let waiter = self.waiters.subscribe(batch_key(&id));
        loop {
            let notified = waiter.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch = self.visible_batch(caller, id).await?;
            // Whether every task had finished is read BEFORE the results: a task finishing
            // between the two reads must not let us say `done` without having returned it.
            let counts = self.store.batch_counts(id).await?;
            let all_finished = finished_count(batch.total, &counts) >= batch.total;
            let results: Vec<BatchResult> = self.store.batch_results(id, after, limit).await?;
            if !results.is_empty() || all_finished || Instant::now() >= deadline || self.draining()
            {
                let next = results.last().map(|r| r.finish_seq).unwrap_or(after);
                let done = all_finished && (results.len() as u32) < limit;
                return Ok(json!({
                    "success": true,
                    "batch_id": id,
                    "results": results,
                    "next": next,
                    "done": done,
                }));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    async fn visible_batch(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<crate::store::BatchRecord, ApiError> {
        match self.store.get_batch(id).await? {
            Some(b) if caller.may_see(&b.owner) => Ok(b),
            _ => Err(ApiError::not_found(format!("no batch with id {id}"))),
        }
    }

    fn user_wait(&self, wait: Option<f64>) -> Result<Duration, ApiError> {
        let w = wait.unwrap_or(0.0);
        if !w.is_finite() || w < 0.0 {
            return Err(ApiError::bad_request(
                "bad_query",
                "wait must be a number of seconds ≥ 0",
            ));
        }
        Ok(clamped_secs(w, self.cfg.max_user_wait))
    }

    // ---------------------------------------------------------------- estimates, stats, workers

    async fn estimate_scope(&self, scope: LoadScope) -> Result<Estimate, ApiError> {
        let load = self.store.queue_load(scope, now_ms()).await?;
        let stats = self
            .store
            .stats()
            .await?
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect::<HashMap<FnKey, _>>();
        Ok(estimate(&load, &stats))
    }

    /// `GET /user/estimate_time_left`: the whole queue, or what runs before (and including) a task.
    pub async fn estimate(
        &self,
        caller: &Caller,
        task_id: Option<Uuid>,
    ) -> Result<Value, ApiError> {
        let scope = match task_id {
            None => LoadScope::All,
            Some(id) => {
                let t = self.visible_task(caller, id).await?;
                match t.state {
                    s if s.is_terminal() => {
                        return Ok(
                            json!({"success": true, "task_id": id, "state": s, "time": 0.0, "eta_s": 0.0,
                                         "queued": 0, "running": 0, "per_function": [], "confidence": 1.0}),
                        )
                    }
                    TaskState::Queued | TaskState::Waiting => LoadScope::Ahead {
                        priority: t.priority,
                        seq: t.seq,
                    },
                    _ => LoadScope::Ahead {
                        priority: i32::MAX,
                        seq: i64::MIN,
                    },
                }
            }
        };
        let est = self.estimate_scope(scope).await?;
        let cap = self.capacity().await?;
        let mut v = json!({
            "success": true,
            "time": est.time,
            "eta_s": cap.eta(&est),
            "live_slots": cap.slots,
            "dispatch_ms": cap.dispatch_ms,
            "queued": est.queued,
            "running": est.running,
            "per_function": est.per_function,
            "confidence": est.confidence,
        });
        if let Some(id) = task_id {
            v["task_id"] = json!(id);
        }
        Ok(v)
    }

    /// `GET /user/stats`.
    pub async fn stats(&self) -> Result<Value, ApiError> {
        let rows = self.store.stats().await?;
        let functions: Vec<Value> = rows
            .iter()
            .map(|s| {
                json!({
                    "package": non_empty(&s.key.package),
                    "version": non_empty(&s.key.version),
                    "function": s.key.function,
                    "count": s.count,
                    "failures": s.failures,
                    "mean_ms": s.mean_ms,
                    "stddev_ms": s.stddev_ms(),
                    "p50_ms": s.sketch.quantile(0.5),
                    "p95_ms": s.sketch.quantile(0.95),
                    "last_seen": s.last_seen,
                })
            })
            .collect();
        Ok(json!({"success": true, "functions": functions}))
    }

    /// `GET /user/workers`: processors heard from within the live window (or ever, with `all`).
    pub async fn workers(&self, all: bool) -> Result<Value, ApiError> {
        let now = now_ms();
        let since = if all {
            0
        } else {
            now - self.cfg.live_window.as_millis() as i64
        };
        let workers = self.store.workers(since).await?;
        let live_cutoff = now - self.cfg.live_window.as_millis() as i64;
        let slots: u64 = workers
            .iter()
            .filter(|w| w.last_seen >= live_cutoff)
            .map(|w| w.slots as u64)
            .sum();
        let list: Vec<Value> = workers
            .into_iter()
            .map(|w| {
                let live = w.last_seen >= live_cutoff;
                let mut v = json!(w);
                v["live"] = json!(live);
                v
            })
            .collect();
        Ok(json!({"success": true, "live_slots": slots, "workers": list}))
    }

    /// Live slots and their dispatch overhead.
    async fn capacity(&self) -> Result<Capacity, ApiError> {
        let since = now_ms() - self.cfg.live_window.as_millis() as i64;
        Ok(Capacity::of(&self.store.workers(since).await?))
    }

    // ---------------------------------------------------------------- workers

    /// Leases up to `max_tasks` tasks, long-polling up to `wait_s` (≤ 30 s) when none is ready.
    pub async fn request_tasks(
        &self,
        caller: &Caller,
        body: RequestTask,
    ) -> Result<RequestTaskResponse, ApiError> {
        let worker_id = worker_name(caller, body.worker_id)?;
        if body.max_tasks == 0 || body.max_tasks > 1000 {
            return Err(ApiError::invalid(
                "max_tasks",
                "max_tasks must be 1 to 1000",
            ));
        }
        let wait = match body.wait_s {
            Some(w) if !w.is_finite() || w < 0.0 => {
                return Err(ApiError::invalid(
                    "wait_s",
                    "wait_s must be a number of seconds ≥ 0",
                ))
            }
            Some(w) => clamped_secs(w, self.cfg.max_worker_wait),
            None => self.cfg.max_worker_wait,
        };
        let caps = body.capabilities;
        check_capabilities(&caps)?;
        self.seen_worker(caller, &worker_id, &caps, body.max_tasks, None)
            .await?;
        let holder = Holder {
            worker_id: Some(worker_id.clone()),
            owner: caller.sub.clone(),
        };
        let deadline = Instant::now() + wait;
        let ttl = self.cfg.lease_ttl.as_millis() as i64;
        let mut waited = false;
        let leases = loop {
            let notified = self.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leases: Vec<Lease> = self
                .store
                .claim(ClaimRequest {
                    holder: holder.clone(),
                    max_tasks: body.max_tasks,
                    gpus: caps.gpus,
                    memory_mb: caps.memory_mb,
                    datasets: caps.datasets.clone(),
                    now: now_ms(),
                    lease_ttl_ms: ttl,
                })
                .await?;
            if !leases.is_empty() || Instant::now() >= deadline || self.draining() {
                break leases;
            }
            waited = true;
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shutdown.cancelled() => {}
            }
        };
        if !wait.is_zero() {
            self.seen_worker(caller, &worker_id, &caps, body.max_tasks, None)
                .await?;
        }
        Ok(RequestTaskResponse {
            success: true,
            leases,
            heartbeat_interval_ms: (ttl / 3).max(100) as u64,
            waited,
        })
    }

    async fn seen_worker(
        &self,
        caller: &Caller,
        worker_id: &str,
        caps: &Capabilities,
        max_tasks: u32,
        dispatch_ms: Option<f64>,
    ) -> Result<(), ApiError> {
        let now = now_ms();
        let caps_json = json!(caps);
        let fingerprint = {
            let mut h = Sha256::new();
            h.update(caps_json.to_string());
            h.update(caller.sub.as_bytes());
            u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
        };
        {
            let mut seen = self.seen.lock().expect("seen lock");
            match seen.get(worker_id) {
                Some((at, fp, _)) if *fp == fingerprint && now - at < WORKER_UPSERT_EVERY_MS => {
                    return Ok(())
                }
                Some((_, _, stored)) => {
                    let stored = *stored || dispatch_ms.is_some();
                    seen.insert(worker_id.to_string(), (now, fingerprint, stored));
                }
                None => {
                    seen.insert(
                        worker_id.to_string(),
                        (now, fingerprint, dispatch_ms.is_some()),
                    );
                }
            }
        }
        let taken = !self
            .store
            .upsert_worker(WorkerRecord {
                worker_id: worker_id.to_string(),
                owner: caller.sub.clone(),
                slots: caps.slots.unwrap_or(max_tasks),
                capabilities: caps_json,
                first_seen: now,
                last_seen: now,
                running: 0,
                dispatch_ms,
            })
            .await?;
        if taken {
            self.seen.lock().expect("seen lock").remove(worker_id);
            return Err(worker_id_taken(worker_id));
        }
        Ok(())
    }

    /// Extends leases, records progress, reports cancellations.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        hb: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ApiError> {
        let named = hb.worker_id.is_some();
        let worker_id = worker_name(caller, hb.worker_id)?;
        for (i, l) in hb.leases.iter().enumerate() {
            if let Some(p) = l.progress {
                if !(0.0..=100.0).contains(&p) {
                    return Err(ApiError::invalid(
                        &format!("leases[{i}].progress"),
                        "progress must be between 0 and 100",
                    ));
                }
            }
        }
        if let Some(d) = hb.dispatch_ms {
            if !(0.0..=3_600_000.0).contains(&d) {
                return Err(ApiError::invalid(
                    "dispatch_ms",
                    "dispatch_ms must be between 0 and 3600000",
                ));
            }
        }
        if let Some(caps) = &hb.capabilities {
            check_capabilities(caps)?;
            let slots = caps.slots.unwrap_or(1);
            self.seen_worker(caller, &worker_id, caps, slots, hb.dispatch_ms)
                .await?;
        } else {
            self.touch_worker(caller, &worker_id, hb.dispatch_ms)
                .await?;
        }
        let now = now_ms();
        let ttl = self.cfg.lease_ttl.as_millis() as i64;
        let out = self
            .store
            .heartbeat(HeartbeatIn {
                holder: Holder {
                    worker_id: named.then_some(worker_id),
                    owner: caller.sub.clone(),
                },
                leases: hb.leases,
                now,
                lease_ttl_ms: ttl,
            })
            .await?;
        if let Some(id) = out.foreign.first() {
            return Err(not_lease_holder(*id));
        }
        Ok(HeartbeatResponse {
            success: true,
            extended: out.extended,
            cancelled: out.cancelled,
            lost: out.lost,
            lease_deadline: now + ttl,
            // Filled by the broadcast route (its own issue); processors already act on it.
            broadcasts: Vec::new(),
        })
    }

    /// Keeps a worker's last_seen fresh without knowing its capabilities (throttled).
    async fn touch_worker(
        &self,
        caller: &Caller,
        worker_id: &str,
        dispatch_ms: Option<f64>,
    ) -> Result<(), ApiError> {
        let now = now_ms();
        {
            let mut seen = self.seen.lock().expect("seen lock");
            match seen.get_mut(worker_id) {
                // Throttled, except that a worker's first dispatch figure is stored at once.
                Some((at, _, stored))
                    if now - *at < WORKER_UPSERT_EVERY_MS && (*stored || dispatch_ms.is_none()) =>
                {
                    return Ok(())
                }
                Some((at, _, stored)) => {
                    *at = now;
                    *stored |= dispatch_ms.is_some();
                }
                None => {}
            }
        }
        self.store
            .touch_worker(worker_id, &caller.sub, now, dispatch_ms)
            .await?;
        Ok(())
    }

    /// Applies answers; one result per answer, in order.
    pub async fn submit_answers(
        &self,
        caller: &Caller,
        answers: Vec<SubmitAnswer>,
    ) -> Result<Vec<Result<AnswerOutcome, ApiError>>, ApiError> {
        let mut results: Vec<Option<Result<AnswerOutcome, ApiError>>> =
            Vec::with_capacity(answers.len());
        let mut valid = Vec::new();
        let mut slots = Vec::new();
        for (i, a) in answers.into_iter().enumerate() {
            match to_answer_in(caller, a) {
                Ok(a) => {
                    valid.push(a);
                    slots.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !valid.is_empty() {
            let outcomes = self.store.answer(valid, now_ms()).await?;
            let mut requeued = false;
            for (slot, outcome) in slots.into_iter().zip(outcomes) {
                if let AnswerOutcome::Accepted { finished } = &outcome {
                    match finished {
                        Some(f) => self.finished(f),
                        None => requeued = true,
                    }
                }
                results[slot] = Some(Ok(outcome));
            }
            if requeued {
                self.work.notify_waiters();
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every answer has a result"))
            .collect())
    }

    // ---------------------------------------------------------------- background

    /// One reaper pass: expired leases, expired results, delayed tasks that became ready.
    pub async fn reap_once(&self, last: i64) -> Result<i64, ApiError> {
        let now = now_ms();
        let out = self.store.reap(now).await?;
        for f in &out.failed {
            self.finished(f);
        }
        if out.requeued > 0 || !out.failed.is_empty() || out.deleted > 0 {
            tracing::info!(
                requeued = out.requeued,
                failed = out.failed.len(),
                deleted = out.deleted,
                "reaper pass"
            );
        }
        if out.requeued > 0 || self.store.became_ready(last, now).await? {
            self.work.notify_waiters();
        }
        let horizon = now - 3_600_000;
        self.seen
            .lock()
            .expect("seen lock")
            .retain(|_, (at, _, _)| *at >= horizon);
        self.pending_counts()
            .retain(|_, (at, _)| at.elapsed() < PENDING_RECOUNT);
        Ok(now)
    }

    fn finished(&self, f: &Finished) {
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

/// The answer of a finished task from what the finishing statement returned.
fn answer_from_snapshot(f: &Finished) -> Option<AnswerResponse> {
    let snap = f.snapshot.as_ref()?;
    let parse = |s: &Option<String>| s.as_deref().map(serde_json::from_str).transpose().ok();
    Some(AnswerResponse {
        success: true,
        id: f.id,
        state: f.state,
        answer: parse(&snap.answer)?,
        error: parse(&snap.error)?
            .map(|v: Value| serde_json::from_value(v))
            .transpose()
            .ok()?,
        progress: snap.progress,
        attempt: snap.attempt,
    })
}

/// `secs` (finite, ≥ 0) as a duration of at most `max`: clamped before conversion, since
/// `Duration::from_secs_f64` panics past `u64::MAX` seconds (`?wait=1e20`).
fn clamped_secs(secs: f64, max: Duration) -> Duration {
    Duration::from_secs_f64(secs.min(max.as_secs_f64()))
}

fn submitted(id: Uuid, state: TaskState, version: &str) -> SubmitResponse {
    SubmitResponse {
        success: true,
        id,
        state,
        version: non_empty(version),
    }
}

fn worker_name(caller: &Caller, given: Option<String>) -> Result<String, ApiError> {
    let id = given.unwrap_or_else(|| caller.sub.clone());
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::invalid(
            "worker_id",
            "worker_id must be 1-128 characters",
        ));
    }
    Ok(id)
}

/// 403 for a heartbeat or answer naming another worker's current lease.
pub fn not_lease_holder(id: Uuid) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::FORBIDDEN,
        "not_lease_holder",
        format!("task {id} is leased to another worker; nothing was changed"),
    )
}

fn worker_id_taken(worker_id: &str) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::FORBIDDEN,
        "worker_id_taken",
        format!(
            "worker id `{worker_id}` belongs to another token subject; choose another --worker-id"
        ),
    )
}

/// Bounds on what a worker may claim to offer: `slots` feeds every user's `eta_s`.
fn check_capabilities(c: &Capabilities) -> Result<(), ApiError> {
    let short = |v: &[String], n: usize| v.len() <= n && v.iter().all(|s| s.len() <= 256);
    let checks = [
        (
            c.slots.is_none_or(|s| (1..=1024).contains(&s)),
            "capabilities.slots",
            "slots must be 1 to 1024",
        ),
        (c.gpus <= 64, "capabilities.gpus", "gpus must be at most 64"),
        (
            short(&c.gpu_names, 64),
            "capabilities.gpu_names",
            "at most 64 GPU names of at most 256 characters",
        ),
        (
            short(&c.datasets, 256),
            "capabilities.datasets",
            "at most 256 datasets of at most 256 characters",
        ),
        (
            short(&c.packages, 4096),
            "capabilities.packages",
            "at most 4096 packages of at most 256 characters",
        ),
        (
            c.extra.len() <= 32,
            "capabilities",
            "at most 32 extra capability fields",
        ),
    ];
    match checks.into_iter().find(|(ok, _, _)| !ok) {
        Some((_, field, message)) => Err(ApiError::invalid(field, message)),
        None => Ok(()),
    }
}

fn to_answer_in(caller: &Caller, a: SubmitAnswer) -> Result<AnswerIn, ApiError> {
    let named = a.worker_id.is_some();
    let holder = Holder {
        worker_id: named
            .then(|| worker_name(caller, a.worker_id))
            .transpose()?,
        owner: caller.sub.clone(),
    };
    if let Some(ms) = a.runtime_ms {
        if !ms.is_finite() || ms < 0.0 {
            return Err(ApiError::invalid(
                "runtime_ms",
                "runtime_ms must be a number ≥ 0",
            ));
        }
    }
    let kind = match (a.answer, a.error) {
        (Some(v), None) => AnswerKind::Ok(v),
        (None, Some(e)) => match e.kind {
            TaskErrorKind::Retryable => AnswerKind::Retryable(e),
            // A processor that stopped a task at its time limit reports `timeout`: final, like
            // Celery's hard time limit, and shown to the owner under that kind.
            TaskErrorKind::Fatal | TaskErrorKind::Timeout => AnswerKind::Fatal(e),
            _ => {
                return Err(ApiError::invalid(
                    "error.kind",
                    "a worker reports error.kind `retryable`, `fatal` or `timeout`",
                ))
            }
        },
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "answer",
                "send either answer or error, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "answer",
                "send answer (the return value) or error",
            ))
        }
    };
    Ok(AnswerIn {
        id: a.id,
        lease_epoch: a.lease_epoch,
        holder,
        kind,
        runtime_ms: a.runtime_ms,
    })
}

/// Tasks of a batch that will not change any more: terminal ones, and ones that are gone
/// (deleted by their owner, or expired before the others finished).
fn finished_count(total: u64, counts: &HashMap<TaskState, u64>) -> u64 {
    let pending: u64 = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    total.saturating_sub(pending)
}

/// What the live processors can do, for `eta_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Capacity {
    slots: u64,
    /// Slot-weighted mean of the dispatch overhead the processors report (0 when none does).
    dispatch_ms: f64,
}

impl Capacity {
    fn of(workers: &[WorkerRecord]) -> Capacity {
        let slots: u64 = workers.iter().map(|w| w.slots as u64).sum();
        let (weighted, reported) = workers
            .iter()
            .filter_map(|w| w.dispatch_ms.map(|d| (d * w.slots as f64, w.slots as f64)))
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        Capacity {
            slots,
            dispatch_ms: if reported > 0.0 {
                weighted / reported
            } else {
                0.0
            },
        }
    }

    /// Wall seconds to run `est` (its runtimes plus one dispatch per queued task) on these
    /// slots; `None` when no processor is live.
    fn eta(&self, est: &Estimate) -> Option<f64> {
        (self.slots > 0)
            .then(|| (est.time + est.queued as f64 * self.dispatch_ms / 1000.0) / self.slots as f64)
    }
}

fn sha256_hex(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// Renders a stored task for listing.
pub fn task_view(t: TaskRecord) -> TaskView {
    TaskView {
        id: t.id,
        owner: t.owner,
        package: non_empty(&t.package),
        version: non_empty(&t.version),
        function: t.function,
        state: t.state,
        priority: t.priority,
        attempt: t.attempt,
        max_attempts: t.max_attempts,
        progress: t.progress,
        error: t.error,
        created_at: t.created_at,
        finished_at: t.finished_at,
        runtime_ms: t.runtime_ms,
        batch_id: t.batch_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(slots: u32, dispatch_ms: Option<f64>) -> WorkerRecord {
        WorkerRecord {
            worker_id: format!("w{slots}"),
            owner: "o".into(),
            slots,
            capabilities: json!({}),
            first_seen: 0,
            last_seen: 0,
            running: 0,
            dispatch_ms,
        }
    }

    #[test]
    fn eta_adds_the_reported_dispatch_overhead_per_queued_task() {
        let cap = Capacity::of(&[worker(1, Some(4.0)), worker(3, None), worker(2, Some(1.0))]);
        assert_eq!(cap.slots, 6);
        assert!(
            (cap.dispatch_ms - 2.0).abs() < 1e-9,
            "slot-weighted over reporters"
        );
        let est = Estimate {
            time: 12.0,
            queued: 3000,
            running: 0,
            per_function: vec![],
            confidence: 1.0,
        };
        // (12 s of runtime + 3000 × 2 ms) over 6 slots.
        assert!((cap.eta(&est).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(Capacity::of(&[]).eta(&est), None);
        assert_eq!(Capacity::of(&[worker(2, None)]).eta(&est), Some(6.0));
    }
}
