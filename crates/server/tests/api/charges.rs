//! The rest of the charges family: accept, acknowledge, list; and how they interact with
//! decline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use common::*;
use serde_json::{Value, json};

fn list_url(token: &str, group: &str, limit: u32, offset: u64) -> String {
    format!(
        "{V2}/netflix/charges/list?token={token}&number_of_results={limit}&charge_status={group}&offset={offset}"
    )
}

fn numbers(charges: &[Value]) -> Vec<String> {
    charges
        .iter()
        .map(|c| c["number"].as_str().unwrap().to_owned())
        .collect()
}

on_every_backend! {
    async fn a_batch_hears_of_its_body_before_its_token_and_a_list_of_its_query_before_its_token(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let token = srv.login().await;
        for method in ["accept", "decline", "acknowledge"] {
            let path = format!("{V2}/netflix/charges/{method}");
            srv.post_raw(&path, "{oops").await.assert_error(400, "MALFORMED_REQUEST");
            // No charges and no token: the token's error; with the token, the charges'.
            srv.post(&path, &json!({})).await.assert_error(401, "INVALID_TOKEN");
            srv.post(&path, &json!({"token": token})).await.assert_error(400, "INVALID_PARAMETER");
        }
        let list = format!("{V2}/netflix/charges/list");
        let r = srv.get(&format!("{list}?offset=0&offset=0")).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "offset");
        srv.get(&format!("{list}?offset=x")).await.assert_error(401, "INVALID_TOKEN");
        let r = srv.get(&format!("{list}?offset=x&token={token}")).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(srv.status_of(&token, "I1").await.as_deref(), Some("PENDING"));
        let listed = srv
            .get(&format!("{list}?token={token}&number_of_results=10&charge_status=NOT_PROCESSED&offset=0"))
            .await;
        assert_eq!(listed.body["data"]["charges_set"].as_array().map(Vec::len), Some(1), "{}", listed.text);
    }

    async fn accepting_approves_and_stamps_the_charge(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
        let token = srv.login().await;
        srv.batch("accept", &token, json!([item_ref("I1", "c", "A-1")])).await.assert_all_ok();
        let c = srv.list_all(&token, "PROCESSED").await.remove(0);
        assert_eq!((c["number"].as_str(), c["charge_status"].as_str()), (Some("I1"), Some("APPROVED")));
        assert!(c["set_as_approved_on"].is_string());
        assert_eq!(c["set_as_declined_on"], Value::Null);
        // Retry with the same or no reference: success, nothing changes.
        srv.batch("accept", &token, json!([item_ref("I1", "c", "A-1")])).await.assert_all_ok();
        srv.batch("accept", &token, json!([item("I1", "c")])).await.assert_all_ok();
        // Declining an approved charge is refused, naming the status.
        let r = srv.batch("decline", &token, json!([item("I1", "c")])).await;
        assert_eq!(r.body["data"]["failed_charges_set"][0]["error_description"], "charge I1 is already APPROVED");
    }

    async fn accept_references_have_their_own_namespace(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c"), ("I3", "c")]).await;
        let token = srv.login().await;
        srv.batch("decline", &token, json!([item_ref("I1", "c", "R")])).await.assert_all_ok();
        // The same reference on an accept is fine: rule 8 looks only at accepts.
        srv.batch("accept", &token, json!([item_ref("I2", "c", "R")])).await.assert_all_ok();
        let r = srv.batch("accept", &token, json!([item_ref("I3", "c", "R")])).await;
        assert_eq!(r.failures(), vec![("I3".into(), "DUPLICATE_REFERENCE_NUMBER".into())]);
        assert_eq!(
            r.body["data"]["failed_charges_set"][0]["error_description"],
            "reference number R was already used on an accept of charge I2"
        );
    }

    async fn accept_runs_every_per_item_rule(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("P1", "c1"), ("P2", "c2"), ("D1", "c3")]).await;
        srv.add_charges(RIVAL, &[("X1", "c1")]).await;
        let token = srv.login().await;
        srv.batch("decline", &token, json!([item("D1", "c3")])).await.assert_all_ok();
        let r = srv.batch("accept", &token, json!([
            item("P1", "c1"),
            {"number": "P2", "billing_system_customer_identifier": "c2", "reference_number": ""},
            item("P1", "c1"),
            item("X1", "c1"),
            item("P2", "c9"),
            item("D1", "c3"),
        ])).await;
        assert_eq!(r.failures(), vec![
            ("P2".into(), "INVALID_PARAMETER".into()),
            ("P1".into(), "DUPLICATE_IN_REQUEST".into()),
            ("X1".into(), "CHARGE_NOT_FOUND".into()),
            ("P2".into(), "DUPLICATE_IN_REQUEST".into()),
            ("D1".into(), "CHARGE_ALREADY_PROCESSED".into()),
        ]);
        assert_eq!(srv.status_of(&token, "P1").await.as_deref(), Some("APPROVED"));
        let r = srv.batch("accept", &token, json!([item("P2", "c9")])).await;
        assert_eq!(r.failures(), vec![("P2".into(), "CUSTOMER_MISMATCH".into())]);
    }

    async fn accept_and_decline_racing_decide_each_charge_once(backend) {
        let srv = std::sync::Arc::new(TestServer::start(backend).await);
        let charges: Vec<String> = (0..50).map(|i| format!("R{i:02}")).collect();
        let pairs: Vec<(&str, &str)> = charges.iter().map(|n| (n.as_str(), "c")).collect();
        srv.add_charges(OPERATOR, &pairs).await;
        let token = srv.login().await;
        let calls: Vec<_> = (0..24)
            .map(|k| {
                let method = if k % 2 == 0 { "accept" } else { "decline" };
                let srv = srv.clone();
                let token = token.clone();
                // Each call walks the charges from a different starting point.
                let mut order = charges.clone();
                order.rotate_left(k * 2);
                let items: Vec<Value> = order.iter().map(|n| item_ref(n, "c", &format!("{method}{k}-{n}"))).collect();
                tokio::spawn(async move { (method, srv.batch(method, &token, Value::Array(items)).await) })
            })
            .collect();
        let mut winner = std::collections::HashMap::<String, Vec<&str>>::new();
        for call in calls {
            let (method, r) = call.await.unwrap();
            assert_eq!(r.code(), "OK", "{}", r.text);
            let failed: Vec<String> = r.failures().into_iter().map(|(n, code)| {
                assert_eq!(code, "CHARGE_ALREADY_PROCESSED");
                n
            }).collect();
            for n in &charges {
                if !failed.contains(n) {
                    winner.entry(n.clone()).or_default().push(method);
                }
            }
        }
        let final_status: std::collections::HashMap<String, String> = srv
            .list_all(&token, "PROCESSED")
            .await
            .into_iter()
            .map(|c| (c["number"].as_str().unwrap().to_owned(), c["charge_status"].as_str().unwrap().to_owned()))
            .collect();
        for n in &charges {
            let won = winner.get(n).cloned().unwrap_or_default();
            assert_eq!(won.len(), 1, "{n} decided by {won:?}");
            let expected = if won[0] == "accept" { "APPROVED" } else { "DECLINED" };
            assert_eq!(final_status.get(n).map(String::as_str), Some(expected), "{n}");
        }
        assert_eq!(srv.db.scalar("SELECT count(*) FROM decisions").await, 50);
        assert_eq!(srv.db.scalar("SELECT count(*) FROM charge_history WHERE event IN ('accept', 'decline')").await, 50);
    }

    async fn acknowledging_hides_a_charge_until_its_status_changes(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
        let token = srv.login().await;
        srv.batch("acknowledge", &token, json!([item_ref("I1", "c", "K-1")])).await.assert_all_ok();
        assert_eq!(numbers(&srv.list_all(&token, "NOT_PROCESSED").await), ["I2"]);
        // Deciding it brings it back, under PROCESSED, so no outcome is missed.
        srv.batch("decline", &token, json!([item("I1", "c")])).await.assert_all_ok();
        assert_eq!(numbers(&srv.list_all(&token, "PROCESSED").await), ["I1"]);
        // Acknowledging the new status hides it again.
        srv.batch("acknowledge", &token, json!([item_ref("I1", "c", "K-2")])).await.assert_all_ok();
        assert!(srv.list_all(&token, "PROCESSED").await.is_empty());
        // Its status is still what it was.
        assert_eq!(srv.db.scalar("SELECT count(*) FROM charges WHERE number = 'I1' AND status = 'DECLINED'").await, 1);
    }

    async fn acknowledging_again_is_idempotent_and_references_are_unique(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
        srv.add_charges(RIVAL, &[("X1", "c")]).await;
        let token = srv.login().await;
        srv.batch("acknowledge", &token, json!([item_ref("I1", "c", "K-1")])).await.assert_all_ok();
        srv.batch("acknowledge", &token, json!([item_ref("I1", "c", "K-1"), item("I1", "c")])).await;
        srv.batch("acknowledge", &token, json!([item("I1", "c")])).await.assert_all_ok();
        assert_eq!(srv.db.scalar("SELECT count(*) FROM acknowledgements").await, 1);

        let r = srv.batch("acknowledge", &token, json!([
            item_ref("I2", "c", "K-1"),
            item("X1", "c"),
            item("I2", "other"),
        ])).await;
        assert_eq!(r.failures(), vec![
            ("I2".into(), "DUPLICATE_REFERENCE_NUMBER".into()),
            ("X1".into(), "CHARGE_NOT_FOUND".into()),
            ("I2".into(), "DUPLICATE_IN_REQUEST".into()),
        ]);
        assert_eq!(
            r.body["data"]["failed_charges_set"][0]["error_description"],
            "reference number K-1 was already used on an acknowledgement of charge I1"
        );
        // Acknowledgement references do not collide with decision references.
        srv.batch("decline", &token, json!([item_ref("I2", "c", "K-1")])).await.assert_all_ok();
        let hist = srv.db.scalar("SELECT count(*) FROM charge_history WHERE event = 'acknowledge'").await;
        assert_eq!(hist, 1);
    }

    async fn the_list_pages_through_every_charge_once_oldest_first(backend) {
        let srv = TestServer::start(backend).await;
        let names: Vec<String> = (0..23).map(|i| format!("L{:02}", 22 - i)).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "c")).collect();
        // Imported in reverse name order, one second apart: received_on decides the order.
        srv.add_charges(OPERATOR, &pairs).await;
        srv.add_charges(RIVAL, &[("Z1", "c")]).await;
        let token = srv.login().await;
        let mut seen = Vec::new();
        for offset in (0..30).step_by(7) {
            let r = srv.get(&list_url(&token, "NOT_PROCESSED", 7, offset)).await;
            assert_eq!(r.code(), "OK", "{}", r.text);
            seen.extend(numbers(r.body["data"]["charges_set"].as_array().unwrap()));
        }
        assert_eq!(seen, names, "each charge once, by received_on");
        let empty = srv.get(&list_url(&token, "NOT_PROCESSED", 7, 1000)).await;
        assert_eq!(empty.body["data"]["charges_set"], json!([]));
        assert!(srv.list_all(&token, "PROCESSED").await.is_empty());
    }

    async fn charges_received_at_the_same_second_are_ordered_by_number(backend) {
        let srv = TestServer::start(backend).await;
        let op = srv.operator_id(OPERATOR).await;
        let eur = chargegate_core::money::Currency::parse("EUR").unwrap();
        let at = chargegate_core::clock::Timestamp::parse("2026-11-01T00:00:00").unwrap();
        let rows: Vec<_> = ["B", "C", "A"].iter().map(|n| chargegate_core::store::NewCharge {
            operator_id: op,
            number: Some(chargegate_core::text::ChargeNumber::parse(*n).unwrap()),
            customer: chargegate_core::text::CustomerId::parse("c").unwrap(),
            netflix_customer: None,
            amount: chargegate_core::money::Money::parse("1", eur).unwrap(),
            local_amount: chargegate_core::money::Money::parse("1", eur).unwrap(),
            paid_through_date: chargegate_core::clock::Date::parse("2026-12-31").unwrap(),
            received_on: Some(at),
            status: None,
        }).collect();
        srv.store.import_charges(rows, at, std::sync::Arc::new(|_| {})).await.unwrap();
        let token = srv.login().await;
        assert_eq!(numbers(&srv.list_all(&token, "NOT_PROCESSED").await), ["A", "B", "C"]);
    }

    async fn the_list_shows_every_field_or_just_those_asked_for(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "pci155")]).await;
        let token = srv.login().await;
        let full = srv.list_all(&token, "NOT_PROCESSED").await.remove(0);
        assert_eq!(full, json!({
            "number": "I1",
            "billing_system_customer_identifier": "pci155",
            "amount": 9.99,
            "currency": "EUR",
            "local_currency_amount": 9.99,
            "local_currency": "EUR",
            "paid_through_date": "2026-12-31",
            "charge_status": "PENDING",
            "received_on": "2026-11-01T00:00:00",
            "set_as_approved_on": null,
            "set_as_declined_on": null,
            "set_as_bad_request_on": null,
            "set_as_rejected_request_on": null,
        }));
        let r = srv.get(&format!("{}&fields_set=number,charge_status", list_url(&token, "NOT_PROCESSED", 5, 0))).await;
        assert_eq!(r.body["data"]["charges_set"], json!([{"number": "I1", "charge_status": "PENDING"}]));
        let r = srv.get(&format!("{}&fields_set=number,colour", list_url(&token, "NOT_PROCESSED", 5, 0))).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "fields_set");
        assert!(r.body["status"]["message"].as_str().unwrap().contains("colour"));
    }

    async fn every_bad_list_parameter_is_named(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        for (query, named) in [
            ("charge_status=PROCESSED&offset=0", "number_of_results"),
            ("number_of_results=51&charge_status=PROCESSED&offset=0", "number_of_results"),
            ("number_of_results=ten&charge_status=PROCESSED&offset=0", "number_of_results"),
            ("number_of_results=5&offset=0", "charge_status"),
            ("number_of_results=5&charge_status=processed&offset=0", "charge_status"),
            ("number_of_results=5&charge_status=PROCESSED", "offset"),
            ("number_of_results=5&charge_status=PROCESSED&offset=-3", "offset"),
        ] {
            let r = srv.get(&format!("{V2}/netflix/charges/list?token={token}&{query}")).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], named, "{query}");
        }
        srv.get(&format!("{V2}/netflix/charges/list?number_of_results=5&charge_status=PROCESSED&offset=0&token=bad"))
            .await
            .assert_error(401, "INVALID_TOKEN");
    }

    async fn money_round_trips_exactly_from_csv_to_the_list(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_operator("kw", "KWD", "k", "k-password").await;
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("money.csv");
        std::fs::write(&csv, "\
operator,number,billing_system_customer_identifier,amount,currency,local_currency_amount,paid_through_date,received_on
pci,M1,c,9.99,EUR,,2026-12-31,2026-11-01T00:00:01
pci,M2,c,0.1,EUR,,2026-12-31,2026-11-01T00:00:02
pci,M3,c,1234567.89,EUR,,2026-12-31,2026-11-01T00:00:03
pci,M4,c,1500,JPY,9.30,2026-12-31,2026-11-01T00:00:04
pci,M5,c,12.50,USD,11.7,2026-12-31,2026-11-01T00:00:05
kw,M6,c,1.005,KWD,,2026-12-31,2026-11-01T00:00:06
").unwrap();
        chargegate::cli::csv_import::import(srv.store.as_ref(), &csv).await.unwrap();
        let token = srv.login().await;
        let r = srv.get(&format!("{}&fields_set=number,amount,currency,local_currency_amount", list_url(&token, "NOT_PROCESSED", 50, 0))).await;
        let text = &r.text;
        for exact in [
            r#""amount":9.99,"currency":"EUR","local_currency_amount":9.99"#,
            r#""amount":0.1,"currency":"EUR","local_currency_amount":0.1"#,
            r#""amount":1234567.89,"currency":"EUR","local_currency_amount":1234567.89"#,
            r#""amount":1500,"currency":"JPY","local_currency_amount":9.3"#,
            r#""amount":12.5,"currency":"USD","local_currency_amount":11.7"#,
        ] {
            assert!(text.contains(exact), "{exact} not in {text}");
        }
        let kw = srv.login_as("kw", "k", "k-password").await;
        let r = srv.get(&list_url(&kw, "NOT_PROCESSED", 50, 0)).await;
        assert!(r.text.contains(r#""amount":1.005,"currency":"KWD""#), "{}", r.text);
    }

    async fn imported_final_charges_list_as_processed_with_their_stamp(backend) {
        let srv = TestServer::start(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("final.csv");
        std::fs::write(&csv, "\
operator,number,billing_system_customer_identifier,amount,currency,paid_through_date,received_on,charge_status
pci,F1,c,1,EUR,2026-12-31,2026-10-01T08:00:00,BAD_REQUEST
pci,F2,c,1,EUR,2026-12-31,2026-10-01T08:00:01,REJECTED
").unwrap();
        chargegate::cli::csv_import::import(srv.store.as_ref(), &csv).await.unwrap();
        let token = srv.login().await;
        let processed = srv.list_all(&token, "PROCESSED").await;
        assert_eq!(processed[0]["charge_status"], "BAD_REQUEST");
        assert_eq!(processed[0]["set_as_bad_request_on"], "2026-10-01T08:00:00");
        assert_eq!(processed[1]["charge_status"], "REJECTED");
        assert_eq!(processed[1]["set_as_rejected_request_on"], "2026-10-01T08:00:01");
        // Final charges cannot be decided.
        let r = srv.batch("accept", &token, json!([item("F1", "c")])).await;
        assert_eq!(r.failures(), vec![("F1".into(), "CHARGE_ALREADY_PROCESSED".into())]);
    }
}
