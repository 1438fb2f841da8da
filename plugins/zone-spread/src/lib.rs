//! `zone-spread`: an announcer plugin for Herald (world
//! `herald:policy/announcer`). L2 owners are spread evenly over zones
//! first, then over the nodes of a zone: the built-in policy hashes over
//! nodes, so a zone with more nodes owns more VIPs; here every zone with an
//! eligible node gets an equal share, whatever its size. For BGP it keeps
//! every eligible node, or at most `bgpNodesPerZone` per zone.
//!
//! `externalTrafficPolicy: Local` is respected: when any Service behind
//! the VIP is `Local`, only nodes with a ready endpoint are considered.
//! The logic is plain Rust, unit-tested natively; the component glue
//! exists only in the `wasm32` build.

use serde::Deserialize;

// The canonical-ABI glue wit-bindgen generates is unsafe code; it is
// confined to this module.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs)]
mod component;

/// The plugin's JSON config.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The node label naming the zone (default
    /// `topology.kubernetes.io/zone`). Nodes without it form one zone.
    #[serde(default = "default_zone_label")]
    pub zone_label: String,
    /// For BGP: at most this many nodes per zone announce a VIP (chosen by
    /// rendezvous hash); 0 (the default) keeps every eligible node.
    #[serde(default)]
    pub bgp_nodes_per_zone: u32,
}

/// The label Kubernetes names a node's zone with.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn default_zone_label() -> String {
    ZONE_LABEL.to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            zone_label: default_zone_label(),
            bgp_nodes_per_zone: 0,
        }
    }
}

impl Config {
    /// Parses the config JSON, saying what is wrong.
    pub fn parse(json: &str) -> Result<Config, String> {
        let c: Config =
            serde_json::from_str(json).map_err(|e| format!("zone-spread config: {e}"))?;
        if c.zone_label.is_empty() {
            return Err("zone-spread config: zoneLabel must not be empty".to_owned());
        }
        Ok(c)
    }
}

/// A node as the plugin sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its zone ("" when unlabelled).
    pub zone: String,
    /// Ready endpoints of the VIP's Services on it.
    pub endpoints: u32,
}

/// The rendezvous score of `key` for the VIP (given as its bytes):
/// [`herald_guest::fnv_mix`] of the key, a zero byte and the VIP.
pub fn score(key: &str, vip: &[u8]) -> u64 {
    prefixed_score("", key, vip)
}

/// [`score`] of `prefix` followed by `key`, without building the string
/// (this runs once per node in every call).
fn prefixed_score(prefix: &str, key: &str, vip: &[u8]) -> u64 {
    let bytes = prefix.bytes().chain(key.bytes()).chain([0]);
    herald_guest::fnv_mix(bytes.chain(vip.iter().copied()))
}

/// The nodes that may announce: all, or with `local` those with endpoints.
fn candidates(nodes: &[Node], local: bool) -> Vec<&Node> {
    nodes.iter().filter(|n| !local || n.endpoints > 0).collect()
}

/// The L2 owner: the zone with the highest score for the VIP (among zones
/// with a candidate), then that zone's node with the highest score.
pub fn l2_owner<'n>(nodes: &'n [Node], vip: &[u8], local: bool) -> Option<&'n Node> {
    let nodes = candidates(nodes, local);
    let mut zones: Vec<&str> = Vec::new();
    for n in &nodes {
        if !zones.contains(&n.zone.as_str()) {
            zones.push(&n.zone);
        }
    }
    let zone = zones
        .into_iter()
        .max_by_key(|z| (prefixed_score("zone:", z, vip), std::cmp::Reverse(*z)))?;
    nodes
        .into_iter()
        .filter(|n| n.zone == zone)
        .max_by_key(|n| (score(&n.name, vip), std::cmp::Reverse(n.name.as_str())))
}

/// The BGP speakers: every candidate, or the `per_zone` best-scoring of
/// each zone; sorted by name.
pub fn bgp_nodes<'n>(nodes: &'n [Node], vip: &[u8], local: bool, per_zone: u32) -> Vec<&'n Node> {
    let mut nodes = candidates(nodes, local);
    if per_zone > 0 {
        nodes.sort_by_key(|n| {
            (
                n.zone.clone(),
                std::cmp::Reverse(score(&n.name, vip)),
                n.name.clone(),
            )
        });
        let mut kept = Vec::new();
        let mut zone: Option<&str> = None;
        let mut count = 0;
        for n in nodes {
            if zone != Some(n.zone.as_str()) {
                zone = Some(n.zone.as_str());
                count = 0;
            }
            if count < per_zone {
                kept.push(n);
                count += 1;
            }
        }
        nodes = kept;
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn prefixed_score_is_the_score_of_the_joined_string() {
        // Placements must not move when the hashing is done without
        // building "zone:<name>".
        for z in ["", "zone-a", "eu-west-1b"] {
            let vip = [198, 51, 100, 7];
            assert_eq!(
                prefixed_score("zone:", z, &vip),
                score(&format!("zone:{z}"), &vip)
            );
        }
    }

    fn node(name: &str, zone: &str, endpoints: u32) -> Node {
        Node {
            name: name.into(),
            zone: zone.into(),
            endpoints,
        }
    }

    #[test]
    fn owners_spread_evenly_over_zones_not_nodes() {
        // Zone a has 8 nodes, zone b 2: hashing over nodes would give b a
        // fifth of the VIPs; spreading over zones gives it half.
        let mut nodes: Vec<Node> = (0..8).map(|i| node(&format!("a{i}"), "a", 1)).collect();
        nodes.push(node("b0", "b", 1));
        nodes.push(node("b1", "b", 1));
        let mut per_zone: BTreeMap<String, u32> = BTreeMap::new();
        let mut per_node: BTreeMap<String, u32> = BTreeMap::new();
        for i in 0..2000u32 {
            let vip = i.to_be_bytes();
            let owner = l2_owner(&nodes, &vip, false).unwrap();
            *per_zone.entry(owner.zone.clone()).or_default() += 1;
            *per_node.entry(owner.name.clone()).or_default() += 1;
        }
        let b = per_zone["b"];
        assert!((850..=1150).contains(&b), "{per_zone:?}");
        // Within a zone, every node gets a share.
        assert_eq!(per_node.len(), 10, "{per_node:?}");
        for (n, c) in &per_node {
            let expect = if n.starts_with('a') { 125 } else { 500 };
            assert!(c.abs_diff(expect) < expect / 2, "{n}: {c} {per_node:?}");
        }
    }

    #[test]
    fn local_traffic_policy_keeps_to_nodes_with_endpoints() {
        let nodes = vec![node("a0", "a", 0), node("a1", "a", 0), node("b0", "b", 3)];
        for i in 0..100u32 {
            let owner = l2_owner(&nodes, &i.to_be_bytes(), true).unwrap();
            assert_eq!(owner.name, "b0");
        }
        let bgp = bgp_nodes(&nodes, &[1, 2, 3, 4], true, 0);
        assert_eq!(
            bgp.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["b0"]
        );
        assert!(l2_owner(&[node("a0", "a", 0)], &[1], true).is_none());
    }

    #[test]
    fn bgp_keeps_all_or_a_few_per_zone() {
        let nodes: Vec<Node> = (0..6)
            .map(|i| node(&format!("n{i}"), if i < 3 { "a" } else { "b" }, 1))
            .collect();
        assert_eq!(bgp_nodes(&nodes, &[9], false, 0).len(), 6);
        let two = bgp_nodes(&nodes, &[9], false, 2);
        assert_eq!(two.len(), 4);
        assert_eq!(two.iter().filter(|n| n.zone == "a").count(), 2);
    }

    #[test]
    fn owner_is_stable_when_another_zone_loses_a_node() {
        let nodes = vec![
            node("a0", "a", 1),
            node("a1", "a", 1),
            node("b0", "b", 1),
            node("b1", "b", 1),
        ];
        for i in 0..200u32 {
            let vip = i.to_be_bytes();
            let owner = l2_owner(&nodes, &vip, false).unwrap().clone();
            let fewer: Vec<Node> = nodes
                .iter()
                .filter(|n| n.zone == owner.zone || n.name != "b1" && n.name != "a1")
                .cloned()
                .collect();
            assert_eq!(l2_owner(&fewer, &vip, false).unwrap().name, owner.name);
        }
    }

    #[test]
    fn config_defaults_and_errors() {
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
        let c = Config::parse(r#"{"zoneLabel":"rack","bgpNodesPerZone":2}"#).unwrap();
        assert_eq!((c.zone_label.as_str(), c.bgp_nodes_per_zone), ("rack", 2));
        assert!(
            Config::parse(r#"{"zoneLabel":""}"#)
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            Config::parse(r#"{"zone":"x"}"#)
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
