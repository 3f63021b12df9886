//! Pushing the outbox to a webhook (`serve --outbox-webhook URL`).
//!
//! Batches of the oldest undelivered events (every operator's) are POSTed as
//! `{"events_set": […]}`, signed with `X-Chargegate-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256 of "<t>.<raw body>" keyed with the secret>`. Events are marked delivered
//! only after a 2xx answer; a failure is retried with exponential back-off (1 s, doubling,
//! at most 60 s). `GET outbox` keeps serving whatever is not delivered.
//!
//! Several servers may share a database; only the holder of the outbox lease pushes. The
//! lease lasts [`LEASE`] and is renewed before every batch, and a webhook call gives up
//! after [`CALL_TIMEOUT`], well within it, so two servers never deliver one event at the
//! same time (short of a process stalled for longer than the difference).
//!
//! The calls go through the server's one HTTP client ([`crate::jobs::webhook_client`]):
//! `http://` or `https://` with the certificate checked, redirects not followed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use chargegate_core::Store;
use chargegate_core::clock::Clock;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::edge::event::event_json;
use crate::metrics::Metrics;

/// How long a lease lasts without renewal, in seconds.
pub const LEASE: i64 = 30;
/// The longest a webhook call may take.
pub const CALL_TIMEOUT: Duration = crate::jobs::webhook_client::CALL_TIMEOUT;
/// Events per webhook call.
pub const BATCH: u32 = 100;
/// The first pause after a failure, and the longest.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// How often an idle pusher looks for new events.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Where to push, and with which secret. Neither is ever logged whole: a user name and
/// password, the path or the query of the URL may hold a credential.
#[derive(Clone)]
pub struct Webhook {
    pub url: reqwest::Url,
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &crate::jobs::webhook_client::loggable(&self.url))
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Webhook {
    /// A webhook URL: `http://` or `https://HOST[:PORT]/PATH`. A user name and password
    /// in it are sent as HTTP basic authentication. Messages never repeat the URL.
    pub fn parse(url: &str, secret: String) -> Result<Webhook, String> {
        const SHAPE: &str = "http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH";
        let url = reqwest::Url::parse(url)
            .map_err(|e| format!("the outbox webhook URL is not a URL ({e}): expected {SHAPE}"))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(format!(
                "the outbox webhook URL must be {SHAPE}, not a {}: URL",
                url.scheme()
            ));
        }
        if secret.is_empty() {
            return Err(
                "an outbox webhook needs a secret (CHARGEGATE_OUTBOX_WEBHOOK_SECRET)".into(),
            );
        }
        Ok(Webhook { url, secret })
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256>` of `body` at `t`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this cannot happen.
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex = chargegate_core::token::hex(&digest);
    format!("t={t},v1={hex}")
}

/// One POST; `Ok(status)` when an answer came back in time (a redirect is an answer,
/// not followed).
async fn post(
    client: &reqwest::Client,
    webhook: &Webhook,
    body: Bytes,
    signature: String,
) -> Result<u16, String> {
    let response = client
        .post(webhook.url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-chargegate-signature", signature)
        .timeout(CALL_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|e| crate::jobs::webhook_client::describe(&e))?;
    let status = response.status().as_u16();
    // Read the answer to its end, so the connection can serve the next call.
    let _ = response.bytes().await;
    Ok(status)
}

/// A name for this server in the lease, unique per process start.
fn holder() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let random: String = chargegate_core::token::hex(&bytes);
    format!("{}-{random}", std::process::id())
}

/// Pushes through `client` (the server's one, [`crate::jobs::webhook_client::build`]) until
/// `stop` resolves.
pub async fn run(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    webhook: Webhook,
    client: reqwest::Client,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let holder = holder();
    let mut backoff = FIRST_RETRY;
    tracing::info!(
        webhook = %crate::jobs::webhook_client::loggable(&webhook.url),
        "outbox webhook pushing"
    );
    loop {
        if *stop.borrow() {
            return;
        }
        let pause = match push_once(&*store, &*clock, &metrics, &client, &webhook, &holder).await {
            Pushed::Delivered => {
                backoff = FIRST_RETRY;
                Duration::ZERO
            }
            Pushed::Idle => {
                backoff = FIRST_RETRY;
                IDLE_POLL
            }
            Pushed::NotOurTurn => FIRST_RETRY,
            Pushed::Failed => {
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_RETRY);
                pause
            }
        };
        if !pause.is_zero() {
            let mut stop = stop.clone();
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

enum Pushed {
    Delivered,
    Idle,
    NotOurTurn,
    Failed,
}

async fn push_once(
    store: &dyn Store,
    clock: &dyn Clock,
    metrics: &Metrics,
    client: &reqwest::Client,
    webhook: &Webhook,
    holder: &str,
) -> Pushed {
    // A look first, on a reader: an idle pusher takes no lease, so it writes (and
    // fsyncs) nothing while there is nothing to send.
    match store.outbox(None, 1).await {
        Ok(events) if events.is_empty() => return Pushed::Idle,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "outbox webhook: cannot read the outbox");
            return Pushed::Failed;
        }
    }
    let now = clock.now();
    match store
        .take_push_lease(holder, now, now.plus_seconds(LEASE))
        .await
    {
        Ok(true) => {}
        Ok(false) => return Pushed::NotOurTurn,
        Err(e) => {
            tracing::warn!(error = %e, "outbox webhook: cannot take the lease");
            return Pushed::Failed;
        }
    }
    let events = match store.outbox(None, BATCH).await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "outbox webhook: cannot read the outbox");
            return Pushed::Failed;
        }
    };
    if events.is_empty() {
        return Pushed::Idle;
    }
    let body = json!({"events_set": events.iter().map(event_json).collect::<Vec<_>>()});
    let body = Bytes::from(body.to_string());
    let t = clock.now().unix();
    let signed = signature(&webhook.secret, t, &body);
    match post(client, webhook, body, signed).await {
        Ok(status) if (200..300).contains(&status) => {
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            if let Err(e) = store.ack_outbox(None, &ids, clock.now()).await {
                // Delivered but not marked: they will be delivered again (at least once).
                tracing::warn!(error = %e, "outbox webhook: delivered, but cannot mark so");
                return Pushed::Failed;
            }
            metrics.outbox_delivered(ids.len() as u64);
            tracing::debug!(events = ids.len(), "outbox webhook delivered");
            Pushed::Delivered
        }
        Ok(status) => {
            metrics.outbox_delivery_failed();
            tracing::warn!(status, "outbox webhook answered with a failure; will retry");
            Pushed::Failed
        }
        Err(why) => {
            metrics.outbox_delivery_failed();
            tracing::warn!(error = %why, "outbox webhook call failed; will retry");
            Pushed::Failed
        }
    }
}

/// Measures the backlog every few seconds for the metrics, until `stop` resolves.
pub async fn measure(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Ok(backlog) = store.outbox_backlog().await {
            let age = backlog.oldest.map_or(0, |t| clock.now().unix() - t.unix());
            metrics.outbox_backlog(backlog.waiting, age);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_time_dot_body() {
        // Computed independently: python3 -c 'import hmac, hashlib;
        // print(hmac.new(b"s", b"1.{}", hashlib.sha256).hexdigest())'
        assert_eq!(
            signature("s", 1, b"{}"),
            "t=1,v1=b253639bcd705ed1cda3073f66104f16988bd40272584dea7d0d345ae93e61cc"
        );
    }

    #[test]
    fn http_and_https_urls_with_a_secret_are_accepted() {
        assert!(Webhook::parse("http://127.0.0.1:9/hook", "k".into()).is_ok());
        assert!(Webhook::parse("https://example.com/hook", "k".into()).is_ok());
        assert!(Webhook::parse("http://127.0.0.1:9/hook", String::new()).is_err());
        assert!(Webhook::parse("not a url", "k".into()).is_err());
        assert!(Webhook::parse("ftp://example.com/hook", "k".into()).is_err());
        assert!(Webhook::parse("mailto:ops@example.com", "k".into()).is_err());
    }

    #[test]
    fn the_webhook_url_is_never_shown_whole() {
        let url = "https://ops:hunter2@hooks.example.com/hunter2?token=hunter2";
        let webhook = Webhook::parse(url, "k".into()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{webhook:?}").contains("hunter2"));
        for bad in ["https://ops:hunter2@", "ftp://ops:hunter2@example.com/"] {
            let err = Webhook::parse(bad, "k".into()).expect_err(bad);
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = Webhook::parse(url, String::new()).expect_err("no secret");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
