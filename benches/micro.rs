//! `cargo bench --bench micro`: the building blocks of a read, without HTTP or a database.
//! Seal/open of 64 B, 1 KiB and 16 KiB values, data key wrap/unwrap, and a cache hit through
//! `SecretCache::get_or_load` (the lookup layer's first step).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tenant_vault::cache::{CachedSecret, SecretCache};
use tenant_vault::crypto::{
    open_secret, seal_secret, unwrap_data_key, wrap_data_key, DataKey, MasterKey, SecretPlace,
    SecretValue,
};
use tenant_vault::domain::{DataKeyId, SecretKey, TenantId};
use uuid::Uuid;

fn value_of(len: usize) -> SecretValue {
    SecretValue::new((0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect())
}

fn envelopes(c: &mut Criterion) {
    let key = DataKey::generate(DataKeyId(Uuid::new_v4()));
    let tenant = TenantId(Uuid::new_v4());
    let name = SecretKey::parse("STRIPE_SECRET_KEY").unwrap();
    let place = SecretPlace {
        tenant,
        key: &name,
        version: 3,
        secret_id: Uuid::new_v4(),
    };
    let mut group = c.benchmark_group("secret");
    for (label, len) in [("64B", 64usize), ("1KiB", 1024), ("16KiB", 16 * 1024)] {
        let value = value_of(len);
        let sealed = seal_secret(&key, place, &value);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("seal", label), &value, |b, v| {
            b.iter(|| seal_secret(black_box(&key), black_box(place), black_box(v)))
        });
        group.bench_with_input(BenchmarkId::new("open", label), &sealed, |b, s| {
            b.iter(|| open_secret(black_box(&key), black_box(place), black_box(s)).unwrap())
        });
    }
    group.finish();
}

fn data_keys(c: &mut Criterion) {
    let master = MasterKey::from_bytes(1, &[7u8; 32]);
    let tenant = TenantId(Uuid::new_v4());
    let key = DataKey::generate(DataKeyId(Uuid::new_v4()));
    let wrapped = wrap_data_key(&master, tenant, 1, &key);
    let mut group = c.benchmark_group("data_key");
    group.bench_function("wrap", |b| {
        b.iter(|| wrap_data_key(black_box(&master), tenant, 1, black_box(&key)))
    });
    group.bench_function("unwrap", |b| {
        b.iter(|| {
            unwrap_data_key(black_box(&master), tenant, key.id, 1, black_box(&wrapped)).unwrap()
        })
    });
    group.finish();
}

fn cache_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = SecretCache::new(3600, 100_000);
    // 10,000 entries (1,000 tenants x 10 keys), like the load bench's default data set.
    let tenants: Vec<TenantId> = (0..1000).map(|_| TenantId(Uuid::new_v4())).collect();
    let keys: Vec<SecretKey> = (0..10)
        .map(|i| SecretKey::parse(&format!("KEY_{i}")).unwrap())
        .collect();
    runtime.block_on(async {
        for t in &tenants {
            for k in &keys {
                cache
                    .get_or_load::<()>(*t, k, || {
                        Box::pin(async {
                            Ok(Arc::new(CachedSecret {
                                value: value_of(120),
                                version: 1,
                                updated_at: chrono::Utc::now(),
                                loaded_from: tenant_vault::domain::SecretSource::Database,
                            }))
                        })
                    })
                    .await
                    .unwrap();
            }
        }
    });
    let mut i = 0usize;
    c.bench_function("cache/hit (get_or_load, 10k entries)", |b| {
        b.to_async(&runtime).iter(|| {
            i = i.wrapping_add(7919);
            let t = tenants[i % tenants.len()];
            let k = &keys[(i / tenants.len()) % keys.len()];
            let cache = &cache;
            async move {
                let (v, hit) = cache
                    .get_or_load::<()>(t, k, || unreachable!("every key is cached"))
                    .await
                    .unwrap();
                debug_assert!(hit);
                black_box(v)
            }
        })
    });
}

criterion_group!(benches, envelopes, data_keys, cache_hit);
criterion_main!(benches);
