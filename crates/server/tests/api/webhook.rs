//! Pushing the outbox to a webhook: signed batches (the signature checked on the raw body
//! the receiver got), retries after failures, events marked delivered only after a 2xx,
//! two servers on one PostgreSQL database never delivering at the same time, HTTPS with
//! the receiver's certificate checked against a CA file (the test's own CAs, made with
//! openssl as tests/tls.rs does), and redirects not followed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chargegate::jobs::outbox_push::{self, Webhook};
use chargegate::jobs::webhook_client;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Mutex;

const SECRET: &str = "webhook-secret";

/// What the receiver saw.
#[derive(Default)]
struct Received {
    /// Calls so far, answered or not.
    calls: AtomicUsize,
    /// Calls being answered right now, and the most ever at once.
    in_flight: AtomicUsize,
    most_at_once: AtomicUsize,
    /// Event ids of the calls answered 2xx, in order.
    delivered: Mutex<Vec<String>>,
    /// Event ids of calls answered with a failure.
    refused: Mutex<Vec<String>>,
    /// The `Authorization` header of the last call.
    authorization: Mutex<Option<String>>,
}

/// A webhook receiver on 127.0.0.1:0 that answers 500 to its first `failures` calls,
/// takes `pause` per call, and checks every signature on the raw body.
async fn receiver(failures: usize, pause: Duration) -> (String, Arc<Received>) {
    let (app, seen) = receiving(failures, pause);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), seen)
}

/// The receiver's routes: `POST /hook`.
fn receiving(failures: usize, pause: Duration) -> (axum::Router, Arc<Received>) {
    let seen = Arc::new(Received::default());
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = state.clone();
            async move {
                let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most_at_once.fetch_max(now, Ordering::SeqCst);
                let call = seen.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(pause).await;
                *seen.authorization.lock().await = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let header = headers
                    .get("x-chargegate-signature")
                    .and_then(|v| v.to_str().ok())
                    .expect("signed")
                    .to_owned();
                let (t, v1) = header
                    .strip_prefix("t=")
                    .and_then(|rest| rest.split_once(",v1="))
                    .expect("t=…,v1=…");
                let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(format!("{t}.").as_bytes());
                mac.update(&body);
                let expected = chargegate_core::token::hex(&mac.finalize().into_bytes());
                assert_eq!(v1, expected, "signature of the raw body");
                let age =
                    chargegate_core::clock::Timestamp::now().unix() - t.parse::<i64>().unwrap();
                assert!((0..60).contains(&age), "t is the time of sending");
                let batch: Value = serde_json::from_slice(&body).unwrap();
                let ids: Vec<String> = batch["events_set"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_owned())
                    .collect();
                let status = if call < failures {
                    seen.refused.lock().await.extend(ids);
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    seen.delivered.lock().await.extend(ids);
                    StatusCode::NO_CONTENT
                };
                seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                status
            }
        }),
    );
    (app, seen)
}

/// Certificates made with openssl in a temporary directory: CA `ca` and CA `other-ca`
/// (`NAME.crt`, `NAME.key`), and for each a receiver certificate for `localhost` and
/// 127.0.0.1 that it signed (`NAME-receiver.crt`, `NAME-receiver.key`).
struct Certificates(tempfile::TempDir);

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (the HTTPS tests make their certificates with it)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certificates {
    fn make() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        for ca in ["ca", "other-ca"] {
            let key = |name: &str| format!("{d}/{name}.key");
            let crt = |name: &str| format!("{d}/{name}.crt");
            let receiver = format!("{ca}-receiver");
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &key(ca),
                "-out",
                &crt(ca),
                "-subj",
                &format!("/CN=chargegate test {ca}"),
            ]);
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key(&receiver),
                "-out",
                &format!("{d}/{receiver}.csr"),
                "-subj",
                "/CN=localhost",
            ]);
            openssl(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{d}/{receiver}.csr"),
                "-CA",
                &crt(ca),
                "-CAkey",
                &key(ca),
                "-CAcreateserial",
                "-extfile",
                &format!("{d}/san.ext"),
                "-out",
                &crt(&receiver),
            ]);
        }
        Certificates(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

/// Serves `app` over TLS (rustls, ring) on 127.0.0.1:0 with the certificate and key of
/// `NAME-receiver` in `certificates`; counts the handshakes that failed.
async fn serve_tls(
    app: axum::Router,
    certificates: &Certificates,
    name: &str,
) -> (SocketAddr, Arc<AtomicUsize>) {
    use hyper_util::rt::TokioIo;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certificates.path(&format!("{name}-receiver.crt")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key =
        PrivateKeyDer::from_pem_file(certificates.path(&format!("{name}-receiver.key"))).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let failed = refused.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app, failed) = (acceptor.clone(), app.clone(), failed.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    failed.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, refused)
}

/// Starts a pusher for `srv`; stops it when the sender is dropped or sent `true`.
fn push(srv: &TestServer, url: &str) -> tokio::sync::watch::Sender<bool> {
    push_trusting(srv, url, None)
}

/// [`push`] with a client that trusts the CA file `ca` besides the system's roots.
fn push_trusting(
    srv: &TestServer,
    url: &str,
    ca: Option<&Path>,
) -> tokio::sync::watch::Sender<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(outbox_push::run(
        srv.store.clone(),
        srv.clock.clone(),
        srv.metrics.clone(),
        Webhook::parse(url, SECRET.into()).unwrap(),
        webhook_client::build(ca).unwrap(),
        stopped,
    ));
    stop
}

/// Webhook calls of `srv` that failed so far, from its metrics.
fn failed_calls(srv: &TestServer) -> u64 {
    let text = srv.metrics.render().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("chargegate_outbox_webhook_failures_total "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

async fn accept_all(srv: &TestServer, token: &str, numbers: &[String]) {
    let items: Vec<Value> = numbers.iter().map(|n| item(n, &format!("c-{n}"))).collect();
    srv.batch("accept", token, json!(items))
        .await
        .assert_all_ok();
}

async fn add(srv: &TestServer, from: usize, n: usize) -> Vec<String> {
    let numbers: Vec<String> = (from..from + n).map(|i| format!("W{i:05}")).collect();
    let customers: Vec<String> = numbers.iter().map(|n| format!("c-{n}")).collect();
    let pairs: Vec<(&str, &str)> = numbers
        .iter()
        .zip(&customers)
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    srv.add_charges(OPERATOR, &pairs).await;
    numbers
}

async fn waiting(srv: &TestServer) -> i64 {
    srv.db
        .scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
        .await
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

on_every_backend! {
    async fn a_webhook_that_fails_twice_gets_the_same_signed_events_until_it_answers_2xx(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let (url, seen) = receiver(2, Duration::ZERO).await;
        let numbers = add(&srv, 0, 3).await;
        accept_all(&srv, &token, &numbers).await;
        let started = std::time::Instant::now();
        let _pusher = push(&srv, &url);
        until("delivery", async || !seen.delivered.lock().await.is_empty()).await;
        // Two failures: retried after 1 s, then 2 s (first retry within 5 s).
        assert!(started.elapsed() >= Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(20));
        let refused = seen.refused.lock().await.clone();
        let delivered = seen.delivered.lock().await.clone();
        assert_eq!(refused.len(), 6, "the same three events, twice");
        assert_eq!(refused[..3], refused[3..]);
        assert_eq!(delivered, refused[..3]);
        until("marked delivered", async || waiting(&srv).await == 0).await;
        // Marked delivered: GET outbox has nothing more, and nothing is pushed again.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(seen.delivered.lock().await.len(), 3);
        let text = srv.metrics.render().unwrap();
        assert!(text.contains("chargegate_outbox_webhook_deliveries_total 3"), "{text}");
        assert!(text.contains("chargegate_outbox_webhook_failures_total 2"), "{text}");
    }

    async fn events_stay_visible_to_get_outbox_while_the_webhook_fails(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let (url, seen) = receiver(usize::MAX, Duration::ZERO).await;
        let numbers = add(&srv, 0, 2).await;
        accept_all(&srv, &token, &numbers).await;
        let _pusher = push(&srv, &url);
        until("a failed push", async || seen.calls.load(Ordering::SeqCst) >= 1).await;
        assert_eq!(waiting(&srv).await, 2);
        assert!(seen.delivered.lock().await.is_empty());
    }

    async fn an_https_webhook_whose_certificate_the_ca_file_vouches_for_gets_the_signed_events(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let certificates = Certificates::make();
        let (app, seen) = receiving(0, Duration::ZERO);
        let (addr, refused) = serve_tls(app, &certificates, "ca").await;
        let numbers = add(&srv, 0, 3).await;
        accept_all(&srv, &token, &numbers).await;
        // By name, so the host name is checked too (the certificate names localhost); a
        // user name and password in the URL go as basic authentication.
        let url = format!("https://ops:s3cret@localhost:{}/hook", addr.port());
        let _pusher = push_trusting(&srv, &url, Some(&certificates.path("ca.crt")));
        until("marked delivered", async || waiting(&srv).await == 0).await;
        // The receiver checked each signature on the raw body it got.
        let delivered = seen.delivered.lock().await.clone();
        assert_eq!(delivered.len(), 3, "{delivered:?}");
        assert_eq!(refused.load(Ordering::SeqCst), 0);
        assert_eq!(failed_calls(&srv), 0);
        assert_eq!(
            seen.authorization.lock().await.as_deref(),
            Some("Basic b3BzOnMzY3JldA=="),
            "ops:s3cret"
        );
    }

    async fn an_https_webhook_with_a_certificate_from_another_ca_is_refused_and_nothing_is_delivered(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let certificates = Certificates::make();
        let (app, seen) = receiving(0, Duration::ZERO);
        // The receiver's certificate is other-ca's; the pusher trusts ca (and the system).
        let (addr, refused) = serve_tls(app, &certificates, "other-ca").await;
        let numbers = add(&srv, 0, 2).await;
        accept_all(&srv, &token, &numbers).await;
        let url = format!("https://localhost:{}/hook", addr.port());
        let _pusher = push_trusting(&srv, &url, Some(&certificates.path("ca.crt")));
        until("a refused handshake", async || refused.load(Ordering::SeqCst) >= 1).await;
        until("a failed call", async || failed_calls(&srv) >= 1).await;
        assert_eq!(seen.calls.load(Ordering::SeqCst), 0, "no request was sent");
        assert_eq!(waiting(&srv).await, 2, "the outbox still holds both events");
    }

    async fn a_webhook_that_redirects_is_a_failed_delivery_and_the_redirect_is_not_followed(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let (elsewhere, seen) = receiving(0, Duration::ZERO);
        let redirects = Arc::new(AtomicUsize::new(0));
        let counted = redirects.clone();
        let app = axum::Router::new()
            .route(
                "/moved",
                axum::routing::post(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        (
                            StatusCode::TEMPORARY_REDIRECT,
                            [(axum::http::header::LOCATION, "/hook")],
                        )
                    }
                }),
            )
            .merge(elsewhere);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let numbers = add(&srv, 0, 2).await;
        accept_all(&srv, &token, &numbers).await;
        let _pusher = push(&srv, &format!("http://{addr}/moved"));
        until("a failed call", async || failed_calls(&srv) >= 1).await;
        assert!(redirects.load(Ordering::SeqCst) >= 1);
        assert_eq!(seen.calls.load(Ordering::SeqCst), 0, "the redirect was not followed");
        assert_eq!(waiting(&srv).await, 2, "nothing marked delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgresql_database_never_push_at_the_same_time() {
    db::require_postgres("two_servers_on_one_postgresql_database_never_push_at_the_same_time");
    let first = TestServer::start(Backend::Postgres).await;
    let second = TestServer::start_on(first.db.clone(), Default::default()).await;
    let token = first.login().await;
    // Each call takes a while, so overlapping pushes would show.
    let (url, seen) = receiver(0, Duration::from_millis(50)).await;
    let _a = push(&first, &url);
    let _b = push(&second, &url);
    let mut all = Vec::new();
    for round in 0..10 {
        let numbers = add(&first, round * 30, 30).await;
        let (a, b) = numbers.split_at(15);
        accept_all(&first, &token, a).await;
        accept_all(&second, &token, b).await;
        all.extend(numbers);
    }
    until("every event delivered", async || waiting(&first).await == 0).await;
    let delivered = seen.delivered.lock().await.clone();
    assert_eq!(
        seen.most_at_once.load(Ordering::SeqCst),
        1,
        "never two calls at once"
    );
    let unique: HashSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), all.len());
    assert_eq!(delivered.len(), all.len(), "none delivered twice");
}
