//! Where master key material comes from. `serve` reads it through this interface only, so the
//! Infisical source slots in beside these without touching any caller.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::crypto::kdf;

/// The cause under a typed error, shareable so errors stay `Clone` (moka hands one loader's
/// error to every waiter).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a source could not hand over key material. Never contains the material.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The source did not answer, or asked us to slow down: trying again later may succeed.
    #[error("{what}: {cause}")]
    Unreachable {
        what: String,
        #[source]
        cause: Cause,
    },
    /// The source answered and refused (permissions, a file it cannot read or write).
    #[error("{what}: {cause}")]
    Rejected {
        what: String,
        #[source]
        cause: Cause,
    },
    #[error("there is no secret {name} in {folder}")]
    NotFound { name: String, folder: String },
    /// Never overwrite a master key: it may already wrap data.
    #[error(
        "{name} already exists in {folder}; refusing to overwrite a master key \
         (adopt it with `tenant-vault init --adopt {name}`)"
    )]
    AlreadyExists { name: String, folder: String },
    /// What came back is not what was written.
    #[error("{name} read back from Infisical differs from what was written")]
    Malformed { name: String },
    /// This source cannot do that at all (a fixed key cannot rotate).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The source could not be set up (configuration, client construction).
    #[error("{0}")]
    Misconfigured(#[source] Cause),
}

impl SourceError {
    /// True when trying again later may succeed (the source is unreachable or rate limiting).
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Unreachable { .. })
    }

    fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        SourceError::Rejected {
            what: path.display().to_string(),
            cause: Arc::new(err),
        }
    }
}

/// What a source hands over when it creates a new master key version.
pub struct CreatedMasterKey {
    pub text: Zeroizing<String>,
    /// Name of the secret that holds it, for sources that have names (Infisical).
    pub secret_name: Option<String>,
}

#[async_trait]
pub trait MasterKeySource: Send + Sync {
    /// `source` column value: `env`, `dev_file` or `infisical`.
    fn kind(&self) -> &'static str;
    /// Human description for messages, e.g. "the TENANT_VAULT_MASTER_KEY variable". Never a value.
    fn describe(&self) -> String;
    /// The key material of one recorded version.
    async fn fetch(
        &self,
        version: i32,
        secret_name: Option<&str>,
    ) -> Result<Zeroizing<String>, SourceError>;
    /// Creates the material for a new version, stored where `fetch` finds it. Sources that
    /// cannot create keys return an error saying so.
    async fn create(&self, version: i32) -> Result<CreatedMasterKey, SourceError>;
    /// Whether `serve` may create version 1 by itself on an empty database. Sources holding
    /// shared state (Infisical) say no: that is `tenant-vault init`'s job.
    fn auto_initialise(&self) -> bool {
        true
    }
}

/// `TENANT_VAULT_MASTER_KEY`: one fixed key, so it can serve version 1 but never rotate.
pub struct EnvSource {
    text: Zeroizing<String>,
}

impl EnvSource {
    pub fn new(text: Zeroizing<String>) -> Self {
        Self { text }
    }
}

#[async_trait]
impl MasterKeySource for EnvSource {
    fn kind(&self) -> &'static str {
        "env"
    }

    fn describe(&self) -> String {
        "the TENANT_VAULT_MASTER_KEY variable".into()
    }

    async fn fetch(
        &self,
        _version: i32,
        _name: Option<&str>,
    ) -> Result<Zeroizing<String>, SourceError> {
        Ok(self.text.clone())
    }

    async fn create(&self, version: i32) -> Result<CreatedMasterKey, SourceError> {
        if version != 1 {
            return Err(SourceError::Unsupported(
                "TENANT_VAULT_MASTER_KEY holds one fixed key and cannot rotate",
            ));
        }
        Ok(CreatedMasterKey {
            text: self.text.clone(),
            secret_name: None,
        })
    }
}

/// Dev mode: random keys in files under the data dir (`master-key-v1`, mode 0600). Convenient,
/// and exactly as safe as that directory: never for production.
pub struct DevFileSource {
    dir: PathBuf,
}

impl DevFileSource {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, version: i32) -> PathBuf {
        self.dir.join(format!("master-key-v{version}"))
    }
}

#[async_trait]
impl MasterKeySource for DevFileSource {
    fn kind(&self) -> &'static str {
        "dev_file"
    }

    fn describe(&self) -> String {
        format!("the dev key file in {}", self.dir.display())
    }

    async fn fetch(
        &self,
        version: i32,
        _name: Option<&str>,
    ) -> Result<Zeroizing<String>, SourceError> {
        let path = self.path(version);
        tokio::fs::read_to_string(&path)
            .await
            .map(Zeroizing::new)
            .map_err(|e| SourceError::io(&path, e))
    }

    async fn create(&self, version: i32) -> Result<CreatedMasterKey, SourceError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(version);
        let text = kdf::generate_master_key_text();
        std::fs::create_dir_all(&self.dir).map_err(|e| SourceError::io(&self.dir, e))?;
        // create_new: never overwrite a key that may already wrap data.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => SourceError::AlreadyExists {
                    name: path.display().to_string(),
                    folder: self.dir.display().to_string(),
                },
                _ => SourceError::io(&path, e),
            })?;
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| SourceError::io(&path, e))?;
        Ok(CreatedMasterKey {
            text,
            secret_name: None,
        })
    }
}
