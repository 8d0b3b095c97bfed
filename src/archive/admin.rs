//! `tenant-vault archive init`: with a root or admin token, sets up what the archive needs in
//! OpenBao: the KV v2 mount (retention as `delete_version_after`), the AppRole auth method, a
//! policy limited to `<mount>/{data,metadata}/tenants/*`, and a role carrying that policy.
//! Everything is idempotent: running it again updates the policy and role and issues a new
//! secret id.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use super::client::{http_client, parse_addr, validate_mount, MAX_VERSIONS};
use super::error::{error_words, ArchiveError};
use crate::crypto::SecretValue;

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// What to set up.
#[derive(Debug, Clone)]
pub struct InitRequest {
    pub addr: String,
    /// A root or admin token (never stored).
    pub token: SecretValue,
    pub ca_cert_pem: Option<Vec<u8>>,
    pub mount: String,
    pub policy: String,
    pub role: String,
    pub retention: Duration,
    /// TTL of the tokens the role's logins get (renewed up to `token_max_ttl`).
    pub token_ttl: Duration,
    pub token_max_ttl: Duration,
}

/// What `init` did and the credentials tenant-vault logs in with.
#[derive(Debug)]
pub struct InitOutcome {
    pub mount_created: bool,
    pub role_id: String,
    pub secret_id: SecretValue,
}

/// The archive policy: KV v2 data and metadata under `tenants/`, nothing else.
pub fn policy_rules(mount: &str) -> String {
    format!(
        "# tenant-vault's cold vault: archived versions under {mount}/tenants/ only.\n\
         path \"{mount}/data/tenants/*\" {{\n  capabilities = [\"create\", \"read\", \"update\"]\n}}\n\
         path \"{mount}/metadata/tenants/*\" {{\n  capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"]\n}}\n"
    )
}

struct Admin {
    http: reqwest::Client,
    base: Url,
    token: SecretValue,
}

impl Admin {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let mut url = self.base.clone();
        url.set_path(&format!("/v1/{path}"));
        let mut token = reqwest::header::HeaderValue::from_str(self.token.expose())
            .map_err(|_| ArchiveError::Config("the OpenBao token is not a header value".into()))?;
        token.set_sensitive(true);
        let mut req = self
            .http
            .request(method, url)
            .header("X-Vault-Token", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ArchiveError::Unavailable(format!("{path}: {}", e.without_url())))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ArchiveError::Unavailable(format!("{path}: {}", e.without_url())))?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            let message = format!("{path}: {}", error_words(&bytes));
            return Err(match status.as_u16() {
                403 => ArchiveError::Denied(message),
                500..=599 => ArchiveError::Unavailable(message),
                s => ArchiveError::Unexpected { status: s, message },
            });
        }
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status.as_u16(), v))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, v) = self.call(method, path, body).await?;
        if status == 404 {
            return Err(ArchiveError::Unexpected {
                status,
                message: format!("{path}: not found"),
            });
        }
        Ok(v)
    }
}

/// Sets up the mount, policy and role; returns the role id and a new secret id.
pub async fn init(req: &InitRequest) -> Result<InitOutcome> {
    validate_mount(&req.mount)?;
    for (what, name) in [("policy", &req.policy), ("role", &req.role)] {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ArchiveError::Config(format!(
                "the {what} name is letters, digits, '-' and '_'"
            )));
        }
    }
    let admin = Admin {
        http: http_client(req.ca_cert_pem.as_deref(), Duration::from_secs(30))?,
        base: parse_addr(&req.addr)?,
        token: req.token.clone(),
    };

    // The KV v2 mount.
    let mounts = admin.ok(Method::GET, "sys/mounts", None).await?;
    let existing = mounts
        .get("data")
        .unwrap_or(&mounts)
        .get(format!("{}/", req.mount));
    let mount_created = match existing {
        Some(m) => {
            let kv2 = m["type"] == "kv" && m["options"]["version"] == "2";
            if !kv2 {
                return Err(ArchiveError::Config(format!(
                    "the mount {} exists and is not KV version 2",
                    req.mount
                )));
            }
            false
        }
        None => {
            admin
                .ok(
                    Method::POST,
                    &format!("sys/mounts/{}", req.mount),
                    Some(json!({"type": "kv", "options": {"version": "2"},
                                "description": "tenant-vault archive"})),
                )
                .await?;
            true
        }
    };
    // A new KV v2 mount answers 400 ("upgrading") for a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin
            .call(Method::GET, &format!("{}/config", req.mount), None)
            .await
        {
            Ok((200, _)) => break,
            Ok(_) | Err(ArchiveError::Unexpected { status: 400, .. })
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Ok((status, _)) => {
                return Err(ArchiveError::Unexpected {
                    status,
                    message: format!("{}/config not ready", req.mount),
                })
            }
            Err(e) => return Err(e),
        }
    }
    admin
        .ok(
            Method::POST,
            &format!("{}/config", req.mount),
            Some(json!({
                "max_versions": MAX_VERSIONS,
                "delete_version_after": format!("{}s", req.retention.as_secs()),
            })),
        )
        .await?;

    // AppRole.
    let auths = admin.ok(Method::GET, "sys/auth", None).await?;
    if auths
        .get("data")
        .unwrap_or(&auths)
        .get("approle/")
        .is_none()
    {
        admin
            .ok(
                Method::POST,
                "sys/auth/approle",
                Some(json!({"type": "approle"})),
            )
            .await?;
    }
    admin
        .ok(
            Method::PUT,
            &format!("sys/policies/acl/{}", req.policy),
            Some(json!({ "policy": policy_rules(&req.mount) })),
        )
        .await?;
    admin
        .ok(
            Method::POST,
            &format!("auth/approle/role/{}", req.role),
            Some(json!({
                "token_policies": [req.policy],
                "token_ttl": format!("{}s", req.token_ttl.as_secs()),
                "token_max_ttl": format!("{}s", req.token_max_ttl.as_secs()),
                "token_type": "service",
                "secret_id_ttl": "0s",
                "secret_id_num_uses": 0,
            })),
        )
        .await?;
    let role_id = admin
        .ok(
            Method::GET,
            &format!("auth/approle/role/{}/role-id", req.role),
            None,
        )
        .await?["data"]["role_id"]
        .as_str()
        .ok_or_else(|| ArchiveError::Protocol("no role_id".into()))?
        .to_string();
    let secret = admin
        .ok(
            Method::POST,
            &format!("auth/approle/role/{}/secret-id", req.role),
            Some(json!({})),
        )
        .await?;
    let secret_id = SecretValue::new(
        secret["data"]["secret_id"]
            .as_str()
            .ok_or_else(|| ArchiveError::Protocol("no secret_id".into()))?
            .to_string(),
    );
    Ok(InitOutcome {
        mount_created,
        role_id,
        secret_id,
    })
}
