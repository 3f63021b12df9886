//! One reading of every request, whichever parser looks at it: repeated JSON keys and
//! query parameters are refused, integers are plain digits, limits are stated truly, a
//! byte-order mark is skipped. Also: request ids that could forge log lines are replaced,
//! and replays are told apart from applied items.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use common::*;
use serde_json::json;

const DECLINE: &str = "/crmapi/rest/v2/netflix/charges/decline";

fn list_url(token: &str, extra: &str) -> String {
    format!("{V2}/netflix/charges/list?token={token}&charge_status=NOT_PROCESSED{extra}")
}

fn metric(srv: &TestServer, series: &str) -> String {
    let text = srv.metrics.render().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

on_every_backend! {
    async fn a_repeated_token_key_is_malformed_and_applies_nothing(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        let body = format!(
            r#"{{"token":"not-a-token","token":"{token}","declined_charges_set":[{{"number":"I1","billing_system_customer_identifier":"c"}}]}}"#
        );
        let r = srv.post_raw(DECLINE, body).await;
        r.assert_error(400, "MALFORMED_REQUEST");
        assert!(r.body["status"]["message"].as_str().unwrap().contains("\"token\""), "{}", r.text);
        assert_eq!(srv.status_of(&token, "I1").await.as_deref(), Some("PENDING"));
    }

    async fn a_repeated_key_inside_an_item_is_malformed_and_applies_nothing(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
        let token = srv.login().await;
        let body = format!(
            r#"{{"token":"{token}","declined_charges_set":[{{"number":"I1","number":"I2","billing_system_customer_identifier":"c"}}]}}"#
        );
        srv.post_raw(DECLINE, body).await.assert_error(400, "MALFORMED_REQUEST");
        for n in ["I1", "I2"] {
            assert_eq!(srv.status_of(&token, n).await.as_deref(), Some("PENDING"));
        }
    }

    async fn a_body_after_a_byte_order_mark_is_read_as_json(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        let mut body = b"\xEF\xBB\xBF".to_vec();
        body.extend(json!({"token": token, "declined_charges_set": [item("I1", "c")]}).to_string().into_bytes());
        srv.post_raw(DECLINE, body).await.assert_all_ok();
        assert_eq!(srv.status_of(&token, "I1").await.as_deref(), Some("DECLINED"));
    }

    async fn a_repeated_query_parameter_is_refused_even_the_token(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let r = srv.get(&format!("{}&token=other&number_of_results=5&offset=0", list_url(&token, ""))).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "token");
        let r = srv.get(&list_url(&token, "&number_of_results=5&number_of_results=6&offset=0")).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "number_of_results");
        let r = srv.get(&list_url(&token, "&number_of_results=5&offset=0&x=1&x=2")).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "x");
    }

    async fn integers_are_plain_decimal_digits_only(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        for bad in ["%2B5", "05", "5.0", "5e0", "%205", "-0", "0x5", ""] {
            let r = srv.get(&list_url(&token, &format!("&number_of_results={bad}&offset=0"))).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], "number_of_results", "{bad}");
            let r = srv.get(&list_url(&token, &format!("&number_of_results=5&offset={bad}"))).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], "offset", "{bad}");
        }
        for good in ["0", "10"] {
            let r = srv.get(&list_url(&token, &format!("&number_of_results=5&offset={good}"))).await;
            assert_eq!(r.code(), "OK", "{good}: {}", r.text);
        }
    }

    async fn an_offset_past_the_maximum_is_refused_naming_the_true_range(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let max = i64::MAX.to_string();
        let r = srv.get(&list_url(&token, &format!("&number_of_results=5&offset={max}"))).await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        assert_eq!(r.body["data"]["charges_set"], json!([]));
        for past in ["9223372036854775808", "18446744073709551616", "99999999999999999999999"] {
            let r = srv.get(&list_url(&token, &format!("&number_of_results=5&offset={past}"))).await;
            r.assert_error(400, "INVALID_PARAMETER");
            let message = r.body["status"]["message"].as_str().unwrap();
            assert!(message.contains(&format!("from 0 to {max}")), "{message}");
        }
    }

    async fn request_ids_that_could_forge_log_lines_are_replaced(backend) {
        let srv = TestServer::start(backend).await;
        for forged in [
            "abc\" level=ERROR msg=\"forged",
            "{\"level\":\"ERROR\"}",
            "id:with:colons",
            "spaces are not ok",
            "tab\there",
        ] {
            let r = srv
                .send(srv.client().get(srv.url("/healthz")).header("x-request-id", forged))
                .await;
            let id = r.header("x-request-id").unwrap();
            assert_ne!(id, forged);
            assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        for safe in ["abc-123", "550e8400-e29b-41d4-a716-446655440000", "trace_01.A"] {
            let r = srv
                .send(srv.client().get(srv.url("/healthz")).header("x-request-id", safe))
                .await;
            assert_eq!(r.header("x-request-id"), Some(safe));
        }
    }

    async fn two_authorization_headers_are_refused_and_apply_nothing(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        let body = json!({"declined_charges_set": [item("I1", "c")]}).to_string();
        let r = srv
            .send(
                srv.client()
                    .post(srv.url(DECLINE))
                    .header("authorization", format!("Bearer {token}"))
                    .header("authorization", "Bearer 0000")
                    .body(body),
            )
            .await;
        r.assert_error(401, "INVALID_TOKEN");
        assert_eq!(srv.status_of(&token, "I1").await.as_deref(), Some("PENDING"));
    }

    async fn two_request_ids_are_both_replaced(backend) {
        let srv = TestServer::start(backend).await;
        let r = srv
            .send(
                srv.client()
                    .get(srv.url("/healthz"))
                    .header("x-request-id", "first")
                    .header("x-request-id", "second"),
            )
            .await;
        let id = r.header("x-request-id").unwrap();
        assert!(id != "first" && id != "second" && id.len() == 32, "{id}");
    }

    async fn replays_are_counted_apart_from_applied_items(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
        let token = srv.login().await;
        let items = json!([item_ref("I1", "c", "R-1"), item_ref("I2", "c", "R-2")]);
        srv.batch("decline", &token, items.clone()).await.assert_all_ok();
        srv.batch("decline", &token, items).await.assert_all_ok();
        assert_eq!(metric(&srv, "chargegate_charge_items_applied_total{method=\"decline\"}"), "2");
        assert_eq!(metric(&srv, "chargegate_charge_items_replayed_total{method=\"decline\"}"), "2");
        assert_eq!(
            metric(&srv, "chargegate_charge_items_total{method=\"decline\",outcome=\"ok\"}"),
            "4"
        );
    }
}
