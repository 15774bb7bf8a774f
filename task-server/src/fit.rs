//! Cost models: runtime ≈ a + b × cost, fitted online per function from answered attempts.
//!
//! Each function keeps one exponentially weighted least-squares line per cost slot (see
//! [`crate::cost`]). A declared cost uses its slot's line (or, while every task had the same
//! cost, runtime ∝ cost); an undeclared function uses the slot whose line explains the runtimes
//! best (r² ≥ [`MIN_R2`]), or else its mean runtime, at a lower confidence.
use serde::{Deserialize, Serialize};

use crate::cost::{Cost, SLOTS};

/// Weight kept by older samples at each new one: the fit follows the last ~500 answers.
const DECAY: f64 = 0.998;
/// Samples (by weight) before a line is believed.
const MIN_WEIGHT: f64 = 8.0;
/// An undeclared argument is the cost only if its line explains this share of the variance.
pub const MIN_R2: f64 = 0.6;
/// The confidence factor of an estimate that fell back to the mean runtime.
pub const MEAN_QUALITY: f64 = 0.5;

/// Exponentially weighted running means and co-moments of (cost, runtime) pairs (West's
/// update: stable for large costs, unlike raw sums of squares).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// Total weight.
    pub w: f64,
    /// Mean cost.
    pub mx: f64,
    /// Mean runtime, ms.
    pub my: f64,
    /// Σ w (x - mx)².
    pub cxx: f64,
    /// Σ w (x - mx)(y - my).
    pub cxy: f64,
    /// Σ w (y - my)².
    pub cyy: f64,
}

/// A fitted line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// Intercept, ms.
    pub a: f64,
    /// Slope, ms per unit of cost.
    pub b: f64,
    /// Share of the runtime variance the line explains.
    pub r2: f64,
    /// Variance of the runtimes around the line, ms².
    pub resid_var: f64,
    /// Weight of the samples behind it.
    pub w: f64,
}

impl Fit {
    /// Adds one (cost, runtime) pair.
    pub fn add(&mut self, x: f64, y: f64) {
        self.w = self.w * DECAY + 1.0;
        self.cxx *= DECAY;
        self.cxy *= DECAY;
        self.cyy *= DECAY;
        let dx = x - self.mx;
        let dy = y - self.my;
        self.mx += dx / self.w;
        self.my += dy / self.w;
        self.cxx += dx * (x - self.mx);
        self.cxy += dx * (y - self.my);
        self.cyy += dy * (y - self.my);
    }

    /// The least-squares line, once there are enough samples with some spread in cost.
    pub fn line(&self) -> Option<Line> {
        let spread = self.cxx / self.w.max(1.0);
        if self.w < MIN_WEIGHT || spread <= 1e-9 * self.mx.abs().max(1.0).powi(2) {
            return None;
        }
        let b = self.cxy / self.cxx;
        let explained = b * self.cxy;
        let r2 = if self.cyy > 0.0 {
            (explained / self.cyy).clamp(0.0, 1.0)
        } else {
            1.0
        };
        Some(Line {
            a: self.my - b * self.mx,
            b,
            r2,
            resid_var: ((self.cyy - explained) / self.w).max(0.0),
            w: self.w,
        })
    }
}

/// The cost lines of one function.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// The declared cost argument, as the latest answered task had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// One line per cost slot.
    #[serde(default)]
    pub fits: Vec<Fit>,
}

/// What an estimate of a function's tasks is based on.
#[derive(Debug, Clone, PartialEq)]
pub enum Basis {
    /// The declared cost argument's line (or runtime ∝ cost while all costs were equal).
    Declared(String),
    /// The undeclared argument at this position explains the runtimes.
    Arg(usize),
    /// The mean runtime: no argument explains it.
    Mean,
}

impl Basis {
    /// How the estimate names it: `cost:samples`, `arg:0`, `mean`.
    pub fn label(&self) -> String {
        match self {
            Basis::Declared(name) => format!("cost:{name}"),
            Basis::Arg(i) => format!("arg:{i}"),
            Basis::Mean => "mean".into(),
        }
    }
}

/// Runtime of one task of a function, from its cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictor {
    /// What it is based on.
    pub basis: Basis,
    /// The cost slot read, with its line (intercept, slope).
    pub slot: Option<(usize, f64, f64)>,
    /// Mean runtime, ms: tasks without a measure in the slot.
    pub mean_ms: f64,
    /// Variance of one task's runtime around its prediction, ms².
    pub var_ms: f64,
    /// Weight of the samples behind it.
    pub weight: f64,
    /// 0..1: how well the basis explains the runtimes.
    pub quality: f64,
}

impl Predictor {
    /// A function known only by a mean (or a prior): `quality` as given.
    pub fn mean(mean_ms: f64, var_ms: f64, weight: f64, quality: f64) -> Predictor {
        Predictor {
            basis: Basis::Mean,
            slot: None,
            mean_ms,
            var_ms,
            weight,
            quality,
        }
    }

    /// Expected runtime of a task with cost `cost`, ms (never negative).
    pub fn predict(&self, cost: &Cost) -> f64 {
        match self.slot {
            Some((i, a, b)) => match cost.at(i) {
                Some(x) => (a + b * x).max(0.0),
                None => self.mean_ms,
            },
            None => self.mean_ms,
        }
    }

    /// Expected runtime of `n` tasks whose measures in the predictor's slot sum to `sum` over
    /// `with` of them (the others have none and take the mean).
    pub fn predict_sum(&self, n: u64, slots: &[SlotSum]) -> f64 {
        match self.slot {
            Some((i, a, b)) => {
                let s = slots.get(i).copied().unwrap_or_default();
                let with = s.n.min(n);
                (a * with as f64 + b * s.sum).max(0.0) + (n - with) as f64 * self.mean_ms
            }
            None => n as f64 * self.mean_ms,
        }
    }

    /// The longest of such tasks, ms.
    pub fn predict_max(&self, slots: &[SlotSum]) -> f64 {
        match self.slot {
            Some((i, a, b)) => {
                let s = slots.get(i).copied().unwrap_or_default();
                let top = if b >= 0.0 { s.max } else { s.min };
                (a + b * top).max(self.mean_ms)
            }
            None => self.mean_ms,
        }
    }
}

/// Count, sum and range of the measures in one cost slot over some tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SlotSum {
    /// Tasks with a measure here.
    pub n: u64,
    /// Their sum.
    pub sum: f64,
    /// The largest.
    pub max: f64,
    /// The smallest.
    pub min: f64,
}

impl CostModel {
    /// Adds one successful attempt's runtime at its cost.
    pub fn add(&mut self, cost: &Cost, ms: f64) {
        if self.fits.len() < SLOTS {
            self.fits.resize(SLOTS, Fit::default());
        }
        if cost.by.is_some() {
            self.by = cost.by.clone();
        }
        for (i, fit) in self.fits.iter_mut().enumerate() {
            if let Some(x) = cost.at(i) {
                fit.add(x, ms);
            }
        }
    }

    /// The predictor for a function whose runtimes have this mean and variance.
    pub fn predictor(&self, mean_ms: f64, var_ms: f64, weight: f64) -> Predictor {
        if let Some(name) = &self.by {
            if let Some(p) = self.declared(name, mean_ms, weight) {
                return p;
            }
        } else if let Some((i, line)) = self.best_arg() {
            return Predictor {
                basis: Basis::Arg(i),
                slot: Some((i, line.a, line.b)),
                mean_ms,
                var_ms: line.resid_var,
                weight: line.w,
                quality: line.r2,
            };
        }
        Predictor::mean(mean_ms, var_ms, weight, MEAN_QUALITY)
    }

    /// The declared slot's line; while all its costs were equal, runtime ∝ cost.
    fn declared(&self, name: &str, mean_ms: f64, weight: f64) -> Option<Predictor> {
        let fit = self.fits.first()?;
        let basis = Basis::Declared(name.to_string());
        if let Some(line) = fit.line() {
            return Some(Predictor {
                basis,
                slot: Some((0, line.a, line.b)),
                mean_ms,
                var_ms: line.resid_var,
                weight: line.w,
                quality: line.r2.max(MEAN_QUALITY),
            });
        }
        (fit.w >= 1.0 && fit.mx > 0.0).then(|| Predictor {
            basis,
            slot: Some((0, 0.0, fit.my / fit.mx)),
            mean_ms,
            var_ms: fit.cyy / fit.w,
            weight: weight.min(fit.w),
            quality: MEAN_QUALITY,
        })
    }

    /// The undeclared slot whose line explains the runtimes best, if any explains enough.
    fn best_arg(&self) -> Option<(usize, Line)> {
        self.fits
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.line().map(|l| (i, l)))
            .filter(|(_, l)| l.r2 >= MIN_R2)
            .max_by(|a, b| a.1.r2.total_cmp(&b.1.r2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of noise in [-1, 1).
    fn noise(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn cost(x: &[Option<f64>], by: Option<&str>) -> Cost {
        Cost {
            by: by.map(str::to_string),
            x: x.to_vec(),
        }
    }

    /// 300 samples of runtime = 3 ms + 0.02 ms per sample over 1e3..1e5 samples, with noise.
    fn fitted(noise_of: impl Fn(f64, &mut u64) -> f64) -> Predictor {
        let mut m = CostModel::default();
        let mut seed = 7;
        for i in 0..300 {
            let x = 1000.0 + (i * 331 % 997) as f64 * 100.0;
            let y = 3.0 + 0.02 * x;
            m.add(
                &cost(&[Some(x)], Some("samples")),
                y + noise_of(y, &mut seed),
            );
        }
        m.predictor(0.0, 0.0, 300.0)
    }

    #[test]
    fn a_fit_recovers_a_known_linear_cost_within_5_percent() {
        // Timer jitter of ±2 ms: every prediction within 5 %, down to 40 ms tasks.
        let p = fitted(|_, s| 2.0 * noise(s));
        assert_eq!(p.basis, Basis::Declared("samples".into()));
        let (_, a, b) = p.slot.unwrap();
        assert!((b - 0.02).abs() / 0.02 < 0.05, "slope {b}");
        for x in [2_000.0, 50_000.0, 100_000.0] {
            let want = 3.0 + 0.02 * x;
            let got = p.predict(&cost(&[Some(x)], None));
            let err = (got - want).abs() / want;
            assert!(err < 0.05, "{x}: {got} vs {want} (a {a})");
        }
        assert!(p.quality > 0.99, "{}", p.quality);
        // ±10 % of each runtime: the cost per sample is still within 5 %.
        let (_, _, b) = fitted(|y, s| 0.1 * y * noise(s)).slot.unwrap();
        assert!((b - 0.02).abs() / 0.02 < 0.05, "slope {b}");
    }

    #[test]
    fn an_undeclared_argument_is_found_when_it_explains_the_runtimes() {
        let mut m = CostModel::default();
        let mut seed = 1;
        for i in 0..200 {
            let junk = 100.0 * noise(&mut seed);
            let ms = [1.0, 50.0, 200.0][i % 3];
            m.add(
                &cost(&[Some(junk), Some(ms)], None),
                ms + 0.2 * noise(&mut seed),
            );
        }
        let p = m.predictor(83.0, 7000.0, 200.0);
        assert_eq!(p.basis, Basis::Arg(1));
        assert!((p.predict(&cost(&[None, Some(50.0)], None)) - 50.0).abs() < 1.0);
        assert!(p.quality > 0.99);
    }

    #[test]
    fn without_a_usable_argument_the_mean_is_used_at_lower_confidence() {
        let mut m = CostModel::default();
        let mut seed = 3;
        for _ in 0..200 {
            let x = 100.0 * noise(&mut seed);
            m.add(&cost(&[Some(x), None], None), 20.0 + 5.0 * noise(&mut seed));
        }
        let p = m.predictor(20.0, 8.0, 200.0);
        assert_eq!(p.basis, Basis::Mean);
        assert_eq!(p.quality, MEAN_QUALITY);
        assert_eq!(p.predict(&cost(&[Some(99.0)], None)), 20.0);
        assert_eq!(
            CostModel::default().predictor(5.0, 0.0, 1.0).basis,
            Basis::Mean
        );
    }

    #[test]
    fn a_declared_cost_seen_at_one_size_scales_in_proportion() {
        let mut m = CostModel::default();
        for _ in 0..50 {
            m.add(&cost(&[Some(50.0)], Some("ms")), 51.0);
        }
        let p = m.predictor(51.0, 0.0, 50.0);
        assert!((p.predict(&cost(&[Some(200.0)], None)) - 204.0).abs() < 1e-6);
        let sums = [SlotSum {
            n: 2,
            sum: 250.0,
            max: 200.0,
            min: 50.0,
        }];
        assert!((p.predict_sum(3, &sums) - (255.0 + 51.0)).abs() < 1e-6);
        assert!((p.predict_max(&sums) - 204.0).abs() < 1e-6);
    }
}
