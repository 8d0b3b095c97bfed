//! Replicas agree at once (NOTIFY/LISTEN), and rotations under load: 16 clients reading and
//! writing through two replicas while the master key and data keys rotate.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use common::{eventually, TestApp};
use serde_json::json;

#[tokio::test]
async fn a_change_through_one_replica_is_seen_by_the_other_long_before_the_ttl() {
    // Cache TTL 60 s: only a notification can make B drop what it cached.
    let a = TestApp::new().await;
    let token = a.tenant("acme").await;
    let b = a.another_instance().await;
    a.put_secret("acme", "K", &token, json!({"value": "one"}))
        .await;
    // B has handled that write's notification, so what it caches now stays.
    eventually("b heard of the first write", || async {
        b.vault.listener_stats().1 >= 1
    })
    .await;
    b.get_secret("acme", "K", &token).await;
    let res = b.get_secret("acme", "K", &token).await;
    assert_eq!(res.headers["x-secret-source"], "cache");
    assert_eq!(res.body["value"], "one");

    // A write.
    a.put_secret("acme", "K", &token, json!({"value": "two"}))
        .await;
    eventually("b sees the write", || async {
        b.get_secret("acme", "K", &token).await.body["value"] == "two"
    })
    .await;

    // A rollback.
    let res = a
        .call(
            Method::POST,
            "/v1/tenants/acme/secrets/K/rollback",
            Some(&token),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    eventually("b sees the rollback", || async {
        let res = b.get_secret("acme", "K", &token).await;
        res.body["value"] == "one" && res.body["version"] == 3
    })
    .await;

    // A delete.
    a.call(
        Method::DELETE,
        "/v1/tenants/acme/secrets/K",
        Some(&token),
        None,
    )
    .await;
    eventually("b sees the delete", || async {
        b.get_secret("acme", "K", &token).await.status == StatusCode::NOT_FOUND
    })
    .await;

    // A master key rotation.
    a.put_secret("acme", "K", &token, json!({"value": "three"}))
        .await;
    let res = a.admin_post("/v1/admin/master-key/rotate").await;
    assert_eq!(res.status, StatusCode::OK);
    eventually("b loads master key version 2", || async {
        b.vault.masters().active_version() == 2
    })
    .await;
    assert_eq!(
        b.get_secret("acme", "K", &token).await.body["value"],
        "three"
    );

    // A tenant delete.
    let res = a
        .admin_call(Method::DELETE, "/v1/admin/tenants/acme", None)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    eventually("b refuses the deleted tenant", || async {
        b.get_secret("acme", "K", &token).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    let (_, received) = b.vault.listener_stats();
    assert!(received >= 5, "b handled the notifications: {received}");
}

#[tokio::test]
async fn a_replica_that_lost_its_listener_drops_its_caches_and_listens_again() {
    let a = TestApp::new().await;
    let token = a.tenant("acme").await;
    a.put_secret("acme", "K", &token, json!({"value": "before"}))
        .await;
    let b = a.another_instance().await;
    b.get_secret("acme", "K", &token).await;
    assert_eq!(
        b.get_secret("acme", "K", &token).await.headers["x-secret-source"],
        "cache"
    );
    let (subscriptions, _) = b.vault.listener_stats();
    assert_eq!(subscriptions, 1);

    let killed: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity
         where application_name = $1 and datname = current_database()",
    )
    .bind(tenant_vault::service::notify::LISTENER_APPLICATION_NAME)
    .fetch_all(&a.pool)
    .await
    .unwrap();
    assert!(killed.len() >= 2, "both replicas' listeners were cut");
    // Written while B may not be listening: its notification may be lost.
    a.put_secret("acme", "K", &token, json!({"value": "after"}))
        .await;

    eventually("b listens again", || async {
        b.vault.listener_stats().0 >= 2
    })
    .await;
    let res = b.get_secret("acme", "K", &token).await;
    assert_eq!(res.body["value"], "after");
    assert_eq!(res.headers["x-secret-source"], "database");

    // And notifications flow again.
    a.put_secret("acme", "K", &token, json!({"value": "later"}))
        .await;
    eventually("b sees writes again", || async {
        b.get_secret("acme", "K", &token).await.body["value"] == "later"
    })
    .await;
}

const CLIENTS: usize = 16;
const ROUNDS: usize = 25;
const TENANTS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotations_under_load_fail_no_request_and_answer_no_wrong_value() {
    let a = Arc::new(TestApp::new().await);
    let mut tokens = Vec::new();
    for t in 0..TENANTS {
        tokens.push(a.tenant(&format!("load-{t}")).await);
    }
    let b = Arc::new(a.another_instance().await);
    let tokens = Arc::new(tokens);
    // Every value ever written to each key, recorded before it is sent: a read may be
    // stale across replicas, but must never be something that was not written.
    let written: Arc<Mutex<HashMap<String, HashSet<String>>>> = Default::default();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (a, b, tokens, written, failures, requests) = (
            a.clone(),
            b.clone(),
            tokens.clone(),
            written.clone(),
            failures.clone(),
            requests.clone(),
        );
        clients.push(tokio::spawn(async move {
            // Half the clients use each replica for their own keys.
            let mine = if c % 2 == 0 { &a } else { &b };
            let theirs = if c % 2 == 0 { &b } else { &a };
            let mut last: HashMap<String, String> = HashMap::new();
            for round in 0..ROUNDS {
                let t = (c + round) % TENANTS;
                let slug = format!("load-{t}");
                let key = format!("C{c}_K{}", round % 3);
                let id = format!("{slug}/{key}");
                let value = format!("c{c}-r{round}-{}", uuid::Uuid::new_v4());
                written
                    .lock()
                    .unwrap()
                    .entry(id.clone())
                    .or_default()
                    .insert(value.clone());
                let res = mine
                    .put_secret(&slug, &key, &tokens[t], json!({ "value": value }))
                    .await;
                requests.fetch_add(1, Ordering::SeqCst);
                if res.status != StatusCode::OK {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("put {id}: {}", res.text));
                    continue;
                }
                last.insert(id.clone(), value.clone());
                // Read your own write, through the replica that wrote it.
                let res = mine.get_secret(&slug, &key, &tokens[t]).await;
                requests.fetch_add(1, Ordering::SeqCst);
                if res.status != StatusCode::OK || res.body["value"] != value.as_str() {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("read-own {id}: {} {}", res.status, res.text));
                }
                // Read someone else's key through the other replica.
                let other = (c + 1) % CLIENTS;
                let other_key = format!("C{other}_K{}", round % 3);
                let other_id = format!("{slug}/{other_key}");
                let res = theirs.get_secret(&slug, &other_key, &tokens[t]).await;
                requests.fetch_add(1, Ordering::SeqCst);
                match res.status {
                    StatusCode::OK => {
                        let got = res.body["value"].as_str().unwrap_or_default().to_owned();
                        let known = written
                            .lock()
                            .unwrap()
                            .get(&other_id)
                            .is_some_and(|s| s.contains(&got));
                        if !known {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("wrong value for {other_id}"));
                        }
                    }
                    StatusCode::NOT_FOUND if res.code() == "secret_not_found" => {}
                    other => failures
                        .lock()
                        .unwrap()
                        .push(format!("read-other {other_id}: {other} {}", res.text)),
                }
            }
            last
        }));
    }

    // Meanwhile: master key rotations through either replica, data key rotations of every
    // tenant, and the re-encryption job.
    let rotator = {
        let (a, b, failures, done) = (a.clone(), b.clone(), failures.clone(), done.clone());
        tokio::spawn(async move {
            let mut rotations = (0, 0);
            let mut i = 0;
            while !done.load(Ordering::SeqCst) || rotations.0 < 3 {
                let via = if i % 2 == 0 { &a } else { &b };
                let res = via.admin_post("/v1/admin/master-key/rotate").await;
                match res.status {
                    StatusCode::OK => rotations.0 += 1,
                    _ => failures
                        .lock()
                        .unwrap()
                        .push(format!("master rotation: {}", res.text)),
                }
                let t = i % TENANTS;
                let res = via
                    .admin_post(&format!("/v1/admin/tenants/load-{t}/data-key/rotate"))
                    .await;
                match res.status {
                    StatusCode::OK => rotations.1 += 1,
                    _ => failures
                        .lock()
                        .unwrap()
                        .push(format!("data key rotation: {}", res.text)),
                }
                if let Err(e) = via.vault.reencrypt_pending().await {
                    failures.lock().unwrap().push(format!("re-encryption: {e}"));
                }
                i += 1;
            }
            rotations
        })
    };

    let mut last_values = HashMap::new();
    for c in clients {
        last_values.extend(c.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let (master_rotations, data_key_rotations) = rotator.await.unwrap();

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    assert_eq!(requests.load(Ordering::SeqCst), CLIENTS * ROUNDS * 3);
    assert!(master_rotations >= 3 && data_key_rotations >= 3);

    // Every write readable afterwards, with its last value, from a fresh replica.
    a.vault.reencrypt_pending().await.unwrap();
    let fresh = a.another_instance().await;
    assert_eq!(
        last_values.len(),
        CLIENTS * 12,
        "12 (tenant, key) pairs per client"
    );
    for (id, value) in &last_values {
        let (slug, key) = id.split_once('/').unwrap();
        let t: usize = slug.strip_prefix("load-").unwrap().parse().unwrap();
        let res = fresh.get_secret(slug, key, &tokens[t]).await;
        assert_eq!(res.status, StatusCode::OK, "{id}: {}", res.text);
        assert_eq!(res.body["value"], value.as_str(), "{id}");
    }
    // Nothing is left under old keys, and one master key version wraps everything.
    let report = fresh.get("/v1/admin/keys", &fresh.admin_token).await;
    assert_eq!(report.body["secrets_under_decrypt_only_keys"]["current"], 0);
    assert_eq!(
        report.body["secrets_under_decrypt_only_keys"]["kept_versions"],
        0
    );
    assert_eq!(report.body["data_keys"]["decrypt_only"], 0);
    let active = report.body["master_key"]["active_version"]
        .as_i64()
        .unwrap();
    for v in report.body["master_key"]["versions"].as_array().unwrap() {
        if v["version"].as_i64().unwrap() != active {
            assert_eq!(v["wrapped_data_keys"], 0);
        }
    }
}
