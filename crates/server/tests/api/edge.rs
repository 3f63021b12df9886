//! The hardened HTTP edge: timeouts, the connection cap, the shutdown deadline, the
//! per-operator rate limit, and the envelope on the HTTP layer's own refusals. Timeouts
//! are configured short here; the tests assert that a connection is closed within a
//! generous bound, never how fast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::sync::Arc;
use std::time::Duration;

use chargegate::auth::ratelimit::OperatorRateLimit;
use chargegate::edge::EdgeSettings;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DECLINE: &str = "/crmapi/rest/v2/netflix/charges/decline";

/// Far more than any timeout configured here: a connection still open after this was not
/// closed by its timeout.
const GENEROUS: Duration = Duration::from_secs(20);

fn short_timeouts() -> EdgeSettings {
    EdgeSettings {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..EdgeSettings::default()
    }
}

async fn start(backend: Backend, edge: EdgeSettings) -> TestServer {
    TestServer::start_with_state(backend, move |state| state.edge = edge).await
}

/// Reads until the server closes the connection; `None` if it is still open after
/// [`GENEROUS`].
async fn read_until_closed(conn: &mut TcpStream) -> Option<String> {
    let mut response = Vec::new();
    let read = tokio::time::timeout(GENEROUS, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&response).into_owned())
}

/// Sends `request` on a new connection and reads the answer until the server closes.
async fn exchange(srv: &TestServer, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(srv.addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    read_until_closed(&mut conn)
        .await
        .expect("the server answers and closes")
}

/// The status, lower-cased headers and JSON body of a raw HTTP/1.1 response.
fn parse(raw: &str) -> (u16, Vec<(String, String)>, Value) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (
        status,
        headers,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[track_caller]
fn assert_envelope(raw: &str, http: u16, code: &str) {
    let (status, headers, body) = parse(raw);
    assert_eq!(status, http, "{raw}");
    assert_eq!(body["status"]["code"], code, "{raw}");
    assert_eq!(body["data"], json!({}), "{raw}");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("application/json"), "{raw}");
    let id = header("x-request-id").expect("a request id");
    assert!(id.len() >= 16, "{raw}");
}

// ---- timeouts -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let srv = start(Backend::Sqlite, short_timeouts()).await;
    let mut conn = TcpStream::connect(srv.addr).await.unwrap();
    assert!(read_until_closed(&mut conn).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_off_after_the_header_timeout() {
    let srv = start(Backend::Sqlite, short_timeouts()).await;
    let mut conn = TcpStream::connect(srv.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..200 {
            if conn.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    let cut_off = tokio::time::timeout(GENEROUS, trickle).await;
    assert_eq!(
        cut_off.ok(),
        Some(true),
        "the trickling head was never cut off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_its_answer_and_the_timeout() {
    let srv = start(Backend::Sqlite, short_timeouts()).await;
    let mut conn = TcpStream::connect(srv.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let text = read_until_closed(&mut conn)
        .await
        .expect("closed when idle");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_are_all_closed_by_the_timeout() {
    let srv = start(Backend::Sqlite, short_timeouts()).await;
    let mut conns = Vec::new();
    for _ in 0..50 {
        conns.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    for conn in &mut conns {
        assert!(read_until_closed(conn).await.is_some());
    }
    srv.get("/healthz").await.assert_all_ok();
}

// ---- shutdown -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_within_its_deadline_with_a_stalled_client_connected() {
    let edge = EdgeSettings {
        header_timeout: Duration::from_secs(120),
        body_timeout: Duration::from_secs(120),
        shutdown_timeout: Duration::from_secs(1),
        ..EdgeSettings::default()
    };
    let mut srv = start(Backend::Sqlite, edge).await;
    // A request whose body never comes: in flight, and stalled, for two minutes.
    let mut stalled = TcpStream::connect(srv.addr).await.unwrap();
    stalled
        .write_all(
            format!("POST {DECLINE} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{")
                .as_bytes(),
        )
        .await
        .unwrap();
    // A silent connection too.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    srv.get("/healthz").await.assert_all_ok();

    srv.signal_stop();
    let stopped = tokio::time::timeout(GENEROUS, srv.stop()).await;
    assert!(stopped.is_ok(), "the server did not stop by its deadline");
    assert!(read_until_closed(&mut stalled).await.is_some());
    assert!(read_until_closed(&mut silent).await.is_some());
}

// ---- the connection cap -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_with_503_and_the_cap_recovers() {
    let edge = EdgeSettings {
        max_connections: 3,
        header_timeout: Duration::from_secs(120),
        ..EdgeSettings::default()
    };
    let srv = start(Backend::Sqlite, edge).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    // Let the server accept all three before the fourth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = exchange(&srv, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_envelope(&refused, 503, "SERVICE_UNAVAILABLE");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );

    // The open ones are unaffected.
    open[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut open[0]).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Closing connections makes room again.
    drop(open);
    let mut recovered = false;
    for _ in 0..100 {
        let text = exchange(
            &srv,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if text.starts_with("HTTP/1.1 200") {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the cap never recovered");
}

// ---- the rate limit -----------------------------------------------------------------

// ---- the HTTP layer's own refusals --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_cannot_parse_are_answered_in_the_envelope() {
    let srv = start(Backend::Sqlite, EdgeSettings::default()).await;
    let bad_line = exchange(&srv, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert_envelope(&bad_line, 400, "MALFORMED_REQUEST");

    let two_lengths = format!(
        "POST {DECLINE} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"
    );
    assert_envelope(
        &exchange(&srv, two_lengths.as_bytes()).await,
        400,
        "MALFORMED_REQUEST",
    );

    let bad_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n";
    assert_envelope(&exchange(&srv, bad_header).await, 400, "MALFORMED_REQUEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_over_their_limits_are_answered_431_in_the_envelope() {
    let srv = start(Backend::Sqlite, EdgeSettings::default()).await;
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_envelope(
        &exchange(&srv, many.as_bytes()).await,
        431,
        "HEADERS_TOO_LARGE",
    );

    let large = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    assert_envelope(
        &exchange(&srv, large.as_bytes()).await,
        431,
        "HEADERS_TOO_LARGE",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_target_over_the_limit_is_answered_414_in_the_envelope() {
    let srv = start(Backend::Sqlite, EdgeSettings::default()).await;
    let long = format!("/healthz?pad={}", "p".repeat(9 * 1024));
    let r = srv.get(&long).await;
    r.assert_error(414, "URI_TOO_LONG");
    assert!(r.header("x-request-id").is_some());
    // Within the limit it is served.
    srv.get(&format!("/healthz?pad={}", "p".repeat(1024)))
        .await
        .assert_all_ok();
}

// ---- on every backend: a slow body, the rate limit ---------------------------------

on_every_backend! {
    async fn half_a_body_answers_request_timeout_and_applies_nothing(backend) {
        let srv = start(backend, short_timeouts()).await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        let body = json!({"token": token, "declined_charges_set": [item("I1", "c")]}).to_string();
        let half = &body[..body.len() / 2];
        let mut conn = TcpStream::connect(srv.addr).await.unwrap();
        let head = format!(
            "POST {DECLINE} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(half.as_bytes()).await.unwrap();
        let text = read_until_closed(&mut conn).await.expect("answered and closed");
        assert_envelope(&text, 408, "REQUEST_TIMEOUT");
        assert_eq!(srv.status_of(&token, "I1").await.as_deref(), Some("PENDING"));
    }

    async fn an_operator_over_its_rate_limit_gets_429_with_retry_after_and_nothing_applied(backend) {
        let srv = TestServer::start_with_state(backend, |state| {
            state.rate_limit = Arc::new(OperatorRateLimit::new(1, 3));
        })
        .await;
        srv.add_charges(OPERATOR, &[("I1", "c")]).await;
        let token = srv.login().await;
        let list = format!("{V2}/netflix/charges/list?token={token}&number_of_results=5&charge_status=NOT_PROCESSED&offset=0");
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(srv.get(&list).await.status);
        }
        assert_eq!(answers, [200, 200, 200]);
        let r = srv.batch("decline", &token, json!([item("I1", "c")])).await;
        r.assert_error(429, "TOO_MANY_REQUESTS");
        let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!(retry >= 1);
        // Another operator is not held back by this one.
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        let rival_list = list.replace(&token, &rival);
        assert_eq!(srv.get(&rival_list).await.code(), "OK");
        // Nothing was applied; after the wait the operator gets through again.
        tokio::time::sleep(Duration::from_secs(retry)).await;
        let charges = srv.get(&list).await;
        assert_eq!(charges.code(), "OK", "{}", charges.text);
        assert_eq!(charges.body["data"]["charges_set"][0]["charge_status"], "PENDING");
    }
}

// ---- the descriptor limit -----------------------------------------------------------

/// The probe's scenario: a process limited to 256 descriptors, 300 silent sockets. The
/// cap is lowered under the limit, so a further client is answered at once (503 while
/// the silent ones hold their places; without the cap it would wait, unanswered, in the
/// listen queue until they time out), and served once the header timeout closed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_past_the_descriptor_limit_lock_no_client_out() {
    use common::process::{BIN, Server, Workdir};

    let d = Workdir::new();
    d.ok(&["migrate"], "");
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .current_dir(d.path(""));
    for (k, _) in std::env::vars() {
        if k.starts_with("CHARGEGATE_") {
            command.env_remove(k);
        }
    }
    command.env("CHARGEGATE_DATABASE_URL", d.db_url());
    let mut server = Server::start(command, &["--header-timeout", "5"], &[]);
    let lowered = server.await_log("max_connections lowered");
    assert!(lowered.contains("descriptor_limit=256"), "{lowered}");
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();

    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let first = read_until_closed(&mut conn)
        .await
        .expect("answered, not hung");
    assert_envelope(&first, 503, "SERVICE_UNAVAILABLE");

    let mut served = false;
    for _ in 0..100 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(request).await.unwrap();
        let text = read_until_closed(&mut conn)
            .await
            .expect("answered, not hung");
        if text.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(served, "never served once the silent sockets timed out");
    drop(silent);
    server.sigterm();
    assert!(server.wait().success());
}
