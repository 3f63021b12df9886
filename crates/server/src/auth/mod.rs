//! Who is calling: tokens and their checks, passwords, the login lockout and the
//! per-operator rate limit, shared by the API and the console alike.

use chargegate_core::store::{AttemptPermit, LoginUser, NewToken, TokenRecord};
use chargegate_core::text::{OperatorCode, Username};
use chargegate_core::token::Token;

use crate::edge::error::{ApiError, Code};
use crate::state::AppState;
use jwt::Claims;

pub mod callers;
pub mod connector;
pub mod jwt;
pub mod passwords;
pub mod ratelimit;

/// Whom an authenticated request speaks for.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    /// The web API key the token was issued from, if any (recorded with what it does).
    pub key_id: Option<i64>,
    pub operator_id: i64,
    pub operator_code: OperatorCode,
}

pub(crate) fn invalid_credentials() -> ApiError {
    ApiError::new(
        Code::InvalidCredentials,
        "the username, password or organisation is not correct",
    )
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

/// Why a stored token's caller may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Revoked, or its user is disabled.
    Invalid,
    Expired,
    /// The operator spent its budget; it may retry after this many seconds.
    RateLimited {
        retry_after: u64,
    },
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::Invalid => ApiError::invalid_token(),
            Refusal::Expired => ApiError::expired_token(),
            Refusal::RateLimited { retry_after } => rate_limited(retry_after),
        }
    }
}

/// Whether a stored token's caller may go on: not revoked, user enabled, not expired,
/// within the operator's rate limit.
pub fn admit(state: &AppState, record: &TokenRecord) -> Result<Caller, ApiError> {
    Ok(admission(state, record)?)
}

/// [`admit`], telling why not in a [`Refusal`].
pub fn admission(state: &AppState, record: &TokenRecord) -> Result<Caller, Refusal> {
    if record.revoked || !record.user_enabled {
        return Err(Refusal::Invalid);
    }
    if record.expires_at <= state.clock.now() {
        return Err(Refusal::Expired);
    }
    if let Err(retry_after) = spend(state, record.operator_code.as_str()) {
        return Err(Refusal::RateLimited { retry_after });
    }
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
    spend(state, operator_code).map_err(rate_limited)
}

/// [`admit_operator`], answering the seconds to wait when over the limit.
fn spend(state: &AppState, operator_code: &str) -> Result<(), u64> {
    tracing::Span::current().record("operator", operator_code);
    if let Err(wait) = state.rate_limit.check(operator_code) {
        state.metrics.rate_limited();
        // Whole seconds, rounded up: a client that waits that long gets through.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(secs.max(1));
    }
    Ok(())
}

fn rate_limited(retry_after: u64) -> ApiError {
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(
            Code::TooManyRequests,
            "too many requests for this operator; retry after the time in Retry-After",
        )
    }
}
