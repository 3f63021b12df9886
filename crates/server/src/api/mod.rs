//! The HTTP API: CRM.COM's paths under `/crmapi/rest/v2/`, their OpenAPI document, and
//! health probes.
//!
//! Handlers stay thin: parse (edge types), one store call, map to the envelope.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router, middleware};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

pub mod audit;
pub mod auth;
pub mod charges;
pub mod connector;
pub mod connector_doc;
pub mod context;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod health;
pub mod keys;
pub mod openapi;
pub mod subscriptions;

use error::{ApiError, Code, ErrorEnvelope};

use crate::edge::HttpErrors;

/// Where CRM.COM serves its Web API; existing integrations only change the host.
pub const BASE: &str = "/crmapi/rest/v2";

/// The methods under [`BASE`], each with its OpenAPI description: one list serves both
/// the router and the document, so neither can miss a method.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(auth::login))
        .routes(routes!(auth::release))
        .routes(routes!(keys::login_with_key))
        .routes(routes!(charges::accept))
        .routes(routes!(charges::decline))
        .routes(routes!(charges::acknowledge))
        .routes(routes!(charges::list))
        .routes(routes!(audit::show))
        .routes(routes!(audit::decisions))
        .routes(routes!(subscriptions::create))
        .routes(routes!(subscriptions::show))
        .routes(routes!(subscriptions::suspend))
        .routes(routes!(subscriptions::unsuspend))
        .routes(routes!(subscriptions::list_promotions))
        .routes(routes!(connector::intake))
        .routes(routes!(connector::verdicts))
        .routes(routes!(connector::outbox))
        .routes(routes!(connector::ack))
        .routes(routes!(connector::activate))
        .routes(routes!(connector::state))
        .routes(routes!(connector::promotions))
}

/// The OpenAPI 3.1 document of every method under [`BASE`].
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

pub fn router(state: AppState) -> Router {
    let edge = state.edge;
    let (api, document) = routes().split_for_parts();
    let document = Arc::new(document);
    // The console is HTML, not part of the API document; off, its paths are unknown.
    let api = if state.console.enabled {
        api.merge(crate::console::router())
    } else {
        api
    };
    let router = api
        .route(
            &format!("{BASE}/openapi.json"),
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref()).into_response() }
            }),
        )
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
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
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            context::track,
        ))
        .with_state(state);
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
