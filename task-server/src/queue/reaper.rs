//! The background pass: expired leases, expired results, delayed tasks that became ready.
use super::QueueError;
use super::{now_ms, Queue, PENDING_RECOUNT};

impl Queue {
    /// One reaper pass: expired leases, expired results, delayed tasks that became ready.
    pub async fn reap_once(&self, last: i64) -> Result<i64, QueueError> {
        let now = now_ms();
        let out = self.store.reap(now).await?;
        crate::metrics::reaped(&out);
        for f in &out.failed {
            self.finished(f);
        }
        let unchained = out.unchained.len();
        if out.requeued > 0 || unchained > 0 || !out.failed.is_empty() || out.deleted > 0 {
            tracing::info!(
                requeued = out.requeued,
                waiting = unchained,
                failed = out.failed.len(),
                deleted = out.deleted,
                "reaper pass"
            );
        }
        let opened = self.store.open_gates(now).await?;
        if out.requeued > 0 || opened > 0 || self.store.became_ready(last, now).await? {
            self.work.notify_waiters();
        }
        let horizon = now - 3_600_000;
        self.seen
            .lock()
            .expect("seen lock")
            .retain(|_, s| s.at >= horizon);
        self.pending_counts()
            .retain(|_, (at, _)| at.elapsed() < PENDING_RECOUNT);
        Ok(now)
    }

    /// Wakes the waiting processors at each time a queued task becomes due within `within`
    /// (a retry's backoff, `not_before`, a rate's start slots), between two reaper passes.
    pub async fn wake_when_due(self: &std::sync::Arc<Self>, within: std::time::Duration) {
        let now = now_ms();
        let times = match self
            .store
            .due_times(now, now + within.as_millis() as i64)
            .await
        {
            Ok(t) => t,
            Err(e) => return tracing::warn!(error = %e, "reading due times failed"),
        };
        if times.is_empty() {
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            for at in times {
                let wait = (at - now_ms()).max(0) as u64;
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                queue.work.notify_waiters();
            }
        });
    }

    /// Settles waiting tasks none of whose dependencies is unfinished (see
    /// [`crate::store::Store::settle_stuck`]).
    pub async fn settle_stuck(&self) -> Result<(), QueueError> {
        let n = self.store.settle_stuck(now_ms()).await?;
        if n > 0 {
            tracing::info!(settled = n, "waiting tasks settled by the sweep");
        }
        Ok(())
    }
}
