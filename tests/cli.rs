//! The `tenant-vault` binary as a user runs it: help text, start-up errors, the admin
//! commands, and `dev` end to end (start, use, Ctrl-C, start again with nothing lost).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fresh_database;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_tenant-vault");

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    common::run_binary(args, env)
}

#[test]
fn help_explains_every_flag_and_its_variable() {
    let (ok, out, _) = run(&["--help"], &[]);
    assert!(ok);
    for cmd in ["serve", "migrate", "dev", "tenant", "token"] {
        assert!(out.contains(cmd), "{out}");
    }
    let (ok, out, _) = run(&["serve", "--help"], &[]);
    assert!(ok);
    for var in [
        "DATABASE_URL",
        "TENANT_VAULT_LISTEN",
        "TENANT_VAULT_CACHE_TTL_SECS",
        "TENANT_VAULT_MASTER_KEY",
        "TENANT_VAULT_MAX_VALUE_BYTES",
        "0 turns the cache off",
    ] {
        assert!(out.contains(var), "serve --help lacks {var}");
    }
    let (ok, out, _) = run(&["dev", "--help"], &[]);
    assert!(ok);
    assert!(out.contains("--data-dir") && out.contains("./.tenant-vault-dev"));
    let (ok, out, _) = run(&["token", "create", "--help"], &[]);
    assert!(ok);
    assert!(out.contains("--admin") && out.contains("--tenant"));
}

#[test]
fn out_of_range_settings_are_clear_start_up_errors() {
    let db = [("DATABASE_URL", "postgres://127.0.0.1:1/none")];
    for ttl in ["3601", "-1", "soon"] {
        let (ok, _, err) = run(&["serve", &format!("--cache-ttl-secs={ttl}")], &db);
        assert!(!ok);
        assert!(err.contains("--cache-ttl-secs"), "{err}");
    }
    let (ok, _, err) = run(
        &["serve"],
        &[
            ("DATABASE_URL", "postgres://127.0.0.1:1/none"),
            ("TENANT_VAULT_CACHE_TTL_SECS", "9999"),
        ],
    );
    assert!(!ok);
    assert!(err.contains("0..=3600"), "{err}");
    let (ok, _, err) = run(&["token", "create"], &db);
    assert!(!ok);
    assert!(err.contains("--admin") || err.contains("--tenant"), "{err}");
}

#[tokio::test]
async fn admin_commands_and_a_wrong_master_key() {
    let (_pool, url) = fresh_database().await;
    let key = "c".repeat(64);
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("TENANT_VAULT_MASTER_KEY", key.as_str()),
        ("TENANT_VAULT_MASTER_KEY_SOURCE", "env"),
    ];
    let (ok, out, err) = run(&["migrate"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("migrations applied"));
    let (ok, out, err) = run(&["token", "create", "--admin"], &env);
    assert!(ok, "{err}");
    assert!(out.trim().starts_with("tvt_"), "{out}");
    assert!(
        !err.contains(out.trim()),
        "the token is printed once, on stdout"
    );
    let (ok, out, err) = run(&["tenant", "create", "acme", "--name", "Acme Inc"], &env);
    assert!(ok, "{err}");
    assert!(out.contains("created tenant acme"));
    let (ok, _, err) = run(&["tenant", "create", "acme"], &env);
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&["tenant", "create", "../etc"], &env);
    assert!(!ok);
    assert!(err.contains("invalid slug"), "{err}");
    let (ok, out, err) = run(&["token", "create", "--tenant", "acme"], &env);
    assert!(ok, "{err}");
    assert!(out.trim().starts_with("tvt_"));
    let (ok, _, err) = run(&["token", "create", "--tenant", "nosuch"], &env);
    assert!(!ok);
    assert!(err.contains("tenant not found"), "{err}");

    // serve with another master key refuses to start, naming the version and not the key.
    let wrong = "d".repeat(64);
    let (ok, _, err) = run(
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("TENANT_VAULT_MASTER_KEY", wrong.as_str()),
            ("TENANT_VAULT_MASTER_KEY_SOURCE", "env"),
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("master key version 1") && err.contains("does not match"),
        "{err}"
    );
    assert!(!err.contains(&wrong) && !err.contains(&key));
    // ... and without a master key source it says what to set.
    let (ok, _, err) = run(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("DATABASE_URL", url.as_str())],
    );
    assert!(!ok);
    assert!(
        err.contains("INFISICAL_SITE_URL") && err.contains("--master-key-source env"),
        "{err}"
    );
    let (ok, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--master-key-source",
            "env",
        ],
        &[("DATABASE_URL", url.as_str())],
    );
    assert!(!ok);
    assert!(err.contains("TENANT_VAULT_MASTER_KEY"), "{err}");
}

#[test]
fn token_commands_explain_themselves() {
    for (cmd, needles) in [
        ("list", &["--tenant", "--json", "never their secrets"][..]),
        ("revoke", &["every running replica"][..]),
        (
            "rotate",
            &["--grace-secs", "TENANT_VAULT_TOKEN_MAX_TTL_SECS"][..],
        ),
        (
            "create-service",
            &[
                "--tenants",
                "--all-tenants",
                "--scopes",
                "--pattern",
                "secrets:read",
            ][..],
        ),
        (
            "create",
            &[
                "--scopes",
                "--pattern",
                "TENANT_VAULT_TOKEN_DEFAULT_TTL_SECS",
            ][..],
        ),
    ] {
        let (ok, out, err) = run(&["token", cmd, "--help"], &[]);
        assert!(ok, "{err}");
        for needle in needles {
            assert!(
                out.contains(needle),
                "token {cmd} --help lacks {needle}: {out}"
            );
        }
    }
    let (ok, _, err) = run(
        &["serve"],
        &[
            ("DATABASE_URL", "postgres://127.0.0.1:1/none"),
            ("TENANT_VAULT_MASTER_KEY_SOURCE", "env"),
            ("TENANT_VAULT_MASTER_KEY", &"f".repeat(64)),
            ("TENANT_VAULT_TOKEN_DEFAULT_TTL_SECS", "7200"),
            ("TENANT_VAULT_TOKEN_MAX_TTL_SECS", "3600"),
        ],
    );
    assert!(!ok);
    assert!(err.contains("TENANT_VAULT_TOKEN_MAX_TTL_SECS"), "{err}");
}

#[tokio::test]
async fn token_list_revoke_rotate_and_service_tokens_from_the_cli() {
    let (pool, url) = fresh_database().await;
    let key = "e".repeat(64);
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("TENANT_VAULT_MASTER_KEY", key.as_str()),
        ("TENANT_VAULT_MASTER_KEY_SOURCE", "env"),
        ("USER", "alice"),
    ];
    let (ok, _, err) = run(&["tenant", "create", "acme"], &env);
    assert!(ok, "{err}");
    let (ok, reader, err) = run(
        &[
            "token",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "secrets:read",
            "--description",
            "reader",
        ],
        &env,
    );
    assert!(ok, "{err}");
    let reader = reader.trim().to_owned();
    let reader_id = uuid::Uuid::parse_str(&reader[4..36]).unwrap().to_string();
    let (ok, service, err) = run(
        &[
            "token",
            "create-service",
            "--tenants",
            "acme,globex",
            "--scopes",
            "secrets:read",
            "--pattern",
            "STRIPE_*",
        ],
        &env,
    );
    assert!(ok, "{err}");
    assert!(service.trim().starts_with("tvt_"));
    let (ok, _, err) = run(
        &[
            "token",
            "create",
            "--tenant",
            "acme",
            "--ttl-secs",
            "99999999999",
        ],
        &env,
    );
    assert!(!ok);
    assert!(err.contains("ttl_secs"), "{err}");
    let (ok, _, err) = run(&["token", "create-service", "--tenants", "Bad Slug"], &env);
    assert!(!ok);
    assert!(err.contains("invalid slug"), "{err}");

    // Listing: ids, scopes, never a secret.
    let (ok, out, err) = run(&["token", "list", "--tenant", "acme", "--json"], &env);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == reader_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["scopes"], json!(["secrets:read"]));
    assert!(mine["revoked_at"].is_null());
    assert!(!out.contains(&reader[37..]));
    let (ok, table, _) = run(&["token", "list"], &env);
    assert!(ok);
    assert!(
        table.contains("service") && table.contains("STRIPE_*") && table.contains("acme,globex")
    );
    assert!(!table.contains(&service.trim()[37..]));

    // Rotate, then revoke; each carries the OS user as actor.
    let (ok, rotated, err) = run(&["token", "rotate", &reader_id, "--grace-secs", "0"], &env);
    assert!(ok, "{err}");
    assert!(rotated.trim().starts_with("tvt_") && rotated.trim() != reader);
    let (ok, out, err) = run(&["token", "revoke", &reader_id], &env);
    assert!(ok, "{err}");
    assert!(out.contains(&reader_id));
    let (ok, out, _) = run(&["token", "list", "--tenant", "acme", "--json"], &env);
    assert!(ok);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == reader_id.as_str() && t["revoked_at"].is_string()));
    let (ok, _, err) = run(
        &["token", "revoke", &uuid::Uuid::new_v4().to_string()],
        &env,
    );
    assert!(!ok);
    assert!(err.contains("token not found"), "{err}");
    let (ok, _, err) = run(&["token", "revoke", "nope"], &env);
    assert!(!ok);
    assert!(err.contains("invalid token id"), "{err}");
    let actors: Vec<(String, Option<String>)> = sqlx::query_as(
        "select action, actor from audit_events where action in ('token.create', 'token.rotate', 'token.revoke')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(actors.len() >= 4, "{actors:?}");
    assert!(
        actors.iter().all(|a| a.1.as_deref() == Some("cli:alice")),
        "{actors:?}"
    );
}

struct Dev {
    child: std::process::Child,
}

impl Dev {
    fn start(dir: &Path) -> (Dev, std::collections::HashMap<String, String>) {
        let env_file = dir.join("dev.env");
        let before = std::fs::metadata(&env_file).and_then(|m| m.modified()).ok();
        let child = Command::new(BIN)
            .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env_remove("DATABASE_URL")
            .env_remove("INFISICAL_SITE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        // Wait for this run's dev.env (an earlier run's may be there already).
        while std::fs::metadata(&env_file).and_then(|m| m.modified()).ok() == before {
            assert!(Instant::now() < deadline, "dev did not write dev.env");
            std::thread::sleep(Duration::from_millis(100));
        }
        let vars = std::fs::read_to_string(&env_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        (Dev { child }, vars)
    }

    /// Ctrl-C, then wait for a clean exit.
    fn interrupt(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "dev did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_end_to_end_and_restart() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let (dev, env) = Dev::start(dir.path());
    let addr = env["TENANT_VAULT_ADDR"].clone();
    let admin = env["TENANT_VAULT_ADMIN_TOKEN"].clone();
    let db_url = env["DATABASE_URL"].clone();
    let client = reqwest::Client::new();

    let mut tokens = std::collections::HashMap::new();
    for slug in ["acme", "globex"] {
        let (status, _, _) = call(
            &client,
            Method::POST,
            format!("{addr}/v1/admin/tenants"),
            &admin,
            Some(json!({"slug": slug, "name": slug})),
        )
        .await;
        assert_eq!(status, 201);
        let (status, body, _) = call(
            &client,
            Method::POST,
            format!("{addr}/v1/admin/tenants/{slug}/tokens"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 201);
        tokens.insert(slug, body["token"].as_str().unwrap().to_owned());
        let (status, _, _) = call(
            &client,
            Method::PUT,
            format!("{addr}/v1/tenants/{slug}/secrets/STRIPE_KEY"),
            &tokens[slug],
            Some(json!({"value": format!("sk_{slug}_secret")})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let url = format!("{addr}/v1/tenants/acme/secrets/STRIPE_KEY");
    let (status, body, headers) =
        call(&client, Method::GET, url.clone(), &tokens["acme"], None).await;
    assert_eq!(
        (status, body["value"].as_str()),
        (200, Some("sk_acme_secret"))
    );
    assert_eq!(headers["x-secret-source"], "database");
    let (_, _, headers) = call(&client, Method::GET, url.clone(), &tokens["acme"], None).await;
    assert_eq!(headers["x-secret-source"], "cache");
    let (status, _, _) = call(&client, Method::GET, url.clone(), &tokens["globex"], None).await;
    assert_eq!(status, 403);

    // No plaintext in company_secrets, read straight from the dev database.
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    let dump: String = sqlx::query_scalar("select string_agg(t::text, ' ') from company_secrets t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!dump.contains("sk_acme_secret") && !dump.contains("sk_globex_secret"));
    // dev runs like production: the server's DATABASE_URL is the runtime role, which can
    // read the audit trail but not change it; migrations ran as the owner.
    let who: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(who, "tenant_vault_runtime");
    let err = sqlx::query("delete from audit_events")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert!(env["TENANT_VAULT_MIGRATE_DATABASE_URL"].contains("tenant_vault_owner"));
    pool.close().await;

    // A secret placed in Infisical (the dev emulator) through Infisical's own API, with the
    // credentials from dev.env, is answered from Infisical, then from the cache.
    let mut icfg = tenant_vault::infisical::InfisicalConfig::new(
        env["INFISICAL_SITE_URL"].clone(),
        env["INFISICAL_CLIENT_ID"].clone(),
        env["INFISICAL_CLIENT_SECRET"].clone(),
        env["INFISICAL_PROJECT_ID"].clone(),
        env["INFISICAL_ENVIRONMENT"].clone(),
    );
    icfg.max_retries = 0;
    let infisical = tenant_vault::infisical::InfisicalClient::new(icfg).unwrap();
    infisical.ensure_folder_path("/tenants/acme").await.unwrap();
    infisical
        .create_secret("/tenants/acme", "SENDGRID_API_KEY", "SG.dev-emulator")
        .await
        .unwrap();
    let sg = format!("{addr}/v1/tenants/acme/secrets/SENDGRID_API_KEY");
    let (status, body, headers) =
        call(&client, Method::GET, sg.clone(), &tokens["acme"], None).await;
    assert_eq!(
        (status, body["value"].as_str()),
        (200, Some("SG.dev-emulator"))
    );
    assert_eq!(headers["x-secret-source"], "infisical");
    let (_, _, headers) = call(&client, Method::GET, sg.clone(), &tokens["acme"], None).await;
    assert_eq!(headers["x-secret-source"], "cache");
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    let imported: i64 = sqlx::query_scalar(
        "select count(*) from company_secrets where secret_key = 'SENDGRID_API_KEY'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(imported, 1);
    pool.close().await;

    // Infisical down: database and cached keys are still served; unknown keys get 503 fast.
    let res = client
        .put(format!("{}/_emulator/faults", env["INFISICAL_SITE_URL"]))
        .json(&json!({"down": true}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let (status, _, headers) = call(&client, Method::GET, sg.clone(), &tokens["acme"], None).await;
    assert_eq!(
        (status, headers["x-secret-source"].to_str().unwrap()),
        (200, "cache")
    );
    let (status, _, _) = call(
        &client,
        Method::GET,
        format!("{addr}/v1/tenants/globex/secrets/STRIPE_KEY"),
        &tokens["globex"],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let started = Instant::now();
    let (status, body, _) = call(
        &client,
        Method::GET,
        format!("{addr}/v1/tenants/acme/secrets/UNKNOWN"),
        &tokens["acme"],
        None,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "dependency_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5));
    client
        .put(format!("{}/_emulator/faults", env["INFISICAL_SITE_URL"]))
        .json(&json!({"down": false}))
        .send()
        .await
        .unwrap();

    // Deleting acme makes its secrets unreadable.
    let (status, _, _) = call(
        &client,
        Method::DELETE,
        format!("{addr}/v1/admin/tenants/acme"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&client, Method::GET, url.clone(), &tokens["acme"], None).await;
    assert_eq!(status, 401);

    let port = db_url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap()
        .get_port();
    assert!(dev.interrupt().success());
    // Everything it started has stopped, PostgreSQL included.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "PostgreSQL still running"
    );
    assert!(client.get(format!("{addr}/healthz")).send().await.is_err());

    // A second run reuses the data: globex's secret and the admin token survive.
    let (dev, env2) = Dev::start(dir.path());
    assert_eq!(env2["TENANT_VAULT_ADMIN_TOKEN"], admin);
    assert_eq!(env2["DATABASE_URL"], db_url);
    let addr2 = &env2["TENANT_VAULT_ADDR"];
    let (status, body, headers) = call(
        &client,
        Method::GET,
        format!("{addr2}/v1/tenants/globex/secrets/STRIPE_KEY"),
        &tokens["globex"],
        None,
    )
    .await;
    assert_eq!(
        (status, body["value"].as_str()),
        (200, Some("sk_globex_secret"))
    );
    assert_eq!(headers["x-secret-source"], "database");
    assert!(dev.interrupt().success());
}

#[tokio::test]
async fn the_emulator_command_serves_infisicals_api() {
    use std::io::{BufRead, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args([
            "infisical-emulator",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut vars = std::collections::HashMap::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while vars.len() < 4 {
        let line = lines
            .next()
            .expect("emulator printed its settings")
            .unwrap();
        if let Some((k, v)) = line.split_once('=') {
            vars.insert(k.to_owned(), v.to_owned());
        }
    }
    let mut cfg = tenant_vault::infisical::InfisicalConfig::new(
        vars["INFISICAL_SITE_URL"].clone(),
        vars["INFISICAL_CLIENT_ID"].clone(),
        vars["INFISICAL_CLIENT_SECRET"].clone(),
        vars["INFISICAL_PROJECT_ID"].clone(),
        "dev",
    );
    cfg.max_retries = 0;
    let client = tenant_vault::infisical::InfisicalClient::new(cfg).unwrap();
    client.login().await.unwrap();
    client.ensure_folder_path("/tenants/acme").await.unwrap();
    client
        .create_secret("/tenants/acme", "K", "  padded  ")
        .await
        .unwrap();
    let got = client
        .get_secret("/tenants/acme", "K", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.value.expose(),
        "padded",
        "values are trimmed like Infisical does"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success());
}
