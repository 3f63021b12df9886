//! `GET /chargegate/v1/charges/show`: a charge with its whole history, who did what in
//! which request; and the reconciliation feed's window, filters and parameters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use chargegate_core::clock::Clock;
use common::*;
use serde_json::{Value, json};

const V1: &str = "/chargegate/v1";

async fn show(srv: &TestServer, token: &str, number: &str) -> Reply {
    srv.get(&format!("{V1}/charges/show?token={token}&number={number}"))
        .await
}

async fn decide_with_id(
    srv: &TestServer,
    method: &str,
    token: &str,
    request_id: &str,
    items: Value,
) -> Reply {
    let set = match method {
        "accept" => "accepted_charges_set",
        "decline" => "declined_charges_set",
        _ => "acknowledged_charges_set",
    };
    srv.send(
        srv.client()
            .post(srv.url(&format!("{V2}/netflix/charges/{method}")))
            .header("X-Request-Id", request_id)
            .body(json!({"token": token, set: items}).to_string()),
    )
    .await
}

/// `(event, from_status, to_status, actor, request_id, reference_number)` of each event.
fn events(r: &Reply) -> Vec<(String, Value, String, String, Value, Value)> {
    r.body["data"]["history_set"]
        .as_array()
        .unwrap_or_else(|| panic!("no history_set: {}", r.text))
        .iter()
        .map(|h| {
            (
                h["event"].as_str().unwrap().to_owned(),
                h["from_status"].clone(),
                h["to_status"].as_str().unwrap().to_owned(),
                h["actor"].as_str().unwrap().to_owned(),
                h["request_id"].clone(),
                h["reference_number"].clone(),
            )
        })
        .collect()
}

fn feed_url(token: &str, from: &str, to: &str, extra: &str) -> String {
    format!("{V1}/charges/decisions?token={token}&from={from}&to={to}{extra}")
}

/// Every entry of a complete window, paging until `next` is `null`. On PostgreSQL a page
/// may come back short while a transaction anywhere in the cluster (another test's) is
/// older than the newest entries: those are held back, then served.
async fn whole_window(
    srv: &TestServer,
    token: &str,
    from: &str,
    to: &str,
    limit: u32,
) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = String::new();
    for _ in 0..400 {
        let r = srv
            .get(&feed_url(
                token,
                from,
                to,
                &format!("&limit={limit}{after}"),
            ))
            .await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        let page = r.body["data"]["decisions_set"].as_array().unwrap();
        assert!(page.len() <= limit as usize);
        all.extend(page.iter().cloned());
        match r.body["data"]["next"].as_str() {
            None => return all,
            Some(next) => after = format!("&after={next}"),
        }
        if page.len() < limit as usize {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
    panic!("the window never completed; so far {all:?}");
}

on_every_backend! {
    async fn an_audit_read_hears_of_its_query_before_its_token(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let r = srv.get(&format!("{V1}/charges/show?number=I1&number=I2")).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "number");
        srv.get(&format!("{V1}/charges/show")).await.assert_error(401, "INVALID_TOKEN");
        let r = srv.get(&format!("{V1}/charges/show?token={token}")).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "number");
        let r = srv.get(&format!("{V1}/charges/decisions?from=x&from=y")).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "from");
        srv.get(&format!("{V1}/charges/decisions?from=x")).await.assert_error(401, "INVALID_TOKEN");
    }

    async fn a_charge_shows_its_whole_history_with_actors_requests_and_references(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let token = srv.login().await;
        decide_with_id(&srv, "acknowledge", &token, "req-ack-1", json!([item_ref("I1", "c1", "K-1")]))
            .await
            .assert_all_ok();
        decide_with_id(&srv, "decline", &token, "req-decline", json!([item_ref("I1", "c1", "D-1")]))
            .await
            .assert_all_ok();
        decide_with_id(&srv, "acknowledge", &token, "req-ack-2", json!([item("I1", "c1")]))
            .await
            .assert_all_ok();

        let r = show(&srv, &token, "I1").await;
        assert_eq!((r.status, r.code()), (200, "OK"), "{}", r.text);
        let charge = &r.body["data"]["charge"];
        assert_eq!(charge["number"], "I1");
        assert_eq!(charge["billing_system_customer_identifier"], "c1");
        assert_eq!(charge["charge_status"], "DECLINED");
        assert_eq!(charge["amount"], json!(9.99));
        assert_eq!(charge["reference_number"], "D-1");
        assert_eq!(charge["acknowledged_status"], "DECLINED");
        assert!(charge["set_as_declined_on"].is_string());
        for absent in ["netflix_customer_identifier", "subscription_number", "set_as_approved_on"] {
            assert_eq!(charge[absent], Value::Null, "{absent}: {}", r.text);
        }
        let user = format!("user:{USER}");
        assert_eq!(
            events(&r),
            vec![
                ("received".into(), Value::Null, "PENDING".into(), "import".into(), Value::Null, Value::Null),
                ("acknowledged".into(), json!("PENDING"), "PENDING".into(), user.clone(), json!("req-ack-1"), json!("K-1")),
                ("declined".into(), json!("PENDING"), "DECLINED".into(), user.clone(), json!("req-decline"), json!("D-1")),
                ("acknowledged".into(), json!("DECLINED"), "DECLINED".into(), user, json!("req-ack-2"), Value::Null),
            ]
        );
        for h in r.body["data"]["history_set"].as_array().unwrap() {
            assert!(h["at"].is_string() && h.get("reason") == Some(&Value::Null), "{h}");
        }
    }

    async fn each_user_is_named_as_the_actor_of_their_own_decisions(backend) {
        let srv = TestServer::start(backend).await;
        let op = srv.operator_id(OPERATOR).await;
        srv.store
            .create_user(&chargegate_core::store::NewUser {
                operator_id: op,
                username: chargegate_core::text::Username::parse("second").unwrap(),
                password_hash: chargegate::auth::passwords::hash("second-pw").unwrap(),
            })
            .await
            .unwrap();
        srv.add_charges(OPERATOR, &[("I1", "c1"), ("I2", "c2")]).await;
        let first = srv.login().await;
        let second = srv.login_as(OPERATOR, "second", "second-pw").await;
        srv.batch("accept", &first, json!([item("I1", "c1")])).await.assert_all_ok();
        srv.batch("decline", &second, json!([item("I2", "c2")])).await.assert_all_ok();
        let actor = |r: &Reply| r.body["data"]["history_set"][1]["actor"].as_str().unwrap().to_owned();
        assert_eq!(actor(&show(&srv, &first, "I1").await), format!("user:{USER}"));
        // Any user of the operator may read any of its charges.
        assert_eq!(actor(&show(&srv, &first, "I2").await), "user:second");
    }

    async fn another_operators_charge_answers_exactly_like_a_missing_one(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(RIVAL, &[("X1", "c1")]).await;
        let token = srv.login().await;
        let theirs = show(&srv, &token, "X1").await;
        let missing = show(&srv, &token, "X2").await;
        theirs.assert_error(404, "NOT_FOUND");
        missing.assert_error(404, "NOT_FOUND");
        let strip = |r: &Reply| {
            let mut b = r.body.clone();
            b["status"]["message"] = json!(b["status"]["message"].as_str().unwrap().replace("X1", "X2"));
            b
        };
        assert_eq!(strip(&theirs), missing.body);
        // The rival sees its own.
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        assert_eq!(show(&srv, &rival, "X1").await.code(), "OK");
    }

    async fn show_refuses_a_missing_number_a_bad_token_and_repeated_parameters(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let token = srv.login().await;
        srv.get(&format!("{V1}/charges/show?token={token}")).await.assert_error(400, "INVALID_PARAMETER");
        srv.get(&format!("{V1}/charges/show?number=I1")).await.assert_error(401, "INVALID_TOKEN");
        srv.get(&format!("{V1}/charges/show?token=nope&number=I1")).await.assert_error(401, "INVALID_TOKEN");
        let r = srv.get(&format!("{V1}/charges/show?token={token}&number=I1&number=I1")).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "number");
        // A number no charge can have is refused, naming it.
        let long = "I".repeat(65);
        let r = show(&srv, &token, &long).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "number");
        show(&srv, &token, "").await.assert_error(400, "INVALID_PARAMETER");
        // The Bearer header works here too.
        let r = srv
            .send(srv.client().get(srv.url(&format!("{V1}/charges/show?number=I1"))).bearer_auth(&token))
            .await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        // POST is not the verb.
        srv.post(&format!("{V1}/charges/show"), &json!({"token": token, "number": "I1"}))
            .await
            .assert_error(405, "METHOD_NOT_ALLOWED");
    }

    async fn the_feed_lists_status_changes_in_the_window_and_nothing_else(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1"), ("I2", "c2"), ("I3", "c3"), ("I4", "c4")]).await;
        srv.add_charges(RIVAL, &[("X1", "c1")]).await;
        let token = srv.login().await;
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        // A month ago: decisions whose time is in a window long complete.
        srv.clock.advance(-30 * 86_400);
        let then = srv.clock.now();
        decide_with_id(&srv, "accept", &token, "req-a", json!([item_ref("I1", "c1", "A-1")])).await.assert_all_ok();
        decide_with_id(&srv, "decline", &token, "req-d", json!([item("I2", "c2")])).await.assert_all_ok();
        srv.batch("acknowledge", &token, json!([item("I1", "c1"), item("I3", "c3")])).await.assert_all_ok();
        srv.batch("decline", &rival, json!([item("X1", "c1")])).await.assert_all_ok();
        // Two days later: outside the window.
        srv.clock.advance(2 * 86_400);
        srv.batch("accept", &token, json!([item("I4", "c4")])).await.assert_all_ok();
        srv.clock.advance(28 * 86_400);

        let from = then.plus_seconds(-3600).to_string();
        let to = then.plus_seconds(86_400).to_string();
        let set = whole_window(&srv, &token, &from, &to, 100).await;
        assert_eq!(set.len(), 2, "{set:?}");
        let user = format!("user:{USER}");
        assert_eq!(
            set[0],
            json!({"number": "I1", "billing_system_customer_identifier": "c1", "event": "approved",
                   "from_status": "PENDING", "to_status": "APPROVED", "at": set[0]["at"],
                   "actor": user, "request_id": "req-a", "reference_number": "A-1",
                   "amount": 9.99, "currency": "EUR"})
        );
        assert_eq!((set[1]["number"].as_str(), set[1]["event"].as_str()), (Some("I2"), Some("declined")));
        assert_eq!(set[1]["reference_number"], Value::Null);
        // `from` is included, `to` excluded.
        let at = set[0]["at"].as_str().unwrap().to_owned();
        assert_eq!(whole_window(&srv, &token, &at, &at, 100).await, Vec::<Value>::new());
        let later = chargegate_core::clock::Timestamp::parse(&at).unwrap().plus_seconds(1).to_string();
        let set = whole_window(&srv, &token, &at, &later, 100).await;
        assert!(set.iter().any(|e| e["number"] == "I1"), "{set:?}");
    }

    async fn the_feed_pages_with_its_cursor_and_stays_open_while_the_window_may_still_change(backend) {
        let srv = TestServer::start(backend).await;
        let charges: Vec<(String, String)> = (0..7).map(|i| (format!("I{i}"), format!("c{i}"))).collect();
        let pairs: Vec<(&str, &str)> = charges.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        srv.add_charges(OPERATOR, &pairs).await;
        let token = srv.login().await;
        let items: Vec<Value> = pairs.iter().map(|(n, c)| item(n, c)).collect();
        srv.batch("decline", &token, Value::Array(items)).await.assert_all_ok();
        let now = srv.clock.now();
        let (from, to) = (now.plus_seconds(-60).to_string(), now.plus_seconds(60).to_string());

        let mut seen = Vec::new();
        let mut after = String::new();
        for _ in 0..400 {
            let r = srv.get(&feed_url(&token, &from, &to, &format!("&limit=3{after}"))).await;
            assert_eq!(r.code(), "OK", "{}", r.text);
            let page = r.body["data"]["decisions_set"].as_array().unwrap();
            assert!(page.len() <= 3, "{}", r.text);
            for e in page {
                seen.push(e["number"].as_str().unwrap().to_owned());
            }
            // `to` is not past yet: the window stays open, even on its last page.
            let next = r.body["data"]["next"].as_str().expect("next while the window is open");
            after = format!("&after={next}");
            if seen.len() >= 7 {
                break;
            }
            if page.len() < 3 {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
        seen.sort();
        let mut expected: Vec<String> = charges.iter().map(|(n, _)| n.clone()).collect();
        expected.sort();
        assert_eq!(seen, expected);
        // Past the window's end (and its settling time), the same cursor closes it.
        srv.clock.advance(3600);
        let after = after.trim_start_matches("&after=").to_owned();
        let rest = whole_window(&srv, &token, &from, &to, 3).await;
        assert_eq!(rest.len(), 7, "from the start, the window holds all seven");
        let r = srv.get(&feed_url(&token, &from, &to, &format!("&limit=3&after={after}"))).await;
        assert_eq!(r.body["data"]["decisions_set"], json!([]), "nothing after the last entry");
    }

    async fn the_feed_refuses_bad_parameters_naming_them(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let (from, to) = ("2026-11-01T00:00:00", "2026-11-02T00:00:00");
        for (query, named) in [
            (format!("to={to}"), "from"),
            (format!("from={from}"), "to"),
            (format!("from=2026-11-01&to={to}"), "from"),
            (format!("from={from}&to=2026-02-30T00:00:00"), "to"),
            (format!("from={from}&to={to}&limit=0"), "limit"),
            (format!("from={from}&to={to}&limit=1001"), "limit"),
            (format!("from={from}&to={to}&limit=05"), "limit"),
            (format!("from={from}&to={to}&after=zzz"), "after"),
            (format!("from={from}&to={to}&after=1-2-3"), "after"),
            (format!("from={from}&from={from}&to={to}"), "from"),
        ] {
            let r = srv.get(&format!("{V1}/charges/decisions?token={token}&{query}")).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], named, "{query}: {}", r.text);
        }
        srv.get(&format!("{V1}/charges/decisions?from={from}&to={to}")).await.assert_error(401, "INVALID_TOKEN");
        // A window that ends before it starts is empty, not an error.
        let r = srv.get(&feed_url(&token, to, from, "&limit=1000")).await;
        assert_eq!((r.code(), &r.body["data"]["decisions_set"]), ("OK", &json!([])), "{}", r.text);
    }
}
