//! `GET /files/{sha256}`
use std::ops::Range;

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::TryStreamExt;

use crate::error::ApiError;
use crate::files::Files;
use crate::routes::files::reader;
use crpc_service::auth::AnyCaller;

#[utoipa::path(
    get,
    path = "/files/{sha256}",
    tag = "user",
    params(
        ("sha256" = String, Path, description = "Hex sha256 of the file"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=A-B`, `bytes=A-` or `bytes=-N`"),
    ),
    responses(
        (status = 200, description = "The file", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 206, description = "The range asked for; `Content-Range` says which", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 416, description = "The range starts past the end", body = task_api::ApiErrorBody),
    ),
    security(("bearer" = []))
)]
/// The file's bytes, streamed, or one range of them. Users read their uploads and their tasks'
/// files, workers the files of the tasks they hold leases on, admins any; 404 otherwise.
pub async fn handle(
    files: web::Data<Files>,
    AnyCaller(caller): AnyCaller,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let found = files.find(&path, &reader(&caller)?).await?;
    let asked = req.headers().get("range").and_then(|v| v.to_str().ok());
    let range = match asked.map(|h| byte_range(h, found.size)) {
        None | Some(Ranged::Whole) => None,
        Some(Ranged::Part(r)) => Some(r),
        Some(Ranged::Unsatisfiable) => return Err(unsatisfiable(found.size)),
    };
    let partial = range.is_some();
    let opened = files.open(&found, range).await?;
    let len = opened.range.end - opened.range.start;
    let body = opened
        .body
        .map_err(actix_web::error::ErrorInternalServerError);
    let mut resp = HttpResponse::build(if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    });
    if partial {
        resp.insert_header((
            "content-range",
            format!(
                "bytes {}-{}/{}",
                opened.range.start,
                opened.range.end - 1,
                opened.size
            ),
        ));
    }
    Ok(resp
        .insert_header(("accept-ranges", "bytes"))
        .insert_header(("etag", format!("\"{}\"", path.as_str())))
        .insert_header(("cache-control", "private, max-age=31536000, immutable"))
        .content_type("application/octet-stream")
        .body(SizedStream::new(len, body)))
}

fn unsatisfiable(size: u64) -> ApiError {
    ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
        format!("the file has {size} bytes; the range starts past its end"),
    )
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq)]
enum Ranged {
    /// All of it (no usable single range: serve the whole file, as RFC 9110 allows).
    Whole,
    /// These bytes.
    Part(Range<u64>),
    /// A range past the end.
    Unsatisfiable,
}

fn byte_range(header: &str, size: u64) -> Ranged {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    let Some((a, b)) = spec.split_once('-') else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (a.trim().is_empty(), num(a), num(b)) {
        (true, _, Some(n)) if n > 0 => (size.saturating_sub(n), size),
        (false, Some(s), None) if b.trim().is_empty() => (s, size),
        (false, Some(s), Some(e)) if e >= s => (s, e.saturating_add(1).min(size)),
        _ => return Ranged::Whole,
    };
    if start >= size {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(byte_range("bytes=0-9", 100), Ranged::Part(0..10));
        assert_eq!(byte_range("bytes=90-", 100), Ranged::Part(90..100));
        assert_eq!(byte_range("bytes=-10", 100), Ranged::Part(90..100));
        assert_eq!(byte_range("bytes=-1000", 100), Ranged::Part(0..100));
        assert_eq!(byte_range("bytes=95-1000", 100), Ranged::Part(95..100));
        assert_eq!(byte_range("bytes=100-", 100), Ranged::Unsatisfiable);
        assert_eq!(
            byte_range("bytes=0-18446744073709551615", 10),
            Ranged::Part(0..10)
        );
        for whole in [
            "bytes=5-1",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=x-y",
            "bytes=-0",
        ] {
            assert_eq!(byte_range(whole, 100), Ranged::Whole, "{whole}");
        }
    }
}
