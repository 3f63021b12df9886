//! Netflix subscriptions and promotions, and the store seams that serve them and the web
//! API keys (docs/api.md, "Subscriptions").
//!
//! A customer (operator + `billing_system_customer_identifier`) has at most one *live*
//! subscription (not `CANCELLED`). A charge belongs to the live subscription of its
//! customer when it is stored; a decline of that charge cancels the subscription in the
//! same transaction. Every change of a subscription is written to its history.

use std::fmt;

use async_trait::async_trait;

use crate::apikey::{ApiKeyInfo, KeyHash, KeyLogin, NewApiKey, RevokeOutcome};
use crate::clock::Timestamp;
use crate::error::StoreResult;
use crate::money::Money;
use crate::text::{CustomerId, OperatorCode, TextError};
use crate::token::TokenHash;

/// How long `prices_set` and `promotions_set` look back, in calendar months.
pub const LOOK_BACK_MONTHS: u32 = 10;

/// The netflix token's lifetime when `validity_duration` is not given, in seconds.
pub const DEFAULT_VALIDITY_SECONDS: i64 = 3600;
/// The longest `validity_duration` accepted, in seconds.
pub const MAX_VALIDITY_SECONDS: i64 = 86_400;

/// Where a subscription is in its life. `Cancelled` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifeCycleState {
    Effective,
    /// Suspended.
    NotEffective,
    Cancelled,
}

impl LifeCycleState {
    pub const ALL: [LifeCycleState; 3] = [
        LifeCycleState::Effective,
        LifeCycleState::NotEffective,
        LifeCycleState::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            LifeCycleState::Effective => "EFFECTIVE",
            LifeCycleState::NotEffective => "NOT_EFFECTIVE",
            LifeCycleState::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for LifeCycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Netflix last said of the account (`netflix_sate` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetflixState {
    Effective,
    NotEffective,
}

impl NetflixState {
    pub fn as_str(&self) -> &'static str {
        match self {
            NetflixState::Effective => "EFFECTIVE",
            NetflixState::NotEffective => "NOT_EFFECTIVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [NetflixState::Effective, NetflixState::NotEffective]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// Where the customer signed up (`channel` of `subscriptions/create`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Web,
    Store,
    Mobile,
    Broadband,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Web,
        Channel::Store,
        Channel::Mobile,
        Channel::Broadband,
        Channel::Other,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Web => "WEB",
            Channel::Store => "STORE",
            Channel::Mobile => "MOBILE",
            Channel::Broadband => "BROADBAND",
            Channel::Other => "OTHER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The top-level fields of a subscription as `subscriptions/show` writes them, in order;
/// `fields_set` selects among these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionField {
    SubscriptionNumber,
    BillingSystemCustomerIdentifier,
    NetflixCustomerIdentifier,
    LifeCycleState,
    NetflixSate,
    CreatedOn,
    CancelledOn,
    PromotionsSet,
    PricesSet,
}

impl SubscriptionField {
    pub const ALL: [SubscriptionField; 9] = [
        SubscriptionField::SubscriptionNumber,
        SubscriptionField::BillingSystemCustomerIdentifier,
        SubscriptionField::NetflixCustomerIdentifier,
        SubscriptionField::LifeCycleState,
        SubscriptionField::NetflixSate,
        SubscriptionField::CreatedOn,
        SubscriptionField::CancelledOn,
        SubscriptionField::PromotionsSet,
        SubscriptionField::PricesSet,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            SubscriptionField::SubscriptionNumber => "subscription_number",
            SubscriptionField::BillingSystemCustomerIdentifier => {
                "billing_system_customer_identifier"
            }
            SubscriptionField::NetflixCustomerIdentifier => "netflix_customer_identifier",
            SubscriptionField::LifeCycleState => "life_cycle_state",
            // CRM.COM's spelling.
            SubscriptionField::NetflixSate => "netflix_sate",
            SubscriptionField::CreatedOn => "created_on",
            SubscriptionField::CancelledOn => "cancelled_on",
            SubscriptionField::PromotionsSet => "promotions_set",
            SubscriptionField::PricesSet => "prices_set",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// The fields of a promotion, in order; `promotions/list`'s `fields_set` selects among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PromotionField {
    Code,
    Name,
    Description,
    EffectiveFrom,
    ExpiresOn,
}

impl PromotionField {
    pub const ALL: [PromotionField; 5] = [
        PromotionField::Code,
        PromotionField::Name,
        PromotionField::Description,
        PromotionField::EffectiveFrom,
        PromotionField::ExpiresOn,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            PromotionField::Code => "code",
            PromotionField::Name => "name",
            PromotionField::Description => "description",
            PromotionField::EffectiveFrom => "effective_from",
            PromotionField::ExpiresOn => "expires_on",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// A promotion's code: 1–64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromotionCode(String);

impl PromotionCode {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(s: impl Into<String>) -> Result<Self, TextError> {
        let s = s.into();
        if s.is_empty() {
            return Err(TextError::Empty);
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(TextError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        if s.chars().any(char::is_control) {
            return Err(TextError::Control);
        }
        Ok(PromotionCode(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PromotionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A promotion as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    pub code: PromotionCode,
    pub name: String,
    pub description: Option<String>,
    pub effective_from: Timestamp,
    pub expires_on: Option<Timestamp>,
}

impl Promotion {
    /// Effective at `now`: `effective_from` ≤ now and (no expiry or `expires_on` > now).
    pub fn is_effective(&self, now: Timestamp) -> bool {
        self.effective_from <= now && self.expires_on.is_none_or(|e| e > now)
    }
}

#[derive(Debug, Clone)]
pub struct NewPromotion {
    pub operator_id: i64,
    pub promotion: Promotion,
    pub created_at: Timestamp,
}

/// Who made a change, for history rows: the user, the key its token came from (if any),
/// and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: i64,
    pub key_id: Option<i64>,
    pub request_id: String,
}

/// The customer data of `subscriptions/create`, stored as given and kept for the Netflix
/// side. The three objects are compact JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerDetails {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub address: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// A `subscriptions/create` call, checked.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub operator_id: i64,
    pub customer: CustomerId,
    pub promotion: Option<PromotionCode>,
    pub channel: Option<Channel>,
    pub details: CustomerDetails,
    /// The hash of the fresh netflix token, and when it stops working.
    pub token_hash: TokenHash,
    pub token_expires_at: Timestamp,
    pub at: Timestamp,
    pub actor: Actor,
}

/// What the customer's live subscription, if any, means for a create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatePlan {
    /// No live subscription: make one.
    New,
    /// A live one Netflix has not linked yet: hand it a fresh token (the old one stops
    /// working); a retried create is harmless.
    Renew { subscription_id: i64 },
    /// A live one already linked: `SUBSCRIPTION_EXISTS`.
    Exists,
}

/// The live subscription a create finds, as [`plan_create`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveSubscription {
    pub id: i64,
    pub linked: bool,
}

/// The rule of `subscriptions/create` (docs/api.md), shared by both backends.
pub fn plan_create(live: Option<LiveSubscription>) -> CreatePlan {
    match live {
        None => CreatePlan::New,
        Some(s) if s.linked => CreatePlan::Exists,
        Some(s) => CreatePlan::Renew {
            subscription_id: s.id,
        },
    }
}

/// The answer of a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created {
        number: String,
    },
    Renewed {
        number: String,
    },
    Exists,
    /// The promotion code names no promotion of the operator effective now.
    UnknownPromotion,
}

/// A subscription as `subscriptions/show` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub number: String,
    pub customer: CustomerId,
    pub netflix_customer: Option<String>,
    pub state: LifeCycleState,
    pub netflix_state: NetflixState,
    pub created_on: Timestamp,
    pub cancelled_on: Option<Timestamp>,
    /// Redeemed within the look-back, newest redemption first.
    pub promotions: Vec<Promotion>,
    /// Distinct prices of its charges received within the look-back, by the newest
    /// charge carrying each, newest first.
    pub prices: Vec<Money>,
}

/// A `subscriptions/show` call: at least one identifier.
#[derive(Debug, Clone)]
pub struct ShowQuery {
    pub operator_id: i64,
    pub customer: Option<CustomerId>,
    pub netflix_customer: Option<String>,
    /// The start of the look-back of `prices_set` and `promotions_set`.
    pub since: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShowOutcome {
    /// The customer's subscriptions, the live one first, then cancelled ones newest first
    /// (empty when there is none).
    Found(Vec<Subscription>),
    /// Both identifiers were given and do not name the same customer.
    Mismatch,
}

/// suspend (`EFFECTIVE` → `NOT_EFFECTIVE`) or unsuspend (the reverse).
#[derive(Debug, Clone)]
pub struct StateRequest {
    pub operator_id: i64,
    pub customer: CustomerId,
    pub target: LifeCycleState,
    pub at: Timestamp,
    pub actor: Actor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange {
    Changed,
    /// Already in the target state: a harmless repeat.
    Unchanged,
    /// No live subscription.
    NotFound,
}

/// What serving the subscription, promotion and key methods needs. Each method is one
/// transaction (writes) or one read.
#[async_trait]
pub trait Subscriptions: Send + Sync {
    /// The key with this hash, whatever its state (the caller refuses revoked keys and
    /// disabled users).
    async fn key_login(&self, hash: &KeyHash) -> StoreResult<Option<KeyLogin>>;

    /// Creates, renews or refuses per [`plan_create`], redeeming the promotion, in one
    /// transaction. Two creates for one customer at once end with one live subscription.
    async fn create_subscription(&self, new: &NewSubscription) -> StoreResult<CreateOutcome>;

    async fn show_subscriptions(&self, query: &ShowQuery) -> StoreResult<ShowOutcome>;

    /// Moves the customer's live subscription to `target` (history included).
    async fn set_subscription_state(&self, request: &StateRequest) -> StoreResult<StateChange>;

    /// The operator's promotions effective at `now`, by `effective_from` then `code`.
    async fn effective_promotions(
        &self,
        operator_id: i64,
        now: Timestamp,
    ) -> StoreResult<Vec<Promotion>>;
}

/// What the command line needs for keys and promotions.
#[async_trait]
pub trait SubscriptionsAdmin: Send + Sync {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<()>;
    /// Every key (of one operator, when given), oldest first.
    async fn api_keys(&self, operator_id: Option<i64>) -> StoreResult<Vec<ApiKeyInfo>>;
    /// Revokes the one key with this prefix, and every token issued from it, at once.
    async fn revoke_api_key(&self, prefix: &str, now: Timestamp) -> StoreResult<RevokeOutcome>;
    /// `Conflict` when the operator already has a promotion with this code.
    async fn create_promotion(&self, new: &NewPromotion) -> StoreResult<()>;
    /// Every promotion (of one operator, when given), effective or not, by operator code,
    /// `effective_from`, `code`.
    async fn promotions(
        &self,
        operator_id: Option<i64>,
    ) -> StoreResult<Vec<(OperatorCode, Promotion)>>;
}

/// `ts` moved back `months` calendar months (the day clamped to the target month's
/// length: 31 March minus one month is 28 or 29 February), same time of day.
pub fn months_before(ts: Timestamp, months: u32) -> Timestamp {
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(ts.unix()) else {
        return ts;
    };
    let index = dt.year() * 12 + i32::from(u8::from(dt.month())) - 1 - months as i32;
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    let Ok(month) = time::Month::try_from(month0 as u8 + 1) else {
        return ts;
    };
    let day = dt.day().min(time::util::days_in_month(month, year));
    let Ok(date) = time::Date::from_calendar_date(year, month, day) else {
        return ts;
    };
    let moved = date.with_time(dt.time()).assume_utc().unix_timestamp();
    Timestamp::from_unix(moved).unwrap_or(ts)
}

/// `FormattedPrice`: the amount with all of the currency's minor digits, a space, the code
/// (`9.90 EUR`, `1500 JPY`).
pub fn formatted_price(money: &Money) -> String {
    let digits = u32::from(money.currency().minor_units());
    let minor = money.minor();
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs} {}", money.currency());
    }
    let scale = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$} {}",
        abs / scale,
        abs % scale,
        money.currency(),
        width = digits as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).expect("timestamp")
    }

    #[test]
    fn a_create_makes_renews_or_refuses_by_the_live_subscription() {
        assert_eq!(plan_create(None), CreatePlan::New);
        assert_eq!(
            plan_create(Some(LiveSubscription {
                id: 7,
                linked: false
            })),
            CreatePlan::Renew { subscription_id: 7 }
        );
        assert_eq!(
            plan_create(Some(LiveSubscription {
                id: 7,
                linked: true
            })),
            CreatePlan::Exists
        );
    }

    #[test]
    fn ten_months_back_is_counted_in_calendar_months() {
        assert_eq!(
            months_before(at("2026-11-26T20:00:00"), 10),
            at("2026-01-26T20:00:00")
        );
        assert_eq!(
            months_before(at("2026-03-31T01:02:03"), 1),
            at("2026-02-28T01:02:03")
        );
        assert_eq!(
            months_before(at("2026-02-15T00:00:00"), 10),
            at("2025-04-15T00:00:00")
        );
    }

    #[test]
    fn formatted_prices_carry_every_minor_digit() {
        let eur = Currency::parse("EUR").expect("EUR");
        let jpy = Currency::parse("JPY").expect("JPY");
        assert_eq!(
            formatted_price(&Money::parse("9.9", eur).expect("m")),
            "9.90 EUR"
        );
        assert_eq!(
            formatted_price(&Money::parse("9.99", eur).expect("m")),
            "9.99 EUR"
        );
        assert_eq!(
            formatted_price(&Money::parse("1500", jpy).expect("m")),
            "1500 JPY"
        );
    }

    #[test]
    fn promotions_are_effective_from_their_start_until_just_before_expiry() {
        let p = Promotion {
            code: PromotionCode::parse("P1").expect("code"),
            name: "p".into(),
            description: None,
            effective_from: at("2026-01-01T00:00:00"),
            expires_on: Some(at("2026-02-01T00:00:00")),
        };
        assert!(!p.is_effective(at("2025-12-31T23:59:59")));
        assert!(p.is_effective(at("2026-01-01T00:00:00")));
        assert!(p.is_effective(at("2026-01-31T23:59:59")));
        assert!(!p.is_effective(at("2026-02-01T00:00:00")));
    }

    #[test]
    fn field_names_keep_crm_com_spelling() {
        for f in SubscriptionField::ALL {
            assert_eq!(SubscriptionField::parse(f.name()), Some(f));
        }
        assert_eq!(
            SubscriptionField::parse("netflix_sate"),
            Some(SubscriptionField::NetflixSate)
        );
        assert_eq!(SubscriptionField::parse("netflix_state"), None);
    }
}
