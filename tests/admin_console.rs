//! What the admin console needs from the server, against a real PostgreSQL: the console's
//! files with their security headers, and the admin view of a tenant's secrets (masked values,
//! write, versions, rollback) that never answers a plaintext value.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{service_args, TestApp, TestInfisical};
use serde_json::json;

const VALUE: &str = "sk_live_12345678";
const NEWER: &str = "sk_live_abcdefgh9999";

#[tokio::test]
async fn console_files_carry_a_strict_policy() {
    let app = TestApp::new().await;
    for (path, kind) in [
        ("/admin/", "text/html"),
        ("/admin/app.js", "text/javascript"),
        ("/admin/console.css", "text/css"),
    ] {
        let res = app
            .raw(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        assert!(res.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
        let csp = res.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(res.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let page = app
        .raw(Request::get("/admin/").body(Body::empty()).unwrap())
        .await;
    assert!(page.text.contains(r#"<script type="module" src="app.js">"#));

    let redirect = app
        .raw(Request::get("/admin").body(Body::empty()).unwrap())
        .await;
    assert_eq!(redirect.headers[header::LOCATION], "/admin/");

    // Unknown files, and paths that try to climb out, are 404 in our error shape.
    for path in ["/admin/nope.js", "/admin/..%2FCargo.toml", "/admin/tests"] {
        let res = app
            .raw(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(res.code(), "not_found");
    }
}

#[tokio::test]
async fn admins_see_masked_values_write_and_roll_back() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let admin = app.admin_token.clone();

    // An admin writes (twice), and a short value.
    for (key, value, version) in [
        ("STRIPE_KEY", VALUE, 1),
        ("STRIPE_KEY", NEWER, 2),
        ("PIN", "1234", 1),
    ] {
        let res = app
            .call(
                Method::PUT,
                &format!("/v1/admin/tenants/acme/secrets/{key}"),
                Some(&admin),
                Some(json!({"value": value})),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        assert_eq!(res.body, json!({"key": key, "version": version}));
    }

    let list = app.get("/v1/admin/tenants/acme/secrets", &admin).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let secrets = list.body["secrets"].as_array().unwrap();
    let by_key = |k: &str| secrets.iter().find(|s| s["key"] == k).unwrap().clone();
    assert_eq!(by_key("STRIPE_KEY")["masked"], "sk_l…9999");
    assert_eq!(by_key("STRIPE_KEY")["version"], 2);
    assert!(by_key("STRIPE_KEY")["updated_at"].is_string());
    assert_eq!(by_key("PIN")["masked"], "••••••••");
    assert_eq!(by_key("STRIPE_KEY")["origin"], "api");
    assert_eq!(list.body["data_key"]["version"], 1);
    assert_eq!(list.body["data_key"]["state"], "active");
    assert_eq!(list.body["data_key"]["encryptions"], 3);
    assert!(!list.text.contains(NEWER) && !list.text.contains("1234\""));

    let versions = app
        .get("/v1/admin/tenants/acme/secrets/STRIPE_KEY/versions", &admin)
        .await;
    assert_eq!(versions.status, StatusCode::OK, "{}", versions.text);
    assert_eq!(versions.body["current_version"], 2);
    assert_eq!(versions.body["versions"][0]["masked"], "sk_l…9999");
    assert_eq!(versions.body["versions"][1]["masked"], "sk_l…5678");
    assert_eq!(versions.body["versions"][1]["current"], false);
    assert!(!versions.text.contains(VALUE));

    let rolled = app
        .call(
            Method::POST,
            "/v1/admin/tenants/acme/secrets/STRIPE_KEY/rollback",
            Some(&admin),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.text);
    assert_eq!(rolled.body["version"], 3);
    // The tenant reads what the admin rolled back to.
    let read = app.get_secret("acme", "STRIPE_KEY", &acme).await;
    assert_eq!(read.body["value"], VALUE);
    assert_eq!(read.body["version"], 3);

    // Still no admin read of plaintext.
    let denied = app.get_secret("acme", "STRIPE_KEY", &admin).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    // Audited like the tenant routes, with the admin's token.
    let actions: Vec<String> = app.audit_rows().await.into_iter().map(|r| r.0).collect();
    for a in [
        "secret.write",
        "secret.list",
        "secret.versions",
        "secret.rollback",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn admin_secret_routes_refuse_bad_callers_and_bad_input() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let admin = app.admin_token.clone();

    // A tenant token, even on its own tenant: 403; no token: 401.
    let res = app.get("/v1/admin/tenants/acme/secrets", &acme).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .call(
            Method::PUT,
            "/v1/admin/tenants/acme/secrets/K",
            Some(&acme),
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .call(Method::GET, "/v1/admin/tenants/acme/secrets", None, None)
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // Unknown tenant, bad slug, bad key, bad body, unknown version: clear errors.
    let res = app.get("/v1/admin/tenants/nobody/secrets", &admin).await;
    assert_eq!(
        (res.status, res.code()),
        (StatusCode::NOT_FOUND, "tenant_not_found")
    );
    let res = app.get("/v1/admin/tenants/Bad_Slug/secrets", &admin).await;
    assert_eq!(
        (res.status, res.code()),
        (StatusCode::BAD_REQUEST, "invalid_tenant")
    );
    let res = app
        .call(
            Method::PUT,
            "/v1/admin/tenants/acme/secrets/a%2Fb",
            Some(&admin),
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(
        (res.status, res.code()),
        (StatusCode::BAD_REQUEST, "invalid_secret_key")
    );
    let res = app
        .call(
            Method::PUT,
            "/v1/admin/tenants/acme/secrets/K",
            Some(&admin),
            Some(json!({"value": 5, "extra": "sk_live_secret"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(!res.text.contains("sk_live_secret"));
    let res = app
        .get("/v1/admin/tenants/acme/secrets/MISSING/versions", &admin)
        .await;
    assert_eq!(
        (res.status, res.code()),
        (StatusCode::NOT_FOUND, "secret_not_found")
    );
    app.call(
        Method::PUT,
        "/v1/admin/tenants/acme/secrets/K",
        Some(&admin),
        Some(json!({"value": "first value"})),
    )
    .await;
    let res = app
        .call(
            Method::POST,
            "/v1/admin/tenants/acme/secrets/K/rollback",
            Some(&admin),
            Some(json!({"version": 7})),
        )
        .await;
    assert_eq!(
        (res.status, res.code()),
        (StatusCode::NOT_FOUND, "version_not_found")
    );
    // Nothing was lost or changed by the refusals.
    let read = app.get_secret("acme", "K", &acme).await;
    assert_eq!(
        (read.body["value"].as_str(), read.body["version"].as_i64()),
        (Some("first value"), Some(1))
    );
}

#[tokio::test]
async fn readyz_reports_the_infisical_breaker() {
    let app = TestApp::new().await;
    // The details are for admin tokens (the console signs in with one)...
    let res = app.get("/readyz", &app.admin_token).await;
    assert_eq!(res.status, StatusCode::OK);
    // This app has no Infisical lookup configured.
    assert_eq!(res.body["infisical_breaker"], "not_configured");
    // ...anyone else learns only whether it is ready.
    let res = app
        .raw(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, serde_json::json!({"status": "ready"}));
}

#[tokio::test]
async fn a_value_imported_from_infisical_is_listed_with_its_origin() {
    let infisical =
        TestInfisical::start(&[("/tenants/acme", "SG_KEY", "SG.imported-value-1234")]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let acme = app.tenant("acme").await;
    // The first read imports it.
    let read = app.get_secret("acme", "SG_KEY", &acme).await;
    assert_eq!(read.headers["x-secret-source"], "infisical");

    let list = app
        .get("/v1/admin/tenants/acme/secrets", &app.admin_token)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let secret = &list.body["secrets"][0];
    assert_eq!(secret["key"], "SG_KEY");
    assert_eq!(secret["origin"], "infisical");
    assert_eq!(secret["masked"], "SG.i…1234");
    assert!(!list.text.contains("imported-value"));
}
