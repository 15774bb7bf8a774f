//! `/files` routes: blobs tasks take, addressed by their sha256 (files/mod.rs says who may
//! read which).
use crpc_service::auth::Caller;
use serde_json::json;
use task_api::{FileStored, Role};

use crate::error::ApiError;
use crate::store::{FileReader, FileRow};

pub mod get_file;
pub mod head_file;
pub mod put_file;
pub mod put_output;

/// What `caller` may read: users their files and their tasks', workers their leases', admins
/// all; publishers nothing.
pub fn reader(caller: &Caller) -> Result<FileReader, ApiError> {
    match caller.role {
        Role::Admin => Ok(FileReader::Admin),
        Role::User => Ok(FileReader::User(caller.sub.clone())),
        Role::Worker => Ok(FileReader::Worker(caller.sub.clone())),
        Role::Publisher => Err(ApiError::forbidden(
            "a publisher token cannot read task files (it needs a user, worker or admin token)",
        )),
    }
}

/// The answer to an upload.
pub fn stored(row: FileRow) -> FileStored {
    let file = json!({ "$file": format!("sha256:{}", row.sha256) });
    FileStored {
        success: true,
        sha256: row.sha256,
        size: row.size,
        file,
    }
}
