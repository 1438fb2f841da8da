//! End to end on a real control plane, both modes:
//! - BGP: `kubectl apply` of an IPPool, a BGPPeer (its TCP MD5 password in
//!   a Secret), a BGPAdvertisement and a LoadBalancer Service puts the
//!   VIP's route at BIRD from both nodes within a bounded time; `kubectl
//!   delete` of the Service withdraws it.
//! - L2: with an L2Advertisement instead, a client on the nodes' segment
//!   reaches the VIP over TCP at the one node that answers ARP for it; when
//!   that node's speaker dies the other takes over; `kubectl delete` of the
//!   Service leaves no node answering.
//!
//! Pieces: the shared etcd and kube-apiserver (tests/control-plane), the
//! CRDs, `herald controller` as a child process on the host, a router (or
//! client) namespace and two nodes as namespaces on one segment (bgp_lab's
//! `Lab`), BIRD in the router namespace for BGP, and a `herald speaker` in
//! each node namespace reading the API (with gossip membership for L2).
//!
//! How a speaker in a node namespace reaches the API server, which listens
//! on 127.0.0.1 of the host's network namespace: through a UNIX socket.
//! Socket paths are not network-namespaced, so `socat` on the host relays
//! `lab/api.sock` to the API server's loopback port, and a `socat` inside
//! each node namespace listens on that namespace's own 127.0.0.1:6443 and
//! relays to the socket. The speaker's kubeconfig is the admin's with the
//! server `https://127.0.0.1:6443`: the API server's certificate names
//! 127.0.0.1, so TLS is verified as usual. Nothing changes on the host's
//! network (no address, route or interface), the API server stays bound to
//! loopback, and the namespaces keep no route anywhere but their segment.
//! A veth into the host with the API server bound to a documentation
//! address would change the host's network and the shared harness for
//! every test binary; the relays need neither.
//!
//! Needs root, BIRD, socat, arping (scripts/test.sh), and the control
//! plane's binaries.

mod bgp_lab;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bgp_lab::{Lab, ROUTER_ASN, ROUTER_V4, lock};
use herald_control_plane::ControlPlane;
use herald_netns::{Process, wait_for};

/// The nodes' ASN.
const NODE_ASN: u32 = 4200000001;
/// The VIP the BGP test's pool holds (its only address).
const VIP: &str = "198.51.100.20";
/// The VIP the L2 test's pool holds (its only address, on the nodes'
/// segment).
const L2_VIP: &str = "192.0.2.200";
/// The port the nodes' TCP listeners answer on with their node's name.
const ECHO_PORT: u16 = 7000;
/// The port speakers gossip on (membership, for L2).
const GOSSIP_PORT: u16 = 7946;
/// The TCP MD5 password, in a Secret for the speakers and in BIRD's
/// configuration.
const PASSWORD: &str = "e2e-s3cret";
/// The port each node namespace's relay listens on, on its own loopback.
const API_PORT: u16 = 6443;
/// How long each step may take: the watch events, a plan, a BGP session
/// opening (BIRD's and Herald's first connection attempts) and an UPDATE.
const BOUND: Duration = Duration::from_secs(60);

fn node_v4(i: usize) -> String {
    format!("192.0.2.{}", i + 2)
}

/// The shared control plane with Herald's CRDs installed.
fn with_crds() -> &'static ControlPlane {
    herald_control_plane::with_crds(env!("CARGO_BIN_EXE_herald"))
}

/// A process on the host, killed and reaped when dropped.
struct HostProcess(Child);

impl HostProcess {
    fn start(program: &str, args: &[&str], envs: &[(&str, &Path)], log: &Path) -> HostProcess {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        HostProcess(child)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lab, the relays to the API server, the controller and the Node
/// objects; speakers start with [`E2e::speaker`].
struct E2e {
    cp: &'static ControlPlane,
    lab: Lab,
    node_kubeconfig: PathBuf,
    _controller: HostProcess,
    _node_relays: Vec<Process>,
    _host_relay: HostProcess,
}

impl E2e {
    /// A router (or client) at 192.0.2.1 and two nodes on one segment, the
    /// relays, `herald controller`, and Nodes `n1` and `n2`.
    fn start() -> E2e {
        let cp = with_crds();
        let lab = Lab::with_addresses(
            &["192.0.2.1/24".to_owned()],
            &[
                vec![format!("{}/24", node_v4(0))],
                vec![format!("{}/24", node_v4(1))],
            ],
            BOUND,
        );
        // The relays: host side first, so the socket exists.
        let socket = lab.path("api.sock");
        let port = cp.server().rsplit(':').next().unwrap().to_owned();
        let host_relay = HostProcess::start(
            "socat",
            &[
                &format!("UNIX-LISTEN:{},fork", socket.display()),
                &format!("TCP:127.0.0.1:{port}"),
            ],
            &[],
            &lab.path("relay-host.log"),
        );
        wait_for("the relay's socket", BOUND, bgp_lab::POLL, || {
            socket.exists().then_some(())
        })
        .unwrap();
        let node_relays: Vec<Process> = (0..lab.nodes.len())
            .map(|i| {
                lab.nodes[i]
                    .spawn(
                        "socat",
                        &[
                            &format!("TCP-LISTEN:{API_PORT},bind=127.0.0.1,reuseaddr,fork"),
                            &format!("UNIX-CONNECT:{}", socket.display()),
                        ],
                        Some(&lab.path(&format!("relay-n{}.log", i + 1))),
                    )
                    .unwrap()
            })
            .collect();
        let kubeconfig = std::fs::read_to_string(cp.kubeconfig())
            .unwrap()
            .replace(cp.server(), &format!("https://127.0.0.1:{API_PORT}"));
        let node_kubeconfig = lab.path("node-kubeconfig");
        std::fs::write(&node_kubeconfig, kubeconfig).unwrap();
        // A Lease of its own: the one the other test's killed controller
        // held would keep this one waiting for the term to run out.
        let lease = herald_netns::unique("e2e");
        let controller = HostProcess::start(
            env!("CARGO_BIN_EXE_herald"),
            &["controller", "--lease-name", &lease],
            &[("KUBECONFIG", &cp.kubeconfig())],
            &lab.path("controller.log"),
        );
        let e = E2e {
            cp,
            lab,
            node_kubeconfig,
            _controller: controller,
            _node_relays: node_relays,
            _host_relay: host_relay,
        };
        for i in 0..e.lab.nodes.len() {
            node(&e, i);
        }
        e
    }

    /// Starts the speaker of node `i` (`n{i+1}`) with `extra` flags.
    fn speaker(&self, i: usize, extra: &[&str]) -> Process {
        let kubeconfig = format!("KUBECONFIG={}", self.node_kubeconfig.display());
        let node = format!("n{}", i + 1);
        let mut args = vec![
            kubeconfig.as_str(),
            "HERALD_LOG=info",
            env!("CARGO_BIN_EXE_herald"),
            "speaker",
            "--node",
            &node,
        ];
        args.extend_from_slice(extra);
        self.lab.nodes[i]
            .spawn(
                "env",
                &args,
                Some(&self.lab.path(&format!("speaker-n{}.log", i + 1))),
            )
            .unwrap()
    }

    fn kubectl(&self, args: &[&str], input: Option<&str>) {
        if let Err(e) = self.cp.kubectl_with_input(args, input) {
            self.fail(&e.to_string());
        }
    }

    fn apply(&self, yaml: &str) {
        self.kubectl(&["apply", "-f", "-"], Some(yaml));
    }

    /// Fails with the lab's logs (speakers, controller, relays, BIRD) and
    /// the control plane's.
    fn fail(&self, why: &str) -> ! {
        self.lab.fail(&format!("{why}\n{}", self.cp.logs()))
    }

    fn wait(&self, what: &str, mut check: impl FnMut() -> bool) {
        if let Err(e) = wait_for(what, BOUND, bgp_lab::POLL, || check().then_some(())) {
            self.fail(&e.to_string());
        }
    }

    /// The nodes whose path to the VIP BIRD holds, by next hop.
    fn announcers(&self) -> Vec<String> {
        let out = self.lab.bird_route(&format!("{VIP}/32"));
        (0..self.lab.nodes.len())
            .map(node_v4)
            .filter(|a| out.contains(&format!("BGP.next_hop: {a}\n")))
            .collect()
    }

    /// The Service `web`'s `status.loadBalancer.ingress[0].ip` in
    /// `namespace`, if any.
    fn status_ip(&self, namespace: &str) -> Option<String> {
        let out = self
            .cp
            .kubectl(&[
                "get",
                "service",
                "-n",
                namespace,
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ])
            .ok()?;
        let ip = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!ip.is_empty()).then_some(ip)
    }
}

/// A Node `n{i+1}` with the node namespace's address and the Ready
/// condition (status through its subresource, as a kubelet writes it).
fn node(e: &E2e, i: usize) {
    let name = format!("n{}", i + 1);
    e.apply(&format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n"
    ));
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"{a}"}}],"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"e2e","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}}]}}}}"#,
        a = node_v4(i)
    );
    e.kubectl(
        &[
            "patch",
            "node",
            &name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ],
        None,
    );
}

#[test]
fn kubectl_apply_puts_the_route_at_bird_from_both_nodes_and_delete_withdraws_it() {
    let _serial = lock();
    let e = E2e::start();
    let lab = &e.lab;

    let mut conf = format!("router id {ROUTER_V4};\nprotocol device {{}}\n");
    for i in 0..lab.nodes.len() {
        conf.push_str(&format!(
            "protocol bgp n{n} {{ local {ROUTER_V4} as {ROUTER_ASN}; neighbor {a} as {NODE_ASN}; hold time 9; password \"{PASSWORD}\";\n ipv4 {{ import all; export none; }}; }}\n",
            n = i + 1,
            a = node_v4(i)
        ));
    }
    let _bird = lab.bird(&conf);
    lab.wait_listening();
    let speakers: Vec<Process> = (0..lab.nodes.len()).map(|i| e.speaker(i, &[])).collect();

    e.kubectl(&["create", "namespace", "e2e"], None);
    e.kubectl(&["create", "namespace", "herald"], None);
    e.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: tor-md5, namespace: herald}}
stringData: {{password: {PASSWORD}}}
---
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {{name: public}}
spec: {{addresses: ["{VIP}/32"]}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {{name: tor}}
spec:
  peerAddress: "{ROUTER_V4}"
  peerASN: {ROUTER_ASN}
  myASN: {NODE_ASN}
  holdTime: 9
  connectTime: 1
  passwordSecret: {{namespace: herald, name: tor-md5}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {{name: public}}
spec: {{ipPools: [public]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: e2e}}
spec:
  type: LoadBalancer
  ports: [{{port: 80}}]
"#
    ));
    e.wait("the controller to give the Service its address", || {
        e.status_ip("e2e").is_some()
    });
    assert_eq!(e.status_ip("e2e").as_deref(), Some(VIP));
    e.wait("BIRD to hold the VIP's route from both nodes", || {
        e.announcers() == [node_v4(0), node_v4(1)]
    });

    e.kubectl(&["delete", "service", "-n", "e2e", "web"], None);
    e.wait("BIRD to lose the VIP's route", || e.announcers().is_empty());
    // Withdrawn, not dropped: both sessions are still up.
    let protocols = lab.birdc(&["show", "protocols"]);
    if protocols.matches("Established").count() != 2 {
        e.fail(&format!(
            "a session went down with the withdrawal:\n{protocols}"
        ));
    }
    // The BGP objects go, so that the L2 test's speakers see no peer.
    e.kubectl(
        &[
            "delete",
            "bgppeers.herald.dev/tor",
            "bgpadvertisements.herald.dev/public",
        ],
        None,
    );
    drop(speakers);
}

impl E2e {
    /// Prepares node `i` as a kube-proxy would for an L2 VIP: the VIP on
    /// `lo`, answered by nobody's ARP but Herald's (`arp_ignore`,
    /// `arp_announce`), and a TCP listener on [`ECHO_PORT`] answering with
    /// the node's name.
    fn serve_l2_vip(&self, i: usize) -> Process {
        let ns = &self.lab.nodes[i];
        for key in ["all", "eth0"] {
            ns.sysctl(&format!("net.ipv4.conf.{key}.arp_ignore=1"))
                .unwrap();
            ns.sysctl(&format!("net.ipv4.conf.{key}.arp_announce=2"))
                .unwrap();
        }
        ns.ip(&["addr", "add", &format!("{L2_VIP}/32"), "dev", "lo"])
            .unwrap();
        ns.spawn(
            "socat",
            &[
                &format!("TCP4-LISTEN:{ECHO_PORT},fork,reuseaddr"),
                &format!("SYSTEM:echo n{}", i + 1),
            ],
            None,
        )
        .unwrap()
    }

    /// The MACs that answer a broadcast ARP request for the L2 VIP from
    /// the client (waits 1 s).
    fn arp_answers(&self) -> BTreeSet<String> {
        let out = self
            .lab
            .router
            .probe(
                "arping",
                &["-b", "-c", "2", "-w", "1", "-I", "eth0", L2_VIP],
            )
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split('[')
            .skip(1)
            .filter_map(|s| s.split(']').next())
            .map(str::to_ascii_uppercase)
            .collect()
    }

    /// Node `i`'s MAC on the segment.
    fn mac(&self, i: usize) -> String {
        let out = self.lab.nodes[i]
            .exec("cat", &["/sys/class/net/eth0/address"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .to_ascii_uppercase()
    }

    /// The node name a fresh TCP connection from the client to the L2 VIP
    /// reaches (the client's neighbour entry flushed first, so it asks ARP
    /// again as after a failover).
    fn reach(&self) -> Option<String> {
        let _ = self
            .lab
            .router
            .ip(&["neigh", "flush", "dev", "eth0", "to", L2_VIP]);
        let out = self
            .lab
            .router
            .probe(
                "socat",
                &[
                    "-T",
                    "1",
                    "-",
                    &format!("TCP4:{L2_VIP}:{ECHO_PORT},connect-timeout=1"),
                ],
            )
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    }
}

#[test]
fn in_l2_mode_a_client_reaches_the_vip_at_one_node_and_then_at_the_other() {
    let _serial = lock();
    let e = E2e::start();
    let _listeners: Vec<Process> = (0..e.lab.nodes.len()).map(|i| e.serve_l2_vip(i)).collect();
    let members: Vec<String> = (0..e.lab.nodes.len())
        .map(|i| format!("{}:{GOSSIP_PORT}", node_v4(i)))
        .collect();
    let members = members.join(",");
    let mut speakers: Vec<Option<Process>> = (0..e.lab.nodes.len())
        .map(|i| {
            let bind = format!("{}:{GOSSIP_PORT}", node_v4(i));
            Some(e.speaker(i, &["--gossip-bind", &bind, "--members", &members]))
        })
        .collect();

    e.kubectl(&["create", "namespace", "e2e-l2"], None);
    // A pool of its own that no other Service draws from by accident.
    e.apply(&format!(
        r#"apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {{name: lan}}
spec: {{addresses: ["{L2_VIP}/32"], autoAssign: false}}
---
apiVersion: herald.dev/v1alpha1
kind: L2Advertisement
metadata: {{name: lan}}
spec: {{ipPools: [lan]}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: e2e-l2
  annotations: {{herald.dev/pool: lan}}
spec:
  type: LoadBalancer
  ports: [{{port: {ECHO_PORT}}}]
"#
    ));
    e.wait("the controller to give the Service its address", || {
        e.status_ip("e2e-l2").is_some()
    });
    assert_eq!(e.status_ip("e2e-l2").as_deref(), Some(L2_VIP));

    let macs: Vec<String> = (0..e.lab.nodes.len()).map(|i| e.mac(i)).collect();
    let mut owner = None;
    e.wait("exactly one node to answer ARP for the VIP", || {
        let answers = e.arp_answers();
        owner = macs
            .iter()
            .position(|m| answers.len() == 1 && answers.contains(m));
        owner.is_some()
    });
    let owner = owner.unwrap();
    let name = format!("n{}", owner + 1);
    e.wait(
        "the client to reach the VIP at the node answering ARP",
        || e.reach().as_deref() == Some(name.as_str()),
    );

    // The owner's speaker dies: the other node takes the VIP over.
    let other = 1 - owner;
    let other_name = format!("n{}", other + 1);
    drop(speakers[owner].take());
    e.wait("the other node to answer ARP for the VIP alone", || {
        e.arp_answers() == BTreeSet::from([macs[other].clone()])
    });
    e.wait("the client to reach the VIP at the other node", || {
        e.reach().as_deref() == Some(other_name.as_str())
    });

    e.kubectl(&["delete", "service", "-n", "e2e-l2", "web"], None);
    e.wait("no node to answer ARP for the VIP", || {
        e.arp_answers().is_empty()
    });
    e.kubectl(
        &[
            "delete",
            "l2advertisements.herald.dev/lan",
            "ippools.herald.dev/lan",
        ],
        None,
    );
}
