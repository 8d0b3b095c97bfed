//! The HTTP edge holds (issue 9 item 5): slow-loris connections are dropped after the header
//! timeout while normal requests are served, a handler panic is a 500 in our error shape,
//! NUL bytes and absurd numbers are 400s, `/readyz` tells strangers only "not ready", and a
//! real `serve` process stays within its cache's byte bound (item 7).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::Router;
use common::serve::{Serve, NO_DATABASE};
use common::TestApp;
use serde_json::json;
use tenant_vault::server::EdgeSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn serve(app: impl Into<tenant_vault::api::App>, edge: EdgeSettings) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tenant_vault::server::serve(
        listener,
        app.into(),
        None,
        edge,
        std::future::pending(),
    ));
    addr
}

#[tokio::test]
async fn slow_header_connections_are_dropped_while_normal_requests_answer() {
    let app = TestApp::new().await;
    let edge = EdgeSettings {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(60),
        max_connections: 1000,
    };
    let addr = serve(app.router.clone(), edge).await;

    // 200 clients send a request line, then trickle header bytes and never finish.
    let mut trickling = Vec::new();
    for _ in 0..200 {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        trickling.push(tokio::spawn(async move {
            // Until the server closes the connection: a byte every 200 ms.
            for _ in 0..150 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if conn.write_all(b"X").await.is_err() {
                    return true;
                }
                let mut buf = [0u8; 256];
                match tokio::time::timeout(Duration::from_millis(1), conn.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    // A 408 (or any answer) also ends the connection; keep reading to EOF.
                    Ok(Ok(_)) => continue,
                    Err(_) => continue,
                }
            }
            false
        }));
    }
    // Meanwhile a normal request answers.
    let res = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let mut dropped = 0;
    for t in trickling {
        if t.await.unwrap() {
            dropped += 1;
        }
    }
    assert_eq!(
        dropped, 200,
        "every trickling connection is closed by the server"
    );
    let res = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_connection_that_moves_no_byte_is_closed_after_the_idle_timeout() {
    let app = TestApp::new().await;
    let edge = EdgeSettings {
        // Far longer than the test waits: only the idle timeout can close it.
        header_timeout: Duration::from_secs(600),
        idle_timeout: Duration::from_secs(1),
        max_connections: 10,
    };
    let addr = serve(app.router.clone(), edge).await;
    // One request on a kept-alive connection, then silence.
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_handler_panic_is_a_500_in_the_error_shape() {
    let router = tenant_vault::api::harden(Router::new().route(
        "/boom",
        get(|| async {
            if true {
                panic!("the handler fell over with sk_live_not_a_real_secret");
            }
            "unreachable"
        }),
    ));
    let addr = serve(router, EdgeSettings::default()).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        // The same client (and kept-alive connection) both times: nothing was dropped.
        let res = client
            .get(format!("http://{addr}/boom"))
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = res.text().await.unwrap();
        assert!(!text.contains("sk_live"), "{text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "internal");
    }
}

#[tokio::test]
async fn nul_bytes_and_absurd_numbers_are_400() {
    let app = TestApp::new().await;
    let token = app.tenant("acme").await;
    let admin = Some(app.admin_token.as_str());
    let bad: Vec<(Method, String, Option<&str>, Option<serde_json::Value>)> = vec![
        (
            Method::GET,
            "/v1/tenants/acme/secrets/K%00X".into(),
            Some(&token),
            None,
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/secrets/K%00X".into(),
            Some(&token),
            Some(json!({"value": "v"})),
        ),
        (
            Method::GET,
            "/v1/tenants/ac%00me/secrets/K".into(),
            Some(&token),
            None,
        ),
        (
            Method::POST,
            "/v1/admin/tenants".into(),
            admin,
            Some(json!({"slug": "nul\u{0}slug"})),
        ),
        (
            Method::POST,
            "/v1/admin/tenants".into(),
            admin,
            Some(json!({"slug": "okslug", "name": "a\u{0}b"})),
        ),
        (
            Method::POST,
            "/v1/admin/tenants/acme/tokens".into(),
            admin,
            Some(json!({"description": "x\u{0}y"})),
        ),
        // A service token's description with a NUL was a 500.
        (
            Method::POST,
            "/v1/admin/service-tokens".into(),
            admin,
            Some(json!({"tenants": "*", "description": "x\u{0}y"})),
        ),
        (
            Method::POST,
            "/v1/admin/tenants/acme/tokens".into(),
            admin,
            Some(json!({"ttl_secs": u64::MAX})),
        ),
        (
            Method::POST,
            "/v1/admin/tenants/acme/tokens".into(),
            admin,
            Some(json!({"ttl_secs": 1e300})),
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/secrets/K".into(),
            Some(&token),
            Some(json!({"value": "v", "cas": 99_999_999_999u64})),
        ),
        (
            Method::PUT,
            "/v1/tenants/acme/secrets/K".into(),
            Some(&token),
            Some(json!({"value": "v", "cas": 1e300})),
        ),
        (
            Method::GET,
            "/v1/tenants/acme/secrets/K?version=99999999999999999999".into(),
            Some(&token),
            None,
        ),
        (
            Method::GET,
            "/v1/tenants/acme/secrets/K?version=-1".into(),
            Some(&token),
            None,
        ),
        (
            Method::GET,
            "/v1/tenants/acme/secrets/K?version=1%00".into(),
            Some(&token),
            None,
        ),
        (
            Method::POST,
            "/v1/tenants/acme/secrets/K/rollback".into(),
            Some(&token),
            Some(json!({"version": 1e300})),
        ),
    ];
    for (method, path, tok, body) in bad {
        let res = app.call(method.clone(), &path, tok, body.clone()).await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {}",
            res.text
        );
        assert!(res.body["error"]["code"].is_string(), "{}", res.text);
    }
    // Nothing was created on the way.
    let res = app
        .call(Method::GET, "/v1/tenants/acme/secrets", Some(&token), None)
        .await;
    assert_eq!(res.body["secrets"], json!([]), "{}", res.text);
    // A value is opaque bytes: NUL is allowed there, and comes back intact.
    let res = app
        .put_secret("acme", "K", &token, json!({"value": "a\u{0}b"}))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    assert_eq!(
        app.get_secret("acme", "K", &token).await.body["value"],
        "a\u{0}b"
    );
}

#[tokio::test]
async fn readyz_before_ready_tells_strangers_only_not_ready() {
    let tmp = tempfile::tempdir().unwrap();
    // No database: the vault never becomes ready; the reason is only in the log.
    let serve = Serve::start(tmp.path(), &["--listen", "127.0.0.1:0"], &[]).unwrap();
    let client = reqwest::Client::new();
    let res = client.get(serve.http_url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body, json!({"status": "not_ready"}));
    let res = client
        .get(serve.http_url("/v1/tenants/acme/secrets/K"))
        .bearer_auth("tvt_x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = res.text().await.unwrap();
    assert!(text.contains("not_ready"), "{text}");
    for detail in [
        "database",
        "PostgreSQL",
        "127.0.0.1:1",
        "master key",
        "connect",
    ] {
        assert!(!text.contains(detail), "{detail} in {text}");
    }
    // The operator finds the reason in the log.
    let mut log = serve.startup.clone();
    for _ in 0..50 {
        log.push_str(&serve.drain_log());
        if log.contains("not ready; retrying") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(log.contains("not ready; retrying"), "{log}");
    let _ = NO_DATABASE;
}

/// VmRSS of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test]
async fn a_serving_process_stays_within_its_cache_byte_bound() {
    use futures::StreamExt as _;
    let (_, db_url) = common::fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let bound: u64 = 8 * 1024 * 1024;
    let bound_text = bound.to_string();
    let serve = Serve::start(
        tmp.path(),
        &["--listen", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", db_url.as_str()),
            ("TENANT_VAULT_CACHE_MAX_BYTES", bound_text.as_str()),
            ("TENANT_VAULT_QUOTA_MAX_BYTES", "0"),
            ("TENANT_VAULT_RATE_LIMIT_TOKEN_RPS", "0"),
            ("TENANT_VAULT_RATE_LIMIT_TENANT_RPS", "0"),
        ],
    )
    .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(res) = client.get(serve.http_url("/readyz")).send().await {
            if res.status() == StatusCode::OK {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "serve became ready: {}", serve.drain_log());
    // An admin token (issuing one wraps no key), then a tenant and its token over HTTP.
    let pool = tenant_vault::store::connect(&db_url, 2).await.unwrap();
    // The serving process's own master key (the audit key it unwraps chains the rows).
    let source = std::sync::Arc::new(tenant_vault::keys::source::EnvSource::new(
        zeroize::Zeroizing::new("c".repeat(64)),
    ));
    let tool = App::build(
        pool.clone(),
        source,
        tmp.path(),
        &tenant_vault::cli::default_service(),
    )
    .await
    .unwrap();
    let admin = tool
        .vault
        .create_token(&Default::default(), None, None, None)
        .await
        .unwrap()
        .text
        .to_string();
    let res = client
        .post(serve.http_url("/v1/admin/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"slug": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res: serde_json::Value = client
        .post(serve.http_url("/v1/admin/tenants/acme/tokens"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = res["token"].as_str().unwrap().to_owned();
    let baseline = rss(serve.child.id());

    // 1,500 values of 64 KiB (about 94 MiB), each written and read back.
    let value = "v".repeat(64 * 1024);
    let results: Vec<(u16, u16)> = futures::stream::iter(0..1500)
        .map(|i| {
            let (client, token, value) = (client.clone(), token.clone(), value.clone());
            let url = serve.http_url(&format!("/v1/tenants/acme/secrets/BIG_{i}"));
            async move {
                let put = client
                    .put(&url)
                    .bearer_auth(&token)
                    .json(&json!({"value": value}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
                let get = res.status().as_u16();
                let _ = res.bytes().await;
                (put, get)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(
        results.iter().all(|r| *r == (200, 200)),
        "{:?}",
        results.iter().find(|r| **r != (200, 200))
    );
    let grown = rss(serve.child.id()).saturating_sub(baseline);
    // The values alone are 94 MiB; unbounded, the cache held all of them. Bounded, the
    // process grows by the bound plus working memory (buffers, allocator slack).
    eprintln!("RSS grew by {} MiB", grown >> 20);
    assert!(
        grown < bound + 56 * 1024 * 1024,
        "RSS grew by {} MiB with a {} MiB cache bound",
        grown >> 20,
        bound >> 20
    );
    tool.shutdown().await;
    pool.close().await;
}

use tenant_vault::app::App;
