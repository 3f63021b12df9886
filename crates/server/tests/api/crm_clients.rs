//! Existing CRM.COM clients, unchanged (docs/api.md, "Existing CRM.COM clients"): the key
//! header they really send, their keys carried over, JWT-shaped tokens, and the
//! `http_errors = "crm"` mode that answers every error envelope with HTTP 200.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chargegate::auth::ratelimit::OperatorRateLimit;
use chargegate::edge::{EdgeSettings, HttpErrors};
use chargegate::state::AuthSettings;
use chargegate_core::clock::Timestamp;
use chargegate_core::store::NewToken;
use chargegate_core::token::Token;
use common::process::{chargegate, run};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A key as CRM.COM hands them out: 32 hexadecimal characters.
const CRM_KEY: &str = "8d2f61c0a4e97b35f0c6d1e82a4b7f93";
const LIST: &str = "/crmapi/rest/v2/netflix/charges/list?number_of_results=50&charge_status=NOT_PROCESSED&offset=0";

/// Sends `request` byte for byte on a new connection; the status, the lower-cased head
/// and the JSON body of the answer (read by its `content-length`, so a kept-alive
/// connection is fine).
async fn replay(srv: &TestServer, request: &[u8]) -> (u16, String, Value) {
    let mut conn = TcpStream::connect(srv.addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 8192];
        loop {
            let n = conn.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.to_ascii_lowercase().lines().find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                });
                if length.is_some_and(|n| body.len() >= n) {
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no complete answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// Imports `key` for `pci`'s user with the real binary.
fn import(srv: &TestServer, key: &str, operator: &str, user: &str) -> std::process::Output {
    let command = chargegate(
        &srv.db.url,
        &[
            "key",
            "import",
            "--operator",
            operator,
            "--user",
            user,
            "--name",
            "crm",
        ],
    );
    run(command, &format!("{key}\n"))
}

/// The header and claims of a JWT, decoded.
fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "three segments: {token}");
    let json = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (json(parts[0]), json(parts[1]))
}

/// `claims` signed with `secret` as HS256, by hand (no chargegate code involved).
fn sign(claims: &Value, secret: &[u8]) -> String {
    let head = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"HS256"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{signature}")
}

/// Whether `token`'s signature is the HS256 of its first two segments under `secret`.
fn signed_by(token: &str, secret: &[u8]) -> bool {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(signed.as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap())
        .is_ok()
}

/// Stores `token` as issued to `pci`'s user, now, for `ttl` seconds: as if the server had
/// issued it.
async fn store_token(srv: &TestServer, token: &str, ttl: i64) {
    let user = srv
        .store
        .login_user(
            &chargegate_core::text::OperatorCode::parse(OPERATOR).unwrap(),
            &chargegate_core::text::Username::parse(USER).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let now = srv.clock_now();
    srv.store
        .insert_token(&NewToken {
            hash: Token::parse(token).expect("token shape").hash(),
            user_id: user.user_id,
            key_id: None,
            issued_at: now,
            expires_at: now.plus_seconds(ttl),
        })
        .await
        .unwrap();
}

trait ClockNow {
    fn clock_now(&self) -> Timestamp;
}

impl ClockNow for TestServer {
    fn clock_now(&self) -> Timestamp {
        use chargegate_core::clock::Clock;
        self.clock.now()
    }
}

/// Every way a token travels (body, query, Bearer) refuses it with `code`, and a decline
/// made with it changes nothing.
async fn refused_everywhere(srv: &TestServer, token: &str, code: &str) {
    let r = srv.get(&format!("{LIST}&token={token}")).await;
    r.assert_error(401, code);
    let r = srv
        .send(
            srv.client()
                .get(srv.url(LIST))
                .header("Authorization", format!("Bearer {token}")),
        )
        .await;
    r.assert_error(401, code);
    let r = srv.batch("decline", token, json!([item("I1", "c1")])).await;
    r.assert_error(401, code);
    let fresh = srv.login().await;
    assert_eq!(
        srv.status_of(&fresh, "I1").await.as_deref(),
        Some("PENDING")
    );
}

on_every_backend! {
    async fn the_key_headers_real_crm_clients_send_all_get_a_token(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let out = import(&srv, CRM_KEY, OPERATOR, USER);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bare = STANDARD.encode(CRM_KEY);
        let colon = STANDARD.encode(format!("{CRM_KEY}:"));
        let host = srv.addr;
        let requests = [
            // PHP curl: the key without a colon, a misspelt content type, an empty body.
            format!("POST /crmapi/rest/v2/authentication/web_api_key/token HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {bare}\r\nAccept: */*\r\nContent-Type: applicatio/json\r\nContent-Length: 0\r\n\r\n"),
            // Guzzle: lower-case scheme, the colon form, no body and no Content-Length.
            format!("POST /crmapi/rest/v2/authentication/web_api_key/token HTTP/1.1\r\nHost: {host}\r\nUser-Agent: GuzzleHttp/7\r\nauthorization: basic {colon}\r\nContent-Type: applicatio/json\r\n\r\n"),
            // .NET HttpWebRequest: its header order, Keep-Alive, Content-Length: 0.
            format!("POST /crmapi/rest/v2/authentication/web_api_key/token HTTP/1.1\r\nContent-Type: applicatio/json\r\nAuthorization: Basic {bare}\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n"),
            // Upper-case scheme, a JSON content type and a `unit` body.
            format!("POST /crmapi/rest/v2/authentication/web_api_key/token HTTP/1.1\r\nHost: {host}\r\nAuthorization: BASIC {bare}\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{{\"unit\":\"x\"}}"),
        ];
        for request in &requests {
            let (status, _, body) = replay(&srv, request.as_bytes()).await;
            assert_eq!((status, body["status"]["code"].as_str()), (200, Some("OK")), "{request}\n{body}");
            let token = body["data"]["token"].as_str().expect("a token").to_owned();
            assert_eq!(srv.list_all(&token, "NOT_PROCESSED").await.len(), 1);
        }
        assert_eq!(srv.db.scalar("SELECT count(*) FROM tokens").await, requests.len() as i64);
    }

    async fn an_imported_key_logs_in_and_every_refused_import_stores_nothing(backend) {
        let srv = TestServer::start(backend).await;
        let out = import(&srv, CRM_KEY, OPERATOR, USER);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(printed.contains("8d2f61c0"), "names the prefix: {printed}");
        assert!(!printed.contains(CRM_KEY), "never shows the key: {printed}");
        let stored = "SELECT count(*) FROM api_keys WHERE prefix = '8d2f61c0' AND name = 'crm'";
        assert_eq!(srv.db.scalar(stored).await, 1);

        let r = srv
            .send(
                srv.client()
                    .post(srv.url(&format!("{V2}/authentication/web_api_key/token")))
                    .header("Authorization", format!("Basic {}", STANDARD.encode(CRM_KEY))),
            )
            .await;
        assert_eq!(r.code(), "OK", "{}", r.text);

        let cases = [
            ("3f9a0c5e7d1b2a4", OPERATOR, USER, "fewer than 16"),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", OPERATOR, USER, "different characters"),
            ("0123456789abcdef", OPERATOR, USER, "counts up or down"),
            ("c0ffee42c0ffee42c0ffee42", OPERATOR, USER, "repeats"),
            (CRM_KEY, OPERATOR, USER, "already stored"),
            ("8d2f61c0ffffffff0000111122223333", OPERATOR, USER, "prefix"),
            ("5b1e9d7c3a0f8e26d4c1b7a95e3f0d28", "nobody", USER, "no user"),
            ("5b1e9d7c3a0f8e26d4c1b7a95e3f0d28", OPERATOR, "nobody", "no user"),
            ("", OPERATOR, USER, "empty"),
        ];
        for (key, operator, user, why) in cases {
            let out = import(&srv, key, operator, user);
            assert!(!out.status.success(), "{key} was imported");
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.contains(why), "{key}: {err}");
            assert!(err.contains("nothing was imported"), "{err}");
            assert_eq!(srv.db.scalar("SELECT count(*) FROM api_keys").await, 1, "{key}");
        }
    }

    async fn tokens_are_jwts_whose_exp_is_iat_plus_the_configured_lifetime(backend) {
        let auth = AuthSettings { token_ttl_seconds: 1234, ..AuthSettings::default() };
        let srv = TestServer::start_with(backend, auth).await;
        let out = import(&srv, CRM_KEY, OPERATOR, USER);
        assert!(out.status.success());
        let by_password = srv.login().await;
        let by_key = srv
            .send(
                srv.client()
                    .post(srv.url(&format!("{V2}/authentication/web_api_key/token")))
                    .header("Authorization", format!("basic {}", STANDARD.encode(CRM_KEY))),
            )
            .await
            .body["data"]["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let secrets = srv.store.token_secrets().await.unwrap();
        assert_eq!(secrets.len(), 1, "the first login made the first secret");
        for token in [&by_password, &by_key] {
            let (header, claims) = decode(token);
            assert_eq!(header, json!({"typ": "JWT", "alg": "HS256"}));
            assert_eq!(token.split('.').next().unwrap(), URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"HS256"}"#));
            assert_eq!(claims["usr"], USER);
            assert_eq!(claims["org"], OPERATOR);
            assert_eq!(claims["oun"], OPERATOR);
            let iat: i64 = claims["iat"].as_str().expect("iat is a string").parse().unwrap();
            let exp: i64 = claims["exp"].as_str().expect("exp is a string").parse().unwrap();
            assert_eq!(exp - iat, 1234);
            assert!((iat - Timestamp::now().unix()).abs() < 60, "{iat}");
            let jti = claims["jti"].as_str().unwrap();
            assert!(jti.len() >= 32 && jti.bytes().all(|b| b.is_ascii_hexdigit()), "{jti}");
            let keys: Vec<&str> = claims.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 6, "{claims}");
            // Signed with the database's secret.
            assert!(signed_by(token, &secrets[0].secret));
            // The stored expiry is the claimed one.
            let stored = format!("SELECT count(*) FROM tokens WHERE expires_at = {exp} AND issued_at = {iat}");
            assert!(srv.db.scalar(&stored).await >= 1);
        }
        assert_ne!(decode(&by_password).1["jti"], decode(&by_key).1["jti"]);
    }

    async fn a_tampered_an_unknown_secrets_and_a_released_token_are_all_invalid_token(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let token = srv.login().await;
        let (_, claims) = decode(&token);

        // The signature's last character changed.
        // (Not the last character, whose low bits are padding.)
        let at = token.len() - 10;
        let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
        refused_everywhere(&srv, &tampered, "INVALID_TOKEN").await;

        // Other claims under the real signature.
        let mut other = claims.clone();
        other["usr"] = json!("admin");
        let signature = token.rsplit('.').next().unwrap();
        let body_swapped = format!(
            "{}.{}.{signature}",
            token.split('.').next().unwrap(),
            URL_SAFE_NO_PAD.encode(other.to_string())
        );
        refused_everywhere(&srv, &body_swapped, "INVALID_TOKEN").await;

        // Signed with a secret the database does not hold, even though the database
        // knows the token: the signature is checked too.
        let forged = sign(&claims_now(&srv, 7200), &[0x42; 32]);
        store_token(&srv, &forged, 7200).await;
        refused_everywhere(&srv, &forged, "INVALID_TOKEN").await;

        // Well signed with the real secret but never issued: the database decides.
        let secret = srv.store.token_secrets().await.unwrap()[0].secret;
        let unissued = sign(&claims_now(&srv, 7200), &secret);
        refused_everywhere(&srv, &unissued, "INVALID_TOKEN").await;

        // Well signed, issued, then released.
        let released = srv.login().await;
        srv.post(&format!("{V2}/authentication/token/release"), &json!({"token": released}))
            .await
            .assert_all_ok();
        refused_everywhere(&srv, &released, "INVALID_TOKEN").await;

        // The original still works.
        assert_eq!(srv.list_all(&token, "NOT_PROCESSED").await.len(), 1);
    }

    async fn rotating_the_secret_keeps_earlier_tokens_until_they_expire(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let before = srv.login().await;
        let out = run(chargegate(&srv.db.url, &["token-secret", "rotate"]), "");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let secrets = srv.store.token_secrets().await.unwrap();
        assert_eq!(secrets.iter().map(|s| s.generation).collect::<Vec<_>>(), [1, 2]);
        assert_ne!(secrets[0].secret, secrets[1].secret);

        let after = srv.login().await;
        assert!(signed_by(&before, &secrets[0].secret));
        assert!(signed_by(&after, &secrets[1].secret), "new logins use the new secret");
        assert!(!signed_by(&after, &secrets[0].secret));
        for token in [&before, &after] {
            assert_eq!(srv.list_all(token, "NOT_PROCESSED").await.len(), 1);
        }

        // The old secret vouches only for tokens issued before the rotation: one it
        // signed later is refused even though the database knows it.
        srv.clock.advance(600);
        let late = sign(&claims_now(&srv, 7200), &secrets[0].secret);
        store_token(&srv, &late, 7200).await;
        refused_everywhere(&srv, &late, "INVALID_TOKEN").await;

        // A restart logs nobody out.
        let srv = srv.restart().await;
        srv.clock.advance(600);
        for token in [&before, &after] {
            assert_eq!(srv.list_all(token, "NOT_PROCESSED").await.len(), 1);
        }
        // Until they expire, like any token.
        srv.clock.advance(6700);
        for token in [&before, &after] {
            srv.get(&format!("{LIST}&token={token}")).await.assert_error(401, "EXPIRED_TOKEN");
        }

        let listed = run(chargegate(&srv.db.url, &["token-secret", "list"]), "");
        assert!(listed.status.success());
        let text = String::from_utf8_lossy(&listed.stdout).into_owned();
        assert_eq!(text.lines().count(), 3, "a head and two generations: {text}");
        assert!(text.contains("new tokens"), "{text}");
    }

    async fn an_opaque_token_issued_before_the_upgrade_keeps_working_until_it_expires(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let opaque = Token::from_random_bytes([0x5a; 32]).expose().to_owned();
        assert_eq!(opaque.len(), 64);
        store_token(&srv, &opaque, 7200).await;
        assert_eq!(srv.list_all(&opaque, "NOT_PROCESSED").await.len(), 1);
        srv.clock.advance(7201);
        srv.get(&format!("{LIST}&token={opaque}")).await.assert_error(401, "EXPIRED_TOKEN");
        // One the database never issued is unknown, as before.
        let unknown = Token::from_random_bytes([0x5b; 32]).expose().to_owned();
        srv.clock.advance(-7201);
        refused_everywhere(&srv, &unknown, "INVALID_TOKEN").await;
    }

    async fn in_crm_mode_every_error_answer_is_http_200_with_the_code_of_the_rest_mode(backend) {
        let rest = error_server(backend, HttpErrors::Rest).await;
        let crm = error_server(backend, HttpErrors::Crm).await;
        let in_rest = error_answers(&rest).await;
        let in_crm = error_answers(&crm).await;
        assert_eq!(in_rest.len(), in_crm.len());
        assert!(in_rest.len() > 40, "every route is tried: {}", in_rest.len());
        for (r, c) in in_rest.iter().zip(&in_crm) {
            assert_eq!(r.what, c.what);
            assert_ne!(r.code, "OK", "{}", r.what);
            assert_eq!(c.code, r.code, "{}: the same code in both modes", r.what);
            assert_eq!(r.status, rest_status(&r.code), "{}: rest mode keeps real statuses", r.what);
            assert_eq!(c.status, 200, "{}: crm mode answers 200", c.what);
            assert_eq!(c.retry_after, r.retry_after, "{}: Retry-After stays", c.what);
            assert_eq!(c.data, json!({}), "{}", c.what);
        }
        let seen: std::collections::BTreeSet<&str> = in_crm.iter().map(|a| a.code.as_str()).collect();
        for code in ["INVALID_TOKEN", "INVALID_CREDENTIALS", "INVALID_PARAMETER", "METHOD_NOT_ALLOWED",
                     "NOT_FOUND", "PAYLOAD_TOO_LARGE", "TOO_MANY_REQUESTS", "MALFORMED_REQUEST",
                     "URI_TOO_LONG", "HEADERS_TOO_LARGE", "EXPIRED_TOKEN"] {
            assert!(seen.contains(code), "{code} not tried: {seen:?}");
        }
        // Successes and the probes are the same in both modes (once the rate limit that
        // the walk ran into has let go).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for srv in [&rest, &crm] {
            let token = srv.login().await;
            let r = srv.get(&format!("{LIST}&token={token}")).await;
            assert_eq!((r.status, r.code()), (200, "OK"));
            assert_eq!(srv.get("/healthz").await.status, 200);
        }

        // The database gone: 503 in rest mode, 200 in crm mode; /readyz stays 503.
        for (srv, http) in [(&rest, 503), (&crm, 200)] {
            srv.store.close().await;
            let r = srv.try_login(OPERATOR, USER, PASSWORD).await;
            assert_eq!((r.status, r.code()), (http, "SERVICE_UNAVAILABLE"), "{}", r.text);
            assert_eq!(r.header("retry-after"), Some("1"));
            let ready = srv.get("/readyz").await;
            assert_eq!((ready.status, ready.code()), (503, "SERVICE_UNAVAILABLE"));
        }
    }

    async fn in_crm_mode_a_connection_over_the_cap_is_refused_with_http_200(backend) {
        for (mode, http) in [(HttpErrors::Rest, 503), (HttpErrors::Crm, 200)] {
            let srv = TestServer::start_with_state(backend, |state| {
                state.edge = EdgeSettings {
                    max_connections: 1,
                    header_timeout: Duration::from_secs(120),
                    http_errors: mode,
                    ..EdgeSettings::default()
                };
            })
            .await;
            let _held = TcpStream::connect(srv.addr).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (status, head, body) =
                replay(&srv, b"GET /crmapi/rest/v2/netflix/charges/list HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert_eq!((status, body["status"]["code"].as_str()), (http, Some("SERVICE_UNAVAILABLE")));
            assert!(head.contains("retry-after: 1"), "{head}");
        }
    }
}

/// Claims of a token of `pci`'s user issued now (by the server's clock).
fn claims_now(srv: &TestServer, ttl: i64) -> Value {
    let now = srv.clock_now().unix();
    json!({"usr": USER, "org": OPERATOR, "oun": OPERATOR, "exp": (now + ttl).to_string(),
           "iat": now.to_string(), "jti": format!("{:064x}", now as u128 * 7919)})
}

/// A server for the error walk: `pci` with one charge, a rate limit of one request a
/// second per operator, and the given mode.
async fn error_server(backend: Backend, mode: HttpErrors) -> TestServer {
    let srv = TestServer::start_with_state(backend, |state| {
        state.edge.http_errors = mode;
        state.rate_limit = std::sync::Arc::new(OperatorRateLimit::new(1, 1));
    })
    .await;
    srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
    srv
}

fn rest_status(code: &str) -> u16 {
    match code {
        "MALFORMED_REQUEST" | "INVALID_PARAMETER" | "LIMIT_EXCEEDED" => 400,
        "INVALID_CREDENTIALS" | "INVALID_TOKEN" | "EXPIRED_TOKEN" => 401,
        "NOT_FOUND" | "SUBSCRIPTION_NOT_FOUND" => 404,
        "METHOD_NOT_ALLOWED" => 405,
        "REQUEST_TIMEOUT" => 408,
        "SUBSCRIPTION_EXISTS" => 409,
        "PAYLOAD_TOO_LARGE" => 413,
        "URI_TOO_LONG" => 414,
        "TOO_MANY_REQUESTS" => 429,
        "HEADERS_TOO_LARGE" => 431,
        "INTERNAL_ERROR" => 500,
        "SERVICE_UNAVAILABLE" => 503,
        other => panic!("unexpected code {other}"),
    }
}

struct ErrorAnswer {
    what: String,
    status: u16,
    code: String,
    retry_after: bool,
    data: Value,
}

impl ErrorAnswer {
    fn of(what: String, r: &Reply) -> Self {
        ErrorAnswer {
            what,
            status: r.status,
            code: r.code().to_owned(),
            retry_after: r.header("retry-after").is_some(),
            data: r.body["data"].clone(),
        }
    }
}

/// Makes every route of the document, and the edge, answer an error, in a fixed order.
async fn error_answers(srv: &TestServer) -> Vec<ErrorAnswer> {
    use reqwest::Method;
    let mut answers = Vec::new();
    let document = chargegate::api::openapi_document();
    let expired = {
        let token = srv.login().await;
        srv.clock.advance(7201);
        token
    };
    for (path, item) in &document.paths.paths {
        // Paths are templates without parameters here; the document says so.
        assert!(!path.contains('{'), "{path}");
        let verbs = [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
        ];
        for (verb, served) in verbs {
            let url = srv.url(path);
            if !served {
                let r = srv
                    .send(srv.client().request(verb.clone(), &url).body("{}"))
                    .await;
                answers.push(ErrorAnswer::of(format!("{verb} {path}"), &r));
                continue;
            }
            // No credentials at all.
            let r = srv
                .send(srv.client().request(verb.clone(), &url).body("{}"))
                .await;
            answers.push(ErrorAnswer::of(
                format!("{verb} {path} without credentials"),
                &r,
            ));
            // A malformed token, then an expired one, where a token is taken.
            let login = path.ends_with("/authentication/token") || path.contains("web_api_key");
            if !login {
                for (label, token) in [
                    ("a malformed", "not-a-token"),
                    ("an expired", expired.as_str()),
                ] {
                    let r = srv
                        .send(
                            srv.client()
                                .request(verb.clone(), &url)
                                .header("Authorization", format!("Bearer {token}"))
                                .body("{}"),
                        )
                        .await;
                    answers.push(ErrorAnswer::of(
                        format!("{verb} {path} with {label} token"),
                        &r,
                    ));
                }
            }
            // A verb it does not serve.
            let r = srv.send(srv.client().request(Method::DELETE, &url)).await;
            answers.push(ErrorAnswer::of(format!("DELETE {path}"), &r));
        }
    }
    srv.clock.advance(-7201);
    let r = srv
        .get("/crmapi/rest/v2/netflix/charges/nothing_here")
        .await;
    answers.push(ErrorAnswer::of("an unknown path".into(), &r));
    let r = srv
        .post_raw(
            &format!("{V2}/netflix/charges/decline"),
            vec![b' '; (1 << 20) + 10],
        )
        .await;
    answers.push(ErrorAnswer::of("an oversized body".into(), &r));
    let r = srv
        .post_raw(&format!("{V2}/authentication/token"), "{oops")
        .await;
    answers.push(ErrorAnswer::of("a body that is not JSON".into(), &r));
    let r = srv
        .get(&format!(
            "/crmapi/rest/v2/netflix/charges/list?x={}",
            "a".repeat(9000)
        ))
        .await;
    answers.push(ErrorAnswer::of(
        "a request target over the limit".into(),
        &r,
    ));
    let r = srv
        .send(
            srv.client()
                .get(srv.url("/healthz"))
                .header("X-Big", "b".repeat(20_000)),
        )
        .await;
    answers.push(ErrorAnswer::of("a head over the limit".into(), &r));
    let (status, head, body) = replay(srv, b"NOT HTTP AT ALL\r\n\r\n").await;
    answers.push(ErrorAnswer {
        what: "a request hyper cannot parse".into(),
        status,
        code: body["status"]["code"].as_str().unwrap_or("").to_owned(),
        retry_after: head.contains("retry-after"),
        data: body["data"].clone(),
    });
    // The operator's rate limit: one request a second.
    let token = srv.login().await;
    let mut limited = None;
    for _ in 0..5 {
        let r = srv.get(&format!("{LIST}&token={token}")).await;
        if r.code() == "TOO_MANY_REQUESTS" {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("the rate limit answered");
    answers.push(ErrorAnswer::of("over the rate limit".into(), &limited));
    answers
}
