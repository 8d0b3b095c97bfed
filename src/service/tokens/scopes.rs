//! Who a token speaks for and what it may do: principals, scopes, and `permits`, the one
//! authorization decision for secrets.

use chrono::{DateTime, Utc};

use super::super::{InputError, RequestContext, ServiceError, TenantRef};
use crate::domain::{KeyPattern, SecretKey, TenantSlug, TokenId};

pub const SCOPE_READ: &str = "secrets:read";
pub const SCOPE_WRITE: &str = "secrets:write";
pub(super) const SCOPE_ADMIN: &str = "admin";

/// The tenants a service token reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSet {
    All,
    Only(Vec<TenantSlug>),
}

impl TenantSet {
    pub(crate) fn contains(&self, slug: &TenantSlug) -> bool {
        match self {
            TenantSet::All => true,
            TenantSet::Only(slugs) => slugs.contains(slug),
        }
    }
}

/// What a tenant or service token may do with secrets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes {
    pub read: bool,
    pub write: bool,
    /// Only keys matching this pattern.
    pub key_pattern: Option<KeyPattern>,
}

impl Scopes {
    pub fn read_write() -> Self {
        Self {
            read: true,
            write: true,
            key_pattern: None,
        }
    }

    /// Parses `secrets:read` / `secrets:write` names (at least one).
    pub fn parse(names: &[String], key_pattern: Option<&str>) -> Result<Self, InputError> {
        let mut scopes = Scopes::default();
        for name in names {
            match name.as_str() {
                SCOPE_READ => scopes.read = true,
                SCOPE_WRITE => scopes.write = true,
                _ => return Err(InputError::UnknownScope),
            }
        }
        if !scopes.read && !scopes.write {
            return Err(InputError::UnknownScope);
        }
        scopes.key_pattern = key_pattern
            .map(KeyPattern::parse)
            .transpose()
            .map_err(|_| InputError::KeyPattern)?;
        Ok(scopes)
    }

    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.read {
            names.push(SCOPE_READ.to_owned());
        }
        if self.write {
            names.push(SCOPE_WRITE.to_owned());
        }
        names
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    Admin,
    Tenant(TenantRef),
    /// A service token: `Principal::scopes` say what it may do, `tenants` where.
    Service {
        tenants: TenantSet,
    },
}

impl PartialEq for TenantRef {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for TenantRef {}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: TokenId,
    pub kind: PrincipalKind,
    pub expires_at: Option<DateTime<Utc>>,
    /// Empty (nothing) for admin tokens.
    pub scopes: Scopes,
}

impl Principal {
    pub fn context(&self, request_id: Option<String>) -> RequestContext {
        RequestContext {
            token_id: Some(self.token_id),
            request_id,
            actor: None,
        }
    }
}

/// What a request wants to do with a tenant's secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why `permits` said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Admin tokens never read or write secrets.
    Admin,
    /// A tenant token on another tenant.
    OtherTenant,
    /// The token's scopes do not cover it (403 `insufficient_scope`).
    Scope(&'static str),
}

impl From<Denial> for ServiceError {
    fn from(d: Denial) -> Self {
        match d {
            Denial::Admin => ServiceError::Forbidden(
                "admin tokens cannot read or write tenant secrets; issue a tenant or service token",
            ),
            Denial::OtherTenant => ServiceError::Forbidden("this token belongs to another tenant"),
            Denial::Scope(why) => ServiceError::InsufficientScope(why),
        }
    }
}

/// THE authorization decision for secrets: may `who` do `access` on `tenant` (and `key`,
/// when the request names one)? Secrets, versions, batch-get and event streams all ask here.
pub fn permits(
    who: &Principal,
    tenant: &TenantSlug,
    key: Option<&SecretKey>,
    access: Access,
) -> Result<(), Denial> {
    match &who.kind {
        PrincipalKind::Admin => return Err(Denial::Admin),
        PrincipalKind::Tenant(own) if &own.slug != tenant => return Err(Denial::OtherTenant),
        PrincipalKind::Tenant(_) => {}
        PrincipalKind::Service { tenants } if !tenants.contains(tenant) => {
            return Err(Denial::Scope(
                "this service token does not reach this tenant",
            ))
        }
        PrincipalKind::Service { .. } => {}
    }
    match access {
        Access::Read if !who.scopes.read => {
            return Err(Denial::Scope("this token lacks the secrets:read scope"))
        }
        Access::Write if !who.scopes.write => {
            return Err(Denial::Scope("this token lacks the secrets:write scope"))
        }
        _ => {}
    }
    if let (Some(pattern), Some(key)) = (&who.scopes.key_pattern, key) {
        if !pattern.matches(key) {
            return Err(Denial::Scope(
                "this token's key pattern does not cover this key",
            ));
        }
    }
    Ok(())
}

/// May `who` see what happens to every tenant (events tied to no tenant)?
pub fn reaches_all_tenants(who: &Principal) -> bool {
    match &who.kind {
        PrincipalKind::Admin => true,
        PrincipalKind::Service { tenants } => *tenants == TenantSet::All && who.scopes.read,
        PrincipalKind::Tenant(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::TenantId;

    fn who(kind: PrincipalKind, scopes: Scopes) -> Principal {
        Principal {
            token_id: TokenId(Uuid::new_v4()),
            kind,
            expires_at: None,
            scopes,
        }
    }

    #[test]
    fn one_decision_for_every_kind() {
        let slug = |s: &str| TenantSlug::parse(s).unwrap();
        let key = |k: &str| SecretKey::parse(k).unwrap();
        let acme = TenantRef {
            id: TenantId(Uuid::new_v4()),
            slug: slug("acme"),
        };
        let admin = who(PrincipalKind::Admin, Scopes::default());
        assert_eq!(
            permits(&admin, &slug("acme"), None, Access::Read),
            Err(Denial::Admin)
        );
        let reader = who(
            PrincipalKind::Tenant(acme.clone()),
            Scopes {
                read: true,
                write: false,
                key_pattern: None,
            },
        );
        assert!(permits(&reader, &slug("acme"), Some(&key("K")), Access::Read).is_ok());
        assert!(matches!(
            permits(&reader, &slug("acme"), Some(&key("K")), Access::Write),
            Err(Denial::Scope(_))
        ));
        assert_eq!(
            permits(&reader, &slug("globex"), None, Access::Read),
            Err(Denial::OtherTenant)
        );
        let service = who(
            PrincipalKind::Service {
                tenants: TenantSet::Only(vec![slug("acme"), slug("globex")]),
            },
            Scopes {
                read: true,
                write: false,
                key_pattern: Some(KeyPattern::parse("STRIPE_*").unwrap()),
            },
        );
        assert!(permits(
            &service,
            &slug("globex"),
            Some(&key("STRIPE_KEY")),
            Access::Read
        )
        .is_ok());
        assert!(matches!(
            permits(
                &service,
                &slug("initech"),
                Some(&key("STRIPE_KEY")),
                Access::Read
            ),
            Err(Denial::Scope(_))
        ));
        assert!(matches!(
            permits(
                &service,
                &slug("acme"),
                Some(&key("SENDGRID_KEY")),
                Access::Read
            ),
            Err(Denial::Scope(_))
        ));
        assert!(!reaches_all_tenants(&service));
        assert!(reaches_all_tenants(&admin));
    }
}
