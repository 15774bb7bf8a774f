//! `crpc wait ID…`: every answer as it arrives; exit 3 if any task failed, 124 on --timeout.
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::cli::WaitArgs;
use crate::client::Api;
use crate::commands::answers;
use crate::error::{CliError, CliResult};
use crate::output;

/// Runs the command.
pub async fn run(api: &Api, args: &WaitArgs, json: bool) -> CliResult {
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let single = args.ids.len() == 1;
    let mut pending: FuturesUnordered<_> = args
        .ids
        .iter()
        .map(|id| async move { (id, answers::wait_one(api, id, deadline, None).await) })
        .collect();
    let (mut failed, mut unfinished, mut first_error) = (0usize, Vec::new(), None);
    while let Some((id, got)) = pending.next().await {
        let a = match got {
            Ok(a) => a,
            Err(e) => {
                eprintln!("crpc: {id}: {e}");
                first_error.get_or_insert(e);
                continue;
            }
        };
        if !a.state.is_terminal() {
            unfinished.push(id.clone());
            continue;
        }
        if json {
            output::json_line(&a);
        } else if single {
            answers::report(&a, false)?;
            continue;
        } else {
            let text = match &a.answer {
                Some(v) => output::human(v),
                None => a
                    .error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            };
            println!("{}  {}  {}", a.id, a.state, text);
        }
        if a.state != task_api::TaskState::Succeeded {
            if !json {
                eprintln!("crpc: {}", answers::failure_line(&a));
            }
            failed += 1;
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if !unfinished.is_empty() {
        return Err(CliError::Timeout(format!(
            "--timeout ran out; not finished: {}",
            unfinished.join(" ")
        )));
    }
    if failed > 0 {
        return Err(CliError::TaskFailed(format!(
            "{failed} of {} task(s) did not succeed",
            args.ids.len()
        )));
    }
    Ok(())
}
