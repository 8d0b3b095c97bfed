//! Reads of `company_secrets` that miss the cache, coalesced: the misses that arrive while
//! earlier ones are in the database go together in one statement, through one connection
//! kept for as long as there is work. A read alone costs what a single select costs; under
//! load PostgreSQL answers one statement and pays one round trip (and sqlx one return ping)
//! for a whole batch instead of one each (issue 15's `database` phase).
//!
//! No timer: a read never waits for company. It waits only for a statement already running,
//! which is what it would have queued behind for a connection anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::ServiceError;
use crate::domain::{SecretKey, TenantId};
use crate::store::secrets::SecretRow;
use crate::store::{self, StoreError};

/// Statements in flight at once, at most. Each holds one pooled connection while work
/// waits; the rest of the pool stays free for writes, rotation and the admin API.
const MAX_IN_FLIGHT: usize = 4;
/// Keys per statement, at most.
const MAX_BATCH: usize = 256;

/// One read's answer; errors are `ServiceError`s because one failed statement answers every
/// read coalesced into it, and those clone.
type Answer = Result<Option<SecretRow>, ServiceError>;

/// The runner a read was waiting for ended without answering (a panic, or shutdown).
#[derive(Debug, thiserror::Error)]
#[error("the secret reader stopped before answering")]
struct ReaderStopped;

struct Waiting {
    tenant: TenantId,
    key: SecretKey,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    in_flight: usize,
}

/// Cheap to clone; every clone shares one queue.
#[derive(Clone)]
pub struct SecretReads {
    pool: PgPool,
    queue: Arc<Mutex<Queue>>,
    statements: Arc<AtomicU64>,
}

impl SecretReads {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queue: Arc::default(),
            statements: Arc::default(),
        }
    }

    /// Statements run so far (reads divided by this is the average batch); also exported
    /// as `tenant_vault_secret_read_statements_total`.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// The current row of `key`, as `store::secrets::get` reads it.
    pub async fn get(&self, tenant: TenantId, key: &SecretKey) -> Answer {
        let (answer, answered) = oneshot::channel();
        let batch = {
            let mut queue = self.queue.lock().unwrap();
            queue.waiting.push(Waiting {
                tenant,
                key: key.clone(),
                answer,
            });
            if queue.in_flight < MAX_IN_FLIGHT {
                queue.in_flight += 1;
                Some(take_batch(&mut queue))
            } else {
                None
            }
        };
        // The statement runs in a task of its own, so a request dropped mid-read (its client
        // went away) never takes the other waiters' answers with it.
        if let Some(batch) = batch {
            tokio::spawn(self.clone().run(batch));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(ServiceError::internal(ReaderStopped)))
    }

    /// Runs `batch`, then whatever queued meanwhile, on one connection, until the queue is
    /// empty; the connection goes back to the pool (and is pinged once) only then.
    async fn run(self, mut batch: Vec<Waiting>) {
        let mut slot = InFlightSlot {
            queue: self.queue.clone(),
            released: false,
        };
        let mut conn = None;
        loop {
            let answers = self.select(&mut conn, &batch).await;
            answer_all(batch, answers);
            let mut queue = self.queue.lock().unwrap();
            if queue.waiting.is_empty() {
                // Under the same lock that saw the queue empty: a read queued after this
                // sees the free slot and starts a runner of its own.
                queue.in_flight -= 1;
                slot.released = true;
                return;
            }
            batch = take_batch(&mut queue);
        }
    }

    async fn select(
        &self,
        conn: &mut Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
        batch: &[Waiting],
    ) -> Result<Vec<(Uuid, String, SecretRow)>, StoreError> {
        if conn.is_none() {
            *conn = Some(self.pool.acquire().await?);
        }
        let live = conn.as_mut().expect("acquired above");
        let (tenants, keys): (Vec<Uuid>, Vec<&str>) =
            batch.iter().map(|w| (w.tenant.0, w.key.as_str())).unzip();
        self.statements.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tenant_vault_secret_read_statements_total").increment(1);
        let rows = store::secrets::get_many(&mut **live, &tenants, &keys).await;
        if rows.is_err() {
            // Whatever went wrong, the next statement gets a connection the pool vouches for.
            *conn = None;
        }
        rows
    }
}

fn take_batch(queue: &mut Queue) -> Vec<Waiting> {
    if queue.waiting.len() <= MAX_BATCH {
        std::mem::take(&mut queue.waiting)
    } else {
        queue.waiting.drain(..MAX_BATCH).collect()
    }
}

fn answer_all(batch: Vec<Waiting>, rows: Result<Vec<(Uuid, String, SecretRow)>, StoreError>) {
    // Indexed by borrowed keys: no allocation per read to look its row up.
    let rows = rows.map_err(ServiceError::from);
    let index: Result<HashMap<(Uuid, &str), &SecretRow>, &ServiceError> = match &rows {
        Ok(rows) => Ok(rows.iter().map(|(t, k, r)| ((*t, k.as_str()), r)).collect()),
        Err(e) => Err(e),
    };
    for w in batch {
        let answer = match &index {
            Ok(index) => Ok(index
                .get(&(w.tenant.0, w.key.as_str()))
                .map(|r| (*r).clone())),
            Err(e) => Err((*e).clone()),
        };
        // The requester may have gone away; nothing to tell it then.
        let _ = w.answer.send(answer);
    }
}

/// Frees a runner's slot if it ends without doing so itself (a panic, or its task cancelled
/// at shutdown). If no runner is left, the reads still queued are answered with an error
/// rather than left waiting for one.
struct InFlightSlot {
    queue: Arc<Mutex<Queue>>,
    released: bool,
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(mut queue) = self.queue.lock() {
            queue.in_flight -= 1;
            if queue.in_flight == 0 {
                queue.waiting.clear();
            }
        }
    }
}
