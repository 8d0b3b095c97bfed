//! `/v1/admin/...` key management: master key rotation, data key rotation, and the key
//! report. Admin tokens only.

use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{Admin, TenantPath};
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
async fn rotate_master_key(admin: Admin) -> Result<Response, ApiError> {
    let done = admin.vault.rotate_master_key(&admin.ctx).await?;
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
async fn rotate_data_key(TenantPath(slug): TenantPath, admin: Admin) -> Result<Response, ApiError> {
    let done = admin.vault.rotate_data_key(&admin.ctx, &slug).await?;
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
async fn key_status(admin: Admin) -> Result<Response, ApiError> {
    Ok(Json(admin.vault.read_key_status(&admin.ctx).await?).into_response())
}
