//! Content-addressed archive storage: `blobs/sha256/ab/abcdef…`, written to a temporary file,
//! fsynced and renamed into place; verified against its name whenever it is read.
use std::path::{Path, PathBuf};

use crpc_package::verify::sha256_hex;

/// Blob store errors.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Disk trouble.
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes on disk no longer hash to their name.
    #[error("blob {0} is corrupt on disk (its sha256 no longer matches)")]
    Corrupt(String),
    /// No such blob.
    #[error("blob {0} is missing")]
    Missing(String),
}

/// The blob directory.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
}

impl Blobs {
    /// Uses `root` (created if missing).
    pub fn open(root: &Path) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(root.join("sha256"))?;
        Ok(Blobs {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, sha: &str) -> PathBuf {
        self.root.join("sha256").join(&sha[..2]).join(sha)
    }

    /// Stores bytes whose sha256 is `sha` (idempotent).
    pub fn put(&self, sha: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path(sha);
        if path.exists() {
            return Ok(());
        }
        Ok(crpc_service::fs::write_atomic(&path, bytes)?)
    }

    /// Reads and verifies a blob.
    pub fn get(&self, sha: &str) -> Result<Vec<u8>, BlobError> {
        let bytes = match std::fs::read(self.path(sha)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::Missing(sha.into()))
            }
            Err(e) => return Err(e.into()),
        };
        if sha256_hex(&bytes) != sha {
            return Err(BlobError::Corrupt(sha.into()));
        }
        Ok(bytes)
    }
}
