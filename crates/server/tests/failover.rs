//! Two failovers in a row to a synchronous standby, under load: eight clients decline
//! charges while the primary's host fails (its link to the standby drops with what is in
//! flight on it, then `pg_ctl stop -m immediate`), the standby is promoted and the
//! address chargegate connects to moves to it. Every call answered OK
//! must be stored as decided on the final primary, nothing may be decided twice, a call
//! answered "nothing was applied" must have applied nothing, and the first call after the
//! move must succeed within five seconds.
//!
//! Needs PostgreSQL 15's server programs (Debian's `postgresql-15`), not a running
//! server: it makes its own in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chargegate::state::AuthSettings;
use chargegate_store::StoreOptions;
use common::standby::{MovingProxy, Pair};
use common::*;
use serde_json::Value;
use sqlx::Row;

/// Charges the clients decline from, each once.
const CHARGES: usize = 20_000;
/// Charges per call.
const PER_CALL: usize = 3;
const CLIENTS: usize = 8;
/// One way between the primary and the standby: commits are on their way to the standby
/// for this long, so a failing primary takes some with it.
const LINK_LATENCY: Duration = Duration::from_millis(10);

/// What a call's answer says became of its items.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Said {
    /// `200 OK`: every item not among the failed ones is declined.
    Applied,
    /// An error saying "nothing was applied".
    NothingApplied,
    /// `503` saying whether it was applied is unknown.
    Unknown,
    /// Anything else: a fault of the test or of the server.
    Other(String),
}

#[derive(Default)]
struct Ledger {
    /// Item number → what its call's answer said.
    items: BTreeMap<String, Said>,
    calls: HashMap<&'static str, usize>,
}

impl Ledger {
    fn record(&mut self, numbers: &[String], reply: &Reply) -> Said {
        let said = judge(reply);
        let failed: Vec<String> = reply.failures().into_iter().map(|(n, _)| n).collect();
        for n in numbers {
            let item = if said == Said::Applied && failed.contains(n) {
                Said::Other(format!("item failed: {}", reply.text))
            } else {
                said.clone()
            };
            self.items.insert(n.clone(), item);
        }
        let kind = match said {
            Said::Applied => "ok",
            Said::NothingApplied => "nothing applied",
            Said::Unknown => "outcome unknown",
            Said::Other(_) => "other",
        };
        *self.calls.entry(kind).or_default() += 1;
        said
    }
}

fn judge(reply: &Reply) -> Said {
    let message = reply.body["status"]["message"].as_str().unwrap_or("");
    if reply.status == 200 && reply.code() == "OK" {
        Said::Applied
    } else if message.contains("nothing was applied") {
        Said::NothingApplied
    } else if reply.status == 503 && message.contains("unknown") {
        Said::Unknown
    } else {
        Said::Other(format!("{} {}", reply.status, reply.text))
    }
}

fn number(i: usize) -> String {
    format!("F{i:06}")
}

fn reference(number: &str) -> String {
    format!("R-{number}")
}

/// Declines the next `PER_CALL` unused charges, records the answer.
async fn decline_next(
    srv: &TestServer,
    token: &str,
    next: &AtomicUsize,
    ledger: &Mutex<Ledger>,
) -> Option<Said> {
    let first = next.fetch_add(PER_CALL, Ordering::SeqCst);
    if first + PER_CALL > CHARGES {
        return None;
    }
    let numbers: Vec<String> = (first..first + PER_CALL).map(number).collect();
    let items: Vec<Value> = numbers
        .iter()
        .map(|n| item_ref(n, "c", &reference(n)))
        .collect();
    let reply = srv.batch("decline", token, Value::Array(items)).await;
    Some(ledger.lock().unwrap().record(&numbers, &reply))
}

/// Waits until `count` more calls were answered OK (bounded), so a failover hits a
/// server under load.
async fn until_ok_calls(ledger: &Mutex<Ledger>, more: usize) {
    let ok = |l: &Mutex<Ledger>| l.lock().unwrap().calls.get("ok").copied().unwrap_or(0);
    let target = ok(ledger) + more;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok(ledger) < target {
        assert!(Instant::now() < deadline, "the clients made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills the primary under load, promotes the standby, moves the address, and makes the
/// first call through it: it must succeed within five seconds of the move.
async fn fail_over(
    pair: &mut Pair,
    proxy: &MovingProxy,
    srv: &TestServer,
    token: &str,
    next: &AtomicUsize,
    ledger: &Mutex<Ledger>,
) {
    until_ok_calls(ledger, 200).await;
    tokio::task::block_in_place(|| {
        pair.fail_primary();
        pair.promote_standby();
    });
    proxy.move_to(pair.primary().addr());
    let moved = Instant::now();
    let mut answers = Vec::new();
    loop {
        let said = decline_next(srv, token, next, ledger)
            .await
            .expect("charges left for the first call");
        if said == Said::Applied {
            break;
        }
        answers.push(said);
        assert!(
            moved.elapsed() < Duration::from_secs(5),
            "no call succeeded within 5 s of the move: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "first call OK {:?} after the move, after {} failed",
        moved.elapsed(),
        answers.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failovers_under_load_lose_no_decision_answered_ok() {
    tokio::time::timeout(Duration::from_secs(150), two_failovers())
        .await
        .expect("the failover test finishes within 150 s");
}

async fn two_failovers() {
    let mut pair = Pair::start(LINK_LATENCY).await;
    let proxy = MovingProxy::start(pair.primary().addr()).await;
    // The store only needs the URL; the handle owns no database of its own.
    let url = format!(
        "postgres://postgres@{}/postgres?sslmode=disable",
        proxy.addr
    );
    let db = Arc::new(TestDb::sqlite_in(std::path::Path::new(".")).through(url));
    let srv = Arc::new(
        TestServer::start_with_options(db, AuthSettings::default(), &StoreOptions::default()).await,
    );
    srv.add_operator(OPERATOR, "EUR", USER, PASSWORD).await;
    let numbers: Vec<String> = (0..CHARGES).map(number).collect();
    let charges: Vec<(&str, &str)> = numbers.iter().map(|n| (n.as_str(), "c")).collect();
    srv.add_charges(OPERATOR, &charges).await;
    let token = srv.login().await;

    let next = Arc::new(AtomicUsize::new(0));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (srv, token, next, ledger, stop) = (
                srv.clone(),
                token.clone(),
                next.clone(),
                ledger.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match decline_next(&srv, &token, &next, &ledger).await {
                        None => break,
                        Some(Said::Applied) => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        // The database is away: do not burn charges while it is.
                        Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        })
        .collect();

    fail_over(&mut pair, &proxy, &srv, &token, &next, &ledger).await;
    until_ok_calls(&ledger, 100).await;
    tokio::task::block_in_place(|| pair.rebuild_standby());
    fail_over(&mut pair, &proxy, &srv, &token, &next, &ledger).await;
    until_ok_calls(&ledger, 100).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    // What the final primary holds, read straight from it.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pair.primary().url())
        .await
        .unwrap();
    let decided: HashMap<String, (String, Option<String>)> = sqlx::query(
        "SELECT c.number, d.method, d.reference_number FROM decisions d \
         JOIN charges c ON c.id = d.charge_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect();
    let twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT charge_id FROM charge_history WHERE event = 'decline' \
         GROUP BY charge_id HAVING count(*) > 1) t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let events_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT charge_id FROM outbox WHERE type = 'charge.declined' \
         GROUP BY charge_id HAVING count(*) > 1) t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;

    let ledger = ledger.lock().unwrap();
    let mut lost = Vec::new();
    let mut applied_anyway = Vec::new();
    let mut other = Vec::new();
    let (mut unknown, mut unknown_applied) = (0, 0);
    for (n, said) in &ledger.items {
        let stored = decided.get(n);
        let as_decided = stored == Some(&("decline".to_owned(), Some(reference(n))));
        match said {
            Said::Applied if !as_decided => lost.push(n.clone()),
            Said::NothingApplied if stored.is_some() => applied_anyway.push(n.clone()),
            Said::Unknown => {
                unknown += 1;
                unknown_applied += usize::from(as_decided);
            }
            Said::Other(text) => other.push(format!("{n}: {text}")),
            _ => {}
        }
    }
    eprintln!(
        "calls: {:?}; items: {} sent, {} decided, {unknown} unknown ({unknown_applied} of them \
         applied), {} OK'd but lost, {} said not applied but applied",
        ledger.calls,
        ledger.items.len(),
        decided.len(),
        lost.len(),
        applied_anyway.len()
    );
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert!(
        lost.is_empty(),
        "{} items answered OK are not declined on the final primary: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(
        applied_anyway.is_empty(),
        "{} items answered \"nothing was applied\" are declined: {:?}",
        applied_anyway.len(),
        &applied_anyway[..applied_anyway.len().min(20)]
    );
    assert_eq!(twice, 0, "charges declined twice");
    assert_eq!(events_twice, 0, "charges with two declined events");
    assert!(
        decided.keys().all(|n| ledger.items.contains_key(n)),
        "a charge no call named is decided"
    );
}
