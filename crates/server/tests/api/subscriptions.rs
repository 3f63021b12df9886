//! Netflix subscriptions and promotions over HTTP: create (new, renew, exists, promotions,
//! every field check), show, suspend and unsuspend, a decline ending the subscription,
//! the promotions list, isolation between operators, and racing creates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::sync::Arc;

use chargegate_core::clock::{Clock, Date, Timestamp};
use chargegate_core::money::{Currency, Money};
use chargegate_core::store::{ImportOutcome, NewCharge};
use chargegate_core::subscription::{NewPromotion, Promotion, PromotionCode};
use chargegate_core::text::{ChargeNumber, CustomerId};
use chargegate_core::token::Token;
use common::*;

const V1: &str = "/chargegate/v1";
use serde_json::{Value, json};

async fn create(srv: &TestServer, token: &str, fields: Value) -> Reply {
    let mut body = fields;
    body["token"] = json!(token);
    srv.post(&format!("{V2}/netflix/subscriptions/create"), &body)
        .await
}

async fn create_for(srv: &TestServer, token: &str, customer: &str) -> Reply {
    create(
        srv,
        token,
        json!({"billing_system_customer_identifier": customer}),
    )
    .await
}

async fn show(srv: &TestServer, token: &str, query: &str) -> Reply {
    srv.get(&format!(
        "{V2}/netflix/subscriptions/show?token={token}&{query}"
    ))
    .await
}

async fn set_state(srv: &TestServer, token: &str, verb: &str, customer: &str) -> Reply {
    srv.post(
        &format!("{V2}/netflix/subscriptions/{verb}"),
        &json!({"token": token, "billing_system_customer_identifier": customer}),
    )
    .await
}

/// Links the customer's live subscription to a Netflix PAI, as the Netflix side will.
async fn link(srv: &TestServer, customer: &str, pai: &str) {
    let n = srv
        .db
        .execute(&format!(
            "UPDATE subscriptions SET netflix_customer_id = '{pai}', netflix_state = 'EFFECTIVE' \
             WHERE customer_id = '{customer}' AND life_cycle_state <> 'CANCELLED'"
        ))
        .await;
    assert_eq!(n, 1);
}

async fn add_promotion(
    srv: &TestServer,
    operator: &str,
    code: &str,
    from_offset: i64,
    expires_offset: Option<i64>,
) {
    let now = srv.clock.now();
    srv.store
        .create_promotion(&NewPromotion {
            operator_id: srv.operator_id(operator).await,
            promotion: Promotion {
                code: PromotionCode::parse(code).unwrap(),
                name: format!("{code} name"),
                description: code.len().is_multiple_of(2).then(|| format!("{code} text")),
                effective_from: now.plus_seconds(from_offset),
                expires_on: expires_offset.map(|o| now.plus_seconds(o)),
            },
            created_at: now,
        })
        .await
        .unwrap();
}

/// Imports one PENDING charge of `amount` EUR for `customer`, received `days_ago`.
async fn add_priced(srv: &TestServer, number: &str, customer: &str, amount: &str, days_ago: i64) {
    let eur = Currency::parse("EUR").unwrap();
    let row = NewCharge {
        operator_id: srv.operator_id(OPERATOR).await,
        number: Some(ChargeNumber::parse(number).unwrap()),
        customer: CustomerId::parse(customer).unwrap(),
        netflix_customer: None,
        amount: Money::parse(amount, eur).unwrap(),
        local_amount: Money::parse(amount, eur).unwrap(),
        paid_through_date: Date::parse("2026-12-31").unwrap(),
        received_on: Some(srv.clock.now().plus_seconds(-days_ago * 86_400)),
        status: None,
    };
    match srv
        .store
        .import_charges(vec![row], Timestamp::now(), Arc::new(|_| {}))
        .await
        .unwrap()
    {
        ImportOutcome::Imported(_) => {}
        ImportOutcome::Refused(c) => panic!("{c:?}"),
    }
}

async fn count(srv: &TestServer, table: &str) -> i64 {
    srv.db
        .scalar(&format!("SELECT count(*) FROM {table}"))
        .await
}

/// Everything a refused call must leave as it was.
async fn snapshot(srv: &TestServer) -> Vec<i64> {
    let mut all = Vec::new();
    for table in [
        "subscriptions",
        "subscription_history",
        "subscription_promotions",
    ] {
        all.push(count(srv, table).await);
    }
    all.push(
        srv.db
            .scalar("SELECT count(*) FROM subscriptions WHERE life_cycle_state = 'EFFECTIVE'")
            .await,
    );
    all
}

on_every_backend! {
    async fn a_subscription_call_hears_of_its_body_then_its_token_then_its_fields(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        for method in ["create", "suspend", "unsuspend"] {
            let path = format!("{V2}/netflix/subscriptions/{method}");
            srv.post_raw(&path, "{oops").await.assert_error(400, "MALFORMED_REQUEST");
            // No customer and no token: the token's error; with the token, the customer's.
            srv.post(&path, &json!({})).await.assert_error(401, "INVALID_TOKEN");
            let r = srv.post(&path, &json!({"token": token})).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], "billing_system_customer_identifier");
        }
        // A query is read before its token: a repeated parameter and no token is the
        // parameter's error; a missing customer and no token is the token's.
        for path in ["/netflix/subscriptions/show", "/netflix/promotions/list"] {
            let r = srv.get(&format!("{V2}{path}?fields_set=a&fields_set=b")).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], "fields_set");
        }
        let show = format!("{V2}/netflix/subscriptions/show");
        srv.get(&show).await.assert_error(401, "INVALID_TOKEN");
        srv.get(&format!("{show}?token={token}")).await.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(srv.db.scalar("SELECT count(*) FROM subscriptions").await, 0);
    }

    async fn a_new_customer_gets_an_effective_subscription_and_a_netflix_token(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let r = create_for(&srv, &token, "c1").await;
        assert_eq!((r.status, r.code()), (200, "OK"), "{}", r.text);
        let data = &r.body["data"];
        assert_eq!(data["subscription_number"], "S00000001");
        let netflix_token = data["netflix_token"].as_str().unwrap();
        assert_eq!(netflix_token.len(), 64);
        let expires = Timestamp::parse(data["netflix_token_expires_on"].as_str().unwrap()).unwrap();
        let lifetime = expires.unix() - srv.clock.now().unix();
        assert!((3590..=3600).contains(&lifetime), "{lifetime}");
        // Only a hash is kept.
        let hex = srv.db.scalar(&format!(
            "SELECT count(*) FROM subscriptions WHERE netflix_token_hash = '{netflix_token}'"
        )).await;
        assert_eq!(hex, 0);
        let s = show(&srv, &token, "billing_system_customer_identifier=c1").await;
        assert_eq!(s.code(), "OK", "{}", s.text);
        let subs = s.body["data"].as_array().unwrap();
        assert_eq!(subs.len(), 1);
        let sub = &subs[0];
        assert_eq!(sub["life_cycle_state"], "EFFECTIVE");
        assert_eq!(sub["netflix_sate"], "NOT_EFFECTIVE");
        assert_eq!(sub["netflix_customer_identifier"], Value::Null);
        assert_eq!(sub["cancelled_on"], Value::Null);
        assert_eq!(sub["promotions_set"], json!([]));
        assert_eq!(sub["prices_set"], json!([]));
        let keys: Vec<&str> = sub.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 9);
        assert_eq!(count(&srv, "subscription_history").await, 1);
    }

    async fn the_validity_duration_sets_the_netflix_tokens_lifetime(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let r = create(&srv, &token, json!({"billing_system_customer_identifier": "c1", "validity_duration": 60})).await;
        let expires = Timestamp::parse(r.body["data"]["netflix_token_expires_on"].as_str().unwrap()).unwrap();
        let lifetime = expires.unix() - srv.clock.now().unix();
        assert!((50..=60).contains(&lifetime), "{lifetime}");
    }

    async fn a_create_before_netflix_links_renews_the_same_subscription_with_a_fresh_token(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let first = create_for(&srv, &token, "c1").await;
        let second = create_for(&srv, &token, "c1").await;
        assert_eq!(second.code(), "OK", "{}", second.text);
        assert_eq!(first.body["data"]["subscription_number"], second.body["data"]["subscription_number"]);
        assert_ne!(first.body["data"]["netflix_token"], second.body["data"]["netflix_token"]);
        assert_eq!(count(&srv, "subscriptions").await, 1);
        assert_eq!(
            srv.db.scalar("SELECT count(*) FROM subscription_history WHERE event = 'token_renewed'").await,
            1
        );
        // Only the fresh token's hash is kept: the old token stops working.
        for (reply, kept) in [(&first, 0), (&second, 1)] {
            let token = Token::parse(reply.body["data"]["netflix_token"].as_str().unwrap()).unwrap();
            let hex = chargegate_core::token::hex(&token.hash().0);
            let literal = match srv.db.backend {
                Backend::Sqlite => format!("X'{hex}'"),
                Backend::Postgres => format!("'\\x{hex}'::bytea"),
            };
            let found = srv.db.scalar(&format!(
                "SELECT count(*) FROM subscriptions WHERE netflix_token_hash = {literal}"
            )).await;
            assert_eq!(found, kept);
        }
    }

    async fn a_create_after_netflix_linked_the_customer_is_subscription_exists(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        create_for(&srv, &token, "c1").await;
        link(&srv, "c1", "PAI-1").await;
        let before = snapshot(&srv).await;
        let r = create_for(&srv, &token, "c1").await;
        r.assert_error(409, "SUBSCRIPTION_EXISTS");
        assert_eq!(snapshot(&srv).await, before);
    }

    async fn an_effective_promotion_is_redeemed_and_shown(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        add_promotion(&srv, OPERATOR, "WELCOME", -60, Some(3600)).await;
        let r = create(&srv, &token, json!({"billing_system_customer_identifier": "c1", "promotion_code": "WELCOME"})).await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        let s = show(&srv, &token, "billing_system_customer_identifier=c1").await;
        let promotions = s.body["data"][0]["promotions_set"].as_array().unwrap();
        assert_eq!(promotions.len(), 1);
        assert_eq!(promotions[0]["code"], "WELCOME");
        assert_eq!(promotions[0]["name"], "WELCOME name");
        assert_eq!(promotions[0]["description"], Value::Null);
        assert!(promotions[0]["expires_on"].is_string());
        // A renewal with the same promotion does not redeem it twice.
        create(&srv, &token, json!({"billing_system_customer_identifier": "c1", "promotion_code": "WELCOME"})).await;
        assert_eq!(count(&srv, "subscription_promotions").await, 1);
    }

    async fn unknown_future_expired_or_foreign_promotions_are_refused_and_change_nothing(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        add_promotion(&srv, OPERATOR, "SOON", 3600, None).await;
        add_promotion(&srv, OPERATOR, "OVER", -7200, Some(-3600)).await;
        add_promotion(&srv, RIVAL, "THEIRS", -60, None).await;
        for code in ["NOPE", "SOON", "OVER", "THEIRS"] {
            let before = snapshot(&srv).await;
            let r = create(&srv, &token, json!({"billing_system_customer_identifier": "c1", "promotion_code": code})).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], "promotion_code", "{code}");
            assert_eq!(snapshot(&srv).await, before, "{code}");
        }
    }

    async fn every_bad_field_of_create_is_named_and_changes_nothing(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let long = "x".repeat(129);
        let huge = json!({"street": "y".repeat(5000)});
        let cases = [
            (json!({}), "billing_system_customer_identifier"),
            (json!({"billing_system_customer_identifier": ""}), "billing_system_customer_identifier"),
            (json!({"billing_system_customer_identifier": long}), "billing_system_customer_identifier"),
            (json!({"billing_system_customer_identifier": 155}), "billing_system_customer_identifier"),
            (json!({"billing_system_customer_identifier": "c1", "promotion_code": ""}), "promotion_code"),
            (json!({"billing_system_customer_identifier": "c1", "promotion_code": 5}), "promotion_code"),
            (json!({"billing_system_customer_identifier": "c1", "channel": "TV"}), "channel"),
            (json!({"billing_system_customer_identifier": "c1", "channel": "web"}), "channel"),
            (json!({"billing_system_customer_identifier": "c1", "channel": 1}), "channel"),
            (json!({"billing_system_customer_identifier": "c1", "validity_duration": 0}), "validity_duration"),
            (json!({"billing_system_customer_identifier": "c1", "validity_duration": 86401}), "validity_duration"),
            (json!({"billing_system_customer_identifier": "c1", "validity_duration": 60.0}), "validity_duration"),
            (json!({"billing_system_customer_identifier": "c1", "validity_duration": "60"}), "validity_duration"),
            (json!({"billing_system_customer_identifier": "c1", "validity_duration": -5}), "validity_duration"),
            (json!({"billing_system_customer_identifier": "c1", "customer_first_name": ""}), "customer_first_name"),
            (json!({"billing_system_customer_identifier": "c1", "customer_last_name": long}), "customer_last_name"),
            (json!({"billing_system_customer_identifier": "c1", "customer_last_name": ["a"]}), "customer_last_name"),
            (json!({"billing_system_customer_identifier": "c1", "customer_address": "Main St"}), "customer_address"),
            (json!({"billing_system_customer_identifier": "c1", "customer_address": huge}), "customer_address"),
            (json!({"billing_system_customer_identifier": "c1", "customer_email": ["a@b"]}), "customer_email"),
            (json!({"billing_system_customer_identifier": "c1", "customer_phone": 357}), "customer_phone"),
        ];
        for (body, field) in cases {
            let r = create(&srv, &token, body.clone()).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], field, "{body}");
            assert_eq!(snapshot(&srv).await, vec![0, 0, 0, 0], "{body}");
        }
        let ok = create(&srv, &token, json!({
            "billing_system_customer_identifier": "c1", "channel": "WEB", "validity_duration": 86400,
            "customer_first_name": "Ann", "customer_last_name": "Lee",
            "customer_address": {"city": "Nicosia"}, "customer_email": {"address": "ann@example.com"},
            "customer_phone": {"number": "+357"}
        })).await;
        assert_eq!(ok.code(), "OK", "{}", ok.text);
        assert_eq!(
            srv.db.scalar("SELECT count(*) FROM subscriptions WHERE customer_address = '{\"city\":\"Nicosia\"}' AND channel = 'WEB'").await,
            1
        );
    }

    async fn suspend_and_unsuspend_move_the_live_subscription_and_repeats_change_nothing(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        create_for(&srv, &token, "c1").await;
        let state = |r: Reply| r.body["data"][0]["life_cycle_state"].as_str().unwrap().to_owned();
        set_state(&srv, &token, "suspend", "c1").await.assert_all_ok();
        assert_eq!(state(show(&srv, &token, "billing_system_customer_identifier=c1").await), "NOT_EFFECTIVE");
        let before = snapshot(&srv).await;
        set_state(&srv, &token, "suspend", "c1").await.assert_all_ok();
        assert_eq!(snapshot(&srv).await, before);
        set_state(&srv, &token, "unsuspend", "c1").await.assert_all_ok();
        assert_eq!(state(show(&srv, &token, "billing_system_customer_identifier=c1").await), "EFFECTIVE");
        let before = snapshot(&srv).await;
        set_state(&srv, &token, "unsuspend", "c1").await.assert_all_ok();
        assert_eq!(snapshot(&srv).await, before);
        assert_eq!(
            srv.db.scalar("SELECT count(*) FROM subscription_history WHERE event IN ('suspended', 'unsuspended')").await,
            2
        );
    }

    async fn suspending_without_a_live_subscription_is_subscription_not_found(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        for verb in ["suspend", "unsuspend"] {
            set_state(&srv, &token, verb, "nobody").await.assert_error(404, "SUBSCRIPTION_NOT_FOUND");
        }
        let r = set_state(&srv, &token, "suspend", "").await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "billing_system_customer_identifier");
        // Only a cancelled one.
        srv.add_charges(OPERATOR, &[]).await;
        create_for(&srv, &token, "c1").await;
        add_priced(&srv, "I1", "c1", "9.99", 1).await;
        srv.batch("decline", &token, json!([item("I1", "c1")])).await.assert_all_ok();
        let before = snapshot(&srv).await;
        for verb in ["suspend", "unsuspend"] {
            set_state(&srv, &token, verb, "c1").await.assert_error(404, "SUBSCRIPTION_NOT_FOUND");
        }
        assert_eq!(snapshot(&srv).await, before);
    }

    async fn a_declined_charge_cancels_its_subscription_and_an_accepted_one_does_not(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        create_for(&srv, &token, "c1").await;
        create_for(&srv, &token, "c2").await;
        set_state(&srv, &token, "suspend", "c2").await.assert_all_ok();
        add_priced(&srv, "I1", "c1", "9.99", 1).await;
        add_priced(&srv, "I2", "c2", "9.99", 1).await;
        add_priced(&srv, "I3", "c3", "9.99", 1).await;
        srv.batch("accept", &token, json!([item("I1", "c1")])).await.assert_all_ok();
        let s = show(&srv, &token, "billing_system_customer_identifier=c1").await;
        assert_eq!(s.body["data"][0]["life_cycle_state"], "EFFECTIVE");
        // A decline of a suspended customer's charge, and of a customer without any.
        srv.batch("decline", &token, json!([item("I2", "c2"), item("I3", "c3")])).await.assert_all_ok();
        let s = show(&srv, &token, "billing_system_customer_identifier=c2").await;
        let sub = &s.body["data"][0];
        assert_eq!(sub["life_cycle_state"], "CANCELLED");
        assert!(sub["cancelled_on"].is_string());
        // charges/show names the subscription a charge belongs to; c3 has none.
        let number = sub["subscription_number"].clone();
        let shown = srv.get(&format!("{V1}/charges/show?token={token}&number=I2")).await;
        assert_eq!(shown.body["data"]["charge"]["subscription_number"], number, "{}", shown.text);
        let shown = srv.get(&format!("{V1}/charges/show?token={token}&number=I3")).await;
        assert_eq!(shown.body["data"]["charge"]["subscription_number"], Value::Null, "{}", shown.text);
        assert_eq!(
            srv.db.scalar("SELECT count(*) FROM subscription_history h JOIN charges c ON c.id = h.charge_id \
                           WHERE h.event = 'cancelled' AND h.from_state = 'NOT_EFFECTIVE' AND c.number = 'I2'").await,
            1
        );
        // A repeated decline changes nothing more.
        let before = snapshot(&srv).await;
        srv.batch("decline", &token, json!([item("I2", "c2")])).await.assert_all_ok();
        assert_eq!(snapshot(&srv).await, before);
        // The customer may sign up again: a new subscription, listed before the cancelled one.
        let again = create_for(&srv, &token, "c2").await;
        assert_eq!(again.body["data"]["subscription_number"], "S00000003");
        let s = show(&srv, &token, "billing_system_customer_identifier=c2").await;
        let states: Vec<&str> = s.body["data"].as_array().unwrap().iter()
            .map(|x| x["life_cycle_state"].as_str().unwrap()).collect();
        assert_eq!(states, ["EFFECTIVE", "CANCELLED"]);
    }

    async fn show_finds_a_customer_by_either_identifier_and_refuses_a_mismatch(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        create_for(&srv, &token, "c1").await;
        create_for(&srv, &token, "c2").await;
        link(&srv, "c1", "PAI-1").await;
        link(&srv, "c2", "PAI-2").await;
        for query in [
            "billing_system_customer_identifier=c1",
            "netflix_customer_identifier=PAI-1",
            "billing_system_customer_identifier=c1&netflix_customer_identifier=PAI-1",
        ] {
            let r = show(&srv, &token, query).await;
            assert_eq!(r.code(), "OK", "{query}: {}", r.text);
            assert_eq!(r.body["data"][0]["billing_system_customer_identifier"], "c1", "{query}");
            assert_eq!(r.body["data"][0]["netflix_customer_identifier"], "PAI-1", "{query}");
            assert_eq!(r.body["data"][0]["netflix_sate"], "EFFECTIVE", "{query}");
        }
        for query in [
            "billing_system_customer_identifier=c1&netflix_customer_identifier=PAI-2",
            "billing_system_customer_identifier=c1&netflix_customer_identifier=PAI-9",
        ] {
            let r = show(&srv, &token, query).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], "netflix_customer_identifier");
        }
        show(&srv, &token, "").await.assert_error(400, "INVALID_PARAMETER");
        show(&srv, &token, "billing_system_customer_identifier=").await.assert_error(400, "INVALID_PARAMETER");
        let r = show(&srv, &token, "billing_system_customer_identifier=c1&billing_system_customer_identifier=c2").await;
        r.assert_error(400, "INVALID_PARAMETER");
        for query in ["billing_system_customer_identifier=nobody", "netflix_customer_identifier=PAI-9"] {
            let r = show(&srv, &token, query).await;
            assert_eq!((r.status, r.code()), (200, "OK"));
            assert_eq!(r.body["data"], json!([]), "{query}");
        }
    }

    async fn fields_set_chooses_fields_in_the_contracts_order(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        create_for(&srv, &token, "c1").await;
        let r = show(&srv, &token, "billing_system_customer_identifier=c1&fields_set=netflix_sate,%20subscription_number").await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        assert_eq!(r.body["data"][0], json!({"subscription_number": "S00000001", "netflix_sate": "NOT_EFFECTIVE"}));
        let text = &r.text;
        assert!(text.find("subscription_number").unwrap() < text.find("netflix_sate").unwrap());
        let r = show(&srv, &token, "billing_system_customer_identifier=c1&fields_set=netflix_state").await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "fields_set");
    }

    async fn prices_are_the_distinct_prices_of_the_last_ten_months_newest_first(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        // Charges before the subscription existed belong to none.
        add_priced(&srv, "I0", "c1", "1.00", 2).await;
        create_for(&srv, &token, "c1").await;
        add_priced(&srv, "I1", "c1", "9.99", 40).await;
        add_priced(&srv, "I2", "c1", "12.5", 20).await;
        add_priced(&srv, "I3", "c1", "9.990", 5).await;
        add_priced(&srv, "I4", "c1", "7", 400).await;
        let r = show(&srv, &token, "billing_system_customer_identifier=c1&fields_set=prices_set").await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        assert_eq!(
            r.body["data"][0]["prices_set"],
            json!([
                {"FormattedPrice": "9.99 EUR", "amount": 9.99, "currency": "EUR"},
                {"FormattedPrice": "12.50 EUR", "amount": 12.5, "currency": "EUR"},
            ])
        );
        assert!(r.text.contains(r#""amount":12.5,"#), "{}", r.text);
    }

    async fn another_operators_subscriptions_are_invisible(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        create_for(&srv, &token, "c1").await;
        link(&srv, "c1", "PAI-1").await;
        let before = snapshot(&srv).await;
        let r = show(&srv, &rival, "billing_system_customer_identifier=c1").await;
        assert_eq!(r.body["data"], json!([]));
        let r = show(&srv, &rival, "netflix_customer_identifier=PAI-1").await;
        assert_eq!(r.body["data"], json!([]));
        set_state(&srv, &rival, "suspend", "c1").await.assert_error(404, "SUBSCRIPTION_NOT_FOUND");
        assert_eq!(snapshot(&srv).await, before);
        // The rival's own customer c1 is another customer.
        let r = create_for(&srv, &rival, "c1").await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        assert_eq!(count(&srv, "subscriptions").await, 2);
    }

    async fn two_creates_at_once_end_with_one_live_subscription(backend) {
        let srv = Arc::new(TestServer::start(backend).await);
        let token = srv.login().await;
        for round in 0..5 {
            let customer = format!("race{round}");
            let calls = (0..4).map(|_| {
                let (srv, token, customer) = (srv.clone(), token.clone(), customer.clone());
                tokio::spawn(async move { create_for(&srv, &token, &customer).await })
            });
            let mut numbers = Vec::new();
            for call in calls {
                let r = call.await.unwrap();
                assert_eq!(r.code(), "OK", "{}", r.text);
                numbers.push(r.body["data"]["subscription_number"].clone());
            }
            numbers.dedup();
            assert_eq!(numbers.len(), 1, "{numbers:?}");
            assert_eq!(
                srv.db.scalar(&format!("SELECT count(*) FROM subscriptions WHERE customer_id = '{customer}'")).await,
                1
            );
        }
    }

    async fn the_promotions_list_shows_the_operators_effective_promotions_in_order(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        add_promotion(&srv, OPERATOR, "B2", -60, None).await;
        add_promotion(&srv, OPERATOR, "A1", -60, Some(600)).await;
        add_promotion(&srv, OPERATOR, "OLD", -7200, None).await;
        add_promotion(&srv, OPERATOR, "SOON", 60, None).await;
        add_promotion(&srv, OPERATOR, "OVER", -7200, Some(-1)).await;
        add_promotion(&srv, RIVAL, "THEIRS", -60, None).await;
        let r = srv.get(&format!("{V2}/netflix/promotions/list?token={token}")).await;
        assert_eq!(r.code(), "OK", "{}", r.text);
        let codes: Vec<&str> = r.body["data"].as_array().unwrap().iter()
            .map(|p| p["code"].as_str().unwrap()).collect();
        assert_eq!(codes, ["OLD", "A1", "B2"]);
        let first = &r.body["data"][1];
        assert_eq!(first["description"], "A1 text");
        assert!(first["effective_from"].is_string() && first["expires_on"].is_string());
        assert_eq!(r.body["data"][0]["expires_on"], Value::Null);
        // The window moves with the clock.
        srv.clock.advance(600);
        let r = srv.get(&format!("{V2}/netflix/promotions/list?token={token}&fields_set=code")).await;
        assert_eq!(r.body["data"], json!([{"code": "OLD"}, {"code": "B2"}, {"code": "SOON"}]));
        let r = srv.get(&format!("{V2}/netflix/promotions/list?token={token}&fields_set=code,price")).await;
        r.assert_error(400, "INVALID_PARAMETER");
        assert_eq!(r.body["status"]["description"], "fields_set");
        srv.get(&format!("{V2}/netflix/promotions/list")).await.assert_error(401, "INVALID_TOKEN");
    }

    async fn subscription_methods_need_a_valid_token(backend) {
        let srv = TestServer::start(backend).await;
        let r = create_for(&srv, "nope", "c1").await;
        r.assert_error(401, "INVALID_TOKEN");
        set_state(&srv, "nope", "suspend", "c1").await.assert_error(401, "INVALID_TOKEN");
        srv.get(&format!("{V2}/netflix/subscriptions/show?billing_system_customer_identifier=c1"))
            .await
            .assert_error(401, "INVALID_TOKEN");
        assert_eq!(snapshot(&srv).await, vec![0, 0, 0, 0]);
    }
}
