//! `POST /user/submit_task`
use actix_web::{web, HttpResponse};
use task_api::TaskSpec;

use crate::auth::UserCaller;
use crate::error::ApiError;
use crate::queue::Queue;
use crate::routes::Body;

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
