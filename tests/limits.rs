//! Rate limits, quotas and the cache's byte bound (issue 9 items 4 and 7): a flood of made-up
//! tokens is refused from memory, per-token and per-tenant buckets answer 429 with the
//! `RateLimit` headers, per-tenant overrides through the admin API, storage quotas, and a
//! cache that stays within its byte bound.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{fresh_database, service_args, TestApp};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use tenant_vault::api::{self, HttpSettings};
use tenant_vault::app::App;
use tenant_vault::config::LimitArgs;
use tenant_vault::keys::DevFileSource;
use tenant_vault::service::{RequestContext, Vault};

fn with_limits(limits: LimitArgs) -> tenant_vault::config::ServiceArgs {
    let mut service = service_args(60);
    service.limits = limits;
    service
}

/// Serves `vault` with the real accept loop on a loopback port (so handlers see the client
/// address); stops when the test's runtime ends.
async fn serve(vault: Arc<Vault>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api::router(vault, &HttpSettings::default());
    tokio::spawn(tenant_vault::server::serve(
        listener,
        router,
        None,
        Default::default(),
        std::future::pending(),
    ));
    addr
}

/// A well-formed token nobody issued.
fn random_token() -> String {
    use base64::Engine as _;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let secret: [u8; 32] = rand::random();
    format!(
        "tvt_{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    )
}

#[tokio::test]
async fn a_flood_of_random_tokens_gets_429s_and_stays_out_of_the_pool() {
    // A pool that counts every connection it hands out.
    let (_, url) = fresh_database().await;
    let acquired = Arc::new(AtomicU64::new(0));
    let (a, b) = (acquired.clone(), acquired.clone());
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .after_connect(move |_, _| {
            let a = a.clone();
            Box::pin(async move {
                a.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        })
        .before_acquire(move |_, _| {
            let b = b.clone();
            Box::pin(async move {
                b.fetch_add(1, Ordering::SeqCst);
                Ok(true)
            })
        })
        .connect(&url)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = Arc::new(DevFileSource::new(dir.path().to_path_buf()));
    let limits = LimitArgs {
        rate_limit_auth_failures_per_min: 30,
        rate_limit_auth_failures_burst: 20,
        ..LimitArgs::default()
    };
    let app = App::build(pool, source, dir.path(), &with_limits(limits))
        .await
        .unwrap();
    let vault = app.vault.clone();
    let acme = tenant_vault::domain::TenantSlug::parse("acme").unwrap();
    vault
        .create_tenant(&RequestContext::default(), &acme, "Acme")
        .await
        .unwrap();
    let addr = serve(vault.clone()).await;
    let client = reqwest::Client::new();

    let before = acquired.load(Ordering::SeqCst);
    let (mut unauthenticated, mut limited) = (0, 0);
    for _ in 0..1000 {
        let res = client
            .get(format!("http://{addr}/v1/tenants/acme/secrets/K"))
            .bearer_auth(random_token())
            .send()
            .await
            .unwrap();
        match res.status() {
            StatusCode::UNAUTHORIZED => unauthenticated += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                let retry: u64 = res.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
                let body: serde_json::Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited");
            }
            other => panic!("unexpected {other}"),
        }
    }
    let queries = acquired.load(Ordering::SeqCst) - before;
    // The burst (20) and what refills while the flood runs reach the database; the rest are
    // refused from memory. Background work (the change listener, the re-encryption worker)
    // may take a few connections meanwhile.
    assert!(
        unauthenticated <= 40,
        "{unauthenticated} reached the token check"
    );
    assert!(limited >= 960, "only {limited} of 1000 were refused");
    assert!(
        queries <= 80,
        "{queries} pool acquisitions for 1000 random tokens"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after_and_ratelimit_headers() {
    let limits = LimitArgs {
        rate_limit_token_rps: 1,
        rate_limit_token_burst: 3,
        ..LimitArgs::without_rate_limits()
    };
    let app = TestApp::with_service(with_limits(limits)).await;
    let token = app.tenant("acme").await;
    let other = app.token_for("acme").await;
    for _ in 0..3 {
        let res = app.get("/v1/tenants/acme/secrets", &token).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        assert_eq!(res.headers["ratelimit-policy"], "\"token\";q=3;w=3");
        assert!(res.headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"token\";r="));
    }
    let res = app.get("/v1/tenants/acme/secrets", &token).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.text);
    assert_eq!(res.code(), "rate_limited");
    let retry: u64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    assert_eq!(res.headers["ratelimit-policy"], "\"token\";q=3;w=3");
    assert_eq!(
        res.headers["ratelimit"].to_str().unwrap(),
        format!("\"token\";r=0;t={retry}")
    );
    // Probes are not limited, and a stray token there is no 401.
    let res = app.get("/healthz", &random_token()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    // Another token of the same tenant has a bucket of its own.
    let res = app.get("/v1/tenants/acme/secrets", &other).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
}

#[tokio::test]
async fn per_tenant_limits_are_set_through_the_admin_api() {
    let limits = LimitArgs {
        rate_limit_tenant_rps: 1000,
        rate_limit_tenant_burst: 1000,
        ..LimitArgs::without_rate_limits()
    };
    let app = TestApp::with_service(with_limits(limits)).await;
    let a1 = app.tenant("acme").await;
    let a2 = app.token_for("acme").await;
    let globex = app.tenant("globex").await;
    let path = "/v1/admin/tenants/acme/limits";
    let admin = Some(app.admin_token.as_str());

    let res = app.call(Method::GET, path, admin, None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["effective"]["tenant"]["rps"], 1000);
    assert_eq!(res.body["overrides"]["tenant_rps"], serde_json::Value::Null);

    let res = app
        .call(
            Method::PUT,
            path,
            admin,
            Some(json!({"tenant_rps": 1, "tenant_burst": 2})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(
        res.body["effective"]["tenant"],
        json!({"rps": 1, "burst": 2})
    );
    let res = app.call(Method::GET, path, admin, None).await;
    assert_eq!(res.body["overrides"]["tenant_burst"], 2);

    // Two tokens share the tenant's bucket of 2.
    assert_eq!(
        app.get("/v1/tenants/acme/secrets", &a1).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/v1/tenants/acme/secrets", &a2).await.status,
        StatusCode::OK
    );
    let res = app.get("/v1/tenants/acme/secrets", &a1).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.text);
    assert!(res.headers["ratelimit"]
        .to_str()
        .unwrap()
        .contains("\"tenant\";r=0"));
    assert!(res.headers.contains_key("retry-after"));
    // Other tenants keep the settings' limits.
    let res = app.get("/v1/tenants/globex/secrets", &globex).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);

    // Bad input is refused and changes nothing.
    for bad in [
        json!({"tenant_burst": 0}),
        json!({"token_rps": 99_999_999_999u64}),
        json!({"tenant_rps": -1}),
        json!({"max_bytes": 1e300}),
        json!({"rps": 5}),
    ] {
        let res = app.call(Method::PUT, path, admin, Some(bad.clone())).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.text);
    }
    let res = app.call(Method::GET, path, admin, None).await;
    assert_eq!(res.body["overrides"]["tenant_burst"], 2);
    // Only admins; only existing tenants.
    let res = app
        .call(Method::PUT, path, Some(&globex), Some(json!({})))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .call(
            Method::PUT,
            "/v1/admin/tenants/nobody/limits",
            admin,
            Some(json!({})),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tenant_over_its_quota_is_refused() {
    let app = TestApp::new().await;
    let token = app.tenant("acme").await;
    let admin = Some(app.admin_token.as_str());
    let path = "/v1/admin/tenants/acme/limits";
    let res = app
        .call(Method::PUT, path, admin, Some(json!({"max_secrets": 2})))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    for key in ["A", "B"] {
        let res = app
            .put_secret("acme", key, &token, json!({"value": "v"}))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    }
    let res = app
        .put_secret("acme", "C", &token, json!({"value": "v"}))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text);
    assert_eq!(res.code(), "quota_exceeded");
    assert!(res.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_secrets"));
    assert_eq!(
        app.get_secret("acme", "C", &token).await.status,
        StatusCode::NOT_FOUND
    );
    // Overwriting an existing secret adds none.
    let res = app
        .put_secret("acme", "A", &token, json!({"value": "v2"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);

    // Bytes: a value that would pass the total is refused, the stored one is kept.
    let res = app
        .call(Method::PUT, path, admin, Some(json!({"max_bytes": 1000})))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let res = app
        .put_secret("acme", "A", &token, json!({"value": "x".repeat(2000)}))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text);
    assert_eq!(res.code(), "quota_exceeded");
    assert_eq!(
        app.get_secret("acme", "A", &token).await.body["value"],
        "v2"
    );
}

#[tokio::test]
async fn the_cache_stays_within_its_byte_bound() {
    let bound: u64 = 1024 * 1024;
    let limits = LimitArgs {
        cache_max_bytes: bound,
        quota_max_bytes: 0,
        ..LimitArgs::without_rate_limits()
    };
    let app = TestApp::with_service(with_limits(limits)).await;
    let token = app.tenant("acme").await;
    let value = "v".repeat(64 * 1024);
    for i in 0..64 {
        let key = format!("BIG_{i}");
        let res = app
            .put_secret("acme", &key, &token, json!({"value": value}))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        let res = app.get_secret("acme", &key, &token).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.body["value"].as_str().unwrap().len(), value.len());
    }
    app.vault.settle_cache().await;
    let (entries, bytes) = (app.vault.cache_entries(), app.vault.cache_bytes());
    assert!(entries > 0, "the cache holds something");
    assert!(bytes <= bound, "{bytes} bytes weighed, bound {bound}");
    // 64 KiB values: at most 16 of them fit in 1 MiB.
    assert!(
        entries * 64 * 1024 <= bound,
        "{entries} values of 64 KiB cached under a 1 MiB bound"
    );
}
