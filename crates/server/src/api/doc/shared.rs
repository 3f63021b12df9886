//! What every operation's description shares: the error responses by code, the groups
//! of codes most methods can answer, the `X-Request-Id` response header, and query
//! parameters.

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, RefOr, Required, Response, Schema};
use utoipa::{Modify, PartialSchema};

use crate::edge::envelope::string_enum;
use crate::edge::error::Code;

fn request_id_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(
            "The request's id: the client's `X-Request-Id` when usable, else a new one.",
        ))
        .build()
}

/// Every response of every operation carries the `X-Request-Id` header (see
/// `edge::context`): one definition, added to each response once the operations are in
/// the document.
pub struct RequestIdHeaders;

impl Modify for RequestIdHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert("X-Request-Id".to_owned(), request_id_header().into());
                    }
                }
            }
        }
    }
}

/// The error responses of an operation that can fail with `codes`: one response per HTTP
/// status, whose body's `status.code` is one of the codes with that status.
pub fn error_responses(codes: &[Code]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    for code in codes {
        by_status
            .entry(code.http_status().as_u16())
            .or_default()
            .push(*code);
    }
    by_status
        .into_iter()
        .map(|(http, codes)| {
            let names: Vec<&str> = codes.iter().map(Code::as_str).collect();
            let status = ObjectBuilder::new()
                .property(
                    "code",
                    string_enum(names.iter().copied(), "The error's code."),
                )
                .required("code")
                .property(
                    "description",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some("The offending parameter path, or empty.")),
                )
                .required("description")
                .property(
                    "message",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some("A sentence safe to show a user.")),
                )
                .required("message");
            let body = ObjectBuilder::new()
                .property("data", crate::edge::envelope::Empty::schema())
                .required("data")
                .property("status", status)
                .required("status");
            let mut response = ResponseBuilder::new()
                .description(format!(
                    "{}; `data` is `{{}}` and nothing was applied. This status is the \
                     default (`http_errors = \"rest\"`); a server run with \
                     `http_errors = \"crm\"` answers the same body with `200`.",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(body)).build(),
                );
            if codes
                .iter()
                .any(|c| matches!(c, Code::TooManyRequests | Code::ServiceUnavailable))
            {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some("Seconds after which a retry may succeed."))
                        .build(),
                );
            }
            (http.to_string(), response.build().into())
        })
        .collect()
}

/// Errors every method can answer: a request hyper cannot parse or that exceeds the
/// edge's limits, the server's fault, or an unavailable database (or too many open
/// connections).
pub const EVERY: [Code; 5] = [
    Code::MalformedRequest,
    Code::UriTooLong,
    Code::HeadersTooLarge,
    Code::InternalError,
    Code::ServiceUnavailable,
];

/// Errors of every method with a body: its head arrived but its body did not in time.
pub const BODY: [Code; 2] = [Code::RequestTimeout, Code::PayloadTooLarge];

/// Errors of every method with a token, besides a bad one: the operator's rate limit.
pub const AUTHENTICATED: [Code; 3] = [
    Code::InvalidToken,
    Code::ExpiredToken,
    Code::TooManyRequests,
];

/// `codes`, each once, in `Code::ALL`'s order.
pub fn codes(groups: &[&[Code]]) -> Vec<Code> {
    Code::ALL
        .into_iter()
        .filter(|c| groups.iter().any(|g| g.contains(c)))
        .collect()
}

pub fn query_parameter(name: &str, required: bool, description: &str, schema: Schema) -> Parameter {
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
        .build()
}
