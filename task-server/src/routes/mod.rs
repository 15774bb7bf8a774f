//! HTTP routes: one action per file, grouped by who calls them.
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

pub mod body;
pub mod health;
pub mod user;
pub mod worker;

pub use body::{Body, BodyLimit};

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
                .service(resource("/tasks/{id}").route(web::delete().to(user::delete_task::handle)))
                .service(
                    resource("/tasks/{id}/cancel").route(web::post().to(user::cancel_task::handle)),
                )
                .service(resource("/batches/{id}").route(web::get().to(user::get_batch::handle)))
                .service(
                    resource("/batches/{id}/results")
                        .route(web::get().to(user::batch_results::handle)),
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
                .service(
                    resource("/submit_answer").route(web::post().to(worker::submit_answer::handle)),
                ),
        );
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.path()),
    ))
}

/// JSON 404 for unknown routes.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no route {} {}",
        req.method(),
        req.path()
    )))
}

/// Query strings that do not parse → 400 with the JSON error body.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _| {
        ApiError::bad_request("bad_query", format!("query string: {err}")).into()
    })
}

/// A task id from the path; anything that is not a UUID is an unknown task (404).
pub fn task_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::no_task(raw))
}

/// 200 with a JSON body.
pub fn ok<T: serde::Serialize>(body: &T) -> HttpResponse {
    HttpResponse::Ok().json(body)
}

/// Parses JSON with the path of the failing field in the message.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::bad_request(
                    "malformed_json",
                    format!("request body is not valid JSON: {inner}"),
                )
            }
            _ => {
                let field = if path == "." {
                    "body".to_string()
                } else {
                    path
                };
                ApiError::invalid(&field, format!("{field}: {inner}"))
            }
        }
    })
}

/// Converts an already-parsed JSON value, naming the failing field (422).
pub fn parse_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::invalid(&field, format!("{field}: {}", e.into_inner()))
    })
}
