//! Secret values, tokens and key material never reach logs, error bodies or `Debug` output.
//! This test binary installs a TRACE-level subscriber for everything (our crate, sqlx, axum,
//! tower-http, hyper) and searches what it captured after a full round trip.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use clap::Parser;
use common::TestApp;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const VALUE: &str = "sk_live_NEVER_LOG_ME_0123456789";
const VALUE2: &str = "SG.second-secret-NEVER-LOG";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_round_trip_logs_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;

    let res = app
        .put_secret("acme", "STRIPE_KEY", &acme, json!({"value": VALUE}))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        app.get_secret("acme", "STRIPE_KEY", &acme).await.body["value"],
        VALUE
    );
    assert_eq!(
        app.get_secret("acme", "STRIPE_KEY", &acme).await.body["value"],
        VALUE
    );
    // Errors of every kind, with secrets in the requests.
    let cases = [
        (json!({"value": VALUE2, "cas": 7}), StatusCode::CONFLICT),
        (
            json!({"value": VALUE2, "extra": VALUE2}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"value": VALUE2.repeat(3000)}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (body, status) in cases {
        let res = app.put_secret("acme", "STRIPE_KEY", &acme, body).await;
        assert_eq!(res.status, status, "{}", res.text);
        assert!(!res.text.contains(VALUE2) && !res.text.contains(VALUE));
    }
    let req = Request::builder()
        .method(Method::PUT)
        .uri("/v1/tenants/acme/secrets/OTHER")
        .header(header::AUTHORIZATION, format!("Bearer {acme}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(
            r#"{{"value": "{VALUE2}", "cas": "{VALUE2}"}}"#
        )))
        .unwrap();
    assert_eq!(app.raw(req).await.status, StatusCode::BAD_REQUEST);
    let res = app.get_secret("acme", "STRIPE_KEY", &globex).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // Rotations, history and rollback log no value and no key material either.
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let res = app
        .admin_post("/v1/admin/tenants/acme/data-key/rotate")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    app.vault.reencrypt_pending().await.unwrap();
    app.put_secret("acme", "STRIPE_KEY", &acme, json!({"value": VALUE2}))
        .await;
    let res = app
        .get("/v1/tenants/acme/secrets/STRIPE_KEY?version=1", &acme)
        .await;
    assert_eq!(res.body["value"], VALUE);
    let res = app
        .call(
            Method::POST,
            "/v1/tenants/acme/secrets/STRIPE_KEY/rollback",
            Some(&acme),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert!(!res.text.contains(VALUE));
    // The admin console's routes: write, masked listing, versions, rollback.
    let admin = app.admin_token.clone();
    let res = app
        .call(
            Method::PUT,
            "/v1/admin/tenants/acme/secrets/STRIPE_KEY",
            Some(&admin),
            Some(json!({"value": VALUE2})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    for path in [
        "/v1/admin/tenants/acme/secrets",
        "/v1/admin/tenants/acme/secrets/STRIPE_KEY/versions",
    ] {
        let res = app.get(path, &admin).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        assert!(!res.text.contains(VALUE) && !res.text.contains(VALUE2));
    }
    let res = app
        .call(
            Method::POST,
            "/v1/admin/tenants/acme/secrets/STRIPE_KEY/rollback",
            Some(&admin),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert!(!res.text.contains(VALUE));
    let report = app.get("/v1/admin/keys", &app.admin_token).await;
    assert!(!report.text.contains(VALUE) && !report.text.contains(VALUE2));
    // A tampered ciphertext is logged as an integrity error, without bytes or value.
    sqlx::query("update company_secrets set secret_value_encrypted = set_byte(secret_value_encrypted, 34, get_byte(secret_value_encrypted, 34) # 1)")
        .execute(&app.pool)
        .await
        .unwrap();
    let fresh = app.another_instance().await;
    assert_eq!(
        fresh.get_secret("acme", "STRIPE_KEY", &acme).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // Token lifecycle: a service token, a rotation, a listing, a self-revocation.
    let res = app
        .admin_call(
            Method::POST,
            "/v1/admin/service-tokens",
            Some(json!({"tenants": ["acme"], "scopes": ["secrets:read"]})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let service = res.body["token"].as_str().unwrap().to_owned();
    let service_id = res.body["token_id"].as_str().unwrap().to_owned();
    let res = app
        .admin_post(&format!("/v1/admin/tokens/{service_id}/rotate"))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let rotated = res.body["token"].as_str().unwrap().to_owned();
    let res = app.get("/v1/admin/tokens", &app.admin_token).await;
    assert!(!res.text.contains(&service) && !res.text.contains(&rotated));
    let res = app
        .call(Method::DELETE, "/v1/tokens/self", Some(&rotated), None)
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    app.flush_audit().await;
    fresh.flush_audit().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.len() > 1000, "the subscriber captured the round trip");
    for token in [&service, &rotated] {
        assert!(
            !logs.contains(&token[token.len() - 20..]),
            "logs contain a token"
        );
    }
    assert!(
        logs.contains("STRIPE_KEY"),
        "key names are logged, so the search is meaningful"
    );
    assert!(logs.contains("integrity"));
    for secret in [
        VALUE,
        VALUE2,
        acme.as_str(),
        globex.as_str(),
        app.admin_token.as_str(),
    ] {
        assert!(!logs.contains(secret), "logs contain a secret");
    }
    // The token's secret half (after the id) must not appear either.
    let tail = &acme[acme.len() - 20..];
    assert!(!logs.contains(tail));
    for version in [1, 2] {
        let file = app.data_dir.path().join(format!("master-key-v{version}"));
        let master = std::fs::read_to_string(file).unwrap();
        assert!(!logs.contains(master.trim()));
    }
    assert!(logs.contains("master key rotated"), "rotation was logged");

    // The same through Infisical: the master key, the machine identity's secret, its access
    // tokens and an imported value stay out of the logs too.
    const REMOTE: &str = "SG.remote-value-NEVER-LOG";
    let infisical = common::TestInfisical::start(&[("/tenants/acme", "SENDGRID", REMOTE)]).await;
    let iapp = TestApp::with_infisical(&infisical, common::service_args(60)).await;
    let acme = iapp.tenant("acme").await;
    let res = iapp.get_secret("acme", "SENDGRID", &acme).await;
    assert_eq!(res.headers["x-secret-source"], "infisical");
    infisical.emulator().expire_all_tokens();
    infisical.faults(json!({"down": true}));
    assert_eq!(
        iapp.get_secret("acme", "OTHER", &acme).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    iapp.flush_audit().await;
    let master = infisical
        .client()
        .get_secret("/tenant-vault", "MASTER_ENCRYPTION_KEY_V1", None)
        .await;
    // (down: the read fails, which is itself logged; read the key from the snapshot instead)
    assert!(master.is_err());
    let snapshot = serde_json::to_string(&infisical.emulator().snapshot()).unwrap();
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("fallback lookup failed"),
        "the outage is logged"
    );
    for secret in [REMOTE, "test-client-secret-0123456789", acme.as_str()] {
        assert!(!logs.contains(secret), "logs contain a secret");
    }
    let snap: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    let key = snap["projects"][0]["secrets"][common::ENVIRONMENT]["/tenant-vault"]
        ["MASTER_ENCRYPTION_KEY_V1"]
        .as_str()
        .unwrap();
    assert!(!logs.contains(key), "logs contain the master key");
    // Infisical access tokens are JWTs: nothing shaped like one is logged.
    assert!(!logs.contains("eyJ"), "logs contain a JWT");
}

#[test]
fn debug_output_is_redacted() {
    use tenant_vault::crypto::{DataKey, MasterKey, SecretValue};
    use tenant_vault::domain::DataKeyId;

    let master_hex = "ab".repeat(32);
    let parsed = tenant_vault::cli::Cli::try_parse_from([
        "tenant-vault",
        "serve",
        "--database-url",
        "postgres://user:db-password-NEVER@localhost/x",
        "--master-key",
        &master_hex,
    ])
    .unwrap();
    let printed = format!("{parsed:?}");
    assert!(!printed.contains("db-password-NEVER"), "{printed}");
    assert!(!printed.contains(&master_hex), "{printed}");
    assert!(printed.contains("[redacted]"));

    let value = SecretValue::new(VALUE.into());
    let key = MasterKey::from_text(1, &master_hex, None).unwrap();
    let dk = DataKey::generate(DataKeyId(uuid::Uuid::new_v4()));
    let all = format!("{value:?} {key:?} {dk:?}");
    assert!(!all.contains(VALUE) && !all.contains(&master_hex), "{all}");
}
