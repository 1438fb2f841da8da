//! Criterion benchmarks of the allocator (results in BENCHMARKS.md):
//! (a) a cold plan of 100,000 dual-stack Services;
//! (b) one more Service into a /16 with 65,000 addresses held (and, for
//!     comparison, with 1,000 held);
//! (c) 10 and 40 Services sharing one address with 4,900 ports each: the
//!     cost must grow linearly in Services × ports (issue 15; it grew with
//!     their square);
//! (d) 2,000 and 8,000 Services with one sharing key and the same port,
//!     so that none can share: the cost must grow linearly in Services
//!     (issue 15; each tried every earlier address first).
//!
//! Peak memory of (a) is measured by `cargo run --release --example
//! peak_memory` (a benchmark harness would distort it).

mod inputs;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use herald_core::policy::BUILT_IN;
use herald_core::{Allocator, Config, FamilyPolicy, Port, Service, Snapshot, allocate};

fn cold_plan(c: &mut Criterion) {
    let snapshot = inputs::cold_dual_stack(100_000);
    let config = Config::default();
    let mut group = c.benchmark_group("cold_plan");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("100k_dual_stack_services", |b| {
        b.iter(|| black_box(allocate(black_box(&snapshot), &config)))
    });
    group.finish();
}

/// Benchmark (b), beside the same call into a nearly empty /16: the cost
/// must not grow with the addresses held (no linear scan).
fn one_more(c: &mut Criterion) {
    let config = Config::default();
    // Distinct newcomers; after each batch the state is cloned afresh (not
    // timed), so every timed `add` meets `held` to `held + 500` addresses.
    const BATCH: u64 = 500;
    let newcomers: Vec<_> = (0..BATCH)
        .map(|k| herald_core::Service::new("new", &format!("svc-{k}")))
        .collect();
    let mut group = c.benchmark_group("one_more_service_into_slash16");
    for held in [1_000, 65_000] {
        let snapshot = Snapshot {
            pools: vec![inputs::pool("slash16", &["198.18.0.0/16"])],
            services: inputs::services(held, FamilyPolicy::SingleStack),
            ..Default::default()
        };
        let base = Allocator::new(&snapshot, &config, &BUILT_IN);
        group.bench_function(format!("{held}_held"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let mut alloc = base.clone();
                    let batch = (iters - done).min(BATCH);
                    let start = Instant::now();
                    for s in &newcomers[..batch as usize] {
                        black_box(alloc.add(s, &config));
                    }
                    total += start.elapsed();
                    done += batch;
                }
                total
            })
        });
    }
    group.finish();
}

/// Benchmark (c): a plan of `n` Services sharing one address, 4,900 ports
/// each.
fn sharing(c: &mut Criterion) {
    let config = Config::default();
    let mut group = c.benchmark_group("sharing_one_address_4900_ports_each");
    group.sample_size(10);
    for n in [10, 40] {
        let snapshot = sharing_snapshot(n, 4_900);
        group.bench_function(format!("{n}_services"), |b| {
            b.iter(|| {
                let plan = allocate(black_box(&snapshot), &config);
                assert!(plan.services.iter().all(|s| s.ips.len() == 1));
                black_box(plan)
            })
        });
    }
    group.finish();
}

/// Benchmark (c): `n` Services with one sharing key and `ports` (port,
/// protocol) pairs each, all distinct across them (over TCP, UDP and SCTP),
/// so that every one of them shares the pool's one address.
fn sharing_snapshot(n: usize, ports: usize) -> Snapshot {
    const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
    assert!(
        n * ports <= 65_535 * PROTOCOLS.len(),
        "not enough distinct ports"
    );
    let services = (0..n)
        .map(|i| {
            let mut s = Service::new("shared", &format!("svc-{i:03}"));
            s.created = Some(i as i64);
            s.sharing_key = Some("one".to_owned());
            s.ports = (i * ports..(i + 1) * ports)
                .map(|k| Port {
                    port: (k % 65_535) as u16 + 1,
                    protocol: PROTOCOLS[k / 65_535].to_owned(),
                })
                .collect();
            s
        })
        .collect();
    Snapshot {
        pools: vec![inputs::pool("one", &["198.51.100.10/32"])],
        services,
        ..Default::default()
    }
}

/// Benchmark (d): a plan of `n` Services with one sharing key and the same
/// port (80/TCP), in a /16: each gets an address of its own.
fn same_key_same_port(c: &mut Criterion) {
    let config = Config::default();
    let mut group = c.benchmark_group("one_key_same_port");
    group.sample_size(10);
    for n in [2_000, 8_000] {
        let mut snapshot = Snapshot {
            pools: vec![inputs::pool("slash16", &["198.18.0.0/16"])],
            services: inputs::services(n, FamilyPolicy::SingleStack),
            ..Default::default()
        };
        for s in &mut snapshot.services {
            s.sharing_key = Some("one".to_owned());
            s.ports = vec![Port {
                port: 80,
                protocol: "TCP".to_owned(),
            }];
        }
        group.bench_function(format!("{n}_services"), |b| {
            b.iter(|| {
                let plan = allocate(black_box(&snapshot), &config);
                assert_eq!(plan.pools[0].allocated, n as u128, "one address each");
                black_box(plan)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cold_plan, one_more, sharing, same_key_same_port);
criterion_main!(benches);
