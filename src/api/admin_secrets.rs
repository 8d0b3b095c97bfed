//! `/v1/admin/tenants/{tenant}/secrets...`: what the admin console needs of a tenant's
//! secrets. An admin lists them with a masked value, writes, lists versions and rolls back,
//! but never reads a plaintext value (that stays with tenant tokens).

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{Admin, AppJson, SecretPath, TenantPath};
use super::openapi::{
    AdminTenantRefusals, ConflictErrors, JsonBodyErrors, SecretParams, TenantParam, UpstreamErrors,
};
use super::secrets::{PutSecret, Written};
use super::versions::{Rollback, VersionList};
use super::AppState;
use crate::crypto::SecretValue;
use crate::service::admin_secrets::{MaskedSecret, MaskedVersion, TenantDataKey};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret))
        .routes(routes!(list_versions))
        .routes(routes!(rollback))
}

#[derive(Serialize, ToSchema)]
struct MaskedList<'a> {
    tenant: &'a str,
    /// The tenant's active data key (null if it has none yet).
    data_key: Option<TenantDataKey>,
    secrets: Vec<MaskedSecret>,
}

/// Lists a tenant's secrets with masked values, and its data key.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants/{tenant}/secrets",
    tag = "tenants",
    params(TenantParam),
    responses(
        (status = 200, description = "The secrets, masked.", body = MaskedList),
        AdminTenantRefusals,
    )
)]
async fn list_secrets(TenantPath(slug): TenantPath, admin: Admin) -> Result<Response, ApiError> {
    let vault = &admin.vault;
    let tenant = vault.admin_tenant(&slug).await?;
    let secrets = vault.list_masked_secrets(&admin.ctx, &tenant).await?;
    let data_key = vault.tenant_data_key(tenant.id).await?;
    Ok(Json(MaskedList {
        tenant: slug.as_str(),
        data_key,
        secrets,
    })
    .into_response())
}

/// Writes a new version of a tenant's secret (an admin never reads one back).
#[utoipa::path(
    put,
    path = "/v1/admin/tenants/{tenant}/secrets/{key}",
    tag = "tenants",
    params(SecretParams),
    request_body = PutSecret,
    responses(
        (status = 200, description = "Written.", body = Written),
        AdminTenantRefusals, JsonBodyErrors, ConflictErrors,
    )
)]
async fn put_secret(
    SecretPath(slug, key): SecretPath,
    admin: Admin,
    AppJson(body): AppJson<PutSecret>,
) -> Result<Response, ApiError> {
    let vault = &admin.vault;
    let tenant = vault.admin_tenant(&slug).await?;
    let value = SecretValue::new(body.value);
    let version = vault
        .put_secret(&admin.ctx, &tenant, &key, value, body.cas)
        .await?;
    Ok(Written::answer(&key, version, None))
}

/// Lists a secret's versions with masked values.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants/{tenant}/secrets/{key}/versions",
    tag = "tenants",
    params(SecretParams),
    responses(
        (status = 200, description = "The versions, newest first.", body = VersionList<MaskedVersion>),
        AdminTenantRefusals,
    )
)]
async fn list_versions(
    SecretPath(slug, key): SecretPath,
    admin: Admin,
) -> Result<Response, ApiError> {
    let vault = &admin.vault;
    let tenant = vault.admin_tenant(&slug).await?;
    let versions = vault
        .list_masked_versions(&admin.ctx, &tenant, &key)
        .await?;
    Ok(Json(VersionList {
        key: key.as_str(),
        current_version: versions.first().map(|v| v.version),
        versions,
    })
    .into_response())
}

/// Makes an earlier version's value current again, as a new version.
#[utoipa::path(
    post,
    path = "/v1/admin/tenants/{tenant}/secrets/{key}/rollback",
    tag = "tenants",
    params(SecretParams),
    request_body = Rollback,
    responses(
        (status = 200, description = "Rolled back.", body = Written),
        AdminTenantRefusals, JsonBodyErrors, ConflictErrors, UpstreamErrors,
    )
)]
async fn rollback(
    SecretPath(slug, key): SecretPath,
    admin: Admin,
    AppJson(body): AppJson<Rollback>,
) -> Result<Response, ApiError> {
    let vault = &admin.vault;
    let tenant = vault.admin_tenant(&slug).await?;
    let version = vault
        .rollback_secret(&admin.ctx, &tenant, &key, body.version)
        .await?;
    Ok(Written::answer(&key, version, Some(body.version)))
}
