//! HTTP routes: one action per file, grouped by who calls them.
use actix_web::web;
use uuid::Uuid;

use crate::error::ApiError;

pub mod admin;
pub mod files;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod peer;
pub mod ui;
pub mod user;
pub mod worker;

pub use crpc_service::body::{Body, BodyLimit};
pub use crpc_service::http::{not_found, ok, parse_json, parse_value, query_config, resource};

pub use crpc_service::limits::{Limits as TokenLimits, LongPoll};

/// A long-poll slot of the caller's token when the request will wait (`429` past the cap);
/// held by the handler until it answers.
pub fn long_poll(
    limits: &web::Data<TokenLimits>,
    caller: &crate::auth::Caller,
    waits: bool,
) -> Result<Option<LongPoll>, ApiError> {
    waits.then(|| limits.long_poll(caller)).transpose()
}

/// Body size limits per route group.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Every route but `submit_batch` and the batch answer form.
    pub body_bytes: usize,
    /// `submit_batch` and batched `submit_answer`.
    pub batch_body_bytes: usize,
}

/// Mounts every route.
pub fn configure(cfg: &mut web::ServiceConfig, limits: Limits) {
    let small = BodyLimit(limits.body_bytes);
    let large = BodyLimit(limits.batch_body_bytes);
    cfg.service(resource("/livez").route(web::get().to(health::livez)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/metrics").route(web::get().to(metrics::handle)))
        .service(resource("/openapi.json").route(web::get().to(openapi::json)))
        .service(resource("/docs").route(web::get().to(openapi::docs)))
        .service(resource("/ui").route(web::get().to(ui::index)))
        .service(resource("/ui/").route(web::get().to(ui::index)))
        .service(resource("/ui/app.js").route(web::get().to(ui::script)))
        .service(resource("/ui/app.css").route(web::get().to(ui::style)))
        .service(
            web::scope("/user")
                .app_data(web::Data::new(small))
                .service(resource("/submit_task").route(web::post().to(user::submit_task::handle)))
                .service(
                    resource("/submit_batch")
                        .app_data(web::Data::new(large))
                        .route(web::post().to(user::submit_batch::handle)),
                )
                .service(
                    resource("/request_answer/{id}")
                        .route(web::get().to(user::request_answer::handle)),
                )
                .service(
                    resource("/estimate_time_left")
                        .route(web::get().to(user::estimate_time_left::handle)),
                )
                .service(resource("/stats").route(web::get().to(user::stats::handle)))
                .service(resource("/workers").route(web::get().to(user::list_workers::handle)))
                .service(resource("/tasks").route(web::get().to(user::list_tasks::handle)))
                .service(resource("/summary").route(web::get().to(user::summary::handle)))
                .service(
                    resource("/tasks/{id}")
                        .route(web::get().to(user::get_task::handle))
                        .route(web::delete().to(user::delete_task::handle)),
                )
                .service(resource("/batches").route(web::get().to(user::list_batches::handle)))
                .service(
                    resource("/tasks/{id}/cancel").route(web::post().to(user::cancel_task::handle)),
                )
                .service(resource("/batches/{id}").route(web::get().to(user::get_batch::handle)))
                .service(
                    resource("/batches/{id}/results")
                        .route(web::get().to(user::batch_results::handle)),
                )
                .service(
                    resource("/batches/{id}/cancel")
                        .route(web::post().to(user::cancel_batch::handle)),
                )
                .service(
                    resource("/schedules")
                        .route(web::get().to(user::list_schedules::handle))
                        .route(web::post().to(user::create_schedule::handle)),
                )
                .service(
                    resource("/schedules/{id}")
                        .route(web::delete().to(user::delete_schedule::handle)),
                ),
        )
        .service(resource("/files").route(web::put().to(files::put_file::handle)))
        .service(
            resource("/files/{sha256}")
                .route(web::get().to(files::get_file::handle))
                .route(web::head().to(files::head_file::handle)),
        )
        .service(
            web::scope("/admin")
                .app_data(web::Data::new(small))
                .service(resource("/broadcast").route(web::post().to(admin::broadcast::handle)))
                .service(
                    resource("/broadcasts/{id}").route(web::get().to(admin::get_broadcast::handle)),
                ),
        )
        .service(
            web::scope("/worker")
                .app_data(web::Data::new(large))
                .service(
                    resource("/request_task")
                        .route(web::get().to(worker::request_task::handle_get))
                        .route(web::post().to(worker::request_task::handle_post)),
                )
                .service(resource("/heartbeat").route(web::post().to(worker::heartbeat::handle)))
                .service(resource("/files").route(web::put().to(files::put_output::handle)))
                .service(resource("/release").route(web::post().to(worker::release::handle)))
                .service(
                    resource("/submit_answer").route(web::post().to(worker::submit_answer::handle)),
                ),
        );
}

/// A task id from the path; anything that is not a UUID is an unknown task (404).
pub fn task_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::no_task(raw))
}

/// A batch or schedule id from the path (`what`); one that is not a UUID is not found.
pub fn path_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(format!("no {what} with id {raw}")))
}
