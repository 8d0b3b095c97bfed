//! Master key material: parsing it (32 bytes as hex or base64, or a passphrase stretched with
//! Argon2id), the key check value, and the subkey used to wrap data keys.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

const KEY_CHECK_LABEL: &[u8] = b"tenant-vault/v1/master-key-check";
const WRAP_KEY_INFO: &[u8] = b"tenant-vault/v1/data-key-wrapping";
/// Passphrases shorter than this are refused: Argon2id slows guessing, it cannot save "hunter2".
pub const MIN_PASSPHRASE_LEN: usize = 16;

/// Why master key material was refused. Never includes the material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error(
        "the master key is neither 32 bytes (64 hex characters, or base64) nor a passphrase \
         of at least {MIN_PASSPHRASE_LEN} characters"
    )]
    TooShort,
    #[error(
        "the master key is a passphrase but master key version {0} has no Argon2id salt recorded"
    )]
    MissingSalt(i32),
    #[error("Argon2id failed: {0}")]
    Argon2(String),
}

/// One version of the master key, in memory only. Holds the subkey that wraps data keys and
/// the key check value that proves it is the key the database expects.
pub struct MasterKey {
    pub version: i32,
    wrap_key: Zeroizing<[u8; 32]>,
    check_value: [u8; 32],
}

impl MasterKey {
    /// Derives the working keys from 32 bytes of master key.
    pub fn from_bytes(version: i32, raw: &[u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(None, raw);
        let mut wrap_key = Zeroizing::new([0u8; 32]);
        hk.expand(WRAP_KEY_INFO, wrap_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            version,
            wrap_key,
            check_value: key_check_value(raw),
        }
    }

    /// Parses master key text as it is stored in Infisical or the environment.
    /// `salt` is the Argon2id salt recorded for this version, needed only for a passphrase.
    pub fn from_text(version: i32, text: &str, salt: Option<&[u8]>) -> Result<Self, MaterialError> {
        match decode_raw_key(text) {
            Some(raw) => Ok(Self::from_bytes(version, &raw)),
            None => {
                let salt = salt.ok_or(MaterialError::MissingSalt(version))?;
                let raw = stretch_passphrase(text, salt)?;
                Ok(Self::from_bytes(version, &raw))
            }
        }
    }

    pub fn check_value(&self) -> &[u8; 32] {
        &self.check_value
    }

    /// Constant-time comparison with a recorded key check value.
    pub fn matches(&self, recorded: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        recorded.len() == 32 && bool::from(self.check_value.ct_eq(recorded))
    }

    pub(crate) fn wrap_key(&self) -> &[u8; 32] {
        &self.wrap_key
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(v{}, [redacted])", self.version)
    }
}

/// HMAC-SHA256 of a fixed label under the key. Reveals nothing about the key, and a different
/// key gives a different value, so start-up can refuse a wrong key before wrapping anything.
pub fn key_check_value(raw: &[u8; 32]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(raw).expect("HMAC takes any key length");
    mac.update(KEY_CHECK_LABEL);
    mac.finalize().into_bytes().into()
}

/// Text is a raw key when it is 64 hex characters, or base64 (standard or URL-safe, padded or
/// not) of exactly 32 bytes. Surrounding whitespace is ignored: Infisical trims values anyway.
pub fn decode_raw_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let text = text.trim();
    let mut out = Zeroizing::new([0u8; 32]);
    if text.len() == 64 && hex::decode_to_slice(text, out.as_mut()).is_ok() {
        return Some(out);
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        let decoded = Zeroizing::new(engine.decode(text).unwrap_or_default());
        if decoded.len() == 32 {
            out.copy_from_slice(&decoded);
            return Some(out);
        }
    }
    None
}

/// True when the text would be taken as a passphrase (and so needs a salt).
pub fn is_passphrase(text: &str) -> bool {
    decode_raw_key(text).is_none()
}

/// Argon2id with OWASP's first recommended setting (19 MiB, 2 passes, 1 lane).
pub fn stretch_passphrase(text: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, MaterialError> {
    let text = text.trim();
    if text.chars().count() < MIN_PASSPHRASE_LEN {
        return Err(MaterialError::TooShort);
    }
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32))
        .map_err(|e| MaterialError::Argon2(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(text.as_bytes(), salt, out.as_mut())
        .map_err(|e| MaterialError::Argon2(e.to_string()))?;
    Ok(out)
}

/// A fresh 16-byte salt for a new passphrase-based master key version.
pub fn new_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
    salt
}

/// A fresh random master key, as base64 (Infisical trims values, and base64 has no spaces).
pub fn generate_master_key_text() -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, raw.as_mut());
    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(raw.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_give_the_same_key() {
        let raw = [7u8; 32];
        let hex_text = hex::encode(raw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let a = MasterKey::from_text(1, &hex_text, None).unwrap();
        let b = MasterKey::from_text(1, &format!("  {b64}\n"), None).unwrap();
        assert_eq!(a.check_value(), b.check_value());
        assert!(a.matches(b.check_value()));
    }

    #[test]
    fn different_keys_have_different_check_values() {
        let a = MasterKey::from_bytes(1, &[1u8; 32]);
        let b = MasterKey::from_bytes(1, &[2u8; 32]);
        assert!(!a.matches(b.check_value()));
        assert!(!a.matches(&[0u8; 5]));
    }

    #[test]
    fn passphrases_need_a_salt_and_a_length() {
        let err = MasterKey::from_text(3, "correct horse battery staple", None).unwrap_err();
        assert_eq!(err, MaterialError::MissingSalt(3));
        let salt = [9u8; 16];
        assert_eq!(
            MasterKey::from_text(1, "short", Some(&salt)).unwrap_err(),
            MaterialError::TooShort
        );
        let a = MasterKey::from_text(1, "correct horse battery staple", Some(&salt)).unwrap();
        let b = MasterKey::from_text(1, "correct horse battery staple", Some(&salt)).unwrap();
        let c = MasterKey::from_text(1, "correct horse battery staplf", Some(&salt)).unwrap();
        assert!(a.matches(b.check_value()));
        assert!(!a.matches(c.check_value()));
    }

    #[test]
    fn debug_never_shows_key_material() {
        let raw = [0xABu8; 32];
        let key = MasterKey::from_bytes(4, &raw);
        let printed = format!("{key:?}");
        assert_eq!(printed, "MasterKey(v4, [redacted])");
        let err = MasterKey::from_text(1, "tiny", Some(&[0u8; 16])).unwrap_err();
        assert!(!err.to_string().contains("tiny"));
    }
}
