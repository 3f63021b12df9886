//! `chargegate db copy`: every row moves between SQLite and PostgreSQL, both ways, and
//! the copy serves exactly like the original.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::process::Output;
use std::sync::Arc;

use chargegate_core::apikey::{ApiKey, KEY_BYTES, NewApiKey};
use chargegate_core::clock::Clock;
use chargegate_core::subscription::{NewPromotion, Promotion, PromotionCode};
use chargegate_core::text::{OperatorCode, Username};
use chargegate_store::tables::Chunk;
use chargegate_store::{DatabaseUrl, StoreOptions};
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
    // Subscriptions (one with a promotion, one suspended) before the charges, so the
    // charges of customers b and e belong to them; C2's decline below cancels b's.
    let now = srv.clock.now();
    srv.store
        .create_promotion(&NewPromotion {
            operator_id: srv.operator_id(OPERATOR).await,
            promotion: Promotion {
                code: PromotionCode::parse("WELCOME").unwrap(),
                name: "Welcome".into(),
                description: Some("three months".into()),
                effective_from: now.plus_seconds(-60),
                expires_on: None,
            },
            created_at: now,
        })
        .await
        .unwrap();
    let token = srv.login().await;
    for body in [
        json!({"token": token, "billing_system_customer_identifier": "b", "promotion_code": "WELCOME",
               "customer_address": {"city": "Nicosia"}}),
        json!({"token": token, "billing_system_customer_identifier": "e", "channel": "WEB"}),
    ] {
        let r = srv
            .post(&format!("{V2}/netflix/subscriptions/create"), &body)
            .await;
        assert_eq!(r.code(), "OK", "{}", r.text);
    }
    let r = srv
        .post(
            &format!("{V2}/netflix/subscriptions/suspend"),
            &json!({"token": token, "billing_system_customer_identifier": "e"}),
        )
        .await;
    r.assert_all_ok();
    // A web API key, and a token issued from it.
    let user = srv
        .store
        .login_user(
            &OperatorCode::parse(OPERATOR).unwrap(),
            &Username::parse(USER).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let key = ApiKey::from_random_bytes([9; KEY_BYTES]);
    srv.store
        .create_api_key(&NewApiKey {
            operator_id: user.operator_id,
            user_id: user.user_id,
            prefix: key.prefix(),
            hash: key.hash(),
            name: Some("billing".into()),
            created_at: now,
        })
        .await
        .unwrap();
    let r = srv
        .send(
            srv.client()
                .post(srv.url(&format!("{V2}/authentication/web_api_key/token")))
                .basic_auth(key.expose(), Some("")),
        )
        .await;
    assert_eq!(r.code(), "OK", "{}", r.text);
    srv.add_charges(
        OPERATOR,
        &[
            ("C1", "a"),
            ("C2", "b"),
            ("C3", "c"),
            ("C4", "d"),
            ("C5", "e"),
        ],
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

/// Every chunk of a database, with the rows of tables read whole (not paged by an
/// integer key) sorted, since text order may differ between the databases' collations.
async fn comparable(db: &TestDb) -> Vec<Chunk> {
    let url = DatabaseUrl::parse(&db.url).unwrap();
    let mut chunks = chargegate_store::copy::dump(&url, &StoreOptions::default())
        .await
        .unwrap();
    for c in &mut chunks {
        if let Chunk::Rows(table, rows) = c
            && table.page_key.is_none()
        {
            rows.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        }
    }
    chunks
}

fn table_of(chunk: &Chunk) -> &'static str {
    match chunk {
        Chunk::Rows(table, _) => table.name,
        Chunk::End => "end",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_to_postgresql_and_back_keeps_every_row() {
    db::require_postgres("a_copy_to_postgresql_and_back_keeps_every_row");
    let source = populated(Backend::Sqlite).await;
    let original = comparable(&source.db).await;
    let tables: Vec<&str> = original.iter().map(table_of).collect();
    for t in [
        "operators",
        "users",
        "login_attempts",
        "tokens",
        "charges",
        "decisions",
        "acknowledgements",
        "charge_history",
        "api_keys",
        "subscriptions",
        "promotions",
        "subscription_history",
        "subscription_promotions",
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
    assert!(printed.contains("charges: 6 row(s)"), "{printed}");
    assert!(printed.contains("subscriptions: 2 row(s)"), "{printed}");
    assert_eq!(comparable(&pg).await, original);

    let back = Arc::new(TestDb::new(Backend::Sqlite).await);
    let out = chargegate(&["--database", &pg.url, "db", "copy", "--to", &back.url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(comparable(&back).await, original);

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
    // Subscriptions came along: b's was cancelled by C2's decline, e's is suspended, and a
    // new one is numbered after the copied ones.
    let show = |customer: &str| {
        format!(
            "{V2}/netflix/subscriptions/show?token={token}&billing_system_customer_identifier={customer}"
        )
    };
    let b = copy.get(&show("b")).await;
    assert_eq!(
        b.body["data"][0]["life_cycle_state"], "CANCELLED",
        "{}",
        b.text
    );
    assert_eq!(b.body["data"][0]["promotions_set"][0]["code"], "WELCOME");
    assert_eq!(
        b.body["data"][0]["prices_set"][0]["FormattedPrice"],
        "9.99 EUR"
    );
    let e = copy.get(&show("e")).await;
    assert_eq!(e.body["data"][0]["life_cycle_state"], "NOT_EFFECTIVE");
    let r = copy
        .post(
            &format!("{V2}/netflix/subscriptions/create"),
            &json!({"token": token, "billing_system_customer_identifier": "f"}),
        )
        .await;
    assert_eq!(
        r.body["data"]["subscription_number"], "S00000003",
        "{}",
        r.text
    );
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
    let before = comparable(&target.db).await;
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
    assert_eq!(comparable(&target.db).await, before);
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

on_every_backend! {
    async fn an_interrupted_copy_leaves_the_target_empty(backend) {
        let source = populated(Backend::Sqlite).await;
        let mut chunks = comparable(&source.db).await;
        assert_eq!(chunks.pop(), Some(Chunk::End));
        let target = TestDb::new(backend).await;
        let url = DatabaseUrl::parse(&target.url).unwrap();
        let options = StoreOptions::default();
        let err = chargegate_store::copy::import(&url, &options, chunks).await.expect_err("no End");
        assert!(err.to_string().contains("stopped before its end"), "{err}");
        assert!(chargegate_store::copy::is_empty(&url, &options).await.unwrap());
    }
}
