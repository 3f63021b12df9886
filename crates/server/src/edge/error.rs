//! The one error type of the HTTP boundary. It knows its HTTP status and `status.code`;
//! handlers return it with `?`, and it renders itself in the CRM.COM envelope.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chargegate_core::StoreError;

pub use super::code::Code;
use super::envelope::{Empty, Envelope};

/// A request-level failure: `data` is `{}`, `status` carries the code, a sentence safe to
/// show a user (`message`) and the offending parameter path or `""` (`description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub description: String,
    /// Seconds after which a retry may succeed (`Retry-After`), for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            description: String::new(),
            retry_after: None,
        }
    }

    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(Code::MalformedRequest, message)
    }

    /// `INVALID_PARAMETER` naming the parameter path.
    pub fn invalid_parameter(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Code::InvalidParameter, message).with_description(path)
    }

    pub fn invalid_token() -> Self {
        Self::new(
            Code::InvalidToken,
            "the token is missing, malformed, unknown or released; log in again",
        )
        .with_description("token")
    }

    pub fn expired_token() -> Self {
        Self::new(Code::ExpiredToken, "the token has expired; log in again")
            .with_description("token")
    }

    /// A fault of the server. The cause is logged here, once, inside the request's span
    /// (so with its request id); the client hears only that nothing was applied.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause.to_string().escape_debug(), "internal error");
        Self::new(
            Code::InternalError,
            "an internal error occurred; nothing was applied",
        )
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause.to_string().escape_debug(), "database unavailable");
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                Code::ServiceUnavailable,
                "the database is unavailable or busy; nothing was applied, retry later",
            )
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::unavailable(m),
            StoreError::OutcomeUnknown(m) => {
                tracing::warn!(error = %m, "commit outcome unknown");
                ApiError {
                    retry_after: Some(1),
                    ..Self::new(
                        Code::ServiceUnavailable,
                        "the database connection was lost while this call was committed, and \
                         whether it was applied is unknown; send the same call again (a \
                         repeat of an applied call changes nothing)",
                    )
                }
            }
            // A uniqueness clash a request did not anticipate is a fault, not the client's.
            StoreError::Conflict(m) | StoreError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// Marks a response as an error envelope, so that `http_errors = "crm"` can answer it
/// with `200` (see [`super::router`]).
#[derive(Debug, Clone, Copy)]
pub struct ErrorEnvelope;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.http_status();
        let retry_after = self.retry_after;
        let mut response = (
            status,
            Envelope::new(Empty {}, self.code, self.description, self.message),
        )
            .into_response();
        response.extensions_mut().insert(ErrorEnvelope);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.code == Code::RequestTimeout {
            // The rest of the body may still be on its way: this connection is done.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
