//! `GET /openapi.json` (OpenAPI 3.1, generated from the handlers' annotations and the
//! `task-api` types) and `GET /docs` (that document rendered). Neither needs a token.
use actix_web::HttpResponse;
use utoipa::OpenApi;

use super::{admin, files, health, metrics, user, worker};

/// Every route the server serves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "crpc task server",
        description = "Submit tasks, read their answers and the queue's estimate; processors lease and answer them. Errors always have the body ApiErrorBody."
    ),
    paths(
        user::submit_task::handle,
        user::submit_batch::handle,
        user::request_answer::handle,
        user::estimate_time_left::handle,
        user::stats::handle,
        user::list_workers::handle,
        user::list_tasks::handle,
        user::delete_task::handle,
        user::get_task::handle,
        user::list_batches::handle,
        user::summary::handle,
        user::cancel_task::handle,
        user::get_batch::handle,
        user::batch_results::handle,
        user::cancel_batch::handle,
        user::create_schedule::handle,
        user::list_schedules::handle,
        user::delete_schedule::handle,
        files::put_file::handle,
        files::get_file::handle,
        files::head_file::handle,
        files::put_output::handle,
        admin::broadcast::handle,
        admin::get_broadcast::handle,
        worker::request_task::handle_post,
        worker::request_task::handle_get,
        worker::heartbeat::handle,
        worker::release::handle,
        worker::submit_answer::handle,
        health::livez,
        health::readyz,
        metrics::handle,
    ),
    components(schemas(task_api::ApiErrorBody)),
    tags(
        (name = "user", description = "A `user` token (admin: every owner's tasks)"),
        (name = "worker", description = "A `worker` token: what processors call"),
        (name = "health", description = "No token"),
        (name = "operator", description = "An `admin` token"),
    )
)]
struct ApiDoc;

static DOC: crpc_service::openapi::Document = crpc_service::openapi::Document::new();

/// `GET /openapi.json`.
pub async fn json() -> HttpResponse {
    DOC.response::<ApiDoc>()
}

/// `GET /docs`.
pub async fn docs() -> HttpResponse {
    crpc_service::openapi::docs_page()
}
