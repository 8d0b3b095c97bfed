//! Key management: where the master key comes from and whether it is the right one, and the
//! per-tenant data keys (creation, unwrapping, caching, destruction), and the secret envelopes
//! sealed under them. The only module that wraps and unwraps keys or opens a secret.

pub mod data_keys;
pub mod envelopes;
pub mod infisical;
pub mod internal_keys;
pub mod master;
pub mod rotation;
pub mod source;

pub use data_keys::DataKeyring;
pub use envelopes::{SecretPlace, StoredSecret};
pub use infisical::{InfisicalSource, MasterFolderError};
pub use internal_keys::{InternalKey, InternalKeyPurpose, InternalKeys};
pub use master::MasterKeyring;
pub use source::{Cause, CreatedMasterKey, DevFileSource, EnvSource, MasterKeySource, SourceError};

use std::sync::Arc;

use crate::domain::DataKeyId;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "master key version {version} from {source_desc} does not match the key check value \
         recorded in the database: this is not the key that wrapped this database's data keys"
    )]
    WrongMasterKey { version: i32, source_desc: String },
    #[error("master key version {0} is not loaded")]
    MasterVersionMissing(i32),
    /// `source.is_transient()`: the source may answer later (unreachable, rate limited).
    #[error("could not read master key version {version} from {source_desc}: {source}")]
    Source {
        version: i32,
        source_desc: String,
        source: SourceError,
    },
    #[error("invalid master key material for version {version}: {reason}")]
    Material { version: i32, reason: String },
    #[error(
        "no master key is recorded in the database yet; create it in {0} with `tenant-vault init`"
    )]
    NotInitialised(String),
    #[error("data key {0} failed integrity checks")]
    Integrity(DataKeyId),
    /// A secret ciphertext does not open under the key it names, or names another key than
    /// its row: it was damaged or copied from another place.
    #[error("a secret ciphertext failed its integrity check")]
    SecretIntegrity,
    #[error("data key {0} was destroyed")]
    Destroyed(DataKeyId),
    #[error("the {0} internal key failed its integrity check")]
    InternalKeyIntegrity(&'static str),
    #[error("the {0} internal key is missing after it was created")]
    InternalKeyMissing(&'static str),
    #[error("tenant has no active data key")]
    NoActiveKey,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A cache load's error, shared by every caller that waited on it.
    #[error(transparent)]
    Shared(Arc<KeyError>),
}

impl KeyError {
    /// The database could not be reached (directly, or under a shared load error).
    pub fn is_database_unavailable(&self) -> bool {
        match self {
            KeyError::Store(StoreError::Unavailable(_)) => true,
            KeyError::Shared(inner) => inner.is_database_unavailable(),
            _ => false,
        }
    }
}
