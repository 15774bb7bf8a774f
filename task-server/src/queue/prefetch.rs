//! How many leases of a grant a processor keeps beyond its free slots (prefetch), sized by the
//! tasks' predicted runtimes, so short tasks stream and long ones are never hoarded.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Queue, QueueError};
use crate::stats::Predictors;
use task_api::Lease;
use uuid::Uuid;

/// Expected work a processor may hold prefetched, per slot, beyond what it runs.
pub const BUDGET_PER_SLOT_MS: f64 = 50.0;
/// Tasks of functions this slow (or never measured) are never prefetched.
pub const LONG_MS: f64 = 1000.0;
/// How long the statistics behind the sizing and the estimates are reused before they are
/// read again.
const STATS_TTL: Duration = Duration::from_secs(1);

/// How many of a grant's leases (in grant order, with each one's expected runtime) to keep:
/// every lease for a free slot, then prefetched ones while each is of a function measured to
/// run under [`LONG_MS`] and the expected work held (`held_ms` and the ones kept so far) stays
/// within [`BUDGET_PER_SLOT_MS`] per slot. Stops at the first that does not fit, so what is kept
/// is a prefix of the priority order and what is handed back goes back in place.
pub fn keep(expected: &[Option<f64>], free: usize, slots: u32, held_ms: f64) -> usize {
    let budget = BUDGET_PER_SLOT_MS * f64::from(slots.max(1));
    let mut held = held_ms;
    let mut kept = free.min(expected.len());
    for e in &expected[kept..] {
        match e {
            Some(ms) if *ms < LONG_MS && held + ms <= budget => {
                held += ms;
                kept += 1;
            }
            _ => break,
        }
    }
    kept
}

impl Queue {
    /// Every function's runtime predictor, read from the store at most once per [`STATS_TTL`]
    /// (lease sizing, on every claim).
    pub(super) async fn predictors(&self) -> Result<Arc<Predictors>, QueueError> {
        if let Some((at, p)) = &*self.predictors.lock().expect("predictors lock") {
            if at.elapsed() < STATS_TTL {
                return Ok(p.clone());
            }
        }
        self.fresh_predictors().await
    }

    /// The predictors as the statistics are now (estimates: a user reading one right after
    /// answers landed sees them counted).
    pub(super) async fn fresh_predictors(&self) -> Result<Arc<Predictors>, QueueError> {
        let fresh = Arc::new(Predictors::new(&self.store.stats().await?));
        *self.predictors.lock().expect("predictors lock") = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}

/// Of `chained` leases (each follows one task, see `Lease::follows`), those whose chain leads
/// back to one of `kept`, each after the one it follows, and the rest (their head goes back,
/// so they do too).
pub fn chains_of(kept: &[Lease], chained: Vec<Lease>) -> (Vec<Lease>, Vec<Lease>) {
    let mut behind: HashMap<Uuid, Vec<Lease>> = HashMap::new();
    for l in chained {
        behind
            .entry(l.follows.unwrap_or_default())
            .or_default()
            .push(l);
    }
    let mut keep = Vec::new();
    let mut next: Vec<Uuid> = kept.iter().map(|l| l.id).collect();
    while let Some(id) = next.pop() {
        for l in behind.remove(&id).unwrap_or_default() {
            next.push(l.id);
            keep.push(l);
        }
    }
    (keep, behind.into_values().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_slots_always_get_their_leases() {
        assert_eq!(keep(&[None, Some(5000.0)], 2, 2, 0.0), 2);
        assert_eq!(keep(&[None], 3, 3, 0.0), 1, "never more than granted");
    }

    #[test]
    fn short_tasks_are_prefetched_up_to_the_budget() {
        let ten = vec![Some(10.0); 20];
        assert_eq!(
            keep(&ten, 1, 1, 0.0),
            1 + 5,
            "50 ms of 10 ms tasks on one slot"
        );
        assert_eq!(keep(&ten, 2, 2, 0.0), 2 + 10, "the budget is per slot");
        assert_eq!(keep(&ten, 1, 1, 30.0), 1 + 2, "what is held already counts");
        assert_eq!(keep(&ten, 0, 1, 50.0), 0, "a full buffer gets nothing");
        let noop = vec![Some(0.0); 1000];
        assert_eq!(
            keep(&noop, 1, 1, 0.0),
            1000,
            "no-ops: whatever was asked for"
        );
    }

    #[test]
    fn unmeasured_and_long_functions_are_never_prefetched() {
        assert_eq!(keep(&[None, None], 1, 8, 0.0), 1);
        assert_eq!(keep(&[Some(1.0), Some(1000.0)], 1, 1000, 0.0), 1);
        assert_eq!(keep(&[Some(60.0)], 0, 1, 0.0), 0, "over one slot's budget");
    }

    #[test]
    fn what_is_kept_is_a_prefix_of_the_priority_order() {
        // A long task in the middle stops the prefetch: a later short one is not kept past it.
        let mixed = [Some(1.0), Some(1.0), None, Some(1.0)];
        assert_eq!(keep(&mixed, 1, 1, 0.0), 2);
    }
}
