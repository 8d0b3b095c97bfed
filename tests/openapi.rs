//! The OpenAPI document (issue 9 item 8): `GET /v1/openapi.json` is served without a token,
//! equals the committed `docs/openapi.json`, and describes every route the router serves.
//! The document needs no vault, so these tests run on a router that is still starting (no
//! database).

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tenant_vault::api::{router_with_state, AppState, HttpSettings};
use tower::ServiceExt;

fn app() -> tenant_vault::api::App {
    router_with_state(
        AppState::starting("tests"),
        &HttpSettings::default(),
        64 * 1024,
    )
}

async fn send(method: Method, path: &str) -> (StatusCode, Option<String>, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let res = app().oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

async fn served() -> Value {
    let (status, content_type, text) = send(Method::GET, "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    serde_json::from_str(&text).unwrap()
}

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

#[tokio::test]
async fn served_document_equals_the_committed_one() {
    let (_, _, text) = send(Method::GET, "/v1/openapi.json").await;
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{text}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed.trim_end() == text,
        "docs/openapi.json differs from the document the server serves (GET /v1/openapi.json). \
         If the API change is intended, regenerate it with \
         `UPDATE_OPENAPI=1 cargo test --test openapi` and commit docs/openapi.json."
    );
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_bearer_auth_and_shared_errors() {
    let doc = served().await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    // The 429 carries its headers, and operations refer to it rather than repeating it.
    let limited = &doc["components"]["responses"]["RateLimited"];
    for h in ["Retry-After", "RateLimit", "RateLimit-Policy"] {
        assert!(limited["headers"][h].is_object(), "429 lacks {h}");
    }
    let get_secret = &doc["paths"]["/v1/tenants/{tenant}/secrets/{key}"]["get"];
    assert_eq!(
        get_secret["responses"]["429"]["$ref"],
        "#/components/responses/RateLimited"
    );
    for status in ["200", "400", "401", "403", "404", "503"] {
        assert!(
            get_secret["responses"][status].is_object(),
            "secret read lacks {status}"
        );
    }
    let put_secret = &doc["paths"]["/v1/tenants/{tenant}/secrets/{key}"]["put"];
    for status in ["409", "413", "415"] {
        assert!(
            put_secret["responses"][status].is_object(),
            "secret write lacks {status}"
        );
    }
    // Public routes need no token.
    for path in ["/healthz", "/v1/openapi.json", "/v1/hooks/infisical"] {
        let op = doc["paths"][path]
            .as_object()
            .and_then(|item| item.values().next())
            .unwrap();
        assert_eq!(op["security"], serde_json::json!([{}]), "{path}");
    }
}

/// A path template with plausible values in its parameters.
fn concrete(template: &str) -> String {
    template
        .replace("{tenant}", "acme")
        .replace("{key}", "API_KEY")
        .replace("{id}", "00000000-0000-4000-8000-000000000000")
}

/// Every documented operation is routed (not the fallback's 404, not a 405): the document
/// describes nothing the server does not serve.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let doc = served().await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25, "only {} paths", paths.len());
    let mut operations = 0;
    for (template, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            if template == "/v1/events" {
                continue; // a stream: routed (see below), but it never ends
            }
            let (status, _, text) = send(method.clone(), &concrete(template)).await;
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {template} is not routed"
            );
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(
                !(status == StatusCode::NOT_FOUND && body["error"]["message"] == "no such route"),
                "{method} {template} is not routed"
            );
            operations += 1;
        }
    }
    assert!(operations >= 30, "only {operations} operations");
    // The stream refuses a request without a token before it opens.
    let (status, _, _) = send(Method::GET, "/v1/events").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Every route the router serves is documented. The routers register handlers only through
/// `utoipa_axum::routes!` (which documents them); axum's plain `.route(` appears only for the
/// admin console's static files. The fallback answers paths outside the document.
#[tokio::test]
async fn every_routed_path_is_documented() {
    let doc = served().await;
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let api = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut plain = Vec::new();
    for entry in std::fs::read_dir(&api).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The `path = "..."` of every `#[utoipa::path]` is in the document.
        for literal in text.split("path = \"").skip(1) {
            let route = literal.split('"').next().unwrap();
            assert!(
                documented.contains(route),
                "{name}: {route} has a #[utoipa::path] but is not in the document"
            );
        }
        // `.route(` with arguments (not a method named `route()`).
        let registers = text
            .match_indices(".route(")
            .any(|(at, m)| !text[at + m.len()..].starts_with(')'));
        if name != "console.rs" && registers {
            plain.push(name);
        }
    }
    assert!(
        plain.is_empty(),
        "{plain:?} register routes with axum's `.route(`, which leaves them out of the \
         document: use `.routes(routes!(handler))` and a #[utoipa::path]"
    );
    // What the console serves is the console's, and anything else is the fallback.
    for path in ["/v1/nothing-here", "/v1/tenants", "/v1/admin"] {
        let (status, _, text) = send(Method::GET, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {text}");
        assert!(!documented.contains(path));
    }
}
