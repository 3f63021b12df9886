//! The reconciliation feed's promise: paging never skips or repeats an entry, even while
//! decisions commit, on both backends; and `charges export` writes exactly the feed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chargegate_core::clock::Clock;
use common::process::{self, chargegate};
use common::*;
use serde_json::{Value, json};

const V1: &str = "/chargegate/v1";

fn feed_url(token: &str, from: &str, to: &str, extra: &str) -> String {
    format!("{V1}/charges/decisions?token={token}&from={from}&to={to}{extra}")
}

/// Every entry of a complete window, paging until `next` is `null`.
async fn whole_window(
    srv: &TestServer,
    token: &str,
    from: &str,
    to: &str,
    limit: u32,
) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = String::new();
    for _ in 0..2000 {
        let r = srv
            .get(&feed_url(
                token,
                from,
                to,
                &format!("&limit={limit}{after}"),
            ))
            .await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        let page = r.body["data"]["decisions_set"].as_array().unwrap();
        all.extend(page.iter().cloned());
        match r.body["data"]["next"].as_str() {
            None => return all,
            Some(next) => after = format!("&after={next}"),
        }
        if page.len() < limit as usize {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
    panic!("the window never completed");
}

fn numbered(n: usize, prefix: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{prefix}{i:05}"), format!("cust{i}")))
        .collect()
}

on_every_backend! {
    async fn paging_while_decisions_commit_sees_every_entry_exactly_once(backend) {
        const CHARGES: usize = 400;
        const WRITERS: usize = 8;
        const PER_CALL: usize = 5;
        let srv = Arc::new(TestServer::start(backend).await);
        let charges = numbered(CHARGES, "C");
        let pairs: Vec<(&str, &str)> = charges.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        srv.add_charges(OPERATOR, &pairs).await;
        let token = srv.login().await;
        let now = srv.clock.now();
        let (from, to) = (now.plus_seconds(-3600).to_string(), now.plus_seconds(3600).to_string());

        // Writers: each takes every WRITERS-th call's charges, accepting or declining them.
        let calls: Vec<Vec<(String, String)>> = charges.chunks(PER_CALL).map(<[_]>::to_vec).collect();
        let calls = Arc::new(calls);
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (srv, token, calls) = (srv.clone(), token.clone(), calls.clone());
            writers.push(tokio::spawn(async move {
                for (i, call) in calls.iter().enumerate().filter(|(i, _)| i % WRITERS == w) {
                    let method = if i % 2 == 0 { "accept" } else { "decline" };
                    let items: Vec<Value> = call.iter().map(|(n, c)| item(n, c)).collect();
                    srv.batch(method, &token, Value::Array(items)).await.assert_all_ok();
                }
            }));
        }
        // The reader pages through the (open) window while they write, then until it has
        // caught up with everything.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut after = String::new();
        let mut pages = 0;
        let mut writers_done = false;
        while pages < 20_000 {
            pages += 1;
            let r = srv.get(&feed_url(&token, &from, &to, &format!("&limit=7{after}"))).await;
            assert_eq!(r.code(), "OK", "{}", r.text);
            let page = r.body["data"]["decisions_set"].as_array().unwrap().clone();
            for e in &page {
                *seen.entry(e["number"].as_str().unwrap().to_owned()).or_default() += 1;
            }
            after = format!("&after={}", r.body["data"]["next"].as_str().expect("the window is open"));
            if !writers_done && writers.iter().all(tokio::task::JoinHandle::is_finished) {
                writers_done = true;
            }
            if writers_done && seen.len() >= CHARGES {
                break;
            }
            if page.len() < 7 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        for w in writers {
            w.await.unwrap();
        }
        let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(repeated.is_empty(), "entries served twice: {repeated:?}");
        assert_eq!(seen.len(), CHARGES, "entries missing after {pages} pages");
        // And nothing more comes after the last cursor.
        let r = srv.get(&feed_url(&token, &from, &to, &format!("&limit=7{after}"))).await;
        assert_eq!(r.body["data"]["decisions_set"], json!([]), "{}", r.text);
    }

    async fn charges_export_writes_exactly_the_feed_in_csv_and_json(backend) {
        let srv = TestServer::start(backend).await;
        let charges = numbered(30, "E");
        let pairs: Vec<(&str, &str)> = charges.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        srv.add_charges(OPERATOR, &pairs).await;
        srv.add_charges(RIVAL, &[("X1", "c1")]).await;
        let token = srv.login().await;
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        // Ten days ago, so the window is long complete.
        srv.clock.advance(-10 * 86_400);
        let then = srv.clock.now();
        for (i, call) in pairs.chunks(4).enumerate() {
            let method = if i % 2 == 0 { "accept" } else { "decline" };
            let items: Vec<Value> = call
                .iter()
                .enumerate()
                .map(|(j, (n, c))| if j == 0 { item_ref(n, c, &format!("R-{n}")) } else { item(n, c) })
                .collect();
            srv.batch(method, &token, Value::Array(items)).await.assert_all_ok();
        }
        srv.batch("decline", &rival, json!([item("X1", "c1")])).await.assert_all_ok();
        srv.clock.advance(10 * 86_400);
        let from = then.plus_seconds(-60).to_string();
        let to = then.plus_seconds(3600).to_string();
        let feed = whole_window(&srv, &token, &from, &to, 1000).await;
        assert_eq!(feed.len(), 30);

        let export = |format: &str| {
            let out = process::run(
                chargegate(&srv.db.url, &["charges", "export", "--operator", OPERATOR, "--from", &from, "--to", &to, "--format", format]),
                "",
            );
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(stderr.contains("exported 30 status change(s)"), "{stderr}");
            String::from_utf8(out.stdout).unwrap()
        };
        let json_export: Value = serde_json::from_str(&export("json")).unwrap();
        assert_eq!(json_export, Value::Array(feed.clone()));

        let csv_export = export("csv");
        let mut reader = csv::Reader::from_reader(csv_export.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(header, ["number", "billing_system_customer_identifier", "event", "from_status", "to_status", "at", "actor", "request_id", "reference_number", "amount", "currency"]);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), feed.len());
        for (row, entry) in rows.iter().zip(&feed) {
            for (i, column) in header.iter().enumerate() {
                let expected = match &entry[column.as_str()] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert_eq!(row[i], expected, "{column} of {entry}");
            }
        }
    }

    async fn export_refuses_unknown_operators_and_bad_windows_in_one_line(backend) {
        let srv = TestServer::start(backend).await;
        for (args, says) in [
            (vec!["--operator", "nobody", "--from", "2026-11-01", "--to", "2026-11-02"], "no operator 'nobody'"),
            (vec!["--operator", OPERATOR, "--from", "2026-11-02", "--to", "2026-11-01"], "must be after"),
            (vec!["--operator", OPERATOR, "--from", "yesterday", "--to", "2026-11-01"], "--from"),
            (vec!["--operator", OPERATOR, "--from", "2026-11-01", "--to", "2026-02-30"], "impossible"),
        ] {
            let mut full = vec!["charges", "export"];
            full.extend(args);
            let out = process::run(chargegate(&srv.db.url, &full), "");
            assert!(!out.status.success());
            assert!(out.stdout.is_empty());
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains(says), "{err}");
        }
    }
}

/// The case a sequence alone gets wrong on PostgreSQL: a transaction that took its history
/// row's id first but commits last. Its entry must not be skipped by a client that already
/// paged past a later id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_an_entry_that_commits_late_is_served_after_the_others_not_skipped() {
    use sqlx::Connection;
    db::require_postgres("late_commit");
    let srv = TestServer::start(Backend::Postgres).await;
    srv.add_charges(OPERATOR, &[("L1", "c1"), ("L2", "c2")])
        .await;
    let token = srv.login().await;
    let now = srv.clock.now();
    let (from, to) = (
        now.plus_seconds(-3600).to_string(),
        now.plus_seconds(3600).to_string(),
    );

    // A decision of L1, written by hand as the decision path writes it, left uncommitted.
    let mut slow = sqlx::PgConnection::connect(&srv.db.url).await.unwrap();
    let mut tx = slow.begin().await.unwrap();
    sqlx::query(
        "UPDATE charges SET status = 'DECLINED', set_as_declined_on = $1 WHERE number = 'L1'",
    )
    .bind(now.unix())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, request_id) \
         SELECT id, 'decline', 'PENDING', 'DECLINED', $1, 'slow' FROM charges WHERE number = 'L1'",
    )
    .bind(now.unix())
    .execute(&mut *tx)
    .await
    .unwrap();

    // L2 is decided through the API and commits first, with a greater id.
    srv.batch("decline", &token, json!([item("L2", "c2")]))
        .await
        .assert_all_ok();
    let ids = (
        srv.db.scalar("SELECT h.id FROM charge_history h JOIN charges c ON c.id = h.charge_id WHERE c.number = 'L2' AND h.event = 'decline'").await,
        srv.db.scalar("SELECT max(id) FROM charge_history").await,
    );
    assert_eq!(ids.0, ids.1, "L2's row has the greatest id");

    // While L1's transaction runs, L2 is held back: served now, it would move the cursor
    // past L1's smaller id.
    let r = srv.get(&feed_url(&token, &from, &to, "")).await;
    assert_eq!(r.body["data"]["decisions_set"], json!([]), "{}", r.text);
    let next = r.body["data"]["next"]
        .as_str()
        .expect("held back, not complete")
        .to_owned();

    tx.commit().await.unwrap();
    let mut numbers = Vec::new();
    let mut after = next;
    for _ in 0..400 {
        let r = srv
            .get(&feed_url(&token, &from, &to, &format!("&after={after}")))
            .await;
        for e in r.body["data"]["decisions_set"].as_array().unwrap() {
            numbers.push(e["number"].as_str().unwrap().to_owned());
        }
        after = r.body["data"]["next"].as_str().unwrap().to_owned();
        if numbers.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(numbers, ["L1", "L2"], "in commit order, both, once");
}
