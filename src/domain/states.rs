//! The states and kinds stored as text: each enum's strings are its database, wire and
//! audit-chain names, so they never change.

/// `access_tokens.kind`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Manages tenants, tokens and keys; never reads a secret.
    Admin,
    /// Reads (and, if scoped so, writes) one tenant's secrets.
    Tenant,
    /// Reads (and, if scoped so, writes) secrets of a set of tenants, or of all.
    Service,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Admin => "admin",
            TokenKind::Tenant => "tenant",
            TokenKind::Service => "service",
        }
    }
}

/// Where a read was answered from (the `x-secret-source` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    Cache,
    Database,
    Infisical,
    /// A cached value past its TTL, served because PostgreSQL (and Infisical) could not
    /// be reached (bounded by `TENANT_VAULT_MAX_STALE_SECS`).
    Stale,
    /// The cold vault (OpenBao), for a version no longer kept in PostgreSQL.
    Archive,
}

impl SecretSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretSource::Cache => "cache",
            SecretSource::Database => "database",
            SecretSource::Infisical => "infisical",
            SecretSource::Stale => "stale",
            SecretSource::Archive => "archive",
        }
    }
}

/// Why a version went to the archive (`archive_outbox.reason`, `archived_versions.reason`,
/// and the archive entry's metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ArchiveReason {
    /// It fell out of the versions kept in PostgreSQL.
    Retention,
    /// Its secret was deleted.
    Deleted,
}

impl ArchiveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveReason::Retention => "retention",
            ArchiveReason::Deleted => "deleted",
        }
    }
}

/// How secrets imported from Infisical behave (`TENANT_VAULT_INFISICAL_MODE`, or per tenant
/// in `tenants.infisical_mode`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, sqlx::Type,
)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "kebab-case")]
pub enum InfisicalMode {
    /// Infisical stays their source of truth: edits and deletes there reach tenant-vault.
    Follow,
    /// Imported once on first read; later changes in Infisical are ignored.
    ImportOnce,
}

impl InfisicalMode {
    /// The setting's spelling (`follow`, `import-once`).
    pub fn as_str(self) -> &'static str {
        match self {
            InfisicalMode::Follow => "follow",
            InfisicalMode::ImportOnce => "import-once",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "follow" => Some(InfisicalMode::Follow),
            "import-once" | "import_once" => Some(InfisicalMode::ImportOnce),
            _ => None,
        }
    }
}

/// Where a secret's current value came from (`company_secrets.origin`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SecretOrigin {
    /// Written through tenant-vault (PUT, rollback): tenant-vault owns it.
    Api,
    /// Imported from the tenant's Infisical folder.
    Infisical,
}

/// `data_keys.state`. Stored as text; the strings are the wire and database names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DataKeyState {
    /// Encrypts new values (one per tenant).
    Active,
    /// Replaced; decrypts until re-encryption has moved every ciphertext off it.
    DecryptOnly,
    /// Wrapped key erased; nothing under it can be read.
    Destroyed,
}

impl DataKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKeyState::Active => "active",
            DataKeyState::DecryptOnly => "decrypt_only",
            DataKeyState::Destroyed => "destroyed",
        }
    }
}

/// `master_keys.state`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MasterKeyState {
    Active,
    Retired,
}

impl MasterKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            MasterKeyState::Active => "active",
            MasterKeyState::Retired => "retired",
        }
    }
}

/// What an audit event records (`audit_events.action`). The dotted strings are stored and
/// hashed into the chain, so they never change.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[sqlx(type_name = "text")]
pub enum AuditAction {
    #[serde(rename = "secret.read")]
    #[sqlx(rename = "secret.read")]
    SecretRead,
    #[serde(rename = "secret.write")]
    #[sqlx(rename = "secret.write")]
    SecretWrite,
    #[serde(rename = "secret.delete")]
    #[sqlx(rename = "secret.delete")]
    SecretDelete,
    #[serde(rename = "secret.list")]
    #[sqlx(rename = "secret.list")]
    SecretList,
    #[serde(rename = "secret.import")]
    #[sqlx(rename = "secret.import")]
    SecretImport,
    #[serde(rename = "secret.versions")]
    #[sqlx(rename = "secret.versions")]
    SecretVersions,
    #[serde(rename = "secret.read_version")]
    #[sqlx(rename = "secret.read_version")]
    SecretReadVersion,
    #[serde(rename = "secret.rollback")]
    #[sqlx(rename = "secret.rollback")]
    SecretRollback,
    #[serde(rename = "access.tenant")]
    #[sqlx(rename = "access.tenant")]
    AccessTenant,
    #[serde(rename = "access.admin")]
    #[sqlx(rename = "access.admin")]
    AccessAdmin,
    #[serde(rename = "token.create")]
    #[sqlx(rename = "token.create")]
    TokenCreate,
    #[serde(rename = "tenant.create")]
    #[sqlx(rename = "tenant.create")]
    TenantCreate,
    #[serde(rename = "tenant.delete")]
    #[sqlx(rename = "tenant.delete")]
    TenantDelete,
    #[serde(rename = "master_key.rotate")]
    #[sqlx(rename = "master_key.rotate")]
    MasterKeyRotate,
    #[serde(rename = "data_key.rotate")]
    #[sqlx(rename = "data_key.rotate")]
    DataKeyRotate,
    #[serde(rename = "events.subscribe")]
    #[sqlx(rename = "events.subscribe")]
    EventsSubscribe,
    #[serde(rename = "secret.sync")]
    #[sqlx(rename = "secret.sync")]
    SecretSync,
    #[serde(rename = "secret.archive_read")]
    #[sqlx(rename = "secret.archive_read")]
    SecretArchiveRead,
    #[serde(rename = "infisical.webhook")]
    #[sqlx(rename = "infisical.webhook")]
    InfisicalWebhook,
    #[serde(rename = "tenant.infisical_mode")]
    #[sqlx(rename = "tenant.infisical_mode")]
    TenantInfisicalMode,
    #[serde(rename = "tenant.limits")]
    #[sqlx(rename = "tenant.limits")]
    TenantLimits,
    #[serde(rename = "token.revoke")]
    #[sqlx(rename = "token.revoke")]
    TokenRevoke,
    #[serde(rename = "token.rotate")]
    #[sqlx(rename = "token.rotate")]
    TokenRotate,
    #[serde(rename = "token.list")]
    #[sqlx(rename = "token.list")]
    TokenList,
    #[serde(rename = "keys.read")]
    #[sqlx(rename = "keys.read")]
    KeysRead,
    #[serde(rename = "access.scope")]
    #[sqlx(rename = "access.scope")]
    AccessScope,
    #[serde(rename = "access.rate_limit")]
    #[sqlx(rename = "access.rate_limit")]
    AccessRateLimit,
    #[serde(rename = "access.unauthenticated")]
    #[sqlx(rename = "access.unauthenticated")]
    AccessUnauthenticated,
    #[serde(rename = "audit.read")]
    #[sqlx(rename = "audit.read")]
    AuditRead,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::SecretRead => "secret.read",
            AuditAction::SecretWrite => "secret.write",
            AuditAction::SecretDelete => "secret.delete",
            AuditAction::SecretList => "secret.list",
            AuditAction::SecretImport => "secret.import",
            AuditAction::SecretVersions => "secret.versions",
            AuditAction::SecretReadVersion => "secret.read_version",
            AuditAction::SecretRollback => "secret.rollback",
            AuditAction::AccessTenant => "access.tenant",
            AuditAction::AccessAdmin => "access.admin",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TenantCreate => "tenant.create",
            AuditAction::TenantDelete => "tenant.delete",
            AuditAction::MasterKeyRotate => "master_key.rotate",
            AuditAction::DataKeyRotate => "data_key.rotate",
            AuditAction::EventsSubscribe => "events.subscribe",
            AuditAction::SecretSync => "secret.sync",
            AuditAction::SecretArchiveRead => "secret.archive_read",
            AuditAction::InfisicalWebhook => "infisical.webhook",
            AuditAction::TenantInfisicalMode => "tenant.infisical_mode",
            AuditAction::TenantLimits => "tenant.limits",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::TokenRotate => "token.rotate",
            AuditAction::TokenList => "token.list",
            AuditAction::KeysRead => "keys.read",
            AuditAction::AccessScope => "access.scope",
            AuditAction::AccessRateLimit => "access.rate_limit",
            AuditAction::AccessUnauthenticated => "access.unauthenticated",
            AuditAction::AuditRead => "audit.read",
        }
    }
}

/// How an audited action ended (`audit_events.outcome`); stored and hashed like the action.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    NotFound,
    Denied,
    Rejected,
    Conflict,
    Unavailable,
    IntegrityError,
    DependencyError,
    Error,
    Queued,
    Updated,
    Deleted,
    Restored,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::NotFound => "not_found",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Rejected => "rejected",
            AuditOutcome::Conflict => "conflict",
            AuditOutcome::Unavailable => "unavailable",
            AuditOutcome::IntegrityError => "integrity_error",
            AuditOutcome::DependencyError => "dependency_error",
            AuditOutcome::Error => "error",
            AuditOutcome::Queued => "queued",
            AuditOutcome::Updated => "updated",
            AuditOutcome::Deleted => "deleted",
            AuditOutcome::Restored => "restored",
            AuditOutcome::Failed => "failed",
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn stored_names_match_serde_names() {
        use AuditAction as A;
        for a in [
            A::SecretRead,
            A::SecretWrite,
            A::SecretDelete,
            A::SecretList,
            A::SecretImport,
            A::SecretVersions,
            A::SecretReadVersion,
            A::SecretRollback,
            A::AccessTenant,
            A::AccessAdmin,
            A::TokenCreate,
            A::TenantCreate,
            A::TenantDelete,
            A::MasterKeyRotate,
            A::DataKeyRotate,
            A::TokenRevoke,
            A::TokenRotate,
            A::TokenList,
            A::KeysRead,
            A::AccessScope,
            A::AccessRateLimit,
            A::AccessUnauthenticated,
        ] {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        use AuditOutcome as O;
        for o in [
            O::Success,
            O::NotFound,
            O::Denied,
            O::Rejected,
            O::Conflict,
            O::Unavailable,
            O::IntegrityError,
            O::DependencyError,
            O::Error,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
        for s in [
            DataKeyState::Active,
            DataKeyState::DecryptOnly,
            DataKeyState::Destroyed,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in [MasterKeyState::Active, MasterKeyState::Retired] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
