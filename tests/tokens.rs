//! Access you can take back: token lifecycle (list, revoke, self-revoke, rotate, TTLs),
//! revocation across replicas, service tokens and scopes, verifiers a database writer
//! cannot forge, tokens across a master key rotation, and the aggregated access audit.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{eventually, fresh_database, service_args, TestApp};
use serde_json::{json, Value};
use sha2::Digest;
use tenant_vault::app::App;
use tenant_vault::keys::DevFileSource;

/// (action, outcome, source, route, count, token id) of an access audit row.
type AccessRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<uuid::Uuid>,
);

/// The id embedded in a token's text (`tvt_<id>_<secret>`).
fn id_of(token: &str) -> String {
    let hex = &token["tvt_".len().."tvt_".len() + 32];
    uuid::Uuid::parse_str(hex).unwrap().to_string()
}

/// A token text of the right shape that no one issued.
fn made_up_token() -> String {
    use base64::Engine as _;
    let secret: [u8; 32] = rand::random();
    format!(
        "tvt_{}_{}",
        uuid::Uuid::new_v4().simple(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    )
}

/// A tenant token with these scopes (and key pattern).
async fn scoped_token(app: &TestApp, tenant: &str, body: Value) -> String {
    let res = app
        .admin_call(
            Method::POST,
            &format!("/v1/admin/tenants/{tenant}/tokens"),
            Some(body),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    res.body["token"].as_str().unwrap().to_owned()
}

async fn service_token(app: &TestApp, body: Value) -> String {
    let res = app
        .admin_call(Method::POST, "/v1/admin/service-tokens", Some(body))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    res.body["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn revoking_on_one_replica_is_401_on_another() {
    let a = TestApp::new().await;
    let b = a.another_instance().await;
    let acme = a.tenant("acme").await;
    a.put_secret("acme", "K", &acme, json!({"value": "v"}))
        .await;
    // Replica B has checked (and cached) the token.
    assert_eq!(
        b.get_secret("acme", "K", &acme).await.status,
        StatusCode::OK
    );

    let res = a
        .admin_call(
            Method::DELETE,
            &format!("/v1/admin/tokens/{}", id_of(&acme)),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text);
    assert_eq!(
        a.get_secret("acme", "K", &acme).await.status,
        StatusCode::UNAUTHORIZED
    );
    eventually("replica B refuses the revoked token", || async {
        b.get_secret("acme", "K", &acme).await.status == StatusCode::UNAUTHORIZED
    })
    .await;

    // Revoking again is fine; an unknown id is 404; a malformed one 400.
    let res = a
        .admin_call(
            Method::DELETE,
            &format!("/v1/admin/tokens/{}", id_of(&acme)),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = a
        .admin_call(
            Method::DELETE,
            &format!("/v1/admin/tokens/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.code(), "token_not_found");
    let res = a
        .admin_call(Method::DELETE, "/v1/admin/tokens/not-a-uuid", None)
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    // A tenant delete on A: B refuses the tenant's other tokens too.
    let other = a.token_for("acme").await;
    assert_eq!(
        b.get_secret("acme", "K", &other).await.status,
        StatusCode::OK
    );
    let res = a
        .admin_call(Method::DELETE, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    eventually("replica B refuses a deleted tenant's token", || async {
        b.get_secret("acme", "K", &other).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[tokio::test]
async fn a_forged_token_row_does_not_authenticate() {
    let app = TestApp::new().await;
    app.tenant("acme").await;
    let tenant_id: uuid::Uuid = sqlx::query_scalar("select id from tenants where slug = 'acme'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // A database writer plants the SHA-256 of a token of their choosing, as tokens were
    // stored before verifiers, and once more with a made-up verifier.
    for verifier in [None, Some(vec![7u8; 32])] {
        for (kind, tenant, scopes) in [
            (
                "tenant",
                Some(tenant_id),
                vec!["secrets:read", "secrets:write"],
            ),
            ("admin", None, vec!["admin"]),
        ] {
            let token = made_up_token();
            let hash = sha2::Sha256::digest(token.as_bytes()).to_vec();
            sqlx::query(
                "insert into access_tokens (id, kind, tenant_id, token_hash, verifier, scopes)
                 values ($1, $2, $3, $4, $5, $6)",
            )
            .bind(uuid::Uuid::new_v4())
            .bind(kind)
            .bind(tenant)
            .bind(&hash)
            .bind(&verifier)
            .bind(scopes)
            .execute(&app.pool)
            .await
            .unwrap();
            let path = if kind == "admin" {
                "/v1/admin/tokens"
            } else {
                "/v1/tenants/acme/secrets"
            };
            let res = app.get(path, &token).await;
            assert_eq!(
                res.status,
                StatusCode::UNAUTHORIZED,
                "{kind} {verifier:?}: {}",
                res.text
            );
        }
    }
    // Issued tokens still work.
    assert_eq!(
        app.get("/v1/admin/tokens", &app.admin_token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_from_before_verifiers_keep_working_and_later_plain_rows_do_not() {
    let (pool, db_url) = fresh_database().await;
    let _ = db_url;
    let plant = |token: String| {
        let pool = pool.clone();
        async move {
            let hash = sha2::Sha256::digest(token.as_bytes()).to_vec();
            sqlx::query(
                "insert into access_tokens (id, kind, token_hash, scopes) values ($1, 'admin', $2, '{admin}')",
            )
            .bind(uuid::Uuid::parse_str(&id_of(&token)).unwrap())
            .bind(hash)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    // A token issued by the previous version: a plain SHA-256, no verifier.
    let old = made_up_token();
    plant(old.clone()).await;
    let data_dir = tempfile::tempdir().unwrap();
    let source = Arc::new(DevFileSource::new(data_dir.path().to_path_buf()));
    let app = App::build(pool.clone(), source, data_dir.path(), &service_args(60))
        .await
        .unwrap();
    let router = tenant_vault::api::router(app.vault.clone(), &Default::default());
    let call = |token: String| {
        let router = router.clone();
        async move {
            use tower::ServiceExt;
            let req = axum::http::Request::get("/v1/admin/tokens")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap();
            router.oneshot(req).await.unwrap().status()
        }
    };
    // Start-up gave it a verifier: it still works, without being reissued.
    assert_eq!(call(old.clone()).await, StatusCode::OK);
    let verifiers: i64 =
        sqlx::query_scalar("select count(*) from access_tokens where verifier is not null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(verifiers, 1);
    // The same kind of row planted now is refused: the plain-hash path is closed.
    let planted = made_up_token();
    plant(planted.clone()).await;
    assert_eq!(call(planted.clone()).await, StatusCode::UNAUTHORIZED);
    // ... also by a restarted process.
    let again = App::build(
        pool.clone(),
        Arc::new(DevFileSource::new(data_dir.path().to_path_buf())),
        data_dir.path(),
        &service_args(60),
    )
    .await
    .unwrap();
    assert!(again.vault.authenticate(&planted).await.is_err());
    assert!(again.vault.authenticate(&old).await.is_ok());
    again.shutdown().await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_read_only_token_cannot_write() {
    let app = TestApp::new().await;
    let rw = app.tenant("acme").await;
    app.put_secret("acme", "K", &rw, json!({"value": "v1"}))
        .await;
    app.put_secret("acme", "K", &rw, json!({"value": "v2"}))
        .await;
    let ro = scoped_token(&app, "acme", json!({"scopes": ["secrets:read"]})).await;

    let res = app.get_secret("acme", "K", &ro).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["value"], "v2");
    assert_eq!(
        app.get("/v1/tenants/acme/secrets/K/versions", &ro)
            .await
            .status,
        StatusCode::OK
    );
    let res = app
        .put_secret("acme", "K", &ro, json!({"value": "nope"}))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text);
    assert_eq!(res.code(), "insufficient_scope");
    let res = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme/secrets/K",
            Some(&ro),
            None,
        )
        .await;
    assert_eq!(res.code(), "insufficient_scope");
    let res = app
        .call(
            Method::POST,
            "/v1/tenants/acme/secrets/K/rollback",
            Some(&ro),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(res.code(), "insufficient_scope");
    assert_eq!(app.get_secret("acme", "K", &rw).await.body["value"], "v2");

    // Unknown scopes and bad patterns are 400.
    for body in [
        json!({"scopes": ["secrets:admin"]}),
        json!({"scopes": []}),
        json!({"key_pattern": "A*B"}),
    ] {
        let res = app
            .admin_call(
                Method::POST,
                "/v1/admin/tenants/acme/tokens",
                Some(body.clone()),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.text);
    }
}

#[tokio::test]
async fn a_service_token_reaches_its_tenants_and_no_other() {
    let app = TestApp::new().await;
    for slug in ["acme", "globex", "initech"] {
        let t = app.tenant(slug).await;
        app.put_secret(
            slug,
            "STRIPE_KEY",
            &t,
            json!({"value": format!("{slug}-stripe")}),
        )
        .await;
    }
    let svc = service_token(
        &app,
        json!({"tenants": ["acme", "globex"], "scopes": ["secrets:read"], "description": "billing"}),
    )
    .await;
    for slug in ["acme", "globex"] {
        let res = app.get_secret(slug, "STRIPE_KEY", &svc).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        assert_eq!(res.body["value"], format!("{slug}-stripe"));
    }
    let res = app.get_secret("initech", "STRIPE_KEY", &svc).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.code(), "insufficient_scope");
    assert!(!res.text.contains("initech-stripe"));
    let res = app
        .put_secret("acme", "STRIPE_KEY", &svc, json!({"value": "x"}))
        .await;
    assert_eq!(res.code(), "insufficient_scope");
    // Batch reads go through the same decision.
    let res = app
        .call(
            Method::POST,
            "/v1/secrets/batch-get",
            Some(&svc),
            Some(json!({"items": [
                {"tenant": "acme", "key": "STRIPE_KEY"},
                {"tenant": "initech", "key": "STRIPE_KEY"},
                {"tenant": "globex", "key": "STRIPE_KEY"},
            ]})),
        )
        .await;
    let results = res.body["results"].as_array().unwrap();
    assert_eq!(results[0]["value"], "acme-stripe");
    assert_eq!(results[1]["error"]["code"], "insufficient_scope");
    assert!(!res.text.contains("initech-stripe"));
    assert_eq!(results[2]["value"], "globex-stripe");
    // Admin routes stay closed to it, and admin tokens still never read plaintext.
    assert_eq!(
        app.get("/v1/admin/tokens", &svc).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get_secret("acme", "STRIPE_KEY", &app.admin_token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // A writing service token for every tenant.
    let all = service_token(
        &app,
        json!({"tenants": "*", "scopes": ["secrets:read", "secrets:write"]}),
    )
    .await;
    let res = app
        .put_secret("initech", "STRIPE_KEY", &all, json!({"value": "rotated"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(
        app.get_secret("initech", "STRIPE_KEY", &all).await.body["value"],
        "rotated"
    );
    // Bad tenant sets are 400.
    for tenants in [json!([]), json!("all"), json!(["Not A Slug"]), json!(7)] {
        let res = app
            .admin_call(
                Method::POST,
                "/v1/admin/service-tokens",
                Some(json!({"tenants": tenants})),
            )
            .await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "{tenants}: {}",
            res.text
        );
    }
}

/// Service tokens name tenants by slug, and a deleted tenant's slug may be taken again: the
/// delete takes the tenant out of every service token's set, on every replica.
#[tokio::test]
async fn a_service_token_does_not_reach_a_recreated_slug() {
    let a = TestApp::new().await;
    let b = a.another_instance().await;
    for slug in ["acme", "globex"] {
        let t = a.tenant(slug).await;
        a.put_secret(slug, "K", &t, json!({"value": format!("{slug}-old")}))
            .await;
    }
    let svc = service_token(
        &a,
        json!({"tenants": ["acme", "globex"], "scopes": ["secrets:read"]}),
    )
    .await;
    // Both replicas have checked (and cached) the token.
    for app in [&a, &b] {
        let res = app.get_secret("acme", "K", &svc).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    }

    let res = a
        .admin_call(Method::DELETE, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let acme = a.tenant("acme").await;
    a.put_secret("acme", "K", &acme, json!({"value": "acme-new"}))
        .await;

    for app in [&a, &b] {
        eventually(
            "the replica refuses the old service token the new tenant",
            || async { app.get_secret("acme", "K", &svc).await.status == StatusCode::FORBIDDEN },
        )
        .await;
        let res = app.get_secret("acme", "K", &svc).await;
        assert_eq!(res.code(), "insufficient_scope");
        assert!(!res.text.contains("acme-new"));
        // The rest of its set still works.
        let res = app.get_secret("globex", "K", &svc).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
        assert_eq!(res.body["value"], "globex-old");
    }
    // The listing says what it reaches now.
    let list = a.admin_call(Method::GET, "/v1/admin/tokens", None).await;
    let listed: Vec<&Value> = list.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "service")
        .collect();
    assert_eq!(listed.len(), 1, "{}", list.text);
    assert_eq!(listed[0]["tenants"], json!(["globex"]));
}

#[tokio::test]
async fn a_key_pattern_limits_what_a_token_sees() {
    let app = TestApp::new().await;
    let rw = app.tenant("acme").await;
    for key in ["STRIPE_KEY", "STRIPE_WEBHOOK", "SENDGRID_KEY"] {
        app.put_secret("acme", key, &rw, json!({"value": format!("{key}-value")}))
            .await;
    }
    let svc = service_token(
        &app,
        json!({"tenants": ["acme"], "scopes": ["secrets:read"], "key_pattern": "STRIPE_*"}),
    )
    .await;
    let scoped = scoped_token(&app, "acme", json!({"key_pattern": "STRIPE_*"})).await;
    for token in [&svc, &scoped] {
        assert_eq!(
            app.get_secret("acme", "STRIPE_KEY", token).await.status,
            StatusCode::OK
        );
        let res = app.get_secret("acme", "SENDGRID_KEY", token).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
        assert_eq!(res.code(), "insufficient_scope");
        assert!(!res.text.contains("SENDGRID_KEY-value"));
        let res = app.get("/v1/tenants/acme/secrets", token).await;
        let names: Vec<&str> = res.body["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["key"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["STRIPE_KEY", "STRIPE_WEBHOOK"]);
    }
    let res = app
        .put_secret("acme", "SENDGRID_KEY", &scoped, json!({"value": "x"}))
        .await;
    assert_eq!(res.code(), "insufficient_scope");
    let res = app
        .put_secret("acme", "STRIPE_NEW", &scoped, json!({"value": "x"}))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    // Scope refusals are audited (aggregated), with the token and the tenant named.
    app.flush_audit().await;
    let rows: Vec<(Option<uuid::Uuid>, Option<String>, Option<i32>)> = sqlx::query_as(
        "select token_id, tenant_slug, count from audit_events where action = 'access.scope'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let of = |token: &str| uuid::Uuid::parse_str(&id_of(token)).unwrap();
    for (token, n) in [(&svc, 1), (&scoped, 2)] {
        let counted: i32 = rows
            .iter()
            .filter(|r| r.0 == Some(of(token)))
            .map(|r| r.2.unwrap())
            .sum();
        assert_eq!(counted, n, "{rows:?}");
    }
    assert!(rows.iter().all(|r| r.1.as_deref() == Some("acme")));
}

#[tokio::test]
async fn ttls_out_of_range_are_400_not_a_dropped_connection() {
    let app = TestApp::new().await;
    app.tenant("acme").await;
    let max = tenant_vault::config::DEFAULT_TOKEN_MAX_TTL_SECS;
    for ttl in [
        json!(10_000_000_000_000u64),
        json!(0),
        json!(max + 1),
        json!(u64::MAX),
    ] {
        let res = app
            .admin_call(
                Method::POST,
                "/v1/admin/tenants/acme/tokens",
                Some(json!({"ttl_secs": ttl})),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{ttl}: {}", res.text);
        assert!(res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ttl_secs"));
        let res = app
            .admin_call(
                Method::POST,
                "/v1/admin/service-tokens",
                Some(json!({"tenants": "*", "ttl_secs": ttl})),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{ttl}: {}", res.text);
    }
    for ttl in [json!(-1), json!("soon"), json!(1.5)] {
        let res = app
            .admin_call(
                Method::POST,
                "/v1/admin/tenants/acme/tokens",
                Some(json!({"ttl_secs": ttl})),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{ttl}: {}", res.text);
    }
    // The largest allowed works; no TTL means the default, not forever.
    let res = app
        .admin_call(
            Method::POST,
            "/v1/admin/tenants/acme/tokens",
            Some(json!({"ttl_secs": max})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let res = app
        .admin_call(Method::POST, "/v1/admin/tenants/acme/tokens", None)
        .await;
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(res.body["expires_at"].clone()).unwrap();
    let default = tenant_vault::config::DEFAULT_TOKEN_TTL_SECS as i64;
    let left = (expires - chrono::Utc::now()).num_seconds();
    assert!(left > default - 600 && left <= default, "{left}");
    // A rotation's TTL and grace are checked too.
    let id = res.body["token_id"].as_str().unwrap().to_owned();
    for body in [
        json!({"ttl_secs": 10_000_000_000_000u64}),
        json!({"grace_secs": max + 1}),
    ] {
        let res = app
            .admin_call(
                Method::POST,
                &format!("/v1/admin/tokens/{id}/rotate"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.text);
    }
}

#[tokio::test]
async fn rotation_keeps_the_old_token_for_the_grace_period_only() {
    let app = TestApp::new().await;
    let old = app.tenant("acme").await;
    app.put_secret("acme", "K", &old, json!({"value": "v"}))
        .await;
    let res = app
        .admin_call(
            Method::POST,
            &format!("/v1/admin/tokens/{}/rotate", id_of(&old)),
            Some(json!({"grace_secs": 2})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
    let new = res.body["token"].as_str().unwrap().to_owned();
    assert_eq!(res.body["rotated_from"], id_of(&old));
    assert_ne!(new, old);
    // Both work during the grace period (the old one was cached before: still checked).
    assert_eq!(
        app.get_secret("acme", "K", &new).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get_secret("acme", "K", &old).await.status,
        StatusCode::OK
    );
    // The new one is like the old: same tenant, same scopes.
    let list = app
        .admin_call(Method::GET, "/v1/admin/tenants/acme/tokens", None)
        .await;
    let tokens = list.body["tokens"].as_array().unwrap();
    let new_info = tokens.iter().find(|t| t["id"] == id_of(&new)).unwrap();
    assert_eq!(new_info["rotated_from"], id_of(&old));
    assert_eq!(new_info["scopes"], json!(["secrets:read", "secrets:write"]));
    eventually("the old token expires after its grace period", || async {
        app.get_secret("acme", "K", &old).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(
        app.get_secret("acme", "K", &new).await.status,
        StatusCode::OK
    );
    // An expired (or revoked) token cannot be rotated.
    let res = app
        .admin_call(
            Method::POST,
            &format!("/v1/admin/tokens/{}/rotate", id_of(&old)),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_token_can_revoke_itself() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let svc = service_token(&app, json!({"tenants": "*", "scopes": ["secrets:read"]})).await;
    for token in [&acme, &svc] {
        assert_eq!(
            app.get("/v1/tenants/acme/secrets", token).await.status,
            StatusCode::OK
        );
        let res = app
            .call(Method::DELETE, "/v1/tokens/self", Some(token), None)
            .await;
        assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text);
        assert_eq!(
            app.get("/v1/tenants/acme/secrets", token).await.status,
            StatusCode::UNAUTHORIZED
        );
        let res = app
            .call(Method::DELETE, "/v1/tokens/self", Some(token), None)
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    let res = app
        .call(Method::DELETE, "/v1/tokens/self", None, None)
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let revoked: i64 =
        sqlx::query_scalar("select count(*) from access_tokens where revoked_at is not null")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(revoked, 2);
}

#[tokio::test]
async fn listings_show_tokens_but_never_their_secrets() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let ro = scoped_token(
        &app,
        "acme",
        json!({"scopes": ["secrets:read"], "description": "reader"}),
    )
    .await;
    let svc = service_token(
        &app,
        json!({"tenants": ["acme"], "scopes": ["secrets:read"], "key_pattern": "STRIPE_*"}),
    )
    .await;
    app.get("/v1/tenants/acme/secrets", &ro).await;
    app.admin_call(
        Method::DELETE,
        &format!("/v1/admin/tokens/{}", id_of(&acme)),
        None,
    )
    .await;

    let tenant_list = app
        .admin_call(Method::GET, "/v1/admin/tenants/acme/tokens", None)
        .await;
    assert_eq!(tenant_list.status, StatusCode::OK, "{}", tenant_list.text);
    let global = app.admin_call(Method::GET, "/v1/admin/tokens", None).await;
    assert_eq!(global.status, StatusCode::OK);
    for (list, token) in [
        (&tenant_list, &acme),
        (&tenant_list, &ro),
        (&global, &svc),
        (&global, &app.admin_token),
    ] {
        let info = list.body["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id_of(token))
            .unwrap_or_else(|| panic!("{} not listed: {}", id_of(token), list.text));
        for field in [
            "kind",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "description",
        ] {
            assert!(info.get(field).is_some(), "{field} missing: {info}");
        }
    }
    for list in [&tenant_list, &global] {
        for token in [&acme, &ro, &svc, &app.admin_token] {
            // `tvt_<id>_<secret>`: the secret is all after the second `_` (base64url may
            // hold `_` itself, so the last segment alone can be a few common characters).
            let secret = token.splitn(3, '_').nth(2).unwrap();
            assert!(secret.len() >= 40, "{secret}");
            assert!(!list.text.contains(secret), "a token secret is listed");
        }
        assert!(!list.text.contains("hash") && !list.text.contains("verifier"));
    }
    let find = |list: &common::TestResponse, token: &str| {
        list.body["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id_of(token))
            .cloned()
            .unwrap()
    };
    assert!(find(&tenant_list, &acme)["revoked_at"].is_string());
    assert!(find(&tenant_list, &ro)["revoked_at"].is_null());
    assert_eq!(find(&tenant_list, &ro)["scopes"], json!(["secrets:read"]));
    assert_eq!(find(&tenant_list, &ro)["description"], "reader");
    assert_eq!(find(&global, &svc)["kind"], "service");
    assert_eq!(find(&global, &svc)["tenants"], json!(["acme"]));
    assert_eq!(find(&global, &svc)["key_pattern"], "STRIPE_*");
    assert_eq!(find(&global, &app.admin_token)["kind"], "admin");
    // Tenant tokens are not in the global list.
    assert!(global.body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["kind"] != "tenant"));
    // Use is recorded, coarsely, in the background.
    eventually("the reader's use is recorded", || async {
        let at: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("select last_used_at from access_tokens where id = $1")
                .bind(uuid::Uuid::parse_str(&id_of(&ro)).unwrap())
                .fetch_one(&app.pool)
                .await
                .unwrap();
        at.is_some()
    })
    .await;
    // Token creation and revocation are audited with the token's id.
    let subjects: Vec<(String, Option<String>)> = {
        app.flush_audit().await;
        sqlx::query_as(
            "select action, subject from audit_events where action like 'token.%' order by id",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    assert!(
        subjects.contains(&("token.create".into(), Some(id_of(&ro)))),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&("token.revoke".into(), Some(id_of(&acme)))),
        "{subjects:?}"
    );
    assert!(subjects.iter().any(|s| s.0 == "token.list"));
    // Tenant paths are validated.
    let res = app
        .admin_call(Method::GET, "/v1/admin/tenants/nosuch/tokens", None)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_flood_of_refusals_makes_a_bounded_number_of_audit_rows() {
    let app = TestApp::new().await;
    app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.flush_audit().await;
    let before: i64 = sqlx::query_scalar("select count(*) from audit_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let bogus = made_up_token();
    for i in 0..500 {
        let res = if i % 2 == 0 {
            app.get_secret("acme", "K", &bogus).await
        } else {
            app.get_secret("acme", "K", &globex).await
        };
        assert!(matches!(
            res.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ));
    }
    app.flush_audit().await;
    let rows: Vec<AccessRow> = sqlx::query_as(
        "select action, outcome, source, route, count, token_id from audit_events
         where action like 'access.%' order by id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    // One row per (minute, source, route, outcome, token): two, or four across a minute.
    assert!(rows.len() <= 4, "{rows:?}");
    let total = |action: &str| -> i32 {
        rows.iter()
            .filter(|r| r.0 == action)
            .map(|r| r.4.unwrap())
            .sum()
    };
    assert_eq!(total("access.unauthenticated"), 250);
    assert_eq!(total("access.tenant"), 250);
    for r in &rows {
        assert_eq!(r.3.as_deref(), Some("/v1/tenants/{tenant}/secrets/{key}"));
        assert_eq!(r.2.as_deref(), Some("-"));
        assert_eq!(r.1, "denied");
    }
    let globex_id = uuid::Uuid::parse_str(&id_of(&globex)).unwrap();
    assert!(rows
        .iter()
        .filter(|r| r.0 == "access.tenant")
        .all(|r| r.5 == Some(globex_id)));
    let after: i64 = sqlx::query_scalar("select count(*) from audit_events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(after - before <= 4, "{before} -> {after}");
    assert_eq!(
        app.vault.verify_audit(&[]).await.unwrap().rows as i64,
        after
    );
    // Reading the key report is audited.
    app.admin_call(Method::GET, "/v1/admin/keys", None).await;
    app.flush_audit().await;
    let reads: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'keys.read'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(reads, 1);
}

#[tokio::test]
async fn tokens_survive_a_master_key_rotation() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let svc = service_token(&app, json!({"tenants": "*", "scopes": ["secrets:read"]})).await;
    app.put_secret("acme", "K", &acme, json!({"value": "v"}))
        .await;
    let res = app.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let versions: Vec<(String, i32)> =
        sqlx::query_as("select purpose, master_key_version from internal_keys order by purpose")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    // Every internal key (the token key, and the audit key that chains the trail) is
    // re-wrapped under the new master key.
    assert_eq!(versions, [("audit".to_owned(), 2), ("token".to_owned(), 2)]);
    // A process that starts now unwraps the token key under version 2.
    let restarted = app.another_instance().await;
    for token in [&acme, &svc] {
        let res = restarted.get_secret("acme", "K", token).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    }
    assert_eq!(
        restarted
            .get("/v1/admin/tokens", &app.admin_token)
            .await
            .status,
        StatusCode::OK
    );
    // Tokens issued after the rotation work everywhere too.
    let fresh = restarted.token_for("acme").await;
    assert_eq!(
        app.get_secret("acme", "K", &fresh).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_tenant_search_and_detail() {
    let app = TestApp::new().await;
    for slug in ["acme", "acme-eu", "globex"] {
        app.tenant(slug).await;
    }
    let res = app
        .admin_call(Method::GET, "/v1/admin/tenants?prefix=acme", None)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let slugs: Vec<&str> = res.body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme", "acme-eu"]);
    assert!(res.body["next_offset"].is_null());
    let res = app
        .admin_call(Method::GET, "/v1/admin/tenants?limit=2", None)
        .await;
    assert_eq!(res.body["tenants"].as_array().unwrap().len(), 2);
    assert_eq!(res.body["next_offset"], 2);
    let res = app
        .admin_call(Method::GET, "/v1/admin/tenants?limit=2&offset=2", None)
        .await;
    assert_eq!(res.body["tenants"][0]["slug"], "globex");
    for bad in [
        "limit=0",
        "limit=5000",
        "offset=-1",
        // Found by schemathesis: a huge offset was a 500.
        "limit=1&offset=9223372036854775807",
        "offset=1000000001",
        "prefix=%25",
        "limit=many",
        "sort=slug",
    ] {
        let res = app
            .admin_call(Method::GET, &format!("/v1/admin/tenants?{bad}"), None)
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {}", res.text);
    }
    let res = app
        .admin_call(Method::GET, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["slug"], "acme");
    assert_eq!(res.body["live_tokens"], 1);
    assert_eq!(res.body["secrets"], 0);
    let res = app
        .admin_call(Method::GET, "/v1/admin/tenants/nosuch", None)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let acme = app.token_for("acme").await;
    assert_eq!(
        app.get("/v1/admin/tenants", &acme).await.status,
        StatusCode::FORBIDDEN
    );
}
