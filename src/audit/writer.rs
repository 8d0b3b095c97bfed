//! The batching writer: the request-side sink, the background task that inserts batches,
//! the journal used while the database is away, and the aggregated access counts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::chain::{insert_chained, ChainKey, Checkpoint, CheckpointError, CheckpointStore};
use super::{AuditAction, AuditEvent, AuditMode, AuditOutcome};
use crate::store::{self, StoreError};

/// `application_name` of the audit writer's connection.
pub const AUDIT_WRITER_APPLICATION_NAME: &str = "tenant-vault-audit";
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Events per insert, at most; the writer is woken as soon as this many wait. PostgreSQL
/// inserts a batch in one burst of CPU (about 8 us a row on the bench's machine), and on a
/// small machine that burst is what requests queue behind: with 1,000 rows the `hot` bench's
/// p99 was 3.5-3.7 ms, with 250 2.1-3.0 ms, for the same throughput (PostgreSQL's CPU +10%).
const MAX_BATCH: usize = 250;
/// Events waiting for the writer, at most; beyond this it is far behind and requests fail.
const MAX_PENDING: usize = 65_536;
/// Commands (strict-mode events, flushes, checkpoints) waiting for the writer.
const CHANNEL_CAPACITY: usize = 1024;
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

/// The answer to a strict-mode request could not wait for its audit row.
#[derive(Debug, thiserror::Error)]
#[error("the audit event could not be committed to the database")]
pub struct NotDurable;

/// Batched-mode events, appended by requests and taken whole by the writer. A shared buffer
/// rather than a channel message per event: the writer is woken once per batch (when it
/// fills, or by its timer), not once per request, which cost a task wake-up, often across
/// threads, on every cached read.
#[derive(Default)]
struct Pending {
    events: std::sync::Mutex<Vec<AuditEvent>>,
    /// Signalled when `events` reaches `MAX_BATCH`.
    full: tokio::sync::Notify,
}

impl Pending {
    /// Moves what is waiting into `batch`. An idle wake-up (the timer, a flush) neither
    /// allocates nor swaps; otherwise the requests get a fresh buffer sized for a batch.
    fn take_into(&self, batch: &mut Vec<AuditEvent>) {
        let mut events = self.events.lock().unwrap();
        if events.is_empty() {
            return;
        }
        let taken = std::mem::replace(&mut *events, Vec::with_capacity(MAX_BATCH));
        drop(events);
        if batch.is_empty() {
            *batch = taken;
        } else {
            batch.extend(taken);
        }
    }
}

enum Command {
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
    pending: Arc<Pending>,
    failing: Arc<AtomicBool>,
    access: AccessCounts,
    mode: AuditMode,
    key: Arc<dyn ChainKey>,
}

impl AuditSink {
    pub fn record(&self, event: AuditEvent) {
        let mut events = self.pending.events.lock().unwrap();
        if events.len() >= MAX_PENDING || self.tx.is_closed() {
            drop(events);
            // The writer is far behind or gone; drop nothing silently.
            tracing::error!("audit writer far behind or stopped: event not recorded");
            self.failing.store(true, Ordering::Relaxed);
            return;
        }
        events.push(event);
        let full = events.len() == MAX_BATCH;
        drop(events);
        if full {
            self.pending.full.notify_one();
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
    let pending = Arc::new(Pending::default());
    let sink = AuditSink {
        tx,
        pending: pending.clone(),
        failing: failing.clone(),
        access: access.clone(),
        mode: settings.mode,
        key: settings.key.clone(),
    };
    let writer = Writer {
        pool,
        conn: None,
        pending,
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

/// The connection every batch is inserted through. One backend for all of them rather than
/// whichever the pool hands out: PostgreSQL inserts with warm caches and page tables, where a
/// different backend per batch paid page faults on shared buffers it had not touched yet
/// (about a tenth of PostgreSQL's CPU in the `hot` bench), and the pool keeps all its
/// connections for requests.
struct WriterConnection {
    conn: PgConnection,
    last_used: std::time::Instant,
}

struct Writer {
    pool: PgPool,
    conn: Option<WriterConnection>,
    pending: Arc<Pending>,
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
                    Some(Command::Durable(e, done)) => {
                        // Group commit: everything already queued goes in the same insert.
                        batch.push(*e);
                        durable.push(done);
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
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
                        self.pending.take_into(&mut batch);
                        batch.extend(drain_access(&self.access));
                        self.write(std::mem::take(&mut batch)).await;
                        if self.written_since_checkpoint {
                            let _ = self.checkpoint().await;
                        }
                        return;
                    }
                },
                () = self.pending.full.notified() => {}
                _ = tick.tick() => {}
                _ = checkpoint_tick.tick() => checkpoint_due = true,
            }
            // Whatever requests recorded so far goes in this insert (a flush waits for it).
            self.pending.take_into(&mut batch);
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
        match self.insert(&batch).await {
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

    /// Appends a batch through the writer's own connection (see `WriterConnection`), dropped
    /// after any failure: its state is then unknown, and the next batch opens a new one.
    async fn insert(&mut self, batch: &[AuditEvent]) -> Result<(), StoreError> {
        if self.pool.is_closed() {
            // The service is done with the database: so is the writer (batches go to the
            // journal, as in an outage).
            self.conn = None;
        }
        if let Some(open) = &mut self.conn {
            if !store::alive_after_idle(&mut open.conn, open.last_used.elapsed()).await {
                self.conn = None;
            }
        }
        let open = match &mut self.conn {
            Some(open) => open,
            None => self.conn.insert(WriterConnection {
                conn: store::dedicated_connection(&self.pool, AUDIT_WRITER_APPLICATION_NAME)
                    .await?,
                last_used: std::time::Instant::now(),
            }),
        };
        let inserted = insert_chained(&mut open.conn, self.key.as_ref(), batch).await;
        open.last_used = std::time::Instant::now();
        if inserted.is_err() {
            self.conn = None;
        }
        inserted
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
            self.insert(chunk).await?;
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
