//! `GET /v1/packages/{name}/owners`
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;

use super::views::OwnersResponse;
use crate::state::{check_name, Registry};

#[utoipa::path(
    get,
    path = "/v1/packages/{name}/owners",
    tag = "read",
    params(("name" = String, Path, description = "Package name")),
    responses(
        (status = 200, description = "The owners", body = OwnersResponse),
    ),
    security(("bearer" = []))
)]
/// The token subjects that may publish and yank versions of the package.
pub async fn handle(
    reg: web::Data<Registry>,
    _caller: AnyCaller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_name(&name)?;
    Ok(HttpResponse::Ok().json(OwnersResponse {
        success: true,
        owners: reg.owners(&name).await?,
    }))
}
