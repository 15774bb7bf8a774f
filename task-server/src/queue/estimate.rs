//! Estimates of the time left, runtime statistics and the processors seen.
use task_api::{
    ClassBacklog, EstimateResponse, Eta, FunctionStatsView, StatsResponse, TaskState, WorkerView,
    WorkersResponse,
};
use uuid::Uuid;

use super::QueueError;
use super::{now_ms, Queue};
use crate::auth::Caller;
use crate::cost::Cost;
use crate::stats::{estimate, non_empty, Estimate, FnKey};
use crate::store::{LoadScope, WorkerRecord};

impl Queue {
    pub(super) async fn estimate_scope(&self, scope: LoadScope) -> Result<Estimate, QueueError> {
        let load = self.store.queue_load(scope, now_ms()).await?;
        Ok(estimate(&load, &*self.fresh_predictors().await?))
    }

    /// `GET /user/estimate_time_left`: the whole queue, or what runs before (and including) a task.
    pub async fn estimate(
        &self,
        caller: &Caller,
        task_id: Option<Uuid>,
    ) -> Result<EstimateResponse, QueueError> {
        let scope = match task_id {
            None => LoadScope::All,
            Some(id) => {
                let t = self.visible_task(caller, id).await?;
                match t.state {
                    s if s.is_terminal() => return Ok(finished_estimate(id, s)),
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
        self.estimate_in(task_id, scope).await
    }

    /// Adds the waiting tasks (of `batch`, or all) to `est` and returns the ETA with them:
    /// the drain of all the work on the live slots, or the graph's critical path when that is
    /// longer (`until`: the path to that task, whose own work `est` already holds or not).
    pub(super) async fn graph_eta(
        &self,
        est: &mut Estimate,
        cap: &Capacity,
        batch: Option<Uuid>,
        until: Option<Uuid>,
    ) -> Result<(Eta, u64), QueueError> {
        let g = self.store.waiting_graph(batch, GRAPH_LIMIT).await?;
        if g.nodes.is_empty() {
            return Ok((cap.eta(est), 0));
        }
        let preds = self.predictors().await?;
        let ms_of = |k: &FnKey| preds.get(k).0.predict(&Cost::default());
        let load = g.load(&ms_of, cap.dispatch_ms / 1000.0, until);
        if until.is_none() {
            est.time += load.time_s;
        }
        let mut eta = cap.eta(est);
        if eta.eta_s.is_some_and(|e| e < load.critical_s) {
            let c = load.critical_s;
            eta.eta_s = Some(c);
            eta.eta_p10_s = eta.eta_p10_s.map(|p| p.max(c * (1.0 - UNMODELLED)));
            eta.eta_p90_s = eta.eta_p90_s.map(|p| p.max(c * (1.0 + UNMODELLED)));
        }
        Ok((eta, load.waiting))
    }

    /// The estimate of `scope` with the live processors' capacity.
    pub(crate) async fn estimate_in(
        &self,
        task_id: Option<Uuid>,
        scope: LoadScope,
    ) -> Result<EstimateResponse, QueueError> {
        let mut est = self.estimate_scope(scope).await?;
        let cap = self.capacity().await?;
        let (batch, until) = match scope {
            LoadScope::Batch(b) => (Some(b), None),
            _ => (None, task_id),
        };
        let (eta, waiting) = self.graph_eta(&mut est, &cap, batch, until).await?;
        Ok(EstimateResponse {
            success: true,
            task_id,
            state: None,
            time: est.time,
            waiting,
            eta,
            backlog: cap.backlog(&est),
            live_slots: Some(cap.slots),
            dispatch_ms: Some(cap.dispatch_ms),
            queued: est.queued,
            running: est.running,
            per_function: est.per_function,
            confidence: est.confidence,
        })
    }

    /// `GET /user/stats`.
    pub async fn stats(&self) -> Result<StatsResponse, QueueError> {
        let rows = self.store.stats().await?;
        let functions = rows
            .iter()
            .map(|s| FunctionStatsView {
                package: non_empty(&s.key.package),
                version: non_empty(&s.key.version),
                function: s.key.function.clone(),
                count: s.count,
                failures: s.failures,
                mean_ms: s.mean_ms,
                stddev_ms: s.stddev_ms(),
                p50_ms: s.sketch.quantile(0.5),
                p95_ms: s.sketch.quantile(0.95),
                last_seen: s.last_seen,
                histogram: s.sketch.histogram(HISTOGRAM_BINS),
            })
            .collect();
        Ok(StatsResponse {
            success: true,
            functions,
        })
    }

    /// `GET /user/workers`: processors heard from within the live window (or ever, with `all`).
    pub async fn workers(&self, all: bool) -> Result<WorkersResponse, QueueError> {
        let live_cutoff = self.live_cutoff();
        let since = if all { 0 } else { live_cutoff };
        let workers = self.store.workers(since).await?;
        let live_slots: u64 = workers
            .iter()
            .filter(|w| w.last_seen >= live_cutoff)
            .map(|w| w.slots as u64)
            .sum();
        let workers = workers
            .into_iter()
            .map(|w| WorkerView {
                live: w.last_seen >= live_cutoff,
                worker: w,
            })
            .collect();
        Ok(WorkersResponse {
            success: true,
            live_slots,
            workers,
        })
    }

    /// Live slots and their dispatch overhead.
    pub(super) async fn capacity(&self) -> Result<Capacity, QueueError> {
        let since = self.live_cutoff();
        Ok(Capacity::of(&self.store.workers(since).await?))
    }
}

/// The estimate of a task that already finished: nothing is left.
fn finished_estimate(id: Uuid, state: TaskState) -> EstimateResponse {
    EstimateResponse {
        success: true,
        task_id: Some(id),
        state: Some(state),
        time: 0.0,
        eta: Eta::done(),
        backlog: Vec::new(),
        live_slots: None,
        dispatch_ms: None,
        queued: 0,
        running: 0,
        waiting: 0,
        per_function: Vec::new(),
        confidence: 1.0,
    }
}

/// Waiting tasks the estimate reads at most (a graph larger than this is estimated from its
/// first ones, in queue order).
const GRAPH_LIMIT: u32 = 100_000;

/// Most bins of a runtime histogram in `GET /user/stats`.
const HISTOGRAM_BINS: usize = 40;

/// z of the 10th and 90th percentiles of a normal distribution.
const Z_P90: f64 = 1.2816;
/// Spread the model does not see (dispatch overhead and machine load vary from run to run):
/// the interval is at least this much either side. Sized on the bench's ETA rows.
const UNMODELLED: f64 = 0.08;

/// What the live processors can do, for `eta_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Capacity {
    slots: u64,
    /// Of `slots`, the GPU slots (as processors report them; 0 for older processors).
    gpu_slots: u64,
    /// The slots as average slots: each processor's count divided by its reported `speed`
    /// (its runtimes against the predictions; 1 when it reported none).
    rate: f64,
    /// The same of the GPU slots.
    gpu_rate: f64,
    /// Slot-weighted mean of the dispatch overhead the processors report (0 when none does).
    dispatch_ms: f64,
}

impl Capacity {
    fn of(workers: &[WorkerRecord]) -> Capacity {
        let slots: u64 = workers.iter().map(|w| w.slots as u64).sum();
        let gpu_slots: u64 = workers.iter().map(gpu_slots_of).sum();
        let per_speed = |w: &WorkerRecord| 1.0 / w.speed.unwrap_or(1.0).clamp(0.01, 100.0);
        let rate = workers.iter().map(|w| w.slots as f64 * per_speed(w)).sum();
        let gpu_rate = workers
            .iter()
            .map(|w| gpu_slots_of(w) as f64 * per_speed(w))
            .sum();
        let (weighted, reported) = workers
            .iter()
            .filter_map(|w| w.dispatch_ms.map(|d| (d * w.slots as f64, w.slots as f64)))
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        Capacity {
            slots,
            gpu_slots,
            rate,
            gpu_rate,
            dispatch_ms: if reported > 0.0 {
                weighted / reported
            } else {
                0.0
            },
        }
    }

    /// Wall seconds for `time` core-seconds and `queued` dispatches on `slots` slots of
    /// `rate` average slots.
    fn drain_s(&self, time: f64, queued: u64, slots: u64, rate: f64) -> Option<f64> {
        (slots > 0).then(|| (time + queued as f64 * self.dispatch_ms / 1000.0) / rate)
    }

    /// Wall seconds to run `est` on these slots (its runtimes plus one dispatch per queued
    /// task; GPU work on the GPU slots), with its 10th and 90th percentiles: the spread of the
    /// predicted work, the longest task (the last one may end the queue up to that much past
    /// the rest), and [`UNMODELLED`]. All `None` when no processor is live.
    pub(super) fn eta(&self, est: &Estimate) -> Eta {
        let Some(mut base) = self.drain_s(est.time, est.queued, self.slots, self.rate) else {
            return Eta::default();
        };
        let g = &est.gpu;
        if let Some(gpu) = self.drain_s(g.time, g.queued, self.gpu_slots, self.gpu_rate) {
            base = base.max(gpu);
        }
        let tail = est.longest_s * (1.0 - 1.0 / self.slots as f64);
        let sd = est.var_s2.max(0.0).sqrt() / self.rate;
        let eta = base + tail / 2.0;
        Eta {
            eta_s: Some(eta),
            eta_p10_s: Some(((base - Z_P90 * sd).max(0.0) * (1.0 - UNMODELLED)).min(eta)),
            eta_p90_s: Some((base + tail + Z_P90 * sd) * (1.0 + UNMODELLED)),
        }
    }

    /// The work of each capability class and how long its own slots take to drain it.
    pub(super) fn backlog(&self, est: &Estimate) -> Vec<ClassBacklog> {
        let cpu_slots = self.slots - self.gpu_slots;
        let cpu_rate = (self.rate - self.gpu_rate).max(0.0);
        let class =
            |name: &str, (queued, running): (u64, u64), time: f64, slots, rate| ClassBacklog {
                class: name.into(),
                queued,
                running,
                time,
                slots,
                backlog_s: self.drain_s(time, queued, slots, rate),
            };
        let g = &est.gpu;
        vec![
            class(
                "cpu",
                (est.queued - g.queued, est.running - g.running),
                (est.time - g.time).max(0.0),
                cpu_slots,
                cpu_rate,
            ),
            class(
                "gpu",
                (g.queued, g.running),
                g.time,
                self.gpu_slots,
                self.gpu_rate,
            ),
        ]
    }
}

/// The GPU slots a processor reported with its capabilities.
fn gpu_slots_of(w: &WorkerRecord) -> u64 {
    w.capabilities
        .get("gpu_slots")
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
        .min(w.slots as u64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
            speed: None,
        }
    }

    fn est(time: f64, queued: u64) -> Estimate {
        Estimate {
            time,
            var_s2: 0.0,
            longest_s: 0.0,
            queued,
            running: 0,
            gpu: Default::default(),
            per_function: vec![],
            confidence: 1.0,
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
        let e = est(12.0, 3000);
        // (12 s of runtime + 3000 × 2 ms) over 6 slots.
        assert!((cap.eta(&e).eta_s.unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(Capacity::of(&[]).eta(&e), Eta::default());
        assert_eq!(Capacity::of(&[worker(2, None)]).eta(&e).eta_s, Some(6.0));
    }

    #[test]
    fn the_interval_widens_with_the_spread_and_the_last_task() {
        let cap = Capacity::of(&[worker(4, None)]);
        let mut e = est(40.0, 100);
        let tight = cap.eta(&e);
        assert!((tight.eta_p10_s.unwrap() - 10.0 * (1.0 - UNMODELLED)).abs() < 1e-9);
        assert!((tight.eta_p90_s.unwrap() - 10.0 * (1.0 + UNMODELLED)).abs() < 1e-9);
        e.var_s2 = 16.0; // sd 4 s of work: 1 s of wall time on 4 slots
        e.longest_s = 2.0;
        let wide = cap.eta(&e);
        assert!((wide.eta_s.unwrap() - 10.75).abs() < 1e-9, "half the tail");
        let p90 = (10.0 + 1.5 + Z_P90) * (1.0 + UNMODELLED);
        assert!((wide.eta_p90_s.unwrap() - p90).abs() < 1e-9);
        assert!(wide.eta_p10_s.unwrap() < tight.eta_p10_s.unwrap());
    }

    #[test]
    fn a_slower_processor_counts_for_fewer_slots() {
        let mut slow = worker(2, None);
        slow.speed = Some(2.0);
        let cap = Capacity::of(&[slow, worker(3, None)]);
        // 2 slots at half speed + 3 average ones: 4 average slots.
        assert_eq!(cap.eta(&est(40.0, 10)).eta_s, Some(10.0));
        assert_eq!(cap.slots, 5, "live slots stay what the processors run");
    }

    #[test]
    fn gpu_work_waits_for_the_gpu_slots_and_has_its_own_backlog() {
        let mut gpu_box = worker(4, None);
        gpu_box.capabilities = json!({"gpu_slots": 1});
        let cap = Capacity::of(&[gpu_box, worker(4, None)]);
        let mut e = est(16.0, 20);
        e.gpu.time = 12.0;
        e.gpu.queued = 10;
        // All work on 8 slots would be 2 s, but the GPU work alone needs 12 s on its one slot.
        assert_eq!(cap.eta(&e).eta_s, Some(12.0));
        let b = cap.backlog(&e);
        assert_eq!(
            (b[0].class.as_str(), b[0].slots, b[0].backlog_s),
            ("cpu", 7, Some(4.0 / 7.0))
        );
        assert_eq!(
            (b[1].class.as_str(), b[1].slots, b[1].backlog_s),
            ("gpu", 1, Some(12.0))
        );
    }
}
