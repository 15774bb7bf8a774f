//! `crpc stats`: runtime statistics per function.
use task_api::StatsResponse;

use crate::client::Api;
use crate::commands::estimate::name;
use crate::error::CliResult;
use crate::output;

/// Runs the command.
pub async fn run(api: &Api, json: bool) -> CliResult {
    let body: StatsResponse = api.get("/user/stats").await?;
    if json {
        output::json_line(&body);
        return Ok(());
    }
    let ms = |v: Option<f64>| v.map(|m| output::seconds(m / 1000.0)).unwrap_or_default();
    let rows: Vec<Vec<String>> = body
        .functions
        .iter()
        .map(|f| {
            vec![
                name(f.package.as_deref(), f.version.as_deref(), &f.function),
                f.count.to_string(),
                f.failures.to_string(),
                ms(Some(f.mean_ms)),
                ms(f.p50_ms),
                ms(f.p95_ms),
            ]
        })
        .collect();
    println!(
        "{}",
        output::table(&["FUNCTION", "RUNS", "FAILED", "MEAN", "P50", "P95"], &rows)
    );
    Ok(())
}
