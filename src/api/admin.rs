//! `/v1/admin/...`: tenants and tokens, admin tokens only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{AppJson, Caller, OptionalJson, RequestId, TenantPath};
use super::AppState;
use crate::domain::{InfisicalMode, TenantSlug};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants", post(create_tenant))
        .route("/v1/admin/tenants/{tenant}", delete(delete_tenant))
        .route("/v1/admin/tenants/{tenant}/tokens", post(create_token))
        .route(
            "/v1/admin/tenants/{tenant}/infisical-mode",
            put(set_infisical_mode),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: Option<String>,
    /// Read the tenant's Infisical folder (default: yes, unless the slug was used before).
    infisical_import: Option<bool>,
}

async fn create_tenant(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<CreateTenant>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who, rid.clone())?;
    let slug = TenantSlug::parse(&body.slug)
        .map_err(|e| ApiError::bad_request("invalid_tenant", format!("field `slug`: {}", e.0)))?;
    let name = body.name.unwrap_or_else(|| slug.to_string());
    let tenant = state
        .vault()?
        .create_tenant_with(&who.context(rid), &slug, &name, body.infisical_import)
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetMode {
    /// `follow`, `import-once`, or null for the global setting.
    mode: Option<String>,
}

async fn set_infisical_mode(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<SetMode>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who, rid.clone())?;
    let mode = match body.mode.as_deref() {
        None => None,
        Some(raw) => Some(InfisicalMode::parse(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_request",
                "field `mode`: must be \"follow\", \"import-once\" or null",
            )
        })?),
    };
    let effective = state
        .vault()?
        .set_tenant_infisical_mode(&who.context(rid), &slug, mode)
        .await?;
    Ok(Json(json!({
        "tenant": slug.as_str(),
        "mode": mode.map(InfisicalMode::as_str),
        "effective_mode": effective.as_str(),
    }))
    .into_response())
}
