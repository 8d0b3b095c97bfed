//! Event streams (`GET /v1/events`): changes a caller may see, as they happen, so client
//! caches drop an entry the moment it goes stale.
//!
//! Every replica's change listener (`notify.rs`) hands each notification, its own included, to
//! the replica's [`EventHub`]; PostgreSQL delivers notifications in commit order, so a write
//! on any replica reaches the streams of every replica. The hub numbers events, keeps the last
//! `replay_window` of them (a stream resumes from its `Last-Event-ID` within that window, and
//! otherwise starts with `reset`), and fans them out through one bounded broadcast channel: a
//! stream that falls more than `stream_buffer` events behind skips ahead and gets `reset`, so
//! a slow reader costs the server nothing beyond those fixed buffers. Events carry names and
//! versions, never values.
//!
//! Kept whole: it is one concern, the hub, and its parts (numbering, replay ring, broadcast,
//! visibility, the stream that reads them) share the ring and the channel; about 150 of its
//! lines are the tests that drive them together.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::{Principal, PrincipalKind, RequestContext, ServiceError, TenantRef, Vault};
use crate::config::ClientApiArgs;
use crate::domain::{AuditAction, AuditOutcome, SecretKey, TenantId, TenantSlug, TokenId};
use crate::store::notify::{Event, SecretChange};

/// Open event streams on this replica (a gauge).
pub const OPEN_STREAMS_METRIC: &str = "tenant_vault_event_streams_open";

#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Silence after which a stream gets a `: heartbeat` comment.
    pub heartbeat: Duration,
    /// Recent events kept for `Last-Event-ID` resumption.
    pub replay_window: usize,
    /// Events a stream may fall behind before it is told to `reset`.
    pub stream_buffer: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(15),
            replay_window: 10_000,
            stream_buffer: 1024,
        }
    }
}

impl EventSettings {
    pub fn from_args(args: &ClientApiArgs) -> Self {
        Self {
            heartbeat: Duration::from_secs(args.events_heartbeat_secs),
            replay_window: args.events_replay_window as usize,
            stream_buffer: args.events_stream_buffer as usize,
        }
    }
}

/// Who may see an event.
#[derive(Debug, Clone)]
enum Scope {
    /// Every stream (`reset`).
    Everyone,
    /// Streams that may watch this tenant.
    Tenant(TenantRef),
    /// Streams that may watch this tenant and this key (a token's key pattern).
    Secret(TenantRef, Option<SecretKey>),
    /// A token's revocation: the token's own streams, and those that may watch its tenant
    /// (tenant-less tokens: those that may watch every tenant).
    Token {
        token: TokenId,
        tenant: Option<TenantRef>,
    },
}

/// One event as streams send it.
#[derive(Debug)]
pub struct StreamEvent {
    /// `<replica boot id>-<sequence>`; none for a `reset` sent because a stream lagged.
    pub id: Option<String>,
    /// The SSE `event:` field, e.g. `secret.written`.
    pub name: &'static str,
    /// The SSE `data:` field: one line of JSON.
    pub data: String,
    seq: u64,
    scope: Scope,
}

impl StreamEvent {
    fn reset(id: Option<String>, reason: &'static str) -> Arc<Self> {
        metrics::counter!("tenant_vault_event_stream_resets_total", "reason" => reason)
            .increment(1);
        Arc::new(StreamEvent {
            id,
            name: "reset",
            data: json!({ "reason": reason }).to_string(),
            seq: 0,
            scope: Scope::Everyone,
        })
    }
}

/// THE check of who sees what: may `who` watch the events of `tenant`? `None` is an event
/// tied to no tenant (revoking an admin token), which only callers that watch every tenant
/// see. Every event a stream sends passes through here; new kinds of principal (service
/// tokens with a list of tenants) extend this function and nothing else.
pub fn may_watch(who: &Principal, tenant: Option<&TenantRef>) -> bool {
    match (&who.kind, tenant) {
        // Admin tokens see names and versions, never values: they may watch everything.
        (PrincipalKind::Admin, _) => true,
        (_, Some(t)) => super::tokens::permits(who, &t.slug, None, super::Access::Read).is_ok(),
        (_, None) => super::tokens::reaches_all_tenants(who),
    }
}

fn visible(who: &Principal, event: &StreamEvent) -> bool {
    match &event.scope {
        Scope::Everyone => true,
        Scope::Tenant(t) => may_watch(who, Some(t)),
        Scope::Secret(t, key) => match &who.kind {
            PrincipalKind::Admin => true,
            _ => super::tokens::permits(who, &t.slug, key.as_ref(), super::Access::Read).is_ok(),
        },
        Scope::Token { token, tenant } => *token == who.token_id || may_watch(who, tenant.as_ref()),
    }
}

/// True for the last event a stream sends: its own token was revoked, or its tenant deleted
/// (which revokes the tenant's tokens).
fn ends_stream(who: &Principal, event: &StreamEvent) -> bool {
    match (&event.scope, &who.kind) {
        (Scope::Token { token, .. }, _) => *token == who.token_id,
        (Scope::Tenant(t), PrincipalKind::Tenant(own)) => {
            event.name == "tenant.deleted" && t.id == own.id
        }
        _ => false,
    }
}

struct Ring {
    /// Sequence number of the next event (the first is 1).
    next: u64,
    events: VecDeque<Arc<StreamEvent>>,
}

/// This replica's event numbering, replay window and fan-out.
pub struct EventHub {
    boot: String,
    settings: EventSettings,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<StreamEvent>>,
    closing: watch::Sender<bool>,
    open: Arc<AtomicUsize>,
}

impl EventHub {
    pub fn new(settings: EventSettings) -> Self {
        let (live, _) = broadcast::channel(settings.stream_buffer.max(1));
        let (closing, _) = watch::channel(false);
        Self {
            // Ids of another replica or an earlier run never match: they get `reset`.
            boot: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            settings,
            ring: Mutex::new(Ring {
                next: 1,
                events: VecDeque::new(),
            }),
            live,
            closing,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn settings(&self) -> &EventSettings {
        &self.settings
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Events kept for resumption now (at most the replay window).
    pub fn retained(&self) -> usize {
        self.ring.lock().unwrap().events.len()
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.boot)
    }

    /// Numbers an event, keeps it for resumption and sends it to every open stream.
    fn publish(&self, name: &'static str, scope: Scope, data: serde_json::Value) {
        let mut ring = self.ring.lock().unwrap();
        let seq = ring.next;
        ring.next += 1;
        let event = Arc::new(StreamEvent {
            id: Some(self.id(seq)),
            name,
            data: data.to_string(),
            seq,
            scope,
        });
        ring.events.push_back(event.clone());
        while ring.events.len() > self.settings.replay_window {
            ring.events.pop_front();
        }
        // Sent under the lock, so a stream subscribing meanwhile sees each event exactly once
        // (in its replay or live). No stream open is not an error.
        let _ = self.live.send(event);
        metrics::counter!("tenant_vault_events_published_total", "type" => name).increment(1);
    }

    /// Tells every stream to drop its whole cache (changes may have gone unseen).
    pub fn publish_reset(&self, reason: &'static str) {
        self.publish("reset", Scope::Everyone, json!({ "reason": reason }));
    }

    /// Publishes what a change notification means for streams (most changes mean nothing).
    pub fn publish_change(&self, event: &Event) {
        let tenant_ref = |id: uuid::Uuid, slug: &Option<String>| {
            slug.as_deref()
                .and_then(|s| TenantSlug::parse(s).ok())
                .map(|slug| TenantRef {
                    id: TenantId(id),
                    slug,
                })
        };
        match event {
            Event::Secret {
                tenant,
                key,
                slug,
                change,
                version,
            } => {
                let (Some(t), Some(change)) = (tenant_ref(*tenant, slug), change) else {
                    // From a replica older than event streams: we cannot name the tenant.
                    return self.publish_reset("unnamed_change");
                };
                let (name, data) = match (change, version) {
                    (SecretChange::Deleted, _) => (
                        "secret.deleted",
                        json!({"tenant": t.slug.as_str(), "key": key}),
                    ),
                    (SecretChange::Written, Some(v)) => (
                        "secret.written",
                        json!({"tenant": t.slug.as_str(), "key": key, "version": v}),
                    ),
                    (SecretChange::Synced, Some(v)) => (
                        "secret.synced",
                        json!({"tenant": t.slug.as_str(), "key": key, "version": v}),
                    ),
                    (_, None) => return self.publish_reset("unnamed_change"),
                };
                let key = SecretKey::parse(key).ok();
                self.publish(name, Scope::Secret(t, key), data);
            }
            Event::Tenant {
                tenant,
                destroyed_keys,
                slug,
                deleted,
            } => {
                // Older replicas did not say; only a deletion destroys keys.
                let deleted = deleted.unwrap_or(!destroyed_keys.is_empty());
                if !deleted {
                    return;
                }
                match tenant_ref(*tenant, slug) {
                    Some(t) => {
                        let data = json!({"tenant": t.slug.as_str()});
                        self.publish("tenant.deleted", Scope::Tenant(t), data);
                    }
                    None => self.publish_reset("unnamed_change"),
                }
            }
            Event::TokenRevoked {
                token_id,
                tenant,
                slug,
            } => {
                let scope = Scope::Token {
                    token: TokenId(*token_id),
                    tenant: tenant.and_then(|id| tenant_ref(id, slug)),
                };
                self.publish("token.revoked", scope, json!({"token_id": token_id}));
            }
            Event::DataKey { .. } | Event::MasterKey { .. } | Event::TokenUpdated { .. } => {}
        }
    }

    /// Ends every stream (the server is shutting down: open streams would hold it up).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The sequence number in an id of ours, if it is one.
    fn parse_id(&self, id: &str) -> Option<u64> {
        let (boot, seq) = id.trim().rsplit_once('-')?;
        (boot == self.boot).then_some(())?;
        seq.parse().ok()
    }

    /// A new stream for `who`: what it missed since `last_id` (or `reset`), then `ready`, then
    /// live events.
    fn subscribe(&self, who: Arc<Principal>, last_id: Option<&str>) -> EventStream {
        let ring = self.ring.lock().unwrap();
        let live = self.live.subscribe();
        let head = ring.next - 1;
        let mut backlog = VecDeque::new();
        let mut finished = false;
        if let Some(last) = last_id {
            match self.parse_id(last) {
                Some(seen) if seen <= head => {
                    let oldest = ring.events.front().map_or(head + 1, |e| e.seq);
                    if seen + 1 >= oldest {
                        for e in ring.events.iter().filter(|e| e.seq > seen) {
                            if visible(&who, e) {
                                backlog.push_back(e.clone());
                                if ends_stream(&who, e) {
                                    finished = true;
                                    break;
                                }
                            }
                        }
                    } else {
                        backlog.push_back(StreamEvent::reset(
                            Some(self.id(head)),
                            "outside_replay_window",
                        ));
                    }
                }
                _ => backlog.push_back(StreamEvent::reset(Some(self.id(head)), "unknown_event_id")),
            }
        }
        drop(ring);
        if !finished {
            // Caught up: live from here on.
            backlog.push_back(Arc::new(StreamEvent {
                id: Some(self.id(head)),
                name: "ready",
                data: "{}".into(),
                seq: head,
                scope: Scope::Everyone,
            }));
        }
        self.open.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!(OPEN_STREAMS_METRIC).increment(1.0);
        EventStream {
            expires: who
                .expires_at
                .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default())
                .map(|left| tokio::time::Instant::now() + left),
            who,
            backlog,
            live,
            closing: self.closing.subscribe(),
            finished,
            _open: OpenStream(self.open.clone()),
        }
    }
}

/// Counts a stream as open for as long as it lives.
struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(OPEN_STREAMS_METRIC).decrement(1.0);
    }
}

/// One subscriber's view of the hub.
pub struct EventStream {
    who: Arc<Principal>,
    backlog: VecDeque<Arc<StreamEvent>>,
    live: broadcast::Receiver<Arc<StreamEvent>>,
    closing: watch::Receiver<bool>,
    /// When the caller's token expires: the stream ends then.
    expires: Option<tokio::time::Instant>,
    /// The last event was sent (token revoked, tenant deleted).
    finished: bool,
    _open: OpenStream,
}

impl EventStream {
    /// The next event for this stream; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Arc<StreamEvent>> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Some(e);
            }
            if self.finished {
                return None;
            }
            let expires = self.expires;
            let expiry = async move {
                match expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.closing.wait_for(|closing| *closing) => return None,
                _ = expiry => return None,
                got = self.live.recv() => match got {
                    Ok(e) if visible(&self.who, &e) => {
                        self.finished = ends_stream(&self.who, &e);
                        return Some(e);
                    }
                    Ok(_) => continue,
                    // Skipped ahead past what it could not keep up with: its cache may be stale.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Some(StreamEvent::reset(None, "lagged"));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }

    /// As a `Stream` (for the HTTP response body).
    pub fn into_stream(self) -> impl Stream<Item = Arc<StreamEvent>> + Send + 'static {
        futures::stream::unfold(self, |mut s| async move { s.next().await.map(|e| (e, s)) })
    }
}

impl Vault {
    pub fn events(&self) -> &EventHub {
        &self.events
    }

    /// Opens an event stream for `who`, resuming after `last_id` when it can. Audited as
    /// `events.subscribe`.
    pub fn subscribe_events(
        &self,
        ctx: &RequestContext,
        who: Arc<Principal>,
        last_id: Option<&str>,
    ) -> Result<EventStream, ServiceError> {
        self.ensure_auditable()?;
        let mut e = self.event(ctx, AuditAction::EventsSubscribe, AuditOutcome::Success);
        if let PrincipalKind::Tenant(t) = &who.kind {
            e.tenant_id = Some(t.id.0);
            e.tenant_slug = Some(t.slug.to_string());
        }
        self.audit.record(e);
        Ok(self.events.subscribe(who, last_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(slug: &str) -> TenantRef {
        TenantRef {
            id: TenantId(uuid::Uuid::new_v4()),
            slug: TenantSlug::parse(slug).unwrap(),
        }
    }

    fn principal(kind: PrincipalKind) -> Arc<Principal> {
        Arc::new(Principal {
            token_id: TokenId(uuid::Uuid::new_v4()),
            kind,
            expires_at: None,
            scopes: crate::service::Scopes::read_write(),
        })
    }

    fn written(hub: &EventHub, t: &TenantRef, key: &str, version: i32) {
        hub.publish_change(&Event::Secret {
            tenant: t.id.0,
            key: key.into(),
            slug: Some(t.slug.to_string()),
            change: Some(SecretChange::Written),
            version: Some(version),
        });
    }

    async fn next(s: &mut EventStream) -> Arc<StreamEvent> {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("an event")
            .expect("the stream is open")
    }

    #[tokio::test]
    async fn tenant_tokens_see_their_tenant_and_admins_see_all() {
        let hub = EventHub::new(EventSettings::default());
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let mut mine = hub.subscribe(principal(PrincipalKind::Tenant(acme.clone())), None);
        let mut all = hub.subscribe(principal(PrincipalKind::Admin), None);
        assert_eq!(next(&mut mine).await.name, "ready");
        assert_eq!(next(&mut all).await.name, "ready");
        written(&hub, &globex, "K", 1);
        written(&hub, &acme, "K", 2);
        let e = next(&mut mine).await;
        assert_eq!(e.data, r#"{"key":"K","tenant":"acme","version":2}"#);
        assert!(next(&mut all).await.data.contains("globex"));
        assert!(next(&mut all).await.data.contains("acme"));
        assert_eq!(hub.open_streams(), 2);
        drop(mine);
        assert_eq!(hub.open_streams(), 1);
    }

    #[tokio::test]
    async fn service_tokens_see_their_tenants_and_keys_only() {
        use crate::domain::KeyPattern;
        use crate::service::{Scopes, TenantSet};
        let hub = EventHub::new(EventSettings::default());
        let (acme, globex, initech) = (tenant("acme"), tenant("globex"), tenant("initech"));
        let who = Arc::new(Principal {
            token_id: TokenId(uuid::Uuid::new_v4()),
            kind: PrincipalKind::Service {
                tenants: TenantSet::Only(vec![acme.slug.clone(), globex.slug.clone()]),
            },
            expires_at: None,
            scopes: Scopes {
                read: true,
                write: false,
                key_pattern: Some(KeyPattern::parse("STRIPE_*").unwrap()),
            },
        });
        let mut s = hub.subscribe(who, None);
        assert_eq!(next(&mut s).await.name, "ready");
        written(&hub, &initech, "STRIPE_KEY", 1);
        written(&hub, &acme, "SENDGRID_KEY", 1);
        written(&hub, &globex, "STRIPE_KEY", 3);
        let e = next(&mut s).await;
        assert_eq!(
            e.data,
            r#"{"key":"STRIPE_KEY","tenant":"globex","version":3}"#
        );
    }

    #[tokio::test]
    async fn resumes_within_the_window_and_resets_outside_it() {
        let hub = EventHub::new(EventSettings {
            replay_window: 3,
            ..Default::default()
        });
        let acme = tenant("acme");
        let who = principal(PrincipalKind::Tenant(acme.clone()));
        let mut s = hub.subscribe(who.clone(), None);
        let ready = next(&mut s).await;
        written(&hub, &acme, "A", 1);
        let first = next(&mut s).await.id.clone().unwrap();
        drop(s);
        written(&hub, &acme, "B", 1);
        written(&hub, &acme, "C", 1);
        let mut s = hub.subscribe(who.clone(), Some(&first));
        assert!(next(&mut s).await.data.contains("\"B\""));
        assert!(next(&mut s).await.data.contains("\"C\""));
        assert_eq!(next(&mut s).await.name, "ready");
        // The window holds 3 events: the `ready` id from before all of them is too old now.
        written(&hub, &acme, "D", 1);
        assert_eq!(hub.retained(), 3);
        let mut s = hub.subscribe(who.clone(), ready.id.as_deref());
        let reset = next(&mut s).await;
        assert_eq!(reset.name, "reset");
        assert!(reset.data.contains("outside_replay_window"));
        assert_eq!(next(&mut s).await.name, "ready");
        for unknown in ["nope", "abc-1", "", "-"] {
            let mut s = hub.subscribe(who.clone(), Some(unknown));
            assert!(next(&mut s).await.data.contains("unknown_event_id"));
        }
    }

    #[tokio::test]
    async fn revoking_the_token_ends_its_stream() {
        let hub = EventHub::new(EventSettings::default());
        let acme = tenant("acme");
        let who = principal(PrincipalKind::Tenant(acme.clone()));
        let other = principal(PrincipalKind::Tenant(acme.clone()));
        let mut s = hub.subscribe(who.clone(), None);
        let mut o = hub.subscribe(other, None);
        next(&mut s).await;
        next(&mut o).await;
        hub.publish_change(&Event::TokenRevoked {
            token_id: who.token_id.0,
            tenant: Some(acme.id.0),
            slug: Some("acme".into()),
        });
        assert_eq!(next(&mut s).await.name, "token.revoked");
        assert!(s.next().await.is_none());
        // Another token of the tenant hears of it and stays open.
        assert_eq!(next(&mut o).await.name, "token.revoked");
        written(&hub, &acme, "K", 1);
        assert_eq!(next(&mut o).await.name, "secret.written");
    }

    #[tokio::test]
    async fn closing_ends_every_stream() {
        let hub = EventHub::new(EventSettings::default());
        let mut s = hub.subscribe(principal(PrincipalKind::Admin), None);
        next(&mut s).await;
        hub.close();
        assert!(s.next().await.is_none());
    }
}
