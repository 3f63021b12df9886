//! Login, lockout, token lifetime, release, and where tokens may travel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use chargegate::state::AuthSettings;
use chargegate_core::store::LoginPolicy;
use common::*;
use serde_json::json;

const LOGIN: &str = "/crmapi/rest/v2/authentication/token";
const RELEASE: &str = "/crmapi/rest/v2/authentication/token/release";

on_every_backend! {
    async fn a_release_hears_of_its_body_before_its_token(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        srv.post_raw(RELEASE, "{oops").await.assert_error(400, "MALFORMED_REQUEST");
        srv.post(RELEASE, &json!({"token": 12})).await.assert_error(401, "INVALID_TOKEN");
        // Neither released the token.
        srv.post(RELEASE, &json!({"token": token})).await.assert_all_ok();
    }

    async fn login_returns_an_opaque_token_of_at_least_128_bits(backend) {
        let srv = TestServer::start(backend).await;
        let r = srv.post(LOGIN, &json!({"username": USER, "password": PASSWORD, "organisation": OPERATOR, "unit": "ignored"})).await;
        assert_eq!((r.status, r.code()), (200, "OK"), "{}", r.text);
        let token = r.body["data"]["token"].as_str().unwrap();
        assert!(token.len() >= 32, "{token}");
        let other = srv.login().await;
        assert_ne!(token, other, "every login issues a new token");
        // Only a hash is stored.
        let stored = srv.db.scalar(&format!("SELECT count(*) FROM tokens WHERE hash = '{token}'")).await;
        assert_eq!(stored, 0);
    }

    async fn refused_logins_all_look_the_same(backend) {
        let srv = TestServer::start(backend).await;
        let replies = [
            srv.try_login(OPERATOR, USER, "wrong").await,
            srv.try_login(OPERATOR, "nobody", PASSWORD).await,
            srv.try_login("nowhere", USER, PASSWORD).await,
            srv.try_login(RIVAL, USER, PASSWORD).await,
            srv.try_login(OPERATOR, USER, "").await,
            srv.try_login("not a code!", USER, PASSWORD).await,
        ];
        for r in &replies {
            r.assert_error(401, "INVALID_CREDENTIALS");
            assert_eq!(r.body["status"], replies[0].body["status"]);
        }
    }

    async fn missing_or_non_string_login_fields_are_invalid_parameters(backend) {
        let srv = TestServer::start(backend).await;
        for (body, named) in [
            (json!({"password": "p", "organisation": "o"}), "username"),
            (json!({"username": "u", "organisation": "o"}), "password"),
            (json!({"username": "u", "password": "p"}), "organisation"),
            (json!({"username": 1, "password": "p", "organisation": "o"}), "username"),
            (json!({"username": "u", "password": ["p"], "organisation": "o"}), "password"),
            (json!({"username": "u", "password": "p", "organisation": null}), "organisation"),
        ] {
            let r = srv.post(LOGIN, &body).await;
            r.assert_error(400, "INVALID_PARAMETER");
            assert_eq!(r.body["status"]["description"], named);
        }
        srv.post_raw(LOGIN, "username=demo").await.assert_error(400, "MALFORMED_REQUEST");
    }

    async fn ten_consecutive_failures_lock_the_pair_out_even_with_the_right_password(backend) {
        let srv = TestServer::start(backend).await;
        for _ in 0..10 {
            srv.try_login(OPERATOR, USER, "wrong").await.assert_error(401, "INVALID_CREDENTIALS");
        }
        let r = srv.try_login(OPERATOR, USER, PASSWORD).await;
        r.assert_error(429, "TOO_MANY_REQUESTS");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(retry > 0 && retry <= 900, "{retry}");
        // Another pair is not affected; nor is the same user name at another operator.
        srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        srv.try_login(RIVAL, USER, "x").await.assert_error(401, "INVALID_CREDENTIALS");
        // Unknown pairs lock out the same way, so a lockout reveals nothing.
        for _ in 0..10 {
            srv.try_login(OPERATOR, "ghost", "x").await;
        }
        srv.try_login(OPERATOR, "ghost", "x").await.assert_error(429, "TOO_MANY_REQUESTS");
    }

    async fn a_success_resets_the_failure_count(backend) {
        let srv = TestServer::start(backend).await;
        for _ in 0..9 {
            srv.try_login(OPERATOR, USER, "wrong").await;
        }
        srv.login().await;
        for _ in 0..9 {
            srv.try_login(OPERATOR, USER, "wrong").await.assert_error(401, "INVALID_CREDENTIALS");
        }
        srv.login().await;
    }

    async fn a_lockout_ends_after_its_duration(backend) {
        // A lockout long against the real seconds a slow machine lets pass between the
        // steps; only the moved clock ends it.
        let auth = AuthSettings { login: LoginPolicy { max_failures: 3, lockout_seconds: 600 }, ..AuthSettings::default() };
        let srv = TestServer::start_with(backend, auth).await;
        for _ in 0..3 {
            srv.try_login(OPERATOR, USER, "wrong").await;
        }
        srv.try_login(OPERATOR, USER, PASSWORD).await.assert_error(429, "TOO_MANY_REQUESTS");
        srv.clock.advance(300);
        srv.try_login(OPERATOR, USER, PASSWORD).await.assert_error(429, "TOO_MANY_REQUESTS");
        srv.clock.advance(301);
        srv.login().await;
    }

    async fn parallel_guesses_cannot_exceed_the_limit(backend) {
        let srv = std::sync::Arc::new(TestServer::start(backend).await);
        let guesses: Vec<_> = (0..30)
            .map(|_| {
                let srv = srv.clone();
                tokio::spawn(async move { srv.try_login(OPERATOR, USER, "wrong").await.status })
            })
            .collect();
        let mut checked = 0;
        for g in guesses {
            match g.await.unwrap() {
                401 => checked += 1,
                429 => {}
                other => panic!("unexpected status {other}"),
            }
        }
        assert!(checked <= 10, "{checked} guesses had their password checked");
        srv.try_login(OPERATOR, USER, PASSWORD).await.assert_error(429, "TOO_MANY_REQUESTS");
    }

    async fn tokens_expire_after_their_lifetime(backend) {
        let auth = AuthSettings { token_ttl_seconds: 1, ..AuthSettings::default() };
        let srv = TestServer::start_with(backend, auth).await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        srv.clock.advance(2);
        let r = srv.batch("decline", &token, json!([item("I1", "c")])).await;
        r.assert_error(401, "EXPIRED_TOKEN");
        assert_eq!(srv.db.scalar("SELECT count(*) FROM charges WHERE status = 'PENDING'").await, 1);
    }

    async fn a_released_token_is_refused_afterwards(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        let other = srv.login().await;
        srv.post(RELEASE, &json!({"token": token})).await.assert_all_ok();
        srv.batch("decline", &token, json!([item("I1", "c")])).await.assert_error(401, "INVALID_TOKEN");
        srv.post(RELEASE, &json!({"token": token})).await.assert_error(401, "INVALID_TOKEN");
        // Other tokens of the same user live on.
        srv.batch("decline", &other, json!([item("I1", "c")])).await.assert_all_ok();
    }

    async fn missing_malformed_or_unknown_tokens_are_invalid(backend) {
        let srv = TestServer::start(backend).await;
        let set = json!([item("I1", "c")]);
        for token in [json!(null), json!(""), json!("{{token}}"), json!(42), json!("a".repeat(64))] {
            let r = srv.post("/crmapi/rest/v2/netflix/charges/decline", &json!({"token": token, "declined_charges_set": set})).await;
            r.assert_error(401, "INVALID_TOKEN");
        }
        srv.post("/crmapi/rest/v2/netflix/charges/decline", &json!({"declined_charges_set": set}))
            .await
            .assert_error(401, "INVALID_TOKEN");
    }

    async fn a_bearer_header_carries_the_token_and_must_agree_with_the_body(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c"), ("I2", "c")]).await;
        let token = srv.login().await;
        let other = srv.login().await;
        let url = srv.url("/crmapi/rest/v2/netflix/charges/decline");
        let body = |t: Option<&str>, n: &str| {
            let mut b = json!({"declined_charges_set": [item(n, "c")]});
            if let Some(t) = t {
                b["token"] = json!(t);
            }
            b.to_string()
        };
        srv.send(srv.client().post(&url).bearer_auth(&token).body(body(None, "I1"))).await.assert_all_ok();
        srv.send(srv.client().post(&url).bearer_auth(&token).body(body(Some(&token), "I2"))).await.assert_all_ok();
        let r = srv.send(srv.client().post(&url).bearer_auth(&other).body(body(Some(&token), "I2"))).await;
        r.assert_error(401, "INVALID_TOKEN");
        // GET takes the token from the query or the header.
        let list = srv.url("/crmapi/rest/v2/netflix/charges/list?number_of_results=5&charge_status=PROCESSED&offset=0");
        let r = srv.send(srv.client().get(&list).bearer_auth(&token)).await;
        assert_eq!(r.body["data"]["charges_set"].as_array().unwrap().len(), 2, "{}", r.text);
        srv.get("/crmapi/rest/v2/netflix/charges/list?number_of_results=5&charge_status=PROCESSED&offset=0")
            .await
            .assert_error(401, "INVALID_TOKEN");
    }
}
