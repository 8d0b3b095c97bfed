//! `GET /v1/events` (server-sent events fed by NOTIFY: across replicas, per tenant, resumable,
//! bounded) and `POST /v1/secrets/batch-get` (per-item results and audit rows).

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use common::{eventually, service_args, TestApp, TestInfisical};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tenant_vault::config::ServiceArgs;
use tower::ServiceExt;

/// One SSE message: an event, or a comment line (heartbeat).
#[derive(Debug, Clone)]
struct Message {
    id: Option<String>,
    event: String,
    data: Value,
    comment: Option<String>,
    /// The message as sent, to check that no value is in it.
    raw: String,
}

/// The client side of one event stream, read through the real router.
struct Stream {
    body: Body,
    buf: String,
}

impl Stream {
    async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Stream {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri("/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = app
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
        Stream {
            body: res.into_body(),
            buf: String::new(),
        }
    }

    /// The next message; None when the stream ended. Hangs are cut at 20 s.
    async fn message(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                return Some(parse(&raw));
            }
            let frame = tokio::time::timeout(Duration::from_secs(20), self.body.frame())
                .await
                .expect("the stream said nothing for 20 s");
            match frame {
                None => return None,
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buf.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        }
    }

    /// The next event (heartbeats skipped).
    async fn event(&mut self) -> Message {
        loop {
            let m = self.message().await.expect("the stream ended");
            if m.comment.is_none() {
                return m;
            }
        }
    }
}

fn parse(raw: &str) -> Message {
    let mut m = Message {
        id: None,
        event: String::new(),
        data: Value::Null,
        comment: None,
        raw: raw.to_owned(),
    };
    for line in raw.lines() {
        if let Some(c) = line.strip_prefix(':') {
            m.comment = Some(c.trim().to_owned());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => m.id = Some(value.to_owned()),
                "event" => m.event = value.to_owned(),
                "data" => m.data = serde_json::from_str(value).expect("data is JSON"),
                other => panic!("unexpected field {other}"),
            }
        }
    }
    m
}

fn with_events(f: impl FnOnce(&mut ServiceArgs)) -> ServiceArgs {
    let mut args = service_args(60);
    f(&mut args);
    args
}

#[tokio::test]
async fn a_put_on_one_replica_reaches_a_stream_on_the_other_with_names_and_versions_only() {
    let a = TestApp::new().await;
    let token = a.tenant("acme").await;
    let b = a.another_instance().await;
    let mut stream = Stream::open(&b, &token, None).await;
    let ready = stream.event().await;
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.data, json!({}));

    let res = a
        .put_secret(
            "acme",
            "STRIPE_KEY",
            &token,
            json!({"value": "sk_live_one"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    a.put_secret(
        "acme",
        "STRIPE_KEY",
        &token,
        json!({"value": "sk_live_two"}),
    )
    .await;
    let first = stream.event().await;
    assert_eq!(first.event, "secret.written");
    assert_eq!(
        first.data,
        json!({"tenant": "acme", "key": "STRIPE_KEY", "version": 1})
    );
    assert!(first.id.is_some());
    let second = stream.event().await;
    assert_eq!(second.data["version"], 2);
    assert_ne!(first.id, second.id);

    let res = a
        .call(
            Method::DELETE,
            "/v1/tenants/acme/secrets/STRIPE_KEY",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let deleted = stream.event().await;
    assert_eq!(deleted.event, "secret.deleted");
    assert_eq!(deleted.data, json!({"tenant": "acme", "key": "STRIPE_KEY"}));

    for m in [&ready, &first, &second, &deleted] {
        assert!(!m.raw.contains("sk_live"), "a value in {:?}", m.raw);
    }
    assert_eq!(b.vault.events().open_streams(), 1);
    drop(stream);
    assert_eq!(b.vault.events().open_streams(), 0);
}

#[tokio::test]
async fn a_stream_outlives_the_request_timeout() {
    // The request timeout bounds the time to the response head only; the stream goes on.
    let mut app = TestApp::new().await;
    let token = app.tenant("acme").await;
    app.router = tenant_vault::api::router(
        app.vault.clone(),
        &tenant_vault::api::HttpSettings {
            request_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let mut stream = Stream::open(&app, &token, None).await;
    assert_eq!(stream.event().await.event, "ready");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let res = app
        .put_secret("acme", "LATE", &token, json!({"value": "v"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let late = stream.event().await;
    assert_eq!(late.event, "secret.written");
    assert_eq!(late.data["key"], "LATE");
}

#[tokio::test]
async fn a_tenant_token_sees_only_its_tenant_and_an_admin_sees_all() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let mut acme_stream = Stream::open(&app, &acme, None).await;
    let mut admin_stream = Stream::open(&app, &app.admin_token, None).await;
    assert_eq!(acme_stream.event().await.event, "ready");
    assert_eq!(admin_stream.event().await.event, "ready");

    app.put_secret("globex", "K", &globex, json!({"value": "g"}))
        .await;
    app.put_secret("acme", "K", &acme, json!({"value": "a"}))
        .await;
    // globex's write came first, and acme's stream never sees it.
    let seen = acme_stream.event().await;
    assert_eq!(seen.data["tenant"], "acme");
    assert_eq!(admin_stream.event().await.data["tenant"], "globex");
    assert_eq!(admin_stream.event().await.data["tenant"], "acme");

    // Deleting globex: the admin sees it, acme does not; deleting acme ends acme's stream
    // (its tokens are revoked with it).
    for slug in ["globex", "acme"] {
        let res = app
            .admin_call(Method::DELETE, &format!("/v1/admin/tenants/{slug}"), None)
            .await;
        assert_eq!(res.status, StatusCode::OK);
    }
    let gone = acme_stream.event().await;
    assert_eq!(gone.event, "tenant.deleted");
    assert_eq!(gone.data, json!({"tenant": "acme"}));
    assert!(acme_stream.message().await.is_none(), "the stream ends");
    assert_eq!(admin_stream.event().await.data, json!({"tenant": "globex"}));
    assert_eq!(admin_stream.event().await.data, json!({"tenant": "acme"}));
}

#[tokio::test]
async fn last_event_id_replays_what_was_missed_and_an_unknown_id_gets_reset() {
    let app = TestApp::new().await;
    let token = app.tenant("acme").await;
    let mut stream = Stream::open(&app, &token, None).await;
    stream.event().await;
    app.put_secret("acme", "A", &token, json!({"value": "1"}))
        .await;
    let seen = stream.event().await;
    assert_eq!(seen.data["key"], "A");
    drop(stream);

    // Missed while disconnected.
    app.put_secret("acme", "B", &token, json!({"value": "1"}))
        .await;
    app.put_secret("acme", "A", &token, json!({"value": "2"}))
        .await;
    eventually("both writes reached the hub", || async {
        app.vault.events().retained() >= 3
    })
    .await;
    let mut stream = Stream::open(&app, &token, seen.id.as_deref()).await;
    let replayed = [stream.event().await, stream.event().await];
    assert_eq!(
        replayed[0].data,
        json!({"tenant": "acme", "key": "B", "version": 1})
    );
    assert_eq!(
        replayed[1].data,
        json!({"tenant": "acme", "key": "A", "version": 2})
    );
    let ready = stream.event().await;
    assert_eq!(ready.event, "ready");
    // Live after the replay.
    app.put_secret("acme", "C", &token, json!({"value": "1"}))
        .await;
    assert_eq!(stream.event().await.data["key"], "C");

    // Resuming from `ready` with nothing missed replays nothing.
    let mut again = Stream::open(&app, &token, ready.id.as_deref()).await;
    assert_eq!(again.event().await.data["key"], "C");
    assert_eq!(again.event().await.event, "ready");

    // An id of another replica, an earlier run, or none of ours.
    for unknown in ["0123456789ab-1", "garbage", "x".repeat(500).as_str()] {
        let mut stream = Stream::open(&app, &token, Some(unknown)).await;
        let reset = stream.event().await;
        assert_eq!(reset.event, "reset");
        assert_eq!(reset.data, json!({"reason": "unknown_event_id"}));
        assert_eq!(stream.event().await.event, "ready");
    }
}

#[tokio::test]
async fn an_id_older_than_the_replay_window_gets_reset() {
    let app = TestApp::with_service(with_events(|a| a.client_api.events_replay_window = 2)).await;
    let token = app.tenant("acme").await;
    let mut stream = Stream::open(&app, &token, None).await;
    let ready = stream.event().await;
    for i in 0..3 {
        app.put_secret("acme", &format!("K{i}"), &token, json!({"value": "v"}))
            .await;
        stream.event().await;
    }
    assert_eq!(app.vault.events().retained(), 2);
    let mut late = Stream::open(&app, &token, ready.id.as_deref()).await;
    let reset = late.event().await;
    assert_eq!(reset.event, "reset");
    assert_eq!(reset.data, json!({"reason": "outside_replay_window"}));
    assert_eq!(late.event().await.event, "ready");
}

#[tokio::test]
async fn a_slow_consumer_gets_reset_and_the_server_keeps_only_its_fixed_buffer() {
    let app = TestApp::with_service(with_events(|a| a.client_api.events_stream_buffer = 2)).await;
    let token = app.tenant("acme").await;
    let mut slow = Stream::open(&app, &token, None).await;
    assert_eq!(slow.event().await.event, "ready");
    let before = app.vault.events().retained();
    // 20 writes while the stream is not read at all.
    for v in 1..=20 {
        app.put_secret("acme", "K", &token, json!({"value": format!("v{v}")}))
            .await;
    }
    eventually("the writes reached the hub", || async {
        app.vault.events().retained() >= before + 20
    })
    .await;
    let reset = slow.event().await;
    assert_eq!(reset.event, "reset");
    assert_eq!(reset.data, json!({"reason": "lagged"}));
    // Only what the 2-event buffer held survived; the stream then carries on live.
    let mut versions = Vec::new();
    while versions.last() != Some(&20) {
        let e = slow.event().await;
        assert_eq!(e.event, "secret.written");
        versions.push(e.data["version"].as_i64().unwrap());
    }
    assert!(
        versions.len() <= 2,
        "more than the buffer kept: {versions:?}"
    );
    app.put_secret("acme", "K", &token, json!({"value": "v21"}))
        .await;
    assert_eq!(slow.event().await.data["version"], 21);
}

#[tokio::test]
async fn heartbeats_arrive_on_a_quiet_stream() {
    let app = TestApp::with_service(with_events(|a| a.client_api.events_heartbeat_secs = 1)).await;
    let token = app.tenant("acme").await;
    let mut stream = Stream::open(&app, &token, None).await;
    assert_eq!(stream.event().await.event, "ready");
    let m = stream.message().await.unwrap();
    assert_eq!(m.comment.as_deref(), Some("heartbeat"), "{m:?}");
    assert_eq!(m.raw, ": heartbeat\n\n");
}

#[tokio::test]
async fn a_revoked_token_hears_so_and_its_stream_ends() {
    let app = TestApp::new().await;
    let token = app.tenant("acme").await;
    let other = app.token_for("acme").await;
    let mut stream = Stream::open(&app, &token, None).await;
    let mut other_stream = Stream::open(&app, &other, None).await;
    stream.event().await;
    other_stream.event().await;
    let id: uuid::Uuid = token[4..36].parse().unwrap();
    let slug = tenant_vault::domain::TenantSlug::parse("acme").unwrap();
    let tenant = app.vault.tenant_by_slug(&slug).await.unwrap().unwrap();
    let mut tx = app.pool.begin().await.unwrap();
    app.vault
        .notify_token_revoked(
            &mut tx,
            tenant_vault::domain::TokenId(id),
            Some(&tenant_vault::service::TenantRef {
                id: tenant.id,
                slug,
            }),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let revoked = stream.event().await;
    assert_eq!(revoked.event, "token.revoked");
    assert_eq!(revoked.data, json!({"token_id": id.to_string()}));
    assert!(stream.message().await.is_none(), "the stream ends");
    // The tenant's other token hears of it too, and stays.
    assert_eq!(other_stream.event().await.event, "token.revoked");
    app.put_secret("acme", "K", &other, json!({"value": "v"}))
        .await;
    assert_eq!(other_stream.event().await.event, "secret.written");
}

#[tokio::test]
async fn a_value_imported_from_infisical_is_announced_as_synced() {
    let infisical = TestInfisical::start(&[("/tenants/acme", "SG_KEY", "SG.secret-value")]).await;
    let app = TestApp::with_infisical(&infisical, service_args(60)).await;
    let token = app.tenant("acme").await;
    let mut stream = Stream::open(&app, &token, None).await;
    stream.event().await;
    let res = app.get_secret("acme", "SG_KEY", &token).await;
    assert_eq!(res.headers["x-secret-source"], "infisical");
    let synced = stream.event().await;
    assert_eq!(synced.event, "secret.synced");
    assert_eq!(
        synced.data,
        json!({"tenant": "acme", "key": "SG_KEY", "version": 1})
    );
    assert!(!synced.raw.contains("SG.secret"));
}

#[tokio::test]
async fn no_token_no_stream() {
    let app = TestApp::new().await;
    let res = app
        .call(Method::GET, "/v1/events", Some("tvt_nope"), None)
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.code(), "unauthenticated");
}

async fn batch_get(
    app: &TestApp,
    token: &str,
    request_id: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/secrets/batch-get")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", request_id)
        .body(Body::from(body.to_string()))
        .unwrap();
    let res = app.raw(req).await;
    if res.status == StatusCode::OK {
        assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    }
    (res.status, res.body)
}

#[tokio::test]
async fn batch_get_answers_each_item_in_order_and_audits_each() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.put_secret("acme", "A", &acme, json!({"value": "a-value"}))
        .await;
    app.put_secret("acme", "B", &acme, json!({"value": "b-value"}))
        .await;
    app.put_secret("globex", "A", &globex, json!({"value": "globex-value"}))
        .await;
    app.get_secret("acme", "B", &acme).await; // B is cached now

    let (status, body) = batch_get(
        &app,
        &acme,
        "batch-audit-test",
        json!({"items": [
            {"tenant": "acme", "key": "A"},
            {"tenant": "acme", "key": "MISSING"},
            {"tenant": "globex", "key": "A"},
            {"tenant": "acme", "key": "B"},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["tenant"], "acme");
    assert_eq!(results[0]["key"], "A");
    assert_eq!(results[0]["value"], "a-value");
    assert_eq!(results[0]["version"], 1);
    assert_eq!(results[0]["source"], "database");
    assert!(results[0]["updated_at"].is_string());
    assert_eq!(results[1]["key"], "MISSING");
    assert_eq!(results[1]["error"]["code"], "secret_not_found");
    assert!(results[1].get("value").is_none());
    assert_eq!(results[2]["tenant"], "globex");
    assert_eq!(results[2]["error"]["code"], "forbidden");
    assert!(!body.to_string().contains("globex-value"));
    assert_eq!(results[3]["value"], "b-value");
    assert_eq!(results[3]["source"], "cache");

    app.flush_audit().await;
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "select action, outcome, tenant_slug, secret_key from audit_events \
         where request_id = 'batch-audit-test' order by secret_key nulls first",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let rows: Vec<(&str, &str, Option<&str>, Option<&str>)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_deref(), r.3.as_deref()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("secret.read", "success", Some("acme"), Some("A")),
            ("secret.read", "success", Some("acme"), Some("B")),
            ("secret.read", "not_found", Some("acme"), Some("MISSING")),
        ]
    );
    // The refused item is counted like a refused request (aggregated, see tests/tokens.rs).
    let denied: Vec<(String, Option<String>, Option<i32>)> = sqlx::query_as(
        "select action, tenant_slug, count from audit_events \
         where outcome = 'denied' and route = '/v1/secrets/batch-get'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        denied,
        vec![(
            "access.tenant".to_owned(),
            Some("globex".to_owned()),
            Some(1)
        )]
    );
}

#[tokio::test]
async fn batch_get_limits_and_bad_items() {
    let app = TestApp::with_service(with_events(|a| a.client_api.batch_get_max_items = 3)).await;
    let acme = app.tenant("acme").await;
    let item = json!({"tenant": "acme", "key": "A"});
    let (status, body) =
        batch_get(&app, &acme, "r1", json!({"items": vec![item.clone(); 4]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 3"));

    let (status, body) = batch_get(
        &app,
        &acme,
        "r2",
        json!({"items": [{"tenant": "Not A Slug", "key": "A"}, {"tenant": "acme", "key": "no/slash"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"][0]["error"]["code"], "invalid_tenant");
    assert_eq!(body["results"][1]["error"]["code"], "invalid_secret_key");

    let (status, body) = batch_get(&app, &acme, "r3", json!({"items": []})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"results": []}));

    let (status, body) = batch_get(&app, &acme, "r4", json!({"keys": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_json");

    // An admin token reads no secrets, item by item.
    let (status, body) = batch_get(&app, &app.admin_token, "r5", json!({"items": [item]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"][0]["error"]["code"], "forbidden");
}
