//! Liveness and readiness probes.

use std::time::Duration;

use axum::extract::State;

use super::envelope::{Empty, Envelope};
use super::error::ApiError;
use crate::app::AppState;

/// `200` while the process serves; touches no database.
pub async fn live() -> Envelope<Empty> {
    Envelope::ok(Empty {})
}

/// `200` when the database answers within a second, else `503`.
pub async fn ready(State(state): State<AppState>) -> Result<Envelope<Empty>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => Ok(Envelope::ok(Empty {})),
        Ok(Err(e)) => Err(ApiError::unavailable(e)),
        Err(_) => Err(ApiError::unavailable(
            "the database did not answer within 1 s",
        )),
    }
}
