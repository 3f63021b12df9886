//! Per-request context: the request id, the span every log line of the request is written
//! in, and the one summary line per request.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::Metrics;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id, as handlers see it (they write it into history rows).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Longest client request id that is echoed.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether a client's request id is safe to echo and to write into log lines as it is:
/// 1–128 characters, each an ASCII letter or digit, `-`, `_` or `.` (UUIDs, ULIDs, hex
/// and most tracing ids fit). Quotes, braces, colons, spaces and anything else that could
/// forge or break a log line are not allowed.
pub fn is_safe_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A client's id when it is safe (see [`is_safe_request_id`]) and given once; otherwise
/// the server makes one.
fn client_request_id(req: &Request) -> Option<String> {
    let mut all = req.headers().get_all(REQUEST_ID_HEADER).iter();
    let value = all.next()?.to_str().ok()?;
    if all.next().is_some() {
        return None; // two ids: neither is the request's
    }
    is_safe_request_id(value).then(|| value.to_owned())
}

/// A fresh request id: 128 random bits in hex.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Not a secret: uniqueness is what matters, and time gives enough of it here.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    chargegate_core::token::hex(&bytes)
}

/// Gives the request its id and span, then logs and counts its response.
pub async fn track(State(metrics): State<Arc<Metrics>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = metrics.request_started();
    let id = client_request_id(&req).unwrap_or_else(new_request_id);
    // The route template, never the raw path: bounded cardinality, no secrets.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = req.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
        operator = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestId(id.clone()));

    let mut response = next.run(req).instrument(span.clone()).await;

    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let status = response.status().as_u16();
    let latency = started.elapsed();
    metrics.request_finished(&route, status, latency);
    span.in_scope(|| {
        tracing::info!(
            status,
            // Microsecond precision: 0.205, not 0.20502599999999999.
            latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
            "request finished"
        );
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_safe_to_echo() {
        for ok in [
            "abc-123",
            "0f3e.77_A",
            "550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert!(is_safe_request_id(ok), "{ok}");
        }
        let long = "a".repeat(MAX_REQUEST_ID + 1);
        for bad in [
            "",
            "a b",
            "x\"y",
            "{\"level\":\"ERROR\"}",
            "a:b",
            "a=b",
            "\u{e9}t\u{e9}",
            long.as_str(),
        ] {
            assert!(!is_safe_request_id(bad), "{bad}");
        }
    }
}
