//! The HTTP API end to end against a real PostgreSQL: round trips, the cache, check-and-set,
//! scopes, and every kind of bad input getting a clear error and changing nothing.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn round_trip_reads_database_then_cache() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;

    let res = app
        .put_secret("acme", "STRIPE_KEY", &acme, json!({"value": "sk_live_123"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body, json!({"key": "STRIPE_KEY", "version": 1}));

    let first = app.get_secret("acme", "STRIPE_KEY", &acme).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["value"], "sk_live_123");
    assert_eq!(first.body["version"], 1);
    assert_eq!(first.body["key"], "STRIPE_KEY");
    assert!(first.body["updated_at"].is_string());
    assert_eq!(first.headers["x-secret-source"], "database");
    assert_eq!(first.headers[header::CACHE_CONTROL], "no-store");

    let second = app.get_secret("acme", "STRIPE_KEY", &acme).await;
    assert_eq!(second.headers["x-secret-source"], "cache");
    assert_eq!(second.body["value"], "sk_live_123");

    // Our own write invalidates the cache.
    let res = app
        .put_secret("acme", "STRIPE_KEY", &acme, json!({"value": "sk_live_456"}))
        .await;
    assert_eq!(res.body["version"], 2);
    let third = app.get_secret("acme", "STRIPE_KEY", &acme).await;
    assert_eq!(third.headers["x-secret-source"], "database");
    assert_eq!(third.body["value"], "sk_live_456");
    assert_eq!(third.body["version"], 2);

    // The previous version is kept.
    let kept: i64 = sqlx::query_scalar("select count(*) from company_secret_versions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
}

#[tokio::test]
async fn no_plaintext_in_the_database() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let value = "sk_live_PLAINTEXT_MARKER_1234567890";
    app.put_secret("acme", "STRIPE_KEY", &acme, json!({"value": value}))
        .await;
    app.put_secret("acme", "STRIPE_KEY", &acme, json!({"value": value}))
        .await;
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
        "select secret_value_encrypted from company_secrets
         union all select secret_value_encrypted from company_secret_versions",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    for (bytes,) in &rows {
        assert!(!bytes.windows(value.len()).any(|w| w == value.as_bytes()));
        assert_eq!(
            bytes[0], 2,
            "format byte (0x02: bound to the secret row id)"
        );
    }
    // Same value twice, different ciphertext (fresh nonce each time).
    assert_ne!(rows[0].0, rows[1].0);
    // A full dump of the database does not contain it either.
    let dump: String = sqlx::query_scalar(
        "select string_agg(t::text, ' ') from (select * from company_secrets) t",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(!dump.contains(value));
}

#[tokio::test]
async fn list_and_delete() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    for k in ["B_KEY", "A_KEY"] {
        app.put_secret("acme", k, &acme, json!({"value": "hidden-value"}))
            .await;
    }
    let res = app.get("/v1/tenants/acme/secrets", &acme).await;
    assert_eq!(res.status, StatusCode::OK);
    let keys: Vec<&str> = res.body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["A_KEY", "B_KEY"]);
    assert!(
        !res.text.contains("hidden-value"),
        "lists never carry values"
    );

    let res = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme/secrets/A_KEY",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let res = app.get_secret("acme", "A_KEY", &acme).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.code(), "secret_not_found");
    let res = app
        .call(
            Method::DELETE,
            "/v1/tenants/acme/secrets/A_KEY",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn check_and_set() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    // cas 0: only if absent.
    let res = app
        .put_secret("acme", "K", &acme, json!({"value": "a", "cas": 0}))
        .await;
    assert_eq!(res.body["version"], 1);
    let res = app
        .put_secret("acme", "K", &acme, json!({"value": "b", "cas": 0}))
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.code(), "cas_conflict");
    let res = app
        .put_secret("acme", "K", &acme, json!({"value": "b", "cas": 2}))
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    let res = app
        .put_secret("acme", "K", &acme, json!({"value": "b", "cas": 1}))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body["version"], 2);
    // The failed attempts changed nothing.
    let res = app.get_secret("acme", "K", &acme).await;
    assert_eq!(res.body["value"], "b");
    assert_eq!(res.body["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cas_race_has_exactly_one_winner() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "K", &acme, json!({"value": "v1"}))
        .await;
    for round in 0..5 {
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let (app, acme) = (app.clone(), acme.clone());
                tokio::spawn(async move {
                    app.put_secret(
                        "acme",
                        "K",
                        &acme,
                        json!({"value": format!("w{i}"), "cas": round + 1}),
                    )
                    .await
                })
            })
            .collect();
        let mut won = 0;
        for w in writers {
            let res = w.await.unwrap();
            match res.status {
                StatusCode::OK => won += 1,
                StatusCode::CONFLICT => assert_eq!(res.code(), "cas_conflict"),
                other => panic!("unexpected {other}: {}", res.text),
            }
        }
        assert_eq!(won, 1, "round {round}");
    }
    let res = app.get_secret("acme", "K", &acme).await;
    assert_eq!(res.body["version"], 6);

    // Racing creators with cas 0: one creates, the rest conflict.
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let (app, acme) = (app.clone(), acme.clone());
            tokio::spawn(async move {
                app.put_secret(
                    "acme",
                    "NEW",
                    &acme,
                    json!({"value": format!("w{i}"), "cas": 0}),
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for w in writers {
        won += usize::from(w.await.unwrap().status == StatusCode::OK);
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn tokens_reach_only_their_own_tenant() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.put_secret("acme", "K", &acme, json!({"value": "acme-only"}))
        .await;

    let res = app.get_secret("acme", "K", &globex).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.code(), "forbidden");
    assert!(!res.text.contains("acme-only"));
    let res = app
        .put_secret("acme", "K", &globex, json!({"value": "overwrite"}))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app.get("/v1/tenants/acme/secrets", &globex).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // Tenant tokens cannot use admin routes; admin tokens cannot read secrets.
    let res = app
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(&acme),
            Some(json!({"slug": "evil"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app
        .call(
            Method::POST,
            "/v1/admin/tenants/acme/tokens",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app.get_secret("acme", "K", &app.admin_token).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // Nothing changed, and the denials are audited.
    let res = app.get_secret("acme", "K", &acme).await;
    assert_eq!(res.body["value"], "acme-only");
    assert_eq!(res.body["version"], 1);
    // Refusals are counted per source, route, outcome and token (see tests/tokens.rs).
    app.flush_audit().await;
    let denied: i64 = sqlx::query_scalar(
        "select coalesce(sum(count), 0) from audit_events where outcome = 'denied'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(denied, 6);
}

#[tokio::test]
async fn missing_or_unknown_tokens_are_401() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let res = app
        .call(Method::GET, "/v1/tenants/acme/secrets/K", None, None)
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.code(), "unauthenticated");
    let forged = format!("{}X", &acme[..acme.len() - 1]);
    let fake = format!("tvt_{}_{}", "0".repeat(32), "A".repeat(43));
    for bad in ["nonsense", forged.as_str(), fake.as_str(), ""] {
        let res = app.get_secret("acme", "K", bad).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let req = Request::get("/v1/tenants/acme/secrets/K")
        .header(header::AUTHORIZATION, format!("Basic {acme}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.raw(req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn path_tricks_in_slugs_are_400_and_touch_nothing() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let long = "a".repeat(64);
    for slug in [
        "..",
        "%2e%2e",
        "%2E%2E",
        "a%2Fb",
        "ACME",
        "acme%00",
        "-acme",
        "ac%20me",
        long.as_str(),
    ] {
        for path in [
            format!("/v1/tenants/{slug}/secrets/K"),
            format!("/v1/tenants/{slug}/secrets"),
        ] {
            let res = app.get(&path, &acme).await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}: {}", res.text);
            assert_eq!(res.code(), "invalid_tenant", "{path}");
        }
        let res = app
            .admin_call(
                Method::POST,
                "/v1/admin/tenants",
                Some(json!({"slug": slug.replace("%2F", "/")})),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{slug}");
        assert!(res.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("slug"));
    }
    // An empty slug segment never matches the route.
    let res = app.get("/v1/tenants//secrets/K", &acme).await;
    assert!(res.status == StatusCode::BAD_REQUEST || res.status == StatusCode::NOT_FOUND);
    let res = app
        .admin_call(Method::POST, "/v1/admin/tenants", Some(json!({"slug": ""})))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let tenants: i64 = sqlx::query_scalar("select count(*) from tenants")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(tenants, 1);
}

#[tokio::test]
async fn bad_secret_keys_are_400() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let long = "K".repeat(256);
    for key in [
        "..",
        "%2e%2e",
        ".env",
        "a%2Fb",
        "a%20b",
        "-x",
        "%C3%A9",
        long.as_str(),
    ] {
        let res = app
            .put_secret("acme", key, &acme, json!({"value": "v"}))
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{key}");
        assert_eq!(res.code(), "invalid_secret_key", "{key}");
    }
    let count: i64 = sqlx::query_scalar("select count(*) from company_secrets")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn oversized_values_and_bodies_are_413() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let at_limit = "x".repeat(65_536);
    let res = app
        .put_secret("acme", "BIG", &acme, json!({"value": at_limit}))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let over = "x".repeat(65_537);
    let res = app
        .put_secret("acme", "BIG", &acme, json!({"value": over}))
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.code(), "value_too_large");
    let huge = "x".repeat(2 * 1024 * 1024);
    let res = app
        .put_secret("acme", "BIG", &acme, json!({"value": huge}))
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.code(), "payload_too_large");
    // The stored value is still the one at the limit.
    let res = app.get_secret("acme", "BIG", &acme).await;
    assert_eq!(res.body["version"], 1);
    assert_eq!(res.body["value"].as_str().unwrap().len(), 65_536);
}

#[tokio::test]
async fn malformed_json_names_the_field_and_never_echoes_values() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let cases = [
        (r#"{"value": 12345678}"#, "value"),
        (r#"{"value": "ok", "cas": "sk_live_ECHO"}"#, "cas"),
        (r#"{"value": "ok", "cas": -1.5}"#, "cas"),
        (r#"{"cas": 1}"#, "value"),
        (r#"{"value": "ok", "colour": "sk_live_ECHO"}"#, "colour"),
        (r#"{"value": "sk_live_ECHO""#, "JSON"),
        (r#"not json sk_live_ECHO"#, "JSON"),
        (r#"[]"#, "object"),
        // serde would read a struct from an array of its fields in order: not a body any
        // client means, and it would have stored this value.
        (r#"["sk_live_ECHO"]"#, "object"),
        (" \n [\"sk_live_ECHO\", 1]", "object"),
    ];
    for (body, field) in cases {
        let req = Request::put("/v1/tenants/acme/secrets/K")
            .header(header::AUTHORIZATION, format!("Bearer {acme}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let res = app.raw(req).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {}", res.text);
        assert_eq!(res.code(), "invalid_json", "{body}");
        let message = res.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{body}: {message}");
        assert!(
            !res.text.contains("sk_live_ECHO") && !res.text.contains("12345678"),
            "{body}: {message}"
        );
    }
    let req = Request::put("/v1/tenants/acme/secrets/K")
        .header(header::AUTHORIZATION, format!("Bearer {acme}"))
        .body(Body::from(r#"{"value": "v"}"#))
        .unwrap();
    assert_eq!(
        app.raw(req).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let count: i64 = sqlx::query_scalar("select count(*) from company_secrets")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn deleting_a_tenant_shreds_its_keys_and_revokes_its_tokens() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.put_secret("acme", "K", &acme, json!({"value": "acme-secret"}))
        .await;
    app.put_secret("globex", "K", &globex, json!({"value": "globex-secret"}))
        .await;
    assert_eq!(
        app.get_secret("acme", "K", &acme).await.headers["x-secret-source"],
        "database"
    );
    assert_eq!(
        app.get_secret("acme", "K", &acme).await.headers["x-secret-source"],
        "cache"
    );

    let res = app
        .admin_call(Method::DELETE, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["destroyed_data_keys"], 1);

    // Its token is dead at once, cache or not.
    assert_eq!(
        app.get_secret("acme", "K", &acme).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The ciphertext is still in the table, but no key exists to open it.
    let (keys_left, ciphertexts): (i64, i64) = sqlx::query_as(
        "select (select count(*) from data_keys d join tenants t on t.id = d.tenant_id
                 where t.slug = 'acme' and d.wrapped_key is not null),
                (select count(*) from company_secrets s join tenants t on t.id = s.company_id
                 where t.slug = 'acme')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((keys_left, ciphertexts), (0, 1));
    // A new tenant may take the slug; it cannot read the old ciphertext.
    let acme2 = app.tenant("acme").await;
    assert_eq!(
        app.get_secret("acme", "K", &acme2).await.status,
        StatusCode::NOT_FOUND
    );
    // Other tenants are untouched.
    assert_eq!(
        app.get_secret("globex", "K", &globex).await.body["value"],
        "globex-secret"
    );
    let res = app
        .admin_call(Method::DELETE, "/v1/admin/tenants/nosuch", None)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tenants_are_unique_and_unknown_tenants_get_no_tokens() {
    let app = TestApp::new().await;
    app.tenant("acme").await;
    let res = app
        .admin_call(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({"slug": "acme"})),
        )
        .await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    assert_eq!(res.code(), "tenant_exists");
    let res = app
        .admin_call(Method::POST, "/v1/admin/tenants/nosuch/tokens", None)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.code(), "tenant_not_found");
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let app = TestApp::new().await;
    let res = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(res.status, StatusCode::OK);
    let res = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    // Strangers learn ready or not, nothing more; admins get the details.
    assert_eq!(res.body, serde_json::json!({"status": "ready"}));
    let res = app.admin_call(Method::GET, "/readyz", None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(res.body["database"], "ok");
    assert_eq!(res.body["master_key_version"], 1);
    let res = app.call(Method::GET, "/v2/nothing", None, None).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.code(), "not_found");
    // A request without an id gets a fresh random UUID, and two requests get two.
    let id = |res: &common::TestResponse| {
        let text = res.headers["x-request-id"].to_str().unwrap().to_owned();
        let parsed = uuid::Uuid::parse_str(&text).unwrap();
        assert_eq!(parsed.get_version_num(), 4, "{text}");
        assert_eq!(parsed.hyphenated().to_string(), text);
        text
    };
    let again = app.call(Method::GET, "/v2/nothing", None, None).await;
    assert_ne!(id(&res), id(&again));
}

#[tokio::test]
async fn every_secret_access_is_audited_in_a_valid_chain() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "K", &acme, json!({"value": "audited-value"}))
        .await;
    app.get_secret("acme", "K", &acme).await;
    app.get_secret("acme", "K", &acme).await; // from the cache: still audited
    app.get_secret("acme", "MISSING", &acme).await;
    let rows = app.audit_rows().await;
    let secret_rows: Vec<_> = rows.iter().filter(|r| r.0.starts_with("secret.")).collect();
    let expect = [
        ("secret.write", "success"),
        ("secret.read", "success"),
        ("secret.read", "success"),
        ("secret.read", "not_found"),
    ];
    assert_eq!(secret_rows.len(), expect.len());
    for (row, (action, outcome)) in secret_rows.iter().zip(expect) {
        assert_eq!((row.0.as_str(), row.1.as_str()), (action, outcome));
        assert_eq!(row.2.as_deref(), Some("acme"));
    }
    let report = app.vault.verify_audit(&[]).await.unwrap();
    assert_eq!(report.rows as usize, rows.len());
    let everything: String =
        sqlx::query_scalar("select string_agg(t::text, ' ') from audit_events t")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!everything.contains("audited-value"));
    assert!(!everything.contains(&acme));
    // The table refuses edits.
    let edit = sqlx::query("update audit_events set outcome = 'success'")
        .execute(&app.pool)
        .await;
    assert!(edit.unwrap_err().to_string().contains("append-only"));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_reads_by_source() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    app.put_secret("acme", "K", &acme, json!({"value": "metric-secret-value"}))
        .await;
    app.get_secret("acme", "K", &acme).await;
    app.get_secret("acme", "K", &acme).await;
    let res = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(res.status, StatusCode::OK);
    let text = res.text;
    assert!(
        text.contains("tenant_vault_secret_reads_total{source=\"cache\"}"),
        "{text}"
    );
    assert!(
        text.contains("tenant_vault_secret_reads_total{source=\"database\"}"),
        "{text}"
    );
    assert!(
        text.contains("route=\"/v1/tenants/{tenant}/secrets/{key}\""),
        "{text}"
    );
    assert!(text.contains("tenant_vault_cache_entries"));
    assert!(!text.contains("metric-secret-value") && !text.contains("acme"));
}
