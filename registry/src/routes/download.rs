//! `GET /v1/packages/{name}/{version}/archive`
use actix_web::{web, HttpResponse};
use crpc_package::client::{SHA256_HEADER, SIGNATURE_HEADER};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use crate::state::Registry;

/// The archive (yanked versions too, by exact version), verified against its digest before it is
/// sent; sha256 and signature in headers.
pub async fn handle(
    reg: web::Data<Registry>,
    _: AnyCaller,
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
