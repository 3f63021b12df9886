//! The running server: shared state, the router, and serving with graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use chargegate_core::Store;
use chargegate_core::clock::Clock;
use chargegate_core::store::LoginPolicy;
use tokio::net::TcpListener;

use crate::api;
use crate::console::ConsoleSettings;
use crate::edge::{self, EdgeSettings};
use crate::metrics::{self, Metrics};
use crate::passwords::Passwords;
use crate::ratelimit::OperatorRateLimit;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Where handlers read the time; tests move a manual clock instead of sleeping.
    pub clock: Arc<dyn Clock>,
    pub passwords: Arc<Passwords>,
    pub auth: AuthSettings,
    /// This server's own counts, served on the metrics listener when there is one.
    pub metrics: Arc<Metrics>,
    /// Timeouts and limits of the HTTP edge.
    pub edge: EdgeSettings,
    /// Requests per second each operator may make.
    pub rate_limit: Arc<OperatorRateLimit>,
    /// The secrets tokens are signed with, as last read from the database.
    pub token_secrets: Arc<crate::jwt::Secrets>,
    /// The operator console at `/console/`: on or off, its cookies and sessions.
    pub console: Arc<ConsoleSettings>,
}

#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    /// Lifetime of a token from issue, in seconds, regardless of use.
    pub token_ttl_seconds: i64,
    pub login: LoginPolicy,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            token_ttl_seconds: 7200,
            login: LoginPolicy::default(),
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, lets
/// requests in flight finish within the shutdown deadline, and closes the rest.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let edge = state.edge;
    let metrics = state.metrics.clone();
    edge::serve(listener, api::router(state), edge, metrics, shutdown).await
}

/// Serves `GET /metrics` on its own listener until `shutdown` completes.
/// The same edge limits apply as on the API's listener, so a stalled scraper cannot hold
/// a shutdown either; its connections are counted apart from the API's.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    edge: EdgeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = metrics::router(metrics);
    // Scrapers are not CRM.COM clients: their listener keeps real statuses.
    let edge = EdgeSettings {
        http_errors: edge::HttpErrors::Rest,
        ..edge
    };
    edge::serve(listener, router, edge, Arc::new(Metrics::new()), shutdown).await
}
