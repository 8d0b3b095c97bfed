//! `/v1/admin/...` key management: master key rotation, data key rotation, and the key
//! report. Admin tokens only.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use super::extract::{Caller, RequestId, TenantPath};
use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/master-key/rotate", post(rotate_master_key))
        .route(
            "/v1/admin/tenants/{tenant}/data-key/rotate",
            post(rotate_data_key),
        )
        .route("/v1/admin/keys", get(key_status))
}

async fn rotate_master_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    let done = state.vault()?.rotate_master_key(&who.context(rid)).await?;
    Ok(Json(json!({
        "previous_version": done.previous_version,
        "version": done.version,
        "rewrapped_data_keys": done.rewrapped_data_keys,
        "elapsed_ms": done.elapsed_ms,
    }))
    .into_response())
}

async fn rotate_data_key(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    let done = state
        .vault()?
        .rotate_data_key(&who.context(rid), &slug)
        .await?;
    Ok(Json(done).into_response())
}

async fn key_status(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    Ok(Json(state.vault()?.read_key_status(&who.context(rid)).await?).into_response())
}
