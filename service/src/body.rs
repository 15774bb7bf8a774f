//! `Body<T>`: a JSON request body with an explicit size limit (413 past it), 400 for malformed
//! JSON and 422 naming the field for wrong types. Any content type is read as JSON, so a bare
//! `curl -d '{…}'` works.
use std::future::Future;
use std::pin::Pin;

use actix_web::error::PayloadError;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::http::parse_json;

/// Largest body a route accepts, bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A parsed JSON body.
pub struct Body<T>(pub T);

/// A raw request body (e.g. a package archive) with the route's size limit.
pub struct RawBody(pub web::Bytes);

/// Reads the whole body, refusing it (413) past the route's [`BodyLimit`] (default 1 MiB).
async fn read_limited(
    limit: usize,
    declared: Option<usize>,
    mut payload: Payload,
) -> Result<web::BytesMut, ApiError> {
    let too_large = || {
        ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than the {limit}-byte limit of this route"),
        )
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e: PayloadError| {
            ApiError::bad_request("bad_body", format!("could not read the request body: {e}"))
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn limits(req: &HttpRequest) -> (usize, Option<usize>) {
    let limit = req
        .app_data::<web::Data<BodyLimit>>()
        .map(|l| l.0)
        .unwrap_or(1 << 20);
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    (limit, declared)
}

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (limit, declared) = limits(req);
        let payload = payload.take();
        Box::pin(async move {
            Ok(RawBody(
                read_limited(limit, declared, payload).await?.freeze(),
            ))
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (limit, declared) = limits(req);
        let payload = payload.take();
        Box::pin(async move {
            let buf = read_limited(limit, declared, payload).await?;
            if buf.is_empty() {
                return Err(ApiError::bad_request(
                    "malformed_json",
                    "request body is empty; send a JSON object",
                ));
            }
            parse_json(&buf).map(Body)
        })
    }
}
