//! The secret cache: moka, bounded, with a TTL (0 turns it off). Values are `SecretValue`s,
//! which wipe their memory when the last reference is dropped, so eviction wipes them.
//! Concurrent misses of one key share a single load, unless the load began before a change
//! of the key the caller has seen (a client reads its own writes). Beside it, the not-found
//! cache: keys found nowhere, remembered briefly, and never over a later write.

pub mod expiring;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::future::Cache as MokaCache;

use crate::crypto::SecretValue;
use crate::domain::{SecretKey, TenantId};

pub use expiring::ExpiringCache;

/// A secret's load on a cache miss (database, then Infisical), boxed by its caller.
pub type Load<'a, E> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<CachedSecret>, E>> + Send + 'a>>;

/// One cached secret.
#[derive(Debug)]
pub struct CachedSecret {
    pub value: SecretValue,
    pub version: i32,
    pub updated_at: DateTime<Utc>,
    /// Where the value was loaded from before it was cached.
    pub loaded_from: crate::domain::SecretSource,
}

type Key = (TenantId, SecretKey);

/// A `Key` borrowed for a lookup, so a hit does not copy the key's name. Hashes as the
/// tuple does (the tenant, then the name as a `str`), and compares equal to it.
#[derive(Hash)]
struct KeyRef<'a>(TenantId, &'a str);

impl moka::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.0 && self.1 == key.1.as_str()
    }
}

/// moka with a seeded foldhash instead of std's SipHash: every read hashes its key once or
/// twice, and SipHash was a visible share of a cached read. The seed is random per process,
/// so a tenant cannot choose key names that collide.
type Cache<K, V> = MokaCache<K, V, foldhash::quality::RandomState>;

#[derive(Clone)]
pub struct SecretCache {
    inner: Option<Cache<Key, Loaded>>,
    /// Stale-if-error: every loaded value, kept for TTL + the stale budget, served only when
    /// a reload fails because PostgreSQL (and Infisical) cannot be reached. Dropped with the
    /// fresh entry on every invalidation, so a changed or deleted secret, or a deleted
    /// tenant, is never served stale.
    stale: Option<Cache<Key, StaleEntry>>,
    ttl: Duration,
    max_stale: Duration,
    /// A load that started before an invalidation of its key may have read the old row:
    /// its answer is returned but not kept.
    generations: Generations<256>,
}

/// A cached secret and its key's generation when the load that found it began.
#[derive(Clone)]
struct Loaded {
    secret: Arc<CachedSecret>,
    since: u64,
}

#[derive(Clone)]
struct StaleEntry {
    secret: Arc<CachedSecret>,
    loaded_at: std::time::Instant,
}

/// The byte bound when none is given (`TENANT_VAULT_CACHE_MAX_BYTES`'s default).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// What an entry costs in memory: the value, the key, and the bookkeeping around them
/// (moka's node, the `Arc`, the struct; measured at about 200 bytes).
fn weight_of(key: &Key, secret: &CachedSecret) -> usize {
    secret.value.len() + key.1.as_str().len() + 200
}

/// Invalidations so far, counted in `N` stripes by key hash: a stripe's count moves whenever
/// a key hashed to it changes, so what was looked up before the move may be out of date.
#[derive(Clone)]
struct Generations<const N: usize>(Arc<[AtomicU64; N]>);

impl<const N: usize> Default for Generations<N> {
    fn default() -> Self {
        Self(Arc::new(std::array::from_fn(|_| AtomicU64::new(0))))
    }
}

impl<const N: usize> Generations<N> {
    fn stripe(&self, tenant: TenantId, key: &SecretKey) -> &AtomicU64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (tenant, key).hash(&mut h);
        &self.0[(h.finish() as usize) % N]
    }

    fn of(&self, tenant: TenantId, key: &SecretKey) -> u64 {
        self.stripe(tenant, key).load(Ordering::SeqCst)
    }

    fn bump(&self, tenant: TenantId, key: &SecretKey) {
        self.stripe(tenant, key).fetch_add(1, Ordering::SeqCst);
    }

    fn bump_all(&self) {
        for g in self.0.iter() {
            g.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl SecretCache {
    /// `ttl_secs == 0` disables caching: every read loads. Holds at most `max_entries`
    /// secrets and `DEFAULT_MAX_BYTES` of them.
    pub fn new(ttl_secs: u64, max_entries: u64) -> Self {
        Self::with_max_bytes(ttl_secs, max_entries, DEFAULT_MAX_BYTES)
    }

    /// Bounded by entries and by bytes at once: moka has one capacity, so the capacity is
    /// `max_bytes` and every entry weighs its bytes but at least `max_bytes / max_entries`,
    /// which caps the count at `max_entries` too.
    pub fn with_max_bytes(ttl_secs: u64, max_entries: u64, max_bytes: u64) -> Self {
        let floor = max_bytes.div_ceil(max_entries.max(1));
        let inner = (ttl_secs > 0).then(|| {
            MokaCache::builder()
                .max_capacity(max_bytes)
                .weigher(move |key: &Key, loaded: &Loaded| {
                    let bytes = (weight_of(key, &loaded.secret) as u64).max(floor);
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .time_to_live(Duration::from_secs(ttl_secs))
                .support_invalidation_closures()
                .build_with_hasher(Default::default())
        });
        Self {
            inner,
            stale: None,
            ttl: Duration::from_secs(ttl_secs),
            max_stale: Duration::ZERO,
            generations: Generations::default(),
        }
    }

    /// Keeps values up to `max_stale` past their TTL for stale-if-error (zero: never; a
    /// disabled cache serves nothing stale either).
    /// Bounded by entries and bytes like the fresh cache (see `with_max_bytes`).
    pub fn with_max_stale(mut self, max_stale: Duration, max_entries: u64, max_bytes: u64) -> Self {
        self.max_stale = max_stale;
        let floor = max_bytes.div_ceil(max_entries.max(1));
        self.stale = (self.inner.is_some() && !max_stale.is_zero()).then(|| {
            MokaCache::builder()
                .max_capacity(max_bytes)
                .weigher(move |key: &Key, entry: &StaleEntry| {
                    let bytes = (weight_of(key, &entry.secret) as u64).max(floor);
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .time_to_live(self.ttl + max_stale)
                .support_invalidation_closures()
                .build_with_hasher(Default::default())
        });
        self
    }

    /// The last value loaded for a key and its age, if it is within TTL + the stale budget.
    pub async fn stale(
        &self,
        tenant: TenantId,
        key: &SecretKey,
    ) -> Option<(Arc<CachedSecret>, Duration)> {
        let entry = self.stale.as_ref()?.get(&(tenant, key.clone())).await?;
        let age = entry.loaded_at.elapsed();
        (age <= self.ttl + self.max_stale).then_some((entry.secret, age))
    }

    /// Drops every entry (after notifications may have been missed).
    pub fn invalidate_all(&self) {
        self.generations.bump_all();
        if let Some(cache) = &self.inner {
            cache.invalidate_all();
        }
        if let Some(stale) = &self.stale {
            stale.invalidate_all();
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Returns the cached secret, or runs `load` (once, however many callers miss at the same
    /// time) and caches what it returns. The flag is true when this call's value came from
    /// the cache rather than a load. `load` is called only on a miss, and the miss path is
    /// boxed: a hit's future stays a few hundred bytes. A miss may call `load` a second time
    /// (see `load_into`).
    pub async fn get_or_load<'a, E>(
        &'a self,
        tenant: TenantId,
        key: &'a SecretKey,
        load: impl Fn() -> Load<'a, E>,
    ) -> Result<(Arc<CachedSecret>, bool), E>
    where
        E: Clone + Send + Sync + 'static,
    {
        match &self.inner {
            None => load().await.map(|v| (v, false)),
            Some(cache) => {
                // The hot path: a plain lookup, cheaper than the entry API below.
                if let Some(hit) = cache.get(&KeyRef(tenant, key.as_str())).await {
                    return Ok((hit.secret, true));
                }
                Box::pin(self.load_into(cache, (tenant, key.clone()), load)).await
            }
        }
    }

    /// A miss: joins the key's load in flight or starts one. Each load's answer carries its
    /// key's generation from when it began. An answer from a load begun before a change this
    /// caller has seen (the write it just made, say) may predate that change, so the caller
    /// loads again on its own instead of taking it: a client reads its own writes.
    async fn load_into<'a, E>(
        &'a self,
        cache: &Cache<Key, Loaded>,
        cache_key: Key,
        load: impl Fn() -> Load<'a, E>,
    ) -> Result<(Arc<CachedSecret>, bool), E>
    where
        E: Clone + Send + Sync + 'static,
    {
        let (tenant, key) = (cache_key.0, cache_key.1.clone());
        let before = self.generations.of(tenant, &key);
        // Run only if no load of the key is in flight (moka polls one init per key).
        let init = async {
            let since = self.generations.of(tenant, &key);
            match load().await {
                Ok(secret) => Ok(Loaded { secret, since }),
                Err(error) => Err((error, since)),
            }
        };
        let answer = cache.entry(cache_key).or_try_insert_with(init).await;
        let since = match &answer {
            Ok(entry) => entry.value().since,
            Err(shared) => shared.1,
        };
        if since < before {
            return load().await.map(|secret| (secret, false));
        }
        let entry = answer.map_err(|shared| shared.0.clone())?;
        let from_cache = !entry.is_fresh();
        if !from_cache && self.generations.of(tenant, &key) != since {
            // Invalidated while loading: the row read may predate the change.
            cache.invalidate(&(tenant, key)).await;
        } else if !from_cache {
            if let Some(stale) = &self.stale {
                let kept = StaleEntry {
                    secret: entry.value().secret.clone(),
                    loaded_at: std::time::Instant::now(),
                };
                stale.insert((tenant, key), kept).await;
            }
        }
        Ok((entry.into_value().secret, from_cache))
    }

    pub async fn invalidate(&self, tenant: TenantId, key: &SecretKey) {
        self.generations.bump(tenant, key);
        if let Some(cache) = &self.inner {
            cache.invalidate(&(tenant, key.clone())).await;
        }
        if let Some(stale) = &self.stale {
            stale.invalidate(&(tenant, key.clone())).await;
        }
    }

    /// Drops every entry of one tenant (tenant deletion).
    pub fn invalidate_tenant(&self, tenant: TenantId) {
        self.generations.bump_all();
        if let Some(cache) = &self.inner {
            // Only fails when closures are unsupported, which `new` enables.
            let _ = cache.invalidate_entries_if(move |(t, _), _| *t == tenant);
        }
        if let Some(stale) = &self.stale {
            let _ = stale.invalidate_entries_if(move |(t, _), _| *t == tenant);
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| c.entry_count())
    }

    /// Bytes held, as weighed (see `with_max_bytes`); eventually consistent.
    pub fn weighted_bytes(&self) -> u64 {
        self.inner.as_ref().map_or(0, |c| c.weighted_size())
    }

    /// Applies pending evictions, so the counts above are exact (tests, metrics).
    pub async fn settle(&self) {
        if let Some(cache) = &self.inner {
            cache.run_pending_tasks().await;
        }
    }
}

/// Keys found nowhere (neither in the database nor in Infisical), remembered for a short
/// time so a client asking for a missing key again and again cannot hammer Infisical.
/// Disabled (remembers nothing) unless built with a non-zero TTL.
///
/// A miss is remembered with the key's generation from before the lookup, and counts only
/// while that generation is current: a lookup that found nothing just before the key was
/// written can store its miss after the write's `forget`, and must not hide the new key
/// (the writer's next read would answer 404). More stripes than the secret cache's, since a
/// write in a stripe retires the remembered misses of every key in it.
#[derive(Clone, Default)]
pub struct NotFoundCache {
    inner: Option<Cache<Key, u64>>,
    generations: Generations<4096>,
}

/// The key's generation, taken before looking for it (`NotFoundCache::ticket`).
#[derive(Clone, Copy, Debug)]
pub struct NotFoundTicket(u64);

impl NotFoundCache {
    const MAX_ENTRIES: u64 = 100_000;

    /// `ttl` zero: remembers nothing.
    pub fn new(ttl: Duration) -> Self {
        let inner = (!ttl.is_zero()).then(|| {
            MokaCache::builder()
                .max_capacity(Self::MAX_ENTRIES)
                .time_to_live(ttl)
                .build_with_hasher(Default::default())
        });
        Self {
            inner,
            generations: Generations::default(),
        }
    }

    /// Known missing: remembered, and not written since the lookup that missed it.
    pub async fn contains(&self, tenant: TenantId, key: &SecretKey) -> bool {
        let Some(cache) = &self.inner else {
            return false;
        };
        let at = cache.get(&KeyRef(tenant, key.as_str())).await;
        at.is_some_and(|at| at == self.generations.of(tenant, key))
    }

    /// Take before looking the key up; hand to `remember` if it is found nowhere.
    pub fn ticket(&self, tenant: TenantId, key: &SecretKey) -> NotFoundTicket {
        NotFoundTicket(self.generations.of(tenant, key))
    }

    pub async fn remember(&self, tenant: TenantId, key: &SecretKey, ticket: NotFoundTicket) {
        if let Some(cache) = &self.inner {
            cache.insert((tenant, key.clone()), ticket.0).await;
        }
    }

    /// The key exists now (written, or changed on another replica).
    pub async fn forget(&self, tenant: TenantId, key: &SecretKey) {
        self.generations.bump(tenant, key);
        if let Some(cache) = &self.inner {
            cache.invalidate(&(tenant, key.clone())).await;
        }
    }

    pub fn forget_all(&self) {
        self.generations.bump_all();
        if let Some(cache) = &self.inner {
            cache.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn secret(v: &str) -> Arc<CachedSecret> {
        Arc::new(CachedSecret {
            value: SecretValue::new(v.into()),
            version: 1,
            updated_at: Utc::now(),
            loaded_from: crate::domain::SecretSource::Database,
        })
    }

    #[tokio::test]
    async fn many_concurrent_misses_make_one_load() {
        let cache = SecretCache::new(60, 100);
        let loads = Arc::new(AtomicUsize::new(0));
        let tenant = TenantId(uuid::Uuid::new_v4());
        let key = SecretKey::parse("K").unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (cache, loads, key) = (cache.clone(), loads.clone(), key.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load::<()>(tenant, &key, || {
                            Box::pin(async {
                                loads.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                Ok(secret("v"))
                            })
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut fresh = 0;
        for t in tasks {
            let (v, from_cache) = t.await.unwrap();
            assert_eq!(v.value.expose(), "v");
            fresh += usize::from(!from_cache);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(fresh, 1);
    }

    /// One lookup whose load (if it runs) answers `value`.
    async fn read(
        cache: &SecretCache,
        tenant: TenantId,
        key: &SecretKey,
        value: &'static str,
    ) -> (Arc<CachedSecret>, bool) {
        cache
            .get_or_load::<()>(tenant, key, || Box::pin(async move { Ok(secret(value)) }))
            .await
            .unwrap()
    }

    /// The borrowed lookup key must hash and compare as the stored key, or every read
    /// would miss the plain lookup and fall to the slower entry API.
    #[tokio::test]
    async fn a_borrowed_key_finds_the_stored_entry() {
        use std::hash::BuildHasher;
        let hasher = foldhash::quality::RandomState::default();
        let tenant = TenantId(uuid::Uuid::new_v4());
        for name in ["K", "stripe_key", "a.b-c_d", &"x".repeat(255)] {
            let key = SecretKey::parse(name).unwrap();
            let owned: Key = (tenant, key.clone());
            let borrowed = KeyRef(tenant, key.as_str());
            assert_eq!(
                hasher.hash_one(&borrowed),
                hasher.hash_one(&owned),
                "{name}"
            );
            assert!(moka::Equivalent::equivalent(&borrowed, &owned));
            let other = TenantId(uuid::Uuid::new_v4());
            assert!(!moka::Equivalent::equivalent(&KeyRef(other, name), &owned));
            assert!(!moka::Equivalent::equivalent(&KeyRef(tenant, "L"), &owned));
        }
        let cache = SecretCache::new(60, 100);
        let key = SecretKey::parse("K").unwrap();
        read(&cache, tenant, &key, "a").await;
        let inner = cache.inner.as_ref().unwrap();
        let hit = inner.get(&KeyRef(tenant, "K")).await;
        assert_eq!(
            hit.map(|l| l.secret.value.expose().to_owned()).as_deref(),
            Some("a")
        );
    }

    #[tokio::test]
    async fn invalidation_and_disabled_cache_reload() {
        let tenant = TenantId(uuid::Uuid::new_v4());
        let key = SecretKey::parse("K").unwrap();
        let cache = SecretCache::new(60, 100);
        let (_, hit) = read(&cache, tenant, &key, "a").await;
        assert!(!hit);
        let (v, hit) = read(&cache, tenant, &key, "b").await;
        assert!(hit);
        assert_eq!(v.value.expose(), "a");
        cache.invalidate(tenant, &key).await;
        let (v, hit) = read(&cache, tenant, &key, "c").await;
        assert!(!hit);
        assert_eq!(v.value.expose(), "c");

        let off = SecretCache::new(0, 100);
        assert!(!off.is_enabled());
        let (_, hit) = read(&off, tenant, &key, "a").await;
        assert!(!hit);
        let (v, hit) = read(&off, tenant, &key, "b").await;
        assert!(!hit);
        assert_eq!(v.value.expose(), "b");
    }

    /// A lookup that found nothing just before the key was written can store its miss after
    /// the write's `forget`. That miss must not hide the key: the writer's next read would be
    /// a 404 (seen in `replicas::rotations_under_load_...` as a failed read of one's own write).
    #[tokio::test]
    async fn a_miss_found_before_a_write_does_not_hide_the_written_key() {
        let missing = NotFoundCache::new(Duration::from_secs(60));
        let tenant = TenantId(uuid::Uuid::new_v4());
        let key = SecretKey::parse("K").unwrap();
        let other = SecretKey::parse("L").unwrap();

        // A miss remembered with a current ticket counts.
        let ticket = missing.ticket(tenant, &other);
        missing.remember(tenant, &other, ticket).await;
        assert!(missing.contains(tenant, &other).await);

        // The lookup takes its ticket and misses; the key is written; the miss is stored.
        let ticket = missing.ticket(tenant, &key);
        missing.forget(tenant, &key).await;
        missing.remember(tenant, &key, ticket).await;
        assert!(!missing.contains(tenant, &key).await);

        // A lookup after the write that misses again (the key deleted since) counts.
        let ticket = missing.ticket(tenant, &key);
        missing.remember(tenant, &key, ticket).await;
        assert!(missing.contains(tenant, &key).await);

        // Forgetting everything (a missed notification) retires every remembered miss,
        // and a miss looked up before it that lands after it.
        let late = missing.ticket(tenant, &other);
        missing.forget_all();
        missing.remember(tenant, &other, late).await;
        assert!(!missing.contains(tenant, &key).await);
        assert!(!missing.contains(tenant, &other).await);

        // Off: remembers nothing.
        let off = NotFoundCache::new(Duration::ZERO);
        let ticket = off.ticket(tenant, &key);
        off.remember(tenant, &key, ticket).await;
        assert!(!off.contains(tenant, &key).await);
    }

    /// A read that misses right after its own write can join a load begun before the write.
    /// That load may have read the old row (here: none), so the read must load again rather
    /// than take its answer; the load's own caller still gets what it found.
    #[tokio::test]
    async fn a_miss_joining_a_load_begun_before_a_write_loads_again() {
        let cache = SecretCache::new(60, 100);
        let tenant = TenantId(uuid::Uuid::new_v4());
        let key = SecretKey::parse("K").unwrap();
        let (started, gate) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        let early = {
            let (cache, key, started, gate) =
                (cache.clone(), key.clone(), started.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load::<&str>(tenant, &key, || {
                        let (started, gate) = (started.clone(), gate.clone());
                        Box::pin(async move {
                            started.notify_one();
                            gate.notified().await;
                            Err("not found")
                        })
                    })
                    .await
                    .map(|(v, _)| v.value.expose().to_owned())
            })
        };
        started.notified().await;
        // The write, then the writer's read while the early load is still in flight.
        cache.invalidate(tenant, &key).await;
        let mine = {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load::<&str>(tenant, &key, || Box::pin(async { Ok(secret("new")) }))
                    .await
                    .map(|(v, _)| v.value.expose().to_owned())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.notify_one();
        assert_eq!(mine.await.unwrap().as_deref(), Ok("new"));
        assert_eq!(early.await.unwrap().as_deref(), Err(&"not found"));
    }
}
