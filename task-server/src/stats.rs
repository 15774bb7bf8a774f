//! Per-function runtime statistics and the queue estimate built from them.
//!
//! Statistics are kept per `(package, version, function)`: count, failures, an exponentially
//! weighted mean and variance of the runtime, and a log-bucketed histogram (≈2 % relative error)
//! for p50/p95. Everything here is pure arithmetic; the store persists it.
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::cost::Cost;
use crate::fit::{CostModel, Predictor, SlotSum};

/// Identity of a function version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FnKey {
    /// Package ('' when the task named none).
    pub package: String,
    /// Exact version ('' when the task named none).
    pub version: String,
    /// Function name.
    pub function: String,
}

impl FnKey {
    /// The key of a task as a lease carries it.
    pub fn of(t: &task_api::TaskPayload) -> FnKey {
        FnKey {
            package: t.package.clone().unwrap_or_default(),
            version: t.version.clone().unwrap_or_default(),
            function: t.function.clone(),
        }
    }
}

/// One answered attempt: its runtime, whether it succeeded, when, and the task's cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Runtime, ms.
    pub ms: f64,
    /// Succeeded.
    pub ok: bool,
    /// Answered at, ms since the Unix epoch.
    pub at: i64,
    /// The task's cost measures.
    pub cost: Cost,
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

    /// The observations in at most `max_bins` log-spaced bins from the smallest to the largest
    /// (each merges whole sketch buckets: ~1.5× wide, wider when the range needs more bins).
    pub fn histogram(&self, max_bins: usize) -> Vec<task_api::HistogramBin> {
        let (Some(first), Some(last)) = (self.buckets.keys().next(), self.buckets.keys().last())
        else {
            return Vec::new();
        };
        let span = (*last - *first) as usize + 1;
        let width = span.div_ceil(max_bins.max(1)).max(10) as u16;
        let bound = |i: u16| {
            if i == 0 {
                0.0
            } else {
                SKETCH_MIN_MS * SKETCH_GAMMA.powi(i as i32 - 1)
            }
        };
        let mut bins = Vec::new();
        let mut lo = *first;
        while lo <= *last {
            let hi = lo.saturating_add(width);
            let count = self.buckets.range(lo..hi).map(|(_, n)| n).sum();
            bins.push(task_api::HistogramBin {
                lo_ms: bound(lo),
                hi_ms: bound(hi),
                count,
            });
            lo = hi;
        }
        bins
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
    /// Runtime against cost (successful attempts only).
    pub model: CostModel,
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
            model: CostModel::default(),
        }
    }

    /// Records one answered attempt.
    pub fn record(&mut self, s: &Sample) {
        let (runtime_ms, ok, now_ms) = (s.ms, s.ok, s.at);
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
        if ok {
            self.model.add(&s.cost, x);
        }
    }

    /// How a task's runtime is predicted.
    pub fn predictor(&self) -> Predictor {
        self.model
            .predictor(self.mean_ms, self.var_ms, self.count as f64)
    }

    /// Standard deviation, ms.
    pub fn stddev_ms(&self) -> f64 {
        self.var_ms.max(0.0).sqrt()
    }
}

/// Queued tasks of one function and capability class, with the sums of their cost measures.
#[derive(Debug, Clone, Default)]
pub struct Queued {
    /// Which function.
    pub key: FnKey,
    /// Tasks that need a GPU.
    pub gpu: bool,
    /// How many.
    pub n: u64,
    /// Per cost slot.
    pub slots: Vec<SlotSum>,
}

/// A running task.
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// Which function.
    pub key: FnKey,
    /// Needs a GPU.
    pub gpu: bool,
    /// How long it has run, ms.
    pub elapsed_ms: f64,
    /// Its cost measures.
    pub cost: Cost,
}

/// What is queued and running, as the store reports it.
#[derive(Debug, Clone, Default)]
pub struct QueueLoad {
    /// Queued tasks per function and class.
    pub queued: Vec<Queued>,
    /// Every running (leased) task.
    pub running: Vec<Running>,
}

pub use task_api::FunctionEstimate;

/// Work of one capability class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ClassWork {
    /// Tasks queued.
    pub queued: u64,
    /// Tasks running.
    pub running: u64,
    /// Core-seconds.
    pub time: f64,
}

/// The queue estimate.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Core-seconds to drain the queue on one average core (the seed's meaning).
    pub time: f64,
    /// Variance of `time`, s²: each task's runtime around its prediction, and the
    /// uncertainty of the fitted model itself (one error shared by all tasks of a function).
    pub var_s2: f64,
    /// The longest single task ahead, s: the last one can end the queue this much later.
    pub longest_s: f64,
    /// Tasks queued.
    pub queued: u64,
    /// Tasks running.
    pub running: u64,
    /// Tasks and work that need a GPU.
    pub gpu: ClassWork,
    /// Per-function breakdown, largest first.
    pub per_function: Vec<FunctionEstimate>,
    /// 0..1: per function, samples (full at 30) × model quality, weighted by work.
    pub confidence: f64,
}

/// Mean runtime assumed for a function never seen, when nothing at all has been seen.
pub const DEFAULT_PRIOR_MS: f64 = 1000.0;

/// The predictor of every function in `stats`, and the one for functions never seen (the
/// mean of every runtime seen, with its own spread as the uncertainty).
#[derive(Debug)]
pub struct Predictors {
    by_key: HashMap<FnKey, Predictor>,
    prior: Predictor,
}

impl Predictors {
    /// From the statistics rows.
    pub fn new(stats: &[FunctionStats]) -> Predictors {
        let (sum, n) = stats.iter().fold((0.0, 0u64), |(s, n), st| {
            (s + st.mean_ms * st.count as f64, n + st.count)
        });
        let prior_ms = if n > 0 {
            sum / n as f64
        } else {
            DEFAULT_PRIOR_MS
        };
        Predictors {
            by_key: stats
                .iter()
                .filter(|st| st.count > 0)
                .map(|st| (st.key.clone(), st.predictor()))
                .collect(),
            prior: Predictor::mean(prior_ms, prior_ms * prior_ms, 1.0, 0.0),
        }
    }

    /// Expected runtime of a task of `key` with `cost`, ms, when the function was measured.
    pub fn expected(&self, key: &FnKey, cost: &Cost) -> Option<f64> {
        self.by_key.get(key).map(|p| p.predict(cost))
    }

    /// The predictor of `key`, and whether it is the function's own.
    pub fn get(&self, key: &FnKey) -> (&Predictor, bool) {
        match self.by_key.get(key) {
            Some(p) => (p, true),
            None => (&self.prior, false),
        }
    }
}

/// The estimate while it is summed: per function, the GPU class, the longest task.
struct Sums<'a> {
    predictors: &'a Predictors,
    per: BTreeMap<FnKey, FunctionEstimate>,
    gpu: ClassWork,
    longest_ms: f64,
}

impl Sums<'_> {
    /// Adds `queued` and `running` tasks of `key` (needing a GPU or not) with `ms` of work
    /// left, the longest of them `longest_ms`.
    fn add(
        &mut self,
        key: &FnKey,
        gpu: bool,
        (queued, running): (u64, u64),
        ms: f64,
        longest_ms: f64,
    ) {
        let e = self
            .per
            .entry(key.clone())
            .or_insert_with(|| function_estimate(key, self.predictors));
        e.queued += queued;
        e.running += running;
        e.time += ms / 1000.0;
        if gpu {
            self.gpu.queued += queued;
            self.gpu.running += running;
            self.gpu.time += ms / 1000.0;
        }
        self.longest_ms = self.longest_ms.max(longest_ms);
    }
}

/// Σ over queued tasks of their predicted runtimes + the remaining time of running tasks.
pub fn estimate(load: &QueueLoad, predictors: &Predictors) -> Estimate {
    let mut sums = Sums {
        predictors,
        per: BTreeMap::new(),
        gpu: ClassWork::default(),
        longest_ms: 0.0,
    };
    for q in &load.queued {
        let (p, _) = predictors.get(&q.key);
        let ms = p.predict_sum(q.n, &q.slots);
        sums.add(&q.key, q.gpu, (q.n, 0), ms, p.predict_max(&q.slots));
    }
    for r in &load.running {
        let (p, _) = predictors.get(&r.key);
        let ms = (p.predict(&r.cost) - r.elapsed_ms).max(0.0);
        sums.add(&r.key, r.gpu, (0, 1), ms, ms);
    }
    summed(sums)
}

/// A function's empty share of an estimate, with the model it is predicted by.
fn function_estimate(k: &FnKey, predictors: &Predictors) -> FunctionEstimate {
    let (p, known) = predictors.get(k);
    FunctionEstimate {
        package: non_empty(&k.package),
        version: non_empty(&k.version),
        function: k.function.clone(),
        queued: 0,
        running: 0,
        mean_ms: p.mean_ms,
        known,
        model: if known {
            p.basis.label()
        } else {
            "prior".into()
        },
        confidence: (p.weight / 30.0).min(1.0) * p.quality,
        time: 0.0,
    }
}

/// The totals of the per-function sums. A function's variance is its tasks' own spread
/// (n·σ²) plus the error of its fitted mean, shared by all n tasks (n²·σ²/samples).
fn summed(sums: Sums<'_>) -> Estimate {
    let (mut time, mut var_ms2, mut weighted_conf) = (0.0, 0.0, 0.0);
    let mut per_function = Vec::with_capacity(sums.per.len());
    for (k, f) in sums.per {
        let p = sums.predictors.get(&k).0;
        let (n, var) = ((f.queued + f.running) as f64, p.var_ms.max(0.0));
        var_ms2 += n * var + n * n * var / p.weight.max(1.0);
        time += f.time;
        weighted_conf += f.time * f.confidence;
        per_function.push(f);
    }
    per_function.sort_by(|a, b| b.time.total_cmp(&a.time));
    Estimate {
        time,
        var_s2: var_ms2 / 1e6,
        longest_s: sums.longest_ms / 1000.0,
        queued: per_function.iter().map(|f| f.queued).sum(),
        running: per_function.iter().map(|f| f.running).sum(),
        gpu: sums.gpu,
        per_function,
        confidence: if time > 0.0 {
            weighted_conf / time
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
    fn the_histogram_holds_every_runtime_in_log_spaced_bins() {
        let mut s = Sketch::default();
        assert!(s.histogram(40).is_empty());
        for _ in 0..10 {
            s.add(1.0);
        }
        for _ in 0..5 {
            s.add(100.0);
        }
        let bins = s.histogram(40);
        assert_eq!(bins.iter().map(|b| b.count).sum::<u64>(), 15);
        let find = |ms: f64| {
            bins.iter()
                .find(|b| b.lo_ms <= ms && ms < b.hi_ms)
                .unwrap()
                .count
        };
        assert_eq!((find(1.0), find(100.0)), (10, 5));
        assert!(
            bins.windows(2).all(|w| w[0].hi_ms == w[1].lo_ms),
            "contiguous"
        );
        assert!(
            (bins[0].hi_ms / bins[0].lo_ms - 1.04f64.powi(10)).abs() < 1e-6,
            "~1.5x wide"
        );
        assert!(bins.len() <= 40);
        // A range of eight decades still fits the cap, in wider bins.
        s.add(1e6);
        s.add(0.01);
        assert!(s.histogram(40).len() <= 40);
        assert_eq!(s.histogram(40).iter().map(|b| b.count).sum::<u64>(), 17);
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

    fn sample(ms: f64, ok: bool, x: Option<f64>) -> Sample {
        Sample {
            ms,
            ok,
            at: 1,
            cost: Cost {
                by: Some("ms".into()),
                x: vec![x],
            },
        }
    }

    #[test]
    fn mean_is_exact_early_and_tracks_drift_later() {
        let mut st = FunctionStats::new(key("f"));
        for x in [10.0, 20.0, 30.0] {
            st.record(&sample(x, true, None));
        }
        assert!((st.mean_ms - 20.0).abs() < 1e-9);
        for _ in 0..500 {
            st.record(&sample(100.0, false, None));
        }
        assert!((st.mean_ms - 100.0).abs() < 1.0, "{}", st.mean_ms);
        assert_eq!(st.count, 503);
        assert_eq!(st.failures, 500);
    }

    #[test]
    fn estimate_sums_each_tasks_cost_and_uses_prior_for_unknown() {
        let mut st = FunctionStats::new(key("f"));
        for i in 0..100 {
            let ms = [1.0, 50.0, 200.0][i % 3];
            st.record(&sample(ms + 1.0, true, Some(ms)));
        }
        let stats = [st];
        let slot = SlotSum {
            n: 3,
            sum: 251.0,
            max: 200.0,
            min: 1.0,
        };
        let load = QueueLoad {
            queued: vec![
                Queued {
                    key: key("f"),
                    gpu: false,
                    n: 4,
                    slots: vec![slot],
                },
                Queued {
                    key: key("g"),
                    gpu: true,
                    n: 10,
                    slots: vec![],
                },
            ],
            running: vec![Running {
                key: key("f"),
                gpu: false,
                elapsed_ms: 5.0,
                cost: sample(0.0, true, Some(50.0)).cost,
            }],
        };
        let e = estimate(&load, &Predictors::new(&stats));
        let mean = stats[0].mean_ms;
        // f: 254 ms for the three with a cost, the mean for the one without, 46 ms left of
        // the running one; g: 10 × the prior (the global mean).
        let want = (254.0 + mean + 46.0 + 10.0 * mean) / 1000.0;
        assert!((e.time - want).abs() < 1e-6, "{} vs {want}", e.time);
        assert_eq!((e.queued, e.running, e.gpu.queued), (14, 1, 10));
        assert!((e.longest_s - 0.201).abs() < 1e-6, "{}", e.longest_s);
        let f = e.per_function.iter().find(|f| f.function == "f").unwrap();
        assert_eq!((f.model.as_str(), f.known), ("cost:ms", true));
        let g = e.per_function.iter().find(|f| f.function == "g").unwrap();
        assert_eq!(
            (g.model.as_str(), g.known, g.confidence),
            ("prior", false, 0.0)
        );
        assert!(e.confidence > 0.1 && e.confidence < 0.5, "{}", e.confidence);
        assert!(e.var_s2 > 0.0);
    }
}
