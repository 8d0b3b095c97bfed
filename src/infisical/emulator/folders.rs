//! `/api/v1/folders`: create and list folders.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::auth::authenticate;
use super::body::{issue, JsonBody};
use super::error::{ApiError, ApiResult};
use super::secrets::{normalise_path, resolve_project};
use super::state::{lock, FolderRec, Shared};

pub(super) fn folder_json(f: &FolderRec, env_id: &str) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "version": 1,
        "createdAt": f.created_at,
        "updatedAt": f.created_at,
        "envId": env_id,
        "parentId": f.parent_id,
        "isReserved": false,
    })
}

pub(super) async fn create_folder(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut b = JsonBody::read(body).await?;
    let project_id = b.string("workspaceId", true);
    let env_slug = b.string("environment", true).unwrap_or_default();
    let name = b.string("name", true).unwrap_or_default();
    let parent = b
        .string("path", false)
        .or_else(|| b.string("directory", false))
        .unwrap_or_else(|| "/".into());
    b.finish()?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(ApiError::bad_request(
            "Invalid folder name. Only alphanumeric characters, dashes, and underscores are allowed.",
        ));
    }
    let parent = normalise_path(&parent)?;
    if !parent.starts_with('/') || parent.contains("//") {
        return Err(ApiError::folder_not_found(
            &parent,
            &env_slug,
            "CreateFolder",
        ));
    }

    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(&mut data, project_id.as_deref(), None)?;
    caller.check(&project_id, "create", "secret-folders")?;
    let env = project.envs.get_mut(&env_slug).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Environment with slug '{env_slug}' in project with ID '{project_id}' not found"
            ),
            "NotFound",
        )
    })?;
    // Oct-2024: an existing folder answers 200 with itself; missing parents are created.
    let path = env.ensure_folder(&parent, &name);
    let out = folder_json(&env.folders[&path], &env.id);
    Ok(Json(json!({ "folder": out })).into_response())
}

pub(super) async fn list_folders(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let (Some(project_id), Some(env_slug)) = (q.get("workspaceId"), q.get("environment")) else {
        return Err(ApiError::validation(vec![issue(
            if q.contains_key("workspaceId") {
                "environment"
            } else {
                "workspaceId"
            },
            "string",
            "undefined",
            "Required",
        )]));
    };
    let path = normalise_path(
        q.get("path")
            .or_else(|| q.get("directory"))
            .map_or("/", String::as_str),
    )?;
    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(&mut data, Some(project_id), None)?;
    caller.check(&project_id, "read", "secret-folders")?;
    let Some(env) = project.envs.get(env_slug) else {
        return Ok(Json(json!({"folders": []})).into_response());
    };
    let Some(parent) = env.folders.get(&path) else {
        return Ok(Json(json!({"folders": []})).into_response());
    };
    let children: Vec<Value> = env
        .folders
        .values()
        .filter(|f| f.parent_id.as_deref() == Some(parent.id.as_str()))
        .map(|f| folder_json(f, &env.id))
        .collect();
    Ok(Json(json!({ "folders": children })).into_response())
}
