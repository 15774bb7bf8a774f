//! `GET /v1/packages/{name}/owners`
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use super::with_success;
use crate::state::{check_name, Registry};

/// The token subjects that may publish and yank versions of the package.
pub async fn handle(
    reg: web::Data<Registry>,
    _: AnyCaller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_name(&name)?;
    Ok(HttpResponse::Ok().json(with_success(&reg.owners(&name).await?)))
}
