//! Access tokens: `tvt_<id>_<secret>`, 256 random bits. Stored as SHA-256 plus a verifier,
//! HMAC-SHA256 of that hash under the `token` internal key (wrapped by the master key): a
//! row a database writer inserts with the hash of a token of their choosing has no valid
//! verifier and never authenticates. Checks are cached, so a hot read touches no database;
//! revocation, rotation and tenant deletion drop cached checks on every replica (NOTIFY).
//!
//! Kinds: admin (manages, never reads secrets), tenant (one tenant), service (a set of
//! tenants, or all). Tenant and service tokens carry scopes: `secrets:read`,
//! `secrets:write`, and an optional key pattern. `permits` is the one authorization
//! decision; every route that touches secrets or their events goes through it.
//!
//! One file per concern: `scopes` (principals, scopes and `permits`), `verify` (checking a
//! bearer token, the check cache), `issue` (new tokens and their TTLs), `lifecycle` (listing,
//! revoking, rotating). The public names are re-exported here.

mod issue;
mod lifecycle;
mod scopes;
mod verify;

pub use issue::{IssuedToken, NewTokenKind, TokenSpec};
pub use lifecycle::{TokenInfo, TokenOwner, DEFAULT_ROTATION_GRACE_SECS};
pub use scopes::{
    permits, reaches_all_tenants, Access, Denial, Principal, PrincipalKind, Scopes, TenantSet,
    SCOPE_READ, SCOPE_WRITE,
};
pub(crate) use verify::TokenCache;

const TOKEN_PREFIX: &str = "tvt_";
