//! `/v1/admin/tenants/{tenant}/secrets...`: what the admin console needs of a tenant's
//! secrets. An admin lists them with a masked value, writes, lists versions and rolls back,
//! but never reads a plaintext value (that stays with tenant tokens).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use super::extract::{AppJson, Caller, RequestId, SecretPath, TenantPath};
use super::secrets::PutSecret;
use super::versions::Rollback;
use super::AppState;
use crate::crypto::SecretValue;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants/{tenant}/secrets", get(list_secrets))
        .route("/v1/admin/tenants/{tenant}/secrets/{key}", put(put_secret))
        .route(
            "/v1/admin/tenants/{tenant}/secrets/{key}/versions",
            get(list_versions),
        )
        .route(
            "/v1/admin/tenants/{tenant}/secrets/{key}/rollback",
            post(rollback),
        )
}

async fn list_secrets(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let vault = state.vault()?;
    vault.authorize_admin(&who)?;
    let tenant = vault.admin_tenant(&slug).await?;
    let secrets = vault
        .list_masked_secrets(&who.context(rid), &tenant)
        .await?;
    let data_key = vault.tenant_data_key(tenant.id).await?;
    Ok(
        Json(json!({"tenant": slug.as_str(), "data_key": data_key, "secrets": secrets}))
            .into_response(),
    )
}

async fn put_secret(
    State(state): State<AppState>,
    SecretPath(slug, key): SecretPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<PutSecret>,
) -> Result<Response, ApiError> {
    let vault = state.vault()?;
    vault.authorize_admin(&who)?;
    let tenant = vault.admin_tenant(&slug).await?;
    let value = SecretValue::new(body.value);
    let version = vault
        .put_secret(&who.context(rid), &tenant, &key, value, body.cas)
        .await?;
    Ok(Json(json!({"key": key.as_str(), "version": version})).into_response())
}

async fn list_versions(
    State(state): State<AppState>,
    SecretPath(slug, key): SecretPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let vault = state.vault()?;
    vault.authorize_admin(&who)?;
    let tenant = vault.admin_tenant(&slug).await?;
    let versions = vault
        .list_masked_versions(&who.context(rid), &tenant, &key)
        .await?;
    Ok(Json(json!({
        "key": key.as_str(),
        "current_version": versions.first().map(|v| v.version),
        "versions": versions,
    }))
    .into_response())
}

async fn rollback(
    State(state): State<AppState>,
    SecretPath(slug, key): SecretPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<Rollback>,
) -> Result<Response, ApiError> {
    let vault = state.vault()?;
    vault.authorize_admin(&who)?;
    let tenant = vault.admin_tenant(&slug).await?;
    let version = vault
        .rollback_secret(&who.context(rid), &tenant, &key, body.version)
        .await?;
    Ok(
        Json(json!({"key": key.as_str(), "version": version, "rolled_back_to": body.version}))
            .into_response(),
    )
}
