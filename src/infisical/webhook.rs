//! Infisical webhooks, the receiving side: the `x-infisical-signature` check and the payload.
//!
//! Infisical signs a webhook as `x-infisical-signature: t=<ms>;<hex>`, where `<hex>` is
//! HMAC-SHA256 (key: the webhook secret key as UTF-8) over the exact JSON body, and the body
//! carries the same `timestamp`. The header's `t=` is not covered by the HMAC, so the replay
//! window is judged on the body's timestamp, and a header `t=` that disagrees with it is
//! refused. The payload names a folder that changed, never a secret or a value.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header Infisical signs with.
pub const SIGNATURE_HEADER: &str = "x-infisical-signature";

/// Why a webhook was refused. Never carries the secret or the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing x-infisical-signature header")]
    Missing,
    #[error("malformed x-infisical-signature header (expected t=<ms>;<hex>)")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the body is not an Infisical webhook payload")]
    BadPayload,
    #[error("the signature's timestamp does not match the body's")]
    TimestampMismatch,
    #[error("the webhook is too old or too far in the future (replay window {window_secs} s)")]
    Stale { window_secs: u64 },
}

/// The `project` object of a `secrets.modified` payload. Oct-2024 servers send
/// `workspaceId`, current ones `projectId` as well.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookProject {
    pub workspace_id: Option<String>,
    pub project_id: Option<String>,
    pub environment: Option<String>,
    pub secret_path: Option<String>,
}

impl WebhookProject {
    pub fn project(&self) -> Option<&str> {
        self.project_id.as_deref().or(self.workspace_id.as_deref())
    }
}

/// A verified webhook.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct WebhookPayload {
    pub event: String,
    pub project: Option<WebhookProject>,
    pub timestamp: i64,
}

/// Verifies `header` over `body` with `secret` (constant-time comparison), then the replay
/// window around `now_ms`, and returns the payload.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_ms: i64,
    window_secs: u64,
) -> Result<WebhookPayload, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let (t, hex_sig) = header
        .trim()
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(';'))
        .ok_or(SignatureError::Malformed)?;
    let t: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;
    let sig = hex::decode(hex_sig.trim()).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&sig)
        .map_err(|_| SignatureError::Mismatch)?;
    let payload: WebhookPayload =
        serde_json::from_slice(body).map_err(|_| SignatureError::BadPayload)?;
    if payload.timestamp != t {
        return Err(SignatureError::TimestampMismatch);
    }
    let window_ms = i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if (now_ms - payload.timestamp).abs() > window_ms {
        return Err(SignatureError::Stale { window_secs });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn accepts_good_and_refuses_every_kind_of_bad() {
        let now = 1_700_000_000_000i64;
        let body = format!(
            r#"{{"event":"secrets.modified","project":{{"workspaceId":"p","environment":"prod","secretPath":"/tenants/acme"}},"timestamp":{now}}}"#
        );
        let good = format!("t={now};{}", sign("s3cret", &body));
        let ok = verify(b"s3cret", Some(&good), body.as_bytes(), now, 300).unwrap();
        assert_eq!(ok.project.unwrap().secret_path.unwrap(), "/tenants/acme");

        let v = |h: Option<&str>, b: &str, now: i64| verify(b"s3cret", h, b.as_bytes(), now, 300);
        assert_eq!(v(None, &body, now).unwrap_err(), SignatureError::Missing);
        assert_eq!(
            v(Some("garbage"), &body, now).unwrap_err(),
            SignatureError::Malformed
        );
        assert_eq!(
            v(Some(&format!("t={now};zz")), &body, now).unwrap_err(),
            SignatureError::Malformed
        );
        let wrong_key = format!("t={now};{}", sign("other", &body));
        assert_eq!(
            v(Some(&wrong_key), &body, now).unwrap_err(),
            SignatureError::Mismatch
        );
        let tampered = body.replace("acme", "globex");
        assert_eq!(
            v(Some(&good), &tampered, now).unwrap_err(),
            SignatureError::Mismatch
        );
        // A replayed body under a fresh `t=` is caught: the body's timestamp counts.
        let moved = format!("t={};{}", now + 1000, sign("s3cret", &body));
        assert_eq!(
            v(Some(&moved), &body, now).unwrap_err(),
            SignatureError::TimestampMismatch
        );
        assert_eq!(
            v(Some(&good), &body, now + 301_000).unwrap_err(),
            SignatureError::Stale { window_secs: 300 }
        );
        let not_json = "not json";
        let h = format!("t={now};{}", sign("s3cret", not_json));
        assert_eq!(
            v(Some(&h), not_json, now).unwrap_err(),
            SignatureError::BadPayload
        );
    }
}
