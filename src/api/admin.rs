//! `/v1/admin/...`: tenants (create, delete, search, detail) and tenant tokens, admin tokens
//! only.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{no_nul, AppJson, Caller, OptionalJson, RequestId, TenantPath};
use super::tokens::{issued_body, list_tenant_tokens, parse_scopes};
use super::AppState;
use crate::domain::{InfisicalMode, TenantSlug};
use crate::service::tokens::{NewTokenKind, TokenSpec};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tenants", post(create_tenant).get(search_tenants))
        .route(
            "/v1/admin/tenants/{tenant}",
            get(tenant_detail).delete(delete_tenant),
        )
        .route(
            "/v1/admin/tenants/{tenant}/tokens",
            post(create_token).get(list_tenant_tokens),
        )
        .route(
            "/v1/admin/tenants/{tenant}/infisical-mode",
            put(set_infisical_mode),
        )
        .route(
            "/v1/admin/tenants/{tenant}/limits",
            get(get_limits).put(put_limits),
        )
}

async fn get_limits(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
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
    state.vault()?.authorize_admin(&who)?;
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
    /// Read the tenant's Infisical folder (default: yes, unless the slug was used before).
    infisical_import: Option<bool>,
}

async fn create_tenant(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<CreateTenant>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    no_nul("name", body.name.as_deref())?;
    let slug = TenantSlug::parse(&body.slug)
        .map_err(|e| ApiError::bad_request("invalid_tenant", format!("field `slug`: {}", e.0)))?;
    let name = body.name.unwrap_or_else(|| slug.to_string());
    let tenant = state
        .vault()?
        .create_tenant_with(&who.context(rid), &slug, &name, body.infisical_import)
        .await?;
    Ok((StatusCode::CREATED, Json(tenant)).into_response())
}

/// `?prefix=ac&limit=50&offset=0`: live tenants by slug.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantQuery {
    prefix: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn search_tenants(
    State(state): State<AppState>,
    Caller(who): Caller,
    query: Result<Query<TenantQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    let Query(q) = query.map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            "query parameters are `prefix` (slug characters), `limit` (1 to 1000) and `offset`",
        )
    })?;
    let page = state
        .vault()?
        .search_tenants(q.prefix.as_deref().unwrap_or(""), q.limit, q.offset)
        .await?;
    Ok(Json(page).into_response())
}

async fn tenant_detail(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    Ok(Json(state.vault()?.tenant_detail(&slug).await?).into_response())
}

async fn delete_tenant(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
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
    /// `["secrets:read"]` for a read-only token; default both.
    scopes: Option<Vec<String>>,
    key_pattern: Option<String>,
}

async fn create_token(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    OptionalJson(body): OptionalJson<CreateToken>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    no_nul("description", body.description.as_deref())?;
    let scopes = parse_scopes(body.scopes, body.key_pattern.as_deref())?;
    let issued = state
        .vault()?
        .issue_token(
            &who.context(rid),
            TokenSpec {
                kind: NewTokenKind::Tenant(slug.clone()),
                scopes,
                description: body.description,
                ttl_secs: body.ttl_secs,
            },
        )
        .await?;
    let mut body = issued_body(&issued);
    body["tenant"] = json!(slug.as_str());
    Ok((StatusCode::CREATED, Json(body)).into_response())
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
    state.vault()?.authorize_admin(&who)?;
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
