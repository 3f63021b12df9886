//! The HTTP API: CRM.COM's paths under `/crmapi/rest/v2/`, plus health probes.
//!
//! Handlers stay thin: parse (edge types), one store call, map to the envelope.

use axum::Router;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::app::AppState;

pub mod auth;
pub mod charges;
pub mod context;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod health;

use error::{ApiError, Code};

/// Where CRM.COM serves its Web API; existing integrations only change the host.
pub const BASE: &str = "/crmapi/rest/v2";

pub fn router(state: AppState) -> Router {
    let at = |path: &str| format!("{BASE}/{path}");
    Router::new()
        .route(&at("authentication/token"), post(auth::login))
        .route(&at("authentication/token/release"), post(auth::release))
        .route(&at("netflix/charges/accept"), post(charges::accept))
        .route(&at("netflix/charges/decline"), post(charges::decline))
        .route(
            &at("netflix/charges/acknowledge"),
            post(charges::acknowledge),
        )
        .route(&at("netflix/charges/list"), get(charges::list))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inner to outer: a panic becomes a 500 in our envelope, which the context layer
        // then tags with the request id and logs like any other response.
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn(context::track))
        .with_state(state)
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
