//! Routes as a router shows them, normalised across daemons: BIRD's
//! `birdc show route all`, GoBGP's `gobgp global rib -j` and FRR's
//! `vtysh show bgp … json`, parsed into one [`Route`] type so tests compare
//! whole views.

use std::collections::BTreeMap;

use herald_netns::wait_for;
use serde_json::Value;

use super::{Lab, POLL};

/// One route as the router holds it. Communities are written `high:low`
/// in decimal (well-known names resolved), large communities `a:b:c`.
/// The default, no attribute and not selected, is where parsers start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    pub origin: String,
    pub as_path: Vec<u32>,
    pub next_hop: String,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: Vec<String>,
    pub large_communities: Vec<String>,
    /// Path attributes (for FRR: path keys) the parser does not know; the
    /// matrix expects none.
    pub other: Vec<String>,
    /// The router uses the route: its best path, with a next hop it
    /// resolved (BIRD: `unicast via NEXT_HOP on eth0`; FRR: valid, best,
    /// next hop accessible; GoBGP: best).
    pub selected: bool,
}

/// A daemon's view: prefix to route.
pub type Routes = BTreeMap<String, Route>;

/// A route in BIRD, with when BIRD last changed it.
#[derive(Clone, Debug)]
pub struct BirdRoute {
    pub route: Route,
    /// The time in the route's header line; BIRD keeps it when a route is
    /// refreshed unchanged and sets it when the route is replaced.
    pub changed: String,
}

/// `(64512,100) (65535,65281)` or `(4200000001, 1, 2)` → `["64512:100", …]`.
fn bird_communities(text: &str) -> Vec<String> {
    text.split(')')
        .map(|c| c.trim().trim_start_matches('('))
        .filter(|c| !c.is_empty())
        .map(|c| c.split(',').map(str::trim).collect::<Vec<_>>().join(":"))
        .collect()
}

/// Parses `birdc show route all protocol herald`.
fn parse_bird_routes(out: &str) -> BTreeMap<String, BirdRoute> {
    let mut routes = BTreeMap::new();
    let mut current: Option<(String, BirdRoute, String)> = None;
    let mut finish = |current: &mut Option<(String, BirdRoute, String)>| {
        if let Some((prefix, mut r, via)) = current.take() {
            r.route.selected &= via == format!("via {} on eth0", r.route.next_hop);
            routes.insert(prefix, r);
        }
    };
    for line in out.lines() {
        if line.starts_with("BIRD ") || line.starts_with("Table ") || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            finish(&mut current);
            // 198.51.100.10/32     unicast [herald 13:15:26.928 from 192.0.2.2] * (100) [i]
            let mut words = line.split_whitespace();
            let prefix = words.next().unwrap_or_default().to_owned();
            let dest = words.next().unwrap_or_default();
            let changed = line
                .split_once("[herald ")
                .and_then(|(_, rest)| rest.split([' ', ']']).next())
                .unwrap_or_default()
                .to_owned();
            let route = Route {
                selected: dest == "unicast" && line.contains("] * "),
                ..Route::default()
            };
            current = Some((prefix, BirdRoute { route, changed }, String::new()));
            continue;
        }
        let Some((_, r, via)) = current.as_mut() else {
            continue;
        };
        let line = line.trim();
        if line.starts_with("via ") {
            line.clone_into(via);
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let r = &mut r.route;
        match key {
            "Type" => {}
            "BGP.origin" => r.origin = value.to_owned(),
            "BGP.as_path" => {
                r.as_path = value
                    .split_whitespace()
                    .map(|a| a.parse().unwrap_or_else(|_| panic!("AS path {value:?}")))
                    .collect();
            }
            "BGP.next_hop" => r.next_hop = value.to_owned(),
            "BGP.med" => r.med = value.parse().ok(),
            "BGP.local_pref" => r.local_pref = value.parse().ok(),
            "BGP.community" => r.communities = bird_communities(value),
            "BGP.large_community" => r.large_communities = bird_communities(value),
            _ => r.other.push(line.to_owned()),
        }
    }
    finish(&mut current);
    routes
}

/// GoBGP's ORIGIN codes.
fn origin_name(code: u64) -> String {
    match code {
        0 => "IGP".into(),
        1 => "EGP".into(),
        2 => "Incomplete".into(),
        other => format!("origin {other}"),
    }
}

fn as_u32(v: &Value) -> u32 {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or_else(|| panic!("not a 32-bit number: {v}"))
}

/// A number that may be absent.
fn opt_u32(v: &Value) -> Option<u32> {
    (!v.is_null()).then(|| as_u32(v))
}

/// Parses `gobgp global rib -a FAMILY -j`: prefix to its paths, each with
/// `attrs` listed by attribute type code.
fn parse_gobgp_rib(rib: &Value) -> Routes {
    let mut routes = Routes::new();
    let Some(rib) = rib.as_object() else {
        return routes;
    };
    for (prefix, paths) in rib {
        let paths = paths.as_array().map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            paths.len(),
            1,
            "one path per prefix expected: {prefix} {paths:?}"
        );
        let path = &paths[0];
        let mut r = Route {
            selected: path["best"] == Value::Bool(true),
            ..Route::default()
        };
        for attr in path["attrs"].as_array().into_iter().flatten() {
            match attr["type"].as_u64() {
                Some(1) => r.origin = origin_name(attr["value"].as_u64().unwrap_or(99)),
                Some(2) => {
                    for segment in attr["as_paths"].as_array().into_iter().flatten() {
                        // Only AS_SEQUENCE (2) is expected.
                        assert_eq!(segment["segment_type"], 2, "{attr}");
                        r.as_path
                            .extend(segment["asns"].as_array().into_iter().flatten().map(as_u32));
                    }
                }
                // NEXT_HOP (IPv4 routes) or MP_REACH_NLRI (IPv6 routes).
                Some(3 | 14) => {
                    assert!(r.next_hop.is_empty(), "two next hops: {path}");
                    r.next_hop = attr["nexthop"].as_str().unwrap_or_default().to_owned();
                }
                Some(4) => r.med = Some(as_u32(&attr["metric"])),
                Some(5) => r.local_pref = Some(as_u32(&attr["value"])),
                Some(8) => {
                    r.communities = attr["communities"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            let c = as_u32(c);
                            format!("{}:{}", c >> 16, c & 0xffff)
                        })
                        .collect();
                }
                Some(32) => {
                    r.large_communities = attr["value"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| {
                            format!(
                                "{}:{}:{}",
                                as_u32(&c["ASN"]),
                                as_u32(&c["LocalData1"]),
                                as_u32(&c["LocalData2"])
                            )
                        })
                        .collect();
                }
                _ => r.other.push(attr.to_string()),
            }
        }
        routes.insert(prefix.clone(), r);
    }
    routes
}

/// FRR's names of well-known communities (RFC 1997, RFC 7999, RFC 8326).
fn frr_community(c: &str) -> String {
    match c {
        "noExport" => "65535:65281".into(),
        "noAdvertise" => "65535:65282".into(),
        "localAs" => "65535:65283".into(),
        "noPeer" => "65535:65284".into(),
        "blackhole" => "65535:666".into(),
        "gracefulShutdown" => "65535:0".into(),
        other => other.into(),
    }
}

fn json_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Parses one path of `show bgp FAMILY unicast PREFIX json`.
fn parse_frr_path(path: &Value) -> Route {
    let mut as_path = Vec::new();
    for segment in path["aspath"]["segments"].as_array().into_iter().flatten() {
        assert_eq!(segment["type"], "as-sequence", "{path}");
        as_path.extend(segment["list"].as_array().into_iter().flatten().map(as_u32));
    }
    let next_hops: Vec<&Value> = path["nexthops"].as_array().into_iter().flatten().collect();
    // Any other key (extendedCommunity, atomicAggregate, originatorId, …)
    // is an attribute or a state the matrix does not expect.
    const KNOWN: [&str; 12] = [
        "aspath",
        "bestpath",
        "community",
        "largeCommunity",
        "lastUpdate",
        "locPrf",
        "metric",
        "nexthops",
        "origin",
        "peer",
        "valid",
        "version",
    ];
    let other = path
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    Route {
        origin: path["origin"].as_str().unwrap_or_default().to_owned(),
        as_path,
        next_hop: next_hops
            .iter()
            .map(|n| n["ip"].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" "),
        med: opt_u32(&path["metric"]),
        local_pref: opt_u32(&path["locPrf"]),
        communities: json_strings(&path["community"]["list"])
            .iter()
            .map(|c| frr_community(c))
            .collect(),
        large_communities: json_strings(&path["largeCommunity"]["list"]),
        other,
        selected: path["valid"] == Value::Bool(true)
            && path["bestpath"]["overall"] == Value::Bool(true)
            && !next_hops.is_empty()
            && next_hops
                .iter()
                .all(|n| n["accessible"] == Value::Bool(true)),
    }
}

/// The router daemons the tests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    Bird,
    Gobgp,
    Frr,
}

impl Daemon {
    /// The LOCAL_PREF the daemon shows on eBGP routes: BIRD attaches its
    /// `default bgp_local_pref` (100), the others none.
    pub fn ebgp_local_pref(self) -> Option<u32> {
        match self {
            Daemon::Bird => Some(100),
            Daemon::Gobgp | Daemon::Frr => None,
        }
    }

    /// Everything the daemon holds from Herald, both families.
    pub fn routes(self, lab: &Lab) -> Routes {
        match self {
            Daemon::Bird => lab
                .bird_routes()
                .into_iter()
                .map(|(p, r)| (p, r.route))
                .collect(),
            Daemon::Gobgp => lab.gobgp_routes(),
            Daemon::Frr => lab.frr_routes(),
        }
    }
}

/// The lab's parsed views.
impl Lab {
    /// Everything BIRD imported from Herald, parsed.
    pub fn bird_routes(&self) -> BTreeMap<String, BirdRoute> {
        parse_bird_routes(&self.birdc(&["show", "route", "all", "protocol", "herald"]))
    }

    /// GoBGP's global RIB, both families.
    pub fn gobgp_routes(&self) -> Routes {
        let mut routes = parse_gobgp_rib(&self.gobgp_json(&["global", "rib", "-a", "ipv4"]));
        routes.extend(parse_gobgp_rib(
            &self.gobgp_json(&["global", "rib", "-a", "ipv6"]),
        ));
        routes
    }

    /// FRR's BGP table, both families, each prefix with its detail.
    pub fn frr_routes(&self) -> Routes {
        let mut routes = Routes::new();
        for family in ["ipv4", "ipv6"] {
            let table = self.vtysh_json(&format!("show bgp {family} unicast json"));
            for prefix in table["routes"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(p, _)| p)
            {
                let detail = self.vtysh_json(&format!("show bgp {family} unicast {prefix} json"));
                let paths = detail["paths"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                // The prefix may have gone between the two commands.
                match paths {
                    [] => {}
                    [path] => {
                        routes.insert(prefix.clone(), parse_frr_path(path));
                    }
                    _ => panic!("one path per prefix expected: {detail}"),
                }
            }
        }
        routes
    }

    /// Waits until `daemon` holds exactly `want`; on timeout, fails with
    /// `what`, both views and the logs.
    pub fn expect_routes(&self, daemon: Daemon, what: &str, want: &Routes) {
        let mut last = Routes::new();
        let done = wait_for(what, self.timeout, POLL, || {
            last = daemon.routes(self);
            (last == *want).then_some(())
        });
        if let Err(e) = done {
            self.fail(&format!("{daemon:?}: {e}\nwant: {want:#?}\ngot: {last:#?}"));
        }
    }
}
