//! `crpc broadcast PACKAGE PAYLOAD`: sends a payload to every loaded instance of a package on
//! every processor (an `admin` token), then follows the processors' reports.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use task_api::{BroadcastCreated, BroadcastStatus, NewBroadcast};

use crate::cli::BroadcastArgs;
use crate::client::Api;
use crate::error::{CliError, CliResult};
use crate::output;

/// Runs the command.
pub async fn run(api: &Api, a: &BroadcastArgs, json: bool) -> CliResult {
    let body = NewBroadcast {
        package: a.package.clone(),
        version: a.version.clone(),
        payload: crate::spec::parse_arg(&a.payload),
    };
    let made: BroadcastCreated = api.post("/admin/broadcast", &body).await?;
    let id = made.broadcast.id;
    if !json {
        println!(
            "broadcast {id} to {} live processor(s)",
            made.live_processors.len()
        );
    }
    let waiting: BTreeSet<String> = made.live_processors.into_iter().collect();
    let until = Instant::now() + a.wait;
    let mut seen = BTreeSet::new();
    loop {
        let status: BroadcastStatus = api.get(&format!("/admin/broadcasts/{id}")).await?;
        for r in &status.applied {
            if seen.insert(r.worker_id.clone()) && !json {
                let error = r.error.as_deref().map(|e| format!(" (error: {e})"));
                println!(
                    "{}: applied to {} instance(s){}",
                    r.worker_id,
                    r.instances,
                    error.unwrap_or_default()
                );
            }
        }
        let missing: Vec<&String> = waiting.difference(&seen).collect();
        if missing.is_empty() || a.wait.is_zero() {
            if json {
                output::json_line(&status);
            }
            return Ok(());
        }
        if Instant::now() >= until {
            if json {
                output::json_line(&status);
            }
            return Err(CliError::Timeout(format!(
                "not reported after {:?} by: {}",
                a.wait,
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
