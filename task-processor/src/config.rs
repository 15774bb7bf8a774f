//! Command-line flags (with environment fallbacks) of `task-processor`.
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Pulls tasks from a crpc server over HTTP, installs their packages from the registry and runs
/// them: WASM components in wasmtime, native programs over JSON lines. One slot per GPU plus
/// `--cpu-slots` CPU slots; each slot runs one task at a time.
#[derive(Debug, Clone, Parser)]
#[command(name = "task-processor", version)]
pub struct Config {
    /// Task server base URL, or the comma-separated URLs of its replicas (sharing one
    /// PostgreSQL database): a processor that cannot reach one fails over to the next.
    #[arg(long, env = "CRPC_SERVER", default_value = "http://127.0.0.1:7700")]
    pub server: String,

    /// Package registry base URL.
    #[arg(long, env = "CRPC_REGISTRY", default_value = "http://127.0.0.1:7701")]
    pub registry: String,

    /// Bearer token with the `worker` role (mint one with `task-server token --role worker`).
    #[arg(long, env = "CRPC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// PEM certificate(s) of a private CA to trust for https:// server and registry URLs,
    /// besides the system's roots.
    #[arg(long, env = "CRPC_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// Token for the registry, when it differs from `--token`.
    #[arg(long, env = "CRPC_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,

    /// Name this processor reports (default: `HOST-xxxxxxxx`, made once and kept in the package
    /// cache, so a restarted processor keeps its name and the server requeues the leases of its
    /// previous run at once). Give each processor its own.
    #[arg(long, env = "CRPC_WORKER_ID")]
    pub worker_id: Option<String>,

    /// CPU slots (default: the number of cores).
    #[arg(long, env = "CRPC_CPU_SLOTS")]
    pub cpu_slots: Option<u32>,

    /// Ignore GPUs even when NVML finds some.
    #[arg(long, env = "CRPC_NO_GPU")]
    pub no_gpu: bool,

    /// Let CPU slots run WASM `gpu-compute` work on the software Vulkan adapter (Mesa's
    /// lavapipe; on Debian `apt-get install mesa-vulkan-drivers`): for tests and development.
    #[arg(long, env = "CRPC_GPU_SOFTWARE")]
    pub gpu_software: bool,

    /// The most bytes of GPU buffers one WASM task may hold at once (`gpu-compute`), MiB.
    #[arg(long, env = "CRPC_GPU_MEMORY_MB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub gpu_memory_mb: u64,

    /// Package cache (default: ~/.cache/crpc).
    #[arg(long, env = "CRPC_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Evict least-recently-used package versions when the cache grows past this, MiB.
    #[arg(long, env = "CRPC_CACHE_MAX_MB", default_value_t = 10_240)]
    pub cache_max_mb: u64,

    /// Evict least-recently-used task files (`CACHE_DIR/files`) when they grow past this, MiB;
    /// also the largest file a task may take here.
    #[arg(long, env = "CRPC_FILE_CACHE_MB", default_value_t = 10_240)]
    pub file_cache_mb: u64,

    /// Hex ed25519 public key whose signatures are trusted (repeatable). With any key given,
    /// unsigned or wrongly signed packages are refused.
    #[arg(long = "trusted-key", env = "CRPC_TRUSTED_KEYS", value_delimiter = ',')]
    pub trusted_keys: Vec<String>,

    /// Memory cap of one WASM instance, MiB.
    #[arg(long, env = "CRPC_WASM_MEMORY_MB", default_value_t = 256)]
    pub wasm_memory_mb: u64,

    /// Time limit of a task that sets no `timeout_s`.
    #[arg(long, env = "CRPC_DEFAULT_TIMEOUT", default_value = "1h", value_parser = humantime::parse_duration)]
    pub default_timeout: Duration,

    /// Time limit of a native package's `setup` commands (once per version).
    #[arg(long, env = "CRPC_SETUP_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub setup_timeout: Duration,

    /// On SIGTERM, wait this long for running tasks before handing them back.
    #[arg(long, env = "CRPC_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Most leases held ahead of the free slots, per slot kind (0: no prefetch). The server
    /// grants fewer: only short tasks, about 50 ms of expected work per slot.
    #[arg(long, env = "CRPC_PREFETCH", default_value_t = 512, value_parser = clap::value_parser!(u32).range(0..=999))]
    pub prefetch: u32,

    /// Datasets held on this machine (repeatable); tasks needing them are routed here.
    #[arg(long = "dataset", env = "CRPC_DATASETS", value_delimiter = ',')]
    pub datasets: Vec<String>,

    /// Init configuration for a package, over the keys of its manifest's `[init]` table:
    /// `NAME={"key": value}` (repeatable). Its WASM `init` export or native program gets it at
    /// start.
    #[arg(long = "init", value_name = "NAME=JSON", value_parser = parse_init)]
    pub init: Vec<(String, serde_json::Map<String, serde_json::Value>)>,

    /// Refuse native packages (run WASM components only).
    #[arg(long, env = "CRPC_NO_NATIVE")]
    pub no_native: bool,

    /// Do not confine native packages with Landlock (they still get a cleared environment and a
    /// private scratch HOME/TMPDIR).
    #[arg(long, env = "CRPC_NO_LANDLOCK")]
    pub no_landlock: bool,

    /// Environment variable passed to native packages and their setup (repeatable), e.g.
    /// PIP_INDEX_URL for a private package index. Nothing else of this processor's environment
    /// reaches them but PATH, LANG, LC_ALL, TZ and pyenv's variables.
    #[arg(
        long = "pass-env",
        env = "CRPC_PASS_ENV",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub pass_env: Vec<String>,

    /// Directory native packages may read besides the system directories (repeatable), e.g. a
    /// dataset mount.
    #[arg(
        long = "sandbox-read",
        env = "CRPC_SANDBOX_READ",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub sandbox_read: Vec<PathBuf>,

    /// Serve Prometheus `GET /metrics` (no token) on this address: install, compile and run
    /// times, busy slots. Bind it where only the monitoring network reaches.
    #[arg(long, env = "CRPC_METRICS_BIND")]
    pub metrics_bind: Option<std::net::SocketAddr>,
    /// Logs as JSON lines.
    #[arg(long, env = "CRPC_LOG_JSON")]
    pub log_json: bool,
}

impl Config {
    /// The cache directory in effect.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("crpc")
        })
    }

    /// CPU slots in effect.
    pub fn cpu_slots(&self) -> u32 {
        self.cpu_slots.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        })
    }
}

impl Default for Config {
    /// The declared defaults (no flags, no environment).
    fn default() -> Self {
        crpc_service::config::defaults("task-processor")
    }
}

/// `NAME={"key": value}`: a package's init configuration from the command line.
fn parse_init(s: &str) -> Result<(String, serde_json::Map<String, serde_json::Value>), String> {
    let (name, json) = s
        .split_once('=')
        .ok_or("write NAME={\"key\": value}, e.g. --init 'wordcount={\"lang\": \"fr\"}'")?;
    if !crpc_package::manifest::valid_package_name(name) {
        return Err(format!("`{name}` is not a package name"));
    }
    match serde_json::from_str(json) {
        Ok(serde_json::Value::Object(m)) => Ok((name.to_string(), m)),
        _ => Err(format!("the init of {name} must be a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_built_settings_start_from_the_declared_defaults() {
        let d = Config::default();
        assert_eq!(d.server, "http://127.0.0.1:7700");
        assert_eq!(d.default_timeout, Duration::from_secs(3600));
        assert!(d.token.is_none() && !d.no_native && d.trusted_keys.is_empty());
    }
}
