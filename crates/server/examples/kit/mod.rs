//! What both benchmarks share: the real server as a child process, its clients, CPU
//! accounting and medians. Included with `mod kit;` by `bench.rs` and `bench_pg.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chargegate_core::Database;
use chargegate_core::clock::{Date, Timestamp};
use chargegate_core::money::{Currency, Money};
use chargegate_core::store::{NewCharge, NewOperator, NewUser};
use chargegate_core::text::{ChargeNumber, CustomerId, OperatorCode, Username};
use serde_json::Value;

pub(crate) const BATCH: usize = 50;

#[derive(Clone, Copy)]
pub(crate) struct Rate {
    pub per_second: f64,
    pub cpu_ms_per_call: f64,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub(crate) fn server_binary() -> PathBuf {
    // target/release/examples/bench → target/release/chargegate
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("chargegate");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release` first",
        bin.display()
    );
    bin
}

/// CPU seconds (user + system) from a `/proc/…/stat` file.
pub(crate) fn cpu_seconds(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields after the command name: state is [0], utime [11], stime [12], in ticks.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

// ---- the real server -------------------------------------------------------------------

pub(crate) struct Server {
    pub child: Child,
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) async fn wait_ready(client: &reqwest::Client, url: &str) {
    for _ in 0..500 {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never became ready");
}

impl Server {
    /// `database`: a URL as `--database` takes it; `env`: settings as `CHARGEGATE_*`.
    pub(crate) async fn start(binary: &Path, database: &str, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let child = Command::new(binary)
            .args(["--database", database])
            .envs(env.iter().copied())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()
            .unwrap();
        let root = format!("http://127.0.0.1:{port}");
        wait_ready(&client, &format!("{root}/readyz")).await;
        let base = format!("{root}/crmapi/rest/v2");
        let login: Value = client
            .post(format!("{base}/authentication/token"))
            .body(r#"{"username":"bench","password":"bench-pw","organisation":"bench"}"#)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["data"]["token"].as_str().unwrap().to_owned();
        Server {
            child,
            base,
            token,
            client,
        }
    }

    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `calls` decline calls from `clients` concurrent clients, each on fresh charges.
pub(crate) async fn declines(server: &Server, calls: usize, clients: usize) -> Rate {
    declines_from(server, 0, calls, clients).await
}

/// [`declines`] of batches `first..first + calls`.
pub(crate) async fn declines_from(
    server: &Server,
    first: usize,
    calls: usize,
    clients: usize,
) -> Rate {
    let next = Arc::new(AtomicUsize::new(first));
    let server = Arc::new(server_ref(server));
    let cpu_before = server.cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, server) = (next.clone(), server.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= first + calls {
                    break;
                }
                server.decline(batch).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu() - cpu_before;
    Rate {
        per_second: calls as f64 / elapsed,
        cpu_ms_per_call: cpu * 1000.0 / calls as f64,
    }
}

/// A cheap shareable view of a running server (the child process stays with the owner).
pub(crate) struct ServerRef {
    pub pid: u32,
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
}

pub(crate) fn server_ref(s: &Server) -> ServerRef {
    ServerRef {
        pid: s.child.id(),
        base: s.base.clone(),
        token: s.token.clone(),
        client: s.client.clone(),
    }
}

impl ServerRef {
    pub(crate) fn cpu(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.pid))
    }

    /// Declines the 50 charges of `batch`. The body is written and the answer checked as
    /// plain text, so that the load generator, which shares the machine's cores with the
    /// server, spends as little of them as it can.
    pub(crate) async fn decline(&self, batch: usize) {
        use std::fmt::Write;
        let mut body = String::with_capacity(160 + BATCH * 100);
        write!(
            body,
            r#"{{"token":"{}","declined_charges_set":["#,
            self.token
        )
        .unwrap();
        for i in 0..BATCH {
            let n = batch * BATCH + i;
            if i > 0 {
                body.push(',');
            }
            write!(
                body,
                r#"{{"number":"L{n:08}","billing_system_customer_identifier":"c","reference_number":"R{n:08}"}}"#
            )
            .unwrap();
        }
        body.push_str("]}");
        let answer = self
            .client
            .post(format!("{}/netflix/charges/decline", self.base))
            .body(body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        // Every item declined: status OK and an empty data object (an item that failed
        // would be listed in data).
        let text = std::str::from_utf8(&answer).unwrap();
        assert!(
            text.contains(r#""code":"OK""#) && text.contains(r#""data":{}"#),
            "{text}"
        );
    }
}

/// Fills a migrated database with operator `bench`, user `bench`, and `charges` PENDING charges
/// `L00000000…` of customer `c`.
pub(crate) async fn fill(store: &dyn Database, charges: usize) {
    let eur = Currency::parse("EUR").unwrap();
    let op = store
        .create_operator(&NewOperator {
            code: OperatorCode::parse("bench").unwrap(),
            name: "bench".into(),
            local_currency: eur,
        })
        .await
        .unwrap();
    store
        .create_user(&NewUser {
            operator_id: op.id,
            username: Username::parse("bench").unwrap(),
            password_hash: chargegate::auth::passwords::hash("bench-pw").unwrap(),
        })
        .await
        .unwrap();
    let received = Timestamp::parse("2026-11-01T00:00:00").unwrap();
    let rows: Vec<NewCharge> = (0..charges)
        .map(|i| NewCharge {
            operator_id: op.id,
            number: Some(ChargeNumber::parse(format!("L{i:08}")).unwrap()),
            customer: CustomerId::parse("c").unwrap(),
            netflix_customer: None,
            amount: Money::parse("9.99", eur).unwrap(),
            local_amount: Money::parse("9.99", eur).unwrap(),
            paid_through_date: Date::parse("2026-12-31").unwrap(),
            received_on: Some(received.plus_seconds(i as i64)),
            status: None,
        })
        .collect();
    store
        .import_charges(rows, Timestamp::now(), Arc::new(|_| {}))
        .await
        .unwrap();
}
