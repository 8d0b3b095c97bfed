//! Faults under load with real processes (issue 11 item 6): clients read and write while
//! PostgreSQL restarts, Infisical rate-limits then is down, `tenant-vault rotate` is killed
//! with SIGKILL at every step, and the connection to PostgreSQL is black-holed. Scaled down
//! here (4 clients, short phases); `cargo bench --bench load -- --faults` runs 16 clients.
//! The scenarios and their checks live in tests/common/faults.rs.

mod common;

use std::time::Duration;

use common::faults::{self, Settings};

fn small() -> Settings {
    Settings {
        clients: 4,
        keys_per_client: 6,
        steady: Duration::from_millis(700),
        fault: Duration::from_millis(1500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_loses_no_acknowledged_write() {
    let counts = faults::pg_restart(&Settings {
        fault: Duration::from_secs(5),
        ..small()
    })
    .await;
    counts.assert_clean("postgres restart");
    assert!(counts.recovery.is_some());
    assert!(counts.ok > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infisical_429_then_down_serves_hits_and_fails_misses_fast() {
    let counts = faults::infisical_outage(&small()).await;
    counts.assert_clean("infisical 429, then down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_rotation_step_loses_nothing_and_the_next_rotation_succeeds() {
    let counts = faults::kill_rotations(&small(), 250).await;
    counts.assert_clean("rotate killed at every step");
    assert_eq!(
        counts.extra["processes killed"],
        tenant_vault::failpoint::steps::ALL.len().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_postgres_times_requests_out_and_the_pool_recovers() {
    // Longer than the request timeout, so a request that could hang would show.
    let settings = Settings {
        fault: faults::REQUEST_TIMEOUT + Duration::from_secs(2),
        ..small()
    };
    let counts = faults::black_hole(&settings).await;
    counts.assert_clean("postgres black-holed");
    assert!(counts.recovery.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_fail_point_is_reported_and_stops_nothing() {
    let app = common::TestApp::new().await;
    let data_dir = app.data_dir.path().display().to_string();
    let env = [
        ("DATABASE_URL", app.db_url.as_str()),
        ("TENANT_VAULT_MASTER_KEY_SOURCE", "dev-file"),
        ("TENANT_VAULT_DATA_DIR", data_dir.as_str()),
        (tenant_vault::failpoint::ENV, "after-sauce-write"),
    ];
    // Blocking is fine: the runtime's other thread keeps the app's tasks going.
    let (ok, _, err) = common::run_binary(&["rotate", "master-key"], &env);
    assert!(ok, "{err}");
    assert!(
        err.contains("after-sauce-write: no such step (steps: master-after-lock"),
        "{err}"
    );
}
