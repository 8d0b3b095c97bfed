//! `/api/v3/secrets/raw`: list, read, create, update and delete secrets.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::trim_value;

use super::auth::{authenticate, Caller};
use super::body::{issue, JsonBody};
use super::error::{ApiError, ApiResult};
use super::state::{
    lock, now_iso, uuid, Data, FolderRec, Project, SecretRec, SecretVersion, Shared,
};
use super::MAX_DEPTH;

/// `secretPath` as the server treats it: one trailing `/` stripped; `.`/`..` segments make the
/// folder lookup blow up (500 "Find by secret path" on the Oct-2024 server). Other oddities
/// (no leading `/`, `//`) are kept and simply match no folder.
pub(super) fn normalise_path(raw: &str) -> Result<String, ApiError> {
    let p = if raw.len() > 1 {
        raw.strip_suffix('/').unwrap_or(raw)
    } else {
        raw
    };
    if p.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(ApiError::internal("Find by secret path"));
    }
    Ok(p.to_owned())
}

pub(super) fn bool_param(q: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::validation(vec![json!({
            "code": "invalid_enum_value",
            "options": ["true", "false"],
            "path": [key],
            "message": "Invalid enum value. Expected 'true' | 'false'",
        })])),
    }
}

/// Finds the project by `workspaceId` or `workspaceSlug`.
pub(super) fn resolve_project<'a>(
    data: &'a mut Data,
    id: Option<&str>,
    slug: Option<&str>,
) -> Result<(String, &'a mut Project), ApiError> {
    let key = match (id, slug) {
        (Some(id), _) => Some(id.to_owned()),
        (None, Some(slug)) => data
            .projects
            .iter()
            .find(|(_, p)| p.slug == slug)
            .map(|(k, _)| k.clone()),
        (None, None) => None,
    };
    let missing = id.or(slug).unwrap_or_default().to_owned();
    match key.and_then(|k| data.projects.get_mut(&k).map(|p| (k, p))) {
        Some(found) => Ok(found),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Project with ID '{missing}' not found during bot lookup. Are you sure you are using the correct project ID?"
            ),
            "NotFound",
        )),
    }
}

pub(super) struct SecretView<'a> {
    pub(super) rec: &'a SecretRec,
    pub(super) version: usize,
    pub(super) project_id: &'a str,
    pub(super) env: &'a str,
}

impl SecretView<'_> {
    /// The secret object. `secret_path`: added on get and list (current servers);
    /// `tags`: on get and list; `hide`: `viewSecretValue=false`.
    pub(super) fn to_json(&self, secret_path: Option<&str>, tags: bool, hide: bool) -> Value {
        let v = &self.rec.versions[self.version - 1];
        let mut obj = json!({
            "id": self.rec.id,
            "_id": self.rec.id,
            "workspace": self.project_id,
            "environment": self.env,
            "version": self.version,
            "type": self.rec.kind,
            "secretKey": self.rec.name,
            "secretValue": if hide { "<hidden-by-infisical>" } else { v.value.as_str() },
            "secretValueHidden": hide,
            "secretComment": v.comment,
            "secretReminderNote": null,
            "secretReminderRepeatDays": null,
            "skipMultilineEncoding": false,
            "metadata": null,
            "createdAt": self.rec.created_at,
            "updatedAt": v.at,
        });
        if let Some(p) = secret_path {
            obj["secretPath"] = json!(p);
        }
        if tags {
            obj["tags"] = json!([]);
        }
        obj
    }
}

pub(super) fn secret_response(value: Value) -> Response {
    Json(json!({ "secret": value })).into_response()
}

pub(super) async fn list_secrets(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let ws_id = q.get("workspaceId").map(String::as_str);
    let ws_slug = q.get("workspaceSlug").map(String::as_str);
    let Some(env_slug) = q.get("environment") else {
        return Err(ApiError::bad_request("Missing workspace id or environment"));
    };
    if ws_id.is_none() && ws_slug.is_none() {
        return Err(ApiError::bad_request("Missing workspace id or environment"));
    }
    let recursive = bool_param(&q, "recursive")?;
    let include_imports = bool_param(&q, "include_imports")?;
    bool_param(&q, "expandSecretReferences")?;
    let hide = q.get("viewSecretValue").map(String::as_str) == Some("false");
    let path = normalise_path(q.get("secretPath").map_or("/", String::as_str))?;

    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(&mut data, ws_id, ws_slug)?;
    caller.check(&project_id, "read", "secrets")?;
    let empty = || Json(json!({"secrets": [], "imports": []})).into_response();
    let Some(env) = project.envs.get(env_slug) else {
        return Ok(empty());
    };
    if !env.folders.contains_key(&path) {
        return Ok(empty());
    }
    let base_depth = path.split('/').filter(|s| !s.is_empty()).count();
    let mut secrets = Vec::new();
    for (fpath, folder) in &env.folders {
        let inside = fpath == &path
            || (recursive
                && (path == "/" || fpath.starts_with(&format!("{path}/")))
                && fpath.split('/').filter(|s| !s.is_empty()).count() - base_depth <= MAX_DEPTH);
        if !inside {
            continue;
        }
        for rec in folder.secrets.values() {
            let view = SecretView {
                rec,
                version: rec.versions.len(),
                project_id: &project_id,
                env: env_slug,
            };
            secrets.push(view.to_json(Some(fpath), true, hide));
        }
    }
    let mut body = json!({ "secrets": secrets });
    if include_imports {
        body["imports"] = json!([]);
    }
    Ok(Json(body).into_response())
}

pub(super) async fn get_secret(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let ws_id = q.get("workspaceId").map(String::as_str);
    let ws_slug = q.get("workspaceSlug").map(String::as_str);
    if ws_id.is_none() && ws_slug.is_none() {
        return Err(ApiError::bad_request("Missing workspace id or slug"));
    }
    let Some(env_slug) = q.get("environment") else {
        return Err(ApiError::bad_request("Missing environment"));
    };
    let kind = match q.get("type").map(String::as_str) {
        None | Some("shared") => "shared",
        Some("personal") => "personal",
        Some(_) => {
            return Err(ApiError::validation(vec![json!({
                "code": "invalid_enum_value",
                "options": ["shared", "personal"],
                "path": ["type"],
                "message": "Invalid enum value. Expected 'shared' | 'personal'",
            })]))
        }
    };
    let version = match q.get("version") {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(ApiError::validation(vec![issue(
                    "version",
                    "number",
                    "nan",
                    "Expected number, received nan",
                )]))
            }
        },
    };
    bool_param(&q, "expandSecretReferences")?;
    bool_param(&q, "include_imports")?;
    let hide = q.get("viewSecretValue").map(String::as_str) == Some("false");
    let path = normalise_path(q.get("secretPath").map_or("/", String::as_str))?;

    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(&mut data, ws_id, ws_slug)?;
    caller.check(&project_id, "read", "secrets")?;
    let folder = project
        .envs
        .get(env_slug)
        .and_then(|e| e.folders.get(&path))
        .ok_or_else(|| ApiError::folder_not_found(&path, env_slug, "GetSecretByName"))?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Secret with name '{name}' not found"),
            "NotFound",
        )
    };
    let rec = folder
        .secrets
        .get(&(kind.to_owned(), name.clone()))
        .ok_or_else(not_found)?;
    // Current behaviour: exactly that version, or 404.
    let version = match version {
        None => rec.versions.len(),
        Some(v) if v >= 1 && v <= rec.versions.len() => v,
        Some(_) => return Err(not_found()),
    };
    let view = SecretView {
        rec,
        version,
        project_id: &project_id,
        env: env_slug,
    };
    Ok(secret_response(view.to_json(Some(&path), true, hide)))
}

/// The fields every write carries: project, environment, path, type.
pub(super) struct WriteScope {
    pub(super) project_id: Option<String>,
    pub(super) project_slug: Option<String>,
    pub(super) env: String,
    pub(super) path: String,
    pub(super) kind: String,
}

/// The folder a secret write names, once the caller may `action` secrets in its project;
/// `operation` names the request in the not-found error, as Infisical does.
fn write_folder<'a>(
    data: &'a mut Data,
    caller: &Caller,
    scope: &WriteScope,
    path: &str,
    action: &str,
    operation: &str,
) -> Result<(String, &'a mut FolderRec), ApiError> {
    let (project_id, project) = resolve_project(
        data,
        scope.project_id.as_deref(),
        scope.project_slug.as_deref(),
    )?;
    caller.check(&project_id, action, "secrets")?;
    let folder = project
        .envs
        .get_mut(&scope.env)
        .and_then(|e| e.folders.get_mut(path))
        .ok_or_else(|| ApiError::folder_not_found(path, &scope.env, operation))?;
    Ok((project_id, folder))
}

pub(super) fn write_scope(b: &mut JsonBody) -> WriteScope {
    let project_id = b.string("workspaceId", false);
    let project_slug = b
        .string("projectSlug", false)
        .or_else(|| b.string("workspaceSlug", false));
    if project_id.is_none() && project_slug.is_none() {
        b.issues
            .push(issue("workspaceId", "string", "undefined", "Required"));
    }
    let env = b.string("environment", true).unwrap_or_default();
    let path = b.string("secretPath", false).unwrap_or_else(|| "/".into());
    let kind = b.kind();
    WriteScope {
        project_id,
        project_slug,
        env,
        path,
        kind,
    }
}

/// Current servers refuse `:` and `/` in names and blank names.
pub(super) fn check_secret_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::validation(vec![json!({
            "code": "custom", "path": ["secretName"], "message": "Secret name cannot be empty.",
        })]));
    }
    if name.contains(':') || name.contains('/') {
        return Err(ApiError::validation(vec![json!({
            "code": "custom", "path": ["secretName"],
            "message": "Secret name cannot contain colon or forward slash.",
        })]));
    }
    Ok(())
}

pub(super) async fn create_secret(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut b = JsonBody::read(body).await?;
    let scope = write_scope(&mut b);
    let value = b.string("secretValue", true).map(Zeroizing::new);
    let comment = b.string("secretComment", false).unwrap_or_default();
    b.finish()?;
    check_secret_name(&name)?;
    let value = value.unwrap_or_default();
    let path = normalise_path(&scope.path)?;

    let mut data = lock(&s.data);
    let (project_id, folder) =
        write_folder(&mut data, &caller, &scope, &path, "create", "CreateSecret")?;
    let key = (scope.kind.clone(), name.clone());
    if folder.secrets.contains_key(&key) {
        return Err(ApiError::bad_request("Secret already exist"));
    }
    let at = now_iso();
    let rec = SecretRec {
        id: uuid(),
        name: name.clone(),
        kind: scope.kind.clone(),
        created_at: at.clone(),
        versions: vec![SecretVersion {
            value: Zeroizing::new(trim_value(&value)),
            comment,
            at,
        }],
    };
    let out = SecretView {
        rec: &rec,
        version: 1,
        project_id: &project_id,
        env: &scope.env,
    }
    .to_json(None, false, false);
    folder.secrets.insert(key, rec);
    drop(data);
    super::webhooks::secrets_modified(&s, &project_id, &scope.env, &path);
    Ok(secret_response(out))
}

pub(super) async fn update_secret(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut b = JsonBody::read(body).await?;
    let scope = write_scope(&mut b);
    // Current servers: secretValue optional (Oct-2024 required it).
    let value = b.string("secretValue", false).map(Zeroizing::new);
    let comment = b.string("secretComment", false);
    let new_name = b.string("newSecretName", false);
    b.finish()?;
    if let Some(n) = &new_name {
        check_secret_name(n)?;
    }
    let path = normalise_path(&scope.path)?;

    let mut data = lock(&s.data);
    let (project_id, folder) =
        write_folder(&mut data, &caller, &scope, &path, "edit", "UpdateSecret")?;
    let key = (scope.kind.clone(), name.clone());
    if !folder.secrets.contains_key(&key) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Secret with name {name} not found"),
            "NotFound",
        ));
    }
    if let Some(n) = &new_name {
        if n != &name
            && folder
                .secrets
                .contains_key(&(scope.kind.clone(), n.clone()))
        {
            return Err(ApiError::bad_request(
                "Secret with the new name already exist",
            ));
        }
    }
    let mut rec = folder.secrets.remove(&key).expect("checked above");
    let last = rec.versions.last().expect("a secret has a version");
    let next = SecretVersion {
        value: match &value {
            Some(v) => Zeroizing::new(trim_value(v)),
            None => last.value.clone(),
        },
        comment: comment.unwrap_or_else(|| last.comment.clone()),
        at: now_iso(),
    };
    rec.versions.push(next);
    if let Some(n) = new_name {
        rec.name = n;
    }
    let out = SecretView {
        rec: &rec,
        version: rec.versions.len(),
        project_id: &project_id,
        env: &scope.env,
    }
    .to_json(None, false, false);
    folder
        .secrets
        .insert((scope.kind.clone(), rec.name.clone()), rec);
    drop(data);
    super::webhooks::secrets_modified(&s, &project_id, &scope.env, &path);
    Ok(secret_response(out))
}

pub(super) async fn delete_secret(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut b = JsonBody::read(body).await?;
    let scope = write_scope(&mut b);
    b.finish()?;
    let path = normalise_path(&scope.path)?;

    let mut data = lock(&s.data);
    let (project_id, folder) =
        write_folder(&mut data, &caller, &scope, &path, "delete", "DeleteSecret")?;
    let rec = folder
        .secrets
        .remove(&(scope.kind.clone(), name.clone()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("Secret with name '{name}' not found"),
                "DeleteSecret",
            )
        })?;
    let out = SecretView {
        rec: &rec,
        version: rec.versions.len(),
        project_id: &project_id,
        env: &scope.env,
    }
    .to_json(None, false, false);
    drop(data);
    super::webhooks::secrets_modified(&s, &project_id, &scope.env, &path);
    Ok(secret_response(out))
}
