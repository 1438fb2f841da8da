//! The component glue: WIT types to and from the plugin's logic.

use crate::{Config, Node};

wit_bindgen::generate!({ world: "announcer", path: "../../wit" });

use exports::herald::policy::announce::{Choice, Guest, Mode, Query};
use herald::policy::types::{IpAddress, TrafficPolicy};

struct Component;

export!(Component);

/// Each call runs in a fresh instance: allocate by bumping, never free.
#[global_allocator]
static ALLOC: herald_guest::Leak = herald_guest::Leak::new();

fn vip_bytes(ip: &IpAddress) -> Vec<u8> {
    match *ip {
        IpAddress::Ipv4(v) => v.to_be_bytes().to_vec(),
        IpAddress::Ipv6((hi, lo)) => ((u128::from(hi) << 64) | u128::from(lo))
            .to_be_bytes()
            .to_vec(),
    }
}

fn choice(n: &Node) -> Choice {
    Choice {
        node: n.name.clone(),
        weight: n.endpoints.max(1),
        local_pref: None,
        med: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
        as_path_prepend: None,
    }
}

impl Guest for Component {
    fn validate_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn announce(config: String, q: Query) -> Result<Vec<Choice>, String> {
        let config = Config::parse(&config)?;
        let local = q
            .services
            .iter()
            .any(|s| s.traffic_policy == TrafficPolicy::Local);
        // The query carries each node's zone label; another label is read
        // from the host on request.
        let default_label = config.zone_label == crate::ZONE_LABEL;
        let zones = &q.zones;
        let nodes: Vec<Node> = q
            .eligible
            .into_iter()
            .enumerate()
            .map(|(i, n)| Node {
                zone: if default_label {
                    n.zone
                        .and_then(|z| zones.get(z as usize))
                        .cloned()
                        .unwrap_or_default()
                } else {
                    herald::policy::nodes::label(i as u32, &config.zone_label).unwrap_or_default()
                },
                name: n.name,
                endpoints: n.endpoints,
            })
            .collect();
        let vip = vip_bytes(&q.vip);
        Ok(match q.mode {
            Mode::L2 => crate::l2_owner(&nodes, &vip, local)
                .map(choice)
                .into_iter()
                .collect(),
            Mode::Bgp => crate::bgp_nodes(&nodes, &vip, local, config.bgp_nodes_per_zone)
                .into_iter()
                .map(choice)
                .collect(),
        })
    }
}
