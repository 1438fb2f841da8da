//! Criterion benchmark of one planning round of the controller (issue 10):
//! [`Inputs`] from the stores' objects, the plan, and the diff against the
//! cluster, with 10,000 LoadBalancer Services that already show their
//! addresses and their `IPAllocation`s, plus one new Service (results in
//! BENCHMARKS.md).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use herald_api::pool::IPPool;
use herald_core::policy::BUILT_IN;
use herald_core::{Allocator, Config};
use herald_k8s::diff;
use herald_k8s::inputs::{Inputs, Objects};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

const SERVICES: usize = 10_000;

fn service(i: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": format!("svc-{i:05}"),
            "namespace": "bench",
            "uid": format!("uid-{i}"),
            "resourceVersion": "1",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    }))
    .unwrap()
}

/// The cluster after the controller wrote its first plan: every Service
/// shows its address, every address has its record.
fn settled() -> Objects {
    let pool: IPPool = serde_json::from_value(serde_json::json!({
        "apiVersion": "herald.dev/v1alpha1",
        "kind": "IPPool",
        "metadata": {"name": "bench", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"addresses": ["10.0.0.0/16"]},
    }))
    .unwrap();
    let mut objects = Objects {
        services: (0..SERVICES).map(|i| Arc::new(service(i))).collect(),
        pools: vec![Arc::new(pool)],
        ..Objects::default()
    };
    let now = Time(Timestamp::now());
    let plan = plan(&Inputs::of(&objects));
    let changes = diff::changes(&plan, &objects, &now);
    for (svc, change) in objects.services.iter_mut().zip(&changes.statuses) {
        let svc = Arc::make_mut(svc);
        assert_eq!(svc.metadata.name.as_deref(), Some(&*change.service.name));
        svc.metadata.resource_version = Some("2".to_owned());
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    change
                        .ips
                        .iter()
                        .map(|ip| LoadBalancerIngress {
                            ip: Some(ip.to_string()),
                            ip_mode: Some(diff::IP_MODE.to_owned()),
                            ..LoadBalancerIngress::default()
                        })
                        .collect(),
                ),
            }),
            conditions: Some(change.condition.clone().into_iter().collect()),
        });
    }
    objects.allocations = changes
        .create
        .into_iter()
        .enumerate()
        .map(|(i, mut record)| {
            record.metadata.uid = Some(format!("record-{i}"));
            record.metadata.resource_version = Some("3".to_owned());
            Arc::new(record)
        })
        .collect();
    objects.sort();
    assert!(diff::changes(&plan, &objects, &now).is_empty());
    objects
}

fn plan(inputs: &Inputs) -> herald_core::Plan {
    Allocator::new(&inputs.snapshot, &Config::default(), &BUILT_IN).into_plan()
}

fn round(c: &mut Criterion) {
    let mut objects = settled();
    objects.services.push(Arc::new(service(SERVICES)));
    objects.sort();
    let now = Time(Timestamp::now());
    let mut group = c.benchmark_group("controller_round");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("10k_services_one_more", |b| {
        b.iter(|| {
            let inputs = Inputs::of(black_box(&objects));
            let plan = plan(&inputs);
            black_box(diff::changes(&plan, &objects, &now))
        })
    });
    group.finish();
}

criterion_group!(benches, round);
criterion_main!(benches);
