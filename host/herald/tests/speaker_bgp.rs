//! End to end: the built `herald speaker` in one network namespace (the
//! node), a real router daemon from Debian in another (BIRD, GoBGP, FRR),
//! joined by a veth link on documentation prefixes. What the router shows
//! (birdc, gobgp, vtysh) is what is asserted.
//!
//! Needs root, bird2, gobgpd and frr (scripts/test.sh installs them).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use herald_netns::{Netns, Process, Segment, run, wait_for};

/// The tests share the machine's two cores and the daemons' habits: one at
/// a time.
static SERIAL: Mutex<()> = Mutex::new(());

const ROUTER_V4: &str = "192.0.2.1";
const NODE_V4: &str = "192.0.2.2";
const ROUTER_V6: &str = "2001:db8:ff::1";
const NODE_V6: &str = "2001:db8:ff::2";
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(herald_netns::unique("hbgp"));
        std::fs::create_dir_all(path.join("manifests")).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A router namespace and node namespaces on one segment.
struct Lab {
    router: Netns,
    nodes: Vec<Netns>,
    _segment: Segment,
    dir: TempDir,
}

/// Node `i`'s addresses (node 0 is `n1` at .2).
fn node_v4(i: usize) -> String {
    format!("192.0.2.{}", i + 2)
}

fn node_v6(i: usize) -> String {
    format!("2001:db8:ff::{}", i + 2)
}

impl Lab {
    fn new() -> Lab {
        Lab::with_nodes(1)
    }

    fn with_nodes(count: usize) -> Lab {
        let segment = Segment::new().unwrap();
        let router = Netns::new("br").unwrap();
        segment.attach(&router, "eth0").unwrap();
        let mut addresses = vec![(ROUTER_V4.to_owned(), ROUTER_V6.to_owned())];
        let mut nodes = Vec::new();
        for i in 0..count {
            let node = Netns::new("bn").unwrap();
            segment.attach(&node, "eth0").unwrap();
            addresses.push((node_v4(i), node_v6(i)));
            nodes.push(node);
        }
        for (ns, (v4, v6)) in std::iter::once(&router).chain(&nodes).zip(&addresses) {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"])
                .unwrap();
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"])
                .unwrap();
        }
        let dir = TempDir::new();
        Lab {
            router,
            nodes,
            _segment: segment,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn manifests(&self) -> PathBuf {
        self.path("manifests")
    }

    /// Writes (or replaces) one manifest file.
    fn write(&self, file: &str, yaml: &str) {
        let tmp = self.path("tmp.yaml");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.manifests().join(file)).unwrap();
    }

    fn remove(&self, file: &str) {
        std::fs::remove_file(self.manifests().join(file)).unwrap();
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

    /// Starts zebra and bgpd with `conf` (in a directory the `frr` user
    /// owns, as FRR drops privileges).
    fn frr(&self, conf: &str) -> (Process, Process) {
        let dir = self.path("frr");
        std::fs::create_dir_all(&dir).unwrap();
        let conf_path = dir.join("frr.conf");
        std::fs::write(&conf_path, conf).unwrap();
        run("chown", &["-R", "frr:frr", dir.to_str().unwrap()]).unwrap();
        run("chmod", &["755", self.dir.0.to_str().unwrap()]).unwrap();
        let d = dir.to_str().unwrap();
        let zserv = format!("{d}/zserv.api");
        let start = |daemon: &str| {
            let pid = format!("{d}/{daemon}.pid");
            self.router
                .spawn(
                    &format!("/usr/lib/frr/{daemon}"),
                    &[
                        "-f",
                        conf_path.to_str().unwrap(),
                        "-i",
                        &pid,
                        "-z",
                        &zserv,
                        "--vty_socket",
                        d,
                        "-u",
                        "frr",
                        "-g",
                        "frr",
                    ],
                    Some(&self.path(&format!("{daemon}.log"))),
                )
                .unwrap()
        };
        let zebra = start("zebra");
        wait_for("zebra's socket", WAIT, POLL, || {
            std::path::Path::new(&zserv).exists().then_some(())
        })
        .unwrap();
        (zebra, start("bgpd"))
    }

    fn vtysh(&self, command: &str) -> String {
        let dir = self.path("frr");
        match run(
            "vtysh",
            &["--vty_socket", dir.to_str().unwrap(), "-c", command],
        ) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => e.to_string(),
        }
    }

    fn herald(&self) -> Process {
        self.herald_on(0)
    }

    fn herald_on(&self, i: usize) -> Process {
        let name = format!("n{}", i + 1);
        self.nodes[i]
            .spawn(
                "env",
                &[
                    "RUST_LOG=info",
                    env!("CARGO_BIN_EXE_herald"),
                    "speaker",
                    "--node",
                    &name,
                    "--manifests",
                    self.manifests().to_str().unwrap(),
                ],
                Some(&self.path(&format!("herald-{i}.log"))),
            )
            .unwrap()
    }

    fn herald_log(&self) -> String {
        std::fs::read_to_string(self.path("herald-0.log")).unwrap_or_default()
    }

    fn bird(&self, conf: &str) -> Process {
        let path = self.path("bird.conf");
        std::fs::write(&path, conf).unwrap();
        self.router
            .spawn(
                "bird",
                &[
                    "-f",
                    "-c",
                    path.to_str().unwrap(),
                    "-s",
                    self.path("bird.ctl").to_str().unwrap(),
                    "-P",
                    self.path("bird.pid").to_str().unwrap(),
                ],
                Some(&self.path("bird.log")),
            )
            .unwrap()
    }

    fn birdc(&self, args: &[&str]) -> String {
        let ctl = self.path("bird.ctl");
        let mut all = vec!["-s", ctl.to_str().unwrap()];
        all.extend_from_slice(args);
        match run("birdc", &all) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => e.to_string(),
        }
    }

    fn bird_established(&self) -> bool {
        self.birdc(&["show", "protocols", "herald"])
            .contains("Established")
    }

    fn bird_route(&self, prefix: &str) -> String {
        self.birdc(&["show", "route", "all", prefix])
    }

    fn wait(&self, what: &str, mut check: impl FnMut() -> bool) {
        if let Err(e) = wait_for(what, WAIT, POLL, || check().then_some(())) {
            panic!(
                "{e}\n--- herald log ---\n{}\n--- bird log ---\n{}",
                self.herald_log(),
                std::fs::read_to_string(self.path("bird.log")).unwrap_or_default()
            );
        }
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

fn peer(name: &str, address: &str, peer_asn: u32, my_asn: u32, extra: &str) -> String {
    format!(
        r#"apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {{name: {name}}}
spec:
  peerAddress: "{address}"
  peerASN: {peer_asn}
  myASN: {my_asn}
  holdTime: 9
{extra}"#
    )
}

fn advertisement(extra: &str) -> String {
    format!(
        r#"apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {{name: public}}
spec:
  ipPools: [public]
{extra}"#
    )
}

fn bird_conf(neighbor: &str, local: &str, local_asn: u32, peer_asn: u32, extra: &str) -> String {
    format!(
        "router id {ROUTER_V4};\nprotocol device {{}}\n\
         protocol bgp herald {{ local {local} as {local_asn}; neighbor {neighbor} as {peer_asn}; hold time 9; {extra}\n\
         ipv4 {{ import all; export none; }}; ipv6 {{ import all; export none; }}; }}\n"
    )
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

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

#[test]
fn bird_ibgp_over_ipv6_transport_with_local_pref() {
    let _serial = lock();
    let lab = Lab::new();
    lab.base_manifests();
    lab.write(
        "peer.yaml",
        &peer("tor6", ROUTER_V6, 64512, 64512, "  routerID: 192.0.2.2\n"),
    );
    lab.write("adv.yaml", &advertisement("  localPref: 200\n"));
    let _bird = lab.bird(&bird_conf(NODE_V6, ROUTER_V6, 64512, 64512, ""));
    let _herald = lab.herald();
    lab.wait("BIRD to hold the IPv6 route over the IPv6 session", || {
        lab.bird_route("2001:db8:100::10/128")
            .contains("BGP.origin")
    });
    let v6 = lab.bird_route("2001:db8:100::10/128");
    assert!(v6.contains("BGP.local_pref: 200"), "{v6}");
    assert!(v6.contains(&format!("BGP.next_hop: {NODE_V6}")), "{v6}");
    assert!(
        v6.contains("BGP.as_path: \n") || v6.contains("BGP.as_path:\n"),
        "iBGP: empty AS_PATH\n{v6}"
    );
    // IPv4 routes travel too, with the node's IPv4 address as next hop.
    lab.wait("BIRD to hold the IPv4 route over the IPv6 session", || {
        lab.bird_route("198.51.100.10/32").contains("BGP.origin")
    });
    let v4 = lab.bird_route("198.51.100.10/32");
    assert!(v4.contains(&format!("BGP.next_hop: {NODE_V4}")), "{v4}");
    assert!(v4.contains("BGP.local_pref: 200"), "{v4}");
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

    // Herald is killed: BIRD keeps the routes as stale, then Herald's new
    // session refreshes them; they are never withdrawn.
    herald.signal("KILL").unwrap();
    herald.wait_exit(WAIT).unwrap();
    drop(herald);
    lab.wait("BIRD to notice Herald is gone", || !lab.bird_established());
    let stale = lab.birdc(&["show", "route", "all", "198.51.100.10/32"]);
    assert!(
        stale.contains("BGP.origin"),
        "route dropped at once:\n{stale}"
    );
    let _herald = lab.herald();
    let mut seen_established = false;
    wait_for("the restarted Herald's End-of-RIB", WAIT, POLL, || {
        let route = lab.bird_route("198.51.100.10/32");
        assert!(
            route.contains("BGP.origin"),
            "route withdrawn during Herald's restart:\n{route}"
        );
        seen_established |= lab.bird_established();
        let detail = lab.birdc(&["show", "protocols", "all", "herald"]);
        (seen_established && !detail.contains("Restart timer")).then_some(())
    })
    .unwrap();
    // Still there after the graceful restart completed.
    assert!(lab.bird_route("198.51.100.10/32").contains("BGP.origin"));
}

#[test]
fn gobgp_ebgp_4_byte_asn_routes_and_withdrawal() {
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
            "  communities: [\"64512:100\"]\n  largeCommunities: [\"4200000001:1:2\"]\n  med: 10\n  asPathPrepend: 1\n",
        ),
    );
    let conf = lab.path("gobgpd.toml");
    std::fs::write(
        &conf,
        format!(
            r#"[global.config]
  as = 65001
  router-id = "{ROUTER_V4}"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{NODE_V4}"
    peer-as = 4200000001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#
        ),
    )
    .unwrap();
    let _gobgpd = lab
        .router
        .spawn(
            "gobgpd",
            &[
                "-f",
                conf.to_str().unwrap(),
                "-t",
                "toml",
                "--api-hosts",
                "127.0.0.1:50051",
                "--pprof-disable",
            ],
            Some(&lab.path("gobgpd.log")),
        )
        .unwrap();
    let _herald = lab.herald();
    let rib = |family: &str| {
        lab.router
            .probe("gobgp", &["-p", "50051", "global", "rib", "-a", family])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    lab.wait("GoBGP to hold both routes", || {
        rib("ipv4").contains("198.51.100.10/32") && rib("ipv6").contains("2001:db8:100::10/128")
    });
    let v4 = rib("ipv4");
    let line = v4.lines().find(|l| l.contains("198.51.100.10/32")).unwrap();
    for expected in [
        NODE_V4,
        "4200000001 4200000001",
        "{Origin: i}",
        "{Med: 10}",
        "{Communities: 64512:100}",
        "4200000001:1:2",
    ] {
        assert!(line.contains(expected), "{expected:?} missing in {line}");
    }
    let v6 = rib("ipv6");
    let line = v6
        .lines()
        .find(|l| l.contains("2001:db8:100::10/128"))
        .unwrap();
    assert!(line.contains(NODE_V6), "{line}");
    lab.remove("service.yaml");
    lab.wait("GoBGP to drop the routes", || {
        !rib("ipv4").contains("198.51.100.10/32") && !rib("ipv6").contains("2001:db8:100::10/128")
    });
}

#[test]
fn frr_ebgp_over_ipv6_routes_installed_and_withdrawn() {
    let _serial = lock();
    let lab = Lab::new();
    lab.base_manifests();
    lab.write(
        "peer.yaml",
        &peer(
            "tor",
            ROUTER_V6,
            65001,
            4_200_000_001,
            "  routerID: 192.0.2.2\n",
        ),
    );
    lab.write(
        "adv.yaml",
        &advertisement(
            "  communities: [\"64512:100\"]\n  largeCommunities: [\"4200000001:1:2\"]\n  med: 10\n",
        ),
    );
    let _frr = lab.frr(&format!(
        "frr defaults datacenter\nhostname r\nrouter bgp 65001\n bgp router-id {ROUTER_V4}\n no bgp ebgp-requires-policy\n neighbor {NODE_V6} remote-as 4200000001\n address-family ipv4 unicast\n  neighbor {NODE_V6} activate\n exit-address-family\n address-family ipv6 unicast\n  neighbor {NODE_V6} activate\n exit-address-family\n"
    ));
    let _herald = lab.herald();
    lab.wait("FRR to select the IPv6 route", || {
        lab.vtysh("show bgp ipv6 unicast 2001:db8:100::10/128")
            .contains("best")
    });
    let v6 = lab.vtysh("show bgp ipv6 unicast 2001:db8:100::10/128");
    for expected in [
        "4200000001\n",
        &format!("{NODE_V6} from {NODE_V6}"),
        "metric 10",
        "Community: 64512:100",
        "Large Community: 4200000001:1:2",
    ] {
        assert!(v6.contains(expected), "{expected:?} missing in\n{v6}");
    }
    lab.wait("zebra to install the IPv6 route", || {
        let routes = lab
            .router
            .ip(&["-6", "route"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        routes.contains("2001:db8:100::10 nhid") && routes.contains(&format!("via {NODE_V6}"))
    });
    lab.wait("FRR to select the IPv4 route", || {
        lab.vtysh("show bgp ipv4 unicast 198.51.100.10/32")
            .contains("best")
    });
    let v4 = lab.vtysh("show bgp ipv4 unicast 198.51.100.10/32");
    assert!(v4.contains(&format!("{NODE_V4} from {NODE_V6}")), "{v4}");
    lab.remove("service.yaml");
    lab.wait("FRR to drop the routes", || {
        !lab.vtysh("show bgp ipv6 unicast 2001:db8:100::10/128")
            .contains("best")
            && !lab
                .vtysh("show bgp ipv4 unicast 198.51.100.10/32")
                .contains("best")
    });
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
    let route = || {
        lab.router
            .ip(&["route", "show", "198.51.100.10"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    lab.wait(
        "FRR to install one route with two weighted next hops",
        || {
            let r = route();
            r.contains(&format!("via {} dev eth0 weight", node_v4(0)))
                && r.contains(&format!("via {} dev eth0 weight", node_v4(1)))
        },
    );
    let r = route();
    let weight = |nh: &str| -> u32 {
        let line = r
            .lines()
            .find(|l| l.contains(&format!("via {nh} ")))
            .unwrap();
        line.split("weight ")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (w1, w2) = (weight(&node_v4(0)), weight(&node_v4(1)));
    assert_eq!(w2, 3 * w1, "weights 1:3 expected, got {w1}:{w2}\n{r}");
}
