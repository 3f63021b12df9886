//! The HTTP API: CRM.COM's paths under `/crmapi/rest/v2/`, their OpenAPI document, and
//! health probes.
//!
//! Handlers stay thin: parse (edge types), one store call, map to the envelope.

use std::sync::Arc;

use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;
pub use paths::{BASE, CONNECTOR, EXTENSIONS};

pub mod audit;
pub mod auth;
pub mod charges;
pub mod connector;
pub mod doc;
pub mod health;
pub mod keys;
pub mod paths;
pub mod subscriptions;

/// The methods under [`BASE`], each with its OpenAPI description: one list serves both
/// the router and the document, so neither can miss a method.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(doc::ApiDoc::openapi())
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
    finished(routes().into_openapi())
}

/// The document once every operation is in it: what is said of every response is added.
fn finished(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc::shared::RequestIdHeaders.modify(&mut document);
    document
}

/// The API's routes with its document and the health probes, before the edge's
/// middleware (see `server::app`).
pub fn router() -> Router<AppState> {
    let (api, document) = routes().split_for_parts();
    let document = Arc::new(finished(document));
    api.route(
        &format!("{BASE}/openapi.json"),
        get(move || {
            let document = document.clone();
            async move { Json(document.as_ref()).into_response() }
        }),
    )
    .route("/healthz", get(health::live))
    .route("/readyz", get(health::ready))
}
