//! `/v1/admin/...` key management: master key rotation, data key rotation, and the key
//! report. Admin tokens only.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{Caller, RequestId, TenantPath};
use super::openapi::{
    AdminRefusals, AdminTenantRefusals, ConflictErrors, TenantParam, UpstreamErrors,
};
use super::AppState;
use crate::keys::rotation::MasterRotation;
use crate::service::key_status::KeyStatus;
use crate::service::rotation::DataKeyRotationReport;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rotate_master_key))
        .routes(routes!(rotate_data_key))
        .routes(routes!(key_status))
}

/// Rotates the master key: a new version in the key source, every data key re-wrapped.
#[utoipa::path(
    post,
    path = "/v1/admin/master-key/rotate",
    tag = "keys",
    responses(
        (status = 200, description = "Rotated.", body = MasterRotation),
        AdminRefusals, ConflictErrors, UpstreamErrors,
    )
)]
async fn rotate_master_key(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    let done = state.vault()?.rotate_master_key(&who.context(rid)).await?;
    Ok(Json(done).into_response())
}

/// Gives the tenant a new data key; a background job re-encrypts its secrets.
#[utoipa::path(
    post,
    path = "/v1/admin/tenants/{tenant}/data-key/rotate",
    tag = "keys",
    params(TenantParam),
    responses(
        (status = 200, description = "Rotated.", body = DataKeyRotationReport),
        AdminTenantRefusals, ConflictErrors,
    )
)]
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

/// The state of every key: master key versions, data key counts, re-encryption jobs.
#[utoipa::path(
    get,
    path = "/v1/admin/keys",
    tag = "keys",
    responses(
        (status = 200, description = "The report.", body = KeyStatus),
        AdminRefusals,
    )
)]
async fn key_status(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    Ok(Json(state.vault()?.read_key_status(&who.context(rid)).await?).into_response())
}
