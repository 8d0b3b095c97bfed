//! Folder paths and secret names that are safe to send to Infisical.
//!
//! Infisical addresses a secret by `secretPath` (a folder path) plus a name in the URL. A
//! tenant must only ever reach its own folder `/tenants/{slug}`, and no request may climb into
//! the master key's folder. These checks are deliberately strict allow-lists (no `.`, `..`,
//! empty segments, `%`, `/` in names) so that nothing can be smuggled past them by encoding
//! tricks: a string that passes contains only characters that have no meaning in a URL path
//! or in Infisical's folder syntax.

use super::client::InfisicalError;
use crate::domain::TenantSlug;

/// Longest secret name.
pub const MAX_SECRET_NAME_LEN: usize = 255;
/// Longest folder name accepted in a folder path.
pub const MAX_FOLDER_NAME_LEN: usize = 64;
/// Deepest folder path accepted (Infisical's own recursive-list depth limit is 20).
pub const MAX_FOLDER_DEPTH: usize = 20;

/// The Infisical folder that holds one tenant's secrets: `/tenants/{slug}`. It cannot fail:
/// a `TenantSlug` is `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`, which leaves nothing to escape.
pub fn tenant_folder(slug: &TenantSlug) -> String {
    format!("/tenants/{slug}")
}

/// Checks a secret name against `^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$`.
pub fn validate_secret_name(name: &str) -> Result<(), InfisicalError> {
    const RULE: &str = "a secret name is 1 to 255 characters of A-Z, a-z, 0-9, '_', '-' and \
                        '.', not starting with '-' or '.'";
    let b = name.as_bytes();
    let first = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let rest = |c: u8| first(c) || c == b'-' || c == b'.';
    if b.is_empty()
        || b.len() > MAX_SECRET_NAME_LEN
        || !first(b[0])
        || !b[1..].iter().all(|&c| rest(c))
    {
        return Err(InfisicalError::InvalidArgument(RULE));
    }
    Ok(())
}

/// Checks one folder name: `^[A-Za-z0-9_-]{1,64}$` (the characters Infisical's current folder
/// validation allows; no dots, so `.` and `..` can never appear).
pub fn validate_folder_name(name: &str) -> Result<(), InfisicalError> {
    const RULE: &str = "a folder name is 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'";
    let b = name.as_bytes();
    if b.is_empty()
        || b.len() > MAX_FOLDER_NAME_LEN
        || !b
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Err(InfisicalError::InvalidArgument(RULE));
    }
    Ok(())
}

/// Checks an absolute folder path: `/` or `/seg/seg...` where every segment passes
/// [`validate_folder_name`] (so no `..`, no empty segment, no trailing slash, no encoding).
pub fn validate_folder_path(path: &str) -> Result<(), InfisicalError> {
    const RULE: &str = "a folder path is '/' or '/name/name...' with folder names of \
                        A-Z, a-z, 0-9, '_' and '-'";
    if path == "/" {
        return Ok(());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(InfisicalError::InvalidArgument(RULE));
    };
    let mut depth = 0;
    for seg in rest.split('/') {
        depth += 1;
        if depth > MAX_FOLDER_DEPTH || validate_folder_name(seg).is_err() {
            return Err(InfisicalError::InvalidArgument(RULE));
        }
    }
    Ok(())
}

/// Joins a validated parent path and a validated folder name.
pub(crate) fn join_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_folder_is_under_tenants() {
        for slug in ["acme", "a", "a-1", &"a".repeat(63)] {
            let slug = TenantSlug::parse(slug).unwrap();
            assert_eq!(tenant_folder(&slug), format!("/tenants/{slug}"));
            assert!(validate_folder_path(&tenant_folder(&slug)).is_ok());
        }
    }

    #[test]
    fn secret_names() {
        for ok in ["STRIPE_KEY", "a", "_x", "a.b-c", "MASTER_ENCRYPTION_KEY_V1"] {
            assert!(validate_secret_name(ok).is_ok(), "{ok:?} refused");
        }
        for bad in [
            "",
            ".",
            "..",
            "-x",
            ".env",
            "A/B",
            "A:B",
            "a b",
            "%2e%2e",
            "..%2f",
            "é",
            &"a".repeat(256),
        ] {
            assert!(validate_secret_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn folder_paths() {
        for ok in ["/", "/tenants", "/tenants/acme", "/tenant-vault"] {
            assert!(validate_folder_path(ok).is_ok(), "{ok:?} refused");
        }
        for bad in [
            "",
            "tenants",
            "/tenants/",
            "//tenants",
            "/tenants/../x",
            "/tenants/./x",
            "/a.b",
            "/%2e%2e",
        ] {
            assert!(validate_folder_path(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(join_path("/", "a"), "/a");
        assert_eq!(join_path("/a", "b"), "/a/b");
    }
}
