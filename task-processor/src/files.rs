//! Files tasks take (`{"$file": "sha256:<hex>"}` arguments): downloaded from the server once
//! (the worker token reads the files of the tasks it holds leases on), checked against their
//! sha256, kept by hash under `CACHE_DIR/files` (bounded; least recently used first out, never
//! one a running task uses) and handed to native programs as read-only paths.
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::client::{CallError, ServerClient};
use crate::handler::TaskFailure;

/// Longest one download may take.
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(3600);

/// The processor's file cache.
pub struct FileCache {
    dir: PathBuf,
    client: ServerClient,
    max_bytes: u64,
    /// Per hash: a lock held while it is downloaded, so two tasks fetch it once.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per hash: how many running tasks use it (not evicted while > 0).
    in_use: Arc<Mutex<HashMap<String, usize>>>,
}

/// Files a task uses, kept from eviction until dropped.
pub struct InUse {
    shas: Vec<String>,
    in_use: Arc<Mutex<HashMap<String, usize>>>,
}

impl InUse {
    /// The task's files and their local copies in `cache`.
    pub fn paths(&self, cache: &FileCache) -> HashMap<String, PathBuf> {
        self.shas
            .iter()
            .map(|s| (s.clone(), cache.dir.join(s)))
            .collect()
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut m = self.in_use.lock().unwrap();
        for s in &self.shas {
            if let Some(n) = m.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    m.remove(s);
                }
            }
        }
    }
}

/// Whether an object with the key `marker` (`$file`, `$output`) stands anywhere in `v`.
pub fn holds(v: &Value, marker: &str) -> bool {
    match v {
        Value::Object(o) => o.contains_key(marker) || o.values().any(|x| holds(x, marker)),
        Value::Array(a) => a.iter().any(|x| holds(x, marker)),
        _ => false,
    }
}

/// Whether the task's arguments name any file.
pub fn takes_files(args: &[Value], kwargs: &Map<String, Value>) -> bool {
    args.iter()
        .chain(kwargs.values())
        .any(|v| holds(v, "$file"))
}

/// Whether `name` may name an output file: a relative path of plain parts (no `..`, no root),
/// at most [`MAX_OUTPUT_NAME`] bytes. The WASM `files.create` and the native outputs both ask.
pub fn is_output_name(name: &str) -> bool {
    use std::path::Component;
    let plain = Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    !name.is_empty() && name.len() <= MAX_OUTPUT_NAME && plain
}

impl FileCache {
    /// The cache in `dir` (created, private), at most `max_bytes`, reading from `client`.
    pub fn open(dir: &Path, client: ServerClient, max_bytes: u64) -> anyhow::Result<FileCache> {
        crpc_service::fs::private_dir(dir)?;
        // Partial downloads of a processor that was killed.
        for e in std::fs::read_dir(dir)?.flatten() {
            if e.file_name().to_string_lossy().starts_with(".part-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        // Outputs of tasks that were running when it was killed.
        let _ = std::fs::remove_dir_all(dir.join(".out"));
        Ok(FileCache {
            dir: dir.to_path_buf(),
            client,
            max_bytes,
            fetching: Mutex::default(),
            in_use: Arc::default(),
        })
    }

    /// Where the files are (native programs may read it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a task's WASM output files are written before they are uploaded (the caller
    /// removes it).
    pub fn output_dir(&self, task: uuid::Uuid) -> PathBuf {
        self.dir.join(".out").join(task.to_string())
    }

    /// The most output a task may write here (`--file-cache-mb`).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Fetches every file the arguments name, adding its local `path` to each file value when
    /// `paths` (native programs read it; a WASM guest has no file system to read it in); the
    /// files stay cached while the returned guard lives.
    pub async fn materialize(
        &self,
        args: &mut [Value],
        kwargs: &mut Map<String, Value>,
        paths: bool,
    ) -> Result<InUse, TaskFailure> {
        let mut values: Vec<&mut Map<String, Value>> = Vec::new();
        for v in args.iter_mut().chain(kwargs.values_mut()) {
            collect_marked(v, "$file", &mut values);
        }
        let mut used = InUse {
            shas: Vec::new(),
            in_use: self.in_use.clone(),
        };
        for o in values {
            let name = o.get("$file").and_then(Value::as_str).unwrap_or_default();
            let sha = task_api::files::file_sha256(name)
                .ok_or_else(|| TaskFailure::fatal(format!("`{name}` is not a file name")))?
                .to_string();
            if !used.shas.contains(&sha) {
                *self.in_use.lock().unwrap().entry(sha.clone()).or_default() += 1;
                used.shas.push(sha.clone());
            }
            let path = self.fetch(&sha).await?;
            if paths {
                o.insert("path".into(), Value::String(path.display().to_string()));
            }
        }
        Ok(used)
    }

    /// The local copy of `sha`, downloaded first when missing.
    async fn fetch(&self, sha: &str) -> Result<PathBuf, TaskFailure> {
        let path = self.dir.join(sha);
        if touch(&path) {
            return Ok(path);
        }
        let lock = {
            let mut m = self.fetching.lock().unwrap();
            m.entry(sha.to_string()).or_default().clone()
        };
        let _held = lock.lock().await;
        if !touch(&path) {
            let size = self.download(sha, &path).await?;
            tracing::info!(sha256 = sha, bytes = size, "downloaded a task file");
            self.evict();
        }
        self.fetching.lock().unwrap().remove(sha);
        Ok(path)
    }

    async fn download(&self, sha: &str, path: &Path) -> Result<u64, TaskFailure> {
        let resp = self
            .client
            .download(&format!("/files/{sha}"), DOWNLOAD_LIMIT)
            .await
            .map_err(|e| match e {
                CallError::Rejected { status: 404, .. } => TaskFailure::fatal(format!(
                    "file sha256:{sha} is not readable by this processor (404: gone, or the lease is lost)"
                )),
                other => TaskFailure::retryable(format!("downloading file sha256:{sha}: {other}")),
            })?;
        let part = self.dir.join(format!(".part-{}", uuid::Uuid::now_v7()));
        let written = self.write_checked(resp, sha, &part).await;
        match written {
            Ok(size) => {
                let done = std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o444))
                    .and_then(|()| std::fs::rename(&part, path));
                done.map_err(|e| TaskFailure::retryable(format!("caching file {sha}: {e}")))?;
                Ok(size)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                Err(e)
            }
        }
    }

    /// Streams the body into `part`, hashing it; its size once it hashes to `sha`.
    async fn write_checked(
        &self,
        resp: reqwest::Response,
        sha: &str,
        part: &Path,
    ) -> Result<u64, TaskFailure> {
        let io = |e: std::io::Error| TaskFailure::retryable(format!("caching file {sha}: {e}"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(part).map_err(io)?);
        let (mut hash, mut size) = (Sha256::new(), 0u64);
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| TaskFailure::retryable(format!("downloading file {sha}: {e}")))?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                return Err(TaskFailure::fatal(format!(
                    "file sha256:{sha} is larger than this processor's file cache (--file-cache-mb)"
                )));
            }
            hash.update(&chunk);
            out.write_all(&chunk).map_err(io)?;
        }
        out.flush().map_err(io)?;
        let got = hex::encode(hash.finalize());
        if got != sha {
            return Err(TaskFailure::retryable(format!(
                "file sha256:{sha} arrived as sha256:{got}: discarded"
            )));
        }
        Ok(size)
    }

    /// Removes least recently used files, none in use, until the cache fits.
    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let meta = e.metadata().ok().filter(|m| m.is_file())?;
                let at = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                (!name.starts_with('.')).then(|| (at, meta.len(), e.path(), name))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        let in_use = self.in_use.lock().unwrap();
        for (_, size, path, name) in files {
            if total <= self.max_bytes {
                break;
            }
            if in_use.contains_key(&name) {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
    }
}

/// Longest output file name (a relative path), bytes.
pub const MAX_OUTPUT_NAME: usize = 1024;
/// Most output files one answer may name.
pub const MAX_OUTPUTS: usize = 100;

impl FileCache {
    /// Uploads each output file the answer names (`{"$output": "name"}`, a path relative to
    /// `dir`, the task's output directory) as task `task`'s output under lease `epoch`, and puts
    /// `{"$file": "sha256:…", "name", "size"}` in its place. The program is not trusted: a name
    /// that leaves `dir`, passes through a symbolic link or is not a regular file fails the
    /// task.
    pub async fn upload_outputs(
        &self,
        answer: &mut Value,
        dir: &Path,
        task: uuid::Uuid,
        epoch: i64,
    ) -> Result<(), TaskFailure> {
        let mut outs = Vec::new();
        collect_marked(answer, "$output", &mut outs);
        if outs.len() > MAX_OUTPUTS {
            return Err(TaskFailure::fatal(format!(
                "an answer names at most {MAX_OUTPUTS} output files"
            )));
        }
        for o in outs {
            let name = o.get("$output").and_then(Value::as_str).unwrap_or_default();
            let (file, size) = open_output(dir, name)?;
            let path = format!("/worker/files?task={task}&lease_epoch={epoch}");
            let stored: task_api::FileStored = self
                .client
                .upload(&path, file, size, DOWNLOAD_LIMIT)
                .await
                .map_err(|e| match e {
                    CallError::Rejected {
                        status: 413 | 409,
                        message,
                        ..
                    } => TaskFailure::fatal(format!("output `{name}`: {message}")),
                    other => TaskFailure::retryable(format!("uploading output `{name}`: {other}")),
                })?;
            let base = name.rsplit('/').next().unwrap_or(name).to_string();
            o.clear();
            o.insert("$file".into(), stored.file["$file"].clone());
            o.insert("name".into(), Value::String(base));
            o.insert("size".into(), Value::from(stored.size));
        }
        Ok(())
    }
}

/// Opens output `name` under `dir` without following links: the file and its size.
fn open_output(dir: &Path, name: &str) -> Result<(tokio::fs::File, u64), TaskFailure> {
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |why: &str| TaskFailure::fatal(format!("output `{name}`: {why}"));
    let rel = Path::new(name);
    if !is_output_name(name) {
        return Err(bad(
            "name a file inside the task's output directory (a relative path without `..`)",
        ));
    }
    // Each directory on the way must be a real directory, not a link out.
    let mut at = dir.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for c in &parts[..parts.len() - 1] {
        at.push(c);
        let meta = std::fs::symlink_metadata(&at).map_err(|e| bad(&e.to_string()))?;
        if !meta.is_dir() {
            return Err(bad("a directory on its path is a link or not a directory"));
        }
    }
    at.push(parts[parts.len() - 1]);
    let nofollow = nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nofollow)
        .open(&at)
        .map_err(|e| bad(&format!("cannot open it (a link is refused): {e}")))?;
    let meta = file.metadata().map_err(|e| bad(&e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file"));
    }
    Ok((tokio::fs::File::from_std(file), meta.len()))
}

/// Every object under `v` holding the key `marker`.
fn collect_marked<'a>(v: &'a mut Value, marker: &str, out: &mut Vec<&'a mut Map<String, Value>>) {
    match v {
        Value::Object(o) => {
            if o.contains_key(marker) {
                out.push(o);
            } else {
                o.values_mut().for_each(|x| collect_marked(x, marker, out));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| collect_marked(x, marker, out)),
        _ => {}
    }
}

/// Marks `path` used now (LRU); whether it exists.
fn touch(path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(f) => {
            let _ = f.set_modified(SystemTime::now());
            true
        }
        Err(_) => false,
    }
}
