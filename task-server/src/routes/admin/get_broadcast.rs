//! `GET /admin/broadcasts/{id}`
use actix_web::{web, HttpResponse};

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::{ok, path_id};

#[utoipa::path(
    get,
    path = "/admin/broadcasts/{id}",
    tag = "operator",
    params(("id" = uuid::Uuid, Path, description = "Broadcast id")),
    responses(
        (status = 200, description = "The broadcast, the processors that applied it and when, the live ones that have not yet", body = task_api::BroadcastStatus),
        (status = 403, description = "Not an admin token", body = task_api::ApiErrorBody),
        (status = 404, description = "No such broadcast", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// Which processors applied a broadcast, and when.
pub async fn handle(
    queue: web::Data<Queue>,
    AdminCaller(_admin): AdminCaller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&path, "broadcast")?;
    Ok(ok(&queue.broadcast_status(id).await?))
}
