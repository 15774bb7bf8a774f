//! Task graphs: references between tasks, and what a waiting task becomes.
//!
//! A value anywhere in a task's `args`/`kwargs` may be `{"$ref": ID}` or `{"$ref": ID, "path":
//! "/json/pointer"}`; `after` lists tasks to wait for without using their answers. ID is a task
//! id, or in a batch `#N`, the batch's task at index N (earlier indices only, so a batch cannot
//! hold a cycle). Such a task is inserted `waiting`; once every task it waits for succeeded it is
//! queued with each reference replaced by that task's answer (or the part the pointer names),
//! and once one of them failed, was cancelled or deleted it fails with `dependency_failed`
//! naming that task. The store applies these decisions ([`decide`]); this module holds them.
use std::collections::HashMap;

use serde_json::{json, Map, Value};
use task_api::{TaskError, TaskErrorKind, TaskState};
use uuid::Uuid;

/// Distinct tasks one task may wait for.
pub const MAX_DEPS: usize = 1000;
/// Longest JSON pointer a reference may carry.
const MAX_PATH: usize = 1024;

/// What a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A task by id.
    Task(Uuid),
    /// The task at this index of the same batch.
    Index(usize),
}

impl Target {
    fn parse(s: &str) -> Option<Target> {
        match s.strip_prefix('#') {
            Some(n) if !n.is_empty() && n.len() <= 6 && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().ok().map(Target::Index)
            }
            Some(_) => None,
            None => Uuid::parse_str(s).ok().map(Target::Task),
        }
    }
}

/// A reference or `after` entry that cannot stand: the field and what is wrong.
pub use task_api::refs::RefError;

/// Whether `v` is a reference (the signature check leaves these alone: their type is only
/// known once the task they name answered).
pub fn is_ref(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.contains_key("$ref"))
}

/// Every task a spec waits for, in order of appearance, each once, with the field that first
/// names it: the `$ref`s of its arguments, then `after`. Malformed references are refused here.
pub fn targets(
    args: &mut [Value],
    kwargs: &mut Map<String, Value>,
    after: &[String],
) -> Result<Vec<(Target, String)>, RefError> {
    let mut found = Vec::new();
    visit_refs(args, kwargs, &mut |v, field| {
        found.push((check_ref(v, field)?, field.to_string()));
        Ok(())
    })?;
    for (i, a) in after.iter().enumerate() {
        let field = format!("after[{i}]");
        let t = Target::parse(a).ok_or_else(|| RefError {
            field: field.clone(),
            message: "after holds task ids, or #N for an earlier task of the same batch".into(),
        })?;
        found.push((t, field));
    }
    let mut seen = std::collections::HashSet::new();
    found.retain(|(t, _)| seen.insert(*t));
    if found.len() > MAX_DEPS {
        return Err(RefError {
            field: "args".into(),
            message: format!("a task may wait for at most {MAX_DEPS} tasks"),
        });
    }
    Ok(found)
}

/// Replaces the `#N` references of the batch task at `index` by the ids of `ids` (the batch's
/// tasks): only earlier tasks may be named, so a batch cannot hold a cycle.
pub fn bind_batch(
    args: &mut [Value],
    kwargs: &mut Map<String, Value>,
    after: &mut [String],
    ids: &[Uuid],
    index: usize,
) -> Result<(), RefError> {
    let bind = |s: &str, field: &str| -> Result<Option<String>, RefError> {
        match Target::parse(s) {
            Some(Target::Index(n)) if n < index => Ok(Some(ids[n].to_string())),
            Some(Target::Index(n)) => Err(RefError {
                field: field.to_string(),
                message: format!(
                    "task {index} refers to #{n}: a task may only refer to earlier tasks of its batch (#0 to #{})",
                    index as i64 - 1
                ),
            }),
            _ => Ok(None),
        }
    };
    visit_refs(args, kwargs, &mut |v, field| {
        let s = v["$ref"].as_str().unwrap_or_default().to_string();
        if let Some(id) = bind(&s, field)? {
            v["$ref"] = Value::String(id);
        }
        Ok(())
    })?;
    for (i, a) in after.iter_mut().enumerate() {
        if let Some(id) = bind(a, &format!("after[{i}]"))? {
            *a = id;
        }
    }
    Ok(())
}

/// A task a waiting task waits for, as the store reads it.
#[derive(Debug, Clone)]
pub struct DepState {
    /// The task waited for.
    pub dep: Uuid,
    /// Its state (`None`: deleted or expired).
    pub state: Option<TaskState>,
    /// Its answer when it succeeded.
    pub answer: Option<Value>,
    /// Its error when it failed or was cancelled.
    pub error: Option<TaskError>,
}

/// What a waiting task becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Ready {
    /// Something it waits for has not finished.
    Wait,
    /// Every task it waits for succeeded: queue it with these arguments.
    Queue {
        /// Positional arguments, references replaced.
        args: Vec<Value>,
        /// Keyword arguments, references replaced.
        kwargs: Map<String, Value>,
    },
    /// It cannot run (`dependency_failed`).
    Fail(TaskError),
}

/// Decides a waiting task from the states of the tasks it waits for.
pub fn decide(mut args: Vec<Value>, mut kwargs: Map<String, Value>, deps: &[&DepState]) -> Ready {
    if let Some(bad) = deps.iter().find(|d| {
        matches!(
            d.state,
            None | Some(TaskState::Failed | TaskState::Cancelled)
        )
    }) {
        return Ready::Fail(dependency_failed(bad));
    }
    if deps.iter().any(|d| d.state != Some(TaskState::Succeeded)) {
        return Ready::Wait;
    }
    let answers: HashMap<Uuid, &Value> = deps
        .iter()
        .map(|d| (d.dep, d.answer.as_ref().unwrap_or(&Value::Null)))
        .collect();
    let of = |id: Uuid| answers.get(&id).copied();
    match task_api::refs::substitute(&mut args, &mut kwargs, &of) {
        Ok(()) => Ready::Queue { args, kwargs },
        Err(message) => Ready::Fail(TaskError {
            kind: TaskErrorKind::DependencyFailed,
            message,
        }),
    }
}

impl DepState {
    /// A task waited for that is gone (deleted or expired).
    pub fn gone(dep: Uuid) -> DepState {
        DepState {
            dep,
            state: None,
            answer: None,
            error: None,
        }
    }
}

/// The error of a task whose dependency `bad` did not succeed: it names that task and, for a
/// chain, carries the first failure's message along.
pub fn dependency_failed(bad: &DepState) -> TaskError {
    let why = match (&bad.state, &bad.error) {
        (None, _) => "was deleted".to_string(),
        (Some(TaskState::Cancelled), _) => "was cancelled".to_string(),
        (_, Some(e)) => format!("failed: {}", e.message),
        _ => "failed".to_string(),
    };
    TaskError {
        kind: TaskErrorKind::DependencyFailed,
        message: format!("dependency {} {why}", bad.dep),
    }
}

/// The memoization key: sha256 of package, version, function and the arguments (substituted,
/// for a task that waited).
pub fn args_hash(
    package: &str,
    version: &str,
    function: &str,
    args: &[Value],
    kwargs: &Map<String, Value>,
) -> String {
    crate::queue::sha256_hex(&json!([package, version, function, args, kwargs]))
}

/// A waiting task as the estimate sees it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The task.
    pub id: Uuid,
    /// Its function.
    pub key: crate::stats::FnKey,
    /// What it waits for.
    pub deps: Vec<Uuid>,
}

/// The waiting tasks in queue order (a task comes after those it waits for), and the
/// unfinished tasks outside them that they wait for.
#[derive(Debug, Clone, Default)]
pub struct WaitingGraph {
    /// Waiting tasks, in queue order.
    pub nodes: Vec<Node>,
    /// Queued or running tasks some node waits for.
    pub unfinished: HashMap<Uuid, (crate::stats::FnKey, TaskState)>,
}

/// What the waiting tasks add to an estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GraphLoad {
    /// Waiting tasks.
    pub waiting: u64,
    /// Their predicted work, core-seconds.
    pub time_s: f64,
    /// The longest chain of predicted runtimes (plus one dispatch per task) through them, s.
    pub critical_s: f64,
}

impl WaitingGraph {
    /// Tasks some node waits for that are not nodes.
    pub fn outside(&self) -> Vec<Uuid> {
        let ours: std::collections::HashSet<Uuid> = self.nodes.iter().map(|n| n.id).collect();
        let mut out: Vec<Uuid> = self
            .nodes
            .iter()
            .flat_map(|n| n.deps.iter().copied())
            .filter(|d| !ours.contains(d))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Work and critical path by `ms_of` (a function's predicted runtime, ms) with `dispatch_s`
    /// per task; `until`: the finish of that one task instead of the whole graph's.
    pub fn load(
        &self,
        ms_of: &dyn Fn(&crate::stats::FnKey) -> f64,
        dispatch_s: f64,
        until: Option<Uuid>,
    ) -> GraphLoad {
        let mut finish: HashMap<Uuid, f64> = self
            .unfinished
            .iter()
            .map(|(id, (key, _))| (*id, ms_of(key) / 1000.0 + dispatch_s))
            .collect();
        let mut out = GraphLoad::default();
        for n in &self.nodes {
            let own = ms_of(&n.key) / 1000.0;
            let start = n
                .deps
                .iter()
                .filter_map(|d| finish.get(d).copied())
                .fold(0.0, f64::max);
            let end = start + dispatch_s + own;
            finish.insert(n.id, end);
            out.waiting += 1;
            out.time_s += own;
            if until.is_none_or(|u| u == n.id) {
                out.critical_s = out.critical_s.max(end);
            }
        }
        out
    }
}

pub(crate) use task_api::refs::{visit_marked, Visitor};

/// Calls `f` on every reference object in `args` and `kwargs`, with its field path.
fn visit_refs(
    args: &mut [Value],
    kwargs: &mut Map<String, Value>,
    f: &mut Visitor<'_>,
) -> Result<(), RefError> {
    visit_marked(args, kwargs, "$ref", f)
}

/// A reference's target, once its shape is checked.
fn check_ref(v: &Value, field: &str) -> Result<Target, RefError> {
    let err = |message: &str| RefError {
        field: field.to_string(),
        message: message.to_string(),
    };
    let o = v.as_object().expect("is_ref");
    if o.keys().any(|k| k != "$ref" && k != "path") {
        return Err(err(
            "a reference is {\"$ref\": ID} or {\"$ref\": ID, \"path\": \"/json/pointer\"}, nothing else",
        ));
    }
    let target = o["$ref"].as_str().and_then(Target::parse).ok_or_else(|| {
        err("$ref must be a task id, or #N for an earlier task of the same batch")
    })?;
    match o.get("path") {
        None => {}
        Some(Value::String(p)) if p.len() <= MAX_PATH && (p.is_empty() || p.starts_with('/')) => {}
        Some(_) => {
            return Err(err(
                "path must be a JSON pointer (\"\" or starting with /), at most 1024 characters",
            ))
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(dep: Uuid, answer: Value) -> DepState {
        DepState {
            dep,
            state: Some(TaskState::Succeeded),
            answer: Some(answer),
            error: None,
        }
    }

    #[test]
    fn references_are_found_checked_and_bound_to_earlier_batch_tasks() {
        let a = Uuid::now_v7();
        let mut args = vec![
            json!({"$ref": "#0"}),
            json!([1, {"$ref": a.to_string(), "path": "/x"}]),
        ];
        let mut kwargs = Map::new();
        kwargs.insert("k".into(), json!({"$ref": "#0"}));
        let t = targets(&mut args, &mut kwargs, &["#1".into()]).unwrap();
        let t: Vec<Target> = t.into_iter().map(|(t, _)| t).collect();
        assert_eq!(t, vec![Target::Index(0), Target::Task(a), Target::Index(1)]);
        let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        let mut after = vec!["#1".to_string()];
        bind_batch(&mut args, &mut kwargs, &mut after, &ids, 2).unwrap();
        assert_eq!(args[0]["$ref"], json!(ids[0].to_string()));
        assert_eq!(after[0], ids[1].to_string());
        let e = bind_batch(
            &mut [json!({"$ref": "#2"})],
            &mut Map::new(),
            &mut [],
            &ids,
            2,
        )
        .unwrap_err();
        assert_eq!(e.field, "args[0]");
        assert!(e.message.contains("#2"), "{}", e.message);
    }

    #[test]
    fn the_critical_path_is_the_longest_chain() {
        let key = |f: &str| crate::stats::FnKey {
            package: String::new(),
            version: String::new(),
            function: f.into(),
        };
        let (a, b, c, d) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let node = |id, f: &str, deps: Vec<Uuid>| Node {
            id,
            key: key(f),
            deps,
        };
        let mut g = WaitingGraph::default();
        g.unfinished.insert(a, (key("a"), TaskState::Queued));
        g.nodes = vec![
            node(b, "slow", vec![a]),
            node(c, "fast", vec![a]),
            node(d, "fast", vec![b, c]),
        ];
        let ms = |k: &crate::stats::FnKey| if k.function == "slow" { 3000.0 } else { 1000.0 };
        let l = g.load(&ms, 0.0, None);
        assert_eq!(l.waiting, 3);
        assert_eq!(l.time_s, 5.0);
        assert_eq!(l.critical_s, 5.0, "a 1 s, then b 3 s, then d 1 s");
        assert_eq!(g.load(&ms, 0.0, Some(c)).critical_s, 2.0);
    }

    #[test]
    fn malformed_references_are_refused_naming_the_field() {
        for bad in [
            json!({"$ref": "nope"}),
            json!({"$ref": 3}),
            json!({"$ref": "#x"}),
            json!({"$ref": "#0", "extra": 1}),
            json!({"$ref": "#0", "path": "no-slash"}),
        ] {
            let mut args = vec![json!([bad])];
            let e = targets(&mut args, &mut Map::new(), &[]).unwrap_err();
            assert_eq!(e.field, "args[0][0]");
        }
    }

    #[test]
    fn a_ready_task_gets_the_answers_and_a_failure_is_named() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let args = vec![
            json!({"$ref": a.to_string()}),
            json!({"$ref": b.to_string(), "path": "/0/n"}),
        ];
        let deps = [ok(a, json!(5)), ok(b, json!([{"n": "x"}]))];
        assert_eq!(
            decide(args.clone(), Map::new(), &[&deps[0], &deps[1]]),
            Ready::Queue {
                args: vec![json!(5), json!("x")],
                kwargs: Map::new()
            }
        );
        let waiting = [
            ok(a, json!(5)),
            DepState {
                state: Some(TaskState::Leased),
                ..ok(b, json!(0))
            },
        ];
        assert_eq!(
            decide(args.clone(), Map::new(), &[&waiting[0], &waiting[1]]),
            Ready::Wait
        );
        let failed = DepState {
            state: Some(TaskState::Failed),
            error: Some(TaskError {
                kind: TaskErrorKind::Fatal,
                message: "boom".into(),
            }),
            ..ok(b, json!(0))
        };
        let Ready::Fail(e) = decide(args.clone(), Map::new(), &[&ok(a, json!(1)), &failed]) else {
            panic!()
        };
        assert_eq!(e.kind, TaskErrorKind::DependencyFailed);
        assert_eq!(e.message, format!("dependency {b} failed: boom"));
        let Ready::Fail(e) = decide(args, Map::new(), &[&ok(a, json!(1)), &ok(b, json!([]))])
        else {
            panic!()
        };
        assert!(e.message.contains("/0/n"), "{}", e.message);
    }
}
