//! Validated names and ids. A value of these types has already passed its checks, so code
//! below the API never builds a query, a path or an Infisical folder from unchecked input.//!
//! This file holds the names and ids; `states` holds the enums stored as text (token kinds,
//! key states, audit actions and outcomes, origins), re-exported here.

use std::fmt;

use uuid::Uuid;
mod states;

pub use states::{
    ArchiveReason, AuditAction, AuditOutcome, DataKeyState, InfisicalMode, MasterKeyState,
    SecretOrigin, SecretSource, TokenKind,
};

/// Why a name was refused. The text names the rule, never echoes a value that could be secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub &'static str);

/// A tenant's slug: its company subdomain, `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub const MAX_LEN: usize = 63;

    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        const RULE: &str = "a tenant slug is 1 to 63 characters of a-z, 0-9 and '-', \
                            starting and ending with a letter or digit";
        let bytes = raw.as_bytes();
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return Err(InvalidName(RULE));
        }
        let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let inner_ok = |b: u8| edge_ok(b) || b == b'-';
        if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
            return Err(InvalidName(RULE));
        }
        if !bytes.iter().all(|&b| inner_ok(b)) {
            return Err(InvalidName(RULE));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A secret's name within a tenant: `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$`, the characters
/// Infisical allows in a secret key, so one name works in both places.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKey(String);

impl SecretKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        const RULE: &str =
            "a secret key is 1 to 255 characters of A-Z, a-z, 0-9, '_', '-' and '.', \
                            not starting with '-' or '.'";
        let bytes = raw.as_bytes();
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return Err(InvalidName(RULE));
        }
        let first_ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let rest_ok = |b: u8| first_ok(b) || b == b'-' || b == b'.';
        if !first_ok(bytes[0]) || !bytes.iter().all(|&b| rest_ok(b)) {
            return Err(InvalidName(RULE));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    )*};
}
display_as_str!(TenantSlug, SecretKey, KeyPattern);

macro_rules! uuid_newtype {
    ($($(#[$doc:meta])* $t:ident),*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $t(pub Uuid);
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self.0)
            }
        }
    )*};
}
uuid_newtype!(
    /// `tenants.id`
    TenantId,
    /// `data_keys.id`
    DataKeyId,
    /// `access_tokens.id`
    TokenId
);

/// A glob over secret keys that a token's scope is limited to: a literal key with an
/// optional `*` at its start, its end or both (`STRIPE_*`, `*_KEY`, `*STRIPE*`, `*`).
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct KeyPattern(String);

impl KeyPattern {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        const RULE: &str = "a key pattern is a secret key's characters (A-Z, a-z, 0-9, '_', \
                            '-', '.') with an optional '*' at its start, its end or both";
        let core = raw.strip_prefix('*').unwrap_or(raw);
        let core = core.strip_suffix('*').unwrap_or(core);
        if raw.is_empty()
            || raw.len() > SecretKey::MAX_LEN + 2
            || !core
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(InvalidName(RULE));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn matches(&self, key: &SecretKey) -> bool {
        let key = key.as_str();
        let p = self.0.as_str();
        match (p.strip_prefix('*'), p.strip_suffix('*')) {
            _ if p == "*" || p == "**" => true,
            (Some(rest), _) if rest.ends_with('*') => key.contains(&rest[..rest.len() - 1]),
            (Some(suffix), None) => key.ends_with(suffix),
            (None, Some(prefix)) => key.starts_with(prefix),
            (None, None) => key == p,
            (Some(_), Some(_)) => unreachable!("handled by the first arm with a rest"),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
/// A tenant's overrides as stored: `None` keeps the setting; a rate or quota of 0 is "no
/// limit" for this tenant.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    pub tenant_rps: Option<u32>,
    pub tenant_burst: Option<u32>,
    pub token_rps: Option<u32>,
    pub token_burst: Option<u32>,
    pub max_secrets: Option<u64>,
    pub max_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_patterns() {
        let key = |k: &str| SecretKey::parse(k).unwrap();
        let p = |p: &str| KeyPattern::parse(p).unwrap();
        assert!(p("STRIPE_*").matches(&key("STRIPE_KEY")));
        assert!(!p("STRIPE_*").matches(&key("SENDGRID_KEY")));
        assert!(!p("STRIPE_*").matches(&key("XSTRIPE_KEY")));
        assert!(p("*_KEY").matches(&key("SENDGRID_KEY")));
        assert!(!p("*_KEY").matches(&key("SENDGRID_KEYS")));
        assert!(p("*STRIPE*").matches(&key("OLD_STRIPE_KEY")));
        assert!(p("*").matches(&key("ANY")));
        assert!(p("EXACT").matches(&key("EXACT")));
        assert!(!p("EXACT").matches(&key("EXACTLY")));
        for bad in ["", "A*B", "**A*", "a b", "a/b", "*a%", &"K".repeat(258)] {
            assert!(KeyPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs() {
        for ok in ["acme", "a", "globex-2", "0", &"a".repeat(63)] {
            assert!(TenantSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "%2e%2e",
            "a/b",
            "ACME",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "é",
            &"a".repeat(64),
            // Whatever could climb out of `/tenants/{slug}` in Infisical.
            ".",
            "acme/../globex",
            "acme%2f..",
            "ac me",
            "acme/",
            "acme\0",
            "tenant-vault/../..",
        ] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_keys() {
        for ok in [
            "STRIPE_KEY",
            "sendgrid.api-key",
            "_x",
            "9",
            &"K".repeat(255),
        ] {
            assert!(SecretKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".env",
            "-x",
            "a/b",
            "a b",
            "a%2f",
            "ключ",
            &"K".repeat(256),
        ] {
            assert!(SecretKey::parse(bad).is_err(), "{bad}");
        }
    }
}
