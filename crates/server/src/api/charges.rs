//! `netflix/charges/{accept,decline,acknowledge}` (one batch mechanism for the three) and
//! `netflix/charges/list`.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chargegate_core::batch::{
    ItemError, ItemErrorCode, ItemInput, ItemRequest, MAX_ITEMS, Method, Verdict,
};
use chargegate_core::charge::{Charge, ChargeField, StatusGroup};
use chargegate_core::clock::Timestamp;
use chargegate_core::limits::{MAX_OFFSET, MAX_PAGE};
use chargegate_core::store::{Authorized, ListQuery, TokenBatch, TokenRecord};
use chargegate_core::text::{ChargeNumber, CustomerId, ReferenceNumber, TextError};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;
use utoipa::ToSchema;

use super::doc as openapi;
use super::paths::BASE;
use crate::auth::callers::{QueryCaller, VouchedToken};
use crate::auth::{self, authenticate};
use crate::edge::context::RequestId;
use crate::edge::envelope::{Empty, Envelope, JsonAmount};
use crate::edge::error::{ApiError, Code};
use crate::edge::extract::{plain_integer, shown};
use crate::edge::fields::{Fields, given};
use crate::state::AppState;

/// Stamps one batch method: its handler, a call of [`batch`], and its description.
macro_rules! batch_method {
    ($(#[doc = $doc:literal])* $name:ident, $method:ident, $path:tt, $request:ty) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            post,
            path = $path,
            context_path = BASE,
            tag = "charges",
            operation_id = stringify!($name),
            params(openapi::RequestIdHeader),
            request_body = $request,
            responses(
                (status = 200, description = "Every item was judged: `data` is `{}` when all \
succeeded, else `failed_charges_set` lists the failed ones in request order.",
                    body = Envelope<BatchOutcome>),
                openapi::BatchErrors,
            ),
            security((), ("bearer" = [])),
        )]
        pub async fn $name(
            state: State<AppState>,
            id: Extension<RequestId>,
            call: VouchedToken,
        ) -> Result<Response, ApiError> {
            batch(Method::$method, state, id, call).await
        }
    };
}

batch_method! {
    /// Accept charges: bill the customers.
    ///
    /// Each `PENDING` charge of `accepted_charges_set` becomes `APPROVED`. Repeating an accept
    /// with the same (or no) reference number succeeds without changing anything.
    accept, Accept, "/netflix/charges/accept", openapi::AcceptRequest
}

batch_method! {
    /// Decline charges: do not bill; the Netflix subscriptions end.
    ///
    /// Each `PENDING` charge of `declined_charges_set` becomes `DECLINED`. Repeating a decline
    /// with the same (or no) reference number succeeds without changing anything.
    decline, Decline, "/netflix/charges/decline", openapi::DeclineRequest
}

batch_method! {
    /// Acknowledge charges: the operator has seen them in their current status.
    ///
    /// An acknowledged charge leaves `charges/list` until its status changes, so a `PENDING`
    /// charge acknowledged and later declined shows up again under `PROCESSED`.
    acknowledge, Acknowledge, "/netflix/charges/acknowledge", openapi::AcknowledgeRequest
}

/// One failed item of `failed_charges_set`.
#[derive(Debug, Serialize, ToSchema)]
struct FailedItem<'a> {
    /// The item's `number` as sent; `null` when absent or not a string.
    #[schema(required = true)]
    number: Option<&'a str>,
    /// The item's `reference_number` as sent; `null` when absent or not a string.
    #[schema(required = true)]
    reference_number: Option<&'a str>,
    #[schema(value_type = openapi::ItemErrorCode)]
    error_code: &'static str,
    /// What went wrong, for a person; for `INVALID_PARAMETER` it names the field path,
    /// e.g. `declined_charges_set[3].number: must be at most 64 characters`.
    error_description: &'a str,
}

#[derive(Debug, Serialize, ToSchema)]
struct FailedSet<'a> {
    /// The failed items, in request order.
    failed_charges_set: Vec<FailedItem<'a>>,
}

/// The `data` of a batch call: `{}` when every item succeeded, else the failed items.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
enum BatchOutcome<'a> {
    AllSucceeded(Empty),
    SomeFailed(FailedSet<'a>),
}

/// The shared batch mechanism: request-level checks, then one store call that judges and
/// applies every item in one transaction.
async fn batch(
    method: Method,
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    VouchedToken { token, body }: VouchedToken,
) -> Result<Response, ApiError> {
    let items = match parse_items(method, body.get(method.set_name())) {
        Ok(items) => items,
        Err(e) => {
            // A bad token is the first thing a call hears about.
            authenticate(&state, &token).await?;
            return Err(e);
        }
    };
    let request = TokenBatch {
        token: token.hash(),
        method,
        request_id,
        at: state.clock.now(),
        items,
    };
    // The token is checked in the batch's own transaction where the store can; the
    // reason of a refusal is kept for the answer.
    let refusal = OnceLock::new();
    let admission = |record: &TokenRecord| match auth::admission(&state, record) {
        Ok(_) => true,
        Err(why) => {
            let _ = refusal.set(why);
            false
        }
    };
    let started = Instant::now();
    let outcome = state.store.apply_token_batch(request, &admission).await;
    if !matches!(
        outcome,
        Ok(Authorized::UnknownToken | Authorized::Refused(_))
    ) {
        state.metrics.batch_transaction(method, started.elapsed());
    }
    let (batch, verdicts) = match outcome? {
        Authorized::UnknownToken => return Err(ApiError::invalid_token()),
        Authorized::Refused(_) => {
            return Err(refusal
                .get()
                .map_or_else(ApiError::invalid_token, |&why| why.into()));
        }
        Authorized::Applied {
            batch, verdicts, ..
        } => (batch, verdicts),
    };
    state.metrics.items_judged(method, &verdicts);

    let failed: Vec<FailedItem<'_>> = batch
        .items
        .iter()
        .zip(&verdicts)
        .filter_map(|(item, verdict)| match verdict {
            Verdict::Failed(e) => Some(FailedItem {
                number: item.number.as_deref(),
                reference_number: item.reference_number.as_deref(),
                error_code: e.code.as_str(),
                error_description: &e.description,
            }),
            _ => None,
        })
        .collect();
    let applied = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Apply { .. }))
        .count();
    let replayed = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::AlreadyDone))
        .count();
    // Replays changed nothing: the line says so, rather than counting them as applied.
    tracing::info!(
        method = method.as_str(),
        items = verdicts.len(),
        applied,
        replayed,
        failed = failed.len(),
        "{}",
        if applied > 0 {
            "batch applied"
        } else {
            "batch changed nothing"
        }
    );
    let outcome = if failed.is_empty() {
        BatchOutcome::AllSucceeded(Empty {})
    } else {
        BatchOutcome::SomeFailed(FailedSet {
            failed_charges_set: failed,
        })
    };
    Ok(Envelope::ok(outcome).into_response())
}

/// The request-level checks of the item set, then rule 1 on each item.
pub fn parse_items(method: Method, set: Option<&Value>) -> Result<Vec<ItemInput>, ApiError> {
    let name = method.set_name();
    let items = match set {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid_parameter(
                name,
                format!("{name} must hold at least one charge"),
            ));
        }
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_parameter(
                name,
                format!("{name} is mandatory"),
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid_parameter(
                name,
                format!("{name} must be an array of charges"),
            ));
        }
    };
    if items.len() > MAX_ITEMS {
        return Err(ApiError::new(
            Code::LimitExceeded,
            format!(
                "at most {MAX_ITEMS} charges per call, {} were sent; nothing was applied",
                items.len()
            ),
        )
        .with_description(name));
    }
    Ok(items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_item(name, index, item))
        .collect())
}

/// Rule 1: a well-formed item is an object with a `number` (1–64 characters), a
/// `billing_system_customer_identifier` (1–128) and optionally a `reference_number`
/// (1–128, or `null`). The first bad field, in that order, is reported.
fn parse_item(set: &str, index: usize, item: &Value) -> ItemInput {
    let invalid = |text: String| ItemError::new(ItemErrorCode::InvalidParameter, text);
    let Some(fields) = item.as_object() else {
        return ItemInput {
            number: None,
            reference_number: None,
            parsed: Err(invalid(format!(
                "{set}[{index}]: each charge must be a JSON object"
            ))),
        };
    };
    let path = |field: &str| format!("{set}[{index}].{field}");
    let text_problem = |field: &str, e: TextError| invalid(format!("{}: {e}", path(field)));
    let required = |field: &str| {
        Fields(fields)
            .string(field)
            .map_err(|e| invalid(format!("{}: {}", path(field), e.problem)))
    };

    let parsed = (|| {
        let number =
            ChargeNumber::parse(required("number")?).map_err(|e| text_problem("number", e))?;
        let customer = CustomerId::parse(required("billing_system_customer_identifier")?)
            .map_err(|e| text_problem("billing_system_customer_identifier", e))?;
        let reference = match fields.get("reference_number") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                ReferenceNumber::parse(s.as_str())
                    .map_err(|e| text_problem("reference_number", e))?,
            ),
            Some(_) => {
                return Err(invalid(format!(
                    "{}: must be a string or null",
                    path("reference_number")
                )));
            }
        };
        Ok(ItemRequest {
            number,
            customer,
            reference,
        })
    })();

    ItemInput {
        number: given(item, "number").map(str::to_owned),
        reference_number: given(item, "reference_number").map(str::to_owned),
        parsed,
    }
}

// ---- list -------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
struct ChargesSet {
    /// The page of charges, oldest first (by `received_on`, then `number`).
    #[schema(value_type = Vec<openapi::Charge>)]
    charges_set: Vec<ChargeView>,
}

/// A charge with the fields the caller asked for, in the contract's order.
#[derive(Debug)]
struct ChargeView {
    charge: Charge,
    fields: std::sync::Arc<[ChargeField]>,
}

/// A value written as a JSON string through its `Display`, without an intermediate
/// `String` (a page prints hundreds of dates and times).
struct AsText<T>(T);

impl<T: std::fmt::Display> Serialize for AsText<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl Serialize for ChargeView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = &self.charge;
        let stamp = |t: Option<Timestamp>| t.map(AsText);
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for field in self.fields.iter() {
            let key = field.name();
            match field {
                ChargeField::Number => map.serialize_entry(key, c.number.as_str())?,
                ChargeField::BillingSystemCustomerIdentifier => {
                    map.serialize_entry(key, c.customer.as_str())?;
                }
                ChargeField::Amount => map.serialize_entry(key, &JsonAmount(c.amount))?,
                ChargeField::Currency => map.serialize_entry(key, c.amount.currency().code())?,
                ChargeField::LocalCurrencyAmount => {
                    map.serialize_entry(key, &JsonAmount(c.local_amount))?;
                }
                ChargeField::LocalCurrency => {
                    map.serialize_entry(key, c.local_amount.currency().code())?;
                }
                ChargeField::PaidThroughDate => {
                    map.serialize_entry(key, &AsText(c.paid_through_date))?;
                }
                ChargeField::ChargeStatus => map.serialize_entry(key, c.status.as_str())?,
                ChargeField::ReceivedOn => map.serialize_entry(key, &AsText(c.received_on))?,
                ChargeField::SetAsApprovedOn => {
                    map.serialize_entry(key, &stamp(c.set_as_approved_on))?;
                }
                ChargeField::SetAsDeclinedOn => {
                    map.serialize_entry(key, &stamp(c.set_as_declined_on))?;
                }
                ChargeField::SetAsBadRequestOn => {
                    map.serialize_entry(key, &stamp(c.set_as_bad_request_on))?;
                }
                ChargeField::SetAsRejectedRequestOn => {
                    map.serialize_entry(key, &stamp(c.set_as_rejected_on))?;
                }
            }
        }
        map.end()
    }
}

/// The parameters of `charges/list`, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct ListParams {
    pub limit: u32,
    pub group: StatusGroup,
    pub offset: u64,
    pub fields: Vec<ChargeField>,
}

/// Checks the query of `charges/list`; each bad or missing parameter is named.
pub fn parse_list_params(query: &[(String, String)]) -> Result<ListParams, ApiError> {
    let get = |name: &str| -> Result<Option<&str>, ApiError> {
        let mut values = query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::invalid_parameter(
                name,
                format!("{name} is given more than once"),
            ));
        }
        Ok(first)
    };
    let mandatory = |name: &str| -> Result<&str, ApiError> {
        get(name)?.ok_or_else(|| ApiError::invalid_parameter(name, format!("{name} is mandatory")))
    };

    let limit = mandatory("number_of_results")?;
    let limit = plain_integer(limit)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| {
            ApiError::invalid_parameter(
                "number_of_results",
                format!(
                    "number_of_results must be an integer from 1 to {MAX_PAGE} in plain \
                     decimal digits, not '{}'",
                    shown(limit)
                ),
            )
        })?;
    let group = mandatory("charge_status")?;
    let group = StatusGroup::parse(group).ok_or_else(|| {
        ApiError::invalid_parameter(
            "charge_status",
            format!(
                "charge_status must be NOT_PROCESSED or PROCESSED, not '{}'",
                shown(group)
            ),
        )
    })?;
    let offset = mandatory("offset")?;
    let offset = plain_integer(offset)
        .filter(|n| *n <= MAX_OFFSET)
        .ok_or_else(|| {
            ApiError::invalid_parameter(
                "offset",
                format!(
                    "offset must be an integer from 0 to {MAX_OFFSET} in plain decimal \
                     digits, not '{}'",
                    shown(offset)
                ),
            )
        })?;
    // An empty fields_set (a client template with nothing filled in) means all fields.
    // Spaces and tabs around names are ignored (and nothing else, so that the pattern the
    // OpenAPI document gives is exactly what is accepted).
    let blank = |s: &str| s.trim_matches([' ', '\t']).to_owned();
    let fields = match get("fields_set")?.map(blank).filter(|s| !s.is_empty()) {
        None => ChargeField::ALL.to_vec(),
        Some(list) => {
            let mut wanted = Vec::new();
            for name in list.split(',').map(blank) {
                let name = name.as_str();
                let field = ChargeField::parse(name).ok_or_else(|| {
                    ApiError::invalid_parameter(
                        "fields_set",
                        format!("fields_set names an unknown charge field '{name}'"),
                    )
                })?;
                wanted.push(field);
            }
            // Keys come out once each, in the contract's order.
            ChargeField::ALL
                .into_iter()
                .filter(|f| wanted.contains(f))
                .collect()
        }
    };
    Ok(ListParams {
        limit,
        group,
        offset,
        fields,
    })
}

/// List charges: one page of the operator's charges waiting to be seen.
///
/// The caller's operator's charges not acknowledged in their current status, in the
/// chosen group, ordered by `received_on` then `number` (oldest first), skipping
/// `offset`, at most `number_of_results`. Any bad or missing parameter is
/// `400 INVALID_PARAMETER` naming it.
#[utoipa::path(
    get,
    path = "/netflix/charges/list",
    context_path = BASE,
    tag = "charges",
    operation_id = "list",
    params(openapi::ListQuery),
    responses(
        (status = 200, description = "A page of charges.", body = Envelope<ChargesSet>),
        openapi::ListErrors,
    ),
    security(("token_query" = []), ("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    QueryCaller { caller, query }: QueryCaller,
) -> Result<Envelope<impl Serialize>, ApiError> {
    let params = parse_list_params(&query.0)?;
    let fields: std::sync::Arc<[ChargeField]> = params.fields.into();
    let charges = state
        .store
        .list_charges(&ListQuery {
            operator_id: caller.operator_id,
            group: params.group,
            offset: params.offset,
            limit: params.limit,
        })
        .await?;
    Ok(Envelope::ok(ChargesSet {
        charges_set: charges
            .into_iter()
            .map(|charge| ChargeView {
                charge,
                fields: fields.clone(),
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests;
