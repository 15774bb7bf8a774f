//! The broadcasts this processor received (`POST /admin/broadcast` on the server), kept as the
//! latest per target (package and version spec), and which of them a loaded instance of
//! `name@version` is owed: every one after the last it got, or, for an instance that just
//! started, the latest that matches it.
use std::collections::{HashSet, VecDeque};

use task_api::Broadcast;
use uuid::Uuid;

/// Ids remembered to recognise repeats (the server resends the last minute's broadcasts).
const REMEMBERED: usize = 10_000;

/// Received broadcasts.
#[derive(Default)]
pub struct Book {
    /// The latest per target, by `seq`.
    latest: Vec<Broadcast>,
    /// Ids seen, oldest first (bounded).
    seen: VecDeque<Uuid>,
    seen_set: HashSet<Uuid>,
    /// The highest `seq` received.
    max_seq: i64,
}

impl Book {
    /// Records `b`; `false` for a repeat.
    pub fn add(&mut self, b: &Broadcast) -> bool {
        if !self.seen_set.insert(b.id) {
            return false;
        }
        self.seen.push_back(b.id);
        if self.seen.len() > REMEMBERED {
            if let Some(old) = self.seen.pop_front() {
                self.seen_set.remove(&old);
            }
        }
        self.max_seq = self.max_seq.max(b.seq);
        let same = |x: &Broadcast| x.package == b.package && x.version == b.version;
        if self.latest.iter().any(|x| same(x) && x.seq > b.seq) {
            return true;
        }
        self.latest.retain(|x| !same(x));
        self.latest.push(b.clone());
        self.latest.sort_by_key(|x| x.seq);
        true
    }

    /// The highest `seq` received (what the next heartbeat asks after).
    pub fn max_seq(&self) -> i64 {
        self.max_seq
    }

    /// What an instance of `name@version` that got everything up to `seen` is owed, oldest
    /// first; `None` for `seen`: an instance that just started, owed only the latest.
    pub fn due(&self, name: &str, version: &str, seen: Option<i64>) -> Vec<Broadcast> {
        let mut out: Vec<Broadcast> = self
            .latest
            .iter()
            .filter(|b| seen.is_none_or(|s| b.seq > s) && matches(b, name, version))
            .cloned()
            .collect();
        if seen.is_none() && out.len() > 1 {
            out.drain(..out.len() - 1);
        }
        out
    }
}

/// Whether `b` targets `name@version`: every version, the exact one, or a requirement it meets.
pub fn matches(b: &Broadcast, name: &str, version: &str) -> bool {
    if b.package != name {
        return false;
    }
    let Some(spec) = &b.version else {
        return true;
    };
    let Ok(v) = semver::Version::parse(version) else {
        return false;
    };
    match semver::Version::parse(spec) {
        Ok(exact) => exact == v,
        Err(_) => semver::VersionReq::parse(spec).is_ok_and(|r| r.matches(&v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(seq: i64, package: &str, version: Option<&str>) -> Broadcast {
        Broadcast {
            id: Uuid::now_v7(),
            seq,
            package: package.into(),
            version: version.map(Into::into),
            payload: json!(seq),
            created_at: 0,
        }
    }

    #[test]
    fn an_instance_gets_what_it_missed_and_a_new_one_the_latest() {
        let mut book = Book::default();
        let (one, two, other) = (b(1, "p", None), b(2, "p", Some("^1")), b(3, "q", None));
        for x in [&one, &two, &other] {
            assert!(book.add(x));
        }
        assert!(!book.add(&two), "a repeat is recognised");
        assert_eq!(book.max_seq(), 3);
        let seqs = |v: Vec<Broadcast>| v.iter().map(|x| x.seq).collect::<Vec<_>>();
        assert_eq!(seqs(book.due("p", "1.2.0", Some(0))), [1, 2]);
        assert_eq!(seqs(book.due("p", "1.2.0", Some(1))), [2]);
        assert_eq!(seqs(book.due("p", "2.0.0", Some(0))), [1]);
        assert_eq!(seqs(book.due("p", "1.2.0", None)), [2]);
        // A newer broadcast for the same target replaces the older one.
        assert!(book.add(&b(4, "p", None)));
        assert_eq!(seqs(book.due("p", "2.0.0", Some(0))), [4]);
    }

    #[test]
    fn versions_match_exactly_or_by_requirement() {
        assert!(matches(&b(1, "p", Some("1.2.0")), "p", "1.2.0"));
        assert!(!matches(&b(1, "p", Some("1.2.0")), "p", "1.2.1"));
        assert!(matches(&b(1, "p", Some(">=1, <2")), "p", "1.9.0"));
        assert!(!matches(&b(1, "p", Some("garbage")), "p", "1.0.0"));
        assert!(!matches(&b(1, "q", None), "p", "1.0.0"));
    }
}
