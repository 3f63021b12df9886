//! The operator console's needs: server-side sessions and the reads its pages show.
//!
//! Sessions live in the database so every server sharing it accepts them, and so that
//! disabling a user ends them at once. The expiry rule (absolute lifetime, idle timeout)
//! is decided here, once, for both backends.

use async_trait::async_trait;

use crate::accounts::UserSummary;
use crate::apikey::ApiKeyInfo;
use crate::charge::{Charge, ChargeStatus, StatusGroup};
use crate::clock::Timestamp;
use crate::error::StoreResult;
use crate::subscription::{LifeCycleState, NetflixState};
use crate::text::{ChargeNumber, CustomerId, OperatorCode, Username};
use crate::token::TokenHash;

/// How long a console session may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// From sign-in, whatever the use.
    pub ttl_seconds: i64,
    /// Since the last page the session asked for.
    pub idle_seconds: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            ttl_seconds: 8 * 3600,
            idle_seconds: 30 * 60,
        }
    }
}

/// A session to store at sign-in.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub hash: TokenHash,
    pub user_id: i64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A stored session and whom it speaks for.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user_id: i64,
    pub username: Username,
    pub operator_id: i64,
    pub operator_code: OperatorCode,
    pub operator_name: String,
    pub user_enabled: bool,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
}

impl SessionRecord {
    /// Whether the session may still be used at `now`: its user is enabled, its absolute
    /// lifetime has not run out, and it was used within the idle timeout.
    pub fn is_live(&self, now: Timestamp, policy: SessionPolicy) -> bool {
        self.user_enabled
            && now < self.expires_at
            && now < self.last_seen_at.plus_seconds(policy.idle_seconds)
    }
}

/// Decisions of one UTC day, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayDecisions {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub approved: u64,
    pub declined: u64,
    /// `BAD_REQUEST` and `REJECTED`.
    pub other: u64,
}

impl DayDecisions {
    pub fn total(&self) -> u64 {
        self.approved + self.declined + self.other
    }
}

/// What the overview page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// One count per status, in [`ChargeStatus::ALL`] order.
    pub counts: Vec<(ChargeStatus, u64)>,
    /// When the oldest `PENDING` charge was received.
    pub oldest_pending: Option<Timestamp>,
    /// The last [`OVERVIEW_DAYS`] days, oldest first, today last; days without a
    /// decision are present with zeros.
    pub days: Vec<DayDecisions>,
    /// The operator's outbox events not yet delivered to Netflix, and the oldest's time.
    pub outbox: crate::connector::OutboxBacklog,
}

/// How many days the overview's chart covers.
pub const OVERVIEW_DAYS: i64 = 30;

/// The UTC day of a time, as days since 1970-01-01.
pub fn day_of(t: Timestamp) -> i64 {
    t.unix().div_euclid(86_400)
}

/// Lays per-day counts out over the window ending on `today`: every day present, oldest
/// first. `found` is `(day, status reached, count)`.
pub fn lay_out_days(today: i64, found: &[(i64, ChargeStatus, u64)]) -> Vec<DayDecisions> {
    let first = today - (OVERVIEW_DAYS - 1);
    let mut days: Vec<DayDecisions> = (first..=today)
        .map(|day| DayDecisions {
            day,
            ..Default::default()
        })
        .collect();
    for &(day, status, n) in found {
        let Some(slot) = usize::try_from(day - first)
            .ok()
            .and_then(|i| days.get_mut(i))
        else {
            continue;
        };
        match status {
            ChargeStatus::Approved => slot.approved += n,
            ChargeStatus::Declined => slot.declined += n,
            ChargeStatus::BadRequest | ChargeStatus::Rejected => slot.other += n,
            ChargeStatus::Pending => {}
        }
    }
    days
}

/// A page of the console's charge table.
#[derive(Debug, Clone)]
pub struct ChargeSearch {
    pub operator_id: i64,
    /// `None`: every status.
    pub group: Option<StatusGroup>,
    pub customer: Option<CustomerId>,
    pub number: Option<ChargeNumber>,
    pub offset: u64,
    pub limit: u32,
}

/// A subscription as the console's search lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionHit {
    pub number: String,
    pub customer: CustomerId,
    pub netflix_customer: Option<String>,
    pub state: LifeCycleState,
    pub netflix_state: NetflixState,
    pub created_on: Timestamp,
}

/// One row of a subscription's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionEvent {
    pub at: Timestamp,
    pub event: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    /// The acting user's name, when a user acted.
    pub username: Option<String>,
    /// The charge whose decline caused the event, if one did.
    pub charge_number: Option<String>,
    /// The user acted in the console (the actor is then `console:<username>`).
    pub via_console: bool,
}

/// The reads and writes of the console that the API does not already have.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Stores a new session, records the sign-in as the user's last login, and forgets
    /// sessions that have run out.
    async fn create_session(&self, session: &NewSession) -> StoreResult<()>;
    /// The session with this hash, whatever its state (the caller decides).
    async fn session(&self, hash: &TokenHash) -> StoreResult<Option<SessionRecord>>;
    /// Marks the session as used at `now` (the idle timeout counts from here).
    async fn touch_session(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<()>;
    /// Ends a session (sign-out, or found expired).
    async fn end_session(&self, hash: &TokenHash) -> StoreResult<()>;

    async fn overview(&self, operator_id: i64, now: Timestamp) -> StoreResult<Overview>;
    /// Charges newest first (by `received_on`, then number), at most `limit`.
    async fn search_charges(&self, query: &ChargeSearch) -> StoreResult<Vec<Charge>>;
    /// The operator's subscriptions whose customer id or Netflix PAI is `text`, or (when
    /// `text` is empty) the newest ones; at most `limit`.
    async fn search_subscriptions(
        &self,
        operator_id: i64,
        text: &str,
        limit: u32,
    ) -> StoreResult<Vec<SubscriptionHit>>;
    /// One subscription of the operator by number, with its history oldest first.
    async fn subscription_page(
        &self,
        operator_id: i64,
        number: &str,
    ) -> StoreResult<Option<(SubscriptionHit, Vec<SubscriptionEvent>)>>;
    /// The operator's users and web API keys.
    async fn operator_people(
        &self,
        operator_id: i64,
    ) -> StoreResult<(Vec<UserSummary>, Vec<ApiKeyInfo>)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(last_seen: i64, expires: i64, enabled: bool) -> SessionRecord {
        SessionRecord {
            user_id: 1,
            username: Username::parse("demo").expect("name"),
            operator_id: 1,
            operator_code: OperatorCode::parse("pci").expect("code"),
            operator_name: "pci".into(),
            user_enabled: enabled,
            last_seen_at: Timestamp::from_unix(last_seen).expect("time"),
            expires_at: Timestamp::from_unix(expires).expect("time"),
        }
    }

    #[test]
    fn a_session_ends_at_its_absolute_expiry_or_when_idle_too_long_or_when_its_user_is_disabled() {
        let policy = SessionPolicy {
            ttl_seconds: 1000,
            idle_seconds: 100,
        };
        let at = |s| Timestamp::from_unix(s).expect("time");
        assert!(record(0, 1000, true).is_live(at(99), policy));
        assert!(!record(0, 1000, true).is_live(at(100), policy));
        assert!(record(950, 1000, true).is_live(at(999), policy));
        assert!(!record(950, 1000, true).is_live(at(1000), policy));
        assert!(!record(0, 1000, false).is_live(at(1), policy));
    }

    #[test]
    fn the_chart_has_every_day_of_the_window_and_sorts_outcomes() {
        let days = lay_out_days(
            100,
            &[
                (100, ChargeStatus::Approved, 2),
                (100, ChargeStatus::Rejected, 1),
                (71, ChargeStatus::Declined, 3),
                (70, ChargeStatus::Declined, 9),
            ],
        );
        assert_eq!(days.len(), 30);
        assert_eq!(days[0].day, 71);
        assert_eq!(days[0].declined, 3);
        assert_eq!(days[29].approved, 2);
        assert_eq!(days[29].other, 1);
        assert_eq!(days.iter().map(DayDecisions::total).sum::<u64>(), 6);
    }
}
