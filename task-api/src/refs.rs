//! References between tasks in arguments (`{"$ref": ID, "path"?: "/json/pointer"}`) and other
//! marked values (`{"$file": …}`): the walk over a task's arguments, and the substitution of
//! answers for references. Shared by the server (which queues a waiting task with its
//! references replaced) and the processor (which runs a task leased behind the one it refers
//! to with that task's answer, see `Lease::follows`), so both replace the same way.
use std::fmt::Write;

use serde_json::{Map, Value};
use uuid::Uuid;

/// A marked value that cannot stand: the field and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct RefError {
    /// `args[0]`, `kwargs.x[2]`, `after[1]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What [`visit_marked`] calls on each marked object, with its field path.
pub type Visitor<'a> = dyn FnMut(&mut Value, &str) -> Result<(), RefError> + 'a;

/// Calls `f` on every object in `args` and `kwargs` that has the key `marker` (`$ref`,
/// `$file`), with its field path; does not look inside those.
pub fn visit_marked(
    args: &mut [Value],
    kwargs: &mut Map<String, Value>,
    marker: &str,
    f: &mut Visitor<'_>,
) -> Result<(), RefError> {
    let mut field = String::new();
    for (i, v) in args.iter_mut().enumerate() {
        field.clear();
        let _ = write!(field, "args[{i}]");
        visit(v, &mut field, marker, f)?;
    }
    for (k, v) in kwargs.iter_mut() {
        field.clear();
        let _ = write!(field, "kwargs.{k}");
        visit(v, &mut field, marker, f)?;
    }
    Ok(())
}

fn visit(
    v: &mut Value,
    field: &mut String,
    marker: &str,
    f: &mut Visitor<'_>,
) -> Result<(), RefError> {
    if v.as_object().is_some_and(|o| o.contains_key(marker)) {
        return f(v, field);
    }
    let len = field.len();
    match v {
        Value::Array(items) => {
            for (i, x) in items.iter_mut().enumerate() {
                let _ = write!(field, "[{i}]");
                visit(x, field, marker, f)?;
                field.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                let _ = write!(field, ".{k}");
                visit(x, field, marker, f)?;
                field.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces every reference in `args` and `kwargs` by the answer of the task it names (or the
/// part its `path` points at); `answer_of` gives the answers of the tasks waited for. The
/// first reference that cannot be replaced is the error, as the message of the task's
/// `dependency_failed`.
pub fn substitute<'a>(
    args: &mut [Value],
    kwargs: &mut Map<String, Value>,
    answer_of: &dyn Fn(Uuid) -> Option<&'a Value>,
) -> Result<(), String> {
    let mut missing = None;
    let _ = visit_marked(args, kwargs, "$ref", &mut |v, field| {
        let id = v["$ref"].as_str().and_then(|s| Uuid::parse_str(s).ok());
        let path = v.get("path").and_then(Value::as_str).unwrap_or("");
        match id.and_then(|id| answer_of(id).map(|a| (id, a))) {
            Some((id, answer)) => match answer.pointer(path) {
                Some(part) => *v = part.clone(),
                None => {
                    missing.get_or_insert_with(|| {
                        format!("{field}: the answer of task {id} has nothing at `{path}`")
                    });
                }
            },
            None => {
                missing.get_or_insert_with(|| {
                    format!("{field}: the task it refers to is not among those it waited for")
                });
            }
        }
        Ok(())
    });
    match missing {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether `v` holds an object with the key `marker` anywhere.
pub fn has_marked(v: &Value, marker: &str) -> bool {
    match v {
        Value::Object(o) => o.contains_key(marker) || o.values().any(|x| has_marked(x, marker)),
        Value::Array(items) => items.iter().any(|x| has_marked(x, marker)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_replaced_by_answers_or_their_parts() {
        let a = Uuid::now_v7();
        let answer = json!({"xs": [1, {"name": "n"}]});
        let mut args = vec![
            json!({"$ref": a.to_string()}),
            json!([{"$ref": a.to_string(), "path": "/xs/1/name"}]),
        ];
        let mut kwargs = Map::new();
        kwargs.insert("k".into(), json!({"$ref": a.to_string(), "path": "/xs/0"}));
        let of = |id: Uuid| (id == a).then_some(&answer);
        substitute(&mut args, &mut kwargs, &of).unwrap();
        assert_eq!(args, vec![answer.clone(), json!(["n"])]);
        assert_eq!(kwargs["k"], json!(1));
    }

    #[test]
    fn a_missing_part_or_task_is_the_error() {
        let a = Uuid::now_v7();
        let answer = json!([1]);
        let of = |id: Uuid| (id == a).then_some(&answer);
        let mut args = vec![json!({"$ref": a.to_string(), "path": "/5"})];
        let e = substitute(&mut args, &mut Map::new(), &of).unwrap_err();
        assert!(
            e.starts_with("args[0]: the answer of task") && e.contains("`/5`"),
            "{e}"
        );
        let mut args = vec![json!({"$ref": Uuid::now_v7().to_string()})];
        let e = substitute(&mut args, &mut Map::new(), &of).unwrap_err();
        assert!(e.contains("not among those it waited for"), "{e}");
    }

    #[test]
    fn marked_values_are_found_at_any_depth() {
        assert!(has_marked(&json!([{"a": {"$file": "sha256:x"}}]), "$file"));
        assert!(!has_marked(&json!({"a": ["$file"]}), "$file"));
    }
}
