//! The acceptance run: 1,000 tenants x 10 secrets. A master key rotation re-wraps
//! exactly 1,000 data keys and every secret reads back unchanged; doubling the secrets per
//! tenant leaves the re-wrap count the same; a data key rotation followed by the
//! re-encryption job leaves no secret under the old key; rollback restores an old value.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{service_args, TestApp};
use futures::StreamExt;
use tenant_vault::crypto::SecretValue;
use tenant_vault::domain::{SecretKey, TenantSlug};
use tenant_vault::service::{RequestContext, TenantRef, Vault};

const TENANTS: usize = 1000;
const SECRETS: usize = 10;
const PARALLEL: usize = 8;

async fn put_all(vault: &Arc<Vault>, tenants: &[TenantRef], from: usize, to: usize) {
    let ctx = RequestContext::default();
    futures::stream::iter(tenants.iter().enumerate())
        .for_each_concurrent(PARALLEL, |(t, tenant)| {
            let (vault, ctx) = (vault.clone(), ctx.clone());
            async move {
                for k in from..to {
                    let key = SecretKey::parse(&format!("KEY_{k}")).unwrap();
                    let value = SecretValue::new(format!("value-{t}-{k}"));
                    vault
                        .put_secret(&ctx, tenant, &key, value, None)
                        .await
                        .unwrap();
                }
            }
        })
        .await;
}

async fn check_all(vault: &Arc<Vault>, tenants: &[TenantRef], upto: usize) {
    check_from(vault, tenants, 0, upto).await
}

/// `tenants` are tenant numbers `first..`.
async fn check_from(vault: &Arc<Vault>, tenants: &[TenantRef], first: usize, upto: usize) {
    let ctx = RequestContext::default();
    futures::stream::iter(tenants.iter().enumerate().map(|(i, t)| (first + i, t)))
        .for_each_concurrent(PARALLEL, |(t, tenant)| {
            let (vault, ctx) = (vault.clone(), ctx.clone());
            async move {
                for k in 0..upto {
                    let key = SecretKey::parse(&format!("KEY_{k}")).unwrap();
                    let read = vault.get_secret(&ctx, tenant, &key).await.unwrap();
                    assert_eq!(read.secret.value.expose(), format!("value-{t}-{k}"));
                }
            }
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tenants_rotate_in_one_rewrap_per_data_key() {
    // Cache off: every check decrypts from the database.
    let app = TestApp::with_service(service_args(0)).await;
    let vault = app.vault.clone();
    let ctx = RequestContext::default();
    let mut tenants = Vec::with_capacity(TENANTS);
    for t in 0..TENANTS {
        let slug = TenantSlug::parse(&format!("company-{t}")).unwrap();
        let created = vault.create_tenant(&ctx, &slug, "c").await.unwrap();
        tenants.push(TenantRef {
            id: created.id,
            slug,
        });
    }
    put_all(&vault, &tenants, 0, SECRETS).await;

    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["rewrapped_data_keys"], TENANTS);
    check_all(&vault, &tenants, SECRETS).await;

    put_all(&vault, &tenants, SECRETS, 2 * SECRETS).await;
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(
        res.body["rewrapped_data_keys"], TENANTS,
        "same count with twice the secrets"
    );
    let restarted = app.another_instance().await;
    check_all(&restarted.vault, &tenants, 2 * SECRETS).await;

    // Data key rotation of one tenant, then the job: nothing left under the old key.
    let res = app
        .admin_post("/v1/admin/tenants/company-7/data-key/rotate")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    vault.reencrypt_pending().await.unwrap();
    let under_old: i64 = sqlx::query_scalar(
        "select count(*) from company_secrets c join data_keys d on d.id = c.data_key_id
         where d.state <> 'active'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(under_old, 0);
    check_from(&vault, &tenants[7..8], 7, 2 * SECRETS).await;

    // Rollback restores an old value.
    let key = SecretKey::parse("KEY_0").unwrap();
    vault
        .put_secret(
            &ctx,
            &tenants[7],
            &key,
            SecretValue::new("changed".into()),
            None,
        )
        .await
        .unwrap();
    let v = vault
        .rollback_secret(&ctx, &tenants[7], &key, 1)
        .await
        .unwrap();
    assert_eq!(v, 3);
    let read = vault.get_secret(&ctx, &tenants[7], &key).await.unwrap();
    assert_eq!(read.secret.value.expose(), "value-7-0");
}
