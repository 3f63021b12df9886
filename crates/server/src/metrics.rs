//! Prometheus metrics, served in the OpenMetrics text format at `GET /metrics` on a
//! listener of their own (`serve --metrics-listen ADDR`), never on the API's.
//!
//! Each server holds its own registry in its state, rather than a process-wide recorder,
//! so that several servers in one process (as in the tests) keep separate counts. Labels
//! have bounded values only: route templates, HTTP statuses, method names and codes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chargegate_core::batch::{ItemErrorCode, Method, Verdict};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ItemLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 1 ms to 10 s.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// What one server counts.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Histograms<RouteLabels>,
    http_in_flight: Gauge,
    charge_items: Family<ItemLabels, Counter>,
    db_transaction: Histograms<OperationLabels>,
    login_failures: Counter,
    login_lockouts: Counter,
    charge_items_applied: Family<MethodLabels, Counter>,
    charge_items_replayed: Family<MethodLabels, Counter>,
    connections_open: Gauge,
    connections_refused: Counter,
    rate_limited: Counter,
    outbox_waiting: Gauge,
    outbox_oldest_age: Gauge,
    outbox_deliveries: Counter,
    outbox_delivery_failures: Counter,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("chargegate"),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            http_in_flight: Gauge::default(),
            charge_items: Family::default(),
            db_transaction: Family::new_with_constructor(latency_histogram),
            login_failures: Counter::default(),
            login_lockouts: Counter::default(),
            charge_items_applied: Family::default(),
            charge_items_replayed: Family::default(),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            rate_limited: Counter::default(),
            outbox_waiting: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            outbox_deliveries: Counter::default(),
            outbox_delivery_failures: Counter::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            metrics.http_requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from receiving a request to its response, by route template",
            Unit::Seconds,
            metrics.http_duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests received and not yet answered",
            metrics.http_in_flight.clone(),
        );
        registry.register(
            "charge_items",
            "Items of accept, decline and acknowledge calls, by method and outcome \
             (ok or the per-item error code)",
            metrics.charge_items.clone(),
        );
        registry.register_with_unit(
            "db_transaction_duration",
            "Time of the database transaction that judges and applies a batch call, by \
             operation (accept, decline, acknowledge)",
            Unit::Seconds,
            metrics.db_transaction.clone(),
        );
        registry.register(
            "login_failures",
            "Logins refused for wrong credentials (INVALID_CREDENTIALS)",
            metrics.login_failures.clone(),
        );
        registry.register(
            "login_lockouts",
            "Logins refused because the organisation+username is locked out after too many \
             failures (TOO_MANY_REQUESTS)",
            metrics.login_lockouts.clone(),
        );
        // Constant 1, its labels telling which build answers: dashboards can show versions
        // across servers and alert on a mix.
        registry.register(
            "build",
            "The chargegate build: version, commit and build date",
            Info::new(vec![
                ("version", crate::build::VERSION),
                ("commit", crate::build::COMMIT),
                ("built", crate::build::DATE),
            ]),
        );
        registry.register(
            "charge_items_applied",
            "Items of accept, decline and acknowledge calls that changed a charge, by method",
            metrics.charge_items_applied.clone(),
        );
        registry.register(
            "charge_items_replayed",
            "Items of accept, decline and acknowledge calls that succeeded as idempotent \
             replays and changed nothing, by method",
            metrics.charge_items_replayed.clone(),
        );
        registry.register(
            "connections_open",
            "HTTP connections open on the API listener",
            metrics.connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "HTTP connections refused because max_connections were open",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the per-operator rate limit (TOO_MANY_REQUESTS)",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "outbox_waiting_events",
            "Outbox events not yet delivered (all operators), as last measured",
            metrics.outbox_waiting.clone(),
        );
        registry.register_with_unit(
            "outbox_oldest_waiting_age",
            "Age of the oldest undelivered outbox event, as last measured (0: none waits)",
            Unit::Seconds,
            metrics.outbox_oldest_age.clone(),
        );
        registry.register(
            "outbox_webhook_deliveries",
            "Outbox events this server delivered to the webhook (answered 2xx)",
            metrics.outbox_deliveries.clone(),
        );
        registry.register(
            "outbox_webhook_failures",
            "Webhook calls of this server that failed (no answer, or not 2xx)",
            metrics.outbox_delivery_failures.clone(),
        );
        // Every method and outcome from zero, so rates and alerts see the series before
        // the first occurrence.
        let outcomes = std::iter::once("ok").chain(
            ItemErrorCode::ALL
                .iter()
                .map(chargegate_core::ItemErrorCode::as_str),
        );
        for method in Method::ALL {
            for outcome in outcomes.clone() {
                metrics.charge_items.get_or_create_owned(&ItemLabels {
                    method: method.as_str(),
                    outcome,
                });
            }
            let labels = MethodLabels {
                method: method.as_str(),
            };
            metrics.charge_items_applied.get_or_create_owned(&labels);
            metrics.charge_items_replayed.get_or_create_owned(&labels);
        }
        metrics
    }

    /// One answered request.
    pub fn request_finished(&self, route: &str, status: u16, latency: Duration) {
        self.http_requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    /// Counts a request as in flight until the returned guard is dropped (also when the
    /// client goes away and the request's future is dropped).
    pub fn request_started(&self) -> InFlight {
        self.http_in_flight.inc();
        InFlight(self.http_in_flight.clone())
    }

    /// The outcome of every item of a batch call; successes also count as applied or as
    /// replayed (an idempotent repeat that changed nothing).
    pub fn items_judged(&self, method: Method, verdicts: &[Verdict]) {
        let labels = MethodLabels {
            method: method.as_str(),
        };
        for verdict in verdicts {
            self.charge_items
                .get_or_create(&ItemLabels {
                    method: method.as_str(),
                    outcome: verdict.outcome_label(),
                })
                .inc();
            match verdict {
                Verdict::Apply { .. } => {
                    self.charge_items_applied.get_or_create(&labels).inc();
                }
                Verdict::AlreadyDone => {
                    self.charge_items_replayed.get_or_create(&labels).inc();
                }
                Verdict::Failed(_) => {}
            }
        }
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection_opened(&self) -> InFlight {
        self.connections_open.inc();
        InFlight(self.connections_open.clone())
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// How long a batch call's transaction took, committed or not.
    pub fn batch_transaction(&self, method: Method, took: Duration) {
        self.db_transaction
            .get_or_create(&OperationLabels {
                operation: method.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    /// The outbox's backlog as just measured.
    pub fn outbox_backlog(&self, waiting: u64, oldest_age_seconds: i64) {
        self.outbox_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.outbox_oldest_age.set(oldest_age_seconds.max(0));
    }

    /// Events the webhook accepted.
    pub fn outbox_delivered(&self, events: u64) {
        self.outbox_deliveries.inc_by(events);
    }

    pub fn outbox_delivery_failed(&self) {
        self.outbox_delivery_failures.inc();
    }

    pub fn login_failed(&self) {
        self.login_failures.inc();
    }

    pub fn login_locked_out(&self) {
        self.login_lockouts.inc();
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Keeps one request (or connection) counted in its gauge until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics listener's routes: `GET /metrics` and nothing else.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn every_method_and_outcome_is_exposed_from_zero() {
        let text = Metrics::new().render().expect("renders");
        for method in ["accept", "decline", "acknowledge"] {
            for outcome in ["ok", "CHARGE_NOT_FOUND", "DUPLICATE_REFERENCE_NUMBER"] {
                let series = format!(
                    "chargegate_charge_items_total{{method=\"{method}\",outcome=\"{outcome}\"}} 0"
                );
                assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
            }
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_build_is_exposed_as_build_info() {
        let text = Metrics::new().render().expect("renders");
        let series = format!(
            "chargegate_build_info{{version=\"{}\",commit=\"{}\",built=\"{}\"}} 1",
            crate::build::VERSION,
            crate::build::COMMIT,
            crate::build::DATE
        );
        assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
    }

    #[test]
    fn requests_are_counted_by_route_and_status_and_timed_by_route() {
        let m = Metrics::new();
        m.request_finished("/healthz", 200, Duration::from_millis(3));
        m.request_finished("/healthz", 200, Duration::from_millis(4));
        m.request_finished("unmatched", 404, Duration::from_millis(1));
        let text = m.render().expect("renders");
        assert!(
            line(
                &text,
                "chargegate_http_requests_total{route=\"/healthz\",status=\"200\"} 2"
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                "chargegate_http_requests_total{route=\"unmatched\",status=\"404\"} 1"
            )
            .is_some()
        );
        assert!(
            line(
                &text,
                "chargegate_http_request_duration_seconds_count{route=\"/healthz\"} 2"
            )
            .is_some(),
            "{text}"
        );
    }

    #[test]
    fn a_request_is_in_flight_until_its_guard_is_dropped() {
        let m = Metrics::new();
        let a = m.request_started();
        let b = m.request_started();
        assert!(
            line(
                &m.render().expect("renders"),
                "chargegate_http_requests_in_flight 2"
            )
            .is_some()
        );
        drop(a);
        drop(b);
        assert!(
            line(
                &m.render().expect("renders"),
                "chargegate_http_requests_in_flight 0"
            )
            .is_some()
        );
    }

    #[test]
    fn two_servers_keep_separate_counts() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.login_failed();
        assert!(line(&a.render().expect("a"), "chargegate_login_failures_total 1").is_some());
        assert!(line(&b.render().expect("b"), "chargegate_login_failures_total 0").is_some());
    }
}
