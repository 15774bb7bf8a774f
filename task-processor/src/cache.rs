//! The package cache: `pkgs/{name}/{version}/` unpacked atomically after the download verified,
//! prepared once (WASM precompiled, native `setup` run), then marked ready. Concurrent tasks for
//! the same version wait for one install. Least-recently-used versions that no slot holds are
//! evicted when the cache grows past its size limit. One processor owns a cache directory (a lock
//! file says so).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, UNIX_EPOCH};

use crpc_package::archive::Limits;
use crpc_package::client::{ClientError, RegistryClient};
use crpc_package::manifest::{valid_exact_version, valid_package_name, Manifest, MANIFEST_FILE};
use crpc_package::verify::TrustedKeys;
use tokio::sync::OnceCell;

use crate::handler::TaskFailure;

/// Marker written once a version is unpacked and prepared.
const READY: &str = ".crpc-cache/ready";

/// One installed, prepared version.
#[derive(Debug)]
pub struct Installed {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Where it is unpacked.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Bytes on disk (after preparation).
    pub size: u64,
    last_used: AtomicU64,
}

impl Installed {
    fn touch(&self) {
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }
}

/// The kind-specific step after unpacking (precompile, setup).
#[async_trait::async_trait]
pub trait Prepare: Send + Sync {
    /// Prepares the unpacked package in `dir`; called once per version.
    async fn prepare(&self, dir: &Path, manifest: &Manifest) -> Result<(), TaskFailure>;
    /// Called after a version was evicted.
    fn evicted(&self, _dir: &Path) {}
}

type Cell = Arc<OnceCell<Arc<Installed>>>;

/// The cache.
pub struct PackageCache {
    root: PathBuf,
    registry: RegistryClient,
    trusted: TrustedKeys,
    limits: Limits,
    max_bytes: u64,
    entries: Mutex<HashMap<(String, String), Cell>>,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl std::fmt::Debug for PackageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageCache")
            .field("root", &self.root)
            .finish()
    }
}

fn now_ms() -> u64 {
    crate::now_ms().max(0) as u64
}

impl PackageCache {
    /// Opens (or creates) the cache at `root`, takes its lock and indexes what is ready there.
    pub fn open(
        root: &Path,
        registry: RegistryClient,
        trusted: TrustedKeys,
        max_bytes: u64,
    ) -> anyhow::Result<PackageCache> {
        std::fs::create_dir_all(root.join("pkgs"))?;
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                anyhow::anyhow!(
                    "the package cache {} is in use by another processor ({e}); give each processor its own --cache-dir",
                    root.display()
                )
            })?;
        let cache = PackageCache {
            root: root.to_path_buf(),
            registry,
            trusted,
            limits: Limits::default(),
            max_bytes,
            entries: Mutex::new(HashMap::new()),
            _lock: lock,
        };
        cache.index()?;
        Ok(cache)
    }

    /// The registry client.
    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// `pkgs/{name}/{version}` under the root, or `None` unless both are valid (a package name,
    /// an exact semver version) and the result is strictly inside the cache: task payloads come
    /// from the server and are not trusted to be path-safe.
    fn version_dir(&self, name: &str, version: &str) -> Option<PathBuf> {
        if !valid_package_name(name) || !valid_exact_version(version) {
            return None;
        }
        let pkgs = self.root.join("pkgs");
        let dir = pkgs.join(name).join(version);
        let rel = dir.strip_prefix(&pkgs).ok()?;
        let normal = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        (normal && rel.components().count() == 2).then_some(dir)
    }

    /// Loads ready versions from disk; removes half-installed ones (a crash mid-setup).
    fn index(&self) -> anyhow::Result<()> {
        let mut found = 0;
        for name in std::fs::read_dir(self.root.join("pkgs"))? {
            let name = name?;
            if !name.file_type()?.is_dir() {
                continue;
            }
            for ver in std::fs::read_dir(name.path())? {
                let ver = ver?;
                let dir = ver.path();
                let file_name = ver.file_name().to_string_lossy().to_string();
                if file_name.starts_with('.') {
                    // A temporary unpack dir left by a crash.
                    let _ = std::fs::remove_dir_all(&dir);
                    continue;
                }
                let ready = dir.join(READY);
                let manifest = std::fs::read_to_string(dir.join(MANIFEST_FILE))
                    .ok()
                    .and_then(|t| Manifest::parse(&t).ok());
                match (ready.exists(), manifest) {
                    (true, Some(manifest)) => {
                        let last = std::fs::metadata(&ready)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0);
                        let inst = Arc::new(Installed {
                            name: manifest.name.clone(),
                            version: manifest.version.clone(),
                            dir: dir.clone(),
                            size: dir_size(&dir),
                            manifest,
                            last_used: AtomicU64::new(last),
                        });
                        let key = (inst.name.clone(), inst.version.clone());
                        self.entries
                            .lock()
                            .unwrap()
                            .insert(key, Arc::new(OnceCell::new_with(Some(inst))));
                        found += 1;
                    }
                    _ => {
                        tracing::info!("removing a half-installed package at {}", dir.display());
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                }
            }
        }
        tracing::info!(
            "package cache {}: {found} version(s) ready",
            self.root.display()
        );
        Ok(())
    }

    /// `name@version` of every ready version.
    pub fn ready(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .lock()
            .unwrap()
            .values()
            .filter_map(|c| c.get().map(|i| format!("{}@{}", i.name, i.version)))
            .collect();
        v.sort();
        v
    }

    /// The installed version, downloading, verifying, unpacking and preparing it first if needed.
    pub async fn get(
        &self,
        name: &str,
        version: &str,
        prepare: &dyn Prepare,
    ) -> Result<Arc<Installed>, TaskFailure> {
        let cell = self
            .entries
            .lock()
            .unwrap()
            .entry((name.to_string(), version.to_string()))
            .or_default()
            .clone();
        let inst = cell
            .get_or_try_init(|| self.install(name, version, prepare))
            .await?
            .clone();
        inst.touch();
        Ok(inst)
    }

    async fn install(
        &self,
        name: &str,
        version: &str,
        prepare: &dyn Prepare,
    ) -> Result<Arc<Installed>, TaskFailure> {
        let started = Instant::now();
        let dir = self.version_dir(name, version).ok_or_else(|| {
            TaskFailure::fatal(format!(
                "refusing package `{name}` version `{version}`: not a valid package name and exact semver version"
            ))
        })?;
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let info = self
            .registry
            .version(name, version)
            .await
            .map_err(|e| match &e {
                ClientError::Status { status: 404, .. } => TaskFailure::fatal(format!(
                    "package {name}@{version} is not in the registry: {e}"
                )),
                _ => TaskFailure::retryable(format!("cannot look up {name}@{version}: {e}")),
            })?;
        let bytes = self
            .registry
            .download_verified(&info, &self.trusted)
            .await
            .map_err(|e| match e {
                ClientError::Verify(v) => {
                    TaskFailure::fatal(format!("package {name}@{version} refused: {v}"))
                }
                e @ ClientError::TooLarge { .. } => {
                    TaskFailure::fatal(format!("package {name}@{version} refused: {e}"))
                }
                other => {
                    TaskFailure::retryable(format!("cannot download {name}@{version}: {other}"))
                }
            })?;
        let limits = self.limits;
        let target = dir.clone();
        let inspection = tokio::task::spawn_blocking(move || {
            crpc_package::archive::unpack(&bytes, &target, &limits)
        })
        .await
        .map_err(|e| TaskFailure::retryable(format!("unpack: {e}")))?
        .map_err(|e| TaskFailure::fatal(format!("package {name}@{version} refused: {e}")))?;
        let manifest = inspection.manifest;
        if manifest.name != name || manifest.version != version {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(TaskFailure::fatal(format!(
                "the archive of {name}@{version} holds {}@{}",
                manifest.name, manifest.version
            )));
        }
        if let Err(e) = prepare.prepare(&dir, &manifest).await {
            // Leave nothing half-prepared: the next task starts from a clean download.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let ready = dir.join(READY);
        std::fs::create_dir_all(ready.parent().unwrap())
            .and_then(|_| std::fs::write(&ready, b""))
            .map_err(|e| {
                TaskFailure::retryable(format!("cannot mark {} ready: {e}", dir.display()))
            })?;
        let inst = Arc::new(Installed {
            name: name.to_string(),
            version: version.to_string(),
            size: dir_size(&dir),
            dir,
            manifest,
            last_used: AtomicU64::new(now_ms()),
        });
        let took = started.elapsed().as_secs_f64();
        tracing::info!(
            package = %format!("{name}@{version}"),
            "installed in {:.0} ms ({} KiB)",
            took * 1000.0,
            inst.size >> 10
        );
        metrics::histogram!("crpc_processor_install_seconds", "package" => name.to_string())
            .record(took);
        self.evict(prepare, &inst);
        Ok(inst)
    }

    /// Evicts least-recently-used versions nobody holds until the cache fits its limit.
    fn evict(&self, prepare: &dyn Prepare, keep: &Arc<Installed>) {
        let mut entries = self.entries.lock().unwrap();
        let mut ready: Vec<((String, String), Arc<Installed>)> = entries
            .iter()
            .filter_map(|(k, c)| c.get().map(|i| (k.clone(), i.clone())))
            .collect();
        let mut total: u64 = ready.iter().map(|(_, i)| i.size).sum::<u64>() + keep.size;
        if total <= self.max_bytes {
            return;
        }
        ready.sort_by_key(|(_, i)| i.last_used.load(Ordering::Relaxed));
        for (key, inst) in ready {
            if total <= self.max_bytes {
                break;
            }
            // Held by the map's cell and this loop only: no slot uses it.
            if Arc::ptr_eq(&inst, keep) || Arc::strong_count(&inst) > 2 {
                continue;
            }
            entries.remove(&key);
            prepare.evicted(&inst.dir);
            let trash = inst.dir.with_file_name(format!(
                ".evicted-{}-{:x}",
                inst.version,
                rand::random::<u32>()
            ));
            let _ = std::fs::rename(&inst.dir, &trash);
            let _ = std::fs::remove_dir_all(&trash);
            total -= inst.size;
            tracing::info!(package = %format!("{}@{}", inst.name, inst.version), "evicted from the package cache ({} KiB)", inst.size >> 10);
        }
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoPrep;

    #[async_trait::async_trait]
    impl Prepare for NoPrep {
        async fn prepare(&self, _: &Path, _: &Manifest) -> Result<(), TaskFailure> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn names_and_versions_that_are_paths_never_reach_the_disk() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep"), b"x").unwrap();
        let registry = RegistryClient::new("http://127.0.0.1:9", None);
        let cache_dir = root.path().join("c");
        let cache =
            PackageCache::open(&cache_dir, registry, TrustedKeys::default(), 1 << 30).unwrap();
        for (name, version) in [
            ("..", "../victim"),
            ("ok", "../../victim"),
            ("ok", "../.."),
            ("a/b", "1.0.0"),
            ("ok", "1.0.0/../../../victim"),
            ("", "1.0.0"),
        ] {
            let e = cache.get(name, version, &NoPrep).await.unwrap_err();
            assert_eq!(e.kind, task_api::TaskErrorKind::Fatal, "{name} {version}");
            assert!(
                e.message.starts_with("refusing"),
                "{name} {version}: {}",
                e.message
            );
        }
        assert!(victim.join("keep").exists());
        let left: Vec<_> = std::fs::read_dir(cache_dir.join("pkgs")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
