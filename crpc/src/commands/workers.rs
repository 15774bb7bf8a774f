//! `crpc workers`: processors, their slots and what they hold.
use serde_json::Value;
use task_api::{WorkerView, WorkersResponse};

use crate::client::Api;
use crate::error::CliResult;
use crate::output;

/// Runs the command.
pub async fn run(api: &Api, all: bool, json: bool) -> CliResult {
    let path = if all {
        "/user/workers?all=true"
    } else {
        "/user/workers"
    };
    let body: WorkersResponse = api.get(path).await?;
    if json {
        output::json_line(&body);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = body.workers.iter().map(row).collect();
    let head = [
        "WORKER",
        "SLOTS",
        "RUNNING",
        "GPUS",
        "SPEED",
        "PACKAGES",
        "LIVE",
        "LAST SEEN",
    ];
    println!("{}", output::table(&head, &rows));
    println!("{} live slot(s)", body.live_slots);
    Ok(())
}

fn row(v: &WorkerView) -> Vec<String> {
    let w = &v.worker;
    // Capabilities are shown as the processor sent them; a field it left out is empty here.
    let caps = &w.capabilities;
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
        w.worker_id.clone(),
        w.slots.to_string(),
        w.running.to_string(),
        gpus,
        // Its runtimes against the predictions: 2.00 = twice as slow as the fleet's average.
        w.speed.map_or_else(|| "-".into(), |s| format!("{s:.2}")),
        packages.to_string(),
        if v.live { "yes" } else { "no" }.to_string(),
        output::ago(w.last_seen),
    ]
}
