//! decline-50 on PostgreSQL, measured against a raw tokio-postgres client in one run.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_pg -- [rounds] [calls]
//! ```
//!
//! `CHARGEGATE_BENCH_PG` names the PostgreSQL server (default
//! `postgres://postgres@127.0.0.1:5432`); the benchmark creates and drops databases
//! `cg_bench_*` there. Each round, for each case, interleaved so that a noisy neighbour
//! hurts every side alike, on a fresh copy of a template database:
//!
//! * **raw**: `clients` tokio-postgres connections, each running a decline's transaction
//!   as fast as it can: `BEGIN`; lock and read the 50 charges with their decisions and look
//!   up the 50 reference numbers (one statement); one statement that updates the 50
//!   charges and inserts 50 decision, 50 history and 50 outbox rows; `COMMIT`. Prepared statements,
//!   no TLS, nothing in between.
//! * **chargegate**: the real server binary (`target/release/chargegate serve`) over HTTP
//!   with `clients` clients, each call declining 50 fresh PENDING charges with reference
//!   numbers, its pool sized to the clients (`db_max_connections`).
//!
//! The cases: a template analysed after filling (8 and 64 clients), and one never analysed
//! (what a database looks like right after it was filled). The analysed template also
//! holds a history (a fifth as many charges again, declined before the run), so that its
//! statistics describe a database in use: statistics taken while the decisions were empty
//! would call them tiny, and a prepared statement's generic plan made from them would
//! scan every decision on every call. The raw connections forbid sequential scans, as
//! chargegate's decision transactions do (see docs/engine.md).
//!
//! Each run starts from `CREATE DATABASE … TEMPLATE` followed by a `CHECKPOINT`, so that
//! neither side pays for writing out the copy's pages, with autovacuum off on the copy's
//! tables, and with ten unmeasured calls per client on both sides before the clock starts.
//!
//! `BENCH_PG_CASE=N` (0-based) runs one case only and `BENCH_PG_SIDE=raw|product` one
//! side only, for profiling; they print each run instead of the table.
//!
//! CPU per call adds the database backends' CPU (every `postgres:` process of the run's
//! database) to the client's: the raw process's own for raw, the server process's for
//! chargegate. Nothing is asserted; the figures are printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chargegate_core::AdminStore;
use chargegate_store::{PostgresStore, StoreOptions};
use tokio_postgres::{Client, NoTls};

mod kit;
use kit::{BATCH, Rate, Server, cpu_seconds, median, server_binary};

const RUN: &str = "cg_bench_run";
const ANALYSED: &str = "cg_bench_analysed";
const FRESH: &str = "cg_bench_fresh";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let calls: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(rounds, calls));
}

/// Calls made before the measured ones, on both sides: ten per client, so that every
/// connection has opened, read the catalogue and settled on its statements' generic plans
/// (after five calls). Without it the measured calls would include each connection's
/// start-up, which the raw side pays before its clock starts and a pool pays after, and
/// which weighs more the bigger the statements are.
fn warm_up(clients: usize) -> usize {
    clients * 10
}

/// The largest warm-up of any case.
const WARM_UP_MAX: usize = 640;

struct Case {
    name: &'static str,
    template: &'static str,
    clients: usize,
    raw: Vec<Rate>,
    product: Vec<Rate>,
}

async fn run(rounds: usize, calls: usize) {
    let server = std::env::var("CHARGEGATE_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let binary = server_binary();
    let admin = connect(&format!("{server}/postgres")).await;
    for (template, analysed) in [(ANALYSED, true), (FRESH, false)] {
        eprintln!(
            "preparing {template} with {} charges…",
            (WARM_UP_MAX + calls) * BATCH
        );
        recreate(&admin, template, None).await;
        prepare(&server, template, analysed, (WARM_UP_MAX + calls) * BATCH).await;
    }
    let mut cases = [
        ("analysed, 8 clients", ANALYSED, 8),
        ("analysed, 64 clients", ANALYSED, 64),
        ("never analysed, 8 clients", FRESH, 8),
    ]
    .map(|(name, template, clients)| Case {
        name,
        template,
        clients,
        raw: vec![],
        product: vec![],
    });
    let url = format!("{server}/{RUN}?sslmode=disable");
    // For profiling one side of one case: BENCH_PG_CASE=1 (0-based), BENCH_PG_SIDE=product.
    let only_case: Option<usize> = std::env::var("BENCH_PG_CASE")
        .ok()
        .and_then(|c| c.parse().ok());
    let side = std::env::var("BENCH_PG_SIDE").unwrap_or_default();
    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        for (i, case) in cases.iter_mut().enumerate() {
            if only_case.is_some_and(|c| c != i) {
                continue;
            }
            if side != "product" {
                recreate(&admin, RUN, Some(case.template)).await;
                admin.batch_execute("CHECKPOINT").await.unwrap();
                case.raw
                    .push(raw(&url, warm_up(case.clients), calls, case.clients).await);
            }
            if side == "raw" {
                continue;
            }
            recreate(&admin, RUN, Some(case.template)).await;
            admin.batch_execute("CHECKPOINT").await.unwrap();
            // A pool as large as the clients: the concurrency the raw side has.
            let pool = case.clients.to_string();
            let env = [("CHARGEGATE_DB_MAX_CONNECTIONS", pool.as_str())];
            let product = Server::start(&binary, &url, &env).await;
            let warm = warm_up(case.clients);
            kit::declines_from(&product, 0, warm, case.clients).await;
            let backends = backend_cpu();
            let mut rate = kit::declines_from(&product, warm, calls, case.clients).await;
            let backend_ms = (backend_cpu() - backends) * 1000.0 / calls as f64;
            eprintln!(
                "  chargegate: server {:.3} + database {backend_ms:.3} CPU ms/call",
                rate.cpu_ms_per_call
            );
            rate.cpu_ms_per_call += backend_ms;
            product.stop();
            case.product.push(rate);
        }
    }
    for db in [RUN, ANALYSED, FRESH] {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .unwrap();
    }
    if only_case.is_none() && side.is_empty() {
        report(&cases, calls);
    } else {
        for c in &cases {
            for (what, v) in [("raw", &c.raw), ("chargegate", &c.product)] {
                for r in v {
                    println!(
                        "{}: {what} {:.0} calls/s, {:.3} CPU ms/call",
                        c.name, r.per_second, r.cpu_ms_per_call
                    );
                }
            }
        }
    }
}

fn report(cases: &[Case], calls: usize) {
    let rate = |v: &[Rate]| median(v.iter().map(|r| r.per_second).collect());
    let cpu = |v: &[Rate]| median(v.iter().map(|r| r.cpu_ms_per_call).collect());
    println!(
        "\n## decline-50 on PostgreSQL ({} rounds of {calls} calls, medians)\n",
        cases[0].raw.len()
    );
    println!(
        "| case | raw calls/s | chargegate calls/s | ratio | raw CPU ms/call | chargegate CPU ms/call | CPU ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for c in cases {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.3} | {:.3} | {:.2} |",
            c.name,
            rate(&c.raw),
            rate(&c.product),
            rate(&c.product) / rate(&c.raw),
            cpu(&c.raw),
            cpu(&c.product),
            cpu(&c.product) / cpu(&c.raw)
        );
    }
    println!();
    for c in cases {
        let per = |v: &[Rate]| v.iter().map(|r| r.per_second as u64).collect::<Vec<_>>();
        println!(
            "{}: raw {:?}, chargegate {:?}",
            c.name,
            per(&c.raw),
            per(&c.product)
        );
    }
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Drops `db` and creates it anew, empty or as a copy of `template`.
async fn recreate(admin: &Client, db: &str, template: Option<&str>) {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await
        .unwrap();
    let from = template
        .map(|t| format!(" TEMPLATE {t}"))
        .unwrap_or_default();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}{from}"))
        .await
        .unwrap();
}

/// Migrates and fills a template; `analysed` runs VACUUM ANALYZE afterwards. Autovacuum
/// is then turned off on every table (on the never-analysed one before filling, so that it
/// never gains statistics): a vacuum that starts during one side's run would slow that side
/// alone.
async fn prepare(server: &str, db: &str, analysed: bool, charges: usize) {
    let url = format!("{server}/{db}?sslmode=disable");
    let store = PostgresStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let direct = connect(&url).await;
    if analysed {
        // The history: charges after the run's, declined before it.
        kit::fill(&store, charges + charges / 5).await;
        let declined = direct
            .execute(HISTORY, &[&format!("L{charges:08}")])
            .await
            .unwrap();
        assert_eq!(declined as usize, charges / 5);
        store.close().await;
        direct.batch_execute("VACUUM ANALYZE").await.unwrap();
        autovacuum_off(&direct).await;
    } else {
        autovacuum_off(&direct).await;
        kit::fill(&store, charges).await;
        store.close().await;
    }
}

async fn autovacuum_off(db: &Client) {
    for row in db
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
    {
        let table: String = row.get(0);
        db.batch_execute(&format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false)"
        ))
        .await
        .unwrap();
    }
}

/// Declines every charge from number `$1` on, as decisions made before the run.
const HISTORY: &str = "WITH d AS (UPDATE charges SET status = 'DECLINED', \
        set_as_declined_on = 1780000000 WHERE number >= $1 \
        RETURNING id, operator_id, number), \
     u AS (SELECT id FROM users WHERE username = 'bench'), \
     x AS (INSERT INTO decisions (charge_id, operator_id, method, reference_number, user_id, \
        decided_on, request_id) SELECT d.id, d.operator_id, 'decline', \
        'H' || substr(d.number, 2), u.id, 1780000000, 'history' FROM d, u), \
     h AS (INSERT INTO charge_history (charge_id, event, from_status, to_status, at, user_id, \
        request_id, reference_number) SELECT d.id, 'decline', 'PENDING', 'DECLINED', \
        1780000000, u.id, 'history', 'H' || substr(d.number, 2) FROM d, u), \
     o AS (INSERT INTO outbox (operator_id, type, occurred_at, charge_id, reference_number) \
        SELECT d.operator_id, 'charge.declined', 1780000000, d.id, 'H' || substr(d.number, 2) \
        FROM d) \
     SELECT 1 FROM d";

/// CPU seconds of every backend of the run's database.
fn backend_cpu() -> f64 {
    let needle = format!(" {RUN} ");
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&title);
        if title.starts_with("postgres:") && title.contains(&needle) {
            total += cpu_seconds(&format!("/proc/{pid}/stat"));
        }
    }
    total
}

/// The lock-and-read statement: the charges with their decisions, locked in id order,
/// and how many of the references the operator already used on a decline. Every lookup is
/// an index probe, as in chargegate, so that the plan holds as the decisions grow.
const RAW_READ: &str = "SELECT c.id, c.number, c.status, c.customer_id, d.method, \
        d.reference_number, (SELECT count(*) FROM unnest($3::text[]) AS r(reference) \
            CROSS JOIN LATERAL (SELECT 1 FROM decisions x WHERE x.operator_id = $1 \
                AND x.method = 'decline' AND x.reference_number = r.reference LIMIT 1) u) \
            AS used \
     FROM charges c LEFT JOIN LATERAL (SELECT method, reference_number FROM decisions \
        WHERE charge_id = c.id) d ON true \
     WHERE c.operator_id = $1 AND c.number = ANY($2::text[]) ORDER BY c.id FOR UPDATE OF c";

/// The writes: the conditional update, the decision rows, the history rows and the outbox
/// events.
const RAW_WRITE: &str = "WITH plan AS (SELECT * FROM unnest($1::bigint[], $2::text[]) \
        AS p(id, reference)), \
     changed AS (UPDATE charges c SET status = 'DECLINED', set_as_declined_on = $3 \
        FROM plan WHERE c.id = plan.id AND c.status = 'PENDING' RETURNING c.id), \
     recorded AS (INSERT INTO decisions (charge_id, operator_id, method, reference_number, \
        user_id, decided_on, request_id) SELECT id, $4, 'decline', reference, $5, $3, $6 \
        FROM plan), \
     history AS (INSERT INTO charge_history (charge_id, event, from_status, to_status, at, \
        user_id, request_id, reference_number) \
        SELECT id, 'decline', 'PENDING', 'DECLINED', $3, $5, $6, reference FROM plan), \
     events AS (INSERT INTO outbox (operator_id, type, occurred_at, charge_id, \
        reference_number) SELECT $4, 'charge.declined', $3, id, reference FROM plan) \
     SELECT count(*) FROM changed";

/// `warm` unmeasured then `calls` measured declines of 50 charges through `clients`
/// connections.
async fn raw(url: &str, warm: usize, calls: usize, clients: usize) -> Rate {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = connect(url).await;
        // Index plans only, whatever the statistics say: the same plans as chargegate's.
        client
            .batch_execute("SET enable_seqscan = off")
            .await
            .unwrap();
        connections.push(client);
    }
    let ids = connections[0]
        .query_one(
            "SELECT operator_id, id FROM users WHERE username = 'bench'",
            &[],
        )
        .await
        .unwrap();
    let (op, user): (i64, i64) = (ids.get(0), ids.get(1));
    let next = Arc::new(AtomicUsize::new(0));
    // Every client warms up, then waits at `ready`; the clock starts; `go` lets them on.
    let ready = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let go = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::new();
    for mut client in connections {
        let (next, ready, go) = (next.clone(), ready.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            let read = client.prepare(RAW_READ).await.unwrap();
            let write = client.prepare(RAW_WRITE).await.unwrap();
            let mut measured = false;
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= warm && !measured {
                    ready.wait().await;
                    go.wait().await;
                    measured = true;
                }
                if batch >= warm + calls {
                    break;
                }
                let numbers: Vec<String> = (0..BATCH)
                    .map(|i| format!("L{:08}", batch * BATCH + i))
                    .collect();
                let references: Vec<String> =
                    numbers.iter().map(|n| n.replacen('L', "R", 1)).collect();
                let tx = client.transaction().await.unwrap();
                let rows = tx
                    .query(&read, &[&op, &numbers, &references])
                    .await
                    .unwrap();
                assert_eq!(rows.len(), BATCH);
                assert_eq!(rows[0].get::<_, i64>("used"), 0);
                let ids: Vec<i64> = rows.iter().map(|r| r.get("id")).collect();
                let planned: Vec<String> = rows
                    .iter()
                    .map(|r| r.get::<_, String>("number").replacen('L', "R", 1))
                    .collect();
                let changed: i64 = tx
                    .query_one(
                        &write,
                        &[&ids, &planned, &1_790_000_000_i64, &op, &user, &"raw"],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(changed, BATCH as i64);
                tx.commit().await.unwrap();
            }
            // Kept open until the backends' CPU is read.
            client
        }));
    }
    ready.wait().await;
    let backends = backend_cpu();
    let own = cpu_seconds("/proc/self/stat");
    let started = Instant::now();
    go.wait().await;
    let mut open = Vec::new();
    for t in tasks {
        open.push(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let client = cpu_seconds("/proc/self/stat") - own;
    let database = backend_cpu() - backends;
    drop(open);
    let ms = |s: f64| s * 1000.0 / calls as f64;
    eprintln!(
        "  raw: client {:.3} + database {:.3} CPU ms/call",
        ms(client),
        ms(database)
    );
    let cpu = client + database;
    Rate {
        per_second: calls as f64 / elapsed,
        cpu_ms_per_call: cpu * 1000.0 / calls as f64,
    }
}
