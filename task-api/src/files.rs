//! Files: blobs that tasks take as arguments, addressed by their sha256.
use serde::{Deserialize, Serialize};

/// Answer of `PUT /files`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileStored {
    /// Always true.
    pub success: bool,
    /// Hex sha256 of the bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The value to put in a task's arguments: `{"$file": "sha256:<hex>"}`.
    #[schema(value_type = Object)]
    pub file: serde_json::Value,
}

/// The hex digest a file name `sha256:<64 lowercase hex digits>` carries, if it is one.
pub fn file_sha256(name: &str) -> Option<&str> {
    name.strip_prefix("sha256:").filter(|h| is_sha256(h))
}

/// Whether `hex` is a sha256 as files are named by: 64 lowercase hex digits.
pub fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
