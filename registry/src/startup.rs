//! Building and running the registry.
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use crpc_package::archive::Limits;
use crpc_service::auth::{Authenticator, Secret};

use crate::blobs::Blobs;
use crate::config::Args;
use crate::state::Registry;
use crate::store::{PgRegistry, RegistryStore, SqliteRegistry};

/// A bound registry.
pub struct Application {
    addr: SocketAddr,
    https: bool,
    server: Server,
}

impl Application {
    /// Opens metadata and blobs, loads the secret, binds.
    pub async fn build(args: Args) -> anyhow::Result<Application> {
        crpc_service::fs::private_dir(&args.data_dir)?;
        let store: Arc<dyn RegistryStore> = match args.database_url.as_deref() {
            None => {
                let db = args.data_dir.join("registry.db");
                crpc_service::fs::private_file(&db)?;
                Arc::new(SqliteRegistry::open(&db).await?)
            }
            Some(url) if url.starts_with("sqlite:") => {
                Arc::new(SqliteRegistry::open_url(url).await?)
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Arc::new(PgRegistry::open(url).await?)
            }
            Some(url) => anyhow::bail!(
                "unsupported --database-url `{}`: use sqlite:PATH or postgres://…",
                url.split('@').next_back().unwrap_or(url)
            ),
        };
        let auth = if args.no_auth {
            tracing::warn!("AUTHENTICATION IS DISABLED (--no-auth): anyone who can reach this port can publish");
            Authenticator::Disabled
        } else {
            let inline = std::env::var("CRPC_JWT_SECRET").ok();
            Authenticator::jwt(&Secret::load(
                inline.as_deref(),
                args.jwt_secret_file.as_deref(),
                &args.data_dir,
            )?)
        };
        let registry = Arc::new(Registry {
            store,
            blobs: Blobs::open(&args.data_dir.join("blobs"))?,
            limits: Limits {
                max_entries: args.max_entries,
                max_unpacked_bytes: args.max_unpacked_bytes,
            },
        });
        // Re-verify every stored archive in the background: a corrupt one is logged at start-up
        // and refused (500 blob_corrupt) when downloaded.
        let check = registry.clone();
        tokio::spawn(async move {
            match check.verify_all().await {
                Ok(0) => tracing::info!("all stored archives verified"),
                Ok(n) => tracing::error!(bad = n, "stored archives failed verification"),
                Err(e) => tracing::warn!(error = %e, "could not verify stored archives"),
            }
        });
        let listener = TcpListener::bind(args.bind)?;
        let addr = listener.local_addr()?;
        let data = web::Data::from(registry);
        let auth = web::Data::new(Arc::new(auth));
        let rate = web::Data::new(crpc_service::limits::Limits::new(
            args.rate_limit,
            args.rate_burst,
            0,
        ));
        let max = args.max_archive_bytes;
        let tls = crpc_service::tls::pair(args.tls_cert.as_deref(), args.tls_key.as_deref())?
            .map(|(cert, key)| crpc_service::tls::server_config(cert, key))
            .transpose()?;
        let https = tls.is_some();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(auth.clone())
                .app_data(rate.clone())
                .app_data(crpc_service::http::query_config())
                .configure(|cfg| crate::routes::configure(cfg, max))
                .default_service(web::to(crpc_service::http::not_found))
        })
        .disable_signals()
        .shutdown_timeout(10);
        let server = match tls {
            Some(cfg) => server.listen_rustls_0_23(listener, cfg)?,
            None => server.listen(listener)?,
        }
        .run();
        Ok(Application {
            addr,
            https,
            server,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://ADDR` with --tls-cert.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves until SIGTERM/SIGINT, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(crpc_service::shutdown_signal()).await
    }

    /// Serves until `stop` resolves (the embedder owns the signals), then drains.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let handle = self.server.handle();
        tokio::spawn(async move {
            stop.await;
            tracing::info!("shutting down: draining in-flight requests");
            handle.stop(true).await;
        });
        self.server.await?;
        tracing::info!("stopped");
        Ok(())
    }
}
