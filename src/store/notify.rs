//! `pg_notify` on the `tenant_vault` channel. Sent inside the transaction that makes the
//! change, so PostgreSQL delivers it to every listening replica exactly when (and only if)
//! the change commits.

use sqlx::PgExecutor;

use super::StoreResult;

pub const CHANNEL: &str = "tenant_vault";

/// Queues a notification; payloads are small JSON documents (PostgreSQL allows < 8000 bytes).
pub async fn send(db: impl PgExecutor<'_>, payload: &str) -> StoreResult<()> {
    sqlx::query!("select pg_notify('tenant_vault', $1)", payload)
        .execute(db)
        .await?;
    Ok(())
}

/// What changed. Receivers drop exactly what the change makes stale, and tell their event
/// streams (`GET /v1/events`). Fields marked "optional" were added later: a payload from an
/// older replica lacks them and still parses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A secret's current value changed (write, rollback, import, delete).
    Secret {
        tenant: uuid::Uuid,
        key: String,
        /// Optional: the tenant's slug, for event streams.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slug: Option<String>,
        /// Optional: what happened to it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change: Option<SecretChange>,
        /// Optional: the new current version (none after a delete).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<i32>,
    },
    /// A tenant was created or deleted (its tokens and keys go with it).
    Tenant {
        tenant: uuid::Uuid,
        destroyed_keys: Vec<uuid::Uuid>,
        /// Optional: the tenant's slug, for event streams.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slug: Option<String>,
        /// Optional: true for a deletion, false for a creation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deleted: Option<bool>,
    },
    /// An access token was revoked (caches and event streams of that token end).
    TokenRevoked {
        token_id: uuid::Uuid,
        /// The token's tenant, for tenant tokens.
        tenant: Option<uuid::Uuid>,
        slug: Option<String>,
    },
    /// A token changed without being revoked (a rotation shortened its life): replicas
    /// drop cached checks; streams hear nothing.
    TokenUpdated { token_id: uuid::Uuid },
    /// A tenant's data keys changed: a new active key, or old keys destroyed.
    DataKey {
        tenant: uuid::Uuid,
        destroyed_keys: Vec<uuid::Uuid>,
    },
    /// A new master key version is active.
    MasterKey { version: i32 },
}

/// How a secret changed, as event streams name it (`secret.written`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretChange {
    /// Written through the API (a PUT or a rollback).
    Written,
    /// Deleted through the API.
    Deleted,
    /// Imported from Infisical by the lookup.
    Synced,
}

/// An event and the replica that sent it (which has applied it already and skips it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    pub origin: uuid::Uuid,
    #[serde(flatten)]
    pub event: Event,
}

impl Notification {
    pub fn payload(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }

    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }
}

/// Sends an event in the caller's transaction.
pub async fn event(db: impl PgExecutor<'_>, origin: uuid::Uuid, event: &Event) -> StoreResult<()> {
    let n = Notification {
        origin,
        event: event.clone(),
    };
    send(db, &n.payload()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_stay_small() {
        let n = Notification {
            origin: uuid::Uuid::new_v4(),
            event: Event::Tenant {
                tenant: uuid::Uuid::new_v4(),
                destroyed_keys: vec![uuid::Uuid::new_v4(); 100],
                slug: Some("a".repeat(63)),
                deleted: Some(true),
            },
        };
        let text = n.payload();
        assert!(text.len() < 8000);
        assert_eq!(Notification::parse(&text), Some(n));
        assert_eq!(Notification::parse("{\"kind\":\"nope\"}"), None);
    }

    #[test]
    fn payloads_of_older_replicas_still_parse() {
        let tenant = uuid::Uuid::new_v4();
        let origin = uuid::Uuid::new_v4();
        let old =
            format!(r#"{{"origin":"{origin}","kind":"secret","tenant":"{tenant}","key":"K"}}"#);
        assert_eq!(
            Notification::parse(&old).map(|n| n.event),
            Some(Event::Secret {
                tenant,
                key: "K".into(),
                slug: None,
                change: None,
                version: None,
            })
        );
        let old = format!(
            r#"{{"origin":"{origin}","kind":"tenant","tenant":"{tenant}","destroyed_keys":[]}}"#
        );
        assert!(matches!(
            Notification::parse(&old).map(|n| n.event),
            Some(Event::Tenant {
                deleted: None,
                slug: None,
                ..
            })
        ));
        // The longest secret event stays far below PostgreSQL's limit.
        let n = Notification {
            origin,
            event: Event::Secret {
                tenant,
                key: "K".repeat(255),
                slug: Some("a".repeat(63)),
                change: Some(SecretChange::Synced),
                version: Some(i32::MAX),
            },
        };
        assert!(n.payload().len() < 1000);
        assert_eq!(Notification::parse(&n.payload()), Some(n));
    }
}
