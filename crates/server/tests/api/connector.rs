//! The connector API over HTTP on both backends: keys and the separation of audiences,
//! intake (idempotence, PAI resolution, every per-item code), Netflix's verdicts, the
//! outbox (one event per change, none for refusals, GET + ack, order), activation and
//! state, promotions upsert, and 8 deciding clients racing a consumer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chargegate_core::apikey::{ApiKey, KEY_BYTES};
use chargegate_core::clock::Timestamp;
use chargegate_core::connector::{CONNECTOR_KEY_MARK, NewConnectorKey};
use common::*;
use serde_json::{Value, json};

const C: &str = "/chargegate/v1/connector";
const V1: &str = "/chargegate/v1";

/// A new connector key of `operator`, straight into the store (the command line is
/// tested in tests/cli_connector.rs).
async fn connector_key(srv: &TestServer, operator: &str) -> String {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).unwrap();
    let key = ApiKey::marked(CONNECTOR_KEY_MARK, bytes);
    srv.store
        .create_connector_key(&NewConnectorKey {
            operator_id: srv.operator_id(operator).await,
            prefix: key.prefix(),
            hash: key.hash(),
            name: None,
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
    key.expose().to_owned()
}

async fn cpost(srv: &TestServer, key: &str, path: &str, body: &Value) -> Reply {
    srv.send(
        srv.client()
            .post(srv.url(&format!("{C}{path}")))
            .bearer_auth(key)
            .body(body.to_string()),
    )
    .await
}

async fn cget(srv: &TestServer, key: &str, path: &str) -> Reply {
    srv.send(
        srv.client()
            .get(srv.url(&format!("{C}{path}")))
            .bearer_auth(key),
    )
    .await
}

fn charge(id: &str, customer: &str, amount: Value) -> Value {
    json!({"netflix_charge_identifier": id, "billing_system_customer_identifier": customer,
           "amount": amount, "currency": "EUR", "paid_through_date": "2026-12-31"})
}

async fn intake(srv: &TestServer, key: &str, items: Value) -> Reply {
    cpost(srv, key, "/charges", &json!({"charges_set": items})).await
}

/// The numbers intake answered, by Netflix id.
fn numbers(r: &Reply) -> HashMap<String, String> {
    r.body["data"]["charges_set"]
        .as_array()
        .expect("charges_set")
        .iter()
        .map(|c| {
            (
                c["netflix_charge_identifier"].as_str().unwrap().to_owned(),
                c["number"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `(netflix_charge_identifier or code, error_code)` of each failed item.
fn failed(r: &Reply, set: &str, id: &str) -> Vec<(String, String)> {
    r.body["data"][set]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    (
                        i[id].as_str().unwrap_or("<null>").to_owned(),
                        i["error_code"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn events(srv: &TestServer, key: &str) -> Vec<Value> {
    let r = cget(srv, key, "/outbox?limit=500").await;
    assert_eq!(r.code(), "OK", "{}", r.text);
    r.body["data"]["events_set"].as_array().unwrap().clone()
}

async fn ack(srv: &TestServer, key: &str, events: &[Value]) -> Reply {
    let ids: Vec<Value> = events.iter().map(|e| e["id"].clone()).collect();
    cpost(srv, key, "/outbox/ack", &json!({ "ids": ids })).await
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn count(srv: &TestServer, table: &str) -> i64 {
    srv.db
        .scalar(&format!("SELECT count(*) FROM {table}"))
        .await
}

/// What a refused call must leave exactly as it was.
async fn footprint(srv: &TestServer) -> [i64; 5] {
    [
        count(srv, "charges").await,
        count(srv, "charge_history").await,
        count(srv, "outbox").await,
        count(srv, "subscription_history").await,
        srv.db
            .scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL")
            .await,
    ]
}

async fn create_subscription(srv: &TestServer, token: &str, customer: &str) -> Value {
    let r = srv
        .post(
            &format!("{V2}/netflix/subscriptions/create"),
            &json!({"token": token, "billing_system_customer_identifier": customer,
                    "customer_first_name": "Ada", "customer_email": {"home": "ada@example.com"},
                    "channel": "WEB"}),
        )
        .await;
    assert_eq!(r.code(), "OK", "{}", r.text);
    r.body["data"].clone()
}

async fn activate(srv: &TestServer, key: &str, netflix_token: &str, pai: &str) -> Reply {
    cpost(
        srv,
        key,
        "/subscriptions/activate",
        &json!({"netflix_token": netflix_token, "netflix_customer_identifier": pai}),
    )
    .await
}

on_every_backend! {
    async fn a_connector_call_hears_of_its_body_before_its_key_and_the_outbox_of_its_key_before_its_query(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let before = footprint(&srv).await;
        for path in ["/charges", "/charges/status", "/outbox/ack", "/subscriptions/activate",
                     "/subscriptions/state", "/promotions"] {
            // A malformed body and no key: the body's error.
            let r = srv.post_raw(&format!("{C}{path}"), "{oops").await;
            r.assert_error(400, "MALFORMED_REQUEST");
            // A body without its fields and no key: the key's.
            let r = srv.post(&format!("{C}{path}"), &json!({})).await;
            r.assert_error(401, "INVALID_TOKEN");
            assert_eq!(r.body["status"]["description"], "Authorization", "{path}");
            // With the key, the fields'.
            cpost(&srv, &key, path, &json!({})).await.assert_error(400, "INVALID_PARAMETER");
        }
        // A repeated parameter and no key: the key's error; with the key, the query's.
        srv.get(&format!("{C}/outbox?limit=1&limit=2")).await.assert_error(401, "INVALID_TOKEN");
        let r = cget(&srv, &key, "/outbox?limit=1&limit=2").await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "limit");
        assert_eq!(footprint(&srv).await, before);
    }

    async fn connector_calls_without_a_live_connector_key_are_refused_and_change_nothing(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        let before = footprint(&srv).await;
        let body = json!({"charges_set": [charge("N1", "c1", json!(9.99))]});
        let path = format!("{C}/charges");
        // No header, another scheme, an operator token, an unknown key.
        let no_key = srv.post(&path, &body).await;
        no_key.assert_error(401, "INVALID_TOKEN");
        let basic = srv
            .send(srv.client().post(srv.url(&path)).basic_auth(&key, Some("")).body(body.to_string()))
            .await;
        basic.assert_error(401, "INVALID_TOKEN");
        cpost(&srv, &token, "/charges", &body).await.assert_error(401, "INVALID_TOKEN");
        cpost(&srv, "cgc_0000000000000000", "/charges", &body).await.assert_error(401, "INVALID_TOKEN");
        cget(&srv, &token, "/outbox").await.assert_error(401, "INVALID_TOKEN");
        // A revoked key.
        let revoked = connector_key(&srv, OPERATOR).await;
        srv.store
            .revoke_connector_key(&revoked[..8], Timestamp::now())
            .await
            .unwrap();
        cpost(&srv, &revoked, "/charges", &body).await.assert_error(401, "INVALID_TOKEN");
        assert_eq!(footprint(&srv).await, before);
        // A connector key is no token on the operator API.
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let list = srv
            .get(&format!("{V2}/netflix/charges/list?token={key}&number_of_results=10&charge_status=NOT_PROCESSED&offset=0"))
            .await;
        list.assert_error(401, "INVALID_TOKEN");
        let decline = srv
            .send(srv.client().post(srv.url(&format!("{V2}/netflix/charges/decline")))
                .bearer_auth(&key)
                .body(json!({"declined_charges_set": [item("I1", "c1")]}).to_string()))
            .await;
        decline.assert_error(401, "INVALID_TOKEN");
        assert_eq!(srv.status_of(&token, "I1").await.as_deref(), Some("PENDING"));
        // The live key works.
        let ok = intake(&srv, &key, json!([charge("N1", "c1", json!(9.99))])).await;
        assert_eq!(ok.code(), "OK", "{}", ok.text);
    }

    async fn intake_stores_pending_charges_with_new_numbers_and_a_connector_receipt(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        srv.add_charges(OPERATOR, &[("I00000041", "c0")]).await;
        let r = intake(&srv, &key, json!([
            charge("N1", "c1", json!(9.99)),
            {"netflix_charge_identifier": "N2", "billing_system_customer_identifier": "c2",
             "amount": 10, "currency": "USD", "local_currency_amount": 9.5,
             "paid_through_date": "2027-01-31", "received_on": "2026-11-20T10:00:00"},
        ])).await;
        assert_eq!((r.status, r.code()), (200, "OK"), "{}", r.text);
        assert!(r.body["data"].get("failed_charges_set").is_none(), "{}", r.text);
        let n = numbers(&r);
        assert_eq!(n["N1"], "I00000042");
        assert_eq!(n["N2"], "I00000043");
        let token = srv.login().await;
        let show = srv.get(&format!("{V1}/charges/show?token={token}&number=I00000043")).await;
        assert_eq!(show.code(), "OK", "{}", show.text);
        let c = &show.body["data"]["charge"];
        assert_eq!(c["charge_status"], "PENDING");
        assert_eq!(c["amount"], json!(10));
        assert_eq!(c["currency"], "USD");
        assert_eq!(c["local_currency_amount"], json!(9.5));
        assert_eq!(c["local_currency"], "EUR");
        assert_eq!(c["received_on"], "2026-11-20T10:00:00");
        let history = show.body["data"]["history_set"].as_array().unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0]["event"], "received");
        assert_eq!(history[0]["actor"], "connector");
        assert_eq!(history[0]["request_id"], show.body["data"]["history_set"][0]["request_id"]);
        // The operator's list shows them; the rival's does not.
        assert_eq!(srv.status_of(&token, "I00000042").await.as_deref(), Some("PENDING"));
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        assert_eq!(srv.status_of(&rival, "I00000042").await, None);
        // Intake makes no outbox event.
        assert_eq!(count(&srv, "outbox").await, 0);
    }

    async fn a_repeated_intake_changes_nothing_and_different_data_is_a_conflict(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let first = intake(&srv, &key, json!([
            {"netflix_charge_identifier": "N1", "billing_system_customer_identifier": "c1",
             "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31",
             "received_on": "2026-11-20T10:00:00"},
        ])).await;
        let number = numbers(&first)["N1"].clone();
        let before = footprint(&srv).await;
        // The same data: amounts as numbers, received_on omitted.
        let again = cpost(&srv, &key, "/charges", &serde_json::from_str(
            r#"{"charges_set": [{"netflix_charge_identifier": "N1",
                "billing_system_customer_identifier": "c1", "amount": 9.990,
                "currency": "EUR", "local_currency_amount": 9.99,
                "paid_through_date": "2026-12-31"}]}"#).unwrap()).await;
        assert_eq!(again.code(), "OK", "{}", again.text);
        assert_eq!(numbers(&again)["N1"], number);
        assert!(again.body["data"].get("failed_charges_set").is_none());
        assert_eq!(footprint(&srv).await, before);
        // Different data.
        let r = intake(&srv, &key, json!([
            charge("N1", "c1", json!(9.98)),
            charge("N1", "c2", json!(9.99)),
            {"netflix_charge_identifier": "N1", "billing_system_customer_identifier": "c1",
             "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31",
             "received_on": "2026-11-20T10:00:01"},
        ])).await;
        assert_eq!(r.code(), "OK");
        assert_eq!(failed(&r, "failed_charges_set", "netflix_charge_identifier"), [
            ("N1".to_owned(), "CONFLICT".to_owned()),
            ("N1".to_owned(), "DUPLICATE_IN_REQUEST".to_owned()),
            ("N1".to_owned(), "DUPLICATE_IN_REQUEST".to_owned()),
        ]);
        assert_eq!(r.body["data"]["charges_set"], json!([]));
        assert_eq!(footprint(&srv).await, before);
        // Another operator's identical Netflix id is another charge.
        let rival = connector_key(&srv, RIVAL).await;
        let theirs = intake(&srv, &rival, json!([charge("N1", "c1", json!(9.99))])).await;
        assert_ne!(numbers(&theirs)["N1"], number);
    }

    async fn intake_judges_every_item_and_resolves_customers_by_pai(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        let created = create_subscription(&srv, &token, "c7").await;
        let r = activate(&srv, &key, created["netflix_token"].as_str().unwrap(), "PAI-7").await;
        r.assert_all_ok();
        let before = footprint(&srv).await;
        let r = intake(&srv, &key, json!([
            {"netflix_charge_identifier": "P1", "netflix_customer_identifier": "PAI-7",
             "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31"},
            {"netflix_charge_identifier": "P2", "netflix_customer_identifier": "PAI-unknown",
             "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31"},
            {"netflix_charge_identifier": "P3", "netflix_customer_identifier": "PAI-7",
             "billing_system_customer_identifier": "c8",
             "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31"},
            {"netflix_charge_identifier": "P4", "amount": 9.99, "currency": "EUR",
             "paid_through_date": "2026-12-31"},
            {"netflix_charge_identifier": "P5", "billing_system_customer_identifier": "c1",
             "amount": 10, "currency": "USD", "paid_through_date": "2026-12-31"},
            {"netflix_charge_identifier": "P6", "billing_system_customer_identifier": "c1",
             "amount": 9.999, "currency": "EUR", "paid_through_date": "2026-12-31"},
            {"netflix_charge_identifier": "P7", "billing_system_customer_identifier": "c1",
             "amount": "9.99", "currency": "EUR", "paid_through_date": "2026-12-31"},
            {"netflix_charge_identifier": "P8", "billing_system_customer_identifier": "c1",
             "amount": 9.99, "currency": "eur", "paid_through_date": "2026-12-31"},
            {"netflix_charge_identifier": "P9", "billing_system_customer_identifier": "c1",
             "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-02-30"},
            {"netflix_charge_identifier": "", "billing_system_customer_identifier": "c1",
             "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31"},
            "not an object",
            {"netflix_charge_identifier": "P1", "billing_system_customer_identifier": "c7",
             "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31"},
            {"netflix_charge_identifier": "P10", "billing_system_customer_identifier": "c1",
             "amount": 0, "currency": "EUR", "paid_through_date": "2026-12-31"},
        ])).await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        let codes: Vec<String> = failed(&r, "failed_charges_set", "netflix_charge_identifier")
            .into_iter().map(|(id, code)| format!("{id}:{code}")).collect();
        assert_eq!(codes, [
            "PAI-unknown:CUSTOMER_NOT_FOUND".replace("PAI-unknown", "P2"),
            "P3:INVALID_PARAMETER".into(),
            "P4:INVALID_PARAMETER".into(),
            "P5:INVALID_PARAMETER".into(),
            "P6:INVALID_PARAMETER".into(),
            "P7:INVALID_PARAMETER".into(),
            "P8:INVALID_PARAMETER".into(),
            "P9:INVALID_PARAMETER".into(),
            ":INVALID_PARAMETER".into(),
            "<null>:INVALID_PARAMETER".into(),
            "P1:DUPLICATE_IN_REQUEST".into(),
            "P10:INVALID_PARAMETER".into(),
        ]);
        let stored = numbers(&r);
        assert_eq!(stored.len(), 1);
        let after = footprint(&srv).await;
        assert_eq!(after[0], before[0] + 1);
        // The PAI's charge belongs to c7 and to its subscription.
        let show = srv.get(&format!("{V1}/charges/show?token={token}&number={}", stored["P1"])).await;
        assert_eq!(show.body["data"]["charge"]["billing_system_customer_identifier"], "c7");
        assert_eq!(show.body["data"]["charge"]["subscription_number"], created["subscription_number"]);
        assert_eq!(show.body["data"]["charge"]["netflix_customer_identifier"], "PAI-7");
        // The same PAI given with the right customer is the same data.
        let again = intake(&srv, &key, json!([
            {"netflix_charge_identifier": "P1", "billing_system_customer_identifier": "c7",
             "amount": 9.99, "currency": "EUR", "paid_through_date": "2026-12-31"}])).await;
        assert_eq!(numbers(&again)["P1"], stored["P1"]);
    }

    async fn intake_refuses_a_bad_or_oversized_set_and_stores_nothing(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let before = footprint(&srv).await;
        for body in [json!({}), json!({"charges_set": null}), json!({"charges_set": []}),
                     json!({"charges_set": {"a": 1}})] {
            let r = cpost(&srv, &key, "/charges", &body).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], "charges_set");
        }
        let many: Vec<Value> = (0..501).map(|i| charge(&format!("N{i}"), "c1", json!(1))).collect();
        let r = intake(&srv, &key, json!(many)).await;
        r.assert_error(400, "LIMIT_EXCEEDED");
        let r = cpost(&srv, &key, "/charges/status", &json!({"charges_set": many})).await;
        r.assert_error(400, "LIMIT_EXCEEDED");
        let r = srv.send(srv.client().post(srv.url(&format!("{C}/charges"))).bearer_auth(&key).body("[1]")).await;
        r.assert_error(400, "MALFORMED_REQUEST");
        assert_eq!(footprint(&srv).await, before);
        // 500 is fine, in one transaction.
        let r = intake(&srv, &key, json!(many[..500])).await;
        assert_eq!(numbers(&r).len(), 500);
    }

    async fn netflix_verdicts_stamp_the_charge_cancel_its_subscription_and_keep_the_reason(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        let sub = create_subscription(&srv, &token, "c1").await;
        let r = intake(&srv, &key, json!([charge("N1", "c1", json!(9.99)), charge("N2", "c2", json!(5))])).await;
        let n = numbers(&r);
        let drained = events(&srv, &key).await;
        ack(&srv, &key, &drained).await.assert_all_ok();
        let r = cpost(&srv, &key, "/charges/status", &json!({"charges_set": [
            {"netflix_charge_identifier": "N1", "charge_status": "REJECTED", "reason": "card expired"},
            {"number": n["N2"], "charge_status": "BAD_REQUEST"},
        ]})).await;
        r.assert_all_ok();
        let show = srv.get(&format!("{V1}/charges/show?token={token}&number={}", n["N1"])).await;
        let c = &show.body["data"]["charge"];
        assert_eq!(c["charge_status"], "REJECTED");
        assert!(c["set_as_rejected_request_on"].is_string());
        let last = show.body["data"]["history_set"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["event"], "rejected");
        assert_eq!(last["actor"], "connector");
        assert_eq!(last["reason"], "card expired");
        let show2 = srv.get(&format!("{V1}/charges/show?token={token}&number={}", n["N2"])).await;
        assert_eq!(show2.body["data"]["charge"]["charge_status"], "BAD_REQUEST");
        // The reconciliation feed lists both verdicts, by the connector. On PostgreSQL it holds
        // entries back while an older transaction anywhere on the cluster (another test's)
        // is still open: page on, following `next`, until both are served.
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut after = String::new();
        for _ in 0..200 {
            let feed = srv
                .get(&format!("{V1}/charges/decisions?token={token}&from=2000-01-01T00:00:00&to=2100-01-01T00:00:00{after}"))
                .await;
            assert_eq!(feed.code(), "OK", "{}", feed.text);
            entries.extend(feed.body["data"]["decisions_set"].as_array().unwrap().iter()
                .map(|e| (e["event"].as_str().unwrap().to_owned(), e["actor"].as_str().unwrap().to_owned())));
            if let Some(next) = feed.body["data"]["next"].as_str() {
                after = format!("&after={next}");
            }
            if entries.len() >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let entries: Vec<(&str, &str)> = entries.iter().map(|(e, a)| (e.as_str(), a.as_str())).collect();
        assert_eq!(entries, [("rejected", "connector"), ("bad_request", "connector")]);
        // The subscription is cancelled, and Netflix is told so, once.
        let subs = srv.get(&format!("{V2}/netflix/subscriptions/show?token={token}&billing_system_customer_identifier=c1")).await;
        assert_eq!(subs.body["data"][0]["life_cycle_state"], "CANCELLED");
        let e = events(&srv, &key).await;
        assert_eq!(types(&e), ["subscription.cancelled"]);
        assert_eq!(e[0]["subscription"]["subscription_number"], sub["subscription_number"]);
        assert_eq!(e[0]["subscription"]["life_cycle_state"], "CANCELLED");
        // Repeats change nothing, their reason included; other states are refused.
        let before = footprint(&srv).await;
        let r = cpost(&srv, &key, "/charges/status", &json!({"charges_set": [
            {"netflix_charge_identifier": "N1", "charge_status": "REJECTED", "reason": "another"},
            {"netflix_charge_identifier": "N1", "charge_status": "BAD_REQUEST"},
            {"netflix_charge_identifier": "N2", "charge_status": "REJECTED"},
            {"netflix_charge_identifier": "N9", "charge_status": "REJECTED"},
            {"netflix_charge_identifier": "N1", "number": n["N2"], "charge_status": "REJECTED"},
            {"netflix_charge_identifier": "N1", "charge_status": "DECLINED"},
            {"charge_status": "REJECTED"},
        ]})).await;
        assert_eq!(r.code(), "OK");
        assert_eq!(failed(&r, "failed_charges_set", "netflix_charge_identifier"), [
            ("N1".to_owned(), "DUPLICATE_IN_REQUEST".to_owned()),
            ("N2".to_owned(), "CHARGE_ALREADY_PROCESSED".to_owned()),
            ("N9".to_owned(), "CHARGE_NOT_FOUND".to_owned()),
            ("N1".to_owned(), "CHARGE_NOT_FOUND".to_owned()),
            ("N1".to_owned(), "INVALID_PARAMETER".to_owned()),
            ("<null>".to_owned(), "INVALID_PARAMETER".to_owned()),
        ]);
        assert_eq!(footprint(&srv).await, before);
        let show = srv.get(&format!("{V1}/charges/show?token={token}&number={}", n["N1"])).await;
        assert_eq!(show.body["data"]["history_set"].as_array().unwrap().last().unwrap()["reason"], "card expired");
        // A charge an operator decided is refused, and the operator's decline of a
        // verdict's charge too.
        srv.add_charges(OPERATOR, &[("I7", "c3")]).await;
        srv.batch("accept", &token, json!([item("I7", "c3")])).await.assert_all_ok();
        let r = cpost(&srv, &key, "/charges/status", &json!({"charges_set": [
            {"number": "I7", "charge_status": "REJECTED"}]})).await;
        assert_eq!(failed(&r, "failed_charges_set", "number"), [("I7".to_owned(), "CHARGE_ALREADY_PROCESSED".to_owned())]);
        let r = srv.batch("decline", &token, json!([item(&n["N1"], "c1")])).await;
        assert_eq!(r.failures()[0].1, "CHARGE_ALREADY_PROCESSED");
    }

    async fn every_decision_writes_one_event_and_a_refused_one_writes_none(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        let r = intake(&srv, &key, json!([charge("N1", "c1", json!(9.99)), charge("N2", "c2", json!(5))])).await;
        let n = numbers(&r);
        srv.add_charges(OPERATOR, &[("I9", "c9")]).await;
        let r = srv.batch("accept", &token, json!([item_ref(&n["N1"], "c1", "A-1"), item("I9", "c9")])).await;
        r.assert_all_ok();
        let r = srv.batch("decline", &token, json!([item_ref(&n["N2"], "c2", "D-1"), item("I404", "c2"), item(&n["N1"], "c1")])).await;
        assert_eq!(r.failures().len(), 2);
        // Replays, refusals and acknowledgements make no event.
        srv.batch("accept", &token, json!([item_ref(&n["N1"], "c1", "A-1")])).await.assert_all_ok();
        srv.batch("acknowledge", &token, json!([item("I9", "c9")])).await.assert_all_ok();
        let e = events(&srv, &key).await;
        assert_eq!(types(&e), ["charge.approved", "charge.approved", "charge.declined"]);
        assert_eq!(e[0]["charge"]["number"], n["N1"]);
        assert_eq!(e[0]["charge"]["netflix_charge_identifier"], "N1");
        assert_eq!(e[0]["charge"]["charge_status"], "APPROVED");
        assert_eq!(e[0]["reference_number"], "A-1");
        assert_eq!(e[0]["operator"], OPERATOR);
        assert_eq!(e[1]["charge"]["netflix_charge_identifier"], Value::Null);
        assert_eq!(e[1]["reference_number"], Value::Null);
        assert_eq!(e[2]["charge"]["charge_status"], "DECLINED");
        assert_eq!(e[2]["reference_number"], "D-1");
        assert!(e[2]["charge"]["set_as_declined_on"].is_string());
        assert_eq!(e[2]["occurred_on"], e[2]["charge"]["set_as_declined_on"]);
        let ids: HashSet<&str> = e.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 3);
        // The rival sees none of them.
        let rival = connector_key(&srv, RIVAL).await;
        assert!(events(&srv, &rival).await.is_empty());
        ack(&srv, &rival, &e).await.assert_all_ok();
        assert_eq!(events(&srv, &key).await.len(), 3);
    }

    async fn acknowledged_events_never_come_back_and_a_retried_ack_is_harmless(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        let charges: Vec<(String, String)> = (0..5).map(|i| (format!("I{i}"), format!("c{i}"))).collect();
        let pairs: Vec<(&str, &str)> = charges.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        srv.add_charges(OPERATOR, &pairs).await;
        let items: Vec<Value> = pairs.iter().map(|(n, c)| item(n, c)).collect();
        srv.batch("accept", &token, json!(items)).await.assert_all_ok();
        let page = cget(&srv, &key, "/outbox?limit=2").await;
        let first = page.body["data"]["events_set"].as_array().unwrap().clone();
        assert_eq!(first.len(), 2);
        // Not acknowledged: the same events again.
        let again = cget(&srv, &key, "/outbox?limit=2").await;
        assert_eq!(again.body["data"]["events_set"], json!(first));
        ack(&srv, &key, &first).await.assert_all_ok();
        ack(&srv, &key, &first).await.assert_all_ok();
        let rest = events(&srv, &key).await;
        assert_eq!(rest.len(), 3);
        assert!(rest.iter().all(|e| !first.contains(e)));
        let r = cpost(&srv, &key, "/outbox/ack", &json!({"ids": ["999999", "x", "-1", "01"]})).await;
        r.assert_all_ok();
        assert_eq!(events(&srv, &key).await.len(), 3);
        // Delivered events stay stored.
        assert_eq!(count(&srv, "outbox").await, 5);
        // Bad requests change nothing.
        let before = footprint(&srv).await;
        for (body, code) in [
            (json!({}), "INVALID_PARAMETER"),
            (json!({"ids": []}), "INVALID_PARAMETER"),
            (json!({"ids": [1]}), "INVALID_PARAMETER"),
            (json!({"ids": vec!["1"; 501]}), "LIMIT_EXCEEDED"),
        ] {
            cpost(&srv, &key, "/outbox/ack", &body).await.assert_error(400, code);
        }
        for query in ["limit=0", "limit=501", "limit=x", "limit=1&limit=2", "limit=01"] {
            cget(&srv, &key, &format!("/outbox?{query}")).await.assert_error(400, "INVALID_PARAMETER");
        }
        assert_eq!(footprint(&srv).await, before);
        assert_eq!(cget(&srv, &key, "/outbox").await.body["data"]["events_set"].as_array().unwrap().len(), 3);
    }

    async fn subscription_changes_are_queued_and_netflixs_own_reports_are_not(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        let created = create_subscription(&srv, &token, "c1").await;
        // A renewed token is no change for Netflix.
        let renewed = create_subscription(&srv, &token, "c1").await;
        assert_eq!(renewed["subscription_number"], created["subscription_number"]);
        // The superseded token does not link; the fresh one does, once.
        let old = activate(&srv, &key, created["netflix_token"].as_str().unwrap(), "PAI-1").await;
        old.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(old.body["status"]["description"], "netflix_token");
        let fresh = renewed["netflix_token"].as_str().unwrap();
        let rival = connector_key(&srv, RIVAL).await;
        activate(&srv, &rival, fresh, "PAI-1").await.assert_error(400, "INVALID_PARAMETER");
        activate(&srv, &key, fresh, "PAI-1").await.assert_all_ok();
        activate(&srv, &key, fresh, "PAI-1").await.assert_error(400, "INVALID_PARAMETER");
        let suspend = |verb: &'static str| {
            let srv = &srv;
            let token = token.clone();
            async move {
                srv.post(&format!("{V2}/netflix/subscriptions/{verb}"),
                         &json!({"token": token, "billing_system_customer_identifier": "c1"})).await
            }
        };
        suspend("suspend").await.assert_all_ok();
        suspend("suspend").await.assert_all_ok();
        suspend("unsuspend").await.assert_all_ok();
        let r = cpost(&srv, &key, "/subscriptions/state", &json!({"netflix_customer_identifier": "PAI-1", "netflix_sate": "NOT_EFFECTIVE"})).await;
        r.assert_all_ok();
        let shown = srv.get(&format!("{V2}/netflix/subscriptions/show?token={token}&netflix_customer_identifier=PAI-1")).await;
        assert_eq!(shown.body["data"][0]["netflix_sate"], "NOT_EFFECTIVE");
        let e = events(&srv, &key).await;
        assert_eq!(types(&e), ["subscription.created", "subscription.suspended", "subscription.unsuspended"]);
        let s = &e[0]["subscription"];
        assert_eq!(s["life_cycle_state"], "EFFECTIVE");
        assert_eq!(s["netflix_sate"], "NOT_EFFECTIVE");
        assert_eq!(s["netflix_customer_identifier"], Value::Null);
        assert_eq!(s["customer"]["customer_first_name"], "Ada");
        assert_eq!(s["customer"]["customer_email"], json!({"home": "ada@example.com"}));
        assert_eq!(s["channel"], "WEB");
        // Each event shows the subscription as it was right after its change.
        assert_eq!(e[1]["subscription"]["life_cycle_state"], "NOT_EFFECTIVE");
        assert_eq!(e[1]["subscription"]["netflix_customer_identifier"], "PAI-1");
        assert_eq!(e[1]["subscription"]["netflix_sate"], "EFFECTIVE");
        assert!(e[1]["subscription"].get("customer").is_none());
        assert_eq!(e[2]["subscription"]["life_cycle_state"], "EFFECTIVE");
        // State of an unknown PAI; a PAI already linked elsewhere.
        let before = footprint(&srv).await;
        let r = cpost(&srv, &key, "/subscriptions/state", &json!({"netflix_customer_identifier": "PAI-9", "netflix_sate": "EFFECTIVE"})).await;
        r.assert_error(404, "SUBSCRIPTION_NOT_FOUND");
        let r = cpost(&srv, &key, "/subscriptions/state", &json!({"netflix_customer_identifier": "PAI-1", "netflix_sate": "HELD"})).await;
        r.assert_error(400, "INVALID_PARAMETER");
        let other = create_subscription(&srv, &token, "c2").await;
        let before_link = footprint(&srv).await;
        assert_eq!(before_link[2], before[2] + 1);
        let r = activate(&srv, &key, other["netflix_token"].as_str().unwrap(), "PAI-1").await;
        r.assert_error(409, "CONFLICT");
        assert_eq!(footprint(&srv).await, before_link);
        // Once c1's subscription is cancelled, its PAI may be linked again.
        let n = numbers(&intake(&srv, &key, json!([charge("N1", "c1", json!(1))])).await);
        srv.batch("decline", &token, json!([item(&n["N1"], "c1")])).await.assert_all_ok();
        activate(&srv, &key, other["netflix_token"].as_str().unwrap(), "PAI-1").await.assert_all_ok();
        let e = events(&srv, &key).await;
        assert_eq!(&types(&e)[3..], ["subscription.created", "charge.declined", "subscription.cancelled"]);
        assert_eq!(e[5]["subscription"]["cancelled_on"], e[5]["occurred_on"]);
    }

    async fn promotions_are_created_or_updated_by_code(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        let r = cpost(&srv, &key, "/promotions", &json!({"promotions_set": [
            {"code": "P1", "name": "One", "effective_from": "2026-01-01T00:00:00"},
            {"code": "P2", "name": "Two", "description": "d", "effective_from": "2026-01-01T00:00:00",
             "expires_on": "2099-01-01T00:00:00"},
        ]})).await;
        r.assert_all_ok();
        let r = cpost(&srv, &key, "/promotions", &json!({"promotions_set": [
            {"code": "P1", "name": "One, renamed", "effective_from": "2026-01-01T00:00:00"},
            {"code": "P1", "name": "again", "effective_from": "2026-01-01T00:00:00"},
            {"code": "P3", "effective_from": "2026-01-01T00:00:00"},
            {"code": "P4", "name": "n", "effective_from": "2026-01-02T00:00:00", "expires_on": "2026-01-01T00:00:00"},
            {"name": "no code", "effective_from": "2026-01-01T00:00:00"},
        ]})).await;
        assert_eq!(failed(&r, "failed_promotions_set", "code"), [
            ("P1".to_owned(), "DUPLICATE_IN_REQUEST".to_owned()),
            ("P3".to_owned(), "INVALID_PARAMETER".to_owned()),
            ("P4".to_owned(), "INVALID_PARAMETER".to_owned()),
            ("<null>".to_owned(), "INVALID_PARAMETER".to_owned()),
        ]);
        let list = srv.get(&format!("{V2}/netflix/promotions/list?token={token}")).await;
        let names: Vec<&str> = list.body["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["One, renamed", "Two"]);
        // The rival's list is its own.
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        let theirs = srv.get(&format!("{V2}/netflix/promotions/list?token={rival}")).await;
        assert_eq!(theirs.body["data"], json!([]));
    }

    async fn eight_deciding_clients_and_a_consumer_deliver_every_decision_exactly_once(backend) {
        const PER_CLIENT: usize = 40;
        let srv = Arc::new(TestServer::start(backend).await);
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        let charges: Vec<Value> = (0..8 * PER_CLIENT)
            .map(|i| charge(&format!("N{i}"), &format!("c{}", i % 8), json!(1)))
            .collect();
        let n = numbers(&intake(&srv, &key, json!(charges)).await);
        let mut expected: HashMap<String, &str> = HashMap::new();
        let mut clients = Vec::new();
        for client in 0..8 {
            let mut mine = Vec::new();
            for i in (client * PER_CLIENT)..((client + 1) * PER_CLIENT) {
                let number = n[&format!("N{i}")].clone();
                let method = if i % 3 == 0 { "decline" } else { "accept" };
                expected.insert(number.clone(), method);
                mine.push((number, format!("c{}", i % 8), method));
            }
            let srv = srv.clone();
            let token = token.clone();
            clients.push(tokio::spawn(async move {
                for chunk in mine.chunks(5) {
                    for method in ["accept", "decline"] {
                        let items: Vec<Value> = chunk.iter().filter(|c| c.2 == method)
                            .map(|(n, c, _)| item(n, c)).collect();
                        if !items.is_empty() {
                            srv.batch(method, &token, json!(items)).await.assert_all_ok();
                        }
                    }
                }
            }));
        }
        let consumer = {
            let srv = srv.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mut seen: Vec<Value> = Vec::new();
                let mut idle = 0;
                while idle < 20 {
                    let page = events(&srv, &key).await;
                    if page.is_empty() {
                        idle += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                    idle = 0;
                    ack(&srv, &key, &page).await.assert_all_ok();
                    seen.extend(page);
                }
                seen
            })
        };
        for c in clients {
            c.await.unwrap();
        }
        let seen = consumer.await.unwrap();
        assert!(events(&srv, &key).await.is_empty());
        let mut delivered: HashMap<String, &str> = HashMap::new();
        let mut ids = HashSet::new();
        let mut last_id = 0u64;
        for e in &seen {
            assert!(ids.insert(e["id"].as_str().unwrap().to_owned()), "delivered twice: {e}");
            let id: u64 = e["id"].as_str().unwrap().parse().unwrap();
            // One consumer, acknowledging what it read: later pages hold later events.
            if backend == Backend::Sqlite {
                assert!(id > last_id);
            }
            last_id = last_id.max(id);
            if let Some(number) = e["charge"]["number"].as_str() {
                let method = match e["type"].as_str().unwrap() {
                    "charge.approved" => "accept",
                    _ => "decline",
                };
                assert!(delivered.insert(number.to_owned(), method).is_none());
            }
        }
        assert_eq!(delivered, expected);
    }

    async fn the_events_of_one_subscription_arrive_in_the_order_of_its_changes(backend) {
        let srv = Arc::new(TestServer::start(backend).await);
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        for c in 0..6 {
            create_subscription(&srv, &token, &format!("s{c}")).await;
        }
        // Four clients flip the same six subscriptions back and forth, racing, while a
        // connector reads and acknowledges.
        let mut flippers = Vec::new();
        for client in 0..4 {
            let (srv, token) = (srv.clone(), token.clone());
            flippers.push(tokio::spawn(async move {
                for round in 0..30 {
                    let customer = format!("s{}", (client + round) % 6);
                    let verb = if (client + round) % 2 == 0 { "suspend" } else { "unsuspend" };
                    let r = srv
                        .post(&format!("{V2}/netflix/subscriptions/{verb}"),
                              &json!({"token": token, "billing_system_customer_identifier": customer}))
                        .await;
                    assert_eq!(r.code(), "OK", "{}", r.text);
                }
            }));
        }
        let consumer = {
            let (srv, key) = (srv.clone(), key.clone());
            tokio::spawn(async move {
                let mut seen: Vec<Value> = Vec::new();
                let mut idle = 0;
                while idle < 20 {
                    let page = events(&srv, &key).await;
                    if page.is_empty() {
                        idle += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                    idle = 0;
                    ack(&srv, &key, &page).await.assert_all_ok();
                    seen.extend(page);
                }
                seen
            })
        };
        for f in flippers {
            f.await.unwrap();
        }
        let seen = consumer.await.unwrap();
        let mut by_subscription: HashMap<String, Vec<(&str, &str)>> = HashMap::new();
        for e in &seen {
            let s = &e["subscription"];
            by_subscription
                .entry(s["billing_system_customer_identifier"].as_str().unwrap().to_owned())
                .or_default()
                .push((e["type"].as_str().unwrap(), s["life_cycle_state"].as_str().unwrap()));
        }
        assert_eq!(by_subscription.len(), 6);
        for (customer, history) in by_subscription {
            // Created first; then each change flips the state the previous one left.
            assert_eq!(history[0], ("subscription.created", "EFFECTIVE"), "{customer}");
            for pair in history.windows(2) {
                let expected = match pair[0].1 {
                    "EFFECTIVE" => ("subscription.suspended", "NOT_EFFECTIVE"),
                    _ => ("subscription.unsuspended", "EFFECTIVE"),
                };
                assert_eq!(pair[1], expected, "{customer}: {history:?}");
            }
            let shown = srv
                .get(&format!("{V2}/netflix/subscriptions/show?token={token}&billing_system_customer_identifier={customer}"))
                .await;
            assert_eq!(shown.body["data"][0]["life_cycle_state"], history.last().unwrap().1);
        }
    }

    async fn an_expired_netflix_token_links_nothing(backend) {
        let srv = TestServer::start(backend).await;
        let key = connector_key(&srv, OPERATOR).await;
        let token = srv.login().await;
        let created = create_subscription(&srv, &token, "c1").await;
        let before = footprint(&srv).await;
        srv.clock.advance(3601);
        let r = activate(&srv, &key, created["netflix_token"].as_str().unwrap(), "PAI-1").await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "netflix_token");
        for body in [json!({"netflix_customer_identifier": "PAI-1"}),
                     json!({"netflix_token": "not-a-token", "netflix_customer_identifier": "PAI-1"}),
                     json!({"netflix_token": created["netflix_token"]})] {
            cpost(&srv, &key, "/subscriptions/activate", &body).await.assert_error(400, "INVALID_PARAMETER");
        }
        assert_eq!(footprint(&srv).await, before);
        let shown = srv.get(&format!("{V2}/netflix/subscriptions/show?token={}&billing_system_customer_identifier=c1", srv.login().await)).await;
        assert_eq!(shown.body["data"][0]["netflix_customer_identifier"], Value::Null);
    }
}
