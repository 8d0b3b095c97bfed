//! Token lifecycle: listing (never a secret), revocation (by an admin, or a token revoking
//! itself), rotation with a grace period, and service tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{AppJson, Caller, OptionalJson, RequestId, TenantPath};
use super::AppState;
use crate::domain::{TenantSlug, TokenId};
use crate::service::tokens::{IssuedToken, NewTokenKind, TokenOwner, TokenSpec};
use crate::service::{InputError, Scopes, ServiceError, TenantSet};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tokens", get(list_global_tokens))
        .route("/v1/admin/tokens/{id}", delete(revoke_token))
        .route("/v1/admin/tokens/{id}/rotate", post(rotate_token))
        .route("/v1/admin/service-tokens", post(create_service_token))
        .route("/v1/tokens/self", delete(revoke_self))
}

/// The answer to issuing a token: the text, shown this once.
pub fn issued_body(issued: &IssuedToken) -> Value {
    json!({
        "token": issued.text.as_str(),
        "token_id": issued.id,
        "expires_at": issued.expires_at,
    })
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

pub async fn list_tenant_tokens(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    let tokens = state
        .vault()?
        .list_tokens(&who.context(rid), &TokenOwner::Tenant(slug.clone()))
        .await?;
    Ok(Json(json!({"tenant": slug.as_str(), "tokens": tokens})).into_response())
}

async fn list_global_tokens(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    let tokens = state
        .vault()?
        .list_tokens(&who.context(rid), &TokenOwner::Global)
        .await?;
    Ok(Json(json!({"tokens": tokens})).into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    let id = token_id(&id)?;
    state.vault()?.revoke_token(&who.context(rid), id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Any token may revoke itself (a leaked token's holder, a shutting-down instance).
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// Seconds the old token stays valid (default 300; 0: at once).
    grace_secs: Option<u64>,
    ttl_secs: Option<u64>,
}

async fn rotate_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    OptionalJson(body): OptionalJson<Rotate>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
    let id = token_id(&id)?;
    let issued = state
        .vault()?
        .rotate_token(&who.context(rid), id, body.grace_secs, body.ttl_secs)
        .await?;
    let mut out = issued_body(&issued);
    out["rotated_from"] = json!(id);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `"*"` for every tenant, or a list of slugs.
#[derive(Deserialize)]
#[serde(untagged)]
enum Tenants {
    All(String),
    Only(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateService {
    tenants: Tenants,
    scopes: Option<Vec<String>>,
    key_pattern: Option<String>,
    description: Option<String>,
    ttl_secs: Option<u64>,
}

async fn create_service_token(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<CreateService>,
) -> Result<Response, ApiError> {
    state.vault()?.authorize_admin(&who)?;
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
    let issued = state
        .vault()?
        .issue_token(
            &who.context(rid),
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
