//! `authentication/token` (login) and `authentication/token/release`.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::doc as openapi;
use super::paths::BASE;
use crate::auth::callers::BodyCaller;
use crate::auth::{check_credentials, issue_token};
use crate::edge::envelope::{Empty, Envelope};
use crate::edge::error::ApiError;
use crate::edge::extract::JsonObject;
use crate::edge::fields::Fields;
use crate::state::AppState;

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
        (status = 200, description = "Logged in.", body = Envelope<TokenData>),
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
    let fields = Fields(&body);
    let username = fields.string("username")?;
    let password = fields.string("password")?;
    let organisation = fields.string("organisation")?;
    // `unit` is CRM.COM's business unit: accepted and ignored.
    let user = check_credentials(&state, organisation, username, password).await?;
    // The names were checked: the token's claims carry them as given.
    let token = issue_token(&state, user.user_id, None, username, organisation).await?;
    Ok(Envelope::ok(TokenData {
        token: token.expose().to_owned(),
    }))
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
        (status = 200, description = "Released.", body = Envelope<Empty>),
        openapi::ReleaseErrors,
    ),
    security((), ("bearer" = [])),
)]
pub async fn release(
    State(state): State<AppState>,
    BodyCaller { token, .. }: BodyCaller,
) -> Result<Envelope<Empty>, ApiError> {
    state
        .store
        .revoke_token(&token.hash(), state.clock.now())
        .await?;
    Ok(Envelope::ok(Empty {}))
}
