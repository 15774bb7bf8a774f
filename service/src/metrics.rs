//! Prometheus metrics: one process-wide recorder (the `metrics` facade with
//! `metrics-exporter-prometheus`), HTTP request metrics per matched route, and a plain
//! `/metrics` listener for a separate bind address.
use std::net::{SocketAddr, TcpListener};
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets, seconds: 0.5 ms to 5 min (request latencies, installs, task runtimes).
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often buffered histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's recorder, installed on first use (a process that embeds the server and a
/// processor, like `crpc dev`, shares one).
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("static buckets")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics stays empty");
            }
            // Histogram samples wait in a buffer until upkeep folds them into their buckets;
            // without it they would pile up for as long as nobody scrapes.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!("metrics upkeep thread: {e}");
            }
            handle
        })
        .clone()
}

/// The text exposition of everything recorded so far.
pub fn render() -> String {
    handle().render()
}

/// A Prometheus text response.
pub fn response(text: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// Middleware (`middleware::from_fn(track)`): `crpc_http_requests_total{route, method, status}`
/// and `crpc_http_request_duration_seconds{route, method}`, by the matched route pattern written
/// `/user/request_answer/:id` (no braces inside label values, which naive parsers split on),
/// never the raw path, so ids cannot grow the label set.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .map(|p| p.replace('{', ":").replace('}', ""))
        .unwrap_or_else(|| "unmatched".to_string());
    let status = res.status().as_u16().to_string();
    metrics::counter!("crpc_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("crpc_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

/// Serves `GET /metrics` (no token) on `addr` with one worker: for a bind address only the
/// monitoring network reaches. `render` is called per scrape. Returns the bound address and
/// the server future to spawn.
pub fn listener<F, Fut>(
    addr: SocketAddr,
    render: F,
) -> std::io::Result<(SocketAddr, actix_web::dev::Server)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = String> + 'static,
{
    let tcp = TcpListener::bind(addr)?;
    let bound = tcp.local_addr()?;
    let server = HttpServer::new(move || {
        let render = render.clone();
        App::new()
            .route(
                "/metrics",
                web::get().to(move || {
                    let render = render.clone();
                    async move { response(render().await) }
                }),
            )
            .default_service(web::to(crate::http::not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(tcp)?
    .run();
    Ok((bound, server))
}
