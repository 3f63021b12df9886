//! Pushing the outbox to a webhook: signed batches (the signature checked on the raw body
//! the receiver got), retries after failures, events marked delivered only after a 2xx,
//! and two servers on one PostgreSQL database never delivering at the same time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chargegate::outbox_push::{self, Webhook};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Mutex;

const SECRET: &str = "webhook-secret";

/// What the receiver saw.
#[derive(Default)]
struct Received {
    /// Calls so far, answered or not.
    calls: AtomicUsize,
    /// Calls being answered right now, and the most ever at once.
    in_flight: AtomicUsize,
    most_at_once: AtomicUsize,
    /// Event ids of the calls answered 2xx, in order.
    delivered: Mutex<Vec<String>>,
    /// Event ids of calls answered with a failure.
    refused: Mutex<Vec<String>>,
}

/// A webhook receiver on 127.0.0.1:0 that answers 500 to its first `failures` calls,
/// takes `pause` per call, and checks every signature on the raw body.
async fn receiver(failures: usize, pause: Duration) -> (String, Arc<Received>) {
    let seen = Arc::new(Received::default());
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = state.clone();
            async move {
                let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most_at_once.fetch_max(now, Ordering::SeqCst);
                let call = seen.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(pause).await;
                let header = headers
                    .get("x-chargegate-signature")
                    .and_then(|v| v.to_str().ok())
                    .expect("signed")
                    .to_owned();
                let (t, v1) = header
                    .strip_prefix("t=")
                    .and_then(|rest| rest.split_once(",v1="))
                    .expect("t=…,v1=…");
                let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(format!("{t}.").as_bytes());
                mac.update(&body);
                let expected: String = mac
                    .finalize()
                    .into_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(v1, expected, "signature of the raw body");
                let age =
                    chargegate_core::clock::Timestamp::now().unix() - t.parse::<i64>().unwrap();
                assert!((0..60).contains(&age), "t is the time of sending");
                let batch: Value = serde_json::from_slice(&body).unwrap();
                let ids: Vec<String> = batch["events_set"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned())
                    .collect();
                let status = if call < failures {
                    seen.refused.lock().await.extend(ids);
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    seen.delivered.lock().await.extend(ids);
                    StatusCode::NO_CONTENT
                };
                seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), seen)
}

/// Starts a pusher for `srv`; stops it when the sender is dropped or sent `true`.
fn push(srv: &TestServer, url: &str) -> tokio::sync::watch::Sender<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(outbox_push::run(
        srv.store.clone(),
        srv.clock.clone(),
        srv.metrics.clone(),
        Webhook::parse(url, SECRET.into()).unwrap(),
        stopped,
    ));
    stop
}

async fn accept_all(srv: &TestServer, token: &str, numbers: &[String]) {
    let items: Vec<Value> = numbers.iter().map(|n| item(n, &format!("c-{n}"))).collect();
    srv.batch("accept", token, json!(items))
        .await
        .assert_all_ok();
}

async fn add(srv: &TestServer, from: usize, n: usize) -> Vec<String> {
    let numbers: Vec<String> = (from..from + n).map(|i| format!("W{i:05}")).collect();
    let customers: Vec<String> = numbers.iter().map(|n| format!("c-{n}")).collect();
    let pairs: Vec<(&str, &str)> = numbers
        .iter()
        .zip(&customers)
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    srv.add_charges(OPERATOR, &pairs).await;
    numbers
}

async fn waiting(srv: &TestServer) -> i64 {
    srv.db
        .scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
        .await
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

on_every_backend! {
    async fn a_webhook_that_fails_twice_gets_the_same_signed_events_until_it_answers_2xx(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let (url, seen) = receiver(2, Duration::ZERO).await;
        let numbers = add(&srv, 0, 3).await;
        accept_all(&srv, &token, &numbers).await;
        let started = std::time::Instant::now();
        let _pusher = push(&srv, &url);
        until("delivery", async || !seen.delivered.lock().await.is_empty()).await;
        // Two failures: retried after 1 s, then 2 s (first retry within 5 s).
        assert!(started.elapsed() >= Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(20));
        let refused = seen.refused.lock().await.clone();
        let delivered = seen.delivered.lock().await.clone();
        assert_eq!(refused.len(), 6, "the same three events, twice");
        assert_eq!(refused[..3], refused[3..]);
        assert_eq!(delivered, refused[..3]);
        until("marked delivered", async || waiting(&srv).await == 0).await;
        // Marked delivered: GET outbox has nothing more, and nothing is pushed again.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(seen.delivered.lock().await.len(), 3);
        let text = srv.metrics.render().unwrap();
        assert!(text.contains("chargegate_outbox_webhook_deliveries_total 3"), "{text}");
        assert!(text.contains("chargegate_outbox_webhook_failures_total 2"), "{text}");
    }

    async fn events_stay_visible_to_get_outbox_while_the_webhook_fails(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let (url, seen) = receiver(usize::MAX, Duration::ZERO).await;
        let numbers = add(&srv, 0, 2).await;
        accept_all(&srv, &token, &numbers).await;
        let _pusher = push(&srv, &url);
        until("a failed push", async || seen.calls.load(Ordering::SeqCst) >= 1).await;
        assert_eq!(waiting(&srv).await, 2);
        assert!(seen.delivered.lock().await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgresql_database_never_push_at_the_same_time() {
    db::require_postgres("two_servers_on_one_postgresql_database_never_push_at_the_same_time");
    let first = TestServer::start(Backend::Postgres).await;
    let second = TestServer::start_on(first.db.clone(), Default::default()).await;
    let token = first.login().await;
    // Each call takes a while, so overlapping pushes would show.
    let (url, seen) = receiver(0, Duration::from_millis(50)).await;
    let _a = push(&first, &url);
    let _b = push(&second, &url);
    let mut all = Vec::new();
    for round in 0..10 {
        let numbers = add(&first, round * 30, 30).await;
        let (a, b) = numbers.split_at(15);
        accept_all(&first, &token, a).await;
        accept_all(&second, &token, b).await;
        all.extend(numbers);
    }
    until("every event delivered", async || waiting(&first).await == 0).await;
    let delivered = seen.delivered.lock().await.clone();
    assert_eq!(
        seen.most_at_once.load(Ordering::SeqCst),
        1,
        "never two calls at once"
    );
    let unique: HashSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), all.len());
    assert_eq!(delivered.len(), all.len(), "none delivered twice");
}
