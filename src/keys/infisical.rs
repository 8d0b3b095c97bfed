//! The master key in Infisical: each version is its own secret, `MASTER_ENCRYPTION_KEY_V{n}`,
//! in a folder of its own (default `/tenant-vault`). A version is read by its exact secret
//! name, never with `?version=`, which some servers ignore.

use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::source::{CreatedMasterKey, MasterKeySource, SourceError};
use crate::crypto::kdf;
use crate::infisical::{InfisicalClient, InfisicalError};

pub struct InfisicalSource {
    client: InfisicalClient,
    folder: String,
}

/// The secret name of master key version `n`.
pub fn master_key_secret_name(version: i32) -> String {
    format!("MASTER_ENCRYPTION_KEY_V{version}")
}

/// Why a folder cannot hold the master key.
#[derive(Debug, thiserror::Error)]
pub enum MasterFolderError {
    /// Not a valid Infisical folder path.
    #[error(transparent)]
    Invalid(#[from] InfisicalError),
    /// Under `/tenants` (or the root), where a tenant lookup could read the master key.
    #[error(
        "the master key folder {0} would be reachable by tenant lookups; \
         use a folder outside /tenants such as /tenant-vault"
    )]
    ReachableByTenants(String),
}

fn source_error(what: &str, err: InfisicalError) -> SourceError {
    let transient = err.is_unavailable() || matches!(err, InfisicalError::RateLimited { .. });
    let (what, cause) = (what.to_owned(), Arc::new(err));
    if transient {
        SourceError::Unreachable { what, cause }
    } else {
        SourceError::Rejected { what, cause }
    }
}

impl InfisicalSource {
    /// `folder` must not be under `/tenants`, where tenant lookups read.
    pub fn new(client: InfisicalClient, folder: &str) -> Result<Self, MasterFolderError> {
        let folder = folder.trim_end_matches('/');
        let folder = if folder.is_empty() { "/" } else { folder };
        crate::infisical::validate_folder_path(folder)?;
        if folder == "/tenants" || folder.starts_with("/tenants/") || folder == "/" {
            return Err(MasterFolderError::ReachableByTenants(folder.to_owned()));
        }
        Ok(Self {
            client,
            folder: folder.to_owned(),
        })
    }

    pub fn folder(&self) -> &str {
        &self.folder
    }

    pub fn client(&self) -> &InfisicalClient {
        &self.client
    }

    /// The text of secret `name` in the master key folder; `NotFound` when it is not there.
    async fn read_key(&self, name: &str) -> Result<Zeroizing<String>, SourceError> {
        let secret = self
            .client
            .get_secret(&self.folder, name, None)
            .await
            .map_err(|e| source_error(&format!("reading {name}"), e))?
            .ok_or_else(|| SourceError::NotFound {
                name: name.to_owned(),
                folder: self.folder.clone(),
            })?;
        Ok(Zeroizing::new(secret.value.expose().to_owned()))
    }

    /// Reads an existing secret (such as a legacy `MASTER_ENCRYPTION_KEY`) to adopt it as
    /// version 1.
    pub async fn adopt(&self, name: &str) -> Result<CreatedMasterKey, SourceError> {
        Ok(CreatedMasterKey {
            text: self.read_key(name).await?,
            secret_name: Some(name.to_owned()),
        })
    }
}

#[async_trait]
impl MasterKeySource for InfisicalSource {
    fn kind(&self) -> &'static str {
        "infisical"
    }

    fn describe(&self) -> String {
        format!(
            "Infisical ({}, environment {}, folder {})",
            self.client.config().site_url,
            self.client.config().environment,
            self.folder
        )
    }

    fn auto_initialise(&self) -> bool {
        false
    }

    async fn fetch(
        &self,
        version: i32,
        secret_name: Option<&str>,
    ) -> Result<Zeroizing<String>, SourceError> {
        let name = secret_name
            .map(str::to_owned)
            .unwrap_or_else(|| master_key_secret_name(version));
        self.read_key(&name).await
    }

    /// A secret in the master key folder, updated in place (created the first time).
    async fn put_note(&self, name: &str, text: &str) -> Result<bool, SourceError> {
        let what = format!("writing {name}");
        match self.client.update_secret(&self.folder, name, text).await {
            Ok(_) => Ok(true),
            Err(InfisicalError::NotFound) | Err(InfisicalError::FolderNotFound(_)) => {
                self.client
                    .ensure_folder_path(&self.folder)
                    .await
                    .map_err(|e| source_error(&what, e))?;
                self.client
                    .create_secret(&self.folder, name, text)
                    .await
                    .map_err(|e| source_error(&what, e))?;
                Ok(true)
            }
            Err(e) => Err(source_error(&what, e)),
        }
    }

    async fn get_note(&self, name: &str) -> Result<Option<String>, SourceError> {
        Ok(self
            .client
            .get_secret(&self.folder, name, None)
            .await
            .map_err(|e| source_error(&format!("reading {name}"), e))?
            .map(|s| s.value.expose().to_owned()))
    }

    /// Writes `MASTER_ENCRYPTION_KEY_V{n}` (refusing to overwrite one) and reads it back,
    /// so nothing is wrapped under a key Infisical does not actually hold.
    async fn create(&self, version: i32) -> Result<CreatedMasterKey, SourceError> {
        let name = master_key_secret_name(version);
        let existing = self
            .client
            .get_secret(&self.folder, &name, None)
            .await
            .map_err(|e| source_error(&format!("checking for {name}"), e))?;
        if existing.is_some() {
            return Err(SourceError::AlreadyExists {
                name,
                folder: self.folder.clone(),
            });
        }
        self.client
            .ensure_folder_path(&self.folder)
            .await
            .map_err(|e| source_error(&format!("creating folder {}", self.folder), e))?;
        let text = kdf::generate_master_key_text();
        self.client
            .create_secret(&self.folder, &name, &text)
            .await
            .map_err(|e| source_error(&format!("writing {name}"), e))?;
        let back = self.fetch(version, Some(&name)).await?;
        if back.as_str() != text.as_str() {
            return Err(SourceError::Malformed { name });
        }
        Ok(CreatedMasterKey {
            text,
            secret_name: Some(name),
        })
    }
}
