//! The rows the statements return, one type per shape, decoded by `sqlx::FromRow` on both
//! backends, and their conversion into the domain types. The only column that differs in type
//! between the dialects is a task or batch id (TEXT in SQLite, UUID in PostgreSQL): [`DbId`]
//! reads and writes both.
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};
use task_api::{Lease, Resources, TaskError, TaskPayload, TaskState};
use uuid::Uuid;

use super::{
    BatchRecord, BatchResult, Finished, StoreError, TaskRecord, UnappliedRow, WorkerRecord,
};
use crate::cost::Cost;
use crate::fit::SlotSum;
use crate::stats::{non_empty, FnKey, FunctionStats, Predictors, Queued, Running, Sketch};

/// A task or batch id as a column: TEXT in SQLite, UUID in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DbId(pub Uuid);

impl From<Uuid> for DbId {
    fn from(id: Uuid) -> Self {
        DbId(id)
    }
}

impl Type<Sqlite> for DbId {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for DbId {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(DbId(Uuid::parse_str(text)?))
    }
}

impl<'q> Encode<'q, Sqlite> for DbId {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        <String as Encode<Sqlite>>::encode(self.0.to_string(), buf)
    }
}

impl Type<Postgres> for DbId {
    fn type_info() -> PgTypeInfo {
        <Uuid as Type<Postgres>>::type_info()
    }
}

impl<'r> Decode<'r, Postgres> for DbId {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbId(<Uuid as Decode<Postgres>>::decode(value)?))
    }
}

impl Encode<'_, Postgres> for DbId {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Uuid as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

/// Parses a state column.
pub fn parse_state(s: &str) -> Result<TaskState, StoreError> {
    s.parse().map_err(StoreError::Corrupt)
}

/// A JSON column read as text.
fn json<T: serde::de::DeserializeOwned>(s: Option<String>) -> Result<Option<T>, StoreError> {
    s.map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(Into::into)
}

/// Integers the schema keeps non-negative and within `u32` (checked at submit).
fn small(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

/// A task as `get_task` and `list_tasks` read it.
#[derive(Debug, sqlx::FromRow)]
pub struct TaskRow {
    id: DbId,
    seq: i64,
    owner: String,
    package: String,
    version: String,
    function: String,
    state: String,
    priority: i64,
    attempt: i64,
    max_attempts: i64,
    progress: Option<f64>,
    answer: Option<String>,
    error: Option<String>,
    runtime_ms: Option<f64>,
    created_at: i64,
    finished_at: Option<i64>,
    batch_id: Option<DbId>,
    lease_worker: Option<String>,
    leased_at: Option<i64>,
    lease_deadline: Option<i64>,
    lost_leases: i64,
    /// Only the one-task read selects the arguments.
    #[sqlx(default)]
    args: Option<String>,
    #[sqlx(default)]
    kwargs: Option<String>,
    #[sqlx(default)]
    attempts: Option<String>,
}

impl TryFrom<TaskRow> for TaskRecord {
    type Error = StoreError;
    fn try_from(r: TaskRow) -> Result<Self, StoreError> {
        Ok(TaskRecord {
            id: r.id.0,
            seq: r.seq,
            owner: r.owner,
            package: r.package,
            version: r.version,
            function: r.function,
            state: parse_state(&r.state)?,
            priority: r.priority.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            attempt: small(r.attempt),
            max_attempts: small(r.max_attempts),
            progress: r.progress,
            answer: json(r.answer)?,
            error: json::<TaskError>(r.error)?,
            runtime_ms: r.runtime_ms,
            created_at: r.created_at,
            finished_at: r.finished_at,
            batch_id: r.batch_id.map(|b| b.0),
            lease: r.lease_worker.map(|worker_id| task_api::LeaseInfo {
                worker_id,
                leased_at: r.leased_at.unwrap_or_default(),
                deadline: r.lease_deadline.unwrap_or_default(),
            }),
            lost_leases: small(r.lost_leases),
            args: json(r.args)?,
            kwargs: json(r.kwargs)?,
            past_attempts: json(r.attempts)?.unwrap_or_default(),
        })
    }
}

/// A lease as the claim statement returns it.
#[derive(Debug, sqlx::FromRow)]
pub struct LeaseRow {
    id: DbId,
    package: String,
    version: String,
    function: String,
    args: String,
    kwargs: String,
    timeout_s: Option<i64>,
    attempt: i64,
    max_attempts: i64,
    priority: i64,
    seq: i64,
    lease_epoch: i64,
    lease_deadline: i64,
    req_gpus: i64,
    req_memory_mb: i64,
    req_datasets: Option<String>,
    #[sqlx(flatten)]
    cost: CostCols,
    /// Its caps (the claim returns them; a regrant does not need them).
    #[sqlx(default)]
    cap_fn: Option<String>,
    #[sqlx(default)]
    cap_key: Option<String>,
    /// Whether some task waits for it (the claim returns it: chains start there).
    #[sqlx(default)]
    pub(super) has_dependents: bool,
    /// The task a chained lease waits for (see `Lease::follows`).
    follows: Option<DbId>,
}

/// The caps of the tasks just leased: a gate pass moves their rates' next slots.
pub fn leased_caps(rows: &[LeaseRow]) -> Vec<String> {
    rows.iter()
        .flat_map(|r| r.cap_fn.iter().chain(&r.cap_key).cloned())
        .collect()
}

/// Most tasks one claim leases behind the tasks it claimed (`queries/*/chain.sql`).
pub const CHAIN_MAX: u32 = 512;
/// Tasks leased behind the claimed ones are at most this much predicted work, ms: the
/// processor runs them in its slots as their tasks succeed there, and hands back what waited
/// past its hold (0.5 s).
pub const CHAIN_BUDGET_MS: f64 = 100.0;

/// The claimed tasks others may be leased behind (some task waits for them, and their
/// function's runtime is known: never-measured functions are not chained, as they are not
/// prefetched), as a JSON array, and how many tasks to lease behind them: what the budget
/// leaves beside the work the processor holds (`held_ms`), over the longest predicted runtime
/// among them, at most [`CHAIN_MAX`].
pub fn chain_heads(
    rows: &[LeaseRow],
    predictors: Option<&Predictors>,
    held_ms: f64,
) -> Option<(String, u32)> {
    let p = predictors?;
    let mut heads = Vec::new();
    let mut longest: f64 = 0.0;
    for r in rows.iter().filter(|r| r.has_dependents) {
        let key = FnKey {
            package: r.package.clone(),
            version: r.version.clone(),
            function: r.function.clone(),
        };
        let Some(ms) = p.expected(&key, &r.cost.to_cost()) else {
            continue;
        };
        heads.push(r.id.0);
        longest = longest.max(ms);
    }
    let room = (CHAIN_BUDGET_MS - held_ms).max(0.0);
    let count = (room / longest.max(0.01)).min(CHAIN_MAX as f64) as u32;
    (!heads.is_empty() && count > 0).then(|| (super::core::ids_json(&heads), count))
}

/// The leases of one grant in the order they are due: priority, then FIFO (an UPDATE's RETURNING
/// follows no order, so the statement's `ORDER BY` does not reach the worker by itself).
/// Each lease's `expected_ms` is its task's predicted runtime, when `predictors` are given.
pub fn leases_in_order(
    mut rows: Vec<LeaseRow>,
    predictors: Option<&Predictors>,
) -> Result<Vec<Lease>, StoreError> {
    rows.sort_by_key(|r| (std::cmp::Reverse(r.priority), r.seq));
    rows.into_iter()
        .map(|r| {
            let cost = r.cost.to_cost();
            let mut lease = Lease::try_from(r)?;
            if let Some(p) = predictors {
                lease.expected_ms = p.expected(&FnKey::of(&lease.task), &cost);
            }
            Ok(lease)
        })
        .collect()
}

impl TryFrom<LeaseRow> for Lease {
    type Error = StoreError;
    fn try_from(r: LeaseRow) -> Result<Self, StoreError> {
        Ok(Lease {
            id: r.id.0,
            task: TaskPayload {
                package: non_empty(&r.package),
                version: non_empty(&r.version),
                function: r.function,
                args: serde_json::from_str(&r.args)?,
                kwargs: serde_json::from_str(&r.kwargs)?,
                timeout_s: r.timeout_s.map(small),
                attempt: small(r.attempt),
                max_attempts: small(r.max_attempts),
                resources: Resources {
                    gpus: small(r.req_gpus),
                    memory_mb: r.req_memory_mb.max(0) as u64,
                    datasets: json(r.req_datasets)?.unwrap_or_default(),
                },
            },
            lease_epoch: r.lease_epoch,
            lease_deadline: r.lease_deadline,
            expected_ms: None,
            follows: r.follows.map(|f| f.0),
        })
    }
}

/// A task an answer applied to, as the answer statement returns it.
#[derive(Debug, sqlx::FromRow)]
pub struct AnsweredRow {
    pub(super) id: DbId,
    pub(super) state: String,
    pub(super) batch_id: Option<DbId>,
    pub(super) package: String,
    pub(super) version: String,
    pub(super) function: String,
    pub(super) runtime_ms: Option<f64>,
    pub(super) attempt: i64,
    pub(super) progress: Option<f64>,
    pub(super) answer: Option<String>,
    pub(super) error: Option<String>,
    #[sqlx(flatten)]
    pub(super) cost: CostCols,
    /// Some waiting task waits for it.
    pub(super) has_dependents: bool,
    /// Its caps (caps.rs).
    pub(super) cap_fn: Option<String>,
    pub(super) cap_key: Option<String>,
}

impl AnsweredRow {
    pub(super) fn key(&self) -> FnKey {
        FnKey {
            package: self.package.clone(),
            version: self.version.clone(),
            function: self.function.clone(),
        }
    }

    pub(super) fn task_state(&self) -> Result<TaskState, StoreError> {
        parse_state(&self.state)
    }
}

/// The lease columns of a task an answer did not apply to.
#[derive(Debug, sqlx::FromRow)]
pub struct LeaseStateRow {
    id: DbId,
    state: String,
    lease_epoch: i64,
    answered_epoch: Option<i64>,
    lease_worker: Option<String>,
    lease_owner: Option<String>,
}

impl LeaseStateRow {
    /// The task id and what [`super::classify_unapplied`] needs of it.
    pub fn into_unapplied(self) -> Result<(Uuid, UnappliedRow), StoreError> {
        Ok((
            self.id.0,
            UnappliedRow {
                state: parse_state(&self.state)?,
                lease_epoch: self.lease_epoch,
                answered_epoch: self.answered_epoch,
                lease_worker: self.lease_worker,
                lease_owner: self.lease_owner,
            },
        ))
    }
}

/// A lease past its deadline, for the reaper's decision.
#[derive(Debug, sqlx::FromRow)]
pub struct ExpiredRow {
    pub(super) id: DbId,
    pub(super) lease_epoch: i64,
    pub(super) attempt: i64,
    pub(super) max_attempts: i64,
    pub(super) timeout_s: Option<i64>,
    pub(super) timeout_at: Option<i64>,
    pub(super) lease_worker: Option<String>,
    pub(super) lost_leases: i64,
}

/// A task some statement finished, requeued or deleted: id, state now, batch.
#[derive(Debug, sqlx::FromRow)]
pub struct EndedRow {
    id: DbId,
    state: String,
    batch_id: Option<DbId>,
}

impl TryFrom<EndedRow> for Finished {
    type Error = StoreError;
    fn try_from(r: EndedRow) -> Result<Self, StoreError> {
        Ok(Finished {
            id: r.id.0,
            batch_id: r.batch_id.map(|b| b.0),
            state: parse_state(&r.state)?,
            snapshot: None,
        })
    }
}

/// A schedule row.
#[derive(Debug, sqlx::FromRow)]
pub struct ScheduleRow {
    id: DbId,
    owner: String,
    cron: String,
    timezone: String,
    task: String,
    next_at: i64,
    created_at: i64,
    fired: i64,
    last_task: Option<DbId>,
}

impl TryFrom<ScheduleRow> for super::ScheduleRecord {
    type Error = StoreError;
    fn try_from(r: ScheduleRow) -> Result<Self, StoreError> {
        Ok(super::ScheduleRecord {
            id: r.id.0,
            owner: r.owner,
            cron: r.cron,
            timezone: r.timezone,
            task: serde_json::from_str(&r.task)?,
            next_at: r.next_at,
            created_at: r.created_at,
            fired: r.fired.max(0) as u64,
            last_task: r.last_task.map(|t| t.0),
        })
    }
}

/// A waiting task as settling it needs it.
#[derive(Debug, sqlx::FromRow)]
pub struct WaitingRow {
    pub(super) id: DbId,
    pub(super) package: String,
    pub(super) version: String,
    pub(super) function: String,
    pub(super) args: String,
    pub(super) kwargs: String,
    pub(super) cost_by: Option<String>,
    pub(super) cost_at: Option<String>,
    pub(super) owner: String,
    pub(super) memoize: bool,
    /// JSON array of the ids it waits for.
    pub(super) depends_on: Option<String>,
}

/// A task some waiting task waits for, as it is now.
#[derive(Debug, sqlx::FromRow)]
pub struct DepRow {
    pub(super) dep: DbId,
    pub(super) state: Option<String>,
    pub(super) answer: Option<String>,
    pub(super) error: Option<String>,
}

impl TryFrom<DepRow> for crate::graph::DepState {
    type Error = StoreError;
    fn try_from(r: DepRow) -> Result<Self, StoreError> {
        Ok(crate::graph::DepState {
            dep: r.dep.0,
            state: r.state.as_deref().map(parse_state).transpose()?,
            answer: r.answer.as_deref().map(serde_json::from_str).transpose()?,
            error: r.error.as_deref().map(serde_json::from_str).transpose()?,
        })
    }
}

/// The task holding an idempotency key.
#[derive(Debug, sqlx::FromRow)]
pub struct KeyedRow {
    pub(super) id: DbId,
    pub(super) request_hash: Option<String>,
    pub(super) state: String,
}

/// A task id with its state.
#[derive(Debug, sqlx::FromRow)]
pub struct IdStateRow {
    id: DbId,
    state: String,
}

impl TryFrom<IdStateRow> for (Uuid, TaskState) {
    type Error = StoreError;
    fn try_from(r: IdStateRow) -> Result<Self, StoreError> {
        Ok((r.id.0, parse_state(&r.state)?))
    }
}

/// A row of `function_stats`.
#[derive(Debug, sqlx::FromRow)]
pub struct StatsRow {
    package: String,
    version: String,
    function: String,
    count: i64,
    failures: i64,
    mean_ms: f64,
    var_ms: f64,
    sketch: String,
    last_seen: i64,
    model: String,
}

impl TryFrom<StatsRow> for FunctionStats {
    type Error = StoreError;
    fn try_from(r: StatsRow) -> Result<Self, StoreError> {
        Ok(FunctionStats {
            key: FnKey {
                package: r.package,
                version: r.version,
                function: r.function,
            },
            count: r.count.max(0) as u64,
            failures: r.failures.max(0) as u64,
            mean_ms: r.mean_ms,
            var_ms: r.var_ms,
            sketch: serde_json::from_str::<Sketch>(&r.sketch)?,
            last_seen: r.last_seen,
            // A model this version cannot read starts again rather than failing every read.
            model: serde_json::from_str(&r.model).unwrap_or_default(),
        })
    }
}

/// A processor with the leases it holds.
#[derive(Debug, sqlx::FromRow)]
pub struct WorkerRow {
    worker_id: String,
    owner: String,
    slots: i64,
    capabilities: String,
    first_seen: i64,
    last_seen: i64,
    dispatch_ms: Option<f64>,
    speed: Option<f64>,
    running: i64,
}

impl TryFrom<WorkerRow> for WorkerRecord {
    type Error = StoreError;
    fn try_from(r: WorkerRow) -> Result<Self, StoreError> {
        Ok(WorkerRecord {
            worker_id: r.worker_id,
            owner: r.owner,
            slots: small(r.slots),
            capabilities: serde_json::from_str(&r.capabilities)?,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            running: r.running.max(0) as u64,
            dispatch_ms: r.dispatch_ms,
            speed: r.speed,
        })
    }
}

/// A batch record.
#[derive(Debug, sqlx::FromRow)]
pub struct BatchRow {
    id: DbId,
    owner: String,
    total: i64,
    created_at: i64,
}

impl From<BatchRow> for BatchRecord {
    fn from(r: BatchRow) -> Self {
        BatchRecord {
            id: r.id.0,
            owner: r.owner,
            total: r.total.max(0) as u64,
            created_at: r.created_at,
        }
    }
}

/// A finished task of a batch.
#[derive(Debug, sqlx::FromRow)]
pub struct BatchResultRow {
    id: DbId,
    batch_index: i64,
    state: String,
    answer: Option<String>,
    error: Option<String>,
    finish_seq: i64,
}

impl TryFrom<BatchResultRow> for BatchResult {
    type Error = StoreError;
    fn try_from(r: BatchResultRow) -> Result<Self, StoreError> {
        Ok(BatchResult {
            id: r.id.0,
            index: r.batch_index.max(0) as u64,
            state: parse_state(&r.state)?,
            answer: json(r.answer)?,
            error: json(r.error)?,
            finish_seq: r.finish_seq,
        })
    }
}

/// A task's cost columns (`cost_by`, `cost0`..`cost2`; see `cost.rs`).
#[derive(Debug, Default, sqlx::FromRow)]
pub struct CostCols {
    cost_by: Option<String>,
    cost0: Option<f64>,
    cost1: Option<f64>,
    cost2: Option<f64>,
}

impl CostCols {
    /// The measures as the estimate reads them.
    pub fn to_cost(&self) -> Cost {
        let mut x = vec![self.cost0, self.cost1, self.cost2];
        while x.last() == Some(&None) {
            x.pop();
        }
        Cost {
            by: self.cost_by.clone(),
            x,
        }
    }
}

/// Queued tasks of one function and class, with count, sum and range per cost slot.
#[derive(Debug, sqlx::FromRow)]
pub struct QueuedRow {
    package: String,
    version: String,
    function: String,
    gpu: bool,
    n: i64,
    n0: i64,
    s0: f64,
    hi0: Option<f64>,
    lo0: Option<f64>,
    n1: i64,
    s1: f64,
    hi1: Option<f64>,
    lo1: Option<f64>,
    n2: i64,
    s2: f64,
    hi2: Option<f64>,
    lo2: Option<f64>,
}

fn slot_sum(n: i64, sum: f64, hi: Option<f64>, lo: Option<f64>) -> SlotSum {
    SlotSum {
        n: n.max(0) as u64,
        sum,
        max: hi.unwrap_or(0.0),
        min: lo.unwrap_or(0.0),
    }
}

impl From<QueuedRow> for Queued {
    fn from(r: QueuedRow) -> Self {
        Queued {
            key: FnKey {
                package: r.package,
                version: r.version,
                function: r.function,
            },
            gpu: r.gpu,
            n: r.n.max(0) as u64,
            slots: vec![
                slot_sum(r.n0, r.s0, r.hi0, r.lo0),
                slot_sum(r.n1, r.s1, r.hi1, r.lo1),
                slot_sum(r.n2, r.s2, r.hi2, r.lo2),
            ],
        }
    }
}

/// A running task.
#[derive(Debug, sqlx::FromRow)]
pub struct RunningRow {
    package: String,
    version: String,
    function: String,
    gpu: bool,
    leased_at: Option<i64>,
    #[sqlx(flatten)]
    cost: CostCols,
}

impl RunningRow {
    /// The task as the estimate sees it at `now`.
    pub fn at(self, now: i64) -> Running {
        Running {
            key: FnKey {
                package: self.package,
                version: self.version,
                function: self.function,
            },
            gpu: self.gpu,
            elapsed_ms: (now - self.leased_at.unwrap_or(now)).max(0) as f64,
            cost: self.cost.to_cost(),
        }
    }
}

/// A broadcast row.
#[derive(Debug, sqlx::FromRow)]
pub struct BroadcastRow {
    seq: i64,
    id: DbId,
    package: String,
    version: Option<String>,
    payload: String,
    created_at: i64,
}

impl TryFrom<BroadcastRow> for task_api::Broadcast {
    type Error = StoreError;
    fn try_from(r: BroadcastRow) -> Result<Self, StoreError> {
        Ok(task_api::Broadcast {
            id: r.id.0,
            seq: r.seq,
            package: r.package,
            version: r.version,
            payload: serde_json::from_str(&r.payload)?,
            created_at: r.created_at,
        })
    }
}

/// A processor's report on a broadcast.
#[derive(Debug, sqlx::FromRow)]
pub struct BroadcastReportRow {
    worker_id: String,
    applied_at: i64,
    instances: i64,
    error: Option<String>,
}

impl From<BroadcastReportRow> for task_api::BroadcastReport {
    fn from(r: BroadcastReportRow) -> Self {
        task_api::BroadcastReport {
            worker_id: r.worker_id,
            applied_at: r.applied_at,
            instances: r.instances.clamp(0, u32::MAX as i64) as u32,
            error: r.error,
        }
    }
}

/// A cap with its open tasks (caps.rs decides with it).
#[derive(Debug, sqlx::FromRow)]
pub struct CapRow {
    pub(super) key: String,
    max_running: Option<i64>,
    rate_per_s: Option<f64>,
    next_at: f64,
    running: i64,
    ready: i64,
}

impl From<CapRow> for crate::caps::CapState {
    fn from(r: CapRow) -> Self {
        crate::caps::CapState {
            max_running: r.max_running.map(|m| m.max(0) as u64),
            rate_per_s: r.rate_per_s.filter(|x| x.is_finite() && *x > 0.0),
            next_at: r.next_at,
            stored_next_at: r.next_at,
            running: r.running.max(0) as u64,
            ready: r.ready.max(0) as u64,
        }
    }
}

/// A gated task at the head of a cap's line.
#[derive(Debug, sqlx::FromRow)]
pub struct GatedRow {
    seq: i64,
    priority: i64,
    fair_tag: i64,
    cap_fn: Option<String>,
    cap_key: Option<String>,
}

impl From<GatedRow> for crate::caps::Gated {
    fn from(r: GatedRow) -> Self {
        crate::caps::Gated {
            seq: r.seq,
            priority: r.priority,
            fair_tag: r.fair_tag,
            caps: r.cap_fn.into_iter().chain(r.cap_key).collect(),
        }
    }
}
