//! Registry routes, one action per file.
use actix_web::web;
use crpc_service::body::BodyLimit;
use crpc_service::http::resource;

pub mod add_owners;
pub mod download;
pub mod functions;
pub mod get_package;
pub mod get_version;
pub mod health;
pub mod list_owners;
pub mod list_packages;
pub mod openapi;
pub mod package_openapi;
pub mod publish;
pub mod remove_owners;
pub mod resolve;
pub mod views;
pub mod yank;

/// Mounts every route.
pub fn configure(cfg: &mut web::ServiceConfig, max_archive_bytes: usize) {
    cfg.service(resource("/livez").route(web::get().to(health::livez)))
        .service(resource("/openapi.json").route(web::get().to(openapi::json)))
        .service(resource("/docs").route(web::get().to(openapi::docs)))
        .service(resource("/readyz").route(web::get().to(health::readyz)))
        .service(resource("/v1/packages").route(web::get().to(list_packages::handle)))
        .service(resource("/v1/functions/{function}").route(web::get().to(functions::handle)))
        .service(resource("/v1/packages/{name}").route(web::get().to(get_package::handle)))
        .service(resource("/v1/packages/{name}/resolve").route(web::get().to(resolve::handle)))
        .service(
            resource("/v1/packages/{name}/owners")
                .route(web::get().to(list_owners::handle))
                .route(web::put().to(add_owners::handle))
                .route(web::delete().to(remove_owners::handle)),
        )
        .service(
            resource("/v1/packages/{name}/{version}")
                .app_data(web::Data::new(BodyLimit(max_archive_bytes)))
                .route(web::get().to(get_version::handle))
                .route(web::put().to(publish::handle)),
        )
        .service(
            resource("/v1/packages/{name}/{version}/openapi.json")
                .route(web::get().to(package_openapi::handle)),
        )
        .service(
            resource("/v1/packages/{name}/{version}/archive")
                .route(web::get().to(download::handle)),
        )
        .service(
            resource("/v1/packages/{name}/{version}/yank").route(web::post().to(yank::handle)),
        );
}
