//! Core values to WIT values and back, and the checks on an announcer's
//! answer. Conversions copy only what the WIT types carry.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use herald_core::Family;
use herald_core::bgp::{Community, LargeCommunity};
use herald_core::cni::{Action, Pod};
use herald_core::policy::{AnnounceQuery, Candidate, Mode, NodeChoice};
use herald_core::selector::Labels;
use herald_core::service::{Service, TrafficPolicy};
use wasmtime::component::{ComponentType, Lower};

use crate::bindings::allocator::herald::policy::types as wit;
use crate::bindings::announcer::exports::herald::policy::announce as wa;
use crate::bindings::cni::exports::herald::policy::chain as wc;

pub(crate) fn ip_to_wit(ip: IpAddr) -> wit::IpAddress {
    match ip {
        IpAddr::V4(a) => wit::IpAddress::Ipv4(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            wit::IpAddress::Ipv6(((v >> 64) as u64, v as u64))
        }
    }
}

pub(crate) fn ip_from_wit(ip: wit::IpAddress) -> IpAddr {
    match ip {
        wit::IpAddress::Ipv4(v) => IpAddr::V4(Ipv4Addr::from(v)),
        wit::IpAddress::Ipv6((hi, lo)) => {
            IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)))
        }
    }
}

pub(crate) fn pairs(labels: &Labels) -> Vec<wit::Pair> {
    labels
        .iter()
        .map(|(k, v)| wit::Pair {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

pub(crate) fn service_to_wit(s: &Service) -> wit::Service {
    wit::Service {
        namespace: s.id.namespace.clone(),
        name: s.id.name.clone(),
        labels: pairs(&s.labels),
        annotations: pairs(&s.annotations),
        ports: s
            .ports
            .iter()
            .map(|p| wit::Port {
                port: p.port,
                protocol: p.protocol.clone(),
            })
            .collect(),
        traffic_policy: match s.traffic_policy {
            TrafficPolicy::Cluster => wit::TrafficPolicy::Cluster,
            TrafficPolicy::Local => wit::TrafficPolicy::Local,
        },
        families: s
            .families
            .iter()
            .map(|f| match f {
                Family::IPv4 => wit::Family::Ipv4,
                Family::IPv6 => wit::Family::Ipv6,
            })
            .collect(),
        sharing_key: s.sharing_key.clone(),
    }
}

/// `types.node`, borrowing the name from the core's node: what the host
/// lowers into the plugin without copying it first.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct NodeRef<'a> {
    name: &'a str,
    zone: Option<u32>,
    ready: bool,
    endpoints: u32,
}

/// `announce.query`, borrowing node names and zones.
#[derive(ComponentType, Lower)]
#[component(record)]
pub(crate) struct QueryRef<'a> {
    vip: wit::IpAddress,
    mode: wa::Mode,
    services: Vec<wit::Service>,
    eligible: Vec<NodeRef<'a>>,
    zones: Vec<&'a str>,
}

/// The query as WIT values, and the labels of its eligible nodes in the
/// same order (read by the plugin on request, through `nodes`).
pub(crate) fn query_to_wit<'a>(q: &'a AnnounceQuery<'_>) -> (QueryRef<'a>, Vec<Arc<Labels>>) {
    let mut sorted: Vec<&Candidate<'_>> = q.eligible.iter().collect();
    sorted.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    let mut zones: Vec<&str> = Vec::new();
    let mut labels = Vec::with_capacity(sorted.len());
    let eligible = sorted
        .into_iter()
        .map(|c| {
            labels.push(c.node.labels.clone());
            let zone = c.node.zone().map(|z| {
                let i = zones
                    .iter()
                    .position(|&known| known == z)
                    .unwrap_or_else(|| {
                        zones.push(z);
                        zones.len() - 1
                    });
                i as u32
            });
            NodeRef {
                name: &c.node.name,
                zone,
                ready: c.node.ready,
                endpoints: c.endpoints,
            }
        })
        .collect();
    let query = QueryRef {
        vip: ip_to_wit(q.vip),
        mode: match q.mode {
            Mode::Bgp => wa::Mode::Bgp,
            Mode::L2 => wa::Mode::L2,
        },
        services: q.services.iter().map(|s| service_to_wit(s)).collect(),
        eligible,
        zones,
    };
    (query, labels)
}

/// Checks an announcer's answer: only eligible nodes, each once; for L2
/// exactly one.
pub(crate) fn check_choices(
    q: &AnnounceQuery<'_>,
    answer: Vec<wa::Choice>,
) -> Result<Vec<NodeChoice>, String> {
    if q.mode == Mode::L2 && answer.len() != 1 {
        return Err(format!(
            "named {} nodes as L2 owner of {}; exactly one must own it",
            answer.len(),
            q.vip
        ));
    }
    if answer.len() > q.eligible.len() {
        return Err(format!(
            "named {} nodes for {}; only {} are eligible",
            answer.len(),
            q.vip,
            q.eligible.len()
        ));
    }
    let eligible: BTreeSet<&str> = q.eligible.iter().map(|c| c.node.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(answer.len());
    for c in answer {
        if !eligible.contains(c.node.as_str()) {
            return Err(format!(
                "named node {:?} for {}, which is not one of the {} eligible nodes",
                truncate_name(&c.node),
                q.vip,
                eligible.len()
            ));
        }
        if !seen.insert(c.node.clone()) {
            return Err(format!("named node {:?} twice for {}", c.node, q.vip));
        }
        herald_core::bgp::check_community_counts(c.communities.len(), c.large_communities.len())
            .map_err(|e| format!("node {:?} for {}: {e}", truncate_name(&c.node), q.vip))?;
        out.push(NodeChoice {
            node: c.node,
            weight: c.weight,
            local_pref: c.local_pref,
            med: c.med,
            communities: c
                .communities
                .iter()
                .map(|c| Community(u32::from(c.asn) << 16 | u32::from(c.value)))
                .collect(),
            large_communities: c
                .large_communities
                .iter()
                .map(|l| LargeCommunity {
                    global_administrator: l.global,
                    local_data_1: l.local1,
                    local_data_2: l.local2,
                })
                .collect(),
            as_path_prepend: c.as_path_prepend,
        });
    }
    Ok(out)
}

/// A node name from a plugin, cut for a message (a hostile plugin may send
/// megabytes).
fn truncate_name(name: &str) -> String {
    name.chars().take(64).collect()
}

pub(crate) fn pod_to_wit(p: &Pod) -> wc::Pod {
    wc::Pod {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        interface: p.interface.clone(),
        addresses: p.addresses.iter().copied().map(ip_to_wit).collect(),
        services: p
            .services
            .iter()
            .map(|(s, vips)| wc::ServiceVips {
                service: service_to_wit(s),
                vips: vips.iter().copied().map(ip_to_wit).collect(),
            })
            .collect(),
    }
}

pub(crate) fn action_from_wit(a: wc::Action) -> Action {
    match a {
        wc::Action::AddAddress(a) => Action::AddAddress {
            interface: a.interface,
            address: ip_from_wit(a.address),
            prefix_len: a.prefix_len,
        },
        wc::Action::SetSysctl(s) => Action::SetSysctl {
            key: s.key,
            value: s.value,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_as_numbers() {
        for ip in ["198.51.100.7", "2001:db8::1", "0.0.0.0", "ffff::ffff"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_from_wit(ip_to_wit(ip)), ip);
        }
        assert!(matches!(
            ip_to_wit("198.51.100.7".parse().unwrap()),
            wit::IpAddress::Ipv4(0xc633_6407)
        ));
    }

    #[test]
    fn an_answer_with_more_communities_than_an_update_holds_is_refused() {
        let node = herald_core::node::Node {
            name: "n1".into(),
            labels: Arc::new(Labels::new()),
            ready: true,
            addresses: vec![],
        };
        let svc = Service::new("a", "web");
        let q = AnnounceQuery {
            vip: "198.51.100.1".parse().unwrap(),
            mode: Mode::Bgp,
            services: vec![&svc],
            eligible: vec![Candidate {
                node: &node,
                endpoints: 1,
            }],
        };
        let choice = |n: usize| wa::Choice {
            node: "n1".into(),
            weight: 1,
            local_pref: None,
            med: None,
            communities: (0..n)
                .map(|i| wa::Community {
                    asn: 64512,
                    value: i as u16,
                })
                .collect(),
            large_communities: vec![],
            as_path_prepend: None,
        };
        let max = herald_core::bgp::MAX_COMMUNITIES;
        assert!(check_choices(&q, vec![choice(max)]).is_ok());
        let e = check_choices(&q, vec![choice(max + 1)]).unwrap_err();
        assert!(e.contains("\"n1\"") && e.contains("198.51.100.1"), "{e}");
    }
}
