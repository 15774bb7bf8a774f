//! `crpc result ID`: the answer now, without waiting.
use crate::client::Api;
use crate::commands::answers;
use crate::error::CliResult;

/// Runs the command.
pub async fn run(api: &Api, id: &str, json: bool) -> CliResult {
    let a = api.answer(id, 0.0).await?;
    answers::report(&a, json)
}
