//! `POST netflix/charges/decline`, the heart of the product: every request-level check
//! and per-item rule, atomicity, races and persistence, through HTTP against the real
//! server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use common::*;
use serde_json::{Value, json};

const DECLINE: &str = "/crmapi/rest/v2/netflix/charges/decline";

on_every_backend! {
    async fn crm_com_s_decline_example_answers_byte_for_byte(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I00002706", "pci155")]).await;
        let token = srv.login().await;
        // CRM.COM's example request, with its odd indentation, as a client would send it.
        let body = format!(
            "{{\n    \"token\":\"{token}\",\n    \"declined_charges_set\":[\n        {{\n            \"number\":\"I00002706\",\n            \"billing_system_customer_identifier\":\"pci155\"\n        }}\n    ]\n}}"
        );
        let r = srv.post_raw(DECLINE, body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text, r#"{"data":{},"status":{"code":"OK","description":"","message":""}}"#);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("x-request-id").is_some_and(|id| !id.is_empty()));
        assert_eq!(srv.status_of(&token, "I00002706").await.as_deref(), Some("DECLINED"));
    }

    async fn a_declined_charge_records_when_it_was_declined(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let token = srv.login().await;
        let before = chargegate_core::clock::Timestamp::now();
        srv.batch("decline", &token, json!([item("I1", "c1")])).await.assert_all_ok();
        let charge = srv.list_all(&token, "PROCESSED").await.remove(0);
        assert_eq!(charge["charge_status"], "DECLINED");
        let stamp = chargegate_core::clock::Timestamp::parse(charge["set_as_declined_on"].as_str().unwrap()).unwrap();
        assert!(stamp >= before && stamp <= chargegate_core::clock::Timestamp::now());
        for other in ["set_as_approved_on", "set_as_bad_request_on", "set_as_rejected_request_on"] {
            assert_eq!(charge[other], Value::Null, "{other}");
        }
    }

    async fn a_mixed_batch_reports_every_per_item_code_in_request_order(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[
            ("P1", "c1"), ("P2", "c2"), ("P3", "c3"), ("P4", "c4"), ("A1", "c5"), ("D1", "c6"), ("D2", "c7"),
            ("P5", "c8"), ("P6", "c9"),
        ]).await;
        srv.add_charges(RIVAL, &[("X1", "r1")]).await;
        let token = srv.login().await;
        srv.batch("accept", &token, json!([item("A1", "c5")])).await.assert_all_ok();
        srv.batch("decline", &token, json!([item_ref("D1", "c6", "USED"), item("D2", "c7")])).await.assert_all_ok();

        let r = srv.batch("decline", &token, json!([
            item("P1", "c1"),                                   // declined
            {"number": "P2"},                                   // 1: customer missing
            item("P1", "c1"),                                   // 2: duplicate number
            item_ref("P3", "c3", "R-3"),                        // declined with R-3
            item_ref("P4", "c4", "R-3"),                        // 3: duplicate reference in request
            item("NOPE", "c1"),                                 // 4: not found
            item("X1", "r1"),                                   // 4: another operator's
            item("P5", "someone-else"),                         // 5: customer mismatch
            item("D2", "c7"),                                   // 6: idempotent retry (no ref)
            item("A1", "c5"),                                   // 7: already APPROVED
            item_ref("P6", "c9", "USED"),                       // 8: reference used on D1
        ])).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.code(), "OK");
        assert_eq!(r.failures(), vec![
            ("P2".into(), "INVALID_PARAMETER".into()),
            ("P1".into(), "DUPLICATE_IN_REQUEST".into()),
            ("P4".into(), "DUPLICATE_REFERENCE_NUMBER".into()),
            ("NOPE".into(), "CHARGE_NOT_FOUND".into()),
            ("X1".into(), "CHARGE_NOT_FOUND".into()),
            ("P5".into(), "CUSTOMER_MISMATCH".into()),
            ("A1".into(), "CHARGE_ALREADY_PROCESSED".into()),
            ("P6".into(), "DUPLICATE_REFERENCE_NUMBER".into()),
        ]);
        let failed = r.body["data"]["failed_charges_set"].as_array().unwrap();
        assert_eq!(failed[0]["error_description"], "declined_charges_set[1].billing_system_customer_identifier: is mandatory");
        assert_eq!(failed[2]["reference_number"], "R-3");
        assert_eq!(failed[6]["error_description"], "charge A1 is already APPROVED");
        for f in failed {
            assert!(f["error_description"].is_string());
            assert_eq!(f.as_object().unwrap().len(), 4, "{f}");
        }
        // What succeeded was applied; what failed was not.
        assert_eq!(srv.status_of(&token, "P1").await.as_deref(), Some("DECLINED"));
        assert_eq!(srv.status_of(&token, "P3").await.as_deref(), Some("DECLINED"));
        for pending in ["P2", "P4", "P5", "P6"] {
            assert_eq!(srv.status_of(&token, pending).await.as_deref(), Some("PENDING"), "{pending}");
        }
        assert_eq!(srv.status_of(&token, "A1").await.as_deref(), Some("APPROVED"));
    }

    async fn declining_another_operators_charge_looks_exactly_like_a_missing_one(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(RIVAL, &[("X1", "r1")]).await;
        let token = srv.login().await;
        let theirs = srv.batch("decline", &token, json!([item("X1", "r1")])).await;
        let missing = srv.batch("decline", &token, json!([item("X2", "r1")])).await;
        let strip = |r: &Reply| {
            let f = &r.body["data"]["failed_charges_set"][0];
            (f["error_code"].clone(), f["error_description"].as_str().unwrap().replace("X1", "X2"))
        };
        assert_eq!(strip(&theirs), strip(&missing));
        assert_eq!(strip(&theirs).0, "CHARGE_NOT_FOUND");
        // And the rival's charge is untouched.
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        assert_eq!(srv.status_of(&rival, "X1").await.as_deref(), Some("PENDING"));
    }

    async fn reference_numbers_are_unique_per_operator_across_calls(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
        srv.add_charges(RIVAL, &[("X1", "c")]).await;
        let token = srv.login().await;
        srv.batch("decline", &token, json!([item_ref("I1", "c", "R-1")])).await.assert_all_ok();
        let r = srv.batch("decline", &token, json!([item_ref("I2", "c", "R-1")])).await;
        assert_eq!(r.failures(), vec![("I2".into(), "DUPLICATE_REFERENCE_NUMBER".into())]);
        assert_eq!(
            r.body["data"]["failed_charges_set"][0]["error_description"],
            "reference number R-1 was already used on a decline of charge I1"
        );
        assert_eq!(srv.status_of(&token, "I2").await.as_deref(), Some("PENDING"));
        // Another operator has its own namespace.
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        srv.batch("decline", &rival, json!([item_ref("X1", "c", "R-1")])).await.assert_all_ok();
    }

    async fn a_retried_decline_succeeds_without_changing_anything(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
        let token = srv.login().await;
        let call = json!([item_ref("I1", "c", "R-1"), item("I2", "c")]);
        srv.batch("decline", &token, call.clone()).await.assert_all_ok();
        let first = srv.list_all(&token, "PROCESSED").await;
        srv.clock.advance(60);
        srv.batch("decline", &token, call).await.assert_all_ok();
        // Without a reference, a retry matches any.
        srv.batch("decline", &token, json!([item("I1", "c")])).await.assert_all_ok();
        assert_eq!(srv.list_all(&token, "PROCESSED").await, first, "timestamps unchanged");
        let decisions = srv.db.scalar("SELECT count(*) FROM charge_history WHERE event = 'decline'").await;
        assert_eq!(decisions, 2);
        // A different reference is a different decision: refused.
        let r = srv.batch("decline", &token, json!([item_ref("I1", "c", "R-2")])).await;
        assert_eq!(r.failures(), vec![("I1".into(), "CHARGE_ALREADY_PROCESSED".into())]);
    }

    async fn fifty_one_items_are_refused_whole_with_nothing_applied(backend) {
        let srv = TestServer::start(backend).await;
        let charges: Vec<(String, String)> = (0..51).map(|i| (format!("I{i:03}"), "c".to_owned())).collect();
        let pairs: Vec<(&str, &str)> = charges.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        srv.add_charges(OPERATOR, &pairs).await;
        let token = srv.login().await;
        let items: Vec<Value> = charges.iter().map(|(n, c)| item(n, c)).collect();
        let r = srv.batch("decline", &token, Value::Array(items.clone())).await;
        r.assert_error(400, "LIMIT_EXCEEDED");
        assert_eq!(r.body["status"]["description"], "declined_charges_set");
        assert_eq!(srv.list_all(&token, "NOT_PROCESSED").await.len(), 51);
        assert_eq!(srv.db.scalar("SELECT count(*) FROM decisions").await, 0);
        // Fifty is fine.
        srv.batch("decline", &token, Value::Array(items[..50].to_vec())).await.assert_all_ok();
        assert_eq!(srv.list_all(&token, "NOT_PROCESSED").await.len(), 1);
    }

    async fn the_item_set_must_be_a_non_empty_array(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        for set in [None, Some(json!(null)), Some(json!([])), Some(json!("I1")), Some(json!({"number": "I1"}))] {
            let mut body = json!({"token": token});
            if let Some(s) = set.clone() {
                body["declined_charges_set"] = s;
            }
            let r = srv.post(DECLINE, &body).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], "declined_charges_set", "{set:?}");
        }
    }

    async fn request_level_checks_run_in_order_malformed_then_token_then_set(backend) {
        let srv = TestServer::start(backend).await;
        // Not JSON beats everything.
        srv.post_raw(DECLINE, "{oops").await.assert_error(400, "MALFORMED_REQUEST");
        srv.post_raw(DECLINE, "[]").await.assert_error(400, "MALFORMED_REQUEST");
        srv.post_raw(DECLINE, "").await.assert_error(400, "MALFORMED_REQUEST");
        // A bad token beats a bad set.
        srv.post(DECLINE, &json!({"declined_charges_set": 5})).await.assert_error(401, "INVALID_TOKEN");
        let token = srv.login().await;
        srv.post(DECLINE, &json!({"token": token, "declined_charges_set": 5})).await.assert_error(400, "INVALID_PARAMETER");
    }

    async fn concurrent_declines_of_the_same_charges_decide_each_exactly_once(backend) {
        let srv = std::sync::Arc::new(TestServer::start(backend).await);
        let numbers: Vec<String> = (0..20).map(|i| format!("C{i:02}")).collect();
        let pairs: Vec<(&str, &str)> = numbers.iter().map(|n| (n.as_str(), "c")).collect();
        srv.add_charges(OPERATOR, &pairs).await;
        let token = srv.login().await;

        // Sixteen calls race over the same charges, each with its own references, so
        // that only the winner of each charge hears success.
        let calls: Vec<_> = (0..16)
            .map(|k| {
                let srv = srv.clone();
                let token = token.clone();
                let items: Vec<Value> = numbers.iter().map(|n| item_ref(n, "c", &format!("call{k}-{n}"))).collect();
                tokio::spawn(async move { srv.batch("decline", &token, Value::Array(items)).await })
            })
            .collect();
        let mut wins = std::collections::HashMap::<String, usize>::new();
        for call in calls {
            let r = call.await.unwrap();
            assert_eq!(r.code(), "OK", "{}", r.text);
            let failed: Vec<String> = r.failures().into_iter().map(|(n, code)| {
                assert_eq!(code, "CHARGE_ALREADY_PROCESSED");
                n
            }).collect();
            for n in &numbers {
                if !failed.contains(n) {
                    *wins.entry(n.clone()).or_default() += 1;
                }
            }
        }
        for n in &numbers {
            assert_eq!(wins.get(n), Some(&1), "charge {n} won by {:?} calls", wins.get(n));
        }
        assert_eq!(srv.db.scalar("SELECT count(*) FROM decisions").await, 20);
        assert_eq!(srv.db.scalar("SELECT count(*) FROM charge_history WHERE event = 'decline'").await, 20);
    }

    async fn decisions_and_tokens_survive_a_restart(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
        let token = srv.login().await;
        srv.batch("decline", &token, json!([item_ref("I1", "c", "R-1")])).await.assert_all_ok();
        let srv = srv.restart().await;
        assert_eq!(srv.status_of(&token, "I1").await.as_deref(), Some("DECLINED"));
        assert_eq!(srv.status_of(&token, "I2").await.as_deref(), Some("PENDING"));
        // The reference is still taken after the restart.
        let r = srv.batch("decline", &token, json!([item_ref("I2", "c", "R-1")])).await;
        assert_eq!(r.failures(), vec![("I2".into(), "DUPLICATE_REFERENCE_NUMBER".into())]);
    }

    async fn history_records_who_when_which_request_and_reference(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        let r = srv.send(
            srv.client()
                .post(srv.url(DECLINE))
                .header("x-request-id", "trace-me-42")
                .body(json!({"token": token, "declined_charges_set": [item_ref("I1", "c", "R-9")]}).to_string()),
        ).await;
        r.assert_all_ok();
        assert_eq!(r.header("x-request-id"), Some("trace-me-42"));
        let matching = srv.db.scalar(
            "SELECT count(*) FROM charge_history h JOIN charges c ON c.id = h.charge_id \
             JOIN users u ON u.id = h.user_id \
             WHERE c.number = 'I1' AND h.event = 'decline' AND h.from_status = 'PENDING' \
               AND h.to_status = 'DECLINED' AND h.request_id = 'trace-me-42' \
               AND h.reference_number = 'R-9' AND u.username = 'demo' AND h.at > 0",
        ).await;
        assert_eq!(matching, 1);
    }

    async fn a_fault_answers_internal_error_without_details_and_applies_nothing(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("BROKEN", "c")]).await;
        let token = srv.login().await;
        // Damage a stored row behind the server's back: an empty customer cannot have
        // come through chargegate.
        assert_eq!(srv.db.execute("UPDATE charges SET customer_id = '' WHERE number = 'BROKEN'").await, 1);
        let r = srv.batch("decline", &token, json!([item("I1", "c"), item("BROKEN", "c")])).await;
        r.assert_error(500, "INTERNAL_ERROR");
        assert_eq!(r.body["status"]["message"], "an internal error occurred; nothing was applied");
        assert!(!r.text.contains("customer"), "{}", r.text);
        assert_eq!(srv.db.scalar("SELECT count(*) FROM decisions").await, 0);
        srv.get(&format!("/crmapi/rest/v2/netflix/charges/list?token={token}&number_of_results=5&charge_status=NOT_PROCESSED&offset=0"))
            .await
            .assert_error(500, "INTERNAL_ERROR");
    }
}
