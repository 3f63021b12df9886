//! `authentication/token` (login), `authentication/token/release`, and checking the token
//! of every other call.

use axum::extract::State;
use axum::http::HeaderMap;
use chargegate_core::store::{AttemptPermit, LoginUser, NewToken, TokenRecord};
use chargegate_core::text::{OperatorCode, Username};
use chargegate_core::token::Token;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::BASE;
use super::envelope::{Empty, Envelope};
use super::error::{ApiError, Code};
use super::extract::{self, JsonObject};
use super::openapi;
use crate::app::AppState;
use crate::jwt::Claims;

/// Whom an authenticated request speaks for.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    /// The web API key the token was issued from, if any (recorded with what it does).
    pub key_id: Option<i64>,
    pub operator_id: i64,
    pub operator_code: OperatorCode,
}

/// The `data` of a successful login.
#[derive(Serialize, ToSchema)]
pub struct TokenData {
    /// A token for the other methods: a JWT (HS256) whose claims `usr`, `org`, `oun`,
    /// `iat`, `exp` and `jti` name the user, the operator, when it was issued and when it
    /// expires (Unix seconds, as strings); valid for two hours from issue by default,
    /// until released. Only the server can tell whether it is still good.
    #[schema(examples(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJ1c3IiOiJkZW1vIiwib3JnIjoicGNpIiwib3VuIjoicGNpIiwiZXhwIjoiMTc5NDE4NjAwMCIsImlhdCI6IjE3OTQxNzg4MDAiLCJqdGkiOiIzZjlhMGM1ZTdkMWIyYTRjNmU4ZjBhMWIzYzVkN2U5ZjJhNGI2YzhkMGUxZjNhNWI3YzlkMWUyZjRhNmI4YzBkIn0.0Xk7c2lnbmF0dXJlLWV4YW1wbGUtb25seS0wMDAwMDAwMDAw"
    ))]
    token: String,
}

impl TokenData {
    pub(crate) fn new(token: String) -> Self {
        TokenData { token }
    }
}

/// A mandatory string field of a body.
pub fn required_string<'a>(body: &'a Map<String, Value>, name: &str) -> Result<&'a str, ApiError> {
    match body.get(name) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(ApiError::invalid_parameter(
            name,
            format!("{name} is mandatory"),
        )),
        Some(_) => Err(ApiError::invalid_parameter(
            name,
            format!("{name} must be a string"),
        )),
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        Code::InvalidCredentials,
        "the username, password or organisation is not correct",
    )
}

/// Log in: exchange a user's credentials for a token.
///
/// `organisation` is the operator's code. Wrong password, unknown user, unknown
/// organisation and disabled user all answer `401 INVALID_CREDENTIALS` with the same
/// message. After 10 consecutive failures for one organisation+username (configurable),
/// that pair is refused with `429 TOO_MANY_REQUESTS` for 15 minutes, even with the right
/// password; a success resets the count.
#[utoipa::path(
    post,
    path = "/authentication/token",
    context_path = BASE,
    tag = "authentication",
    operation_id = "login",
    params(openapi::RequestIdHeader),
    request_body = openapi::LoginRequest,
    responses(
        (status = 200, description = "Logged in.", body = Envelope<TokenData>,
            headers(("X-Request-Id" = String, description = "The request's id: the client's `X-Request-Id` when usable, else a new one."))),
        openapi::LoginErrors,
    ),
    security(()),
)]
// Every refusal of credentials looks the same (no user enumeration), and takes the same
// time: a password check runs even for an unknown user. Attempts are counted per
// organisation+username in the database before the check, so parallel guesses and
// several servers share one limit.
pub async fn login(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Envelope<TokenData>, ApiError> {
    let username = required_string(&body, "username")?;
    let password = required_string(&body, "password")?;
    let organisation = required_string(&body, "organisation")?;
    // `unit` is CRM.COM's business unit: accepted and ignored.
    let user = check_credentials(&state, organisation, username, password).await?;
    // The names were checked: the token's claims carry them as given.
    let token = issue_token(&state, user.user_id, None, username, organisation).await?;
    Ok(Envelope::ok(TokenData {
        token: token.expose().to_owned(),
    }))
}

/// The password check of a login, shared by `authentication/token` and the console's
/// sign-in: the same lockout, the same answers. Records the operator in the span.
pub(crate) async fn check_credentials(
    state: &AppState,
    organisation: &str,
    username: &str,
    password: &str,
) -> Result<LoginUser, ApiError> {
    let now = state.clock.now();
    let policy = state.auth.login;

    let names = OperatorCode::parse(organisation)
        .ok()
        .zip(Username::parse(username).ok());
    let Some((operator, user)) = names else {
        // No account can have such names; nothing to protect, so nothing to count.
        state.passwords.verify(None, password.to_owned()).await;
        state.metrics.login_failed();
        return Err(invalid_credentials());
    };

    if let AttemptPermit::LockedOut { until } = state
        .store
        .begin_login_attempt(organisation, username, now, policy)
        .await?
    {
        state.metrics.login_locked_out();
        let wait = (until.unix() - now.unix()).max(1);
        tracing::warn!(%operator, "login refused: too many consecutive failures");
        return Err(ApiError {
            retry_after: Some(u64::try_from(wait).unwrap_or(1)),
            ..ApiError::new(
                Code::TooManyRequests,
                "too many failed logins for this user; try again later",
            )
        });
    }

    let found = state.store.login_user(&operator, &user).await?;
    let hash = found.as_ref().map(|u| u.password_hash.clone());
    let verified = state.passwords.verify(hash, password.to_owned()).await;
    let accepted = verified && found.as_ref().is_some_and(|u| u.enabled);
    state
        .store
        .finish_login_attempt(organisation, username, accepted, now, policy)
        .await?;
    let Some(user) = found.filter(|_| accepted) else {
        tracing::info!(%operator, "login refused");
        state.metrics.login_failed();
        return Err(invalid_credentials());
    };
    tracing::Span::current().record("operator", operator.as_str());
    Ok(user)
}

/// Release a token: revoke it, so that later use is `INVALID_TOKEN`.
#[utoipa::path(
    post,
    path = "/authentication/token/release",
    context_path = BASE,
    tag = "authentication",
    operation_id = "release_token",
    params(openapi::RequestIdHeader),
    request_body = openapi::ReleaseRequest,
    responses(
        (status = 200, description = "Released.", body = Envelope<Empty>,
            headers(("X-Request-Id" = String, description = "The request's id: the client's `X-Request-Id` when usable, else a new one."))),
        openapi::ReleaseErrors,
    ),
    security((), ("bearer" = [])),
)]
pub async fn release(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Envelope<Empty>, ApiError> {
    let token = extract::token(body.get("token"), &headers)?;
    authenticate(&state, &token).await?;
    state
        .store
        .revoke_token(&token.hash(), state.clock.now())
        .await?;
    Ok(Envelope::ok(Empty {}))
}

/// Issues a token to a user (from a web API key, when `key_id` is given): a JWT signed
/// with the newest secret, of which the database keeps the hash.
pub(crate) async fn issue_token(
    state: &AppState,
    user_id: i64,
    key_id: Option<i64>,
    username: &str,
    operator: &str,
) -> Result<Token, ApiError> {
    let now = state.clock.now();
    let expires_at = now.plus_seconds(state.auth.token_ttl_seconds);
    let claims = Claims::new(username, operator, now, expires_at).map_err(ApiError::internal)?;
    let token = state
        .token_secrets
        .sign(state.store.as_ref(), &claims, now)
        .await?;
    state
        .store
        .insert_token(&NewToken {
            hash: token.hash(),
            user_id,
            key_id,
            issued_at: now,
            expires_at,
        })
        .await?;
    Ok(token)
}

/// Turns away a JWT that no secret of this database signed (forged, tampered with, or
/// signed with a secret retired before it was issued) without looking it up. Passing
/// says nothing yet about the token being known, unreleased and unexpired. Tokens of the
/// opaque shape issued before tokens were JWTs carry no signature; the database alone
/// vouches for them.
pub async fn vouch(state: &AppState, token: &Token) -> Result<(), ApiError> {
    if token.is_opaque()
        || state
            .token_secrets
            .vouch(state.store.as_ref(), token, state.clock.now())
            .await?
    {
        Ok(())
    } else {
        Err(ApiError::invalid_token())
    }
}

/// Checks a token and names its caller; records the operator in the request's span.
pub async fn authenticate(state: &AppState, token: &Token) -> Result<Caller, ApiError> {
    vouch(state, token).await?;
    let record = state
        .store
        .token(&token.hash())
        .await?
        .ok_or_else(ApiError::invalid_token)?;
    admit(state, &record)
}

/// Whether a stored token's caller may go on: not revoked, user enabled, not expired,
/// within the operator's rate limit.
pub fn admit(state: &AppState, record: &TokenRecord) -> Result<Caller, ApiError> {
    if record.revoked || !record.user_enabled {
        return Err(ApiError::invalid_token());
    }
    if record.expires_at <= state.clock.now() {
        return Err(ApiError::expired_token());
    }
    admit_operator(state, record.operator_code.as_str())?;
    Ok(Caller {
        user_id: record.user_id,
        key_id: record.key_id,
        operator_id: record.operator_id,
        operator_code: record.operator_code.clone(),
    })
}

/// Names the operator in the request's span and applies its rate limit: `429` with
/// `Retry-After` once the operator has spent its budget. Every authenticated audience
/// (operator tokens, web API keys, connector keys) shares one budget per operator.
pub(crate) fn admit_operator(state: &AppState, operator_code: &str) -> Result<(), ApiError> {
    tracing::Span::current().record("operator", operator_code);
    if let Err(wait) = state.rate_limit.check(operator_code) {
        state.metrics.rate_limited();
        // Whole seconds, rounded up: a client that waits that long gets through.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(ApiError {
            retry_after: Some(secs.max(1)),
            ..ApiError::new(
                Code::TooManyRequests,
                "too many requests for this operator; retry after the time in Retry-After",
            )
        });
    }
    Ok(())
}
