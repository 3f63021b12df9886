//! The Netflix side: `/chargegate/v1/connector/…` (docs/api.md, "Connector API").
//!
//! A connector key (`Authorization: Bearer cgc_…`) speaks for one operator. Operator
//! tokens are not connector keys and connector keys are not tokens, so each is refused
//! where the other belongs by the lookup itself: a connector key's hash is never in the
//! token table, nor a token's in the connector key table.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chargegate_core::charge::ChargeStatus;
use chargegate_core::clock::Date;
use chargegate_core::connector::{
    Activation, ActivationOutcome, ConnectorActor, ConnectorCaller, DEFAULT_EVENTS, EventType,
    IntakeInput, IntakeItem, IntakeOutcome, IntakeRequest, ItemCode, ItemFailure, MAX_EVENTS,
    MAX_ITEMS, MAX_NETFLIX_ID_CHARS, MAX_REASON_CHARS, NetflixStateReport, PromotionInput,
    PromotionUpsert, VerdictInput, VerdictItem, VerdictOutcome, VerdictRequest,
};
use chargegate_core::money::Currency;
use chargegate_core::subscription::{NetflixState, Promotion, PromotionCode};
use chargegate_core::text::{ChargeNumber, CustomerId};
use chargegate_core::token::Token;
use serde::Serialize;
use serde_json::{Map, Value};

use super::doc as openapi;
use super::doc::connector as doc;
use super::paths::CONNECTOR;
use crate::auth::callers::{ConnectorBody, ConnectorKey};
use crate::edge::context::RequestId;
use crate::edge::envelope::{Empty, Envelope};
use crate::edge::error::{ApiError, Code};
use crate::edge::event::event_json;
use crate::edge::extract::{plain_integer, repeated_parameter, shown};
use crate::edge::fields::{FieldError, Fields, given};
use crate::state::AppState;

/// Longest promotion name and description accepted, in characters.
const MAX_PROMOTION_TEXT: usize = 512;

fn actor(state: &AppState, caller: &ConnectorCaller, request_id: String) -> ConnectorActor {
    ConnectorActor {
        key_id: caller.key_id,
        operator_id: caller.operator_id,
        request_id,
        at: state.clock.now(),
    }
}

/// The items of a batch: a non-empty array of at most [`MAX_ITEMS`].
fn batch_items<'a>(body: &'a Map<String, Value>, set: &str) -> Result<&'a [Value], ApiError> {
    match body.get(set) {
        Some(Value::Array(items)) if items.len() > MAX_ITEMS => Err(ApiError::new(
            Code::LimitExceeded,
            format!(
                "{set} holds {} items; at most {MAX_ITEMS} per call",
                items.len()
            ),
        )
        .with_description(set)),
        Some(Value::Array(items)) if !items.is_empty() => Ok(items),
        _ => Err(ApiError::invalid_parameter(
            set,
            format!("{set} must be a non-empty array"),
        )),
    }
}

fn invalid(text: impl Into<String>) -> ItemFailure {
    ItemFailure::new(ItemCode::InvalidParameter, text)
}

impl From<FieldError> for ItemFailure {
    fn from(e: FieldError) -> ItemFailure {
        invalid(e.to_string())
    }
}

/// A string of `item` as given, for echoing.
fn echoed(item: &Value, field: &str) -> Option<String> {
    given(item, field).map(str::to_owned)
}

fn intake_item(value: &Value, local: Currency) -> Result<IntakeItem, ItemFailure> {
    let Value::Object(item) = value else {
        return Err(invalid("each item must be a JSON object"));
    };
    let item = Fields(item);
    let netflix_charge_id = item
        .mandatory_printable("netflix_charge_identifier", MAX_NETFLIX_ID_CHARS)?
        .to_owned();
    let customer =
        match item.printable("billing_system_customer_identifier", CustomerId::MAX_CHARS)? {
            None => None,
            Some(c) => Some(
                CustomerId::parse(c)
                    .map_err(|e| invalid(format!("billing_system_customer_identifier {e}")))?,
            ),
        };
    let netflix_customer = item
        .printable("netflix_customer_identifier", MAX_NETFLIX_ID_CHARS)?
        .map(str::to_owned);
    if customer.is_none() && netflix_customer.is_none() {
        return Err(invalid(
            "billing_system_customer_identifier or netflix_customer_identifier is mandatory",
        ));
    }
    let currency_text = item.mandatory_printable("currency", 3)?;
    let currency = Currency::parse(currency_text).map_err(|_| {
        invalid(format!(
            "currency '{}' is not an ISO-4217 code in upper case",
            shown(currency_text)
        ))
    })?;
    let amount_value = item
        .amount("amount", currency)?
        .ok_or_else(|| invalid("amount is mandatory"))?;
    let given_local = item.amount("local_currency_amount", local)?;
    let local_amount = match given_local {
        Some(m) if currency == local && m != amount_value => {
            return Err(invalid(format!(
                "local_currency_amount must equal amount when currency is the operator's \
                 local currency ({local})"
            )));
        }
        Some(m) => m,
        None if currency == local => amount_value,
        None => {
            return Err(invalid(format!(
                "local_currency_amount is mandatory when currency ({currency}) is not the \
                 operator's local currency ({local})"
            )));
        }
    };
    let paid = item.mandatory_printable("paid_through_date", 10)?;
    let paid_through_date = Date::parse(paid)
        .map_err(|_| invalid("paid_through_date must be a date written YYYY-MM-DD"))?;
    let received_on = item.timestamp("received_on")?;
    Ok(IntakeItem {
        netflix_charge_id,
        customer,
        netflix_customer,
        amount: amount_value,
        local_amount,
        local_amount_given: given_local.is_some(),
        paid_through_date,
        received_on,
    })
}

/// A failed item of a connector batch: its identifiers as given, the code, a sentence.
#[derive(Debug, Serialize)]
pub struct FailedItem {
    #[serde(flatten)]
    identifiers: Map<String, Value>,
    error_code: &'static str,
    error_description: String,
}

fn failed(identifiers: &[(&str, Option<String>)], failure: &ItemFailure) -> FailedItem {
    FailedItem {
        identifiers: identifiers
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    v.clone().map_or(Value::Null, Value::String),
                )
            })
            .collect(),
        error_code: failure.code.as_str(),
        error_description: failure.description.clone(),
    }
}

#[derive(Debug, Serialize)]
pub struct StoredCharge {
    netflix_charge_identifier: String,
    number: String,
}

#[derive(Debug, Serialize)]
pub struct IntakeData {
    charges_set: Vec<StoredCharge>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed_charges_set: Vec<FailedItem>,
}

/// Feed charges Netflix raised into chargegate.
///
/// Up to 500 charges; each is stored `PENDING` with a new number, linked to its customer's
/// live subscription. Idempotent by `netflix_charge_identifier`: the same data again
/// answers the stored number and changes nothing; different data fails `CONFLICT`. All
/// stored items of one call are one transaction.
#[utoipa::path(
    post,
    path = "/charges",
    context_path = CONNECTOR,
    tag = "connector",
    operation_id = "connector_intake",
    params(openapi::RequestIdHeader),
    request_body = doc::IntakeRequest,
    responses(
        (status = 200, description = "Stored (or already stored) charges, and the failed items.",
            body = Envelope<doc::IntakeData>),
        doc::BatchErrors,
    ),
    security(("connector" = [])),
)]
pub async fn intake(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ConnectorBody(caller, body): ConnectorBody,
) -> Result<Envelope<IntakeData>, ApiError> {
    let items = batch_items(&body, "charges_set")?;
    let inputs: Vec<IntakeInput> = items
        .iter()
        .map(|v| IntakeInput {
            netflix_charge_id: echoed(v, "netflix_charge_identifier"),
            parsed: intake_item(v, caller.local_currency),
        })
        .collect();
    let outcomes = state
        .store
        .intake(&IntakeRequest {
            actor: actor(&state, &caller, request_id),
            items: inputs,
        })
        .await?;
    let mut data = IntakeData {
        charges_set: Vec::new(),
        failed_charges_set: Vec::new(),
    };
    for outcome in outcomes {
        match outcome {
            IntakeOutcome::Stored {
                netflix_charge_id,
                number,
            } => data.charges_set.push(StoredCharge {
                netflix_charge_identifier: netflix_charge_id,
                number: number.as_str().to_owned(),
            }),
            IntakeOutcome::Failed {
                netflix_charge_id,
                failure,
            } => data.failed_charges_set.push(failed(
                &[("netflix_charge_identifier", netflix_charge_id)],
                &failure,
            )),
        }
    }
    Ok(Envelope::ok(data))
}

fn verdict_item(value: &Value) -> Result<VerdictItem, ItemFailure> {
    let Value::Object(item) = value else {
        return Err(invalid("each item must be a JSON object"));
    };
    let fields = Fields(item);
    let netflix_charge_id = fields
        .printable("netflix_charge_identifier", MAX_NETFLIX_ID_CHARS)?
        .map(str::to_owned);
    let number = match fields.printable("number", ChargeNumber::MAX_CHARS)? {
        None => None,
        Some(n) => Some(ChargeNumber::parse(n).map_err(|e| invalid(format!("number {e}")))?),
    };
    if netflix_charge_id.is_none() && number.is_none() {
        return Err(invalid("netflix_charge_identifier or number is mandatory"));
    }
    let status = match item.get("charge_status") {
        Some(Value::String(s)) if s == "BAD_REQUEST" => ChargeStatus::BadRequest,
        Some(Value::String(s)) if s == "REJECTED" => ChargeStatus::Rejected,
        _ => return Err(invalid("charge_status must be BAD_REQUEST or REJECTED")),
    };
    let reason = match item.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.is_empty() && s.chars().count() <= MAX_REASON_CHARS && !s.contains('\0') =>
        {
            Some(s.clone())
        }
        Some(_) => {
            return Err(invalid(format!(
                "reason must be a string of 1 to {MAX_REASON_CHARS} characters without NUL"
            )));
        }
    };
    Ok(VerdictItem {
        netflix_charge_id,
        number,
        status,
        reason,
    })
}

/// `{}` when every item succeeded, else the failed items.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BatchData {
    Done(Empty),
    Failed {
        #[serde(rename = "failed_charges_set")]
        charges: Vec<FailedItem>,
    },
    FailedPromotions {
        #[serde(rename = "failed_promotions_set")]
        promotions: Vec<FailedItem>,
    },
}

/// Record Netflix's own verdicts on charges.
///
/// `BAD_REQUEST` or `REJECTED` on a `PENDING` charge (named by `netflix_charge_identifier`
/// and/or `number`): the charge moves there, stamped, its subscription is cancelled and a
/// history row keeps the reason. The same status again succeeds and changes nothing.
#[utoipa::path(
    post,
    path = "/charges/status",
    context_path = CONNECTOR,
    tag = "connector",
    operation_id = "connector_verdicts",
    params(openapi::RequestIdHeader),
    request_body = doc::VerdictRequest,
    responses(
        (status = 200, description = "Applied; the failed items listed.", body = Envelope<doc::FailedCharges>),
        doc::BatchErrors,
    ),
    security(("connector" = [])),
)]
pub async fn verdicts(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ConnectorBody(caller, body): ConnectorBody,
) -> Result<Envelope<BatchData>, ApiError> {
    let items = batch_items(&body, "charges_set")?;
    let inputs: Vec<VerdictInput> = items
        .iter()
        .map(|v| VerdictInput {
            netflix_charge_id: echoed(v, "netflix_charge_identifier"),
            number: echoed(v, "number"),
            parsed: verdict_item(v),
        })
        .collect();
    let outcomes = state
        .store
        .record_verdicts(&VerdictRequest {
            actor: actor(&state, &caller, request_id),
            items: inputs.clone(),
        })
        .await?;
    let failures: Vec<FailedItem> = inputs
        .iter()
        .zip(&outcomes)
        .filter_map(|(input, outcome)| match outcome {
            VerdictOutcome::Failed(f) => Some(failed(
                &[
                    ("netflix_charge_identifier", input.netflix_charge_id.clone()),
                    ("number", input.number.clone()),
                ],
                f,
            )),
            _ => None,
        })
        .collect();
    Ok(Envelope::ok(if failures.is_empty() {
        BatchData::Done(Empty {})
    } else {
        BatchData::Failed { charges: failures }
    }))
}

#[derive(Debug, Serialize)]
pub struct EventsData {
    events_set: Vec<Value>,
}

/// What Netflix must be told: the oldest undelivered events of the key's operator.
///
/// Oldest first; for any one charge or subscription a later change always comes after an
/// earlier one. An event comes back until it is acknowledged (`outbox/ack`), so a
/// connector that crashes between reading and acknowledging sees it again; its `id` lets
/// the connector tell a repeat.
#[utoipa::path(
    get,
    path = "/outbox",
    context_path = CONNECTOR,
    tag = "connector",
    operation_id = "connector_outbox",
    params(openapi::RequestIdHeader, doc::OutboxQuery),
    responses(
        (status = 200, description = "The oldest undelivered events.", body = Envelope<doc::EventsData>),
        doc::ReadErrors,
    ),
    security(("connector" = [])),
)]
pub async fn outbox(
    State(state): State<AppState>,
    ConnectorKey(caller): ConnectorKey,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Envelope<EventsData>, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::invalid_parameter("", "the query string could not be read"))?;
    if let Some(name) = repeated_parameter(&query) {
        return Err(ApiError::invalid_parameter(
            name,
            format!("{name} is given more than once"),
        ));
    }
    let limit = match query.iter().find(|(k, _)| k == "limit") {
        None => DEFAULT_EVENTS,
        Some((_, v)) => plain_integer(v)
            .filter(|n| (1..=u64::from(MAX_EVENTS)).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::invalid_parameter(
                    "limit",
                    format!("limit must be an integer from 1 to {MAX_EVENTS}"),
                )
            })?,
    };
    let events = state.store.outbox(Some(caller.operator_id), limit).await?;
    Ok(Envelope::ok(EventsData {
        events_set: events.iter().map(event_json).collect(),
    }))
}

/// Mark events delivered.
///
/// 1 to 500 ids. Unknown, another operator's or already delivered ids are ignored, so a
/// retried acknowledgement is harmless. Delivered events stay stored for audit and never
/// come back from `GET outbox`.
#[utoipa::path(
    post,
    path = "/outbox/ack",
    context_path = CONNECTOR,
    tag = "connector",
    operation_id = "connector_outbox_ack",
    params(openapi::RequestIdHeader),
    request_body = doc::AckRequest,
    responses(
        (status = 200, description = "Marked delivered.", body = Envelope<Empty>),
        doc::BatchErrors,
    ),
    security(("connector" = [])),
)]
pub async fn ack(
    State(state): State<AppState>,
    ConnectorBody(caller, body): ConnectorBody,
) -> Result<Envelope<Empty>, ApiError> {
    let items = batch_items(&body, "ids")?;
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::String(text) = item else {
            return Err(ApiError::invalid_parameter(
                format!("ids[{i}]"),
                "each id must be a string",
            ));
        };
        // An id that cannot be ours is unknown, and unknown ids are ignored.
        if let Some(id) = plain_integer(text).and_then(|n| i64::try_from(n).ok()) {
            ids.push(id);
        }
    }
    if !ids.is_empty() {
        state
            .store
            .ack_outbox(Some(caller.operator_id), &ids, state.clock.now())
            .await?;
    }
    Ok(Envelope::ok(Empty {}))
}

/// Link a Netflix account (PAI) to the subscription its netflix token was issued for.
///
/// A live, unexpired, latest netflix token of this operator links the PAI, sets
/// `netflix_sate` `EFFECTIVE` and is spent. Any other token is `400 INVALID_PARAMETER`
/// (`netflix_token`); a PAI linked to another live subscription is `409 CONFLICT`.
#[utoipa::path(
    post,
    path = "/subscriptions/activate",
    context_path = CONNECTOR,
    tag = "connector",
    operation_id = "connector_activate",
    params(openapi::RequestIdHeader),
    request_body = doc::ActivateRequest,
    responses(
        (status = 200, description = "Linked.", body = Envelope<Empty>),
        doc::ActivateErrors,
    ),
    security(("connector" = [])),
)]
pub async fn activate(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ConnectorBody(caller, body): ConnectorBody,
) -> Result<Envelope<Empty>, ApiError> {
    let bad_token = || {
        ApiError::invalid_parameter(
            "netflix_token",
            "netflix_token is not a live, unexpired netflix token of this operator",
        )
    };
    let token = match body.get("netflix_token") {
        Some(Value::String(s)) => Token::parse(s).ok_or_else(bad_token)?,
        _ => {
            return Err(ApiError::invalid_parameter(
                "netflix_token",
                "netflix_token is mandatory and must be a string",
            ));
        }
    };
    let pai = pai_field(&body)?;
    let outcome = state
        .store
        .activate(&Activation {
            actor: actor(&state, &caller, request_id),
            token: token.hash(),
            netflix_customer: pai,
        })
        .await?;
    match outcome {
        ActivationOutcome::Linked => Ok(Envelope::ok(Empty {})),
        ActivationOutcome::BadToken => Err(bad_token()),
        ActivationOutcome::PaiTaken => Err(ApiError::new(
            Code::Conflict,
            "this netflix customer is already linked to another live subscription",
        )
        .with_description("netflix_customer_identifier")),
    }
}

fn pai_field(body: &Map<String, Value>) -> Result<String, ApiError> {
    let pai =
        Fields(body).mandatory_printable("netflix_customer_identifier", MAX_NETFLIX_ID_CHARS)?;
    Ok(pai.to_owned())
}

/// Record what Netflix reports of a linked account (e.g. a billing hold).
///
/// Sets `netflix_sate` of the live subscription linked to the PAI. No such subscription:
/// `404 SUBSCRIPTION_NOT_FOUND`.
#[utoipa::path(
    post,
    path = "/subscriptions/state",
    context_path = CONNECTOR,
    tag = "connector",
    operation_id = "connector_state",
    params(openapi::RequestIdHeader),
    request_body = doc::StateRequest,
    responses(
        (status = 200, description = "Recorded.", body = Envelope<Empty>),
        doc::StateErrors,
    ),
    security(("connector" = [])),
)]
pub async fn state(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ConnectorBody(caller, body): ConnectorBody,
) -> Result<Envelope<Empty>, ApiError> {
    let pai = pai_field(&body)?;
    let netflix_state = match body.get("netflix_sate") {
        Some(Value::String(s)) => NetflixState::parse(s),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::invalid_parameter(
            "netflix_sate",
            "netflix_sate must be EFFECTIVE or NOT_EFFECTIVE",
        )
    })?;
    let found = state
        .store
        .report_netflix_state(&NetflixStateReport {
            actor: actor(&state, &caller, request_id),
            netflix_customer: pai,
            state: netflix_state,
        })
        .await?;
    if !found {
        return Err(ApiError::new(
            Code::SubscriptionNotFound,
            "no live subscription of this operator is linked to this netflix customer",
        )
        .with_description("netflix_customer_identifier"));
    }
    Ok(Envelope::ok(Empty {}))
}

fn promotion_item(value: &Value) -> Result<Promotion, ItemFailure> {
    let Value::Object(item) = value else {
        return Err(invalid("each item must be a JSON object"));
    };
    let item = Fields(item);
    let code = item.mandatory_printable("code", PromotionCode::MAX_CHARS)?;
    let code = PromotionCode::parse(code).map_err(|e| invalid(format!("code {e}")))?;
    let name = item
        .mandatory_printable("name", MAX_PROMOTION_TEXT)?
        .to_owned();
    let description = item
        .printable("description", MAX_PROMOTION_TEXT)?
        .map(str::to_owned);
    let effective_from = item
        .timestamp("effective_from")?
        .ok_or_else(|| invalid("effective_from is mandatory"))?;
    let expires_on = item.timestamp("expires_on")?;
    if expires_on.is_some_and(|e| e <= effective_from) {
        return Err(invalid("expires_on must be after effective_from"));
    }
    Ok(Promotion {
        code,
        name,
        description,
        effective_from,
        expires_on,
    })
}

/// Create or update the operator's promotions by `code`.
#[utoipa::path(
    post,
    path = "/promotions",
    context_path = CONNECTOR,
    tag = "connector",
    operation_id = "connector_promotions",
    params(openapi::RequestIdHeader),
    request_body = doc::PromotionsRequest,
    responses(
        (status = 200, description = "Written; the failed items listed.", body = Envelope<doc::FailedPromotions>),
        doc::BatchErrors,
    ),
    security(("connector" = [])),
)]
pub async fn promotions(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    ConnectorBody(caller, body): ConnectorBody,
) -> Result<Envelope<BatchData>, ApiError> {
    let items = batch_items(&body, "promotions_set")?;
    let inputs: Vec<PromotionInput> = items
        .iter()
        .map(|v| PromotionInput {
            code: echoed(v, "code"),
            parsed: promotion_item(v),
        })
        .collect();
    let outcomes = state
        .store
        .upsert_promotions(&PromotionUpsert {
            actor: actor(&state, &caller, request_id),
            items: inputs.clone(),
        })
        .await?;
    let failures: Vec<FailedItem> = inputs
        .iter()
        .zip(&outcomes)
        .filter_map(|(input, outcome)| {
            outcome
                .as_ref()
                .map(|f| failed(&[("code", input.code.clone())], f))
        })
        .collect();
    Ok(Envelope::ok(if failures.is_empty() {
        BatchData::Done(Empty {})
    } else {
        BatchData::FailedPromotions {
            promotions: failures,
        }
    }))
}

/// Every event type, for documentation.
pub fn event_types() -> impl Iterator<Item = &'static str> {
    EventType::ALL.iter().map(EventType::as_str)
}
