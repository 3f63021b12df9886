//! The HTTP surface shared by every method: the envelope on every response, request ids,
//! body limits, odd content types, unknown paths and verbs, health probes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DECLINE: &str = "/crmapi/rest/v2/netflix/charges/decline";

on_every_backend! {
    async fn unknown_paths_answer_not_found_in_the_envelope(backend) {
        let srv = TestServer::start(backend).await;
        for path in ["/", "/crmapi/rest/v2/netflix/charges/approve", "/crmapi/rest/v1/netflix/charges/decline"] {
            let r = srv.post_raw(path, "{}").await;
            r.assert_error(404, "NOT_FOUND");
            assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        }
    }

    async fn wrong_verbs_answer_method_not_allowed_in_the_envelope(backend) {
        let srv = TestServer::start(backend).await;
        srv.get(DECLINE).await.assert_error(405, "METHOD_NOT_ALLOWED");
        srv.post_raw("/crmapi/rest/v2/netflix/charges/list", "{}").await.assert_error(405, "METHOD_NOT_ALLOWED");
        srv.get("/crmapi/rest/v2/authentication/token").await.assert_error(405, "METHOD_NOT_ALLOWED");
    }

    async fn bodies_over_one_mebibyte_are_refused_with_nothing_applied(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        let padding = "x".repeat(1 << 20);
        let body = json!({"token": token, "declined_charges_set": [item("I1", "c")], "padding": padding});
        srv.post(DECLINE, &body).await.assert_error(413, "PAYLOAD_TOO_LARGE");
        assert_eq!(srv.status_of(&token, "I1").await.as_deref(), Some("PENDING"));
        // Just under the limit is fine (the token is part of the body).
        let small = json!({"token": token, "declined_charges_set": [item("I1", "c")], "padding": "x".repeat((1 << 20) - 200 - token.len())});
        srv.post(DECLINE, &small).await.assert_all_ok();
    }

    async fn a_chunked_body_over_the_limit_is_refused_too(backend) {
        let srv = TestServer::start(backend).await;
        let mut conn = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        let head = format!(
            "POST {DECLINE} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            srv.addr
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..20 {
            let frame = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat();
            if conn.write_all(&frame).await.is_err() {
                break; // the server may stop reading once it has refused
            }
        }
        let _ = conn.write_all(b"0\r\n\r\n").await;
        let mut response = Vec::new();
        let _ = conn.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(text.contains("\"PAYLOAD_TOO_LARGE\""), "{text}");
    }

    async fn bodies_are_json_whatever_the_content_type_says(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        let body = json!({"token": token, "declined_charges_set": [item("I1", "c")]}).to_string();
        let r = srv
            .send(srv.client().post(srv.url(DECLINE)).header("content-type", "text/plain; charset=latin1").body(body))
            .await;
        r.assert_all_ok();
    }

    async fn request_ids_are_echoed_or_made_and_never_repeat(backend) {
        let srv = TestServer::start(backend).await;
        let mine = srv
            .send(srv.client().get(srv.url("/healthz")).header("x-request-id", "abc-123"))
            .await;
        assert_eq!(mine.header("x-request-id"), Some("abc-123"));
        let a = srv.get("/healthz").await;
        let b = srv.post_raw("/nowhere", "").await;
        let (a, b) = (a.header("x-request-id").unwrap().to_owned(), b.header("x-request-id").unwrap().to_owned());
        assert!(a.len() >= 16 && b.len() >= 16);
        assert_ne!(a, b);
        // An id unfit to echo (too long) is replaced.
        let long = "y".repeat(300);
        let r = srv.send(srv.client().get(srv.url("/healthz")).header("x-request-id", long.as_str())).await;
        assert_ne!(r.header("x-request-id"), Some(long.as_str()));
    }

    async fn health_probes_answer_in_the_envelope(backend) {
        let srv = TestServer::start(backend).await;
        srv.get("/healthz").await.assert_all_ok();
        srv.get("/readyz").await.assert_all_ok();
    }

    async fn no_response_leaks_sql_or_secrets(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        for r in [
            srv.post_raw(DECLINE, "{\"token\": 1}").await,
            srv.post(DECLINE, &json!({"token": token, "declined_charges_set": [{"number": "'; DROP TABLE charges; --", "billing_system_customer_identifier": "c"}]})).await,
            srv.try_login(OPERATOR, USER, "wrong").await,
        ] {
            for needle in ["SELECT", "sqlx", "argon2", "panicked", "$argon2id$", token.as_str()] {
                assert!(!r.text.contains(needle), "{needle} in {}", r.text);
            }
        }
        assert_eq!(srv.db.scalar("SELECT count(*) FROM operators").await, 2);
    }
}
