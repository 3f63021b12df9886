//! Liveness and readiness probes.

use std::time::Duration;

use axum::extract::State;

use crate::edge::envelope::{Empty, Envelope};
use crate::edge::error::ApiError;
use crate::state::AppState;

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use chargegate_core::AdminStore;
    use chargegate_store::{SqliteStore, StoreOptions};
    use tower::ServiceExt;

    use crate::state::AppState;

    async fn probe(router: &axum::Router, path: &str) -> (StatusCode, serde_json::Value) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("answered");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[tokio::test]
    async fn readyz_answers_503_once_the_database_is_gone_while_healthz_stays_200() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("t.db"), &StoreOptions::default())
                .await
                .expect("open"),
        );
        store.migrate().await.expect("migrate");
        let state =
            AppState::new(store.clone(), &crate::config::Settings::default()).expect("state");
        let router = crate::api::router().with_state(state);
        assert_eq!(probe(&router, "/readyz").await.0, StatusCode::OK);

        store.close().await;
        let (status, body) = probe(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"]["code"], "SERVICE_UNAVAILABLE");
        assert_eq!(body["data"], serde_json::json!({}));
        let (status, body) = probe(&router, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"]["code"], "OK");
    }
}
