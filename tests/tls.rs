//! TLS end to end: the real `tenant-vault serve` binary over HTTPS (trust, plain HTTP on the
//! TLS port, client certificates, reload on SIGHUP with a connection kept open), the refusal
//! of plain HTTP off loopback, and PostgreSQL with `sslmode=verify-full`.
//!
//! `serve` answers `/healthz` before it reaches its database, so these need no database:
//! DATABASE_URL points at a closed port.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tenant_vault::pg::{ClusterOptions, PgBinaries, PostgresCluster};
use tenant_vault::tls::{IssuedCert, LocalCa};

use common::serve::{Serve, BIN};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Server certificate and key files in `dir` (replaced in place, as an operator renews).
fn write_server_cert(dir: &Path, cert: &IssuedCert) -> (PathBuf, PathBuf) {
    (
        write(dir, "server.crt", &cert.cert_pem),
        write(dir, "server.key", &cert.key_pem),
    )
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// A client that trusts only `ca` (not the public roots) and records the peer certificate.
fn client_trusting(ca: &LocalCa) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(10))
}

/// The DER certificate the server presented on the connection this response came over.
fn peer_cert(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

/// The whole error chain, for assertions on why a request failed.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn server_files(dir: &Path, ca: &LocalCa) -> (PathBuf, PathBuf, IssuedCert) {
    let cert = ca.issue_server(&["127.0.0.1", "localhost"]).unwrap();
    let (crt, key) = write_server_cert(dir, &cert);
    (crt, key, cert)
}

#[tokio::test]
async fn https_needs_the_ca_and_the_tls_port_refuses_plain_http() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = LocalCa::generate("test CA").unwrap();
    let (crt, key, cert) = server_files(tmp.path(), &ca);
    let serve = Serve::start(
        tmp.path(),
        &[
            "--listen=127.0.0.1:0",
            &format!("--tls-cert={}", crt.display()),
        ],
        &[("TENANT_VAULT_TLS_KEY", key.to_str().unwrap())],
    )
    .expect("serve starts with TLS");

    // With the CA: the TLS handshake succeeds and the server presents our certificate.
    let client = client_trusting(&ca).build().unwrap();
    let resp = client.get(serve.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(peer_cert(&resp), der(&cert.cert_pem));

    // Without it (the public roots only): the certificate is not trusted.
    let err = reqwest::Client::new()
        .get(serve.url("/healthz"))
        .send()
        .await
        .expect_err("an unknown CA must not be trusted");
    let why = chain(&err);
    assert!(why.contains("certificate"), "{why}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://{}/healthz", serve.addr))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP was answered on the TLS port: {:?}",
        plain.map(|r| r.status())
    );
    // And the server is still fine afterwards.
    let resp = client.get(serve.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn plain_http_off_loopback_is_refused_unless_insecure_no_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Serve::start(tmp.path(), &["--listen=0.0.0.0:0"], &[])
        .err()
        .expect("serve must refuse plain HTTP on 0.0.0.0");
    assert!(err.contains("refusing to serve plain HTTP"), "{err}");
    assert!(err.contains("--insecure-no-tls"), "{err}");

    // Loopback stays plain HTTP without ceremony.
    let serve = Serve::start(tmp.path(), &["--listen=127.0.0.1:0"], &[]).expect("loopback");
    assert!(
        !serve.startup.contains("insecure-no-tls"),
        "{}",
        serve.startup
    );
    drop(serve);

    // With the explicit opt-out it serves, and says so at start.
    let serve = Serve::start(
        tmp.path(),
        &["--listen=0.0.0.0:0"],
        &[("TENANT_VAULT_INSECURE_NO_TLS", "true")],
    )
    .expect("--insecure-no-tls lets serve start");
    assert!(
        serve
            .startup
            .contains("--insecure-no-tls: serving plain HTTP"),
        "no warning at start:\n{}",
        serve.startup
    );
}

#[test]
fn half_a_tls_setting_is_a_clear_start_up_error() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = LocalCa::generate("test CA").unwrap();
    let (crt, _key, _) = server_files(tmp.path(), &ca);
    let err = Serve::start(tmp.path(), &[&format!("--tls-cert={}", crt.display())], &[])
        .err()
        .expect("a certificate without a key must be refused");
    assert!(
        err.contains("--tls-cert") && err.contains("--tls-key"),
        "{err}"
    );

    // A key that does not belong to the certificate.
    let other = ca.issue_server(&["127.0.0.1"]).unwrap();
    let wrong_key = write(tmp.path(), "other.key", &other.key_pem);
    let err = Serve::start(
        tmp.path(),
        &[
            &format!("--tls-cert={}", crt.display()),
            &format!("--tls-key={}", wrong_key.display()),
        ],
        &[],
    )
    .err()
    .expect("a mismatched key must be refused");
    assert!(
        err.contains("server.crt") && err.contains("other.key"),
        "{err}"
    );
    // The key never reaches the log, even when it is refused.
    let secret_line = other.key_pem.lines().nth(1).unwrap();
    assert!(!err.contains(secret_line), "{err}");
}

#[tokio::test]
async fn client_certificates_are_required_with_a_client_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = LocalCa::generate("server CA").unwrap();
    let clients = LocalCa::generate("client CA").unwrap();
    let strangers = LocalCa::generate("another client CA").unwrap();
    let (crt, key, _) = server_files(tmp.path(), &ca);
    let client_ca = write(tmp.path(), "clients.crt", &clients.cert_pem());
    // Off loopback is fine with TLS.
    let serve = Serve::start(
        tmp.path(),
        &[
            "--listen=0.0.0.0:0",
            &format!("--tls-cert={}", crt.display()),
            &format!("--tls-key={}", key.display()),
        ],
        &[("TENANT_VAULT_TLS_CLIENT_CA", client_ca.to_str().unwrap())],
    )
    .expect("serve starts with client certificates");

    let identity = |issued: &IssuedCert| {
        let pem = format!("{}{}", issued.cert_pem, &*issued.key_pem);
        reqwest::Identity::from_pem(pem.as_bytes()).unwrap()
    };
    let billing = clients.issue_client("billing-service").unwrap();
    let resp = client_trusting(&ca)
        .identity(identity(&billing))
        .build()
        .unwrap()
        .get(serve.url("/healthz"))
        .send()
        .await
        .expect("a client with a certificate from the client CA is served");
    assert_eq!(resp.status(), 200);

    let anonymous = client_trusting(&ca)
        .build()
        .unwrap()
        .get(serve.url("/healthz"))
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate was served"
    );

    let stranger = strangers.issue_client("billing-service").unwrap();
    let foreign = client_trusting(&ca)
        .identity(identity(&stranger))
        .build()
        .unwrap()
        .get(serve.url("/healthz"))
        .send()
        .await;
    assert!(
        foreign.is_err(),
        "a certificate from another CA was accepted"
    );
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (
        LocalCa::generate("old CA").unwrap(),
        LocalCa::generate("new CA").unwrap(),
    );
    let (crt, key, old_cert) = server_files(tmp.path(), &old_ca);
    let serve = Serve::start(
        tmp.path(),
        &[
            "--listen=127.0.0.1:0",
            &format!("--tls-cert={}", crt.display()),
            &format!("--tls-key={}", key.display()),
        ],
        &[],
    )
    .expect("serve starts with TLS");

    // A client that trusts only the old CA opens a connection and keeps it.
    let old_client = client_trusting(&old_ca).build().unwrap();
    let resp = old_client.get(serve.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(peer_cert(&resp), der(&old_cert.cert_pem));
    resp.bytes().await.unwrap(); // back to the pool, kept alive

    // The operator renews: new files in place, then SIGHUP.
    let new_cert = new_ca.issue_server(&["127.0.0.1", "localhost"]).unwrap();
    write_server_cert(tmp.path(), &new_cert);
    assert_eq!(
        unsafe { libc::kill(serve.child.id() as libc::pid_t, libc::SIGHUP) },
        0
    );

    // A new connection gets the new certificate (once the signal has been handled).
    let deadline = Instant::now() + Duration::from_secs(30);
    let served_new = loop {
        let fresh = client_trusting(&new_ca).build().unwrap();
        match fresh.get(serve.url("/healthz")).send().await {
            Ok(resp) => break resp,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no new certificate after SIGHUP: {}\nlog:\n{}",
                    chain(&e),
                    serve.drain_log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(served_new.status(), 200);
    assert_eq!(peer_cert(&served_new), der(&new_cert.cert_pem));

    // The old connection is still open and completes a request: it still carries the old
    // certificate, which a new connection could no longer offer this client.
    let resp = old_client
        .get(serve.url("/healthz"))
        .send()
        .await
        .expect("the connection opened before the reload still works");
    assert_eq!(resp.status(), 200);
    assert_eq!(peer_cert(&resp), der(&old_cert.cert_pem));
    let again = client_trusting(&old_ca)
        .build()
        .unwrap()
        .get(serve.url("/healthz"))
        .send()
        .await;
    assert!(
        again.is_err(),
        "a new connection still got the old certificate"
    );

    let mut serve = serve;
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop the server"
    );
    let log = serve.drain_log();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}

#[tokio::test]
async fn a_failed_reload_keeps_the_certificate_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = LocalCa::generate("test CA").unwrap();
    let (crt, key, cert) = server_files(tmp.path(), &ca);
    let serve = Serve::start(
        tmp.path(),
        &[
            "--listen=127.0.0.1:0",
            &format!("--tls-cert={}", crt.display()),
            &format!("--tls-key={}", key.display()),
        ],
        &[],
    )
    .expect("serve starts with TLS");
    std::fs::write(&key, "not a key").unwrap();
    unsafe { libc::kill(serve.child.id() as libc::pid_t, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while !log.contains("TLS reload failed") {
        assert!(
            Instant::now() < deadline,
            "no reload failure logged:\n{log}"
        );
        log.push_str(&serve.drain_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.contains("server.key"), "{log}");
    let resp = client_trusting(&ca)
        .build()
        .unwrap()
        .get(serve.url("/healthz"))
        .send()
        .await
        .expect("still serving the previous certificate");
    assert_eq!(peer_cert(&resp), der(&cert.cert_pem));
}

#[tokio::test]
async fn dev_tls_serves_https_and_names_its_ca_in_dev_env() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    // Plain dev stays on loopback: another address is refused before anything starts.
    let out = Command::new(BIN)
        .args(["dev", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("INFISICAL_SITE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("loopback") && err.contains("--tls"), "{err}");

    let mut child = Command::new(BIN)
        .args(["dev", "--tls", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("INFISICAL_SITE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let env_file = dir.join("dev.env");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !env_file.exists() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dev --tls did not write dev.env");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let vars: std::collections::HashMap<String, String> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let addr = &vars["TENANT_VAULT_ADDR"];
    assert!(addr.starts_with("https://127.0.0.1:"), "{addr}");
    let ca = std::fs::read(&vars["TENANT_VAULT_CACERT"]).expect("the CA file dev.env names");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let created = client
        .post(format!("{addr}/v1/admin/tenants"))
        .bearer_auth(&vars["TENANT_VAULT_ADMIN_TOKEN"])
        .json(&serde_json::json!({"slug": "acme", "name": "Acme"}))
        .send()
        .await;
    let plain = reqwest::get(addr.replace("https://", "http://") + "/healthz").await;
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(created.unwrap().status(), 201);
    assert!(plain.is_err(), "dev --tls answered plain HTTP");
    assert!(status.success(), "dev --tls did not stop cleanly: {status}");
}

async fn ssl_cluster(dir: &Path) -> PostgresCluster {
    PostgresCluster::start(
        &PgBinaries::locate().expect("PostgreSQL binaries"),
        ClusterOptions {
            dir: dir.to_path_buf(),
            port: None,
            throwaway: true,
            max_connections: 20,
            ssl: true,
        },
    )
    .await
    .expect("PostgreSQL with ssl=on starts")
}

#[tokio::test]
async fn postgres_verify_full_with_the_right_ca_only() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = ssl_cluster(&tmp.path().join("pg")).await;
    let ca = cluster.ca_cert().expect("the cluster's CA certificate");
    let port = cluster.port();

    for host in ["127.0.0.1", "localhost"] {
        let url = format!(
            "postgres://postgres@{host}:{port}/postgres?sslmode=verify-full&sslrootcert={}",
            ca.display()
        );
        let pool = tenant_vault::app::connect(&url, 1)
            .await
            .unwrap_or_else(|e| panic!("verify-full to {host}: {e}"));
        let ssl: bool =
            sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(ssl, "the connection to {host} is not encrypted");
        pool.close().await;
    }

    // sslmode=require: encrypted, certificate not checked (as libpq does).
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=require");
    let pool = tenant_vault::app::connect(&url, 1).await.unwrap();
    let ssl: bool = sqlx::query_scalar("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ssl);
    pool.close().await;

    // A CA that did not sign the server's certificate: refused, and the message says why.
    let wrong = write(
        tmp.path(),
        "wrong-ca.crt",
        &LocalCa::generate("not the server's CA").unwrap().cert_pem(),
    );
    let url = format!(
        "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        wrong.display()
    );
    let err = tenant_vault::app::connect(&url, 1)
        .await
        .expect_err("a wrong CA must fail");
    let why = err.to_string();
    eprintln!("wrong CA: {why}");
    assert!(
        why.contains("certificate") && why.contains("UnknownIssuer"),
        "unclear error: {why}"
    );
    cluster.stop().await.unwrap();
}
