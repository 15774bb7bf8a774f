//! `PUT /files`
use actix_web::{web, HttpResponse};
use task_api::FileStored;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::files::Files;
use crate::queue::now_ms;
use crate::routes::files::stored;
use crate::routes::ok;

#[utoipa::path(
    put,
    path = "/files",
    tag = "user",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes, streamed (at most --max-file-mb)"),
    responses(
        (status = 200, description = "Stored: its sha256, size, and the `$file` value for task arguments", body = FileStored),
    ),
    security(("bearer" = []))
)]
/// Stores the body as one of the caller's files (streamed, hashed as it arrives; never held
/// whole). The same bytes again keep one copy and renew it. 413 past `--max-file-mb`, 429 past
/// the owner's `--file-quota-mb`.
pub async fn handle(
    files: web::Data<Files>,
    UserCaller(caller): UserCaller,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let row = files.put(&caller.sub, body, now_ms()).await?;
    Ok(ok(&stored(row)))
}
