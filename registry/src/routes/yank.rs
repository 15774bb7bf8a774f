//! `POST /v1/packages/{name}/{version}/yank` (an owner of the package, or an admin)
use super::views::YankResponse;
use actix_web::{web, HttpResponse};
use crpc_service::auth::PublisherCaller;
use crpc_service::error::ApiError;
use serde::Deserialize;

use crate::state::{store_err, Registry};

/// Body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YankBody {
    /// false un-yanks.
    #[serde(default = "yes")]
    pub yanked: bool,
}

fn yes() -> bool {
    true
}

#[utoipa::path(
    post,
    path = "/v1/packages/{name}/{version}/yank",
    tag = "publish",
    request_body = Option<YankBody>,
    params(("name" = String, Path, description = "Package name"), ("version" = String, Path, description = "Exact semver version")),
    responses(
        (status = 200, description = "The flag is set", body = YankResponse),
    ),
    security(("bearer" = []))
)]
/// Yanked versions are skipped by resolution but still download by exact version.
pub async fn handle(
    reg: web::Data<Registry>,
    PublisherCaller(caller): PublisherCaller,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (name, version) = path.into_inner();
    reg.check_owner(&caller, &name).await?;
    let yank = if body.is_empty() {
        None
    } else {
        crpc_service::http::parse_json::<Option<YankBody>>(&body)?
    }
    .unwrap_or(YankBody { yanked: true });
    if !reg
        .store
        .set_yanked(&name, &version, yank.yanked)
        .await
        .map_err(store_err)?
    {
        return Err(ApiError::not_found(format!(
            "{name}@{version} is not published"
        )));
    }
    tracing::info!(%name, %version, yanked = yank.yanked, by = %caller.sub, "yank flag set");
    Ok(HttpResponse::Ok().json(YankResponse {
        success: true,
        name,
        version,
        yanked: yank.yanked,
    }))
}
