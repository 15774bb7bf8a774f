//! Background sweep: expired leases back to the queue (or failed), expired results deleted,
//! delayed retries woken when they become due.
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::files::Files;
use crate::queue::{now_ms, Queue};

/// How often waiting tasks whose dependencies all ended are looked for (at start, then this
/// often): settling normally happens with the answer that ends the last dependency; this sweep
/// covers a crash between that answer's commit and the settling.
const SETTLE_SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Runs until `shutdown` fires.
pub async fn run(
    queue: Arc<Queue>,
    files: Arc<Files>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = now_ms();
    let mut swept: Option<Instant> = None;
    let (mut files_swept, mut file_sweeps): (Option<Instant>, u64) = (None, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match queue.reap_once(last).await {
            Ok(now) => last = now,
            Err(e) => tracing::warn!(error = %e, "reaper pass failed; retrying next tick"),
        }
        queue.wake_when_due(every).await;
        if let Err(e) = queue.fire_schedules().await {
            tracing::warn!(error = %e, "firing schedules failed; retrying next tick");
        }
        if swept.is_none_or(|at| at.elapsed() >= SETTLE_SWEEP_EVERY) {
            swept = Some(Instant::now());
            if let Err(e) = queue.settle_stuck().await {
                tracing::warn!(error = %e, "settling waiting tasks failed; retrying later");
            }
        }
        if files_swept.is_none_or(|at| at.elapsed() >= files.sweep_every()) {
            files_swept = Some(Instant::now());
            file_sweeps += 1;
            if let Err(e) = files.expire(now_ms(), file_sweeps % 10 == 1).await {
                tracing::warn!(error = %e, "removing expired files failed; retrying later");
            }
        }
    }
}
