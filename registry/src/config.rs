//! Command line and environment.
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// crpc package registry: publish, resolve by semver, download, yank.
#[derive(Debug, Clone, Parser)]
#[command(name = "task-registry", version, about)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (the real one is printed).
    #[arg(long, env = "CRPC_REGISTRY_BIND", default_value = "127.0.0.1:7701")]
    pub bind: SocketAddr,
    /// Directory for metadata (SQLite) and archives (blobs/).
    #[arg(
        long,
        env = "CRPC_REGISTRY_DATA_DIR",
        default_value = "./crpc-registry"
    )]
    pub data_dir: PathBuf,
    /// Metadata database URL: `sqlite:PATH` or `postgres://…` (default: DATA_DIR/registry.db).
    #[arg(long, env = "CRPC_REGISTRY_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the JWT secret shared with the task server (e.g. its DATA_DIR/jwt_secret);
    /// default DATA_DIR/jwt_secret, generated on first start. CRPC_JWT_SECRET overrides both.
    #[arg(long, env = "CRPC_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Accept every request as admin `anonymous`. Local experiments only.
    #[arg(long)]
    pub no_auth: bool,
    /// Largest archive accepted at publish, bytes (413 past it).
    #[arg(long, env = "CRPC_MAX_ARCHIVE_BYTES", default_value_t = 64 << 20)]
    pub max_archive_bytes: usize,
    /// Most entries in an archive.
    #[arg(long, env = "CRPC_MAX_ARCHIVE_ENTRIES", default_value_t = 10_000)]
    pub max_entries: usize,
    /// Most bytes an archive may unpack to.
    #[arg(long, env = "CRPC_MAX_UNPACKED_BYTES", default_value_t = 512 << 20)]
    pub max_unpacked_bytes: u64,
    /// Requests per second one token may make (sustained; 0: no limit). Past it: 429 with
    /// Retry-After.
    #[arg(long, env = "CRPC_REGISTRY_RATE_LIMIT", default_value_t = 500)]
    pub rate_limit: u32,
    /// Requests one token may make in a burst above --rate-limit.
    #[arg(long, env = "CRPC_REGISTRY_RATE_BURST", default_value_t = 1_000)]
    pub rate_burst: u32,
    /// PEM certificate chain: serve HTTPS (with --tls-key). Without it, plain HTTP (put a TLS
    /// reverse proxy in front when clients cross a network).
    #[arg(long, env = "CRPC_REGISTRY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CRPC_REGISTRY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "CRPC_LOG_JSON")]
    pub log_json: bool,
}

impl Default for Args {
    /// The declared defaults (no flags, no environment).
    fn default() -> Self {
        crpc_service::config::defaults("task-registry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_built_settings_start_from_the_declared_defaults() {
        let d = Args::default();
        assert_eq!(d.bind, "127.0.0.1:7701".parse().unwrap());
        assert_eq!(d.max_archive_bytes, 64 << 20);
        assert_eq!((d.rate_limit, d.rate_burst), (500, 1000));
    }
}
