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

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Uri};
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
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Events per webhook call.
pub const BATCH: u32 = 100;
/// The first pause after a failure, and the longest.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// How often an idle pusher looks for new events.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Where to push, and with which secret.
#[derive(Clone)]
pub struct Webhook {
    pub uri: Uri,
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("uri", &self.uri)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Webhook {
    /// A webhook URL: `http://HOST[:PORT]/PATH`. (For HTTPS, put a TLS-terminating proxy
    /// on the same host in front of the receiver.)
    pub fn parse(url: &str, secret: String) -> Result<Webhook, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("the outbox webhook URL {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "the outbox webhook URL {url:?} must be http://HOST[:PORT]/PATH"
            ));
        }
        if secret.is_empty() {
            return Err(
                "an outbox webhook needs a secret (CHARGEGATE_OUTBOX_WEBHOOK_SECRET)".into(),
            );
        }
        Ok(Webhook { uri, secret })
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
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("t={t},v1={hex}")
}

/// One POST; `Ok(status)` when an answer came back in time.
async fn post(webhook: &Webhook, body: Bytes, signature: String) -> Result<u16, String> {
    crate::jobs::http_client::call(
        Method::POST,
        &webhook.uri,
        &[("x-chargegate-signature", signature)],
        body,
        CALL_TIMEOUT,
    )
    .await
    .map(|(status, _)| status)
}

/// A name for this server in the lease, unique per process start.
fn holder() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{random}", std::process::id())
}

/// Pushes until `stop` resolves.
pub async fn run(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    webhook: Webhook,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let holder = holder();
    let mut backoff = FIRST_RETRY;
    tracing::info!(webhook = %webhook.uri, "outbox webhook pushing");
    loop {
        if *stop.borrow() {
            return;
        }
        let pause = match push_once(&*store, &*clock, &metrics, &webhook, &holder).await {
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
                _ = tokio::time::sleep(pause) => {}
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
    match post(webhook, body, signed).await {
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
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
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
    fn only_plain_http_urls_with_a_secret_are_accepted() {
        assert!(Webhook::parse("http://127.0.0.1:9/hook", "k".into()).is_ok());
        assert!(Webhook::parse("https://example.com/hook", "k".into()).is_err());
        assert!(Webhook::parse("http://127.0.0.1:9/hook", String::new()).is_err());
        assert!(Webhook::parse("not a url", "k".into()).is_err());
    }
}
