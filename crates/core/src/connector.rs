//! The Netflix side: the connector API (docs/api.md, "Connector API").
//!
//! A *connector* is the process that talks to Netflix. It feeds charges in (intake),
//! reports Netflix's own verdicts, links subscriptions, upserts promotions, and carries
//! out the outbox: every event Netflix must hear of, written in the same transaction as
//! the change. The per-item rules live here as pure functions of (items, snapshot), so
//! both backends judge alike; the stores read the snapshot inside their write transaction
//! and write what the rules planned.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;

use crate::apikey::{KeyHash, RevokeOutcome};
use crate::charge::{Charge, ChargeStatus};
use crate::clock::{Date, Timestamp};
use crate::error::StoreResult;
use crate::money::{Currency, Money};
use crate::subscription::{CustomerDetails, LifeCycleState, NetflixState, Promotion};
use crate::text::{ChargeNumber, CustomerId, OperatorCode};
use crate::token::TokenHash;

/// Most items one connector call may carry.
pub const MAX_ITEMS: usize = 500;
/// Most events one `GET outbox` answers, and its default.
pub const MAX_EVENTS: u32 = 500;
pub const DEFAULT_EVENTS: u32 = 100;
/// What every connector key starts with, so a leaked one is recognisable (web API keys
/// start with `cgk_`).
pub const CONNECTOR_KEY_MARK: &str = "cgc_";
/// Longest `netflix_charge_identifier`, `netflix_customer_identifier` and `reason`.
pub const MAX_NETFLIX_ID_CHARS: usize = 128;
pub const MAX_REASON_CHARS: usize = 512;

/// The per-item `error_code`s of the connector's batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemCode {
    InvalidParameter,
    DuplicateInRequest,
    CustomerNotFound,
    Conflict,
    ChargeNotFound,
    ChargeAlreadyProcessed,
}

impl ItemCode {
    pub const ALL: [ItemCode; 6] = [
        ItemCode::InvalidParameter,
        ItemCode::DuplicateInRequest,
        ItemCode::CustomerNotFound,
        ItemCode::Conflict,
        ItemCode::ChargeNotFound,
        ItemCode::ChargeAlreadyProcessed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ItemCode::InvalidParameter => "INVALID_PARAMETER",
            ItemCode::DuplicateInRequest => "DUPLICATE_IN_REQUEST",
            ItemCode::CustomerNotFound => "CUSTOMER_NOT_FOUND",
            ItemCode::Conflict => "CONFLICT",
            ItemCode::ChargeNotFound => "CHARGE_NOT_FOUND",
            ItemCode::ChargeAlreadyProcessed => "CHARGE_ALREADY_PROCESSED",
        }
    }
}

/// Why one item failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    pub code: ItemCode,
    pub description: String,
}

impl ItemFailure {
    pub fn new(code: ItemCode, description: impl Into<String>) -> Self {
        ItemFailure {
            code,
            description: description.into(),
        }
    }
}

// ---- keys ------------------------------------------------------------------------------

/// A connector key to store.
#[derive(Debug, Clone)]
pub struct NewConnectorKey {
    pub operator_id: i64,
    pub prefix: String,
    pub hash: KeyHash,
    pub name: Option<String>,
    pub created_at: Timestamp,
}

/// A stored connector key as `connector-key list` shows it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorKeyInfo {
    pub prefix: String,
    pub operator: OperatorCode,
    pub name: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// Whom a connector key speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorCaller {
    pub key_id: i64,
    pub operator_id: i64,
    pub operator_code: OperatorCode,
    pub local_currency: Currency,
    pub revoked: bool,
}

/// Who writes a connector call, for history rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorActor {
    pub key_id: i64,
    pub operator_id: i64,
    pub request_id: String,
    pub at: Timestamp,
}

// ---- intake ----------------------------------------------------------------------------

/// A well-formed intake item. `local_amount` is resolved at the edge (it equals `amount`
/// when that is in the operator's local currency); `local_amount_given` says whether the
/// item named it, since only given fields are compared with a stored charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeItem {
    pub netflix_charge_id: String,
    pub customer: Option<CustomerId>,
    pub netflix_customer: Option<String>,
    pub amount: Money,
    pub local_amount: Money,
    pub local_amount_given: bool,
    pub paid_through_date: Date,
    pub received_on: Option<Timestamp>,
}

/// One intake item as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeInput {
    /// `netflix_charge_identifier` as sent, when a string: echoed, and used to find
    /// repeats within the call even when another field is invalid.
    pub netflix_charge_id: Option<String>,
    pub parsed: Result<IntakeItem, ItemFailure>,
}

/// A charge already stored under a `netflix_charge_identifier`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNetflixCharge {
    pub number: ChargeNumber,
    pub customer: CustomerId,
    pub amount: Money,
    pub local_amount: Money,
    pub paid_through_date: Date,
    pub received_on: Timestamp,
}

/// What intake is judged against, read inside the write transaction.
#[derive(Debug, Clone, Default)]
pub struct IntakeSnapshot {
    /// The operator's charges among the call's `netflix_charge_identifier`s.
    pub stored: HashMap<String, StoredNetflixCharge>,
    /// The customers of the operator's live subscriptions linked to the call's PAIs.
    pub linked: HashMap<String, CustomerId>,
    /// The highest stored charge number of the generated shape.
    pub max_generated: Option<u32>,
}

/// A charge intake will insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeRow {
    pub number: ChargeNumber,
    pub netflix_charge_id: String,
    pub customer: CustomerId,
    pub netflix_customer: Option<String>,
    pub amount: Money,
    pub local_amount: Money,
    pub paid_through_date: Date,
    pub received_on: Timestamp,
}

/// The outcome of one intake item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// Stored now, or already stored with the same data: its number.
    Stored {
        netflix_charge_id: String,
        number: ChargeNumber,
    },
    Failed {
        netflix_charge_id: Option<String>,
        failure: ItemFailure,
    },
}

/// Judges an intake call and plans its inserts (in request order). Charge numbers continue
/// after `snapshot.max_generated`. Returns `None` when the numbers would run out.
pub fn plan_intake(
    items: &[IntakeInput],
    snapshot: &IntakeSnapshot,
    now: Timestamp,
) -> Option<(Vec<IntakeOutcome>, Vec<IntakeRow>)> {
    let mut outcomes = Vec::with_capacity(items.len());
    let mut rows = Vec::new();
    let mut next = snapshot.max_generated.map_or(1, |n| n + 1);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (index, input) in items.iter().enumerate() {
        let earlier = input
            .netflix_charge_id
            .as_deref()
            .and_then(|id| seen.get(id).copied());
        if let Some(id) = input.netflix_charge_id.as_deref() {
            seen.entry(id).or_insert(index);
        }
        let failed = |code, text: String| IntakeOutcome::Failed {
            netflix_charge_id: input.netflix_charge_id.clone(),
            failure: ItemFailure::new(code, text),
        };
        let item = match &input.parsed {
            Err(e) => {
                outcomes.push(IntakeOutcome::Failed {
                    netflix_charge_id: input.netflix_charge_id.clone(),
                    failure: e.clone(),
                });
                continue;
            }
            Ok(item) => item,
        };
        if let Some(first) = earlier {
            outcomes.push(failed(
                ItemCode::DuplicateInRequest,
                format!(
                    "netflix_charge_identifier {} already appears earlier in this request, at charges_set[{first}]",
                    item.netflix_charge_id
                ),
            ));
            continue;
        }
        // The customer: by its own id, or through the live subscription linked to the PAI.
        let by_pai = match &item.netflix_customer {
            None => None,
            Some(pai) => {
                if let Some(c) = snapshot.linked.get(pai) {
                    Some(c)
                } else {
                    outcomes.push(failed(
                    ItemCode::CustomerNotFound,
                    format!("no live subscription of this operator is linked to netflix customer {pai}"),
                ));
                    continue;
                }
            }
        };
        let customer = match (&item.customer, by_pai) {
            (Some(given), Some(linked)) if given != linked => {
                outcomes.push(failed(
                    ItemCode::InvalidParameter,
                    format!("netflix_customer_identifier names customer {linked}, not {given}"),
                ));
                continue;
            }
            (Some(given), _) => given.clone(),
            (None, Some(linked)) => linked.clone(),
            (None, None) => {
                outcomes.push(failed(
                    ItemCode::InvalidParameter,
                    "billing_system_customer_identifier or netflix_customer_identifier is mandatory".into(),
                ));
                continue;
            }
        };
        if let Some(stored) = snapshot.stored.get(&item.netflix_charge_id) {
            let differences = intake_differences(item, &customer, stored);
            if differences.is_empty() {
                outcomes.push(IntakeOutcome::Stored {
                    netflix_charge_id: item.netflix_charge_id.clone(),
                    number: stored.number.clone(),
                });
            } else {
                outcomes.push(failed(
                    ItemCode::Conflict,
                    format!(
                        "netflix_charge_identifier {} is stored as charge {} with a different {}",
                        item.netflix_charge_id,
                        stored.number,
                        differences.join(", ")
                    ),
                ));
            }
            continue;
        }
        let number = ChargeNumber::generated(next)?;
        next += 1;
        outcomes.push(IntakeOutcome::Stored {
            netflix_charge_id: item.netflix_charge_id.clone(),
            number: number.clone(),
        });
        rows.push(IntakeRow {
            number,
            netflix_charge_id: item.netflix_charge_id.clone(),
            customer,
            netflix_customer: item.netflix_customer.clone(),
            amount: item.amount,
            local_amount: item.local_amount,
            paid_through_date: item.paid_through_date,
            received_on: item.received_on.unwrap_or(now),
        });
    }
    Some((outcomes, rows))
}

/// The fields an item gives that differ from the stored charge. Omitted optional fields
/// match; amounts compare as exact numbers (`9.99` = `9.990`).
fn intake_differences(
    item: &IntakeItem,
    customer: &CustomerId,
    stored: &StoredNetflixCharge,
) -> Vec<&'static str> {
    let mut diff = Vec::new();
    if *customer != stored.customer {
        diff.push("customer");
    }
    if item.amount != stored.amount {
        diff.push("amount");
    }
    if item.local_amount_given && item.local_amount != stored.local_amount {
        diff.push("local_currency_amount");
    }
    if item.paid_through_date != stored.paid_through_date {
        diff.push("paid_through_date");
    }
    if item.received_on.is_some_and(|r| r != stored.received_on) {
        diff.push("received_on");
    }
    diff
}

/// A whole intake call.
#[derive(Debug, Clone)]
pub struct IntakeRequest {
    pub actor: ConnectorActor,
    pub items: Vec<IntakeInput>,
}

impl IntakeRequest {
    /// The distinct identifiers and PAIs of the well-formed items: what the store reads.
    pub fn keys(&self) -> (Vec<&str>, Vec<&str>) {
        let mut ids: Vec<&str> = Vec::new();
        let mut pais: Vec<&str> = Vec::new();
        for item in self.items.iter().filter_map(|i| i.parsed.as_ref().ok()) {
            ids.push(&item.netflix_charge_id);
            if let Some(p) = &item.netflix_customer {
                pais.push(p);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        pais.sort_unstable();
        pais.dedup();
        (ids, pais)
    }
}

// ---- verdicts --------------------------------------------------------------------------

/// A well-formed verdict item: a charge by its Netflix id and/or its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictItem {
    pub netflix_charge_id: Option<String>,
    pub number: Option<ChargeNumber>,
    /// `BadRequest` or `Rejected`.
    pub status: ChargeStatus,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictInput {
    /// The identifiers as sent, when strings: echoed in failures.
    pub netflix_charge_id: Option<String>,
    pub number: Option<String>,
    pub parsed: Result<VerdictItem, ItemFailure>,
}

/// A stored charge as the verdict rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictCharge {
    pub id: i64,
    pub number: ChargeNumber,
    pub status: ChargeStatus,
}

#[derive(Debug, Clone, Default)]
pub struct VerdictSnapshot {
    /// The operator's charges named by the call, by Netflix id and by number.
    pub by_netflix_id: HashMap<String, VerdictCharge>,
    pub by_number: HashMap<ChargeNumber, VerdictCharge>,
}

/// One write of a verdict call: the charge moves from `PENDING` to `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictChange {
    pub charge_id: i64,
    pub status: ChargeStatus,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictOutcome {
    Applied,
    /// The charge already has this status: success, nothing changes.
    AlreadyDone,
    Failed(ItemFailure),
}

#[derive(Debug, Clone)]
pub struct VerdictRequest {
    pub actor: ConnectorActor,
    pub items: Vec<VerdictInput>,
}

impl VerdictRequest {
    pub fn keys(&self) -> (Vec<&str>, Vec<&str>) {
        let mut ids = Vec::new();
        let mut numbers = Vec::new();
        for item in self.items.iter().filter_map(|i| i.parsed.as_ref().ok()) {
            if let Some(id) = &item.netflix_charge_id {
                ids.push(id.as_str());
            }
            if let Some(n) = &item.number {
                numbers.push(n.as_str());
            }
        }
        ids.sort_unstable();
        ids.dedup();
        numbers.sort_unstable();
        numbers.dedup();
        (ids, numbers)
    }
}

/// Judges a verdict call in request order and plans its changes.
pub fn plan_verdicts(
    items: &[VerdictInput],
    snapshot: &VerdictSnapshot,
) -> (Vec<VerdictOutcome>, Vec<VerdictChange>) {
    let mut outcomes = Vec::with_capacity(items.len());
    let mut changes = Vec::new();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for (index, input) in items.iter().enumerate() {
        let item = match &input.parsed {
            Err(e) => {
                outcomes.push(VerdictOutcome::Failed(e.clone()));
                continue;
            }
            Ok(item) => item,
        };
        let failed = |code, text: String| VerdictOutcome::Failed(ItemFailure::new(code, text));
        let by_id = item
            .netflix_charge_id
            .as_ref()
            .map(|id| snapshot.by_netflix_id.get(id));
        let by_number = item.number.as_ref().map(|n| snapshot.by_number.get(n));
        let charge = match (by_id, by_number) {
            (Some(Some(a)), Some(Some(b))) if a.id != b.id => None,
            (Some(None), _) | (_, Some(None)) => None,
            (Some(Some(a)), _) => Some(a),
            (None, Some(Some(b))) => Some(b),
            (None, None) => None,
        };
        let shown = item
            .netflix_charge_id
            .clone()
            .or_else(|| item.number.as_ref().map(|n| n.as_str().to_owned()))
            .unwrap_or_default();
        let Some(charge) = charge else {
            outcomes.push(failed(
                ItemCode::ChargeNotFound,
                format!("no charge {shown} for this operator"),
            ));
            continue;
        };
        if let Some(first) = seen.get(&charge.id) {
            outcomes.push(failed(
                ItemCode::DuplicateInRequest,
                format!(
                    "charge {} already appears earlier in this request, at charges_set[{first}]",
                    charge.number
                ),
            ));
            continue;
        }
        seen.insert(charge.id, index);
        if charge.status == item.status {
            outcomes.push(VerdictOutcome::AlreadyDone);
        } else if charge.status != ChargeStatus::Pending {
            outcomes.push(failed(
                ItemCode::ChargeAlreadyProcessed,
                format!("charge {} is already {}", charge.number, charge.status),
            ));
        } else {
            outcomes.push(VerdictOutcome::Applied);
            changes.push(VerdictChange {
                charge_id: charge.id,
                status: item.status,
                reason: item.reason.clone(),
            });
        }
    }
    (outcomes, changes)
}

// ---- activation, state, promotions -----------------------------------------------------

#[derive(Debug, Clone)]
pub struct Activation {
    pub actor: ConnectorActor,
    pub token: TokenHash,
    pub netflix_customer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationOutcome {
    Linked,
    /// Expired, spent, superseded, unknown or another operator's token.
    BadToken,
    /// The PAI is linked to another live subscription of the operator.
    PaiTaken,
}

#[derive(Debug, Clone)]
pub struct NetflixStateReport {
    pub actor: ConnectorActor,
    pub netflix_customer: String,
    pub state: NetflixState,
}

/// A promotion of an upsert call, as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionInput {
    pub code: Option<String>,
    pub parsed: Result<Promotion, ItemFailure>,
}

#[derive(Debug, Clone)]
pub struct PromotionUpsert {
    pub actor: ConnectorActor,
    pub items: Vec<PromotionInput>,
}

/// Judges a promotions call: which items to write and which failed (in request order).
pub fn plan_promotions(items: &[PromotionInput]) -> (Vec<Option<ItemFailure>>, Vec<&Promotion>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut outcomes = Vec::with_capacity(items.len());
    let mut writes = Vec::new();
    for (index, input) in items.iter().enumerate() {
        let earlier = input.code.as_deref().and_then(|c| seen.get(c).copied());
        if let Some(c) = input.code.as_deref() {
            seen.entry(c).or_insert(index);
        }
        match (&input.parsed, earlier) {
            (Err(e), _) => outcomes.push(Some(e.clone())),
            (Ok(p), Some(first)) => outcomes.push(Some(ItemFailure::new(
                ItemCode::DuplicateInRequest,
                format!(
                    "promotion {} already appears earlier in this request, at promotions_set[{first}]",
                    p.code
                ),
            ))),
            (Ok(p), None) => {
                outcomes.push(None);
                writes.push(p);
            }
        }
    }
    (outcomes, writes)
}

// ---- the outbox ------------------------------------------------------------------------

/// What Netflix must hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    ChargeApproved,
    ChargeDeclined,
    SubscriptionCreated,
    SubscriptionSuspended,
    SubscriptionUnsuspended,
    SubscriptionCancelled,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::ChargeApproved,
        EventType::ChargeDeclined,
        EventType::SubscriptionCreated,
        EventType::SubscriptionSuspended,
        EventType::SubscriptionUnsuspended,
        EventType::SubscriptionCancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::ChargeApproved => "charge.approved",
            EventType::ChargeDeclined => "charge.declined",
            EventType::SubscriptionCreated => "subscription.created",
            EventType::SubscriptionSuspended => "subscription.suspended",
            EventType::SubscriptionUnsuspended => "subscription.unsuspended",
            EventType::SubscriptionCancelled => "subscription.cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A subscription as an event shows it: as it was right after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSubscription {
    pub number: String,
    pub customer: CustomerId,
    pub netflix_customer: Option<String>,
    pub state: LifeCycleState,
    pub netflix_state: NetflixState,
    pub created_on: Timestamp,
    pub cancelled_on: Option<Timestamp>,
    /// For `subscription.created`: the customer data given at create, and the channel.
    pub customer_details: Option<(CustomerDetails, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSubject {
    Charge {
        charge: Box<Charge>,
        netflix_charge_id: Option<String>,
    },
    Subscription(Box<EventSubscription>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: i64,
    pub kind: EventType,
    pub operator: OperatorCode,
    pub occurred_on: Timestamp,
    pub reference_number: Option<String>,
    pub subject: EventSubject,
}

/// How many events wait, and since when the oldest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxBacklog {
    pub waiting: u64,
    pub oldest: Option<Timestamp>,
}

/// What serving the connector API needs. Writes are one transaction each.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The connector key with this hash, whatever its state.
    async fn connector_key(&self, hash: &KeyHash) -> StoreResult<Option<ConnectorCaller>>;

    /// Judges and stores an intake call in one transaction.
    async fn intake(&self, request: &IntakeRequest) -> StoreResult<Vec<IntakeOutcome>>;

    /// Judges and applies Netflix's verdicts in one transaction (subscriptions cancelled,
    /// their events written).
    async fn record_verdicts(&self, request: &VerdictRequest) -> StoreResult<Vec<VerdictOutcome>>;

    async fn activate(&self, request: &Activation) -> StoreResult<ActivationOutcome>;

    /// Records Netflix's state of the live subscription linked to the PAI; `false` when
    /// there is none.
    async fn report_netflix_state(&self, request: &NetflixStateReport) -> StoreResult<bool>;

    /// Creates or updates promotions by code; answers per item (`None` = written).
    async fn upsert_promotions(
        &self,
        request: &PromotionUpsert,
    ) -> StoreResult<Vec<Option<ItemFailure>>>;

    /// The oldest undelivered events, of one operator or (for the webhook) of all.
    async fn outbox(&self, operator_id: Option<i64>, limit: u32) -> StoreResult<Vec<OutboxEvent>>;

    /// Marks events delivered; unknown, foreign or already delivered ids are ignored.
    /// Answers how many changed.
    async fn ack_outbox(
        &self,
        operator_id: Option<i64>,
        ids: &[i64],
        at: Timestamp,
    ) -> StoreResult<u64>;

    async fn outbox_backlog(&self) -> StoreResult<OutboxBacklog>;

    /// Takes or renews the webhook lease for `holder` until `until`; `false` while
    /// another holder's lease runs.
    async fn take_push_lease(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool>;
}

/// What the command line needs for connector keys.
#[async_trait]
pub trait ConnectorAdmin: Send + Sync {
    async fn create_connector_key(&self, key: &NewConnectorKey) -> StoreResult<()>;
    /// Every connector key (of one operator, when given), oldest first.
    async fn connector_keys(&self, operator_id: Option<i64>) -> StoreResult<Vec<ConnectorKeyInfo>>;
    async fn revoke_connector_key(
        &self,
        prefix: &str,
        now: Timestamp,
    ) -> StoreResult<RevokeOutcome>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").expect("EUR")
    }

    fn item(id: &str, customer: Option<&str>, pai: Option<&str>, amount: &str) -> IntakeInput {
        IntakeInput {
            netflix_charge_id: Some(id.into()),
            parsed: Ok(IntakeItem {
                netflix_charge_id: id.into(),
                customer: customer.map(|c| CustomerId::parse(c).expect("id")),
                netflix_customer: pai.map(str::to_owned),
                amount: Money::parse(amount, eur()).expect("amount"),
                local_amount: Money::parse(amount, eur()).expect("amount"),
                local_amount_given: false,
                paid_through_date: Date::parse("2026-12-31").expect("date"),
                received_on: None,
            }),
        }
    }

    fn now() -> Timestamp {
        Timestamp::parse("2026-11-27T00:00:00").expect("now")
    }

    #[test]
    fn intake_numbers_new_charges_and_repeats_the_stored_ones() {
        let mut snapshot = IntakeSnapshot {
            max_generated: Some(41),
            ..Default::default()
        };
        snapshot.stored.insert(
            "N1".into(),
            StoredNetflixCharge {
                number: ChargeNumber::parse("I00000007").expect("n"),
                customer: CustomerId::parse("c1").expect("c"),
                amount: Money::parse("9.99", eur()).expect("m"),
                local_amount: Money::parse("9.99", eur()).expect("m"),
                paid_through_date: Date::parse("2026-12-31").expect("d"),
                received_on: now(),
            },
        );
        snapshot
            .linked
            .insert("PAI-2".into(), CustomerId::parse("c2").expect("c"));
        let items = [
            item("N1", Some("c1"), None, "9.990"),
            item("N2", None, Some("PAI-2"), "5"),
            item("N2", Some("c2"), None, "5"),
            item("N3", None, Some("PAI-9"), "5"),
            item("N1", Some("c1"), None, "9.98"),
            item("N4", Some("c1"), Some("PAI-2"), "5"),
        ];
        let (outcomes, rows) = plan_intake(&items, &snapshot, now()).expect("numbers");
        let codes: Vec<_> = outcomes
            .iter()
            .map(|o| match o {
                IntakeOutcome::Stored { number, .. } => number.as_str().to_owned(),
                IntakeOutcome::Failed { failure, .. } => failure.code.as_str().to_owned(),
            })
            .collect();
        assert_eq!(
            codes,
            [
                "I00000007",
                "I00000042",
                "DUPLICATE_IN_REQUEST",
                "CUSTOMER_NOT_FOUND",
                "DUPLICATE_IN_REQUEST",
                "INVALID_PARAMETER"
            ]
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].customer.as_str(), "c2");
        assert_eq!(rows[0].received_on, now());
    }

    #[test]
    fn a_stored_charge_with_different_data_is_a_conflict() {
        let mut snapshot = IntakeSnapshot::default();
        snapshot.stored.insert(
            "N1".into(),
            StoredNetflixCharge {
                number: ChargeNumber::parse("I00000001").expect("n"),
                customer: CustomerId::parse("c1").expect("c"),
                amount: Money::parse("9.99", eur()).expect("m"),
                local_amount: Money::parse("9.99", eur()).expect("m"),
                paid_through_date: Date::parse("2026-12-31").expect("d"),
                received_on: now(),
            },
        );
        let (outcomes, rows) =
            plan_intake(&[item("N1", Some("c2"), None, "9.99")], &snapshot, now()).expect("ok");
        assert!(rows.is_empty());
        assert!(matches!(&outcomes[0],
            IntakeOutcome::Failed { failure, .. } if failure.code == ItemCode::Conflict));
    }

    #[test]
    fn verdicts_apply_once_and_repeat_harmlessly() {
        let charge = |id, status| VerdictCharge {
            id,
            number: ChargeNumber::parse(format!("I0000000{id}")).expect("n"),
            status,
        };
        let mut snapshot = VerdictSnapshot::default();
        snapshot
            .by_netflix_id
            .insert("N1".into(), charge(1, ChargeStatus::Pending));
        snapshot
            .by_netflix_id
            .insert("N2".into(), charge(2, ChargeStatus::Rejected));
        snapshot
            .by_netflix_id
            .insert("N3".into(), charge(3, ChargeStatus::Approved));
        snapshot.by_number.insert(
            ChargeNumber::parse("I00000002").expect("n"),
            charge(2, ChargeStatus::Rejected),
        );
        let verdict = |id: Option<&str>, number: Option<&str>| VerdictInput {
            netflix_charge_id: id.map(str::to_owned),
            number: number.map(str::to_owned),
            parsed: Ok(VerdictItem {
                netflix_charge_id: id.map(str::to_owned),
                number: number.map(|n| ChargeNumber::parse(n).expect("n")),
                status: ChargeStatus::Rejected,
                reason: Some("card expired".into()),
            }),
        };
        let items = [
            verdict(Some("N1"), None),
            verdict(Some("N1"), None),
            verdict(Some("N2"), None),
            verdict(Some("N3"), None),
            verdict(Some("N9"), None),
            verdict(Some("N1"), Some("I00000002")),
        ];
        let (outcomes, changes) = plan_verdicts(&items, &snapshot);
        assert_eq!(outcomes[0], VerdictOutcome::Applied);
        assert!(
            matches!(&outcomes[1], VerdictOutcome::Failed(f) if f.code == ItemCode::DuplicateInRequest)
        );
        assert_eq!(outcomes[2], VerdictOutcome::AlreadyDone);
        assert!(
            matches!(&outcomes[3], VerdictOutcome::Failed(f) if f.code == ItemCode::ChargeAlreadyProcessed)
        );
        assert!(
            matches!(&outcomes[4], VerdictOutcome::Failed(f) if f.code == ItemCode::ChargeNotFound)
        );
        assert!(
            matches!(&outcomes[5], VerdictOutcome::Failed(f) if f.code == ItemCode::ChargeNotFound)
        );
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].charge_id, 1);
    }
}
