//! What the server adds to `/metrics` besides the request metrics (`crpc_service::metrics`):
//! counters as this replica sees tasks finish and leases expire, and gauges read from the
//! database at each scrape (every replica reports the same shared queue).
use std::collections::HashSet;
use std::sync::Mutex;

use metrics::{counter, gauge};
use task_api::TaskState;

use crate::queue::{Queue, QueueError};
use crate::store::{LoadScope, ReapOutcome};

/// A task reached a terminal state here: `crpc_tasks_finished_total{state}`.
pub fn finished(state: TaskState) {
    counter!("crpc_tasks_finished_total", "state" => state.as_str()).increment(1);
}

/// One reaper pass: `crpc_lease_expiries_total` (leases that ran out: requeued, waiting again
/// when chained, or failed) and
/// `crpc_results_expired_total` (finished tasks deleted past their retention).
pub fn reaped(out: &ReapOutcome) {
    let taken = out.requeued + out.failed.len() + out.unchained.len();
    counter!("crpc_lease_expiries_total").increment(taken as u64);
    counter!("crpc_results_expired_total").increment(out.deleted as u64);
}

/// Leases handed out by one lease request: `crpc_leases_total{how}`, `claimed` from the
/// queue or `chained` behind a task the same grant holds (see `Lease::follows`).
pub fn leased(leases: &[task_api::Lease]) {
    let chained = leases.iter().filter(|l| l.follows.is_some()).count() as u64;
    counter!("crpc_leases_total", "how" => "claimed").increment(leases.len() as u64 - chained);
    counter!("crpc_leases_total", "how" => "chained").increment(chained);
}

/// Label sets of `crpc_tasks` set at the last scrape, so ones that emptied read 0.
static LAST_COUNTS: Mutex<Option<HashSet<(String, String, String)>>> = Mutex::new(None);

/// Reads the queue into the gauges, then renders everything.
pub async fn render(queue: &Queue) -> String {
    if let Err(e) = refresh(queue).await {
        tracing::warn!("metrics: cannot read the queue: {e}");
        counter!("crpc_metrics_refresh_errors_total").increment(1);
    }
    crpc_service::metrics::render()
}

async fn refresh(queue: &Queue) -> Result<(), QueueError> {
    task_counts(queue).await?;
    let est = queue.estimate_in(None, LoadScope::All).await?;
    gauge!("crpc_queue_eta_seconds").set(seconds(est.eta.eta_s, est.queued + est.running));
    gauge!("crpc_queue_work_seconds").set(est.time);
    for b in &est.backlog {
        let class = b.class.clone();
        gauge!("crpc_backlog_seconds", "class" => class.clone())
            .set(seconds(b.backlog_s, b.queued + b.running));
        gauge!("crpc_backlog_tasks", "class" => class.clone()).set((b.queued + b.running) as f64);
        gauge!("crpc_live_slots", "class" => class).set(b.slots as f64);
    }
    let workers = queue.workers(false).await?;
    gauge!("crpc_live_processors").set(workers.workers.len() as f64);
    Ok(())
}

/// Wall seconds; with no live slot for the work there is: +Inf, the strongest scale-up signal.
fn seconds(s: Option<f64>, tasks: u64) -> f64 {
    match s {
        Some(s) => s,
        None if tasks > 0 => f64::INFINITY,
        None => 0.0,
    }
}

/// `crpc_tasks{state, package, function}`: every task the database holds.
async fn task_counts(queue: &Queue) -> Result<(), QueueError> {
    let counts = queue.store().task_counts().await?;
    let mut seen = HashSet::new();
    for c in counts {
        let key = (c.state.as_str().to_string(), c.package, c.function);
        gauge!("crpc_tasks", "state" => key.0.clone(), "package" => key.1.clone(), "function" => key.2.clone())
            .set(c.n as f64);
        seen.insert(key);
    }
    let mut last = LAST_COUNTS.lock().expect("metrics lock");
    for (state, package, function) in last.iter().flatten().filter(|k| !seen.contains(*k)) {
        gauge!("crpc_tasks", "state" => state.clone(), "package" => package.clone(), "function" => function.clone())
            .set(0.0);
    }
    *last = Some(seen);
    Ok(())
}
