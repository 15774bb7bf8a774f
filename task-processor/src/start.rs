//! Wiring a processor from its flags (used by the binary and by `crpc dev`).
use std::sync::Arc;

use crpc_package::client::RegistryClient;
use crpc_package::verify::TrustedKeys;

use crate::cache::PackageCache;
use crate::config::Config;
use crate::gpu::{plan_slots, Gpus};
use crate::package_handler::PackageHandler;
use crate::processor::Processor;
use crate::runtime::wasm::WasmRuntime;

/// A processor with the package handler, GPUs from NVML and the cache from `config`.
pub fn build_from_config(config: &Config) -> anyhow::Result<Processor> {
    let gpus = Arc::new(Gpus::discover(!config.no_gpu));
    let slots = plan_slots(&gpus, config.cpu_slots());
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
    let wasm = Arc::new(WasmRuntime::new(
        config.wasm_memory_mb,
        slots.len(),
        gpus.clone(),
    )?);
    let handler = PackageHandler::new(cache, wasm, config.setup_timeout, slots.len());
    Processor::builder()
        .server(config.server.clone())
        .token(config.token.clone())
        .worker_id(config.worker_id.clone())
        .gpu_names(gpus.found().iter().map(|d| d.name.clone()).collect())
        .slots(slots)
        .datasets(config.datasets.clone())
        .default_timeout(config.default_timeout)
        .drain_timeout(config.drain_timeout)
        .handler(Arc::new(handler))
        .build()
}

pub use crpc_service::shutdown_signal;
