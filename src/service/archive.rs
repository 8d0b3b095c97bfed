//! The cold vault: archive, then prune. With the archive configured, a version that falls out
//! of retention, and every version of a deleted secret, moves (still encrypted) into
//! `archive_outbox` in the transaction that takes it out of the secret's history; a worker
//! decrypts it, writes it to OpenBao KV v2 (`<mount>/tenants/{slug}/{key}`, one KV version per
//! archived version) and only then removes it from PostgreSQL, recording where it went. An
//! OpenBao outage or a crash in between leaves the version in the outbox, readable, until a
//! later pass succeeds; a retried write is recognised (the key's newest KV version already
//! holds it), so nothing is archived twice or lost.
//!
//! Reads of versions no longer in PostgreSQL come from OpenBao (`x-secret-source: archive`,
//! audited as `secret.archive_read`). Deleting a tenant deletes its archive path too.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::versions::VersionInfo;
use super::{ServiceError, TenantRef, Vault};
use crate::archive::{ArchiveClient, ArchiveError, ArchivedEntry};
use crate::breaker::BreakerState;
use crate::cache::CachedSecret;
use crate::domain::{DataKeyId, SecretKey, SecretSource, TenantId, TenantSlug};
use crate::keys::StoredSecret;
use crate::store::{self, StoreError};

/// How often the worker looks at the outbox without being woken.
const ARCHIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Versions one pass archives before it yields (the next pass follows at once).
const PASS_LIMIT: u64 = 200;

/// The archive as the vault holds it: the OpenBao client and the worker's doorbell.
pub struct ArchiveState {
    client: ArchiveClient,
    wake: tokio::sync::Notify,
}

/// What one pass of the archive worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchivePass {
    pub archived: u64,
    pub failed: u64,
    pub purged: u64,
    /// Versions still waiting afterwards.
    pub pending: i64,
}

/// Why one version could not be archived this time.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// An OpenBao failure as the API answers it (the detail is logged here, once).
fn archive_failure(err: ArchiveError) -> ServiceError {
    if err.is_unavailable() {
        tracing::warn!(error = %err, "archive read failed: OpenBao unavailable");
        ServiceError::Unavailable("the archive (OpenBao)")
    } else {
        ServiceError::internal(err)
    }
}

impl Vault {
    /// Turns the cold vault on (before the vault is shared).
    pub fn set_archive(&mut self, client: ArchiveClient) {
        self.archive = Some(Arc::new(ArchiveState {
            client,
            wake: tokio::sync::Notify::new(),
        }));
    }

    pub fn archive_client(&self) -> Option<&ArchiveClient> {
        self.archive.as_ref().map(|a| &a.client)
    }

    /// Retention: kept versions at or below `keep_after` leave the history. With the archive
    /// they wait in the outbox for OpenBao; without it they are deleted.
    pub(super) async fn prune_versions(
        &self,
        conn: &mut sqlx::PgConnection,
        secret_id: Uuid,
        keep_after: i32,
    ) -> Result<(), ServiceError> {
        if self.archive.is_some() {
            store::archive::queue_pruned(&mut *conn, secret_id, keep_after).await?;
        } else {
            store::versions::prune(&mut *conn, secret_id, keep_after).await?;
        }
        Ok(())
    }

    /// Before a secret is deleted (same transaction): with the archive, its current value and
    /// kept versions wait in the outbox for OpenBao.
    pub(super) async fn archive_before_delete(
        &self,
        conn: &mut sqlx::PgConnection,
        tenant: TenantId,
        key: &SecretKey,
    ) -> Result<(), ServiceError> {
        if self.archive.is_some() {
            store::archive::queue_deleted(&mut *conn, tenant, key).await?;
        }
        Ok(())
    }

    /// A tenant is being deleted (same transaction): its pending versions go (their data keys
    /// are destroyed with it), and its archive path is queued for deletion in OpenBao.
    pub(super) async fn archive_forget_tenant(
        &self,
        conn: &mut sqlx::PgConnection,
        tenant: TenantId,
        slug: &str,
    ) -> Result<(), ServiceError> {
        if self.archive.is_some() {
            store::archive::forget_tenant(conn, tenant, slug).await?;
        }
        Ok(())
    }

    /// Lets the worker know there may be work (after a commit that queued some).
    pub(super) fn wake_archiver(&self) {
        if let Some(a) = &self.archive {
            a.wake.notify_one();
        }
    }

    /// A version waiting in the outbox: still in PostgreSQL, so still read from there.
    pub(super) async fn pending_version(
        &self,
        secret_id: Uuid,
        version: i32,
    ) -> Result<Option<store::versions::KeptVersionRow>, ServiceError> {
        if self.archive.is_none() {
            return Ok(None);
        }
        Ok(store::archive::pending_version(&self.pool, secret_id, version).await?)
    }

    /// Version `version` of the current secret `key`, from OpenBao.
    pub(super) async fn read_archived(
        &self,
        tenant: &TenantRef,
        key: &SecretKey,
        version: i32,
    ) -> Result<Arc<CachedSecret>, ServiceError> {
        let archive = self
            .archive
            .as_ref()
            .ok_or(ServiceError::VersionNotFound(version))?;
        let current = store::secrets::get(&self.pool, tenant.id, key)
            .await?
            .ok_or(ServiceError::SecretNotFound)?;
        let row = store::archive::archived_version(&self.pool, current.id, version)
            .await?
            .ok_or(ServiceError::VersionNotFound(version))?;
        let read = archive
            .client
            .read(&tenant.slug, key, row.kv_version as u32)
            .await;
        let entry = match read {
            Ok(Some(entry)) => entry,
            // Past its retention (KV v2 deleted it), or deleted by hand.
            Ok(None) => return Err(ServiceError::VersionNotFound(version)),
            Err(e) => {
                metrics::counter!("tenant_vault_archive_failures_total", "op" => "read")
                    .increment(1);
                return Err(archive_failure(e));
            }
        };
        if entry.secret_id != current.id || entry.version != version {
            // The KV version holds another secret's or version's value: never answer with it.
            tracing::error!(tenant = %tenant.slug, key = %key, version, kv_version = row.kv_version, "archive entry does not match its index");
            return Err(ServiceError::Integrity);
        }
        metrics::counter!("tenant_vault_archive_reads_total").increment(1);
        Ok(Arc::new(CachedSecret {
            value: entry.value,
            version,
            updated_at: entry.created_at,
            loaded_from: SecretSource::Archive,
        }))
    }

    /// The versions of secret `secret_id` that left the history: waiting for the archive
    /// (`archived: false`, still in PostgreSQL) or archived.
    pub(super) async fn archived_version_infos(
        &self,
        secret_id: Uuid,
    ) -> Result<Vec<VersionInfo>, ServiceError> {
        if self.archive.is_none() {
            return Ok(Vec::new());
        }
        let pending = store::archive::pending_for_secret(&self.pool, secret_id).await?;
        let archived = store::archive::archived_for_secret(&self.pool, secret_id).await?;
        let mut out: Vec<VersionInfo> = pending
            .into_iter()
            .map(|p| VersionInfo {
                version: p.version,
                created_at: p.created_at,
                current: false,
                archived: false,
                retain_until: None,
            })
            .chain(archived.into_iter().map(|a| VersionInfo {
                version: a.version,
                created_at: a.created_at,
                current: false,
                archived: true,
                retain_until: Some(a.retain_until),
            }))
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.version));
        Ok(out)
    }

    /// One pass of the archive worker: deleted tenants' archive paths first, then versions
    /// from the outbox until it is empty, OpenBao fails, or `PASS_LIMIT`. Public for tests
    /// and tools; the worker calls it every few seconds and when woken.
    pub async fn archive_pass(&self) -> Result<ArchivePass, ServiceError> {
        let mut pass = ArchivePass::default();
        let Some(archive) = self.archive.clone() else {
            return Ok(pass);
        };
        // One archiver at a time across replicas (the lock lives as long as this
        // transaction): a key's versions reach OpenBao in order, and a purge cannot race the
        // archiving of a reused slug.
        let mut lock = self.pool.begin().await.map_err(StoreError::from)?;
        if !store::archive::try_lock_archiver(&mut lock).await? {
            pass.pending = store::archive::pending_count(&self.pool).await?;
            return Ok(pass);
        }
        // A slug can be reused after a delete: its old archive goes before new versions land.
        let mut purges_done = true;
        for purge in store::archive::purges(&self.pool).await? {
            match purge_tenant(&archive.client, &purge.slug).await {
                Ok(()) => {
                    store::archive::purge_done(&self.pool, purge.tenant_id).await?;
                    tracing::info!(tenant = %purge.slug, "deleted tenant's archive removed from OpenBao");
                    pass.purged += 1;
                }
                Err(e) => {
                    purges_done = false;
                    metrics::counter!("tenant_vault_archive_failures_total", "op" => "purge")
                        .increment(1);
                    tracing::warn!(tenant = %purge.slug, error = %e, "deleting a tenant's archive failed; retried on the next pass");
                    store::archive::purge_failed(&self.pool, purge.tenant_id).await?;
                }
            }
        }
        while purges_done && pass.archived < PASS_LIMIT {
            if archive.client.breaker_state() == BreakerState::Open {
                break;
            }
            let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
            let Some(row) = store::archive::next_pending(&mut *tx).await? else {
                break;
            };
            match self.archive_one(&archive.client, &row).await {
                Ok((kv_version, archived_at, retain_until)) => {
                    store::archive::mark_archived(
                        &mut *tx,
                        &row,
                        kv_version as i32,
                        archived_at,
                        retain_until,
                    )
                    .await?;
                    tx.commit().await.map_err(StoreError::from)?;
                    metrics::counter!("tenant_vault_archive_writes_total").increment(1);
                    pass.archived += 1;
                }
                Err(e) => {
                    drop(tx);
                    metrics::counter!("tenant_vault_archive_failures_total", "op" => "write")
                        .increment(1);
                    tracing::warn!(tenant = %row.slug, key = %row.secret_key, version = row.version, error = %e, "archiving a version failed; it stays in PostgreSQL and is retried");
                    store::archive::count_failure(&self.pool, row.secret_id, row.version).await?;
                    pass.failed += 1;
                    // The next pass tries again (this one first, unless it keeps failing).
                    break;
                }
            }
        }
        drop(lock);
        pass.pending = store::archive::pending_count(&self.pool).await?;
        metrics::gauge!("tenant_vault_archive_pending").set(pass.pending as f64);
        Ok(pass)
    }

    /// Writes one outbox row to OpenBao; returns its KV version, when it was archived, and
    /// until when it is kept.
    async fn archive_one(
        &self,
        client: &ArchiveClient,
        row: &store::archive::PendingRow,
    ) -> Result<(u32, DateTime<Utc>, DateTime<Utc>), StepError> {
        let corrupt = |what: &'static str| {
            StepError::Service(ServiceError::internal(ArchiveError::Protocol(format!(
                "outbox row with an invalid {what}"
            ))))
        };
        let slug = TenantSlug::parse(&row.slug).map_err(|_| corrupt("tenant slug"))?;
        let key = SecretKey::parse(&row.secret_key).map_err(|_| corrupt("secret key"))?;
        let tenant = TenantId(row.company_id);
        let read = || async {
            let stored = StoredSecret {
                version: row.version,
                secret_id: row.secret_id,
                envelope: row.secret_value_encrypted.clone(),
                data_key_id: DataKeyId(row.data_key_id),
            };
            Ok::<_, ServiceError>(Some((stored, ())))
        };
        let (value, ()) = self
            .data_keys
            .read_secret(tenant, &key, read)
            .await?
            .ok_or(ServiceError::SecretNotFound)?;

        let archived_at = Utc::now();
        let retention = chrono::Duration::from_std(client.retention())
            .unwrap_or_else(|_| chrono::Duration::days(5 * 365));
        let entry = ArchivedEntry {
            value,
            secret_id: row.secret_id,
            version: row.version,
            reason: row.reason.as_str().to_string(),
            created_at: row.created_at,
            archived_at,
            retain_until: archived_at + retention,
        };
        let custom = [
            ("tenant_vault_version", entry.version.to_string()),
            ("secret_id", entry.secret_id.to_string()),
            ("reason", entry.reason.clone()),
            ("archived_at", entry.archived_at.to_rfc3339()),
            ("retain_until", entry.retain_until.to_rfc3339()),
        ];
        // Retention and the version cap before the first write, so it is under them too.
        client.set_metadata(&slug, &key, &custom).await?;
        let current = client.current_version(&slug, &key).await?;
        // A write that succeeded before a crash (or a lost answer): the newest KV version
        // already holds this version. Archives of one key are written in version order.
        if current > 0 {
            if let Some(newest) = client.read(&slug, &key, current).await? {
                if newest.secret_id == row.secret_id && newest.version == row.version {
                    return Ok((current, newest.archived_at, newest.retain_until));
                }
            }
        }
        let kv_version = client.write(&slug, &key, &entry, current).await?;
        Ok((kv_version, entry.archived_at, entry.retain_until))
    }
}

/// Deletes every key under a deleted tenant's archive path (KV v2 metadata delete: all
/// versions and the metadata), then checks nothing is left.
async fn purge_tenant(client: &ArchiveClient, slug: &str) -> Result<(), ArchiveError> {
    let slug = TenantSlug::parse(slug)
        .map_err(|_| ArchiveError::Protocol("purge of an invalid tenant slug".into()))?;
    for key in client.list_keys(&slug).await? {
        client.delete_key(&slug, &key).await?;
    }
    if !client.list_keys(&slug).await?.is_empty() {
        return Err(ArchiveError::Protocol(
            "keys remained after the tenant's archive was deleted".into(),
        ));
    }
    Ok(())
}

/// The archive worker of a serving replica: a pass when woken (a write or delete queued
/// versions) and every few seconds (so it resumes after an outage or a crash). Replicas
/// share the work through row locks.
pub fn spawn_archive_worker(vault: Arc<Vault>) -> Option<tokio::task::JoinHandle<()>> {
    let archive = vault.archive.clone()?;
    Some(tokio::spawn(async move {
        loop {
            let more = match vault.archive_pass().await {
                Ok(pass) => {
                    if pass.archived > 0 || pass.purged > 0 {
                        tracing::debug!(
                            archived = pass.archived,
                            purged = pass.purged,
                            pending = pass.pending,
                            "archive pass"
                        );
                    }
                    pass.archived >= PASS_LIMIT
                }
                Err(e) => {
                    tracing::warn!(error = %e, "archive pass failed; retrying");
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                _ = archive.wake.notified() => {}
                _ = tokio::time::sleep(ARCHIVE_INTERVAL) => {}
            }
        }
    }))
}
