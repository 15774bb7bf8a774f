//! Turning command-line words into a task body: `PKG.FUNC`, JSON-or-string arguments, options.
use serde_json::{Map, Value};
use task_api::{Resources, TaskSpec};

use crate::cli::TaskOpts;
use crate::error::{CliError, CliResult};

/// `PKG.FUNC` → (Some(pkg), func); `FUNC` → (None, func).
pub fn split_target(target: &str) -> CliResult<(Option<String>, String)> {
    let bad = |why: &str| {
        CliError::Other(format!(
            "`{target}`: {why}; write PACKAGE.FUNCTION, e.g. hello.greet"
        ))
    };
    match target.split_once('.') {
        Some((p, f)) if p.is_empty() || f.is_empty() => Err(bad("empty package or function")),
        Some((_, f)) if f.contains('.') => Err(bad("more than one `.`")),
        Some((p, f)) => Ok((Some(p.to_string()), f.to_string())),
        None if target.is_empty() => Err(bad("empty")),
        None => Ok((None, target.to_string())),
    }
}

/// One command-line argument: JSON when it parses, else the text as a string.
pub fn parse_arg(word: &str) -> Value {
    serde_json::from_str(word).unwrap_or_else(|_| Value::String(word.to_string()))
}

/// `--kwargs` text → object.
pub fn parse_kwargs(text: Option<&str>) -> CliResult<Map<String, Value>> {
    match text {
        None => Ok(Map::new()),
        Some(t) => match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(CliError::Other(
                "--kwargs must be a JSON object, e.g. '{\"n\": 3}'".into(),
            )),
            Err(e) => Err(CliError::Other(format!("--kwargs is not JSON: {e}"))),
        },
    }
}

/// A task body from the target, arguments and options.
pub fn build(
    target: &str,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    opts: &TaskOpts,
) -> CliResult<TaskSpec> {
    let (package, function) = split_target(target)?;
    Ok(TaskSpec {
        package,
        function,
        version: opts.version_req.clone(),
        args,
        kwargs,
        priority: opts.priority,
        timeout_s: opts.timeout_s,
        max_attempts: opts.max_attempts,
        idempotency_key: None,
        resources: Resources {
            gpus: opts.gpus,
            memory_mb: 0,
            datasets: opts.datasets.clone(),
        },
        memoize: opts.memoize,
        ttl_s: None,
        after: opts.after.clone(),
        not_before: opts.not_before.clone(),
        delay_s: opts.delay.map(|d| d.as_secs_f64()),
        concurrency_key: opts.concurrency_key.clone(),
        max_concurrent: opts.max_concurrent,
    })
}

/// Positional and keyword arguments of one input.
pub type Input = (Vec<Value>, Map<String, Value>);

/// One line of a `crpc map` inputs file → (args, kwargs).
pub fn input_line(v: Value) -> CliResult<Input> {
    match v {
        Value::Array(a) => Ok((a, Map::new())),
        Value::Object(mut m) if m.contains_key("args") || m.contains_key("kwargs") => {
            let args = match m.remove("args") {
                None => Vec::new(),
                Some(Value::Array(a)) => a,
                Some(_) => return Err(CliError::Other("`args` must be an array".into())),
            };
            let kwargs = match m.remove("kwargs") {
                None => Map::new(),
                Some(Value::Object(k)) => k,
                Some(_) => return Err(CliError::Other("`kwargs` must be an object".into())),
            };
            if let Some(k) = m.keys().next() {
                return Err(CliError::Other(format!(
                    "unknown key `{k}` (an object line holds `args` and/or `kwargs`)"
                )));
            }
            Ok((args, kwargs))
        }
        other => Ok((vec![other], Map::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_become_json_or_strings() {
        assert_eq!(parse_arg("42"), json!(42));
        assert_eq!(parse_arg("world"), json!("world"));
        assert_eq!(parse_arg("[1, 2]"), json!([1, 2]));
        assert_eq!(parse_arg("\"42\""), json!("42"));
        assert_eq!(
            split_target("hello.greet").unwrap(),
            (Some("hello".into()), "greet".into())
        );
        assert_eq!(split_target("greet").unwrap(), (None, "greet".into()));
        assert!(split_target("a.b.c").is_err() && split_target(".f").is_err());
    }

    #[test]
    fn input_lines() {
        assert_eq!(
            input_line(json!([1, 2])).unwrap().0,
            vec![json!(1), json!(2)]
        );
        assert_eq!(input_line(json!(5)).unwrap().0, vec![json!(5)]);
        let (a, k) = input_line(json!({"args": [1], "kwargs": {"x": 2}})).unwrap();
        assert_eq!((a, k.len()), (vec![json!(1)], 1));
        assert_eq!(
            input_line(json!({"a": 1})).unwrap().0,
            vec![json!({"a": 1})]
        );
        assert!(input_line(json!({"args": 1})).is_err());
        assert!(input_line(json!({"args": [], "x": 1})).is_err());
    }
}
