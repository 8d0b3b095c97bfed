//! Types that hold key material or plaintext. Each wipes its memory when dropped and prints
//! as `[redacted]`, so a stray `{:?}` or a panic message cannot leak what it holds.

use std::fmt;

use zeroize::Zeroizing;

use crate::domain::DataKeyId;

/// A secret string: a secret's plaintext, a value read from Infisical, or a setting such as
/// a database URL or client secret. The one redacted, zeroizing string type of the crate.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The plaintext. Call sites are few and easy to audit: the JSON response, the cipher,
    /// the master key parser, the connection string.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The plaintext as a zeroizing string, for holders that keep one (the env key source).
    pub fn into_zeroizing(self) -> Zeroizing<String> {
        self.0
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

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Lets clap parse a secret setting (`--database-url`, `--master-key`, ...) straight into it.
impl std::str::FromStr for SecretValue {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::SecretValue;

    #[test]
    fn debug_and_display_redact() {
        let v: SecretValue = "sk_live_123".parse().unwrap();
        assert_eq!(format!("{v:?}"), "SecretValue([redacted])");
        assert_eq!(format!("{v}"), "[redacted]");
        assert_eq!(v.expose(), "sk_live_123");
        assert_eq!(v.into_zeroizing().as_str(), "sk_live_123");
    }
}
