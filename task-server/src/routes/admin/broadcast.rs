//! `POST /admin/broadcast`
use actix_web::{web, HttpResponse};
use task_api::NewBroadcast;

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::Body;

#[utoipa::path(
    post,
    path = "/admin/broadcast",
    tag = "operator",
    request_body = task_api::NewBroadcast,
    responses(
        (status = 201, description = "Recorded; every processor gets it with its next heartbeat", body = task_api::BroadcastCreated),
        (status = 403, description = "Not an admin token", body = task_api::ApiErrorBody),
        (status = 422, description = "Bad package name, version spec or payload size (the field is named)", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// Sends `payload` to every loaded instance of `package` (of the versions `version` names) on
/// every processor: the WASM `update` export, a native program's `update` line. Instances
/// started later receive the latest broadcast right after `init`.
pub async fn handle(
    queue: web::Data<Queue>,
    AdminCaller(caller): AdminCaller,
    Body(body): Body<NewBroadcast>,
) -> Result<HttpResponse, ApiError> {
    let out = queue.broadcast(&caller, body).await?;
    Ok(HttpResponse::Created().json(out))
}
