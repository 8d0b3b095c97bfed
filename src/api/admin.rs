//! `/v1/admin/...`: tenants (create, delete, search, detail) and tenant tokens, admin tokens
//! only.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{no_nul, Admin, AppJson, OptionalJson, TenantPath};
use super::openapi::{
    AdminRefusals, AdminTenantRefusals, BadRequestErrors, ConflictErrors, JsonBodyErrors,
    TenantParam, UpstreamErrors,
};
use super::tokens::{__path_list_tenant_tokens, issued_body, list_tenant_tokens, parse_scopes};
use super::AppState;
use crate::domain::{InfisicalMode, TenantLimits, TenantSlug};
use crate::service::quotas::TenantLimitsView;
use crate::service::tenants::{Tenant, TenantDetail, TenantPage};
use crate::service::tokens::{NewTokenKind, TokenSpec};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, search_tenants))
        .routes(routes!(tenant_detail, delete_tenant))
        .routes(routes!(create_token, list_tenant_tokens))
        .routes(routes!(set_infisical_mode))
        .routes(routes!(get_limits, put_limits))
}

/// A tenant's rate and quota overrides, and what applies.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants/{tenant}/limits",
    tag = "tenants",
    params(TenantParam),
    responses(
        (status = 200, description = "The overrides and the effective limits.", body = TenantLimitsView),
        AdminTenantRefusals,
    )
)]
async fn get_limits(TenantPath(slug): TenantPath, admin: Admin) -> Result<Response, ApiError> {
    Ok(Json(admin.vault.tenant_limits(&slug).await?).into_response())
}

/// Replaces the tenant's overrides: absent or null fields follow the settings, 0 lifts a
/// rate or quota for this tenant.
#[utoipa::path(
    put,
    path = "/v1/admin/tenants/{tenant}/limits",
    tag = "tenants",
    params(TenantParam),
    request_body = TenantLimits,
    responses(
        (status = 200, description = "The new overrides and the effective limits.", body = TenantLimitsView),
        AdminTenantRefusals, JsonBodyErrors,
    )
)]
async fn put_limits(
    TenantPath(slug): TenantPath,
    admin: Admin,
    AppJson(body): AppJson<TenantLimits>,
) -> Result<Response, ApiError> {
    let view = admin
        .vault
        .set_tenant_limits(&admin.ctx, &slug, body)
        .await?;
    Ok(Json(view).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    /// 1 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit.
    slug: String,
    /// Defaults to the slug.
    name: Option<String>,
    /// Read the tenant's Infisical folder (default: yes, unless the slug was used before).
    infisical_import: Option<bool>,
}

/// Creates a tenant (and its data key).
#[utoipa::path(
    post,
    path = "/v1/admin/tenants",
    tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created.", body = Tenant),
        AdminRefusals, JsonBodyErrors, ConflictErrors,
    )
)]
async fn create_tenant(
    admin: Admin,
    AppJson(body): AppJson<CreateTenant>,
) -> Result<Response, ApiError> {
    no_nul("name", body.name.as_deref())?;
    let slug = TenantSlug::parse(&body.slug)
        .map_err(|e| ApiError::bad_request("invalid_tenant", format!("field `slug`: {}", e.0)))?;
    let name = body.name.unwrap_or_else(|| slug.to_string());
    let tenant = admin
        .vault
        .create_tenant_with(&admin.ctx, &slug, &name, body.infisical_import)
        .await?;
    Ok((StatusCode::CREATED, Json(tenant)).into_response())
}

/// `?prefix=ac&limit=50&offset=0`: live tenants by slug.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct TenantQuery {
    /// Slugs starting with this.
    prefix: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The previous page's `next_offset`.
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<i64>,
}

/// Lists live tenants by slug, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants",
    tag = "tenants",
    params(TenantQuery),
    responses(
        (status = 200, description = "A page of tenants.", body = TenantPage),
        AdminRefusals, BadRequestErrors,
    )
)]
async fn search_tenants(
    admin: Admin,
    query: Result<Query<TenantQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            "query parameters are `prefix` (slug characters), `limit` (1 to 1000) and `offset` \
             (0 to 1000000000)",
        )
    })?;
    let page = admin
        .vault
        .search_tenants(q.prefix.as_deref().unwrap_or(""), q.limit, q.offset)
        .await?;
    Ok(Json(page).into_response())
}

/// A tenant with its counts of secrets and live tokens.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants/{tenant}",
    tag = "tenants",
    params(TenantParam),
    responses(
        (status = 200, description = "The tenant.", body = TenantDetail),
        AdminTenantRefusals,
    )
)]
async fn tenant_detail(TenantPath(slug): TenantPath, admin: Admin) -> Result<Response, ApiError> {
    Ok(Json(admin.vault.tenant_detail(&slug).await?).into_response())
}

#[derive(Serialize, ToSchema)]
struct Deleted<'a> {
    tenant: &'a str,
    deleted: bool,
    /// Data keys whose wrapped key was erased (crypto-shredding its secrets).
    destroyed_data_keys: usize,
}

/// Deletes a tenant: its tokens stop at once, its data keys are destroyed.
#[utoipa::path(
    delete,
    path = "/v1/admin/tenants/{tenant}",
    tag = "tenants",
    params(TenantParam),
    responses(
        (status = 200, description = "Deleted.", body = Deleted),
        AdminTenantRefusals,
    )
)]
async fn delete_tenant(TenantPath(slug): TenantPath, admin: Admin) -> Result<Response, ApiError> {
    let destroyed = admin.vault.delete_tenant(&admin.ctx, &slug).await?;
    Ok(Json(Deleted {
        tenant: slug.as_str(),
        deleted: true,
        destroyed_data_keys: destroyed,
    })
    .into_response())
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    description: Option<String>,
    /// Lifetime in seconds (default and maximum: the settings).
    ttl_secs: Option<u64>,
    /// `["secrets:read"]` for a read-only token; default both.
    #[schema(schema_with = super::openapi::scopes_schema)]
    scopes: Option<Vec<String>>,
    /// Limits the token to keys matching this glob (`STRIPE_*`).
    #[schema(schema_with = super::openapi::key_pattern_schema)]
    key_pattern: Option<String>,
}

/// Issues a token for the tenant. The body is optional.
#[utoipa::path(
    post,
    path = "/v1/admin/tenants/{tenant}/tokens",
    tag = "tokens",
    params(TenantParam),
    request_body(content = Option<CreateToken>, description = "Optional; an empty body takes the defaults."),
    responses(
        (status = 201, description = "Issued; the token is shown this once.", body = super::tokens::Issued),
        AdminTenantRefusals, JsonBodyErrors,
    )
)]
async fn create_token(
    TenantPath(slug): TenantPath,
    admin: Admin,
    OptionalJson(body): OptionalJson<CreateToken>,
) -> Result<Response, ApiError> {
    no_nul("description", body.description.as_deref())?;
    let scopes = parse_scopes(body.scopes, body.key_pattern.as_deref())?;
    let issued = admin
        .vault
        .issue_token(
            &admin.ctx,
            TokenSpec {
                kind: NewTokenKind::Tenant(slug.clone()),
                scopes,
                description: body.description,
                ttl_secs: body.ttl_secs,
            },
        )
        .await?;
    let mut body = issued_body(&issued);
    body.tenant = Some(slug.as_str());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetMode {
    /// `follow`, `import-once`, or null for the global setting.
    mode: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ModeSet<'a> {
    tenant: &'a str,
    /// The tenant's own setting (null: the global one applies).
    mode: Option<&'static str>,
    effective_mode: &'static str,
}

/// Sets how the tenant's secrets imported from Infisical behave.
#[utoipa::path(
    put,
    path = "/v1/admin/tenants/{tenant}/infisical-mode",
    tag = "tenants",
    params(TenantParam),
    request_body = SetMode,
    responses(
        (status = 200, description = "Set.", body = ModeSet),
        AdminTenantRefusals, JsonBodyErrors, UpstreamErrors,
    )
)]
async fn set_infisical_mode(
    TenantPath(slug): TenantPath,
    admin: Admin,
    AppJson(body): AppJson<SetMode>,
) -> Result<Response, ApiError> {
    let mode = match body.mode.as_deref() {
        None => None,
        Some(raw) => Some(InfisicalMode::parse(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_request",
                "field `mode`: must be \"follow\", \"import-once\" or null",
            )
        })?),
    };
    let effective = admin
        .vault
        .set_tenant_infisical_mode(&admin.ctx, &slug, mode)
        .await?;
    Ok(Json(ModeSet {
        tenant: slug.as_str(),
        mode: mode.map(InfisicalMode::as_str),
        effective_mode: effective.as_str(),
    })
    .into_response())
}
