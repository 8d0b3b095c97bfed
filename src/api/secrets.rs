//! `/v1/tenants/{tenant}/secrets...`: tenant tokens reading and writing their own secrets.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{AppJson, Caller, RequestId, SecretPath, TenantPath};
use super::openapi::{
    ConflictErrors, JsonBodyErrors, NotFoundErrors, SecretParams, SecretRefusals, TenantParam,
    UpstreamErrors,
};
use super::AppState;
use crate::crypto::SecretValue;
use crate::domain::SecretKey;
use crate::service::tokens::permits;
use crate::service::Access;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_secrets))
        .routes(routes!(get_secret, put_secret, delete_secret))
}

/// The GET answer, serialised straight from borrowed data (the hot path's only allocation
/// here is the body itself).
#[derive(Serialize, ToSchema)]
pub(super) struct SecretBody<'a> {
    pub(super) key: &'a str,
    pub(super) value: &'a str,
    pub(super) version: i32,
    pub(super) updated_at: chrono::DateTime<chrono::Utc>,
}

/// The answer to a write or a rollback.
#[derive(Serialize, ToSchema)]
pub(super) struct Written<'a> {
    pub(super) key: &'a str,
    /// The version now current.
    pub(super) version: i32,
    /// Rollbacks: the version whose value was restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rolled_back_to: Option<i32>,
}

impl Written<'_> {
    /// The JSON answer of a write (`rolled_back_to: None`) or a rollback, by tenant or admin.
    pub(super) fn answer(key: &SecretKey, version: i32, rolled_back_to: Option<i32>) -> Response {
        Json(Written {
            key: key.as_str(),
            version,
            rolled_back_to,
        })
        .into_response()
    }
}

#[derive(Serialize, ToSchema)]
struct SecretList<'a> {
    tenant: &'a str,
    secrets: Vec<crate::service::secrets::SecretSummary>,
}

static SECRET_SOURCE: HeaderName = HeaderName::from_static("x-secret-source");

/// Reads a secret's value (current, or `?version=N`).
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/secrets/{key}",
    tag = "secrets",
    params(SecretParams, super::versions::VersionParam),
    responses(
        (status = 200, description = "The value.", body = SecretBody,
         headers(
            ("x-secret-source" = String, description = "Where it was read from: cache, database, infisical, stale, archive."),
            ("cache-control" = String, description = "Always `no-store`."),
         )),
        SecretRefusals, UpstreamErrors,
    )
)]
async fn get_secret(
    State(state): State<AppState>,
    SecretPath(slug, key): SecretPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    super::versions::VersionQuery(version): super::versions::VersionQuery,
) -> Result<Response, ApiError> {
    if let Some(version) = version {
        // Boxed: an old version's read (possibly from the archive) is KBs of future that
        // the common read would otherwise carry.
        return Box::pin(super::versions::read_version(
            &state, &slug, &key, &who, rid, version,
        ))
        .await;
    }
    let tenant = state
        .vault()?
        .authorize_secret(&who, &slug, Some(&key), Access::Read)
        .await?;
    let read = state
        .vault()?
        .get_secret(&who.context(rid), &tenant, &key)
        .await?;
    let body = Json(SecretBody {
        key: key.as_str(),
        value: read.secret.value.expose(),
        version: read.secret.version,
        updated_at: read.secret.updated_at,
    });
    let mut response = body.into_response();
    response.headers_mut().insert(
        SECRET_SOURCE.clone(),
        HeaderValue::from_static(read.source.as_str()),
    );
    if let Some(age) = read.age {
        response
            .headers_mut()
            .insert(axum::http::header::AGE, HeaderValue::from(age.as_secs()));
    }
    // Secrets must not land in shared caches.
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PutSecret {
    pub(super) value: String,
    /// Write only if the current version is this one (0: only if the key is new).
    #[serde(default)]
    pub(super) cas: Option<i32>,
}

/// Writes a new version of a secret.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/secrets/{key}",
    tag = "secrets",
    params(SecretParams),
    request_body = PutSecret,
    responses(
        (status = 200, description = "Written.", body = Written),
        SecretRefusals, JsonBodyErrors, ConflictErrors,
    )
)]
async fn put_secret(
    State(state): State<AppState>,
    SecretPath(slug, key): SecretPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    AppJson(body): AppJson<PutSecret>,
) -> Result<Response, ApiError> {
    let tenant = state
        .vault()?
        .authorize_secret(&who, &slug, Some(&key), Access::Write)
        .await?;
    let value = SecretValue::new(body.value);
    let version = state
        .vault()?
        .put_secret(&who.context(rid), &tenant, &key, value, body.cas)
        .await?;
    Ok(Written::answer(&key, version, None))
}

/// Deletes a secret and its versions.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/secrets/{key}",
    tag = "secrets",
    params(SecretParams),
    responses(
        (status = 204, description = "Deleted."),
        SecretRefusals, NotFoundErrors,
    )
)]
async fn delete_secret(
    State(state): State<AppState>,
    SecretPath(slug, key): SecretPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let tenant = state
        .vault()?
        .authorize_secret(&who, &slug, Some(&key), Access::Write)
        .await?;
    state
        .vault()?
        .delete_secret(&who.context(rid), &tenant, &key)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Lists the tenant's secrets the token may read (names and versions, no values).
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/secrets",
    tag = "secrets",
    params(TenantParam),
    responses(
        (status = 200, description = "The secrets.", body = SecretList),
        SecretRefusals,
    )
)]
async fn list_secrets(
    State(state): State<AppState>,
    TenantPath(slug): TenantPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let tenant = state
        .vault()?
        .authorize_secret(&who, &slug, None, Access::Read)
        .await?;
    let mut secrets = state
        .vault()?
        .list_secrets(&who.context(rid), &tenant)
        .await?;
    // A token limited to a key pattern sees only the names it may read.
    secrets.retain(|s| {
        SecretKey::parse(&s.key).is_ok_and(|k| permits(&who, &slug, Some(&k), Access::Read).is_ok())
    });
    Ok(Json(SecretList {
        tenant: slug.as_str(),
        secrets,
    })
    .into_response())
}
