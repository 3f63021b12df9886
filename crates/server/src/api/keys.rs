//! `authentication/web_api_key/token`: a billing system logs in with a web API key
//! instead of a person's password.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chargegate_core::apikey::ApiKey;

use super::auth::TokenData;
use super::doc as openapi;
use super::paths::BASE;
use crate::edge::envelope::Envelope;
use crate::edge::error::{ApiError, Code};
use crate::edge::extract;
use crate::state::AppState;

/// Log in with a web API key.
///
/// The key travels as the user name of HTTP Basic authentication with an empty password:
/// `Authorization: Basic base64("<KEY>:")` (`base64("<KEY>")`, without the colon, is
/// accepted too, as CRM.COM clients send it; the scheme's case does not matter). The body
/// is optional: nothing, `null`, or a JSON object whose `unit` is accepted and ignored,
/// whatever the `Content-Type` says (clients send `applicatio/json`). The token is the same kind as a
/// password login's (same lifetime, same revocation), and is revoked with its key. A
/// missing or malformed header, an unknown or revoked key, or a key of a disabled user
/// all answer `401 INVALID_CREDENTIALS` with the same message. Key logins are not
/// counted towards the password lockout.
#[utoipa::path(
    post,
    path = "/authentication/web_api_key/token",
    context_path = BASE,
    tag = "authentication",
    operation_id = "login_with_key",
    params(openapi::RequestIdHeader),
    request_body(content = Option<openapi::KeyLoginRequest>, description = "Optional; may be empty."),
    responses(
        (status = 200, description = "Logged in.", body = Envelope<TokenData>),
        openapi::KeyLoginErrors,
    ),
    security(("basic" = [])),
)]
pub async fn login_with_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Envelope<TokenData>, ApiError> {
    if body.len() > extract::MAX_BODY_BYTES {
        return Err(ApiError::new(
            Code::PayloadTooLarge,
            format!(
                "the request body is larger than {} bytes",
                extract::MAX_BODY_BYTES
            ),
        ));
    }
    // `unit` is accepted and ignored; a body, when there is one, must still be an object
    // (JSON `null` counts as no body).
    let blank = body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_null());
    if !blank {
        extract::parse_object(&body)?;
    }
    let Some(key) = basic_user(&headers).and_then(|k| ApiKey::parse(&k)) else {
        state.metrics.login_failed();
        return Err(invalid_key());
    };
    let found = state.store.key_login(&key.hash()).await?;
    let Some(login) = found.filter(|k| !k.revoked && k.user_enabled) else {
        tracing::info!(prefix = %key.prefix(), "key login refused");
        state.metrics.login_failed();
        return Err(invalid_key());
    };
    let token = crate::auth::issue_token(
        &state,
        login.user_id,
        Some(login.key_id),
        &login.username,
        &login.operator_code,
    )
    .await?;
    tracing::info!(prefix = %key.prefix(), "key login");
    Ok(Envelope::ok(TokenData::new(token.expose().to_owned())))
}

/// Every refusal of a key, alike: nothing tells a revoked key from an unknown one.
fn invalid_key() -> ApiError {
    ApiError::new(
        Code::InvalidCredentials,
        "the web API key is missing, malformed, unknown or revoked",
    )
}

/// The user name of the one `Authorization: Basic` header, if it is well formed. The
/// password part must be empty (or absent: no colon at all).
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(rest.trim())?).ok()?;
    let user = match decoded.split_once(':') {
        Some((user, "")) => user,
        Some(_) => return None,
        None => decoded.as_str(),
    };
    Some(user.to_owned())
}

/// Standard base64 (RFC 4648), with or without `=` padding: any `=` at the end is
/// ignored, as are the unused bits of the last character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(text.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("ascii"),
        );
        h
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("a2V5Og==").as_deref(), Some(&b"key:"[..]));
        assert_eq!(base64_decode("a2V5Og").as_deref(), Some(&b"key:"[..]));
        assert_eq!(base64_decode("a2V5").as_deref(), Some(&b"key"[..]));
        assert_eq!(base64_decode("a2V5!"), None);
        // Padding is not checked: any `=` at the end is ignored, as before.
        assert_eq!(base64_decode("a2V5Og=").as_deref(), Some(&b"key:"[..]));
        assert_eq!(base64_decode("a2V5=").as_deref(), Some(&b"key"[..]));
        // Nor are the unused bits of the last character: "a2V5Oh" is "key:" too.
        assert_eq!(base64_decode("a2V5Oh").as_deref(), Some(&b"key:"[..]));
        // A lone last character cannot end base64; nor can `=` stand inside it, nor the
        // URL-safe alphabet's characters.
        assert_eq!(base64_decode("a2V5O"), None);
        assert_eq!(base64_decode("a2=V5"), None);
        assert_eq!(base64_decode("a2V5-_"), None);
    }

    #[test]
    fn the_key_is_the_basic_user_name_with_an_empty_or_no_password() {
        assert_eq!(basic_user(&with("Basic a2V5Og==")).as_deref(), Some("key"));
        assert_eq!(basic_user(&with("basic a2V5")).as_deref(), Some("key"));
        // "key:pw"
        assert_eq!(basic_user(&with("Basic a2V5OnB3")), None);
        assert_eq!(basic_user(&with("Bearer a2V5Og==")), None);
        assert_eq!(basic_user(&with("Basic")), None);
        assert_eq!(basic_user(&HeaderMap::new()), None);
    }
}
