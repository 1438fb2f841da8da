//! End to end: the built `herald speaker` in one network namespace (the
//! node), a real router daemon from Debian in another (BIRD, GoBGP, FRR),
//! joined by a bridge on documentation prefixes. What the router shows
//! (birdc, gobgp, vtysh) is what is asserted.
//!
//! The matrix tests (`*_matrix_*`) run every session kind (iBGP, eBGP with
//! a 2-octet ASN, eBGP with a 4-octet ASN) over IPv4 and over IPv6
//! transport against one daemon, and compare the daemon's whole view of
//! Herald's routes, both families, with the expected attributes.
//!
//! Needs root, bird2, gobgpd and frr (scripts/test.sh installs them).

mod bgp_lab;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bgp_lab::routes::{Daemon, Route, Routes};
use bgp_lab::{
    Lab, NODE_V4, POLL, ROUTER_ASN, ROUTER_V4, advertisement, frr_conf, gobgpd_conf, lock,
    next_hop_weights,
};
use herald_netns::{Process, wait_for};
use serde_json::Value;

const ROUTER_V6: &str = "2001:db8:ff::1";
const NODE_V6: &str = "2001:db8:ff::2";
/// The hold time of every BGPPeer here.
const HOLD_TIME: u16 = 9;
const WAIT: Duration = Duration::from_secs(20);

/// Node `i`'s addresses (node 0 is `n1` at .2).
fn node_v4(i: usize) -> String {
    format!("192.0.2.{}", i + 2)
}

fn node_v6(i: usize) -> String {
    format!("2001:db8:ff::{}", i + 2)
}

/// This file's part of the lab (the shared part is in bgp_lab): the router
/// dual-stack, node manifests, BIRD's session state and import statistics.
impl Lab {
    fn new() -> Lab {
        Lab::with_nodes(1)
    }

    fn with_nodes(count: usize) -> Lab {
        let nodes: Vec<Vec<String>> = (0..count)
            .map(|i| vec![format!("{}/24", node_v4(i)), format!("{}/64", node_v6(i))])
            .collect();
        Lab::with_addresses(
            &[format!("{ROUTER_V4}/24"), format!("{ROUTER_V6}/64")],
            &nodes,
            WAIT,
        )
    }

    /// The nodes, a pool, a dual-stack Service with its addresses.
    fn base_manifests(&self) {
        let mut yaml = String::new();
        for i in 0..self.nodes.len() {
            yaml.push_str(&format!(
                r#"apiVersion: v1
kind: Node
metadata:
  name: n{n}
  labels: {{rack: a}}
status:
  conditions: [{{type: Ready, status: "True"}}]
  addresses: [{{type: InternalIP, address: {v4}}}, {{type: InternalIP, address: "{v6}"}}]
---
"#,
                n = i + 1,
                v4 = node_v4(i),
                v6 = node_v6(i)
            ));
        }
        yaml.push_str(
            r#"apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec:
  addresses: [198.51.100.0/24, "2001:db8:100::/120"]
"#,
        );
        self.write("nodes.yaml", &yaml);
        self.write(
            "service.yaml",
            &service("web", "198.51.100.10", "2001:db8:100::10"),
        );
    }

    fn bird_established(&self) -> bool {
        self.birdc(&["show", "protocols", "herald"])
            .contains("Established")
    }

    /// When BIRD's session with Herald last changed state (the `Since`
    /// column): unchanged means the same session.
    fn bird_since(&self) -> String {
        let out = self.birdc(&["show", "protocols", "herald"]);
        out.lines()
            .find(|l| l.starts_with("herald "))
            .and_then(|l| l.split_whitespace().nth(4))
            .unwrap_or_else(|| panic!("no `herald` protocol in\n{out}"))
            .to_owned()
    }

    /// BIRD's import statistics of each channel of the `herald` protocol.
    fn bird_import_stats(&self) -> BTreeMap<String, ImportStats> {
        parse_bird_import_stats(&self.birdc(&["show", "protocols", "all", "herald"]))
    }
}

fn service(name: &str, v4: &str, v6: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  ports: [{{port: 80}}]
status:
  loadBalancer:
    ingress: [{{ip: {v4}}}, {{ip: "{v6}"}}]
"#
    )
}

/// A BGPPeer with this file's hold time.
fn peer(name: &str, address: &str, peer_asn: u32, my_asn: u32, extra: &str) -> String {
    bgp_lab::peer(name, address, peer_asn, my_asn, HOLD_TIME, extra)
}

/// A BIRD configuration with one BGP protocol `herald` importing everything.
fn bird_conf(neighbor: &str, local: &str, local_asn: u32, peer_asn: u32, extra: &str) -> String {
    bird_conf_import(neighbor, local, local_asn, peer_asn, extra, "all")
}

/// The same with the channels' import clause `import` (`all`, `none`, a
/// filter). `protocol direct` gives recursive (iBGP) next hops the
/// connected routes to resolve through.
fn bird_conf_import(
    neighbor: &str,
    local: &str,
    local_asn: u32,
    peer_asn: u32,
    extra: &str,
    import: &str,
) -> String {
    format!(
        "router id {ROUTER_V4};\nprotocol device {{}}\nprotocol direct {{ ipv4; ipv6; }}\n\
         protocol bgp herald {{ local {local} as {local_asn}; neighbor {neighbor} as {peer_asn}; hold time 9; {extra}\n\
         ipv4 {{ import {import}; export none; }}; ipv6 {{ import {import}; export none; }}; }}\n"
    )
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// BIRD's `Route change stats` of one channel: the columns `received`,
/// `rejected`, `filtered`, `ignored`, `accepted` (`---` as 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ImportStats {
    updates: [u64; 5],
    withdraws: [u64; 5],
}

/// Parses the channels' import statistics out of `show protocols all`.
fn parse_bird_import_stats(out: &str) -> BTreeMap<String, ImportStats> {
    let mut stats = BTreeMap::new();
    let mut channel = String::new();
    for line in out.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("Channel ") {
            channel = name.to_owned();
            continue;
        }
        let row = if let Some(rest) = line.strip_prefix("Import updates:") {
            Some((rest, false))
        } else {
            line.strip_prefix("Import withdraws:")
                .map(|rest| (rest, true))
        };
        if let Some((rest, withdraws)) = row {
            let mut columns = [0; 5];
            for (slot, word) in columns.iter_mut().zip(rest.split_whitespace()) {
                *slot = word.parse().unwrap_or(0);
            }
            let entry: &mut ImportStats = stats.entry(channel.clone()).or_default();
            if withdraws {
                entry.withdraws = columns;
            } else {
                entry.updates = columns;
            }
        }
    }
    stats
}

// ---------------------------------------------------------------------------
// The matrix: daemons × session kinds × transports.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ibgp,
    /// eBGP, Herald in a 2-octet AS.
    Ebgp2,
    /// eBGP, Herald in a 4-octet AS.
    Ebgp4,
}

impl Kind {
    fn node_asn(self) -> u32 {
        match self {
            Kind::Ibgp => ROUTER_ASN,
            Kind::Ebgp2 => 65010,
            Kind::Ebgp4 => 4_200_000_001,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    V4,
    V6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Case {
    kind: Kind,
    transport: Transport,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Ibgp => "iBGP",
            Kind::Ebgp2 => "eBGP (2-octet ASN)",
            Kind::Ebgp4 => "eBGP (4-octet ASN)",
        };
        let transport = match self.transport {
            Transport::V4 => "IPv4",
            Transport::V6 => "IPv6",
        };
        write!(f, "{kind} over {transport}")
    }
}

/// The two Services of the matrix: name, IPv4, IPv6.
const SERVICES: [(&str, &str, &str); 2] = [
    ("web", "198.51.100.10", "2001:db8:100::10"),
    ("api", "198.51.100.11", "2001:db8:100::11"),
];

impl Case {
    const ALL: [Case; 6] = [
        Case {
            kind: Kind::Ibgp,
            transport: Transport::V4,
        },
        Case {
            kind: Kind::Ibgp,
            transport: Transport::V6,
        },
        Case {
            kind: Kind::Ebgp2,
            transport: Transport::V4,
        },
        Case {
            kind: Kind::Ebgp2,
            transport: Transport::V6,
        },
        Case {
            kind: Kind::Ebgp4,
            transport: Transport::V4,
        },
        Case {
            kind: Kind::Ebgp4,
            transport: Transport::V6,
        },
    ];

    fn router_addr(self) -> &'static str {
        match self.transport {
            Transport::V4 => ROUTER_V4,
            Transport::V6 => ROUTER_V6,
        }
    }

    fn node_addr(self) -> &'static str {
        match self.transport {
            Transport::V4 => NODE_V4,
            Transport::V6 => NODE_V6,
        }
    }

    fn ebgp(self) -> bool {
        self.kind != Kind::Ibgp
    }

    /// The advertisement: communities with a well-known one, a large
    /// community, MED, LOCAL_PREF (sent on iBGP only) and two prepends
    /// (applied on eBGP only: on iBGP they would put the router's own AS
    /// into the path, and every daemon drops such a route as a loop).
    fn advertisement(self) -> String {
        advertisement(
            "  communities: [\"64512:100\", NO_EXPORT]\n  largeCommunities: [\"4200000001:1:2\"]\n  med: 10\n  localPref: 200\n  asPathPrepend: 2\n",
        )
    }

    /// What the router must hold for `services`. `ebgp_local_pref` is the
    /// LOCAL_PREF the daemon itself gives eBGP routes (Herald sends none).
    fn expected(self, services: &[(&str, &str, &str)], ebgp_local_pref: Option<u32>) -> Routes {
        let asn = self.kind.node_asn();
        let route = |next_hop: &str| Route {
            origin: "IGP".into(),
            // Our ASN once plus two prepends on eBGP, empty on iBGP.
            as_path: if self.ebgp() {
                vec![asn; 3]
            } else {
                Vec::new()
            },
            // Next hop self in both families whatever the transport.
            next_hop: next_hop.into(),
            med: Some(10),
            local_pref: if self.ebgp() {
                ebgp_local_pref
            } else {
                Some(200)
            },
            communities: vec!["64512:100".into(), "65535:65281".into()],
            large_communities: vec!["4200000001:1:2".into()],
            other: Vec::new(),
            selected: true,
        };
        let mut out = Routes::new();
        for (_, v4, v6) in services {
            out.insert(format!("{v4}/32"), route(NODE_V4));
            out.insert(format!("{v6}/128"), route(NODE_V6));
        }
        out
    }
}

impl Daemon {
    /// Starts the daemon as the router of `case`.
    fn start(self, lab: &Lab, case: Case) -> Vec<Process> {
        let (node, local, asn) = (case.node_addr(), case.router_addr(), case.kind.node_asn());
        match self {
            Daemon::Bird => vec![lab.bird(&bird_conf(node, local, ROUTER_ASN, asn, ""))],
            Daemon::Gobgp => vec![lab.gobgpd(&gobgpd_conf(ROUTER_V4, node, asn))],
            Daemon::Frr => {
                let (zebra, bgpd) = lab.frr(&frr_conf(ROUTER_V4, node, asn, ""));
                vec![zebra, bgpd]
            }
        }
    }

    /// Waits until the daemon accepts Herald's connection: it listens, and
    /// FRR has left Idle for the neighbour (for about a second after its
    /// start bgpd answers an OPEN with a Finite State Machine Error).
    fn wait_ready(self, lab: &Lab, case: Case) {
        lab.wait_listening();
        if self == Daemon::Frr {
            let node = case.node_addr();
            lab.wait("FRR to leave Idle for the neighbour", || {
                let state = lab.vtysh_json(&format!("show bgp neighbors {node} json"));
                matches!(state[node]["bgpState"].as_str(), Some("Active" | "Connect"))
            });
        }
    }
}

/// Waits until the daemon holds exactly `want` (see [`Lab::expect_routes`]).
fn expect_routes(lab: &Lab, daemon: Daemon, case: Case, what: &str, want: &Routes) {
    lab.expect_routes(daemon, &format!("{case}: {what}"), want);
}

/// One cell of the matrix: the session comes up, the router holds both
/// Services' routes in both families with exactly the expected attributes,
/// then a Service's removal withdraws exactly its routes; one session
/// throughout.
fn matrix_case(daemon: Daemon, case: Case) {
    let lab = Lab::new();
    lab.base_manifests();
    let [(web, web4, web6), (api, api4, api6)] = SERVICES;
    lab.write("service.yaml", &service(web, web4, web6));
    lab.write("service-api.yaml", &service(api, api4, api6));
    lab.write(
        "peer.yaml",
        &peer(
            "tor",
            case.router_addr(),
            ROUTER_ASN,
            case.kind.node_asn(),
            "",
        ),
    );
    lab.write("adv.yaml", &case.advertisement());
    let _daemon = daemon.start(&lab, case);
    daemon.wait_ready(&lab, case);
    let _herald = lab.herald();
    let local_pref = daemon.ebgp_local_pref();
    expect_routes(
        &lab,
        daemon,
        case,
        "every route with its attributes",
        &case.expected(&SERVICES, local_pref),
    );
    if daemon == Daemon::Frr {
        // zebra installs what bgpd selected, via the advertised next hop.
        for (prefix, gateway) in [
            (web4, NODE_V4),
            (web6, NODE_V6),
            (api4, NODE_V4),
            (api6, NODE_V6),
        ] {
            lab.wait(&format!("{case}: zebra to install {prefix}"), || {
                lab.router
                    .ip(&[
                        if prefix.contains(':') { "-6" } else { "-4" },
                        "-j",
                        "route",
                        "show",
                        prefix,
                    ])
                    .ok()
                    .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
                    .and_then(|v| v.as_array().cloned())
                    .is_some_and(|routes| {
                        routes
                            .iter()
                            .any(|r| r["gateway"] == gateway && r["protocol"] == "bgp")
                    })
            });
        }
    }
    lab.remove("service-api.yaml");
    expect_routes(
        &lab,
        daemon,
        case,
        "the removed Service's routes to be withdrawn",
        &case.expected(&SERVICES[..1], local_pref),
    );
    assert_eq!(
        count(&lab.herald_log(), "session established"),
        1,
        "{daemon:?}, {case}: one session throughout\n{}",
        lab.logs()
    );
}

/// All six cases against one daemon, one after another.
fn matrix(daemon: Daemon) {
    let _serial = lock();
    for case in Case::ALL {
        let started = std::time::Instant::now();
        matrix_case(daemon, case);
        eprintln!("{daemon:?}, {case}: {:?}", started.elapsed());
    }
}

#[test]
fn bird_matrix_ibgp_ebgp_2_and_4_octet_asn_over_ipv4_and_ipv6() {
    matrix(Daemon::Bird);
}

#[test]
fn gobgp_matrix_ibgp_ebgp_2_and_4_octet_asn_over_ipv4_and_ipv6() {
    matrix(Daemon::Gobgp);
}

#[test]
fn frr_matrix_ibgp_ebgp_2_and_4_octet_asn_over_ipv4_and_ipv6() {
    matrix(Daemon::Frr);
}

// ---------------------------------------------------------------------------
// Single scenarios.

#[test]
fn bird_ebgp_4_byte_asn_dual_stack_attributes_edits_and_withdrawal() {
    let _serial = lock();
    let lab = Lab::new();
    lab.base_manifests();
    lab.write(
        "peer.yaml",
        &peer("tor", ROUTER_V4, 65001, 4_200_000_001, ""),
    );
    lab.write(
        "adv.yaml",
        &advertisement(
            "  communities: [\"64512:100\", NO_EXPORT]\n  largeCommunities: [\"4200000001:1:2\"]\n  med: 10\n  asPathPrepend: 2\n",
        ),
    );
    let _bird = lab.bird(&bird_conf(NODE_V4, ROUTER_V4, 65001, 4_200_000_001, ""));
    let _herald = lab.herald();
    lab.wait("BIRD to hold 198.51.100.10/32 from Herald", || {
        lab.bird_route("198.51.100.10/32").contains("BGP.origin")
    });
    let v4 = lab.bird_route("198.51.100.10/32");
    for expected in [
        "BGP.origin: IGP",
        // Our ASN once plus two prepends, each 4 octets wide.
        "BGP.as_path: 4200000001 4200000001 4200000001\n",
        &format!("BGP.next_hop: {NODE_V4}"),
        "BGP.med: 10",
        "BGP.community: (64512,100) (65535,65281)",
        "BGP.large_community: (4200000001, 1, 2)",
    ] {
        assert!(v4.contains(expected), "{expected:?} missing in\n{v4}");
    }
    lab.wait("BIRD to hold 2001:db8:100::10/128", || {
        lab.bird_route("2001:db8:100::10/128")
            .contains("BGP.origin")
    });
    let v6 = lab.bird_route("2001:db8:100::10/128");
    assert!(
        v6.contains(&format!("BGP.next_hop: {NODE_V6}")),
        "IPv6 next hop:\n{v6}"
    );
    assert!(
        v6.contains("BGP.large_community: (4200000001, 1, 2)"),
        "{v6}"
    );

    // Change the attributes: the route is replaced, the session stays.
    lab.write(
        "adv.yaml",
        &advertisement("  communities: [\"64512:200\"]\n  med: 20\n"),
    );
    lab.wait("BIRD to see the new community and MED", || {
        let r = lab.bird_route("198.51.100.10/32");
        r.contains("BGP.community: (64512,200)") && r.contains("BGP.med: 20")
    });
    let r = lab.bird_route("198.51.100.10/32");
    assert!(
        r.contains("BGP.as_path: 4200000001\n"),
        "prepends gone:\n{r}"
    );
    assert!(!r.contains("large_community"), "{r}");

    // A second Service appears, then the first goes away.
    lab.write(
        "service2.yaml",
        &service("api", "198.51.100.11", "2001:db8:100::11"),
    );
    lab.wait("BIRD to hold the second Service's route", || {
        lab.bird_route("198.51.100.11/32").contains("BGP.origin")
    });
    lab.remove("service.yaml");
    lab.wait("BIRD to drop the removed Service's routes", || {
        !lab.bird_route("198.51.100.10/32").contains("BGP.origin")
            && !lab
                .bird_route("2001:db8:100::10/128")
                .contains("BGP.origin")
    });
    assert!(lab.bird_route("198.51.100.11/32").contains("BGP.origin"));
    assert_eq!(
        count(&lab.herald_log(), "session established"),
        1,
        "edits must not reset the session:\n{}",
        lab.herald_log()
    );
}

/// Edits made in place, the way an editor or `cat >` makes them (truncate,
/// write, close), rather than by a rename.
#[test]
fn bird_in_place_edits_apply_and_half_written_or_broken_files_withdraw_nothing() {
    use std::io::Write;

    let _serial = lock();
    let lab = Lab::new();
    lab.base_manifests();
    lab.write("peer.yaml", &peer("tor", ROUTER_V4, ROUTER_ASN, 65010, ""));
    lab.write("adv.yaml", &advertisement(""));
    let web = service("web", "198.51.100.10", "2001:db8:100::10");
    let api = |v4: &str, v6: &str| format!("---\n{}", service("api", v4, v6));
    lab.write(
        "service.yaml",
        &format!("{web}{}", api("198.51.100.11", "2001:db8:100::11")),
    );
    let _bird = lab.bird(&bird_conf(NODE_V4, ROUTER_V4, ROUTER_ASN, 65010, ""));
    let _herald = lab.herald();
    let holds = |prefix: &str| lab.bird_route(prefix).contains("BGP.origin");
    lab.wait("BIRD to hold both Services' routes", || {
        holds("198.51.100.10/32") && holds("198.51.100.11/32")
    });
    let reloads = || -> Vec<String> {
        lab.herald_log()
            .lines()
            .filter(|l| l.contains("manifests changed routes="))
            .map(str::to_owned)
            .collect()
    };
    let before = reloads().len();

    // A slow writer: the file truncated, the first Service written, the
    // second one 60 ms later (three times the speaker's quiet time, a fifth
    // of its bound), then closed. The reload waits for the close and sees
    // both Services: half a file is never taken for the whole truth.
    let path = lab.manifest_dir().join("service.yaml");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(web.as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(60));
        f.write_all(api("198.51.100.11", "2001:db8:100::11").as_bytes())
            .unwrap();
    }
    lab.wait("Herald to reload the rewritten file", || {
        reloads().len() > before
    });
    let first = &reloads()[before];
    assert!(
        first.contains("routes=4"),
        "the first reload after the slow write must see both Services (4 routes):\n{first}\n{}",
        lab.logs()
    );

    // A file that does not parse changes nothing.
    let seen = reloads().len();
    std::fs::write(
        &path,
        format!("{web}---\napiVersion: v1\nkind: Service\nmetadata: {{name: api\n"),
    )
    .unwrap();
    lab.wait("Herald to report the broken file", || {
        lab.herald_log()
            .contains("do not load; keeping the last good ones")
    });
    assert_eq!(
        reloads().len(),
        seen,
        "a broken file must not be applied:\n{}",
        lab.herald_log()
    );
    assert!(
        holds("198.51.100.10/32") && holds("198.51.100.11/32"),
        "a broken file must withdraw nothing:\n{}",
        lab.birdc(&["show", "route"])
    );

    // Fixing it in place moves the second Service. (How fast: the speed of
    // edits is measured by scripts/bench-bgp.sh, not asserted here.)
    std::fs::write(
        &path,
        format!("{web}{}", api("198.51.100.12", "2001:db8:100::12")),
    )
    .unwrap();
    lab.wait("BIRD to see the moved Service", || {
        holds("198.51.100.12/32") && !holds("198.51.100.11/32")
    });
    assert!(holds("198.51.100.10/32"));
    assert_eq!(
        count(&lab.herald_log(), "session established"),
        1,
        "edits must not reset the session:\n{}",
        lab.herald_log()
    );
}

#[test]
fn bird_md5_right_password_establishes_and_wrong_one_never_does() {
    let _serial = lock();
    let lab = Lab::new();
    lab.base_manifests();
    lab.write(
        "peer.yaml",
        &peer("tor", ROUTER_V4, 65001, 65010, "  password: wrong-secret\n"),
    );
    lab.write("adv.yaml", &advertisement(""));
    let _bird = lab.bird(&bird_conf(
        NODE_V4,
        ROUTER_V4,
        65001,
        65010,
        "password \"s3cret\";",
    ));
    let _herald = lab.herald();
    // Connection attempts time out (the router drops unsigned or wrongly
    // signed SYNs); none establishes.
    lab.wait("Herald to try connecting three times", || {
        count(&lab.herald_log(), "connecting") >= 3
    });
    assert!(!lab.bird_established(), "a wrong MD5 key established");
    assert!(!lab.herald_log().contains("session established"));
    lab.write(
        "peer.yaml",
        &peer("tor", ROUTER_V4, 65001, 65010, "  password: s3cret\n"),
    );
    lab.wait("the session with the right MD5 key", || {
        lab.bird_established()
    });
    lab.wait("the route over the signed session", || {
        lab.bird_route("198.51.100.10/32").contains("BGP.origin")
    });
}

#[test]
fn bird_restart_reconverges_and_herald_graceful_restart_keeps_routes() {
    let _serial = lock();
    let lab = Lab::new();
    lab.base_manifests();
    lab.write(
        "peer.yaml",
        &peer("tor", ROUTER_V4, 65001, 65010, "  gracefulRestart: true\n"),
    );
    lab.write("adv.yaml", &advertisement(""));
    let conf = bird_conf(NODE_V4, ROUTER_V4, 65001, 65010, "graceful restart on;");
    let mut bird = lab.bird(&conf);
    let mut herald = lab.herald();
    lab.wait("the first routes", || {
        lab.bird_route("198.51.100.10/32").contains("BGP.origin")
    });

    // The router restarts: the session returns with every route.
    bird.signal("KILL").unwrap();
    bird.wait_exit(WAIT).unwrap();
    drop(bird);
    let _bird = lab.bird(&conf);
    lab.wait("the session back after the router's restart", || {
        lab.bird_route("198.51.100.10/32").contains("BGP.origin")
            && lab
                .bird_route("2001:db8:100::10/128")
                .contains("BGP.origin")
    });

    // Herald is killed. BIRD, the receiving speaker of RFC 4724, keeps
    // Herald's routes as stale: BIRD 2 shows no per-route stale mark for a
    // regular graceful restart (the `s` in a route's info is for long-lived
    // stale routes only); it shows the restart per channel as
    // `Neighbor GR: Regular` while the routes stay in the table.
    let before = lab.bird_routes();
    assert_eq!(before.len(), 2, "{before:#?}");
    let stats_before = lab.bird_import_stats();
    herald.signal("KILL").unwrap();
    herald.wait_exit(WAIT).unwrap();
    drop(herald);
    lab.wait("BIRD to hold Herald's routes as stale", || {
        let detail = lab.birdc(&["show", "protocols", "all", "herald"]);
        !lab.bird_established()
            && detail.contains("Neighbor graceful restart active")
            && count(&detail, "Neighbor GR:    Regular") == 2
    });
    let stale = lab.bird_routes();
    for (prefix, route) in &before {
        let kept = stale
            .get(prefix)
            .unwrap_or_else(|| panic!("{prefix} dropped during Herald's restart:\n{stale:#?}"));
        assert_eq!(kept.route, route.route, "{prefix} changed while stale");
        assert_eq!(kept.changed, route.changed, "{prefix} replaced while stale");
    }

    // Herald returns: its new session refreshes the stale routes with
    // identical ones, then End-of-RIB ends the restart. No route is ever
    // withdrawn or replaced.
    let _herald = lab.herald();
    let mut seen_established = false;
    wait_for("the restarted Herald's End-of-RIB", WAIT, POLL, || {
        let routes = lab.bird_routes();
        assert_eq!(
            routes.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "a route was withdrawn during Herald's restart"
        );
        seen_established |= lab.bird_established();
        let detail = lab.birdc(&["show", "protocols", "all", "herald"]);
        (seen_established && !detail.contains("Neighbor GR:") && !detail.contains("Restart timer"))
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let after = lab.bird_routes();
    for (prefix, route) in &before {
        let now = &after[prefix];
        assert_eq!(now.route, route.route, "{prefix}");
        assert_eq!(
            now.changed, route.changed,
            "{prefix} was replaced instead of refreshed"
        );
    }
    // Each channel got one update from the new session, identical to the
    // stale route, so BIRD counted it as `ignored` (the refresh), accepted
    // nothing new and received no withdrawal.
    let stats = lab.bird_import_stats();
    for channel in ["ipv4", "ipv6"] {
        let (old, new) = (stats_before[channel], stats[channel]);
        assert_eq!(
            new.updates[0],
            old.updates[0] + 1,
            "{channel} received: {new:?}"
        );
        assert_eq!(
            new.updates[3],
            old.updates[3] + 1,
            "{channel} ignored: {new:?}"
        );
        assert_eq!(
            new.updates[4], old.updates[4],
            "{channel} accepted: {new:?}"
        );
        assert_eq!(new.withdraws, old.withdraws, "{channel} withdraws: {new:?}");
    }
    assert_eq!(count(&lab.herald_log(), "session established"), 1);
}

#[test]
fn bird_route_refresh_after_an_import_filter_change_keeps_the_session() {
    let _serial = lock();
    let lab = Lab::new();
    lab.base_manifests();
    lab.write("peer.yaml", &peer("tor", ROUTER_V4, ROUTER_ASN, 65010, ""));
    let case = Case {
        kind: Kind::Ebgp2,
        transport: Transport::V4,
    };
    lab.write("adv.yaml", &case.advertisement());
    // BIRD starts with an import filter that rejects every route.
    let conf = |import: &str| bird_conf_import(NODE_V4, ROUTER_V4, ROUTER_ASN, 65010, "", import);
    let _bird = lab.bird(&conf("none"));
    lab.wait_listening();
    let _herald = lab.herald();
    lab.wait(
        "BIRD to receive Herald's routes and filter them out",
        || {
            let stats = lab.bird_import_stats();
            ["ipv4", "ipv6"]
                .iter()
                .all(|c| stats.get(*c).is_some_and(|s| s.updates[2] == 1))
        },
    );
    assert!(lab.bird_routes().is_empty(), "{:#?}", lab.bird_routes());
    let since = lab.bird_since();

    // The filter now accepts: BIRD asks for the routes again with a
    // ROUTE-REFRESH (Herald announced the capability) instead of resetting
    // the session, and Herald resends every route of each family.
    std::fs::write(lab.path("bird.conf"), conf("all")).unwrap();
    let reconfigured = lab.birdc(&["configure"]);
    assert!(reconfigured.contains("Reconfigured"), "{reconfigured}");
    let want = case.expected(&SERVICES[..1], Daemon::Bird.ebgp_local_pref());
    expect_routes(&lab, Daemon::Bird, case, "the refreshed routes", &want);
    assert!(lab.bird_established());
    assert_eq!(lab.bird_since(), since, "BIRD reset the session");
    let log = lab.herald_log();
    assert_eq!(count(&log, "session established"), 1, "{log}");
    let refreshed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("route refresh requested"))
        .collect();
    assert_eq!(refreshed.len(), 2, "one refresh per family:\n{log}");
    for family in ["ipv6=false", "ipv6=true"] {
        assert!(refreshed.iter().any(|l| l.contains(family)), "{log}");
    }
}

#[test]
fn frr_installs_weighted_ecmp_from_link_bandwidth() {
    let _serial = lock();
    let lab = Lab::with_nodes(2);
    lab.base_manifests();
    lab.write(
        "peer.yaml",
        &peer("tor", ROUTER_V4, 65001, 4_200_000_001, ""),
    );
    lab.write("adv.yaml", &advertisement("  weighted: true\n"));
    // One ready endpoint on n1, three on n2.
    let mut endpoints = String::new();
    for (i, node) in ["n1", "n2", "n2", "n2"].iter().enumerate() {
        endpoints.push_str(&format!(
            "  - addresses: [10.0.0.{}]\n    nodeName: {node}\n    conditions: {{ready: true}}\n",
            i + 1
        ));
    }
    lab.write(
        "endpoints.yaml",
        &format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n{endpoints}"
        ),
    );
    let _frr = lab.frr(&format!(
        "frr defaults datacenter\nhostname r\nrouter bgp 65001\n bgp router-id {ROUTER_V4}\n no bgp ebgp-requires-policy\n neighbor {n1} remote-as 4200000001\n neighbor {n2} remote-as 4200000001\n",
        n1 = node_v4(0),
        n2 = node_v4(1)
    ));
    let _h1 = lab.herald_on(0);
    let _h2 = lab.herald_on(1);
    lab.wait(
        "FRR to install one route with two weighted next hops",
        || next_hop_weights(&lab.kernel_route("198.51.100.10")).len() == 2,
    );
    let r = lab.kernel_route("198.51.100.10");
    let weights = next_hop_weights(&r);
    let (w1, w2) = (weights[&node_v4(0)], weights[&node_v4(1)]);
    assert_eq!(w2, 3 * w1, "weights 1:3 expected, got {w1}:{w2}\n{r}");
}
