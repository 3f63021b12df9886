//! Web API keys: logging in with a key, what refuses a key, revoking a key and its tokens,
//! and decisions recording the key they were made with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use chargegate_core::apikey::{ApiKey, KEY_BYTES, NewApiKey, RevokeOutcome};
use chargegate_core::clock::Timestamp;
use chargegate_core::text::{OperatorCode, Username};
use common::*;

const V1: &str = "/chargegate/v1";
use serde_json::json;

fn basic(text: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// Makes a key for `user` of `operator` and returns it.
async fn add_key(srv: &TestServer, operator: &str, user: &str, seed: u8) -> ApiKey {
    let found = srv
        .store
        .login_user(
            &OperatorCode::parse(operator).unwrap(),
            &Username::parse(user).unwrap(),
        )
        .await
        .unwrap()
        .expect("user");
    let key = ApiKey::from_random_bytes([seed; KEY_BYTES]);
    srv.store
        .create_api_key(&NewApiKey {
            operator_id: found.operator_id,
            user_id: found.user_id,
            prefix: key.prefix(),
            hash: key.hash(),
            name: Some("billing".into()),
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
    key
}

async fn key_login(srv: &TestServer, authorization: Option<&str>, body: &str) -> Reply {
    let mut request = srv
        .client()
        .post(srv.url(&format!("{V2}/authentication/web_api_key/token")))
        .body(body.to_owned());
    if let Some(a) = authorization {
        request = request.header("Authorization", a);
    }
    srv.send(request).await
}

on_every_backend! {
    async fn a_key_logs_in_as_its_user_and_its_token_answers_charges(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let key = add_key(&srv, OPERATOR, USER, 1).await;
        for (header, body) in [
            (basic(&format!("{}:", key.expose())), ""),
            (basic(key.expose()), ""),
            (basic(key.expose()), "null"),
            (basic(&format!("{}:", key.expose())).replace("Basic", "basic"), r#"{"unit":"x"}"#),
        ] {
            let r = key_login(&srv, Some(&header), body).await;
            assert_eq!((r.status, r.code()), (200, "OK"), "{}", r.text);
            let token = r.body["data"]["token"].as_str().unwrap().to_owned();
            let list = srv.list_all(&token, "NOT_PROCESSED").await;
            assert_eq!(list.len(), 1);
        }
    }

    async fn unknown_malformed_and_password_bearing_keys_are_invalid_credentials(backend) {
        let srv = TestServer::start(backend).await;
        let key = add_key(&srv, OPERATOR, USER, 2).await;
        let other = ApiKey::from_random_bytes([3; KEY_BYTES]);
        let cases = [
            None,
            Some(basic(&format!("{}:", other.expose()))),
            Some(basic(&format!("{}:secret", key.expose()))),
            Some("Basic !!!".to_owned()),
            Some(format!("Bearer {}", key.expose())),
            Some("Basic".to_owned()),
        ];
        let mut messages = Vec::new();
        for header in &cases {
            let r = key_login(&srv, header.as_deref(), "").await;
            r.assert_error(401, "INVALID_CREDENTIALS");
            messages.push(r.body["status"]["message"].clone());
        }
        messages.dedup();
        assert_eq!(messages.len(), 1, "one message for every refusal: {messages:?}");
        assert_eq!(srv.db.scalar("SELECT count(*) FROM tokens").await, 0);
    }

    async fn a_body_that_is_not_an_object_is_malformed(backend) {
        let srv = TestServer::start(backend).await;
        let key = add_key(&srv, OPERATOR, USER, 4).await;
        let r = key_login(&srv, Some(&basic(key.expose())), "[1]").await;
        r.assert_error(400, "MALFORMED_REQUEST");
        assert_eq!(srv.db.scalar("SELECT count(*) FROM tokens").await, 0);
    }

    async fn an_ambiguous_or_unknown_prefix_revokes_nothing(backend) {
        let srv = TestServer::start(backend).await;
        let found = srv.store.login_user(
            &OperatorCode::parse(OPERATOR).unwrap(), &Username::parse(USER).unwrap(),
        ).await.unwrap().unwrap();
        let mut keys = Vec::new();
        for last in [1u8, 2] {
            let mut bytes = [0x12; KEY_BYTES];
            bytes[KEY_BYTES - 1] = last;
            let key = ApiKey::from_random_bytes(bytes);
            srv.store.create_api_key(&NewApiKey {
                operator_id: found.operator_id, user_id: found.user_id, prefix: key.prefix(),
                hash: key.hash(), name: None, created_at: Timestamp::now(),
            }).await.unwrap();
            keys.push(key);
        }
        assert_eq!(keys[0].prefix(), keys[1].prefix());
        assert_eq!(
            srv.store.revoke_api_key(&keys[0].prefix(), Timestamp::now()).await.unwrap(),
            RevokeOutcome::Ambiguous(2)
        );
        for key in &keys {
            let r = key_login(&srv, Some(&basic(key.expose())), "").await;
            assert_eq!(r.code(), "OK", "{}", r.text);
        }
    }

    async fn revoking_by_a_unique_prefix_ends_only_that_keys_tokens(backend) {
        let srv = TestServer::start(backend).await;
        let key = add_key(&srv, OPERATOR, USER, 0x11).await;
        let other = add_key(&srv, OPERATOR, USER, 0x22).await;
        let token = key_login(&srv, Some(&basic(key.expose())), "").await.body["data"]["token"]
            .as_str().unwrap().to_owned();
        let kept = key_login(&srv, Some(&basic(other.expose())), "").await.body["data"]["token"]
            .as_str().unwrap().to_owned();
        let password_token = srv.login().await;
        let revoked = srv.store.revoke_api_key(&key.prefix(), Timestamp::now()).await.unwrap();
        assert_eq!(revoked, RevokeOutcome::Revoked { tokens: 1 });
        let list = format!("{V2}/netflix/charges/list?number_of_results=1&charge_status=NOT_PROCESSED&offset=0");
        let r = srv.get(&format!("{list}&token={token}")).await;
        r.assert_error(401, "INVALID_TOKEN");
        for alive in [&kept, &password_token] {
            assert_eq!(srv.list_all(alive, "NOT_PROCESSED").await.len(), 0);
        }
        key_login(&srv, Some(&basic(key.expose())), "").await.assert_error(401, "INVALID_CREDENTIALS");
        assert_eq!(
            srv.store.revoke_api_key(&key.prefix(), Timestamp::now()).await.unwrap(),
            RevokeOutcome::AlreadyRevoked
        );
        assert_eq!(
            srv.store.revoke_api_key("cgk_none", Timestamp::now()).await.unwrap(),
            RevokeOutcome::NotFound
        );
    }

    async fn a_disabled_users_keys_stop_working_and_work_again_when_enabled(backend) {
        let srv = TestServer::start(backend).await;
        let key = add_key(&srv, OPERATOR, USER, 0x33).await;
        srv.db.execute("UPDATE users SET enabled = false WHERE username = 'demo'").await;
        key_login(&srv, Some(&basic(key.expose())), "").await.assert_error(401, "INVALID_CREDENTIALS");
        srv.db.execute("UPDATE users SET enabled = true WHERE username = 'demo'").await;
        let r = key_login(&srv, Some(&basic(key.expose())), "").await;
        assert_eq!(r.code(), "OK", "{}", r.text);
    }

    async fn key_logins_ignore_a_password_lockout_of_their_user(backend) {
        let srv = TestServer::start(backend).await;
        let key = add_key(&srv, OPERATOR, USER, 0x44).await;
        for _ in 0..11 {
            srv.try_login(OPERATOR, USER, "wrong").await;
        }
        srv.try_login(OPERATOR, USER, PASSWORD).await.assert_error(429, "TOO_MANY_REQUESTS");
        let r = key_login(&srv, Some(&basic(key.expose())), "").await;
        assert_eq!(r.code(), "OK", "{}", r.text);
    }

    async fn a_decision_made_with_a_key_token_records_the_key(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1"), ("I2", "c2")]).await;
        let key = add_key(&srv, OPERATOR, USER, 0x55).await;
        let token = key_login(&srv, Some(&basic(key.expose())), "").await.body["data"]["token"]
            .as_str().unwrap().to_owned();
        srv.batch("decline", &token, json!([item("I1", "c1")])).await.assert_all_ok();
        let password_token = srv.login().await;
        srv.batch("accept", &password_token, json!([item("I2", "c2")])).await.assert_all_ok();
        let keyed = "SELECT count(*) FROM decisions d JOIN api_keys k ON k.id = d.key_id \
                     JOIN charges c ON c.id = d.charge_id WHERE c.number = 'I1'";
        assert_eq!(srv.db.scalar(keyed).await, 1);
        let history = "SELECT count(*) FROM charge_history h JOIN charges c ON c.id = h.charge_id \
                       WHERE c.number = 'I1' AND h.key_id IS NOT NULL";
        assert_eq!(srv.db.scalar(history).await, 1);
        let unkeyed = "SELECT count(*) FROM decisions d JOIN charges c ON c.id = d.charge_id \
                       WHERE c.number = 'I2' AND d.key_id IS NULL";
        assert_eq!(srv.db.scalar(unkeyed).await, 1);
        // The audit trail names the key as the actor, and the user for a password login.
        for (number, actor) in [("I1", format!("key:{}", key.prefix())), ("I2", format!("user:{USER}"))] {
            let r = srv.get(&format!("{V1}/charges/show?token={password_token}&number={number}")).await;
            let history = r.body["data"]["history_set"].as_array().cloned().unwrap_or_default();
            assert_eq!(history.last().map(|h| h["actor"].clone()), Some(json!(actor)), "{}", r.text);
            // On PostgreSQL the feed holds an entry back while any older transaction of
            // the cluster is still running (other tests share it): ask until it is served.
            let mut found = None;
            for _ in 0..100 {
                let feed = srv
                    .get(&format!("{V1}/charges/decisions?token={password_token}&from=2000-01-01T00:00:00&to=2100-01-01T00:00:00"))
                    .await;
                let entries = feed.body["data"]["decisions_set"].as_array().cloned().unwrap_or_default();
                found = entries.into_iter().find(|e| e["number"] == number);
                if found.is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert_eq!(found.map(|e| e["actor"].clone()), Some(json!(actor)));
        }
    }

    async fn another_operators_user_cannot_be_given_a_key_through_the_list(backend) {
        let srv = TestServer::start(backend).await;
        add_key(&srv, OPERATOR, USER, 0x66).await;
        add_key(&srv, RIVAL, RIVAL_USER, 0x77).await;
        let pci = srv.operator_id(OPERATOR).await;
        let keys = srv.store.api_keys(Some(pci)).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].operator.as_str(), OPERATOR);
        assert_eq!(keys[0].prefix, "cgk_6666");
        assert_eq!(srv.store.api_keys(None).await.unwrap().len(), 2);
    }
}
