//! CRM.COM's response envelope: `{"data": …, "status": {"code", "description", "message"}}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use chargegate_core::Money;
use serde::Serialize;
use serde::ser::Error as _;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use utoipa::PartialSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};

use super::code::Code;

/// Every response body, errors included.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    pub data: T,
    pub status: Status,
}

/// How the request went, as a whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    #[schema(value_type = StatusCode)]
    pub code: &'static str,
    /// On an error, the offending parameter path (e.g. `declined_charges_set[3].number`)
    /// or empty; empty on success.
    pub description: String,
    /// On an error, a sentence safe to show a user; empty on success.
    pub message: String,
}

/// `{}`: the `data` of a success with nothing to say, and of every error.
#[derive(Debug, Serialize)]
pub struct Empty {}

// Described by hand: a derived schema would be any object, so `{"failed_charges_set":
// […]}` would match both branches of a batch call's `oneOf [Empty, FailedSet]`.
impl utoipa::PartialSchema for Empty {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(0))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "`{}`: the `data` of a success with nothing to say, and of every error.",
            ))
            .into()
    }
}

impl ToSchema for Empty {}

impl<T: Serialize> Envelope<T> {
    pub fn ok(data: T) -> Self {
        Self::new(data, Code::Ok, String::new(), String::new())
    }

    pub fn new(data: T, code: Code, description: String, message: String) -> Self {
        Envelope {
            data,
            status: Status {
                code: code.as_str(),
                description,
                message,
            },
        }
    }
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}

/// Money as an exact JSON number: the decimal text goes into the document verbatim, so
/// `9.99` is written `9.99`, never through a binary float.
#[derive(Debug, Clone, Copy)]
pub struct JsonAmount(pub Money);

impl Serialize for JsonAmount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawValue::from_string(self.0.to_decimal_string())
            .map_err(S::Error::custom)?
            .serialize(s)
    }
}

/// A string schema whose values are exactly `values`.
pub fn string_enum<'a>(
    values: impl IntoIterator<Item = &'a str>,
    description: impl Into<String>,
) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
}

/// A request-level `status.code` (docs/api.md §7), with its HTTP status.
pub struct StatusCode;

impl PartialSchema for StatusCode {
    fn schema() -> RefOr<Schema> {
        let table: Vec<String> = Code::ALL
            .iter()
            .map(|c| format!("- `{}`: HTTP {}", c.as_str(), c.http_status().as_u16()))
            .collect();
        string_enum(
            Code::ALL.iter().map(Code::as_str),
            format!(
                "The request-level outcome. `OK` on success (per-item failures of a batch \
                 still answer `OK`); otherwise the error, with its HTTP status:\n\n{}",
                table.join("\n")
            ),
        )
        .into()
    }
}

impl ToSchema for StatusCode {}

#[cfg(test)]
mod tests {
    use super::*;
    use chargegate_core::Currency;

    #[test]
    fn the_empty_success_is_byte_for_byte_crm_com_s_example() {
        let body = serde_json::to_string(&Envelope::ok(Empty {})).expect("serialises");
        assert_eq!(
            body,
            r#"{"data":{},"status":{"code":"OK","description":"","message":""}}"#
        );
    }

    #[test]
    fn amounts_are_written_as_exact_json_numbers() {
        let eur = Currency::parse("EUR").expect("EUR");
        for (text, json) in [
            ("9.99", "9.99"),
            ("12.50", "12.5"),
            ("0.1", "0.1"),
            ("10", "10"),
        ] {
            let m = Money::parse(text, eur).expect("amount");
            assert_eq!(
                serde_json::to_string(&JsonAmount(m)).expect("serialises"),
                json
            );
        }
    }
}
