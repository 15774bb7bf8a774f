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
