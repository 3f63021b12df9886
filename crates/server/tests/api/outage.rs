//! The database going away and coming back: requests answer 503 with nothing applied,
//! and the server recovers by itself, without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::sync::Arc;
use std::time::Duration;

use chargegate::state::AuthSettings;
use chargegate_store::StoreOptions;
use common::proxy::Proxy;
use common::*;
use serde_json::json;

fn quick() -> StoreOptions {
    StoreOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_postgresql_answers_503_and_the_server_recovers_when_it_returns() {
    db::require_postgres("a_lost_postgresql_answers_503_and_the_server_recovers_when_it_returns");
    let real = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(real.host_port()).await;
    let proxied = real.through(
        real.url
            .replacen(&real.host_port(), &proxy.addr.to_string(), 1),
    );
    let srv =
        TestServer::start_with_options(Arc::new(proxied), AuthSettings::default(), &quick()).await;
    srv.add_operator(OPERATOR, "EUR", USER, PASSWORD).await;
    srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
    let token = srv.login().await;

    proxy.cut();
    let r = srv.batch("decline", &token, json!([item("I1", "c")])).await;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(r.header("retry-after").is_some());
    srv.get("/readyz")
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    srv.get("/healthz").await.assert_all_ok();
    srv.try_login(OPERATOR, USER, PASSWORD)
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");

    proxy.restore().await;
    // The pool reconnects on its own; give it a moment.
    let mut ready = false;
    for _ in 0..50 {
        if srv.get("/readyz").await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the server did not recover");
    assert_eq!(
        real.scalar("SELECT count(*) FROM decisions").await,
        0,
        "nothing applied during the outage"
    );
    srv.batch("decline", &token, json!([item("I1", "c")]))
        .await
        .assert_all_ok();
    assert_eq!(
        srv.status_of(&token, "I1").await.as_deref(),
        Some("DECLINED")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_locked_too_long_answers_503_with_nothing_applied() {
    let db = Arc::new(TestDb::new(Backend::Sqlite).await);
    let srv = TestServer::start_with_options(db.clone(), AuthSettings::default(), &quick()).await;
    srv.add_operator(OPERATOR, "EUR", USER, PASSWORD).await;
    srv.add_charges(OPERATOR, &[("I1", "c")]).await;
    let token = srv.login().await;

    // Another process holds SQLite's write lock for longer than the server will wait.
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    let mut blocker = {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(&path),
        )
        .await
        .unwrap()
    };
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let r = srv.batch("decline", &token, json!([item("I1", "c")])).await;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();

    assert_eq!(
        srv.status_of(&token, "I1").await.as_deref(),
        Some("PENDING")
    );
    srv.batch("decline", &token, json!([item("I1", "c")]))
        .await
        .assert_all_ok();
}
