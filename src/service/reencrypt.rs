//! The re-encryption job: after a data key rotation, moves every ciphertext of the tenant
//! (current values and kept versions) from its decrypt-only keys to the active key, in
//! batches, then destroys the emptied keys. The work list is the database itself (rows under
//! a `decrypt_only` key), so the job resumes after a crash wherever it stopped; any replica
//! may run it, one at a time per tenant (a transaction advisory lock per batch).
//!
//! Lock order, to stay clear of deadlocks with writers (which lock the secret row, then count
//! on the key row): a batch locks its secret rows first (skipping rows a writer holds) and
//! counts its encryptions on the active key row last.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{ServiceError, Vault};

/// Re-encrypting a tenant rotated its data key more often than one run allows.
#[derive(Debug, thiserror::Error)]
#[error("tenant {tenant}: the data key encryption ceiling is too low to re-encrypt its secrets")]
struct CeilingTooLow {
    tenant: Uuid,
}
use crate::crypto::DataKey;
use crate::domain::{DataKeyId, SecretKey, TenantId};
use crate::failpoint::{self, steps};
use crate::keys::{KeyError, SecretPlace};
use crate::store::{self, notify::Event, StoreError};

/// Ciphertexts moved per transaction (of each kind: current values, kept versions).
pub const REENCRYPT_BATCH: i64 = 200;
/// How often each replica looks for unfinished work, besides being woken by a rotation.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// What one batch did.
enum Batch {
    Moved(u64),
    /// Nothing left to move and every old key destroyed.
    Finished,
    /// Rows are held by writers or another replica runs this tenant: come back shortly.
    Busy,
    /// The active key reached its encryption ceiling and was rotated.
    Rotated,
}

/// Rotations one run may cause before it gives up: more means the ceiling is below the
/// tenant's number of ciphertexts, and moving them could never finish.
const MAX_ROTATIONS_PER_RUN: u32 = 8;

impl Vault {
    /// Ciphertexts of these tenants (all, if None) still under decrypt-only keys.
    pub async fn reencryption_remaining(&self, tenants: &[TenantId]) -> Result<i64, ServiceError> {
        let mut total = 0;
        for t in tenants {
            total += store::data_keys::remaining_under_old_keys(&self.pool, *t).await?;
        }
        Ok(total)
    }

    /// Tenants with unfinished re-encryption work.
    pub async fn tenants_to_reencrypt(&self) -> Result<Vec<TenantId>, ServiceError> {
        Ok(store::data_keys::tenants_with_old_keys(&self.pool).await?)
    }

    /// Moves all of a tenant's ciphertexts to its active key and destroys its old keys.
    /// Calls `progress` with the count after each batch. Returns how many were moved.
    pub async fn reencrypt_tenant(
        &self,
        tenant: TenantId,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, ServiceError> {
        let mut moved = 0;
        let mut busy_rounds = 0u32;
        let mut rotations = 0u32;
        loop {
            match self.reencrypt_batch(tenant).await? {
                Batch::Rotated => {
                    rotations += 1;
                    if rotations > MAX_ROTATIONS_PER_RUN {
                        return Err(ServiceError::internal(CeilingTooLow { tenant: tenant.0 }));
                    }
                }
                Batch::Moved(n) => {
                    moved += n;
                    busy_rounds = 0;
                    progress(n);
                }
                Batch::Finished => return Ok(moved),
                Batch::Busy => {
                    busy_rounds += 1;
                    let wait = Duration::from_millis(20 * u64::from(busy_rounds.min(50)));
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Runs every tenant's unfinished work (the worker calls this; so can tools).
    pub async fn reencrypt_pending(&self) -> Result<u64, ServiceError> {
        let mut moved = 0;
        for tenant in self.tenants_to_reencrypt().await? {
            match self.reencrypt_tenant(tenant, &|_| {}).await {
                Ok(n) => moved += n,
                Err(e) => {
                    tracing::error!(tenant = %tenant.0, error = %e, "re-encryption stopped for this tenant; it is retried later");
                }
            }
        }
        Ok(moved)
    }

    async fn reencrypt_batch(&self, tenant: TenantId) -> Result<Batch, ServiceError> {
        let active = self.data_keys.active(tenant).await?;
        // Stay within the active key's encryption budget; rotate it first if it is spent.
        let used = store::data_keys::encryption_count(&self.pool, active.id)
            .await?
            .unwrap_or(0);
        let budget = self.limits.data_key_max_encryptions - used;
        if budget <= 0 {
            self.retire_exhausted_data_key(tenant, active.id).await?;
            return Ok(Batch::Rotated);
        }
        let limit = budget.min(REENCRYPT_BATCH);
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        if !store::reencryption::try_lock(&mut tx, tenant).await? {
            return Ok(Batch::Busy);
        }
        let current = store::secrets::current_under_old_keys(&mut *tx, tenant, limit).await?;
        let kept =
            store::versions::kept_under_old_keys(&mut *tx, tenant, limit - current.len() as i64)
                .await?;
        if current.is_empty() && kept.is_empty() {
            let destroyed =
                store::data_keys::destroy_unreferenced_old_keys(&mut *tx, tenant).await?;
            let remaining = store::data_keys::remaining_under_old_keys(&mut *tx, tenant).await?;
            if !destroyed.is_empty() {
                store::notify::event(
                    &mut *tx,
                    self.rotation.origin,
                    &Event::DataKey {
                        tenant: tenant.0,
                        destroyed_keys: destroyed.iter().map(|id| id.0).collect(),
                    },
                )
                .await?;
            }
            if remaining == 0 {
                store::reencryption::finish_job(&mut *tx, tenant).await?;
            }
            if !destroyed.is_empty() {
                failpoint::hit(steps::REENCRYPT_AFTER_DESTROY).await;
            }
            tx.commit().await.map_err(StoreError::from)?;
            let ids = destroyed;
            self.data_keys.forget(tenant, &ids).await;
            if !ids.is_empty() {
                tracing::info!(tenant = %tenant.0, destroyed = ids.len(), "old data keys emptied and destroyed");
            }
            return Ok(if remaining == 0 {
                Batch::Finished
            } else {
                Batch::Busy
            });
        }

        let mut ids = Vec::with_capacity(current.len());
        let mut envelopes = Vec::with_capacity(current.len());
        for row in &current {
            let envelope = self
                .move_ciphertext(
                    tenant,
                    &active,
                    Stored {
                        secret_id: row.id,
                        secret_key: &row.secret_key,
                        version: row.version,
                        sealed: &row.secret_value_encrypted,
                        data_key_id: row.data_key_id,
                    },
                )
                .await?;
            ids.push(row.id);
            envelopes.push(envelope);
        }
        let mut kept_ids = Vec::with_capacity(kept.len());
        let mut kept_versions = Vec::with_capacity(kept.len());
        let mut kept_envelopes = Vec::with_capacity(kept.len());
        for row in &kept {
            let envelope = self
                .move_ciphertext(
                    tenant,
                    &active,
                    Stored {
                        secret_id: row.secret_id,
                        secret_key: &row.secret_key,
                        version: row.version,
                        sealed: &row.secret_value_encrypted,
                        data_key_id: row.data_key_id,
                    },
                )
                .await?;
            kept_ids.push(row.secret_id);
            kept_versions.push(row.version);
            kept_envelopes.push(envelope);
        }
        let n = (current.len() + kept.len()) as i64;
        store::secrets::replace_current(&mut *tx, &ids, &envelopes, active.id).await?;
        store::versions::replace_kept(
            &mut *tx,
            &kept_ids,
            &kept_versions,
            &kept_envelopes,
            active.id,
        )
        .await?;
        // Counted last (see the module docs); and counted, like every encryption.
        match store::data_keys::count_encryptions(&mut *tx, active.id, n).await? {
            None => {
                // The key we encrypted under was rotated meanwhile: redo under the new one.
                drop(tx);
                self.data_keys.forget_active(tenant).await;
                return Ok(Batch::Moved(0));
            }
            Some(count) if count > self.limits.data_key_max_encryptions => {
                // Writers spent the budget meanwhile.
                drop(tx);
                self.retire_exhausted_data_key(tenant, active.id).await?;
                return Ok(Batch::Rotated);
            }
            Some(_) => {}
        }
        store::reencryption::job_progress(&mut *tx, tenant, n).await?;
        failpoint::hit(steps::REENCRYPT_AFTER_BATCH_WRITE).await;
        tx.commit().await.map_err(StoreError::from)?;
        failpoint::hit(steps::REENCRYPT_AFTER_BATCH_COMMIT).await;
        Ok(Batch::Moved(n as u64))
    }

    /// Opens one ciphertext with the key it names and seals it again, in the same place,
    /// under `active`.
    async fn move_ciphertext(
        &self,
        tenant: TenantId,
        active: &DataKey,
        stored: Stored<'_>,
    ) -> Result<Vec<u8>, ServiceError> {
        let Stored {
            secret_id,
            secret_key,
            version,
            sealed,
            data_key_id,
        } = stored;
        let key = SecretKey::parse(secret_key).map_err(|_| ServiceError::Integrity)?;
        let place = SecretPlace {
            tenant,
            key: &key,
            version,
            secret_id,
        };
        let value = self
            .data_keys
            .open_secret(place, DataKeyId(data_key_id), sealed)
            .await
            .map_err(|e| {
                match &e {
                    KeyError::Integrity(id) | KeyError::Destroyed(id) => {
                        tracing::error!(tenant = %tenant.0, data_key = %id, "a ciphertext under an old data key cannot be opened; its key is kept");
                    }
                    KeyError::SecretIntegrity => {
                        tracing::error!(tenant = %tenant.0, key = %key, version, "a ciphertext failed its integrity check during re-encryption");
                    }
                    _ => {}
                }
                ServiceError::from(e)
            })?;
        Ok(self.data_keys.seal_secret(active, place, &value))
    }
}

/// One stored ciphertext (a current value or a kept version) and where it belongs.
struct Stored<'a> {
    secret_id: Uuid,
    secret_key: &'a str,
    version: i32,
    sealed: &'a [u8],
    data_key_id: Uuid,
}

/// Re-encrypts in the background: at start (resuming anything a crash interrupted), when a
/// rotation wakes it, and every `SWEEP_INTERVAL`.
pub fn spawn_reencryption_worker(vault: Arc<Vault>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = vault.reencrypt_pending().await {
                tracing::warn!(error = %e, "re-encryption sweep failed; retrying later");
            }
            tokio::select! {
                _ = vault.rotation.reencrypt_wakeup.notified() => {}
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
        }
    })
}
