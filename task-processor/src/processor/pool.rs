//! The slots of one kind (GPU or CPU) and the leases held for them ahead of time (prefetch).
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use task_api::{Lease, LeaseRef};

use crate::gpu::Slot;

/// A prefetched lease still waiting for a slot this long means the slots are busier than the
/// runtimes promised: it is handed back for another processor. Under the server's 1 s timeout
/// grace, so the wait never eats into a task's time limit as the server counts it.
pub const PREFETCH_HOLD: Duration = Duration::from_millis(500);

/// A lease waiting here for a slot.
pub struct Held {
    pub lease: Lease,
    pub since: Instant,
}

/// What a pool holds: free slots (each with when it became free, or when the last idle wait
/// ended, to measure dispatch overhead) and prefetched leases in grant order.
#[derive(Default)]
pub struct PoolState {
    pub free: Vec<(Slot, Instant)>,
    pub held: VecDeque<Held>,
    pub prefetch: Prefetch,
    /// The last grant left the queue dry (see `RequestTaskResponse::drained`).
    pub dry: bool,
}

impl PoolState {
    /// The free slots' idle time so far was not dispatch overhead: their clocks start again.
    pub fn restart_clocks(&mut self, now: Instant) {
        for (_, at) in self.free.iter_mut() {
            *at = now;
        }
    }

    /// Expected work held, ms (leases of unmeasured functions count 0; the server grants none).
    pub fn held_ms(&self) -> f64 {
        self.held
            .iter()
            .map(|h| h.lease.expected_ms.unwrap_or(0.0))
            .sum()
    }

    /// Held leases that waited past [`PREFETCH_HOLD`], taken out.
    pub fn take_overdue(&mut self, now: Instant) -> Vec<Lease> {
        let (overdue, keep): (VecDeque<Held>, VecDeque<Held>) = self
            .held
            .drain(..)
            .partition(|h| now.saturating_duration_since(h.since) >= PREFETCH_HOLD);
        self.held = keep;
        overdue.into_iter().map(|h| h.lease).collect()
    }

    /// When the oldest held lease becomes overdue.
    pub fn next_overdue(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.since + PREFETCH_HOLD).min()
    }

    /// The first held lease that can start now (one that follows another waits for it).
    pub fn take_next(&mut self) -> Option<Lease> {
        let i = self.held.iter().position(|h| h.lease.follows.is_none())?;
        self.held.remove(i).map(|h| h.lease)
    }

    /// Held leases that can start now, each with a free slot (and when it became free), taken
    /// out, while both last.
    pub fn take_starts(&mut self) -> Vec<(Slot, Instant, Lease)> {
        let mut starts = Vec::new();
        while !self.free.is_empty() {
            let Some(lease) = self.take_next() else {
                break;
            };
            let (slot, free_since) = self.free.pop().expect("a free slot");
            starts.push((slot, free_since, lease));
        }
        starts
    }

    /// Whether a held lease follows task `id` (see `Lease::follows`).
    pub fn is_followed(&self, id: uuid::Uuid) -> bool {
        self.held.iter().any(|h| h.lease.follows == Some(id))
    }

    /// The held leases that follow task `id`, and those that follow them, taken out (the task
    /// did not succeed here, so they cannot run here).
    pub fn take_chain(&mut self, id: uuid::Uuid) -> Vec<Lease> {
        let mut out = Vec::new();
        let mut next = vec![id];
        while let Some(id) = next.pop() {
            let (follow, keep): (VecDeque<Held>, VecDeque<Held>) = self
                .held
                .drain(..)
                .partition(|h| h.lease.follows == Some(id));
            self.held = keep;
            for h in follow {
                next.push(h.lease.id);
                out.push(h.lease);
            }
        }
        out
    }

    /// Makes the held leases chained behind task `id` ready to start, with `answer`
    /// substituted; returns, taken out, what cannot run here (no answer: the task failed or
    /// was cancelled; an answer that does not fit the references, or that carries files, which
    /// the server attaches), each with what follows it.
    pub fn unblock(&mut self, id: uuid::Uuid, answer: Option<&serde_json::Value>) -> Vec<Lease> {
        let Some(answer) = answer.filter(|a| !task_api::refs::has_marked(a, "$file")) else {
            return self.take_chain(id);
        };
        let of = |dep: uuid::Uuid| (dep == id).then_some(answer);
        let mut failed = Vec::new();
        for h in self.held.iter_mut().filter(|h| h.lease.follows == Some(id)) {
            let t = &mut h.lease.task;
            match task_api::refs::substitute(&mut t.args, &mut t.kwargs, &of) {
                Ok(()) => h.lease.follows = None,
                Err(_) => failed.push(h.lease.id),
            }
        }
        let mut back = Vec::new();
        for f in failed {
            let i = self.held.iter().position(|h| h.lease.id == f);
            if let Some(h) = i.and_then(|i| self.held.remove(i)) {
                back.push(h.lease);
                back.extend(self.take_chain(f));
            }
        }
        back
    }

    /// Held leases that follow a task neither held nor running here (`running`), taken out:
    /// they cannot run here.
    pub fn take_orphans(&mut self, running: impl Fn(uuid::Uuid) -> bool) -> Vec<Lease> {
        if !self.held.iter().any(|h| h.lease.follows.is_some()) {
            return Vec::new();
        }
        let held: std::collections::HashSet<uuid::Uuid> =
            self.held.iter().map(|h| h.lease.id).collect();
        let orphan = |l: &Lease| l.follows.is_some_and(|f| !held.contains(&f) && !running(f));
        let (orphans, keep): (VecDeque<Held>, VecDeque<Held>) =
            self.held.drain(..).partition(|h| orphan(&h.lease));
        self.held = keep;
        let mut out: Vec<Lease> = Vec::new();
        for h in orphans {
            let id = h.lease.id;
            out.push(h.lease);
            out.extend(self.take_chain(id));
        }
        out
    }

    /// Removes held leases the server says are no longer ours (cancelled, lost).
    pub fn forget(&mut self, ids: &[uuid::Uuid]) -> usize {
        let before = self.held.len();
        self.held.retain(|h| !ids.contains(&h.lease.id));
        before - self.held.len()
    }
}

/// One pool of slots.
pub struct Pool {
    pub gpu: bool,
    pub size: usize,
    pub state: Mutex<PoolState>,
}

impl Pool {
    pub fn new(gpu: bool, slots: Vec<Slot>, cap: u32) -> Pool {
        let now = Instant::now();
        Pool {
            gpu,
            size: slots.len(),
            state: Mutex::new(PoolState {
                free: slots.into_iter().map(|s| (s, now)).collect(),
                held: VecDeque::new(),
                prefetch: Prefetch::new(cap),
                dry: false,
            }),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().expect("pool lock")
    }

    /// The idle time so far was not overhead (nothing was ready, or the server was unreachable).
    pub fn restart_clocks(&self) {
        self.lock().restart_clocks(Instant::now());
    }

    /// Whether every slot is free.
    pub fn is_idle(&self) -> bool {
        self.lock().free.len() == self.size
    }

    /// Every held lease, taken out (shutdown hands them back).
    pub fn take_all_held(&self) -> Vec<Lease> {
        self.lock().held.drain(..).map(|h| h.lease).collect()
    }

    /// The held leases, to heartbeat.
    pub fn held_refs(&self) -> Vec<LeaseRef> {
        self.lock()
            .held
            .iter()
            .map(|h| h.lease.lease_ref())
            .collect()
    }
}

/// How many leases to ask for ahead of the free slots, learned from what the server grants:
/// the ask doubles while the server grants all of it and settles one above what it grants
/// when the runtimes limit it, so a claim hands back at most one lease. `target` is what the
/// last grant left held: a refill is asked for once half of it has started.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Prefetch {
    pub cap: u32,
    pub ask: u32,
    pub target: usize,
    /// A held lease went overdue: no refill until a task finishes here.
    pub stalled: bool,
}

impl Prefetch {
    pub fn new(cap: u32) -> Prefetch {
        Prefetch {
            cap,
            ask: cap.min(1),
            target: 0,
            stalled: false,
        }
    }

    /// After a grant that asked for `asked` extra leases and got `got`, leaving `held` held;
    /// `drained`: the queue ran dry (a short grant then says nothing about the runtimes, so
    /// the ask stays: the next burst of work, such as the tasks a finished task of a graph
    /// unblocks, comes in one grant instead of a ramp of doubling requests).
    pub fn granted(&mut self, asked: u32, got: u32, held: usize, drained: bool) {
        self.ask = if got >= asked {
            asked.saturating_mul(2).max(1)
        } else if drained {
            self.ask.max(asked)
        } else {
            got + 1
        }
        .min(self.cap);
        self.target = held;
    }

    /// Whether `held` leases are few enough to ask for more while every slot is busy.
    pub fn wants_refill(&self, held: usize) -> bool {
        !self.stalled && self.ask > 0 && self.target > 0 && held * 2 <= self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(follows: Option<uuid::Uuid>, args: Vec<serde_json::Value>) -> Lease {
        Lease {
            id: uuid::Uuid::now_v7(),
            task: task_api::TaskPayload {
                package: None,
                version: None,
                function: "f".into(),
                args,
                kwargs: Default::default(),
                timeout_s: None,
                attempt: 1,
                max_attempts: 3,
                resources: Default::default(),
            },
            lease_epoch: 1,
            lease_deadline: 0,
            expected_ms: None,
            follows,
        }
    }

    fn hold(st: &mut PoolState, l: &Lease) {
        st.held.push_back(Held {
            lease: l.clone(),
            since: Instant::now(),
        });
    }

    #[test]
    fn chained_leases_start_with_the_answer_or_go_back_with_their_chain() {
        use serde_json::json;
        let head = uuid::Uuid::now_v7();
        let r = |id: uuid::Uuid, path: &str| json!({"$ref": id.to_string(), "path": path});
        let mut st = PoolState::default();
        let plain = lease(None, vec![]);
        let fits = lease(Some(head), vec![r(head, "/n")]);
        let misfit = lease(Some(head), vec![r(head, "/missing")]);
        let behind_misfit = lease(Some(misfit.id), vec![r(misfit.id, "")]);
        for l in [&fits, &misfit, &behind_misfit, &plain] {
            hold(&mut st, l);
        }
        assert!(st.is_followed(head));
        // Only unblocked leases start: the plain one first, in hold order.
        assert_eq!(st.take_next().map(|l| l.id), Some(plain.id));
        assert_eq!(st.take_next().map(|l| l.id), None);
        let back = st.unblock(head, Some(&json!({"n": 7})));
        let ids: Vec<_> = back.iter().map(|l| l.id).collect();
        assert_eq!(
            ids,
            vec![misfit.id, behind_misfit.id],
            "a misfit goes back with its chain"
        );
        let next = st.take_next().expect("the fitting one starts");
        assert_eq!(
            (next.id, next.task.args.clone(), next.follows),
            (fits.id, vec![json!(7)], None)
        );
        assert!(st.held.is_empty());

        // A head that failed: its whole chain goes back; an answer with files too.
        let second = lease(Some(fits.id), vec![]);
        let third = lease(Some(second.id), vec![]);
        hold(&mut st, &second);
        hold(&mut st, &third);
        let with_file = json!([{"$file": "sha256:00"}]);
        assert_eq!(st.unblock(fits.id, Some(&with_file)).len(), 2);
        hold(&mut st, &second);
        hold(&mut st, &third);
        assert_eq!(st.unblock(fits.id, None).len(), 2);

        // Orphans: a follower of a task neither held nor running here goes back, with its chain.
        hold(&mut st, &second);
        hold(&mut st, &third);
        assert!(
            st.take_orphans(|id| id == fits.id).is_empty(),
            "its task runs here"
        );
        assert_eq!(st.take_orphans(|_| false).len(), 2);
    }

    #[test]
    fn the_ask_doubles_while_granted_and_settles_just_above_the_grant() {
        let mut p = Prefetch::new(512);
        assert_eq!(p.ask, 1);
        p.granted(1, 1, 1, false);
        assert_eq!(p.ask, 2);
        p.granted(2, 2, 2, false);
        p.granted(4, 4, 4, false);
        assert_eq!(p.ask, 8);
        p.granted(8, 5, 5, false);
        assert_eq!(p.ask, 6, "limited by the runtimes: one above the grant");
        for _ in 0..20 {
            let ask = p.ask;
            p.granted(ask, ask, ask as usize, false);
        }
        assert_eq!(p.ask, 512, "never above the cap");
        assert_eq!(Prefetch::new(0).ask, 0, "prefetch off");
        let mut dry = Prefetch::new(512);
        dry.granted(1, 1, 1, false);
        dry.granted(2, 2, 2, false);
        dry.granted(4, 0, 0, true);
        assert_eq!(dry.ask, 4, "a queue that ran dry does not shrink the ask");
    }

    #[test]
    fn refills_come_at_half_and_never_when_stalled_or_useless() {
        let mut p = Prefetch::new(512);
        p.granted(4, 4, 10, false);
        assert!(!p.wants_refill(6));
        assert!(p.wants_refill(5));
        p.stalled = true;
        assert!(!p.wants_refill(0));
        let mut none = Prefetch::new(512);
        none.granted(1, 0, 0, false);
        assert!(
            !none.wants_refill(0),
            "nothing prefetchable: wait for a free slot"
        );
    }
}
