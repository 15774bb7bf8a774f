//! `POST /user/submit_task`
use actix_web::{web, HttpResponse};
use task_api::TaskSpec;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::Body;

#[utoipa::path(
    post,
    path = "/user/submit_task",
    tag = "user",
    request_body = task_api::TaskSpec,
    responses(
        (status = 201, description = "Queued (or waiting on its inputs)", body = task_api::SubmitResponse),
        (status = 200, description = "An idempotency key or memoized arguments matched an existing task", body = task_api::SubmitResponse),
    ),
    security(("bearer" = []))
)]
/// 201 with the new id; 200 with the existing id when an idempotency key or memoized
/// arguments matched.
pub async fn handle(
    queue: web::Data<Queue>,
    UserCaller(caller): UserCaller,
    Body(spec): Body<TaskSpec>,
) -> Result<HttpResponse, ApiError> {
    let (resp, created) = queue.submit(&caller, spec).await?;
    Ok(if created {
        HttpResponse::Created().json(resp)
    } else {
        HttpResponse::Ok().json(resp)
    })
}
