//! `crpc estimate [--task ID]`: how long the queue (or one task) will take.
use serde_json::Value;

use crate::client::Api;
use crate::error::CliResult;
use crate::output;

/// Runs the command.
pub async fn run(api: &Api, task: Option<&str>, json: bool) -> CliResult {
    let path = match task {
        Some(id) => format!("/user/estimate_time_left?task_id={id}"),
        None => "/user/estimate_time_left".to_string(),
    };
    let e: Value = api.get(&path).await?;
    if json {
        output::json_line(&e);
        return Ok(());
    }
    let f = |k: &str| e[k].as_f64().unwrap_or(0.0);
    let subject = match task {
        Some(id) => format!("task {id}"),
        None => "the queue".to_string(),
    };
    let eta = if f("live_slots") > 0.0 || f("time") == 0.0 {
        output::seconds(f("eta_s"))
    } else {
        "never: no processor is connected".to_string()
    };
    println!(
        "{subject}: {} queued, {} running; done in about {eta} on {} live slot(s) \
         ({} of work on one core; confidence {:.0}%)",
        f("queued"),
        f("running"),
        f("live_slots"),
        output::seconds(f("time")),
        f("confidence") * 100.0
    );
    let empty = Vec::new();
    let per = e["per_function"].as_array().unwrap_or(&empty);
    if !per.is_empty() {
        let rows: Vec<Vec<String>> = per
            .iter()
            .map(|p| {
                vec![
                    name(p),
                    p["queued"].to_string(),
                    p["running"].to_string(),
                    if p["known"].as_bool().unwrap_or(false) {
                        output::seconds(p["mean_ms"].as_f64().unwrap_or(0.0) / 1000.0)
                    } else {
                        "unknown".into()
                    },
                    output::seconds(p["time"].as_f64().unwrap_or(0.0)),
                ]
            })
            .collect();
        println!(
            "{}",
            output::table(&["FUNCTION", "QUEUED", "RUNNING", "MEAN", "WORK"], &rows)
        );
    }
    Ok(())
}

/// `package@version.function` of a stats or estimate row.
pub fn name(p: &Value) -> String {
    let mut out = String::new();
    if let Some(pkg) = p["package"].as_str() {
        out.push_str(pkg);
        if let Some(v) = p["version"].as_str() {
            out.push('@');
            out.push_str(v);
        }
        out.push('.');
    }
    out.push_str(p["function"].as_str().unwrap_or(""));
    out
}
