//! The component glue: WIT types to and from the plugin's logic.

use crate::Config;

wit_bindgen::generate!({ world: "announcer", path: "../../wit" });

use exports::herald::policy::announce::{Choice, Community, Guest, LargeCommunity, Mode, Query};

struct Component;

export!(Component);

/// Each call runs in a fresh instance: allocate by bumping, never free.
#[global_allocator]
static ALLOC: herald_guest::Leak = herald_guest::Leak::new();

impl Guest for Component {
    fn validate_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn announce(config: String, q: Query) -> Result<Vec<Choice>, String> {
        let config = Config::parse(&config)?;
        let annotations: Vec<Vec<(String, String)>> = q
            .services
            .iter()
            .map(|s| {
                s.annotations
                    .iter()
                    .map(|p| (p.key.clone(), p.value.clone()))
                    .collect()
            })
            .collect();
        let attrs = crate::attributes(&config.annotation_prefix, &annotations)?;
        let nodes: Vec<(String, u32)> = q
            .eligible
            .into_iter()
            .map(|n| (n.name, n.endpoints))
            .collect();
        let choice = |node: String, weight: u32| Choice {
            node,
            weight,
            local_pref: attrs.local_pref,
            med: attrs.med,
            communities: attrs
                .communities
                .iter()
                .map(|&(asn, value)| Community { asn, value })
                .collect(),
            large_communities: attrs
                .large_communities
                .iter()
                .map(|&(global, local1, local2)| LargeCommunity {
                    global,
                    local1,
                    local2,
                })
                .collect(),
            as_path_prepend: None,
        };
        Ok(match q.mode {
            Mode::L2 => crate::l2_owner(&nodes)
                .map(|n| choice(n.to_owned(), 1))
                .into_iter()
                .collect(),
            Mode::Bgp => crate::weights(&config, &nodes)
                .into_iter()
                .map(|(n, w)| choice(n, w))
                .collect(),
        })
    }
}
