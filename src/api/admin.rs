//! `/v1/admin/...`: tenants and tokens, admin tokens only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{no_nul, AppJson, Caller, OptionalJson, RequestId, TenantPath};
use super::AppState;
use crate::domain::TenantSlug;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants", post(create_tenant))
        .route("/v1/admin/tenants/{tenant}", delete(delete_tenant))
        .route("/v1/admin/tenants/{tenant}/tokens", post(create_token))
        .route(
            "/v1/admin/tenants/{tenant}/limits",
            get(get_limits).put(put_limits),
        )
}

async fn get_limits(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who, rid)?;
    Ok(Json(state.vault()?.tenant_limits(&slug).await?).into_response())
}

/// Replaces the tenant's overrides: absent or null fields follow the settings, 0 lifts a
/// rate or quota for this tenant.
async fn put_limits(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<crate::domain::TenantLimits>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who, rid.clone())?;
    let view = state
        .vault()?
        .set_tenant_limits(&who.context(rid), &slug, body)
        .await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: Option<String>,
}

async fn create_tenant(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<CreateTenant>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who, rid.clone())?;
    no_nul("name", body.name.as_deref())?;
    let slug = TenantSlug::parse(&body.slug)
        .map_err(|e| ApiError::bad_request("invalid_tenant", format!("field `slug`: {}", e.0)))?;
    let name = body.name.unwrap_or_else(|| slug.to_string());
    let tenant = state
        .vault()?
        .create_tenant(&who.context(rid), &slug, &name)
        .await?;
    Ok((StatusCode::CREATED, Json(tenant)).into_response())
}

async fn delete_tenant(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who, rid.clone())?;
    let destroyed = state
        .vault()?
        .delete_tenant(&who.context(rid), &slug)
        .await?;
    Ok(
        Json(json!({"tenant": slug.as_str(), "deleted": true, "destroyed_data_keys": destroyed}))
            .into_response(),
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    description: Option<String>,
    ttl_secs: Option<u64>,
}

async fn create_token(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    OptionalJson(body): OptionalJson<CreateToken>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who, rid.clone())?;
    no_nul("description", body.description.as_deref())?;
    let ttl = body.ttl_secs.map(std::time::Duration::from_secs);
    let issued = state
        .vault()?
        .create_token(
            &who.context(rid),
            Some(&slug),
            body.description.as_deref(),
            ttl,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"token": issued.text.as_str(), "token_id": issued.id, "tenant": slug.as_str()}),
        ),
    )
        .into_response())
}
