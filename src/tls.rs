//! TLS for the HTTP server (rustls on ring, TLS 1.2 and 1.3), reloadable on SIGHUP, with
//! optional client certificates; and a small local CA (rcgen) for `dev --tls` and the test
//! PostgreSQL. See docs/tls.md.
//!
//! The server side is an acceptor ([`ServerTls`]); the accept loop (`crate::server`) runs
//! each handshake in its connection's own task, so a slow client holds up no one. A reload
//! builds a new `ServerConfig` from the files and swaps it in: handshakes that start later
//! use it, connections already open keep theirs and are never dropped.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::config::TlsArgs;

/// A client has this long to finish its handshake; then the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Settings(String),
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {} {problem}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("TLS settings rejected: {0}")]
    Rustls(String),
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// The certificate files `serve` was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, every client must present a certificate they signed.
    pub client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS files to serve with (`None`: plain HTTP), or why these settings are refused:
    /// half a certificate, a client CA without a certificate, or plain HTTP on an address
    /// other machines can reach without `--insecure-no-tls`.
    pub fn check(&self, listen: SocketAddr) -> Result<Option<TlsFiles>, TlsError> {
        let bad = |s: &str| Err(TlsError::Settings(s.to_owned()));
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                if self.insecure_no_tls {
                    return bad("--insecure-no-tls contradicts --tls-cert/--tls-key; give one or the other");
                }
                Ok(Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                }))
            }
            (Some(_), None) => bad("--tls-cert (TENANT_VAULT_TLS_CERT) needs --tls-key (TENANT_VAULT_TLS_KEY)"),
            (None, Some(_)) => bad("--tls-key (TENANT_VAULT_TLS_KEY) needs --tls-cert (TENANT_VAULT_TLS_CERT)"),
            (None, None) if self.tls_client_ca.is_some() => {
                bad("--tls-client-ca needs --tls-cert and --tls-key (client certificates are checked in the TLS handshake)")
            }
            (None, None) if listen.ip().is_loopback() || self.insecure_no_tls => Ok(None),
            (None, None) => Err(TlsError::Settings(format!(
                "refusing to serve plain HTTP on {listen}, which other machines can reach: bearer \
                 tokens and secret values would cross the network in clear. Give --tls-cert and \
                 --tls-key (TENANT_VAULT_TLS_CERT, TENANT_VAULT_TLS_KEY), or, behind a TLS-terminating \
                 proxy on a private network, --insecure-no-tls (TENANT_VAULT_INSECURE_NO_TLS=true)"
            ))),
        }
    }
}

/// The server's TLS settings, swapped whole on reload.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.to_owned(),
            problem: format!("is not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.to_owned(),
            problem: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "TLS key file";
    let pem = zeroize::Zeroizing::new(std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })?);
    // The parser's own message could quote the file; say only what was expected.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Pem {
        what,
        path: path.to_owned(),
        problem: "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
    })
}

fn build_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs = read_certs("TLS certificate file", &files.cert)?;
    let key = read_key(&files.key)?;
    let rustls_err = |e: rustls::Error| TlsError::Rustls(e.to_string());
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(rustls_err)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("TLS client CA file", path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    what: "TLS client CA file",
                    path: path.clone(),
                    problem: format!("holds a certificate rustls cannot use as a CA: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Rustls(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Rustls(format!(
            "certificate {} and key {}: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl ServerTls {
    /// Reads and checks the files (certificate and key must match).
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let config = build_config(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again; on any error the settings in use stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(build_config(&self.files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self.current.read().unwrap_or_else(|e| e.into_inner());
        tokio_rustls::TlsAcceptor::from(config.clone())
    }

    /// The TLS handshake on an accepted connection, with the settings in use now, bounded
    /// by [`HANDSHAKE_TIMEOUT`].
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let handshake = self.acceptor().accept(tcp);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(done) => done,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }

    /// Reloads the files on every SIGHUP, logging the outcome. Call before the listening
    /// log line, so a SIGHUP sent after it never meets the default action (exit).
    pub fn reload_on_sighup(self: &Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        let tls = self.clone();
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert = %tls.files.cert.display(),
                        "SIGHUP: TLS certificate reloaded; new connections use it"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: TLS reload failed; still serving the previous certificate"
                    ),
                }
            }
        }))
    }
}

/// A certificate and its private key, PEM.
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: zeroize::Zeroizing<String>,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// A local certificate authority for development and tests (`dev --tls`, the test
/// PostgreSQL): never for production.
pub struct LocalCa {
    name: String,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCa")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// Valid from yesterday (UTC, midnight: clocks differ) for `days` from today.
fn set_validity(params: &mut rcgen::CertificateParams, days: i64) {
    use chrono::Datelike;
    let midnight = |offset: i64| {
        let d = (chrono::Utc::now() + chrono::Duration::days(offset)).date_naive();
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    params.not_before = midnight(-1);
    params.not_after = midnight(days);
}

impl LocalCa {
    fn params(name: &str) -> Result<rcgen::CertificateParams, TlsError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        set_validity(&mut params, 3650);
        Ok(params)
    }

    /// A new CA whose certificate names it `name`.
    pub fn generate(name: &str) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate().map_err(gen_err)?;
        let cert = Self::params(name)?.self_signed(&key).map_err(gen_err)?;
        Ok(Self {
            name: name.to_owned(),
            key,
            cert,
        })
    }

    /// The CA kept in `dir` as `ca.crt` and `ca.key` (0600), created there on first use, so
    /// clients that trust it keep trusting it across runs. Says whether it was created.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<(Self, bool), TlsError> {
        let (crt, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if crt.is_file() && key_path.is_file() {
            let pem =
                zeroize::Zeroizing::new(std::fs::read_to_string(&key_path).map_err(|source| {
                    TlsError::Read {
                        what: "local CA key",
                        path: key_path.clone(),
                        source,
                    }
                })?);
            let key = rcgen::KeyPair::from_pem(&pem).map_err(|_| TlsError::Pem {
                what: "local CA key",
                path: key_path.clone(),
                problem: "is not a PEM private key rcgen can use; delete ca.crt and ca.key to start a new CA".into(),
            })?;
            // Issuing needs only the CA's name and key, both unchanged: certificates issued
            // now verify against the ca.crt clients already have.
            let cert = Self::params(name)?.self_signed(&key).map_err(gen_err)?;
            return Ok((
                Self {
                    name: name.to_owned(),
                    key,
                    cert,
                },
                false,
            ));
        }
        let ca = Self::generate(name)?;
        write_private(&key_path, ca.key.serialize_pem().as_bytes())?;
        write_file(&crt, ca.cert_pem().as_bytes(), 0o644)?;
        Ok((ca, true))
    }

    /// The CA certificate, PEM (what clients trust).
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    fn issue(
        &self,
        mut params: rcgen::CertificateParams,
        common_name: &str,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> Result<IssuedCert, TlsError> {
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, 365);
        let key = rcgen::KeyPair::generate().map_err(gen_err)?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(gen_err)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: zeroize::Zeroizing::new(key.serialize_pem()),
        })
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid for a year.
    pub fn issue_server(&self, names: &[&str]) -> Result<IssuedCert, TlsError> {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(sans).map_err(gen_err)?;
        let cn = names.first().copied().unwrap_or("localhost");
        self.issue(params, cn, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `common_name`, valid for a year.
    pub fn issue_client(&self, common_name: &str) -> Result<IssuedCert, TlsError> {
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        self.issue(
            params,
            common_name,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

/// Writes `bytes` to `path` (mode `mode`), replacing it atomically.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Read {
        what: "file to write",
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// [`write_file`] readable by the owner only (private keys).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    write_file(path, bytes, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    fn args(cert: bool, key: bool, ca: bool, insecure: bool) -> TlsArgs {
        TlsArgs {
            tls_cert: cert.then(|| "c.pem".into()),
            tls_key: key.then(|| "k.pem".into()),
            tls_client_ca: ca.then(|| "ca.pem".into()),
            insecure_no_tls: insecure,
        }
    }

    #[test]
    fn check_refuses_plain_http_off_loopback_and_half_settings() {
        let public: SocketAddr = "0.0.0.0:8210".parse().unwrap();
        let lan: SocketAddr = "10.1.2.3:8210".parse().unwrap();
        let v6: SocketAddr = "[::1]:8210".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8210".parse().unwrap();
        for addr in [public, lan] {
            let err = args(false, false, false, false).check(addr).unwrap_err();
            assert!(err.to_string().contains("--insecure-no-tls"), "{err}");
            assert_eq!(args(false, false, false, true).check(addr).unwrap(), None);
            let files = args(true, true, true, false).check(addr).unwrap().unwrap();
            assert_eq!(files.client_ca, Some(PathBuf::from("ca.pem")));
        }
        for addr in [local, v6] {
            assert_eq!(args(false, false, false, false).check(addr).unwrap(), None);
        }
        for (half, needle) in [
            (args(true, false, false, false), "needs --tls-key"),
            (args(false, true, false, false), "needs --tls-cert"),
            (args(false, false, true, false), "--tls-client-ca needs"),
            (args(true, true, false, true), "contradicts"),
        ] {
            let err = half.check(local).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    fn verifies(ca_pem: &str, cert_pem: &str, name: &str) -> bool {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn a_reloaded_local_ca_issues_certificates_the_old_ca_file_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let (first, created) = LocalCa::load_or_create(tmp.path(), "dev CA").unwrap();
        assert!(created);
        let ca_file = std::fs::read_to_string(tmp.path().join("ca.crt")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let (again, created) = LocalCa::load_or_create(tmp.path(), "dev CA").unwrap();
        assert!(!created);
        let cert = again.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        assert!(verifies(&ca_file, &cert.cert_pem, "localhost"));
        assert!(verifies(&ca_file, &cert.cert_pem, "127.0.0.1"));
        assert!(!verifies(&ca_file, &cert.cert_pem, "example.com"));
        // Another CA's certificate does not pass.
        let other = LocalCa::generate("other").unwrap();
        let foreign = other.issue_server(&["localhost"]).unwrap();
        assert!(!verifies(&ca_file, &foreign.cert_pem, "localhost"));
        drop(first);
        assert!(!format!("{:?}", cert).contains("PRIVATE KEY"));
    }
}
