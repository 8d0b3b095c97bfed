//! The on-disk envelope formats.
//!
//! Secret value: `format || data key id (16) || nonce (12) || AES-256-GCM ciphertext and tag`.
//! Wrapped data key: `0x01 || master key version (u32 BE) || nonce (12) || ciphertext and tag`.
//!
//! The associated data is a canonical, length-prefixed encoding of a purpose label, the
//! header itself (so the key id is authenticated, unlike Tink's prefix) and the place the
//! ciphertext belongs to: a secret's tenant, key and version; a data key's tenant, version
//! and master key version. A ciphertext copied anywhere else fails its tag.
//!
//! Secret format `0x02` (every new write) also binds the secret row's id, its incarnation:
//! a value of a deleted secret cannot be replayed into a new secret of the same name.
//! Format `0x01` (older writes, without the id) still opens; re-encryption upgrades it.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::kdf::MasterKey;
use super::secret::{DataKey, SecretValue};
use super::CryptoError;
use crate::domain::{DataKeyId, SecretKey, TenantId};

const FORMAT_V1: u8 = 0x01;
/// Secret envelopes whose associated data includes the secret row's id.
const FORMAT_SECRET_V2: u8 = 0x02;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const SECRET_HEADER_LEN: usize = 1 + 16;
const WRAP_HEADER_LEN: usize = 1 + 4;
const SECRET_LABEL: &[u8] = b"tenant-vault/secret/v1";
const DATA_KEY_LABEL: &[u8] = b"tenant-vault/data-key/v1";
const INTERNAL_KEY_LABEL: &[u8] = b"tenant-vault/internal-key/v1";

/// Where a secret ciphertext belongs. All of it goes into the associated data.
#[derive(Debug, Clone, Copy)]
pub struct SecretPlace<'a> {
    pub tenant: TenantId,
    pub key: &'a SecretKey,
    pub version: i32,
    /// The secret row's id (`company_secrets.id`): which incarnation of the name.
    pub secret_id: Uuid,
}

/// Length-prefixed concatenation: no two different field lists encode to the same bytes.
fn canonical_aad(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for field in fields {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// The header's format byte decides whether the row id is bound (`0x02`) or not (`0x01`).
fn secret_aad(header: &[u8], place: SecretPlace<'_>) -> Vec<u8> {
    let version = place.version.to_be_bytes();
    let mut fields: Vec<&[u8]> = vec![
        SECRET_LABEL,
        header,
        place.tenant.0.as_bytes(),
        place.key.as_str().as_bytes(),
        &version,
    ];
    if header[0] == FORMAT_SECRET_V2 {
        fields.push(place.secret_id.as_bytes());
    }
    canonical_aad(&fields)
}

fn data_key_aad(header: &[u8], tenant: TenantId, data_key_version: i32) -> Vec<u8> {
    canonical_aad(&[
        DATA_KEY_LABEL,
        header,
        tenant.0.as_bytes(),
        &data_key_version.to_be_bytes(),
    ])
}

fn seal(key: &[u8; 32], header: Vec<u8>, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption cannot fail for inputs under 64 GiB");
    let mut out = header;
    out.reserve(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

fn open(
    key: &[u8; 32],
    header_len: usize,
    envelope: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let body = &envelope[header_len..];
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    let (nonce, ciphertext) = body.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Integrity)
}

/// Encrypts a secret value for one place under a data key.
pub fn seal_secret(key: &DataKey, place: SecretPlace<'_>, value: &SecretValue) -> Vec<u8> {
    let mut header = Vec::with_capacity(SECRET_HEADER_LEN);
    header.push(FORMAT_SECRET_V2);
    header.extend_from_slice(key.id.0.as_bytes());
    let aad = secret_aad(&header, place);
    seal(key.bytes(), header, &aad, value.expose().as_bytes())
}

/// Reads the data key id from a secret envelope's header, to pick the key that opens it.
/// The id is only a hint until `open_secret` authenticates it.
pub fn secret_data_key_id(envelope: &[u8]) -> Result<DataKeyId, CryptoError> {
    if envelope.len() < SECRET_HEADER_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    if envelope[0] != FORMAT_V1 && envelope[0] != FORMAT_SECRET_V2 {
        return Err(CryptoError::Malformed("unknown format byte"));
    }
    let id = Uuid::from_slice(&envelope[1..SECRET_HEADER_LEN]).expect("16 bytes");
    Ok(DataKeyId(id))
}

/// Decrypts a secret value, checking it belongs to exactly this place and this key.
pub fn open_secret(
    key: &DataKey,
    place: SecretPlace<'_>,
    envelope: &[u8],
) -> Result<SecretValue, CryptoError> {
    if secret_data_key_id(envelope)? != key.id {
        return Err(CryptoError::Integrity);
    }
    let aad = secret_aad(&envelope[..SECRET_HEADER_LEN], place);
    let plain = open(key.bytes(), SECRET_HEADER_LEN, envelope, &aad)?;
    let text = String::from_utf8(plain.to_vec()).map_err(|e| {
        // Wipe the rejected bytes too.
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        CryptoError::Malformed("plaintext is not UTF-8")
    })?;
    Ok(SecretValue::new(text))
}

/// Wraps a data key under a master key version, bound to its tenant and data key version.
pub fn wrap_data_key(
    master: &MasterKey,
    tenant: TenantId,
    data_key_version: i32,
    key: &DataKey,
) -> Vec<u8> {
    let mut header = Vec::with_capacity(WRAP_HEADER_LEN);
    header.push(FORMAT_V1);
    header.extend_from_slice(&(master.version as u32).to_be_bytes());
    let aad = data_key_aad(&header, tenant, data_key_version);
    seal(master.wrap_key(), header, &aad, key.bytes())
}

/// The master key version named in a wrapped data key's header.
pub fn wrapped_master_version(wrapped: &[u8]) -> Result<i32, CryptoError> {
    if wrapped.len() < WRAP_HEADER_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    if wrapped[0] != FORMAT_V1 {
        return Err(CryptoError::Malformed("unknown format byte"));
    }
    let version = u32::from_be_bytes(wrapped[1..5].try_into().expect("4 bytes"));
    i32::try_from(version).map_err(|_| CryptoError::Malformed("master key version out of range"))
}

/// Unwraps a data key, checking it belongs to this tenant, data key version and master key.
pub fn unwrap_data_key(
    master: &MasterKey,
    tenant: TenantId,
    id: DataKeyId,
    data_key_version: i32,
    wrapped: &[u8],
) -> Result<DataKey, CryptoError> {
    if wrapped_master_version(wrapped)? != master.version {
        return Err(CryptoError::Integrity);
    }
    let aad = data_key_aad(&wrapped[..WRAP_HEADER_LEN], tenant, data_key_version);
    let plain = open(master.wrap_key(), WRAP_HEADER_LEN, wrapped, &aad)?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Malformed("data key is not 32 bytes"))?;
    Ok(DataKey::new(id, Zeroizing::new(bytes)))
}

fn internal_key_aad(header: &[u8], purpose: &str) -> Vec<u8> {
    canonical_aad(&[INTERNAL_KEY_LABEL, header, purpose.as_bytes()])
}

/// Wraps an internal key (token verifiers, audit) under a master key version, bound to its
/// purpose: the same format as a wrapped data key, another label.
pub fn wrap_internal_key(master: &MasterKey, purpose: &str, key: &[u8; 32]) -> Vec<u8> {
    let mut header = Vec::with_capacity(WRAP_HEADER_LEN);
    header.push(FORMAT_V1);
    header.extend_from_slice(&(master.version as u32).to_be_bytes());
    let aad = internal_key_aad(&header, purpose);
    seal(master.wrap_key(), header, &aad, key)
}

/// Unwraps an internal key, checking its purpose and master key version.
pub fn unwrap_internal_key(
    master: &MasterKey,
    purpose: &str,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    if wrapped_master_version(wrapped)? != master.version {
        return Err(CryptoError::Integrity);
    }
    let aad = internal_key_aad(&wrapped[..WRAP_HEADER_LEN], purpose);
    let plain = open(master.wrap_key(), WRAP_HEADER_LEN, wrapped, &aad)?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Malformed("internal key is not 32 bytes"))?;
    Ok(Zeroizing::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(n: u8) -> TenantId {
        TenantId(Uuid::from_bytes([n; 16]))
    }

    fn dk(n: u8) -> DataKey {
        DataKey::generate(DataKeyId(Uuid::from_bytes([n; 16])))
    }

    #[test]
    fn round_trip() {
        let key = dk(1);
        let name = SecretKey::parse("STRIPE_KEY").unwrap();
        let place = SecretPlace {
            tenant: tenant(1),
            key: &name,
            version: 1,
            secret_id: Uuid::from_bytes([9; 16]),
        };
        let value = SecretValue::new("sk_live_abc".into());
        let sealed = seal_secret(&key, place, &value);
        assert_eq!(sealed.len(), 1 + 16 + 12 + value.len() + 16);
        assert!(!sealed.windows(11).any(|w| w == b"sk_live_abc"));
        assert_eq!(open_secret(&key, place, &sealed).unwrap(), value);
        assert_eq!(secret_data_key_id(&sealed).unwrap(), key.id);
    }

    #[test]
    fn a_ciphertext_only_opens_in_its_own_place() {
        let key = dk(1);
        let name = SecretKey::parse("STRIPE_KEY").unwrap();
        let other_name = SecretKey::parse("SENDGRID_KEY").unwrap();
        let place = SecretPlace {
            tenant: tenant(1),
            key: &name,
            version: 2,
            secret_id: Uuid::from_bytes([9; 16]),
        };
        let sealed = seal_secret(&key, place, &SecretValue::new("v".into()));
        assert_eq!(sealed[0], FORMAT_SECRET_V2);
        let elsewhere = [
            SecretPlace {
                tenant: tenant(2),
                ..place
            },
            SecretPlace {
                key: &other_name,
                ..place
            },
            SecretPlace {
                version: 1,
                ..place
            },
            // Same tenant, name and version, another incarnation (deleted and re-created).
            SecretPlace {
                secret_id: Uuid::from_bytes([8; 16]),
                ..place
            },
        ];
        for wrong in elsewhere {
            assert_eq!(
                open_secret(&key, wrong, &sealed).unwrap_err(),
                CryptoError::Integrity
            );
        }
        // Same id, different key bytes: the tag fails.
        let impostor = DataKey::generate(key.id);
        assert_eq!(
            open_secret(&impostor, place, &sealed).unwrap_err(),
            CryptoError::Integrity
        );
        // A flipped bit anywhere fails.
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(open_secret(&key, place, &tampered).is_err(), "byte {i}");
        }
        assert!(open_secret(&key, place, &sealed[..20]).is_err());
    }

    /// A format 0x01 envelope, built as the code before row ids sealed them (label, header,
    /// tenant, key, version; no row id), still opens, whatever the row id.
    #[test]
    fn old_format_without_row_id_still_opens() {
        let key = dk(4);
        let name = SecretKey::parse("OLD_KEY").unwrap();
        let mut header = vec![0x01];
        header.extend_from_slice(key.id.0.as_bytes());
        let aad = canonical_aad(&[
            b"tenant-vault/secret/v1",
            &header,
            tenant(1).0.as_bytes(),
            b"OLD_KEY",
            &3i32.to_be_bytes(),
        ]);
        let sealed = seal(key.bytes(), header, &aad, b"legacy value");
        for row in [1u8, 2] {
            let place = SecretPlace {
                tenant: tenant(1),
                key: &name,
                version: 3,
                secret_id: Uuid::from_bytes([row; 16]),
            };
            assert_eq!(
                open_secret(&key, place, &sealed).unwrap(),
                SecretValue::new("legacy value".into())
            );
        }
        // Relabelled as format 0x02 it must fail: the format byte is authenticated.
        let mut relabelled = sealed.clone();
        relabelled[0] = FORMAT_SECRET_V2;
        let place = SecretPlace {
            tenant: tenant(1),
            key: &name,
            version: 3,
            secret_id: Uuid::from_bytes([1; 16]),
        };
        assert!(open_secret(&key, place, &relabelled).is_err());
        // An unknown format byte is refused as malformed.
        let mut unknown = sealed;
        unknown[0] = 0x03;
        assert!(matches!(
            open_secret(&key, place, &unknown),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn data_keys_wrap_and_unwrap_only_in_place() {
        let master = MasterKey::from_bytes(1, &[5u8; 32]);
        let key = dk(3);
        let wrapped = wrap_data_key(&master, tenant(1), 1, &key);
        assert_eq!(wrapped_master_version(&wrapped).unwrap(), 1);
        let back = unwrap_data_key(&master, tenant(1), key.id, 1, &wrapped).unwrap();
        assert_eq!(back.bytes(), key.bytes());
        assert!(unwrap_data_key(&master, tenant(2), key.id, 1, &wrapped).is_err());
        assert!(unwrap_data_key(&master, tenant(1), key.id, 2, &wrapped).is_err());
        let other_master = MasterKey::from_bytes(1, &[6u8; 32]);
        assert!(unwrap_data_key(&other_master, tenant(1), key.id, 1, &wrapped).is_err());
        let next_version = MasterKey::from_bytes(2, &[5u8; 32]);
        assert!(unwrap_data_key(&next_version, tenant(1), key.id, 1, &wrapped).is_err());
    }

    #[test]
    fn internal_keys_unwrap_only_for_their_purpose() {
        let master = MasterKey::from_bytes(1, &[5u8; 32]);
        let wrapped = wrap_internal_key(&master, "token", &[9u8; 32]);
        assert_eq!(
            *unwrap_internal_key(&master, "token", &wrapped).unwrap(),
            [9u8; 32]
        );
        assert!(unwrap_internal_key(&master, "audit", &wrapped).is_err());
        let other = MasterKey::from_bytes(1, &[6u8; 32]);
        assert!(unwrap_internal_key(&other, "token", &wrapped).is_err());
    }

    #[test]
    fn debug_output_is_redacted() {
        let key = dk(1);
        let value = SecretValue::new("hunter2-super-secret".into());
        assert!(!format!("{key:?}{value:?}").contains("hunter2"));
        assert!(format!("{value:?}").contains("redacted"));
    }
}
