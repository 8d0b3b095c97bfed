//! The cold vault against a real OpenBao (`bao server` with file storage and the file audit
//! device): archive before prune, reads from the archive, an OpenBao outage during pruning,
//! a crash between the OpenBao write and the PostgreSQL commit, a delete racing re-encryption,
//! tenant deletion, AppRole login and token renewal, the policy's limits, settings errors,
//! and no secret in any log.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::archive::{TestBao, MOUNT};
use common::{eventually, service_args, TestApp};
use reqwest::Method as RMethod;
use serde_json::json;
use tenant_vault::archive::ArchiveError;
use tenant_vault::config::ArchiveArgs;

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

/// Everything every test in this binary logs, at TRACE, from every crate.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        captured
    })
}

fn captured_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

fn value(n: i32) -> String {
    format!("sk_live_ARCHIVED_{n}_do-not-log")
}

async fn write_versions(
    app: &TestApp,
    token: &str,
    key: &str,
    range: std::ops::RangeInclusive<i32>,
) {
    for n in range {
        let res = app
            .put_secret("acme", key, token, json!({ "value": value(n) }))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        assert_eq!(res.body["version"], n);
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.pool).await.unwrap()
}

/// Runs archive passes until nothing is pending (the background worker may do some).
async fn drain(app: &TestApp) {
    let drained = async {
        eventually("the archive outbox drains", || async {
            app.vault.archive_pass().await.unwrap().pending == 0
        })
        .await
    };
    if futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(drained))
        .await
        .is_err()
    {
        let failures: Vec<String> = captured_text()
            .lines()
            .filter(|l| l.contains("archiving a version failed"))
            .take(5)
            .map(String::from)
            .collect();
        panic!(
            "the archive outbox never drained; failures logged:\n{}",
            failures.join("\n")
        );
    }
}

async fn read_version(app: &TestApp, token: &str, key: &str, n: i32) -> common::TestResponse {
    app.get(
        &format!("/v1/tenants/acme/secrets/{key}?version={n}"),
        token,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_versions_keep_ten_in_postgres_and_five_in_openbao() {
    logs();
    let bao = TestBao::start(Duration::from_secs(3600)).await;
    let app = TestApp::with_archive(&bao, service_args(60)).await;
    let acme = app.tenant("acme").await;
    write_versions(&app, &acme, "STRIPE_KEY", 1..=15).await;
    drain(&app).await;

    // PostgreSQL: the current row and nine kept versions (10); five archived, none pending.
    assert_eq!(
        count(&app, "select count(*) from company_secret_versions").await + 1,
        10
    );
    assert_eq!(
        count(&app, "select count(*) from archived_versions").await,
        5
    );
    assert_eq!(count(&app, "select count(*) from archive_outbox").await, 0);
    assert_eq!(
        count(
            &app,
            "select min(version)::int8 from company_secret_versions"
        )
        .await,
        6
    );

    // OpenBao: five KV versions, each carrying its tenant-vault version; metadata as specified.
    let path = format!("{MOUNT}/metadata/tenants/acme/STRIPE_KEY");
    let (status, meta) = bao.root(RMethod::GET, &path).await;
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["data"]["current_version"], 5);
    let custom = &meta["data"]["custom_metadata"];
    assert_eq!(custom["tenant_vault_version"], "5");
    assert_eq!(custom["reason"], "retention");
    assert!(custom["archived_at"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(custom["retain_until"]
        .as_str()
        .is_some_and(|s| s.starts_with("20")));
    // Five years of retention: 1825 days.
    assert_eq!(meta["data"]["delete_version_after"], "43800h0m0s");
    for kv in 1..=5 {
        let (status, v) = bao
            .root(
                RMethod::GET,
                &format!("{MOUNT}/data/tenants/acme/STRIPE_KEY?version={kv}"),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(v["data"]["data"]["tenant_vault_version"], kv);
        assert_eq!(v["data"]["data"]["value"], value(kv));
        assert_eq!(v["data"]["data"]["reason"], "retention");
    }

    // All fifteen readable through the API; the first five from the archive.
    for n in 1..=15 {
        let res = read_version(&app, &acme, "STRIPE_KEY", n).await;
        assert_eq!(res.status, StatusCode::OK, "version {n}: {}", res.text);
        assert_eq!(res.body["value"], value(n));
        assert_eq!(res.body["version"], n);
        let source = if n <= 5 { "archive" } else { "database" };
        assert_eq!(res.headers["x-secret-source"], source, "version {n}");
    }
    // The versions list shows all fifteen, the archived ones marked.
    let res = app
        .get("/v1/tenants/acme/secrets/STRIPE_KEY/versions", &acme)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let versions = res.body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 15, "{}", res.text);
    for v in versions {
        let n = v["version"].as_i64().unwrap();
        assert_eq!(v["archived"], n <= 5, "{v}");
        assert_eq!(v["retain_until"].is_string(), n <= 5, "{v}");
    }
    assert_eq!(versions[0]["version"], 15);
    assert_eq!(versions[14]["version"], 1);
    // Rollback to an archived version writes it anew.
    let res = app
        .call(
            Method::POST,
            "/v1/tenants/acme/secrets/STRIPE_KEY/rollback",
            Some(&acme),
            Some(json!({"version": 2})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(
        app.get_secret("acme", "STRIPE_KEY", &acme).await.body["value"],
        value(2)
    );

    // Audited in tenant-vault: one secret.archive_read per archived read (the rollback is
    // audited as secret.rollback).
    let rows = app.audit_rows().await;
    let archive_reads: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == "secret.archive_read")
        .collect();
    assert_eq!(archive_reads.len(), 5, "{rows:?}");
    assert!(archive_reads.iter().all(|r| r.1 == "success"
        && r.2.as_deref() == Some("acme")
        && r.3.as_deref() == Some("STRIPE_KEY")));
    assert_eq!(
        rows.iter().filter(|r| r.0 == "secret.read_version").count(),
        10
    );

    // OpenBao's audit log shows the reads by path (values are HMAC'd there, never plain).
    let audit = bao.audit_log();
    let read_path = format!("{MOUNT}/data/tenants/acme/STRIPE_KEY");
    let reads = audit
        .lines()
        .filter(|l| {
            l.contains("\"type\":\"response\"")
                && l.contains(&read_path)
                && l.contains("\"operation\":\"read\"")
        })
        .count();
    assert!(
        reads >= 5,
        "expected the archive reads in OpenBao's audit log:\n{audit}"
    );
    assert!(audit.contains("\"path\":\"auth/approle/login\""));
    for n in 1..=15 {
        assert!(!audit.contains(&value(n)), "a value in OpenBao's audit log");
    }
    assert!(!audit.contains(bao.init.secret_id.expose()));

    // Metrics: archive writes, reads, the breaker, pending; rotation events.
    let res = app
        .admin_call(Method::POST, "/v1/admin/tenants/acme/data-key/rotate", None)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    // Let the re-encryption finish before the delete below: a delete racing the job is
    // `a_delete_racing_reencryption_archives_every_version`.
    app.vault.reencrypt_pending().await.unwrap();
    let text = app.call(Method::GET, "/metrics", None, None).await.text;
    for name in [
        "tenant_vault_archive_writes_total",
        "tenant_vault_archive_reads_total",
        "tenant_vault_archive_pending",
        "tenant_vault_archive_logins_total",
        "tenant_vault_breaker_state{dependency=\"archive\"} 0",
        "tenant_vault_key_rotations_total{kind=\"data_key\",automatic=\"false\",outcome=\"success\"}",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(!text.contains("acme") && !text.contains("ARCHIVED"));

    // Deleting the secret archives its remaining versions (reason "deleted").
    let res = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme/secrets/STRIPE_KEY",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    drain(&app).await;
    let (_, meta) = bao.root(RMethod::GET, &path).await;
    // Versions 1 to 6 (the rollback pushed 6 out of retention), then 7 to 16 on the delete.
    assert_eq!(meta["data"]["current_version"], 16, "{meta}");
    assert_eq!(meta["data"]["custom_metadata"]["reason"], "deleted");

    // Deleting the tenant deletes its archive path in OpenBao.
    let res = app
        .admin_call(Method::DELETE, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    eventually("the tenant's archive is gone from OpenBao", || async {
        app.vault.archive_pass().await.unwrap();
        bao.root(
            RMethod::GET,
            &format!("{MOUNT}/metadata/tenants/acme/?list=true"),
        )
        .await
        .0 == 404
    })
    .await;
    assert_eq!(bao.root(RMethod::GET, &path).await.0, 404);
    assert_eq!(count(&app, "select count(*) from archive_purges").await, 0);
    assert_eq!(
        count(&app, "select count(*) from archived_versions").await,
        0
    );

    // No value, secret id or token in anything logged.
    let logged = captured_text();
    assert!(logged.contains("archive"), "the capture works");
    for n in 1..=15 {
        assert!(!logged.contains(&value(n)), "value {n} was logged");
    }
    assert!(
        !logged.contains(bao.init.secret_id.expose()),
        "the secret id was logged"
    );
    assert!(!logged.contains(bao.bao.root_token.expose()));
    assert!(!logged.contains(&acme));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openbao_outage_during_pruning_loses_nothing() {
    logs();
    let mut bao = TestBao::start(Duration::from_secs(3600)).await;
    let app = TestApp::with_archive(&bao, service_args(60)).await;
    let acme = app.tenant("acme").await;
    write_versions(&app, &acme, "K", 1..=12).await;
    drain(&app).await;
    assert_eq!(
        count(&app, "select count(*) from archived_versions").await,
        2
    );

    bao.bao.stop().await;
    write_versions(&app, &acme, "K", 13..=15).await;
    // Pruning waits: versions 3 to 5 stay in PostgreSQL, pending, however often it tries.
    for _ in 0..3 {
        let pass = app.vault.archive_pass().await.unwrap();
        assert_eq!(pass.archived, 0);
        assert_eq!(pass.pending, 3);
    }
    assert_eq!(
        count(
            &app,
            "select count(*) from archive_outbox where reason = 'retention'"
        )
        .await,
        3
    );
    for n in 3..=15 {
        let res = read_version(&app, &acme, "K", n).await;
        assert_eq!(res.status, StatusCode::OK, "version {n}: {}", res.text);
        assert_eq!(res.body["value"], value(n));
        assert_eq!(res.headers["x-secret-source"], "database");
    }
    // The archived ones cannot be read while OpenBao is down: 503, not a wrong answer.
    let res = read_version(&app, &acme, "K", 1).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
    assert_eq!(res.code(), "dependency_unavailable");
    assert!(!res.text.contains("ARCHIVED"));
    let versions = app.get("/v1/tenants/acme/secrets/K/versions", &acme).await;
    let list = versions.body["versions"].as_array().unwrap();
    assert_eq!(list.len(), 15);
    assert_eq!(list.iter().filter(|v| v["archived"] == true).count(), 2);
    let text = app.call(Method::GET, "/metrics", None, None).await.text;
    assert!(
        text.contains("tenant_vault_archive_failures_total{op=\"write\"}"),
        "{text}"
    );

    // OpenBao comes back on the same port: pruning resumes, everything is readable.
    bao.bao.restart().await.unwrap();
    drain(&app).await;
    assert_eq!(
        count(&app, "select count(*) from archived_versions").await,
        5
    );
    for n in 1..=15 {
        let res = read_version(&app, &acme, "K", n).await;
        assert_eq!(res.status, StatusCode::OK, "version {n}: {}", res.text);
        assert_eq!(res.body["value"], value(n));
        let source = if n <= 5 { "archive" } else { "database" };
        assert_eq!(res.headers["x-secret-source"], source, "version {n}");
    }
    bao.bao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_openbao_write_archives_once() {
    logs();
    let mut bao = TestBao::start(Duration::from_secs(3600)).await;
    let app = TestApp::with_archive(&bao, service_args(60)).await;
    let acme = app.tenant("acme").await;
    // OpenBao down while version 1 falls out of retention: it waits in the outbox. Keep a
    // copy of its row, as a crash would have left it.
    bao.bao.stop().await;
    write_versions(&app, &acme, "K", 1..=11).await;
    sqlx::query("create table saved_outbox as select * from archive_outbox")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(count(&app, "select count(*) from saved_outbox").await, 1);
    bao.bao.restart().await.unwrap();
    drain(&app).await;
    let path = format!("{MOUNT}/metadata/tenants/acme/K");
    assert_eq!(
        bao.root(RMethod::GET, &path).await.1["data"]["current_version"],
        1
    );

    // The crash: OpenBao has the version, PostgreSQL never recorded it.
    sqlx::query("delete from archived_versions")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query("insert into archive_outbox select * from saved_outbox")
        .execute(&app.pool)
        .await
        .unwrap();
    drain(&app).await;
    // Recognised, not written again.
    assert_eq!(
        bao.root(RMethod::GET, &path).await.1["data"]["current_version"],
        1
    );
    assert_eq!(
        count(
            &app,
            "select kv_version::int8 from archived_versions where version = 1"
        )
        .await,
        1
    );
    let res = read_version(&app, &acme, "K", 1).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["value"], value(1));
    assert_eq!(res.headers["x-secret-source"], "archive");
    bao.bao.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_login_token_renewal_and_a_policy_limited_to_the_mount() {
    logs();
    let bao = TestBao::start(Duration::from_secs(60)).await;
    let client = bao.client();
    let info = client.token_info().await.unwrap();
    assert!(info.policies.iter().any(|p| p == MOUNT), "{info:?}");
    assert!(info.renewable);
    assert!(info.ttl_secs > 0 && info.ttl_secs <= 60);
    assert_eq!(info.last_renewal_time, None);
    assert_eq!(client.auth_counts(), (1, 0));

    let ttl = client.renew_token().await.unwrap();
    assert!(ttl > Duration::ZERO);
    let renewed = client.token_info().await.unwrap();
    assert_eq!(renewed.accessor, info.accessor, "renewed, not replaced");
    assert!(renewed.last_renewal_time.is_some(), "{renewed:?}");
    assert_eq!(client.auth_counts(), (1, 1));

    // A token revoked behind its back: the next call is refused, logs in again, succeeds.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/auth/token/revoke-accessor", bao.bao.url()))
        .header("X-Vault-Token", bao.bao.root_token.expose())
        .json(&json!({"accessor": renewed.accessor}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let again = client.token_info().await.unwrap();
    assert_ne!(again.accessor, renewed.accessor);
    assert_eq!(client.auth_counts(), (2, 1));

    // What the role's token may and may not do: only <mount>/{data,metadata}/tenants/*.
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{}/v1/auth/approle/login", bao.bao.url()))
        .json(&json!({"role_id": bao.init.role_id, "secret_id": bao.init.secret_id.expose()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["auth"]["client_token"].as_str().unwrap().to_string();
    let status = |method: reqwest::Method, path: String, body: Option<serde_json::Value>| {
        let (http, token, base) = (http.clone(), token.clone(), bao.bao.url());
        async move {
            let mut r = http
                .request(method, format!("{base}/v1/{path}"))
                .header("X-Vault-Token", token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    let data = json!({"data": {"value": "x"}});
    assert_eq!(
        status(
            RMethod::POST,
            format!("{MOUNT}/data/tenants/t1/K"),
            Some(data.clone())
        )
        .await,
        200
    );
    for (method, path, body) in [
        (
            RMethod::POST,
            format!("{MOUNT}/data/elsewhere/K"),
            Some(data.clone()),
        ),
        (RMethod::GET, format!("{MOUNT}/config"), None),
        (RMethod::GET, "sys/mounts".to_string(), None),
        (RMethod::GET, "sys/policies/acl".to_string(), None),
        (
            RMethod::POST,
            "sys/mounts/other".to_string(),
            Some(json!({"type": "kv"})),
        ),
        (
            RMethod::POST,
            format!("{MOUNT}/destroy/tenants/t1/K"),
            Some(json!({"versions": [1]})),
        ),
    ] {
        assert_eq!(status(method, path.clone(), body).await, 403, "{path}");
    }

    // A wrong secret id: the login fails with OpenBao's words and never echoes the secret.
    let mut cfg = bao.config();
    cfg.secret_id = "wrong-secret-id-do-not-log".parse().unwrap();
    let wrong = tenant_vault::archive::ArchiveClient::new(cfg).unwrap();
    let err = wrong.token_info().await.unwrap_err();
    assert!(matches!(err, ArchiveError::Login(_)), "{err:?}");
    assert!(!err.to_string().contains("wrong-secret-id-do-not-log"));
    assert!(!format!("{err:?}").contains("wrong-secret-id-do-not-log"));
}

#[tokio::test]
async fn archive_settings_are_checked() {
    let with = |f: &dyn Fn(&mut ArchiveArgs)| {
        let mut args = ArchiveArgs::default();
        f(&mut args);
        tenant_vault::app::archive_client(&args).map(|c| c.is_some())
    };
    // Off unless configured.
    assert!(!with(&|_| {}).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret-id");
    std::fs::write(&secret_file, "file-secret-id\n").unwrap();
    let base = |a: &mut ArchiveArgs| {
        a.archive_addr = Some("http://127.0.0.1:8200".into());
        a.archive_role_id = Some("role".into());
        a.archive_secret_id = Some("the-secret-id-value".parse().unwrap());
    };
    assert!(with(&base).unwrap());
    type Edit<'a> = Box<dyn Fn(&mut ArchiveArgs) + 'a>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|a| {
                base(a);
                a.archive_role_id = None;
            }),
            "TENANT_VAULT_ARCHIVE_ROLE_ID",
        ),
        (
            Box::new(|a| {
                base(a);
                a.archive_secret_id = None;
            }),
            "TENANT_VAULT_ARCHIVE_SECRET_ID",
        ),
        (
            Box::new(|a| {
                base(a);
                a.archive_secret_id_file = Some(secret_file.clone());
            }),
            "not both",
        ),
        (
            Box::new(|a| {
                base(a);
                a.archive_secret_id = None;
                a.archive_secret_id_file = Some("/nonexistent/x".into());
            }),
            "cannot read",
        ),
        (
            Box::new(|a| {
                base(a);
                a.archive_addr = Some("127.0.0.1:8200".into());
            }),
            "TENANT_VAULT_ARCHIVE_ADDR",
        ),
        (
            Box::new(|a| {
                base(a);
                a.archive_addr = Some("ftp://bao:21".into());
            }),
            "http:// or https://",
        ),
        (
            Box::new(|a| {
                base(a);
                a.archive_mount = "../sys".into();
            }),
            "mount",
        ),
        (
            Box::new(|a| {
                base(a);
                a.archive_cacert = Some("/nonexistent/ca.pem".into());
            }),
            "TENANT_VAULT_ARCHIVE_CACERT",
        ),
    ];
    for (edit, expected) in cases {
        let err = with(&*edit).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(expected), "{text} should name {expected}");
        assert!(!text.contains("the-secret-id-value") && !text.contains("file-secret-id"));
    }
    // The _FILE variant works alone.
    assert!(with(&|a| {
        base(a);
        a.archive_secret_id = None;
        a.archive_secret_id_file = Some(secret_file.clone());
    })
    .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_infisical_latency_and_its_breaker() {
    let infisical =
        common::TestInfisical::start(&[("/tenants/acme", "FROM_INFISICAL", "infisical-value")])
            .await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let acme = app.tenant("acme").await;
    let res = app.get_secret("acme", "FROM_INFISICAL", &acme).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.headers["x-secret-source"], "infisical");
    // Infisical down: the breaker opens and the gauge says so.
    infisical.faults(json!({"down": true}));
    for _ in 0..8 {
        app.get_secret("acme", "NOT_THERE", &acme).await;
    }
    let text = app.call(Method::GET, "/metrics", None, None).await.text;
    assert!(
        text.contains("tenant_vault_infisical_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("tenant_vault_infisical_request_duration_seconds_count"));
    assert!(
        text.contains("tenant_vault_breaker_state{dependency=\"infisical\"} 2"),
        "{text}"
    );
    assert!(!text.contains("infisical-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_init_command_writes_credentials_that_log_in() {
    use std::os::unix::fs::PermissionsExt;
    let bao = TestBao::start(Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("root-token");
    std::fs::write(&token_file, bao.bao.root_token.expose()).unwrap();
    let (role_file, secret_file) = (dir.path().join("role-id"), dir.path().join("secret-id"));
    let url = bao.bao.url();
    let args = [
        "archive",
        "init",
        "--addr",
        url.as_str(),
        "--token-file",
        token_file.to_str().unwrap(),
        "--mount",
        "cold",
        "--role-id-file",
        role_file.to_str().unwrap(),
        "--secret-id-file",
        secret_file.to_str().unwrap(),
    ];
    let (ok, out, err) = common::run_binary(&args, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("KV v2 mount cold (created)"), "{err}");
    for f in [&role_file, &secret_file] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let secret_id = std::fs::read_to_string(&secret_file).unwrap();
    assert!(!out.contains(&secret_id) && !err.contains(&secret_id));
    // The files are what serve reads with the _FILE settings; they log in.
    let client = tenant_vault::app::archive_client(&ArchiveArgs {
        archive_addr: Some(url.clone()),
        archive_mount: "cold".into(),
        archive_role_id_file: Some(role_file.clone()),
        archive_secret_id_file: Some(secret_file.clone()),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let info = client.token_info().await.unwrap();
    assert!(info.policies.iter().any(|p| p == "tenant-vault-archive"));
    let (_, mounts) = bao.root(RMethod::GET, "sys/mounts").await;
    assert_eq!(
        mounts["data"]["cold/"]["options"]["version"], "2",
        "{mounts}"
    );

    // Again: the mount is reused; printed credentials this time.
    let (ok, out, err) = common::run_binary(
        &[
            "archive",
            "init",
            "--addr",
            &url,
            "--token-file",
            token_file.to_str().unwrap(),
            "--mount",
            "cold",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(err.contains("(already there)"), "{err}");
    assert!(
        out.contains("TENANT_VAULT_ARCHIVE_ROLE_ID=")
            && out.contains("TENANT_VAULT_ARCHIVE_SECRET_ID=")
    );

    // Bad input: no token, a wrong token, a bad mount name, a mount of another kind.
    let (ok, _, err) = common::run_binary(&["archive", "init", "--addr", &url], &[]);
    assert!(!ok && err.contains("BAO_TOKEN"), "{err}");
    let (ok, _, err) = common::run_binary(
        &["archive", "init", "--addr", &url],
        &[("BAO_TOKEN", "s.not-a-real-token-do-not-print")],
    );
    assert!(!ok && err.contains("permission denied"), "{err}");
    assert!(!err.contains("not-a-real-token-do-not-print"));
    let (ok, _, err) = common::run_binary(
        &[
            "archive",
            "init",
            "--addr",
            &url,
            "--token-file",
            token_file.to_str().unwrap(),
            "--mount",
            "../sys",
        ],
        &[],
    );
    assert!(!ok && err.contains("mount"), "{err}");
    let (ok, _, err) = common::run_binary(
        &[
            "archive",
            "init",
            "--addr",
            &url,
            "--token-file",
            token_file.to_str().unwrap(),
            "--mount",
            "sys",
        ],
        &[],
    );
    assert!(!ok && err.contains("not KV version 2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_archive_runs_openbao_and_archives() {
    let (_pool, db_url) = common::fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-vault"))
        .args(["dev", "--archive", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("DATABASE_URL", &db_url)
        .env_remove("INFISICAL_SITE_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    let _kill = Kill(child.id());
    let env_file = dir.path().join("dev.env");
    eventually("dev --archive writes dev.env", || async {
        env_file.exists()
    })
    .await;
    let env: std::collections::HashMap<String, String> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let bao_addr = env["TENANT_VAULT_ARCHIVE_ADDR"].clone();
    assert_eq!(env["TENANT_VAULT_ARCHIVE_MOUNT"], MOUNT);
    assert!(!env["TENANT_VAULT_ARCHIVE_SECRET_ID"].is_empty());
    let (addr, admin) = (&env["TENANT_VAULT_ADDR"], &env["TENANT_VAULT_ADMIN_TOKEN"]);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{addr}/v1/admin/tenants"))
        .bearer_auth(admin)
        .json(&json!({"slug": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = http
        .post(format!("{addr}/v1/admin/tenants/acme/tokens"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    for n in 1..=11 {
        let r = http
            .put(format!("{addr}/v1/tenants/acme/secrets/K"))
            .bearer_auth(&token)
            .json(&json!({"value": value(n)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The server's own worker archives version 1 (woken by the write).
    let url = format!("{addr}/v1/tenants/acme/secrets/K?version=1");
    eventually("version 1 is read from the archive", || async {
        let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
        r.headers()
            .get("x-secret-source")
            .and_then(|v| v.to_str().ok())
            == Some("archive")
    })
    .await;
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["value"],
        value(1)
    );
    let audit = std::fs::read_to_string(dir.path().join("openbao/audit.log")).unwrap();
    assert!(audit.contains(&format!("{MOUNT}/data/tenants/acme/K")));

    // Ctrl-C stops tenant-vault and OpenBao.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dev did not stop on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let down = http.get(format!("{bao_addr}/v1/sys/health")).send().await;
    assert!(down.is_err(), "OpenBao still answers after dev stopped");
}

/// Backends of this test's database waiting on a lock whose statement contains `needle`.
async fn lock_waiters(app: &TestApp, needle: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
         where datname = current_database() and wait_event_type = 'Lock'
           and position($1 in query) > 0",
    )
    .bind(needle)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// The interleaving behind the once-seen "unopenable outbox version" (docs/security.md):
/// a secret is deleted while a re-encryption batch that moved its rows to the new data key
/// is not yet committed, and the job destroys the old key before the delete commits. The
/// batch is held open by a lock on the new key's row (its last statement counts encryptions
/// there); the delete runs the service's own statements by hand so it can be held open
/// until the old key is destroyed. Copied from a snapshot taken before the batch committed,
/// the outbox would name the destroyed key and the version could never be archived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_reencryption_archives_every_version() {
    use tenant_vault::domain::{SecretKey, TenantId};
    use tenant_vault::store;

    logs();
    let mut bao = TestBao::start(Duration::from_secs(3600)).await;
    let app = TestApp::with_archive(&bao, service_args(60)).await;
    let acme = app.tenant("acme").await;
    write_versions(&app, &acme, "K", 1..=2).await;
    let tenant = TenantId(
        sqlx::query_scalar("select id from tenants where slug = 'acme' and deleted_at is null")
            .fetch_one(&app.pool)
            .await
            .unwrap(),
    );
    let key = SecretKey::parse("K").unwrap();
    let old_key: uuid::Uuid =
        sqlx::query_scalar("select id from data_keys where tenant_id = $1 and state = 'active'")
            .bind(tenant.0)
            .fetch_one(&app.pool)
            .await
            .unwrap();

    // Keep the background re-encryption worker out until the new key's row is held.
    let mut hold_job = app.pool.begin().await.unwrap();
    assert!(store::reencryption::try_lock(&mut hold_job, tenant)
        .await
        .unwrap());
    let res = app
        .call(
            Method::POST,
            "/v1/admin/tenants/acme/data-key/rotate",
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let new_key: uuid::Uuid =
        sqlx::query_scalar("select id from data_keys where tenant_id = $1 and state = 'active'")
            .bind(tenant.0)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_ne!(new_key, old_key);
    let mut hold_new_key = app.pool.begin().await.unwrap();
    // `no key update`: the batch's own writes still take key-share locks on the row (the
    // foreign key); only its final count of encryptions waits.
    sqlx::query("select 1 from data_keys where id = $1 for no key update")
        .bind(new_key)
        .execute(&mut *hold_new_key)
        .await
        .unwrap();
    hold_job.commit().await.unwrap();

    // A batch (this call's or the background worker's) moves both ciphertexts, current and
    // kept, and waits, uncommitted, on the key row.
    let vault = app.vault.clone();
    let job = tokio::spawn(async move { vault.reencrypt_tenant(tenant, &|_| {}).await });
    eventually(
        "the re-encryption batch waits to count its encryptions",
        || async { lock_waiters(&app, "update data_keys set encryption_count").await == 1 },
    )
    .await;

    // The delete's archive step runs now, while the batch is open.
    let pool = app.runtime_pool.clone();
    let queue_key = key.clone();
    let delete = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let queued = store::archive::queue_deleted(&mut tx, tenant, &queue_key)
            .await
            .unwrap();
        (tx, queued)
    });
    eventually(
        "the delete's archive step has run or waits on the batch",
        || async { delete.is_finished() || lock_waiters(&app, "for update").await >= 1 },
    )
    .await;

    // The batch commits; the job's next pass finds the old key unreferenced and destroys it,
    // all while the delete is still open.
    hold_new_key.commit().await.unwrap();
    // (The background worker may run the batches instead of this call; either way the call
    // returns once nothing is left under the old key.)
    job.await.unwrap().unwrap();
    let state: String = sqlx::query_scalar("select state::text from data_keys where id = $1")
        .bind(old_key)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "destroyed");
    let (mut tx, queued) = delete.await.unwrap();
    assert_eq!(queued, 2, "the current value and the kept version");
    assert_eq!(
        store::secrets::delete(&mut *tx, tenant, &key)
            .await
            .unwrap(),
        Some(2)
    );
    tx.commit().await.unwrap();

    // Every queued version names a key that still exists, so both reach OpenBao intact.
    assert_eq!(
        count(
            &app,
            &format!("select count(*) from archive_outbox where data_key_id = '{old_key}'")
        )
        .await,
        0,
        "the outbox names the destroyed data key"
    );
    drain(&app).await;
    for n in 1..=2 {
        let (status, body) = bao
            .root(
                RMethod::GET,
                &format!("{MOUNT}/data/tenants/acme/K?version={n}"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["data"]["value"], value(n));
        assert_eq!(body["data"]["data"]["tenant_vault_version"], n);
    }
    bao.bao.stop().await;
}
