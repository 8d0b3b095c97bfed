//! The audit trail. Requests hand events to a channel and move on; one background writer per
//! process batches them into `audit_events` (one multi-row insert at least every 100 ms),
//! chaining each row to the previous one by hash. While the database is unreachable, batches
//! go to an append-only journal file and are replayed, in order, when it returns. Only if the
//! journal cannot be written either does `is_failing` turn true, and requests answer 503.
//!
//! An event has no field that could hold a secret value: that is the whole redaction policy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use crate::domain::{AuditAction, AuditOutcome};
use crate::store::{self, audit::AuditRow, StoreError};

const FLUSH_EVERY: Duration = Duration::from_millis(100);
const MAX_BATCH: usize = 1000;
const CHANNEL_CAPACITY: usize = 65_536;
/// Refused and throttled requests are counted in memory and written this often, one row per
/// (minute, source, route, outcome, token): a flood adds a few rows, not one per request.
const ACCESS_FLUSH_EVERY: Duration = Duration::from_secs(60);
/// Distinct keys counted per flush; beyond this, requests count under one overflow key.
const ACCESS_MAX_KEYS: usize = 10_000;

/// What an aggregated access row is counted by (besides its minute).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessKey {
    /// The client address, or `-` when unknown.
    pub source: String,
    /// The route template (`/v1/tenants/{tenant}/secrets/{key}`), never the raw path.
    pub route: String,
    pub action: AuditAction,
    pub outcome: AuditOutcome,
    pub token_id: Option<Uuid>,
    /// The tenant the request named, when it named a valid one.
    pub tenant_slug: Option<String>,
}

type AccessCounts = Arc<std::sync::Mutex<HashMap<(i64, AccessKey), i32>>>;

fn drain_access(counts: &AccessCounts) -> Vec<AuditEvent> {
    let taken = std::mem::take(&mut *counts.lock().unwrap());
    let mut rows: Vec<_> = taken.into_iter().collect();
    rows.sort_by_key(|((minute, _), _)| *minute);
    rows.into_iter()
        .map(|((minute, key), n)| {
            let mut e = AuditEvent::new(key.action, key.outcome);
            e.occurred_at = DateTime::from_timestamp(minute * 60, 0).unwrap_or(e.occurred_at);
            e.token_id = key.token_id;
            e.tenant_slug = key.tenant_slug;
            e.source = Some(key.source);
            e.route = Some(key.route);
            e.count = Some(n);
            e
        })
        .collect()
}

/// One audited action. Built by the service; carries names and outcomes, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub occurred_at: DateTime<Utc>,
    pub token_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub tenant_slug: Option<String>,
    pub action: AuditAction,
    pub secret_key: Option<String>,
    pub outcome: AuditOutcome,
    pub request_id: Option<String>,
    /// Aggregated access rows: the client address (or `-`), the route template, how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// Who ran a command when no token did (`cli:<os user>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What the action was done to, when it is not a tenant or a secret (a token id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl AuditEvent {
    pub fn new(action: AuditAction, outcome: AuditOutcome) -> Self {
        Self {
            // Microseconds: what PostgreSQL keeps, so the hash recomputes from the row.
            occurred_at: Utc::now().trunc_subsecs(6),
            token_id: None,
            tenant_id: None,
            tenant_slug: None,
            action,
            secret_key: None,
            outcome,
            request_id: None,
            source: None,
            route: None,
            count: None,
            actor: None,
            subject: None,
        }
    }
}

/// SHA-256 over the previous hash and a length-prefixed encoding of the row's fields.
pub fn chain_hash(prev: &[u8], e: &AuditEvent) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    let opt = |o: &Option<Uuid>| o.map(|u| u.to_string()).unwrap_or_default();
    let fields = [
        e.occurred_at.timestamp_micros().to_string(),
        opt(&e.token_id),
        opt(&e.tenant_id),
        e.tenant_slug.clone().unwrap_or_default(),
        e.action.as_str().to_owned(),
        e.secret_key.clone().unwrap_or_default(),
        e.outcome.as_str().to_owned(),
        e.request_id.clone().unwrap_or_default(),
    ];
    // Fields added later (migration 0003) join the hash only when set, so rows written
    // before them still verify.
    let later = [
        e.source.clone(),
        e.route.clone(),
        e.count.map(|c| c.to_string()),
        e.actor.clone(),
        e.subject.clone(),
    ];
    let later: &[String] = if later.iter().any(Option::is_some) {
        &later.map(Option::unwrap_or_default)
    } else {
        &[]
    };
    for f in fields.iter().chain(later) {
        h.update((f.len() as u32).to_be_bytes());
        h.update(f.as_bytes());
    }
    h.finalize().to_vec()
}

/// Checks the whole chain; returns the number of rows, or the index of the first bad row.
pub async fn verify_chain(pool: &PgPool) -> Result<usize, VerifyError> {
    let rows = store::audit::all(pool).await.map_err(VerifyError::Store)?;
    let mut prev = vec![0u8; 32];
    for (i, r) in rows.iter().enumerate() {
        let event = AuditEvent {
            occurred_at: r.occurred_at,
            token_id: r.token_id,
            tenant_id: r.tenant_id,
            tenant_slug: r.tenant_slug.clone(),
            action: r.action,
            secret_key: r.secret_key.clone(),
            outcome: r.outcome,
            request_id: r.request_id.clone(),
            source: r.source.clone(),
            route: r.route.clone(),
            count: r.count,
            actor: r.actor.clone(),
            subject: r.subject.clone(),
        };
        if r.prev_hash != prev || r.hash != chain_hash(&prev, &event) {
            return Err(VerifyError::Broken { row: i });
        }
        prev = r.hash.clone();
    }
    Ok(rows.len())
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("audit chain broken at row {row}")]
    Broken { row: usize },
    #[error(transparent)]
    Store(StoreError),
}

enum Command {
    Event(Box<AuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// The request side: cheap to clone, never blocks on the database.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Command>,
    failing: Arc<AtomicBool>,
    access: AccessCounts,
}

impl AuditSink {
    pub fn record(&self, event: AuditEvent) {
        if let Err(err) = self.tx.try_send(Command::Event(Box::new(event))) {
            // Full channel means the writer is far behind; drop nothing silently.
            tracing::error!(error = %err, "audit channel full or closed: event not recorded");
            self.failing.store(true, Ordering::Relaxed);
        }
    }

    /// Counts a refused or throttled request (401, 403, 429); written aggregated, see
    /// `ACCESS_FLUSH_EVERY`. Never blocks and never grows without bound.
    pub fn record_access(&self, key: AccessKey) {
        let minute = Utc::now().timestamp().div_euclid(60);
        let mut counts = self.access.lock().unwrap();
        let key = if counts.len() >= ACCESS_MAX_KEYS && !counts.contains_key(&(minute, key.clone()))
        {
            AccessKey {
                source: "*".into(),
                route: "*".into(),
                token_id: None,
                tenant_slug: None,
                ..key
            }
        } else {
            key
        };
        let n = counts.entry((minute, key)).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// True when events can be neither stored nor journalled: requests must then fail.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Waits until everything recorded so far is in the database or the journal.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Starts the writer task. `journal` is the file used while the database is away.
pub fn spawn_writer(pool: PgPool, journal: PathBuf) -> (AuditSink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let failing = Arc::new(AtomicBool::new(false));
    let access = AccessCounts::default();
    let writer = Writer {
        pool,
        journal,
        failing: failing.clone(),
        journal_pending: true, // replay whatever an earlier run left
        access: access.clone(),
        access_drained: tokio::time::Instant::now(),
    };
    let handle = tokio::spawn(writer.run(rx));
    (
        AuditSink {
            tx,
            failing,
            access,
        },
        handle,
    )
}

struct Writer {
    pool: PgPool,
    journal: PathBuf,
    failing: Arc<AtomicBool>,
    journal_pending: bool,
    access: AccessCounts,
    access_drained: tokio::time::Instant,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Event(e)) => {
                        batch.push(*e);
                        if batch.len() < MAX_BATCH { continue; }
                    }
                    Some(Command::Flush(done)) => waiters.push(done),
                    None => {
                        batch.extend(drain_access(&self.access));
                        self.write(std::mem::take(&mut batch)).await;
                        return;
                    }
                },
                _ = tick.tick() => {}
            }
            // A flush (tests, shutdown) writes the counts so far too.
            if !waiters.is_empty() || self.access_drained.elapsed() >= ACCESS_FLUSH_EVERY {
                self.access_drained = tokio::time::Instant::now();
                batch.extend(drain_access(&self.access));
            }
            self.write(std::mem::take(&mut batch)).await;
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    async fn write(&mut self, batch: Vec<AuditEvent>) {
        if self.journal_pending {
            match self.replay_journal().await {
                Ok(()) => self.journal_pending = false,
                Err(_) if batch.is_empty() => return,
                Err(_) => {
                    // Keep order: new events queue behind the journal.
                    self.append_journal(&batch).await;
                    return;
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        match insert_chained(&self.pool, &batch).await {
            Ok(()) => self.failing.store(false, Ordering::Relaxed),
            Err(err) => {
                tracing::warn!(error = %err, events = batch.len(), "audit insert failed; journalling");
                self.append_journal(&batch).await;
            }
        }
    }

    async fn append_journal(&mut self, batch: &[AuditEvent]) {
        let mut text = String::new();
        for e in batch {
            text.push_str(&serde_json::to_string(e).expect("audit events serialise"));
            text.push('\n');
        }
        let result = async {
            if let Some(dir) = self.journal.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.journal)
                .await?;
            f.write_all(text.as_bytes()).await?;
            f.sync_data().await
        }
        .await;
        match result {
            Ok(()) => {
                self.journal_pending = true;
                self.failing.store(false, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::error!(error = %err, path = %self.journal.display(), "audit journal unwritable: refusing requests until it recovers");
                self.failing.store(true, Ordering::Relaxed);
            }
        }
    }

    async fn replay_journal(&mut self) -> Result<(), StoreError> {
        let text = match tokio::fs::read_to_string(&self.journal).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read audit journal");
                return Err(StoreError::Other(sqlx::Error::Io(e)));
            }
        };
        let events: Vec<AuditEvent> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| match serde_json::from_str(l) {
                Ok(e) => Some(e),
                Err(err) => {
                    tracing::error!(error = %err, "skipping unreadable audit journal line");
                    None
                }
            })
            .collect();
        for chunk in events.chunks(MAX_BATCH) {
            insert_chained(&self.pool, chunk).await?;
        }
        if !events.is_empty() {
            tracing::info!(events = events.len(), "replayed audit journal");
        }
        // Replayed into the database: a crash before this line replays twice, which shows
        // as duplicate rows, never as a gap.
        let _ = tokio::fs::remove_file(&self.journal).await;
        Ok(())
    }
}

async fn insert_chained(pool: &PgPool, batch: &[AuditEvent]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let mut prev = store::audit::lock_chain_head(&mut tx)
        .await?
        .unwrap_or_else(|| vec![0u8; 32]);
    let rows: Vec<AuditRow> = batch
        .iter()
        .map(|e| {
            let hash = chain_hash(&prev, e);
            AuditRow {
                occurred_at: e.occurred_at,
                token_id: e.token_id,
                tenant_id: e.tenant_id,
                tenant_slug: e.tenant_slug.clone(),
                action: e.action,
                secret_key: e.secret_key.clone(),
                outcome: e.outcome,
                request_id: e.request_id.clone(),
                source: e.source.clone(),
                route: e.route.clone(),
                count: e.count,
                actor: e.actor.clone(),
                subject: e.subject.clone(),
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect();
    store::audit::insert_batch(&mut *tx, &rows).await?;
    tx.commit().await?;
    Ok(())
}
