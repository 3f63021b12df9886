//! The write engine measured against the physical limit of this machine, in one run.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench -- [rounds] [calls]
//! ```
//!
//! `BENCH_ONLY=list` runs only the `charges/list` and static-body measurements.
//!
//! It measures, interleaved round by round so that a noisy neighbour hurts every side alike:
//!
//! * **raw**: a minimal rusqlite program on the same SQLite build and schema, WAL,
//!   `synchronous=FULL`, doing a decline's durable work per transaction (read the 50
//!   charges and their references, one conditional UPDATE, 50 decision rows, 50 history
//!   rows, 50 outbox events, COMMIT) as fast as one connection can; and **raw ×8**, the same with 8 batches
//!   per transaction (what group commit allows);
//! * **chargegate**: the real server binary (`target/release/chargegate serve`) over HTTP,
//!   8 and 64 clients, each call declining 50 fresh PENDING charges with reference numbers;
//! * `charges/list` (50 charges) against a static JSON body of the same size served in a
//!   process of its own, by plain axum and through chargegate's own edge and middleware;
//! * latency: the unloaded p50 (one client), and the p99 of an open-loop run at half the
//!   measured 8-client rate, measured from each call's intended send time.
//!
//! CPU per call is the server process's CPU time (user + system) over the calls it
//! answered; the raw CPU per transaction is the raw thread's own. The figures are
//! printed; nothing is asserted (timings belong here, not in tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chargegate_core::AdminStore;
use chargegate_store::{SqliteStore, StoreOptions};
use rusqlite::{Connection, params_from_iter};
use serde_json::Value;

mod kit;
use kit::{
    BATCH, Rate, Server, cpu_seconds, declines, free_port, median, server_binary, server_ref,
    wait_ready,
};

fn sqlite_url(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}

// The same allocator as the server, so the raw baseline is not handicapped by a slower one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--static-server") {
        static_server(
            &args[1],
            &args[2],
            args.get(3).map(String::as_str) == Some("stack"),
        );
        return;
    }
    let rounds: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let calls: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(rounds, calls));
}

struct Figures {
    raw: Vec<Rate>,
    raw_group: Vec<Rate>,
    product8: Vec<Rate>,
    product64: Vec<Rate>,
    list: Vec<f64>,
    static_json: Vec<f64>,
    static_stack: Vec<f64>,
}

async fn run(rounds: usize, calls: usize) {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.db");
    eprintln!(
        "preparing a template database with {} charges…",
        calls * BATCH
    );
    prepare(&template, calls * BATCH).await;

    let mut f = Figures {
        raw: vec![],
        raw_group: vec![],
        product8: vec![],
        product64: vec![],
        list: vec![],
        static_json: vec![],
        static_stack: vec![],
    };
    // BENCH_ONLY=list: only `charges/list` and the static bodies (to profile them).
    let list_only = std::env::var("BENCH_ONLY").as_deref() == Ok("list");
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        if !list_only {
            decline_round(&mut f, &binary, &template, dir.path(), calls).await;
        }
        let db = fresh_copy(&template, dir.path(), "list");
        let server = Server::start(&binary, &sqlite_url(&db), &[]).await;
        let (list_rate, body) = lists(&server, calls, 8).await;
        server.stop();
        f.list.push(list_rate);
        let body_file = dir.path().join("body.json");
        std::fs::write(&body_file, &body).unwrap();
        let stat = StaticServer::start(&body_file, false).await;
        f.static_json.push(statics(&stat.url, calls, 8).await);
        stat.stop();
        let stat = StaticServer::start(&body_file, true).await;
        f.static_stack.push(statics(&stat.url, calls, 8).await);
        stat.stop();
    }
    if list_only {
        print_lists(&f);
        return;
    }

    // Latency: unloaded p50, then an open loop at half the 8-client rate.
    let db = fresh_copy(&template, dir.path(), "latency");
    let server = Server::start(&binary, &sqlite_url(&db), &[]).await;
    let unloaded = closed_loop_latencies(&server, 300).await;
    let half = median(f.product8.iter().map(|r| r.per_second).collect()) / 2.0;
    let open = open_loop_latencies(&server, half, Duration::from_secs(3), 300, calls).await;
    server.stop();

    report(&f, &unloaded, &open, half, calls);
}

/// One round of the decline measurements: raw, raw ×8, then the server at 8 and 64 clients.
async fn decline_round(f: &mut Figures, binary: &Path, template: &Path, dir: &Path, calls: usize) {
    {
        let db = fresh_copy(template, dir, "raw");
        f.raw.push(
            tokio::task::spawn_blocking(move || raw(&db, calls, 1))
                .await
                .unwrap(),
        );
        let db = fresh_copy(template, dir, "raw8");
        f.raw_group.push(
            tokio::task::spawn_blocking(move || raw(&db, calls, 8))
                .await
                .unwrap(),
        );
        for clients in [8, 64] {
            let db = fresh_copy(template, dir, "product");
            let server = Server::start(binary, &sqlite_url(&db), &[]).await;
            let rate = declines(&server, calls, clients).await;
            server.stop();
            if clients == 8 {
                f.product8.push(rate);
            } else {
                f.product64.push(rate);
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(f: &Figures, unloaded: &[Duration], open: &[Duration], half: f64, calls: usize) {
    let rate = |v: &[Rate]| median(v.iter().map(|r| r.per_second).collect());
    let cpu = |v: &[Rate]| median(v.iter().map(|r| r.cpu_ms_per_call).collect());
    let (raw, raw8, p8, p64) = (
        rate(&f.raw),
        rate(&f.raw_group),
        rate(&f.product8),
        rate(&f.product64),
    );
    println!(
        "\n## decline-50 on SQLite ({} rounds of {calls} calls, medians)\n",
        f.raw.len()
    );
    println!("| what | calls/s | CPU ms per call | ratio to raw |");
    println!("|---|---|---|---|");
    println!(
        "| raw, 1 transaction per batch | {raw:.0} | {:.3} | 1.00 |",
        cpu(&f.raw)
    );
    println!(
        "| raw, 8 batches per transaction | {raw8:.0} | {:.3} | {:.2} |",
        cpu(&f.raw_group),
        raw8 / raw
    );
    println!(
        "| chargegate, 8 clients | {p8:.0} | {:.3} | {:.2} |",
        cpu(&f.product8),
        p8 / raw
    );
    println!(
        "| chargegate, 64 clients | {p64:.0} | {:.3} | {:.2} |",
        cpu(&f.product64),
        p64 / raw
    );
    println!(
        "\nserver CPU per call / raw CPU per transaction: {:.2} (8 clients), {:.2} (64 clients)",
        cpu(&f.product8) / cpu(&f.raw),
        cpu(&f.product64) / cpu(&f.raw)
    );
    print_lists(f);
    let p50 = percentile(unloaded, 0.5);
    let p99 = percentile(open, 0.99);
    println!(
        "\nlatency: unloaded p50 {:.2} ms; open loop at {half:.0} calls/s (half the 8-client rate): p50 {:.2} ms, p99 {:.2} ms; p99 / unloaded p50 = {:.2}",
        ms(p50),
        ms(percentile(open, 0.5)),
        ms(p99),
        ms(p99) / ms(p50)
    );
    let rates = |v: &[Rate]| v.iter().map(|r| r.per_second as u64).collect::<Vec<_>>();
    println!("\nper round (calls/s): raw {:?}", rates(&f.raw));
    println!("raw x8 {:?}", rates(&f.raw_group));
    println!("chargegate 8 {:?}", rates(&f.product8));
    println!("chargegate 64 {:?}", rates(&f.product64));
}

fn print_lists(f: &Figures) {
    let (list, stat) = (median(f.list.clone()), median(f.static_json.clone()));
    let stack = median(f.static_stack.clone());
    println!(
        "\ncharges/list (50 charges), 8 clients: {list:.0} req/s; static JSON of the same size: {stat:.0} req/s (plain axum), ratio {:.2}; {stack:.0} req/s through chargegate's own edge, request middleware and log line, ratio {:.2}",
        list / stat,
        list / stack
    );
    let rounded = |v: &[f64]| v.iter().map(|r| *r as u64).collect::<Vec<_>>();
    println!(
        "list {:?} static {:?} static through the stack {:?}",
        rounded(&f.list),
        rounded(&f.static_json),
        rounded(&f.static_stack)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The SQLite template (see [`kit::fill`]).
async fn prepare(path: &Path, charges: usize) {
    let store = SqliteStore::open(path, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    kit::fill(&store, charges).await;
    store.close().await;
}

fn fresh_copy(template: &Path, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    std::fs::copy(template, &path).unwrap();
    path
}

// ---- raw baseline ----------------------------------------------------------------------

/// `calls` batches of 50 through one connection, `group` batches per transaction.
fn raw(db: &Path, calls: usize, group: usize) -> Rate {
    let conn = Connection::open(db).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .unwrap();
    let (op, user): (i64, i64) = conn
        .query_row(
            "SELECT operator_id, id FROM users WHERE username = 'bench'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let list = |n: usize, from: usize| {
        (from..from + n)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let read_sql = format!(
        "SELECT c.id, c.customer_id, c.status, d.method FROM charges c \
         LEFT JOIN decisions d ON d.charge_id = c.id \
         WHERE c.operator_id = ?1 AND c.number IN ({})",
        list(BATCH, 2)
    );
    let refs_sql = format!(
        "SELECT reference_number FROM decisions WHERE operator_id = ?1 AND method = 'decline' \
         AND reference_number IN ({})",
        list(BATCH, 2)
    );
    let update_sql = format!(
        "UPDATE charges SET status = 'DECLINED', set_as_declined_on = ?1 \
         WHERE status = 'PENDING' AND id IN ({})",
        list(BATCH, 2)
    );
    let cpu_before = cpu_seconds("/proc/thread-self/stat");
    let started = Instant::now();
    let mut batch = 0;
    while batch < calls {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for _ in 0..group.min(calls - batch) {
            let numbers: Vec<String> = (0..BATCH)
                .map(|i| format!("L{:08}", batch * BATCH + i))
                .collect();
            let references: Vec<String> = (0..BATCH)
                .map(|i| format!("R{:08}", batch * BATCH + i))
                .collect();
            let mut read = conn.prepare_cached(&read_sql).unwrap();
            let ids: Vec<i64> = read
                .query_map(
                    params_from_iter(
                        std::iter::once(rusqlite::types::Value::Integer(op))
                            .chain(numbers.iter().map(|n| n.clone().into())),
                    ),
                    |r| r.get(0),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let mut refs = conn.prepare_cached(&refs_sql).unwrap();
            let used = refs
                .query_map(
                    params_from_iter(
                        std::iter::once(rusqlite::types::Value::Integer(op))
                            .chain(references.iter().map(|n| n.clone().into())),
                    ),
                    |r| r.get::<_, String>(0),
                )
                .unwrap()
                .count();
            assert_eq!((ids.len(), used), (BATCH, 0));
            let at = 1_790_000_000_i64;
            let changed = conn
                .prepare_cached(&update_sql)
                .unwrap()
                .execute(params_from_iter(
                    std::iter::once(at).chain(ids.iter().copied()),
                ))
                .unwrap();
            assert_eq!(changed, BATCH);
            let mut decision = conn
                .prepare_cached(
                    "INSERT INTO decisions (charge_id, operator_id, method, reference_number, \
                     user_id, decided_on, request_id) VALUES (?1, ?2, 'decline', ?3, ?4, ?5, ?6)",
                )
                .unwrap();
            let mut history = conn
                .prepare_cached(
                    "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, \
                     user_id, request_id, reference_number) \
                     VALUES (?1, 'decline', 'PENDING', 'DECLINED', ?2, ?3, ?4, ?5)",
                )
                .unwrap();
            // What Netflix must be told, in the same transaction, as chargegate does.
            let mut event = conn
                .prepare_cached(
                    "INSERT INTO outbox (operator_id, type, occurred_at, charge_id, \
                     reference_number) VALUES (?1, 'charge.declined', ?2, ?3, ?4)",
                )
                .unwrap();
            for (id, reference) in ids.iter().zip(&references) {
                decision
                    .execute(rusqlite::params![id, op, reference, user, at, "raw"])
                    .unwrap();
                history
                    .execute(rusqlite::params![id, at, user, "raw", reference])
                    .unwrap();
                event
                    .execute(rusqlite::params![op, at, id, reference])
                    .unwrap();
            }
            batch += 1;
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds("/proc/thread-self/stat") - cpu_before;
    Rate {
        per_second: calls as f64 / elapsed,
        cpu_ms_per_call: cpu * 1000.0 / calls as f64,
    }
}

/// `charges/list` of 50 PENDING charges, `calls` times from `clients` clients; returns
/// the rate and one response body (for the static comparison).
async fn lists(server: &Server, calls: usize, clients: usize) -> (f64, Vec<u8>) {
    let url = format!(
        "{}/netflix/charges/list?token={}&number_of_results=50&charge_status=NOT_PROCESSED&offset=0",
        server.base, server.token
    );
    let body = server
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let parsed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        parsed["data"]["charges_set"].as_array().map(Vec::len),
        Some(50)
    );
    let rate = get_many(&server.client, &url, calls, clients).await;
    (rate, body.to_vec())
}

async fn get_many(client: &reqwest::Client, url: &str, calls: usize, clients: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, client, url) = (next.clone(), client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let r = client.get(&url).send().await.unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

async fn statics(url: &str, calls: usize, clients: usize) -> f64 {
    get_many(&reqwest::Client::new(), url, calls, clients).await
}

struct StaticServer {
    child: Child,
    url: String,
}

impl StaticServer {
    /// `stack`: through chargegate's own edge, request middleware and log line, rather
    /// than plain axum.
    async fn start(body: &Path, stack: bool) -> StaticServer {
        let port = free_port();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--static-server", &format!("127.0.0.1:{port}")])
            .arg(body)
            .arg(if stack { "stack" } else { "plain" })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/static");
        wait_ready(&reqwest::Client::new(), &url).await;
        StaticServer { child, url }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves one JSON body with plain axum or, with `stack`, through chargegate's own edge
/// (hyper settings, connection cap, error envelopes), request middleware (request id,
/// metrics, span) and log line: everything a request meets but the handler.
fn static_server(listen: &str, body_file: &str, stack: bool) {
    let body: &'static [u8] = Vec::leak(std::fs::read(body_file).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/static",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        if stack {
            chargegate::telemetry::init(chargegate::config::LogFormat::Pretty, "info").unwrap();
            let metrics = Arc::new(chargegate::metrics::Metrics::new());
            let app = app.layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                chargegate::edge::context::track,
            ));
            let forever = std::future::pending::<()>();
            chargegate::edge::serve(listener, app, Default::default(), metrics, forever)
                .await
                .unwrap();
        } else {
            axum::serve(listener, app).await.unwrap();
        }
    });
}

// ---- latency ---------------------------------------------------------------------------

async fn closed_loop_latencies(server: &Server, calls: usize) -> Vec<Duration> {
    let server = server_ref(server);
    let mut latencies = Vec::with_capacity(calls);
    for batch in 0..calls {
        let started = Instant::now();
        server.decline(batch).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

/// Calls sent at a fixed `rate` for `duration`, each timed from its intended send time.
async fn open_loop_latencies(
    server: &Server,
    rate: f64,
    duration: Duration,
    first_batch: usize,
    batches: usize,
) -> Vec<Duration> {
    let server = Arc::new(server_ref(server));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let count = ((duration.as_secs_f64() * rate) as usize).min(batches - first_batch);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let intended = start + interval * i as u32;
        tokio::time::sleep_until(intended).await;
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            server.decline(first_batch + i).await;
            intended.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    latencies.sort();
    latencies
}
