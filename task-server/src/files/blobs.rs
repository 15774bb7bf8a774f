//! The bytes of task files, in an object store: a directory under the data dir by default, or
//! an S3-compatible bucket (`--blob-store s3://bucket/prefix`) that server replicas share.
//!
//! An upload streams into `tmp/<uuid>` while it is hashed and counted (never held whole), then
//! is renamed to `blobs/<sha256>/<uuid>`: each upload is an object of its own, so removing one
//! copy never races another upload of the same bytes (files.rs keeps one copy per owner).
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

/// Bytes read at a time from a local blob.
const READ_CHUNK: usize = 256 << 10;
/// Parts written at once while an upload streams (each up to 5 MiB, the S3 minimum).
const PARTS_IN_FLIGHT: usize = 4;
/// Uploads left in `tmp/` this long (a server killed mid-upload) are removed.
pub const STALE_UPLOAD: Duration = Duration::from_secs(3600);

/// Chunks queued for the hasher at most.
const HASH_QUEUE: usize = 64;

/// A sha256 computed on a blocking thread from the chunks sent to it (the receiving task
/// goes on reading the socket meanwhile: hashing took 44 % of the server's CPU in an upload
/// when it ran inline); its hex digest once the sender is dropped.
fn hasher() -> (
    tokio::sync::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<String>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
    let done = tokio::task::spawn_blocking(move || {
        let mut hash = Sha256::new();
        while let Some(chunk) = rx.blocking_recv() {
            hash.update(&chunk);
        }
        hex::encode(hash.finalize())
    });
    (tx, done)
}

/// Blob store failures.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The body went past the limit (bytes).
    #[error("the file is larger than {0} bytes (--max-file-mb)")]
    TooLarge(u64),
    /// The client's body failed mid-way.
    #[error("reading the upload: {0}")]
    Body(String),
    /// The store failed.
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
}

/// What an upload wrote: where, and what it is.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Its temporary key.
    pub tmp: String,
    /// Hex sha256 of the bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

/// The object store holding task files.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// Where, for logs.
    pub location: String,
}

impl Blobs {
    /// `spec`: `s3://bucket[/prefix]` (credentials, region and endpoint from the standard
    /// `AWS_*` variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`), or a directory; `None`: `DATA_DIR/files`.
    pub fn open(spec: Option<&str>, data_dir: &FsPath) -> anyhow::Result<Blobs> {
        match spec {
            Some(url) if url.starts_with("s3://") => {
                let rest = &url["s3://".len()..];
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                anyhow::ensure!(!bucket.is_empty(), "--blob-store {url}: no bucket");
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()?;
                let prefix = prefix.trim_matches('/');
                let store: Arc<dyn ObjectStore> = match prefix {
                    "" => Arc::new(s3),
                    p => Arc::new(PrefixStore::new(s3, p)),
                };
                Ok(Blobs {
                    store,
                    location: url.to_string(),
                })
            }
            Some(other) if other.contains("://") => {
                anyhow::bail!("--blob-store {other}: use s3://bucket/prefix or a directory")
            }
            dir => {
                let dir = dir.map_or_else(|| data_dir.join("files"), Into::into);
                crpc_service::fs::private_dir(&dir)?;
                let local = LocalFileSystem::new_with_prefix(&dir)?;
                Ok(Blobs {
                    store: Arc::new(local),
                    location: dir.display().to_string(),
                })
            }
        }
    }

    /// Streams `body` into a temporary object, hashing it, refusing it past `limit` bytes. The
    /// received chunks go to the store as they are (`put`, no copy into a part buffer).
    pub async fn upload<S, E>(&self, mut body: S, limit: u64) -> Result<Upload, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let tmp = format!("tmp/{}", Uuid::now_v7());
        let upload = self.store.put_multipart(&Path::from(tmp.as_str())).await?;
        let mut w = WriteMultipart::new(upload);
        let (to_hash, hashed) = hasher();
        let mut size = 0u64;
        let failed = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(BlobError::Body(e.to_string())),
                Some(Ok(c)) => c,
            };
            size += chunk.len() as u64;
            if size > limit {
                break Some(BlobError::TooLarge(limit));
            }
            // A clone of `Bytes` shares the buffer: hashed on its own thread meanwhile.
            let _ = to_hash.send(chunk.clone()).await;
            if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break Some(e.into());
            }
            w.put(chunk);
        };
        drop(to_hash);
        if let Some(e) = failed {
            let _ = w.abort().await;
            return Err(e);
        }
        w.finish().await?;
        let sha256 = hashed
            .await
            .map_err(|e| BlobError::Body(format!("hashing the upload: {e}")))?;
        Ok(Upload { tmp, sha256, size })
    }

    /// The key a finished upload of `sha256` gets.
    pub fn key_for(sha256: &str) -> String {
        format!("blobs/{sha256}/{}", Uuid::now_v7())
    }

    /// Moves an upload to `key`.
    pub async fn place(&self, tmp: &str, key: &str) -> Result<(), BlobError> {
        Ok(self
            .store
            .rename(&Path::from(tmp), &Path::from(key))
            .await?)
    }

    /// The bytes at `key` (a range of them), as a stream; the range served.
    pub async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> Result<(Range<u64>, impl Stream<Item = Result<Bytes, BlobError>>), BlobError> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self.store.get_opts(&Path::from(key), opts).await?;
        let served = got.range.clone();
        let stream = match got.payload {
            // A local file: read in large chunks (object_store's own stream reads 8 KiB at a
            // time, which held a 1 GiB download to ~200 MiB/s).
            GetResultPayload::File(file, _) => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(served.start))
                    .await
                    .map_err(|e| BlobError::Body(e.to_string()))?;
                let part = file.take(served.end - served.start);
                ReaderStream::with_capacity(part, READ_CHUNK)
                    .map_err(|e| {
                        BlobError::Store(object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        })
                    })
                    .boxed()
            }
            GetResultPayload::Stream(s) => s.map_err(BlobError::from).boxed(),
        };
        Ok((served, stream))
    }

    /// Removes the object at `key` (gone already is fine).
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes uploads left in `tmp/` for longer than [`STALE_UPLOAD`]; how many.
    pub async fn sweep_uploads(&self) -> Result<usize, BlobError> {
        let cutoff = chrono::Utc::now() - STALE_UPLOAD;
        let stale: Vec<Path> = self
            .store
            .list(Some(&Path::from("tmp")))
            .try_filter(|m| std::future::ready(m.last_modified < cutoff))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        for p in &stale {
            self.delete(p.as_ref()).await?;
        }
        Ok(stale.len())
    }
}
