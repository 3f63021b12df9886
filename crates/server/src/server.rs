//! The composition root: the one place that knows every part of a running server and puts
//! them together — state, the router (API and console), the listeners, the background
//! jobs and the order of shutdown.
//!
//! `chargegate serve` and the test harness both build a server here, so what the tests
//! run is what production runs: [`Server::build`] binds the listeners and assembles the
//! state, a test may then adjust the state (its clock, limits), and [`Server::run_until`]
//! serves until its shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use axum::Router;
use chargegate_core::Database;
use chargegate_core::Store;
use chargegate_core::clock::SystemClock;
use chargegate_core::store::LoginPolicy;
use tokio::net::TcpListener;

use crate::auth::passwords::Passwords;
use crate::auth::ratelimit::OperatorRateLimit;
use crate::edge::{self, EdgeSettings, HttpErrors};
use crate::jobs::outbox_push::{self, Webhook};
use crate::jobs::webhook_client;
use crate::metrics::{self, Metrics};
use crate::state::{AppState, AuthSettings};
use crate::{api, config::Settings, console, demo};

/// The whole application as one router over `state`: the API, its document and probes,
/// the console when it is enabled, and the edge's middleware around them all.
pub fn app(state: AppState) -> Router {
    let api = api::router();
    // The console is HTML, not part of the API document; off, its paths are unknown.
    let routes = if state.console.enabled {
        api.merge(console::router())
    } else {
        api
    };
    let edge = state.edge;
    let metrics = state.metrics.clone();
    edge::middleware::around(routes, edge, metrics).with_state(state)
}

impl AppState {
    /// State for a server over `store` with `settings`, on the system clock. (Here, not in
    /// `state`, so that only the composition root reads the settings.)
    pub fn new(store: Arc<dyn Store>, settings: &Settings) -> anyhow::Result<AppState> {
        Ok(AppState {
            store,
            clock: Arc::new(SystemClock),
            passwords: Arc::new(Passwords::new(settings.password_checks as usize)?),
            auth: AuthSettings {
                token_ttl_seconds: settings.token_ttl,
                login: LoginPolicy {
                    max_failures: settings.login_max_failures,
                    lockout_seconds: settings.login_lockout,
                },
            },
            metrics: Arc::new(Metrics::new()),
            edge: settings.edge(),
            rate_limit: Arc::new(OperatorRateLimit::new(
                settings.rate_limit,
                settings.rate_limit_burst,
            )),
            token_secrets: Arc::default(),
            console: Arc::new(settings.console()),
        })
    }
}

/// A server put together and bound to its addresses, not yet serving.
pub struct Server {
    state: AppState,
    store: Arc<dyn Database>,
    listener: TcpListener,
    address: SocketAddr,
    metrics_listener: Option<TcpListener>,
    webhook: Option<Webhook>,
    /// The CA file the HTTP client trusts besides the system's roots.
    webhook_ca: Option<PathBuf>,
    simulator_key: Option<String>,
}

impl Server {
    /// Binds the API's listener (and the metrics listener, when configured) and assembles
    /// the state over `store` from `settings`. Nothing is served until
    /// [`run_until`](Self::run_until).
    pub async fn build(settings: &Settings, store: Arc<dyn Database>) -> anyhow::Result<Server> {
        let webhook = if settings.outbox_webhook.is_empty() {
            None
        } else {
            Some(
                Webhook::parse(
                    &settings.outbox_webhook,
                    settings.outbox_webhook_secret.clone(),
                )
                .map_err(|e| anyhow!(e))?,
            )
        };
        let webhook_ca = settings.outbox_webhook_ca().map(Path::to_path_buf);
        if webhook.is_some() {
            // Refused here, before anything listens, rather than when the pusher starts.
            webhook_client::build(webhook_ca.as_deref()).map_err(|e| anyhow!(e))?;
        }
        let listener = TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let address = listener.local_addr().context("listener has no address")?;
        let metrics_listener = match settings.metrics_listen.as_str() {
            "" => None,
            metrics_listen => Some(
                TcpListener::bind(metrics_listen)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {metrics_listen}"))?,
            ),
        };
        let mut state = AppState::new(store.clone(), settings)?;
        state.edge.max_connections = within_descriptor_limit(
            state.edge.max_connections,
            settings.db_max_connections,
            descriptor_limit(),
        );
        Ok(Server {
            state,
            store,
            listener,
            address,
            metrics_listener,
            webhook,
            webhook_ca,
            simulator_key: None,
        })
    }

    /// Where the API listens (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where the metrics listener listens, when there is one.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The state handlers will see; adjust it before serving (tests move the clock).
    pub fn state_mut(&mut self) -> &mut AppState {
        &mut self.state
    }

    /// Also runs the simulated Netflix side against this server, with connector `key`.
    pub fn simulate_netflix(&mut self, key: String) {
        self.simulator_key = Some(key);
    }

    /// Serves until `shutdown` completes, then stops in order: the API stops accepting and
    /// lets requests in flight finish, the background jobs stop, the database finishes its
    /// work and closes, and the metrics listener (which kept answering) stops last.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            state,
            store,
            listener,
            address,
            metrics_listener,
            webhook,
            webhook_ca,
            simulator_key,
        } = self;
        // The one HTTP client of the webhook and the simulated Netflix side, built only when
        // one of them runs (it reads the system's root certificates).
        let http = if webhook.is_some() || simulator_key.is_some() {
            Some(webhook_client::build(webhook_ca.as_deref()).map_err(|e| anyhow!(e))?)
        } else {
            None
        };

        let (stop_metrics, metrics_stop) = tokio::sync::oneshot::channel::<()>();
        let metrics_task = match metrics_listener {
            Some(metrics_listener) => {
                let address = metrics_listener
                    .local_addr()
                    .context("metrics listener has no address")?;
                tracing::info!(%address, "metrics serving at /metrics");
                let stopped = async {
                    let _ = metrics_stop.await;
                };
                Some(tokio::spawn(serve_metrics(
                    metrics_listener,
                    state.metrics.clone(),
                    state.edge,
                    stopped,
                )))
            }
            None => None,
        };

        // Background work: the outbox's backlog for the metrics, the webhook push, and the
        // simulated Netflix side; all stop before the database closes.
        let (stop_jobs, jobs_stop) = tokio::sync::watch::channel(false);
        let mut jobs = vec![tokio::spawn(outbox_push::measure(
            state.store.clone(),
            state.clock.clone(),
            state.metrics.clone(),
            jobs_stop.clone(),
        ))];
        if let (Some(webhook), Some(http)) = (webhook, &http) {
            jobs.push(tokio::spawn(outbox_push::run(
                state.store.clone(),
                state.clock.clone(),
                state.metrics.clone(),
                webhook,
                http.clone(),
                jobs_stop.clone(),
            )));
        }
        if let (Some(key), Some(http)) = (simulator_key, &http) {
            jobs.push(tokio::spawn(demo::simulator::run(
                http.clone(),
                format!("http://{address}"),
                key,
                jobs_stop.clone(),
            )));
        }

        let edge = state.edge;
        let metrics = state.metrics.clone();
        let served = edge::serve(listener, app(state), edge, metrics, shutdown).await;
        let _ = stop_jobs.send(true);
        for job in jobs {
            let _ = job.await;
        }
        // Requests are done: let the database finish its work and fold its log.
        store.close().await;
        let _ = stop_metrics.send(());
        if let Some(task) = metrics_task {
            task.await
                .context("metrics listener stopped")?
                .context("metrics listener failed")?;
        }
        served.context("server failed")
    }
}

/// Serves `GET /metrics` on its own listener until `shutdown` completes.
/// The same edge limits apply as on the API's listener, so a stalled scraper cannot hold
/// a shutdown either; its connections are counted apart from the API's.
async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    edge: EdgeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = metrics::router(metrics);
    // Scrapers are not CRM.COM clients: their listener keeps real statuses.
    let edge = EdgeSettings {
        http_errors: HttpErrors::Rest,
        ..edge
    };
    edge::serve(listener, router, edge, Arc::new(Metrics::new()), shutdown).await
}

/// The process's soft limit on open descriptors, where the system says (Linux's
/// /proc/self/limits); `None` when unknown or unlimited.
fn descriptor_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `max_connections`, lowered when needed so that the connections, the database's
/// descriptors (up to three per connection for SQLite: the file, its WAL and its shared
/// memory) and a margin fit under the descriptor limit. Past the cap the server still
/// answers 503 and closes; past the descriptor limit it could not even accept, and every
/// new client would hang.
fn within_descriptor_limit(
    max_connections: usize,
    db_connections: u32,
    limit: Option<usize>,
) -> usize {
    let Some(limit) = limit else {
        return max_connections;
    };
    let reserve = 3 * (db_connections as usize + 2) + 64;
    let fits = limit.saturating_sub(reserve).max(1);
    if fits < max_connections {
        tracing::info!(
            max_connections = fits,
            descriptor_limit = limit,
            "max_connections lowered to stay under the descriptor limit (ulimit -n)"
        );
        fits
    } else {
        max_connections
    }
}
