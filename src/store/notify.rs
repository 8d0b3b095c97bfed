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

/// What changed. Receivers drop exactly what the change makes stale.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A secret's current value changed (write, rollback, delete).
    Secret { tenant: uuid::Uuid, key: String },
    /// A tenant was created or deleted (its tokens and keys go with it).
    Tenant {
        tenant: uuid::Uuid,
        destroyed_keys: Vec<uuid::Uuid>,
    },
    /// A tenant's data keys changed: a new active key, or old keys destroyed.
    DataKey {
        tenant: uuid::Uuid,
        destroyed_keys: Vec<uuid::Uuid>,
    },
    /// A new master key version is active.
    MasterKey { version: i32 },
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
            },
        };
        let text = n.payload();
        assert!(text.len() < 8000);
        assert_eq!(Notification::parse(&text), Some(n));
        assert_eq!(Notification::parse("{\"kind\":\"nope\"}"), None);
    }
}
