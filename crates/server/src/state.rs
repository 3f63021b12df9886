//! What every handler can reach: the store, the clock, and the settings and counters that
//! the API and the console share.

use std::sync::Arc;

use chargegate_core::Store;
use chargegate_core::clock::Clock;
use chargegate_core::store::LoginPolicy;

use crate::auth::jwt::Secrets;
use crate::auth::passwords::Passwords;
use crate::auth::ratelimit::OperatorRateLimit;
use crate::console::settings::ConsoleSettings;
use crate::edge::EdgeSettings;
use crate::metrics::Metrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Where handlers read the time; tests move a manual clock instead of sleeping.
    pub clock: Arc<dyn Clock>,
    pub passwords: Arc<Passwords>,
    pub auth: AuthSettings,
    /// This server's own counts, served on the metrics listener when there is one.
    pub metrics: Arc<Metrics>,
    /// Timeouts and limits of the HTTP edge.
    pub edge: EdgeSettings,
    /// Requests per second each operator may make.
    pub rate_limit: Arc<OperatorRateLimit>,
    /// The secrets tokens are signed with, as last read from the database.
    pub token_secrets: Arc<Secrets>,
    /// The operator console at `/console/`: on or off, its cookies and sessions.
    pub console: Arc<ConsoleSettings>,
}

/// Tokens' lifetime and the login lockout.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings {
    /// Lifetime of a token from issue, in seconds, regardless of use.
    pub token_ttl_seconds: i64,
    pub login: LoginPolicy,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            token_ttl_seconds: 7200,
            login: LoginPolicy::default(),
        }
    }
}
