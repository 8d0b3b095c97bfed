//! Request extractors whose rejections use our error shape: JSON bodies (naming the field at
//! fault, never echoing its value), validated path parameters, the bearer token and the
//! request id.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::domain::{SecretKey, TenantSlug};
use crate::service::{Principal, RequestContext, Vault};

/// A JSON body. Too large: 413. Not JSON, or the wrong shape: 400 naming the field.
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `content-type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than the server accepts",
                )
            } else {
                ApiError::bad_request("invalid_body", "the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(AppJson)
    }
}

/// Deserializes a JSON body, with errors that name the field but never echo input.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body of this API is an object. serde also builds a struct from an array of its
    // fields in order (`["v"]` as `{"value": "v"}`), which no client means to send.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body must be a JSON object, not an array",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| describe_json_error(&err))
}

/// A JSON body that may be absent (empty body or JSON `null`: `T::default()`).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body says what it is; an untyped one must be empty (no `content-length` is no
        // proof of that: chunked or in-process bodies have none).
        if req.headers().contains_key(header::CONTENT_TYPE) {
            return AppJson::<Option<T>>::from_request(req, state)
                .await
                .map(|AppJson(v)| OptionalJson(v.unwrap_or_default()));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            ApiError::bad_request("invalid_body", "the request body could not be read")
        })?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `content-type: application/json`",
        ))
    }
}

/// serde's own messages quote the offending input (`invalid type: string "sk_live..."`),
/// which could be a secret, so we say which field and what was expected, nothing more.
fn describe_json_error(err: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::bad_request(
            "invalid_json",
            format!(
                "the body is not valid JSON (line {}, column {})",
                inner.line(),
                inner.column()
            ),
        );
    }
    let text = inner.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    let message = if let Some(expected) = text.split(", expected ").nth(1) {
        let expected = expected
            .replace("i32", "an integer")
            .replace("u64", "a non-negative integer");
        format!("field `{path}`: wrong type or value, expected {expected}")
    } else if text.starts_with("missing field") || text.starts_with("unknown field") {
        // These name fields only, never values.
        text.to_owned()
    } else {
        format!("field `{path}`: invalid")
    };
    ApiError::bad_request("invalid_json", message)
}

/// Refuses a NUL character in a text field stored as PostgreSQL `text` (which cannot hold
/// one): 400 naming the field, instead of a database error.
pub fn no_nul(field: &str, text: Option<&str>) -> Result<(), ApiError> {
    match text {
        Some(t) if t.contains('\0') => Err(ApiError::bad_request(
            "invalid_request",
            format!("field `{field}`: must not contain a NUL character"),
        )),
        _ => Ok(()),
    }
}

/// `{tenant}` from the path, validated before anything else happens.
pub struct TenantPath(pub TenantSlug);

/// `{tenant}` and `{key}` from the path, validated before anything else happens.
pub struct SecretPath(pub TenantSlug, pub SecretKey);

fn slug(raw: &str) -> Result<TenantSlug, ApiError> {
    TenantSlug::parse(raw).map_err(|e| ApiError::bad_request("invalid_tenant", e.0))
}

impl<S: Send + Sync> FromRequestParts<S> for TenantPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request("invalid_tenant", "the tenant in the path could not be read")
            })?;
        Ok(Self(slug(&raw)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SecretPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((tenant, key)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("invalid_path", "the path could not be read"))?;
        let tenant = slug(&tenant)?;
        let key =
            SecretKey::parse(&key).map_err(|e| ApiError::bad_request("invalid_secret_key", e.0))?;
        Ok(Self(tenant, key))
    }
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct Caller(pub Arc<Principal>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        caller_of(&parts.headers, &parts.extensions, state)
            .await
            .map(Caller)
    }
}

/// The caller of a request (the `Caller` extractor, and the cached read's lane).
pub(super) async fn caller_of(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    state: &AppState,
) -> Result<Arc<Principal>, ApiError> {
    // The rate limits have authenticated this request already (and counted it).
    let slot = extensions.get::<super::access::TokenSlot>();
    let who = match slot.and_then(|slot| slot.caller()) {
        Some(who) => who.clone(),
        None => {
            let token = bearer(headers).ok_or(crate::service::ServiceError::Unauthenticated)?;
            state.vault()?.authenticate(token).await?
        }
    };
    if let Some(slot) = slot {
        slot.set(who.token_id);
    }
    Ok(who)
}

/// An admin route's caller: authenticated as by [`Caller`], refused with 403 unless its token
/// is an admin token, and carrying what every admin handler needs: the vault and the audit
/// context (token id, request id).
pub struct Admin {
    pub vault: Arc<Vault>,
    pub ctx: RequestContext,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(who) = Caller::from_request_parts(parts, state).await?;
        let vault = state.vault()?.clone();
        vault.authorize_admin(&who)?;
        let Ok(RequestId(rid)) = RequestId::from_request_parts(parts, state).await;
        Ok(Admin {
            ctx: who.context(rid),
            vault,
        })
    }
}

/// The client's address when the server knows it (`ConnectInfo`), else `-`.
pub struct Source(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(super::access::source_of(&parts.extensions)))
    }
}

/// The token in `Authorization: Bearer <token>`, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The request id `edge` set (`x-request-id`: the caller's, else a fresh UUID).
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestId(request_id_of(&parts.headers)))
    }
}

/// The request id of a request (the `RequestId` extractor, and the cached read's lane).
pub(super) fn request_id_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(&super::X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        // `to_str` admits visible ASCII only, so any byte is a char boundary.
        .map(|s| s[..s.len().min(128)].to_owned())
}
