//! `GET /v1/packages/{name}/resolve?req=^1.2`
use actix_web::{web, HttpResponse};
use crpc_service::auth::AnyCaller;
use crpc_service::error::ApiError;
use serde::Deserialize;

use super::with_success;
use crate::state::{check_name, Registry};

/// Query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Semver requirement (default `*`).
    pub req: Option<String>,
}

/// The highest non-yanked version matching the requirement.
pub async fn handle(
    reg: web::Data<Registry>,
    _: AnyCaller,
    name: web::Path<String>,
    q: web::Query<Query>,
) -> Result<HttpResponse, ApiError> {
    check_name(&name)?;
    let info = reg.resolve(&name, q.req.as_deref().unwrap_or("*")).await?;
    Ok(HttpResponse::Ok().json(with_success(&info)))
}
