//! `crpc submit PKG.FUNC ARG… [--wait]`.
use std::time::Instant;

use crate::cli::SubmitArgs;
use crate::client::Api;
use crate::commands::{answers, files};
use crate::error::CliResult;
use crate::{output, spec};

/// Runs the command: prints the id (or, with --wait, the answer).
pub async fn run(api: &Api, args: &SubmitArgs, json: bool) -> CliResult {
    let mut values = Vec::with_capacity(args.args.len());
    for a in &args.args {
        values.push(match a.strip_prefix('@') {
            Some(rest) if rest.starts_with('@') => serde_json::Value::String(rest.to_string()),
            Some(path) => files::upload(api, std::path::Path::new(path)).await?.file,
            None => spec::parse_arg(a),
        });
    }
    let mut body = spec::build(
        &args.target,
        values,
        spec::parse_kwargs(args.opts.kwargs.as_deref())?,
        &args.opts,
    )?;
    body.idempotency_key = args.idempotency_key.clone();
    let submitted = api.submit(&body).await?;
    let id = submitted.id.to_string();
    if !args.wait {
        if json {
            output::json_line(&submitted);
        } else {
            println!("{id}");
        }
        return Ok(());
    }
    let deadline = args.timeout.map(|t| Instant::now() + t);
    let bar = answers::progress_bar();
    let waited = answers::wait_one(api, &id, deadline, Some(&bar)).await;
    bar.finish_and_clear();
    let a = waited?;
    if !a.state.is_terminal() {
        return Err(crate::error::CliError::Timeout(format!(
            "--timeout ran out: task {id} is still {} (`crpc wait {id}` to keep waiting)",
            a.state
        )));
    }
    answers::report(&a, json)
}
