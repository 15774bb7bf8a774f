//! `crpc tasks`: your tasks, newest first.
use task_api::{TaskListResponse, TaskView};

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
    let body: TaskListResponse = api.get(&path).await?;
    if json {
        output::json_line(&body);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = body.tasks.iter().map(row).collect();
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

fn row(t: &TaskView) -> Vec<String> {
    let function =
        crate::commands::estimate::name(t.package.as_deref(), t.version.as_deref(), &t.function);
    vec![
        t.id.to_string(),
        function,
        t.state.to_string(),
        t.progress.map(|p| format!("{p:.0}%")).unwrap_or_default(),
        format!("{}/{}", t.attempt, t.max_attempts),
        output::ago(t.created_at),
        t.runtime_ms
            .map(|ms| output::seconds(ms / 1000.0))
            .unwrap_or_default(),
    ]
}
