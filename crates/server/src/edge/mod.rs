//! The HTTP edge: accepting connections and speaking HTTP/1.1 on them, with limits.
//!
//! hyper serves each connection; its own facilities bound the time a client may take to
//! send a request head (`header_read_timeout`, which also runs while a kept-alive
//! connection waits for its next request, so it closes idle connections too) and the size
//! of a head (`max_buf_size`, `max_headers`). tower-http's `RequestBodyTimeoutLayer`
//! bounds the time to receive a body (see [`middleware::around`]). Around hyper this
//! module adds what it does not offer:
//!
//! - a cap on open connections: past it, a new connection gets an immediate
//!   `503 SERVICE_UNAVAILABLE` in the envelope and is closed; open ones are unaffected;
//! - a shutdown deadline: on shutdown, idle connections close at once, requests in
//!   flight may finish, and whatever is still open at the deadline is closed;
//! - the envelope for hyper's own answers to requests it cannot parse (`400`, `414`,
//!   `431`), which hyper writes with an empty body: see [`EdgeIo`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::metrics::Metrics;
use context::new_request_id;
use envelope::{Empty, Envelope};
use error::Code;

pub mod code;
pub mod context;
pub mod envelope;
pub mod error;
pub mod event;
pub mod extract;
pub mod fields;
pub mod middleware;

/// Limits of the HTTP edge. Defaults suit a server facing billing systems over the
/// internet; see the README's configuration table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeSettings {
    /// Time to receive a complete request head, counted from when the connection is ready
    /// for one: from its accept, or from the previous response on a kept-alive
    /// connection (so it is also how long an idle connection stays open).
    pub header_timeout: Duration,
    /// Time to receive a request's whole body, counted from its head.
    pub body_timeout: Duration,
    /// Connections open at once; more are refused with 503.
    pub max_connections: usize,
    /// After a shutdown begins, how long requests in flight may take before every
    /// remaining connection is closed.
    pub shutdown_timeout: Duration,
    /// Largest request head (request line and headers), in bytes: larger is 431.
    pub max_header_bytes: usize,
    /// Longest request target (path and query), in bytes: longer is 414.
    pub max_url_bytes: usize,
    /// Which HTTP status an error envelope is answered with.
    pub http_errors: HttpErrors,
}

/// Which HTTP status an answer carrying an error envelope gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpErrors {
    /// The status of the error's code (`401` for `INVALID_TOKEN`, …), as HTTP tooling
    /// expects.
    #[default]
    Rest,
    /// `200` for every envelope, the code staying in `status.code`, as clients written
    /// for CRM.COM on .NET `HttpWebRequest` or Guzzle's defaults need: they treat any
    /// other status as a transport failure and never read the envelope. Health probes
    /// (`/healthz`, `/readyz`) keep their real statuses for load balancers.
    Crm,
}

impl HttpErrors {
    /// The status line's code and reason for an error envelope whose code means `status`.
    pub fn status_line(self, status: u16, reason: &'static str) -> (u16, &'static str) {
        match self {
            HttpErrors::Rest => (status, reason),
            HttpErrors::Crm => (200, "OK"),
        }
    }
}

/// Most header fields in one request (hyper's default); more is 431.
pub const MAX_HEADERS: usize = 100;

/// hyper's smallest head buffer.
pub const MIN_HEADER_BYTES: usize = 8192;

impl Default for EdgeSettings {
    fn default() -> Self {
        EdgeSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1000,
            shutdown_timeout: Duration::from_secs(20),
            max_header_bytes: 16 * 1024,
            max_url_bytes: 8 * 1024,
            http_errors: HttpErrors::Rest,
        }
    }
}

/// Refusals of connections over the cap under way at once (each may wait a moment for
/// the client); past this a refusal is written without waiting (see `refuse_at_once`).
const MAX_REFUSALS: usize = 64;

/// How long a refused connection is given to take its 503.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// How long a refused connection's request is read (and discarded) after the answer.
const REFUSAL_DRAIN: Duration = Duration::from_millis(250);

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets
/// requests in flight finish for up to `edge.shutdown_timeout`, and closes the rest.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    edge: EdgeSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(edge.header_timeout)
        .max_buf_size(edge.max_header_bytes.max(MIN_HEADER_BYTES))
        .max_headers(MAX_HEADERS);
    let connections = Arc::new(Semaphore::new(edge.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics.connection_refused();
            match refusals.clone().try_acquire_owned() {
                Ok(refusal) => {
                    tasks.spawn(async move {
                        let _refusal = refusal;
                        let _ =
                            tokio::time::timeout(REFUSAL_TIME, refuse(stream, edge.http_errors))
                                .await;
                    });
                }
                // Too many refusals under way: answer what fits in the socket's buffer
                // now, without waiting, and close.
                Err(_) => refuse_at_once(&stream, edge.http_errors),
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(EdgeIo::new(stream, metrics.clone(), edge.http_errors));
        // Handlers may ask who connected (the console believes `X-Forwarded-Proto` only
        // from a trusted proxy).
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let connection = graceful.watch(builder.serve_connection(io, service));
        let open = metrics.connection_opened();
        tasks.spawn(async move {
            let _permit = permit;
            let _open = open;
            if let Err(e) = connection.await {
                tracing::debug!(error = %e.to_string().escape_debug(), "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!(
        open = tasks.len(),
        "stopped accepting; waiting for requests in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(edge.shutdown_timeout) => {
            tracing::warn!(
                deadline_s = edge.shutdown_timeout.as_secs_f64(),
                "shutdown deadline passed; closing the remaining connections"
            );
        }
    }
    tasks.shutdown().await;
    Ok(())
}

/// Accept errors are per connection (the client went away) or about resources (out of
/// descriptors): neither stops the server. A short pause lets descriptors free up
/// instead of spinning.
async fn accept_failed(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e.to_string().escape_debug(), "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Answers a connection over the cap with `503` and closes it. What the client already
/// sent is read (a little) before closing, so that the close does not reset the
/// connection before the client reads the answer.
async fn refuse(mut stream: TcpStream, mode: HttpErrors) {
    if stream.write_all(&refusal(mode)).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_DRAIN, drain).await;
}

/// [`refuse`] without waiting: what the client sent so far is read, the answer written
/// as far as the socket takes it, and the connection closed.
fn refuse_at_once(stream: &TcpStream, mode: HttpErrors) {
    let mut sink = [0u8; 4096];
    while matches!(stream.try_read(&mut sink), Ok(n) if n > 0) {}
    let _ = stream.try_write(&refusal(mode));
}

/// The `503` envelope answer for a connection over the cap (`200` in CRM mode).
fn refusal(mode: HttpErrors) -> Vec<u8> {
    let id = new_request_id();
    tracing::warn!(request_id = %id, "connection refused: too many open connections");
    let (status, reason) = mode.status_line(503, "Service Unavailable");
    envelope_response(
        status,
        reason,
        Code::ServiceUnavailable,
        "the server has too many open connections; retry later",
        &id,
        &["retry-after: 1"],
    )
}

/// A complete HTTP/1.1 response carrying an error envelope, for answers written outside
/// the router.
fn envelope_response(
    status: u16,
    reason: &str,
    code: Code,
    message: &str,
    request_id: &str,
    extra_headers: &[&str],
) -> Vec<u8> {
    let body = serde_json::to_vec(&Envelope::new(
        Empty {},
        code,
        String::new(),
        message.to_owned(),
    ))
    .unwrap_or_else(|_| b"{}".to_vec());
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n",
        body.len()
    );
    for h in extra_headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// The TCP stream as hyper sees it, which puts hyper's own error answers in the envelope.
///
/// When hyper cannot parse a request head it answers by itself, with a bare head and no
/// body (`400` for a bad request line, header or conflicting lengths, `414` for a request
/// target past its limit, `431` for a head too large), and closes the connection; there
/// is no hook for the body. Those answers are the only ones without a `content-type`
/// (every answer of the router has one), so this wrapper recognises them as they are
/// written and writes the same status with an envelope, a request id and
/// `connection: close` instead. Everything else passes through untouched.
struct EdgeIo {
    inner: TcpStream,
    /// A replacement answer still being written, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
    metrics: Arc<Metrics>,
    mode: HttpErrors,
}

impl EdgeIo {
    fn new(inner: TcpStream, metrics: Arc<Metrics>, mode: HttpErrors) -> Self {
        EdgeIo {
            inner,
            pending: None,
            metrics,
            mode,
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written >= bytes.len() {
                self.pending = None;
                break;
            }
            let n =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// The envelope answer replacing `head`, when `head` is one of hyper's own.
    fn replacement(&self, head: &[u8]) -> Option<Vec<u8>> {
        let (status, reason, code, message) = match head.get(..13)? {
            b"HTTP/1.1 400 " => (
                400,
                "Bad Request",
                Code::MalformedRequest,
                "the request line or headers are not valid HTTP/1.1",
            ),
            b"HTTP/1.1 414 " => (
                414,
                "URI Too Long",
                Code::UriTooLong,
                "the request target (path and query) is too long",
            ),
            b"HTTP/1.1 431 " => (
                431,
                "Request Header Fields Too Large",
                Code::HeadersTooLarge,
                "the request's headers are too large or too many",
            ),
            _ => return None,
        };
        let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head_text = std::str::from_utf8(&head[..end]).ok()?.to_ascii_lowercase();
        if head_text.contains("\r\ncontent-type:") || head.len() != end + 4 {
            return None;
        }
        let id = new_request_id();
        tracing::info!(
            request_id = %id,
            status,
            "request refused: it is not valid HTTP/1.1 or exceeds a limit"
        );
        // Metrics and logs keep the status of the code in either mode.
        self.metrics
            .request_finished("unparsed", status, Duration::ZERO);
        let (status, reason) = self.mode.status_line(status, reason);
        Some(envelope_response(status, reason, code, message, &id, &[]))
    }
}

impl AsyncRead for EdgeIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if let Some(answer) = self.replacement(buf) {
            self.pending = Some((answer, 0));
            // The original is consumed; the replacement goes out on this and later polls.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then hands each answer's head to `poll_write` in one buffer,
    // which is what `replacement` looks at.
    fn is_write_vectored(&self) -> bool {
        false
    }
}
