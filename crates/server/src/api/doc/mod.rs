//! The OpenAPI 3.1 description of the API under `/crmapi/rest/v2/`.
//!
//! Paths and operations come from the `#[utoipa::path]` attributes on the handlers, which
//! [`super::routes`] also uses to build the router, so a route cannot be served without
//! being described or described without being served. Response data is described by the
//! types the handlers serialise (`Envelope`, `TokenData`, `FailedItem`, …). Requests are
//! parsed from raw JSON (so that every problem can be reported in the envelope); their
//! shapes, and the codes, live here as documentation types, built from the same constants
//! the code checks against (`Code::ALL`, `ItemErrorCode::ALL`, `ChargeField::ALL`, the
//! text limits).
//!
//! The document is served at `GET /crmapi/rest/v2/openapi.json` and checked in as
//! `openapi.json` at the repository root; a test fails when the two drift apart.

use std::collections::BTreeMap;

use chargegate_core::batch::ItemErrorCode as ItemCode;
use chargegate_core::charge::{ChargeField, ChargeStatus, StatusGroup};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{KnownFormat, RefOr, Required, Response, Schema};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

use self::connector::ConnectorKey;
use crate::edge::envelope::{StatusCode, string_enum};
use crate::edge::error::Code;

pub mod connector;
pub mod shared;

use shared::{AUTHENTICATED, BODY, EVERY, codes, error_responses, query_parameter};

/// The document's root: title, version, the rules every method shares, tags and the
/// ways a token may travel. The paths are added by [`super::routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chargegate",
        description = "CRM.COM's Netflix charges Web API as chargegate serves it: an operator's \
billing system logs in, lists the Netflix charges raised against its customers, and \
answers them (accept, decline, acknowledge). chargegate's own additions (tag `audit`) \
live under `/chargegate/v1/` and take the same tokens, envelope and codes.

**Envelope.** Every response, errors included, is one JSON object \
`{\"data\": …, \"status\": {\"code\", \"description\", \"message\"}}`. On success \
`status.code` is `OK` and `description` and `message` are empty strings. On a \
request-level error `data` is `{}`, `status.code` is one of the `StatusCode` values, \
`message` is a sentence safe to show a user and `description` names the offending \
parameter path or is empty.

**HTTP statuses.** By default (`http_errors = \"rest\"`) HTTP status codes are real \
and follow the code, as each operation's responses list them. A server run with \
`http_errors = \"crm\"` (for clients written for CRM.COM that treat any other status \
as a transport failure) answers every response in the envelope with `200`, errors \
included, the code staying in `status.code`; `Retry-After` is still sent. The health \
probes `/healthz` and `/readyz` keep their real statuses in both modes.

**Token.** Log in with `authentication/token` to get one. Then send it as the `token` \
field of the JSON body (POST methods), as the `token` query parameter (GET methods), or \
as an `Authorization: Bearer` header; when both are present they must be equal. A \
missing, malformed, unknown or released token is `401 INVALID_TOKEN`; a token past its \
lifetime (two hours from issue by default) is `401 EXPIRED_TOKEN`. Tokens are JWTs \
(HS256) whose claims `usr`, `org`, `oun`, `iat`, `exp` and `jti` name the user, the \
operator, and when the token was issued and expires (Unix seconds written as strings); \
a client may read `exp` to know when to log in again. The server alone decides whether \
a token is still good: a valid signature is not enough.

**Requests.** Bodies are parsed as JSON whatever their `Content-Type` says (a leading \
UTF-8 byte-order mark is skipped); unknown fields are ignored; a key repeated in one \
object is `400 MALFORMED_REQUEST`; bodies over 1 MiB are `413 PAYLOAD_TOO_LARGE`. A \
query parameter given twice is `400 INVALID_PARAMETER`; integers are plain decimal \
digits. An unknown path is `404 NOT_FOUND` and a wrong HTTP verb \
`405 METHOD_NOT_ALLOWED`, in the same envelope.

**Limits.** A request whose head is not valid HTTP/1.1 is `400 MALFORMED_REQUEST`; a \
request target over the limit (8 KiB by default) is `414 URI_TOO_LONG`; a head over its \
limit (16 KiB, 100 headers) is `431 HEADERS_TOO_LARGE`; a body that does not arrive in \
time is `408 REQUEST_TIMEOUT`; a connection over the server's cap is answered \
`503 SERVICE_UNAVAILABLE`. An operator over its request rate limit (when configured) is \
`429 TOO_MANY_REQUESTS` with `Retry-After`.

**Batch methods.** `accept`, `decline` and `acknowledge` take up to 50 charges; each \
is judged on its own and the call answers `200 OK` listing the failed ones with an \
`ItemErrorCode`. Every applied item of one call is committed in one transaction.

**Request ids.** Every response carries an `X-Request-Id` header: the client's, when it \
sent a usable one, else a new one. The server's log lines for the request carry it too.

**Timestamps** are UTC, written `YYYY-MM-DDTHH:MM:SS`; **amounts** are exact decimal \
JSON numbers with at most the currency's minor-unit digits."
    ),
    modifiers(&TokenTransports, &ConnectorKey),
    tags(
        (name = "authentication", description = "Logging in and releasing tokens."),
        (name = "charges", description = "Listing and answering Netflix charges."),
        (name = "subscriptions", description = "Signing customers up for Netflix, suspending \
and resuming them, and the operator's promotions."),
        (name = "audit", description = "chargegate's own methods under `/chargegate/v1/`, \
beyond CRM.COM: a charge's whole history, and the reconciliation feed of every status \
change in a time window."),
        (name = "connector", description = "The Netflix side under `/chargegate/v1/connector/`, \
for the connector process that talks to Netflix, authenticated with a connector key: \
intake of the charges Netflix raises, Netflix's own verdicts, account links and states, \
promotions, and the outbox of every event Netflix must be told (at-least-once, in order \
per charge and per subscription)."),
    ),
    components(schemas(StatusCode, ItemErrorCode))
)]
pub struct ApiDoc;

/// Names of the security schemes, as operations refer to them.
pub const BEARER: &str = "bearer";
pub const TOKEN_QUERY: &str = "token_query";
pub const BASIC: &str = "basic";

/// The token's transports that OpenAPI can express as security schemes. The third, the
/// `token` field of a POST body, is a field of each request body.
struct TokenTransports;

impl Modify for TokenTransports {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The token from authentication/token as `Authorization: Bearer \
                         <token>`, once. Accepted by every method; when the body field or \
                         query parameter `token` is present too, both must be equal.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            BASIC,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A web API key as the user name of HTTP Basic authentication, with an \
                         empty password: `Authorization: Basic base64(\"<KEY>:\")`; without the \
                         colon, as most CRM.COM clients send it, is accepted too, and so is \
                         the scheme in any case. Only for authentication/web_api_key/token.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            TOKEN_QUERY,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The token from authentication/token as the `token` query parameter of \
                 GET methods.",
            ))),
        );
    }
}

/// A per-item `error_code` of a batch method's `failed_charges_set`.
pub struct ItemErrorCode;

impl PartialSchema for ItemErrorCode {
    fn schema() -> RefOr<Schema> {
        string_enum(
            ItemCode::ALL.iter().map(ItemCode::as_str),
            "Why one item of a batch call failed. Items are judged in request order and \
             the first rule that matches wins:\n\n\
             - `INVALID_PARAMETER`: the item is not an object, or a field is missing, not a \
             string, empty or too long (`error_description` names the field)\n\
             - `DUPLICATE_IN_REQUEST`: the same `number` appeared earlier in this request\n\
             - `DUPLICATE_REFERENCE_NUMBER`: the same `reference_number` appeared earlier \
             in this request, or was already used by this operator on another charge in \
             this method's namespace\n\
             - `CHARGE_NOT_FOUND`: no charge with this number belongs to the caller's \
             operator\n\
             - `CUSTOMER_MISMATCH`: the charge belongs to a different customer\n\
             - `CHARGE_ALREADY_PROCESSED`: the charge is no longer `PENDING` (accept and \
             decline); a repeat with the same or no reference of the decision that was \
             made is a success instead",
        )
        .into()
    }
}

impl ToSchema for ItemErrorCode {}

/// A timestamp as the API writes it.
fn timestamp() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$"))
        .description(Some("UTC, `YYYY-MM-DDTHH:MM:SS`"))
        .examples(["2026-11-01T10:00:00"])
}

fn nullable_timestamp(what: &str) -> ObjectBuilder {
    timestamp()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some(format!(
            "UTC, `YYYY-MM-DDTHH:MM:SS`: {what}, else `null`"
        )))
        .examples([serde_json::Value::Null])
}

fn amount(what: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .description(Some(format!(
            "{what}: an exact decimal with at most the currency's minor-unit digits \
             (`9.99`, `12.5`, `1500`), never a binary-float artefact"
        )))
        .examples([serde_json::json!(9.99)])
}

fn currency(what: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Z]{3}$"))
        .description(Some(format!("ISO-4217 code of {what}")))
        .examples(["EUR"])
}

/// A charge as `charges/list` shows it: the thirteen fields of the contract in its order.
/// With `fields_set`, each object carries only the chosen fields.
pub struct Charge;

impl PartialSchema for Charge {
    fn schema() -> RefOr<Schema> {
        let statuses: Vec<&str> = ChargeStatus::ALL.iter().map(ChargeStatus::as_str).collect();
        let mut object = ObjectBuilder::new().description(Some(
            "A Netflix charge. Every field is present (`null` when it has no value) unless \
             `fields_set` chose fewer; keys come out in this order.",
        ));
        for field in ChargeField::ALL {
            let schema = match field {
                ChargeField::Number => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("chargegate's charge number, unique across the server"))
                    .examples(["I00002706"]),
                ChargeField::BillingSystemCustomerIdentifier => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("the operator's own id of the customer"))
                    .examples(["pci155"]),
                ChargeField::Amount => amount("the amount Netflix asks for, in `currency`"),
                ChargeField::Currency => currency("`amount`"),
                ChargeField::LocalCurrencyAmount => amount(
                    "the amount in the operator's local currency, fixed when the charge was \
                     received",
                ),
                ChargeField::LocalCurrency => currency("the operator's local currency"),
                ChargeField::PaidThroughDate => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
                    .description(Some(
                        "if approved, the service is paid up to and including this day",
                    ))
                    .examples(["2026-12-31"]),
                ChargeField::ChargeStatus => string_enum(
                    statuses.iter().copied(),
                    "`PENDING` is the only open state; accept moves it to `APPROVED`, \
                     decline to `DECLINED`; the other four are final",
                ),
                ChargeField::ReceivedOn => timestamp().description(Some(
                    "UTC, `YYYY-MM-DDTHH:MM:SS`: when the charge was received",
                )),
                ChargeField::SetAsApprovedOn => nullable_timestamp("when it became `APPROVED`"),
                ChargeField::SetAsDeclinedOn => nullable_timestamp("when it became `DECLINED`"),
                ChargeField::SetAsBadRequestOn => {
                    nullable_timestamp("when it became `BAD_REQUEST`")
                }
                ChargeField::SetAsRejectedRequestOn => {
                    nullable_timestamp("when it became `REJECTED` (CRM.COM's spelling)")
                }
            };
            object = object.property(field.name(), schema);
        }
        object.into()
    }
}

impl ToSchema for Charge {}

/// Body of `authentication/token`.
#[derive(ToSchema)]
pub struct LoginRequest {
    /// The user's name within its operator.
    #[schema(examples("demo"))]
    pub username: String,
    /// The user's password.
    #[schema(examples("demo"))]
    pub password: String,
    /// The operator's code (CRM.COM calls the operator an organisation).
    #[schema(examples("pci"))]
    pub organisation: String,
    /// CRM.COM's business unit: accepted and ignored, whatever its value.
    pub unit: Option<serde_json::Value>,
}

/// Body of `authentication/token/release`.
#[derive(ToSchema)]
pub struct ReleaseRequest {
    /// The token to revoke; may come as `Authorization: Bearer` instead (absent or
    /// `null`: the header's).
    pub token: Option<String>,
}

/// One charge of a batch call's set.
#[derive(ToSchema)]
pub struct ChargeItem {
    /// The charge's number.
    #[schema(min_length = 1, max_length = 64, examples("I00002706"))]
    pub number: String,
    /// The customer the charge must belong to.
    #[schema(min_length = 1, max_length = 128, examples("pci155"))]
    pub billing_system_customer_identifier: String,
    /// The caller's own reference, for reconciliation and safe retries: unique per
    /// operator within the method (among accepts, among declines, among
    /// acknowledgements). A repeat of a call with the same references changes nothing
    /// and succeeds.
    #[schema(min_length = 1, max_length = 128, examples("R-1"))]
    pub reference_number: Option<String>,
}

/// Body of `netflix/charges/accept`.
#[derive(ToSchema)]
pub struct AcceptRequest {
    /// The token; may come as `Authorization: Bearer` instead (absent or `null`: the
    /// header's).
    pub token: Option<String>,
    /// The charges to accept (bill the customer): `PENDING` ones become `APPROVED`.
    #[schema(min_items = 1, max_items = 50)]
    pub accepted_charges_set: Vec<ChargeItem>,
}

/// Body of `netflix/charges/decline`.
#[derive(ToSchema)]
pub struct DeclineRequest {
    /// The token; may come as `Authorization: Bearer` instead (absent or `null`: the
    /// header's).
    pub token: Option<String>,
    /// The charges to decline (the Netflix subscription ends): `PENDING` ones become
    /// `DECLINED`.
    #[schema(min_items = 1, max_items = 50)]
    pub declined_charges_set: Vec<ChargeItem>,
}

/// Body of `netflix/charges/acknowledge`.
#[derive(ToSchema)]
pub struct AcknowledgeRequest {
    /// The token; may come as `Authorization: Bearer` instead (absent or `null`: the
    /// header's).
    pub token: Option<String>,
    /// The charges the operator has seen in their current status: they leave
    /// `charges/list` until their status changes.
    #[schema(min_items = 1, max_items = 50)]
    pub acknowledged_charges_set: Vec<ChargeItem>,
}

/// The optional `X-Request-Id` request header, accepted by every method.
pub struct RequestIdHeader;

fn request_id_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("X-Request-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "The client's id for this request: echoed in the response header and the \
             server's log lines when it is 1–128 characters, each an ASCII letter or \
             digit, `-`, `_` or `.`; otherwise the server makes one.",
        ))
        // Any value is accepted (an unsafe one is replaced), so none is invalid.
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

impl IntoParams for RequestIdHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![request_id_parameter()]
    }
}

/// The query of `netflix/charges/list`.
pub struct ListQuery;

impl IntoParams for ListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let query = |name: &str, required: bool, description: &str, schema: Schema| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(if required {
                    Required::True
                } else {
                    Required::False
                })
                .description(Some(description))
                .schema(Some(schema))
        };
        let groups = [StatusGroup::NotProcessed, StatusGroup::Processed];
        vec![
            query(
                "token",
                false,
                "The token; may come as `Authorization: Bearer` instead.",
                ObjectBuilder::new().schema_type(Type::String).into(),
            )
            .build(),
            query(
                "number_of_results",
                true,
                "How many charges at most this page holds, in plain decimal digits.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(chargegate_core::limits::MAX_PAGE))
                    .into(),
            )
            .build(),
            query(
                "charge_status",
                true,
                "`NOT_PROCESSED`: the `PENDING` charges; `PROCESSED`: those in one of the \
                 four final states.",
                string_enum(groups.iter().map(StatusGroup::as_str), "The group to list.").into(),
            )
            .build(),
            query(
                "offset",
                true,
                "How many charges of the group to skip, in plain decimal digits (no sign, no \
                 leading zero).",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(chargegate_core::limits::MAX_OFFSET))
                    .into(),
            )
            .build(),
            query(
                "fields_set",
                false,
                "Comma-separated names of the charge fields to return (e.g. \
                 `number,amount,currency`; spaces around names are ignored); absent or empty \
                 means all of them. An unknown name is `INVALID_PARAMETER`.",
                fields_set_schema(),
            )
            .build(),
            request_id_parameter(),
        ]
    }
}

/// `fields_set`: a comma-separated list of charge field names, or empty. A string with a
/// pattern rather than an array: an empty list and a list of one empty name would be
/// written the same way in a query.
fn fields_set_schema() -> Schema {
    let names: Vec<&str> = ChargeField::ALL.iter().map(ChargeField::name).collect();
    let name = format!("(?:{})", names.join("|"));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(
            "^[ \\t]*(?:{name}[ \\t]*(?:,[ \\t]*{name}[ \\t]*)*)?$"
        )))
        .examples(["number,amount,currency"])
        .into()
}

/// Failures of `authentication/token`.
pub struct LoginErrors;

impl IntoResponses for LoginErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[
            &[
                Code::InvalidParameter,
                Code::InvalidCredentials,
                Code::TooManyRequests,
            ],
            &BODY,
            &EVERY,
        ]))
    }
}

/// Failures of `authentication/token/release`.
pub struct ReleaseErrors;

impl IntoResponses for ReleaseErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[&AUTHENTICATED, &BODY, &EVERY]))
    }
}

/// Failures of the batch methods as a whole (per-item failures answer `200 OK`).
pub struct BatchErrors;

impl IntoResponses for BatchErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[
            &[Code::InvalidParameter, Code::LimitExceeded],
            &AUTHENTICATED,
            &BODY,
            &EVERY,
        ]))
    }
}

/// Failures of `netflix/charges/list`.
pub struct ListErrors;

impl IntoResponses for ListErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[&[Code::InvalidParameter], &AUTHENTICATED, &EVERY]))
    }
}

/// A time as the API writes it (the schema of every `…_on` and `at` field).
pub struct Timestamp;

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        timestamp().into()
    }
}

impl ToSchema for Timestamp {}

/// A charge status.
pub struct ChargeStatusName;

impl PartialSchema for ChargeStatusName {
    fn schema() -> RefOr<Schema> {
        string_enum(
            ChargeStatus::ALL.iter().map(ChargeStatus::as_str),
            "A charge's status: `PENDING` is the only open one; the other four are final.",
        )
        .into()
    }
}

impl ToSchema for ChargeStatusName {}

/// An event of a charge's history.
pub struct HistoryEventName;

impl PartialSchema for HistoryEventName {
    fn schema() -> RefOr<Schema> {
        use chargegate_core::audit::HistoryEvent;
        string_enum(
            HistoryEvent::ALL.iter().map(HistoryEvent::as_str),
            "What happened: `received` (the charge arrived), a status change (`approved`, \
             `declined`, `bad_request`, `rejected`), or `acknowledged`.",
        )
        .into()
    }
}

impl ToSchema for HistoryEventName {}

fn token_parameter() -> Parameter {
    query_parameter(
        "token",
        false,
        "The token; may come as `Authorization: Bearer` instead.",
        ObjectBuilder::new().schema_type(Type::String).into(),
    )
}

/// The query of `charges/show`.
pub struct ShowQuery;

impl IntoParams for ShowQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            token_parameter(),
            query_parameter(
                "number",
                true,
                "The charge's number (1 to 64 characters). A charge of another operator \
                 answers like a missing one.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(64))
                    .examples(["I00002706"])
                    .into(),
            ),
            request_id_parameter(),
        ]
    }
}

/// A time parameter of the feed: `YYYY-MM-DDTHH:MM:SS` naming a real moment of the
/// Gregorian calendar (leap days included), so that every value the document calls valid
/// is one the server accepts.
fn time_parameter_schema() -> Schema {
    const DAY: &str = r"(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))|(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)";
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(r"^{DAY}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d$")))
        .description(Some("UTC, `YYYY-MM-DDTHH:MM:SS`"))
        .examples(["2026-11-01T00:00:00"])
        .into()
}

/// The query of `charges/decisions`.
pub struct DecisionsQuery;

impl IntoParams for DecisionsQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            token_parameter(),
            query_parameter(
                "from",
                true,
                "Start of the window (included), UTC `YYYY-MM-DDTHH:MM:SS`.",
                time_parameter_schema(),
            ),
            query_parameter(
                "to",
                true,
                "End of the window (excluded), UTC `YYYY-MM-DDTHH:MM:SS`. A window that \
                 ends at or before its start is empty.",
                time_parameter_schema(),
            ),
            query_parameter(
                "after",
                false,
                "The `next` of the previous page; absent for the first page.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^(0|[1-9]\d{0,17})-(0|[1-9]\d{0,17})$"))
                    .examples(["0-42"])
                    .into(),
            ),
            query_parameter(
                "limit",
                false,
                "Most entries on this page, in plain decimal digits; default 100.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(chargegate_core::limits::MAX_FEED_PAGE))
                    .into(),
            ),
            request_id_parameter(),
        ]
    }
}

/// Failures of `charges/show`.
pub struct ShowErrors;

impl IntoResponses for ShowErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[
            &[Code::InvalidParameter, Code::NotFound],
            &AUTHENTICATED,
            &EVERY,
        ]))
    }
}

/// Failures of `charges/decisions`.
pub struct DecisionsErrors;

impl IntoResponses for DecisionsErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[&[Code::InvalidParameter], &AUTHENTICATED, &EVERY]))
    }
}

// ---- web API keys, subscriptions, promotions ---------------------------------------------

/// Body of `authentication/web_api_key/token`: optional, may be empty.
#[derive(ToSchema)]
pub struct KeyLoginRequest {
    /// CRM.COM's business unit: accepted and ignored, whatever its value.
    pub unit: Option<serde_json::Value>,
}

/// Failures of `authentication/web_api_key/token`.
pub struct KeyLoginErrors;

impl IntoResponses for KeyLoginErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[&[Code::InvalidCredentials], &BODY, &EVERY]))
    }
}

/// Body of `netflix/subscriptions/create`.
#[derive(ToSchema)]
pub struct CreateSubscriptionRequest {
    /// The token; may come as `Authorization: Bearer` instead (absent or `null`: the
    /// header's).
    pub token: Option<String>,
    /// The operator's customer (text without NUL).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00]*$",
        examples("pci155")
    )]
    pub billing_system_customer_identifier: String,
    /// A promotion of this operator effective now, redeemed on the subscription.
    #[schema(min_length = 1, max_length = 64)]
    pub promotion_code: Option<String>,
    /// Where the customer signed up.
    #[schema(value_type = Option<String>, pattern = "^(WEB|STORE|MOBILE|BROADBAND|OTHER)$")]
    pub channel: Option<String>,
    /// The netflix token's lifetime in seconds (a JSON integer), default 3600.
    #[schema(minimum = 1, maximum = 86400)]
    pub validity_duration: Option<i64>,
    #[schema(min_length = 1, max_length = 128)]
    pub customer_first_name: Option<String>,
    #[schema(min_length = 1, max_length = 128)]
    pub customer_last_name: Option<String>,
    /// Stored as given (at most 4 KiB as compact JSON) and handed to the Netflix side.
    pub customer_address: Option<BTreeMap<String, serde_json::Value>>,
    /// Stored as given (at most 4 KiB as compact JSON).
    pub customer_email: Option<BTreeMap<String, serde_json::Value>>,
    /// Stored as given (at most 4 KiB as compact JSON).
    pub customer_phone: Option<BTreeMap<String, serde_json::Value>>,
}

/// Body of `netflix/subscriptions/suspend` and `unsuspend`.
#[derive(ToSchema)]
pub struct CustomerRequest {
    /// The token; may come as `Authorization: Bearer` instead (absent or `null`: the
    /// header's).
    pub token: Option<String>,
    /// The customer whose live subscription changes (text without NUL).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\x00]*$",
        examples("pci155")
    )]
    pub billing_system_customer_identifier: String,
}

/// Failures of `netflix/subscriptions/create`.
pub struct CreateSubscriptionErrors;

impl IntoResponses for CreateSubscriptionErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[
            &[Code::InvalidParameter, Code::SubscriptionExists],
            &AUTHENTICATED,
            &BODY,
            &EVERY,
        ]))
    }
}

/// Failures of `netflix/subscriptions/suspend` and `unsuspend`.
pub struct StateErrors;

impl IntoResponses for StateErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[
            &[Code::InvalidParameter, Code::SubscriptionNotFound],
            &AUTHENTICATED,
            &BODY,
            &EVERY,
        ]))
    }
}

/// Failures of the subscription and promotion reads.
pub struct ReadErrors;

impl IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        error_responses(&codes(&[&[Code::InvalidParameter], &AUTHENTICATED, &EVERY]))
    }
}

/// A promotion: `code`, `name`, `description`, `effective_from`, `expires_on`.
pub struct PromotionSchema;

impl PartialSchema for PromotionSchema {
    fn schema() -> RefOr<Schema> {
        use chargegate_core::subscription::PromotionField as F;
        let mut object = ObjectBuilder::new().description(Some(
            "A promotion. Every field is present (`null` when it has no value) unless \
             `fields_set` chose fewer.",
        ));
        for field in F::ALL {
            let schema = match field {
                F::Code => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .examples(["WELCOME3"]),
                F::Name => ObjectBuilder::new().schema_type(Type::String),
                F::Description => ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null])),
                F::EffectiveFrom => timestamp(),
                F::ExpiresOn => nullable_timestamp("when it stops being effective"),
            };
            object = object.property(field.name(), schema);
        }
        object.into()
    }
}

impl ToSchema for PromotionSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Promotion".into()
    }
}

/// A subscription as `subscriptions/show` writes it.
pub struct SubscriptionSchema;

impl PartialSchema for SubscriptionSchema {
    fn schema() -> RefOr<Schema> {
        use chargegate_core::subscription::SubscriptionField as F;
        let states = ["EFFECTIVE", "NOT_EFFECTIVE", "CANCELLED"];
        let mut object = ObjectBuilder::new().description(Some(
            "A Netflix subscription. Every field is present (`null` when it has no value) \
             unless `fields_set` chose fewer; keys come out in this order.",
        ));
        for field in F::ALL {
            let schema: RefOr<Schema> = match field {
                F::SubscriptionNumber => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("chargegate's number, `S` and eight digits"))
                    .examples(["S00000001"])
                    .into(),
                F::BillingSystemCustomerIdentifier => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("the operator's customer"))
                    .into(),
                F::NetflixCustomerIdentifier => ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some(
                        "the Netflix PAI; `null` until Netflix links the account",
                    ))
                    .into(),
                F::LifeCycleState => string_enum(
                    states,
                    "`EFFECTIVE`, `NOT_EFFECTIVE` (suspended) or `CANCELLED` (final)",
                )
                .into(),
                F::NetflixSate => string_enum(
                    ["EFFECTIVE", "NOT_EFFECTIVE"],
                    "what Netflix last said (CRM.COM's spelling, `sate`)",
                )
                .into(),
                F::CreatedOn => timestamp().into(),
                F::CancelledOn => nullable_timestamp("when it was cancelled").into(),
                F::PromotionsSet => utoipa::openapi::schema::ArrayBuilder::new()
                    .items(PromotionSchema::schema())
                    .description(Some(
                        "promotions redeemed on it in the last 10 months, newest first",
                    ))
                    .into(),
                F::PricesSet => utoipa::openapi::schema::ArrayBuilder::new()
                    .items(
                        ObjectBuilder::new()
                            .property(
                                "FormattedPrice",
                                ObjectBuilder::new()
                                    .schema_type(Type::String)
                                    .description(Some(
                                        "the amount with the currency's minor digits and the \
                                         code (CRM.COM's PascalCase name)",
                                    ))
                                    .examples(["9.99 EUR"]),
                            )
                            .property("amount", amount("the price"))
                            .property("currency", currency("`amount`")),
                    )
                    .description(Some(
                        "one entry per distinct price of its charges received in the last 10 \
                         months, by the newest charge carrying it, newest first",
                    ))
                    .into(),
            };
            object = object.property(field.name(), schema);
        }
        object.into()
    }
}

impl ToSchema for SubscriptionSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Subscription".into()
    }
}

fn names_pattern(names: &[&str]) -> Schema {
    let name = format!("(?:{})", names.join("|"));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(
            "^[ \\t]*(?:{name}[ \\t]*(?:,[ \\t]*{name}[ \\t]*)*)?$"
        )))
        .into()
}

/// The query of `netflix/subscriptions/show`.
pub struct SubscriptionShowQuery;

impl IntoParams for SubscriptionShowQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        use chargegate_core::subscription::SubscriptionField as F;
        let names: Vec<&str> = F::ALL.iter().map(F::name).collect();
        let id = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(128))
                .into()
        };
        vec![
            token_parameter(),
            query_parameter(
                "billing_system_customer_identifier",
                false,
                "The operator's customer. At least one of this and \
                 `netflix_customer_identifier`; when both, they must name the same customer.",
                id(),
            ),
            query_parameter(
                "netflix_customer_identifier",
                false,
                "The Netflix PAI of the customer.",
                id(),
            ),
            query_parameter(
                "fields_set",
                false,
                "Comma-separated names of the subscription fields to return; absent or \
                 empty means all. An unknown name is `INVALID_PARAMETER`.",
                names_pattern(&names),
            ),
            request_id_parameter(),
        ]
    }
}

/// The query of `netflix/promotions/list`.
pub struct PromotionsQuery;

impl IntoParams for PromotionsQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        use chargegate_core::subscription::PromotionField as F;
        let names: Vec<&str> = F::ALL.iter().map(F::name).collect();
        vec![
            token_parameter(),
            query_parameter(
                "fields_set",
                false,
                "Comma-separated names of the promotion fields to return; absent or empty \
                 means all. An unknown name is `INVALID_PARAMETER`.",
                names_pattern(&names),
            ),
            request_id_parameter(),
        ]
    }
}

/// The answer of `subscriptions/show`: `data` is a bare array of subscriptions.
#[derive(ToSchema)]
pub struct SubscriptionsEnvelope {
    /// The customer's subscriptions, the live one first, then cancelled ones newest first.
    #[schema(value_type = Vec<SubscriptionSchema>)]
    pub data: (),
    pub status: crate::edge::envelope::Status,
}

/// The answer of `promotions/list`: `data` is a bare array of promotions.
#[derive(ToSchema)]
pub struct PromotionsEnvelope {
    /// The promotions effective now, by `effective_from` then `code`.
    #[schema(value_type = Vec<PromotionSchema>)]
    pub data: (),
    pub status: crate::edge::envelope::Status,
}
