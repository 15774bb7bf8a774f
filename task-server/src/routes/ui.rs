//! `GET /ui` (and `/ui/app.js`, `/ui/app.css`): the dashboard, embedded in the binary. No
//! token is needed to load it; it asks for one and sends it as a bearer header to the JSON
//! API, so a user sees their own tasks and an admin everyone's.
use actix_web::HttpResponse;

/// Scripts, styles and requests from this origin only; no inline code, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    crpc_service::http::embedded(content_type, CSP, body)
}

/// The page.
pub async fn index() -> HttpResponse {
    asset(
        "text/html; charset=utf-8",
        include_str!("../../assets/ui/index.html"),
    )
}

/// Its script.
pub async fn script() -> HttpResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui/app.js"),
    )
}

/// Its styles.
pub async fn style() -> HttpResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/ui/app.css"),
    )
}
