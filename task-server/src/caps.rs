//! Concurrency caps and rate limits, decided here once (the store applies the decisions; see
//! migration 0013). A task counts against up to two caps: its function's (the manifest's
//! `max_concurrent` / `rate_per_s`) and its submit's `concurrency_key` (per owner). A capped
//! task is queued *gated*, out of the claim's sight; a gate pass lets through, in claim order,
//! the tasks whose every cap has room, so the claim itself stays as cheap as for uncapped
//! tasks.
use std::collections::HashMap;

use serde::Serialize;

/// A rate cap lets through at most this many ms of its rate (at least one task) ahead of the
/// leases: its next task only once those were leased, each with the next start slot
/// (`next_at`, 1/rate after the one before and after the last lease). So starts never come
/// closer than 1/rate apart (half that after a lease that came late because
/// processors were busy) (at high rates, a burst of at most
/// this window's worth).
pub const RATE_BURST_MS: f64 = 50.0;
/// Tasks one gate pass lets through per cap, at most.
pub const PASS_LIMIT: u64 = 1000;

/// The key of a function's cap.
pub fn function_key(package: &str, function: &str) -> String {
    format!("fn:{package}/{function}")
}

/// The key of a concurrency key: per owner, so nobody's key can hold up another's tasks.
pub fn owner_key(owner: &str, key: &str) -> String {
    format!("key:{owner}/{key}")
}

/// A cap's limits, recorded with each submit that uses it (the latest submit's win).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapLimit {
    /// `fn:…` or `key:…`.
    pub key: String,
    /// Tasks ungated and unfinished at once, at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// Starts per second, at most (evenly spaced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
}

/// A cap as a gate pass sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CapState {
    /// Limit on tasks let through and unfinished.
    pub max_running: Option<u64>,
    /// Starts per second.
    pub rate_per_s: Option<f64>,
    /// The next free start slot, ms (a rate's).
    pub next_at: f64,
    /// `next_at` as the store holds it (a pass writes back only the slots it moved).
    pub stored_next_at: f64,
    /// Tasks let through and not finished.
    pub running: u64,
    /// Of those, the ones not leased yet.
    pub ready: u64,
}

impl CapState {
    /// How many more tasks may pass now.
    pub fn room(&self) -> u64 {
        let by_count = self
            .max_running
            .map_or(u64::MAX, |m| m.saturating_sub(self.running));
        let by_rate = self.rate_per_s.map_or(u64::MAX, |r| {
            let burst = (r * RATE_BURST_MS / 1000.0).ceil().max(1.0) as u64;
            burst.saturating_sub(self.ready)
        });
        by_count.min(by_rate)
    }

    /// A task of this cap was just leased (at `now`): the next starts half a slot later at the
    /// earliest. (A lease a little after its slot keeps the next slot where it was, so the
    /// rate is met; one leased long after its slot, by processors that were busy, does not
    /// let the slots it missed through at once.)
    pub fn started(&mut self, now: i64) {
        if let Some(r) = self.rate_per_s {
            self.next_at = self.next_at.max(now as f64 + 500.0 / r);
        }
    }

    /// Takes a place for one task; the earliest it may start (its rate slot, else `now`).
    fn take(&mut self, now: i64) -> i64 {
        self.running += 1;
        self.ready += 1;
        match self.rate_per_s {
            Some(r) => {
                let at = self.next_at.max(now as f64);
                self.next_at = at + 1000.0 / r;
                at.ceil() as i64
            }
            None => now,
        }
    }
}

/// A gated task at the head of a cap's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Gated {
    /// Queue order (and row).
    pub seq: i64,
    /// Claim order: priority (higher first), then fair-share turn.
    pub priority: i64,
    /// Fair-share turn.
    pub fair_tag: i64,
    /// The caps it counts against.
    pub caps: Vec<String>,
}

/// What a gate pass does.
#[derive(Debug, Default, PartialEq)]
pub struct Admitted {
    /// (seq, earliest start) of the tasks let through.
    pub through: Vec<(i64, i64)>,
}

/// What a gate pass did, for the wake-ups.
#[derive(Debug, Default, PartialEq)]
pub struct Opened {
    /// Tasks let through.
    pub through: usize,
    /// Later times some of them become due at (a rate's slots): wake the processors then.
    pub due: Vec<i64>,
}

impl Opened {
    /// The summary of `out` at `now`.
    pub fn of(out: &Admitted, now: i64) -> Opened {
        let mut due: Vec<i64> = out
            .through
            .iter()
            .map(|t| t.1)
            .filter(|&at| at > now)
            .collect();
        due.sort_unstable();
        due.dedup();
        Opened {
            through: out.through.len(),
            due,
        }
    }
}

/// Lets through, in claim order, the tasks of `heads` whose every cap has room (a cap without
/// a state is closed: its limits are unknown), taking their places in `states`.
pub fn admit(
    states: &mut HashMap<String, CapState>,
    mut heads: Vec<Gated>,
    now: i64,
    out: &mut Admitted,
) {
    heads.sort_by_key(|g| (-g.priority, g.fair_tag, g.seq));
    heads.dedup_by_key(|g| g.seq);
    // Let through by an earlier call of the same pass.
    let mut passed: std::collections::HashSet<i64> = out.through.iter().map(|t| t.0).collect();
    for g in heads {
        let open = g
            .caps
            .iter()
            .all(|k| states.get(k).is_some_and(|s| s.room() > 0));
        if !open || !passed.insert(g.seq) {
            continue;
        }
        let at = g
            .caps
            .iter()
            .filter_map(|k| states.get_mut(k).map(|s| s.take(now)))
            .max()
            .unwrap_or(now);
        out.through.push((g.seq, at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(max: Option<u64>, rate: Option<f64>, running: u64) -> CapState {
        CapState {
            max_running: max,
            rate_per_s: rate,
            next_at: 0.0,
            stored_next_at: 0.0,
            running,
            ready: 0,
        }
    }

    fn gated(seq: i64, caps: &[&str]) -> Gated {
        Gated {
            seq,
            priority: 0,
            fair_tag: seq,
            caps: caps.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn a_cap_lets_through_up_to_its_room_in_claim_order() {
        let mut states = HashMap::from([("f".to_string(), cap(Some(2), None, 1))]);
        let mut out = Admitted::default();
        admit(
            &mut states,
            vec![gated(3, &["f"]), gated(1, &["f"])],
            5,
            &mut out,
        );
        assert_eq!(out.through, [(1, 5)]);
        assert_eq!(states["f"].room(), 0);
    }

    #[test]
    fn a_task_needs_room_in_every_cap_and_a_closed_one_waits() {
        let mut states = HashMap::from([
            ("f".to_string(), cap(Some(10), None, 0)),
            ("k".to_string(), cap(Some(1), None, 1)),
        ]);
        let mut out = Admitted::default();
        let heads = vec![
            gated(1, &["f", "k"]),
            gated(2, &["f"]),
            gated(3, &["f", "x"]),
        ];
        admit(&mut states, heads, 0, &mut out);
        assert_eq!(out.through, [(2, 0)], "k is full and x unknown");
    }

    #[test]
    fn a_rate_lets_one_through_at_a_time_spaced_after_the_last_lease() {
        let mut states = HashMap::from([("r".to_string(), cap(None, Some(20.0), 0))]);
        let mut out = Admitted::default();
        let heads: Vec<Gated> = (1..=30).map(|s| gated(s, &["r"])).collect();
        admit(&mut states, heads.clone(), 1000, &mut out);
        assert_eq!(out.through, [(1, 1000)], "one ahead of the leases at 20/s");
        admit(&mut states, heads[1..].to_vec(), 1000, &mut out);
        assert_eq!(out.through.len(), 1, "nothing more until it is leased");
        // Leased late (processors were busy): the next slot is half a slot after that lease.
        let r = states.get_mut("r").unwrap();
        r.ready = 0;
        r.started(5000);
        admit(&mut states, heads[1..].to_vec(), 5000, &mut out);
        assert_eq!(out.through[1], (2, 5025));
        // A high rate lets a short burst through: 50 ms of 1000/s.
        let mut fast = HashMap::from([("r".to_string(), cap(None, Some(1000.0), 0))]);
        let mut out = Admitted::default();
        admit(&mut fast, heads, 0, &mut out);
        assert_eq!(out.through.len(), 30, "all 30 fit in 50 ms of 1000/s");
        assert_eq!(out.through[..2], [(1, 0), (2, 1)]);
    }
}
