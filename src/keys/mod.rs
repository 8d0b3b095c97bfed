//! Key management: where the master key comes from and whether it is the right one, and the
//! per-tenant data keys (creation, unwrapping, caching, destruction), and the secret envelopes
//! sealed under them. The only module that wraps and unwraps keys or opens a secret.

pub mod data_keys;
pub mod envelopes;
pub mod infisical;
pub mod master;
pub mod rotation;
pub mod source;

pub use data_keys::DataKeyring;
pub use envelopes::{SecretPlace, StoredSecret};
pub use infisical::{InfisicalSource, MasterFolderError};
pub use master::MasterKeyring;
pub use source::{CreatedMasterKey, DevFileSource, EnvSource, MasterKeySource, SourceError};

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
    #[error("could not read master key version {version} from {source_desc}: {reason}")]
    Source {
        version: i32,
        source_desc: String,
        reason: String,
        /// The source may answer later (unreachable, rate limited): retry.
        transient: bool,
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
    #[error("tenant has no active data key")]
    NoActiveKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}
