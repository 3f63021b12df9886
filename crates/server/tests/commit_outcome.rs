//! PostgreSQL lost in the middle of a COMMIT: the call answers what really happened —
//! its normal answer when the transaction committed, 503 with nothing applied when it did
//! not — never "nothing applied" for decisions that are stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chargegate::app::AuthSettings;
use chargegate_store::StoreOptions;
use common::proxy::{AtCommit, Proxy};
use common::*;
use serde_json::json;

async fn through_proxy(name: &str) -> Option<(TestServer, Proxy, TestDb)> {
    if !db::postgres_or_skip(name) {
        return None;
    }
    let real = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(real.host_port()).await;
    // Plain text, so the proxy sees the COMMIT go by.
    let url = real
        .url
        .replacen(&real.host_port(), &proxy.addr.to_string(), 1);
    let sep = if url.contains('?') { '&' } else { '?' };
    let proxied = real.through(format!("{url}{sep}sslmode=disable"));
    let options = StoreOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(3),
    };
    let srv =
        TestServer::start_with_options(Arc::new(proxied), AuthSettings::default(), &options).await;
    srv.add_operator(OPERATOR, "EUR", USER, PASSWORD).await;
    srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c"), ("I3", "c")])
        .await;
    Some((srv, proxy, real))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_found_committed_and_answered_ok() {
    let Some((srv, proxy, real)) =
        through_proxy("a_commit_whose_answer_is_lost_is_found_committed_and_answered_ok").await
    else {
        return;
    };
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
    let Some((srv, proxy, real)) =
        through_proxy("a_commit_that_never_arrived_answers_503_with_nothing_applied").await
    else {
        return;
    };
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
