//! Per-function runtime statistics and the queue estimate built from them.
//!
//! Statistics are kept per `(package, version, function)`: count, failures, an exponentially
//! weighted mean and variance of the runtime, and a log-bucketed histogram (≈2 % relative error)
//! for p50/p95. Everything here is pure arithmetic; the store persists it.
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Identity of a function version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FnKey {
    /// Package ('' when the task named none).
    pub package: String,
    /// Exact version ('' when the task named none).
    pub version: String,
    /// Function name.
    pub function: String,
}

/// Log-bucketed histogram: bucket `i` holds runtimes in `[MIN·Γ^(i-1), MIN·Γ^i)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sketch {
    buckets: BTreeMap<u16, u64>,
}

const SKETCH_MIN_MS: f64 = 0.001;
const SKETCH_GAMMA: f64 = 1.04;
const SKETCH_MAX_BUCKET: u16 = 1500; // 0.001 ms · 1.04^1500 ≫ a year

impl Sketch {
    fn index(ms: f64) -> u16 {
        if ms.is_nan() || ms <= SKETCH_MIN_MS {
            return 0;
        }
        let i = ((ms / SKETCH_MIN_MS).ln() / SKETCH_GAMMA.ln()).floor() as i64 + 1;
        i.clamp(1, SKETCH_MAX_BUCKET as i64) as u16
    }

    fn value(index: u16) -> f64 {
        if index == 0 {
            SKETCH_MIN_MS
        } else {
            SKETCH_MIN_MS * SKETCH_GAMMA.powf(index as f64 - 0.5)
        }
    }

    /// Adds one observation.
    pub fn add(&mut self, ms: f64) {
        *self.buckets.entry(Self::index(ms)).or_default() += 1;
    }

    /// Adds every observation of `other` (sketches from several replicas merge exactly).
    pub fn merge(&mut self, other: &Sketch) {
        for (k, v) in &other.buckets {
            *self.buckets.entry(*k).or_default() += v;
        }
    }

    /// Number of observations.
    pub fn total(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The `q` quantile (0..=1), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (k, v) in &self.buckets {
            seen += v;
            if seen >= rank {
                return Some(Self::value(*k));
            }
        }
        self.buckets.keys().last().map(|k| Self::value(*k))
    }
}

/// Runtime statistics of one function version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionStats {
    /// Which function.
    #[serde(flatten)]
    pub key: FnKey,
    /// Attempts answered (successes and failures).
    pub count: u64,
    /// Attempts answered with an error.
    pub failures: u64,
    /// EWMA of runtime, ms.
    pub mean_ms: f64,
    /// EW variance of runtime, ms².
    pub var_ms: f64,
    /// Histogram for quantiles.
    pub sketch: Sketch,
    /// Last answer, ms since the Unix epoch.
    pub last_seen: i64,
}

/// Weight of the newest observation once a function has many: the mean follows drifts in
/// runtime over roughly the last 50 answers, and is the exact mean before that.
const EWMA_MIN_ALPHA: f64 = 0.02;

impl FunctionStats {
    /// Empty statistics for `key`.
    pub fn new(key: FnKey) -> Self {
        FunctionStats {
            key,
            count: 0,
            failures: 0,
            mean_ms: 0.0,
            var_ms: 0.0,
            sketch: Sketch::default(),
            last_seen: 0,
        }
    }

    /// Records one answered attempt.
    pub fn record(&mut self, runtime_ms: f64, ok: bool, now_ms: i64) {
        let x = if runtime_ms.is_finite() && runtime_ms >= 0.0 {
            runtime_ms
        } else {
            0.0
        };
        self.count += 1;
        if !ok {
            self.failures += 1;
        }
        let alpha = (1.0 / self.count as f64).max(EWMA_MIN_ALPHA);
        let diff = x - self.mean_ms;
        let incr = alpha * diff;
        self.mean_ms += incr;
        self.var_ms = (1.0 - alpha) * (self.var_ms + diff * incr);
        self.sketch.add(x);
        self.last_seen = self.last_seen.max(now_ms);
    }

    /// Standard deviation, ms.
    pub fn stddev_ms(&self) -> f64 {
        self.var_ms.max(0.0).sqrt()
    }
}

/// What is queued and running, per function, as the store reports it.
#[derive(Debug, Clone, Default)]
pub struct QueueLoad {
    /// Queued tasks per function.
    pub queued: Vec<(FnKey, u64)>,
    /// Elapsed ms of every running (leased) task.
    pub running: Vec<(FnKey, f64)>,
}

pub use task_api::FunctionEstimate;

/// The queue estimate.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Core-seconds to drain the queue on one average core (the seed's meaning).
    pub time: f64,
    /// Tasks queued.
    pub queued: u64,
    /// Tasks running.
    pub running: u64,
    /// Per-function breakdown, largest first.
    pub per_function: Vec<FunctionEstimate>,
    /// 0..1: share of the estimate backed by this function's own statistics, weighted by
    /// how many samples back each mean.
    pub confidence: f64,
}

/// Mean runtime assumed for a function never seen, when nothing at all has been seen.
pub const DEFAULT_PRIOR_MS: f64 = 1000.0;

/// Σ over queued tasks of their function's mean + the remaining time of running tasks.
pub fn estimate(load: &QueueLoad, stats: &HashMap<FnKey, FunctionStats>) -> Estimate {
    let (sum, n) = stats.values().fold((0.0, 0u64), |(s, n), st| {
        (s + st.mean_ms * st.count as f64, n + st.count)
    });
    let prior = if n > 0 {
        sum / n as f64
    } else {
        DEFAULT_PRIOR_MS
    };
    let mean_of = |k: &FnKey| match stats.get(k) {
        Some(st) if st.count > 0 => (st.mean_ms, true, (st.count as f64 / 30.0).min(1.0)),
        _ => (prior, false, 0.0),
    };

    let mut per: BTreeMap<FnKey, FunctionEstimate> = BTreeMap::new();
    let mut weighted_conf = 0.0;
    let mut total_ms = 0.0;
    let entry = |k: &FnKey, per: &mut BTreeMap<FnKey, FunctionEstimate>| {
        let (mean, known, _) = mean_of(k);
        per.entry(k.clone())
            .or_insert_with(|| FunctionEstimate {
                package: non_empty(&k.package),
                version: non_empty(&k.version),
                function: k.function.clone(),
                queued: 0,
                running: 0,
                mean_ms: mean,
                known,
                time: 0.0,
            })
            .mean_ms
    };
    for (k, count) in &load.queued {
        let mean = entry(k, &mut per);
        let ms = mean * *count as f64;
        let e = per.get_mut(k).expect("inserted above");
        e.queued += count;
        e.time += ms / 1000.0;
        total_ms += ms;
        weighted_conf += ms * mean_of(k).2;
    }
    for (k, elapsed) in &load.running {
        let mean = entry(k, &mut per);
        let ms = (mean - elapsed).max(0.0);
        let e = per.get_mut(k).expect("inserted above");
        e.running += 1;
        e.time += ms / 1000.0;
        total_ms += ms;
        weighted_conf += ms * mean_of(k).2;
    }
    let mut per_function: Vec<FunctionEstimate> = per.into_values().collect();
    per_function.sort_by(|a, b| b.time.total_cmp(&a.time));
    Estimate {
        time: total_ms / 1000.0,
        queued: per_function.iter().map(|f| f.queued).sum(),
        running: per_function.iter().map(|f| f.running).sum(),
        per_function,
        confidence: if total_ms > 0.0 {
            weighted_conf / total_ms
        } else {
            1.0
        },
    }
}

/// `None` for the empty string (the store's "not given").
pub fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(f: &str) -> FnKey {
        FnKey {
            package: "p".into(),
            version: "1.0.0".into(),
            function: f.into(),
        }
    }

    #[test]
    fn quantiles_are_within_sketch_precision() {
        let mut s = Sketch::default();
        for i in 1..=1000 {
            s.add(i as f64);
        }
        let p50 = s.quantile(0.5).unwrap();
        let p95 = s.quantile(0.95).unwrap();
        assert!((p50 - 500.0).abs() / 500.0 < 0.03, "p50 {p50}");
        assert!((p95 - 950.0).abs() / 950.0 < 0.03, "p95 {p95}");
    }

    #[test]
    fn mean_is_exact_early_and_tracks_drift_later() {
        let mut st = FunctionStats::new(key("f"));
        for x in [10.0, 20.0, 30.0] {
            st.record(x, true, 1);
        }
        assert!((st.mean_ms - 20.0).abs() < 1e-9);
        for _ in 0..500 {
            st.record(100.0, false, 2);
        }
        assert!((st.mean_ms - 100.0).abs() < 1.0, "{}", st.mean_ms);
        assert_eq!(st.count, 503);
        assert_eq!(st.failures, 500);
    }

    #[test]
    fn estimate_sums_known_means_and_uses_prior_for_unknown() {
        let mut stats = HashMap::new();
        let mut st = FunctionStats::new(key("f"));
        for _ in 0..100 {
            st.record(20.0, true, 1);
        }
        stats.insert(key("f"), st);
        let load = QueueLoad {
            queued: vec![(key("f"), 100), (key("g"), 10)],
            running: vec![(key("f"), 5.0)],
        };
        let e = estimate(&load, &stats);
        // 100 × 20 ms + 10 × 20 ms (prior = global mean) + 15 ms remaining.
        assert!((e.time - 2.215).abs() < 1e-9, "{}", e.time);
        assert_eq!(e.queued, 110);
        assert_eq!(e.running, 1);
        assert!(e.confidence > 0.85 && e.confidence < 0.95);
    }
}
