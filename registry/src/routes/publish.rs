//! `PUT /v1/packages/{name}/{version}` (publisher): the body is the `.tar.gz`.
use actix_web::{web, HttpRequest, HttpResponse};
use crpc_package::client::SIGNATURE_HEADER;
use crpc_service::auth::PublisherCaller;
use crpc_service::body::RawBody;
use crpc_service::error::ApiError;

use super::views::VersionResponse;
use crate::state::Registry;

#[utoipa::path(
    put,
    path = "/v1/packages/{name}/{version}",
    tag = "publish",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The package archive (.tar.gz; any content type is read as bytes)"),
    params(("name" = String, Path, description = "Package name"), ("version" = String, Path, description = "Exact semver version"), ("x-crpc-signature" = Option<String>, Header, description = "Hex ed25519 signature of `crpc-package-sha256:<sha256 hex>`")),
    responses(
        (status = 201, description = "Published", body = VersionResponse),
        (status = 409, description = "This version exists (versions are immutable)", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// 201 with the recorded version; 403 `not_owner` when the package is someone else's; 409 if it
/// exists (immutable); 413 past the size cap; 422 naming the manifest field or archive entry that
/// is wrong.
pub async fn handle(
    reg: web::Data<Registry>,
    PublisherCaller(caller): PublisherCaller,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    RawBody(body): RawBody,
) -> Result<HttpResponse, ApiError> {
    let (name, version) = path.into_inner();
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| ApiError::invalid("signature", "x-crpc-signature must be hex text"))?;
    let info = reg
        .publish(&caller, &name, &version, body.to_vec(), signature)
        .await?;
    Ok(HttpResponse::Created().json(VersionResponse {
        success: true,
        version: info,
    }))
}
