//! Tests of `InfisicalClient` against the emulator: reads, writes and lists, argument checks
//! before any request, login and token renewal, retries and Retry-After, the circuit breaker,
//! timeouts, malformed answers, size limits, connection failures, redirects and the mapping of
//! server answers to `InfisicalError`. The emulator's own fidelity is tested in
//! `infisical_contract.rs`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::infisical::{
    identity, seed, start, CLIENT_ID, CLIENT_SECRET, MASTER, OTHER_SECRET, PROJECT, SHORT_ID,
    STRIPE, VIEWER_ID,
};
use serde_json::json;
use tenant_vault::domain::TenantSlug;
use tenant_vault::infisical::emulator::{Role, SeedProject};
use tenant_vault::infisical::{
    tenant_folder, BreakerState, Emulator, EmulatorConfig, InfisicalClient, InfisicalConfig,
    InfisicalError, Seed,
};

#[tokio::test]
async fn client_reads_writes_and_lists() {
    let env = start().await;
    let c = env.client();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    let s = c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.expose(), STRIPE);
    assert_eq!(s.version, 1);
    assert_eq!(s.key, "STRIPE_KEY");
    assert!(
        c.get_secret(&acme, "NOPE", None).await.unwrap().is_none(),
        "secret 404"
    );
    assert!(
        c.get_secret("/tenants/nobody", "STRIPE_KEY", None)
            .await
            .unwrap()
            .is_none(),
        "folder 404"
    );
    let master = c
        .get_secret("/tenant-vault", "MASTER_ENCRYPTION_KEY_V1", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(master.value.expose(), MASTER);

    // A new tenant: folder first (idempotent), then secrets.
    let hooli = tenant_folder(&TenantSlug::parse("hooli").unwrap());
    assert!(matches!(
        c.create_secret(&hooli, "K", "v").await,
        Err(InfisicalError::FolderNotFound(_))
    ));
    c.ensure_folder_path(&hooli).await.unwrap();
    let f1 = c.create_folder("/tenants", "hooli").await.unwrap();
    let f2 = c.create_folder("/tenants", "hooli").await.unwrap();
    assert_eq!(f1, f2, "create_folder is idempotent");
    let created = c.create_secret(&hooli, "API_KEY", "  one  ").await.unwrap();
    assert_eq!(
        created.value.expose(),
        "one",
        "the stored (trimmed) value is returned"
    );
    assert!(matches!(
        c.create_secret(&hooli, "API_KEY", "x").await,
        Err(InfisicalError::AlreadyExists)
    ));
    let updated = c.update_secret(&hooli, "API_KEY", "two").await.unwrap();
    assert_eq!(updated.version, 2);
    let v1 = c
        .get_secret(&hooli, "API_KEY", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v1.version, v1.value.expose()), (1, "one"));
    assert!(c
        .get_secret(&hooli, "API_KEY", Some(7))
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        c.update_secret(&hooli, "MISSING", "x").await,
        Err(InfisicalError::NotFound)
    ));

    let listed = c.list_secrets(&acme).await.unwrap();
    let mut keys: Vec<_> = listed.iter().map(|s| s.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["SENDGRID_TOKEN", "STRIPE_KEY"]);
    assert!(listed
        .iter()
        .all(|s| s.secret_path.as_deref() == Some("/tenants/acme")));
    assert!(c.list_secrets("/tenants/nobody").await.unwrap().is_empty());
    let all = c.list_secrets_recursive("/tenants").await.unwrap();
    assert_eq!(all.len(), 4);
    let mut folders: Vec<_> = c
        .list_folders("/tenants")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    folders.sort();
    assert_eq!(folders, ["acme", "globex", "hooli", "initech"]);
    assert!(c.delete_secret(&hooli, "API_KEY").await.unwrap());
    assert!(!c.delete_secret(&hooli, "API_KEY").await.unwrap());
    assert_eq!(env.emu().stats().logins, 1, "one login for the whole run");
}

#[tokio::test]
async fn client_refuses_paths_and_names_that_could_escape_before_any_request() {
    let env = start().await;
    let c = env.client();
    for slug in [
        "..",
        "acme/../../tenant-vault",
        "%2e%2e",
        "acme%2f..",
        "",
        "ACME",
    ] {
        assert!(TenantSlug::parse(slug).is_err(), "{slug:?}");
    }
    for path in [
        "/tenants/acme/../../tenant-vault",
        "/tenants/%2e%2e",
        "tenants/acme",
        "/tenants//acme",
    ] {
        assert!(matches!(
            c.get_secret(path, "MASTER_ENCRYPTION_KEY_V1", None).await,
            Err(InfisicalError::InvalidArgument(_))
        ));
    }
    for name in ["../MASTER", "A/B", "%2e%2e", ".env", ""] {
        assert!(matches!(
            c.get_secret("/tenants/acme", name, None).await,
            Err(InfisicalError::InvalidArgument(_))
        ));
    }
    assert_eq!(
        env.emu().stats().api_requests,
        0,
        "nothing reached Infisical"
    );
}

#[tokio::test]
async fn client_logs_in_again_when_the_server_expires_its_token() {
    let env = start().await;
    let c = env.client();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    // Server-side expiry mid-run: the held token now gets 401.
    env.emu().expire_all_tokens();
    let s = c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.expose(), STRIPE);
    assert_eq!(env.emu().stats().logins, 2);
}

#[tokio::test]
async fn client_logs_in_again_after_403_token_error() {
    let env = start().await;
    let c = env.client();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    // A restarted emulator has a new signing key: the old token fails its signature check.
    let addr: SocketAddr = env.base.trim_start_matches("http://").parse().unwrap();
    env.handle.shutdown().await;
    let emu = Emulator::new(EmulatorConfig {
        seed: seed(),
        ..Default::default()
    });
    let (_, handle) = loop {
        match emu.clone().spawn(addr).await {
            Ok(x) => break x,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let s = c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.expose(), STRIPE);
    assert_eq!(
        handle.emulator().stats().logins,
        1,
        "re-login on the new server"
    );
}

#[tokio::test]
async fn client_renews_when_ttl_is_below_max_ttl() {
    let env = start().await;
    env.put_faults(json!({"token_ttl_secs": 6})).await;
    let mut cfg = env.client_config();
    cfg.client_id = SHORT_ID.into(); // max TTL 3600
    cfg.client_secret = OTHER_SECRET.to_owned().into();
    let c = InfisicalClient::new(cfg).unwrap();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    // Past 80% of the TTL (4.8 s), a second before expiry.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    let st = env.emu().stats();
    assert_eq!((st.logins, st.renewals), (1, 1));
}

#[tokio::test]
async fn client_logs_in_instead_of_renewing_when_ttl_equals_max_ttl() {
    let env = start().await;
    env.emu()
        .seed(&Seed {
            identities: vec![identity("equal-ttl", OTHER_SECRET, Role::Admin, Some(3))],
            projects: vec![],
        })
        .unwrap();
    env.put_faults(json!({"token_ttl_secs": 3})).await;
    let mut cfg = env.client_config();
    cfg.client_id = "equal-ttl".into();
    cfg.client_secret = OTHER_SECRET.to_owned().into();
    let c = InfisicalClient::new(cfg).unwrap();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    let st = env.emu().stats();
    assert_eq!(
        (st.logins, st.renewals),
        (2, 0),
        "a renew would have deleted the token"
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_login() {
    let env = start().await;
    let c = env.client();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            let acme = acme.clone();
            tokio::spawn(async move { c.get_secret(&acme, "STRIPE_KEY", None).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    assert_eq!(env.emu().stats().logins, 1);
}

#[tokio::test]
async fn client_retries_5xx_then_succeeds() {
    let env = start().await;
    let c = env.client();
    c.login().await.unwrap();
    env.put_faults(json!({"fail_next": 2})).await;
    let before = env.emu().stats().api_requests;
    let s = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.expose(), STRIPE);
    assert_eq!(
        env.emu().stats().api_requests - before,
        3,
        "two 500s, then success"
    );
    assert_eq!(c.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn client_honours_retry_after_on_429() {
    let env = start().await;
    let c = env.client();
    c.login().await.unwrap();
    env.put_faults(json!({"rate_limit_next": 1, "retry_after_secs": 1}))
        .await;
    let started = Instant::now();
    let s = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap();
    assert!(s.is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited for Retry-After"
    );
    assert_eq!(env.emu().stats().faults_injected, 1);
}

#[tokio::test]
async fn client_gives_up_on_429_storms_and_long_retry_after() {
    let env = start().await;
    let mut cfg = env.client_config();
    cfg.max_retries = 1;
    let c = InfisicalClient::new(cfg).unwrap();
    c.login().await.unwrap();
    env.put_faults(json!({"rate_limit": true, "retry_after_secs": 1}))
        .await;
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::RateLimited { .. }), "{err}");
    assert!(err.is_unavailable());

    // A Retry-After longer than the client's bound fails at once.
    env.put_faults(json!({"retry_after_secs": 120})).await;
    let started = Instant::now();
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, InfisicalError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(120)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        c.breaker_state(),
        BreakerState::Closed,
        "429 is not an outage"
    );
}

#[tokio::test]
async fn circuit_breaker_opens_fast_when_down_and_recovers() {
    let env = start().await;
    let mut cfg = env.client_config();
    cfg.breaker_threshold = 3;
    cfg.max_retries = 2;
    cfg.breaker_cooldown = Duration::from_millis(300);
    let c = InfisicalClient::new(cfg).unwrap();
    c.login().await.unwrap();
    env.put_faults(json!({"down": true})).await;
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(c.breaker_state(), BreakerState::Open);

    let before = env.emu().stats().api_requests;
    for _ in 0..20 {
        let started = Instant::now();
        let err = c
            .get_secret("/tenants/acme", "STRIPE_KEY", None)
            .await
            .unwrap_err();
        assert!(matches!(err, InfisicalError::CircuitOpen), "{err}");
        assert!(err.is_unavailable());
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "open breaker answers fast"
        );
    }
    assert_eq!(
        env.emu().stats().api_requests,
        before,
        "no request while open"
    );

    env.put_faults(json!({"down": false})).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let s = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap();
    assert!(s.is_some(), "half-open probe succeeds");
    assert_eq!(c.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn slow_answers_time_out() {
    let env = start().await;
    let mut cfg = env.client_config();
    cfg.request_timeout = Duration::from_millis(200);
    cfg.max_retries = 1;
    let c = InfisicalClient::new(cfg).unwrap();
    c.login().await.unwrap();
    env.put_faults(json!({"latency_ms": 1500})).await;
    let started = Instant::now();
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, InfisicalError::Timeout(d) if d == Duration::from_millis(200)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "bounded by the client timeout"
    );
}

#[tokio::test]
async fn malformed_json_is_an_invalid_response() {
    let env = start().await;
    let c = env.client();
    c.login().await.unwrap();
    env.put_faults(json!({"malformed_json": true})).await;
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::InvalidResponse(_)), "{err}");
    assert!(!err.is_unavailable());
    // Also during login.
    let c2 = env.client();
    let err = c2.login().await.unwrap_err();
    assert!(matches!(err, InfisicalError::InvalidResponse(_)), "{err}");
}

#[tokio::test]
async fn too_large_values_are_refused_both_ways() {
    let env = start().await;
    let big = "B".repeat(100 * 1024);
    env.emu()
        .seed(&Seed {
            identities: vec![],
            projects: vec![SeedProject {
                id: PROJECT.into(),
                slug: None,
                environments: vec!["dev".into()],
                folders: BTreeMap::new(),
                secrets: BTreeMap::from([(
                    "dev".to_owned(),
                    BTreeMap::from([(
                        "/tenants/acme".to_owned(),
                        BTreeMap::from([("HUGE".to_owned(), big.clone())]),
                    )]),
                )]),
            }],
        })
        .unwrap();
    let c = env.client();
    let err = c
        .get_secret("/tenants/acme", "HUGE", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, InfisicalError::TooLarge { limit: 65536, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("65536"));
    let before = env.emu().stats().api_requests;
    let err = c
        .create_secret("/tenants/acme", "HUGE2", &"x".repeat(64 * 1024 + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::TooLarge { .. }), "{err}");
    assert_eq!(
        env.emu().stats().api_requests,
        before,
        "refused before sending"
    );

    let mut cfg = env.client_config();
    cfg.max_value_bytes = 1024 * 1024;
    let roomy = InfisicalClient::new(cfg).unwrap();
    let s = roomy
        .get_secret("/tenants/acme", "HUGE", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.len(), big.len());
}

#[tokio::test]
async fn connection_refused_is_a_clear_unavailable_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = InfisicalConfig::new(
        format!("http://{addr}"),
        CLIENT_ID,
        CLIENT_SECRET,
        PROJECT,
        "dev",
    );
    cfg.retry_base_delay = Duration::from_millis(5);
    cfg.retry_max_delay = Duration::from_millis(10);
    let c = InfisicalClient::new(cfg).unwrap();
    let started = Instant::now();
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert!(err.is_unavailable());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn credentials_and_permissions_errors_leak_nothing() {
    let env = start().await;
    let mut cfg = env.client_config();
    cfg.client_secret = "definitely-wrong-secret".to_owned().into();
    let c = InfisicalClient::new(cfg).unwrap();
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::Unauthorized(_)), "{err}");
    for text in [err.to_string(), format!("{err:?}"), format!("{c:?}")] {
        assert!(!text.contains("definitely-wrong-secret"), "{text}");
    }

    let mut cfg = env.client_config();
    cfg.client_id = VIEWER_ID.into();
    cfg.client_secret = OTHER_SECRET.to_owned().into();
    let viewer = InfisicalClient::new(cfg).unwrap();
    let s = viewer
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert!(!format!("{s:?}").contains(STRIPE), "values print redacted");
    let err = viewer
        .create_secret("/tenants/acme", "NEW", "super-secret-value")
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::Forbidden(_)), "{err}");
    assert!(!err.to_string().contains("super-secret-value"));
}

#[tokio::test]
async fn redirects_are_not_followed_or_retried() {
    // A site URL that answers with a redirect (e.g. http -> https) is a configuration error.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::MOVED_PERMANENTLY,
            [("location", "https://example.invalid/")],
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = hits.clone();
    let app = app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            next.run(req)
        },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = InfisicalClient::new(InfisicalConfig::new(
        format!("http://{addr}"),
        CLIENT_ID,
        CLIENT_SECRET,
        PROJECT,
        "dev",
    ))
    .unwrap();
    let err = c.login().await.unwrap_err();
    assert!(matches!(err, InfisicalError::InvalidResponse(_)), "{err}");
    assert!(err.to_string().contains("INFISICAL_SITE_URL"), "{err}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no retry"
    );
    assert_eq!(c.breaker_state(), BreakerState::Closed);
}
