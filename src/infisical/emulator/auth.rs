//! Universal Auth: signed access tokens, login, renewal, revocation, and the permission
//! check every protected route makes.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::body::JsonBody;
use super::error::{ApiError, ApiResult};
use super::seed::Role;
use super::state::{lock, uuid, Identity, Shared, TokenRec};

pub(super) type HmacSha256 = Hmac<Sha256>;

pub(super) enum JwtError {
    Malformed,
    BadSignature,
    Expired,
}

impl Shared {
    pub(super) fn sign_jwt(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let mut mac = HmacSha256::new_from_slice(&self.jwt_key).expect("any key length");
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Verifies an HS256 JWT and returns its `identityAccessTokenId`.
    pub(super) fn verify_jwt(&self, token: &str) -> Result<String, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| JwtError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::BadSignature);
        }
        let mut mac = HmacSha256::new_from_slice(&self.jwt_key).expect("any key length");
        mac.update(format!("{h}.{p}").as_bytes());
        if mac.verify_slice(&sig).is_err() {
            return Err(JwtError::BadSignature);
        }
        if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
            if chrono::Utc::now().timestamp() >= exp {
                return Err(JwtError::Expired);
            }
        }
        claims
            .get("identityAccessTokenId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(JwtError::Malformed)
    }

    pub(super) fn issue_jwt(&self, identity: &Identity, token_id: &str, max_ttl: u64) -> String {
        let iat = chrono::Utc::now().timestamp();
        // Oct-2024 behaviour: exp = iat + max TTL; the (shorter) TTL is enforced server-side,
        // so an expired token gets 401, not 403.
        let mut claims = json!({
            "identityId": identity.id,
            "clientSecretId": identity.client_secret_id,
            "identityAccessTokenId": token_id,
            "authTokenType": "identityAccessToken",
            "iat": iat,
        });
        if max_ttl > 0 {
            claims["exp"] = json!(iat + max_ttl as i64);
        }
        self.sign_jwt(&claims)
    }
}

pub(super) fn token_error(e: JwtError) -> ApiError {
    let msg = match e {
        JwtError::Malformed => "The provided access token is malformed. Please use a valid token or generate a new one and try again.",
        JwtError::BadSignature => "invalid signature",
        JwtError::Expired => "Your token has expired. Please re-authenticate.",
    };
    ApiError::new(StatusCode::FORBIDDEN, msg, "TokenError").auth()
}

pub(super) fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, msg, "UnauthorizedError").auth()
}

/// Who is calling: the identity's role and project memberships.
pub(super) struct Caller {
    pub(super) role: Role,
    pub(super) projects: Option<HashSet<String>>,
}

/// Checks the token of a protected request, in the order the real server does: header,
/// JWT (403 TokenError), server-side record (401).
pub(super) fn authenticate(s: &Shared, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(raw) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("Token missing"));
    };
    let raw = raw.to_str().map_err(|_| token_error(JwtError::Malformed))?;
    // Like the real server: everything after the first 7 characters, scheme word unchecked.
    let token = raw.get(7..).unwrap_or("");
    let token_id = s.verify_jwt(token).map_err(token_error)?;
    let mut data = lock(&s.data);
    let Some(rec) = data.tokens.get(&token_id) else {
        return Err(unauthorized("No identity access token found"));
    };
    if rec.expires.is_some_and(|e| Instant::now() >= e) {
        data.tokens.remove(&token_id);
        return Err(unauthorized(
            "Failed to renew MI access token due to TTL expiration",
        ));
    }
    let client_id = rec.client_id.clone();
    let Some(identity) = data.identities.get(&client_id) else {
        return Err(unauthorized("No identity access token found"));
    };
    Ok(Caller {
        role: identity.role,
        projects: identity.projects.clone(),
    })
}

impl Caller {
    pub(super) fn check(
        &self,
        project_id: &str,
        action: &str,
        subject: &str,
    ) -> Result<(), ApiError> {
        if let Some(p) = &self.projects {
            if !p.contains(project_id) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "You are not allowed to access this resource",
                    format!(
                        "Identity is not a member of the specified project with ID '{project_id}'"
                    ),
                ));
            }
        }
        if action != "read" && self.role == Role::Viewer {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("You are not allowed to {action} on {subject}"),
                "PermissionDenied",
            ));
        }
        Ok(())
    }
}

pub(super) async fn login(State(s): State<Arc<Shared>>, body: Body) -> ApiResult {
    let mut b = JsonBody::read(body).await?;
    let client_id = b.string("clientId", true);
    let client_secret = b.string("clientSecret", true).map(Zeroizing::new);
    b.finish()?;
    let (client_id, client_secret) = (
        client_id.unwrap_or_default(),
        client_secret.unwrap_or_default(),
    );
    let ttl_fault = lock(&s.faults).token_ttl_secs;
    let mut data = lock(&s.data);
    // Current servers answer 401 "Invalid credentials" for an unknown client id too
    // (Oct-2024 answered 404).
    let Some(identity) = data.identities.get(&client_id) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid credentials",
            "UnauthorizedError",
        ));
    };
    let ok: bool = identity
        .client_secret
        .as_bytes()
        .ct_eq(client_secret.as_bytes())
        .into();
    if !ok {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid credentials",
            "UnauthorizedError",
        ));
    }
    let max_ttl = identity.max_ttl;
    let ttl = if max_ttl > 0 && (ttl_fault == 0 || ttl_fault > max_ttl) {
        max_ttl
    } else {
        ttl_fault
    };
    let token_id = uuid();
    let jwt = s.issue_jwt(identity, &token_id, max_ttl);
    let now = Instant::now();
    data.tokens.insert(
        token_id,
        TokenRec {
            client_id,
            issued: now,
            ttl,
            max_ttl,
            expires: (ttl > 0).then(|| now + Duration::from_secs(ttl)),
        },
    );
    s.counters.logins.fetch_add(1, Ordering::Relaxed);
    Ok(token_answer(jwt, ttl, max_ttl))
}

/// A login's or renewal's answer: the (new) JWT and its TTLs.
fn token_answer(jwt: String, ttl: u64, max_ttl: u64) -> Response {
    Json(json!({
        "accessToken": jwt,
        "expiresIn": ttl,
        "accessTokenMaxTTL": max_ttl,
        "tokenType": "Bearer",
    }))
    .into_response()
}

pub(super) async fn renew(State(s): State<Arc<Shared>>, body: Body) -> ApiResult {
    let mut b = JsonBody::read(body).await?;
    let token = b.string("accessToken", true).map(Zeroizing::new);
    b.finish()?;
    let token = token.unwrap_or_default();
    let token_id = s.verify_jwt(&token).map_err(token_error)?;
    let mut data = lock(&s.data);
    let Some(rec) = data.tokens.get_mut(&token_id) else {
        return Err(unauthorized("No identity access token found"));
    };
    let now = Instant::now();
    if rec.expires.is_some_and(|e| now >= e) {
        data.tokens.remove(&token_id);
        return Err(unauthorized(
            "Failed to renew MI access token due to TTL expiration",
        ));
    }
    if rec.max_ttl > 0 {
        let hard_end = rec.issued + Duration::from_secs(rec.max_ttl);
        if now >= hard_end {
            data.tokens.remove(&token_id);
            return Err(unauthorized(
                "Failed to renew MI access token due to Max TTL expiration",
            ));
        }
        if now + Duration::from_secs(rec.ttl) > hard_end {
            data.tokens.remove(&token_id);
            return Err(unauthorized(
                "Failed to renew MI access token past its Max TTL expiration",
            ));
        }
    }
    if rec.ttl > 0 {
        rec.expires = Some(now + Duration::from_secs(rec.ttl));
    }
    let (ttl, max_ttl, client_id) = (rec.ttl, rec.max_ttl, rec.client_id.clone());
    let Some(identity) = data.identities.get(&client_id) else {
        return Err(unauthorized("No identity access token found"));
    };
    // Current servers sign and return a new JWT for the same token record.
    let jwt = s.issue_jwt(identity, &token_id, max_ttl);
    s.counters.renewals.fetch_add(1, Ordering::Relaxed);
    Ok(token_answer(jwt, ttl, max_ttl))
}

pub(super) async fn revoke(State(s): State<Arc<Shared>>, body: Body) -> ApiResult {
    let mut b = JsonBody::read(body).await?;
    let token = b.string("accessToken", true).map(Zeroizing::new);
    b.finish()?;
    let token_id = s
        .verify_jwt(&token.unwrap_or_default())
        .map_err(token_error)?;
    if lock(&s.data).tokens.remove(&token_id).is_none() {
        return Err(unauthorized("No identity access token found"));
    }
    Ok(Json(json!({"message": "Successfully revoked access token"})).into_response())
}
