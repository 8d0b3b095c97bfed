//! Tampering and wrong keys: a ciphertext moved to another row, tenant or version must fail
//! loudly (500 `integrity_error`, audited), never answer a wrong value; a wrong master key
//! must stop start-up, naming the version, never the key.

mod common;

use axum::http::StatusCode;
use common::{fresh_database, service_args, TestApp};
use serde_json::json;
use tenant_vault::app::App;
use tenant_vault::keys::{DevFileSource, EnvSource};
use zeroize::Zeroizing;

async fn setup() -> (TestApp, String, String) {
    let app = TestApp::with_service(service_args(0)).await; // no cache: every read decrypts
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    for (tenant, token) in [("acme", &acme), ("globex", &globex)] {
        for key in ["A", "B"] {
            let res = app
                .put_secret(
                    tenant,
                    key,
                    token,
                    json!({"value": format!("{tenant}-{key}-v1")}),
                )
                .await;
            assert_eq!(res.status, StatusCode::OK);
        }
    }
    (app, acme, globex)
}

async fn assert_integrity_error(app: &TestApp, tenant: &str, key: &str, token: &str) {
    let res = app.get_secret(tenant, key, token).await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        res.text
    );
    assert_eq!(res.code(), "integrity_error");
    assert!(
        !res.text.contains("-v1"),
        "no value in the error: {}",
        res.text
    );
}

#[tokio::test]
async fn ciphertext_copied_to_another_row_fails() {
    let (app, acme, _) = setup().await;
    sqlx::query(
        "update company_secrets set secret_value_encrypted =
           (select secret_value_encrypted from company_secrets s join tenants t on t.id = s.company_id
            where t.slug = 'acme' and s.secret_key = 'A')
         where secret_key = 'B' and company_id = (select id from tenants where slug = 'acme')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_integrity_error(&app, "acme", "B", &acme).await;
    // The untouched row still reads.
    assert_eq!(
        app.get_secret("acme", "A", &acme).await.body["value"],
        "acme-A-v1"
    );
    let rows = app.audit_rows().await;
    assert!(rows
        .iter()
        .any(|r| r.0 == "secret.read" && r.1 == "integrity_error" && r.3.as_deref() == Some("B")));
}

#[tokio::test]
async fn ciphertext_copied_to_another_tenant_fails() {
    let (app, _, globex) = setup().await;
    // Copy acme's A (envelope and data key id) over globex's A.
    sqlx::query(
        "update company_secrets g set secret_value_encrypted = a.secret_value_encrypted,
                                      data_key_id = a.data_key_id
         from company_secrets a
         where a.secret_key = 'A' and a.company_id = (select id from tenants where slug = 'acme')
           and g.secret_key = 'A' and g.company_id = (select id from tenants where slug = 'globex')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_integrity_error(&app, "globex", "A", &globex).await;
}

#[tokio::test]
async fn ciphertext_with_another_version_number_fails() {
    let (app, acme, _) = setup().await;
    let res = app
        .put_secret("acme", "A", &acme, json!({"value": "acme-A-v2"}))
        .await;
    assert_eq!(res.body["version"], 2);
    // Roll the row's version number back without re-encrypting.
    sqlx::query("update company_secrets set version = 1 where secret_key = 'A' and company_id = (select id from tenants where slug = 'acme')")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_integrity_error(&app, "acme", "A", &acme).await;
    // And restoring the old version's ciphertext into the current (v2) row fails too.
    sqlx::query(
        "update company_secrets s set version = 2, secret_value_encrypted = v.secret_value_encrypted
         from company_secret_versions v where v.secret_id = s.id and v.version = 1",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_integrity_error(&app, "acme", "A", &acme).await;
}

#[tokio::test]
async fn flipped_bits_and_truncation_fail() {
    let (app, acme, _) = setup().await;
    for sql in [
        // XOR, not overwrite: a byte that already held the new value would change nothing.
        "update company_secrets set secret_value_encrypted = set_byte(secret_value_encrypted, 39, get_byte(secret_value_encrypted, 39) # 1) where secret_key = 'A'",
        "update company_secrets set secret_value_encrypted = substring(secret_value_encrypted from 1 for 20) where secret_key = 'B'",
    ] {
        sqlx::query(sql).execute(&app.pool).await.unwrap();
    }
    assert_integrity_error(&app, "acme", "A", &acme).await;
    assert_integrity_error(&app, "acme", "B", &acme).await;
}

#[tokio::test]
async fn a_wrapped_data_key_moved_to_another_tenant_fails() {
    let (app, _, globex) = setup().await;
    sqlx::query(
        "update data_keys g set wrapped_key = a.wrapped_key from data_keys a
         where a.tenant_id = (select id from tenants where slug = 'acme')
           and g.tenant_id = (select id from tenants where slug = 'globex')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    // A fresh instance (this one holds the genuine key unwrapped in memory).
    let restarted = app.another_instance().await;
    assert_integrity_error(&restarted, "globex", "A", &globex).await;
}

#[tokio::test]
async fn a_wrong_master_key_refuses_to_start_and_names_the_version() {
    let (pool, _) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let right = "a".repeat(64);
    let wrong = "b".repeat(64);
    let app = App::build(
        pool.clone(),
        std::sync::Arc::new(EnvSource::new(Zeroizing::new(right.clone()))),
        dir.path(),
        &service_args(60),
    )
    .await
    .unwrap();
    app.shutdown().await;

    let err = App::build(
        pool.clone(),
        std::sync::Arc::new(EnvSource::new(Zeroizing::new(wrong.clone()))),
        dir.path(),
        &service_args(60),
    )
    .await
    .err()
    .expect("a wrong master key must refuse to start");
    let message = format!("{err:#}");
    assert!(message.contains("master key version 1"), "{message}");
    assert!(message.contains("does not match"), "{message}");
    assert!(
        !message.contains(&wrong) && !message.contains(&right),
        "{message}"
    );

    // A passphrase master key: the salt is recorded, the same passphrase works again.
    let (pool2, _) = fresh_database().await;
    let phrase = "correct horse battery staple, twice over";
    let app = App::build(
        pool2.clone(),
        std::sync::Arc::new(EnvSource::new(Zeroizing::new(phrase.into()))),
        dir.path(),
        &service_args(60),
    )
    .await
    .unwrap();
    app.shutdown().await;
    let salt: Option<Vec<u8>> =
        sqlx::query_scalar("select argon2_salt from master_keys where version = 1")
            .fetch_one(&pool2)
            .await
            .unwrap();
    assert_eq!(salt.map(|s| s.len()), Some(16));
    App::build(
        pool2.clone(),
        std::sync::Arc::new(EnvSource::new(Zeroizing::new(phrase.into()))),
        dir.path(),
        &service_args(60),
    )
    .await
    .unwrap()
    .shutdown()
    .await;
    let err = App::build(
        pool2,
        std::sync::Arc::new(EnvSource::new(Zeroizing::new(
            "correct horse battery staple, twice overr".into(),
        ))),
        dir.path(),
        &service_args(60),
    )
    .await
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("does not match"));

    // A missing dev key file is a clear error too.
    let (pool3, _) = fresh_database().await;
    let dir_a = tempfile::tempdir().unwrap();
    App::build(
        pool3.clone(),
        std::sync::Arc::new(DevFileSource::new(dir_a.path().into())),
        dir_a.path(),
        &service_args(60),
    )
    .await
    .unwrap()
    .shutdown()
    .await;
    let dir_b = tempfile::tempdir().unwrap();
    let err = App::build(
        pool3,
        std::sync::Arc::new(DevFileSource::new(dir_b.path().into())),
        dir_b.path(),
        &service_args(60),
    )
    .await
    .err()
    .unwrap();
    assert!(
        format!("{err:#}").contains("could not read master key version 1"),
        "{err:#}"
    );
}

/// A ciphertext of a deleted secret, replayed by a database writer into a new secret of the
/// same name and version, fails: the row id (the secret's incarnation) is in the AAD.
#[tokio::test]
async fn ciphertext_of_a_deleted_and_recreated_secret_cannot_be_replayed() {
    let (app, acme, _) = setup().await;
    let old: (Vec<u8>, uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "select s.secret_value_encrypted, s.data_key_id, s.id from company_secrets s
         join tenants t on t.id = s.company_id where t.slug = 'acme' and s.secret_key = 'A'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        old.0[0], 0x02,
        "new writes use the envelope format with the row id"
    );
    let res = app
        .call(
            axum::http::Method::DELETE,
            "/v1/tenants/acme/secrets/A",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text);
    let res = app
        .put_secret("acme", "A", &acme, json!({"value": "acme-A-recreated"}))
        .await;
    assert_eq!(res.body["version"], 1, "{}", res.text);
    // The writer puts the old incarnation's version 1 back into the new row.
    let replaced = sqlx::query(
        "update company_secrets set secret_value_encrypted = $1, data_key_id = $2
         where secret_key = 'A' and company_id = (select id from tenants where slug = 'acme')
           and id <> $3",
    )
    .bind(&old.0)
    .bind(old.1)
    .bind(old.2)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(replaced.rows_affected(), 1, "the new row has a new id");
    assert_integrity_error(&app, "acme", "A", &acme).await;
    let res = app.get_secret("acme", "A", &acme).await;
    assert!(
        res.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("integrity")),
        "a clear message: {}",
        res.text
    );
}
