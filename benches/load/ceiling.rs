//! `http-ceiling`: the least a server with tenant-vault's HTTP shape can do. Same path shape,
//! a bearer token checked against a static map (token -> tenant), the same JSON body and
//! headers, answered from a static map. No cache layers, no audit, no crypto, no middleware.
//! Runs as a child process (this bench binary with `--serve-http-ceiling FILE`) on tokio's
//! default multi-thread runtime, as tenant-vault does.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What the parent writes for the child: tokens and values of every tenant.
#[derive(Serialize, Deserialize, Default)]
pub struct CeilingMap {
    /// token -> tenant slug
    pub tokens: HashMap<String, String>,
    /// tenant slug -> key -> value
    pub secrets: HashMap<String, HashMap<String, String>>,
}

struct Ceiling {
    map: CeilingMap,
    updated_at: String,
}

async fn get_secret(
    State(state): State<Arc<Ceiling>>,
    UrlPath((tenant, key)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "unauthenticated", "message": "no token"}})),
        )
            .into_response();
    };
    match state.map.tokens.get(token) {
        Some(t) if *t == tenant => {}
        Some(_) => {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({"error": {"code": "forbidden", "message": "wrong tenant"}})),
            )
                .into_response()
        }
        None => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"code": "unauthenticated", "message": "bad token"}})),
            )
                .into_response()
        }
    }
    let Some(value) = state.map.secrets.get(&tenant).and_then(|s| s.get(&key)) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "not_found", "message": "no such secret"}})),
        )
            .into_response();
    };
    let mut response = Json(json!({
        "key": key,
        "value": value,
        "version": 1,
        "updated_at": state.updated_at,
    }))
    .into_response();
    response
        .headers_mut()
        .insert("x-secret-source", HeaderValue::from_static("cache"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Child-process entry point: serve until stdin closes or SIGTERM.
pub fn serve(map_file: &Path) -> Result<(), String> {
    let text = std::fs::read(map_file).map_err(|e| format!("{}: {e}", map_file.display()))?;
    let map: CeilingMap = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let state = Arc::new(Ceiling {
        map,
        updated_at: chrono::Utc::now().to_rfc3339(),
    });
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/v1/tenants/{tenant}/secrets/{key}", get(get_secret))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("LISTENING {addr}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let shutdown = async {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| e.to_string())
    })
}
