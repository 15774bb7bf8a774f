//! Background sweep: expired leases back to the queue (or failed), expired results deleted,
//! delayed retries woken when they become due.
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::queue::{now_ms, Queue};

/// Runs until `shutdown` fires.
pub async fn run(queue: Arc<Queue>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = now_ms();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match queue.reap_once(last).await {
            Ok(now) => last = now,
            Err(e) => tracing::warn!(error = %e, "reaper pass failed; retrying next tick"),
        }
    }
}
