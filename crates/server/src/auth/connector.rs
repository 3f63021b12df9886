//! Connector keys: the Netflix side's credential for `/chargegate/v1/connector/…`.

use axum::http::{HeaderMap, header};
use chargegate_core::apikey::ApiKey;
use chargegate_core::connector::ConnectorCaller;

use crate::edge::error::{ApiError, Code};
use crate::state::AppState;

pub(crate) fn refused() -> ApiError {
    ApiError::new(
        Code::InvalidToken,
        "a valid connector key is required as Authorization: Bearer <key>",
    )
    .with_description("Authorization")
}

/// The connector key of a request, checked: missing, malformed, unknown or revoked keys
/// (operator tokens included) are `401 INVALID_TOKEN`.
pub async fn connector(state: &AppState, headers: &HeaderMap) -> Result<ConnectorCaller, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(refused());
    };
    let text = value.to_str().map_err(|_| refused())?;
    let (scheme, key) = text.split_once(' ').ok_or_else(refused)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(refused());
    }
    let key = ApiKey::parse(key.trim()).ok_or_else(refused)?;
    let caller = state
        .store
        .connector_key(&key.hash())
        .await?
        .filter(|c| !c.revoked)
        .ok_or_else(refused)?;
    super::admit_operator(state, caller.operator_code.as_str())?;
    Ok(caller)
}
