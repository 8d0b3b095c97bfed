//! Secret history: `GET .../{key}/versions`, `GET .../{key}?version=N` (through the read
//! handler in `secrets.rs`) and `POST .../{key}/rollback`.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{AppJson, Caller, RequestId, SecretPath};
use super::AppState;
use crate::service::Access;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/secrets/{key}/versions",
            get(list_versions),
        )
        .route(
            "/v1/tenants/{tenant}/secrets/{key}/rollback",
            post(rollback),
        )
}

/// `?version=N` on a secret read. Any other query parameter is refused, so a typo cannot
/// silently read the current version instead.
pub struct VersionQuery(pub Option<i32>);

impl<S: Send + Sync> FromRequestParts<S> for VersionQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(query) = parts.uri.query().filter(|q| !q.is_empty()) else {
            return Ok(Self(None));
        };
        let mut version = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name != "version" {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "the only query parameter a secret read takes is `version`",
                ));
            }
            let n = value
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_query", "`version` must be a positive integer")
                })?;
            version = Some(n);
        }
        Ok(Self(version))
    }
}

/// Answers a `?version=N` read (called by the read handler).
pub async fn read_version(
    state: &AppState,
    slug: &crate::domain::TenantSlug,
    key: &crate::domain::SecretKey,
    who: &crate::service::Principal,
    rid: Option<String>,
    version: i32,
) -> Result<Response, ApiError> {
    let tenant = state
        .vault()?
        .authorize_secret(who, slug, Some(key), Access::Read)
        .await?;
    let secret = state
        .vault()?
        .get_secret_version(&who.context(rid), &tenant, key, version)
        .await?;
    let mut response = Json(json!({
        "key": key.as_str(),
        "value": secret.value.expose(),
        "version": secret.version,
        "updated_at": secret.updated_at,
    }))
    .into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-secret-source",
        HeaderValue::from_static(secret.loaded_from.as_str()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn list_versions(
    State(state): State<AppState>,
    SecretPath(slug, key): SecretPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let tenant = state
        .vault()?
        .authorize_secret(&who, &slug, Some(&key), Access::Read)
        .await?;
    let versions = state
        .vault()?
        .list_versions(&who.context(rid), &tenant, &key)
        .await?;
    Ok(Json(json!({
        "key": key.as_str(),
        "current_version": versions.first().map(|v| v.version),
        "versions": versions,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Rollback {
    pub(super) version: i32,
}

async fn rollback(
    State(state): State<AppState>,
    SecretPath(slug, key): SecretPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<Rollback>,
) -> Result<Response, ApiError> {
    let tenant = state
        .vault()?
        .authorize_secret(&who, &slug, Some(&key), Access::Write)
        .await?;
    let version = state
        .vault()?
        .rollback_secret(&who.context(rid), &tenant, &key, body.version)
        .await?;
    Ok(Json(json!({
        "key": key.as_str(),
        "version": version,
        "rolled_back_to": body.version,
    }))
    .into_response())
}
