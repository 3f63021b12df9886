//! What wraps every route, API and console alike: the request context (id, span,
//! metrics), limits on the request target and the body's time, panics and unknown paths
//! answered in the envelope, and CRM.COM's errors-as-200 mode.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::{EdgeSettings, HttpErrors, context};
use crate::edge::error::{ApiError, Code, ErrorEnvelope};
use crate::metrics::Metrics;

/// `routes` with the fallbacks and every layer of the edge around them.
pub fn around<S>(routes: Router<S>, edge: EdgeSettings, metrics: Arc<Metrics>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let router = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inner to outer: a panic becomes a 500 in our envelope, which the context layer
        // then tags with the request id and logs like any other response.
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn_with_state(
            edge.max_url_bytes,
            refuse_long_urls,
        ))
        // A body must arrive whole within the body timeout; reading it fails otherwise and
        // the request answers 408 REQUEST_TIMEOUT (see `extract::JsonObject`).
        .layer(RequestBodyTimeoutLayer::new(edge.body_timeout))
        .layer(middleware::from_fn_with_state(metrics, context::track));
    match edge.http_errors {
        HttpErrors::Rest => router,
        // Outermost, so that logs and metrics keep the status of the code.
        HttpErrors::Crm => router.layer(middleware::from_fn(errors_as_200)),
    }
}

/// `http_errors = "crm"`: every error envelope is answered with `200`, its code staying
/// in `status.code`; headers such as `Retry-After` stay. The health probes keep their
/// real statuses: load balancers, not CRM.COM clients, read them.
async fn errors_as_200(req: Request, next: Next) -> Response {
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz");
    let mut response = next.run(req).await;
    if !probe && response.extensions().get::<ErrorEnvelope>().is_some() {
        *response.status_mut() = axum::http::StatusCode::OK;
    }
    response
}

/// `414 URI_TOO_LONG` for a request target (path and query) longer than the limit.
/// (hyper refuses targets longer than the whole head buffer itself, as `431`.)
async fn refuse_long_urls(State(max): State<usize>, req: Request, next: Next) -> Response {
    let length = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if length > max {
        return ApiError::new(
            Code::UriTooLong,
            format!("the request target is longer than {max} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such method")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this method does not accept that HTTP verb (reads are GET, actions are POST)",
    )
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    ApiError::internal("a request handler panicked").into_response()
}
