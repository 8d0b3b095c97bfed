//! The cached read's lane (`api::lane`) answers every request as the router does: the same
//! status, body and headers, and the same audit row.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::{TestApp, TestResponse};
use serde_json::json;
use tower::ServiceExt;

async fn send(
    app: &tenant_vault::api::App,
    path: &str,
    token: Option<&str>,
    id: &str,
) -> TestResponse {
    let mut req = Request::get(path).header("x-request-id", id);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    TestResponse::read(res).await
}

/// request id, action, outcome, tenant, secret key
type AuditRow = (String, String, String, Option<String>, Option<String>);

#[tokio::test]
async fn the_lane_answers_every_read_as_the_router_does() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    app.tenant("globex").await;
    let res = app
        .put_secret(
            "acme",
            "stripe_key",
            &acme,
            json!({"value": "sk_live_lane \"q\""}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let lane = app.router.clone();
    let routed = app.router.clone().without_lane();
    let bogus = format!("{}x", &acme[..acme.len() - 1]);
    let cases: Vec<(&str, Option<&str>, StatusCode)> = vec![
        // The lane's own shape: a read (twice: from the database, then the cache), a key
        // that is not there, another tenant's secret, no token, a token nobody issued.
        (
            "/v1/tenants/acme/secrets/stripe_key",
            Some(&acme),
            StatusCode::OK,
        ),
        (
            "/v1/tenants/acme/secrets/stripe_key",
            Some(&acme),
            StatusCode::OK,
        ),
        (
            "/v1/tenants/acme/secrets/nothing_here",
            Some(&acme),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/tenants/globex/secrets/stripe_key",
            Some(&acme),
            StatusCode::FORBIDDEN,
        ),
        (
            "/v1/tenants/acme/secrets/stripe_key",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/v1/tenants/acme/secrets/stripe_key",
            Some(&bogus),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/v1/tenants/nobody/secrets/stripe_key",
            Some(&acme),
            StatusCode::FORBIDDEN,
        ),
        // Shapes the lane leaves to the router.
        (
            "/v1/tenants/ACME!/secrets/stripe_key",
            Some(&acme),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/tenants/acme/secrets/..",
            Some(&acme),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/tenants/acme/secrets/stripe%5Fkey",
            Some(&acme),
            StatusCode::OK,
        ),
        (
            "/v1/tenants/acme/secrets/stripe_key?version=1",
            Some(&acme),
            StatusCode::OK,
        ),
        (
            "/v1/tenants/acme/secrets/stripe_key?v=1",
            Some(&acme),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/tenants/acme/secrets/stripe_key/",
            Some(&acme),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/tenants/acme/secrets/",
            Some(&acme),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/tenants//secrets/stripe_key",
            Some(&acme),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (n, (path, token, status)) in cases.iter().enumerate() {
        let by_lane = send(&lane, path, *token, &format!("lane-{n}")).await;
        let by_router = send(&routed, path, *token, &format!("router-{n}")).await;
        assert_eq!(by_lane.status, *status, "{path}: {}", by_lane.text);
        assert_eq!(by_router.status, *status, "{path}: {}", by_router.text);
        assert_eq!(by_lane.text, by_router.text, "{path}");
        assert!(!by_lane.text.contains("sk_live") || *status == StatusCode::OK);
        // The first read fills the cache for the second: the lane's comes from the
        // database, the router's from the cache. Every other read is from the cache.
        let source = |res: &TestResponse| res.headers.get("x-secret-source").cloned();
        if n == 0 {
            assert_eq!(source(&by_lane).unwrap(), "database");
            assert_eq!(source(&by_router).unwrap(), "cache");
        } else {
            assert_eq!(source(&by_lane), source(&by_router), "{path}");
        }
        // The same headers, the request id aside (each its own, sent back).
        let headers = |res: &TestResponse| {
            let mut all: Vec<(String, String)> = res
                .headers
                .iter()
                .filter(|(name, _)| *name != "x-request-id" && *name != "x-secret-source")
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
                .collect();
            all.sort();
            all
        };
        assert_eq!(headers(&by_lane), headers(&by_router), "{path}");
        assert_eq!(
            by_lane.headers["x-request-id"],
            format!("lane-{n}").as_str()
        );
        assert_eq!(
            by_router.headers["x-request-id"],
            format!("router-{n}").as_str()
        );
    }
    // The same audit rows, each under its own request id.
    app.flush_audit().await;
    let rows: Vec<AuditRow> = sqlx::query_as(
        "select request_id, action, outcome, tenant_slug, secret_key from audit_events \
         where request_id like 'lane-%' or request_id like 'router-%' order by request_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let of = |prefix: &str| {
        let mut rows: Vec<_> = rows
            .iter()
            .filter_map(|(id, action, outcome, tenant, key)| {
                let n = id.strip_prefix(prefix)?;
                Some((
                    n.to_owned(),
                    action.clone(),
                    outcome.clone(),
                    tenant.clone(),
                    key.clone(),
                ))
            })
            .collect();
        rows.sort();
        rows
    };
    let (by_lane, by_router) = (of("lane-"), of("router-"));
    assert!(by_lane.len() >= 5, "{rows:?}");
    assert_eq!(by_lane, by_router);
}
