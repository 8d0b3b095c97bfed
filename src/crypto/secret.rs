//! Types that hold key material or plaintext. Each wipes its memory when dropped and prints
//! as `[redacted]`, so a stray `{:?}` or a panic message cannot leak what it holds.

use std::fmt;

use zeroize::Zeroizing;

use crate::domain::DataKeyId;

/// A secret's plaintext value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The plaintext. Call sites are few and easy to audit: the JSON response, the cipher.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// An unwrapped per-tenant data key: 32 bytes of AES-256 key and the id that names it in
/// every ciphertext header.
pub struct DataKey {
    pub id: DataKeyId,
    bytes: Zeroizing<[u8; 32]>,
}

impl DataKey {
    pub fn new(id: DataKeyId, bytes: Zeroizing<[u8; 32]>) -> Self {
        Self { id, bytes }
    }

    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate(id: DataKeyId) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, bytes.as_mut());
        Self { id, bytes }
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({}, [redacted])", self.id)
    }
}
