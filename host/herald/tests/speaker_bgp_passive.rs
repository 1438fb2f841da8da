//! End to end: passive peers and connection collisions (RFC 4271 §6.8)
//! between the built `herald speaker` (node namespace) and BIRD (router
//! namespace) on a bridged segment of documentation prefixes. Who opened
//! the surviving connection is read off `ss` in the node's namespace: the
//! router's connection has Herald's side on port 179.
//!
//! The collision tests force one with an nftables gate on the bridge:
//! first no BGP message passes (both TCP connections come up, both OPENs
//! wait), then only the router's OPENs pass, one connection after the
//! other (Herald's first connection is in OpenConfirm when the second OPEN
//! arrives: a collision Herald must resolve), then everything passes.
//!
//! Needs root, bird2, socat and nftables (scripts/test.sh installs them).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use herald_netns::{Netns, Process, Segment, run, wait_for};

/// The tests share the machine's two cores and the daemons' habits: one at
/// a time.
static SERIAL: Mutex<()> = Mutex::new(());

const ROUTER_V4: &str = "192.0.2.1";
const NODE_V4: &str = "192.0.2.2";
/// A second address of the router's that no BGPPeer names.
const STRANGER_V4: &str = "192.0.2.9";
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(herald_netns::unique("hbgpp"));
        std::fs::create_dir_all(path.join("manifests")).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A router and one node on one segment.
struct Lab {
    router: Netns,
    node: Netns,
    segment: Segment,
    dir: TempDir,
}

impl Lab {
    fn new() -> Lab {
        let segment = Segment::new().unwrap();
        let router = Netns::new("pr").unwrap();
        let node = Netns::new("pn").unwrap();
        segment.attach(&router, "eth0").unwrap();
        segment.attach(&node, "eth0").unwrap();
        for (ns, v4) in [(&router, ROUTER_V4), (&node, NODE_V4)] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"])
                .unwrap();
        }
        Lab {
            router,
            node,
            segment,
            dir: TempDir::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn write(&self, file: &str, yaml: &str) {
        let tmp = self.path("tmp.yaml");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.path("manifests").join(file)).unwrap();
    }

    /// The node, a pool, a Service, an advertisement and the BGPPeer with
    /// `extra` spec lines.
    fn manifests(&self, hold_time: u16, extra: &str) {
        self.write(
            "base.yaml",
            &format!(
                r#"apiVersion: v1
kind: Node
metadata: {{name: n1}}
status:
  conditions: [{{type: Ready, status: "True"}}]
  addresses: [{{type: InternalIP, address: {NODE_V4}}}]
---
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {{name: public}}
spec:
  addresses: [198.51.100.0/24]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: LoadBalancer
  ports: [{{port: 80}}]
status:
  loadBalancer:
    ingress: [{{ip: 198.51.100.10}}]
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {{name: public}}
spec:
  ipPools: [public]
"#
            ),
        );
        self.write(
            "peer.yaml",
            &format!(
                r#"apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {{name: tor}}
spec:
  peerAddress: "{ROUTER_V4}"
  peerASN: 65001
  myASN: 4200000001
  holdTime: {hold_time}
  families: [ipv4]
{extra}"#
            ),
        );
    }

    fn herald(&self) -> Process {
        self.node
            .spawn(
                "env",
                &[
                    "RUST_LOG=info",
                    env!("CARGO_BIN_EXE_herald"),
                    "speaker",
                    "--node",
                    "n1",
                    "--manifests",
                    self.path("manifests").to_str().unwrap(),
                ],
                Some(&self.path("herald.log")),
            )
            .unwrap()
    }

    fn herald_log(&self) -> String {
        std::fs::read_to_string(self.path("herald.log")).unwrap_or_default()
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

    fn bird_log(&self) -> String {
        std::fs::read_to_string(self.path("bird.log")).unwrap_or_default()
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

    fn protocol(&self, name: &str) -> String {
        self.birdc(&["show", "protocols", "all", name])
    }

    fn bird_holds_the_route(&self) -> bool {
        self.birdc(&["show", "route", "all", "198.51.100.10/32"])
            .contains("BGP.origin")
    }

    /// The node's established TCP connections to or from port 179, as
    /// (local, peer) address:port pairs.
    fn bgp_connections(&self) -> Vec<(String, String)> {
        let out = self
            .node
            .exec("ss", &["-Htn", "state", "established"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (local, peer) = (fields.get(2)?, fields.get(3)?);
                (local.ends_with(":179") || peer.ends_with(":179"))
                    .then(|| (local.to_string(), peer.to_string()))
            })
            .collect()
    }

    /// Replaces the bridge's filter with `rules` (none: let all pass).
    /// Replaces the switch's hold rules with `rules`, in one nft
    /// transaction: were the old rules deleted before the new ones were
    /// added, a retransmitted OPEN could slip through in between.
    fn gate(&self, rules: &[&str]) {
        let mut script = String::from("table bridge hgate\ndelete table bridge hgate\n");
        if !rules.is_empty() {
            script.push_str(
                "table bridge hgate {\n  chain hold {\n    type filter hook forward priority 0;\n",
            );
            for rule in rules {
                script.push_str(&format!("    {rule}\n"));
            }
            script.push_str("  }\n}\n");
        }
        let path = self.dir.0.join("gate.nft");
        std::fs::write(&path, script).unwrap();
        self.segment
            .switch()
            .exec("nft", &["-f", path.to_str().unwrap()])
            .unwrap();
    }

    fn wait(&self, what: &str, mut check: impl FnMut() -> bool) {
        if let Err(e) = wait_for(what, WAIT, POLL, || check().then_some(())) {
            self.fail(&e.to_string());
        }
    }

    /// Fails the test with `why`, the connections and both logs.
    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n--- connections ---\n{:?}\n--- herald log ---\n{}\n--- bird log ---\n{}",
            self.bgp_connections(),
            self.herald_log(),
            self.bird_log()
        );
    }
}

/// BIRD facing Herald, connecting out (no `passive`) after a 1 s delay.
fn bird_conf(router_id: &str, extra: &str) -> String {
    format!(
        "log stderr all;\nrouter id {router_id};\nprotocol device {{}}\n\
         protocol bgp herald {{ local {ROUTER_V4} as 65001; neighbor {NODE_V4} as 4200000001;\n\
         connect delay time 1; connect retry time 2; debug {{ states, events }}; {extra}\n\
         ipv4 {{ import all; export none; }}; }}\n"
    )
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a connection was opened by Herald (its side is not port 179).
fn opened_by_herald((local, _): &(String, String)) -> bool {
    !local.ends_with(":179")
}

#[test]
fn passive_herald_takes_birds_connection_and_never_connects() {
    let _serial = lock();
    let lab = Lab::new();
    lab.manifests(9, "  passive: true\n");
    let _bird = lab.bird(&bird_conf(ROUTER_V4, "hold time 9;"));
    let _herald = lab.herald();
    lab.wait("BIRD to hold 198.51.100.10/32 from passive Herald", || {
        lab.bird_holds_the_route()
    });
    let connections = lab.bgp_connections();
    assert_eq!(
        connections.len(),
        1,
        "one session connection: {connections:?}"
    );
    assert_eq!(
        connections[0],
        (format!("{NODE_V4}:179"), connections[0].1.clone()),
        "BIRD opened it, to Herald's port 179"
    );
    let log = lab.herald_log();
    assert!(log.contains("accepted the peer's connection"), "{log}");
    assert!(
        !log.contains("connecting"),
        "passive Herald connected:\n{log}"
    );
}

#[test]
fn passive_listener_rejects_an_address_that_is_no_peer_and_checks_md5() {
    let _serial = lock();
    let lab = Lab::new();
    lab.router
        .ip(&["addr", "add", &format!("{STRANGER_V4}/24"), "dev", "eth0"])
        .unwrap();
    lab.manifests(9, "  passive: true\n  password: s3cret\n");
    let _bird = lab.bird(&bird_conf(ROUTER_V4, "hold time 9; password \"s3cret\";"));
    let _herald = lab.herald();
    lab.wait("the signed session from the configured address", || {
        lab.bird_holds_the_route()
    });
    // The router again, from an address no BGPPeer names: a NOTIFICATION
    // Cease / Connection Rejected (RFC 4486 §4), then the end of the
    // connection.
    let out = lab
        .router
        .exec(
            "socat",
            &[
                "-u",
                "-T",
                "10",
                &format!("TCP:{NODE_V4}:179,bind={STRANGER_V4}"),
                "STDOUT",
            ],
        )
        .unwrap();
    let mut rejected = vec![0xff; 16];
    rejected.extend_from_slice(&[0, 21, 3, 6, 5]);
    assert_eq!(out.stdout, rejected);
    let log = lab.herald_log();
    assert!(
        log.contains(&format!("remote={STRANGER_V4}:")) && log.contains("refused a BGP connection"),
        "{log}"
    );
    // The session did not notice.
    assert!(lab.protocol("herald").contains("Established"));
    assert_eq!(log.matches("session established").count(), 1, "{log}");
}

/// Both sides active, a collision forced in OpenConfirm; the connection
/// opened by the side with the higher router ID must survive.
fn collision(bird_router_id: &str, herald_keeps_its_own: bool) {
    let _serial = lock();
    let lab = Lab::new();
    lab.manifests(90, "");
    // Phase 1: no BGP message (first octet of the marker) crosses.
    lab.gate(&[
        "tcp dport 179 @ih,0,8 0xff drop",
        "tcp sport 179 @ih,0,8 0xff drop",
    ]);
    let _bird = lab.bird(&bird_conf(bird_router_id, "hold time 90;"));
    // BIRD tried Herald's node before Herald runs; now it waits 2 s
    // between attempts and takes connections.
    lab.wait("BIRD's first attempt to fail", || {
        lab.protocol("herald").contains("Connection refused")
    });
    let _herald = lab.herald();
    lab.wait("both TCP connections up, both OPENs held", || {
        let c = lab.bgp_connections();
        c.len() == 2 && c.iter().any(opened_by_herald) && !c.iter().all(opened_by_herald)
    });
    // Phase 2: nothing from Herald reaches BIRD. BIRD's OPEN on the
    // connection that must survive reaches Herald first (OpenConfirm
    // there), then the one on the other: a collision Herald resolves by
    // closing the connection that just got its OPEN, on which Herald has
    // sent nothing but its OPEN. (Had Herald confirmed the losing one first,
    // its KEEPALIVE would let BIRD establish there, only to be closed.)
    let (lost, lost_port) = if herald_keeps_its_own {
        ("incoming", "dport")
    } else {
        ("outgoing", "sport")
    };
    let from_herald = [
        format!("ip daddr {ROUTER_V4} tcp dport 179 @ih,0,8 0xff drop"),
        format!("ip daddr {ROUTER_V4} tcp sport 179 @ih,0,8 0xff drop"),
    ];
    let to_losing = format!("ip saddr {ROUTER_V4} tcp {lost_port} 179 @ih,0,8 0xff drop");
    lab.gate(&[&from_herald[0], &from_herald[1], &to_losing]);
    lab.wait("Herald to confirm the surviving connection", || {
        lab.herald_log().contains("to=OpenConfirm")
    });
    lab.gate(&[&from_herald[0], &from_herald[1]]);
    lab.wait("Herald to close the losing connection", || {
        lab.herald_log().contains(&format!(
            "connection collision (RFC 4271 §6.8): closing this connection peer=tor connection={lost}"
        ))
    });
    // Phase 3: all passes; BIRD gets Herald's Cease on the losing connection
    // (or resolves the collision the same way) and establishes on the other.
    lab.gate(&[]);
    lab.wait("BIRD to hold the route", || lab.bird_holds_the_route());
    let connections = lab.bgp_connections();
    if connections.len() != 1 || opened_by_herald(&connections[0]) != herald_keeps_its_own {
        lab.fail("the higher router ID keeps the connection it opened, and only that one");
    }
    let log = lab.herald_log();
    assert_eq!(
        log.matches("session established").count(),
        1,
        "one session:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "session established peer=tor connection={}",
            match lost {
                "incoming" => "outgoing",
                _ => "incoming",
            }
        )),
        "{log}"
    );
    // BIRD agreed: one session on its side too, never reset.
    let bird_log = lab.bird_log();
    assert_eq!(
        bird_log.matches("BGP session established").count(),
        1,
        "{bird_log}"
    );
    assert!(lab.protocol("herald").contains("Established"));
}

#[test]
fn collision_with_bird_keeps_heralds_connection_when_its_router_id_is_higher() {
    // Herald's identifier is the node's address, 192.0.2.2.
    collision(ROUTER_V4, true);
}

#[test]
fn collision_with_bird_keeps_birds_connection_when_its_router_id_is_higher() {
    collision("192.0.2.200", false);
}
