//! Building and running the application: `Application::build(args)` binds (port 0 allowed) and
//! returns a handle with the real port; `run_until_stopped` serves until SIGTERM/SIGINT, then
//! drains: long-polls return at once, in-flight requests finish, pending writes commit.
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Secret};
use crate::config::ServeArgs;
use crate::files::{Blobs, Files, FilesConfig};
use crate::queue::{Queue, QueueConfig};
use crate::resolver::Resolver;
use crate::routes::{self, Limits};
use crate::store::{PgStore, SqliteStore, Store, StoreConfig};

/// A bound, not yet running server.
pub struct Application {
    addr: SocketAddr,
    https: bool,
    server: Server,
    queue: Arc<Queue>,
    shutdown: CancellationToken,
    reaper: tokio::task::JoinHandle<()>,
    /// The `--metrics-bind` listener.
    metrics: Option<Server>,
}

impl Application {
    /// Opens the store, loads the secret, binds the listener.
    pub async fn build(args: ServeArgs) -> anyhow::Result<Application> {
        crpc_service::fs::private_dir(&args.data_dir)?;
        if let Some(ca) = &args.ca_cert {
            crpc_http::trust_ca_file(ca).map_err(|e| anyhow::anyhow!(e))?;
        }
        let store = open_store(&args).await?;
        let files = open_files(&args, store.clone())?;
        let secret = load_secret(&args)?;
        let auth = match &secret {
            None => {
                tracing::warn!("AUTHENTICATION IS DISABLED (--no-auth): anyone who can reach this port is admin");
                Authenticator::Disabled
            }
            Some(s) => Authenticator::jwt(s),
        };
        let resolver = args.registry.as_deref().map(|url| {
            tracing::info!(
                registry = url,
                "tasks are resolved against the package registry"
            );
            Arc::new(Resolver::new(
                url,
                args.registry_token.clone(),
                secret.clone(),
            ))
        });
        let shutdown = CancellationToken::new();
        let queue = Arc::new(Queue::new(
            store,
            QueueConfig {
                lease_ttl: args.lease_ttl,
                default_max_attempts: args.max_attempts.clamp(1, 100),
                max_batch_tasks: args.max_batch_tasks,
                max_queued_per_owner: args.max_queued_per_owner,
                max_user_wait: args.max_user_wait,
                max_worker_wait: args.max_worker_wait,
                ..QueueConfig::default()
            },
            shutdown.clone(),
            resolver,
        ));
        queue.forward_store_events();
        let reaper = tokio::spawn(crate::reaper::run(
            queue.clone(),
            files.clone(),
            args.reap_interval,
            shutdown.clone(),
        ));
        crpc_service::metrics::handle();
        let (addr, https, server) = serve(&args, queue.clone(), files, auth)?;
        let metrics = match args.metrics_bind {
            Some(at) => Some(metrics_listener(at, queue.clone())?),
            None => None,
        };
        Ok(Application {
            addr,
            https,
            server,
            queue,
            shutdown,
            reaper,
            metrics,
        })
    }

    /// The bound address (real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://ADDR` with --tls-cert.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves until SIGTERM/SIGINT, then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let token = self.shutdown.clone();
        self.run_until(wait_for_signal(token)).await
    }

    /// Serves until `stop` resolves (no signal handling: the embedder owns the signals, as
    /// `crpc dev` does to stop its processor before the server), then drains.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let shutdown = self.shutdown.clone();
        let metrics = self.metrics.map(|m| {
            let h = m.handle();
            tokio::spawn(m);
            h
        });
        tokio::spawn(async move {
            stop.await;
            tracing::info!("shutting down: draining in-flight requests");
            shutdown.cancel();
            if let Some(m) = metrics {
                m.stop(false).await;
            }
            handle.stop(true).await;
        });
        self.server.await?;
        self.shutdown.cancel();
        let _ = self.reaper.await;
        self.queue.store().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn wait_for_signal(token: CancellationToken) {
    tokio::select! {
        _ = crpc_service::shutdown_signal() => {}
        _ = token.cancelled() => {}
    }
}

/// The store `--database-url` names (SQLite under the data dir by default).
/// The file service over `--blob-store`.
fn open_files(args: &ServeArgs, store: Arc<dyn Store>) -> anyhow::Result<Arc<Files>> {
    let blobs = Blobs::open(args.blob_store.as_deref(), &args.data_dir)?;
    tracing::info!(at = %blobs.location, "task files are kept in the blob store");
    let mib = |m: u64| m.saturating_mul(1 << 20);
    let cfg = FilesConfig {
        max_file_bytes: mib(args.max_file_mb.max(1)),
        quota_bytes: mib(args.file_quota_mb),
        ttl: args.blob_ttl,
    };
    Ok(Arc::new(Files::new(blobs, store, cfg)))
}

async fn open_store(args: &ServeArgs) -> anyhow::Result<Arc<dyn Store>> {
    let cfg = StoreConfig {
        backoff_base_ms: args.retry_backoff.as_millis() as i64,
        backoff_max_ms: args.retry_backoff_max.as_millis() as i64,
        default_result_ttl_s: args.result_ttl.as_secs() as i64,
        ..StoreConfig::default()
    };
    Ok(match args.database_url.as_deref() {
        None => {
            let db = args.data_dir.join("crpc.db");
            crpc_service::fs::private_file(&db)?;
            Arc::new(SqliteStore::open(&db, cfg).await?)
        }
        Some(url) if url.starts_with("sqlite:") => Arc::new(SqliteStore::open_url(url, cfg).await?),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Arc::new(PgStore::open(url, cfg).await?)
        }
        Some(url) => anyhow::bail!(
            "unsupported --database-url `{}`: use sqlite:PATH or postgres://…",
            url.split('@').next_back().unwrap_or(url)
        ),
    })
}

/// The token secret, unless `--no-auth`.
fn load_secret(args: &ServeArgs) -> anyhow::Result<Option<Secret>> {
    if args.no_auth {
        return Ok(None);
    }
    let inline = std::env::var("CRPC_JWT_SECRET").ok();
    Ok(Some(Secret::load(
        inline.as_deref(),
        args.jwt_secret_file.as_deref(),
        &args.data_dir,
    )?))
}

/// `GET /metrics` without a token on `--metrics-bind`.
fn metrics_listener(at: SocketAddr, queue: Arc<Queue>) -> anyhow::Result<Server> {
    let (bound, server) = crpc_service::metrics::listener(at, move || {
        let queue = queue.clone();
        async move { crate::metrics::render(&queue).await }
    })?;
    tracing::info!("metrics on http://{bound}/metrics (no token: keep this address private)");
    Ok(server)
}

/// Binds the listener (TLS with --tls-cert) and starts the HTTP server on it.
fn serve(
    args: &ServeArgs,
    queue: Arc<Queue>,
    files: Arc<Files>,
    auth: Authenticator,
) -> anyhow::Result<(SocketAddr, bool, Server)> {
    let limits = Limits {
        body_bytes: args.max_body_bytes,
        batch_body_bytes: args.max_batch_body_bytes,
    };
    let listener = TcpListener::bind(args.bind)?;
    let addr = listener.local_addr()?;
    let queue_data = web::Data::from(queue);
    let files_data = web::Data::from(files);
    let auth_data = web::Data::new(Arc::new(auth));
    let rate_data = web::Data::new(crpc_service::limits::Limits::new(
        args.rate_limit,
        args.rate_burst,
        args.max_long_polls_per_token,
    ));
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(crpc_service::metrics::track))
            .app_data(queue_data.clone())
            .app_data(files_data.clone())
            .app_data(auth_data.clone())
            .app_data(rate_data.clone())
            .app_data(routes::query_config())
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                crate::error::ApiError::not_found(format!("path: {err}")).into()
            }))
            .configure(|cfg| routes::configure(cfg, limits))
            .default_service(web::to(routes::not_found))
    })
    .on_connect(routes::peer::on_connect)
    .disable_signals()
    .shutdown_timeout(10)
    .backlog(2048);
    if let Some(n) = args.http_workers {
        server = server.workers(n.max(1));
    }
    let tls = crpc_service::tls::pair(args.tls_cert.as_deref(), args.tls_key.as_deref())?
        .map(|(cert, key)| crpc_service::tls::server_config(cert, key))
        .transpose()?;
    let https = tls.is_some();
    let server = match tls {
        Some(cfg) => server.listen_rustls_0_23(listener, cfg)?,
        None => server.listen(listener)?,
    }
    .run();
    Ok((addr, https, server))
}
