//! Waiting for tasks and reporting their answers (`submit --wait`, `result`, `wait`).
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use task_api::{AnswerResponse, TaskState};

use crate::client::{Api, MAX_WAIT_S};
use crate::error::{CliError, CliResult};
use crate::output;

/// Long-polls until the task is terminal, or `deadline` passes (then the last state seen).
/// With a progress bar, polls every second so the bar follows the worker's progress.
pub async fn wait_one(
    api: &Api,
    id: &str,
    deadline: Option<Instant>,
    bar: Option<&ProgressBar>,
) -> CliResult<AnswerResponse> {
    loop {
        let left = deadline
            .map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64())
            .unwrap_or(MAX_WAIT_S);
        let wait = if bar.is_some() {
            left.min(1.0)
        } else {
            left.min(MAX_WAIT_S)
        };
        let a = api.answer(id, wait).await?;
        if let Some(bar) = bar {
            bar.set_position(a.progress.unwrap_or(0.0).round() as u64);
            bar.set_message(a.state.as_str());
        }
        if a.state.is_terminal() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(a);
        }
    }
}

/// A 0–100 % bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(100);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:30} {pos:>3}% {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The one-line reason a finished task did not succeed.
pub fn failure_line(a: &AnswerResponse) -> String {
    match &a.error {
        Some(e) => format!(
            "task {} {} after {} attempt(s): {}: {}",
            a.id,
            a.state,
            a.attempt,
            serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            e.message
        ),
        None => format!("task {} {}", a.id, a.state),
    }
}

/// Prints one task's answer; the error says how it ended when it did not succeed.
pub fn report(a: &AnswerResponse, json: bool) -> CliResult {
    if json {
        output::json_line(a);
    }
    match a.state {
        TaskState::Succeeded => {
            if !json {
                println!(
                    "{}",
                    output::human(a.answer.as_ref().unwrap_or(&serde_json::Value::Null))
                );
            }
            Ok(())
        }
        s if s.is_terminal() => Err(CliError::TaskFailed(failure_line(a))),
        s => Err(CliError::NotFinished(format!(
            "task {} is {}{}",
            a.id,
            s,
            a.progress
                .map(|p| format!(" ({p:.0}% done)"))
                .unwrap_or_default()
        ))),
    }
}
