//! The database going away: cached reads keep being served (the hot path needs no database),
//! misses fail fast with 503, and audit events go to the journal and are replayed in order
//! when the database returns, so no access goes unrecorded.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{service_args, TestApp};
use serde_json::json;

#[tokio::test]
async fn cached_reads_survive_a_database_outage_and_are_journalled() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "K", &acme, json!({"value": "still-served"}))
        .await;
    assert_eq!(
        app.get_secret("acme", "K", &acme).await.headers["x-secret-source"],
        "database"
    );
    app.flush_audit().await;
    // The admin token's check is cached from here on (readyz details need it below).
    let res = app
        .admin_call(axum::http::Method::GET, "/readyz", None)
        .await;
    assert_eq!(res.body["database"], "ok");

    // The database disappears for this instance.
    app.runtime_pool.close().await;

    let res = app.get_secret("acme", "K", &acme).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.headers["x-secret-source"], "cache");
    assert_eq!(res.body["value"], "still-served");

    let started = Instant::now();
    let res = app.get_secret("acme", "NOT_CACHED", &acme).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
    assert_eq!(res.code(), "dependency_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5));
    let res = app
        .put_secret("acme", "K", &acme, json!({"value": "lost?"}))
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);

    let res = app
        .call(axum::http::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.body, serde_json::json!({"status": "not_ready"}));
    let res = app
        .admin_call(axum::http::Method::GET, "/readyz", None)
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.body["database"], "unreachable");

    // The reads above were journalled, in order, without values.
    app.flush_audit().await;
    let journal = app.data_dir.path().join("audit-journal.jsonl");
    let text = std::fs::read_to_string(&journal).expect("journal written");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("secret.read", "success"),
            ("secret.read", "unavailable"),
            ("secret.write", "unavailable"),
        ]
    );
    assert!(!text.contains("still-served") && !text.contains("lost?"));

    // The database comes back: a new writer (as after a restart) replays the journal first.
    let pool = tenant_vault::store::connect(&app.db_url, 2).await.unwrap();
    let key = app.vault.audit().chain_key().clone();
    let (sink, task) = tenant_vault::audit::spawn_writer(
        pool.clone(),
        tenant_vault::audit::WriterSettings {
            journal: journal.clone(),
            mode: Default::default(),
            key: key.clone(),
            checkpoint_every: std::time::Duration::from_secs(60),
            checkpoints: Vec::new(),
        },
    );
    sink.flush().await;
    assert!(!journal.exists(), "journal replayed and removed");
    let rows: Vec<(String, String)> =
        sqlx::query_as("select action, outcome from audit_events order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let tail: Vec<(&str, &str)> = rows[rows.len() - 3..]
        .iter()
        .map(|(a, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(tail, actions);
    let report = tenant_vault::audit::verify(&pool, key.as_ref(), &[])
        .await
        .unwrap();
    assert_eq!(report.rows as usize, rows.len());
    // Nothing was half-written by the failed PUT.
    let version: i32 =
        sqlx::query_scalar("select version from company_secrets where secret_key = 'K'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(version, 1);
    drop(sink);
    task.await.unwrap();
}

/// An app whose tenant `acme` has written `K` and read it once, with the audit flushed.
async fn app_after_one_audited_read() -> (TestApp, String) {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "K", &acme, json!({"value": "v"}))
        .await;
    app.get_secret("acme", "K", &acme).await;
    app.flush_audit().await;
    (app, acme)
}

#[tokio::test]
async fn requests_fail_when_audit_can_be_neither_stored_nor_journalled() {
    let (app, acme) = app_after_one_audited_read().await;
    // No database, and the journal path is a directory: nowhere to record.
    std::fs::create_dir_all(app.data_dir.path().join("audit-journal.jsonl")).unwrap();
    app.runtime_pool.close().await;
    app.get_secret("acme", "K", &acme).await; // recorded into the void: flips the switch
    app.flush_audit().await;
    let res = app.get_secret("acme", "K", &acme).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.text);
    assert!(res.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("audit"));
}

#[tokio::test]
async fn a_zero_ttl_disables_the_cache() {
    let app = TestApp::with_service(service_args(0)).await;
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "K", &acme, json!({"value": "v"}))
        .await;
    for _ in 0..3 {
        assert_eq!(
            app.get_secret("acme", "K", &acme).await.headers["x-secret-source"],
            "database"
        );
    }
}

#[tokio::test]
async fn another_replica_sees_writes_after_its_ttl() {
    let app = TestApp::with_service(service_args(1)).await;
    let other = app.another_instance().await;
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "K", &acme, json!({"value": "one"}))
        .await;
    assert_eq!(
        other.get_secret("acme", "K", &acme).await.body["value"],
        "one"
    );
    app.put_secret("acme", "K", &acme, json!({"value": "two"}))
        .await;
    // Within the TTL the other replica may still answer from its cache...
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // ...after it, it reads the new value.
    let res = other.get_secret("acme", "K", &acme).await;
    assert_eq!(res.body["value"], "two");
    assert_eq!(res.body["version"], 2);
}

/// The pool pings a connection only after it sat idle (not before every query, which cost a
/// round trip per read): one whose server process went away meanwhile is replaced, never
/// handed out broken.
#[tokio::test]
async fn a_pooled_connection_killed_while_idle_is_replaced_not_used() {
    let app = TestApp::new().await;
    let pool = tenant_vault::store::connect(&app.db_url, 1).await.unwrap();
    let first: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    // The superuser ends the pool's only connection while it sits idle in the pool.
    let ended: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(ended);
    // Past the idle threshold, the next query goes through: the ping found the dead
    // connection and the pool opened a new one.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("a dead idle connection must be replaced, not used");
    assert_ne!(first, second);
}

#[tokio::test]
async fn the_audit_writers_connection_ended_by_the_database_is_replaced_and_nothing_is_lost() {
    let (app, acme) = app_after_one_audited_read().await;
    let writer_backends = || async {
        // This test's database only: other tests' writers run on the same server.
        sqlx::query_scalar::<_, i32>(
            "select pid from pg_stat_activity
             where application_name = $1 and datname = current_database()",
        )
        .bind(tenant_vault::audit::AUDIT_WRITER_APPLICATION_NAME)
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    // Every batch so far went through one connection of the writer's own.
    let first = writer_backends().await;
    assert_eq!(first.len(), 1, "one audit writer connection: {first:?}");
    let reads = || async {
        let rows = app.audit_rows().await;
        rows.iter()
            .filter(|(action, _, tenant, _)| {
                action == "secret.read" && tenant.as_deref() == Some("acme")
            })
            .count()
    };
    assert_eq!(reads().await, 1);

    // The database ends it (a restart, an administrator, a proxy) between two batches.
    let ended: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(first[0])
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(ended);
    for _ in 0..3 {
        let res = app.get_secret("acme", "K", &acme).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    }
    // The batch that met the dead connection is journalled; the next one opens a new
    // connection and replays it first.
    app.flush_audit().await;
    app.flush_audit().await;
    assert!(
        !app.data_dir.path().join("audit-journal.jsonl").exists(),
        "journal replayed"
    );
    assert_eq!(reads().await, 4, "no read went unrecorded");
    let second = writer_backends().await;
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second[0], first[0], "a new connection, not the ended one");
    let key = app.vault.audit().chain_key().clone();
    let report = tenant_vault::audit::verify(&app.pool, key.as_ref(), &[])
        .await
        .unwrap();
    assert_eq!(report.rows as usize, app.audit_rows().await.len());
}
