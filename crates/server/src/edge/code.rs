//! The request-level `status.code`s and the HTTP status each answers with: the one table
//! the envelope, the errors and the OpenAPI document all read.

use axum::http::StatusCode;

/// The request-level `status.code`s (docs/api.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Ok,
    MalformedRequest,
    InvalidParameter,
    LimitExceeded,
    InvalidCredentials,
    InvalidToken,
    ExpiredToken,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
    RequestTimeout,
    UriTooLong,
    HeadersTooLarge,
    SubscriptionExists,
    SubscriptionNotFound,
    Conflict,
}

impl Code {
    pub const ALL: [Code; 19] = [
        Code::Ok,
        Code::MalformedRequest,
        Code::InvalidParameter,
        Code::LimitExceeded,
        Code::InvalidCredentials,
        Code::InvalidToken,
        Code::ExpiredToken,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::PayloadTooLarge,
        Code::TooManyRequests,
        Code::InternalError,
        Code::ServiceUnavailable,
        Code::RequestTimeout,
        Code::UriTooLong,
        Code::HeadersTooLarge,
        Code::SubscriptionExists,
        Code::SubscriptionNotFound,
        Code::Conflict,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::MalformedRequest => "MALFORMED_REQUEST",
            Code::InvalidParameter => "INVALID_PARAMETER",
            Code::LimitExceeded => "LIMIT_EXCEEDED",
            Code::InvalidCredentials => "INVALID_CREDENTIALS",
            Code::InvalidToken => "INVALID_TOKEN",
            Code::ExpiredToken => "EXPIRED_TOKEN",
            Code::NotFound => "NOT_FOUND",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::TooManyRequests => "TOO_MANY_REQUESTS",
            Code::InternalError => "INTERNAL_ERROR",
            Code::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Code::RequestTimeout => "REQUEST_TIMEOUT",
            Code::UriTooLong => "URI_TOO_LONG",
            Code::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Code::SubscriptionExists => "SUBSCRIPTION_EXISTS",
            Code::SubscriptionNotFound => "SUBSCRIPTION_NOT_FOUND",
            Code::Conflict => "CONFLICT",
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            Code::Ok => StatusCode::OK,
            Code::MalformedRequest | Code::InvalidParameter | Code::LimitExceeded => {
                StatusCode::BAD_REQUEST
            }
            Code::InvalidCredentials | Code::InvalidToken | Code::ExpiredToken => {
                StatusCode::UNAUTHORIZED
            }
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Code::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::UriTooLong => StatusCode::URI_TOO_LONG,
            Code::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Code::SubscriptionExists => StatusCode::CONFLICT,
            Code::SubscriptionNotFound => StatusCode::NOT_FOUND,
            Code::Conflict => StatusCode::CONFLICT,
        }
    }
}
