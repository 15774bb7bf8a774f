//! `crpc tasks`: your tasks, newest first.
use serde_json::Value;

use crate::cli::TasksArgs;
use crate::client::Api;
use crate::error::CliResult;
use crate::output;

/// Runs the command.
pub async fn run(api: &Api, args: &TasksArgs, json: bool) -> CliResult {
    let mut path = format!("/user/tasks?limit={}", args.limit.clamp(1, 1000));
    if let Some(s) = &args.state {
        path.push_str(&format!("&state={s}"));
    }
    let body: Value = api.get(&path).await?;
    if json {
        output::json_line(&body);
        return Ok(());
    }
    let empty = Vec::new();
    let tasks = body["tasks"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = tasks.iter().map(row).collect();
    println!(
        "{}",
        output::table(
            &[
                "ID",
                "FUNCTION",
                "STATE",
                "PROGRESS",
                "ATTEMPT",
                "SUBMITTED",
                "RUNTIME"
            ],
            &rows
        )
    );
    Ok(())
}

fn row(t: &Value) -> Vec<String> {
    let s = |k: &str| t[k].as_str().unwrap_or("").to_string();
    let mut function = String::new();
    if let Some(p) = t["package"].as_str() {
        function.push_str(p);
        if let Some(v) = t["version"].as_str() {
            function.push('@');
            function.push_str(v);
        }
        function.push('.');
    }
    function.push_str(&s("function"));
    vec![
        s("id"),
        function,
        s("state"),
        t["progress"]
            .as_f64()
            .map(|p| format!("{p:.0}%"))
            .unwrap_or_default(),
        format!("{}/{}", t["attempt"], t["max_attempts"]),
        t["created_at"]
            .as_i64()
            .map(output::ago)
            .unwrap_or_default(),
        t["runtime_ms"]
            .as_f64()
            .map(|ms| output::seconds(ms / 1000.0))
            .unwrap_or_default(),
    ]
}
