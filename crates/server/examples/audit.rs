//! The audit trail's two bulk readers, measured on SQLite:
//!
//! ```sh
//! cargo build --release && cargo run --release --example audit -- [decisions] [pages]
//! ```
//!
//! * **export**: `chargegate charges export` (the release binary, CSV to /dev/null) of
//!   every decision of a database holding `decisions` (default 1,000,000) decided charges,
//!   and of a tenth of them: rows per second, and the process's peak resident memory
//!   (VmHWM, sampled from /proc while it runs), which must not grow with the window;
//! * **feed**: `GET /chargegate/v1/charges/decisions` with `limit=1000` from 8 clients at
//!   once on a running server, each paging from the start of the window: pages per second
//!   over all clients (`pages` pages in all, default 400).
//!
//! The database is made directly with rusqlite (1,000,000 charges through the import
//! path would take longer than the measurement): the schema is the real one (migrated by
//! the store), and every charge gets the history rows the write paths give it (its
//! receipt and its decision). Figures are printed; nothing is asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chargegate_core::AdminStore;
use chargegate_core::clock::Timestamp;
use chargegate_core::money::Currency;
use chargegate_core::store::{NewOperator, NewUser};
use chargegate_core::text::{OperatorCode, Username};
use chargegate_store::{SqliteStore, StoreOptions};
use rusqlite::{Connection, params};
use serde_json::Value;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const START: &str = "2026-11-01T00:00:00";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let decisions: usize = args
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let pages: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(400);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(decisions, pages));
}

async fn run(decisions: usize, pages: usize) {
    let binary = server_binary();
    let dir = tempfile::tempdir().unwrap();
    // AUDIT_BENCH_DB=PATH keeps the database there, to look into it afterwards.
    let db = std::env::var_os("AUDIT_BENCH_DB")
        .map_or_else(|| dir.path().join("audit.db"), PathBuf::from);
    let started = Instant::now();
    prepare(&db, decisions).await;
    println!(
        "prepared {decisions} decided charges in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let start = Timestamp::parse(START).unwrap();
    // One decision per second from START: a tenth of the window holds a tenth of them.
    let whole = start.plus_seconds(decisions as i64);
    let tenth = start.plus_seconds(decisions as i64 / 10);
    for (label, to) in [("a tenth", tenth), ("all", whole), ("all (again)", whole)] {
        let (rows, seconds, peak_kib) = export(&binary, &db, start, to);
        println!(
            "export {label}: {rows} rows in {seconds:.2} s = {:.0} rows/s, peak RSS {:.1} MiB",
            rows as f64 / seconds,
            peak_kib as f64 / 1024.0
        );
    }
    let server = Server::start(&binary, &db).await;
    let (done, seconds) = feed(&server, start, whole, pages, 8).await;
    println!(
        "feed: {done} pages of 1000 from 8 clients in {seconds:.2} s = {:.1} pages/s",
        done as f64 / seconds
    );
    server.stop();
}

fn server_binary() -> PathBuf {
    // target/release/examples/audit → target/release/chargegate
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

/// Operator `bench` with user `bench`, and `n` charges, each received and then declined
/// or accepted (alternately) by that user, one decision per second from [`START`].
async fn prepare(path: &Path, n: usize) {
    let store = SqliteStore::open(path, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let op = store
        .create_operator(&NewOperator {
            code: OperatorCode::parse("bench").unwrap(),
            name: "bench".into(),
            local_currency: Currency::parse("EUR").unwrap(),
        })
        .await
        .unwrap();
    let user = store
        .create_user(&NewUser {
            operator_id: op.id,
            username: Username::parse("bench").unwrap(),
            password_hash: chargegate::auth::passwords::hash("bench-pw").unwrap(),
        })
        .await
        .unwrap();
    store.close().await;

    let start = Timestamp::parse(START).unwrap().unix();
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
        .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut charge = tx
            .prepare(
                "INSERT INTO charges (id, number, operator_id, customer_id, amount_minor, currency, \
                 local_amount_minor, local_currency, paid_through_date, status, initial_status, \
                 received_on, set_as_approved_on, set_as_declined_on) \
                 VALUES (?1, ?2, ?3, ?4, 999, 'EUR', 999, 'EUR', '2026-12-31', ?5, 'PENDING', ?6, ?7, ?8)",
            )
            .unwrap();
        let mut decision = tx
            .prepare(
                "INSERT INTO decisions (charge_id, operator_id, method, reference_number, user_id, \
                 decided_on, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .unwrap();
        let mut history = tx
            .prepare(
                "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, user_id, \
                 request_id, reference_number) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .unwrap();
        for i in 0..n {
            let id = i as i64 + 1;
            let at = start + i as i64;
            let accept = i % 2 == 0;
            let (method, status) = if accept {
                ("accept", "APPROVED")
            } else {
                ("decline", "DECLINED")
            };
            let reference = format!("R-{i:08}");
            let request = format!("req-{:08}", i / 50);
            charge
                .execute(params![
                    id,
                    format!("A{i:08}"),
                    op.id,
                    format!("cust{}", i % 100_000),
                    status,
                    at - 86_400,
                    accept.then_some(at),
                    (!accept).then_some(at),
                ])
                .unwrap();
            history
                .execute(params![
                    id,
                    "import",
                    Option::<&str>::None,
                    "PENDING",
                    at - 86_400,
                    Option::<i64>::None,
                    Option::<&str>::None,
                    Option::<&str>::None
                ])
                .unwrap();
            decision
                .execute(params![id, op.id, method, reference, user, at, request])
                .unwrap();
            history
                .execute(params![
                    id, method, "PENDING", status, at, user, request, reference
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
        .unwrap();
}

/// Runs `charges export` into /dev/null: (rows, seconds, peak RSS in KiB).
fn export(binary: &Path, db: &Path, from: Timestamp, to: Timestamp) -> (u64, f64, u64) {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["--database", &format!("sqlite://{}", db.display())])
        .args(["charges", "export", "--operator", "bench"])
        .args(["--from", &from.to_string(), "--to", &to.to_string()])
        .env("CHARGEGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    let rows = said
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {said:?}"));
    (rows, seconds, peak_kib)
}

struct Server {
    child: std::process::Child,
    root: String,
    token: String,
    client: reqwest::Client,
}

impl Server {
    async fn start(binary: &Path, db: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args(["--database", &format!("sqlite://{}", db.display())])
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("CHARGEGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        for _ in 0..500 {
            if let Ok(r) = client.get(format!("{root}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let login: Value = client
            .post(format!("{root}/crmapi/rest/v2/authentication/token"))
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
            root,
            token,
            client,
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pages` pages of 1000 from `clients` clients, each following its own cursor from the
/// window's start (and starting over at its end): (pages served, seconds).
async fn feed(
    server: &Server,
    from: Timestamp,
    to: Timestamp,
    pages: usize,
    clients: usize,
) -> (usize, f64) {
    let left = Arc::new(AtomicUsize::new(pages));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let left = left.clone();
        let client = server.client.clone();
        let url = format!(
            "{}/chargegate/v1/charges/decisions?from={from}&to={to}&limit=1000",
            server.root
        );
        let token = server.token.clone();
        tasks.push(tokio::spawn(async move {
            let mut after: Option<String> = None;
            let mut served = 0;
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                let page_url = match &after {
                    Some(a) => format!("{url}&after={a}"),
                    None => url.clone(),
                };
                let page: Value = client
                    .get(page_url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(page["status"]["code"], "OK", "{page}");
                after = page["data"]["next"].as_str().map(str::to_owned);
                served += 1;
            }
            served
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap();
    }
    (done, started.elapsed().as_secs_f64())
}
