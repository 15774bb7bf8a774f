//! Wiring a processor from its flags (used by the binary and by `crpc dev`).
use std::path::Path;
use std::sync::Arc;

use crpc_package::client::RegistryClient;
use crpc_package::verify::TrustedKeys;

use crate::cache::PackageCache;
use crate::client::ServerClient;
use crate::compute::Compute;
use crate::config::Config;
use crate::files::FileCache;
use crate::gpu::{plan_slots, Gpus};
use crate::package_handler::PackageHandler;
use crate::processor::Processor;
use crate::runtime::sandbox::{probe_landlock, NativePolicy};
use crate::runtime::wasm::WasmRuntime;

/// A processor with the package handler, GPUs from NVML and the cache from `config`.
pub fn build_from_config(config: &Config) -> anyhow::Result<Processor> {
    if let Some(ca) = &config.ca_cert {
        crpc_http::trust_ca_file(ca).map_err(|e| anyhow::anyhow!(e))?;
    }
    let gpus = Arc::new(Gpus::discover(!config.no_gpu));
    let slots = plan_slots(&gpus, config.cpu_slots());
    crpc_service::metrics::handle();
    for class in ["cpu", "gpu"] {
        let n = slots.iter().filter(|s| s.class() == class).count();
        metrics::gauge!("crpc_processor_slots", "class" => class).set(n as f64);
        metrics::gauge!("crpc_processor_busy_slots", "class" => class).set(0.0);
    }
    let trusted = TrustedKeys::from_hex(config.trusted_keys.iter().map(String::as_str))
        .map_err(|e| anyhow::anyhow!("--trusted-key: {e}"))?;
    if trusted.is_empty() {
        tracing::info!("no --trusted-key: packages are checked against their sha256 only");
    }
    let registry = RegistryClient::new(
        &config.registry,
        config
            .registry_token
            .clone()
            .or_else(|| config.token.clone()),
    );
    let cache = PackageCache::open(
        &config.cache_dir(),
        registry,
        trusted,
        config.cache_max_mb << 20,
    )?;
    let compute = Compute::new(
        gpus.compute_gpus(),
        config.gpu_software,
        config.gpu_memory_mb,
    );
    let wasm = Arc::new(WasmRuntime::new(
        config.wasm_memory_mb,
        slots.len(),
        gpus.clone(),
        Arc::new(compute),
    )?);
    let files = FileCache::open(
        &config.cache_dir().join("files"),
        ServerClient::new(&config.server, config.token.clone())?,
        config.file_cache_mb.max(1) << 20,
    )?;
    let mut policy = native_policy(config);
    policy.read_by_name.push(files.dir().to_path_buf());
    let handler = PackageHandler::new(cache, wasm, config.setup_timeout, slots.len(), policy)
        .with_init(config.init.iter().cloned().collect())
        .with_files(Arc::new(files));
    Processor::builder()
        .server(config.server.clone())
        .outbox_dir(config.cache_dir().join("outbox"))
        .token(config.token.clone())
        .worker_id(Some(match &config.worker_id {
            Some(id) => id.clone(),
            None => cache_worker_id(&config.cache_dir())?,
        }))
        .gpu_names(gpus.found().iter().map(|d| d.name.clone()).collect())
        .slots(slots)
        .datasets(config.datasets.clone())
        .default_timeout(config.default_timeout)
        .drain_timeout(config.drain_timeout)
        .prefetch(config.prefetch)
        .handler(Arc::new(handler))
        .build()
}

/// The worker id of a processor started without `--worker-id`: `HOST-xxxxxxxx`, made once per
/// package cache and kept in it (`worker-id`). One processor runs per cache (the cache's lock,
/// taken before this), so a processor restarted on its cache comes back under its id, and the
/// server takes back the leases of its previous run at once instead of after their TTL.
fn cache_worker_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("worker-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if (1..=128).contains(&id.len()) && !id.chars().any(char::is_control) {
            return Ok(id.to_string());
        }
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "processor".into());
    let host: String = host.chars().take(100).collect();
    let id = format!("{host}-{:08x}", rand::random::<u32>());
    let tmp = dir.join(format!("worker-id.{}", std::process::id()));
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| anyhow::anyhow!("keeping the worker id in {}: {e}", path.display()))?;
    Ok(id)
}

/// How native packages run here, with one log line about the sandbox in effect.
fn native_policy(config: &Config) -> NativePolicy {
    // Not dumpable: a package running as the same user cannot read this process's
    // /proc/<pid>/environ (the token) or attach to it.
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!("cannot make the processor non-dumpable: {e}");
    }
    let mut policy = NativePolicy::new(&config.cache_dir());
    policy.allowed = !config.no_native;
    policy.landlock = !config.no_landlock;
    policy.pass_env = config.pass_env.clone();
    policy.read_only = config.sandbox_read.clone();
    if !policy.allowed {
        tracing::info!("--no-native: native packages are refused");
    } else if !policy.landlock {
        tracing::warn!("--no-landlock: native packages can read and write whatever this user can (environment still cleared)");
    } else {
        match probe_landlock(&policy).as_deref() {
            Some("enforced") => tracing::info!("native packages run under Landlock (read-only package and system dirs, private scratch dir)"),
            other => tracing::warn!("Landlock {}: native packages run with a cleared environment and a private scratch HOME/TMPDIR, but can read and write whatever this user can", other.unwrap_or("could not be probed")),
        }
    }
    policy
}

pub use crpc_service::shutdown_signal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_worker_id_is_made_once_per_cache() {
        let dir = tempfile::tempdir().unwrap();
        let id = cache_worker_id(dir.path()).unwrap();
        assert!(id.len() > 9 && id.contains('-'), "{id}");
        assert_eq!(cache_worker_id(dir.path()).unwrap(), id, "kept");
        // A file that is not a worker id is replaced, not trusted.
        std::fs::write(dir.path().join("worker-id"), "\u{1b}[2J").unwrap();
        let fresh = cache_worker_id(dir.path()).unwrap();
        assert_ne!(fresh, id);
        assert!(!fresh.chars().any(char::is_control));
    }
}
