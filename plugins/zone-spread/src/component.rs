//! The component glue: WIT types to and from the plugin's logic.

use crate::{Config, Node};

wit_bindgen::generate!({ world: "announcer", path: "../../wit" });

use exports::herald::policy::announce::{Choice, Guest, Mode, Query};
use herald::policy::types::{IpAddress, TrafficPolicy};

struct Component;

export!(Component);

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
        let nodes: Vec<Node> = q
            .eligible
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                zone: n
                    .labels
                    .iter()
                    .find(|p| p.key == config.zone_label)
                    .map(|p| p.value.clone())
                    .unwrap_or_default(),
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
