//! `/v1/tenants/{tenant}/secrets...`: tenant tokens reading and writing their own secrets.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{AppJson, Caller, RequestId, SecretPath, TenantPath};
use super::AppState;
use crate::crypto::SecretValue;
use crate::service::tokens::permits;
use crate::service::Access;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/secrets", get(list_secrets))
        .route(
            "/v1/tenants/{tenant}/secrets/{key}",
            get(get_secret).put(put_secret).delete(delete_secret),
        )
}

/// The GET answer, serialised straight from borrowed data (the hot path's only allocation
/// here is the body itself).
#[derive(serde::Serialize)]
struct SecretBody<'a> {
    key: &'a str,
    value: &'a str,
    version: i32,
    updated_at: chrono::DateTime<chrono::Utc>,
}

static SECRET_SOURCE: HeaderName = HeaderName::from_static("x-secret-source");

async fn get_secret(
    State(state): State<AppState>,
    SecretPath(slug, key): SecretPath,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    super::versions::VersionQuery(version): super::versions::VersionQuery,
) -> Result<Response, ApiError> {
    if let Some(version) = version {
        return super::versions::read_version(&state, &slug, &key, &who, rid, version).await;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutSecret {
    pub(super) value: String,
    #[serde(default)]
    pub(super) cas: Option<i32>,
}

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
    Ok(Json(json!({"key": key.as_str(), "version": version})).into_response())
}

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
        crate::domain::SecretKey::parse(&s.key)
            .is_ok_and(|k| permits(&who, &slug, Some(&k), Access::Read).is_ok())
    });
    Ok(Json(json!({"tenant": slug.as_str(), "secrets": secrets})).into_response())
}
