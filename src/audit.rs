//! The audit trail. Requests hand events to a channel and move on; one background writer per
//! process batches them into `audit_events` (one multi-row insert at least every 100 ms),
//! chaining each row to the previous one with HMAC-SHA256 under the audit key (chain version
//! 2; rows from before the key used plain SHA-256, version 1). While the database is
//! unreachable, batches go to an append-only journal file and are replayed, in order, when it
//! returns. Only if the journal cannot be written either does `is_failing` turn true, and
//! requests answer 503. In strict mode an answer waits until its event is committed.
//!
//! Every `checkpoint_every`, the writer records the table's head (last id, chain value,
//! count) outside the database; `verify` streams the table and checks chain and checkpoints.
//!
//! An event has no field that could hold a secret value: that is the whole redaction policy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

pub use crate::config::AuditMode;
pub use crate::domain::{AuditAction, AuditOutcome};
use crate::store::audit::{AuditRow, ChainHead, StoredAuditRow};
use crate::store::{self, StoreError};

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

/// The length-prefixed encoding of a row's fields that both chain formulas hash.
fn chain_input(prev: &[u8], e: &AuditEvent, mut update: impl FnMut(&[u8])) {
    update(prev);
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
        update(&(f.len() as u32).to_be_bytes());
        update(f.as_bytes());
    }
}

/// Chain version 1 (rows written before the audit key): SHA-256 over the previous hash and
/// the row. Anyone with write access can recompute it, hence version 2.
pub fn chain_hash(prev: &[u8], e: &AuditEvent) -> Vec<u8> {
    let mut h = Sha256::new();
    chain_input(prev, e, |b| h.update(b));
    h.finalize().to_vec()
}

/// The chain's key: HMAC-SHA256 under the audit internal key (the keys layer holds it, wrapped
/// by the master key; the composition root hands it over behind this trait).
pub trait ChainKey: Send + Sync {
    fn mac(&self, data: &[u8]) -> [u8; 32];
}

/// Chain version 2: HMAC-SHA256 under the audit key, so a database writer cannot recompute
/// it.
pub fn keyed_chain_hash(key: &dyn ChainKey, prev: &[u8], e: &AuditEvent) -> Vec<u8> {
    let mut input = Vec::with_capacity(256);
    chain_input(prev, e, |b| input.extend_from_slice(b));
    key.mac(&input).to_vec()
}

/// The chain version written from now on.
pub const CHAIN_KEYED: i16 = 2;
pub const CHAIN_UNKEYED: i16 = 1;

fn event_of(r: &StoredAuditRow) -> AuditEvent {
    AuditEvent {
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
    }
}

/// What the table looked like at one moment, kept outside the database (a file in the data
/// dir; the master key folder in Infisical), so cutting the tail or truncating the table
/// shows even though the remaining rows still chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub last_id: i64,
    /// Hex of the chain value of row `last_id`.
    pub last_hash: String,
    /// Rows with an id up to `last_id`.
    pub count: i64,
    pub time: DateTime<Utc>,
    /// Row `last_id` is keyed (chain version 2).
    pub keyed: bool,
    /// The first keyed row: every row from it on must be keyed.
    pub keyed_from_id: Option<i64>,
}

impl Checkpoint {
    fn of(head: &ChainHead) -> Self {
        Self {
            last_id: head.last_id,
            last_hash: hex::encode(&head.last_hash),
            count: head.count,
            time: Utc::now(),
            keyed: head.chain_version == CHAIN_KEYED,
            keyed_from_id: head.keyed_from_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unreadable checkpoint: {0}")]
    Format(#[from] serde_json::Error),
    #[error("{0}")]
    Remote(String),
}

/// Somewhere outside the database a checkpoint is kept.
#[async_trait::async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Where, for messages ("file /var/lib/tenant-vault/audit-checkpoint.json").
    fn describe(&self) -> String;
    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError>;
}

/// `audit-checkpoint.json` in the data dir, replaced atomically.
pub struct FileCheckpoints {
    path: PathBuf,
}

impl FileCheckpoints {
    pub const FILE_NAME: &'static str = "audit-checkpoint.json";

    pub fn in_dir(dir: &std::path::Path) -> Self {
        Self {
            path: dir.join(Self::FILE_NAME),
        }
    }
}

#[async_trait::async_trait]
impl CheckpointStore for FileCheckpoints {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // Replicas may share a data dir: each writes its own temporary file.
        let tmp = self.path.with_extension(format!(
            "json.{}.{:x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(&serde_json::to_vec_pretty(checkpoint)?).await?;
        f.sync_all().await?;
        tokio::fs::rename(&tmp, &self.path).await?;
        Ok(())
    }

    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A checkpoint and where it came from, for verification.
#[derive(Debug, Clone)]
pub struct FoundCheckpoint {
    pub source: String,
    pub checkpoint: Checkpoint,
}

/// What a clean verification saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub rows: u64,
    pub keyed_rows: u64,
    pub last_id: Option<i64>,
    pub checkpoints_checked: usize,
}

/// The first problem found, naming the row.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("row {id}: its chain value does not match its contents: the row was edited")]
    EditedRow { id: i64 },
    #[error(
        "row {id} does not link to row {after}, the row before it: rows between them were deleted"
    )]
    MissingRows { after: i64, id: i64 },
    #[error(
        "the first row, {id}, links to an earlier row: rows before it were deleted \
         (the table was truncated or its start cut)"
    )]
    StartCut { id: i64 },
    #[error(
        "row {id} carries a plain SHA-256 chain value where the audit key's HMAC belongs: \
         the chain was recomputed without the key"
    )]
    RecomputedWithoutKey { id: i64 },
    #[error(
        "row {id} is unkeyed (chain version 1) but keyed rows begin at row {keyed_from}: \
         the chain was recomputed without the key"
    )]
    Downgraded { id: i64, keyed_from: i64 },
    #[error(
        "row {id} differs from the checkpoint in {place} (taken {time}): the chain was \
         rewritten up to it"
    )]
    CheckpointMismatch {
        id: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error(
        "{found} rows up to row {id}, but the checkpoint in {place} (taken {time}) counted \
         {expected}: rows were deleted and the chain recomputed"
    )]
    CheckpointCount {
        id: i64,
        expected: i64,
        found: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error(
        "the table ends at row {last_id}, but the checkpoint in {place} (taken {time}) \
         records row {checkpoint_id}: the tail was cut"
    )]
    CutTail {
        last_id: i64,
        checkpoint_id: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error(
        "the table is empty, but the checkpoint in {place} (taken {time}) records {count} \
         rows up to row {checkpoint_id}: the table was truncated"
    )]
    Truncated {
        checkpoint_id: i64,
        count: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error(
        "row {checkpoint_id}, recorded by the checkpoint in {place} (taken {time}), is \
         missing: the table was truncated or rows deleted"
    )]
    CheckpointRowMissing {
        checkpoint_id: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error("reading the audit table failed: {0}")]
    Store(StoreError),
}

/// Streams the whole table in id order (constant memory) and checks every link, every
/// chain value (version 1: SHA-256; version 2: HMAC under `key`), that no unkeyed row
/// follows a keyed one, and each checkpoint: its row, chain value and count, and that the
/// table reaches it. Returns the first problem.
pub async fn verify(
    pool: &PgPool,
    key: &dyn ChainKey,
    checkpoints: &[FoundCheckpoint],
) -> Result<VerifyReport, VerifyError> {
    let keyed_from = checkpoints
        .iter()
        .filter_map(|c| c.checkpoint.keyed_from_id)
        .min();
    let mut rows = store::audit::stream_all(pool);
    let mut prev = vec![0u8; 32];
    let mut last_id: Option<i64> = None;
    let (mut count, mut keyed_rows) = (0u64, 0u64);
    let mut first_keyed: Option<i64> = None;
    let mut matched = vec![false; checkpoints.len()];
    while let Some(row) = rows.next().await {
        let r = row.map_err(VerifyError::Store)?;
        count += 1;
        if r.prev_hash != prev {
            return Err(match last_id {
                None => VerifyError::StartCut { id: r.id },
                Some(after) => VerifyError::MissingRows { after, id: r.id },
            });
        }
        let event = event_of(&r);
        if r.chain_version == CHAIN_KEYED {
            keyed_rows += 1;
            first_keyed.get_or_insert(r.id);
            if r.hash != keyed_chain_hash(key, &prev, &event) {
                return Err(if r.hash == chain_hash(&prev, &event) {
                    VerifyError::RecomputedWithoutKey { id: r.id }
                } else {
                    VerifyError::EditedRow { id: r.id }
                });
            }
        } else {
            let keyed_from = first_keyed.or(keyed_from.filter(|k| *k <= r.id));
            if let Some(keyed_from) = keyed_from {
                return Err(VerifyError::Downgraded {
                    id: r.id,
                    keyed_from,
                });
            }
            if r.hash != chain_hash(&prev, &event) {
                return Err(VerifyError::EditedRow { id: r.id });
            }
        }
        for (i, found) in checkpoints.iter().enumerate() {
            let cp = &found.checkpoint;
            if cp.last_id != r.id {
                continue;
            }
            matched[i] = true;
            if cp.last_hash != hex::encode(&r.hash) {
                return Err(VerifyError::CheckpointMismatch {
                    id: r.id,
                    place: found.source.clone(),
                    time: cp.time,
                });
            }
            if cp.count != count as i64 {
                return Err(VerifyError::CheckpointCount {
                    id: r.id,
                    expected: cp.count,
                    found: count as i64,
                    place: found.source.clone(),
                    time: cp.time,
                });
            }
        }
        prev = r.hash;
        last_id = Some(r.id);
    }
    for (found, matched) in checkpoints.iter().zip(matched) {
        if matched {
            continue;
        }
        let cp = &found.checkpoint;
        let (place, time) = (found.source.clone(), cp.time);
        return Err(match last_id {
            None => VerifyError::Truncated {
                checkpoint_id: cp.last_id,
                count: cp.count,
                place,
                time,
            },
            Some(last_id) if last_id < cp.last_id => VerifyError::CutTail {
                last_id,
                checkpoint_id: cp.last_id,
                place,
                time,
            },
            Some(_) => VerifyError::CheckpointRowMissing {
                checkpoint_id: cp.last_id,
                place,
                time,
            },
        });
    }
    Ok(VerifyReport {
        rows: count,
        keyed_rows,
        last_id,
        checkpoints_checked: checkpoints.len(),
    })
}

/// The answer to a strict-mode request could not wait for its audit row.
#[derive(Debug, thiserror::Error)]
#[error("the audit event could not be committed to the database")]
pub struct NotDurable;

enum Command {
    Event(Box<AuditEvent>),
    /// Strict mode: answer whether the event reached the database.
    Durable(Box<AuditEvent>, oneshot::Sender<bool>),
    Flush(oneshot::Sender<()>),
    /// Flush, then write a checkpoint now.
    Checkpoint(oneshot::Sender<Result<Option<Checkpoint>, CheckpointError>>),
}

/// The request side: cheap to clone, never blocks on the database (strict mode aside).
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Command>,
    failing: Arc<AtomicBool>,
    access: AccessCounts,
    mode: AuditMode,
    key: Arc<dyn ChainKey>,
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

    /// Records the event of an answer. Batched mode: as `record`. Strict mode: returns once
    /// the event is committed to the database, or fails if it cannot be (the journal does
    /// not count: the answer must then not leave).
    pub async fn record_answer(&self, event: AuditEvent) -> Result<(), NotDurable> {
        if self.mode == AuditMode::Batched {
            self.record(event);
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Durable(Box::new(event), done))
            .await
            .map_err(|_| NotDurable)?;
        match wait.await {
            Ok(true) => Ok(()),
            _ => Err(NotDurable),
        }
    }

    pub fn mode(&self) -> AuditMode {
        self.mode
    }

    /// The chain's HMAC key, for verification.
    pub fn chain_key(&self) -> &Arc<dyn ChainKey> {
        &self.key
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

    /// Flushes and writes a checkpoint at once (tests, and before an export); None when the
    /// table is empty.
    pub async fn checkpoint_now(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Checkpoint(done))
            .await
            .map_err(|_| CheckpointError::Remote("the audit writer has stopped".into()))?;
        wait.await
            .map_err(|_| CheckpointError::Remote("the audit writer has stopped".into()))?
    }
}

/// How the writer runs.
pub struct WriterSettings {
    /// The file used while the database is away.
    pub journal: PathBuf,
    pub mode: AuditMode,
    /// The chain's HMAC key (the audit internal key).
    pub key: Arc<dyn ChainKey>,
    pub checkpoint_every: Duration,
    /// Where checkpoints go (the data dir's file; the master key folder).
    pub checkpoints: Vec<Arc<dyn CheckpointStore>>,
}

/// Starts the writer task.
pub fn spawn_writer(
    pool: PgPool,
    settings: WriterSettings,
) -> (AuditSink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let failing = Arc::new(AtomicBool::new(false));
    let access = AccessCounts::default();
    let sink = AuditSink {
        tx,
        failing: failing.clone(),
        access: access.clone(),
        mode: settings.mode,
        key: settings.key.clone(),
    };
    let writer = Writer {
        pool,
        journal: settings.journal,
        key: settings.key,
        failing,
        journal_pending: true, // replay whatever an earlier run left
        access,
        access_drained: tokio::time::Instant::now(),
        checkpoint_every: settings.checkpoint_every,
        checkpoints: settings.checkpoints,
        written_since_checkpoint: false,
    };
    let handle = tokio::spawn(writer.run(rx));
    (sink, handle)
}

struct Writer {
    pool: PgPool,
    journal: PathBuf,
    key: Arc<dyn ChainKey>,
    failing: Arc<AtomicBool>,
    journal_pending: bool,
    access: AccessCounts,
    access_drained: tokio::time::Instant,
    checkpoint_every: Duration,
    checkpoints: Vec<Arc<dyn CheckpointStore>>,
    written_since_checkpoint: bool,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        let mut durable: Vec<oneshot::Sender<bool>> = Vec::new();
        let mut checkpoint_waiters = Vec::new();
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let mut checkpoint_tick = tokio::time::interval(self.checkpoint_every);
        checkpoint_tick.tick().await; // the first tick is immediate
        loop {
            let mut checkpoint_due = false;
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Command::Event(e)) => {
                        batch.push(*e);
                        if batch.len() < MAX_BATCH { continue; }
                    }
                    Some(Command::Durable(e, done)) => {
                        // Group commit: everything already queued goes in the same insert.
                        batch.push(*e);
                        durable.push(done);
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(Command::Event(e)) => batch.push(*e),
                                Ok(Command::Durable(e, done)) => {
                                    batch.push(*e);
                                    durable.push(done);
                                }
                                Ok(Command::Flush(done)) => waiters.push(done),
                                Ok(Command::Checkpoint(done)) => checkpoint_waiters.push(done),
                                Err(_) => break,
                            }
                        }
                    }
                    Some(Command::Flush(done)) => waiters.push(done),
                    Some(Command::Checkpoint(done)) => checkpoint_waiters.push(done),
                    None => {
                        batch.extend(drain_access(&self.access));
                        self.write(std::mem::take(&mut batch)).await;
                        if self.written_since_checkpoint {
                            let _ = self.checkpoint().await;
                        }
                        return;
                    }
                },
                _ = tick.tick() => {}
                _ = checkpoint_tick.tick() => checkpoint_due = true,
            }
            // A flush (tests, shutdown) writes the access counts so far too.
            if !waiters.is_empty() || self.access_drained.elapsed() >= ACCESS_FLUSH_EVERY {
                self.access_drained = tokio::time::Instant::now();
                batch.extend(drain_access(&self.access));
            }
            let stored = self.write(std::mem::take(&mut batch)).await;
            for w in durable.drain(..) {
                let _ = w.send(stored);
            }
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
            if checkpoint_due && self.written_since_checkpoint {
                let _ = self.checkpoint().await;
            }
            for w in checkpoint_waiters.drain(..) {
                let _ = w.send(self.checkpoint().await);
            }
        }
    }

    /// Records the table's head in every checkpoint store; the first failure is returned
    /// (and logged), the other stores are still written.
    async fn checkpoint(&mut self) -> Result<Option<Checkpoint>, CheckpointError> {
        let head = store::audit::head(&self.pool)
            .await
            .map_err(|e| CheckpointError::Remote(format!("reading the audit table: {e}")))?;
        let Some(head) = head else {
            return Ok(None);
        };
        let checkpoint = Checkpoint::of(&head);
        let mut result = Ok(Some(checkpoint.clone()));
        for store in &self.checkpoints {
            if let Err(e) = store.save(&checkpoint).await {
                tracing::error!(error = %e, to = %store.describe(), "cannot write the audit checkpoint");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        self.written_since_checkpoint = false;
        result
    }

    /// Inserts the batch (after any journal backlog); true if it reached the database.
    async fn write(&mut self, batch: Vec<AuditEvent>) -> bool {
        if self.journal_pending {
            match self.replay_journal().await {
                Ok(()) => self.journal_pending = false,
                Err(_) if batch.is_empty() => return true,
                Err(_) => {
                    // Keep order: new events queue behind the journal.
                    self.append_journal(&batch).await;
                    return false;
                }
            }
        }
        if batch.is_empty() {
            return true;
        }
        match insert_chained(&self.pool, self.key.as_ref(), &batch).await {
            Ok(()) => {
                self.failing.store(false, Ordering::Relaxed);
                self.written_since_checkpoint = true;
                true
            }
            Err(err) => {
                tracing::warn!(error = %err, events = batch.len(), "audit insert failed; journalling");
                self.append_journal(&batch).await;
                false
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
            insert_chained(&self.pool, self.key.as_ref(), chunk).await?;
        }
        self.written_since_checkpoint |= !events.is_empty();
        if !events.is_empty() {
            tracing::info!(events = events.len(), "replayed audit journal");
        }
        // Replayed into the database: a crash before this line replays twice, which shows
        // as duplicate rows, never as a gap.
        let _ = tokio::fs::remove_file(&self.journal).await;
        Ok(())
    }
}

/// Appends a batch to the chain, keyed (chain version 2), under the chain lock.
async fn insert_chained(
    pool: &PgPool,
    key: &dyn ChainKey,
    batch: &[AuditEvent],
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    let mut prev = store::audit::lock_chain_head(&mut tx)
        .await?
        .unwrap_or_else(|| vec![0u8; 32]);
    let rows: Vec<AuditRow> = batch
        .iter()
        .map(|e| {
            let hash = keyed_chain_hash(key, &prev, e);
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
                chain_version: CHAIN_KEYED,
            }
        })
        .collect();
    store::audit::insert_batch(&mut *tx, &rows).await?;
    tx.commit().await?;
    Ok(())
}
