//! The black-box test harness: the real server on 127.0.0.1:0 over a fresh database per
//! test, spoken to over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use chargegate::auth::passwords;
use chargegate::config::Settings;
use chargegate::server::Server;
use chargegate::state::{AppState, AuthSettings};
use chargegate_core::Database;
use chargegate_core::clock::Clock;
use chargegate_core::clock::{Date, Timestamp};
use chargegate_core::money::{Currency, Money};
use chargegate_core::store::{ImportOutcome, NewCharge, NewOperator, NewUser};
use chargegate_core::text::{ChargeNumber, CustomerId, OperatorCode, Username};
use chargegate_store::{DatabaseUrl, StoreOptions};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) mod db;
pub(crate) mod process;
pub(crate) mod proxy;
pub(crate) mod standby;
pub(crate) use db::{Backend, TestDb};

/// The operator most tests act as, and its user.
pub(crate) const OPERATOR: &str = "pci";
pub(crate) const USER: &str = "demo";
pub(crate) const PASSWORD: &str = "demo";
/// A second operator, whose charges the first must never see or touch.
pub(crate) const RIVAL: &str = "rival";
pub(crate) const RIVAL_USER: &str = "eve";
pub(crate) const RIVAL_PASSWORD: &str = "eve-password";

pub(crate) const V2: &str = "/crmapi/rest/v2";

pub(crate) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub(crate) fn code(&self) -> &str {
        self.body["status"]["code"].as_str().unwrap_or("<none>")
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `(number, error_code)` of each failed item, in order.
    pub(crate) fn failures(&self) -> Vec<(String, String)> {
        self.body["data"]["failed_charges_set"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        (
                            i["number"].as_str().unwrap_or("<null>").to_owned(),
                            i["error_code"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts a request-level error: HTTP status, `status.code`, `data` = `{}`.
    #[track_caller]
    pub(crate) fn assert_error(&self, http: u16, code: &str) {
        assert_eq!((self.status, self.code()), (http, code), "{}", self.text);
        assert_eq!(self.body["data"], json!({}), "{}", self.text);
        assert!(
            !self.body["status"]["message"]
                .as_str()
                .unwrap_or("")
                .is_empty()
        );
    }

    /// Asserts `200 OK` with `data` = `{}`.
    #[track_caller]
    pub(crate) fn assert_all_ok(&self) {
        assert_eq!((self.status, self.code()), (200, "OK"), "{}", self.text);
        assert_eq!(self.body["data"], json!({}), "{}", self.text);
    }
}

/// The real clock plus an offset that tests move, so an expiry is reached by turning the
/// clock rather than by sleeping.
#[derive(Debug, Default)]
pub(crate) struct MovableClock(std::sync::atomic::AtomicI64);

impl MovableClock {
    pub(crate) fn advance(&self, seconds: i64) {
        self.0
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for MovableClock {
    fn now(&self) -> Timestamp {
        Timestamp::now().plus_seconds(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

pub(crate) struct TestServer {
    pub db: Arc<TestDb>,
    pub store: Arc<dyn Database>,
    pub clock: Arc<MovableClock>,
    pub addr: SocketAddr,
    pub auth: AuthSettings,
    /// The server's own counts.
    pub metrics: Arc<chargegate::metrics::Metrics>,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub(crate) async fn open_store(db: &TestDb) -> Arc<dyn Database> {
    open_store_with(db, &StoreOptions::default()).await
}

pub(crate) async fn open_store_with(db: &TestDb, options: &StoreOptions) -> Arc<dyn Database> {
    let url = DatabaseUrl::parse(&db.url).expect("test database URL");
    let store = chargegate_store::open(&url, options)
        .await
        .expect("open test database");
    store.migrate().await.expect("migrate test database");
    store
}

impl TestServer {
    /// A server over a fresh database holding operators `pci` and `rival`, each with a
    /// user, and no charges.
    pub(crate) async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, AuthSettings::default()).await
    }

    pub(crate) async fn start_with(backend: Backend, auth: AuthSettings) -> TestServer {
        let db = Arc::new(TestDb::new(backend).await);
        let server = Self::start_on(db, auth).await;
        server.add_operator(OPERATOR, "EUR", USER, PASSWORD).await;
        server
            .add_operator(RIVAL, "EUR", RIVAL_USER, RIVAL_PASSWORD)
            .await;
        server
    }

    /// A server over an existing database (for restarts and several servers).
    pub(crate) async fn start_on(db: Arc<TestDb>, auth: AuthSettings) -> TestServer {
        Self::start_with_options(db, auth, &StoreOptions::default()).await
    }

    pub(crate) async fn start_with_options(
        db: Arc<TestDb>,
        auth: AuthSettings,
        options: &StoreOptions,
    ) -> TestServer {
        Self::start_tweaked(db, auth, options, |_| {}).await
    }

    /// A server over a fresh database holding operators `pci` and `rival`, whose state
    /// `tweak` adjusts first (edge limits, rate limit, …).
    pub(crate) async fn start_with_state(
        backend: Backend,
        tweak: impl FnOnce(&mut AppState),
    ) -> TestServer {
        let db = Arc::new(TestDb::new(backend).await);
        let server =
            Self::start_tweaked(db, AuthSettings::default(), &StoreOptions::default(), tweak).await;
        server.add_operator(OPERATOR, "EUR", USER, PASSWORD).await;
        server
            .add_operator(RIVAL, "EUR", RIVAL_USER, RIVAL_PASSWORD)
            .await;
        server
    }

    /// A server built by the composition root that `chargegate serve` uses
    /// ([`Server::build`]), on a free port, over the database `db`; `tweak` then adjusts
    /// its state (edge limits, rate limit, …) before it serves.
    pub(crate) async fn start_tweaked(
        db: Arc<TestDb>,
        auth: AuthSettings,
        options: &StoreOptions,
        tweak: impl FnOnce(&mut AppState),
    ) -> TestServer {
        let store = open_store_with(&db, options).await;
        let settings = Settings {
            listen: "127.0.0.1:0".into(),
            ..Settings::default()
        };
        let mut server = Server::build(&settings, store.clone())
            .await
            .expect("build the server");
        let addr = server.address();
        let clock = Arc::new(MovableClock::default());
        let state = server.state_mut();
        state.clock = clock.clone();
        state.auth = auth;
        tweak(state);
        let metrics = state.metrics.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async move {
            let _ = rx.await;
        }));
        TestServer {
            db,
            store,
            clock,
            addr,
            auth,
            metrics,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Asks the server to stop, without waiting.
    pub(crate) fn signal_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Stops gracefully, waiting for requests in flight.
    pub(crate) async fn stop(mut self) -> Arc<TestDb> {
        self.stop_in_place().await;
        self.db.clone()
    }

    async fn stop_in_place(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Stops this server and starts a new one on the same database.
    pub(crate) async fn restart(self) -> TestServer {
        let auth = self.auth;
        let db = self.stop().await;
        Self::start_on(db, auth).await
    }

    pub(crate) async fn add_operator(
        &self,
        code: &str,
        currency: &str,
        user: &str,
        password: &str,
    ) -> i64 {
        let op = self
            .store
            .create_operator(&NewOperator {
                code: OperatorCode::parse(code).unwrap(),
                name: format!("{code} operator"),
                local_currency: Currency::parse(currency).unwrap(),
            })
            .await
            .expect("create operator");
        self.store
            .create_user(&NewUser {
                operator_id: op.id,
                username: Username::parse(user).unwrap(),
                password_hash: passwords::hash(password).unwrap(),
            })
            .await
            .expect("create user");
        op.id
    }

    pub(crate) async fn operator_id(&self, code: &str) -> i64 {
        self.store
            .operator_by_code(&OperatorCode::parse(code).unwrap())
            .await
            .unwrap()
            .expect("operator exists")
            .id
    }

    /// Imports PENDING charges of 9.99 EUR: `(number, customer)` pairs, received one
    /// second apart in the given order.
    pub(crate) async fn add_charges(&self, operator: &str, charges: &[(&str, &str)]) {
        let op = self.operator_id(operator).await;
        let eur = Currency::parse("EUR").unwrap();
        let base = Timestamp::parse("2026-11-01T00:00:00").unwrap();
        let rows: Vec<NewCharge> = charges
            .iter()
            .enumerate()
            .map(|(i, (number, customer))| NewCharge {
                operator_id: op,
                number: Some(ChargeNumber::parse(*number).unwrap()),
                customer: CustomerId::parse(*customer).unwrap(),
                netflix_customer: None,
                amount: Money::parse("9.99", eur).unwrap(),
                local_amount: Money::parse("9.99", eur).unwrap(),
                paid_through_date: Date::parse("2026-12-31").unwrap(),
                received_on: Some(base.plus_seconds(i as i64)),
                status: None,
            })
            .collect();
        match self
            .store
            .import_charges(rows, Timestamp::now(), Arc::new(|_| {}))
            .await
            .unwrap()
        {
            ImportOutcome::Imported(_) => {}
            ImportOutcome::Refused(c) => panic!("fixture charges refused: {c:?}"),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            body,
        }
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, body.to_string()).await
    }

    pub(crate) async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        self.send(self.client.post(self.url(path)).body(body)).await
    }

    pub(crate) async fn get(&self, path_and_query: &str) -> Reply {
        self.send(self.client.get(self.url(path_and_query))).await
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) async fn try_login(
        &self,
        organisation: &str,
        username: &str,
        password: &str,
    ) -> Reply {
        self.post(
            &format!("{V2}/authentication/token"),
            &json!({"username": username, "password": password, "organisation": organisation}),
        )
        .await
    }

    pub(crate) async fn login_as(
        &self,
        organisation: &str,
        username: &str,
        password: &str,
    ) -> String {
        let r = self.try_login(organisation, username, password).await;
        assert_eq!(r.code(), "OK", "login failed: {}", r.text);
        r.body["data"]["token"].as_str().expect("token").to_owned()
    }

    /// A token of the `pci` operator's user.
    pub(crate) async fn login(&self) -> String {
        self.login_as(OPERATOR, USER, PASSWORD).await
    }

    /// Calls `accept`, `decline` or `acknowledge` with the given items.
    pub(crate) async fn batch(&self, method: &str, token: &str, items: Value) -> Reply {
        let set = match method {
            "accept" => "accepted_charges_set",
            "decline" => "declined_charges_set",
            "acknowledge" => "acknowledged_charges_set",
            other => panic!("no such method {other}"),
        };
        self.post(
            &format!("{V2}/netflix/charges/{method}"),
            &json!({"token": token, set: items}),
        )
        .await
    }

    /// Every charge the operator's list shows in a group, paging through all of it.
    pub(crate) async fn list_all(&self, token: &str, group: &str) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let r = self
                .get(&format!(
                    "{V2}/netflix/charges/list?token={token}&number_of_results=50&charge_status={group}&offset={}",
                    all.len()
                ))
                .await;
            assert_eq!(r.code(), "OK", "{}", r.text);
            let page = r.body["data"]["charges_set"]
                .as_array()
                .expect("charges_set")
                .clone();
            let done = page.len() < 50;
            all.extend(page);
            if done {
                return all;
            }
        }
    }

    /// `number → charge_status` of one charge as the list shows it, looking in both groups.
    pub(crate) async fn status_of(&self, token: &str, number: &str) -> Option<String> {
        for group in ["NOT_PROCESSED", "PROCESSED"] {
            if let Some(c) = self
                .list_all(token, group)
                .await
                .into_iter()
                .find(|c| c["number"] == number)
            {
                return c["charge_status"].as_str().map(str::to_owned);
            }
        }
        None
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// `{"number", "billing_system_customer_identifier"[, "reference_number"]}`.
pub(crate) fn item(number: &str, customer: &str) -> Value {
    json!({"number": number, "billing_system_customer_identifier": customer})
}

pub(crate) fn item_ref(number: &str, customer: &str, reference: &str) -> Value {
    json!({"number": number, "billing_system_customer_identifier": customer, "reference_number": reference})
}

/// Defines each test once per backend the product ships: `mod sqlite { … }` and
/// `mod postgres { … }`. The body names the backend with the identifier in parentheses.
#[macro_export]
macro_rules! on_every_backend {
    ($( $(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $backend = $crate::common::Backend::Sqlite;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::db::require_postgres(stringify!($name));
                    let $backend = $crate::common::Backend::Postgres;
                    $body
                }
            )*
        }
    };
}
