//! From settings to parts: the Infisical and OpenBao clients, the master key source and the
//! lookup fallback, and the first master key.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;

use super::{Initialised, Parts};
use crate::archive::{ArchiveClient, ArchiveConfig};
use crate::config::{ArchiveArgs, InfisicalArgs, KeyArgs, MasterKeySourceKind};
use crate::crypto::SecretValue;
use crate::infisical::{InfisicalClient, InfisicalConfig};
use crate::keys::master;
use crate::keys::{
    DevFileSource, EnvSource, InfisicalSource, MasterKeySource, MasterKeyring, SourceError,
};
use crate::service::fallback::{InfisicalFallback, SecretFallback};
use crate::service::sync::SyncSettings;

/// Master key version 1 for a database that has none (`init`, first `dev` run): created by
/// the configured source, or, with `adopt`, an existing secret in the Infisical master key
/// folder. `infisical` must be the settings `parts` was built from.
pub async fn initialise_master_key(
    pool: &PgPool,
    parts: &Parts,
    infisical: &InfisicalArgs,
    adopt: Option<&str>,
) -> anyhow::Result<Initialised> {
    let source = parts.source.as_ref();
    let first = async {
        let Some(name) = adopt else {
            return source.create(1).await;
        };
        if source.kind() != "infisical" {
            return Err(SourceError::Unsupported(
                "--adopt needs --master-key-source infisical",
            ));
        }
        let client = infisical_client(infisical)
            .map_err(|e| {
                SourceError::Misconfigured(Arc::from(
                    Box::<dyn std::error::Error + Send + Sync>::from(e),
                ))
            })?
            .expect("an Infisical source has a client");
        InfisicalSource::new(client, &infisical.master_key_folder)
            .map_err(|e| SourceError::Misconfigured(Arc::new(e)))?
            .adopt(name)
            .await
    };
    Ok(master::initialise_with(pool, source, first).await?)
}

/// Loads and verifies every recorded master key version, as start-up does.
pub async fn verify_master_keys(pool: &PgPool, parts: &Parts) -> anyhow::Result<()> {
    MasterKeyring::load(pool, parts.source.as_ref()).await?;
    Ok(())
}
/// An Infisical client when INFISICAL_SITE_URL is set; a clear error if it is half set.
pub fn infisical_client(args: &InfisicalArgs) -> anyhow::Result<Option<InfisicalClient>> {
    let Some(site) = args
        .infisical_site_url
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    else {
        return Ok(None);
    };
    let missing = |name: &str| anyhow::anyhow!("INFISICAL_SITE_URL is set but {name} is not");
    let client_id = args
        .infisical_client_id
        .clone()
        .ok_or_else(|| missing("INFISICAL_CLIENT_ID"))?;
    let secret = args
        .infisical_client_secret
        .clone()
        .ok_or_else(|| missing("INFISICAL_CLIENT_SECRET"))?;
    let project = args
        .infisical_project_id
        .clone()
        .ok_or_else(|| missing("INFISICAL_PROJECT_ID"))?;
    let mut config = InfisicalConfig::new(
        site,
        client_id,
        secret.expose().to_owned(),
        project,
        &args.infisical_environment,
    );
    config.request_timeout = Duration::from_millis(args.infisical_timeout_ms);
    Ok(Some(
        InfisicalClient::new(config).context("invalid Infisical settings")?,
    ))
}

/// The master key source the settings ask for, and the lookup fallback if configured.
pub fn parts(keys: &KeyArgs, infisical: &InfisicalArgs) -> anyhow::Result<Parts> {
    let client = infisical_client(infisical)?;
    let source: Arc<dyn MasterKeySource> = match keys.master_key_source {
        MasterKeySourceKind::Infisical => {
            let client = client.clone().context(
                "the master key source is Infisical (the default) but INFISICAL_SITE_URL is not \
                 set; set the INFISICAL_* variables, or choose --master-key-source env with \
                 TENANT_VAULT_MASTER_KEY",
            )?;
            let source = InfisicalSource::new(client, &infisical.master_key_folder)
                .map_err(|e| anyhow::anyhow!(e))?;
            tracing::info!(folder = source.folder(), "master key source: Infisical");
            Arc::new(source)
        }
        MasterKeySourceKind::Env => {
            let key = keys.master_key.clone().context(
                "--master-key-source env needs TENANT_VAULT_MASTER_KEY (32 bytes as hex or base64, \
                 or a passphrase of 16+ characters); `tenant-vault dev` makes one for you",
            )?;
            tracing::warn!("master key source: the TENANT_VAULT_MASTER_KEY variable (explicitly configured fallback; it cannot rotate)");
            Arc::new(EnvSource::new(key.into_zeroizing()))
        }
        MasterKeySourceKind::DevFile => {
            tracing::warn!(dir = %keys.data_dir.display(), "master key source: dev key files (not for production)");
            Arc::new(DevFileSource::new(keys.data_dir.clone()))
        }
    };
    // The lookup gets a client of its own (its own token, breaker and retries), so tenants'
    // misses can never open the breaker the master key source depends on.
    let fallback = match client {
        Some(_) if infisical.infisical_fallback => {
            let client = infisical_client(infisical)?.expect("configured above");
            Some(Arc::new(InfisicalFallback::new(client)) as Arc<dyn SecretFallback>)
        }
        _ => None,
    };
    Ok(Parts {
        source,
        fallback,
        sync: SyncSettings::from_args(&infisical.sync),
        archive: None,
    })
}

/// The archive's OpenBao client when TENANT_VAULT_ARCHIVE_ADDR is set; a clear error if the
/// settings are half there (no role id, no secret id, both a value and a file, unreadable
/// files). Never logs in here: an unreachable OpenBao only delays archiving.
pub fn archive_client(args: &ArchiveArgs) -> anyhow::Result<Option<ArchiveClient>> {
    let Some(addr) = args
        .archive_addr
        .as_deref()
        .filter(|a| !a.trim().is_empty())
    else {
        return Ok(None);
    };
    let read = |value: Option<String>, file: &Option<std::path::PathBuf>, name: &str| {
        match (value, file) {
            (Some(_), Some(_)) => anyhow::bail!("set {name} or {name}_FILE, not both"),
            (Some(v), None) => Ok(v),
            (None, Some(path)) => Ok(std::fs::read_to_string(path)
                .with_context(|| format!("{name}_FILE: cannot read {}", path.display()))?
                .trim()
                .to_string()),
            (None, None) => anyhow::bail!(
                "TENANT_VAULT_ARCHIVE_ADDR is set but {name} (or {name}_FILE) is not;                  `tenant-vault archive init` creates them"
            ),
        }
    };
    let role_id = read(
        args.archive_role_id.clone(),
        &args.archive_role_id_file,
        "TENANT_VAULT_ARCHIVE_ROLE_ID",
    )?;
    let secret_id = SecretValue::new(read(
        args.archive_secret_id
            .as_ref()
            .map(|s| s.expose().to_string()),
        &args.archive_secret_id_file,
        "TENANT_VAULT_ARCHIVE_SECRET_ID",
    )?);
    let mut config = ArchiveConfig::new(addr, &args.archive_mount, &role_id, secret_id);
    if let Some(ca) = &args.archive_cacert {
        config.ca_cert_pem = Some(std::fs::read(ca).with_context(|| {
            format!("TENANT_VAULT_ARCHIVE_CACERT: cannot read {}", ca.display())
        })?);
    }
    config.retention = Duration::from_secs(u64::from(args.archive_retention_days) * 86_400);
    config.request_timeout = Duration::from_millis(args.archive_timeout_ms);
    Ok(Some(
        ArchiveClient::new(config).context("invalid archive settings")?,
    ))
}
