//! Estimates of the time left, runtime statistics and the processors seen.
use std::collections::HashMap;

use task_api::{
    EstimateResponse, FunctionStatsView, StatsResponse, TaskState, WorkerView, WorkersResponse,
};
use uuid::Uuid;

use super::QueueError;
use super::{now_ms, Queue};
use crate::auth::Caller;
use crate::stats::{estimate, non_empty, Estimate, FnKey};
use crate::store::{LoadScope, WorkerRecord};

impl Queue {
    pub(super) async fn estimate_scope(&self, scope: LoadScope) -> Result<Estimate, QueueError> {
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
        let est = self.estimate_scope(scope).await?;
        let cap = self.capacity().await?;
        Ok(EstimateResponse {
            success: true,
            task_id,
            state: None,
            time: est.time,
            eta_s: cap.eta(&est),
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
            })
            .collect();
        Ok(StatsResponse {
            success: true,
            functions,
        })
    }

    /// `GET /user/workers`: processors heard from within the live window (or ever, with `all`).
    pub async fn workers(&self, all: bool) -> Result<WorkersResponse, QueueError> {
        let live_cutoff = now_ms() - self.cfg.live_window.as_millis() as i64;
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
        let since = now_ms() - self.cfg.live_window.as_millis() as i64;
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
        eta_s: Some(0.0),
        live_slots: None,
        dispatch_ms: None,
        queued: 0,
        running: 0,
        per_function: Vec::new(),
        confidence: 1.0,
    }
}

/// What the live processors can do, for `eta_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Capacity {
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
    pub(super) fn eta(&self, est: &Estimate) -> Option<f64> {
        (self.slots > 0)
            .then(|| (est.time + est.queued as f64 * self.dispatch_ms / 1000.0) / self.slots as f64)
    }
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
