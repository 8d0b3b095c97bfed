//! Master key rotation (re-wrap every data key under a new master key version, in one
//! transaction, one replica at a time) and data key rotation (a new active key per tenant,
//! the old one kept for decryption until the re-encryption job empties it).
//!
//! Master rotation, step by step, and what a crash after each step leaves:
//! 1. take the rotation lock (a session advisory lock on a connection of its own: a crash
//!    closes the connection and frees it);
//! 2. ask the source for version n+1 (`create` writes it and reads it back), then fetch it
//!    again the way every replica will and compare key check values. A crash here leaves an
//!    unused secret in the source and nothing in the database: every data key is still
//!    wrapped under version n. The next rotation skips the taken number (see
//!    `create_next_version`);
//! 3. one transaction: retire version n, record n+1 (check value, active), re-wrap every
//!    live data key in batches of `REWRAP_BATCH` (one statement per batch), log the rotation
//!    and `NOTIFY`. A crash before commit rolls all of it back;
//! 4. after commit, this replica makes n+1 active in memory; the others do on the
//!    notification (or on first need, see `MasterKeyring::get_or_refresh`).
//!
//! Version n is retired at once: after the commit no data key refers to it. Its material is
//! still needed to read database backups taken before the rotation, which is why the
//! README says when it is safe to delete.

use std::time::Instant;

use chrono::Utc;
use sqlx::{Acquire, PgPool};
use uuid::Uuid;

use super::{DataKeyring, KeyError, MasterKeySource, MasterKeyring, SourceError};
use crate::crypto::{envelope, kdf, MasterKey};
use crate::domain::{DataKeyId, DataKeyState, TenantId};
use crate::failpoint::{self, steps};
use crate::store::{self, master_keys::NewMasterKey, notify::Event, StoreError};

/// Data keys re-wrapped per statement.
pub const REWRAP_BATCH: i64 = 1000;
/// Failed attempts to create a version (other than "already exists") before giving up.
const VERSION_ATTEMPTS: i32 = 3;
/// Version numbers skipped because an interrupted rotation left them in the source. A bound
/// only so a broken source cannot loop forever; each orphan costs one create call.
const MAX_ORPHANS_SKIPPED: i32 = 1000;

/// Where a test can make a rotation fail, to prove that a crash there loses nothing.
/// Set only through `Vault::set_rotation_fail_point`, which no flag or route reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// The new version is in the source; the database is untouched.
    AfterSourceWrite,
    /// Every data key is re-wrapped inside the transaction, which is then abandoned.
    AfterRewrapBeforeCommit,
    /// The transaction committed; the replica dies before it updates its memory.
    AfterCommit,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("another master key rotation is in progress; try again when it has finished")]
    InProgress,
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    /// `source.is_transient()`: trying again later may succeed.
    #[error("could not create master key version {version} in {source_desc}: {source}")]
    Source {
        version: i32,
        source_desc: String,
        source: SourceError,
    },
    #[error(
        "could not create master key version {version} in {source_desc}: \
         reading the new version back: {source}"
    )]
    SourceReadBack {
        version: i32,
        source_desc: String,
        source: SourceError,
    },
    #[error(
        "master key version {version} read back from {source_desc} differs from the key written"
    )]
    ReadBack { version: i32, source_desc: String },
    #[error("rotation stopped by the test fail point {0:?}")]
    Injected(FailPoint),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Why this master key source cannot rotate at all; retrying will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("this process has no master key source configured")]
    NoSource,
    #[error(
        "{source_desc} holds one fixed key and cannot rotate; use a master key source that can \
         create versions (Infisical)"
    )]
    FixedKey { source_desc: String },
    #[error(
        "{source_desc} returned the same key material as master key version {version}; it cannot rotate"
    )]
    SameMaterial { source_desc: String, version: i32 },
}

impl From<StoreError> for RotationError {
    fn from(err: StoreError) -> Self {
        RotationError::Key(KeyError::Store(err))
    }
}

impl From<sqlx::Error> for RotationError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from(err).into()
    }
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MasterRotation {
    pub previous_version: i32,
    pub version: i32,
    pub rewrapped_data_keys: u64,
    pub elapsed_ms: u64,
}

/// True while some data key or internal key is still wrapped under this master key version.
pub async fn is_needed(pool: &PgPool, version: i32) -> Result<bool, KeyError> {
    Ok(store::data_keys::wrapped_under_master(pool, version).await?
        + store::internal_keys::wrapped_under_master(pool, version).await?
        > 0)
}

fn check(fail_at: Option<FailPoint>, here: FailPoint) -> Result<(), RotationError> {
    if fail_at == Some(here) {
        tracing::warn!(fail_point = ?here, "test fail point reached: abandoning the rotation");
        return Err(RotationError::Injected(here));
    }
    Ok(())
}

/// Rotates the master key. See the module docs for the steps.
pub async fn rotate_master_key(
    pool: &PgPool,
    masters: &MasterKeyring,
    source: &dyn MasterKeySource,
    fail_at: Option<FailPoint>,
    origin: Uuid,
) -> Result<MasterRotation, RotationError> {
    if source.kind() == "env" {
        return Err(Unsupported::FixedKey {
            source_desc: source.describe(),
        }
        .into());
    }
    // A connection of its own, closed (never returned to the pool) when dropped, so the
    // session lock cannot outlive this call.
    let mut lock_conn = pool.acquire().await.map_err(StoreError::from)?.detach();
    if !store::master_keys::try_lock_master_rotation(&mut lock_conn).await? {
        return Err(RotationError::InProgress);
    }
    failpoint::hit(steps::MASTER_AFTER_LOCK).await;
    let result = rotate_locked(pool, masters, source, fail_at, origin).await;
    let _ = store::master_keys::unlock_master_rotation(&mut lock_conn).await;
    let _ = sqlx::Connection::close(lock_conn).await;
    result
}

async fn rotate_locked(
    pool: &PgPool,
    masters: &MasterKeyring,
    source: &dyn MasterKeySource,
    fail_at: Option<FailPoint>,
    origin: Uuid,
) -> Result<MasterRotation, RotationError> {
    let started = Instant::now();
    let started_at = Utc::now();
    // Catch up first: every recorded version must be loaded to unwrap what it wraps.
    masters.refresh(pool).await?;
    let recorded = store::master_keys::all(pool).await?;
    let next = store::master_keys::max_master_version(pool).await? + 1;
    let new = create_next_version(source, next, &recorded).await?;
    failpoint::hit(steps::MASTER_AFTER_SOURCE_WRITE).await;
    check(fail_at, FailPoint::AfterSourceWrite)?;

    // Loaded before the commit: whatever the commit leaves, this replica can unwrap it.
    let key = std::sync::Arc::new(new.key);
    masters.insert_version(key.clone())?;

    let mut tx = pool.begin().await?;
    store::master_keys::lock_wrap_exclusive(&mut tx).await?;
    let previous_version = store::master_keys::retire_active_master(&mut *tx)
        .await?
        .unwrap_or(0);
    store::master_keys::insert(
        &mut *tx,
        NewMasterKey {
            version: key.version,
            source: source.kind(),
            infisical_secret_name: new.secret_name.as_deref(),
            infisical_secret_version: None,
            check_value: key.check_value(),
            argon2_salt: new.salt.as_ref().map(|s| s.as_slice()),
        },
    )
    .await?;
    let rewrapped = rewrap_all(pool, &mut tx, masters, &key).await?;
    super::internal_keys::rewrap_all(pool, &mut tx, masters, &key).await?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    store::key_rotations::log_rotation(
        &mut *tx,
        store::key_rotations::NewRotation {
            kind: "master_key",
            tenant: None,
            previous_version,
            version: key.version,
            rewrapped_data_keys: i32::try_from(rewrapped).unwrap_or(i32::MAX),
            automatic: false,
            started_at,
            elapsed_ms: elapsed_ms as i64,
        },
    )
    .await?;
    store::notify::event(
        &mut *tx,
        origin,
        &Event::MasterKey {
            version: key.version,
        },
    )
    .await?;
    failpoint::hit(steps::MASTER_AFTER_REWRAP).await;
    check(fail_at, FailPoint::AfterRewrapBeforeCommit)?;
    tx.commit().await?;
    failpoint::hit(steps::MASTER_AFTER_COMMIT).await;
    masters.set_active(key.version);
    check(fail_at, FailPoint::AfterCommit)?;
    tracing::info!(
        previous_version,
        version = key.version,
        rewrapped_data_keys = rewrapped,
        elapsed_ms,
        "master key rotated"
    );
    Ok(MasterRotation {
        previous_version,
        version: key.version,
        rewrapped_data_keys: rewrapped,
        elapsed_ms,
    })
}

/// Re-wraps every live data key under `new`, `REWRAP_BATCH` keys per statement.
async fn rewrap_all(
    pool: &PgPool,
    tx: &mut sqlx::PgConnection,
    masters: &MasterKeyring,
    new: &MasterKey,
) -> Result<u64, RotationError> {
    let mut after = Uuid::nil();
    let mut total = 0u64;
    loop {
        let rows = store::data_keys::wrapped_keys_after(&mut *tx, after, REWRAP_BATCH).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.id;
        let mut ids = Vec::with_capacity(rows.len());
        let mut wrapped = Vec::with_capacity(rows.len());
        for row in &rows {
            let tenant = TenantId(row.tenant_id);
            let id = DataKeyId(row.id);
            let old = masters.get_or_refresh(pool, row.master_key_version).await?;
            let key = envelope::unwrap_data_key(&old, tenant, id, row.version, &row.wrapped_key)
                .map_err(|_| KeyError::Integrity(id))?;
            wrapped.push(envelope::wrap_data_key(new, tenant, row.version, &key));
            ids.push(row.id);
        }
        total += store::data_keys::rewrap_batch(&mut *tx, &ids, &wrapped, new.version).await?;
    }
    Ok(total)
}

struct NewVersion {
    key: MasterKey,
    secret_name: Option<String>,
    salt: Option<[u8; 16]>,
}

/// Asks the source for version `next`, reads it back, and checks it is new material.
/// If `next` is taken in the source (an interrupted rotation wrote it and recorded nothing),
/// the number is skipped, however many rotations were interrupted before: the orphan
/// protects nothing and is never adopted, since nothing proves who wrote it.
async fn create_next_version(
    source: &dyn MasterKeySource,
    next: i32,
    recorded: &[store::master_keys::MasterKeyRow],
) -> Result<NewVersion, RotationError> {
    let mut first_error = None;
    let (mut failures, mut skipped) = (0, 0);
    let mut version = next - 1;
    while failures < VERSION_ATTEMPTS {
        version += 1;
        let created = match source.create(version).await {
            Ok(created) => created,
            Err(e @ SourceError::AlreadyExists { .. }) if skipped < MAX_ORPHANS_SKIPPED => {
                skipped += 1;
                tracing::warn!(version, reason = %e, "master key version left by an interrupted rotation; skipping it");
                continue;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(version, reason = %e, source = %source.describe(), "could not create master key version; trying the next number");
                first_error.get_or_insert(RotationError::Source {
                    version,
                    source_desc: source.describe(),
                    source: e,
                });
                continue;
            }
        };
        let salt = kdf::is_passphrase(&created.text).then(kdf::new_salt);
        let material = |text: &str| {
            MasterKey::from_text(version, text, salt.as_ref().map(|s| s.as_slice())).map_err(|e| {
                KeyError::Material {
                    version,
                    reason: e.to_string(),
                }
            })
        };
        let key = material(&created.text)?;
        // Read it back the way every replica will load it.
        let again = source
            .fetch(version, created.secret_name.as_deref())
            .await
            .map_err(|e| RotationError::SourceReadBack {
                version,
                source_desc: source.describe(),
                source: e,
            })?;
        if !material(&again)?.matches(key.check_value()) {
            return Err(RotationError::ReadBack {
                version,
                source_desc: source.describe(),
            });
        }
        if let Some(same) = recorded.iter().find(|r| key.matches(&r.check_value)) {
            return Err(Unsupported::SameMaterial {
                source_desc: source.describe(),
                version: same.version,
            }
            .into());
        }
        return Ok(NewVersion {
            key,
            secret_name: created.secret_name,
            salt,
        });
    }
    Err(first_error.expect("at least one attempt was made"))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DataKeyRotation {
    pub previous_version: i32,
    pub version: i32,
    pub data_key_id: DataKeyId,
    /// Ciphertexts still under older keys, which the re-encryption job will move.
    pub to_reencrypt: i64,
}

/// Gives a tenant a new active data key; the active one becomes decrypt-only. With
/// `only_if_active`, does nothing (None) unless that key is still the active one, so many
/// writers noticing one exhausted key rotate it once.
pub async fn rotate_data_key(
    pool: &PgPool,
    data_keys: &DataKeyring,
    tenant: TenantId,
    only_if_active: Option<DataKeyId>,
    automatic: bool,
    origin: Uuid,
) -> Result<Option<DataKeyRotation>, KeyError> {
    let started = Instant::now();
    let started_at = Utc::now();
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    // The wrap lock before the key rows: a master rotation takes them in this order too.
    store::master_keys::lock_wrap_shared(&mut tx).await?;
    let keys = store::data_keys::lock_tenant_keys(&mut *tx, tenant).await?;
    let active = keys
        .iter()
        .find(|k| k.state == DataKeyState::Active)
        .ok_or(KeyError::NoActiveKey)?;
    if only_if_active.is_some_and(|want| want.0 != active.id) {
        return Ok(None);
    }
    let previous_version = active.version;
    let version = keys.iter().map(|k| k.version).max().unwrap_or(0) + 1;
    store::data_keys::demote_key(&mut *tx, DataKeyId(active.id)).await?;
    let conn = tx.acquire().await.map_err(StoreError::from)?;
    let id = data_keys.create(conn, tenant, version).await?;
    let to_reencrypt = store::data_keys::remaining_under_old_keys(&mut *tx, tenant).await?;
    store::reencryption::start_job(&mut *tx, tenant, to_reencrypt).await?;
    store::key_rotations::log_rotation(
        &mut *tx,
        store::key_rotations::NewRotation {
            kind: "data_key",
            tenant: Some(tenant),
            previous_version,
            version,
            rewrapped_data_keys: 0,
            automatic,
            started_at,
            elapsed_ms: started.elapsed().as_millis() as i64,
        },
    )
    .await?;
    store::notify::event(
        &mut *tx,
        origin,
        &Event::DataKey {
            tenant: tenant.0,
            destroyed_keys: Vec::new(),
        },
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    failpoint::hit(steps::DATA_KEY_AFTER_ROTATE).await;
    data_keys.forget_active(tenant).await;
    Ok(Some(DataKeyRotation {
        previous_version,
        version,
        data_key_id: id,
        to_reencrypt,
    }))
}
