//! `/api/v1/webhooks`: create, list and delete webhooks, and sending them when secrets change.
//!
//! Sent the way the real server sends them (`services/webhook/webhook-fns.ts`, see
//! infisical-api.md 8b): `POST <webhookUrl>` with the JSON body
//! `{"event":"secrets.modified","project":{...,"secretPath":"<folder>"},"timestamp":<ms>}`
//! and, when a secret key is set, `x-infisical-signature: t=<timestamp>;<hex HMAC-SHA256 of
//! the exact body>`. A hook fires when its `secretPath` glob matches the changed folder; the
//! request gives up after 15 s, is never retried, and its result is kept as `lastStatus`.
//!
//! One deviation: the real server accepts only a user login (JWT) on these routes; the
//! emulator has no users, so a machine identity with write access stands in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::auth::authenticate;
use super::body::{issue, JsonBody};
use super::error::{ApiError, ApiResult};
use super::secrets::resolve_project;
use super::state::{lock, now_iso, uuid, Shared};

/// Infisical's `WEBHOOK_TRIGGER_TIMEOUT`.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(15);

pub(super) struct WebhookRec {
    pub(super) id: String,
    pub(super) project_id: String,
    pub(super) project_name: String,
    pub(super) env_slug: String,
    pub(super) env_id: String,
    pub(super) secret_path: String,
    pub(super) url: String,
    pub(super) secret_key: Option<Zeroizing<String>>,
    pub(super) kind: String,
    pub(super) created_at: String,
    pub(super) last_status: Option<String>,
    pub(super) last_error: Option<String>,
}

impl WebhookRec {
    /// `sanitizedWebhookSchema` (+ `url` on list).
    fn to_json(&self, with_url: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "secretPath": self.secret_path,
            "lastStatus": self.last_status,
            "lastRunErrorMessage": self.last_error,
            "isDisabled": false,
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
            "envId": self.env_id,
            "type": self.kind,
            "projectId": self.project_id,
            "environment": {"id": self.env_id, "name": self.env_slug, "slug": self.env_slug},
            "eventsFilter": [],
        });
        if with_url {
            v["url"] = json!(self.url);
        }
        v
    }
}

/// `removeTrailingSlash`.
fn trim_slash(p: &str) -> String {
    if p.len() > 1 {
        p.trim_end_matches('/').to_owned()
    } else {
        p.to_owned()
    }
}

pub(super) async fn create_webhook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut b = JsonBody::read(body).await?;
    let kind = b.string("type", false).unwrap_or_else(|| "general".into());
    // Current servers name it projectId, Oct-2024 ones workspaceId.
    let project = b
        .string("projectId", false)
        .or_else(|| b.string("workspaceId", false));
    if project.is_none() {
        b.issues
            .push(issue("projectId", "string", "undefined", "Required"));
    }
    let env_slug = b.string("environment", true).unwrap_or_default();
    let url = b.string("webhookUrl", true).unwrap_or_default();
    let secret_key = b
        .string("webhookSecretKey", false)
        .map(|k| Zeroizing::new(k.trim().to_owned()));
    let secret_path = trim_slash(
        b.string("secretPath", false)
            .as_deref()
            .map(str::trim)
            .unwrap_or("/"),
    );
    b.finish()?;
    if !["general", "slack", "microsoft-teams"].contains(&kind.as_str()) {
        return Err(ApiError::validation(vec![json!({
            "code": "invalid_enum_value",
            "options": ["general", "slack", "microsoft-teams"],
            "path": ["type"],
            "message": format!("Invalid enum value. Expected 'general' | 'slack' | 'microsoft-teams', received '{kind}'"),
        })]));
    }
    let url = url.trim().to_owned();
    if reqwest::Url::parse(&url).is_err() {
        return Err(ApiError::validation(vec![json!({
            "validation": "url", "code": "invalid_string", "message": "Invalid url",
            "path": ["webhookUrl"],
        })]));
    }
    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(&mut data, project.as_deref(), None)?;
    caller.check(&project_id, "create", "webhooks")?;
    let project_name = project.slug.clone();
    let Some(env) = project.envs.get(&env_slug) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Environment with slug '{env_slug}' in project with ID '{project_id}' not found"
            ),
            "NotFound",
        ));
    };
    let rec = WebhookRec {
        id: uuid(),
        project_id,
        project_name,
        env_slug: env_slug.clone(),
        env_id: env.id.clone(),
        secret_path,
        url,
        secret_key,
        kind,
        created_at: now_iso(),
        last_status: None,
        last_error: None,
    };
    let out = rec.to_json(false);
    data.webhooks.push(rec);
    Ok(Json(json!({"message": "Successfully created webhook", "webhook": out})).into_response())
}

pub(super) async fn list_webhooks(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let project = q.get("projectId").or_else(|| q.get("workspaceId")).cloned();
    let Some(project) = project else {
        return Err(ApiError::validation(vec![issue(
            "projectId",
            "string",
            "undefined",
            "Required",
        )]));
    };
    let mut data = lock(&s.data);
    let (project_id, _) = resolve_project(&mut data, Some(&project), None)?;
    caller.check(&project_id, "read", "webhooks")?;
    let env = q.get("environment");
    let path = q.get("secretPath").map(|p| trim_slash(p.trim()));
    let hooks: Vec<Value> = data
        .webhooks
        .iter()
        .filter(|h| h.project_id == project_id)
        .filter(|h| env.is_none_or(|e| &h.env_slug == e))
        .filter(|h| path.as_ref().is_none_or(|p| &h.secret_path == p))
        .map(|h| h.to_json(true))
        .collect();
    Ok(Json(json!({"message": "Successfully fetched webhook", "webhooks": hooks})).into_response())
}

pub(super) async fn delete_webhook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut data = lock(&s.data);
    let Some(pos) = data.webhooks.iter().position(|h| h.id == id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Webhook with ID '{id}' not found"),
            "NotFound",
        ));
    };
    caller.check(&data.webhooks[pos].project_id, "delete", "webhooks")?;
    let rec = data.webhooks.remove(pos);
    Ok(
        Json(json!({"message": "Successfully deleted webhook", "webhook": rec.to_json(false)}))
            .into_response(),
    )
}

/// picomatch's `isMatch(path, glob, {strictSlashes: false})` for the globs webhooks use:
/// `**` spans any number of folders, `*` and `?` stay within one.
pub(super) fn glob_matches(glob: &str, path: &str) -> bool {
    fn segs(s: &str) -> Vec<&str> {
        s.split('/').filter(|p| !p.is_empty()).collect()
    }
    fn seg_match(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => seg_match(&p[1..], s) || (!s.is_empty() && seg_match(p, &s[1..])),
            (Some(b'?'), Some(_)) => seg_match(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => seg_match(&p[1..], &s[1..]),
            _ => false,
        }
    }
    fn walk(g: &[&str], p: &[&str]) -> bool {
        match g.first() {
            None => p.is_empty(),
            Some(&"**") => walk(&g[1..], p) || (!p.is_empty() && walk(g, &p[1..])),
            Some(seg) => {
                !p.is_empty()
                    && seg_match(seg.as_bytes(), p[0].as_bytes())
                    && walk(&g[1..], &p[1..])
            }
        }
    }
    walk(&segs(glob), &segs(path))
}

/// Sends `secrets.modified` for `folder` to every matching webhook, in the background (the
/// write that caused it has already answered).
pub(super) fn secrets_modified(s: &Arc<Shared>, project_id: &str, env_slug: &str, folder: &str) {
    let targets: Vec<(String, String, Option<Zeroizing<String>>, String)> = lock(&s.data)
        .webhooks
        .iter()
        .filter(|h| h.project_id == project_id && h.env_slug == env_slug)
        .filter(|h| glob_matches(&h.secret_path, folder))
        .map(|h| {
            (
                h.id.clone(),
                h.url.clone(),
                h.secret_key.clone(),
                h.project_name.clone(),
            )
        })
        .collect();
    if targets.is_empty() {
        return;
    }
    let (s, project_id, env_slug, folder) = (
        s.clone(),
        project_id.to_owned(),
        env_slug.to_owned(),
        folder.to_owned(),
    );
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(TRIGGER_TIMEOUT)
            .build()
            .expect("reqwest client");
        for (id, url, key, project_name) in targets {
            let payload = Payload {
                event: "secrets.modified",
                project: PayloadProject {
                    workspace_id: &project_id,
                    project_id: &project_id,
                    project_name: &project_name,
                    environment: &env_slug,
                    environment_name: &env_slug,
                    secret_path: &folder,
                },
                timestamp: chrono::Utc::now().timestamp_millis(),
            };
            let body = serde_json::to_vec(&payload).expect("payload serialises");
            let mut req = http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(key) = key.filter(|k| !k.is_empty()) {
                let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key");
                mac.update(&body);
                let sig = hex::encode(mac.finalize().into_bytes());
                req = req.header(
                    "x-infisical-signature",
                    format!("t={};{sig}", payload.timestamp),
                );
            }
            let (status, error) = match req.send().await {
                Ok(r) if r.status().is_success() => ("success", None),
                Ok(r) => (
                    "failed",
                    Some(format!(
                        "Request failed with status code {}",
                        r.status().as_u16()
                    )),
                ),
                Err(e) => ("failed", Some(e.to_string())),
            };
            if let Some(h) = lock(&s.data).webhooks.iter_mut().find(|h| h.id == id) {
                h.last_status = Some(status.to_owned());
                h.last_error = error;
            }
        }
    });
}

/// The `general` payload, fields in the order the server's `JSON.stringify` writes them.
#[derive(serde::Serialize)]
struct Payload<'a> {
    event: &'static str,
    project: PayloadProject<'a>,
    timestamp: i64,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct PayloadProject<'a> {
    workspace_id: &'a str,
    project_id: &'a str,
    project_name: &'a str,
    environment: &'a str,
    environment_name: &'a str,
    secret_path: &'a str,
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn globs_match_like_picomatch() {
        assert!(glob_matches("/tenants/**", "/tenants/acme"));
        assert!(glob_matches("/tenants/**", "/tenants/acme/deeper"));
        assert!(glob_matches("/tenants/*", "/tenants/acme"));
        assert!(!glob_matches("/tenants/*", "/tenants/acme/deeper"));
        assert!(glob_matches("/", "/"));
        assert!(!glob_matches("/", "/tenants/acme"));
        assert!(glob_matches("/**", "/tenants/acme"));
        assert!(!glob_matches("/tenants/**", "/tenant-vault"));
        assert!(glob_matches("/tenants/ac?e", "/tenants/acme"));
    }
}
