//! Announcer plugins in the running speaker, end to end: `herald speaker`
//! on node namespaces, BIRD or FRR on the router, and the WebAssembly
//! components scripts/build-plugins.sh built (zone-spread,
//! endpoint-weighted, the hostile `trap`). What the router holds is what is
//! asserted: which nodes announce a VIP, with what weights, after a plugin
//! is named, replaced or fails; and that no session was reset on the way.
//!
//! Needs root, bird2, frr and the built plugins (scripts/test.sh).

mod bgp_lab;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bgp_lab::{Lab, ROUTER_ASN, ROUTER_V4, advertisement, lock, next_hop_weights};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(20);
/// The nodes' AS (eBGP: every node's path reaches BIRD's table).
const NODE_ASN: u32 = 4_200_000_001;
const VIP: &str = "198.51.100.10";
/// The VIP of the L2 test, on the nodes' segment.
const L2_VIP: &str = "192.0.2.200";

/// Node `i`'s address (`n{i+1}`).
fn node_v4(i: usize) -> String {
    format!("192.0.2.{}", i + 2)
}

/// A component scripts/build-plugins.sh built.
fn component(name: &str) -> PathBuf {
    let dir = std::env::var_os("HERALD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins first (./scripts/build-plugins.sh)",
        path.display()
    );
    path
}

/// The PolicyPlugin `name` of the announcer world running `component`
/// (absolute path, its digest filled in); `extra` adds spec lines.
fn policy_plugin(name: &str, component_name: &str, extra: &str) -> String {
    policy_plugin_at(name, &component(component_name), component_name, extra)
}

/// The same, naming `path` as the source (whose bytes are, or will be,
/// those of the built `component_name`).
fn policy_plugin_at(name: &str, path: &Path, component_name: &str, extra: &str) -> String {
    let digest = Sha256::digest(std::fs::read(component(component_name)).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "apiVersion: herald.dev/v1alpha1\nkind: PolicyPlugin\nmetadata: {{name: {name}}}\nspec:\n  world: announcer\n  sha256: \"{hex}\"\n  source: {{file: {}}}\n{extra}",
        path.display()
    )
}

impl Lab {
    /// `count` nodes, the router at .1.
    fn plugin_lab(count: usize) -> Lab {
        let nodes: Vec<Vec<String>> = (0..count)
            .map(|i| vec![format!("{}/24", node_v4(i))])
            .collect();
        Lab::with_addresses(&[format!("{ROUTER_V4}/24")], &nodes, WAIT)
    }

    /// Node objects (`zones[i]` is node i's zone), the pool `public` of
    /// `vip` alone and the Service `web` at `vip`.
    fn plugin_manifests(&self, zones: &[&str], vip: &str) {
        let mut yaml = String::new();
        for (i, zone) in zones.iter().enumerate() {
            yaml.push_str(&format!(
                "apiVersion: v1\nkind: Node\nmetadata:\n  name: n{n}\n  labels: {{topology.kubernetes.io/zone: {zone}}}\nstatus:\n  conditions: [{{type: Ready, status: \"True\"}}]\n  addresses: [{{type: InternalIP, address: {a}}}]\n---\n",
                n = i + 1,
                a = node_v4(i)
            ));
        }
        yaml.push_str(&format!(
            "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: public}}\nspec:\n  addresses: [{vip}/32]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: default}}\nspec:\n  type: LoadBalancer\n  ports: [{{port: 80}}]\nstatus:\n  loadBalancer:\n    ingress: [{{ip: {vip}}}]\n"
        ));
        self.write("base.yaml", &yaml);
    }

    /// [`Lab::plugin_manifests`], the peer `tor` (the router) and the
    /// BGPAdvertisement `public` with `adv_extra`.
    fn bgp_manifests(&self, zones: &[&str], adv_extra: &str) {
        self.plugin_manifests(zones, VIP);
        self.write(
            "peer.yaml",
            &bgp_lab::peer("tor", ROUTER_V4, ROUTER_ASN, NODE_ASN, 9, ""),
        );
        self.write("adv.yaml", &advertisement(adv_extra));
    }

    /// Ready endpoints of `web` on each node: `(node, count)`.
    fn endpoints(&self, per_node: &[(&str, usize)]) {
        let mut endpoints = String::new();
        let mut n = 0;
        for (node, count) in per_node {
            for _ in 0..*count {
                n += 1;
                endpoints.push_str(&format!(
                    "  - addresses: [10.0.0.{n}]\n    nodeName: {node}\n    conditions: {{ready: true}}\n"
                ));
            }
        }
        self.write(
            "endpoints.yaml",
            &format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n{endpoints}"
            ),
        );
    }

    /// BIRD with one eBGP protocol `n{i}` per node, importing everything.
    fn bird_for_nodes(&self) -> herald_netns::Process {
        let mut conf = format!("router id {ROUTER_V4};\nprotocol device {{}}\n");
        for i in 0..self.nodes.len() {
            conf.push_str(&format!(
                "protocol bgp n{n} {{ local {ROUTER_V4} as {ROUTER_ASN}; neighbor {a} as {NODE_ASN}; hold time 9;\n ipv4 {{ import all; export none; }}; }}\n",
                n = i + 1,
                a = node_v4(i)
            ));
        }
        self.bird(&conf)
    }

    /// The nodes (`n1`…) whose path to the VIP BIRD holds.
    fn bird_announcers(&self) -> BTreeSet<String> {
        let out = self.birdc(&["show", "route", "all", &format!("{VIP}/32")]);
        (0..self.nodes.len())
            .filter(|&i| out.contains(&format!("BGP.next_hop: {}\n", node_v4(i))))
            .map(|i| format!("n{}", i + 1))
            .collect()
    }

    /// When BIRD's session with node `i` last changed state (`Since`):
    /// unchanged means the same session.
    fn bird_since(&self, i: usize) -> String {
        let protocol = format!("n{}", i + 1);
        let out = self.birdc(&["show", "protocols", &protocol]);
        assert!(out.contains("Established"), "{protocol} not up:\n{out}");
        out.lines()
            .find(|l| l.starts_with(&format!("{protocol} ")))
            .and_then(|l| l.split_whitespace().nth(4))
            .unwrap_or_else(|| panic!("no {protocol} protocol in\n{out}"))
            .to_owned()
    }

    /// What Herald on node `i` logged so far.
    fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.path(&format!("herald-{i}.log"))).unwrap_or_default()
    }

    /// Waits until BIRD holds the VIP from exactly `nodes`.
    fn expect_announcers(&self, what: &str, nodes: &[&str]) {
        let want: BTreeSet<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
        self.wait(what, || self.bird_announcers() == want);
    }
}

fn set(nodes: &[&str]) -> BTreeSet<String> {
    nodes.iter().map(|n| (*n).to_owned()).collect()
}

/// zone-spread with one node per zone: of n1 and n2 (zone a) only one
/// announces, n3 (zone b) does; without the plugin all three do. Naming
/// the plugin, then replacing its component by another one
/// (endpoint-weighted: only nodes with endpoints), changes the routes at
/// BIRD and resets no session.
#[test]
fn bird_zone_spread_narrows_announcers_and_a_replaced_component_changes_them_without_a_reset() {
    let _serial = lock();
    let lab = Lab::plugin_lab(3);
    lab.bgp_manifests(&["a", "a", "b"], "");
    lab.endpoints(&[("n1", 1), ("n2", 1)]);
    let _bird = lab.bird_for_nodes();
    let _herald: Vec<_> = (0..3).map(|i| lab.herald_on(i)).collect();
    lab.expect_announcers(
        "every node to announce (built-in policy)",
        &["n1", "n2", "n3"],
    );
    let since: Vec<String> = (0..3).map(|i| lab.bird_since(i)).collect();

    lab.write(
        "plugin.yaml",
        &policy_plugin("spread", "zone-spread", "  config: {bgpNodesPerZone: 1}\n"),
    );
    lab.write("adv.yaml", &advertisement("  announcerPlugin: spread\n"));
    lab.wait("zone-spread to keep one node of zone a and n3", || {
        let a = lab.bird_announcers();
        a.len() == 2 && a.contains("n3") && (a.contains("n1") != a.contains("n2"))
    });
    let spread = lab.bird_announcers();

    // The same PolicyPlugin, another component: endpoint-weighted keeps
    // only the nodes with ready endpoints (n1, n2), so n3 withdraws.
    lab.write(
        "plugin.yaml",
        &policy_plugin("spread", "endpoint-weighted", ""),
    );
    lab.expect_announcers("the replaced component to decide", &["n1", "n2"]);
    assert_ne!(
        spread,
        set(&["n1", "n2"]),
        "the replacement changed nothing"
    );

    let after: Vec<String> = (0..3).map(|i| lab.bird_since(i)).collect();
    assert_eq!(since, after, "a session was reset:\n{}", lab.logs());
    for i in 0..3 {
        let log = lab.log_of(i);
        assert_eq!(
            log.matches("session established").count(),
            1,
            "n{} reconnected:\n{log}",
            i + 1
        );
    }
    assert!(
        lab.log_of(0).contains("policy plugin replaced"),
        "{}",
        lab.log_of(0)
    );
}

/// endpoint-weighted at FRR: nodes without endpoints stop announcing (the
/// built-in policy keeps them at weight 1) and the others' link-bandwidth
/// follows their endpoints, so FRR installs n1 and n2 weighted 1:3 and no
/// path through n3.
#[test]
fn frr_endpoint_weighted_sets_weights_and_drops_nodes_without_endpoints() {
    let _serial = lock();
    let lab = Lab::plugin_lab(3);
    lab.bgp_manifests(
        &["a", "a", "b"],
        "  weighted: true\n  announcerPlugin: weights\n",
    );
    lab.endpoints(&[("n1", 1), ("n2", 3)]);
    lab.write(
        "plugin.yaml",
        &policy_plugin("weights", "endpoint-weighted", ""),
    );
    let mut conf = format!(
        "frr defaults datacenter\nhostname r\nrouter bgp {ROUTER_ASN}\n bgp router-id {ROUTER_V4}\n no bgp ebgp-requires-policy\n"
    );
    for i in 0..3 {
        conf.push_str(&format!(" neighbor {} remote-as {NODE_ASN}\n", node_v4(i)));
    }
    let _frr = lab.frr(&conf);
    let _herald: Vec<_> = (0..3).map(|i| lab.herald_on(i)).collect();
    lab.wait("FRR to install the VIP over n1 and n2", || {
        next_hop_weights(&lab.kernel_route(VIP)).len() == 2
    });
    // n3's session is up and it sent its table: nothing, the plugin's
    // choice (the built-in policy would announce it at weight 1).
    lab.wait("n3 to send its initial table", || {
        lab.log_of(2).lines().any(|l| l.contains("advertised"))
    });
    let sent = lab.log_of(2);
    let sent = sent.lines().find(|l| l.contains("advertised")).unwrap();
    assert!(
        sent.contains("routes=0"),
        "n3 announced: {sent}\n{}",
        lab.log_of(2)
    );
    let r = lab.kernel_route(VIP);
    let weights = next_hop_weights(&r);
    assert_eq!(
        weights.keys().collect::<Vec<_>>(),
        [&node_v4(0), &node_v4(1)],
        "n3 has no endpoints:\n{r}"
    );
    let (w1, w2) = (weights[&node_v4(0)], weights[&node_v4(1)]);
    assert_eq!(w2, 3 * w1, "weights 1:3 expected, got {w1}:{w2}\n{r}");
}

/// A plugin that traps on every call: with `failurePolicy: Fallback` the
/// built-in policy decides (every node announces) and the speaker logs the
/// failure by the plugin's name; switched to `Fail`, nothing is announced.
#[test]
fn bird_failing_plugin_follows_its_failure_policy_visibly() {
    let _serial = lock();
    let lab = Lab::plugin_lab(2);
    lab.bgp_manifests(&["a", "b"], "  announcerPlugin: broken\n");
    lab.write(
        "plugin.yaml",
        &policy_plugin("broken", "hostile-trap", "  failurePolicy: Fallback\n"),
    );
    let _bird = lab.bird_for_nodes();
    let _herald: Vec<_> = (0..2).map(|i| lab.herald_on(i)).collect();
    lab.expect_announcers("the built-in policy to decide (Fallback)", &["n1", "n2"]);
    let log = lab.log_of(0);
    // The failure's message (with the plugin's panic message, which spans
    // lines), then the plugin's name and what was done instead.
    let report = log
        .split("WARN herald::speaker: ")
        .find(|r| r.starts_with("failed for VIP") && r.contains("trapped"))
        .unwrap_or_else(|| panic!("the speaker reports no trap:\n{log}"));
    assert!(
        report.contains("the built-in policy decided") && report.contains("name=broken"),
        "the failure and its outcome are logged with the plugin's name:\n{log}"
    );

    lab.write(
        "plugin.yaml",
        &policy_plugin("broken", "hostile-trap", "  failurePolicy: Fail\n"),
    );
    lab.expect_announcers("nothing to be announced (Fail)", &[]);
    lab.wait("the speaker to say why", || {
        lab.log_of(0)
            .contains("nothing was announced (failurePolicy Fail)")
    });
}

/// L2: endpoint-weighted makes the node with the most endpoints the owner
/// of the VIP (the built-in policy would keep one owner whatever the
/// endpoints): the client's ARP answer comes from that node's MAC, and
/// moves when the endpoints move.
#[test]
fn l2_endpoint_weighted_owner_answers_arp_and_follows_the_endpoints() {
    let _serial = lock();
    let lab = Lab::plugin_lab(2);
    lab.plugin_manifests(&["a", "b"], L2_VIP);
    lab.write(
        "plugin.yaml",
        &policy_plugin("weights", "endpoint-weighted", ""),
    );
    lab.write(
        "l2.yaml",
        "apiVersion: herald.dev/v1alpha1\nkind: L2Advertisement\nmetadata: {name: lan}\nspec:\n  ipPools: [public]\n  interfaces: [eth0]\n  announcerPlugin: weights\n",
    );
    lab.endpoints(&[("n1", 3), ("n2", 1)]);
    let macs: Vec<String> = lab
        .nodes
        .iter()
        .map(|ns| {
            let out = ns.exec("cat", &["/sys/class/net/eth0/address"]).unwrap();
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .to_ascii_uppercase()
        })
        .collect();
    let _herald: Vec<_> = (0..2).map(|i| lab.herald_on(i)).collect();
    let answers = || -> BTreeSet<String> {
        let out = lab
            .router
            .probe(
                "arping",
                &["-b", "-c", "2", "-w", "1", "-I", "eth0", L2_VIP],
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.split('[')
            .skip(1)
            .filter_map(|s| s.split(']').next())
            .map(str::to_owned)
            .collect()
    };
    lab.wait("n1 (3 endpoints) to answer ARP for the VIP alone", || {
        answers() == set(&[&macs[0]])
    });
    lab.endpoints(&[("n1", 1), ("n2", 3)]);
    lab.wait(
        "n2 (now 3 endpoints) to answer ARP for the VIP alone",
        || answers() == set(&[&macs[1]]),
    );
}

/// A plugin whose file is not there when the speaker starts is not loaded
/// (the built-in policy decides, both nodes announce); once the file
/// appears — outside the manifests directory, so no manifest changes — the
/// speaker's periodic retry loads it and it decides (endpoint-weighted: only
/// the node with endpoints announces), with no session reset.
#[test]
fn bird_a_plugin_whose_file_arrives_late_is_loaded_by_the_retry() {
    let _serial = lock();
    let lab = Lab::plugin_lab(2);
    lab.bgp_manifests(&["a", "b"], "  announcerPlugin: late\n");
    lab.endpoints(&[("n1", 1)]);
    let late = lab.path("late.wasm");
    lab.write(
        "plugin.yaml",
        &policy_plugin_at("late", &late, "endpoint-weighted", ""),
    );
    let _bird = lab.bird_for_nodes();
    let _herald: Vec<_> = (0..2).map(|i| lab.herald_on(i)).collect();
    lab.expect_announcers(
        "the built-in policy to decide while the plugin is missing",
        &["n1", "n2"],
    );
    assert!(lab.log_of(0).contains("late.wasm"), "{}", lab.log_of(0));
    let since: Vec<String> = (0..2).map(|i| lab.bird_since(i)).collect();
    std::fs::copy(component("endpoint-weighted"), &late).unwrap();
    lab.expect_announcers("the retried plugin to decide", &["n1"]);
    let after: Vec<String> = (0..2).map(|i| lab.bird_since(i)).collect();
    assert_eq!(since, after, "a session was reset:\n{}", lab.logs());
}
