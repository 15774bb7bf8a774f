//! What a task's runtime is expected to grow with, measured once at submit from its arguments.
//!
//! A function's manifest may name one argument (`cost = "samples"`); then `x[0]` is that
//! argument's measure. Otherwise the first [`SLOTS`] arguments are each measured, and the
//! statistics keep the one that explains the runtimes best (see `stats::CostModel`). A measure is
//! a number's value, or the length of a string, array or object; booleans and nulls have none.
use crpc_package::manifest::FunctionSig;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Argument positions tried as a cost measure when a function declares none.
pub const SLOTS: usize = 3;

/// Measures above this are not believed (a user may send 1e300): the task gets none, and its
/// estimate is its function's mean, instead of a sum that overflows every other estimate.
pub const MAX_MEASURE: f64 = 1e12;

/// A task's cost measures, stored with it (`tasks.cost_by`, `cost0`..`cost2`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cost {
    /// The argument the manifest declares; `x[0]` is its measure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Measure per slot, `null` where the argument has none.
    pub x: Vec<Option<f64>>,
}

impl Cost {
    /// The measures of a task of a function with signature `sig` (unknown without a registry).
    pub fn of(sig: Option<&FunctionSig>, args: &[Value], kwargs: &Map<String, Value>) -> Cost {
        CostAt::of(sig, args.len()).measure(args, kwargs)
    }

    /// The measure in `slot`.
    pub fn at(&self, slot: usize) -> Option<f64> {
        self.x.get(slot).copied().flatten()
    }
}

/// Where a task's cost measures come from: the declared argument, and for each slot the
/// argument's position and (with a signature) its name. Kept on a waiting task, whose arguments
/// are only known once the tasks it refers to answered (`tasks.cost_at`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostAt {
    /// The argument the manifest declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Per slot: position, and name when known (`None` position: the signature has no such
    /// argument).
    pub places: Vec<(Option<usize>, Option<String>)>,
}

impl CostAt {
    /// The places of a function with signature `sig` called with `positional` arguments.
    pub fn of(sig: Option<&FunctionSig>, positional: usize) -> CostAt {
        let named = |i: usize| (Some(i), sig.map(|s| s.args[i].name.clone()));
        match sig {
            Some(sig) => match &sig.cost {
                Some(name) => CostAt {
                    by: Some(name.clone()),
                    places: vec![(
                        sig.args.iter().position(|a| &a.name == name),
                        Some(name.clone()),
                    )],
                },
                None => CostAt {
                    by: None,
                    places: (0..SLOTS.min(sig.args.len())).map(named).collect(),
                },
            },
            None => CostAt {
                by: None,
                places: (0..SLOTS.min(positional))
                    .map(|i| (Some(i), None))
                    .collect(),
            },
        }
    }

    /// The measures of these arguments.
    pub fn measure(&self, args: &[Value], kwargs: &Map<String, Value>) -> Cost {
        let value = |(pos, name): &(Option<usize>, Option<String>)| {
            let pos = (*pos)?;
            args.get(pos)
                .or_else(|| name.as_ref().and_then(|n| kwargs.get(n)))
        };
        Cost {
            by: self.by.clone(),
            x: self
                .places
                .iter()
                .map(|p| value(p).and_then(measure))
                .collect(),
        }
    }

    /// No measures yet (a waiting task: its references are not answers yet).
    pub fn unknown(&self) -> Cost {
        Cost {
            by: self.by.clone(),
            x: vec![None; self.places.len()],
        }
    }
}

/// A number's value; the length of a string, array or object.
pub fn measure(v: &Value) -> Option<f64> {
    let m = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.chars().count() as f64,
        Value::Array(a) => a.len() as f64,
        Value::Object(o) => o.len() as f64,
        Value::Bool(_) | Value::Null => return None,
    };
    (m.is_finite() && m.abs() <= MAX_MEASURE).then_some(m)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sig(toml_args: Value, cost: Option<&str>) -> FunctionSig {
        serde_json::from_value(json!({"args": toml_args, "cost": cost})).unwrap()
    }

    #[test]
    fn a_declared_cost_is_the_named_argument_by_position_or_keyword() {
        let s = sig(
            json!([{"name": "seed", "type": "integer"}, {"name": "n", "type": "array"}]),
            Some("n"),
        );
        let c = Cost::of(Some(&s), &[json!(1), json!([1, 2, 3])], &Map::new());
        assert_eq!((c.by.as_deref(), c.x.clone()), (Some("n"), vec![Some(3.0)]));
        let kw = json!({"n": "abcd"}).as_object().unwrap().clone();
        assert_eq!(Cost::of(Some(&s), &[json!(1)], &kw).at(0), Some(4.0));
        assert_eq!(Cost::of(Some(&s), &[], &Map::new()).at(0), None);
    }

    #[test]
    fn without_a_declaration_the_first_arguments_are_measured() {
        let c = Cost::of(
            None,
            &[json!(5), json!(true), json!("xy"), json!(9)],
            &Map::new(),
        );
        assert_eq!(c.x, vec![Some(5.0), None, Some(2.0)]);
        assert_eq!(c.by, None);
    }

    #[test]
    fn hostile_numbers_have_no_measure() {
        for v in [json!(1e300), json!(-1e13), json!(null)] {
            assert_eq!(measure(&v), None, "{v}");
        }
        assert_eq!(measure(&json!(-3)), Some(-3.0));
    }
}
