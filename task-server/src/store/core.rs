//! The store's domain decisions, written once for every backend: the retry policy, what an
//! answer, heartbeat, cancel or reap became, and how runtime samples merge into statistics.
//! Backends run the statements (`statements.rs`, `queries/`) and hand the rows here.
use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};
use task_api::{TaskError, TaskErrorKind, TaskState};
use uuid::Uuid;

use super::rows::{
    AnsweredRow, DbId, DepRow, EndedRow, ExpiredRow, KeyedRow, LeaseStateRow, WaitingRow,
};
use super::{
    AnswerIn, AnswerKind, AnswerOutcome, CancelOutcome, Finished, HeartbeatIn, HeartbeatOutcome,
    LeaseLoss, ReapOutcome, Sighting, Snapshot, StoreConfig, StoreError, SubmitOutcome,
    UnappliedRow,
};
use crate::stats::{FnKey, FunctionStats, Sample};

/// Retries of a task whose attempt failed with a retryable error (a lost lease is requeued at
/// once, see [`reap_plan`]): the delay
/// before attempt `n + 1` is `min(base · 2^(n−1), max)`. The only place this policy is written;
/// the answer statement reads it as a table ([`RetryPolicy::delays_json`]).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    base_ms: i64,
    max_ms: i64,
    delays: String,
}

/// Entries of the delay table: doubling past 2^30 · base reaches any sane cap long before.
const DELAY_STEPS: u32 = 31;

impl RetryPolicy {
    /// The policy of a store's configuration.
    pub fn new(config: &StoreConfig) -> Self {
        let mut p = RetryPolicy {
            base_ms: config.backoff_base_ms.max(0),
            max_ms: config.backoff_max_ms.max(0),
            delays: String::new(),
        };
        let table: Vec<i64> = (1..=DELAY_STEPS).map(|a| p.delay_ms(a)).collect();
        p.delays = serde_json::to_string(&table).expect("integers serialize");
        p
    }

    /// Delay after attempt `attempt` (1-based) failed, ms.
    pub fn delay_ms(&self, attempt: u32) -> i64 {
        let doublings = attempt.saturating_sub(1).min(DELAY_STEPS - 1);
        self.base_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_ms)
    }

    /// The delays by `attempt - 1` as a JSON array (the last entry holds for later attempts).
    pub fn delays_json(&self) -> &str {
        &self.delays
    }
}

/// What a statement that finishes tasks needs besides its rows: the time, the retry delays, the
/// first completion number it may use (SQLite; PostgreSQL numbers from a sequence) and the
/// default result retention.
#[derive(Debug, Clone, Copy)]
pub struct Finishing<'a> {
    /// Now, ms.
    pub now: i64,
    /// [`RetryPolicy::delays_json`].
    pub delays: &'a str,
    /// First completion number this statement assigns.
    pub first_number: i64,
    /// Result retention when a task names none, s.
    pub ttl_s: i64,
}

/// One answer as the JSON element the answer statements read.
pub fn answer_json(a: &AnswerIn) -> Value {
    let mut v = json!({"id": a.id, "epoch": a.lease_epoch, "runtime_ms": a.runtime_ms,
                       "worker": a.holder.worker_id, "owner": a.holder.owner});
    match &a.kind {
        AnswerKind::Ok(answer) => {
            v["kind"] = json!("ok");
            v["answer"] = answer.clone();
        }
        AnswerKind::Fatal(e) => {
            v["kind"] = json!("fatal");
            v["error"] = json!(e);
        }
        AnswerKind::Retryable(e) => {
            v["kind"] = json!("retryable");
            v["error"] = json!(e);
        }
    }
    v
}

/// The answers of one statement as its JSON parameter.
pub fn answers_json(answers: &[AnswerIn]) -> String {
    let items: Vec<Value> = answers.iter().map(answer_json).collect();
    serde_json::to_string(&items).expect("JSON values serialize")
}

/// What the answers that applied did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Outcome per task id.
    pub outcomes: HashMap<Uuid, AnswerOutcome>,
    /// Runtime samples per function, in key order.
    pub samples: BTreeMap<FnKey, Vec<Sample>>,
    /// Finished tasks some waiting task waits for: settle their dependents.
    pub settle: Vec<Uuid>,
    /// Caps of capped tasks that finished: a gate pass should open them.
    pub gates: Vec<String>,
    /// Chained tasks (`Lease::follows`) sent back by a retryable error: `waiting` again, to be
    /// settled.
    pub unchained: Vec<Uuid>,
}

impl Applied {
    /// Reads the rows the answer statement returned at `now`.
    pub fn from_rows(rows: Vec<AnsweredRow>, now: i64) -> Result<Self, StoreError> {
        let mut out = Applied::default();
        for row in rows {
            let state = row.task_state()?;
            out.samples.entry(row.key()).or_default().push(Sample {
                ms: row.runtime_ms.unwrap_or(0.0),
                ok: state == TaskState::Succeeded,
                at: now,
                cost: row.cost.to_cost(),
            });
            if row.has_dependents && state.is_terminal() {
                out.settle.push(row.id.0);
            }
            if state == TaskState::Waiting {
                out.unchained.push(row.id.0);
            }
            if state.is_terminal() {
                out.gates
                    .extend(row.cap_fn.iter().chain(&row.cap_key).cloned());
            }
            let finished = state.is_terminal().then(|| Finished {
                id: row.id.0,
                batch_id: row.batch_id.map(|b| b.0),
                state,
                snapshot: Some(Snapshot {
                    attempt: row.attempt.clamp(0, u32::MAX as i64) as u32,
                    progress: row.progress,
                    answer: row.answer,
                    error: row.error,
                }),
            });
            out.outcomes
                .insert(row.id.0, AnswerOutcome::Accepted { finished });
        }
        Ok(out)
    }

    /// Tasks the applied answers finished.
    pub fn finished(&self) -> impl Iterator<Item = &Finished> {
        self.outcomes.values().filter_map(|o| match o {
            AnswerOutcome::Accepted { finished } => finished.as_ref(),
            _ => None,
        })
    }

    /// Whether an applied answer put its task back in the queue (a retry).
    pub fn requeued(&self) -> bool {
        self.outcomes
            .values()
            .any(|o| matches!(o, AnswerOutcome::Accepted { finished: None }))
    }

    /// Ids of the answers that did not apply, as the JSON the lease-state lookup reads; `None`
    /// when every answer applied.
    pub fn unapplied_json(&self, answers: &[AnswerIn]) -> Option<String> {
        let ids: Vec<Uuid> = answers
            .iter()
            .map(|a| a.id)
            .filter(|id| !self.outcomes.contains_key(id))
            .collect();
        (!ids.is_empty()).then(|| serde_json::to_string(&ids).expect("ids serialize"))
    }

    /// The outcome of every answer, in order, given the lease states of those that did not
    /// apply. A batch naming one lease twice: the first applied, the second is a duplicate.
    pub fn outcomes(
        &self,
        answers: &[AnswerIn],
        rest: Vec<LeaseStateRow>,
    ) -> Result<Vec<AnswerOutcome>, StoreError> {
        let rest: HashMap<Uuid, UnappliedRow> = rest
            .into_iter()
            .map(LeaseStateRow::into_unapplied)
            .collect::<Result<_, _>>()?;
        let mut seen = HashSet::new();
        Ok(answers
            .iter()
            .map(|a| match self.outcomes.get(&a.id) {
                Some(o) if seen.insert(a.id) => o.clone(),
                Some(_) => AnswerOutcome::Duplicate,
                None => classify_unapplied(a, rest.get(&a.id)),
            })
            .collect())
    }
}

/// Why an answer changed nothing: another worker's lease (403), a replay of this lease's
/// accepted answer (200 duplicate), or a lease no longer current (409).
pub fn classify_unapplied(a: &AnswerIn, row: Option<&UnappliedRow>) -> AnswerOutcome {
    let Some(row) = row else {
        return AnswerOutcome::NotFound;
    };
    let epoch = a.lease_epoch.unwrap_or(row.lease_epoch);
    // A lease taken before leases recorded their owner binds the worker id alone.
    let holds = a
        .holder
        .worker_id
        .as_ref()
        .is_none_or(|w| row.lease_worker.as_ref() == Some(w))
        && row
            .lease_owner
            .as_deref()
            .is_none_or(|o| o == a.holder.owner);
    if epoch == row.lease_epoch && row.lease_worker.is_some() && !holds {
        return AnswerOutcome::NotHolder;
    }
    match row.answered_epoch {
        Some(answered) if answered == epoch => AnswerOutcome::Duplicate,
        _ => AnswerOutcome::Stale { state: row.state },
    }
}

/// The heartbeat leases as the JSON the heartbeat statements read.
pub fn heartbeat_json(hb: &HeartbeatIn) -> String {
    let items: Vec<Value> = hb
        .leases
        .iter()
        .map(|l| json!({"id": l.id, "lease_epoch": l.lease_epoch, "progress": l.progress}))
        .collect();
    serde_json::to_string(&items).expect("JSON values serialize")
}

/// What became of a heartbeat's leases: `extended` by the extend statement; `others` from the
/// follow-up lookup (run only when some lease was not extended): cancelled ones of this holder
/// and current ones of another worker. Every other lease is lost.
pub fn heartbeat_outcome(
    hb: &HeartbeatIn,
    extended: Vec<DbId>,
    others: Vec<(DbId, bool)>,
) -> HeartbeatOutcome {
    let mut out = HeartbeatOutcome {
        extended: extended.into_iter().map(|id| id.0).collect(),
        ..Default::default()
    };
    for (id, cancelled) in others {
        let list = if cancelled {
            &mut out.cancelled
        } else {
            &mut out.foreign
        };
        list.push(id.0);
    }
    let known: HashSet<Uuid> = out
        .extended
        .iter()
        .chain(&out.cancelled)
        .chain(&out.foreign)
        .copied()
        .collect();
    out.lost = hb
        .leases
        .iter()
        .map(|l| l.id)
        .filter(|id| !known.contains(id))
        .collect();
    out
}

/// The leases to release as the JSON the release statement reads.
pub fn lease_refs_json(leases: &[task_api::LeaseRef]) -> String {
    serde_json::to_string(leases).expect("lease refs serialize")
}

/// Whether the heartbeat needs the follow-up lookup.
pub fn heartbeat_incomplete(hb: &HeartbeatIn, extended: &[DbId]) -> bool {
    extended.len() < hb.leases.len()
}

/// What a submit with an idempotency key that is taken returns.
pub fn keyed_outcome(
    row: KeyedRow,
    request_hash: &Option<String>,
) -> Result<SubmitOutcome, StoreError> {
    Ok(if &row.request_hash == request_hash {
        SubmitOutcome::Existing {
            id: row.id.0,
            state: super::rows::parse_state(&row.state)?,
        }
    } else {
        SubmitOutcome::Conflict { id: row.id.0 }
    })
}

/// The error a cancelled task keeps, as the JSON the cancel statement stores.
pub fn cancel_error(by: &str) -> String {
    let e = TaskError {
        kind: TaskErrorKind::Cancelled,
        message: format!("cancelled by {by}"),
    };
    serde_json::to_string(&e).expect("errors serialize")
}

/// What a cancel became: `updated` is the cancel statement's result (the task's batch when it
/// was cancelled), `state` the task's state when it was not.
pub fn cancel_outcome(
    id: Uuid,
    updated: Option<Option<DbId>>,
    state: Option<String>,
) -> Result<CancelOutcome, StoreError> {
    Ok(match (updated, state) {
        (Some(batch), _) => CancelOutcome::Cancelled(Finished {
            id,
            batch_id: batch.map(|b| b.0),
            state: TaskState::Cancelled,
            snapshot: None,
        }),
        (None, Some(s)) => CancelOutcome::AlreadyFinished(super::rows::parse_state(&s)?),
        (None, None) => CancelOutcome::NotFound,
    })
}

/// The decision for leases taken from their holder (expired, or its processor restarted), as
/// the JSON plan the reap statement applies: an attempt past its timeout fails (`timeout`:
/// running it again would waste the slot again); a lost lease with attempts left goes back to the
/// queue at once (the retry backoff is for task errors: a crashed processor says nothing about
/// the task); one without fails (`lease_expired`, counting the lost leases: a task that kills
/// every processor it lands on stops at `max_attempts`).
pub fn reap_plan(rows: &[ExpiredRow], now: i64, loss: LeaseLoss) -> String {
    let plan: Vec<Value> = rows.iter().map(|r| reap_one(r, now, loss)).collect();
    serde_json::to_string(&plan).expect("JSON values serialize")
}

fn reap_one(r: &ExpiredRow, now: i64, loss: LeaseLoss) -> Value {
    let timed_out = r.timeout_at.is_some_and(|t| t <= now);
    let fail = timed_out || r.attempt >= r.max_attempts;
    let error = if timed_out {
        TaskError {
            kind: TaskErrorKind::Timeout,
            message: format!(
                "attempt {} of {} ran past its timeout of {} s",
                r.attempt,
                r.max_attempts,
                r.timeout_s.unwrap_or(0)
            ),
        }
    } else {
        lost_lease_error(r, loss, fail)
    };
    json!({
        "id": r.id.0,
        "epoch": r.lease_epoch,
        "state": if fail { TaskState::Failed } else { TaskState::Queued },
        "error": error,
        "available_at": (!fail).then_some(now),
        "lost": i64::from(!timed_out),
    })
}

/// The error a lost lease leaves; the final one says how many attempts were lost.
fn lost_lease_error(r: &ExpiredRow, loss: LeaseLoss, last: bool) -> TaskError {
    let worker = r.lease_worker.as_deref().unwrap_or("?");
    let cause = match loss {
        LeaseLoss::Expired => "stopped heartbeating",
        LeaseLoss::Restarted => "restarted",
    };
    let mut message = format!(
        "worker {worker} {cause} during attempt {} of {}",
        r.attempt, r.max_attempts
    );
    if last {
        let lost = r.lost_leases.saturating_add(1);
        message.push_str(&format!(
            "; out of attempts after lost_lease × {lost} (each time the processor running it died)"
        ));
    }
    TaskError {
        kind: TaskErrorKind::LeaseExpired,
        message,
    }
}

/// Whether a sighting was recorded (`written` rows), and if not, why: the id's subject and
/// newest run as stored.
pub fn sighting(written: u64, stored: Option<(String, Option<String>)>, owner: &str) -> Sighting {
    match stored {
        _ if written > 0 => Sighting::Recorded,
        Some((o, _)) if o == owner => Sighting::Superseded,
        _ => Sighting::Taken,
    }
}

/// The ids a release handed back, and those of them that were chained (`Lease::follows`) and
/// are `waiting` again, to be settled.
pub fn released(rows: Vec<(DbId, String)>) -> (Vec<Uuid>, Vec<Uuid>) {
    let unchained = rows
        .iter()
        .filter(|(_, state)| state == "waiting")
        .map(|(id, _)| id.0)
        .collect();
    (rows.into_iter().map(|(id, _)| id.0).collect(), unchained)
}

/// What the reap statement did.
pub fn reap_outcome(rows: Vec<EndedRow>) -> Result<ReapOutcome, StoreError> {
    let mut out = ReapOutcome::default();
    for row in rows {
        let f = Finished::try_from(row)?;
        if f.state.is_terminal() {
            out.failed.push(f);
        } else if f.state == TaskState::Waiting {
            out.unchained.push(f.id);
        } else {
            out.requeued += 1;
        }
    }
    Ok(out)
}

/// `base` (or empty statistics of `key`) with the runtime samples recorded in order:
/// replaying raw samples keeps the merge exact whoever writes them.
pub fn merge_samples<'a>(
    base: Option<FunctionStats>,
    key: &FnKey,
    samples: impl IntoIterator<Item = &'a Sample>,
) -> FunctionStats {
    let mut st = base.unwrap_or_else(|| FunctionStats::new(key.clone()));
    for s in samples {
        st.record(s);
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_the_base_up_to_the_cap() {
        let p = RetryPolicy::new(&StoreConfig {
            backoff_base_ms: 1000,
            backoff_max_ms: 300_000,
            ..StoreConfig::default()
        });
        let d: Vec<i64> = (1..=10).map(|a| p.delay_ms(a)).collect();
        assert_eq!(
            d,
            [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000]
        );
        assert_eq!(p.delay_ms(u32::MAX), 300_000);
        let table: Vec<i64> = serde_json::from_str(p.delays_json()).unwrap();
        assert_eq!(table.len(), DELAY_STEPS as usize);
        assert_eq!(table[0], 1000);
    }
}

/// Task ids as the JSON array the graph statements read.
pub fn ids_json(ids: &[Uuid]) -> String {
    serde_json::to_string(ids).expect("ids serialize")
}

/// What settling a set of waiting tasks writes: the promote and fail statements' JSON
/// parameters (`None`: nothing to write), and the memoizing tasks to look up first.
#[derive(Debug, Default)]
pub struct SettlePlan {
    /// `[{id, args, kwargs, args_hash, x}]`.
    pub queue: Option<String>,
    /// `[{id, error}]`.
    pub fail: Option<String>,
    /// Of the tasks to queue, those that memoize: `[{id, owner, hash}]` for the memo lookup.
    pub memo: Option<String>,
    /// The files the substituted arguments of the tasks to queue name: `[[id, sha256]]`, each
    /// attached only when a task it waited for has it (statement `inherit_files`).
    pub files: Option<String>,
    /// The queue items by id (to move a memo hit out of `queue`).
    items: Vec<Value>,
}

impl SettlePlan {
    /// Takes the tasks whose memoized answer was found out of `queue`: the JSON of the statement
    /// that finishes them with it (`[{id, args, kwargs, args_hash, answer}]`).
    pub fn memo_hits(
        &mut self,
        hits: Vec<(DbId, Option<String>)>,
    ) -> Result<Option<String>, StoreError> {
        let mut found: HashMap<Uuid, Value> = HashMap::new();
        for (id, answer) in hits {
            if let Some(text) = answer {
                found.insert(id.0, serde_json::from_str(&text)?);
            }
        }
        if found.is_empty() {
            return Ok(None);
        }
        let (mut done, mut rest) = (Vec::new(), Vec::new());
        for mut item in std::mem::take(&mut self.items) {
            let id: Option<Uuid> = item["id"].as_str().and_then(|s| s.parse().ok());
            match id.and_then(|id| found.remove(&id)) {
                Some(answer) => {
                    item["answer"] = answer;
                    done.push(item);
                }
                None => rest.push(item),
            }
        }
        self.queue = (!rest.is_empty()).then(|| Value::Array(rest).to_string());
        Ok(Some(Value::Array(done).to_string()))
    }
}

/// Waiting tasks to settle, each with the ids it waits for (its `depends_on`).
pub struct Waiting {
    rows: Vec<(WaitingRow, Vec<Uuid>)>,
}

impl Waiting {
    /// Reads each row's `depends_on`.
    pub fn of(rows: Vec<WaitingRow>) -> Result<Waiting, StoreError> {
        let rows = rows
            .into_iter()
            .map(|r| {
                let deps: Vec<Uuid> = match &r.depends_on {
                    Some(text) => serde_json::from_str(text)?,
                    None => Vec::new(),
                };
                Ok((r, deps))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Waiting { rows })
    }

    /// The tasks they wait for, each once (statement `dep_states`).
    pub fn deps_json(&self) -> String {
        let mut all: Vec<Uuid> = self
            .rows
            .iter()
            .flat_map(|(_, d)| d.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        ids_json(&all)
    }
}

/// Decides each waiting task from the tasks it waits for (`deps`: each read once; one that is
/// missing was deleted), by [`crate::graph::decide`]: queued with its references replaced, its
/// memoization key and cost measures taken from the substituted arguments; failed; or left
/// waiting.
pub fn settle_plan(waiting: Waiting, deps: Vec<DepRow>) -> Result<SettlePlan, StoreError> {
    use crate::graph::{self, Ready};
    let mut states: HashMap<Uuid, graph::DepState> = HashMap::new();
    for d in deps {
        states.insert(d.dep.0, d.try_into()?);
    }
    for id in waiting.rows.iter().flat_map(|(_, d)| d) {
        states
            .entry(*id)
            .or_insert_with(|| graph::DepState::gone(*id));
    }
    let (mut queue, mut fail, mut memo) = (Vec::new(), Vec::new(), Vec::new());
    let mut files = Vec::new();
    for (r, ids) in waiting.rows {
        let args: Vec<Value> = serde_json::from_str(&r.args)?;
        let kwargs: serde_json::Map<String, Value> = serde_json::from_str(&r.kwargs)?;
        let deps: Vec<&graph::DepState> = ids.iter().filter_map(|d| states.get(d)).collect();
        match graph::decide(args, kwargs, &deps) {
            Ready::Wait => {}
            Ready::Fail(error) => fail.push(json!({"id": r.id.0, "error": error})),
            Ready::Queue {
                mut args,
                mut kwargs,
            } => {
                // A malformed file value fails the task at its processor; none is attached.
                let named =
                    crate::files::refs::files_of(&mut args, &mut kwargs).unwrap_or_default();
                files.extend(named.into_iter().map(|(sha, _)| json!([r.id.0, sha])));
                let at: crate::cost::CostAt = match &r.cost_at {
                    Some(text) => serde_json::from_str(text)?,
                    None => crate::cost::CostAt {
                        by: r.cost_by.clone(),
                        places: Vec::new(),
                    },
                };
                let hash = graph::args_hash(&r.package, &r.version, &r.function, &args, &kwargs);
                let cost = at.measure(&args, &kwargs);
                if r.memoize {
                    memo.push(json!({"id": r.id.0, "owner": r.owner, "hash": hash}));
                }
                queue.push(json!({"id": r.id.0, "args": args, "kwargs": kwargs,
                                  "args_hash": hash, "x": cost.x}));
            }
        }
    }
    let text = |v: &Vec<Value>| (!v.is_empty()).then(|| Value::from(v.as_slice()).to_string());
    Ok(SettlePlan {
        queue: text(&queue),
        fail: text(&fail),
        memo: text(&memo),
        files: text(&files),
        items: queue,
    })
}

/// The wake-ups of what settling did: work when tasks were queued, each finished task and batch.
pub fn settled_events(out: &super::Settled) -> Vec<super::StoreEvent> {
    use super::StoreEvent;
    let mut ev: Vec<StoreEvent> = (out.queued > 0)
        .then_some(StoreEvent::Work)
        .into_iter()
        .collect();
    for f in &out.finished {
        ev.push(StoreEvent::Task(f.id));
        ev.extend(f.batch_id.map(StoreEvent::Batch));
    }
    ev
}

/// The leading finished results of `rows` (a batch's tasks in input order): up to the first
/// one not finished. A missing index (a task deleted or expired) is simply not there.
pub fn finished_prefix(rows: Vec<super::BatchResult>) -> Vec<super::BatchResult> {
    rows.into_iter()
        .take_while(|r| r.state.is_terminal())
        .collect()
}

/// The waiting tasks as the estimate reads them (rows: id, package, version, function,
/// depends_on JSON), in queue order.
pub fn waiting_graph(
    rows: Vec<(DbId, String, String, String, Option<String>)>,
) -> Result<crate::graph::WaitingGraph, StoreError> {
    let mut g = crate::graph::WaitingGraph::default();
    for (id, package, version, function, deps) in rows {
        let deps: Vec<Uuid> = match deps {
            Some(text) => serde_json::from_str(&text)?,
            None => Vec::new(),
        };
        let key = FnKey {
            package,
            version,
            function,
        };
        g.nodes.push(crate::graph::Node {
            id: id.0,
            key,
            deps,
        });
    }
    Ok(g)
}

/// Adds the tasks the waiting ones wait for that are not waiting themselves (rows: id,
/// package, version, function, state); finished ones add nothing.
pub fn add_outside(
    g: &mut crate::graph::WaitingGraph,
    rows: Vec<(DbId, String, String, String, String)>,
) -> Result<(), StoreError> {
    for (id, package, version, function, state) in rows {
        let state = super::rows::parse_state(&state)?;
        if !state.is_terminal() {
            let key = FnKey {
                package,
                version,
                function,
            };
            g.unfinished.insert(id.0, (key, state));
        }
    }
    Ok(())
}
