//! The NUL character, which PostgreSQL text cannot hold, is refused at the edge for every
//! text input, so both backends answer alike and nothing reaches the database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use common::*;
use serde_json::json;

on_every_backend! {
    async fn nul_in_an_item_fails_that_item_alone_and_the_others_apply(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c"), ("I3", "c"), ("I4", "c")]).await;
        let token = srv.login().await;
        let r = srv
            .batch(
                "decline",
                &token,
                json!([
                    item("I1\u{0}", "c"),
                    item("I2", "c\u{0}"),
                    item_ref("I3", "c", "R\u{0}1"),
                    item("I4", "c"),
                ]),
            )
            .await;
        assert_eq!((r.status, r.code()), (200, "OK"), "{}", r.text);
        assert_eq!(
            r.failures(),
            vec![
                ("I1\u{0}".into(), "INVALID_PARAMETER".into()),
                ("I2".into(), "INVALID_PARAMETER".into()),
                ("I3".into(), "INVALID_PARAMETER".into()),
            ]
        );
        assert!(r.text.contains("NUL"), "{}", r.text);
        assert_eq!(srv.status_of(&token, "I4").await.as_deref(), Some("DECLINED"));
        assert_eq!(srv.db.scalar("SELECT count(*) FROM decisions").await, 1);
        assert_eq!(srv.db.scalar("SELECT count(*) FROM charges WHERE status = 'PENDING'").await, 3);
    }

    async fn nul_in_login_fields_is_refused_like_any_unknown_account(backend) {
        let srv = TestServer::start(backend).await;
        srv.try_login("pci\u{0}", USER, PASSWORD).await.assert_error(401, "INVALID_CREDENTIALS");
        srv.try_login(OPERATOR, "demo\u{0}", PASSWORD).await.assert_error(401, "INVALID_CREDENTIALS");
        srv.try_login(OPERATOR, USER, "demo\u{0}").await.assert_error(401, "INVALID_CREDENTIALS");
        assert_eq!(srv.db.scalar("SELECT count(*) FROM tokens").await, 0);
        srv.login().await;
    }

    async fn nul_in_query_parameters_is_an_invalid_parameter(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let r = srv
            .get(&format!(
                "{V2}/netflix/charges/list?token={token}&number_of_results=5&charge_status=NOT_PROCESSED&offset=0&fields_set=number%00"
            ))
            .await;
        r.assert_error(400, "INVALID_PARAMETER");
        let r = srv
            .get(&format!(
                "{V2}/netflix/charges/list?token={token}%00&number_of_results=5&charge_status=NOT_PROCESSED&offset=0"
            ))
            .await;
        r.assert_error(401, "INVALID_TOKEN");
    }
}
