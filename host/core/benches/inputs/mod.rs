//! Generated inputs shared by the benchmarks and the peak-memory example.

use herald_core::{FamilyPolicy, PoolDecl, PoolSpec, Service, Snapshot};

/// `n` Services in 100 namespaces, created one second apart.
pub fn services(n: usize, policy: FamilyPolicy) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let mut s = Service::new(&format!("ns-{:03}", i % 100), &format!("svc-{i:06}"));
            s.created = Some(i as i64);
            s.family_policy = policy;
            s
        })
        .collect()
}

/// One pool with these entries.
pub fn pool(name: &str, entries: &[&str]) -> PoolDecl {
    PoolDecl {
        name: name.to_owned(),
        created: Some(0),
        spec: Ok(PoolSpec::new(
            entries.iter().map(|e| e.parse().unwrap()).collect(),
        )),
    }
}

/// Benchmark (a): `n` RequireDualStack Services over two dual-stack pools
/// holding 198.18.0.0/15 (RFC 2544's benchmarking block, 2^17 IPv4
/// addresses) and 2001:db8::/100 between them; the first fills up at 65,536.
pub fn cold_dual_stack(n: usize) -> Snapshot {
    Snapshot {
        pools: vec![
            pool("dual-a", &["198.18.0.0/16", "2001:db8::/101"]),
            pool("dual-b", &["198.19.0.0/16", "2001:db8::800:0/101"]),
        ],
        services: services(n, FamilyPolicy::RequireDualStack),
        ..Default::default()
    }
}
