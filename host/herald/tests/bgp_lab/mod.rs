//! The lab of the BGP end-to-end tests (`speaker_bgp`, `speaker_bgp_passive`):
//! a router namespace and node namespaces on one bridged segment, a
//! temporary directory for manifests, configurations and logs, the built
//! `herald speaker` on the nodes and BIRD, GoBGP or FRR on the router, and
//! the routers' parsed views ([`routes`]). Each test file adds the methods
//! only it needs in an `impl Lab` of its own.

// Each test binary compiles this module separately and uses its own part of
// it; what one binary leaves unused is not dead.
#![allow(dead_code)]

pub mod routes;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use herald_netns::{Netns, Process, Segment, TempDir, run, wait_for};
use serde_json::Value;

/// The router's and node 0's IPv4 addresses.
pub const ROUTER_V4: &str = "192.0.2.1";
pub const NODE_V4: &str = "192.0.2.2";
/// The router's AS in every test.
pub const ROUTER_ASN: u32 = 65001;
/// The port of GoBGP's API inside the router namespace.
pub const GOBGP_API: &str = "50051";

/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(100);

/// The tests share the machine's two cores and the daemons' habits: one at
/// a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the test binary's one-at-a-time lock (also after a test panicked
/// holding it).
pub fn lock() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A router namespace and node namespaces on one segment, all removed with
/// the lab.
pub struct Lab {
    pub router: Netns,
    /// Node `i` runs Herald as the Kubernetes node `n{i+1}`.
    pub nodes: Vec<Netns>,
    pub segment: Segment,
    /// Manifests (in `manifests/`), configurations and logs (`*.log`).
    pub dir: TempDir,
    /// How long [`Lab::wait`] waits.
    pub timeout: Duration,
}

impl Lab {
    /// The router with the `router` addresses and one node for each entry
    /// of `nodes` with its addresses, each `ADDRESS/LENGTH` on the host's
    /// `eth0` (IPv6 without duplicate address detection: usable at once);
    /// an empty `manifests` directory. [`Lab::wait`] gives up after
    /// `timeout`.
    pub fn with_addresses(router: &[String], nodes: &[Vec<String>], timeout: Duration) -> Lab {
        let segment = Segment::new().unwrap();
        let router_ns = Netns::new("br").unwrap();
        segment.attach(&router_ns, "eth0").unwrap();
        let mut node_ns = Vec::new();
        for _ in nodes {
            let node = Netns::new("bn").unwrap();
            segment.attach(&node, "eth0").unwrap();
            node_ns.push(node);
        }
        let hosts = std::iter::once((&router_ns, router))
            .chain(node_ns.iter().zip(nodes.iter().map(Vec::as_slice)));
        for (ns, addresses) in hosts {
            for address in addresses {
                let mut args = vec!["addr", "add", address, "dev", "eth0"];
                if address.contains(':') {
                    args.push("nodad");
                }
                ns.ip(&args).unwrap();
            }
        }
        let dir = TempDir::new("hbgp").unwrap();
        std::fs::create_dir(dir.join("manifests")).unwrap();
        Lab {
            router: router_ns,
            nodes: node_ns,
            segment,
            dir,
            timeout,
        }
    }

    /// A file in the lab's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The manifest directory every node's Herald reads.
    pub fn manifest_dir(&self) -> PathBuf {
        self.path("manifests")
    }

    /// Writes (or replaces) one manifest file at once, by a rename.
    pub fn write(&self, file: &str, yaml: &str) {
        let tmp = self.path("tmp.yaml");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, self.manifest_dir().join(file)).unwrap();
    }

    /// Removes one manifest file.
    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.manifest_dir().join(file)).unwrap();
    }

    /// Starts Herald on node 0.
    pub fn herald(&self) -> Process {
        self.herald_on(0)
    }

    /// Starts Herald on node `i`, logging to `herald-{i}.log`.
    pub fn herald_on(&self, i: usize) -> Process {
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
                    self.manifest_dir().to_str().unwrap(),
                ],
                Some(&self.path(&format!("herald-{i}.log"))),
            )
            .unwrap()
    }

    /// What Herald on node 0 logged so far.
    pub fn herald_log(&self) -> String {
        std::fs::read_to_string(self.path("herald-0.log")).unwrap_or_default()
    }

    /// Starts BIRD on the router with `conf` (kept as `bird.conf`), its
    /// control socket for [`Lab::birdc`].
    pub fn bird(&self, conf: &str) -> Process {
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

    /// What BIRD logged so far.
    pub fn bird_log(&self) -> String {
        std::fs::read_to_string(self.path("bird.log")).unwrap_or_default()
    }

    /// `birdc ARGS…`'s answer, or the error while BIRD does not answer.
    pub fn birdc(&self, args: &[&str]) -> String {
        let ctl = self.path("bird.ctl");
        let mut all = vec!["-s", ctl.to_str().unwrap()];
        all.extend_from_slice(args);
        match run("birdc", &all) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => e.to_string(),
        }
    }

    /// BIRD's routes for `prefix`, with their attributes.
    pub fn bird_route(&self, prefix: &str) -> String {
        self.birdc(&["show", "route", "all", prefix])
    }

    /// Starts zebra and bgpd with `conf` (in a directory the `frr` user
    /// owns, as FRR drops privileges).
    pub fn frr(&self, conf: &str) -> (Process, Process) {
        let mut daemons = self.frr_daemons(conf, &["bgpd"]);
        (daemons.remove(0), daemons.remove(0))
    }

    /// Starts zebra and then `daemons` (`bgpd`, `bfdd`) with `conf`;
    /// returns them in that order, zebra first. bfdd's control socket is in
    /// FRR's directory too.
    pub fn frr_daemons(&self, conf: &str, daemons: &[&str]) -> Vec<Process> {
        let dir = self.path("frr");
        std::fs::create_dir_all(&dir).unwrap();
        let conf_path = dir.join("frr.conf");
        std::fs::write(&conf_path, conf).unwrap();
        run("chown", &["-R", "frr:frr", dir.to_str().unwrap()]).unwrap();
        run("chmod", &["755", self.dir.path().to_str().unwrap()]).unwrap();
        let d = dir.to_str().unwrap();
        let zserv = format!("{d}/zserv.api");
        let bfdctl = format!("{d}/bfdd.sock");
        let start = |daemon: &str| {
            let pid = format!("{d}/{daemon}.pid");
            let mut args = vec![
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
            ];
            if daemon == "bfdd" {
                args.extend_from_slice(&["--bfdctl", &bfdctl]);
            }
            self.router
                .spawn(
                    &format!("/usr/lib/frr/{daemon}"),
                    &args,
                    Some(&self.path(&format!("{daemon}.log"))),
                )
                .unwrap()
        };
        let zebra = start("zebra");
        wait_for("zebra's socket", self.timeout, POLL, || {
            std::path::Path::new(&zserv).exists().then_some(())
        })
        .unwrap();
        std::iter::once(zebra)
            .chain(daemons.iter().map(|d| start(d)))
            .collect()
    }

    /// `vtysh -c COMMAND`'s answer, or the error while bgpd does not answer.
    pub fn vtysh(&self, command: &str) -> String {
        let dir = self.path("frr");
        match run(
            "vtysh",
            &["--vty_socket", dir.to_str().unwrap(), "-c", command],
        ) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => e.to_string(),
        }
    }

    /// A vtysh command's JSON answer; `Null` while bgpd does not answer.
    pub fn vtysh_json(&self, command: &str) -> Value {
        serde_json::from_str(&self.vtysh(command)).unwrap_or(Value::Null)
    }

    /// Starts gobgpd with `conf` (TOML), its API on [`GOBGP_API`].
    pub fn gobgpd(&self, conf: &str) -> Process {
        let path = self.path("gobgpd.toml");
        std::fs::write(&path, conf).unwrap();
        self.router
            .spawn(
                "gobgpd",
                &[
                    "-f",
                    path.to_str().unwrap(),
                    "-t",
                    "toml",
                    "--api-hosts",
                    &format!("127.0.0.1:{GOBGP_API}"),
                    "--pprof-disable",
                ],
                Some(&self.path("gobgpd.log")),
            )
            .unwrap()
    }

    /// `gobgp -j ARGS…`'s JSON answer; `Null` while gobgpd does not answer
    /// (gobgp then fails, printing `{"error": …}`).
    pub fn gobgp_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-p", GOBGP_API, "-j"];
        all.extend_from_slice(args);
        self.router
            .probe("gobgp", &all)
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or(Value::Null)
    }

    /// Waits until the router daemon listens on the BGP port, so Herald's
    /// first connection attempt is not refused.
    pub fn wait_listening(&self) {
        self.wait("the router to listen on port 179", || {
            self.router
                .probe("ss", &["-Hltn", "sport = :179"])
                .is_ok_and(|o| !o.stdout.is_empty())
        });
    }

    /// Node `i`'s established TCP connections to or from port 179, as
    /// (local, peer) address:port pairs.
    pub fn bgp_connections(&self, i: usize) -> Vec<(String, String)> {
        let out = self.nodes[i]
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

    /// Every log the lab's processes wrote, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            out.push_str(&format!("--- {} ---\n{text}\n", file.display()));
        }
        out
    }

    /// Waits until `check` holds, at most [`Lab::timeout`]; fails the test
    /// as [`Lab::fail`] does otherwise.
    pub fn wait(&self, what: &str, mut check: impl FnMut() -> bool) {
        if let Err(e) = wait_for(what, self.timeout, POLL, || check().then_some(())) {
            self.fail(&e.to_string());
        }
    }

    /// Fails the test with `why`, each node's BGP connections and every log.
    pub fn fail(&self, why: &str) -> ! {
        let mut connections = String::new();
        for i in 0..self.nodes.len() {
            connections.push_str(&format!(
                "--- BGP connections of n{} ---\n{:?}\n",
                i + 1,
                self.bgp_connections(i)
            ));
        }
        panic!("{why}\n{connections}{}", self.logs());
    }
}

/// A BGPPeer manifest; `extra` adds spec lines (indented by two spaces).
pub fn peer(
    name: &str,
    address: &str,
    peer_asn: u32,
    my_asn: u32,
    hold_time: u16,
    extra: &str,
) -> String {
    format!(
        r#"apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {{name: {name}}}
spec:
  peerAddress: "{address}"
  peerASN: {peer_asn}
  myASN: {my_asn}
  holdTime: {hold_time}
{extra}"#
    )
}

/// The BGPAdvertisement `public` of the pool `public`; `extra` adds spec
/// lines (indented by two spaces).
pub fn advertisement(extra: &str) -> String {
    format!(
        r#"apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {{name: public}}
spec:
  ipPools: [public]
{extra}"#
    )
}

/// A gobgpd configuration (TOML): the router in [`ROUTER_ASN`] with
/// `router_id`, one neighbour `node` in `node_asn`, both unicast families.
pub fn gobgpd_conf(router_id: &str, node: &str, node_asn: u32) -> String {
    format!(
        r#"[global.config]
  as = {ROUTER_ASN}
  router-id = "{router_id}"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{node}"
    peer-as = {node_asn}
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#
    )
}

/// An FRR configuration: the router in [`ROUTER_ASN`] with `router_id`, one
/// neighbour `node` in `node_asn` active in both unicast families, no eBGP
/// policy required. `neighbor_extra` adds lines under `router bgp`.
pub fn frr_conf(router_id: &str, node: &str, node_asn: u32, neighbor_extra: &str) -> String {
    format!(
        "frr defaults datacenter\nhostname r\nrouter bgp {ROUTER_ASN}\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n neighbor {node} remote-as {node_asn}\n{neighbor_extra} address-family ipv4 unicast\n  neighbor {node} activate\n exit-address-family\n address-family ipv6 unicast\n  neighbor {node} activate\n exit-address-family\n"
    )
}

impl Lab {
    /// The router's kernel route to `destination` (`ip route show`).
    pub fn kernel_route(&self, destination: &str) -> String {
        self.router
            .ip(&["route", "show", destination])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// The next hops of a multipath kernel route and their weights
/// (`nexthop via ADDRESS dev IF weight N` lines).
pub fn next_hop_weights(route: &str) -> std::collections::BTreeMap<String, u32> {
    route
        .lines()
        .filter_map(|line| {
            let via = line.split("via ").nth(1)?.split_whitespace().next()?;
            let weight = line.split("weight ").nth(1)?.trim().parse().ok()?;
            Some((via.to_owned(), weight))
        })
        .collect()
}
