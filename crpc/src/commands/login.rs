//! `crpc login`: check the server answers and save server, registry and token.
use crate::client::{check_url, Api};
use crate::config::{self, Settings};
use crate::error::{CliError, CliResult};

/// Runs the command.
pub async fn run(s: &Settings) -> CliResult {
    check_url("server", &s.server)?;
    check_url("registry", &s.registry)?;
    let token = s.token.clone().ok_or_else(|| {
        CliError::Other("no token to save: pass --token or set CRPC_TOKEN".into())
    })?;
    // Through the one client, so a private CA given with --ca-cert is trusted here too.
    let _: task_api::HealthResponse = Api::new(&s.server, None)?.get("/livez").await?;
    let mut cfg = config::load()?;
    cfg.server = Some(s.server.clone());
    cfg.registry = Some(s.registry.clone());
    cfg.token = Some(token);
    // A registry token given now replaces the saved one; otherwise `token` serves both.
    cfg.registry_token = s
        .registry_token
        .clone()
        .filter(|t| Some(t) != cfg.token.as_ref());
    let path = config::save(&cfg)?;
    println!(
        "saved server {} and registry {} to {}",
        s.server,
        s.registry,
        path.display()
    );
    Ok(())
}
