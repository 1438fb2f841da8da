//! End to end on a real control plane: `kubectl apply` of an IPPool, a
//! BGPPeer (its TCP MD5 password in a Secret), a BGPAdvertisement and a
//! LoadBalancer Service puts the VIP's route at BIRD from both nodes within
//! a bounded time; `kubectl delete` of the Service withdraws it.
//!
//! Pieces: the shared etcd and kube-apiserver (tests/control-plane), the
//! CRDs, `herald controller` as a child process on the host, BIRD in a
//! router namespace and two nodes as namespaces on one segment (bgp_lab's
//! `Lab`), and a `herald speaker` in each node namespace reading the API.
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
//! Needs root, BIRD, socat (scripts/test.sh), and the control plane's
//! binaries.

mod bgp_lab;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bgp_lab::{Lab, ROUTER_ASN, ROUTER_V4, lock};
use herald_control_plane::ControlPlane;
use herald_netns::{Process, wait_for};

/// The nodes' ASN.
const NODE_ASN: u32 = 4200000001;
/// The VIP the pool holds (its only address).
const VIP: &str = "198.51.100.20";
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

struct E2e {
    cp: &'static ControlPlane,
    lab: Lab,
}

impl E2e {
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

    /// The Service's `status.loadBalancer.ingress[0].ip`, if any.
    fn status_ip(&self) -> Option<String> {
        let out = self
            .cp
            .kubectl(&[
                "get",
                "service",
                "-n",
                "e2e",
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
    let cp = with_crds();
    let lab = Lab::with_addresses(
        &["192.0.2.1/24".to_owned()],
        &[
            vec![format!("{}/24", node_v4(0))],
            vec![format!("{}/24", node_v4(1))],
        ],
        BOUND,
    );
    let e = E2e { cp, lab };
    let lab = &e.lab;

    // The relays: host side first, so the socket exists.
    let socket = lab.path("api.sock");
    let port = cp.server().rsplit(':').next().unwrap().to_owned();
    let _host_relay = HostProcess::start(
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

    let _controller = HostProcess::start(
        env!("CARGO_BIN_EXE_herald"),
        &["controller"],
        &[("KUBECONFIG", &cp.kubeconfig())],
        &lab.path("controller.log"),
    );

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

    for i in 0..lab.nodes.len() {
        node(&e, i);
    }
    let speakers: Vec<Process> = (0..lab.nodes.len())
        .map(|i| {
            lab.nodes[i]
                .spawn(
                    "env",
                    &[
                        &format!("KUBECONFIG={}", node_kubeconfig.display()),
                        "HERALD_LOG=info",
                        env!("CARGO_BIN_EXE_herald"),
                        "speaker",
                        "--node",
                        &format!("n{}", i + 1),
                    ],
                    Some(&lab.path(&format!("speaker-n{}.log", i + 1))),
                )
                .unwrap()
        })
        .collect();

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
        e.status_ip().is_some()
    });
    assert_eq!(e.status_ip().as_deref(), Some(VIP));
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
    drop(speakers);
    drop(node_relays);
}
