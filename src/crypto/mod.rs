//! Pure cryptography, no I/O: AES-256-GCM envelopes, key derivation and the zeroizing types
//! that hold key material and plaintext. Only `keys` and `service` call into it.

pub mod envelope;
pub mod kdf;
pub mod secret;

pub use envelope::{open_secret, seal_secret, unwrap_data_key, wrap_data_key, SecretPlace};
pub use kdf::{key_check_value, MasterKey};
pub use secret::{DataKey, SecretValue};

/// A ciphertext failed to open. Deliberately carries no detail an attacker could use and no
/// bytes of the input: the caller knows which row it was reading and says so itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext failed authentication (wrong key, or copied from another place)")]
    Integrity,
    #[error("ciphertext is malformed: {0}")]
    Malformed(&'static str),
}
