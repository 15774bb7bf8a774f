//! `crpc token`: mint a JWT with a local server's secret.
use std::path::PathBuf;

use crpc_service::auth::{mint, Secret};

use crate::cli::TokenArgs;
use crate::error::{CliError, CliResult};

/// Runs the command: prints the token.
pub fn run(args: &TokenArgs, recorded: Option<PathBuf>) -> CliResult {
    let inline = std::env::var("CRPC_JWT_SECRET")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let secret = match inline {
        Some(s) => Secret::new(s.trim().as_bytes().to_vec()),
        None => {
            let dir = args.data_dir.clone().or(recorded).ok_or_else(|| {
                CliError::Other(
                    "which server? pass --data-dir (the server's data directory), or start \
                     `crpc dev`, which records it in the config file"
                        .into(),
                )
            })?;
            let file = dir.join("jwt_secret");
            if !file.is_file() {
                return Err(CliError::Other(format!(
                    "{} has no jwt_secret: start the server (or `crpc dev`) there first",
                    dir.display()
                )));
            }
            Secret::load(None, Some(&file), &dir)?
        }
    };
    println!("{}", mint(&secret, &args.sub, args.role, args.ttl)?);
    Ok(())
}
