//! chargegate's own methods for audit and reconciliation, under `/chargegate/v1/`:
//! `charges/show` (a charge with its whole history) and `charges/decisions` (the feed of
//! every status change in a time window, paged by a cursor).

use axum::extract::State;
use chargegate_core::audit::{
    ChargeRecord, FeedCursor, FeedEntry, FeedPage, FeedQuery, HistoryEntry,
};
use chargegate_core::charge::Charge;
use chargegate_core::clock::Timestamp;
use chargegate_core::limits::{DEFAULT_FEED_PAGE, MAX_FEED_PAGE};
use chargegate_core::text::{ChargeNumber, TextError};
use serde::Serialize;
use utoipa::ToSchema;

use super::doc as openapi;
use super::paths::EXTENSIONS;
use crate::auth::callers::QueryCaller;
use crate::edge::envelope::{Envelope, JsonAmount};
use crate::edge::error::{ApiError, Code};
use crate::edge::extract::{plain_integer, shown};
use crate::state::AppState;

/// A charge as `charges/show` shows it: the thirteen fields of the contract, then what
/// chargegate adds.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargeDetail {
    #[schema(examples("I00002706"))]
    number: String,
    #[schema(examples("pci155"))]
    billing_system_customer_identifier: String,
    #[schema(value_type = f64, examples(9.99))]
    amount: JsonAmount,
    #[schema(examples("EUR"))]
    currency: &'static str,
    #[schema(value_type = f64, examples(9.99))]
    local_currency_amount: JsonAmount,
    #[schema(examples("EUR"))]
    local_currency: &'static str,
    /// `YYYY-MM-DD`.
    #[schema(examples("2026-12-31"))]
    paid_through_date: String,
    #[schema(value_type = openapi::ChargeStatusName)]
    charge_status: &'static str,
    #[schema(value_type = openapi::Timestamp)]
    received_on: String,
    #[schema(value_type = Option<openapi::Timestamp>, required = true)]
    set_as_approved_on: Option<String>,
    #[schema(value_type = Option<openapi::Timestamp>, required = true)]
    set_as_declined_on: Option<String>,
    #[schema(value_type = Option<openapi::Timestamp>, required = true)]
    set_as_bad_request_on: Option<String>,
    #[schema(value_type = Option<openapi::Timestamp>, required = true)]
    set_as_rejected_request_on: Option<String>,
    /// The reference number of the accept or decline that decided the charge.
    #[schema(required = true)]
    reference_number: Option<String>,
    /// The Netflix customer id (PAI), when known.
    #[schema(required = true)]
    netflix_customer_identifier: Option<String>,
    /// The subscription the charge belongs to; `null` when it belongs to none.
    #[schema(required = true)]
    subscription_number: Option<String>,
    /// The status the charge was last acknowledged in; `null` if never.
    #[schema(value_type = Option<openapi::ChargeStatusName>, required = true)]
    acknowledged_status: Option<&'static str>,
}

fn stamp(t: Option<Timestamp>) -> Option<String> {
    t.map(|t| t.to_string())
}

impl ChargeDetail {
    fn of(record: &ChargeRecord) -> ChargeDetail {
        let c: &Charge = &record.charge;
        ChargeDetail {
            number: c.number.as_str().to_owned(),
            billing_system_customer_identifier: c.customer.as_str().to_owned(),
            amount: JsonAmount(c.amount),
            currency: c.amount.currency().code(),
            local_currency_amount: JsonAmount(c.local_amount),
            local_currency: c.local_amount.currency().code(),
            paid_through_date: c.paid_through_date.to_string(),
            charge_status: c.status.as_str(),
            received_on: c.received_on.to_string(),
            set_as_approved_on: stamp(c.set_as_approved_on),
            set_as_declined_on: stamp(c.set_as_declined_on),
            set_as_bad_request_on: stamp(c.set_as_bad_request_on),
            set_as_rejected_request_on: stamp(c.set_as_rejected_on),
            reference_number: record.reference_number.clone(),
            netflix_customer_identifier: record.netflix_customer.clone(),
            subscription_number: record.subscription_number.clone(),
            acknowledged_status: record.acknowledged_status.map(|s| s.as_str()),
        }
    }
}

/// One event of a charge's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    #[schema(value_type = openapi::Timestamp)]
    at: String,
    #[schema(value_type = openapi::HistoryEventName)]
    event: &'static str,
    /// The status before; `null` for `received`.
    #[schema(value_type = Option<openapi::ChargeStatusName>, required = true)]
    from_status: Option<&'static str>,
    #[schema(value_type = openapi::ChargeStatusName)]
    to_status: &'static str,
    /// Who: `user:<username>`, `key:<prefix>`, `console:<username>` (a decision made in
    /// the operator console), `connector` or `import`.
    #[schema(examples("user:billing"))]
    actor: String,
    /// The request's `X-Request-Id`; `null` for imports.
    #[schema(required = true)]
    request_id: Option<String>,
    #[schema(required = true)]
    reference_number: Option<String>,
    /// Why, when the event carries a reason (the Netflix side's verdicts); else `null`.
    #[schema(required = true)]
    reason: Option<String>,
}

impl HistoryItem {
    fn of(entry: &HistoryEntry) -> HistoryItem {
        HistoryItem {
            at: entry.at.to_string(),
            event: entry.event.as_str(),
            from_status: entry.from_status.map(|s| s.as_str()),
            to_status: entry.to_status.as_str(),
            actor: entry.actor.to_string(),
            request_id: entry.request_id.clone(),
            reference_number: entry.reference_number.clone(),
            reason: entry.reason.clone(),
        }
    }
}

/// The `data` of `charges/show`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargeShow {
    charge: ChargeDetail,
    /// Every event of the charge, oldest first.
    history_set: Vec<HistoryItem>,
}

impl ChargeShow {
    pub fn of(record: &ChargeRecord) -> ChargeShow {
        ChargeShow {
            charge: ChargeDetail::of(record),
            history_set: record.history.iter().map(HistoryItem::of).collect(),
        }
    }
}

/// A mandatory query parameter.
fn mandatory<'a>(query: &'a QueryCaller, name: &str) -> Result<&'a str, ApiError> {
    query
        .query
        .get(name)
        .ok_or_else(|| ApiError::invalid_parameter(name, format!("{name} is mandatory")))
}

fn no_such_charge(number: &str) -> ApiError {
    ApiError::new(
        Code::NotFound,
        format!("no charge {} for this operator", shown(number)),
    )
    .with_description("number")
}

/// Show a charge with its whole history.
///
/// The charge (its §4 fields, the reference number of its decision, its Netflix customer
/// id, its subscription and the status it was last acknowledged in) and every event of
/// its history, oldest first, with who caused it, in which request and with which
/// reference number. Another operator's charge answers `404 NOT_FOUND`, exactly like a
/// missing one.
#[utoipa::path(
    get,
    path = "/charges/show",
    context_path = EXTENSIONS,
    tag = "audit",
    operation_id = "show_charge",
    params(openapi::ShowQuery),
    responses(
        (status = 200, description = "The charge and its history.", body = Envelope<ChargeShow>),
        openapi::ShowErrors,
    ),
    security(("token_query" = []), ("bearer" = [])),
)]
pub async fn show(
    State(state): State<AppState>,
    query: QueryCaller,
) -> Result<Envelope<ChargeShow>, ApiError> {
    let text = mandatory(&query, "number")?;
    let number = match ChargeNumber::parse(text) {
        Ok(number) => number,
        // No charge can have a NUL in its number: it does not exist.
        Err(TextError::Nul) => return Err(no_such_charge(text)),
        Err(e) => return Err(ApiError::invalid_parameter("number", format!("number {e}"))),
    };
    let record = state
        .store
        .charge_record(Some(query.caller.operator_id), &number)
        .await?
        .ok_or_else(|| no_such_charge(text))?;
    Ok(Envelope::ok(ChargeShow::of(&record)))
}

/// One status change of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionItem {
    #[schema(examples("I00002706"))]
    pub number: String,
    #[schema(examples("pci155"))]
    pub billing_system_customer_identifier: String,
    #[schema(value_type = openapi::HistoryEventName)]
    pub event: &'static str,
    #[schema(value_type = openapi::ChargeStatusName)]
    pub from_status: &'static str,
    #[schema(value_type = openapi::ChargeStatusName)]
    pub to_status: &'static str,
    #[schema(value_type = openapi::Timestamp)]
    pub at: String,
    /// Who: `user:<username>`, `key:<prefix>`, `console:<username>` (a decision made in
    /// the operator console), `connector` or `import`.
    #[schema(examples("user:billing"))]
    pub actor: String,
    #[schema(required = true)]
    pub request_id: Option<String>,
    #[schema(required = true)]
    pub reference_number: Option<String>,
    #[schema(value_type = f64, examples(9.99))]
    pub amount: JsonAmount,
    #[schema(examples("EUR"))]
    pub currency: &'static str,
}

impl DecisionItem {
    pub fn of(entry: &FeedEntry) -> DecisionItem {
        DecisionItem {
            number: entry.number.as_str().to_owned(),
            billing_system_customer_identifier: entry.customer.as_str().to_owned(),
            event: entry.event.as_str(),
            from_status: entry.from_status.as_str(),
            to_status: entry.to_status.as_str(),
            at: entry.at.to_string(),
            actor: entry.actor.to_string(),
            request_id: entry.request_id.clone(),
            reference_number: entry.reference_number.clone(),
            amount: JsonAmount(entry.amount),
            currency: entry.amount.currency().code(),
        }
    }
}

/// The `data` of `charges/decisions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionsPage {
    /// Status changes in position order.
    decisions_set: Vec<DecisionItem>,
    /// Pass as `after` to continue; `null` once the window is complete.
    #[schema(required = true, examples("0-42"))]
    next: Option<String>,
}

/// The parameters of `charges/decisions`, checked.
pub fn feed_query(
    get: impl Fn(&str) -> Option<String>,
    operator_id: i64,
) -> Result<FeedQuery, ApiError> {
    let time = |name: &str| -> Result<Timestamp, ApiError> {
        let text = get(name)
            .ok_or_else(|| ApiError::invalid_parameter(name, format!("{name} is mandatory")))?;
        Timestamp::parse(&text).map_err(|_| {
            ApiError::invalid_parameter(
                name,
                format!(
                    "{name} must be a UTC time written YYYY-MM-DDTHH:MM:SS, not '{}'",
                    shown(&text)
                ),
            )
        })
    };
    let from = time("from")?;
    let to = time("to")?;
    let after = match get("after") {
        None => FeedCursor::default(),
        Some(text) => FeedCursor::parse(&text).ok_or_else(|| {
            ApiError::invalid_parameter(
                "after",
                format!(
                    "after must be a `next` value of an earlier page, not '{}'",
                    shown(&text)
                ),
            )
        })?,
    };
    let limit = match get("limit") {
        None => DEFAULT_FEED_PAGE,
        Some(text) => plain_integer(&text)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_FEED_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_parameter(
                    "limit",
                    format!(
                        "limit must be an integer from 1 to {MAX_FEED_PAGE} in plain decimal \
                         digits, not '{}'",
                        shown(&text)
                    ),
                )
            })?,
    };
    Ok(FeedQuery {
        operator_id,
        from,
        to,
        after,
        limit,
    })
}

/// The reconciliation feed: every status change in a time window.
///
/// Every status change (`approved`, `declined`, `bad_request`, `rejected`; not receipts
/// or acknowledgements) of the operator's charges whose time is in `[from, to)`, in
/// position order: the order in which they became certain, not the order of their
/// times. Pass `next` as `after` to continue. Paging never skips or repeats an entry,
/// however many decisions commit meanwhile. `next` is `null` only once the window is
/// complete: this page is its last, and `to` is past by five minutes, the time within
/// which any decision carrying an earlier time has committed.
#[utoipa::path(
    get,
    path = "/charges/decisions",
    context_path = EXTENSIONS,
    tag = "audit",
    operation_id = "decisions",
    params(openapi::DecisionsQuery),
    responses(
        (status = 200, description = "A page of the feed.", body = Envelope<DecisionsPage>),
        openapi::DecisionsErrors,
    ),
    security(("token_query" = []), ("bearer" = [])),
)]
pub async fn decisions(
    State(state): State<AppState>,
    query: QueryCaller,
) -> Result<Envelope<DecisionsPage>, ApiError> {
    let feed = feed_query(
        |name| query.query.get(name).map(str::to_owned),
        query.caller.operator_id,
    )?;
    let page: FeedPage = state.store.decision_feed(&feed).await?;
    let next = page.next(&feed, state.clock.now()).map(|c| c.encode());
    Ok(Envelope::ok(DecisionsPage {
        decisions_set: page.entries.iter().map(DecisionItem::of).collect(),
        next,
    }))
}
