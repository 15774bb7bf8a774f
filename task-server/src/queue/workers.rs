//! The worker side: leases (long-polled), sightings, heartbeats and answers.
use serde_json::json;
use sha2::{Digest, Sha256};
use task_api::{
    Capabilities, HeartbeatRequest, HeartbeatResponse, Lease, LeaseRef, ReleaseRequest,
    ReleaseResponse, RequestTask, RequestTaskResponse, SubmitAnswer, TaskErrorKind,
};
use tokio::time::Instant;
use uuid::Uuid;

use super::prefetch;

use super::QueueError;
use super::{clamped_secs, now_ms, Queue, Sighted, WORKER_UPSERT_EVERY_MS};
use crate::auth::Caller;
use crate::store::{
    AnswerIn, AnswerKind, AnswerOutcome, ClaimRequest, HeartbeatIn, Holder, Sighting, WorkerRecord,
    WorkerTouch,
};

/// Whether the client of a request went away (see `routes::peer`).
pub type ClientGone<'a> = dyn Fn() -> bool + Sync + 'a;

/// What a request says of the processor that sent it.
#[derive(Clone, Copy)]
struct Seen<'a> {
    caps: &'a Capabilities,
    /// Free slots it asked for (its slot count when `caps.slots` is missing).
    max_tasks: u32,
    dispatch_ms: Option<f64>,
    speed: Option<f64>,
    /// Its run (incarnation).
    run: Option<Uuid>,
}

/// Most answers one request may carry (a lease request or a `submit_answer` batch).
pub const MAX_ANSWERS: usize = 1000;

/// What `request_task` hands out: the response, and the outcome of each answer it carried
/// (mapped to statuses at the HTTP edge).
pub struct Grant {
    /// Leases and timing; `answers` is left empty for the edge to fill.
    pub response: RequestTaskResponse,
    /// Each carried answer's task and outcome, in order.
    pub answers: Vec<(Uuid, Result<AnswerOutcome, QueueError>)>,
}

impl Queue {
    /// Applies the answers a request carries, then leases up to `max_tasks` tasks for free slots
    /// (long-polling up to `wait_s`, ≤ 30 s, when none is ready and `max_tasks` > 0) plus the
    /// prefetch the functions' runtimes allow (see [`prefetch::keep`]); claimed leases beyond that
    /// go straight back to the queue, their attempt unused. `gone` says whether the client
    /// went away: a long-poll whose client is gone is granted nothing (what its last claim took
    /// goes back at once).
    pub async fn request_tasks(
        &self,
        caller: &Caller,
        mut body: RequestTask,
        gone: &ClientGone<'_>,
    ) -> Result<Grant, QueueError> {
        let worker_id = worker_name(caller, body.worker_id.clone())?;
        let wait = check_request(&body, self.cfg.max_worker_wait)?;
        let caps = &body.capabilities;
        check_capabilities(caps)?;
        let seen = Seen {
            caps,
            max_tasks: body.max_tasks,
            dispatch_ms: None,
            speed: None,
            run: body.incarnation,
        };
        self.seen_worker(caller, &worker_id, seen).await?;
        let answers = std::mem::take(&mut body.answers);
        let answers = self.answers_with_ids(caller, answers).await?;
        let holder = Holder {
            worker_id: Some(worker_id.clone()),
            owner: caller.sub.clone(),
        };
        let ttl = self.cfg.lease_ttl.as_millis() as i64;
        if let Some(leases) = self.granted_before(&holder, &body).await? {
            return Ok(Grant {
                response: grant_response(leases, ttl, false, false),
                answers,
            });
        }
        let (leases, waited) = self.claim_for(&holder, &body, wait, ttl, gone).await?;
        let drained = (leases.len() as u32) < body.max_tasks + body.prefetch;
        let leases = self.size_prefetch(&holder, &body, leases).await?;
        crate::metrics::leased(&leases);
        if !wait.is_zero() {
            self.seen_worker(caller, &worker_id, seen).await?;
        }
        Ok(Grant {
            response: grant_response(leases, ttl, waited, drained),
            answers,
        })
    }

    /// For a request sent again (`again`), the leases its first sending took, when the server
    /// committed them and the answer was lost on the way.
    async fn granted_before(
        &self,
        holder: &Holder,
        body: &RequestTask,
    ) -> Result<Option<Vec<Lease>>, QueueError> {
        let Some(id) = body.request_id.filter(|_| body.again) else {
            return Ok(None);
        };
        let leases = self.store.granted(holder.clone(), id).await?;
        if !leases.is_empty() {
            tracing::info!(
                worker_id = holder.worker_id.as_deref().unwrap_or("?"),
                leases = leases.len(),
                "a lease request sent again: the leases its lost answer carried are granted again"
            );
        }
        Ok((!leases.is_empty()).then_some(leases))
    }

    /// Claims up to `max_tasks + prefetch` leases, long-polling for at least one while `wait`
    /// lasts and the client is there; whether it had to wait.
    async fn claim_for(
        &self,
        holder: &Holder,
        body: &RequestTask,
        wait: std::time::Duration,
        ttl: i64,
        gone: &ClientGone<'_>,
    ) -> Result<(Vec<Lease>, bool), QueueError> {
        let limit = body.max_tasks + body.prefetch;
        if limit == 0 {
            return Ok((Vec::new(), false));
        }
        let caps = &body.capabilities;
        let claims = std::cell::Cell::new(0u32);
        let check = || async {
            claims.set(claims.get() + 1);
            if gone() {
                return Ok((Vec::new(), true));
            }
            // Read at each claim, not once per request: a long-poll parked while the first
            // runtimes of a function came in sizes its grant by them (cached for a second).
            let predictors = self.predictors().await?;
            let req = ClaimRequest {
                holder: holder.clone(),
                max_tasks: limit,
                gpus: caps.gpus,
                memory_mb: caps.memory_mb,
                datasets: caps.datasets.clone(),
                now: now_ms(),
                lease_ttl_ms: ttl,
                incarnation: body.incarnation,
                request_id: body.request_id,
                gpu_only: body.gpu_only,
                predictors: Some(predictors),
                chains: body.chains,
                held_ms: body.held_ms.unwrap_or(0.0),
            };
            let leases: Vec<Lease> = self.store.claim(req).await?;
            if !leases.is_empty() && gone() {
                self.hand_back(holder, &leases).await?;
                return Ok((Vec::new(), true));
            }
            let got = !leases.is_empty();
            Ok((leases, got))
        };
        let leases = self
            .long_poll(&self.work, Instant::now() + wait, check)
            .await?;
        Ok((leases, claims.get() > 1))
    }

    /// Keeps the leases for free slots and the prefetch the runtimes allow; hands the rest back.
    async fn size_prefetch(
        &self,
        holder: &Holder,
        body: &RequestTask,
        leases: Vec<Lease>,
    ) -> Result<Vec<Lease>, QueueError> {
        if leases.is_empty() {
            return Ok(leases);
        }
        let (chained, mut leases): (Vec<Lease>, Vec<Lease>) =
            leases.into_iter().partition(|l| l.follows.is_some());
        let expected: Vec<Option<f64>> = leases.iter().map(|l| l.expected_ms).collect();
        let slots = body.capabilities.slots.unwrap_or(body.max_tasks);
        let kept = prefetch::keep(
            &expected,
            body.max_tasks as usize,
            slots,
            body.held_ms.unwrap_or(0.0),
        );
        let mut back = leases.split_off(kept);
        let (chained, orphans) = prefetch::chains_of(&leases, chained);
        back.extend(orphans);
        self.hand_back(holder, &back).await?;
        leases.extend(chained);
        Ok(leases)
    }

    /// Leases never handed out go back to the queue, their attempt unused.
    async fn hand_back(&self, holder: &Holder, leases: &[Lease]) -> Result<(), QueueError> {
        if leases.is_empty() {
            return Ok(());
        }
        let refs: Vec<LeaseRef> = leases.iter().map(Lease::lease_ref).collect();
        self.store.release(holder.clone(), refs).await?;
        self.work.notify_waiters();
        Ok(())
    }

    /// Records a sighting (throttled per replica); the first sighting of a new run of the
    /// worker id on this replica takes back the leases of its older runs.
    async fn seen_worker(
        &self,
        caller: &Caller,
        worker_id: &str,
        seen: Seen<'_>,
    ) -> Result<(), QueueError> {
        let now = now_ms();
        let caps_json = json!(seen.caps);
        let fingerprint = {
            let mut h = Sha256::new();
            h.update(caps_json.to_string());
            h.update(caller.sub.as_bytes());
            h.update(seen.run.map(|r| r.into_bytes()).unwrap_or_default());
            u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
        };
        let Some(new_run) = self.note_sighting(worker_id, now, fingerprint, &seen) else {
            return Ok(());
        };
        let record = WorkerRecord {
            worker_id: worker_id.to_string(),
            owner: caller.sub.clone(),
            slots: seen.caps.slots.unwrap_or(seen.max_tasks.max(1)),
            capabilities: caps_json,
            first_seen: now,
            last_seen: now,
            running: 0,
            dispatch_ms: seen.dispatch_ms,
            speed: seen.speed,
        };
        let refused = match self.store.upsert_worker(record, seen.run).await? {
            Sighting::Recorded => None,
            Sighting::Taken => Some(QueueError::WorkerIdTaken(worker_id.to_string())),
            Sighting::Superseded => Some(QueueError::Superseded(worker_id.to_string())),
        };
        if let Some(e) = refused {
            self.seen.lock().expect("seen lock").remove(worker_id);
            return Err(e);
        }
        match seen.run {
            Some(run) if new_run => self.requeue_orphans(caller, worker_id, run).await,
            _ => Ok(()),
        }
    }

    /// Notes a sighting in this replica's memory: `None` when the row is fresh enough to skip
    /// the write, else whether the run is new here.
    fn note_sighting(
        &self,
        worker_id: &str,
        now: i64,
        fingerprint: u64,
        seen: &Seen<'_>,
    ) -> Option<bool> {
        let mut map = self.seen.lock().expect("seen lock");
        let fresh = Sighted {
            at: now,
            fingerprint,
            dispatch_stored: seen.dispatch_ms.is_some(),
            speed_stored: seen.speed.is_some(),
            run: seen.run,
        };
        match map.get_mut(worker_id) {
            Some(s) if s.fingerprint == fingerprint && now - s.at < WORKER_UPSERT_EVERY_MS => None,
            Some(s) => {
                let new_run = s.run != seen.run;
                *s = Sighted {
                    dispatch_stored: s.dispatch_stored || fresh.dispatch_stored,
                    speed_stored: s.speed_stored || fresh.speed_stored,
                    ..fresh
                };
                Some(new_run)
            }
            None => {
                map.insert(worker_id.to_string(), fresh);
                Some(true)
            }
        }
    }

    /// The leases `worker_id` took in runs before `run` go back to the queue at once (lost
    /// leases: a restarted processor's old leases have nobody working on them).
    async fn requeue_orphans(
        &self,
        caller: &Caller,
        worker_id: &str,
        run: Uuid,
    ) -> Result<(), QueueError> {
        let holder = Holder {
            worker_id: Some(worker_id.to_string()),
            owner: caller.sub.clone(),
        };
        loop {
            let out = self
                .store
                .requeue_orphans(holder.clone(), run, now_ms())
                .await?;
            for f in &out.failed {
                self.finished(f);
            }
            let taken = out.requeued + out.failed.len() + out.unchained.len();
            if taken == 0 {
                return Ok(());
            }
            tracing::info!(
                worker_id,
                requeued = out.requeued,
                waiting = out.unchained.len(),
                failed = out.failed.len(),
                "processor restarted: the leases of its previous run were taken back"
            );
            if out.requeued > 0 {
                self.work.notify_waiters();
            }
            if (taken as i64) < crate::store::REAP_LIMIT {
                return Ok(());
            }
        }
    }

    /// Extends leases, records progress, reports cancellations.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        mut hb: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, QueueError> {
        let named = hb.worker_id.is_some();
        let worker_id = worker_name(caller, hb.worker_id.clone())?;
        check_heartbeat(&hb)?;
        let applied = std::mem::take(&mut hb.applied);
        let broadcasts = self
            .heartbeat_broadcasts(&worker_id, hb.broadcasts_since, applied)
            .await?;
        if let Some(caps) = &hb.capabilities {
            check_capabilities(caps)?;
            let seen = Seen {
                caps,
                max_tasks: caps.slots.unwrap_or(1),
                dispatch_ms: hb.dispatch_ms,
                speed: hb.speed,
                run: hb.incarnation,
            };
            self.seen_worker(caller, &worker_id, seen).await?;
        } else {
            self.touch_worker(caller, &worker_id, hb.dispatch_ms, hb.speed)
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
            return Err(QueueError::NotLeaseHolder(*id));
        }
        Ok(HeartbeatResponse {
            success: true,
            extended: out.extended,
            cancelled: out.cancelled,
            lost: out.lost,
            lease_deadline: now + ttl,
            broadcasts,
        })
    }

    /// Hands back never-started leases (`POST /worker/release`): queued again at their place,
    /// their attempt unused, so a `max_attempts: 1` task survives a processor that prefetched it
    /// and stopped. Leases that are not the caller's current ones are reported, not touched.
    pub async fn release(
        &self,
        caller: &Caller,
        body: ReleaseRequest,
    ) -> Result<ReleaseResponse, QueueError> {
        if body.leases.len() > 1000 {
            return Err(QueueError::invalid(
                "leases",
                "at most 1000 leases per release",
            ));
        }
        let named = body.worker_id.is_some();
        if body.ended.is_some() && !named {
            return Err(QueueError::invalid(
                "ended",
                "a run that ended must name its worker_id",
            ));
        }
        let worker_id = worker_name(caller, body.worker_id)?;
        let holder = Holder {
            worker_id: named.then_some(worker_id),
            owner: caller.sub.clone(),
        };
        let asked: Vec<uuid::Uuid> = body.leases.iter().map(|l| l.id).collect();
        let mut released = self.store.release(holder.clone(), body.leases).await?;
        if let Some(run) = body.ended {
            released.extend(self.release_run(holder, run).await?);
        }
        if !released.is_empty() {
            self.work.notify_waiters();
        }
        let not_released = asked
            .into_iter()
            .filter(|id| !released.contains(id))
            .collect();
        Ok(ReleaseResponse {
            success: true,
            released,
            not_released,
        })
    }

    /// What a run that ended still has goes back (grants it never received as it stopped).
    async fn release_run(&self, holder: Holder, run: Uuid) -> Result<Vec<Uuid>, QueueError> {
        let worker = holder.worker_id.clone().unwrap_or_default();
        let rest = self.store.release_run(holder, run).await?;
        if !rest.is_empty() {
            tracing::info!(
                worker_id = %worker,
                released = rest.len(),
                "processor stopped: grants it never received went back to the queue"
            );
        }
        Ok(rest)
    }

    /// Keeps a worker's last_seen fresh without knowing its capabilities (throttled).
    async fn touch_worker(
        &self,
        caller: &Caller,
        worker_id: &str,
        dispatch_ms: Option<f64>,
        speed: Option<f64>,
    ) -> Result<(), QueueError> {
        let now = now_ms();
        {
            let mut seen = self.seen.lock().expect("seen lock");
            match seen.get_mut(worker_id) {
                // Throttled, except that a worker's first dispatch and speed figures are stored
                // at once.
                Some(s)
                    if now - s.at < WORKER_UPSERT_EVERY_MS
                        && (s.dispatch_stored || dispatch_ms.is_none())
                        && (s.speed_stored || speed.is_none()) =>
                {
                    return Ok(())
                }
                Some(s) => {
                    s.at = now;
                    s.dispatch_stored |= dispatch_ms.is_some();
                    s.speed_stored |= speed.is_some();
                }
                None => {}
            }
        }
        let touch = WorkerTouch {
            worker_id: worker_id.to_string(),
            owner: caller.sub.clone(),
            now,
            dispatch_ms,
            speed,
        };
        self.store.touch_worker(touch).await?;
        Ok(())
    }

    /// [`Queue::submit_answers`] of at most [`MAX_ANSWERS`], each result with its task id.
    pub async fn answers_with_ids(
        &self,
        caller: &Caller,
        answers: Vec<SubmitAnswer>,
    ) -> Result<Vec<(Uuid, Result<AnswerOutcome, QueueError>)>, QueueError> {
        if answers.is_empty() {
            return Ok(Vec::new());
        }
        if answers.len() > MAX_ANSWERS {
            return Err(QueueError::invalid(
                "answers",
                "at most 1000 answers per request",
            ));
        }
        let ids: Vec<Uuid> = answers.iter().map(|a| a.id).collect();
        let results = self.submit_answers(caller, answers).await?;
        Ok(ids.into_iter().zip(results).collect())
    }

    /// Applies answers; one result per answer, in order.
    pub async fn submit_answers(
        &self,
        caller: &Caller,
        answers: Vec<SubmitAnswer>,
    ) -> Result<Vec<Result<AnswerOutcome, QueueError>>, QueueError> {
        let mut results: Vec<Option<Result<AnswerOutcome, QueueError>>> =
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
}

fn grant_response(
    leases: Vec<Lease>,
    ttl: i64,
    waited: bool,
    drained: bool,
) -> RequestTaskResponse {
    RequestTaskResponse {
        success: true,
        leases,
        answers: Vec::new(),
        heartbeat_interval_ms: (ttl / 3).max(100) as u64,
        waited,
        drained,
    }
}

/// What a lease request asks for, checked: the long-poll it may wait (none without free slots).
/// Bounds on what a heartbeat reports: progress, and the meters the ETA uses.
fn check_heartbeat(hb: &HeartbeatRequest) -> Result<(), QueueError> {
    for (i, l) in hb.leases.iter().enumerate() {
        if l.progress.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
            return Err(QueueError::invalid(
                &format!("leases[{i}].progress"),
                "progress must be between 0 and 100",
            ));
        }
    }
    within(hb.dispatch_ms, 0.0, 3_600_000.0, "dispatch_ms")?;
    within(hb.speed, 0.01, 100.0, "speed")
}

/// `field` (when given) lies in `lo..=hi` (NaN never does).
fn within(v: Option<f64>, lo: f64, hi: f64, field: &str) -> Result<(), QueueError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(QueueError::invalid(
            field,
            format!("{field} must be between {lo} and {hi}"),
        )),
        _ => Ok(()),
    }
}

fn check_request(
    body: &RequestTask,
    max_wait: std::time::Duration,
) -> Result<std::time::Duration, QueueError> {
    if body.max_tasks > 1000 {
        return Err(QueueError::invalid(
            "max_tasks",
            "max_tasks must be 0 to 1000",
        ));
    }
    if body.prefetch > 1000 - body.max_tasks {
        return Err(QueueError::invalid(
            "prefetch",
            "prefetch must be 0 to 1000 - max_tasks",
        ));
    }
    within(body.held_ms, 0.0, 3_600_000.0, "held_ms")?;
    if body.again && body.request_id.is_none() {
        return Err(QueueError::invalid(
            "again",
            "again names a request sent before: give its request_id",
        ));
    }
    match body.wait_s {
        Some(w) if !w.is_finite() || w < 0.0 => Err(QueueError::invalid(
            "wait_s",
            "wait_s must be a number of seconds ≥ 0",
        )),
        _ if body.max_tasks == 0 => Ok(std::time::Duration::ZERO),
        Some(w) => Ok(clamped_secs(w, max_wait)),
        None => Ok(max_wait),
    }
}

fn worker_name(caller: &Caller, given: Option<String>) -> Result<String, QueueError> {
    let id = given.unwrap_or_else(|| caller.sub.clone());
    if id.is_empty() || id.len() > 128 {
        return Err(QueueError::invalid(
            "worker_id",
            "worker_id must be 1-128 characters",
        ));
    }
    Ok(id)
}

/// Bounds on what a worker may claim to offer: `slots` feeds every user's `eta_s`.
fn check_capabilities(c: &Capabilities) -> Result<(), QueueError> {
    let short = |v: &[String], n: usize| v.len() <= n && v.iter().all(|s| s.len() <= 256);
    let checks = [
        (
            c.slots.is_none_or(|s| (1..=1024).contains(&s)),
            "capabilities.slots",
            "slots must be 1 to 1024",
        ),
        (c.gpus <= 64, "capabilities.gpus", "gpus must be at most 64"),
        (
            c.gpu_slots.is_none_or(|g| g <= c.slots.unwrap_or(1024)),
            "capabilities.gpu_slots",
            "gpu_slots must be at most slots",
        ),
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
        Some((_, field, message)) => Err(QueueError::invalid(field, message)),
        None => Ok(()),
    }
}

fn to_answer_in(caller: &Caller, a: SubmitAnswer) -> Result<AnswerIn, QueueError> {
    let named = a.worker_id.is_some();
    let holder = Holder {
        worker_id: named
            .then(|| worker_name(caller, a.worker_id))
            .transpose()?,
        owner: caller.sub.clone(),
    };
    if let Some(ms) = a.runtime_ms {
        if !ms.is_finite() || ms < 0.0 {
            return Err(QueueError::invalid(
                "runtime_ms",
                "runtime_ms must be a number ≥ 0",
            ));
        }
    }
    let kind =
        match (a.answer, a.error) {
            (Some(v), None) => AnswerKind::Ok(v),
            (None, Some(e)) => match e.kind {
                TaskErrorKind::Retryable => AnswerKind::Retryable(e),
                // A processor that stopped a task at its time limit reports `timeout`: final, like
                // Celery's hard time limit, and shown to the owner under that kind.
                // `bad_return`: the processor checked the answer against the declared type.
                TaskErrorKind::Fatal | TaskErrorKind::Timeout | TaskErrorKind::BadReturn => {
                    AnswerKind::Fatal(e)
                }
                _ => return Err(QueueError::invalid(
                    "error.kind",
                    "a worker reports error.kind `retryable`, `fatal`, `timeout` or `bad_return`",
                )),
            },
            (Some(_), Some(_)) => {
                return Err(QueueError::invalid(
                    "answer",
                    "send either answer or error, not both",
                ))
            }
            (None, None) => {
                return Err(QueueError::invalid(
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
