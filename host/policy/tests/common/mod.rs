//! Shared by the integration tests and benchmarks: finding the built
//! plugins, and specs and inputs for them.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use herald_core::announce::{Candidate, Node, ZONE_LABEL};
use herald_core::plugin::{
    DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_TIMEOUT_MS, FailurePolicy, PluginSource, PolicyPluginSpec,
    World,
};
use sha2::{Digest, Sha256};

/// Where scripts/build-plugins.sh puts the components.
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("HERALD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"))
}

/// The bytes of a built plugin; a clear message when it was not built.
pub fn wasm(name: &str) -> Vec<u8> {
    let path = plugin_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first: ./scripts/build-plugins.sh",
            path.display()
        )
    })
}

/// A spec for `bytes` (its digest), with default limits.
pub fn spec(world: World, name: &str, bytes: &[u8], config: &str) -> PolicyPluginSpec {
    PolicyPluginSpec {
        world,
        source: PluginSource::File(PathBuf::from(format!("{name}.wasm"))),
        sha256: Sha256::digest(bytes).into(),
        config_json: config.to_owned(),
        failure_policy: FailurePolicy::Fallback,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        memory_limit_mib: DEFAULT_MEMORY_LIMIT_MIB,
    }
}

/// `n` ready nodes `node-00`…, in `zones` zones round-robin (`zone-a`…).
pub fn nodes(n: usize, zones: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let mut labels = BTreeMap::new();
            labels.insert(
                ZONE_LABEL.to_owned(),
                format!("zone-{}", (b'a' + (i % zones) as u8) as char),
            );
            Node {
                name: format!("node-{i:02}"),
                labels: std::sync::Arc::new(labels),
                ready: true,
                addresses: vec![IpAddr::from([192, 0, 2, i as u8 + 1])],
            }
        })
        .collect()
}

/// Candidates from nodes, with `endpoints(i)` ready endpoints each.
pub fn candidates(nodes: &[Node], endpoints: impl Fn(usize) -> u32) -> Vec<Candidate<'_>> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| Candidate {
            node,
            endpoints: endpoints(i),
        })
        .collect()
}
