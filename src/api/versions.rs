//! Secret history: `GET .../{key}/versions`, `GET .../{key}?version=N` (through the read
//! handler in `secrets.rs`) and `POST .../{key}/rollback`.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{AppJson, Caller, RequestId, SecretPath};
use super::openapi::{
    ConflictErrors, JsonBodyErrors, NotFoundErrors, SecretParams, SecretRefusals, UpstreamErrors,
};
use super::secrets::{SecretBody, Written};
use super::AppState;
use crate::service::Access;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_versions))
        .routes(routes!(rollback))
}

/// `?version=N`, as the document describes it (`VersionQuery` reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct VersionParam {
    /// Read this version instead of the current one.
    #[param(minimum = 1, maximum = 2147483647)]
    version: Option<i32>,
}

/// A secret's versions, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct VersionList<'a, V> {
    pub(super) key: &'a str,
    /// Null when the secret has no versions left.
    pub(super) current_version: Option<i32>,
    pub(super) versions: Vec<V>,
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
    Ok(SecretBody {
        key: key.as_str(),
        value: secret.value.expose(),
        version: secret.version,
        updated_at: secret.updated_at,
    }
    .answer(secret.loaded_from, None))
}

/// Lists a secret's versions (no values).
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/secrets/{key}/versions",
    tag = "secrets",
    params(SecretParams),
    responses(
        (status = 200, description = "The versions, newest first.", body = VersionList<crate::service::versions::VersionInfo>),
        SecretRefusals, NotFoundErrors,
    )
)]
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
    Ok(Json(VersionList {
        key: key.as_str(),
        current_version: versions.first().map(|v| v.version),
        versions,
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Rollback {
    /// The version whose value becomes current again (as a new version).
    pub(super) version: i32,
}

/// Makes an earlier version's value current again, as a new version.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/secrets/{key}/rollback",
    tag = "secrets",
    params(SecretParams),
    request_body = Rollback,
    responses(
        (status = 200, description = "Rolled back.", body = Written),
        SecretRefusals, JsonBodyErrors, ConflictErrors, UpstreamErrors,
    )
)]
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
    Ok(Written::answer(&key, version, Some(body.version)))
}
