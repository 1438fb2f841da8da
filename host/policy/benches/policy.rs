//! Criterion benchmarks of the Wasm host, each beside the built-in Rust
//! policy on the same input in the same run (BENCHMARKS.md):
//! per-decision latency with a fresh `Store`, instantiation alone, first
//! load (compile) and cached load. Needs ./scripts/build-plugins.sh.
//!
//!   cargo bench -p herald-policy --bench policy

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fixtures::{candidates, nodes, spec, wasm};
use herald_core::announce::Rendezvous;
use herald_core::plugin::{FailurePolicy, World};
use herald_core::policy::{
    AllocatorPolicy, AnnounceQuery, AnnouncerPolicy, Mode, Plugin, Policies,
};
use herald_core::pool::{PoolDecl, PoolSpec};
use herald_core::service::Service;
use herald_core::{Allocator, Config, Snapshot};
use herald_policy::Host;

fn announce(c: &mut Criterion) {
    let host = Host::new().unwrap();
    let ns = nodes(50, 3);
    let svc = Service::new("shop", "web");
    let l2 = AnnounceQuery {
        vip: "198.51.100.7".parse().unwrap(),
        mode: Mode::L2,
        services: vec![&svc],
        eligible: candidates(&ns, |i| (i % 4) as u32),
    };
    let bgp = AnnounceQuery {
        mode: Mode::Bgp,
        ..l2.clone()
    };
    let zs_bytes = wasm("zone-spread");
    let zs = host
        .load(
            "zone-spread",
            &spec(World::Announcer, "zone-spread", &zs_bytes, "{}"),
            &zs_bytes,
        )
        .unwrap();
    let ew_bytes = wasm("endpoint-weighted");
    let ew = host
        .load(
            "endpoint-weighted",
            &spec(World::Announcer, "endpoint-weighted", &ew_bytes, "{}"),
            &ew_bytes,
        )
        .unwrap();

    let mut g = c.benchmark_group("announce-50-nodes");
    g.bench_function("l2/built-in", |b| {
        b.iter(|| Rendezvous.announce(black_box(&l2)).unwrap())
    });
    g.bench_function("l2/wasm-zone-spread", |b| {
        b.iter(|| zs.announce(black_box(&l2)).unwrap())
    });
    g.bench_function("bgp/built-in", |b| {
        b.iter(|| Rendezvous.announce(black_box(&bgp)).unwrap())
    });
    g.bench_function("bgp/wasm-endpoint-weighted", |b| {
        b.iter(|| ew.announce(black_box(&bgp)).unwrap())
    });
    g.finish();

    // The fixed cost of a call, against the per-node cost above.
    let one = nodes(1, 1);
    let l2_one = AnnounceQuery {
        eligible: candidates(&one, |_| 1),
        ..l2.clone()
    };
    let mut g = c.benchmark_group("announce-1-node");
    g.bench_function("l2/built-in", |b| {
        b.iter(|| Rendezvous.announce(black_box(&l2_one)).unwrap())
    });
    g.bench_function("l2/wasm-zone-spread", |b| {
        b.iter(|| zs.announce(black_box(&l2_one)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("instantiate");
    g.bench_function("fresh-store/zone-spread", |b| {
        b.iter(|| zs.instantiate_only().unwrap())
    });
    g.finish();
}

fn allocate(c: &mut Criterion) {
    let host = Host::new().unwrap();
    let bytes = wasm("stable-hash");
    let sh = host
        .load(
            "stable",
            &spec(World::Allocator, "stable", &bytes, "{}"),
            &bytes,
        )
        .unwrap();
    let mut pool = PoolSpec::new(vec!["198.51.100.0/24".parse().unwrap()]);
    pool.allocator_plugin = Some("stable".into());
    let snapshot = Snapshot {
        pools: vec![PoolDecl {
            name: "public".into(),
            created: None,
            spec: Ok(pool),
        }],
        services: vec![Service::new("shop", "web")],
        ..Snapshot::default()
    };
    let mut policies = Policies::default();
    policies.allocators.insert(
        "stable".into(),
        Plugin {
            policy: &sh as &dyn AllocatorPolicy,
            failure_policy: FailurePolicy::Fail,
        },
    );
    let config = Config::default();
    let mut g = c.benchmark_group("allocate-one-service");
    g.bench_function("built-in", |b| {
        b.iter(|| Allocator::new(black_box(&snapshot), &config, &Policies::default()).into_plan())
    });
    g.bench_function("wasm-stable-hash", |b| {
        b.iter(|| Allocator::new(black_box(&snapshot), &config, &policies).into_plan())
    });
    g.finish();

    // Many Services into one pool: each Wasm call sees the pool as it is
    // then, so the cost of handing the pool to the plugin must not grow
    // with the addresses already taken.
    // 198.18.0.0/15 is the benchmarking range (RFC 2544), as in the
    // allocator benchmarks.
    let mut pool = PoolSpec::new(vec!["198.18.0.0/16".parse().unwrap()]);
    pool.allocator_plugin = Some("stable".into());
    let many = Snapshot {
        pools: vec![PoolDecl {
            name: "public".into(),
            created: None,
            spec: Ok(pool),
        }],
        services: (0..2000)
            .map(|i| Service::new("shop", &format!("web-{i}")))
            .collect(),
        ..Snapshot::default()
    };
    let mut g = c.benchmark_group("allocate-2000-services");
    g.sample_size(10);
    g.bench_function("built-in", |b| {
        b.iter(|| Allocator::new(black_box(&many), &config, &Policies::default()).into_plan())
    });
    g.bench_function("wasm-stable-hash", |b| {
        b.iter(|| Allocator::new(black_box(&many), &config, &policies).into_plan())
    });
    g.finish();
}

fn load(c: &mut Criterion) {
    let host = Host::new().unwrap();
    let bytes = wasm("zone-spread");
    let s = spec(World::Announcer, "zone-spread", &bytes, "{}");
    let mut g = c.benchmark_group("load-zone-spread");
    g.sample_size(10);
    g.bench_function("first (compile)", |b| {
        b.iter(|| {
            host.clear_cache();
            host.load("zone-spread", &s, &bytes).unwrap()
        })
    });
    host.load("zone-spread", &s, &bytes).unwrap();
    g.bench_function("cached", |b| {
        b.iter(|| host.load("zone-spread", &s, &bytes).unwrap())
    });
    g.finish();
}

criterion_group!(benches, announce, allocate, load);
criterion_main!(benches);
