//! `PUT /v1/packages/{name}/{version}` (publisher): the body is the `.tar.gz`.
use actix_web::{web, HttpRequest, HttpResponse};
use crpc_package::client::SIGNATURE_HEADER;
use crpc_service::auth::PublisherCaller;
use crpc_service::body::RawBody;
use crpc_service::error::ApiError;

use super::with_success;
use crate::state::Registry;

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
    Ok(HttpResponse::Created().json(with_success(&info)))
}
