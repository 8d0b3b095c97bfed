//! A bounded cache whose entries expire a fixed time after they were written, for the
//! lookups every request makes beside the secret cache: token checks, tenants by slug,
//! rate-limit buckets. quick_cache underneath: a read is a hash lookup under a shared lock,
//! with no read log to replay and no housekeeping task, which is what moka spent about an
//! eighth of a cached read on (`docs/bench.md`, third round).
//!
//! Only data that is not secret belongs here: an expired entry is refused at once but
//! dropped only on its next read or when capacity pushes it out. The secret cache stays on
//! moka, which evicts (and so wipes) values on time.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::Equivalent;

#[derive(Clone)]
struct Stamped<V> {
    value: V,
    /// None: kept until capacity pushes it out.
    expires: Option<Instant>,
}

impl<V> Stamped<V> {
    fn is_live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| now < at)
    }
}

pub struct ExpiringCache<K, V> {
    inner: Cache<K, Stamped<V>>,
    ttl: Option<Duration>,
    /// Invalidations so far: a load that started before one may have read what it
    /// invalidated, so its answer is returned but not kept.
    generation: AtomicU64,
}

impl<K, V> ExpiringCache<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone,
{
    /// At most `max_entries` entries (at least one), each kept `ttl` after it was written.
    pub fn new(max_entries: u64, ttl: Duration) -> Self {
        Self::build(max_entries, Some(ttl))
    }

    /// At most `max_entries` entries, kept until capacity pushes them out (or invalidated).
    pub fn bounded(max_entries: u64) -> Self {
        Self::build(max_entries, None)
    }

    fn build(max_entries: u64, ttl: Option<Duration>) -> Self {
        let capacity = usize::try_from(max_entries.max(1)).unwrap_or(usize::MAX);
        Self {
            inner: Cache::new(capacity),
            ttl,
            generation: AtomicU64::new(0),
        }
    }

    fn stamp(&self, value: V) -> Stamped<V> {
        Stamped {
            value,
            expires: self.ttl.map(|ttl| Instant::now() + ttl),
        }
    }

    /// The live value of `key`, if any.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let stamped = self.inner.get(key)?;
        if stamped.is_live(Instant::now()) {
            return Some(stamped.value);
        }
        self.drop_expired(key);
        None
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.get(key).is_some()
    }

    pub fn insert(&self, key: K, value: V) {
        self.inner.insert(key, self.stamp(value));
    }

    /// The value of `key`, or `make`'s, inserted once however many callers race for it.
    pub fn get_or_insert_with(&self, key: &K, make: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(key) {
            return value;
        }
        let stamped = self.inner.get_or_insert_with(key, || {
            Ok::<_, std::convert::Infallible>(self.stamp(make()))
        });
        match stamped {
            Ok(stamped) => stamped.value,
            Err(never) => match never {},
        }
    }

    /// The live value of `key`, or `load`'s. Concurrent misses of one key wait for a
    /// single load; a failed load is not kept, so the next caller tries again.
    pub async fn try_get_with<E>(
        &self,
        key: &K,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        let guard = loop {
            match self.inner.get_value_or_guard_async(key).await {
                Ok(stamped) if stamped.is_live(Instant::now()) => return Ok(stamped.value),
                Ok(_) => self.drop_expired(key),
                Err(guard) => break guard,
            }
        };
        let before = self.generation.load(Ordering::Acquire);
        let value = load.await?;
        if self.generation.load(Ordering::Acquire) == before {
            let _ = guard.insert(self.stamp(value.clone()));
        }
        Ok(value)
    }

    fn drop_expired<Q>(&self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let now = Instant::now();
        self.inner.remove_if(key, |stamped| !stamped.is_live(now));
    }

    pub fn invalidate<Q>(&self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.remove(key);
    }

    /// Drops the entries `drop` picks.
    pub fn invalidate_if(&self, drop: impl Fn(&K, &V) -> bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.retain(|key, stamped| !drop(key, &stamped.value));
    }

    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.clear();
    }

    /// Entries held, live or expired but not yet dropped.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn an_entry_expires_after_its_ttl() {
        let cache = ExpiringCache::new(10, Duration::from_millis(30));
        cache.insert("a", 1);
        assert_eq!(cache.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get("a"), None);
        assert!(cache.is_empty(), "the expired entry is dropped on its read");
    }

    #[test]
    fn capacity_bounds_the_entries() {
        let cache = ExpiringCache::bounded(100);
        for i in 0..1_000 {
            cache.insert(i, i);
        }
        assert!(cache.len() <= 100, "{} entries", cache.len());
        assert!(!cache.is_empty());
    }

    #[test]
    fn invalidation_by_key_predicate_and_all() {
        let cache = ExpiringCache::bounded(100);
        for i in 0..10 {
            cache.insert(i, i * 10);
        }
        cache.invalidate(&3);
        assert_eq!(cache.get(&3), None);
        cache.invalidate_if(|_, v| *v >= 50);
        assert_eq!(cache.get(&4), Some(40));
        assert_eq!(cache.get(&5), None);
        cache.invalidate_all();
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load_and_errors_are_not_kept() {
        let cache = Arc::new(ExpiringCache::new(10, Duration::from_secs(60)));
        let loads = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    cache
                        .try_get_with(&"k", async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok::<_, ()>(7)
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(7));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        let failed = cache
            .try_get_with(&"e", async { Err::<i32, _>("down") })
            .await;
        assert_eq!(failed, Err("down"));
        let retried = cache.try_get_with(&"e", async { Ok::<_, &str>(8) }).await;
        assert_eq!(retried, Ok(8), "a failed load left nothing behind");
    }

    #[tokio::test]
    async fn a_load_overtaken_by_an_invalidation_is_not_kept() {
        let cache = ExpiringCache::new(10, Duration::from_secs(60));
        let value = cache
            .try_get_with(&"k", async {
                cache.invalidate_all(); // e.g. a revocation while the row was being read
                Ok::<_, ()>(1)
            })
            .await;
        assert_eq!(value, Ok(1), "the caller still gets its answer");
        assert_eq!(cache.get("k"), None, "but it is not cached");
    }

    #[test]
    fn get_or_insert_with_makes_the_value_once() {
        let cache = ExpiringCache::bounded(10);
        let made = AtomicUsize::new(0);
        for _ in 0..3 {
            let v = cache.get_or_insert_with(&"k", || {
                made.fetch_add(1, Ordering::SeqCst);
                5
            });
            assert_eq!(v, 5);
        }
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }
}
