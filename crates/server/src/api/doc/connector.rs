//! The OpenAPI description of the connector API's requests and answers (tag `connector`).
//! The handlers parse raw JSON, so these types document shapes and limits only.

use std::collections::BTreeMap;

use chargegate_core::connector::{ItemCode, MAX_EVENTS};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response};
use utoipa::{IntoParams, IntoResponses, Modify, ToSchema};

use super::shared::{BODY, EVERY, codes, error_responses, query_parameter};
use crate::edge::error::Code;

/// The name of the connector key's security scheme.
pub const CONNECTOR: &str = "connector";

/// Adds the connector key's security scheme.
pub struct ConnectorKey;

impl Modify for ConnectorKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            CONNECTOR,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A connector key (`chargegate connector-key add --operator CODE`) as \
                         `Authorization: Bearer <key>`. Only for `/chargegate/v1/connector/`; \
                         operator tokens are refused there, and connector keys everywhere else.",
                    ))
                    .build(),
            ),
        );
    }
}

/// One charge Netflix raised.
#[derive(ToSchema)]
pub struct IntakeItem {
    /// Netflix's id of the charge, unique per operator: a repeat with the same data is
    /// harmless, with different data `CONFLICT`.
    #[schema(min_length = 1, max_length = 128, examples("nfx-ch-000123"))]
    pub netflix_charge_identifier: String,
    /// The operator's customer; this or `netflix_customer_identifier` (or both).
    #[schema(min_length = 1, max_length = 128)]
    pub billing_system_customer_identifier: Option<String>,
    /// The Netflix PAI, resolved through the operator's live subscription linked to it.
    #[schema(min_length = 1, max_length = 128)]
    pub netflix_customer_identifier: Option<String>,
    /// More than 0, at most the currency's minor-unit digits.
    #[schema(value_type = f64, examples(9.99))]
    pub amount: f64,
    #[schema(pattern = "^[A-Z]{3}$", examples("EUR"))]
    pub currency: String,
    /// Mandatory unless `currency` is the operator's local currency (then it equals
    /// `amount` when given).
    #[schema(value_type = Option<f64>)]
    pub local_currency_amount: Option<f64>,
    /// `YYYY-MM-DD`.
    #[schema(examples("2026-12-31"))]
    pub paid_through_date: String,
    /// `YYYY-MM-DDTHH:MM:SS` UTC; default now.
    pub received_on: Option<String>,
}

/// Body of `POST connector/charges`.
#[derive(ToSchema)]
pub struct IntakeRequest {
    #[schema(min_items = 1, max_items = 500)]
    pub charges_set: Vec<IntakeItem>,
}

#[derive(ToSchema)]
pub struct StoredCharge {
    pub netflix_charge_identifier: String,
    #[schema(examples("I00000042"))]
    pub number: String,
}

/// A failed item: its identifiers as given (`null` when absent or not a string), the
/// code and a sentence.
#[derive(ToSchema)]
pub struct ConnectorFailedItem {
    pub netflix_charge_identifier: Option<String>,
    /// Verdicts only.
    pub number: Option<String>,
    /// Promotions only.
    pub code: Option<String>,
    #[schema(value_type = ConnectorItemCode)]
    pub error_code: String,
    pub error_description: String,
}

/// A per-item `error_code` of the connector API.
pub struct ConnectorItemCode;

impl utoipa::PartialSchema for ConnectorItemCode {
    fn schema() -> RefOr<utoipa::openapi::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ItemCode::ALL.iter().map(ItemCode::as_str)))
            .into()
    }
}

impl ToSchema for ConnectorItemCode {}

/// The `data` of intake.
#[derive(ToSchema)]
pub struct IntakeData {
    /// The stored (or already stored) items, in request order.
    pub charges_set: Vec<StoredCharge>,
    /// Present when some item failed.
    pub failed_charges_set: Option<Vec<ConnectorFailedItem>>,
}

#[derive(ToSchema)]
pub struct VerdictItem {
    /// This and/or `number`; both must name the same charge.
    pub netflix_charge_identifier: Option<String>,
    pub number: Option<String>,
    #[schema(pattern = "^(BAD_REQUEST|REJECTED)$")]
    pub charge_status: String,
    #[schema(min_length = 1, max_length = 512)]
    pub reason: Option<String>,
}

/// Body of `POST connector/charges/status`.
#[derive(ToSchema)]
pub struct VerdictRequest {
    #[schema(min_items = 1, max_items = 500)]
    pub charges_set: Vec<VerdictItem>,
}

/// `{}` when every item succeeded, else the failed ones.
#[derive(ToSchema)]
pub struct FailedCharges {
    pub failed_charges_set: Option<Vec<ConnectorFailedItem>>,
}

/// `{}` when every item succeeded, else the failed ones.
#[derive(ToSchema)]
pub struct FailedPromotions {
    pub failed_promotions_set: Option<Vec<ConnectorFailedItem>>,
}

/// One event: `id`, `type`, `operator`, `occurred_on`, and `charge` (with
/// `reference_number`) or `subscription`, as they were right after the change.
#[derive(ToSchema)]
pub struct Event {
    #[schema(examples("17"))]
    pub id: String,
    #[schema(
        pattern = "^(charge\\.approved|charge\\.declined|subscription\\.(created|suspended|unsuspended|cancelled))$"
    )]
    pub r#type: String,
    pub operator: String,
    pub occurred_on: String,
    /// The charge (§4 fields and `netflix_charge_identifier`), for charge events.
    pub charge: Option<BTreeMap<String, serde_json::Value>>,
    /// The decision's reference number, for charge events.
    pub reference_number: Option<String>,
    /// The subscription, for subscription events; `subscription.created` adds `customer`
    /// and `channel`.
    pub subscription: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(ToSchema)]
pub struct EventsData {
    pub events_set: Vec<Event>,
}

/// The query of `GET connector/outbox`.
pub struct OutboxQuery;

impl IntoParams for OutboxQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![query_parameter(
            "limit",
            false,
            "Most events to return, 1 to 500; default 100.",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(MAX_EVENTS))
                .into(),
        )]
    }
}

/// Body of `POST connector/outbox/ack`.
#[derive(ToSchema)]
pub struct AckRequest {
    #[schema(min_items = 1, max_items = 500)]
    pub ids: Vec<String>,
}

/// Body of `POST connector/subscriptions/activate`.
#[derive(ToSchema)]
pub struct ActivateRequest {
    pub netflix_token: String,
    #[schema(min_length = 1, max_length = 128)]
    pub netflix_customer_identifier: String,
}

/// Body of `POST connector/subscriptions/state`.
#[derive(ToSchema)]
pub struct StateRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub netflix_customer_identifier: String,
    #[schema(pattern = "^(EFFECTIVE|NOT_EFFECTIVE)$")]
    pub netflix_sate: String,
}

#[derive(ToSchema)]
pub struct PromotionItem {
    #[schema(min_length = 1, max_length = 64)]
    pub code: String,
    #[schema(min_length = 1, max_length = 512)]
    pub name: String,
    #[schema(min_length = 1, max_length = 512)]
    pub description: Option<String>,
    /// `YYYY-MM-DDTHH:MM:SS` UTC.
    pub effective_from: String,
    /// After `effective_from`; none: no end.
    pub expires_on: Option<String>,
}

/// Body of `POST connector/promotions`.
#[derive(ToSchema)]
pub struct PromotionsRequest {
    #[schema(min_items = 1, max_items = 500)]
    pub promotions_set: Vec<PromotionItem>,
}

const KEYED: [Code; 2] = [Code::InvalidToken, Code::TooManyRequests];

/// Failures of the connector's batches.
pub struct BatchErrors;

impl IntoResponses for BatchErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[
            &[Code::InvalidParameter, Code::LimitExceeded],
            &KEYED,
            &BODY,
            &EVERY,
        ]))
    }
}

/// Failures of `GET connector/outbox`.
pub struct ReadErrors;

impl IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[&[Code::InvalidParameter], &KEYED, &EVERY]))
    }
}

/// Failures of `connector/subscriptions/activate`.
pub struct ActivateErrors;

impl IntoResponses for ActivateErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[
            &[Code::InvalidParameter, Code::Conflict],
            &KEYED,
            &BODY,
            &EVERY,
        ]))
    }
}

/// Failures of `connector/subscriptions/state`.
pub struct StateErrors;

impl IntoResponses for StateErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[
            &[Code::InvalidParameter, Code::SubscriptionNotFound],
            &KEYED,
            &BODY,
            &EVERY,
        ]))
    }
}
