//! The master key versions in memory, loaded once at start-up and checked against the key
//! check values in `master_keys`. A wrong key stops start-up before anything is wrapped.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use sqlx::PgPool;

use super::source::{CreatedMasterKey, MasterKeySource, SourceError};
use super::KeyError;
use crate::crypto::{kdf, MasterKey};
use crate::domain::MasterKeyState;
use crate::store::{self, master_keys::NewMasterKey, StoreError};

pub struct MasterKeyring {
    keys: RwLock<BTreeMap<i32, Arc<MasterKey>>>,
    active: RwLock<i32>,
    /// Where versions created by another replica are fetched from (see `refresh`).
    source: OnceLock<Arc<dyn MasterKeySource>>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MasterKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions: Vec<i32> = self.keys.read().unwrap().keys().copied().collect();
        write!(f, "MasterKeyring(versions {versions:?}, [redacted])")
    }
}

impl MasterKeyring {
    /// Loads every recorded version from the source and verifies each one. With no version
    /// recorded yet, asks the source to create version 1 and records it.
    pub async fn load(pool: &PgPool, source: &dyn MasterKeySource) -> Result<Self, KeyError> {
        let mut rows = store::master_keys::all(pool).await?;
        if rows.is_empty() {
            if !source.auto_initialise() {
                return Err(KeyError::NotInitialised(source.describe()));
            }
            match initialise(pool, source).await {
                Ok(_) => {}
                Err(InitialiseError::Source(e)) => return Err(source_error(1, source, e)),
                Err(InitialiseError::Key(e)) => return Err(e),
            }
            rows = store::master_keys::all(pool).await?;
        }
        let mut keys = BTreeMap::new();
        let mut active = 0;
        for row in &rows {
            let fetched = source
                .fetch(row.version, row.infisical_secret_name.as_deref())
                .await;
            let text = match fetched {
                Ok(text) => text,
                // A retired version no data key needs may have been deleted from the source.
                Err(e)
                    if row.state == MasterKeyState::Retired
                        && !super::rotation::is_needed(pool, row.version).await? =>
                {
                    tracing::info!(version = row.version, reason = %e, "skipping retired master key version that no data key needs");
                    continue;
                }
                Err(e) => return Err(source_error(row.version, source, e)),
            };
            let key = verified_key(row, &text, source)?;
            if row.state == MasterKeyState::Active {
                active = row.version;
            }
            keys.insert(row.version, Arc::new(key));
        }
        if active == 0 {
            active = *keys.keys().last().expect("at least one version was loaded");
        }
        tracing::info!(active_version = active, versions = keys.len(), source = %source.describe(), "master key loaded and verified");
        Ok(Self {
            keys: RwLock::new(keys),
            active: RwLock::new(active),
            source: OnceLock::new(),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// A keyring holding exactly these keys (tests and tools).
    pub fn from_keys(keys: Vec<MasterKey>) -> Self {
        let active = keys.iter().map(|k| k.version).max().unwrap_or(0);
        Self {
            keys: RwLock::new(keys.into_iter().map(|k| (k.version, Arc::new(k))).collect()),
            active: RwLock::new(active),
            source: OnceLock::new(),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The version new data keys are wrapped under. None only for a keyring built without
    /// keys (commands that never wrap, such as issuing a token).
    pub fn active(&self) -> Option<Arc<MasterKey>> {
        let version = *self.active.read().unwrap();
        self.get(version)
    }

    pub fn active_version(&self) -> i32 {
        *self.active.read().unwrap()
    }

    pub fn get(&self, version: i32) -> Option<Arc<MasterKey>> {
        self.keys.read().unwrap().get(&version).cloned()
    }

    /// Gives the keyring the source to fetch versions that another replica created.
    pub fn attach_source(&self, source: Arc<dyn MasterKeySource>) {
        let _ = self.source.set(source);
    }

    pub fn source(&self) -> Option<&Arc<dyn MasterKeySource>> {
        self.source.get()
    }

    /// Adds a verified version (rotation adds the new key before it commits, so this replica
    /// can unwrap whatever the commit leaves behind). Refuses to replace a different key.
    pub fn insert_version(&self, key: Arc<MasterKey>) -> Result<(), KeyError> {
        let mut keys = self.keys.write().unwrap();
        if let Some(existing) = keys.get(&key.version) {
            if !existing.matches(key.check_value()) {
                return Err(KeyError::Material {
                    version: key.version,
                    reason: "a different key is already loaded for this version".into(),
                });
            }
            return Ok(());
        }
        keys.insert(key.version, key);
        Ok(())
    }

    /// Makes a loaded version the one new data keys are wrapped under.
    pub fn set_active(&self, version: i32) {
        if self.get(version).is_some() {
            *self.active.write().unwrap() = version;
        }
    }

    /// The loaded versions, oldest first.
    pub fn versions(&self) -> Vec<i32> {
        self.keys.read().unwrap().keys().copied().collect()
    }

    /// Catches up with `master_keys`: fetches and verifies versions recorded since this
    /// replica loaded (a rotation elsewhere), and follows the active version. Needs an
    /// attached source; without one it only follows the active version among loaded keys.
    pub async fn refresh(&self, pool: &PgPool) -> Result<(), KeyError> {
        let _turn = self.refreshing.lock().await;
        let rows = store::master_keys::all(pool).await?;
        for row in &rows {
            if self.get(row.version).is_some() {
                continue;
            }
            let Some(source) = self.source.get() else {
                continue;
            };
            let fetched = source
                .fetch(row.version, row.infisical_secret_name.as_deref())
                .await;
            let text = match fetched {
                Ok(text) => text,
                Err(_) if row.state == MasterKeyState::Retired => continue,
                Err(e) => return Err(source_error(row.version, source.as_ref(), e)),
            };
            let key = verified_key(row, &text, source.as_ref())?;
            self.insert_version(Arc::new(key))?;
            tracing::info!(
                version = row.version,
                "loaded master key version recorded by another replica"
            );
        }
        if let Some(active) = rows.iter().find(|r| r.state == MasterKeyState::Active) {
            if self.get(active.version).is_some() && self.active_version() != active.version {
                self.set_active(active.version);
                tracing::info!(
                    active_version = active.version,
                    "master key version now active"
                );
            }
        }
        Ok(())
    }

    /// A version, fetching it first if it was recorded after this replica loaded.
    pub async fn get_or_refresh(
        &self,
        pool: &PgPool,
        version: i32,
    ) -> Result<Arc<MasterKey>, KeyError> {
        if let Some(key) = self.get(version) {
            return Ok(key);
        }
        self.refresh(pool).await?;
        self.get(version)
            .ok_or(KeyError::MasterVersionMissing(version))
    }
}

/// What `initialise` found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum Initialised {
    /// Version 1 was recorded; the name of the secret holding it, for sources with names.
    Created { secret_name: Option<String> },
    /// A version was already recorded, so nothing was created.
    Already { version: i32, source: String },
    /// Another process recorded version 1 between the check and the insert.
    Raced,
}

/// Why `initialise` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitialiseError {
    /// The source could not create (or hand over) the key; the reason as the source gave it.
    #[error("{0}")]
    Source(SourceError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl From<StoreError> for InitialiseError {
    fn from(e: StoreError) -> Self {
        Self::Key(e.into())
    }
}

/// Creates master key version 1 through the source and records it, unless a version is
/// recorded already.
pub async fn initialise(
    pool: &PgPool,
    source: &dyn MasterKeySource,
) -> Result<Initialised, InitialiseError> {
    initialise_with(pool, source, source.create(1)).await
}

/// The one way master key version 1 comes to be (`serve` on an empty database, `init`,
/// `dev`): unless a version is recorded already, awaits `first` (the source creating the key,
/// or an existing secret being adopted) and records it with its key check value. `first` is
/// not awaited when there is nothing to do.
pub async fn initialise_with(
    pool: &PgPool,
    source: &dyn MasterKeySource,
    first: impl std::future::Future<Output = Result<CreatedMasterKey, SourceError>>,
) -> Result<Initialised, InitialiseError> {
    if let Some(last) = store::master_keys::all(pool).await?.last() {
        return Ok(Initialised::Already {
            version: last.version,
            source: last.source.clone(),
        });
    }
    let created = first.await.map_err(InitialiseError::Source)?;
    let secret_name = created.secret_name.clone();
    let salt = kdf::is_passphrase(&created.text).then(kdf::new_salt);
    let key = MasterKey::from_text(1, &created.text, salt.as_ref().map(|s| s.as_slice())).map_err(
        |e| KeyError::Material {
            version: 1,
            reason: e.to_string(),
        },
    )?;
    let inserted = store::master_keys::insert(
        pool,
        NewMasterKey {
            version: 1,
            source: source.kind(),
            infisical_secret_name: created.secret_name.as_deref(),
            infisical_secret_version: None,
            check_value: key.check_value(),
            argon2_salt: salt.as_ref().map(|s| s.as_slice()),
        },
    )
    .await;
    match inserted {
        Ok(()) => {
            tracing::info!(source = %source.describe(), "initialised master key version 1");
            Ok(Initialised::Created { secret_name })
        }
        // Another replica initialised it first; `load` re-reads and verifies theirs.
        Err(StoreError::Conflict(_)) => Ok(Initialised::Raced),
        Err(e) => Err(e.into()),
    }
}

/// Parses one version's key material and checks it against the recorded key check value.
fn verified_key(
    row: &crate::store::master_keys::MasterKeyRow,
    text: &str,
    source: &dyn MasterKeySource,
) -> Result<MasterKey, KeyError> {
    let key = MasterKey::from_text(row.version, text, row.argon2_salt.as_deref()).map_err(|e| {
        KeyError::Material {
            version: row.version,
            reason: e.to_string(),
        }
    })?;
    if !key.matches(&row.check_value) {
        return Err(KeyError::WrongMasterKey {
            version: row.version,
            source_desc: source.describe(),
        });
    }
    Ok(key)
}

fn source_error(version: i32, source: &dyn MasterKeySource, e: SourceError) -> KeyError {
    KeyError::Source {
        version,
        source_desc: source.describe(),
        source: e,
    }
}
