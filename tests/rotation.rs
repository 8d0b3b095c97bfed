//! Master key rotation: re-wrap without re-encrypting, one at a time, crash safety at every
//! step, replicas picking the new version up, and the key report.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{eventually, service_args, TestApp};
use serde_json::json;
use tenant_vault::keys::rotation::FailPoint;
use tenant_vault::keys::EnvSource;
use tenant_vault::store::master_keys::MASTER_ROTATION_LOCK;
use zeroize::Zeroizing;

/// Creates tenants with `per_tenant` secrets each; returns (slug, token, key, value).
async fn seed(
    app: &TestApp,
    tenants: usize,
    per_tenant: usize,
) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for t in 0..tenants {
        let slug = format!("tenant-{t}");
        let token = app.tenant(&slug).await;
        for k in 0..per_tenant {
            let key = format!("KEY_{k}");
            let value = format!("value-{t}-{k}");
            let res = app
                .put_secret(&slug, &key, &token, json!({ "value": value }))
                .await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.text);
            out.push((slug.clone(), token.clone(), key, value));
        }
    }
    out
}

async fn assert_all_readable(app: &TestApp, secrets: &[(String, String, String, String)]) {
    for (slug, token, key, value) in secrets {
        let res = app.get_secret(slug, key, token).await;
        assert_eq!(res.status, StatusCode::OK, "{slug}/{key}: {}", res.text);
        assert_eq!(res.body["value"], value.as_str(), "{slug}/{key}");
    }
}

async fn ciphertexts(app: &TestApp) -> Vec<(uuid::Uuid, Vec<u8>)> {
    sqlx::query_as("select id, secret_value_encrypted from company_secrets order by id")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn master_states(app: &TestApp) -> Vec<(i32, String)> {
    sqlx::query_as("select version, state from master_keys order by version")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn keys_by_master(app: &TestApp) -> Vec<(i32, i64)> {
    sqlx::query_as(
        "select master_key_version, count(*) from data_keys where wrapped_key is not null
         group by 1 order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn master_rotation_rewraps_data_keys_and_reencrypts_no_secret() {
    let app = TestApp::new().await;
    let secrets = seed(&app, 3, 2).await;
    let before = ciphertexts(&app).await;

    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["previous_version"], 1);
    assert_eq!(res.body["version"], 2);
    assert_eq!(res.body["rewrapped_data_keys"], 3);
    assert!(res.body["elapsed_ms"].is_u64());

    // Not one secret was re-encrypted; every data key is now wrapped under version 2.
    assert_eq!(ciphertexts(&app).await, before);
    assert_eq!(keys_by_master(&app).await, [(2, 3)]);
    assert_eq!(
        master_states(&app).await,
        [(1, "retired".to_owned()), (2, "active".to_owned())]
    );
    assert_eq!(app.vault.masters().active_version(), 2);
    assert_all_readable(&app, &secrets).await;

    // A restart (fresh caches, keys loaded from the source) reads everything too.
    let restarted = app.another_instance().await;
    assert_all_readable(&restarted, &secrets).await;

    // Twice the secrets per tenant: the re-wrap count stays the number of data keys.
    let mut more = Vec::new();
    for (slug, token, key, _) in &secrets {
        let key = format!("{key}_MORE");
        let value = format!("more-{slug}-{key}");
        restarted
            .put_secret(slug, &key, token, json!({ "value": value }))
            .await;
        more.push((slug.clone(), token.clone(), key, value));
    }
    let res = restarted.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["previous_version"], 2);
    assert_eq!(res.body["version"], 3);
    assert_eq!(res.body["rewrapped_data_keys"], 3);
    assert_all_readable(&restarted, &secrets).await;
    assert_all_readable(&restarted, &more).await;
    // New data keys are wrapped under the new version.
    restarted.tenant("late").await;
    assert_eq!(keys_by_master(&restarted).await, [(3, 4)]);

    let actions: Vec<String> = app
        .audit_rows()
        .await
        .into_iter()
        .map(|(action, outcome, _, _)| format!("{action}:{outcome}"))
        .collect();
    assert!(actions.contains(&"master_key.rotate:success".to_owned()));
}

#[tokio::test]
async fn one_rotation_at_a_time_and_admins_only() {
    let app = TestApp::new().await;
    let token = app.tenant("acme").await;

    let res = app
        .call(
            axum::http::Method::POST,
            "/v1/admin/master-key/rotate",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .call(
            axum::http::Method::POST,
            "/v1/admin/master-key/rotate",
            None,
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);

    // Another replica holds the rotation lock.
    let mut other = app.pool.acquire().await.unwrap().detach();
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(MASTER_ROTATION_LOCK)
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert!(locked);
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.text);
    assert_eq!(res.code(), "rotation_in_progress");
    assert_eq!(master_states(&app).await.len(), 1, "nothing changed");

    let _: bool = sqlx::query_scalar("select pg_advisory_unlock($1)")
        .bind(MASTER_ROTATION_LOCK)
        .fetch_one(&mut other)
        .await
        .unwrap();
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["version"], 2);

    // Concurrent callers: exactly one rotation per success, never a failure but 409.
    let (a, b) = tokio::join!(
        app.admin_post("/v1/admin/master-key/rotate"),
        app.admin_post("/v1/admin/master-key/rotate")
    );
    let mut versions = Vec::new();
    for res in [&a, &b] {
        match res.status {
            StatusCode::OK => versions.push(res.body["version"].as_i64().unwrap()),
            StatusCode::CONFLICT => assert_eq!(res.code(), "rotation_in_progress"),
            other => panic!("unexpected {other}: {}", res.text),
        }
    }
    assert!(!versions.is_empty());
    let active: i32 = sqlx::query_scalar("select version from master_keys where state = 'active'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(active as i64, *versions.iter().max().unwrap());
    assert_eq!(active as usize, 2 + versions.len());
}

#[tokio::test]
async fn a_fixed_env_key_cannot_rotate() {
    let key = tenant_vault::crypto::kdf::generate_master_key_text();
    let source = Arc::new(EnvSource::new(Zeroizing::new(key.to_string())));
    let app = TestApp::with_source(service_args(60), source).await;
    let token = app.tenant("acme").await;
    app.put_secret("acme", "K", &token, json!({"value": "v"}))
        .await;

    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.text);
    assert_eq!(res.code(), "rotation_unsupported");
    let message = res.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("TENANT_VAULT_MASTER_KEY"), "{message}");
    assert!(!res.text.contains(key.as_str()));
    assert_eq!(master_states(&app).await, [(1, "active".to_owned())]);
    assert_eq!(app.get_secret("acme", "K", &token).await.body["value"], "v");
}

/// Fails a rotation at `at`, then restarts and proves every secret reads and the next
/// rotation succeeds. Returns the next rotation's answer.
async fn crash_at(at: FailPoint) -> serde_json::Value {
    let app = TestApp::new().await;
    let secrets = seed(&app, 3, 2).await;
    let before = ciphertexts(&app).await;

    app.vault.set_rotation_fail_point(Some(at));
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        res.text
    );
    assert_eq!(res.code(), "internal");
    // The crashed replica is gone; its lock went with its connection.
    let survivor_view = app.another_instance().await;
    drop(app);

    let restarted = survivor_view;
    assert_all_readable(&restarted, &secrets).await;
    assert_eq!(
        ciphertexts(&restarted).await,
        before,
        "no secret re-encrypted"
    );

    let res = restarted.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["rewrapped_data_keys"], 3);
    assert_all_readable(&restarted, &secrets).await;
    let again = restarted.another_instance().await;
    assert_all_readable(&again, &secrets).await;
    let versions = keys_by_master(&again).await;
    assert_eq!(versions.len(), 1, "every data key under one version");
    assert_eq!(versions[0].0 as i64, res.body["version"].as_i64().unwrap());
    res.body
}

#[tokio::test]
async fn crash_after_the_source_write_loses_nothing() {
    let next = crash_at(FailPoint::AfterSourceWrite).await;
    // Version 2 exists only in the source; it is skipped, never adopted.
    assert_eq!(next["previous_version"], 1);
    assert_eq!(next["version"], 3);
}

#[tokio::test]
async fn crash_before_the_commit_loses_nothing() {
    let next = crash_at(FailPoint::AfterRewrapBeforeCommit).await;
    assert_eq!(next["previous_version"], 1);
    assert_eq!(next["version"], 3);
}

#[tokio::test]
async fn crash_after_the_commit_loses_nothing() {
    let next = crash_at(FailPoint::AfterCommit).await;
    assert_eq!(next["previous_version"], 2);
    assert_eq!(next["version"], 3);
}

#[tokio::test]
async fn the_crashed_replica_itself_keeps_serving() {
    for at in [
        FailPoint::AfterSourceWrite,
        FailPoint::AfterRewrapBeforeCommit,
        FailPoint::AfterCommit,
    ] {
        let app = TestApp::with_service(service_args(0)).await;
        let secrets = seed(&app, 2, 1).await;
        app.vault.set_rotation_fail_point(Some(at));
        let res = app.admin_post("/v1/admin/master-key/rotate").await;
        assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR, "{at:?}");
        // Cache off: every read unwraps from the database again.
        assert_all_readable(&app, &secrets).await;
        app.vault.set_rotation_fail_point(None);
        let res = app.admin_post("/v1/admin/master-key/rotate").await;
        assert_eq!(res.status, StatusCode::OK, "{at:?}: {}", res.text);
        assert_all_readable(&app, &secrets).await;
        app.tenant("after").await;
    }
}

#[tokio::test]
async fn replicas_pick_up_a_new_master_key_without_restart() {
    let a = TestApp::new().await;
    let secrets = seed(&a, 2, 1).await;
    let b = a.another_instance().await;
    assert_all_readable(&b, &secrets).await;

    let res = a.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    eventually("replica b makes version 2 active", || async {
        b.vault.masters().active_version() == 2
    })
    .await;
    // B wraps new data keys under version 2 and reads everything.
    b.tenant("made-on-b").await;
    assert_eq!(keys_by_master(&b).await, [(2, 3)]);
    assert_all_readable(&b, &secrets).await;
}

#[tokio::test]
async fn a_replica_that_missed_the_news_fetches_the_new_version_on_first_need() {
    let a = TestApp::new().await;
    let secrets = seed(&a, 2, 1).await;
    // A replica without a listener (as if its notifications were lost).
    let quiet = tenant_vault::app::App::build(
        a.pool.clone(),
        Arc::new(tenant_vault::keys::DevFileSource::new(
            a.data_dir.path().to_path_buf(),
        )),
        a.data_dir.path(),
        &service_args(60),
    )
    .await
    .unwrap();
    assert_eq!(quiet.vault.masters().active_version(), 1);

    let res = a.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(quiet.vault.masters().active_version(), 1, "no listener");

    // Creating a tenant wraps under the version the database says is active.
    let ctx = tenant_vault::service::RequestContext::default();
    let slug = tenant_vault::domain::TenantSlug::parse("quiet-one").unwrap();
    quiet.vault.create_tenant(&ctx, &slug, "q").await.unwrap();
    assert_eq!(keys_by_master(&a).await, [(2, 3)]);
    assert_eq!(quiet.vault.masters().active_version(), 2);
    // And its cold reads unwrap keys re-wrapped under version 2.
    let router = tenant_vault::api::router(quiet.vault.clone(), &Default::default());
    for (slug, token, key, value) in &secrets {
        let req = axum::http::Request::get(format!("/v1/tenants/{slug}/secrets/{key}"))
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let res = tower::ServiceExt::oneshot(router.clone(), req)
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["value"], value.as_str());
    }
    quiet.shutdown().await;
}

#[tokio::test]
async fn a_retired_version_deleted_from_the_source_is_not_needed_to_start() {
    let app = TestApp::new().await;
    let secrets = seed(&app, 2, 1).await;
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK);

    let report = app.get("/v1/admin/keys", &app.admin_token).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
    let v1 = &report.body["master_key"]["versions"][0];
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["state"], "retired");
    assert_eq!(
        v1["wrapped_data_keys"], 0,
        "safe to delete once backups expire"
    );

    std::fs::remove_file(app.data_dir.path().join("master-key-v1")).unwrap();
    let restarted = app.another_instance().await;
    assert_all_readable(&restarted, &secrets).await;

    // The active version, on the other hand, is required.
    std::fs::remove_file(app.data_dir.path().join("master-key-v2")).unwrap();
    let err = tenant_vault::app::App::build(
        app.pool.clone(),
        Arc::new(tenant_vault::keys::DevFileSource::new(
            app.data_dir.path().to_path_buf(),
        )),
        app.data_dir.path(),
        &service_args(60),
    )
    .await
    .err()
    .expect("start-up must fail without the active master key");
    assert!(format!("{err:#}").contains("version 2"), "{err:#}");
}

#[tokio::test]
async fn deleting_a_tenant_shreds_it_everywhere_and_rotation_finishes_the_erasure() {
    let a = TestApp::new().await;
    let token = a.tenant("acme").await;
    a.put_secret("acme", "K", &token, json!({"value": "shred-me"}))
        .await;
    let b = a.another_instance().await;
    assert_eq!(
        b.get_secret("acme", "K", &token).await.body["value"],
        "shred-me"
    );
    // A "backup" taken before the delete: the wrapped key and the version that wraps it.
    let (backup_wrapped,): (Vec<u8>,) =
        sqlx::query_as("select wrapped_key from data_keys where wrapped_key is not null")
            .fetch_one(&a.pool)
            .await
            .unwrap();
    assert_eq!(
        tenant_vault::crypto::envelope::wrapped_master_version(&backup_wrapped).unwrap(),
        1
    );

    let res = a
        .admin_call(axum::http::Method::DELETE, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["destroyed_data_keys"], 1);
    let live: i64 =
        sqlx::query_scalar("select count(*) from data_keys where wrapped_key is not null")
            .fetch_one(&a.pool)
            .await
            .unwrap();
    assert_eq!(live, 0, "no wrapped key left in the live database");
    // The other replica stops answering at once (its cached token and keys are dropped).
    eventually("replica b refuses the deleted tenant", || async {
        b.get_secret("acme", "K", &token).await.status == StatusCode::UNAUTHORIZED
    })
    .await;

    // The backup's key is wrapped under version 1; rotate and version 1 wraps nothing live,
    // so deleting it from the source (once such backups expire) finishes the erasure.
    let res = a.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["rewrapped_data_keys"], 0);
    let report = a.get("/v1/admin/keys", &a.admin_token).await;
    assert_eq!(report.body["master_key"]["versions"][0]["state"], "retired");
    assert_eq!(
        report.body["master_key"]["versions"][0]["wrapped_data_keys"],
        0
    );
}

#[tokio::test]
async fn key_report_shows_versions_states_and_last_rotation() {
    let app = TestApp::new().await;
    seed(&app, 2, 2).await;
    let tenant_token = app.token_for("tenant-0").await;
    let res = app.get("/v1/admin/keys", &tenant_token).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let res = app.get("/v1/admin/keys", &app.admin_token).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["master_key"]["active_version"], 1);
    assert_eq!(res.body["data_keys"]["active"], 2);
    assert_eq!(
        res.body["last_rotation"]["master_key"],
        serde_json::Value::Null
    );

    app.admin_post("/v1/admin/master-key/rotate").await;
    let res = app.get("/v1/admin/keys", &app.admin_token).await;
    let body = &res.body;
    assert_eq!(body["master_key"]["active_version"], 2);
    assert_eq!(body["master_key"]["loaded_active_version"], 2);
    assert_eq!(body["master_key"]["versions"][1]["wrapped_data_keys"], 2);
    let last = &body["last_rotation"]["master_key"];
    assert_eq!(last["previous_version"], 1);
    assert_eq!(last["version"], 2);
    assert_eq!(last["rewrapped_data_keys"], 2);
    assert!(last["elapsed_ms"].is_i64());
    assert!(last["finished_at"].is_string());
    assert_eq!(body["secrets_under_decrypt_only_keys"]["current"], 0);
    assert!(!res.text.contains("value-0-0"));
}

fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-vault"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TENANT_VAULT_MASTER_KEY")
        .env_remove("TENANT_VAULT_MASTER_KEY_SOURCE")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("no JSON line in {stdout}"))
}

#[tokio::test]
async fn rotate_commands_from_the_command_line() {
    let (_pool, url) = common::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().to_str().unwrap();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("TENANT_VAULT_MASTER_KEY_SOURCE", "dev-file"),
        ("TENANT_VAULT_DATA_DIR", dir_text),
    ];
    let (ok, out, _) = run_cli(&["rotate", "--help"], &[]);
    assert!(
        ok && out.contains("master-key") && out.contains("data-keys"),
        "{out}"
    );
    let (ok, _, err) = run_cli(&["rotate", "data-keys"], &env);
    assert!(!ok && err.contains("--tenant"), "{err}");

    for slug in ["acme", "globex"] {
        let (ok, _, err) = run_cli(&["tenant", "create", slug], &env);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = run_cli(&["rotate", "master-key"], &env);
    assert!(ok, "{err}");
    let done = last_json(&out);
    assert_eq!(done["previous_version"], 1);
    assert_eq!(done["version"], 2);
    assert_eq!(done["rewrapped_data_keys"], 2);
    assert!(err.contains("2 data keys re-wrapped"), "{err}");

    let (ok, out, err) = run_cli(&["rotate", "data-keys", "--tenant", "acme"], &env);
    assert!(ok, "{err}");
    assert_eq!(last_json(&out)["rotated_tenants"], 1);
    let (ok, out, err) = run_cli(&["rotate", "data-keys", "--all"], &env);
    assert!(ok, "{err}");
    assert_eq!(last_json(&out)["rotated_tenants"], 2);
    let states: Vec<(String, i64)> =
        sqlx::query_as("select state, count(*) from data_keys group by 1 order by 1")
            .fetch_all(&_pool)
            .await
            .unwrap();
    // acme: v1, v2 destroyed (empty), v3 active; globex: v1 destroyed, v2 active.
    assert_eq!(
        states,
        [("active".to_owned(), 2), ("destroyed".to_owned(), 3)]
    );

    // A fixed key cannot rotate, and says so.
    let (_pool2, url2) = common::fresh_database().await;
    let key = tenant_vault::crypto::kdf::generate_master_key_text();
    let env2 = [
        ("DATABASE_URL", url2.as_str()),
        ("TENANT_VAULT_MASTER_KEY_SOURCE", "env"),
        ("TENANT_VAULT_MASTER_KEY", key.as_str()),
        ("TENANT_VAULT_DATA_DIR", dir_text),
    ];
    let (ok, _, err) = run_cli(&["rotate", "master-key"], &env2);
    assert!(!ok);
    assert!(err.contains("cannot rotate"), "{err}");
    assert!(!err.contains(key.as_str()));
}

#[tokio::test]
async fn rotation_through_infisical_writes_the_next_named_secret() {
    let infisical = common::TestInfisical::start(&[]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let secrets = seed(&app, 2, 2).await;
    let b = app.another_instance().await;
    assert_all_readable(&b, &secrets).await;

    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["version"], 2);
    assert_eq!(res.body["rewrapped_data_keys"], 2);
    let names: Vec<(i32, Option<String>, String)> = sqlx::query_as(
        "select version, infisical_secret_name, source from master_keys order by version",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        names,
        [
            (
                1,
                Some("MASTER_ENCRYPTION_KEY_V1".into()),
                "infisical".into()
            ),
            (
                2,
                Some("MASTER_ENCRYPTION_KEY_V2".into()),
                "infisical".into()
            )
        ]
    );
    let snap = serde_json::to_value(infisical.emulator().snapshot()).unwrap();
    let folder = &snap["projects"][0]["secrets"][common::ENVIRONMENT]["/tenant-vault"];
    assert!(folder["MASTER_ENCRYPTION_KEY_V2"].is_string(), "{folder}");
    assert_ne!(
        folder["MASTER_ENCRYPTION_KEY_V1"],
        folder["MASTER_ENCRYPTION_KEY_V2"]
    );
    // The other replica fetches V2 from Infisical without a restart.
    eventually("replica b loads version 2 from Infisical", || async {
        b.vault.masters().active_version() == 2
    })
    .await;
    assert_all_readable(&b, &secrets).await;

    // A crash after the write leaves V3 in Infisical only; the next rotation never
    // overwrites it and records V4.
    app.vault
        .set_rotation_fail_point(Some(FailPoint::AfterSourceWrite));
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    app.vault.set_rotation_fail_point(None);
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["previous_version"], 2);
    assert_eq!(res.body["version"], 4);
    let restarted = app.another_instance().await;
    assert_all_readable(&restarted, &secrets).await;

    // Infisical down: the rotation fails cleanly with 503 and changes nothing.
    infisical.faults(json!({"down": true}));
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
    assert_eq!(res.code(), "dependency_unavailable");
    infisical.faults(json!({"down": false}));
    assert_eq!(master_states(&app).await.last().unwrap().0, 4);
    assert_all_readable(&app, &secrets).await;
}
