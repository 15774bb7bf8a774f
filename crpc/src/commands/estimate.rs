//! `crpc estimate [--task ID]`: how long the queue (or one task) will take.
use task_api::{EstimateResponse, FunctionEstimate};

use crate::client::Api;
use crate::error::CliResult;
use crate::output;

/// Runs the command.
pub async fn run(api: &Api, task: Option<&str>, json: bool) -> CliResult {
    let path = match task {
        Some(id) => format!("/user/estimate_time_left?task_id={id}"),
        None => "/user/estimate_time_left".to_string(),
    };
    let e: EstimateResponse = api.get(&path).await?;
    if json {
        output::json_line(&e);
        return Ok(());
    }
    let subject = match task {
        Some(id) => format!("task {id}"),
        None => "the queue".to_string(),
    };
    let slots = e.live_slots.unwrap_or(0);
    let eta = match e.eta.eta_s {
        Some(eta) if slots > 0 || e.time == 0.0 => format!(
            "{} (80% between {} and {})",
            output::seconds(eta),
            output::seconds(e.eta.eta_p10_s.unwrap_or(eta)),
            output::seconds(e.eta.eta_p90_s.unwrap_or(eta))
        ),
        _ if e.time == 0.0 => output::seconds(0.0),
        _ => "never: no processor is connected".to_string(),
    };
    let waiting = match e.waiting {
        0 => String::new(),
        n => format!(", {n} waiting for other tasks"),
    };
    println!(
        "{subject}: {} queued, {} running{waiting}; done in about {eta} on {slots} live slot(s) \
         ({} of work on one core; confidence {:.0}%)",
        e.queued,
        e.running,
        output::seconds(e.time),
        e.confidence * 100.0
    );
    for b in e.backlog.iter().filter(|b| b.queued + b.running > 0) {
        let drain = match b.backlog_s {
            Some(s) => format!("{} on {} slot(s)", output::seconds(s), b.slots),
            None => "never: no live slot of this class".into(),
        };
        println!(
            "  {} backlog: {} queued, {} running, {drain}",
            b.class, b.queued, b.running
        );
    }
    if !e.per_function.is_empty() {
        let rows: Vec<Vec<String>> = e.per_function.iter().map(row).collect();
        let head = ["FUNCTION", "QUEUED", "RUNNING", "MEAN", "MODEL", "WORK"];
        println!("{}", output::table(&head, &rows));
    }
    Ok(())
}

fn row(p: &FunctionEstimate) -> Vec<String> {
    vec![
        name(p.package.as_deref(), p.version.as_deref(), &p.function),
        p.queued.to_string(),
        p.running.to_string(),
        if p.known {
            output::seconds(p.mean_ms / 1000.0)
        } else {
            "unknown".into()
        },
        model(p),
        output::seconds(p.time),
    ]
}

/// What the function's estimate is based on, for people.
fn model(p: &FunctionEstimate) -> String {
    let pct = (p.confidence * 100.0).round();
    match p.model.as_str() {
        "mean" => format!("mean: no argument explains the runtime ({pct}%)"),
        "prior" | "" => "never ran: the mean of all functions".into(),
        m => format!("{m} ({pct}%)"),
    }
}

/// `package@version.function`, as tables show a function.
pub fn name(package: Option<&str>, version: Option<&str>, function: &str) -> String {
    let mut out = String::new();
    if let Some(pkg) = package {
        out.push_str(pkg);
        if let Some(v) = version {
            out.push('@');
            out.push_str(v);
        }
        out.push('.');
    }
    out.push_str(function);
    out
}
