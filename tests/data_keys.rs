//! Data key rotation and the re-encryption job, automatic rotation at the encryption
//! ceiling, and secret versions (listing, reading one, rollback, retention).

mod common;

use axum::http::{Method, StatusCode};
use common::{eventually, service_args, TestApp};
use serde_json::json;

async fn key_rows(app: &TestApp) -> Vec<(i32, String, i64, bool)> {
    sqlx::query_as(
        "select version, state, encryption_count, wrapped_key is not null from data_keys
         order by version",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Ciphertexts (current, kept) per data key version.
async fn ciphertexts_by_key_version(app: &TestApp) -> Vec<(i32, i64)> {
    sqlx::query_as(
        "select d.version, count(*) from (
             select data_key_id from company_secrets
             union all select data_key_id from company_secret_versions) c
         join data_keys d on d.id = c.data_key_id group by 1 order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn data_key_rotation_then_reencryption_destroys_the_old_key() {
    let app = TestApp::new().await;
    let token = app.tenant("acme").await;
    let other = app.tenant("other").await;
    for k in 0..5 {
        for v in 1..=2 {
            app.put_secret(
                "acme",
                &format!("K{k}"),
                &token,
                json!({"value": format!("v{v}-of-K{k}")}),
            )
            .await;
        }
    }
    app.put_secret("other", "K", &other, json!({"value": "untouched"}))
        .await;
    let other_before: Vec<u8> = sqlx::query_scalar(
        "select secret_value_encrypted from company_secrets where secret_key = 'K'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();

    // Admin only.
    let res = app
        .call(
            Method::POST,
            "/v1/admin/tenants/acme/data-key/rotate",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .admin_post("/v1/admin/tenants/nobody/data-key/rotate")
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.code(), "tenant_not_found");

    let res = app
        .admin_post("/v1/admin/tenants/acme/data-key/rotate")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["tenant"], "acme");
    assert_eq!(res.body["previous_version"], 1);
    assert_eq!(res.body["version"], 2);
    assert_eq!(
        res.body["to_reencrypt"], 10,
        "5 current values + 5 kept versions"
    );

    // New writes use the new key at once.
    app.put_secret("acme", "NEW", &token, json!({"value": "fresh"}))
        .await;
    let new_key_version: i32 = sqlx::query_scalar(
        "select d.version from company_secrets c join data_keys d on d.id = c.data_key_id
         where c.secret_key = 'NEW'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(new_key_version, 2);

    // The job (woken by the rotation, or run here: they take turns) empties the old key.
    app.vault.reencrypt_pending().await.unwrap();
    let acme_keys = || async {
        sqlx::query_as::<_, (i32, String, bool)>(
            "select d.version, d.state, d.wrapped_key is not null
             from data_keys d join tenants t on t.id = d.tenant_id
             where t.slug = 'acme' order by 1",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    eventually("the old key is destroyed", || async {
        acme_keys().await[0].1 == "destroyed"
    })
    .await;
    assert_eq!(
        acme_keys().await,
        [
            (1, "destroyed".to_owned(), false),
            (2, "active".to_owned(), true)
        ]
    );
    assert_eq!(
        ciphertexts_by_key_version(&app).await,
        // acme: 5 current + 5 kept + NEW under version 2; other: 1 under its version 1.
        [(1, 1), (2, 11)]
    );

    // Everything reads back: current values and kept versions, from a cold replica too.
    let cold = app.another_instance().await;
    for k in 0..5 {
        let key = format!("K{k}");
        let res = cold.get_secret("acme", &key, &token).await;
        assert_eq!(res.body["value"], format!("v2-of-K{k}"));
        let res = cold
            .get(&format!("/v1/tenants/acme/secrets/{key}?version=1"), &token)
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        assert_eq!(res.body["value"], format!("v1-of-K{k}"));
    }
    assert_eq!(
        cold.get_secret("other", "K", &other).await.body["value"],
        "untouched"
    );
    let other_after: Vec<u8> = sqlx::query_scalar(
        "select secret_value_encrypted from company_secrets where secret_key = 'K'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(other_before, other_after, "other tenants are not touched");

    let report = app.get("/v1/admin/keys", &app.admin_token).await;
    let body = &report.body;
    assert_eq!(body["data_keys"]["active"], 2);
    assert_eq!(body["data_keys"]["destroyed"], 1);
    assert_eq!(body["data_keys"]["decrypt_only"], 0);
    assert_eq!(body["secrets_under_decrypt_only_keys"]["current"], 0);
    assert_eq!(body["secrets_under_decrypt_only_keys"]["kept_versions"], 0);
    let job = &body["reencryption"][0];
    assert_eq!(job["tenant"], "acme");
    assert_eq!(job["state"], "finished");
    assert_eq!(job["total"], 10);
    assert_eq!(job["done"], 10);
    assert_eq!(job["remaining"], 0);
    let last = &body["last_rotation"]["data_key"];
    assert_eq!(last["tenant"], "acme");
    assert_eq!(last["version"], 2);
    assert_eq!(last["automatic"], false);
}

#[tokio::test]
async fn reencryption_resumes_after_a_crash_and_reports_progress() {
    let app = TestApp::new().await;
    let token = app.tenant("acme").await;
    for k in 0..30 {
        app.put_secret(
            "acme",
            &format!("K{k}"),
            &token,
            json!({"value": format!("v{k}")}),
        )
        .await;
    }
    // Rotate directly in the database's terms but without any job running: as if the
    // replica that rotated died before its job started.
    let quiet = tenant_vault::app::App::build(
        app.pool.clone(),
        std::sync::Arc::new(tenant_vault::keys::DevFileSource::new(
            app.data_dir.path().to_path_buf(),
        )),
        app.data_dir.path(),
        &service_args(60),
    )
    .await
    .unwrap();
    let ctx = tenant_vault::service::RequestContext::default();
    let slug = tenant_vault::domain::TenantSlug::parse("acme").unwrap();
    let r = quiet.vault.rotate_data_key(&ctx, &slug).await.unwrap();
    assert_eq!(r.to_reencrypt, 30);
    quiet.shutdown().await;

    // Whichever replica runs it (the serving one wakes every 30 s and at start; a new
    // replica starts by resuming), the work finishes and every value reads back.
    let restarted = app.another_instance().await;
    eventually("re-encryption finished", || async {
        let res = restarted
            .get("/v1/admin/keys", &restarted.admin_token)
            .await;
        res.body["reencryption"][0]["state"] == "finished"
    })
    .await;
    let res = restarted
        .get("/v1/admin/keys", &restarted.admin_token)
        .await;
    assert_eq!(res.body["reencryption"][0]["done"], 30);
    assert_eq!(res.body["data_keys"]["destroyed"], 1);
    for k in 0..30 {
        let res = restarted.get_secret("acme", &format!("K{k}"), &token).await;
        assert_eq!(res.body["value"], format!("v{k}"));
    }
}

#[tokio::test]
async fn a_data_key_rotates_itself_at_its_encryption_ceiling() {
    let mut service = service_args(60);
    service.data_key_max_encryptions = 5;
    service.version_retention = 2;
    let app = TestApp::with_service(service).await;
    let token = app.tenant("acme").await;
    for i in 1..=14 {
        let res = app
            .put_secret("acme", "K", &token, json!({"value": format!("v{i}")}))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        assert_eq!(res.body["version"], i);
    }
    app.vault.reencrypt_pending().await.unwrap();
    let rows = key_rows(&app).await;
    assert!(rows.len() >= 3, "rotated at least twice: {rows:?}");
    assert!(
        rows.iter().all(|r| r.2 <= 5),
        "no key went past its ceiling: {rows:?}"
    );
    assert_eq!(rows.iter().filter(|r| r.1 == "active").count(), 1);
    let automatic: i64 = sqlx::query_scalar("select count(*) from key_rotations where automatic")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(automatic >= 2);
    let res = app.get_secret("acme", "K", &token).await;
    assert_eq!(res.body["value"], "v14");
    let res = app
        .get("/v1/tenants/acme/secrets/K?version=13", &token)
        .await;
    assert_eq!(res.body["value"], "v13");
}

#[tokio::test]
async fn versions_list_read_and_roll_back() {
    let app = TestApp::new().await;
    let token = app.tenant("acme").await;
    let intruder = app.tenant("intruder").await;
    for v in 1..=4 {
        app.put_secret(
            "acme",
            "DB_URL",
            &token,
            json!({"value": format!("secret-{v}")}),
        )
        .await;
    }

    let res = app
        .get("/v1/tenants/acme/secrets/DB_URL/versions", &token)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["current_version"], 4);
    let versions: Vec<(i64, bool)> = res.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert!(v["created_at"].is_string());
            (
                v["version"].as_i64().unwrap(),
                v["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(versions, [(4, true), (3, false), (2, false), (1, false)]);
    assert!(!res.text.contains("secret-"), "no values in the listing");

    let res = app
        .get("/v1/tenants/acme/secrets/DB_URL?version=2", &token)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["value"], "secret-2");
    assert_eq!(res.body["version"], 2);
    let res = app
        .get("/v1/tenants/acme/secrets/DB_URL?version=4", &token)
        .await;
    assert_eq!(res.body["value"], "secret-4");

    for (query, status, code) in [
        ("version=99", StatusCode::NOT_FOUND, "version_not_found"),
        ("version=0", StatusCode::BAD_REQUEST, "invalid_query"),
        ("version=abc", StatusCode::BAD_REQUEST, "invalid_query"),
        ("versoin=2", StatusCode::BAD_REQUEST, "invalid_query"),
    ] {
        let res = app
            .get(&format!("/v1/tenants/acme/secrets/DB_URL?{query}"), &token)
            .await;
        assert_eq!(res.status, status, "{query}: {}", res.text);
        assert_eq!(res.code(), code, "{query}");
    }
    let res = app
        .get("/v1/tenants/acme/secrets/NOPE?version=1", &token)
        .await;
    assert_eq!(res.code(), "secret_not_found");
    let res = app
        .get("/v1/tenants/acme/secrets/DB_URL?version=1", &intruder)
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // Rollback: a new version equal to version 2.
    let res = app
        .call(
            Method::POST,
            "/v1/tenants/acme/secrets/DB_URL/rollback",
            Some(&token),
            Some(json!({"version": 2})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(
        res.body,
        json!({"key": "DB_URL", "version": 5, "rolled_back_to": 2})
    );
    let res = app.get_secret("acme", "DB_URL", &token).await;
    assert_eq!(res.body["value"], "secret-2");
    assert_eq!(res.body["version"], 5);
    // Encrypted anew: bound to version 5, so it is not a copy of version 2's ciphertext.
    let (v2, v5): (Vec<u8>, Vec<u8>) = sqlx::query_as(
        "select (select secret_value_encrypted from company_secret_versions where version = 2),
                (select secret_value_encrypted from company_secrets where secret_key = 'DB_URL')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_ne!(v2, v5);

    for (body, status, code) in [
        (
            json!({"version": 42}),
            StatusCode::NOT_FOUND,
            "version_not_found",
        ),
        (
            json!({"version": -1}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"version": "2"}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "invalid_json"),
    ] {
        let res = app
            .call(
                Method::POST,
                "/v1/tenants/acme/secrets/DB_URL/rollback",
                Some(&token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(res.status, status, "{body}: {}", res.text);
        assert_eq!(res.code(), code, "{body}");
    }
    let res = app
        .call(
            Method::POST,
            "/v1/tenants/acme/secrets/DB_URL/rollback",
            Some(&intruder),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get_secret("acme", "DB_URL", &token).await.body["version"],
        5,
        "failed rollbacks change nothing"
    );

    let actions: Vec<String> = app
        .audit_rows()
        .await
        .into_iter()
        .map(|(action, outcome, _, _)| format!("{action}:{outcome}"))
        .collect();
    for expected in [
        "secret.versions:success",
        "secret.read_version:success",
        "secret.read_version:not_found",
        "secret.rollback:success",
    ] {
        assert!(actions.iter().any(|a| a == expected), "{expected}");
    }
}

#[tokio::test]
async fn retention_keeps_the_last_n_versions() {
    let mut service = service_args(60);
    service.version_retention = 3;
    let app = TestApp::with_service(service).await;
    let token = app.tenant("acme").await;
    for v in 1..=6 {
        app.put_secret("acme", "K", &token, json!({"value": format!("v{v}")}))
            .await;
    }
    let res = app.get("/v1/tenants/acme/secrets/K/versions", &token).await;
    let versions: Vec<i64> = res.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [6, 5, 4]);
    let kept: i64 = sqlx::query_scalar("select count(*) from company_secret_versions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept, 2);
    let res = app
        .get("/v1/tenants/acme/secrets/K?version=3", &token)
        .await;
    assert_eq!(res.code(), "version_not_found");
    let res = app
        .get("/v1/tenants/acme/secrets/K?version=4", &token)
        .await;
    assert_eq!(res.body["value"], "v4");
    let res = app
        .call(
            Method::POST,
            "/v1/tenants/acme/secrets/K/rollback",
            Some(&token),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(res.code(), "version_not_found");
}
