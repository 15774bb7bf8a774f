//! `HEAD /files/{sha256}`
use actix_web::body::SizedStream;
use actix_web::{web, HttpResponse};
use bytes::Bytes;

use crate::error::ApiError;
use crate::files::Files;
use crate::routes::files::reader;
use crpc_service::auth::AnyCaller;

#[utoipa::path(
    head,
    path = "/files/{sha256}",
    tag = "user",
    params(("sha256" = String, Path, description = "Hex sha256 of the file")),
    responses(
        (status = 200, description = "The file exists and the caller may read it; `Content-Length` is its size"),
    ),
    security(("bearer" = []))
)]
/// Whether the caller may read the file, and its size (404 when it may not, or there is none).
pub async fn handle(
    files: web::Data<Files>,
    AnyCaller(caller): AnyCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let size = files.find(&path, &reader(&caller)?).await?.size;
    let none = futures_util::stream::empty::<Result<Bytes, actix_web::Error>>();
    Ok(HttpResponse::Ok()
        .insert_header(("accept-ranges", "bytes"))
        .insert_header(("etag", format!("\"{}\"", path.as_str())))
        .content_type("application/octet-stream")
        .body(SizedStream::new(size, none)))
}
