//! Getting a request's parameters out: the JSON body (in our envelope when it is bad, never
//! axum's plain-text rejections) and the token, from wherever the client put it.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use chargegate_core::token::Token;
use serde_json::{Map, Value};

use super::error::{ApiError, Code};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A request body that is a JSON object, whatever the `Content-Type` says (legacy clients
/// send odd ones).
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

fn too_large() -> ApiError {
    ApiError::new(
        Code::PayloadTooLarge,
        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// How much of an oversized body is read and discarded before answering 413. Answering
/// while the client is still sending makes many clients see a reset connection instead
/// of the answer; draining a little lets them read it. Past this, the connection is
/// simply closed after the answer.
const DRAIN_BYTES: u64 = 4 << 20;

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        use http_body_util::BodyExt;

        let limit = MAX_BODY_BYTES as u64;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit + DRAIN_BYTES) {
            return Err(too_large());
        }
        let mut body = req.into_body();
        let mut bytes = Vec::new();
        let mut seen: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| ApiError::malformed("the request body could not be read"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len() as u64;
            if seen > limit + DRAIN_BYTES {
                break;
            }
            if seen <= limit {
                bytes.extend_from_slice(&data);
            }
        }
        if seen > limit || declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        parse_object(&bytes).map(JsonObject)
    }
}

pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::malformed(
            "the request body must be a JSON object",
        )),
        Err(e) if bytes.iter().all(u8::is_ascii_whitespace) => {
            let _ = e;
            Err(ApiError::malformed(
                "the request body is empty; a JSON object is expected",
            ))
        }
        Err(e) => Err(ApiError::malformed(format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// The token of a request. `carried` is the body's `token` field (POST) or the `token`
/// query parameter (GET); `Authorization: Bearer` is accepted too, and when both are
/// present they must be equal.
pub fn token(carried: Option<&Value>, headers: &HeaderMap) -> Result<Token, ApiError> {
    let carried = match carried {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(ApiError::invalid_token()),
    };
    let bearer = bearer(headers)?;
    let chosen = match (carried, bearer) {
        (Some(a), Some(b)) if a != b => return Err(ApiError::invalid_token()),
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => return Err(ApiError::invalid_token()),
    };
    Token::parse(chosen).ok_or_else(ApiError::invalid_token)
}

/// The token of an `Authorization: Bearer …` header. Other schemes are not ours and are
/// ignored; a header that is not text is refused.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::invalid_token())?;
    let mut parts = value.trim().splitn(2, ' ');
    match (parts.next(), parts.next()) {
        (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(rest.trim()))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    const T1: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const T2: &str = "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(a).expect("ascii"),
            );
        }
        h
    }

    #[test]
    fn the_token_may_come_from_the_body_or_a_bearer_header() {
        let from_body = token(Some(&json!(T1)), &headers(None)).expect("body");
        let from_header = token(None, &headers(Some(&format!("Bearer {T1}")))).expect("header");
        assert_eq!(from_body, from_header);
        let both = token(Some(&json!(T1)), &headers(Some(&format!("bearer {T1}"))));
        assert!(both.is_ok());
    }

    #[test]
    fn two_different_tokens_or_a_non_string_token_are_invalid() {
        let err =
            token(Some(&json!(T1)), &headers(Some(&format!("Bearer {T2}")))).expect_err("differ");
        assert_eq!(err.code, Code::InvalidToken);
        for bad in [json!(12), json!({"t": T1}), json!("{{token}}")] {
            assert_eq!(
                token(Some(&bad), &headers(None)).expect_err("bad").code,
                Code::InvalidToken
            );
        }
        assert_eq!(
            token(None, &headers(None)).expect_err("missing").code,
            Code::InvalidToken
        );
        assert_eq!(
            token(Some(&Value::Null), &headers(Some("Basic dXNlcjpwdw==")))
                .expect_err("basic")
                .code,
            Code::InvalidToken
        );
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(parse_object(br#"{"a":1}"#).is_ok());
        for bad in [
            &b""[..],
            b"  ",
            b"[1]",
            b"\"x\"",
            b"{",
            b"null",
            b"token=abc",
        ] {
            assert_eq!(
                parse_object(bad).expect_err("not an object").code,
                Code::MalformedRequest
            );
        }
    }
}
