//! `crpc dev`: the task server, the registry and one processor in one process, on SQLite files
//! in one data directory, with the example packages published and a token printed — the whole
//! system on one machine with nothing to set up.
//!
//! Layout of `--data-dir`: `crpc.db` and `jwt_secret` (the server's, as `task-server --data-dir`
//! would have them), `registry/` (metadata and archives), `cache/` (the processor's packages).
//! Ctrl-C stops the processor first (running tasks finish and their answers are delivered), then
//! the server and the registry. Their configurations are built here in code from the services'
//! declared defaults; the services' own `CRPC_*` variables do not apply inside `crpc dev`.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crpc_package::client::RegistryClient;
use crpc_service::auth::{mint, Secret};
use task_api::Role;
use tokio::sync::oneshot;

use crate::cli::DevArgs;
use crate::commands::packaging;
use crate::config::{self, FileConfig};
use crate::error::{CliError, CliResult};

/// Lifetime of the tokens `crpc dev` mints.
const TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Runs the command until Ctrl-C or SIGTERM.
pub fn run(args: DevArgs) -> CliResult {
    crpc_service::init_tracing(args.log_json);
    actix_web::rt::System::new().block_on(dev(args))
}

fn bind_error(what: &str, addr: std::net::SocketAddr, flag: &str, e: anyhow::Error) -> CliError {
    let text = format!("{e:#}");
    if text.contains("in use") {
        CliError::Other(format!(
            "cannot start the {what} on {addr}: the address is in use (another `crpc dev` or \
             server?); pass {flag} 127.0.0.1:0 for any free port"
        ))
    } else {
        CliError::Other(format!("cannot start the {what}: {text}"))
    }
}

async fn dev(args: DevArgs) -> CliResult {
    let started = Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| CliError::Other(format!("cannot create {}: {e}", args.data_dir.display())))?;
    let data = args.data_dir.canonicalize()?;
    let inline = std::env::var("CRPC_JWT_SECRET").ok();
    let secret = Secret::load(inline.as_deref(), None, &data)?;
    let secret_file = data.join("jwt_secret");

    // The registry first: the server resolves tasks against it.
    let reg_args = registry::config::Args {
        bind: args.registry_bind,
        data_dir: data.join("registry"),
        jwt_secret_file: secret_file.is_file().then(|| secret_file.clone()),
        ..Default::default()
    };
    let registry = registry::Application::build(reg_args)
        .await
        .map_err(|e| bind_error("registry", args.registry_bind, "--registry-bind", e))?;
    let registry_url = format!("http://{}", registry.addr());

    let server_args = task_server::config::ServeArgs {
        bind: args.bind,
        data_dir: data.clone(),
        registry: Some(registry_url.clone()),
        ..Default::default()
    };
    let server = task_server::Application::build(server_args)
        .await
        .map_err(|e| bind_error("server", args.bind, "--bind", e))?;
    let server_url = format!("http://{}", server.addr());

    let (stop_registry, registry_stopped) = oneshot::channel::<()>();
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let registry_task = actix_web::rt::spawn(registry.run_until(async move {
        let _ = registry_stopped.await;
    }));
    let server_task = actix_web::rt::spawn(server.run_until(async move {
        let _ = server_stopped.await;
    }));

    // The shell gets a user token for tasks and a publisher token for the registry; nothing it
    // exports can act as admin (`crpc token --role admin` mints one when needed).
    let user = mint(&secret, "dev", Role::User, TOKEN_TTL)?;
    let publisher = mint(&secret, "dev", Role::Publisher, TOKEN_TTL)?;
    let processor = if args.no_processor {
        None
    } else {
        let token = mint(&secret, "dev-processor", Role::Worker, TOKEN_TTL)?;
        Some(start_processor(&args, &data, &server_url, &registry_url, token).await?)
    };

    let mut published = Vec::new();
    if !args.no_examples {
        if let Some(dir) = examples_dir(args.examples.as_deref()) {
            let client = RegistryClient::new(&registry_url, Some(publisher.clone()));
            published = publish_examples(&client, &dir).await;
        } else if args.examples.is_some() {
            tracing::warn!("--examples: no such directory; no example packages published");
        }
    }

    if !args.no_config {
        let cfg = FileConfig {
            server: Some(server_url.clone()),
            registry: Some(registry_url.clone()),
            token: Some(user.clone()),
            registry_token: Some(publisher.clone()),
            data_dir: Some(data.clone()),
        };
        match config::save(&cfg) {
            Ok(p) => {
                tracing::info!(path = %p.display(), "saved server, registry and token for the crpc CLI")
            }
            Err(e) => tracing::warn!(error = %e, "could not write the config file"),
        }
    }

    let mut out = std::io::stdout().lock();
    if let Some(bin) = bin_dir_missing_from_path() {
        writeln!(out, "export PATH=\"{}:$PATH\"", bin.display())?;
    }
    writeln!(out, "export CRPC_SERVER={server_url}")?;
    writeln!(out, "export CRPC_REGISTRY={registry_url}")?;
    writeln!(out, "export CRPC_TOKEN={user}")?;
    writeln!(out, "export CRPC_REGISTRY_TOKEN={publisher}")?;
    out.flush()?;
    drop(out);
    eprintln!(
        "crpc dev: ready in {:.1}s: server {server_url}, registry {registry_url}, {}; examples: {}; \
         data in {}. Paste the export lines above into another terminal. Ctrl-C stops.",
        started.elapsed().as_secs_f64(),
        match &processor {
            Some(p) => format!("processor `{}` with {} slot(s)", p.worker_id, p.slots),
            None => "no processor".into(),
        },
        if published.is_empty() { "none".to_string() } else { published.join(", ") },
        data.display()
    );

    let processor_result = match processor {
        Some(mut p) => {
            tokio::select! {
                _ = crpc_service::shutdown_signal() => {
                    eprintln!("crpc dev: stopping (running tasks finish first)");
                    let _ = p.stop.send(());
                    p.done.await.unwrap_or_else(|_| Err("processor thread ended".into()))
                }
                r = &mut p.done => {
                    r.unwrap_or_else(|_| Err("processor thread ended".into()))
                }
            }
        }
        None => {
            crpc_service::shutdown_signal().await;
            eprintln!("crpc dev: stopping");
            Ok(())
        }
    };
    let _ = stop_server.send(());
    let _ = stop_registry.send(());
    if let Ok(Err(e)) = server_task.await {
        tracing::warn!(error = %e, "server stopped with an error");
    }
    if let Ok(Err(e)) = registry_task.await {
        tracing::warn!(error = %e, "registry stopped with an error");
    }
    processor_result.map_err(|e| CliError::Other(format!("processor: {e}")))
}

/// This executable's directory (where `crpc` and `task-processor` were built), when `PATH` does
/// not already hold it: the export lines then put both on the `PATH` of another terminal.
fn bin_dir_missing_from_path() -> Option<PathBuf> {
    let dir = std::env::current_exe()
        .ok()?
        .parent()?
        .canonicalize()
        .ok()?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let listed = std::env::split_paths(&path).any(|p| p.canonicalize().ok().as_ref() == Some(&dir));
    (!listed).then_some(dir)
}

struct RunningProcessor {
    worker_id: String,
    slots: usize,
    stop: oneshot::Sender<()>,
    done: oneshot::Receiver<Result<(), String>>,
}

/// Starts the processor on a runtime of its own thread (the HTTP services keep actix's).
async fn start_processor(
    args: &DevArgs,
    data: &Path,
    server: &str,
    registry: &str,
    token: String,
) -> CliResult<RunningProcessor> {
    let config = task_processor::config::Config {
        server: server.into(),
        registry: registry.into(),
        token: Some(token),
        cache_dir: Some(data.join("cache")),
        cpu_slots: args.cpu_slots,
        ..Default::default()
    };
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(String, usize), String>>();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done) = oneshot::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("crpc-dev-processor".into())
        .spawn(move || {
            let result = match tokio::runtime::Runtime::new() {
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    Err(e.to_string())
                }
                Ok(rt) => rt.block_on(async move {
                    match task_processor::build_from_config(&config) {
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            Err(format!("{e:#}"))
                        }
                        Ok(p) => {
                            let slots = p.slot_count();
                            let _ = ready_tx.send(Ok((p.worker_id().to_string(), slots)));
                            p.run(async move {
                                let _ = stop_rx.await;
                            })
                            .await
                            .map_err(|e| format!("{e:#}"))
                        }
                    }
                }),
            };
            let _ = done_tx.send(result);
        })?;
    let (worker_id, slots) = ready_rx
        .await
        .map_err(|_| CliError::Other("the processor thread died while starting".into()))?
        .map_err(|e| CliError::Other(format!("cannot start the processor: {e}")))?;
    Ok(RunningProcessor {
        worker_id,
        slots,
        stop,
        done,
    })
}

/// `--examples`, else `./examples`, else the source tree's `examples/`.
fn examples_dir(given: Option<&Path>) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match given {
        Some(p) => vec![p.to_path_buf()],
        None => vec![
            PathBuf::from("examples"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"),
        ],
    };
    candidates.into_iter().find(|p| p.is_dir())
}

/// Publishes every package directory under `dir` (those already there are left as they are);
/// returns `name version` of each one available.
async fn publish_examples(client: &RegistryClient, dir: &Path) -> Vec<String> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("crpc.toml").is_file())
            .collect(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the examples");
            return Vec::new();
        }
    };
    dirs.sort();
    let mut out = Vec::new();
    for pkg in dirs {
        let built = match packaging::build_dir(&pkg, false) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(
                    example = %pkg.display(),
                    "not published: {e}; ./scripts/build-examples builds the examples"
                );
                continue;
            }
        };
        let (name, version) = (built.manifest.name.clone(), built.manifest.version.clone());
        match client.publish(&name, &version, built.bytes, None).await {
            Ok(_) => tracing::info!(%name, %version, "published example package"),
            Err(e) if e.status() == Some(409) => {
                tracing::info!(%name, %version, "example package already published")
            }
            Err(e) => {
                tracing::warn!(%name, %version, error = %e, "could not publish example package");
                continue;
            }
        }
        out.push(format!("{name} {version}"));
    }
    out
}
