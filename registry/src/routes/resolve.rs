//! `GET /v1/packages/{name}/resolve?req=^1.2`
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;
use serde::Deserialize;

use super::views::VersionResponse;
use crate::state::{check_name, Registry};

/// Query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Semver requirement (default `*`).
    pub req: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/packages/{name}/resolve",
    tag = "read",
    params(("name" = String, Path, description = "Package name"), Query),
    responses(
        (status = 200, description = "The highest non-yanked version matching `req`", body = VersionResponse),
    ),
    security(("bearer" = []))
)]
/// The highest non-yanked version matching the requirement.
pub async fn handle(
    reg: web::Data<Registry>,
    _caller: AnyCaller,
    name: web::Path<String>,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    check_name(&name)?;
    let info = reg.resolve(&name, q.req.as_deref().unwrap_or("*")).await?;
    Ok(HttpResponse::Ok().json(VersionResponse {
        success: true,
        version: info,
    }))
}
