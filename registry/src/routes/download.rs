//! `GET /v1/packages/{name}/{version}/archive`
use actix_web::{web, HttpResponse};
use crpc_package::client::{SHA256_HEADER, SIGNATURE_HEADER};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use crate::state::Registry;

#[utoipa::path(
    get,
    path = "/v1/packages/{name}/{version}/archive",
    tag = "read",
    params(("name" = String, Path, description = "Package name"), ("version" = String, Path, description = "Exact semver version")),
    responses(
        (status = 200, description = "The archive; `x-crpc-sha256` and `x-crpc-signature` headers", body = Vec<u8>, content_type = "application/gzip"),
    ),
    security(("bearer" = []))
)]
/// The archive (yanked versions too, by exact version), verified against its digest before it is
/// sent; sha256 and signature in headers.
pub async fn handle(
    reg: web::Data<Registry>,
    _caller: AnyCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, version) = path.into_inner();
    let info = reg.version(&name, &version).await?;
    let bytes = reg.archive(&info).await?;
    let mut resp = HttpResponse::Ok();
    resp.content_type("application/gzip")
        .insert_header((SHA256_HEADER, info.sha256.clone()))
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"{name}-{version}.tar.gz\""),
        ));
    if let Some(sig) = &info.signature {
        resp.insert_header((SIGNATURE_HEADER, sig.clone()));
    }
    Ok(resp.body(bytes))
}
