//! `{"$file": "sha256:<hex>"}` values in a task's arguments: the blobs it takes.
use serde_json::{Map, Value};

use crate::graph::{visit_marked, RefError};

/// Distinct files one task may take.
pub const MAX_FILES: usize = 1000;

pub use task_api::files::{file_sha256, is_sha256};

/// Every blob the arguments name, each once, with the field that first names it. A file value
/// is `{"$file": "sha256:<hex>"}`, optionally with the `name` and `size` a file answer carries
/// (so one task's file answer can be another's argument); anything else is refused.
pub fn files_of(
    args: &mut [Value],
    kwargs: &mut Map<String, Value>,
) -> Result<Vec<(String, String)>, RefError> {
    let mut out: Vec<(String, String)> = Vec::new();
    visit_marked(args, kwargs, "$file", &mut |v, field| {
        let sha = check(v).map_err(|message| RefError {
            field: field.to_string(),
            message: message.into(),
        })?;
        if !out.iter().any(|(s, _)| *s == sha) {
            if out.len() == MAX_FILES {
                return Err(RefError {
                    field: field.to_string(),
                    message: format!("a task takes at most {MAX_FILES} files"),
                });
            }
            out.push((sha, field.to_string()));
        }
        Ok(())
    })?;
    Ok(out)
}

fn check(v: &Value) -> Result<String, &'static str> {
    const SHAPE: &str = "a file is {\"$file\": \"sha256:<64 lowercase hex digits>\"} (with an \
                         optional \"name\" string and \"size\" number), nothing else";
    let o = v.as_object().ok_or(SHAPE)?;
    let ok_extra = |k: &str, x: &Value| match k {
        "$file" => true,
        "name" => x.as_str().is_some_and(|n| n.len() <= 255),
        "size" => x.as_u64().is_some(),
        _ => false,
    };
    if !o.iter().all(|(k, x)| ok_extra(k, x)) {
        return Err(SHAPE);
    }
    let name = o["$file"].as_str().ok_or(SHAPE)?;
    file_sha256(name).map(str::to_string).ok_or(SHAPE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn files_are_found_once_with_their_field() {
        let mut args = vec![
            json!({"$file": A}),
            json!([1, {"$file": A, "name": "x.txt"}]),
        ];
        let mut kwargs = json!({"k": {"$file": format!("sha256:{}", "b".repeat(64))}})
            .as_object()
            .unwrap()
            .clone();
        let got = files_of(&mut args, &mut kwargs).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], ("a".repeat(64), "args[0]".to_string()));
        assert_eq!(got[1].1, "kwargs.k");
    }

    #[test]
    fn malformed_files_are_refused_naming_the_field() {
        for bad in [
            json!({"$file": "sha256:AB"}),
            json!({"$file": A.to_uppercase()}),
            json!({"$file": 7}),
            json!({"$file": A, "path": "/etc/passwd"}),
            json!({"$file": format!("{A}/../x")}),
            json!({"$file": A, "size": -1}),
        ] {
            let mut args = vec![json!(1), json!({"x": bad.clone()})];
            let err = files_of(&mut args, &mut Map::new()).unwrap_err();
            assert_eq!(err.field, "args[1].x", "{bad}");
        }
    }
}
