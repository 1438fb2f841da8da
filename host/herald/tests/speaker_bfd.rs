//! BFD guarding BGP, end to end: the built `herald speaker` on a node with
//! a `BFDProfile` (100 ms × 3) on its `BGPPeer`s, and a router whose BGP is
//! tied to its own BFD — FRR's bgpd with bfdd (`neighbor … bfd profile`),
//! BIRD with `bfd on` — over IPv4 and IPv6, single hop.
//!
//! What is asserted is what a user relies on: the router holds the node's
//! routes while both are up; a hung node (all its packets dropped in its
//! namespace, PEERS.md) loses its routes at the router within the BFD
//! detection time (300 ms) plus a small bound, long before the BGP hold
//! time; and while BFD alone is cut (UDP 3784 dropped, TCP still through)
//! BGP stays down on Herald's side and comes back once BFD is Up.
//!
//! Needs root, frr, bird2 and nft (scripts/test.sh installs them).

mod bgp_lab;

use std::time::{Duration, Instant};

use bgp_lab::{Lab, NODE_V4, ROUTER_ASN, ROUTER_V4, advertisement, lock};
use herald_netns::wait_for;

const ROUTER_V6: &str = "2001:db8:ff::1";
const NODE_V6: &str = "2001:db8:ff::2";
const NODE_ASN: u32 = 65010;
/// The VIPs the node announces.
const VIP_V4: &str = "198.51.100.10/32";
const VIP_V6: &str = "2001:db8:100::10/128";
/// The BFD detection time at 100 ms × 3.
const DETECTION: Duration = Duration::from_millis(300);
/// What the router may take beyond the detection time to drop a route
/// (its BGP withdrawing, the RIB, the polling here, a loaded machine).
const BOUND: Duration = Duration::from_millis(500);
/// The BGP hold time on both sides: far above the detection time, so only
/// BFD can explain a fast withdrawal.
const HOLD_TIME: u16 = 30;
const WAIT: Duration = Duration::from_secs(30);
/// How often the router's view is polled while timing.
const FAST_POLL: Duration = Duration::from_millis(5);

impl Lab {
    fn bfd_lab() -> Lab {
        Lab::with_addresses(
            &[format!("{ROUTER_V4}/24"), format!("{ROUTER_V6}/64")],
            &[vec![format!("{NODE_V4}/24"), format!("{NODE_V6}/64")]],
            WAIT,
        )
    }

    /// The node, a pool, a dual-stack Service, the profile `fast`, one
    /// BGPPeer per family (each naming `fast`) and the advertisement.
    fn bfd_manifests(&self) {
        self.write(
            "node.yaml",
            &format!(
                r#"apiVersion: v1
kind: Node
metadata: {{name: n1}}
status:
  conditions: [{{type: Ready, status: "True"}}]
  addresses: [{{type: InternalIP, address: {NODE_V4}}}, {{type: InternalIP, address: "{NODE_V6}"}}]
---
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {{name: public}}
spec:
  addresses: [198.51.100.0/24, "2001:db8:100::/120"]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv4, IPv6]
  ports: [{{port: 80}}]
status:
  loadBalancer:
    ingress: [{{ip: 198.51.100.10}}, {{ip: "2001:db8:100::10"}}]
---
{advertisement}"#,
                advertisement = advertisement("")
            ),
        );
        self.write(
            "bfd.yaml",
            "apiVersion: herald.dev/v1alpha1\nkind: BFDProfile\nmetadata: {name: fast}\nspec:\n  receiveInterval: 100\n  transmitInterval: 100\n  detectMultiplier: 3\n",
        );
        self.write(
            "peers.yaml",
            &format!(
                "{}---\n{}",
                bgp_lab::peer(
                    "tor-v4",
                    ROUTER_V4,
                    ROUTER_ASN,
                    NODE_ASN,
                    HOLD_TIME,
                    "  families: [ipv4]\n  bfdProfile: fast\n"
                ),
                bgp_lab::peer(
                    "tor-v6",
                    ROUTER_V6,
                    ROUTER_ASN,
                    NODE_ASN,
                    HOLD_TIME,
                    "  families: [ipv6]\n  bfdProfile: fast\n"
                ),
            ),
        );
    }

    /// Whether FRR holds a path for `prefix`.
    fn frr_has(&self, prefix: &str) -> bool {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.vtysh_json(&format!("show bgp {family} unicast {prefix} json"))["paths"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    }

    /// FRR's status of its BFD peer `peer` (`up`, `down`, `init`).
    fn frr_bfd(&self, peer: &str) -> Option<String> {
        self.vtysh("show bfd peers brief")
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(peer))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
    }

    fn frr_established(&self, neighbor: &str) -> bool {
        self.vtysh_json(&format!("show bgp neighbors {neighbor} json"))[neighbor]["bgpState"]
            == "Established"
    }

    /// Whether BIRD holds a route for `prefix` (birdc exits 1 with
    /// "Network not found" when it does not).
    fn bird_has(&self, prefix: &str) -> bool {
        std::process::Command::new("birdc")
            .args(["-s", self.path("bird.ctl").to_str().unwrap()])
            .args(["show", "route", prefix])
            .output()
            .is_ok_and(|o| {
                o.status.success()
                    && String::from_utf8_lossy(&o.stdout)
                        .contains(prefix.split('/').next().unwrap())
            })
    }

    /// Loads an nftables ruleset in the node's namespace.
    fn node_nft(&self, name: &str, ruleset: &str) {
        let path = self.path(&format!("{name}.nft"));
        std::fs::write(&path, ruleset).unwrap();
        self.nodes[0]
            .exec("nft", &["-f", path.to_str().unwrap()])
            .unwrap();
    }

    /// Drops every packet in and out of the node (a hung node, PEERS.md).
    fn hang(&self) {
        self.node_nft(
            "hang",
            "table inet hang {\n\
             chain cin { type filter hook input priority 0; policy drop; }\n\
             chain cout { type filter hook output priority 0; policy drop; }\n\
             }\n",
        );
    }

    /// Undoes [`Lab::node_nft`]'s table `name`.
    fn node_nft_delete(&self, name: &str) {
        self.nodes[0]
            .exec("nft", &["delete", "table", "inet", name])
            .unwrap();
    }

    /// Waits (polling fast) until `gone` holds; how long that took since
    /// `since`. Fails after five seconds.
    fn time_until(&self, what: &str, since: Instant, mut gone: impl FnMut() -> bool) -> Duration {
        if let Err(e) = wait_for(what, Duration::from_secs(5), FAST_POLL, || {
            gone().then_some(())
        }) {
            self.fail(&e.to_string());
        }
        since.elapsed()
    }
}

fn frr_conf() -> String {
    format!(
        "frr defaults datacenter\nhostname r\n\
         bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n\
         router bgp {ROUTER_ASN}\n bgp router-id {ROUTER_V4}\n no bgp ebgp-requires-policy\n\
         \x20timers bgp 10 {HOLD_TIME}\n\
         \x20neighbor {NODE_V4} remote-as {NODE_ASN}\n neighbor {NODE_V4} bfd profile fast\n neighbor {NODE_V4} timers connect 1\n\
         \x20neighbor {NODE_V6} remote-as {NODE_ASN}\n neighbor {NODE_V6} bfd profile fast\n neighbor {NODE_V6} timers connect 1\n\
         \x20address-family ipv4 unicast\n  neighbor {NODE_V4} activate\n  no neighbor {NODE_V6} activate\n exit-address-family\n\
         \x20address-family ipv6 unicast\n  neighbor {NODE_V6} activate\n exit-address-family\n"
    )
}

#[test]
fn frr_drops_a_hung_nodes_routes_within_the_bfd_detection_time_over_ipv4_and_ipv6() {
    let _serial = lock();
    let lab = Lab::bfd_lab();
    let _frr = lab.frr_daemons(&frr_conf(), &["bfdd", "bgpd"]);
    lab.bfd_manifests();
    lab.wait_listening();
    let _herald = lab.herald();
    lab.wait("FRR's BFD sessions with the node to be up", || {
        lab.frr_bfd(NODE_V4).as_deref() == Some("up")
            && lab.frr_bfd(NODE_V6).as_deref() == Some("up")
    });
    lab.wait("FRR to hold the node's routes", || {
        lab.frr_has(VIP_V4) && lab.frr_has(VIP_V6)
    });

    lab.hang();
    let hung = Instant::now();
    let v4 = lab.time_until("FRR to drop the IPv4 route", hung, || !lab.frr_has(VIP_V4));
    let v6 = lab.time_until("FRR to drop the IPv6 route", hung, || !lab.frr_has(VIP_V6));
    eprintln!("FRR dropped the hung node's routes after {v4:?} (IPv4) and {v6:?} (IPv6)");
    for (family, took) in [("IPv4", v4), ("IPv6", v6)] {
        assert!(
            took < DETECTION + BOUND,
            "FRR should drop the {family} route within {DETECTION:?} + {BOUND:?}, took {took:?}"
        );
    }
    // BFD took the sessions down, not the hold timer: FRR sent Cease / BFD
    // Down (RFC 9384).
    for neighbor in [NODE_V4, NODE_V6] {
        let json = lab.vtysh_json(&format!("show bgp neighbors {neighbor} json"));
        let reason = json[neighbor]["lastNotificationReason"]
            .as_str()
            .unwrap_or_default();
        assert!(reason.contains("BFD Down"), "{neighbor}: {json:#}");
    }

    // The node comes back: BFD Up, then BGP, then the routes.
    lab.node_nft_delete("hang");
    lab.wait("the routes to come back", || {
        lab.frr_has(VIP_V4) && lab.frr_has(VIP_V6)
    });
}

#[test]
fn bgp_stays_down_while_bfd_is_down_and_comes_back_with_it() {
    let _serial = lock();
    let lab = Lab::bfd_lab();
    let _frr = lab.frr_daemons(&frr_conf(), &["bfdd", "bgpd"]);
    lab.bfd_manifests();
    lab.wait_listening();
    let _herald = lab.herald();
    lab.wait("BFD to be up and FRR to hold the IPv4 route", || {
        lab.frr_bfd(NODE_V4).as_deref() == Some("up") && lab.frr_has(VIP_V4)
    });
    let established = |lab: &Lab| lab.herald_log().matches("session established").count();
    let before = established(&lab);

    // BFD alone is cut: BGP's TCP still gets through.
    lab.node_nft(
        "nobfd",
        "table inet nobfd {\n\
         chain cin { type filter hook input priority 0; udp dport 3784 drop; }\n\
         chain cout { type filter hook output priority 0; udp dport 3784 drop; }\n\
         }\n",
    );
    let cut = Instant::now();
    let took = lab.time_until("FRR to drop the IPv4 route", cut, || !lab.frr_has(VIP_V4));
    assert!(
        took < DETECTION + BOUND,
        "BFD Down should take the session down within {DETECTION:?} + {BOUND:?}, took {took:?}"
    );
    lab.wait("Herald to hold BGP for BFD", || {
        lab.herald_log()
            .contains("BFD says the path is down: session down, held until BFD is Up")
    });
    // An observation window, not a synchronisation: FRR retries its
    // connection every second; Herald must refuse them all (and make none)
    // while BFD is down.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !lab.frr_established(NODE_V4) && !lab.frr_established(NODE_V6),
        "BGP came up over a path BFD says is down"
    );
    assert_eq!(
        established(&lab),
        before,
        "no session established meanwhile"
    );
    assert!(!lab.frr_has(VIP_V4));

    lab.node_nft_delete("nobfd");
    lab.wait("BFD, then BGP and the routes, to come back", || {
        lab.frr_bfd(NODE_V4).as_deref() == Some("up") && lab.frr_has(VIP_V4)
    });
}

#[test]
fn bird_with_bfd_on_drops_a_hung_nodes_routes_within_the_detection_time() {
    let _serial = lock();
    let lab = Lab::bfd_lab();
    let _bird = lab.bird(&format!(
        "router id {ROUTER_V4};\nprotocol device {{}}\nprotocol direct {{ ipv4; ipv6; }}\n\
         protocol bfd {{ interface \"eth0\" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }}; }}\n\
         protocol bgp herald4 {{ local {ROUTER_V4} as {ROUTER_ASN}; neighbor {NODE_V4} as {NODE_ASN}; hold time {HOLD_TIME}; bfd on;\n\
         ipv4 {{ import all; export none; }}; }}\n\
         protocol bgp herald6 {{ local {ROUTER_V6} as {ROUTER_ASN}; neighbor {NODE_V6} as {NODE_ASN}; hold time {HOLD_TIME}; bfd on;\n\
         ipv6 {{ import all; export none; }}; }}\n"
    ));
    lab.bfd_manifests();
    lab.wait_listening();
    let _herald = lab.herald();
    lab.wait(
        "BIRD's BFD sessions to be Up and BIRD to hold the routes",
        || {
            lab.birdc(&["show", "bfd", "sessions"])
                .matches(" Up ")
                .count()
                == 2
                && lab.bird_has(VIP_V4)
                && lab.bird_has(VIP_V6)
        },
    );

    lab.hang();
    let hung = Instant::now();
    let v4 = lab.time_until("BIRD to drop the IPv4 route", hung, || {
        !lab.bird_has(VIP_V4)
    });
    let v6 = lab.time_until("BIRD to drop the IPv6 route", hung, || {
        !lab.bird_has(VIP_V6)
    });
    eprintln!("BIRD dropped the hung node's routes after {v4:?} (IPv4) and {v6:?} (IPv6)");
    for (family, took) in [("IPv4", v4), ("IPv6", v6)] {
        assert!(
            took < DETECTION + BOUND,
            "BIRD should drop the {family} route within {DETECTION:?} + {BOUND:?}, took {took:?}"
        );
    }
    let protocols = lab.birdc(&["show", "protocols"]);
    assert!(
        protocols.matches("BFD session down").count() == 2,
        "BIRD names BFD as the reason:\n{protocols}"
    );
}

/// Graceful restart beside BFD (docs/bfd.md, "The C bit and graceful
/// restart"): with `gracefulRestart` on the peer, a speaker that dies and
/// comes back is a restart, not a path failure. Its kernel closes the TCP
/// connection at once, so FRR is already keeping the node's routes as
/// stale when BFD goes Down a detection time later, and it keeps them
/// (whether or not it is told to look at the C bit, which Herald sends
/// clear); the new session refreshes them. The route is never withdrawn;
/// without `gracefulRestart` it is withdrawn at once (the test fails).
#[test]
fn a_restarting_speaker_keeps_its_route_at_frr_with_graceful_restart_beside_bfd() {
    let _serial = lock();
    let lab = Lab::bfd_lab();
    let conf = frr_conf().replace(
        " no bgp ebgp-requires-policy\n",
        " no bgp ebgp-requires-policy\n bgp graceful-restart\n",
    );
    let _frr = lab.frr_daemons(&conf, &["bfdd", "bgpd"]);
    lab.bfd_manifests();
    lab.write(
        "peers.yaml",
        &bgp_lab::peer(
            "tor-v4",
            ROUTER_V4,
            ROUTER_ASN,
            NODE_ASN,
            HOLD_TIME,
            "  families: [ipv4]\n  bfdProfile: fast\n  gracefulRestart: true\n",
        ),
    );
    lab.wait_listening();
    let herald = lab.herald();
    lab.wait("BFD to be up and FRR to hold the IPv4 route", || {
        lab.frr_bfd(NODE_V4).as_deref() == Some("up") && lab.frr_has(VIP_V4)
    });

    // The speaker dies (SIGKILL): its TCP connection closes and its BFD
    // stops. FRR's BFD sees the session go down within the detection time,
    // and FRR must keep the route all along.
    drop(herald);
    let killed = Instant::now();
    let mut bfd_down = None;
    while killed.elapsed() < Duration::from_secs(3) {
        if !lab.frr_has(VIP_V4) {
            lab.fail(&format!(
                "FRR withdrew the route {:?} after the kill: the restart was taken for a failure",
                killed.elapsed()
            ));
        }
        if bfd_down.is_none() && lab.frr_bfd(NODE_V4).as_deref() != Some("up") {
            bfd_down = Some(killed.elapsed());
        }
        std::thread::sleep(FAST_POLL);
    }
    assert!(
        bfd_down.is_some(),
        "FRR's BFD session never went down: the test would show nothing"
    );

    // The speaker comes back: the session is re-established and the route
    // is still there, refreshed.
    let _herald = lab.herald();
    lab.wait("BGP to be re-established", || lab.frr_established(NODE_V4));
    lab.wait("BFD to be up again", || {
        lab.frr_bfd(NODE_V4).as_deref() == Some("up")
    });
    assert!(lab.frr_has(VIP_V4), "the route is gone after the restart");
}
