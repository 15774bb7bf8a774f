//! HTTP plumbing shared by the crpc services (task server, registry): JWT auth and roles, the one
//! JSON error body, size-limited JSON bodies, JSON 404/405, tracing set-up.
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod fs;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod tls;

/// The text of `queries/<dialect>/<name>.sql` under the calling crate's directory, for the
/// per-dialect SQL files of the services' stores: `sql_file!("sqlite", "claim")`.
#[macro_export]
macro_rules! sql_file {
    ($dir:literal, $name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/queries/",
            $dir,
            "/",
            $name,
            ".sql"
        ))
    };
}

/// Logs to stderr: text (coloured on a TTY) or JSON lines; level from `CRPC_LOG` (default info).
pub fn init_tracing(json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CRPC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). Every binary stops on this; `crpc dev` uses it once
/// and stops its parts in order.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
