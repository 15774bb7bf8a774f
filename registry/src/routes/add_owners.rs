//! `PUT /v1/packages/{name}/owners` (an owner of the package, or an admin)
use actix_web::{web, HttpResponse};
use crpc_package::client::OwnersChange;
use crpc_service::auth::PublisherCaller;
use crpc_service::body::Body;
use crpc_service::error::ApiError;

use super::views::OwnersResponse;
use crate::state::Registry;

#[utoipa::path(
    put,
    path = "/v1/packages/{name}/owners",
    tag = "publish",
    request_body = crpc_package::client::OwnersChange,
    params(("name" = String, Path, description = "Package name")),
    responses(
        (status = 200, description = "The owners afterwards", body = OwnersResponse),
    ),
    security(("bearer" = []))
)]
/// Adds owners; 403 `not_owner` for anyone else; the owners afterwards.
pub async fn handle(
    reg: web::Data<Registry>,
    PublisherCaller(caller): PublisherCaller,
    name: web::Path<String>,
    Body(body): Body<OwnersChange>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(OwnersResponse {
        success: true,
        owners: reg
            .change_owners(&caller, &name, &body.owners, true)
            .await?,
    }))
}
