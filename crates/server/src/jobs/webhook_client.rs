//! The server's one HTTP client, for its own outgoing calls: the outbox webhook and the
//! demo's simulated Netflix side. Built once at start and shared (a `reqwest::Client` is
//! a handle; clones share its connections).
//!
//! - `http://` and `https://`; TLS by rustls with the *ring* provider (as sqlx's), the
//!   certificate and host name checked against the system's roots plus, when given, the
//!   certificates of the PEM file `outbox_webhook_ca` (for a receiver with a private CA).
//!   The file is read once, when the client is built: a new CA takes a restart.
//! - A call gives up after [`CALL_TIMEOUT`] all told, and after [`CONNECT_TIMEOUT`] if
//!   no connection (with its TLS handshake) is made by then.
//! - Redirects are not followed: a 3xx is the answer, which for the webhook is a failed
//!   delivery (retried like any other), so signed events never go somewhere else.
//! - No proxy: `HTTP_PROXY`/`HTTPS_PROXY` are ignored, chargegate connects directly.
//! - HTTP/1.1 only. Connections are kept for reuse, one idle connection per host at most
//!   (the pusher makes one call at a time), and only for [`IDLE_KEPT`]: shorter than the
//!   shortest keep-alive common servers grant (Node.js closes after 5 s), so a reused
//!   connection is not one the receiver is closing at that moment.

use std::path::Path;
use std::time::Duration;

/// The longest a call may take, from connecting to the last byte of the answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest connecting (TCP and TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle connection is kept for the next call.
pub const IDLE_KEPT: Duration = Duration::from_secs(4);

/// The client, trusting the system's roots and, when `ca` is given, the certificates of
/// that PEM file. Errors are one line naming the file.
pub fn build(ca: Option<&Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(IDLE_KEPT)
        .user_agent(concat!("chargegate/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca {
        let named = |what: &str| format!("outbox_webhook_ca {}: {what}", path.display());
        let pem = std::fs::read(path).map_err(|e| named(&format!("cannot read it: {e}")))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| named(&format!("not PEM certificates: {}", describe(&e))))?;
        if certificates.is_empty() {
            return Err(named(
                "holds no certificate (expected -----BEGIN CERTIFICATE----- blocks)",
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
        return builder
            .build()
            .map_err(|e| named(&format!("not a usable CA certificate: {}", describe(&e))));
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", describe(&e)))
}

/// An error as one line with its causes, and without the URL (which may hold
/// credentials): `error sending request: client error (Connect): invalid peer
/// certificate: UnknownIssuer`.
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = cause {
        let line = match e.downcast_ref::<reqwest::Error>() {
            Some(e) => without_url(e),
            None => e.to_string(),
        };
        // Some errors repeat their cause in their own text.
        if !line.is_empty() && !text.contains(&line) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&line);
        }
        cause = e.source();
    }
    text
}

/// A reqwest error's own text, without the URL it names.
fn without_url(error: &reqwest::Error) -> String {
    let text = error.to_string();
    match error.url() {
        Some(url) => text.replace(&format!(" for url ({url})"), ""),
        None => text,
    }
}

/// A URL as it may be logged: its scheme, host and port only, since a user name and
/// password, a path or a query may each hold a credential (`https://hooks.example.com`).
pub fn loggable(url: &reqwest::Url) -> String {
    let origin = url.origin();
    if origin.is_tuple() {
        origin.ascii_serialization()
    } else {
        format!("{}:", url.scheme())
    }
}

/// [`loggable`] for a URL as written in the settings; something that is not a URL is
/// shown as `<not a URL>` rather than as written.
pub fn loggable_text(url: &str) -> String {
    if url.is_empty() {
        return String::new();
    }
    reqwest::Url::parse(url).map_or_else(|_| "<not a URL>".to_owned(), |u| loggable(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loggable_url_keeps_only_scheme_host_and_port() {
        for (url, shown) in [
            (
                "https://user:hunter2@hooks.example.com/t/hunter2?key=hunter2",
                "https://hooks.example.com",
            ),
            ("http://127.0.0.1:9000/events", "http://127.0.0.1:9000"),
            (
                "https://hooks.example.com:443/x",
                "https://hooks.example.com",
            ),
        ] {
            assert_eq!(loggable_text(url), shown);
        }
        assert_eq!(loggable_text("not a url hunter2"), "<not a URL>");
        assert_eq!(loggable_text(""), "");
    }

    #[test]
    fn an_unusable_ca_file_is_one_line_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.pem");
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").expect("write");
        let garbage = dir.path().join("garbage.pem");
        // Well-formed PEM around bytes that are no certificate.
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        for (path, says) in [
            (&missing, "cannot read it"),
            (&text, "holds no certificate"),
            (&garbage, "not a usable CA certificate"),
        ] {
            let err = build(Some(path)).expect_err("refused");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(says), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn without_a_ca_file_the_client_builds() {
        assert!(build(None).is_ok());
    }
}
