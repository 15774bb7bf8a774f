//! Command line and environment: typed, with `--help` for every flag.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use task_api::Role;

/// crpc task server: durable task queue with leases, runtime statistics and estimates.
#[derive(Debug, Parser)]
#[command(name = "task-server", version, about)]
pub struct Cli {
    /// Server settings (used when no subcommand is given).
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Other actions.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a signed JWT for a user, worker, publisher or admin.
    Token(TokenArgs),
}

/// `task-server token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Data directory holding the secret (created with a fresh secret if missing).
    #[arg(long, env = "CRPC_DATA_DIR", default_value = "./crpc-data")]
    pub data_dir: PathBuf,
    /// Role: user, worker, publisher or admin.
    #[arg(long)]
    pub role: Role,
    /// Subject: the user or worker name.
    #[arg(long)]
    pub sub: String,
    /// Lifetime, e.g. 30d, 12h, 90m.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Secret file instead of DATA_DIR/jwt_secret.
    #[arg(long, env = "CRPC_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
}

/// Settings of the running server.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the real one is printed).
    #[arg(long, env = "CRPC_BIND", default_value = "127.0.0.1:7700")]
    pub bind: SocketAddr,
    /// Directory for the SQLite database and the generated JWT secret.
    #[arg(long, env = "CRPC_DATA_DIR", default_value = "./crpc-data")]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite:PATH` (default: DATA_DIR/crpc.db).
    #[arg(long, env = "CRPC_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the JWT secret (default: DATA_DIR/jwt_secret, generated on first start).
    #[arg(long, env = "CRPC_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Accept every request as admin `anonymous`. Local experiments only.
    #[arg(long)]
    pub no_auth: bool,
    /// Package registry: with it, a task's `version` requirement is resolved to an exact version
    /// at submit and its function and arguments are checked against the package manifest.
    /// Without it, package names are free strings.
    #[arg(long, env = "CRPC_REGISTRY")]
    pub registry: Option<String>,
    /// Token for reading the registry (default: minted with this server's JWT secret, which
    /// works when the registry shares it).
    #[arg(long, env = "CRPC_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,
    /// Lease length; a processor that stops heartbeating loses its tasks after this.
    #[arg(long, env = "CRPC_LEASE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease_ttl: Duration,
    /// Attempts of a task that names no max_attempts.
    #[arg(long, env = "CRPC_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    #[arg(long, env = "CRPC_RETRY_BACKOFF", default_value = "1s", value_parser = humantime::parse_duration)]
    pub retry_backoff: Duration,
    /// Longest retry delay.
    #[arg(long, env = "CRPC_RETRY_BACKOFF_MAX", default_value = "5m", value_parser = humantime::parse_duration)]
    pub retry_backoff_max: Duration,
    /// How long finished tasks and their answers are kept (a task's ttl_s overrides).
    #[arg(long, env = "CRPC_RESULT_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    pub result_ttl: Duration,
    /// Where task files are kept: a directory (default DATA_DIR/files), or `s3://bucket/prefix`
    /// on any S3-compatible store, shared by server replicas (credentials, region and endpoint
    /// from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// `AWS_ALLOW_HTTP`).
    #[arg(long, env = "CRPC_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// Largest file `PUT /files` takes, MiB (past it: 413).
    #[arg(long, env = "CRPC_MAX_FILE_MB", default_value_t = 1024)]
    pub max_file_mb: u64,
    /// Files one owner may keep, MiB (past it: 429).
    #[arg(long, env = "CRPC_FILE_QUOTA_MB", default_value_t = 10240)]
    pub file_quota_mb: u64,
    /// How long a file no task takes is kept after its upload.
    #[arg(long, env = "CRPC_BLOB_TTL", default_value = "7d", value_parser = humantime::parse_duration)]
    pub blob_ttl: Duration,
    /// Largest request body, bytes (every route but the batch ones).
    #[arg(long, env = "CRPC_MAX_BODY_BYTES", default_value_t = 2 << 20)]
    pub max_body_bytes: usize,
    /// Largest body of submit_batch and the batch answer form, bytes.
    #[arg(long, env = "CRPC_MAX_BATCH_BODY_BYTES", default_value_t = 64 << 20)]
    pub max_batch_body_bytes: usize,
    /// Most tasks in one submit_batch.
    #[arg(long, env = "CRPC_MAX_BATCH_TASKS", default_value_t = 10_000)]
    pub max_batch_tasks: usize,
    /// How often expired leases and results are swept.
    #[arg(long, env = "CRPC_REAP_INTERVAL", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub reap_interval: Duration,
    /// PEM certificate(s) of a private CA to trust for an https:// --registry, besides the
    /// system's roots.
    #[arg(long, env = "CRPC_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// PEM certificate chain: serve HTTPS (with --tls-key). Without it, plain HTTP (put a TLS
    /// reverse proxy in front when clients cross a network).
    #[arg(long, env = "CRPC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CRPC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "CRPC_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// Requests per second one token may make (sustained; 0: no limit). Past it: 429 with
    /// Retry-After.
    #[arg(long, env = "CRPC_RATE_LIMIT", default_value_t = 20_000)]
    pub rate_limit: u32,
    /// Requests one token may make in a burst above --rate-limit.
    #[arg(long, env = "CRPC_RATE_BURST", default_value_t = 40_000)]
    pub rate_burst: u32,
    /// Waiting requests (`?wait=`, worker long-polls) one token may hold open at once (0: no
    /// cap). Past it: 429.
    #[arg(long, env = "CRPC_MAX_LONG_POLLS_PER_TOKEN", default_value_t = 256)]
    pub max_long_polls_per_token: usize,
    /// Queued (waiting or queued, not yet running) tasks one owner may have (0: no cap). Past it:
    /// 429. Each replica counts from the database when near the cap and every 10 s.
    #[arg(long, env = "CRPC_MAX_QUEUED_PER_OWNER", default_value_t = 1_000_000)]
    pub max_queued_per_owner: u64,
    /// Longest a user request may wait (`?wait=`; larger values are clamped). Lower it below a
    /// proxy's read timeout.
    #[arg(long, env = "CRPC_MAX_USER_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_user_wait: Duration,
    /// Longest a worker's lease request long-polls (`wait_s`; the default when absent).
    #[arg(long, env = "CRPC_MAX_WORKER_WAIT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_worker_wait: Duration,
    /// Also serve `GET /metrics` without a token on this address (e.g. 10.0.0.5:9464, reached
    /// only by the monitoring network). The main port's `/metrics` always needs an admin token.
    #[arg(long, env = "CRPC_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "CRPC_LOG_JSON")]
    pub log_json: bool,
}

impl Default for ServeArgs {
    /// The declared defaults (no flags, no environment).
    fn default() -> Self {
        crpc_service::config::defaults("task-server")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_built_settings_start_from_the_declared_defaults() {
        let d = ServeArgs::default();
        assert_eq!(d.bind, "127.0.0.1:7700".parse().unwrap());
        assert_eq!(d.lease_ttl, Duration::from_secs(30));
        assert_eq!(d.max_queued_per_owner, 1_000_000);
        assert!(!d.no_auth && d.database_url.is_none());
    }
}
