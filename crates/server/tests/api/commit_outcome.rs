//! PostgreSQL lost in the middle of a COMMIT: the call answers what really happened —
//! its normal answer when the transaction committed, 503 with nothing applied when it did
//! not — never "nothing applied" for decisions that are stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::sync::Arc;
use std::time::Duration;

use chargegate::state::AuthSettings;
use chargegate_store::StoreOptions;
use common::proxy::{AtCommit, Proxy};
use common::*;
use serde_json::json;

async fn through_proxy(name: &str) -> (TestServer, Proxy, TestDb) {
    through_proxy_with(name, 4).await
}

async fn through_proxy_with(name: &str, connections: u32) -> (TestServer, Proxy, TestDb) {
    db::require_postgres(name);
    let real = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(real.host_port()).await;
    // Plain text, so the proxy sees the COMMIT go by.
    let url = real
        .url
        .replacen(&real.host_port(), &proxy.addr.to_string(), 1);
    let sep = if url.contains('?') { '&' } else { '?' };
    let proxied = real.through(format!("{url}{sep}sslmode=disable"));
    let options = StoreOptions {
        max_connections: connections,
        acquire_timeout: Duration::from_secs(3),
    };
    let srv =
        TestServer::start_with_options(Arc::new(proxied), AuthSettings::default(), &options).await;
    srv.add_operator(OPERATOR, "EUR", USER, PASSWORD).await;
    srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c"), ("I3", "c")])
        .await;
    (srv, proxy, real)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_found_committed_and_answered_ok() {
    let (srv, proxy, real) =
        through_proxy("a_commit_whose_answer_is_lost_is_found_committed_and_answered_ok").await;
    let token = srv.login().await;
    proxy.at_next_commit(AtCommit::CutAfter);
    let r = srv
        .batch(
            "decline",
            &token,
            json!([item_ref("I1", "c", "R-1"), item("I2", "c")]),
        )
        .await;
    r.assert_all_ok();
    assert_eq!(
        real.scalar("SELECT count(*) FROM decisions").await,
        2,
        "the answer matches the database"
    );
    // The same call again is an idempotent replay.
    srv.batch(
        "decline",
        &token,
        json!([item_ref("I1", "c", "R-1"), item("I2", "c")]),
    )
    .await
    .assert_all_ok();
    assert_eq!(
        real.scalar("SELECT count(*) FROM charge_history WHERE event = 'decline'")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_never_arrived_answers_503_with_nothing_applied() {
    let (srv, proxy, real) =
        through_proxy("a_commit_that_never_arrived_answers_503_with_nothing_applied").await;
    let token = srv.login().await;
    proxy.at_next_commit(AtCommit::CutBefore);
    let r = srv
        .batch("decline", &token, json!([item_ref("I3", "c", "R-3")]))
        .await;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(r.text.contains("nothing was applied"), "{}", r.text);
    assert_eq!(
        real.scalar("SELECT count(*) FROM decisions").await,
        0,
        "the answer matches the database"
    );
    srv.batch("decline", &token, json!([item_ref("I3", "c", "R-3")]))
        .await
        .assert_all_ok();
    assert_eq!(real.scalar("SELECT count(*) FROM decisions").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_whose_commit_answer_is_lost_is_found_committed() {
    let (srv, proxy, real) =
        through_proxy("an_acknowledgement_whose_commit_answer_is_lost_is_found_committed").await;
    let token = srv.login().await;
    srv.batch("decline", &token, json!([item("I1", "c")]))
        .await
        .assert_all_ok();
    proxy.at_next_commit(AtCommit::CutAfter);
    srv.batch(
        "acknowledge",
        &token,
        json!([item_ref("I1", "c", "A-1"), item_ref("I2", "c", "A-2")]),
    )
    .await
    .assert_all_ok();
    assert_eq!(
        real.scalar("SELECT count(*) FROM acknowledgements").await,
        2,
        "the answer matches the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_whose_commit_never_arrived_answers_503_with_nothing_applied() {
    let (srv, proxy, real) = through_proxy(
        "an_acknowledgement_whose_commit_never_arrived_answers_503_with_nothing_applied",
    )
    .await;
    let token = srv.login().await;
    proxy.at_next_commit(AtCommit::CutBefore);
    let r = srv
        .batch("acknowledge", &token, json!([item_ref("I3", "c", "A-3")]))
        .await;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(r.text.contains("nothing was applied"), "{}", r.text);
    assert_eq!(
        real.scalar("SELECT count(*) FROM acknowledgements").await,
        0,
        "the answer matches the database"
    );
}

/// A write with no rows of its own to look up (here a subscription's create) cannot
/// find out what became of a lost COMMIT: it says so, and is not tried again behind the
/// caller's back (a second attempt would meet its own subscription and renew its token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_create_whose_commit_answer_is_lost_answers_outcome_unknown() {
    let (srv, proxy, real) =
        through_proxy("a_subscription_create_whose_commit_answer_is_lost_answers_outcome_unknown")
            .await;
    let token = srv.login().await;
    let path = format!("{V2}/netflix/subscriptions/create");
    let body = json!({"token": token, "billing_system_customer_identifier": "c"});
    proxy.at_next_commit(AtCommit::CutAfter);
    let r = srv.post(&path, &body).await;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(r.text.contains("unknown"), "{}", r.text);
    assert_eq!(real.scalar("SELECT count(*) FROM subscriptions").await, 1);
    assert_eq!(
        real.scalar("SELECT count(*) FROM subscription_history")
            .await,
        1,
        "created once, not renewed by a hidden retry"
    );
    // Sent again, as the answer advises: the same subscription, with a fresh token.
    let again = srv.post(&path, &body).await;
    assert_eq!(again.code(), "OK", "{}", again.text);
    assert_eq!(real.scalar("SELECT count(*) FROM subscriptions").await, 1);
}

/// A decline, an accept and an acknowledge of 50 charges each wait for at most four round
/// trips to PostgreSQL, the token check included: BEGIN, one statement that checks the
/// token and locks and reads, one that writes, COMMIT. The connection pool (sqlx) adds one
/// more after the call, off its path: a Sync that checks the connection as it goes back
/// into the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_call_takes_at_most_four_round_trips_to_postgresql() {
    // One connection, so that the statements the first calls prepare are there for the
    // measured ones.
    let (srv, proxy, _real) = through_proxy_with(
        "a_batch_call_takes_at_most_four_round_trips_to_postgresql",
        1,
    )
    .await;
    let numbers: Vec<String> = (0..200).map(|i| format!("RT{i:03}")).collect();
    let charges: Vec<(&str, &str)> = numbers.iter().map(|n| (n.as_str(), "c")).collect();
    srv.add_charges(OPERATOR, &charges).await;
    let token = srv.login().await;
    let items = |method: &str, from: usize| {
        json!(
            numbers[from..from + 50]
                .iter()
                .map(|n| item_ref(n, "c", &format!("{method}-{n}")))
                .collect::<Vec<_>>()
        )
    };
    // The first round prepares the statements; the second is counted.
    for (round, first) in [(0, 0), (1, 100)] {
        for (method, from) in [
            ("decline", first),
            ("accept", first + 50),
            ("acknowledge", first),
        ] {
            let before = proxy.round_trips();
            srv.batch(method, &token, items(method, from))
                .await
                .assert_all_ok();
            // Let the pool's check of the released connection finish.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let taken = proxy.round_trips() - before;
            if round == 1 {
                assert!(
                    (1..=4 + 1).contains(&taken),
                    "{method} took {taken} round trips (with the pool's check)"
                );
            }
        }
    }
}
