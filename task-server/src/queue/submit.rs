//! Submitting tasks: validation, resolution, the per-owner quota, memoization.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crpc_package::manifest::{valid_exact_version, valid_package_name, valid_version_req};
use serde_json::json;
use task_api::{SubmitBatch, SubmitBatchResponse, SubmitResponse, TaskSpec, TaskState};
use tokio::time::Instant;
use uuid::Uuid;

use super::QueueError;
use super::{now_ms, sha256_hex, Queue, PENDING_RECOUNT};
use crate::auth::Caller;
use crate::cost::CostAt;
use crate::files::refs::files_of;
use crate::graph;
use crate::stats::non_empty;
use crate::store::{NewTask, SubmitOutcome};

impl Queue {
    /// Submits one task. `Ok((response, true))` when a new task was created.
    pub async fn submit(
        &self,
        caller: &Caller,
        spec: TaskSpec,
    ) -> Result<(SubmitResponse, bool), QueueError> {
        let task = self
            .new_task(&caller.sub, spec, "", Uuid::now_v7(), None)
            .await?;
        self.check_visible(caller, std::slice::from_ref(&task), "")
            .await?;
        self.check_files(&caller.sub, std::slice::from_ref(&task), "")
            .await?;
        if task.memoize && task.depends_on.is_empty() {
            if let Some((id, state)) = self
                .store
                .find_memoized(&caller.sub, &task.args_hash)
                .await?
            {
                return Ok((submitted(id, state, &task.version), false));
            }
        }
        let (id, version, state) = (task.id, task.version.clone(), task.state);
        self.reserve_quota(&caller.sub, 1).await?;
        match self.store.submit_one(&caller.sub, task, now_ms()).await? {
            SubmitOutcome::Created => {
                self.work.notify_waiters();
                Ok((submitted(id, state, &version), true))
            }
            SubmitOutcome::Existing { id, state } => Ok((submitted(id, state, &version), false)),
            SubmitOutcome::Conflict { id } => Err(QueueError::KeyReused(id)),
        }
    }

    /// Submits a batch (the seed's `Pool.map`).
    pub async fn submit_batch(
        &self,
        caller: &Caller,
        batch: SubmitBatch,
    ) -> Result<SubmitBatchResponse, QueueError> {
        if batch.tasks.is_empty() {
            return Err(QueueError::invalid(
                "tasks",
                "tasks must hold at least one task",
            ));
        }
        if batch.tasks.len() > self.cfg.max_batch_tasks {
            return Err(QueueError::invalid(
                "tasks",
                format!(
                    "a batch holds at most {} tasks; split it",
                    self.cfg.max_batch_tasks
                ),
            ));
        }
        let ids: Vec<Uuid> = batch.tasks.iter().map(|_| Uuid::now_v7()).collect();
        let mut tasks = Vec::with_capacity(batch.tasks.len());
        for (i, spec) in batch.tasks.into_iter().enumerate() {
            if spec.idempotency_key.is_some() {
                return Err(QueueError::invalid(
                    &format!("tasks[{i}].idempotency_key"),
                    "idempotency keys are per task submit; a batch is identified by its batch_id",
                ));
            }
            let prefix = format!("tasks[{i}].");
            tasks.push(
                self.new_task(&caller.sub, spec, &prefix, ids[i], Some((&ids, i)))
                    .await?,
            );
        }
        self.check_visible(caller, &tasks, "tasks").await?;
        self.check_files(&caller.sub, &tasks, "tasks").await?;
        self.reserve_quota(&caller.sub, tasks.len() as u64).await?;
        let batch_id = Uuid::now_v7();
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
    async fn reserve_quota(&self, owner: &str, adding: u64) -> Result<(), QueueError> {
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
            return Err(QueueError::QueueFull {
                owner: owner.to_string(),
                queued: now,
                limit: cap,
            });
        }
        if let Some(e) = self.pending_counts().get_mut(owner) {
            e.1 += adding;
        }
        Ok(())
    }

    pub(super) fn pending_counts(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u64)>> {
        self.pending.lock().expect("pending lock")
    }

    /// Refuses references to tasks `caller` cannot see, exactly as to tasks that do not exist.
    /// `field` names the list in a batch (`tasks`), empty for a single task.
    pub(super) async fn check_visible(
        &self,
        caller: &Caller,
        tasks: &[NewTask],
        field: &str,
    ) -> Result<(), QueueError> {
        let ours: HashSet<Uuid> = tasks.iter().map(|t| t.id).collect();
        let mut others: Vec<Uuid> = tasks
            .iter()
            .flat_map(|t| t.depends_on.iter().copied())
            .filter(|d| !ours.contains(d))
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        others.sort_unstable();
        others.dedup();
        let owners = self.store.owners_of(&others).await?;
        for (i, t) in tasks.iter().enumerate() {
            for d in &t.depends_on {
                let visible = owners
                    .get(d)
                    .is_some_and(|o| caller.is_admin() || *o == caller.sub);
                if !ours.contains(d) && !visible {
                    let at = if field.is_empty() {
                        String::from("args")
                    } else {
                        format!("{field}[{i}]")
                    };
                    return Err(QueueError::invalid(
                        &at,
                        format!("no task {d}: a task may only wait for tasks its owner can see"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuses tasks that name files their owner may not read (or that do not exist), naming
    /// the field of the first such file.
    pub(super) async fn check_files(
        &self,
        owner: &str,
        tasks: &[NewTask],
        field: &str,
    ) -> Result<(), QueueError> {
        let mut all: Vec<String> = tasks.iter().flat_map(|t| t.files.clone()).collect();
        if all.is_empty() {
            return Ok(());
        }
        all.sort_unstable();
        all.dedup();
        let unreadable = self.store.unreadable_files(owner, &all).await?;
        let Some((i, t)) = tasks
            .iter()
            .enumerate()
            .find(|(_, t)| t.files.iter().any(|f| unreadable.contains(f)))
        else {
            return Ok(());
        };
        let (mut args, mut kwargs) = (t.args.clone(), t.kwargs.clone());
        let named = files_of(&mut args, &mut kwargs).unwrap_or_default();
        let (sha, at) = named
            .into_iter()
            .find(|(f, _)| unreadable.contains(f))
            .unwrap_or_else(|| (unreadable[0].clone(), "args".into()));
        let at = match field {
            "" => at,
            f => format!("{f}[{i}].{at}"),
        };
        Err(QueueError::invalid(
            &at,
            format!("no file sha256:{sha}: upload it with PUT /files first (files are yours or your tasks')"),
        ))
    }

    /// A validated, resolved task with id `id`; errors name the field under `prefix`
    /// (`tasks[3].`). `batch`: the ids of the batch it is in and its index there (its `#N`
    /// references name those).
    pub(super) async fn new_task(
        &self,
        owner: &str,
        mut spec: TaskSpec,
        prefix: &str,
        id: Uuid,
        batch: Option<(&[Uuid], usize)>,
    ) -> Result<NewTask, QueueError> {
        let field = |f: &str| format!("{prefix}{f}");
        check_names(&spec, &field, self.resolver.is_some())?;
        let max_attempts = check_limits(&spec, &field, self.cfg.default_max_attempts)?;
        let key_cap = concurrency_cap(owner, &spec, &field)?;
        let not_before = start_time(&spec, &field)?;
        // The request hash is of the body as sent, before resolution fills in the version.
        let request_hash = spec.idempotency_key.as_ref().map(|_| {
            let mut body = spec.clone();
            body.idempotency_key = None;
            sha256_hex(&json!(body))
        });
        let depends_on = dependencies(&mut spec, batch, &field)?;
        let files = files_of(&mut spec.args, &mut spec.kwargs)
            .map_err(|e| QueueError::invalid(&field(&e.field), e.message))?
            .into_iter()
            .map(|(sha, _)| sha)
            .collect();
        let (mut cost_at, mut fn_cap) = (None, None);
        if let Some(resolver) = &self.resolver {
            let r = resolver.resolve(&spec, prefix).await?;
            spec.package = Some(r.package);
            spec.version = Some(r.version);
            if spec.resources.is_empty() {
                spec.resources = r.resources;
            }
            cost_at = Some(r.cost_at);
            fn_cap = r.cap;
        }
        let cost_at = cost_at.unwrap_or_else(|| CostAt::of(None, spec.args.len()));
        let package = spec.package.clone().unwrap_or_default();
        let version = spec.version.clone().unwrap_or_default();
        let args_hash =
            graph::args_hash(&package, &version, &spec.function, &spec.args, &spec.kwargs);
        // A waiting task's measures are taken when its references are answers.
        let waits = !depends_on.is_empty();
        let cost = match waits {
            true => cost_at.unknown(),
            false => cost_at.measure(&spec.args, &spec.kwargs),
        };
        Ok(NewTask {
            id,
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
            cost,
            state: if waits {
                TaskState::Waiting
            } else {
                TaskState::Queued
            },
            not_before,
            depends_on,
            cost_at: waits.then_some(cost_at),
            cap_fn: fn_cap.as_ref().map(|c| c.key.clone()),
            cap_key: key_cap.as_ref().map(|c| c.key.clone()),
            limits: fn_cap.into_iter().chain(key_cap).collect(),
            files,
        })
    }
}

/// The cap of the submit's `concurrency_key` (scoped to `owner`), if it names one.
fn concurrency_cap(
    owner: &str,
    spec: &TaskSpec,
    field: &dyn Fn(&str) -> String,
) -> Result<Option<crate::caps::CapLimit>, QueueError> {
    use crpc_package::manifest::MAX_CONCURRENT;
    let Some(key) = &spec.concurrency_key else {
        if spec.max_concurrent.is_some() {
            return Err(QueueError::invalid(
                &field("max_concurrent"),
                "max_concurrent limits the tasks of a concurrency_key; name one",
            ));
        }
        return Ok(None);
    };
    if key.is_empty() || key.chars().count() > 200 || key.chars().any(char::is_control) {
        return Err(QueueError::invalid(
            &field("concurrency_key"),
            "concurrency_key must be 1 to 200 characters, none of them control characters",
        ));
    }
    let max = spec.max_concurrent.unwrap_or(1);
    if max == 0 || max > MAX_CONCURRENT {
        return Err(QueueError::invalid(
            &field("max_concurrent"),
            format!("max_concurrent must be 1 to {MAX_CONCURRENT}"),
        ));
    }
    Ok(Some(crate::caps::CapLimit {
        key: crate::caps::owner_key(owner, key),
        max_running: Some(max),
        rate_per_s: None,
    }))
}

/// The tasks `spec` waits for (`$ref`s and `after`), its `#N` references bound to the ids of
/// `batch` (the batch's ids and this task's index; `None` outside a batch, where `#N` is
/// refused).
fn dependencies(
    spec: &mut TaskSpec,
    batch: Option<(&[Uuid], usize)>,
    field: &dyn Fn(&str) -> String,
) -> Result<Vec<Uuid>, QueueError> {
    let refused = |e: graph::RefError| QueueError::invalid(&field(&e.field), e.message);
    if spec.after.len() > graph::MAX_DEPS {
        return Err(QueueError::invalid(
            &field("after"),
            format!("after lists at most {} tasks", graph::MAX_DEPS),
        ));
    }
    if let Some((ids, index)) = batch {
        graph::bind_batch(
            &mut spec.args,
            &mut spec.kwargs,
            &mut spec.after,
            ids,
            index,
        )
        .map_err(refused)?;
    }
    let targets = graph::targets(&mut spec.args, &mut spec.kwargs, &spec.after).map_err(refused)?;
    targets
        .into_iter()
        .map(|(t, at)| match t {
            graph::Target::Task(id) => Ok(id),
            graph::Target::Index(n) => Err(QueueError::invalid(
                &field(&at),
                format!("#{n} names a task of the same batch: only in submit_batch"),
            )),
        })
        .collect()
}

/// When the task may first be leased, ms: `not_before` (RFC 3339) or now + `delay_s`.
fn start_time(spec: &TaskSpec, field: &dyn Fn(&str) -> String) -> Result<Option<i64>, QueueError> {
    const MAX_S: f64 = 365.0 * 24.0 * 3600.0;
    match (&spec.not_before, spec.delay_s) {
        (Some(_), Some(_)) => Err(QueueError::invalid(
            &field("delay_s"),
            "give not_before or delay_s, not both",
        )),
        (Some(t), None) => {
            let at = chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
                QueueError::invalid(
                    &field("not_before"),
                    format!("not_before must be an RFC 3339 time such as 2026-12-24T18:00:00+01:00 ({e})"),
                )
            })?;
            let ms = at.timestamp_millis();
            if ms > now_ms() + (MAX_S as i64) * 1000 {
                return Err(QueueError::invalid(
                    &field("not_before"),
                    "not_before may be at most 365 days ahead",
                ));
            }
            Ok(Some(ms))
        }
        (None, Some(d)) => {
            if !d.is_finite() || !(0.0..=MAX_S).contains(&d) {
                return Err(QueueError::invalid(
                    &field("delay_s"),
                    "delay_s must be 0 to 31536000 seconds",
                ));
            }
            Ok(Some(now_ms() + (d * 1000.0) as i64))
        }
        (None, None) => Ok(None),
    }
}

fn submitted(id: Uuid, state: TaskState, version: &str) -> SubmitResponse {
    SubmitResponse {
        success: true,
        id,
        state,
        version: non_empty(version),
    }
}

/// Letters, digits and `_ . - :`, 1 to `max` characters (function and dataset names).
fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-:".contains(c))
}

/// The names of a task: they become paths and keys on every processor. `resolving`: a
/// registry resolves version requirements (else the version must be exact).
fn check_names(
    spec: &TaskSpec,
    field: &dyn Fn(&str) -> String,
    resolving: bool,
) -> Result<(), QueueError> {
    if !name_ok(&spec.function, 256) {
        return Err(QueueError::invalid(
            &field("function"),
            "function must be 1-256 characters of letters, digits, `_ . - :`",
        ));
    }
    if let Some(p) = &spec.package {
        if !valid_package_name(p) {
            return Err(QueueError::invalid(
                &field("package"),
                "package must match [a-z0-9][a-z0-9_-]{0,63}",
            ));
        }
    }
    if let Some(v) = &spec.version {
        // Names and versions become cache paths on every processor: only what semver
        // accepts gets through. Without a registry nothing resolves a requirement, so the
        // version must be exact.
        let (ok, what) = if resolving {
            (
                valid_version_req(v),
                "a semver requirement such as `^1.2` or `=1.0.0`",
            )
        } else {
            (
                valid_exact_version(v),
                "an exact semver version such as `1.2.0` (this server has no --registry to resolve requirements)",
            )
        };
        if !ok {
            return Err(QueueError::invalid(
                &field("version"),
                format!("version must be {what}, at most 64 characters"),
            ));
        }
    }
    if spec.resources.datasets.len() > 32
        || spec.resources.datasets.iter().any(|d| !name_ok(d, 128))
    {
        return Err(QueueError::invalid(
            &field("resources.datasets"),
            "at most 32 datasets, each 1-128 characters of letters, digits, `_ . - :`",
        ));
    }
    Ok(())
}

/// The numbers of a task; its attempts (the default when it names none).
fn check_limits(
    spec: &TaskSpec,
    field: &dyn Fn(&str) -> String,
    default_attempts: u32,
) -> Result<u32, QueueError> {
    if !(-1000..=1000).contains(&spec.priority) {
        return Err(QueueError::invalid(
            &field("priority"),
            "priority must be between -1000 and 1000",
        ));
    }
    if let Some(t) = spec.timeout_s {
        if t == 0 || t > 7 * 24 * 3600 {
            return Err(QueueError::invalid(
                &field("timeout_s"),
                "timeout_s must be 1 s to 7 days",
            ));
        }
    }
    let max_attempts = spec.max_attempts.unwrap_or(default_attempts);
    if !(1..=100).contains(&max_attempts) {
        return Err(QueueError::invalid(
            &field("max_attempts"),
            "max_attempts must be 1 to 100",
        ));
    }
    if let Some(k) = &spec.idempotency_key {
        if k.is_empty() || k.len() > 256 {
            return Err(QueueError::invalid(
                &field("idempotency_key"),
                "idempotency_key must be 1-256 characters",
            ));
        }
    }
    if let Some(t) = spec.ttl_s {
        if t == 0 || t > 365 * 24 * 3600 {
            return Err(QueueError::invalid(
                &field("ttl_s"),
                "ttl_s must be 1 s to 365 days",
            ));
        }
    }
    if spec.resources.gpus > 64 {
        return Err(QueueError::invalid(
            &field("resources.gpus"),
            "resources.gpus must be at most 64",
        ));
    }
    Ok(max_attempts)
}
