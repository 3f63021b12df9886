//! The connector API measured on SQLite against a raw baseline, in one run.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_connector -- [batches]
//! ```
//!
//! * **intake**: the real server over HTTP, 4 clients each sending batches of 500 new
//!   charges (`POST connector/charges`), against **raw**: one rusqlite connection on the
//!   same schema (WAL, `synchronous=FULL`) doing intake's durable work per batch in one
//!   transaction (500 look-ups by Netflix id, the highest number, 500 charges and 500
//!   history rows);
//! * **outbox**: one connector reading 500 events and acknowledging them
//!   (`GET outbox?limit=500` + `POST outbox/ack`) until the outbox is empty, against
//!   **raw**: the same read (with its joins) and the same update in one transaction;
//! * **lag**: 8 clients accepting fresh charges at full speed (50 per call) while one
//!   connector loops GET + ack; the lag of an event is from the moment its decision's
//!   answer arrived to the moment the connector read it.
//!
//! Figures are printed; nothing is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chargegate_core::AdminStore;
use chargegate_core::apikey::{ApiKey, KEY_BYTES};
use chargegate_core::clock::Timestamp;
use chargegate_core::connector::{CONNECTOR_KEY_MARK, ConnectorAdmin, NewConnectorKey};
use chargegate_core::text::OperatorCode;
use chargegate_store::{SqliteStore, StoreOptions};
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use tokio::sync::Mutex;

mod kit;
use kit::{Server, server_binary};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INTAKE_BATCH: usize = 500;

fn main() {
    let batches: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(60);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(batches));
}

/// A migrated database with operator and user `bench`, and a connector key for it.
async fn prepare(path: &Path) -> String {
    let store = SqliteStore::open(path, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    kit::fill(&store, 0).await;
    let operator = store
        .operator_by_code(&OperatorCode::parse("bench").unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).unwrap();
    let key = ApiKey::marked(CONNECTOR_KEY_MARK, bytes);
    store
        .create_connector_key(&NewConnectorKey {
            operator_id: operator.id,
            prefix: key.prefix(),
            hash: key.hash(),
            name: None,
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
    store.close().await;
    key.expose().to_owned()
}

fn items(prefix: &str, batch: usize, n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"netflix_charge_identifier": format!("{prefix}-{batch}-{i}"),
                   "billing_system_customer_identifier": format!("c{}", i % 100),
                   "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31"})
        })
        .collect();
    json!({ "charges_set": items })
}

struct Connector {
    root: String,
    key: String,
    client: reqwest::Client,
}

impl Connector {
    async fn post(&self, path: &str, body: &Value) -> Value {
        let r: Value = self
            .client
            .post(format!("{}/chargegate/v1/connector{path}", self.root))
            .bearer_auth(&self.key)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["status"]["code"], "OK", "{r}");
        r["data"].clone()
    }

    async fn outbox(&self) -> Vec<Value> {
        let r: Value = self
            .client
            .get(format!(
                "{}/chargegate/v1/connector/outbox?limit=500",
                self.root
            ))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["data"]["events_set"].as_array().unwrap().clone()
    }

    async fn ack(&self, events: &[Value]) {
        let ids: Vec<&Value> = events.iter().map(|e| &e["id"]).collect();
        self.post("/outbox/ack", &json!({ "ids": ids })).await;
    }
}

/// Intake through the server: `batches` of 500 from 4 clients; charges per second.
async fn intake_http(c: &Arc<Connector>, batches: usize, tag: &str) -> (f64, Vec<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let numbers = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, next, numbers, tag) = (c.clone(), next.clone(), numbers.clone(), tag.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let data = c.post("/charges", &items(&tag, b, INTAKE_BATCH)).await;
                let got: Vec<String> = data["charges_set"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["number"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(got.len(), INTAKE_BATCH);
                numbers.lock().await.extend(got);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (batches * INTAKE_BATCH) as f64 / started.elapsed().as_secs_f64();
    let numbers = numbers.lock().await.clone();
    (rate, numbers)
}

fn raw_connection(db: &Path) -> Connection {
    let conn = Connection::open(db).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .unwrap();
    conn
}

/// Intake's durable work, one batch per transaction; charges per second.
fn intake_raw(db: &Path, batches: usize) -> f64 {
    let conn = raw_connection(db);
    let op: i64 = conn
        .query_row("SELECT id FROM operators WHERE code = 'bench'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let started = Instant::now();
    let mut next = 90_000_000u32;
    for b in 0..batches {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut find = conn
            .prepare_cached(
                "SELECT number FROM charges WHERE operator_id = ?1 AND netflix_charge_id = ?2",
            )
            .unwrap();
        for i in 0..INTAKE_BATCH {
            let found: Option<String> = find
                .query_row(params![op, format!("raw-{b}-{i}")], |r| r.get(0))
                .ok();
            assert!(found.is_none());
        }
        let _max: Option<String> = conn
            .query_row(
                "SELECT max(number) FROM charges \
                 WHERE number GLOB 'I[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO charges (number, operator_id, customer_id, amount_minor, currency, \
                     local_amount_minor, local_currency, paid_through_date, status, \
                     initial_status, received_on, netflix_charge_id, subscription_id) \
                 VALUES (?1, ?2, ?3, 999, 'EUR', 999, 'EUR', '2026-12-31', 'PENDING', \
                     'PENDING', 1790000000, ?4, \
                     (SELECT id FROM subscriptions WHERE operator_id = ?2 AND customer_id = ?3 \
                        AND life_cycle_state <> 'CANCELLED'))",
            )
            .unwrap();
        let mut history = conn
            .prepare_cached(
                "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, \
                     request_id, connector_key_id) \
                 VALUES (?1, 'intake', NULL, 'PENDING', 1790000000, 'r', 1)",
            )
            .unwrap();
        for i in 0..INTAKE_BATCH {
            next += 1;
            insert
                .execute(params![
                    format!("I{next:08}"),
                    op,
                    format!("c{}", i % 100),
                    format!("raw-{b}-{i}")
                ])
                .unwrap();
            history.execute([conn.last_insert_rowid()]).unwrap();
        }
        drop((find, insert, history));
        conn.execute_batch("COMMIT").unwrap();
    }
    (batches * INTAKE_BATCH) as f64 / started.elapsed().as_secs_f64()
}

/// Accepts every number, 50 per call, from 8 clients; `decided` records when each
/// call's answer arrived, by charge number.
async fn decide(
    server: &kit::ServerRef,
    numbers: Vec<String>,
    decided: Option<Arc<Mutex<HashMap<String, Instant>>>>,
) {
    let chunks: Vec<Vec<String>> = numbers.chunks(50).map(<[String]>::to_vec).collect();
    let chunks = Arc::new(Mutex::new(chunks));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (chunks, decided) = (chunks.clone(), decided.clone());
        let (client, base, token) = (
            server.client.clone(),
            server.base.clone(),
            server.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(chunk) = chunks.lock().await.pop() else {
                    break;
                };
                let items: Vec<Value> = chunk
                    .iter()
                    .map(|n| json!({"number": n, "billing_system_customer_identifier": customer_of(n)}))
                    .collect();
                let r: Value = client
                    .post(format!("{base}/netflix/charges/accept"))
                    .body(json!({"token": token, "accepted_charges_set": items}).to_string())
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(r["data"], json!({}), "{r}");
                if let Some(decided) = &decided {
                    let now = Instant::now();
                    let mut decided = decided.lock().await;
                    for n in chunk {
                        decided.insert(n, now);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The customer of each charge number (intake gave item i of a batch customer
/// `c{i % 100}`), filled once after intake from the server's own answers.
static CUSTOMERS: std::sync::OnceLock<HashMap<String, String>> = std::sync::OnceLock::new();

fn customer_of(number: &str) -> String {
    CUSTOMERS
        .get()
        .and_then(|m| m.get(number).cloned())
        .unwrap_or_default()
}

/// Reads and acknowledges until the outbox is empty; events per second.
async fn drain(c: &Connector) -> (f64, usize) {
    let started = Instant::now();
    let mut total = 0;
    loop {
        let events = c.outbox().await;
        if events.is_empty() {
            break;
        }
        total += events.len();
        c.ack(&events).await;
    }
    (total as f64 / started.elapsed().as_secs_f64(), total)
}

/// The outbox's read and acknowledgement in raw SQL, 500 at a time; events per second.
fn drain_raw(db: &Path) -> (f64, usize) {
    let conn = raw_connection(db);
    let started = Instant::now();
    let mut total = 0;
    loop {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut read = conn
            .prepare_cached(
                "SELECT o.id, o.type, op.code, o.occurred_at, o.reference_number, c.number, \
                        c.customer_id, c.amount_minor, c.currency, c.local_amount_minor, \
                        c.local_currency, c.paid_through_date, c.status, c.received_on, \
                        c.set_as_approved_on, c.netflix_charge_id \
                 FROM outbox o JOIN operators op ON op.id = o.operator_id \
                 LEFT JOIN charges c ON c.id = o.charge_id \
                 LEFT JOIN subscriptions s ON s.id = o.subscription_id \
                 WHERE o.operator_id = 1 AND o.delivered_at IS NULL ORDER BY o.id LIMIT 500",
            )
            .unwrap();
        let ids: Vec<i64> = read
            .query_map([], |r| {
                let _: (String, String, i64, Option<String>, Option<String>) =
                    (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?);
                r.get(0)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut ack = conn
            .prepare_cached(
                "UPDATE outbox SET delivered_at = 1790000000 WHERE id = ?1 \
                 AND delivered_at IS NULL AND operator_id = 1",
            )
            .unwrap();
        for id in &ids {
            ack.execute([id]).unwrap();
        }
        drop((read, ack));
        conn.execute_batch("COMMIT").unwrap();
        if ids.is_empty() {
            break;
        }
        total += ids.len();
    }
    (total as f64 / started.elapsed().as_secs_f64(), total)
}

async fn run(batches: usize) {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("connector.db");
    let key = prepare(&db).await;
    let raw_db = dir.path().join("raw.db");
    prepare(&raw_db).await;
    println!(
        "chargegate connector benchmark, SQLite; {batches} intake batches of {INTAKE_BATCH}; \
         {} cores; load average {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let server = Server::start(&binary, &format!("sqlite://{}", db.display()), &[]).await;
    let root = server.base.trim_end_matches("/crmapi/rest/v2").to_owned();
    let connector = Arc::new(Connector {
        root,
        key,
        client: server.client.clone(),
    });

    // Intake, interleaved with the raw baseline.
    let raw_rate = tokio::task::spawn_blocking({
        let raw_db = raw_db.clone();
        move || intake_raw(&raw_db, batches)
    })
    .await
    .unwrap();
    let (http_rate, numbers) = intake_http(&connector, batches, "bench").await;
    println!("\n| intake (500 per call) | charges/s | ratio to raw |");
    println!("|---|---|---|");
    println!("| raw, one transaction per batch | {raw_rate:.0} | 1.00 |");
    println!(
        "| chargegate over HTTP, 4 clients | {http_rate:.0} | {:.2} |",
        http_rate / raw_rate
    );

    // Events: accept every charge intake stored.
    let mut customers = HashMap::new();
    for b in 0..batches {
        // Numbers were answered in request order per batch, batches in completion order;
        // ask the server's own answer again (idempotent) for the pairing.
        let data = connector
            .post("/charges", &items("bench", b, INTAKE_BATCH))
            .await;
        for (i, s) in data["charges_set"].as_array().unwrap().iter().enumerate() {
            customers.insert(
                s["number"].as_str().unwrap().to_owned(),
                format!("c{}", i % 100),
            );
        }
    }
    CUSTOMERS.set(customers).unwrap();
    let sref = kit::server_ref(&server);
    let half = numbers.len() / 2;
    decide(&sref, numbers[..half].to_vec(), None).await;
    // The raw side reads the same events, from a copy of the server's database.
    let raw_db_events = dir.path().join("raw-outbox.db");
    raw_connection(&db)
        .execute("VACUUM INTO ?1", [raw_db_events.to_str().unwrap()])
        .unwrap();
    let (raw_drain, raw_total) = tokio::task::spawn_blocking(move || drain_raw(&raw_db_events))
        .await
        .unwrap();
    let (http_drain, http_total) = drain(&connector).await;
    println!("\n| outbox GET + ack, 500 per call | events/s | ratio to raw |");
    println!("|---|---|---|");
    println!("| raw read + update, one transaction per 500 | {raw_drain:.0} | 1.00 |");
    println!(
        "| chargegate over HTTP, one connector | {http_drain:.0} | {:.2} |",
        http_drain / raw_drain
    );
    assert_eq!(http_total, raw_total);

    // Lag: 8 deciding clients and one connector at once.
    let decided: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let rest = numbers[half..].to_vec();
    let expected = rest.len();
    let consumer = {
        let (connector, seen) = (connector.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let events = connector.outbox().await;
                let now = Instant::now();
                {
                    let mut seen = seen.lock().await;
                    for e in &events {
                        seen.insert(e["charge"]["number"].as_str().unwrap().to_owned(), now);
                    }
                    if seen.len() >= expected {
                        break;
                    }
                }
                if !events.is_empty() {
                    connector.ack(&events).await;
                }
            }
        })
    };
    let started = Instant::now();
    decide(&sref, rest, Some(decided.clone())).await;
    let deciding = started.elapsed();
    tokio::time::timeout(Duration::from_secs(120), consumer)
        .await
        .unwrap()
        .unwrap();
    let decided = decided.lock().await;
    let seen = seen.lock().await;
    let mut lags: Vec<f64> = decided
        .iter()
        .map(|(n, at)| {
            seen[n]
                .checked_duration_since(*at)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0
        })
        .collect();
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lags[((lags.len() as f64 - 1.0) * q) as usize];
    println!(
        "\noutbox lag, 8 clients accepting {} charges ({:.0} decisions/s) while one connector \
         loops GET + ack: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lags.len(),
        lags.len() as f64 / deciding.as_secs_f64(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    server.stop();
}
