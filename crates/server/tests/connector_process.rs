//! The connector side as an operator runs it, with real `chargegate` processes:
//! `connector-key add|list|revoke`, a server killed (SIGKILL) in the middle of intake and
//! in the middle of a webhook delivery losing nothing, and `serve --demo
//! --simulate-netflix` closing the loop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use common::process::{self, Server, chargegate, run, setup_database};
use common::*;
use serde_json::{Value, json};
use tokio::sync::Mutex;

fn connector_key_of(url: &str) -> String {
    let out = run(
        chargegate(url, &["connector-key", "add", "--operator", "pci"]),
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn intake(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    batch: &str,
    n: usize,
) -> Result<Value, reqwest::Error> {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"netflix_charge_identifier": format!("{batch}-{i}"),
                        "billing_system_customer_identifier": format!("c{}", i % 10),
                        "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31"})
        })
        .collect();
    client
        .post(format!("{base}/chargegate/v1/connector/charges"))
        .bearer_auth(key)
        .body(json!({"charges_set": items}).to_string())
        .timeout(Duration::from_secs(20))
        .send()
        .await?
        .json()
        .await
}

/// A database of either backend with operator `pci`, user `billing` and no charges.
async fn database(backend: Backend) -> TestDb {
    let db = TestDb::new(backend).await;
    setup_database(&db.url, "pw-123", &[]);
    db
}

on_every_backend! {
    async fn a_server_killed_during_intake_keeps_every_answered_batch_and_no_half_batch(backend) {
        let db = database(backend).await;
        let key = connector_key_of(&db.url);
        let mut server = Server::start(chargegate(&db.url, &[]), &[], &[]);
        let base = server.base.clone();
        let answered: Arc<Mutex<HashMap<String, Value>>> = Default::default();
        let unanswered: Arc<Mutex<Vec<String>>> = Default::default();
        let mut senders = Vec::new();
        for sender in 0..4 {
            let (base, key) = (base.clone(), key.clone());
            let (answered, unanswered) = (answered.clone(), unanswered.clone());
            senders.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for round in 0.. {
                    let batch = format!("k{sender}-{round}");
                    match intake(&client, &base, &key, &batch, 200).await {
                        Ok(answer) if answer["status"]["code"] == "OK" => {
                            answered.lock().await.insert(batch, answer["data"]["charges_set"].clone());
                        }
                        _ => {
                            unanswered.lock().await.push(batch);
                            return;
                        }
                    }
                }
            }));
        }
        // Let some batches commit, then kill the server in the middle of others.
        for _ in 0..100 {
            if answered.lock().await.len() >= 8 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.kill();
        for s in senders {
            s.await.unwrap();
        }
        let answered = answered.lock().await.clone();
        let unanswered = unanswered.lock().await.clone();
        assert!(answered.len() >= 8, "{}", answered.len());
        // Each batch is all there or not there at all.
        for batch in answered.keys().chain(&unanswered) {
            let stored = db
                .scalar(&format!("SELECT count(*) FROM charges WHERE netflix_charge_id LIKE '{batch}-%'"))
                .await;
            if answered.contains_key(batch) {
                assert_eq!(stored, 200, "{batch}");
            } else {
                assert!(stored == 0 || stored == 200, "{batch}: {stored}");
            }
        }
        // After a restart every answered batch repeats to the same numbers, and an
        // unanswered one can simply be sent again.
        let server = Server::start(chargegate(&db.url, &[]), &[], &[]);
        let client = reqwest::Client::new();
        for (batch, numbers) in &answered {
            let again = intake(&client, &server.base, &key, batch, 200).await.unwrap();
            assert_eq!(&again["data"]["charges_set"], numbers);
        }
        for batch in &unanswered {
            let again = intake(&client, &server.base, &key, batch, 200).await.unwrap();
            assert_eq!(again["data"]["charges_set"].as_array().unwrap().len(), 200);
        }
        let total = db.scalar("SELECT count(*) FROM charges").await;
        assert_eq!(total as usize, 200 * (answered.len() + unanswered.len()));
        let receipts = db
            .scalar("SELECT count(*) FROM charge_history WHERE event = 'intake'")
            .await;
        assert_eq!(receipts, total);
    }
}

/// A webhook receiver whose first call takes `first_pause` before answering 200.
async fn slow_receiver(first_pause: Duration) -> (String, Arc<Mutex<Vec<Vec<String>>>>) {
    let calls: Arc<Mutex<Vec<Vec<String>>>> = Default::default();
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let seen = seen.clone();
            async move {
                let batch: Value = serde_json::from_slice(&body).unwrap();
                let ids: Vec<String> = batch["events_set"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned())
                    .collect();
                let first = {
                    let mut calls = seen.lock().await;
                    calls.push(ids);
                    calls.len() == 1
                };
                if first {
                    tokio::time::sleep(first_pause).await;
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_a_webhook_delivery_delivers_those_events_again() {
    let db = database(Backend::Sqlite).await;
    let numbers: Vec<String> = (0..5).map(|i| format!("I{i}")).collect();
    let pairs: Vec<(&str, &str)> = numbers.iter().map(|n| (n.as_str(), "c1")).collect();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("c.csv");
    let mut text = String::from(
        "operator,number,billing_system_customer_identifier,amount,currency,paid_through_date\n",
    );
    for (n, c) in &pairs {
        text.push_str(&format!("pci,{n},{c},9.99,EUR,2026-12-31\n"));
    }
    std::fs::write(&csv, text).unwrap();
    assert!(
        run(
            chargegate(&db.url, &["charges", "import", csv.to_str().unwrap()]),
            ""
        )
        .status
        .success()
    );
    let key = connector_key_of(&db.url);
    let (hook, calls) = slow_receiver(Duration::from_secs(3)).await;
    let env = [("CHARGEGATE_OUTBOX_WEBHOOK_SECRET", "s3cret")];
    let mut server = Server::start(chargegate(&db.url, &[]), &["--outbox-webhook", &hook], &env);
    let client = reqwest::Client::new();
    let token = process::billing_token(&client, &server.base, "pw-123").await;
    let items: Vec<Value> = pairs.iter().map(|(n, c)| item(n, c)).collect();
    let r = process::post(
        &client,
        &server.url(&format!("{V2}/netflix/charges/accept")),
        &json!({"token": token, "accepted_charges_set": items}),
    )
    .await;
    assert_eq!(r.code(), "OK");
    // The first delivery is under way (the receiver holds it): kill the server now.
    for _ in 0..100 {
        if !calls.lock().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first: Vec<String> = calls.lock().await[0].clone();
    assert_eq!(first.len(), 5);
    server.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Not acknowledged: after a restart GET outbox serves them again...
    let server = Server::start(chargegate(&db.url, &[]), &["--outbox-webhook", &hook], &env);
    let outbox: Value = client
        .get(server.url("/chargegate/v1/connector/outbox"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = outbox["data"]["events_set"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, first);
    // ...and the webhook gets them again once the dead server's lease runs out.
    for _ in 0..500 {
        if calls.lock().await.len() >= 2
            && db
                .scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
                .await
                == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = calls.lock().await.clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1], first);
    assert_eq!(
        db.scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_keys_are_shown_once_listed_by_prefix_and_revoked_at_once() {
    let db = database(Backend::Sqlite).await;
    let out = run(
        chargegate(
            &db.url,
            &[
                "connector-key",
                "add",
                "--operator",
                "pci",
                "--name",
                "site A",
            ],
        ),
        "",
    );
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("cgc_") && key.len() == 68, "{key}");
    let prefix: String = key.chars().take(8).collect();
    let list = run(
        chargegate(&db.url, &["connector-key", "list", "--operator", "pci"]),
        "",
    );
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.contains(&prefix) && list.contains("site A"), "{list}");
    assert!(!list.contains(&key));
    let server = Server::start(chargegate(&db.url, &[]), &[], &[]);
    let client = reqwest::Client::new();
    let outbox = |key: String| {
        let client = client.clone();
        let url = server.url("/chargegate/v1/connector/outbox");
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(outbox(key.clone()).await, 200);
    let out = run(
        chargegate(&db.url, &["connector-key", "revoke", &prefix]),
        "",
    );
    assert!(out.status.success());
    assert_eq!(outbox(key.clone()).await, 401);
    let again = run(
        chargegate(&db.url, &["connector-key", "revoke", &prefix]),
        "",
    );
    assert!(again.status.success());
    for bad in [
        &["connector-key", "revoke", "cgc_none"][..],
        &["connector-key", "add", "--operator", "nope"][..],
    ] {
        let out = run(chargegate(&db.url, bad), "");
        assert!(!out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_netflix_side_raises_charges_links_accounts_and_hears_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let mut server = Server::start(
        chargegate(&url, &[]),
        &["--demo", "--simulate-netflix"],
        &[],
    );
    server.await_log("Netflix raised a charge");
    server.await_log("Netflix linked the account");
    server.await_log("told Netflix: subscription");
    let client = reqwest::Client::new();
    let login = process::login(&client, &server.base, "demo", "demo").await;
    let token = login.body["data"]["token"].as_str().unwrap().to_owned();
    let r = process::post(&client, &server.url(&format!("{V2}/netflix/charges/decline")),
        &json!({"token": token, "declined_charges_set": [item_ref("I00002706", "pci155", "R-sim")]})).await;
    assert_eq!(r.code(), "OK");
    let told = server.await_log("told Netflix: charge I00002706");
    assert!(
        told.contains("DECLINED") && told.contains("R-sim"),
        "{told}"
    );
    server.sigterm();
    assert!(server.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_netflix_without_the_demo_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let out = run(
        chargegate(
            &url,
            &["serve", "--simulate-netflix", "--listen", "127.0.0.1:0"],
        ),
        "",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--demo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_show_how_many_events_wait_and_for_how_long() {
    let db = database(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("c.csv");
    std::fs::write(
        &csv,
        "operator,number,billing_system_customer_identifier,amount,currency,paid_through_date\n\
         pci,I1,c1,9.99,EUR,2026-12-31\npci,I2,c2,9.99,EUR,2026-12-31\n",
    )
    .unwrap();
    assert!(
        run(
            chargegate(&db.url, &["charges", "import", csv.to_str().unwrap()]),
            ""
        )
        .status
        .success()
    );
    let mut server = Server::start(
        chargegate(&db.url, &[]),
        &["--metrics-listen", "127.0.0.1:0"],
        &[],
    );
    let metrics = format!("{}/metrics", server.metrics_base());
    let client = reqwest::Client::new();
    let token = process::billing_token(&client, &server.base, "pw-123").await;
    let r = process::post(
        &client,
        &server.url(&format!("{V2}/netflix/charges/accept")),
        &json!({"token": token, "accepted_charges_set": [item("I1", "c1"), item("I2", "c2")]}),
    )
    .await;
    assert_eq!(r.code(), "OK");
    // Measured every 5 seconds.
    let mut text = String::new();
    for _ in 0..80 {
        text = client
            .get(&metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("chargegate_outbox_waiting_events 2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        text.contains("chargegate_outbox_waiting_events 2"),
        "{text}"
    );
    assert!(
        text.contains("chargegate_outbox_oldest_waiting_age_seconds "),
        "{text}"
    );
    assert!(
        text.contains("chargegate_outbox_webhook_deliveries_total 0"),
        "{text}"
    );
    server.sigterm();
    assert!(server.wait().success());
}
