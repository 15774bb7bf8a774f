//! Task files: blobs a user uploads (`PUT /files`), names in a task's arguments as
//! `{"$file": "sha256:<hex>"}`, and reads back (`GET /files/{sha256}`).
//!
//! Who may read a blob: its uploader, the owner of a task that takes it, the worker token
//! holding such a task's lease, an admin; everyone else gets 404, as for a blob that does not
//! exist. Each owner's upload is its own copy (one row and one object), counted against the
//! owner's quota; a copy no task takes is removed once older than `--blob-ttl` (an upload of
//! the same bytes again renews it).
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::json;

use crate::error::ApiError;
use crate::store::{AddFile, FileReader, FileRow, Store};

pub mod blobs;
pub mod refs;

pub use blobs::{BlobError, Blobs};

/// Limits of the file routes.
#[derive(Debug, Clone, Copy)]
pub struct FilesConfig {
    /// Largest file, bytes (`--max-file-mb`).
    pub max_file_bytes: u64,
    /// Bytes of files one owner may keep (`--file-quota-mb`).
    pub quota_bytes: u64,
    /// How long a file no task takes is kept after its upload (`--blob-ttl`).
    pub ttl: Duration,
}

/// The file service: bytes in [`Blobs`], who has which in the store.
pub struct Files {
    blobs: Blobs,
    store: Arc<dyn Store>,
    cfg: FilesConfig,
}

/// A blob a reader may read.
pub struct Found {
    /// Its sha256.
    pub sha256: String,
    /// Its copy in the blob store.
    key: String,
    /// Its size.
    pub size: u64,
}

/// A blob being read.
pub struct Opened {
    /// Its whole size.
    pub size: u64,
    /// The bytes served.
    pub range: Range<u64>,
    /// Them.
    pub body: Box<dyn Stream<Item = Result<Bytes, BlobError>> + Unpin>,
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge(_) => ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                e.to_string(),
            ),
            BlobError::Body(m) => ApiError::bad_request("bad_body", m),
            BlobError::Store(e) => ApiError::internal(e),
        }
    }
}

impl Files {
    /// The service over `blobs` and `store`.
    pub fn new(blobs: Blobs, store: Arc<dyn Store>, cfg: FilesConfig) -> Files {
        Files { blobs, store, cfg }
    }

    /// Stores `body` as a file of `owner`: 413 past the file limit, 429 past the quota.
    pub async fn put<S, E>(&self, owner: &str, body: S, now: i64) -> Result<FileRow, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let used = self.store.file_usage(owner).await?;
        let room = self.cfg.quota_bytes.saturating_sub(used);
        if room == 0 {
            return Err(self.over_quota(owner, used));
        }
        let up = match self
            .blobs
            .upload(body, self.cfg.max_file_bytes.min(room))
            .await
        {
            Err(BlobError::TooLarge(_)) if room < self.cfg.max_file_bytes => {
                return Err(self.over_quota(owner, used))
            }
            other => other?,
        };
        let key = Blobs::key_for(&up.sha256);
        self.blobs.place(&up.tmp, &key).await?;
        let row = FileRow {
            sha256: up.sha256,
            owner: owner.to_string(),
            key: key.clone(),
            size: up.size,
            created_at: now,
        };
        match self.store.add_file(row.clone(), self.cfg.quota_bytes).await {
            Ok(AddFile::Added) => Ok(row),
            Ok(AddFile::Existed(kept)) => {
                self.discard(&key).await;
                Ok(FileRow { key: kept, ..row })
            }
            Ok(AddFile::OverQuota { used }) => {
                self.discard(&key).await;
                Err(self.over_quota(owner, used))
            }
            Err(e) => {
                self.discard(&key).await;
                Err(e.into())
            }
        }
    }

    /// Stores `body` as an output of task `task`, uploaded by the worker token `worker` that
    /// holds its lease at `epoch`: a file of the task's owner (its quota), taken by the task
    /// (so the owner reads it, and it lives as long as the task). Anyone else: 409
    /// `not_lease_holder`, as for an answer.
    pub async fn put_output<S, E>(
        &self,
        worker: &str,
        task: uuid::Uuid,
        epoch: i64,
        body: S,
        now: i64,
    ) -> Result<FileRow, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let lease = self.store.lease_of(task).await?.filter(|l| {
            l.state == task_api::TaskState::Leased
                && l.holder.as_deref() == Some(worker)
                && l.epoch == epoch
        });
        let Some(lease) = lease else {
            return Err(ApiError::conflict(
                "not_lease_holder",
                format!("this token does not hold task {task}'s lease at epoch {epoch}"),
            ));
        };
        let row = self.put(&lease.owner, body, now).await?;
        self.store.attach_file(task, &row.sha256).await?;
        Ok(row)
    }

    fn over_quota(&self, owner: &str, used: u64) -> ApiError {
        let mib = |b: u64| b.div_ceil(1 << 20);
        ApiError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            format!(
                "`{owner}` keeps {} MiB of files; at most {} MiB (--file-quota-mb): delete tasks \
                 that take old files or wait for them to expire",
                mib(used),
                mib(self.cfg.quota_bytes)
            ),
        )
        .with_details(json!({ "used_bytes": used, "quota_bytes": self.cfg.quota_bytes }))
    }

    async fn discard(&self, key: &str) {
        if let Err(e) = self.blobs.delete(key).await {
            tracing::warn!(key, error = %e, "could not remove a spare upload");
        }
    }

    /// Blob `sha256` if `reader` may read it (else 404): where it is and its size.
    pub async fn find(&self, sha256: &str, reader: &FileReader) -> Result<Found, ApiError> {
        if !refs::is_sha256(sha256) {
            return Err(no_file(sha256));
        }
        let (key, size) = self
            .store
            .file_for(sha256, reader)
            .await?
            .ok_or_else(|| no_file(sha256))?;
        Ok(Found {
            sha256: sha256.to_string(),
            key,
            size,
        })
    }

    /// The bytes of a found blob (those in `range`, clipped to its size).
    pub async fn open(&self, found: &Found, range: Option<Range<u64>>) -> Result<Opened, ApiError> {
        let (range, body) = match self.blobs.get(&found.key, range).await {
            Ok(got) => got,
            Err(BlobError::Store(object_store::Error::NotFound { .. })) => {
                let (sha256, key) = (&found.sha256, &found.key);
                tracing::error!(
                    sha256,
                    key,
                    "a recorded file is missing from the blob store"
                );
                return Err(no_file(sha256));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Opened {
            size: found.size,
            range,
            body: Box::new(Box::pin(body)),
        })
    }

    /// How often the reaper calls [`Files::expire`]: every 10 s, or twice per TTL when that is
    /// shorter (partial uploads are swept every tenth call).
    pub fn sweep_every(&self) -> Duration {
        (self.cfg.ttl / 2).clamp(Duration::from_millis(250), Duration::from_secs(10))
    }

    /// Removes copies no task takes that are older than the TTL, and stale partial uploads;
    /// how many copies.
    pub async fn expire(&self, now: i64, sweep_uploads: bool) -> Result<usize, ApiError> {
        let cutoff = now.saturating_sub(self.cfg.ttl.as_millis().min(i64::MAX as u128) as i64);
        let keys = self.store.expire_files(cutoff).await?;
        for key in &keys {
            self.discard(key).await;
        }
        if sweep_uploads {
            self.blobs.sweep_uploads().await?;
        }
        Ok(keys.len())
    }
}

fn no_file(sha256: &str) -> ApiError {
    let shown: String = sha256.chars().take(64).collect();
    ApiError::not_found(format!("no file sha256:{shown}"))
}
