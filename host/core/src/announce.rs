//! Announcement planning (DESIGN.md §5): which nodes announce which VIP, by
//! BGP (every eligible node, with the advertisement's attributes and a
//! weight) or on the local segment (exactly one owner per VIP). Pure: the
//! BGP speaker and the L2 announcer drive it.
//!
//! Every speaker computes the same plan from the same inputs, so speakers
//! need no leader, only a shared view of which speakers are alive.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use crate::addr::{Family, value};
use crate::bgp::{BgpAdvertisement, BgpPeer, RouteAttributes};
use crate::config::{Config, ConfigError, qualifies};
use crate::l2::{InterfaceName, L2Advertisement};
use crate::node::{Endpoints, Node};
use crate::plugin::FailurePolicy;
use crate::policy::{
    AnnounceQuery, AnnouncerPolicy, Candidate, Failures, Mode, NodeChoice, Policies, PolicyError,
};
use crate::pool::{PoolDecl, PoolIndex};
use crate::selector::LabelSelector;
use crate::service::{Service, TrafficPolicy};

// Kept at their old paths for the herald CLI's `plan`, `plugin` and
// `speaker` modules while they are being rewritten; other code imports
// them from `policy` and `node`.

/// Everything announcement planning looks at.
#[derive(Clone, Copy, Debug)]
pub struct AnnounceInput<'a> {
    /// IPPools: a VIP is announced by the advertisements naming its pool.
    pub pools: &'a [PoolDecl],
    /// Services; their `status_ips` are the VIPs.
    pub services: &'a [Service],
    /// Nodes.
    pub nodes: &'a [Node],
    /// Names of the nodes whose speaker is alive (membership).
    pub alive: &'a BTreeSet<String>,
    /// Ready endpoints per Service and node.
    pub endpoints: &'a Endpoints,
    /// BGP peers.
    pub peers: &'a [BgpPeer],
    /// BGP advertisements.
    pub bgp: &'a [BgpAdvertisement],
    /// L2 advertisements.
    pub l2: &'a [L2Advertisement],
}

/// One route a node advertises to one peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BgpRoute {
    /// The advertising node.
    pub node: String,
    /// The `BGPPeer` it goes to.
    pub peer: String,
    /// The prefix (the VIP masked to the aggregation length).
    pub prefix: IpAddr,
    /// The prefix length.
    pub prefix_len: u8,
    /// Its path attributes, as the speaker's RIB-out takes them.
    pub attributes: RouteAttributes,
    /// The `BGPAdvertisement` it comes from.
    pub advertisement: String,
}

/// The node that answers ARP/NDP for a VIP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct L2Owner {
    /// The VIP.
    pub vip: IpAddr,
    /// The owning node.
    pub node: String,
    /// The interfaces it answers on (empty: chosen by the announcer).
    pub interfaces: Vec<InterfaceName>,
    /// The `L2Advertisement` it comes from.
    pub advertisement: String,
}

/// The announcement plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announcements {
    /// Routes, sorted by node, peer, prefix.
    pub bgp: Vec<BgpRoute>,
    /// L2 owners, sorted by VIP.
    pub l2: Vec<L2Owner>,
    /// Problems met (plugin failures, plugins not loaded).
    pub errors: Vec<ConfigError>,
}

impl Announcements {
    /// The routes one node advertises.
    pub fn routes_of<'s>(&'s self, node: &'s str) -> impl Iterator<Item = &'s BgpRoute> + 's {
        self.bgp.iter().filter(move |r| r.node == node)
    }

    /// The routes one node advertises, by peer: one pass over the plan,
    /// for a speaker that opens a session per peer (filtering the plan
    /// once per peer cost peers × routes, issue 15).
    pub fn routes_by_peer<'s>(&'s self, node: &str) -> BTreeMap<&'s str, Vec<&'s BgpRoute>> {
        let mut out: BTreeMap<&str, Vec<&BgpRoute>> = BTreeMap::new();
        for r in self.bgp.iter().filter(|r| r.node == node) {
            out.entry(r.peer.as_str()).or_default().push(r);
        }
        out
    }

    /// The VIPs one node owns on the local segment.
    pub fn owned_by<'s>(&'s self, node: &'s str) -> impl Iterator<Item = &'s L2Owner> + 's {
        self.l2.iter().filter(move |o| o.node == node)
    }
}

/// The built-in announcer: for L2 the eligible node with the highest
/// rendezvous hash of (node, VIP); for BGP every eligible node, weighted by
/// its ready endpoints (at least 1: a node without endpoints still forwards
/// under `externalTrafficPolicy: Cluster`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Rendezvous;

impl AnnouncerPolicy for Rendezvous {
    fn announce(&self, query: &AnnounceQuery<'_>) -> Result<Vec<NodeChoice>, PolicyError> {
        let choice = |c: &Candidate<'_>| NodeChoice {
            node: c.node.name.clone(),
            weight: c.endpoints.max(1),
            ..NodeChoice::default()
        };
        Ok(match query.mode {
            Mode::Bgp => query.eligible.iter().map(choice).collect(),
            Mode::L2 => query
                .eligible
                .iter()
                .max_by_key(|c| {
                    (
                        rendezvous_score(&c.node.name, query.vip),
                        std::cmp::Reverse(&c.node.name),
                    )
                })
                .map(choice)
                .into_iter()
                .collect(),
        })
    }
}

/// The rendezvous (highest random weight) score of a node for a VIP: FNV-1a
/// over the node name, a zero byte and the address bytes, then the
/// SplitMix64 finalizer to spread FNV's weak low bits. Fixed forever: every
/// speaker of every version must compute the same owner.
pub fn rendezvous_score(node: &str, vip: IpAddr) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    let octets: Vec<u8> = match vip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    for &b in node.as_bytes().iter().chain(&[0u8]).chain(&octets) {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A VIP and the Services sharing it.
struct Vip<'a> {
    address: IpAddr,
    pool: &'a str,
    services: Vec<&'a Service>,
}

/// What planning met: objects it could not use as asked, and plugin
/// failures (reported once per plugin).
#[derive(Default)]
struct Problems {
    errors: Vec<ConfigError>,
    failures: Failures,
}

/// Routes being planned, by (node, peer, prefix, prefix length): one route
/// per key, however many VIPs aggregation folds into it. The names are
/// borrowed from the input: a key is made for every route planned.
type Routes<'a> = BTreeMap<(&'a str, &'a str, IpAddr, u8), BgpRoute>;

/// Plans every announcement of `input`.
pub fn announce<'a>(
    input: &AnnounceInput<'a>,
    config: &Config,
    policies: &Policies<'_>,
) -> Announcements {
    let mut out = Announcements::default();
    let mut routes = Routes::new();
    let mut problems = Problems::default();
    // Each advertisement's peers, found once: not per VIP and node, which
    // cost peers × listed names each (issue 15).
    let peers: Vec<Vec<&'a BgpPeer>> = input
        .bgp
        .iter()
        .map(|adv| selected_peers(input.peers, adv))
        .collect();
    for vip in vips(input, config).values() {
        for (adv, peers) in input.bgp.iter().zip(&peers) {
            if covers(&adv.ip_pools, vip.pool) {
                bgp_routes(input, vip, adv, peers, policies, &mut routes, &mut problems);
            }
        }
        for adv in input.l2.iter().filter(|a| covers(&a.ip_pools, vip.pool)) {
            if let Some(owner) = l2_owner(input, vip, adv, policies, &mut problems) {
                out.l2.push(owner);
            }
        }
    }
    out.bgp = routes.into_values().collect();
    out.l2.sort();
    out.errors = problems.errors;
    out.errors.extend(problems.failures.into_errors());
    out.errors.sort();
    out.errors.dedup();
    out
}

/// The VIPs to announce, by address: the status addresses of qualifying
/// Services that lie in a valid pool, each with the Services sharing it.
fn vips<'a>(input: &AnnounceInput<'a>, config: &Config) -> BTreeMap<IpAddr, Vip<'a>> {
    let index = PoolIndex::new(input.pools);
    let mut vips: BTreeMap<IpAddr, Vip<'a>> = BTreeMap::new();
    for s in input.services {
        if !qualifies(s, config) {
            continue;
        }
        for &ip in &s.status_ips {
            let Some(pool) = index.pool_name(ip) else {
                continue;
            };
            vips.entry(ip)
                .or_insert_with(|| Vip {
                    address: ip,
                    pool,
                    services: Vec::new(),
                })
                .services
                .push(s);
        }
    }
    vips
}

/// The peers an advertisement selects (`peers`; empty: every one), in
/// the input's order.
fn selected_peers<'a>(peers: &'a [BgpPeer], adv: &BgpAdvertisement) -> Vec<&'a BgpPeer> {
    let named: HashSet<&str> = adv.peers.iter().map(String::as_str).collect();
    peers
        .iter()
        .filter(|p| named.is_empty() || named.contains(p.name.as_str()))
        .collect()
}

/// Plans the routes of one VIP by one BGP advertisement (which covers the
/// VIP's pool): every chosen node, to every peer the advertisement selects
/// (`peers`) that carries the VIP's family and whose node selector matches
/// the node.
fn bgp_routes<'a>(
    input: &AnnounceInput<'a>,
    vip: &Vip<'a>,
    adv: &BgpAdvertisement,
    peers: &[&'a BgpPeer],
    policies: &Policies<'_>,
    routes: &mut Routes<'a>,
    problems: &mut Problems,
) {
    let query = AnnounceQuery {
        vip: vip.address,
        mode: Mode::Bgp,
        services: vip.services.clone(),
        eligible: eligible(input, vip, &adv.node_selector),
    };
    let Some(choices) = decide(
        &query,
        adv.announcer_plugin.as_deref(),
        "BGPAdvertisement",
        &adv.name,
        policies,
        problems,
    ) else {
        return;
    };
    let family = Family::of(vip.address);
    let len = match family {
        Family::IPv4 => adv.aggregation_length,
        Family::IPv6 => adv.aggregation_length_v6,
    };
    let prefix = mask(vip.address, len);
    for choice in choices {
        let node = eligible_node(&query.eligible, &choice.node)
            .expect("decide checked the node is eligible")
            .node;
        let attributes = route_attributes(adv, &choice);
        // The advertisement's lists fit an UPDATE (the API checks them); a
        // plugin's additions may not: that node does not announce the VIP
        // by this advertisement, and the plan says why.
        if let Err(e) = attributes.check_community_counts() {
            problems.errors.push(ConfigError {
                kind: "BGPAdvertisement".to_owned(),
                name: adv.name.clone(),
                message: format!(
                    "{e} for {} on node {} (with its announcer plugin's); not announced there",
                    vip.address, node.name
                ),
            });
            continue;
        }
        for peer in peers {
            if !peer.families.contains(&family) || !peer.node_selector.matches(&node.labels) {
                continue;
            }
            fold(
                routes,
                (&node.name, &peer.name, prefix, len),
                BgpRoute {
                    node: node.name.clone(),
                    peer: peer.name.clone(),
                    prefix,
                    prefix_len: len,
                    attributes: attributes.clone(),
                    advertisement: adv.name.clone(),
                },
            );
        }
    }
}

/// The path attributes of a route: the advertisement's, with what the
/// announcer chose for the node added (communities) or overriding
/// (LOCAL_PREF, MED, prepends); the weight only when the advertisement is
/// weighted.
fn route_attributes(adv: &BgpAdvertisement, choice: &NodeChoice) -> RouteAttributes {
    let mut communities = adv.communities.clone();
    communities.extend(
        choice
            .communities
            .iter()
            .filter(|c| !adv.communities.contains(c)),
    );
    let mut large_communities = adv.large_communities.clone();
    large_communities.extend(
        choice
            .large_communities
            .iter()
            .filter(|c| !adv.large_communities.contains(c)),
    );
    RouteAttributes {
        communities,
        large_communities,
        local_pref: choice.local_pref.or(adv.local_pref),
        med: choice.med.or(adv.med),
        as_path_prepend: choice.as_path_prepend.unwrap_or(adv.as_path_prepend),
        weight: adv.weighted.then_some(choice.weight),
    }
}

/// Adds a route to the plan. Aggregation folds VIPs into one prefix: the
/// first advertisement (by name) of a prefix to a peer wins, and weights of
/// the VIPs it folds add up.
fn fold<'a>(routes: &mut Routes<'a>, key: (&'a str, &'a str, IpAddr, u8), route: BgpRoute) {
    let existing = match routes.entry(key) {
        Entry::Vacant(v) => {
            v.insert(route);
            return;
        }
        Entry::Occupied(o) => o.into_mut(),
    };
    if existing.advertisement == route.advertisement {
        if let (Some(w), Some(add)) = (existing.attributes.weight.as_mut(), route.attributes.weight)
        {
            *w = w.saturating_add(add);
        }
    } else if route.advertisement < existing.advertisement {
        *existing = route;
    }
}

/// The owner of one VIP by one L2 advertisement (which covers the VIP's
/// pool), if the announcer chose one.
fn l2_owner(
    input: &AnnounceInput<'_>,
    vip: &Vip<'_>,
    adv: &L2Advertisement,
    policies: &Policies<'_>,
    problems: &mut Problems,
) -> Option<L2Owner> {
    let query = AnnounceQuery {
        vip: vip.address,
        mode: Mode::L2,
        services: vip.services.clone(),
        eligible: eligible(input, vip, &adv.node_selector),
    };
    let choice = decide(
        &query,
        adv.announcer_plugin.as_deref(),
        "L2Advertisement",
        &adv.name,
        policies,
        problems,
    )?
    .into_iter()
    .next()?;
    Some(L2Owner {
        vip: vip.address,
        node: choice.node,
        interfaces: adv.interfaces.clone(),
        advertisement: adv.name.clone(),
    })
}

/// Whether an advertisement's `ipPools` covers the pool (empty: all).
fn covers(pools: &[String], pool: &str) -> bool {
    pools.is_empty() || pools.iter().any(|p| p == pool)
}

/// The eligible nodes for a VIP (DESIGN.md §5): the selector matches, the
/// speaker is alive, the node is Ready, and, with `externalTrafficPolicy:
/// Local`, it has a ready endpoint of every Service sharing the VIP.
fn eligible<'a>(
    input: &AnnounceInput<'a>,
    vip: &Vip<'_>,
    selector: &LabelSelector,
) -> Vec<Candidate<'a>> {
    let mut out: Vec<Candidate<'a>> = input
        .nodes
        .iter()
        .filter(|n| n.ready && input.alive.contains(&n.name) && selector.matches(&n.labels))
        .filter_map(|n| {
            let mut total = 0u32;
            for s in &vip.services {
                let here = input
                    .endpoints
                    .get(&s.id)
                    .and_then(|by_node| by_node.get(&n.name))
                    .copied()
                    .unwrap_or(0);
                if s.traffic_policy == TrafficPolicy::Local && here == 0 {
                    return None;
                }
                total = total.saturating_add(here);
            }
            Some(Candidate {
                node: n,
                endpoints: total,
            })
        })
        .collect();
    out.sort_by(|a, b| a.node.name.cmp(&b.node.name));
    out.dedup_by(|a, b| a.node.name == b.node.name);
    out
}

/// The eligible node named `node`, found by halving (the list is sorted by
/// name): looking each chosen node up in turn cost nodes² per VIP, as BGP
/// chooses every eligible node (issue 15).
fn eligible_node<'q, 'a>(eligible: &'q [Candidate<'a>], node: &str) -> Option<&'q Candidate<'a>> {
    eligible
        .binary_search_by(|c| c.node.name.as_str().cmp(node))
        .ok()
        .map(|i| &eligible[i])
}

/// Asks the advertisement's announcer (a plugin, or the built-in one) and
/// checks the answer. `None`: no decision (nothing is announced).
fn decide(
    query: &AnnounceQuery<'_>,
    plugin: Option<&str>,
    kind: &str,
    name: &str,
    policies: &Policies<'_>,
    problems: &mut Problems,
) -> Option<Vec<NodeChoice>> {
    if query.eligible.is_empty() {
        return None;
    }
    let built_in = || Rendezvous.announce(query).ok();
    let Some(plugin_name) = plugin else {
        return built_in();
    };
    let Some(loaded) = policies.announcers.get(plugin_name) else {
        problems.errors.push(ConfigError {
            kind: kind.to_owned(),
            name: name.to_owned(),
            message: format!(
                "announcerPlugin {plugin_name:?} is not loaded; the built-in policy decides"
            ),
        });
        return built_in();
    };
    let answer = loaded.policy.announce(query).and_then(|choices| {
        check(query, &choices).map_err(|message| PolicyError {
            plugin: plugin_name.to_owned(),
            message,
        })?;
        Ok(choices)
    });
    match answer {
        Ok(choices) => Some(choices),
        Err(e) => {
            let then = match loaded.failure_policy {
                FailurePolicy::Fallback => "the built-in policy decided",
                FailurePolicy::Fail => "nothing was announced (failurePolicy Fail)",
            };
            // Reported under the name the advertisement uses.
            let e = PolicyError {
                plugin: plugin_name.to_owned(),
                ..e
            };
            problems
                .failures
                .record(e, &format_args!("VIP {}", query.vip), then);
            match loaded.failure_policy {
                FailurePolicy::Fallback => built_in(),
                FailurePolicy::Fail => None,
            }
        }
    }
}

/// Checks an announcer's answer: only eligible nodes, each once; for L2
/// exactly one.
fn check(query: &AnnounceQuery<'_>, choices: &[NodeChoice]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for c in choices {
        if eligible_node(&query.eligible, &c.node).is_none() {
            return Err(format!(
                "named node {:?}, which is unknown or not eligible",
                c.node
            ));
        }
        if !seen.insert(&c.node) {
            return Err(format!("named node {:?} twice", c.node));
        }
    }
    if query.mode == Mode::L2 && choices.len() != 1 {
        return Err(format!(
            "an L2 announcement needs exactly one node, not {}",
            choices.len()
        ));
    }
    Ok(())
}

/// `ip` with the bits past `len` cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    let family = Family::of(ip);
    let bits: u32 = match family {
        Family::IPv4 => 32,
        Family::IPv6 => 128,
    };
    let host_bits = bits - u32::from(len).min(bits);
    let keep = if host_bits >= 128 {
        0
    } else {
        u128::MAX << host_bits
    };
    family.addr(value(ip) & keep & family.max_value())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::bgp::Asn;
    use crate::node::ZONE_LABEL;
    use crate::plugin::FailurePolicy;
    use crate::policy::Plugin;
    use crate::pool::PoolSpec;
    use crate::selector::Labels;
    use crate::service::ServiceRef;

    fn node(name: &str, zone: &str) -> Node {
        Node {
            name: name.into(),
            labels: Arc::new(Labels::from([(ZONE_LABEL.to_owned(), zone.to_owned())])),
            ready: true,
            addresses: vec![],
        }
    }

    fn service(name: &str, ips: &[&str]) -> Service {
        let mut s = Service::new("a", name);
        s.status_ips = ips.iter().map(|i| i.parse().unwrap()).collect();
        s
    }

    fn pools() -> Vec<PoolDecl> {
        vec![PoolDecl {
            name: "p".into(),
            created: None,
            spec: Ok(PoolSpec::new(vec![
                "198.51.100.0/24".parse().unwrap(),
                "2001:db8::/120".parse().unwrap(),
            ])),
        }]
    }

    fn peer(name: &str) -> BgpPeer {
        BgpPeer::new(
            name,
            "192.0.2.1".parse().unwrap(),
            Asn::new(65001).unwrap(),
            Asn::new(4_200_000_001).unwrap(),
        )
    }

    fn bgp_adv(name: &str) -> BgpAdvertisement {
        BgpAdvertisement {
            name: name.into(),
            ip_pools: vec![],
            node_selector: Default::default(),
            peers: vec![],
            communities: vec!["64512:100".parse().unwrap()],
            large_communities: vec![],
            local_pref: None,
            med: Some(10),
            aggregation_length: 32,
            aggregation_length_v6: 128,
            weighted: true,
            announcer_plugin: None,
            as_path_prepend: 0,
        }
    }

    fn l2_adv() -> L2Advertisement {
        L2Advertisement {
            name: "l2".into(),
            ip_pools: vec![],
            node_selector: Default::default(),
            interfaces: vec![],
            announcer_plugin: None,
        }
    }

    struct World {
        pools: Vec<PoolDecl>,
        services: Vec<Service>,
        nodes: Vec<Node>,
        alive: BTreeSet<String>,
        endpoints: Endpoints,
        peers: Vec<BgpPeer>,
        bgp: Vec<BgpAdvertisement>,
        l2: Vec<L2Advertisement>,
    }

    impl World {
        fn new(services: Vec<Service>) -> World {
            let nodes = vec![node("n1", "z1"), node("n2", "z1"), node("n3", "z2")];
            World {
                alive: nodes.iter().map(|n| n.name.clone()).collect(),
                pools: pools(),
                services,
                nodes,
                endpoints: Endpoints::new(),
                peers: vec![peer("tor")],
                bgp: vec![],
                l2: vec![l2_adv()],
            }
        }

        fn plan(&self, policies: &Policies<'_>) -> Announcements {
            announce(
                &AnnounceInput {
                    pools: &self.pools,
                    services: &self.services,
                    nodes: &self.nodes,
                    alive: &self.alive,
                    endpoints: &self.endpoints,
                    peers: &self.peers,
                    bgp: &self.bgp,
                    l2: &self.l2,
                },
                &Config::default(),
                policies,
            )
        }
    }

    fn owner(a: &Announcements, vip: &str) -> Option<String> {
        let vip: IpAddr = vip.parse().unwrap();
        a.l2.iter().find(|o| o.vip == vip).map(|o| o.node.clone())
    }

    #[test]
    fn rendezvous_score_is_fixed_forever() {
        // Golden values (also computed independently from the definition in
        // Python): changing the hash would move every VIP in every cluster.
        assert_eq!(
            rendezvous_score("n1", "198.51.100.1".parse().unwrap()),
            11662891377262380996
        );
        assert_eq!(
            rendezvous_score("node-b", "2001:db8::1".parse().unwrap()),
            11061432909949749938
        );
        let a = rendezvous_score("n1", "198.51.100.1".parse().unwrap());
        let b = rendezvous_score("n2", "198.51.100.1".parse().unwrap());
        let c = rendezvous_score("n1", "198.51.100.2".parse().unwrap());
        assert!(a != b && a != c);
    }

    #[test]
    fn l2_owner_is_the_highest_rendezvous_score_and_unique() {
        let w = World::new(vec![
            service("web", &["198.51.100.1"]),
            service("api", &["198.51.100.2"]),
        ]);
        let a = w.plan(&crate::policy::BUILT_IN);
        assert_eq!(a.l2.len(), 2, "one owner per VIP: {:?}", a.l2);
        for o in &a.l2 {
            let best = ["n1", "n2", "n3"]
                .into_iter()
                .max_by_key(|n| rendezvous_score(n, o.vip))
                .unwrap();
            assert_eq!(o.node, best);
        }
    }

    #[test]
    fn l2_owner_moves_only_when_the_owner_goes() {
        let mut w = World::new(vec![service("web", &["198.51.100.1"])]);
        let before = owner(&w.plan(&crate::policy::BUILT_IN), "198.51.100.1").unwrap();
        let other = w
            .nodes
            .iter()
            .find(|n| n.name != before)
            .unwrap()
            .name
            .clone();
        w.alive.remove(&other);
        assert_eq!(
            owner(&w.plan(&crate::policy::BUILT_IN), "198.51.100.1").unwrap(),
            before
        );
        w.alive.insert(other);
        w.alive.remove(&before);
        let after = owner(&w.plan(&crate::policy::BUILT_IN), "198.51.100.1").unwrap();
        assert_ne!(after, before);
    }

    #[test]
    fn eligible_nodes_are_ready_alive_selected_and_local_needs_endpoints() {
        let mut web = service("web", &["198.51.100.1"]);
        web.traffic_policy = TrafficPolicy::Local;
        let mut w = World::new(vec![web]);
        assert_eq!(
            owner(&w.plan(&crate::policy::BUILT_IN), "198.51.100.1"),
            None,
            "no endpoint anywhere"
        );
        w.endpoints.insert(
            ServiceRef::new("a", "web"),
            BTreeMap::from([("n3".to_owned(), 2)]),
        );
        assert_eq!(
            owner(&w.plan(&crate::policy::BUILT_IN), "198.51.100.1").as_deref(),
            Some("n3")
        );
        w.nodes[2].ready = false;
        assert_eq!(
            owner(&w.plan(&crate::policy::BUILT_IN), "198.51.100.1"),
            None
        );
    }

    #[test]
    fn bgp_every_eligible_node_advertises_with_attributes_and_weights() {
        let mut w = World::new(vec![service("web", &["198.51.100.1", "2001:db8::1"])]);
        w.l2.clear();
        w.bgp = vec![bgp_adv("all")];
        w.endpoints.insert(
            ServiceRef::new("a", "web"),
            BTreeMap::from([("n1".to_owned(), 3)]),
        );
        let a = w.plan(&crate::policy::BUILT_IN);
        assert_eq!(a.bgp.len(), 6, "3 nodes x 2 prefixes: {:?}", a.bgp);
        let r = a.routes_of("n1").find(|r| r.prefix.is_ipv4()).unwrap();
        assert_eq!(
            (
                r.peer.as_str(),
                r.prefix_len,
                r.attributes.med,
                r.attributes.weight
            ),
            ("tor", 32, Some(10), Some(3))
        );
        assert_eq!(r.attributes.communities[0].to_string(), "64512:100");
        let r = a.routes_of("n2").find(|r| r.prefix.is_ipv6()).unwrap();
        assert_eq!((r.prefix_len, r.attributes.weight), (128, Some(1)));
    }

    #[test]
    fn bgp_aggregation_folds_vips_into_one_prefix() {
        let mut w = World::new(vec![
            service("a1", &["198.51.100.1"]),
            service("a2", &["198.51.100.2"]),
        ]);
        w.l2.clear();
        let mut adv = bgp_adv("agg");
        adv.aggregation_length = 24;
        w.bgp = vec![adv];
        let a = w.plan(&crate::policy::BUILT_IN);
        let n1: Vec<_> = a.routes_of("n1").collect();
        assert_eq!(n1.len(), 1);
        assert_eq!(n1[0].prefix.to_string(), "198.51.100.0");
        assert_eq!(
            n1[0].attributes.weight,
            Some(2),
            "weights of folded VIPs add up"
        );
    }

    #[test]
    fn bgp_peer_selection_and_families() {
        let mut w = World::new(vec![service("web", &["2001:db8::1"])]);
        w.l2.clear();
        let mut v4_only = peer("v4");
        v4_only.families = vec![Family::IPv4];
        w.peers = vec![peer("tor"), v4_only, peer("other")];
        let mut adv = bgp_adv("some");
        adv.peers = vec!["tor".into(), "v4".into()];
        w.bgp = vec![adv];
        let peers: BTreeSet<String> = w
            .plan(&crate::policy::BUILT_IN)
            .bgp
            .into_iter()
            .map(|r| r.peer)
            .collect();
        assert_eq!(peers, BTreeSet::from(["tor".to_owned()]));
    }

    #[test]
    fn a_nodes_routes_by_peer_are_its_routes_split_by_peer() {
        let mut w = World::new(vec![
            service("web", &["198.51.100.1"]),
            service("api", &["198.51.100.2"]),
        ]);
        w.l2.clear();
        w.peers = vec![peer("tor-a"), peer("tor-b")];
        w.bgp = vec![bgp_adv("all")];
        let a = w.plan(&crate::policy::BUILT_IN);
        let by_peer = a.routes_by_peer("n2");
        assert_eq!(
            by_peer.keys().copied().collect::<Vec<_>>(),
            ["tor-a", "tor-b"]
        );
        for (peer, routes) in &by_peer {
            let want: Vec<_> = a.routes_of("n2").filter(|r| r.peer == *peer).collect();
            assert_eq!(routes, &want);
            assert_eq!(routes.len(), 2, "one route per VIP");
        }
        assert!(a.routes_by_peer("nobody").is_empty());
    }

    struct Answer(Vec<&'static str>);

    impl AnnouncerPolicy for Answer {
        fn announce(&self, _: &AnnounceQuery<'_>) -> Result<Vec<NodeChoice>, PolicyError> {
            Ok(self
                .0
                .iter()
                .map(|n| NodeChoice {
                    node: (*n).to_owned(),
                    weight: 7,
                    ..NodeChoice::default()
                })
                .collect())
        }
    }

    fn with_plugin(answer: &Answer, failure_policy: FailurePolicy) -> Announcements {
        let mut w = World::new(vec![service("web", &["198.51.100.1"])]);
        w.l2[0].announcer_plugin = Some("pick".into());
        let mut policies = Policies::default();
        policies.announcers.insert(
            "pick".into(),
            Plugin {
                policy: answer as &dyn AnnouncerPolicy,
                failure_policy,
            },
        );
        w.plan(&policies)
    }

    #[test]
    fn announcer_plugin_decides_and_its_answer_is_checked() {
        let a = with_plugin(&Answer(vec!["n2"]), FailurePolicy::Fail);
        assert_eq!(owner(&a, "198.51.100.1").as_deref(), Some("n2"));
        assert!(a.errors.is_empty());
        for bad in [vec!["ghost"], vec!["n1", "n2"], vec![]] {
            let a = with_plugin(&Answer(bad.clone()), FailurePolicy::Fallback);
            assert!(owner(&a, "198.51.100.1").is_some(), "fell back for {bad:?}");
            assert_eq!(a.errors[0].name, "pick", "{:?}", a.errors);
            let a = with_plugin(&Answer(bad.clone()), FailurePolicy::Fail);
            assert_eq!(owner(&a, "198.51.100.1"), None, "no owner for {bad:?}");
        }
    }

    /// Adds `extra` communities to every node it is asked about.
    struct Adds(usize);

    impl AnnouncerPolicy for Adds {
        fn announce(&self, q: &AnnounceQuery<'_>) -> Result<Vec<NodeChoice>, PolicyError> {
            Ok(q.eligible
                .iter()
                .map(|c| NodeChoice {
                    node: c.node.name.clone(),
                    weight: 1,
                    communities: (0..self.0)
                        .map(|i| crate::bgp::Community(0xfde8_0000 | i as u32))
                        .collect(),
                    ..NodeChoice::default()
                })
                .collect())
        }
    }

    #[test]
    fn a_plugin_that_adds_communities_past_what_fits_an_update_announces_nothing_there() {
        let plan = |adds: usize| {
            let mut w = World::new(vec![service("web", &["198.51.100.1"])]);
            w.l2.clear();
            let mut adv = bgp_adv("all");
            adv.announcer_plugin = Some("adds".into());
            w.bgp = vec![adv];
            let policy = Adds(adds);
            let mut policies = Policies::default();
            policies.announcers.insert(
                "adds".into(),
                Plugin {
                    policy: &policy as &dyn AnnouncerPolicy,
                    failure_policy: FailurePolicy::Fail,
                },
            );
            w.plan(&policies)
        };
        // The advertisement has one community of its own.
        let fits = plan(crate::bgp::MAX_COMMUNITIES - 1);
        assert_eq!(fits.bgp.len(), 3, "{:?}", fits.errors);
        assert!(fits.errors.is_empty(), "{:?}", fits.errors);
        let over = plan(crate::bgp::MAX_COMMUNITIES);
        assert!(over.bgp.is_empty(), "{:?}", over.bgp);
        assert_eq!(over.errors.len(), 3, "one per node: {:?}", over.errors);
        assert_eq!(over.errors[0].kind, "BGPAdvertisement");
        assert_eq!(over.errors[0].name, "all");
        assert!(
            over.errors[0].message.contains("198.51.100.1"),
            "{:?}",
            over.errors
        );
    }

    #[test]
    fn vips_outside_every_pool_are_not_announced() {
        let w = World::new(vec![service("web", &["192.0.2.77"])]);
        assert!(w.plan(&crate::policy::BUILT_IN).l2.is_empty());
    }
}
