//! `crpc workers`: processors, their slots and what they hold.
use serde_json::Value;

use crate::client::Api;
use crate::error::CliResult;
use crate::output;

/// Runs the command.
pub async fn run(api: &Api, all: bool, json: bool) -> CliResult {
    let body: Value = api
        .get(if all {
            "/user/workers?all=true"
        } else {
            "/user/workers"
        })
        .await?;
    if json {
        output::json_line(&body);
        return Ok(());
    }
    let empty = Vec::new();
    let workers = body["workers"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let caps = &w["capabilities"];
            let gpus = caps["gpu_names"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into());
            let packages = caps["packages"].as_array().map(Vec::len).unwrap_or(0);
            vec![
                w["worker_id"].as_str().unwrap_or("").to_string(),
                w["slots"].to_string(),
                w["running"].to_string(),
                gpus,
                packages.to_string(),
                if w["live"].as_bool().unwrap_or(false) {
                    "yes"
                } else {
                    "no"
                }
                .to_string(),
                w["last_seen"].as_i64().map(output::ago).unwrap_or_default(),
            ]
        })
        .collect();
    println!(
        "{}",
        output::table(
            &[
                "WORKER",
                "SLOTS",
                "RUNNING",
                "GPUS",
                "PACKAGES",
                "LIVE",
                "LAST SEEN"
            ],
            &rows
        )
    );
    println!("{} live slot(s)", body["live_slots"]);
    Ok(())
}
