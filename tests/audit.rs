//! Issue 10: least privilege (the runtime role's rights, `db grant`), the keyed audit chain
//! and its checkpoints (`audit verify` finds each kind of tampering and names the row),
//! reading the trail (`GET /v1/admin/audit`, `audit export`), and strict audit mode.

mod common;

use axum::http::{Method, StatusCode};
use common::{fresh_database, run_binary, service_args, url_as, TestApp, RUNTIME_ROLE};
use serde_json::{json, Value};
use sqlx::PgPool;
use tenant_vault::audit::{
    chain_hash, AuditAction, AuditEvent, AuditOutcome, FoundCheckpoint, VerifyError,
};

/// An app with a few audited reads and writes; returns it and acme's token.
async fn busy_app() -> (TestApp, String) {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    for i in 0..3 {
        let res = app
            .put_secret("acme", "K", &acme, json!({"value": format!("audit-v{i}")}))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        app.get_secret("acme", "K", &acme).await;
    }
    app.flush_audit().await;
    (app, acme)
}

async fn ids(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("select id from audit_events order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// A checkpoint written now, as the writer does every interval.
async fn checkpoint(app: &TestApp) -> Vec<FoundCheckpoint> {
    let cp = app
        .vault
        .audit()
        .checkpoint_now()
        .await
        .unwrap()
        .expect("the table has rows");
    vec![FoundCheckpoint {
        source: "test".into(),
        checkpoint: cp,
    }]
}

/// As a superuser with the append-only triggers off: what an attacker with the database
/// (not the audit key) can do.
async fn tamper(pool: &PgPool, sql: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("alter table audit_events disable trigger user")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut *tx).await.unwrap();
    sqlx::query("alter table audit_events enable trigger user")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

type Row = (
    i64,
    chrono::DateTime<chrono::Utc>,
    Option<uuid::Uuid>,
    Option<uuid::Uuid>,
    Option<String>,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<String>,
);

fn event_of(r: &Row) -> AuditEvent {
    let text = |s: &str| Value::String(s.to_owned());
    AuditEvent {
        occurred_at: r.1,
        token_id: r.2,
        tenant_id: r.3,
        tenant_slug: r.4.clone(),
        action: serde_json::from_value(text(&r.5)).unwrap(),
        secret_key: r.6.clone(),
        outcome: serde_json::from_value(text(&r.7)).unwrap(),
        request_id: r.8.clone(),
        source: r.9.clone(),
        route: r.10.clone(),
        count: r.11,
        actor: r.12.clone(),
        subject: r.13.clone(),
    }
}

/// Rewrites every chain value with plain SHA-256 (the unkeyed formula anyone can compute).
async fn recompute_without_key(pool: &PgPool, set_version_1: bool) {
    let rows: Vec<Row> = sqlx::query_as(
        "select id, occurred_at, token_id, tenant_id, tenant_slug, action, secret_key, outcome,
                request_id, source, route, count, actor, subject from audit_events order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("alter table audit_events disable trigger user")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut prev = vec![0u8; 32];
    for r in &rows {
        let hash = chain_hash(&prev, &event_of(r));
        sqlx::query(
            "update audit_events set prev_hash = $2, hash = $3,
                    chain_version = case when $4 then 1 else chain_version end where id = $1",
        )
        .bind(r.0)
        .bind(&prev)
        .bind(&hash)
        .bind(set_version_1)
        .execute(&mut *tx)
        .await
        .unwrap();
        prev = hash;
    }
    sqlx::query("alter table audit_events enable trigger user")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_clean_chain_verifies_and_is_keyed() {
    let (app, _) = busy_app().await;
    let cps = checkpoint(&app).await;
    let report = app.vault.verify_audit(&cps).await.unwrap();
    let n = ids(&app.pool).await.len() as u64;
    assert_eq!(report.rows, n);
    assert_eq!(report.keyed_rows, n, "every new row is HMAC-keyed");
    assert_eq!(report.checkpoints_checked, 1);
    // The checkpoint also went to the data dir's file.
    let file = std::fs::read_to_string(app.data_dir.path().join("audit-checkpoint.json")).unwrap();
    let on_disk: tenant_vault::audit::Checkpoint = serde_json::from_str(&file).unwrap();
    assert_eq!(on_disk, cps[0].checkpoint);
    assert!(on_disk.keyed);
}

/// Two writers (two replicas) appending to one table at once, in many small batches: each
/// append reads the chain's head only once it holds the chain lock, so the two never fork
/// the chain. (Checked to fail when the head is read before the lock is taken.)
#[tokio::test]
async fn two_writers_appending_at_once_keep_one_chain() {
    let (app, _) = busy_app().await;
    let before = ids(&app.pool).await.len();
    let mine = app.vault.audit().clone();
    let journal = tempfile::tempdir().unwrap();
    let (other, _task) = tenant_vault::audit::spawn_writer(
        app.pool.clone(),
        tenant_vault::audit::WriterSettings {
            journal: journal.path().join("audit-journal.jsonl"),
            mode: tenant_vault::audit::AuditMode::Batched,
            key: mine.chain_key().clone(),
            checkpoint_every: std::time::Duration::from_secs(3600),
            checkpoints: Vec::new(),
        },
    );
    const ROUNDS: usize = 60;
    const PER_ROUND: usize = 5;
    let append = |sink: tenant_vault::audit::AuditSink, who: &'static str| async move {
        for round in 0..ROUNDS {
            for i in 0..PER_ROUND {
                let mut e = AuditEvent::new(AuditAction::SecretRead, AuditOutcome::Success);
                e.request_id = Some(format!("{who}-{round}-{i}"));
                sink.record(e);
            }
            sink.flush().await;
        }
    };
    tokio::join!(append(mine, "a"), append(other, "b"));
    let report = app.vault.verify_audit(&[]).await.unwrap();
    let n = ids(&app.pool).await.len();
    assert_eq!(
        n,
        before + 2 * ROUNDS * PER_ROUND,
        "every event is in the table"
    );
    assert_eq!(report.rows, n as u64);
    // The writers number their rows under the chain lock: one run of ids, in chain order.
    let numbered: Vec<i64> = (1..=n as i64).collect();
    assert_eq!(ids(&app.pool).await, numbered);
}

/// Ids come from the chain's writer (migration 0009): a row that brings none is refused,
/// rather than taking one from a sequence out of chain order.
#[tokio::test]
async fn a_row_without_an_id_is_refused() {
    let (app, _) = busy_app().await;
    let before = ids(&app.pool).await;
    let err = sqlx::query(
        "insert into audit_events (occurred_at, action, outcome, prev_hash, hash)
         values (now(), 'secret.read', 'success', $1, $1)",
    )
    .bind(vec![0u8; 32])
    .execute(&app.pool)
    .await
    .unwrap_err();
    let code = err.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("23502"), "not-null violation: {err}");
    assert_eq!(ids(&app.pool).await, before);
}

#[tokio::test]
async fn an_edited_row_is_named() {
    let (app, _) = busy_app().await;
    let cps = checkpoint(&app).await;
    let id = ids(&app.pool).await[3];
    tamper(
        &app.pool,
        &format!("update audit_events set outcome = 'not_found' where id = {id}"),
    )
    .await;
    let err = app.vault.verify_audit(&cps).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::EditedRow { id: at } if at == id),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("row {id}")), "{err}");
}

#[tokio::test]
async fn a_deleted_middle_row_is_named() {
    let (app, _) = busy_app().await;
    let cps = checkpoint(&app).await;
    let all = ids(&app.pool).await;
    let (before, gone, after) = (all[2], all[3], all[4]);
    tamper(
        &app.pool,
        &format!("delete from audit_events where id = {gone}"),
    )
    .await;
    let err = app.vault.verify_audit(&cps).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::MissingRows { after: a, id } if a == before && id == after),
        "{err}"
    );
}

#[tokio::test]
async fn a_cut_tail_shows_against_the_checkpoint() {
    let (app, _) = busy_app().await;
    let cps = checkpoint(&app).await;
    let all = ids(&app.pool).await;
    let last_kept = all[all.len() - 3];
    tamper(
        &app.pool,
        &format!("delete from audit_events where id > {last_kept}"),
    )
    .await;
    // The remaining rows still chain: only the checkpoint shows the cut.
    assert!(app.vault.verify_audit(&[]).await.is_ok());
    let err = app.vault.verify_audit(&cps).await.unwrap_err();
    assert!(
        matches!(&err, VerifyError::CutTail { last_id, checkpoint_id, .. }
            if *last_id == last_kept && checkpoint_id == all.last().unwrap()),
        "{err}"
    );
    assert!(err.to_string().contains("tail was cut"), "{err}");
}

#[tokio::test]
async fn truncate_is_refused_and_a_truncated_table_shows() {
    let (app, _) = busy_app().await;
    let cps = checkpoint(&app).await;
    // Even a superuser's TRUNCATE meets the statement trigger.
    let err = sqlx::query("truncate audit_events")
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    tamper(&app.pool, "truncate audit_events").await;
    let err = app.vault.verify_audit(&cps).await.unwrap_err();
    assert!(matches!(err, VerifyError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[tokio::test]
async fn a_chain_recomputed_without_the_key_is_caught() {
    let (app, _) = busy_app().await;
    let cps = checkpoint(&app).await;
    let first = ids(&app.pool).await[0];
    // Edit a row, then recompute every chain value with plain SHA-256.
    let id = ids(&app.pool).await[4];
    tamper(
        &app.pool,
        &format!("update audit_events set secret_key = 'OTHER' where id = {id}"),
    )
    .await;
    recompute_without_key(&app.pool, false).await;
    let err = app.vault.verify_audit(&[]).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::RecomputedWithoutKey { id } if id == first),
        "{err}"
    );
    // Marking the rows unkeyed (chain version 1) as well: the checkpoint knows better.
    recompute_without_key(&app.pool, true).await;
    let err = app.vault.verify_audit(&cps).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::Downgraded { id, .. } if id == first),
        "{err}"
    );
}

/// Rows from before the audit key (plain SHA-256, chain version 1) still verify, and the
/// keyed rows continue their chain; an unkeyed row after keyed ones does not.
#[tokio::test]
async fn legacy_unkeyed_rows_still_verify() {
    let (pool, db_url) = fresh_database().await;
    let mut prev = vec![0u8; 32];
    for i in 0..3 {
        let mut e = AuditEvent::new(AuditAction::SecretRead, AuditOutcome::Success);
        e.tenant_slug = Some("legacy".into());
        e.secret_key = Some(format!("OLD_{i}"));
        let hash = chain_hash(&prev, &e);
        sqlx::query(
            "insert into audit_events (id, occurred_at, tenant_slug, action, secret_key,
                                       outcome, prev_hash, hash)
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(i64::from(i) + 1)
        .bind(e.occurred_at)
        .bind(&e.tenant_slug)
        .bind(e.action.as_str())
        .bind(&e.secret_key)
        .bind(e.outcome.as_str())
        .bind(&prev)
        .bind(&hash)
        .execute(&pool)
        .await
        .unwrap();
        prev = hash;
    }
    let app = TestApp::on_database(pool, db_url, service_args(60)).await;
    app.tenant("acme").await;
    let cps = checkpoint(&app).await;
    let report = app.vault.verify_audit(&cps).await.unwrap();
    assert_eq!(report.rows - report.keyed_rows, 3);
    assert!(report.keyed_rows >= 2);
    assert_eq!(
        cps[0].checkpoint.keyed_from_id,
        Some(ids(&app.pool).await[3])
    );
    // A legacy row edited is still caught.
    let id = ids(&app.pool).await[1];
    tamper(
        &app.pool,
        &format!("update audit_events set secret_key = 'X' where id = {id}"),
    )
    .await;
    let err = app.vault.verify_audit(&cps).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::EditedRow { id: at } if at == id),
        "{err}"
    );
}

/// The audit key is wrapped by the master key and re-wrapped by its rotation: the chain
/// keeps verifying across a rotation and a restart.
#[tokio::test]
async fn the_audit_key_survives_master_key_rotation() {
    let (app, acme) = busy_app().await;
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    app.flush_audit().await;
    let version: i32 =
        sqlx::query_scalar("select master_key_version from internal_keys where purpose = 'audit'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(version, 2, "re-wrapped under the new master key");
    let restarted = app.another_instance().await;
    restarted.get_secret("acme", "K", &acme).await;
    restarted.flush_audit().await;
    let cps = checkpoint(&restarted).await;
    let report = restarted.vault.verify_audit(&cps).await.unwrap();
    assert_eq!(report.rows, ids(&app.pool).await.len() as u64);
}

#[tokio::test]
async fn the_runtime_role_cannot_change_the_audit_trail_or_the_schema() {
    let (app, _) = busy_app().await;
    let rt = &app.runtime_pool;
    let who: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(rt)
        .await
        .unwrap();
    assert_eq!(who, RUNTIME_ROLE);
    // It reads and appends (the vault runs on it), but changes nothing.
    let n: i64 = sqlx::query_scalar("select count(*) from audit_events")
        .fetch_one(rt)
        .await
        .unwrap();
    assert!(n > 0);
    for sql in [
        "update audit_events set outcome = 'success'",
        "delete from audit_events",
        "truncate audit_events",
        "alter table audit_events disable trigger user",
        "insert into _sqlx_migrations (version, description, success, checksum, execution_time)
         values (999, 'x', true, '\\x00', 0)",
    ] {
        let err = sqlx::query(sql).execute(rt).await.unwrap_err().to_string();
        assert!(
            err.contains("permission denied") || err.contains("must be owner"),
            "{sql}: {err}"
        );
    }
    let tables: Vec<String> =
        sqlx::query_scalar("select tablename::text from pg_tables where schemaname = 'public'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(tables.len() >= 10, "{tables:?}");
    for t in &tables {
        let err = sqlx::query(&format!("alter table {t} add column intruder int"))
            .execute(rt)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be owner"), "{t}: {err}");
    }
    // Not a superuser, not the owner: serve would not warn.
    assert_eq!(tenant_vault::app::warn_if_privileged(rt).await, None);
    assert!(tenant_vault::app::warn_if_privileged(&app.pool)
        .await
        .is_some());
}

/// Tables added by later migrations get the runtime rights through default privileges.
#[tokio::test]
async fn tables_a_later_migration_adds_are_covered() {
    let (pool, db_url) = fresh_database().await;
    let owner = tenant_vault::store::connect(&url_as(&db_url, common::OWNER_ROLE), 1)
        .await
        .unwrap();
    sqlx::query("create table later_feature (id bigserial primary key, note text)")
        .execute(&owner)
        .await
        .unwrap();
    let rt = common::runtime_pool(&db_url).await;
    sqlx::query("insert into later_feature (note) values ('x')")
        .execute(&rt)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("select count(*) from later_feature")
        .fetch_one(&rt)
        .await
        .unwrap();
    assert_eq!(n, 1);
    drop(pool);
}

#[tokio::test]
async fn db_grant_prints_generic_grants_and_refuses_bad_names() {
    let (ok, out, err) = run_binary(
        &[
            "db",
            "grant",
            "--runtime-role",
            "vault_rt",
            "--owner-role",
            "vault_owner",
            "--print",
        ],
        &[],
    );
    assert!(ok, "{err}");
    for expected in [
        "grant select, insert, update, delete on all tables in schema public to \"vault_rt\";",
        "grant usage, select on all sequences in schema public to \"vault_rt\";",
        "revoke update, delete, truncate, references, trigger on public.audit_events from \"vault_rt\";",
        "alter default privileges for role \"vault_owner\" in schema public grant select, insert, update, delete on tables to \"vault_rt\";",
    ] {
        assert!(out.contains(expected), "missing {expected}\n{out}");
    }
    assert!(!out.contains("truncate on all tables"));
    let (ok, _, err) = run_binary(
        &[
            "db",
            "grant",
            "--runtime-role",
            "rt; drop table x",
            "--print",
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("invalid role name"), "{err}");
    // Applying needs a database; none given is a clear error, not a panic.
    let (ok, _, err) = run_binary(&["db", "grant", "--runtime-role", "vault_rt"], &[]);
    assert!(!ok);
    assert!(err.contains("DATABASE_URL"), "{err}");
}

#[tokio::test]
async fn admin_audit_listing_filters_and_pages() {
    let (app, acme) = busy_app().await;
    app.tenant("globex").await;
    app.get_secret("acme", "MISSING", &acme).await;
    app.flush_audit().await;
    let admin = app.admin_token.clone();
    let get = |q: String| {
        let app = &app;
        let admin = admin.clone();
        async move { app.get(&format!("/v1/admin/audit{q}"), &admin).await }
    };
    let res = get("?tenant=acme&action=secret.read".into()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let events = res.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 4, "{}", res.text);
    assert!(events
        .iter()
        .all(|e| e["tenant"] == "acme" && e["action"] == "secret.read"));
    assert!(!res.text.contains("audit-v"), "no values");
    let res = get("?tenant=acme&outcome=not_found".into()).await;
    let events = res.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["secret_key"], "MISSING");
    // Paging: newest first, two at a time, until next_before is null.
    let mut seen = Vec::new();
    let mut before = String::new();
    loop {
        let res = get(format!("?action=secret.write&limit=2{before}")).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        for e in res.body["events"].as_array().unwrap() {
            seen.push(e["id"].as_i64().unwrap());
        }
        match res.body["next_before"].as_i64() {
            Some(id) => before = format!("&before={id}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    // Time window: nothing before 2000, everything since then.
    let res = get("?until=2000-01-01T00:00:00Z".into()).await;
    assert_eq!(res.body["events"].as_array().unwrap().len(), 0);
    let res = get("?since=2000-01-01T00:00:00Z&limit=1000".into()).await;
    assert!(res.body["events"].as_array().unwrap().len() >= 10);
    // Bad input: a clear 400 each.
    for (q, code) in [
        ("?action=secret.steal", "invalid_query"),
        ("?outcome=maybe", "invalid_query"),
        ("?since=yesterday", "invalid_query"),
        ("?limit=0", "invalid_request"),
        ("?limit=5000", "invalid_request"),
        ("?before=abc", "invalid_query"),
        ("?tenant=../etc", "invalid_tenant"),
        ("?tennant=acme", "invalid_query"),
    ] {
        let res = get(q.into()).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{q}: {}", res.text);
        assert_eq!(res.code(), code, "{q}: {}", res.text);
    }
    // A tenant token is refused.
    let res = app.get("/v1/admin/audit", &acme).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // Reading the trail is itself audited.
    let rows = app.audit_rows().await;
    assert!(rows.iter().any(|r| r.0 == "audit.read" && r.1 == "success"));
}

#[tokio::test]
async fn export_and_verify_from_the_command_line() {
    let (app, _) = busy_app().await;
    checkpoint(&app).await;
    let url = url_as(&app.db_url, RUNTIME_ROLE);
    let dir = app.data_dir.path().to_str().unwrap().to_owned();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("TENANT_VAULT_MASTER_KEY_SOURCE", "dev-file"),
        ("TENANT_VAULT_DATA_DIR", dir.as_str()),
    ];
    let (ok, out, err) = run_binary(&["audit", "export", "--format", "jsonl"], &env);
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids = ids(&app.pool).await;
    assert!(lines.len() >= ids.len(), "{out}");
    assert_eq!(lines[0]["id"], ids[0]);
    assert!(lines.windows(2).all(|w| w[0]["hash"] == w[1]["prev_hash"]));
    assert!(lines.iter().all(|l| l["chain_version"] == 2));
    assert!(!out.contains("audit-v"), "no values");
    let (ok, out, err) = run_binary(&["audit", "verify"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("audit trail OK"), "{out}");
    let (ok, _, err) = run_binary(&["audit", "export", "--format", "csv"], &env);
    assert!(!ok);
    assert!(err.contains("jsonl"), "{err}");
    // Tampering makes the command fail, naming the row.
    let id = ids[2];
    tamper(
        &app.pool,
        &format!("update audit_events set outcome = 'denied' where id = {id}"),
    )
    .await;
    let (ok, _, err) = run_binary(&["audit", "verify"], &env);
    assert!(!ok);
    assert!(err.contains(&format!("row {id}")), "{err}");
}

/// Strict mode: the answer leaves only after its audit row is committed, so the row is
/// there the moment the response is (no flush, no waiting).
#[tokio::test]
async fn strict_mode_commits_the_audit_row_before_answering() {
    let mut service = service_args(60);
    service.audit.audit_mode = tenant_vault::config::AuditMode::Strict;
    let app = TestApp::with_service(service).await;
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "S", &acme, json!({"value": "strict-value"}))
        .await;
    for n in 1..=3 {
        let res = app.get_secret("acme", "S", &acme).await;
        assert_eq!(res.status, StatusCode::OK);
        let reads: i64 = sqlx::query_scalar(
            "select count(*) from audit_events where action = 'secret.read' and secret_key = 'S'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(reads, n, "read {n} is in the table when its answer arrives");
    }
    let res = app
        .call(Method::GET, "/v1/tenants/acme/secrets/S", Some(&acme), None)
        .await;
    assert_eq!(res.body["value"], "strict-value");
}

/// With Infisical as the key source, the checkpoint also lands beside the master key, where
/// a database writer cannot reach it; `audit verify` reads it back from there.
#[tokio::test]
async fn with_infisical_the_checkpoint_goes_to_the_master_key_folder() {
    let infisical = common::TestInfisical::start(&[]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    app.tenant("acme").await;
    let first = app.vault.audit().checkpoint_now().await.unwrap().unwrap();
    let read = || async {
        let secret = infisical
            .client()
            .get_secret("/tenant-vault", "AUDIT_CHECKPOINT", None)
            .await
            .unwrap()
            .expect("the checkpoint secret exists");
        serde_json::from_str::<tenant_vault::audit::Checkpoint>(secret.value.expose()).unwrap()
    };
    assert_eq!(read().await, first);
    // The next one replaces it in place.
    app.tenant("globex").await;
    let second = app.vault.audit().checkpoint_now().await.unwrap().unwrap();
    assert!(second.last_id > first.last_id);
    assert_eq!(read().await, second);
    // Both stores are read for verification and both match.
    let parts = tenant_vault::app::parts(
        &common::infisical_keys(app.data_dir.path()),
        &infisical.args,
    )
    .unwrap();
    let stores = tenant_vault::app::checkpoint_stores(app.data_dir.path(), &parts.source);
    let found = tenant_vault::app::load_checkpoints(&stores).await.unwrap();
    assert_eq!(found.len(), 2);
    let report = app.vault.verify_audit(&found).await.unwrap();
    assert_eq!(report.checkpoints_checked, 2);
}

/// `serve` checks for pending migrations with SELECT only: as the runtime role it starts
/// when there is nothing to do, and says what to do when there is.
#[tokio::test]
async fn the_runtime_role_skips_an_empty_migration_and_explains_a_pending_one() {
    let (pool, db_url) = fresh_database().await;
    let rt = common::runtime_pool(&db_url).await;
    tenant_vault::app::migrate_if_pending(&rt).await.unwrap();
    // One migration forgotten: the runtime role cannot apply it.
    sqlx::query("delete from _sqlx_migrations where version = 5")
        .execute(&pool)
        .await
        .unwrap();
    let err = tenant_vault::app::migrate_if_pending(&rt)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("1 migration(s) pending"), "{text}");
    assert!(text.contains("TENANT_VAULT_MIGRATE_DATABASE_URL"), "{text}");
}
