//! Getting a request's parameters out: the JSON body (in our envelope when it is bad, never
//! axum's plain-text rejections) and the token, from wherever the client put it.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use chargegate_core::token::Token;
use serde_json::{Map, Value};

use crate::edge::error::{ApiError, Code};

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
        let (parts, body) = req.into_parts();
        read_object(&parts.headers, body).await.map(JsonObject)
    }
}

/// Reads a request body (whose head is `headers`) as a JSON object, as [`JsonObject`]
/// does; for extractors that read the body first and the head after.
pub async fn read_object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, ApiError> {
    use http_body_util::BodyExt;

    let limit = MAX_BODY_BYTES as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit + DRAIN_BYTES) {
        return Err(too_large());
    }
    let mut body = body;
    let mut bytes = Vec::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if timed_out(&e) {
                ApiError::new(
                    Code::RequestTimeout,
                    "the request body did not arrive in time; nothing was applied",
                )
            } else {
                ApiError::malformed("the request body could not be read")
            }
        })?;
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
    parse_object(&bytes)
}

/// Whether reading a body failed because the body timeout (tower-http's
/// `RequestBodyTimeoutLayer`, see [`super::router`]) ran out.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Parses a request body as a JSON object.
///
/// One reading for every parser: a key that appears twice in one object (at any depth)
/// makes the body `MALFORMED_REQUEST` rather than letting the last (or first) one win,
/// and a leading UTF-8 byte-order mark, which some Windows clients write, is skipped.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        Ok(_) => Err(ApiError::malformed(
            "the request body must be a JSON object",
        )),
        Err(_) if bytes.iter().all(u8::is_ascii_whitespace) => Err(ApiError::malformed(
            "the request body is empty; a JSON object is expected",
        )),
        // The only data error a StrictValue raises is a repeated key; its text names it.
        Err(e) if e.is_data() => Err(ApiError::malformed(format!(
            "the request body is not acceptable JSON: {e}"
        ))),
        Err(e) => Err(ApiError::malformed(format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// A JSON value whose objects have distinct keys: deserialising one with a repeated key
/// fails, where `serde_json::Value` would keep the last.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde::de::Error as _;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(A::Error::custom(format_args!(
                    "the key {shown:?} appears more than once in one object"
                )));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
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
    text_token(carried, headers)
}

/// The token of a request whose `carried` token is text (the `token` query parameter), as
/// [`token`] reads it.
pub fn text_token(carried: Option<&str>, headers: &HeaderMap) -> Result<Token, ApiError> {
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
/// ignored; a header that is not text, or a second Authorization header, is refused.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Ok(None);
    };
    // Two Authorization headers could be read as either; neither is taken.
    if all.next().is_some() {
        return Err(ApiError::invalid_token());
    }
    let value = value.to_str().map_err(|_| ApiError::invalid_token())?;
    let mut parts = value.trim().splitn(2, ' ');
    match (parts.next(), parts.next()) {
        (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(rest.trim()))
        }
        _ => Ok(None),
    }
}

/// An integer written in plain decimal digits: no sign, no space, no leading zero (other
/// than `0` itself), no exponent. Anything else is not a number here, so every parser in
/// front of chargegate reads the same value.
pub fn plain_integer(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    if digits && canonical {
        text.parse().ok()
    } else {
        None
    }
}

/// A client's value, cut short, for a message.
pub fn shown(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        value.chars().take(MAX).chain("…".chars()).collect()
    }
}

/// A GET's query parameters in order, each given at most once: the query string of the
/// contract's methods, checked before anything else is (a repeat is refused naming it).
#[derive(Debug)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    /// The value of parameter `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(query) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::invalid_parameter("", "the query string is not valid URL-encoded text")
            })?;
        if let Some(name) = repeated_parameter(&query) {
            return Err(ApiError::invalid_parameter(
                shown(name),
                format!(
                    "the query parameter '{}' is given more than once",
                    shown(name)
                ),
            ));
        }
        Ok(QueryPairs(query))
    }
}

/// The first query parameter given more than once, if any. Every parameter, `token`
/// included, is read once: a repeat is refused rather than read as the first or the last.
pub fn repeated_parameter(query: &[(String, String)]) -> Option<&str> {
    query
        .iter()
        .enumerate()
        .find(|(i, (k, _))| query[..*i].iter().any(|(earlier, _)| earlier == k))
        .map(|(_, (k, _))| k.as_str())
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
    fn two_authorization_headers_are_invalid_even_when_equal() {
        let mut h = headers(Some(&format!("Bearer {T1}")));
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {T1}")).expect("ascii"),
        );
        assert_eq!(
            token(None, &h).expect_err("two headers").code,
            Code::InvalidToken
        );
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
    fn a_repeated_key_at_any_depth_makes_the_body_malformed() {
        for body in [
            &br#"{"token":"a","token":"b"}"#[..],
            br#"{"s":[{"number":"I1","number":"I2"}]}"#,
            br#"{"a":{"b":1,"b":1}}"#,
        ] {
            let err = parse_object(body).expect_err("repeated key");
            assert_eq!(err.code, Code::MalformedRequest);
            assert!(err.message.contains("more than once"), "{}", err.message);
        }
        assert!(parse_object(br#"{"a":{"b":1},"c":{"b":1}}"#).is_ok());
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let map = parse_object(b"\xEF\xBB\xBF{\"a\":1}").expect("BOM then object");
        assert_eq!(map["a"], json!(1));
        assert!(parse_object(b"{\"a\":1}\xEF\xBB\xBF").is_err());
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
