//! Cache misses coalesced into one statement (`service::secret_reads`): every read gets its
//! own tenant's row, a caller that goes away takes no one else's answer with it, and a
//! database that is gone answers every read with 503's error.

mod common;

use std::sync::Arc;

use common::{eventually, runtime_pool, TestApp};
use serde_json::json;
use tenant_vault::domain::{SecretKey, TenantId};
use tenant_vault::service::secret_reads::SecretReads;
use tenant_vault::service::ServiceError;
use uuid::Uuid;

async fn tenant_id(app: &TestApp, slug: &str) -> TenantId {
    TenantId(
        sqlx::query_scalar("select id from tenants where slug = $1")
            .bind(slug)
            .fetch_one(&app.pool)
            .await
            .unwrap(),
    )
}

async fn row_id(app: &TestApp, tenant: TenantId, key: &str) -> Option<Uuid> {
    sqlx::query_scalar("select id from company_secrets where company_id = $1 and secret_key = $2")
        .bind(tenant.0)
        .bind(key)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_reads_answer_each_tenant_with_its_own_row_and_a_caller_that_left_takes_nothing()
{
    let app = TestApp::new().await;
    let (acme, globex) = (app.tenant("acme").await, app.tenant("globex").await);
    for (slug, token) in [("acme", &acme), ("globex", &globex)] {
        let res = app
            .put_secret(
                slug,
                "SHARED",
                token,
                json!({"value": format!("{slug}-shared")}),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
    let res = app
        .put_secret("acme", "ONLY_ACME", &acme, json!({"value": "acme-only"}))
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let tenants = [
        tenant_id(&app, "acme").await,
        tenant_id(&app, "globex").await,
    ];
    let keys = ["SHARED", "ONLY_ACME"];

    // Every read blocks behind a lock until all of them have queued, so they must coalesce.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("lock table company_secrets in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let reads = SecretReads::new(app.runtime_pool.clone());
    let n = 64;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (reads, tenant, key) = (reads.clone(), tenants[i % 2], keys[(i / 2) % 2]);
            tokio::spawn(async move {
                let row = reads.get(tenant, &SecretKey::parse(key).unwrap()).await;
                (tenant, key, row.map(|r| r.map(|r| r.id)))
            })
        })
        .collect();
    eventually("the first statements wait for the lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        waiting > 0
    })
    .await;
    // A quarter of the callers go away while their reads wait.
    for task in tasks.iter().step_by(4) {
        task.abort();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    lock.commit().await.unwrap();

    let mut answered = 0;
    for task in tasks {
        let Ok((tenant, key, row)) = task.await else {
            continue; // aborted
        };
        assert_eq!(
            row.expect("the read succeeds"),
            row_id(&app, tenant, key).await,
            "tenant {tenant} key {key}"
        );
        answered += 1;
    }
    assert_eq!(
        answered,
        n - n / 4,
        "every read whose caller stayed is answered"
    );
    // At most one statement per runner that started before the lock was seen, and one for
    // everything queued behind them; one per read would be 64.
    assert!(
        reads.statements() <= 5,
        "{} statements for {n} reads",
        reads.statements()
    );
}

#[tokio::test]
async fn every_coalesced_read_is_answered_503_when_the_database_is_gone() {
    let app = TestApp::new().await;
    app.tenant("acme").await;
    let acme = tenant_id(&app, "acme").await;
    let pool = runtime_pool(&app.db_url).await;
    let reads = SecretReads::new(pool.clone());
    let key = SecretKey::parse("ANY").unwrap();
    assert!(reads.get(acme, &key).await.unwrap().is_none());

    pool.close().await;
    // More reads than runners may run at once: a runner that failed gave its slot back.
    // A slot kept would leave the fifth read waiting for ever: a time limit turns that into
    // a failure.
    let reads = Arc::new(reads);
    let all_answered = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        for _ in 0..10 {
            let answers = futures::future::join_all((0..8).map(|_| reads.get(acme, &key))).await;
            for answer in answers {
                assert!(
                    matches!(answer, Err(ServiceError::Unavailable("the database"))),
                    "{answer:?}"
                );
            }
        }
    })
    .await;
    assert!(all_answered.is_ok(), "a read was never answered");
}
