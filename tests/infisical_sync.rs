//! Keeping Infisical and tenant-vault in step (issue 11): origins and modes, the signed
//! webhook (sent by the emulator the way Infisical sends it), folder re-reads, tombstones,
//! recreated tenants, the periodic re-check, `sync infisical`, stale serving and interrupted
//! master key rotations.

mod common;

use axum::http::{Method, StatusCode};
use common::{eventually, service_args, TestApp, TestInfisical, ENVIRONMENT};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tenant_vault::domain::TenantSlug;
use tenant_vault::service::RequestContext;

const HOOK_SECRET: &str = "whsec-test-0123456789";

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A `secrets.modified` body as Infisical writes it.
fn hook_body(project: &str, env: &str, path: &str, timestamp: i64) -> String {
    json!({
        "event": "secrets.modified",
        "project": {"workspaceId": project, "projectId": project, "environment": env, "secretPath": path},
        "timestamp": timestamp,
    })
    .to_string()
}

async fn post_hook(app: &TestApp, body: &str, signature: Option<String>) -> common::TestResponse {
    let mut req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/v1/hooks/infisical")
        .header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("x-infisical-signature", sig);
    }
    app.raw(req.body(axum::body::Body::from(body.to_owned())).unwrap())
        .await
}

/// Infisical with `secrets`, and the app with the webhook secret set and no re-check (so
/// only the webhook or an explicit sync can bring changes).
async fn setup(secrets: &[(&str, &str, &str)]) -> (TestInfisical, TestApp) {
    let mut infisical = TestInfisical::start(secrets).await;
    infisical.args.sync.infisical_webhook_secret = Some(HOOK_SECRET.parse().unwrap());
    infisical.args.sync.infisical_recheck_secs = 0;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    (infisical, app)
}

async fn value_of(app: &TestApp, slug: &str, key: &str, token: &str) -> (StatusCode, Value) {
    let res = app.get_secret(slug, key, token).await;
    (res.status, res.body["value"].clone())
}

async fn sync(app: &TestApp, slug: &str) -> tenant_vault::service::sync::SyncReport {
    app.vault
        .sync_tenant(
            &RequestContext::default(),
            &TenantSlug::parse(slug).unwrap(),
        )
        .await
        .unwrap()
}

/// Serves the app on a real port (the emulator's webhooks need one); returns its URL.
async fn serve(app: &TestApp) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    let task = tokio::spawn(async move {
        let never = std::future::pending();
        tenant_vault::server::serve(listener, router, None, Default::default(), never)
            .await
            .unwrap();
    });
    (format!("http://{addr}"), task)
}

/// Creates a webhook in the emulator through its Infisical-shaped API.
async fn create_webhook(infisical: &TestInfisical, url: &str, secret_path: &str) -> Value {
    let http = reqwest::Client::new();
    let base = format!("http://{}", infisical.addr);
    let login: Value = http
        .post(format!("{base}/api/v1/auth/universal-auth/login"))
        .json(&json!({"clientId": "test-client", "clientSecret": "test-client-secret-0123456789"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap().to_owned();
    let res = http
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(&token)
        .json(&json!({
            "type": "general",
            "projectId": infisical.project,
            "environment": ENVIRONMENT,
            "webhookUrl": url,
            "webhookSecretKey": HOOK_SECRET,
            "secretPath": secret_path,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["webhook"]["secretPath"], secret_path);
    assert!(body["webhook"].get("webhookSecretKey").is_none());
    let list: Value = http
        .get(format!("{base}/api/v1/webhooks"))
        .query(&[("projectId", infisical.project.as_str())])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    json!({"token": token, "list": list})
}

#[tokio::test]
async fn a_signed_webhook_brings_an_infisical_change_within_seconds() {
    let (infisical, app) = setup(&[("/tenants/acme", "STRIPE_SECRET_KEY", "sk_v1")]).await;
    let acme = app.tenant("acme").await;
    assert_eq!(
        value_of(&app, "acme", "STRIPE_SECRET_KEY", &acme).await.1,
        "sk_v1"
    );
    let (url, server) = serve(&app).await;
    let created = create_webhook(
        &infisical,
        &format!("{url}/v1/hooks/infisical"),
        "/tenants/**",
    )
    .await;
    assert_eq!(created["list"]["webhooks"].as_array().unwrap().len(), 1);

    infisical
        .client()
        .update_secret("/tenants/acme", "STRIPE_SECRET_KEY", "sk_v2")
        .await
        .unwrap();
    eventually("the webhook brings the new value", || async {
        value_of(&app, "acme", "STRIPE_SECRET_KEY", &acme).await.1 == "sk_v2"
    })
    .await;
    let res = app.get_secret("acme", "STRIPE_SECRET_KEY", &acme).await;
    assert_eq!(res.body["version"], 2, "stored as a new version");
    // A replica that never read it sees the same value (it is in the database).
    let other = app.another_instance().await;
    assert_eq!(
        value_of(&other, "acme", "STRIPE_SECRET_KEY", &acme).await.1,
        "sk_v2"
    );

    let rows = app.audit_rows().await;
    assert!(rows
        .iter()
        .any(|r| r.0 == "infisical.webhook" && r.1 == "queued"));
    assert!(rows.iter().any(|r| r.0 == "secret.sync"
        && r.1 == "updated"
        && r.3.as_deref() == Some("STRIPE_SECRET_KEY")));
    // The emulator recorded that we answered with a 2xx.
    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!("http://{}/api/v1/webhooks", infisical.addr))
        .query(&[("projectId", infisical.project.as_str())])
        .bearer_auth(created["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["webhooks"][0]["lastStatus"], "success");
    server.abort();
}

#[tokio::test]
async fn a_bad_signature_is_401_and_audited() {
    let (infisical, app) = setup(&[]).await;
    let body = hook_body(&infisical.project, ENVIRONMENT, "/tenants/acme", now_ms());
    let ts = serde_json::from_str::<Value>(&body).unwrap()["timestamp"].clone();
    for sig in [
        None,
        Some("garbage".to_owned()),
        Some(format!("t={ts};{}", sign("wrong-secret", body.as_bytes()))),
        Some(format!("t={ts};{}", sign(HOOK_SECRET, b"another body"))),
    ] {
        let res = post_hook(&app, &body, sig.clone()).await;
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "{sig:?}: {}",
            res.text
        );
        assert_eq!(res.code(), "invalid_signature");
        assert!(!res.text.contains(HOOK_SECRET));
    }
    let rows = app.audit_rows().await;
    let denied = rows
        .iter()
        .filter(|r| r.0 == "infisical.webhook" && r.1 == "denied")
        .count();
    assert_eq!(denied, 4);
    // The good one passes.
    let good = format!("t={ts};{}", sign(HOOK_SECRET, body.as_bytes()));
    let res = post_hook(&app, &body, Some(good)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text);
    assert_eq!(res.body["queued"], true);
}

#[tokio::test]
async fn a_replayed_old_webhook_is_401() {
    let (infisical, app) = setup(&[]).await;
    let old = now_ms() - 10 * 60 * 1000;
    let body = hook_body(&infisical.project, ENVIRONMENT, "/tenants/acme", old);
    let res = post_hook(
        &app,
        &body,
        Some(format!("t={old};{}", sign(HOOK_SECRET, body.as_bytes()))),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text);
    assert_eq!(res.code(), "invalid_signature");
    // The same old body under a fresh `t=` (the header is not signed) is refused too.
    let res = post_hook(
        &app,
        &body,
        Some(format!(
            "t={};{}",
            now_ms(),
            sign(HOOK_SECRET, body.as_bytes())
        )),
    )
    .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text);
}

#[tokio::test]
async fn webhooks_for_other_folders_projects_or_environments_are_ignored_and_counted() {
    let (infisical, app) = setup(&[("/tenants/acme", "K", "v1")]).await;
    let acme = app.tenant("acme").await;
    assert_eq!(value_of(&app, "acme", "K", &acme).await.1, "v1");
    infisical
        .client()
        .update_secret("/tenants/acme", "K", "v2")
        .await
        .unwrap();
    let cases = [
        (
            infisical.project.as_str(),
            ENVIRONMENT,
            "/tenant-vault",
            "ignored_folder",
        ),
        (
            infisical.project.as_str(),
            ENVIRONMENT,
            "/tenants/acme/deeper",
            "ignored_folder",
        ),
        (
            infisical.project.as_str(),
            ENVIRONMENT,
            "/tenants/../acme",
            "ignored_folder",
        ),
        (
            infisical.project.as_str(),
            ENVIRONMENT,
            "/",
            "ignored_folder",
        ),
        (
            "another-project",
            ENVIRONMENT,
            "/tenants/acme",
            "ignored_project",
        ),
        (
            infisical.project.as_str(),
            "dev",
            "/tenants/acme",
            "ignored_environment",
        ),
    ];
    for (project, env, path, why) in cases {
        let ts = now_ms();
        let body = hook_body(project, env, path, ts);
        let res = post_hook(
            &app,
            &body,
            Some(format!("t={ts};{}", sign(HOOK_SECRET, body.as_bytes()))),
        )
        .await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{path}: {}", res.text);
        assert_eq!(res.body["queued"], false, "{project} {env} {path}");
        assert_eq!(res.body["ignored"], why);
    }
    let metrics = app.call(Method::GET, "/metrics", None, None).await.text;
    assert!(
        metrics.contains("tenant_vault_infisical_webhooks_total{outcome=\"ignored_folder\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"ignored_project\""));
    // Nothing was re-read: the old value stays (no folder of ours was named).
    let read: Option<i64> = sqlx::query_scalar("select count(*) from infisical_sync_state")
        .fetch_optional(&app.pool)
        .await
        .unwrap();
    assert_eq!(read, Some(0));
    assert_eq!(value_of(&app, "acme", "K", &acme).await.1, "v1");
}

#[tokio::test]
async fn a_delete_in_infisical_removes_the_secret_in_follow_mode_only() {
    let (infisical, app) =
        setup(&[("/tenants/acme", "K", "a"), ("/tenants/globex", "K", "g")]).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let res = app
        .admin_call(
            Method::PUT,
            "/v1/admin/tenants/globex/infisical-mode",
            Some(json!({"mode": "import-once"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["effective_mode"], "import-once");
    let bad = app
        .admin_call(
            Method::PUT,
            "/v1/admin/tenants/globex/infisical-mode",
            Some(json!({"mode": "sometimes"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(value_of(&app, "acme", "K", &acme).await.1, "a");
    assert_eq!(value_of(&app, "globex", "K", &globex).await.1, "g");
    // A secret written through tenant-vault is never touched by a re-read.
    app.put_secret("acme", "OWN", &acme, json!({"value": "mine"}))
        .await;

    let client = infisical.client();
    client.delete_secret("/tenants/acme", "K").await.unwrap();
    client.delete_secret("/tenants/globex", "K").await.unwrap();
    let r = sync(&app, "acme").await;
    assert_eq!((r.deleted, r.changed), (1, 0), "{r:?}");
    assert_eq!(
        value_of(&app, "acme", "K", &acme).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(value_of(&app, "acme", "OWN", &acme).await.1, "mine");
    let r = sync(&app, "globex").await;
    assert_eq!(r.deleted, 0, "{r:?}");
    assert_eq!(value_of(&app, "globex", "K", &globex).await.1, "g");
    let rows = app.audit_rows().await;
    assert!(rows
        .iter()
        .any(|r| r.0 == "secret.sync" && r.1 == "deleted" && r.2.as_deref() == Some("acme")));
    assert!(rows.iter().any(|r| r.0 == "tenant.infisical_mode"));
}

#[tokio::test]
async fn a_tombstone_stops_resurrection_until_infisical_has_a_newer_version() {
    let (infisical, app) = setup(&[
        ("/tenants/acme", "K", "v1"),
        ("/tenants/acme", "MINE", "from-infisical"),
    ])
    .await;
    let acme = app.tenant("acme").await;
    assert_eq!(value_of(&app, "acme", "K", &acme).await.1, "v1");
    let del = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme/secrets/K",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text);
    // Infisical still holds it, but the fallback does not bring it back.
    assert_eq!(
        value_of(&app, "acme", "K", &acme).await.0,
        StatusCode::NOT_FOUND
    );
    let other = app.another_instance().await;
    assert_eq!(
        value_of(&other, "acme", "K", &acme).await.0,
        StatusCode::NOT_FOUND
    );
    sync(&app, "acme").await;
    assert_eq!(
        value_of(&other, "acme", "K", &acme).await.0,
        StatusCode::NOT_FOUND
    );

    // Written here, deleted here: Infisical's copy (never imported) stays out too.
    app.put_secret("acme", "MINE", &acme, json!({"value": "local"}))
        .await;
    app.call(
        Method::DELETE,
        "/v1/tenants/acme/secrets/MINE",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(
        value_of(&other, "acme", "MINE", &acme).await.0,
        StatusCode::NOT_FOUND
    );

    // A newer version in Infisical brings K back (follow mode), and the audit says so.
    infisical
        .client()
        .update_secret("/tenants/acme", "K", "v2")
        .await
        .unwrap();
    let r = sync(&app, "acme").await;
    assert_eq!(r.changed, 1, "{r:?}");
    assert_eq!(value_of(&app, "acme", "K", &acme).await.1, "v2");
    let rows = app.audit_rows().await;
    assert!(rows
        .iter()
        .any(|r| r.0 == "secret.sync" && r.1 == "restored" && r.3.as_deref() == Some("K")));
}

#[tokio::test]
async fn a_recreated_tenant_slug_starts_empty_unless_imported_on_purpose() {
    let (_infisical, app) = setup(&[("/tenants/acme", "OLD_KEY", "old tenant's")]).await;
    let acme = app.tenant("acme").await;
    assert_eq!(
        value_of(&app, "acme", "OLD_KEY", &acme).await.1,
        "old tenant's"
    );
    let del = app
        .admin_call(Method::DELETE, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(del.status, StatusCode::OK);

    let acme2 = app.tenant("acme").await;
    assert_eq!(
        value_of(&app, "acme", "OLD_KEY", &acme2).await.0,
        StatusCode::NOT_FOUND
    );
    let r = sync(&app, "acme").await;
    assert!(r.skipped.is_some(), "{r:?}");
    let list = app.get("/v1/tenants/acme/secrets", &acme2).await;
    assert_eq!(
        list.body["secrets"].as_array().map(Vec::len),
        Some(0),
        "{}",
        list.text
    );

    // On purpose: created with `infisical_import: true`.
    app.admin_call(Method::DELETE, "/v1/admin/tenants/acme", None)
        .await;
    let res = app
        .admin_call(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({"slug": "acme", "infisical_import": true})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    assert_eq!(res.body["infisical_import"], true);
    let acme3 = app.token_for("acme").await;
    assert_eq!(
        value_of(&app, "acme", "OLD_KEY", &acme3).await.1,
        "old tenant's"
    );
}

#[tokio::test]
async fn the_recheck_catches_a_change_without_a_webhook() {
    let mut infisical = TestInfisical::start(&[("/tenants/acme", "K", "v1")]).await;
    infisical.args.sync.infisical_recheck_secs = 1;
    infisical.args.sync.infisical_recheck_per_minute = 600;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let acme = app.tenant("acme").await;
    assert_eq!(value_of(&app, "acme", "K", &acme).await.1, "v1");
    infisical
        .client()
        .update_secret("/tenants/acme", "K", "v2")
        .await
        .unwrap();
    eventually("the re-check brings the new value", || async {
        value_of(&app, "acme", "K", &acme).await.1 == "v2"
    })
    .await;
    let checked: i64 =
        sqlx::query_scalar("select count(*) from infisical_sync_state where last_error is null")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(checked, 1);
}

/// Runs the binary off the runtime, so the in-process emulator keeps answering it.
async fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::run_binary(&args, &env)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_sync_infisical_prints_a_summary() {
    let (infisical, app) = setup(&[
        ("/tenants/acme", "A", "1"),
        ("/tenants/acme", "B", "1"),
        ("/tenants/acme", "C", "1"),
    ])
    .await;
    let acme = app.tenant("acme").await;
    for k in ["A", "B", "C"] {
        assert_eq!(value_of(&app, "acme", k, &acme).await.1, "1");
    }
    let client = infisical.client();
    client
        .update_secret("/tenants/acme", "A", "2")
        .await
        .unwrap();
    client.delete_secret("/tenants/acme", "B").await.unwrap();
    let site = format!("http://{}", infisical.addr);
    let data_dir = app.data_dir.path().to_str().unwrap().to_owned();
    let env = [
        ("DATABASE_URL", app.db_url.as_str()),
        ("INFISICAL_SITE_URL", site.as_str()),
        ("INFISICAL_CLIENT_ID", "test-client"),
        ("INFISICAL_CLIENT_SECRET", "test-client-secret-0123456789"),
        ("INFISICAL_PROJECT_ID", infisical.project.as_str()),
        ("INFISICAL_ENVIRONMENT", ENVIRONMENT),
        ("TENANT_VAULT_DATA_DIR", data_dir.as_str()),
    ];
    let (ok, out, err) = run_cli(&["sync", "infisical", "--tenant", "acme"], &env).await;
    assert!(ok, "{out}\n{err}");
    let header = out.lines().next().unwrap();
    for col in ["tenant", "changed", "deleted", "unchanged", "failed"] {
        assert!(header.contains(col), "{out}");
    }
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("acme "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..5], ["acme", "1", "1", "1", "0"], "{out}");
    assert!(!out.contains("test-client-secret") && !err.contains("test-client-secret"));
    // A running replica hears of it at once (the sync notified every replica).
    eventually("the replica serves the synced value", || async {
        value_of(&app, "acme", "A", &acme).await.1 == "2"
    })
    .await;
    assert_eq!(
        value_of(&app, "acme", "B", &acme).await.0,
        StatusCode::NOT_FOUND
    );

    // A bad slug is a clear error, not a crash.
    let (ok, _, err) = run_cli(&["sync", "infisical", "--tenant", "../x"], &env).await;
    assert!(!ok);
    assert!(err.contains("--tenant"), "{err}");
}

#[tokio::test]
async fn rotations_succeed_however_many_were_interrupted_after_the_source_write() {
    use tenant_vault::keys::rotation::FailPoint;
    let (_infisical, app) = setup(&[]).await;
    let acme = app.tenant("acme").await;
    for i in 0..5 {
        app.put_secret(
            "acme",
            &format!("K{i}"),
            &acme,
            json!({"value": format!("v{i}")}),
        )
        .await;
    }
    // Killed three times between writing MASTER_ENCRYPTION_KEY_V{n} and the commit.
    app.vault
        .set_rotation_fail_point(Some(FailPoint::AfterSourceWrite));
    for _ in 0..3 {
        let res = app.admin_post("/v1/admin/master-key/rotate").await;
        assert_eq!(
            res.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            res.text
        );
    }
    app.vault.set_rotation_fail_point(None);
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["previous_version"], 1);
    // V2..V4 are orphans in Infisical, skipped and never adopted.
    assert_eq!(res.body["version"], 5);
    // Every secret reads, here and on a fresh replica that loads the keys from Infisical.
    let restarted = app.another_instance().await;
    for i in 0..5 {
        for a in [&app, &restarted] {
            let res = a.get_secret("acme", &format!("K{i}"), &acme).await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.text);
            assert_eq!(res.body["value"], format!("v{i}"));
        }
    }
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.body["version"], 6, "{}", res.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_values_are_served_within_the_budget_while_postgres_and_infisical_are_down() {
    let mut infisical = TestInfisical::start(&[]).await;
    infisical.args.sync.infisical_recheck_secs = 0;
    let mut service = service_args(1);
    service.max_stale_secs = 2;
    let app = TestApp::with_infisical(&infisical, service).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.put_secret("acme", "K", &acme, json!({"value": "kept"}))
        .await;
    app.put_secret("globex", "G", &globex, json!({"value": "gone"}))
        .await;
    assert_eq!(value_of(&app, "acme", "K", &acme).await.1, "kept");
    assert_eq!(value_of(&app, "globex", "G", &globex).await.1, "gone");
    // A deleted tenant is never served stale.
    let del = app
        .admin_call(Method::DELETE, "/v1/admin/tenants/globex", None)
        .await;
    assert_eq!(del.status, StatusCode::OK);

    infisical.faults(json!({"down": true}));
    app.runtime_pool.close().await;
    eventually("the value is served stale past its TTL", || async {
        let res = app.get_secret("acme", "K", &acme).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        res.headers["x-secret-source"] == "stale"
    })
    .await;
    let res = app.get_secret("acme", "K", &acme).await;
    if res.status == StatusCode::OK {
        assert_eq!(res.body["value"], "kept");
        let age: u64 = res.headers["age"].to_str().unwrap().parse().unwrap();
        assert!(age <= 3, "{age}");
    }
    let gone = app.get_secret("globex", "G", &globex).await;
    assert_ne!(gone.status, StatusCode::OK, "{}", gone.text);
    // Past the budget: 503, not an ever older value.
    eventually("past the stale budget the answer is 503", || async {
        let res = app.get_secret("acme", "K", &acme).await;
        if res.status == StatusCode::OK {
            assert_eq!(res.headers["x-secret-source"], "stale");
            return false;
        }
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
        true
    })
    .await;
    // A key never loaded has nothing stale to serve.
    assert_eq!(
        app.get_secret("acme", "OTHER", &acme).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn the_emulator_webhook_api_refuses_bad_input_like_infisical() {
    let (infisical, app) = setup(&[]).await;
    let created = create_webhook(&infisical, "http://127.0.0.1:9/hook", "/tenants/**").await;
    let token = created["token"].as_str().unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/webhooks", infisical.addr);
    let post = |body: Value| http.post(&url).bearer_auth(token).json(&body).send();
    let base = json!({"projectId": infisical.project, "environment": ENVIRONMENT,
                      "webhookUrl": "http://127.0.0.1:9/hook", "secretPath": "/tenants/**"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, status) in [
        (with("webhookUrl", json!("not a url")), 422),
        (with("type", json!("carrier-pigeon")), 422),
        (with("environment", json!("nope")), 404),
        (with("projectId", json!("no-such-project")), 404),
        (
            json!({"environment": ENVIRONMENT, "webhookUrl": "http://x/"}),
            422,
        ),
    ] {
        let res = post(body.clone()).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["statusCode"], status, "{err}");
    }
    let res = http.post(&url).json(&base).send().await.unwrap();
    assert_eq!(res.status(), 401, "no token");
    let res = http
        .delete(format!("{url}/{}", uuid::Uuid::new_v4()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Deleting the real one works, and the list is empty after.
    let id = created["list"]["webhooks"][0]["id"].as_str().unwrap();
    let res = http
        .delete(format!("{url}/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let list: Value = http
        .get(&url)
        .query(&[("projectId", infisical.project.as_str())])
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 0);
    // The mode of a tenant that does not exist: 404.
    let res = app
        .admin_call(
            Method::PUT,
            "/v1/admin/tenants/nosuch/infisical-mode",
            Some(json!({"mode": "follow"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text);
    // Without a webhook secret the receiver is off.
    let mut off = TestInfisical::start(&[]).await;
    off.args.sync.infisical_recheck_secs = 0;
    let plain = TestApp::with_infisical(&off, service_args(60)).await;
    let res = post_hook(&plain, "{}", None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.code(), "not_configured");
}

#[tokio::test]
async fn secrets_copied_by_import_infisical_are_followed_too() {
    let (infisical, app) = setup(&[("/tenants/initech", "K", "v1")]).await;
    let client = infisical.client();
    let secrets = client
        .list_secrets("/tenants/initech")
        .await
        .unwrap()
        .into_iter()
        .map(tenant_vault::service::fallback::remote)
        .collect();
    let slug = TenantSlug::parse("initech").unwrap();
    let report = app
        .vault
        .import_tenant(&RequestContext::default(), &slug, secrets, false)
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:?}");
    let origin: String = sqlx::query_scalar("select origin from company_secrets")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(origin, "infisical");
    client
        .update_secret("/tenants/initech", "K", "v2")
        .await
        .unwrap();
    let r = sync(&app, "initech").await;
    assert_eq!(r.changed, 1, "{r:?}");
    let token = app.token_for("initech").await;
    assert_eq!(value_of(&app, "initech", "K", &token).await.1, "v2");
}

#[tokio::test]
async fn import_infisical_marks_equal_values_written_before_as_imported() {
    let (infisical, app) = setup(&[("/tenants/acme", "K", "same")]).await;
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "K", &acme, json!({"value": "same"}))
        .await;
    let secrets = infisical
        .client()
        .list_secrets("/tenants/acme")
        .await
        .unwrap()
        .into_iter()
        .map(tenant_vault::service::fallback::remote)
        .collect();
    let slug = TenantSlug::parse("acme").unwrap();
    let report = app
        .vault
        .import_tenant(&RequestContext::default(), &slug, secrets, false)
        .await
        .unwrap();
    assert_eq!(report.unchanged, 1);
    infisical
        .client()
        .update_secret("/tenants/acme", "K", "newer")
        .await
        .unwrap();
    assert_eq!(sync(&app, "acme").await.changed, 1);
    assert_eq!(value_of(&app, "acme", "K", &acme).await.1, "newer");
}
