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

// Written by `to_json`; its `Serialize` is the reference `to_json` is tested against.
/// The GET answer, serialised straight from borrowed data (the hot path's only allocation
/// here is the body itself).
#[derive(Serialize, ToSchema)]
pub(super) struct SecretBody<'a> {
    pub(super) key: &'a str,
    pub(super) value: &'a str,
    pub(super) version: i32,
    pub(super) updated_at: chrono::DateTime<chrono::Utc>,
}

impl SecretBody<'_> {
    /// The JSON text serde writes for this body (the test below holds them equal), written
    /// by hand: a value without a quote, backslash or control character (nearly every
    /// secret) is copied whole instead of byte by byte through serde_json's escaper, which
    /// was the largest part of answering a cached read.
    pub(super) fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(80 + self.key.len() + self.value.len());
        out.extend_from_slice(b"{\"key\":");
        json_string(&mut out, self.key);
        out.extend_from_slice(b",\"value\":");
        json_string(&mut out, self.value);
        out.extend_from_slice(b",\"version\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.version).as_bytes());
        out.extend_from_slice(b",\"updated_at\":");
        let mut text = [0; 30];
        match rfc3339_text(&self.updated_at, &mut text) {
            Some(text) => json_string(&mut out, text),
            None => serde_json::to_writer(&mut out, &self.updated_at).expect("writes to a Vec"),
        }
        out.push(b'}');
        out
    }

    /// The 200 answer: this body, `x-secret-source`, `cache-control: no-store` and, for a
    /// value served stale, `age`.
    pub(super) fn answer(
        &self,
        source: crate::domain::SecretSource,
        age: Option<std::time::Duration>,
    ) -> Response {
        let body = self.to_json();
        let length = HeaderValue::from(body.len());
        let mut response = Response::new(axum::body::Body::from(body));
        let headers = response.headers_mut();
        // These, and the request id added on the way out, without growing the map.
        headers.reserve(7);
        headers.insert(axum::http::header::CONTENT_LENGTH, length);
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            SECRET_SOURCE.clone(),
            HeaderValue::from_static(source.as_str()),
        );
        if let Some(age) = age {
            headers.insert(axum::http::header::AGE, HeaderValue::from(age.as_secs()));
        }
        // Secrets must not land in shared caches.
        headers.insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        response
    }
}

/// `text` as a JSON string, as serde_json writes it (it escapes only `"`, `\\` and control
/// characters).
fn json_string(out: &mut Vec<u8>, text: &str) {
    // No early exit, so the compiler checks many bytes at a time.
    let escapes = text.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escapes {
        serde_json::to_writer(&mut *out, text).expect("writes to a Vec");
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// A timestamp as chrono's serde writes it (RFC 3339, `Z`, the fraction as 0, 3, 6 or 9
/// digits), but written into a stack buffer: chrono goes through `fmt` machinery that cost
/// more than the rest of the body on every cached read. None outside years 0-9999 and on
/// leap seconds, where chrono writes it.
fn rfc3339_text<'b>(at: &chrono::DateTime<chrono::Utc>, buf: &'b mut [u8; 30]) -> Option<&'b str> {
    use chrono::{Datelike, Timelike};
    // The naive time once: each accessor of a `DateTime` applies its offset again.
    let at = at.naive_utc();
    let (year, nanos) = (at.year(), at.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    fn digits(buf: &mut [u8], mut n: u32) {
        for slot in buf.iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    *buf = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut buf[0..4], year as u32);
    digits(&mut buf[5..7], at.month());
    digits(&mut buf[8..10], at.day());
    digits(&mut buf[11..13], at.hour());
    digits(&mut buf[14..16], at.minute());
    digits(&mut buf[17..19], at.second());
    let (fraction, scale) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (3, n / 1_000_000),
        n if n % 1_000 == 0 => (6, n / 1_000),
        n => (9, n),
    };
    let end = if fraction == 0 {
        19
    } else {
        digits(&mut buf[20..20 + fraction], scale);
        20 + fraction
    };
    buf[end] = b'Z';
    Some(std::str::from_utf8(&buf[..=end]).expect("ASCII digits"))
}

/// `rfc3339_text` as a serde `serialize_with` (the batch read's items).
pub(super) fn rfc3339<S: serde::Serializer>(
    at: &chrono::DateTime<chrono::Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut buf = [0; 30];
    match rfc3339_text(at, &mut buf) {
        Some(text) => serializer.serialize_str(text),
        None => serde::Serialize::serialize(at, serializer),
    }
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
    read_current(&state, &slug, &key, &who, rid).await
}

/// The current version of a secret, as `get_secret` answers it (and the cached read's lane,
/// `api::lane`, which calls this without axum's router).
pub(super) async fn read_current(
    state: &AppState,
    slug: &crate::domain::TenantSlug,
    key: &SecretKey,
    who: &crate::service::Principal,
    rid: Option<String>,
) -> Result<Response, ApiError> {
    let vault = state.vault()?;
    let tenant = vault
        .authorize_secret(who, slug, Some(key), Access::Read)
        .await?;
    let read = vault.get_secret(&who.context(rid), &tenant, key).await?;
    Ok(SecretBody {
        key: key.as_str(),
        value: read.secret.value.expose(),
        version: read.secret.version,
        updated_at: read.secret.updated_at,
    }
    .answer(read.source, read.age))
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};

    #[derive(serde::Serialize)]
    struct Fast(#[serde(serialize_with = "super::rfc3339")] DateTime<Utc>);

    /// The hand-written timestamp is byte for byte what chrono's serde writes.
    #[test]
    fn rfc3339_matches_chrono() {
        let mut cases = vec![
            Utc.with_ymd_and_hms(2026, 12, 2, 11, 5, 9).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(-3, 6, 1, 0, 0, 0).unwrap(),
            Utc::now(),
        ];
        let base = Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 58).unwrap();
        for nanos in [
            1,
            7,
            999,
            1_000,
            120_000,
            999_999,
            1_000_000,
            5_000_000,
            123_456_789,
        ] {
            cases.push(base + chrono::Duration::nanoseconds(nanos));
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let secs = (seed % 253_402_300_799) as i64; // up to 9999-12-31
            let nanos = match seed % 4 {
                0 => 0,
                1 => (seed % 1_000) as u32 * 1_000_000,
                2 => (seed % 1_000_000) as u32 * 1_000,
                _ => (seed % 1_000_000_000) as u32,
            };
            cases.push(DateTime::from_timestamp(secs, nanos).unwrap());
        }
        for at in cases {
            assert_eq!(
                serde_json::to_string(&Fast(at)).unwrap(),
                serde_json::to_string(&at).unwrap(),
                "{at:?}"
            );
        }
    }
}

#[cfg(test)]
mod answer_tests {
    use super::SecretBody;
    use chrono::{TimeZone, Utc};
    use rand::Rng;

    /// `to_json` writes exactly what serde writes: plain values, values needing escapes
    /// (quotes, backslashes, control characters, and non-ASCII, which is not escaped), and
    /// timestamps with no fraction, milli-, micro- and nanoseconds, before year 0 and after
    /// 9999.
    #[test]
    fn the_hand_written_body_is_the_serde_body() {
        let mut rng = rand::thread_rng();
        let texts = [
            String::new(),
            "sk_live_0123456789abcdef".to_owned(),
            "a \"quoted\" \\ value\n\t\u{1}\u{1f}\u{7f}".to_owned(),
            "é ü 日本 🔑 \u{2028}".to_owned(),
        ];
        let times = [
            Utc.with_ymd_and_hms(2026, 12, 3, 7, 0, 0).unwrap(),
            Utc.timestamp_opt(1_700_000_000, 123_000_000).unwrap(),
            Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap(),
            Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap(),
            Utc.with_ymd_and_hms(-5, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(12345, 1, 1, 0, 0, 0).unwrap(),
        ];
        let mut cases = 0;
        for value in texts.iter() {
            for at in times {
                let body = SecretBody {
                    key: "STRIPE_SECRET_KEY",
                    value,
                    version: rng.gen_range(i32::MIN..i32::MAX),
                    updated_at: at,
                };
                assert_eq!(
                    String::from_utf8(body.to_json()).unwrap(),
                    serde_json::to_string(&body).unwrap()
                );
                cases += 1;
            }
        }
        // And random values over every character class.
        for _ in 0..500 {
            let value: String = (0..rng.gen_range(0..80))
                .map(|_| match rng.gen_range(0..4) {
                    0 => char::from(rng.gen_range(0u8..0x80)),
                    1 => ['"', '\\', '\n', '\u{0}'][rng.gen_range(0..4)],
                    _ => rng.gen_range('\u{20}'..='\u{10ffff}'),
                })
                .collect();
            let body = SecretBody {
                key: "K",
                value: &value,
                version: 1,
                updated_at: Utc::now(),
            };
            assert_eq!(
                String::from_utf8(body.to_json()).unwrap(),
                serde_json::to_string(&body).unwrap()
            );
            cases += 1;
        }
        assert_eq!(cases, 524);
    }
}
