//! `crpc stats`: runtime statistics per function.
use serde_json::Value;

use crate::client::Api;
use crate::commands::estimate::name;
use crate::error::CliResult;
use crate::output;

/// Runs the command.
pub async fn run(api: &Api, json: bool) -> CliResult {
    let body: Value = api.get("/user/stats").await?;
    if json {
        output::json_line(&body);
        return Ok(());
    }
    let ms = |v: &Value| {
        v.as_f64()
            .map(|m| output::seconds(m / 1000.0))
            .unwrap_or_default()
    };
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = body["functions"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|f| {
            vec![
                name(f),
                f["count"].to_string(),
                f["failures"].to_string(),
                ms(&f["mean_ms"]),
                ms(&f["p50_ms"]),
                ms(&f["p95_ms"]),
            ]
        })
        .collect();
    println!(
        "{}",
        output::table(&["FUNCTION", "RUNS", "FAILED", "MEAN", "P50", "P95"], &rows)
    );
    Ok(())
}
