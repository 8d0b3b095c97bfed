//! Token lifecycle: listing (never a secret), revocation (by an admin, or a token revoking
//! itself), rotation with a grace period, and service tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{no_nul, Admin, AppJson, Caller, OptionalJson, RequestId, TenantPath};
use super::openapi::{
    AdminRefusals, AdminTenantRefusals, BadRequestErrors, JsonBodyErrors, NotFoundErrors, Refusals,
    TenantParam,
};
use super::AppState;
use crate::domain::{TenantSlug, TokenId};
use crate::service::tokens::{IssuedToken, NewTokenKind, TokenInfo, TokenOwner, TokenSpec};
use crate::service::{InputError, Scopes, ServiceError, TenantSet};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_global_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(rotate_token))
        .routes(routes!(create_service_token))
        .routes(routes!(revoke_self))
}

/// The answer to issuing a token: the text, shown this once.
#[derive(Serialize, ToSchema)]
pub struct Issued<'a> {
    /// The bearer token. Shown this once; tenant-vault keeps only a verifier.
    pub token: &'a str,
    pub token_id: TokenId,
    pub expires_at: Option<DateTime<Utc>>,
    /// Tenant tokens: the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<&'a str>,
    /// Rotations: the token replaced (valid for its grace period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<TokenId>,
}

pub fn issued_body(issued: &IssuedToken) -> Issued<'_> {
    Issued {
        token: issued.text.as_str(),
        token_id: issued.id,
        expires_at: issued.expires_at,
        tenant: None,
        rotated_from: None,
    }
}

/// A list of tokens (never their secrets).
#[derive(Serialize, ToSchema)]
struct TokenList<'a> {
    /// Tenant listings: the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    tokens: Vec<TokenInfo>,
}

/// `{id}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct TokenIdParam {
    /// The token's id (`token_id` when issued).
    id: uuid::Uuid,
}

/// `scopes` (default: read and write) and `key_pattern` of a token request.
pub fn parse_scopes(
    scopes: Option<Vec<String>>,
    key_pattern: Option<&str>,
) -> Result<Scopes, ApiError> {
    let names = scopes.unwrap_or_else(|| Scopes::read_write().names());
    Ok(Scopes::parse(&names, key_pattern).map_err(ServiceError::from)?)
}

fn token_id(raw: &str) -> Result<TokenId, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(TokenId)
        .map_err(|_| ApiError::bad_request("invalid_token_id", "the token id must be a UUID"))
}

/// Lists a tenant's tokens, revoked and expired ones included.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants/{tenant}/tokens",
    tag = "tokens",
    params(TenantParam),
    responses(
        (status = 200, description = "The tokens.", body = TokenList),
        AdminTenantRefusals,
    )
)]
pub async fn list_tenant_tokens(
    TenantPath(slug): TenantPath,
    admin: Admin,
) -> Result<Response, ApiError> {
    let tokens = admin
        .vault
        .list_tokens(&admin.ctx, &TokenOwner::Tenant(slug.clone()))
        .await?;
    Ok(Json(TokenList {
        tenant: Some(slug.as_str()),
        tokens,
    })
    .into_response())
}

/// Lists the admin and service tokens.
#[utoipa::path(
    get,
    path = "/v1/admin/tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "The tokens.", body = TokenList),
        AdminRefusals,
    )
)]
async fn list_global_tokens(admin: Admin) -> Result<Response, ApiError> {
    let tokens = admin
        .vault
        .list_tokens(&admin.ctx, &TokenOwner::Global)
        .await?;
    Ok(Json(TokenList {
        tenant: None,
        tokens,
    })
    .into_response())
}

/// Revokes a token: the next request with it, on any replica, is a 401.
#[utoipa::path(
    delete,
    path = "/v1/admin/tokens/{id}",
    tag = "tokens",
    params(TokenIdParam),
    responses(
        (status = 204, description = "Revoked."),
        AdminRefusals, BadRequestErrors, NotFoundErrors,
    )
)]
async fn revoke_token(Path(id): Path<String>, admin: Admin) -> Result<Response, ApiError> {
    let id = token_id(&id)?;
    admin.vault.revoke_token(&admin.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Any token may revoke itself (a leaked token's holder, a shutting-down instance).
#[utoipa::path(
    delete,
    path = "/v1/tokens/self",
    tag = "tokens",
    responses(
        (status = 204, description = "Revoked."),
        Refusals,
    )
)]
async fn revoke_self(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state
        .vault()?
        .revoke_token(&who.context(rid), who.token_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// Seconds the old token stays valid (default 300; 0: at once).
    grace_secs: Option<u64>,
    /// The new token's lifetime in seconds.
    ttl_secs: Option<u64>,
}

/// Issues a successor with the same kind and scopes; the old one expires after the grace
/// period. The body is optional.
#[utoipa::path(
    post,
    path = "/v1/admin/tokens/{id}/rotate",
    tag = "tokens",
    params(TokenIdParam),
    request_body(content = Option<Rotate>, description = "Optional; an empty body takes the defaults."),
    responses(
        (status = 201, description = "The new token, shown this once.", body = Issued),
        AdminRefusals, JsonBodyErrors, NotFoundErrors,
    )
)]
async fn rotate_token(
    Path(id): Path<String>,
    admin: Admin,
    OptionalJson(body): OptionalJson<Rotate>,
) -> Result<Response, ApiError> {
    let id = token_id(&id)?;
    let issued = admin
        .vault
        .rotate_token(&admin.ctx, id, body.grace_secs, body.ttl_secs)
        .await?;
    let mut out = issued_body(&issued);
    out.rotated_from = Some(id);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `"*"` for every tenant, or a list of slugs.
#[derive(Deserialize)]
#[serde(untagged)]
enum Tenants {
    All(String),
    Only(Vec<String>),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateService {
    /// `"*"` for every tenant, or a non-empty list of slugs.
    #[schema(schema_with = super::openapi::tenants_schema)]
    tenants: Tenants,
    /// Default: `["secrets:read", "secrets:write"]`.
    #[schema(schema_with = super::openapi::scopes_schema)]
    scopes: Option<Vec<String>>,
    /// Limits the token to keys matching this glob (`STRIPE_*`).
    #[schema(schema_with = super::openapi::key_pattern_schema)]
    key_pattern: Option<String>,
    description: Option<String>,
    /// Lifetime in seconds (default and maximum: the settings).
    ttl_secs: Option<u64>,
}

/// Issues a service token: one token reading (and, if scoped so, writing) secrets of many
/// tenants.
#[utoipa::path(
    post,
    path = "/v1/admin/service-tokens",
    tag = "tokens",
    request_body = CreateService,
    responses(
        (status = 201, description = "Issued; the token is shown this once.", body = Issued),
        AdminRefusals, JsonBodyErrors,
    )
)]
async fn create_service_token(
    admin: Admin,
    AppJson(body): AppJson<CreateService>,
) -> Result<Response, ApiError> {
    no_nul("description", body.description.as_deref())?;
    let tenants = match body.tenants {
        Tenants::All(s) if s == "*" => TenantSet::All,
        Tenants::Only(slugs) if !slugs.is_empty() => TenantSet::Only(
            slugs
                .iter()
                .map(|s| TenantSlug::parse(s))
                .collect::<Result<_, _>>()
                .map_err(|_| ServiceError::from(InputError::TenantSet))?,
        ),
        _ => return Err(ServiceError::from(InputError::TenantSet).into()),
    };
    let scopes = parse_scopes(body.scopes, body.key_pattern.as_deref())?;
    let issued = admin
        .vault
        .issue_token(
            &admin.ctx,
            TokenSpec {
                kind: NewTokenKind::Service(tenants),
                scopes,
                description: body.description,
                ttl_secs: body.ttl_secs,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(issued_body(&issued))).into_response())
}
