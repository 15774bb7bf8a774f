//! `PUT /worker/files?task=&lease_epoch=`
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use task_api::FileStored;
use uuid::Uuid;

use crate::auth::WorkerCaller;
use crate::error::ApiError;
use crate::files::Files;
use crate::queue::now_ms;
use crate::routes::files::stored;
use crate::routes::ok;

/// Which lease the output belongs to.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OutputOf {
    /// The task.
    pub task: Uuid,
    /// The lease's fencing token.
    pub lease_epoch: i64,
}

#[utoipa::path(
    put,
    path = "/worker/files",
    tag = "worker",
    params(OutputOf),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The output file's bytes, streamed"),
    responses(
        (status = 200, description = "Stored as a file of the task's owner, taken by the task", body = FileStored),
        (status = 409, description = "This token does not hold the lease", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// A file a task returns, uploaded by the worker holding its lease: it counts against the
/// task owner's quota and is readable by the owner for as long as the task is kept.
pub async fn handle(
    files: web::Data<Files>,
    WorkerCaller(caller): WorkerCaller,
    query: web::Query<OutputOf>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let OutputOf { task, lease_epoch } = query.into_inner();
    let row = files
        .put_output(&caller.sub, task, lease_epoch, body, now_ms())
        .await?;
    Ok(ok(&stored(row)))
}
