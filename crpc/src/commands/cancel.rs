//! `crpc cancel ID…`.
use crate::client::Api;
use crate::error::CliResult;
use crate::output;

/// Runs the command; the first failure decides the exit code, the rest are still tried.
pub async fn run(api: &Api, ids: &[String], json: bool) -> CliResult {
    let mut first_error = None;
    for id in ids {
        match api.cancel(id).await {
            Ok(v) if json => output::json_line(&v),
            Ok(_) => println!("{id}  cancelled"),
            Err(e) => {
                if ids.len() > 1 {
                    eprintln!("crpc: {id}: {e}");
                }
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
