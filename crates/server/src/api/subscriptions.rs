//! `netflix/subscriptions/{create,show,suspend,unsuspend}` and `netflix/promotions/list`.

use axum::Extension;
use axum::extract::State;
use chargegate_core::clock::Timestamp;
use chargegate_core::money::Money;
use chargegate_core::subscription::{
    Actor, Channel, CreateOutcome, CustomerDetails, DEFAULT_VALIDITY_SECONDS, LOOK_BACK_MONTHS,
    LifeCycleState, MAX_VALIDITY_SECONDS, NewSubscription, Promotion, PromotionCode,
    PromotionField, ShowOutcome, ShowQuery, StateChange, StateRequest, Subscription,
    SubscriptionField, formatted_price, months_before,
};
use chargegate_core::text::CustomerId;
use chargegate_core::token::{TOKEN_BYTES, Token};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;
use utoipa::ToSchema;

use super::doc as openapi;
use super::paths::BASE;
use crate::auth::Caller;
use crate::auth::callers::{BodyCaller, QueryCaller};
use crate::edge::context::RequestId;
use crate::edge::envelope::{Empty, Envelope, JsonAmount};
use crate::edge::error::{ApiError, Code};
use crate::edge::extract::{QueryPairs, shown};
use crate::edge::fields::Fields;
use crate::state::AppState;

/// Longest customer name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Largest customer address, e-mail or phone object, as compact JSON text, in bytes.
pub const MAX_DETAIL_BYTES: usize = 4096;

/// The `data` of `subscriptions/create`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// chargegate's number of the subscription, `S` and eight digits.
    #[schema(examples("S00000001"))]
    subscription_number: String,
    /// The token the operator redirects its customer with, so Netflix can link the
    /// account; single use, shown only here. A new create for the same unlinked customer
    /// issues a fresh one and the old one stops working.
    netflix_token: String,
    /// When the netflix token stops working (UTC, `YYYY-MM-DDTHH:MM:SS`).
    #[schema(examples("2026-11-26T21:00:00"))]
    netflix_token_expires_on: String,
}

fn customer_id(value: &str, field: &str) -> Result<CustomerId, ApiError> {
    CustomerId::parse(value).map_err(|e| ApiError::invalid_parameter(field, format!("{field} {e}")))
}

fn mandatory_customer(fields: Fields<'_>) -> Result<CustomerId, ApiError> {
    let field = "billing_system_customer_identifier";
    customer_id(fields.string(field)?, field)
}

fn actor(caller: &Caller, request_id: String) -> Actor {
    Actor {
        user_id: caller.user_id,
        key_id: caller.key_id,
        request_id,
    }
}

/// Sign a customer up for Netflix, or renew the link of one not yet linked.
///
/// No live subscription: a new one, `EFFECTIVE`, with `netflix_sate` `NOT_EFFECTIVE` until
/// Netflix links the account; the promotion, if given, is redeemed. A live one that Netflix
/// has not linked yet: the same subscription with a fresh netflix token (the old one stops
/// working), so a retried create is harmless. A live one already linked:
/// `409 SUBSCRIPTION_EXISTS`. Bad fields, or a `promotion_code` that names no promotion of
/// the operator effective now: `400 INVALID_PARAMETER` naming the field.
#[utoipa::path(
    post,
    path = "/netflix/subscriptions/create",
    context_path = BASE,
    tag = "subscriptions",
    operation_id = "create_subscription",
    params(openapi::RequestIdHeader),
    request_body = openapi::CreateSubscriptionRequest,
    responses(
        (status = 200, description = "Created or renewed.", body = Envelope<Created>),
        openapi::CreateSubscriptionErrors,
    ),
    security((), ("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    BodyCaller { caller, body, .. }: BodyCaller,
) -> Result<Envelope<Created>, ApiError> {
    let fields = Fields(&body);
    let customer = mandatory_customer(fields)?;
    let promotion = match fields.text("promotion_code", PromotionCode::MAX_CHARS)? {
        None => None,
        Some(code) => Some(PromotionCode::parse(code).map_err(|e| {
            ApiError::invalid_parameter("promotion_code", format!("promotion_code {e}"))
        })?),
    };
    let channel = match fields.optional_string("channel")? {
        None => None,
        Some(s) => Some(Channel::parse(s).ok_or_else(|| {
            ApiError::invalid_parameter(
                "channel",
                format!(
                    "channel must be one of WEB, STORE, MOBILE, BROADBAND, OTHER, not '{}'",
                    shown(s)
                ),
            )
        })?),
    };
    let validity = match fields.get("validity_duration") {
        None => DEFAULT_VALIDITY_SECONDS,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n
            .as_i64()
            .filter(|s| (1..=MAX_VALIDITY_SECONDS).contains(s))
            .ok_or_else(|| {
                ApiError::invalid_parameter(
                    "validity_duration",
                    format!("validity_duration must be from 1 to {MAX_VALIDITY_SECONDS} seconds"),
                )
            })?,
        Some(_) => {
            return Err(ApiError::invalid_parameter(
                "validity_duration",
                "validity_duration must be a JSON integer of seconds",
            ));
        }
    };
    let name = |field| {
        fields
            .text(field, MAX_NAME_CHARS)
            .map(|s| s.map(str::to_owned))
    };
    let details = CustomerDetails {
        first_name: name("customer_first_name")?,
        last_name: name("customer_last_name")?,
        address: fields.object_text("customer_address", MAX_DETAIL_BYTES)?,
        email: fields.object_text("customer_email", MAX_DETAIL_BYTES)?,
        phone: fields.object_text("customer_phone", MAX_DETAIL_BYTES)?,
    };
    let now = state.clock.now();
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    let netflix_token = Token::from_random_bytes(bytes);
    let expires = now.plus_seconds(validity);
    let outcome = state
        .store
        .create_subscription(&NewSubscription {
            operator_id: caller.operator_id,
            customer,
            promotion,
            channel,
            details,
            token_hash: netflix_token.hash(),
            token_expires_at: expires,
            at: now,
            actor: actor(&caller, request_id),
        })
        .await?;
    let number = match outcome {
        CreateOutcome::Created { number } | CreateOutcome::Renewed { number } => number,
        CreateOutcome::Exists => {
            return Err(ApiError::new(
                Code::SubscriptionExists,
                "this customer's live subscription is already linked to Netflix",
            )
            .with_description("billing_system_customer_identifier"));
        }
        CreateOutcome::UnknownPromotion => {
            return Err(ApiError::invalid_parameter(
                "promotion_code",
                "promotion_code names no promotion of this operator that is effective now",
            ));
        }
    };
    Ok(Envelope::ok(Created {
        subscription_number: number,
        netflix_token: netflix_token.expose().to_owned(),
        netflix_token_expires_on: expires.to_string(),
    }))
}

/// Suspend a customer's live subscription: `EFFECTIVE` → `NOT_EFFECTIVE`.
///
/// Already suspended: `OK`, nothing changes. No live subscription (none, or only
/// cancelled ones): `404 SUBSCRIPTION_NOT_FOUND`.
#[utoipa::path(
    post,
    path = "/netflix/subscriptions/suspend",
    context_path = BASE,
    tag = "subscriptions",
    operation_id = "suspend_subscription",
    params(openapi::RequestIdHeader),
    request_body = openapi::CustomerRequest,
    responses(
        (status = 200, description = "Suspended (or already was).", body = Envelope<Empty>),
        openapi::StateErrors,
    ),
    security((), ("bearer" = [])),
)]
pub async fn suspend(
    state: State<AppState>,
    id: Extension<RequestId>,
    call: BodyCaller,
) -> Result<Envelope<Empty>, ApiError> {
    change_state(LifeCycleState::NotEffective, state, id, call).await
}

/// Unsuspend a customer's live subscription: `NOT_EFFECTIVE` → `EFFECTIVE`.
///
/// Already effective: `OK`, nothing changes. No live subscription: `404
/// SUBSCRIPTION_NOT_FOUND`.
#[utoipa::path(
    post,
    path = "/netflix/subscriptions/unsuspend",
    context_path = BASE,
    tag = "subscriptions",
    operation_id = "unsuspend_subscription",
    params(openapi::RequestIdHeader),
    request_body = openapi::CustomerRequest,
    responses(
        (status = 200, description = "Unsuspended (or already was effective).", body = Envelope<Empty>),
        openapi::StateErrors,
    ),
    security((), ("bearer" = [])),
)]
pub async fn unsuspend(
    state: State<AppState>,
    id: Extension<RequestId>,
    call: BodyCaller,
) -> Result<Envelope<Empty>, ApiError> {
    change_state(LifeCycleState::Effective, state, id, call).await
}

async fn change_state(
    target: LifeCycleState,
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    BodyCaller { caller, body, .. }: BodyCaller,
) -> Result<Envelope<Empty>, ApiError> {
    let customer = mandatory_customer(Fields(&body))?;
    let change = state
        .store
        .set_subscription_state(&StateRequest {
            operator_id: caller.operator_id,
            customer,
            target,
            at: state.clock.now(),
            actor: actor(&caller, request_id),
        })
        .await?;
    match change {
        StateChange::Changed | StateChange::Unchanged => Ok(Envelope::ok(Empty {})),
        StateChange::NotFound => Err(ApiError::new(
            Code::SubscriptionNotFound,
            "this customer has no live subscription",
        )
        .with_description("billing_system_customer_identifier")),
    }
}

// ---- reads ------------------------------------------------------------------------------

/// `fields_set`: comma-separated names among `all` (spaces and tabs around names
/// ignored); absent or empty means all, in order.
fn fields_set<F: Copy + PartialEq>(
    query: &QueryPairs,
    all: &[F],
    parse: impl Fn(&str) -> Option<F>,
    what: &str,
) -> Result<Vec<F>, ApiError> {
    let blank = |s: &str| s.trim_matches([' ', '\t']).to_owned();
    let Some(list) = query.get("fields_set").map(blank).filter(|s| !s.is_empty()) else {
        return Ok(all.to_vec());
    };
    let mut wanted = Vec::new();
    for name in list.split(',').map(blank) {
        wanted.push(parse(&name).ok_or_else(|| {
            ApiError::invalid_parameter(
                "fields_set",
                format!(
                    "fields_set names an unknown {what} field '{}'",
                    shown(&name)
                ),
            )
        })?);
    }
    Ok(all.iter().copied().filter(|f| wanted.contains(f)).collect())
}

struct AsText<T>(T);

impl<T: std::fmt::Display> Serialize for AsText<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A promotion with the chosen fields, in order.
struct PromotionView<'a> {
    promotion: &'a Promotion,
    fields: &'a [PromotionField],
}

impl Serialize for PromotionView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.promotion;
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for field in self.fields {
            let key = field.name();
            match field {
                PromotionField::Code => map.serialize_entry(key, p.code.as_str())?,
                PromotionField::Name => map.serialize_entry(key, &p.name)?,
                PromotionField::Description => map.serialize_entry(key, &p.description)?,
                PromotionField::EffectiveFrom => {
                    map.serialize_entry(key, &AsText(p.effective_from))?;
                }
                PromotionField::ExpiresOn => map.serialize_entry(key, &p.expires_on.map(AsText))?,
            }
        }
        map.end()
    }
}

struct PriceView(Money);

impl Serialize for PriceView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        // CRM.COM's PascalCase name.
        map.serialize_entry("FormattedPrice", &formatted_price(&self.0))?;
        map.serialize_entry("amount", &JsonAmount(self.0))?;
        map.serialize_entry("currency", self.0.currency().code())?;
        map.end()
    }
}

/// A subscription with the chosen fields, in order.
struct SubscriptionView<'a> {
    subscription: &'a Subscription,
    fields: &'a [SubscriptionField],
}

impl Serialize for SubscriptionView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sub = self.subscription;
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for field in self.fields {
            let key = field.name();
            match field {
                SubscriptionField::SubscriptionNumber => map.serialize_entry(key, &sub.number)?,
                SubscriptionField::BillingSystemCustomerIdentifier => {
                    map.serialize_entry(key, sub.customer.as_str())?;
                }
                SubscriptionField::NetflixCustomerIdentifier => {
                    map.serialize_entry(key, &sub.netflix_customer)?;
                }
                SubscriptionField::LifeCycleState => {
                    map.serialize_entry(key, sub.state.as_str())?;
                }
                SubscriptionField::NetflixSate => {
                    map.serialize_entry(key, sub.netflix_state.as_str())?;
                }
                SubscriptionField::CreatedOn => {
                    map.serialize_entry(key, &AsText(sub.created_on))?;
                }
                SubscriptionField::CancelledOn => {
                    map.serialize_entry(key, &sub.cancelled_on.map(AsText))?;
                }
                SubscriptionField::PromotionsSet => {
                    let all = PromotionField::ALL;
                    let views: Vec<PromotionView<'_>> = sub
                        .promotions
                        .iter()
                        .map(|promotion| PromotionView {
                            promotion,
                            fields: &all,
                        })
                        .collect();
                    map.serialize_entry(key, &views)?;
                }
                SubscriptionField::PricesSet => {
                    let views: Vec<PriceView> = sub.prices.iter().copied().map(PriceView).collect();
                    map.serialize_entry(key, &views)?;
                }
            }
        }
        map.end()
    }
}

/// The `data` of `subscriptions/show`: a bare array.
pub struct ShowData {
    subscriptions: Vec<Subscription>,
    fields: Vec<SubscriptionField>,
}

impl Serialize for ShowData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            self.subscriptions
                .iter()
                .map(|subscription| SubscriptionView {
                    subscription,
                    fields: &self.fields,
                }),
        )
    }
}

/// Show a customer's subscriptions: the live one first, then cancelled ones newest first.
///
/// Name the customer by `billing_system_customer_identifier`, by
/// `netflix_customer_identifier` (the Netflix PAI), or both (they must name the same
/// customer, else `400 INVALID_PARAMETER` naming `netflix_customer_identifier`); neither
/// is `400 INVALID_PARAMETER`. No subscription: `data` is `[]`.
#[utoipa::path(
    get,
    path = "/netflix/subscriptions/show",
    context_path = BASE,
    tag = "subscriptions",
    operation_id = "show_subscriptions",
    params(openapi::SubscriptionShowQuery),
    responses(
        (status = 200, description = "The customer's subscriptions (a bare array).",
            body = openapi::SubscriptionsEnvelope),
        openapi::ReadErrors,
    ),
    security(("token_query" = []), ("bearer" = [])),
)]
pub async fn show(
    State(state): State<AppState>,
    QueryCaller { caller, query }: QueryCaller,
) -> Result<Envelope<ShowData>, ApiError> {
    let customer = query
        .get("billing_system_customer_identifier")
        .map(|v| customer_id(v, "billing_system_customer_identifier"))
        .transpose()?;
    let netflix = query
        .get("netflix_customer_identifier")
        .map(|v| customer_id(v, "netflix_customer_identifier"))
        .transpose()?
        .map(CustomerId::into_string);
    if customer.is_none() && netflix.is_none() {
        return Err(ApiError::invalid_parameter(
            "billing_system_customer_identifier",
            "give billing_system_customer_identifier, netflix_customer_identifier, or both",
        ));
    }
    let fields = fields_set(
        &query,
        &SubscriptionField::ALL,
        SubscriptionField::parse,
        "subscription",
    )?;
    let now = state.clock.now();
    let outcome = state
        .store
        .show_subscriptions(&ShowQuery {
            operator_id: caller.operator_id,
            customer,
            netflix_customer: netflix,
            since: months_before(now, LOOK_BACK_MONTHS),
        })
        .await?;
    match outcome {
        ShowOutcome::Found(subscriptions) => Ok(Envelope::ok(ShowData {
            subscriptions,
            fields,
        })),
        ShowOutcome::Mismatch => Err(ApiError::invalid_parameter(
            "netflix_customer_identifier",
            "netflix_customer_identifier and billing_system_customer_identifier do not name \
             the same customer",
        )),
    }
}

/// The `data` of `promotions/list`: a bare array.
pub struct PromotionsData {
    promotions: Vec<Promotion>,
    fields: Vec<PromotionField>,
}

impl Serialize for PromotionsData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.promotions.iter().map(|promotion| PromotionView {
            promotion,
            fields: &self.fields,
        }))
    }
}

/// List the operator's promotions effective now.
///
/// `effective_from` ≤ now and (`expires_on` is `null` or later than now), ordered by
/// `effective_from` then `code`. `data` is a bare array, as in CRM.COM's example.
#[utoipa::path(
    get,
    path = "/netflix/promotions/list",
    context_path = BASE,
    tag = "subscriptions",
    operation_id = "list_promotions",
    params(openapi::PromotionsQuery),
    responses(
        (status = 200, description = "The promotions effective now (a bare array).",
            body = openapi::PromotionsEnvelope),
        openapi::ReadErrors,
    ),
    security(("token_query" = []), ("bearer" = [])),
)]
pub async fn list_promotions(
    State(state): State<AppState>,
    QueryCaller { caller, query }: QueryCaller,
) -> Result<Envelope<PromotionsData>, ApiError> {
    let fields = fields_set(
        &query,
        &PromotionField::ALL,
        PromotionField::parse,
        "promotion",
    )?;
    let now: Timestamp = state.clock.now();
    let promotions = state
        .store
        .effective_promotions(caller.operator_id, now)
        .await?;
    Ok(Envelope::ok(PromotionsData { promotions, fields }))
}
