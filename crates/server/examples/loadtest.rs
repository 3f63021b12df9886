//! A load test of the decision path: declines and accepts of 50-item batches, from
//! several concurrent clients, against the real server over loopback HTTP.
//!
//! ```sh
//! cargo run --release --example loadtest -- [sqlite|postgres://…] [charges] [clients]
//! ```
//!
//! It starts a server in-process on 127.0.0.1:0 over a fresh database (a temporary SQLite
//! file, or the given PostgreSQL URL, which must name an empty database), imports the
//! charges, then decides every one of them exactly once: each client takes disjoint
//! batches of 50. It prints throughput and latency percentiles; it asserts nothing about
//! time (timings belong here, not in tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chargegate::app::{self, AppState, AuthSettings};
use chargegate::passwords::{self, Passwords};
use chargegate_core::clock::{Date, Timestamp};
use chargegate_core::money::{Currency, Money};
use chargegate_core::store::{NewCharge, NewOperator, NewUser};
use chargegate_core::text::{ChargeNumber, CustomerId, OperatorCode, Username};
use chargegate_store::{DatabaseUrl, StoreOptions};
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = args.first().cloned().unwrap_or_else(|| "sqlite".into());
    let charges: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let clients: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);

    let dir = tempfile::tempdir().unwrap();
    let url = if target == "sqlite" {
        format!("sqlite://{}", dir.path().join("load.db").display())
    } else {
        target.clone()
    };
    let store =
        chargegate_store::open(&DatabaseUrl::parse(&url).unwrap(), &StoreOptions::default())
            .await
            .unwrap();
    store.migrate().await.unwrap();
    assert!(
        store.is_empty().await.unwrap(),
        "the load test needs an empty database"
    );

    let op = store
        .create_operator(&NewOperator {
            code: OperatorCode::parse("load").unwrap(),
            name: "load".into(),
            local_currency: Currency::parse("EUR").unwrap(),
        })
        .await
        .unwrap();
    store
        .create_user(&NewUser {
            operator_id: op.id,
            username: Username::parse("load").unwrap(),
            password_hash: passwords::hash("load-pw").unwrap(),
        })
        .await
        .unwrap();
    let eur = Currency::parse("EUR").unwrap();
    let numbers: Vec<String> = (0..charges).map(|i| format!("L{i:08}")).collect();
    let rows: Vec<NewCharge> = numbers
        .iter()
        .map(|n| NewCharge {
            operator_id: op.id,
            number: Some(ChargeNumber::parse(n.as_str()).unwrap()),
            customer: CustomerId::parse("c").unwrap(),
            netflix_customer: None,
            amount: Money::parse("9.99", eur).unwrap(),
            local_amount: Money::parse("9.99", eur).unwrap(),
            paid_through_date: Date::parse("2026-12-31").unwrap(),
            received_on: None,
            status: None,
        })
        .collect();
    let started = Instant::now();
    store
        .import_charges(&rows, Timestamp::now(), &|_| {})
        .await
        .unwrap();
    let import_time = started.elapsed();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState {
        store,
        passwords: Arc::new(Passwords::new(2).unwrap()),
        auth: AuthSettings::default(),
        metrics: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(listener, state, async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let base = format!("http://{addr}/crmapi/rest/v2");
    let login: Value = client
        .post(format!("{base}/authentication/token"))
        .body(r#"{"username":"load","password":"load-pw","organisation":"load"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["token"].as_str().unwrap().to_owned();

    let batches: Vec<Vec<String>> = numbers.chunks(50).map(<[String]>::to_vec).collect();
    let batches = Arc::new(tokio::sync::Mutex::new(batches.into_iter().enumerate()));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, base, token, batches) = (client.clone(), base.clone(), token.clone(), batches.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let Some((i, batch)) = batches.lock().await.next() else { break };
                    let (method, set) = if i % 2 == 0 {
                        ("decline", "declined_charges_set")
                    } else {
                        ("accept", "accepted_charges_set")
                    };
                    let items: Vec<Value> = batch
                        .iter()
                        .map(|n| json!({"number": n, "billing_system_customer_identifier": "c", "reference_number": format!("R-{n}")}))
                        .collect();
                    let body = json!({"token": token, set: items}).to_string();
                    let t = Instant::now();
                    let reply: Value = client
                        .post(format!("{base}/netflix/charges/{method}"))
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    latencies.push(t.elapsed());
                    assert_eq!(reply["data"], json!({}), "{reply}");
                }
                latencies
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "backend           {}",
        if target == "sqlite" {
            "sqlite"
        } else {
            "postgres"
        }
    );
    println!(
        "charges           {charges} (imported in {:.2?})",
        import_time
    );
    println!("clients           {clients}");
    println!("calls             {} of 50 items", latencies.len());
    println!(
        "decided           {:.0} charges/s",
        charges as f64 / elapsed.as_secs_f64()
    );
    println!(
        "calls             {:.0} calls/s",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!("latency p50       {:.2?}", pct(0.50));
    println!("latency p95       {:.2?}", pct(0.95));
    println!("latency p99       {:.2?}", pct(0.99));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
