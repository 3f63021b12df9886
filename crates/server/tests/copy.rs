//! `chargegate db copy`: every row moves between SQLite and PostgreSQL, both ways, and
//! the copy serves exactly like the original.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;
use std::sync::Arc;

use chargegate::copy::dump;
use chargegate_core::dump::{DumpChunk, DumpSource};
use common::*;
use serde_json::json;

fn chargegate(args: &[&str]) -> Output {
    // The URLs come as flags; the variable is only a placeholder the flag overrides.
    common::process::chargegate("sqlite://unused.db", args)
        .output()
        .unwrap()
}

/// A database with something in every table.
async fn populated(backend: Backend) -> TestServer {
    let srv = TestServer::start(backend).await;
    srv.add_charges(
        OPERATOR,
        &[("C1", "a"), ("C2", "b"), ("C3", "c"), ("C4", "d")],
    )
    .await;
    srv.add_charges(RIVAL, &[("X1", "r")]).await;
    let token = srv.login().await;
    srv.batch("accept", &token, json!([item_ref("C1", "a", "ACC-1")]))
        .await
        .assert_all_ok();
    srv.batch(
        "decline",
        &token,
        json!([item_ref("C2", "b", "DEC-1"), item("C3", "c")]),
    )
    .await
    .assert_all_ok();
    srv.batch(
        "acknowledge",
        &token,
        json!([item_ref("C1", "a", "ACK-1"), item("C4", "d")]),
    )
    .await
    .assert_all_ok();
    let released = srv.login().await;
    srv.post(
        "/crmapi/rest/v2/authentication/token/release",
        &json!({"token": released}),
    )
    .await
    .assert_all_ok();
    srv.try_login(RIVAL, RIVAL_USER, "wrong").await;
    srv
}

/// Dumps with the two whole-table chunks sorted, since text order may differ between
/// the databases' collations.
async fn comparable(store: &dyn chargegate_core::Store) -> Vec<DumpChunk> {
    let mut chunks = dump(store).await.unwrap();
    for c in &mut chunks {
        match c {
            DumpChunk::LoginAttempts(rows) => rows.sort_by(|a, b| {
                (&a.organisation, &a.username).cmp(&(&b.organisation, &b.username))
            }),
            DumpChunk::Tokens(rows) => rows.sort_by(|a, b| a.hash.cmp(&b.hash)),
            _ => {}
        }
    }
    chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_to_postgresql_and_back_keeps_every_row() {
    if !db::postgres_or_skip("a_copy_to_postgresql_and_back_keeps_every_row") {
        return;
    }
    let source = populated(Backend::Sqlite).await;
    let original = comparable(source.store.as_ref()).await;
    let tables: Vec<&str> = original.iter().map(|c| c.describe().0).collect();
    for t in [
        "operators",
        "users",
        "login_attempts",
        "tokens",
        "charges",
        "decisions",
        "acknowledgements",
        "charge_history",
        "end",
    ] {
        assert!(tables.contains(&t), "the fixture must fill {t}: {tables:?}");
    }

    let pg = Arc::new(TestDb::new(Backend::Postgres).await);
    let out = chargegate(&["--database", &source.db.url, "db", "copy", "--to", &pg.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("charges: 5 row(s)"), "{printed}");
    let pg_store = open_store(&pg).await;
    assert_eq!(comparable(pg_store.as_ref()).await, original);

    let back = Arc::new(TestDb::new(Backend::Sqlite).await);
    let out = chargegate(&["--database", &pg.url, "db", "copy", "--to", &back.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(comparable(open_store(&back).await.as_ref()).await, original);

    // The copy serves: users log in with their passwords, decisions and references hold,
    // and new rows get fresh ids after the copied ones.
    let after_copy = source.login().await;
    let copy = TestServer::start_on(pg.clone(), Default::default()).await;
    let list = format!(
        "{V2}/netflix/charges/list?token={after_copy}&number_of_results=5&charge_status=PROCESSED&offset=0"
    );
    copy.get(&list).await.assert_error(401, "INVALID_TOKEN");
    let token = copy.login().await;
    assert_eq!(
        copy.status_of(&token, "C2").await.as_deref(),
        Some("DECLINED")
    );
    assert_eq!(
        copy.status_of(&token, "C1").await,
        None,
        "acknowledged in its status"
    );
    let r = copy
        .batch("decline", &token, json!([item_ref("C4", "d", "DEC-1")]))
        .await;
    assert_eq!(
        r.failures(),
        vec![("C4".into(), "DUPLICATE_REFERENCE_NUMBER".into())]
    );
    copy.batch("decline", &token, json!([item_ref("C4", "d", "DEC-2")]))
        .await
        .assert_all_ok();
    copy.add_operator("newop", "EUR", "u", "pw-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_issued_before_a_copy_work_on_the_copy() {
    let source = populated(Backend::Sqlite).await;
    let token = source.login().await;
    let target = Arc::new(TestDb::new(Backend::Sqlite).await);
    let out = chargegate(&[
        "--database",
        &source.db.url,
        "db",
        "copy",
        "--to",
        &target.url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = TestServer::start_on(target, Default::default()).await;
    assert_eq!(
        copy.status_of(&token, "C2").await.as_deref(),
        Some("DECLINED")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_refuses_a_target_that_is_not_empty() {
    let source = populated(Backend::Sqlite).await;
    let target = TestServer::start(Backend::Sqlite).await;
    let before = comparable(target.store.as_ref()).await;
    let out = chargegate(&[
        "--database",
        &source.db.url,
        "db",
        "copy",
        "--to",
        &target.db.url,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(comparable(target.store.as_ref()).await, before);
    let out = chargegate(&[
        "--database",
        &source.db.url,
        "db",
        "copy",
        "--to",
        &source.db.url,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("source database itself"));
}

/// Chunks, then an end that never comes.
struct Interrupted(Vec<DumpChunk>);

#[async_trait::async_trait]
impl DumpSource for Interrupted {
    async fn next(&mut self) -> Option<DumpChunk> {
        if self.0.is_empty() {
            None
        } else {
            Some(self.0.remove(0))
        }
    }
}

on_every_backend! {
    async fn an_interrupted_copy_leaves_the_target_empty(backend) {
        let source = populated(Backend::Sqlite).await;
        let mut chunks = dump(source.store.as_ref()).await.unwrap();
        assert_eq!(chunks.pop(), Some(DumpChunk::End));
        let target = TestDb::new(backend).await;
        let store = open_store(&target).await;
        let err = store.import_dump(&mut Interrupted(chunks)).await.expect_err("no End");
        assert!(err.to_string().contains("stopped before its end"), "{err}");
        assert!(store.is_empty().await.unwrap());
    }
}
