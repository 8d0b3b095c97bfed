//! The lookup's Infisical step and the master key in Infisical, against the emulator:
//! write-through, the not-found cache, single-flight, outages and every kind of bad answer
//! getting a clear, bounded outcome with nothing half-written.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{service_args, TestApp, TestInfisical};
use serde_json::json;

async fn secret_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from company_secrets")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_secret_only_in_infisical_is_imported_on_first_read() {
    let infisical =
        TestInfisical::start(&[("/tenants/acme", "SENDGRID_API_KEY", "SG.from-infisical")]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let acme = app.tenant("acme").await;

    let first = app.get_secret("acme", "SENDGRID_API_KEY", &acme).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.headers["x-secret-source"], "infisical");
    assert_eq!(first.body["value"], "SG.from-infisical");
    assert_eq!(first.body["version"], 1);
    let second = app.get_secret("acme", "SENDGRID_API_KEY", &acme).await;
    assert_eq!(second.headers["x-secret-source"], "cache");

    // It is now in company_secrets, encrypted; another replica reads it from the database.
    let dump: String = sqlx::query_scalar("select string_agg(t::text, ' ') from company_secrets t")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!dump.contains("SG.from-infisical"));
    assert_eq!(secret_rows(&app).await, 1);
    let other = app.another_instance().await;
    let third = other.get_secret("acme", "SENDGRID_API_KEY", &acme).await;
    assert_eq!(third.headers["x-secret-source"], "database");
    assert_eq!(third.body["value"], "SG.from-infisical");
    let rows = app.audit_rows().await;
    assert!(rows
        .iter()
        .any(|r| r.0 == "secret.import" && r.1 == "success"));
}

#[tokio::test]
async fn missing_keys_are_404_and_do_not_hammer_infisical() {
    let infisical = TestInfisical::start(&[]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let acme = app.tenant("acme").await;
    let res = app.get_secret("acme", "NOPE", &acme).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.code(), "secret_not_found");
    let before = infisical.requests();
    for _ in 0..20 {
        assert_eq!(
            app.get_secret("acme", "NOPE", &acme).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(infisical.requests(), before, "the 404 is cached briefly");
    // Our own write clears the remembered miss at once.
    app.put_secret("acme", "NOPE", &acme, json!({"value": "now here"}))
        .await;
    assert_eq!(
        app.get_secret("acme", "NOPE", &acme).await.body["value"],
        "now here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_make_one_infisical_call() {
    let infisical = TestInfisical::start(&[("/tenants/acme", "K", "v")]).await;
    let app = Arc::new(TestApp::with_infisical(&infisical, service_args(60)).await);
    let acme = app.tenant("acme").await;
    // Log in first so the count below is only secret reads.
    infisical.faults(json!({"latency_ms": 200}));
    app.get_secret("acme", "WARMUP", &acme).await;
    let before = infisical.requests();
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (app, acme) = (app.clone(), acme.clone());
            tokio::spawn(async move { app.get_secret("acme", "K", &acme).await })
        })
        .collect();
    for r in readers {
        let res = r.await.unwrap();
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.body["value"], "v");
    }
    assert_eq!(infisical.requests() - before, 1);
    assert_eq!(secret_rows(&app).await, 1);
}

#[tokio::test]
async fn with_infisical_down_local_keys_are_served_and_misses_fail_fast() {
    let infisical = TestInfisical::start(&[("/tenants/acme", "REMOTE", "r")]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "IN_DB", &acme, json!({"value": "db-value"}))
        .await;
    app.put_secret("acme", "CACHED", &acme, json!({"value": "cached-value"}))
        .await;
    app.get_secret("acme", "CACHED", &acme).await;

    infisical.faults(json!({"down": true}));
    assert_eq!(
        app.get_secret("acme", "CACHED", &acme).await.headers["x-secret-source"],
        "cache"
    );
    let res = app.get_secret("acme", "IN_DB", &acme).await;
    assert_eq!(
        (res.status, res.body["value"].as_str()),
        (StatusCode::OK, Some("db-value"))
    );
    for _ in 0..8 {
        let started = Instant::now();
        let res = app.get_secret("acme", "REMOTE", &acme).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
        assert_eq!(res.code(), "dependency_unavailable");
        assert!(res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Infisical"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded: {:?}",
            started.elapsed()
        );
    }
    // Once the breaker is open a miss costs next to nothing.
    let started = Instant::now();
    assert_eq!(
        app.get_secret("acme", "REMOTE", &acme).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(secret_rows(&app).await, 2, "nothing half-written");
}

#[tokio::test]
async fn bad_answers_from_infisical_have_bounded_outcomes_and_write_nothing() {
    let big = "x".repeat(70_000);
    let infisical = TestInfisical::start(&[
        ("/tenants/acme", "BIG", big.as_str()),
        ("/tenants/acme", "K", "fine"),
    ])
    .await;
    let app = TestApp::with_infisical(&infisical, service_args(0)).await;
    let acme = app.tenant("acme").await;

    // Larger than our limit: refused, not imported.
    let res = app.get_secret("acme", "BIG", &acme).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text);
    assert_eq!(res.code(), "dependency_error");
    assert!(!res.text.contains("xxxx"));

    // 429 storm, 5xx, malformed JSON, answers slower than the timeout.
    for (fault, status) in [
        (
            json!({"rate_limit": true, "retry_after_secs": 30}),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (json!({"error_rate": 1.0}), StatusCode::SERVICE_UNAVAILABLE),
        (json!({"malformed_json": true}), StatusCode::BAD_GATEWAY),
        (json!({"latency_ms": 3000}), StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let other = app.another_instance().await; // a fresh client: breaker closed
        infisical.faults(fault.clone());
        let started = Instant::now();
        let res = other.get_secret("acme", "K", &acme).await;
        assert_eq!(res.status, status, "{fault}: {}", res.text);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{fault}: {:?}",
            started.elapsed()
        );
        infisical.emulator().set_faults(Default::default());
    }
    assert_eq!(secret_rows(&app).await, 0, "nothing half-written");

    // Afterwards the same key imports normally.
    let res = app.get_secret("acme", "K", &acme).await;
    assert_eq!(
        (res.status, res.body["value"].as_str()),
        (StatusCode::OK, Some("fine"))
    );
}

#[tokio::test]
async fn a_token_expiring_mid_run_is_replaced() {
    let infisical =
        TestInfisical::start(&[("/tenants/acme", "A", "1"), ("/tenants/acme", "B", "2")]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let acme = app.tenant("acme").await;
    assert_eq!(
        app.get_secret("acme", "A", &acme).await.status,
        StatusCode::OK
    );
    infisical.emulator().expire_all_tokens();
    let logins = infisical.emulator().stats().logins;
    let res = app.get_secret("acme", "B", &acme).await;
    assert_eq!(
        (res.status, res.body["value"].as_str()),
        (StatusCode::OK, Some("2"))
    );
    assert_eq!(infisical.emulator().stats().logins, logins + 1);
}

#[tokio::test]
async fn a_refused_connection_is_503() {
    let infisical = TestInfisical::start(&[]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let acme = app.tenant("acme").await;
    infisical.handle.shutdown().await;
    let res = app.get_secret("acme", "ANY", &acme).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
}

#[tokio::test]
async fn no_request_can_climb_out_of_the_tenant_folder() {
    let infisical = TestInfisical::start(&[("/tenants/acme", "K", "v")]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let acme = app.tenant("acme").await;
    let master = infisical
        .client()
        .get_secret("/tenant-vault", "MASTER_ENCRYPTION_KEY_V1", None)
        .await
        .unwrap()
        .unwrap();
    let master = master.value.expose().to_owned();
    let before = infisical.requests();
    for path in [
        "/v1/tenants/acme/secrets/..%2F..%2Ftenant-vault%2FMASTER_ENCRYPTION_KEY_V1",
        "/v1/tenants/acme/secrets/%2e%2e",
        "/v1/tenants/acme/secrets/..",
        "/v1/tenants/..%2Ftenant-vault/secrets/MASTER_ENCRYPTION_KEY_V1",
        "/v1/tenants/%2e%2e/secrets/MASTER_ENCRYPTION_KEY_V1",
        "/v1/tenants/acme/secrets/a%2Fb",
    ] {
        let res = app.get(path, &acme).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(!res.text.contains(&master));
    }
    assert_eq!(infisical.requests(), before, "nothing reached Infisical");
    // A tenant whose slug looks like the master key folder stays under /tenants.
    let tv = app.tenant("tenant-vault").await;
    let res = app
        .get_secret("tenant-vault", "MASTER_ENCRYPTION_KEY_V1", &tv)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(!res.text.contains(&master));
}

#[tokio::test]
async fn the_master_key_lives_in_infisical_and_a_wrong_one_refuses_to_start() {
    let infisical = TestInfisical::start(&[]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let client = infisical.client();
    let v1 = client
        .get_secret("/tenant-vault", "MASTER_ENCRYPTION_KEY_V1", None)
        .await
        .unwrap()
        .expect("init wrote MASTER_ENCRYPTION_KEY_V1");
    assert_eq!(v1.value.len(), 44, "32 bytes, base64");
    let (source, name): (String, Option<String>) =
        sqlx::query_as("select source, infisical_secret_name from master_keys where version = 1")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (source.as_str(), name.as_deref()),
        ("infisical", Some("MASTER_ENCRYPTION_KEY_V1"))
    );
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "K", &acme, json!({"value": "v"}))
        .await;

    // Someone replaces the key in Infisical: start-up refuses, naming the version.
    client
        .update_secret(
            "/tenant-vault",
            "MASTER_ENCRYPTION_KEY_V1",
            &tenant_vault::crypto::kdf::generate_master_key_text(),
        )
        .await
        .unwrap();
    let keys = tenant_vault::config::KeyArgs {
        master_key_source: tenant_vault::config::MasterKeySourceKind::Infisical,
        master_key: None,
        data_dir: app.data_dir.path().to_path_buf(),
    };
    let parts = tenant_vault::app::parts(&keys, &infisical.args).unwrap();
    let err = tenant_vault::app::App::build_with(
        app.pool.clone(),
        parts,
        app.data_dir.path(),
        &service_args(60),
    )
    .await
    .err()
    .expect("wrong master key must refuse");
    let message = format!("{err:#}");
    assert!(
        message.contains("master key version 1") && message.contains("does not match"),
        "{message}"
    );
    assert!(!tenant_vault::app::is_transient(&err));
}

#[tokio::test]
async fn start_up_waits_for_infisical_and_readyz_says_why() {
    let infisical = TestInfisical::start(&[]).await;
    let first = TestApp::with_infisical(&infisical, service_args(60)).await; // initialised
    infisical.faults(json!({"down": true}));
    let keys = tenant_vault::config::KeyArgs {
        master_key_source: tenant_vault::config::MasterKeySourceKind::Infisical,
        master_key: None,
        data_dir: first.data_dir.path().to_path_buf(),
    };
    let state = tenant_vault::api::AppState::starting("loading");
    let router = tenant_vault::api::router_with_state(state.clone(), &Default::default(), 65536);
    let (pool, args, dir) = (
        first.pool.clone(),
        infisical.args.clone(),
        first.data_dir.clone(),
    );
    let builder = {
        let state = state.clone();
        tokio::spawn(async move {
            tenant_vault::app::build_with_retry(&state, || {
                let (pool, keys, args, dir) =
                    (pool.clone(), keys.clone(), args.clone(), dir.clone());
                async move {
                    let parts = tenant_vault::app::parts(&keys, &args)?;
                    tenant_vault::app::App::build_with(pool, parts, dir.path(), &service_args(60))
                        .await
                }
            })
            .await
        })
    };
    // While Infisical is down: not ready, with the reason.
    let mut reason = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        reason = state.starting_reason();
        if reason.contains("waiting") {
            break;
        }
    }
    assert!(
        reason.contains("Infisical") || reason.contains("unavailable"),
        "{reason}"
    );
    use tower::ServiceExt;
    let res = router
        .clone()
        .oneshot(
            axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Infisical returns: the retry loop finishes by itself.
    infisical.faults(json!({"down": false}));
    let app = tokio::time::timeout(Duration::from_secs(60), builder)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    state.set_vault(app.vault.clone());
    let res = router
        .oneshot(
            axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
