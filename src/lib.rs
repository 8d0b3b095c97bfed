//! tenant-vault: per-tenant encrypted secrets in PostgreSQL, served over HTTP.

pub mod crypto;
pub mod domain;
pub mod infisical;
