//! `GET /v1/packages/{name}/{version}`
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use super::with_success;
use crate::state::Registry;

/// One version's metadata (yanked versions too).
pub async fn handle(
    reg: web::Data<Registry>,
    _: AnyCaller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, version) = path.into_inner();
    Ok(HttpResponse::Ok().json(with_success(&reg.version(&name, &version).await?)))
}
