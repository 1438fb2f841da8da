//! Criterion benchmarks of announcement planning (results in
//! BENCHMARKS.md), each at two sizes a factor 4 apart: the cost must grow
//! linearly (issue 15's scaling audit):
//! (a) 10 VIPs announced by BGP from 500 and 2,000 nodes to one peer
//!     (every chosen node was looked up among the eligible ones in turn);
//! (b) 10 VIPs from 10 nodes to 250 and 1,000 peers that the advertisement
//!     lists by name (each peer was looked up in the list per VIP and node);
//! (c) one node's routes of (b) split by peer, as the BGP speaker does on
//!     every change (it filtered the whole plan once per peer).

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use herald_core::announce::{AnnounceInput, Announcements, announce};
use herald_core::bgp::{Asn, BgpAdvertisement, BgpPeer};
use herald_core::node::{Endpoints, Node};
use herald_core::policy::BUILT_IN;
use herald_core::{Config, PoolDecl, PoolSpec, Service};

/// Nodes, peers and one BGP advertisement of 10 VIPs.
struct World {
    pools: Vec<PoolDecl>,
    services: Vec<Service>,
    nodes: Vec<Node>,
    alive: BTreeSet<String>,
    endpoints: Endpoints,
    peers: Vec<BgpPeer>,
    bgp: Vec<BgpAdvertisement>,
}

impl World {
    /// `nodes` nodes and `peers` peers; with `listed`, the advertisement
    /// names every peer (last first), otherwise it names none (all).
    fn new(nodes: usize, peers: usize, listed: bool) -> World {
        let nodes: Vec<Node> = (0..nodes)
            .map(|i| Node {
                name: format!("node-{i:05}"),
                labels: Arc::default(),
                ready: true,
                addresses: Vec::new(),
            })
            .collect();
        let peers: Vec<BgpPeer> = (0..peers)
            .map(|i| {
                BgpPeer::new(
                    &format!("peer-{i:05}"),
                    "192.0.2.1".parse().unwrap(),
                    Asn::new(65001).unwrap(),
                    Asn::new(64512).unwrap(),
                )
            })
            .collect();
        let services = (0..10)
            .map(|i| {
                let mut s = Service::new("bench", &format!("svc-{i}"));
                s.status_ips = vec![format!("198.51.100.{}", i + 1).parse().unwrap()];
                s
            })
            .collect();
        let adv = BgpAdvertisement {
            name: "all".to_owned(),
            ip_pools: Vec::new(),
            node_selector: Default::default(),
            peers: if listed {
                peers.iter().rev().map(|p| p.name.clone()).collect()
            } else {
                Vec::new()
            },
            communities: Vec::new(),
            large_communities: Vec::new(),
            local_pref: None,
            med: None,
            aggregation_length: 32,
            aggregation_length_v6: 128,
            weighted: false,
            announcer_plugin: None,
            as_path_prepend: 0,
        };
        World {
            pools: vec![PoolDecl {
                name: "pool".to_owned(),
                created: Some(0),
                spec: Ok(PoolSpec::new(vec!["198.51.100.0/24".parse().unwrap()])),
            }],
            services,
            alive: nodes.iter().map(|n| n.name.clone()).collect(),
            nodes,
            endpoints: Endpoints::new(),
            peers,
            bgp: vec![adv],
        }
    }

    fn plan(&self) -> Announcements {
        announce(
            &AnnounceInput {
                pools: &self.pools,
                services: &self.services,
                nodes: &self.nodes,
                alive: &self.alive,
                endpoints: &self.endpoints,
                peers: &self.peers,
                bgp: &self.bgp,
                l2: &[],
            },
            &Config::default(),
            &BUILT_IN,
        )
    }
}

/// Benchmark (a).
fn many_nodes(c: &mut Criterion) {
    let mut group = c.benchmark_group("announce_10_vips_from_nodes");
    group.sample_size(10);
    for n in [500, 2_000] {
        let world = World::new(n, 1, false);
        group.bench_function(format!("{n}_nodes"), |b| {
            b.iter(|| {
                let plan = world.plan();
                assert_eq!(plan.bgp.len(), 10 * n);
                black_box(plan)
            })
        });
    }
    group.finish();
}

/// Benchmark (b).
fn many_peers(c: &mut Criterion) {
    let mut group = c.benchmark_group("announce_10_vips_from_10_nodes_to_listed_peers");
    group.sample_size(10);
    for n in [250, 1_000] {
        let world = World::new(10, n, true);
        group.bench_function(format!("{n}_peers"), |b| {
            b.iter(|| {
                let plan = world.plan();
                assert_eq!(plan.bgp.len(), 100 * n);
                black_box(plan)
            })
        });
    }
    group.finish();
}

/// Benchmark (c).
fn routes_by_peer(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_nodes_routes_by_peer");
    group.sample_size(10);
    for n in [250, 1_000] {
        let plan = World::new(10, n, true).plan();
        group.bench_function(format!("{n}_peers"), |b| {
            b.iter(|| {
                let by_peer = black_box(&plan).routes_by_peer("node-00000");
                assert_eq!(by_peer.len(), n);
                black_box(by_peer.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, many_nodes, many_peers, routes_by_peer);
criterion_main!(benches);
