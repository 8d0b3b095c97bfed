//! `import infisical` and `init`, through the real binary against an in-process emulator:
//! 200 tenants move with equal counts, re-runs change nothing, bad names fail the run.

mod common;

use common::{fresh_database, TestInfisical, ENVIRONMENT};

fn run(args: &[&str], env: &[(String, String)]) -> (bool, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::run_binary(args, &env)
}

fn env_for(
    infisical: &TestInfisical,
    db_url: &str,
    data_dir: &std::path::Path,
) -> Vec<(String, String)> {
    vec![
        ("DATABASE_URL".into(), db_url.into()),
        (
            "INFISICAL_SITE_URL".into(),
            format!("http://{}", infisical.addr),
        ),
        ("INFISICAL_CLIENT_ID".into(), "test-client".into()),
        (
            "INFISICAL_CLIENT_SECRET".into(),
            "test-client-secret-0123456789".into(),
        ),
        ("INFISICAL_PROJECT_ID".into(), infisical.project.clone()),
        ("INFISICAL_ENVIRONMENT".into(), ENVIRONMENT.into()),
        (
            "TENANT_VAULT_DATA_DIR".into(),
            data_dir.display().to_string(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_then_import_two_hundred_tenants() {
    let mut secrets = Vec::new();
    for t in 0..200 {
        for k in 0..3 {
            secrets.push((
                format!("/tenants/tenant-{t:03}"),
                format!("KEY_{k}"),
                format!("value-{t}-{k}"),
            ));
        }
    }
    let refs: Vec<(&str, &str, &str)> = secrets
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let infisical = TestInfisical::start(&refs).await;
    let (pool, db_url) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&infisical, &db_url, dir.path());

    // init creates MASTER_ENCRYPTION_KEY_V1 in Infisical; a second init refuses.
    let (ok, out, err) = run(&["init"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("MASTER_ENCRYPTION_KEY_V1"), "{out}");
    let (ok, _, err) = run(&["init"], &env);
    assert!(!ok);
    assert!(err.contains("already initialised"), "{err}");

    // A dry run changes nothing.
    let (ok, out, err) = run(&["import", "infisical", "--dry-run"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("total (200 tenants)"), "{out}");
    let tenants: i64 = sqlx::query_scalar("select count(*) from tenants")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tenants, 0);

    let (ok, out, err) = run(&["import", "infisical"], &env);
    assert!(ok, "{err}\n{out}");
    let total = out.lines().find(|l| l.starts_with("total")).unwrap();
    let numbers: Vec<u64> = total
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // infisical, created, updated, unchanged, skipped, verified
    assert_eq!(numbers, [600, 600, 0, 0, 0, 600], "{total}");
    let (tenants, secrets): (i64, i64) = sqlx::query_as(
        "select (select count(*) from tenants), (select count(*) from company_secrets)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((tenants, secrets), (200, 600));

    // Re-running is idempotent; a changed value in Infisical becomes a new version.
    infisical
        .client()
        .update_secret("/tenants/tenant-007", "KEY_1", "changed")
        .await
        .unwrap();
    let (ok, out, err) = run(&["import", "infisical"], &env);
    assert!(ok, "{err}");
    let total = out.lines().find(|l| l.starts_with("total")).unwrap();
    let numbers: Vec<u64> = total
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers, [600, 0, 1, 599, 0, 600], "{total}");
    let (secrets, version): (i64, i32) = sqlx::query_as(
        "select (select count(*) from company_secrets),
                (select version from company_secrets s join tenants t on t.id = s.company_id
                 where t.slug = 'tenant-007' and s.secret_key = 'KEY_1')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((secrets, version), (600, 2));
    // Infisical still has everything (import never deletes).
    assert_eq!(
        infisical
            .client()
            .list_secrets("/tenants/tenant-007")
            .await
            .unwrap()
            .len(),
        3
    );

    // One tenant only.
    let (ok, out, _) = run(&["import", "infisical", "--tenant", "tenant-042"], &env);
    assert!(ok);
    assert!(out.contains("total (1 tenants)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_we_cannot_store_fail_the_import() {
    let infisical = TestInfisical::start(&[
        ("/tenants/acme", "GOOD", "g"),
        ("/tenants/acme", "has space", "s"),
        ("/tenants/Bad_Slug", "K", "v"),
    ])
    .await;
    let (_pool, db_url) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&infisical, &db_url, dir.path());
    assert!(run(&["init"], &env).0);
    let (ok, out, err) = run(&["import", "infisical"], &env);
    assert!(!ok, "a skipped key must fail the run: {out}");
    assert!(err.contains("did not verify"), "{err}");
    assert!(out.contains("MISMATCH"), "{out}");
    assert!(out.contains("skipped has space"), "{out}");
    assert!(out.contains("Bad_Slug"), "{out}");
    // The importable key was imported anyway, and never with a value in the output.
    assert!(!out.contains(" g\n") && !out.contains("\"g\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_adopts_an_existing_master_key() {
    let existing = tenant_vault::crypto::kdf::generate_master_key_text();
    let infisical =
        TestInfisical::start(&[("/tenant-vault", "MASTER_ENCRYPTION_KEY", existing.as_str())])
            .await;
    let (pool, db_url) = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let env = env_for(&infisical, &db_url, dir.path());
    let (ok, out, err) = run(&["init", "--adopt", "MASTER_ENCRYPTION_KEY"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("as MASTER_ENCRYPTION_KEY"), "{out}");
    let name: String =
        sqlx::query_scalar("select infisical_secret_name from master_keys where version = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(name, "MASTER_ENCRYPTION_KEY");
    // No _V1 was created alongside it.
    let v1 = infisical
        .client()
        .get_secret("/tenant-vault", "MASTER_ENCRYPTION_KEY_V1", None)
        .await
        .unwrap();
    assert!(v1.is_none());
    assert!(!out.contains(existing.as_str()) && !err.contains(existing.as_str()));
}
