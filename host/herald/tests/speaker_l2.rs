//! L2 mode end to end: a client and three nodes on one bridge, each node
//! running `herald speaker` with gossip membership, its VIPs on `lo` with
//! `arp_ignore=1`/`arp_announce=2` (so only Herald answers ARP/NDP for
//! them) and a TCP listener that replies with the node's name. The client
//! asks with `arping`/`ndisc6` and connects with `socat`.
//!
//! Needs root, iproute2, iputils-arping, ndisc6 and socat
//! (scripts/test.sh installs them). Addresses: 192.0.2.0/24 and
//! 2001:db8::/64 only, inside namespaces made here.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_core::announce::rendezvous_score;
use herald_netns::{Netns, Process, Segment, TempDir, wait_for};

/// Network tests share the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PORT: &str = "7000";
const NODES: [&str; 3] = ["n1", "n2", "n3"];
const POLL: Duration = Duration::from_millis(20);

fn node_ip(i: usize) -> String {
    format!("192.0.2.{}", 11 + i)
}

fn node_ip6(i: usize) -> String {
    format!("2001:db8::{}", 11 + i)
}

/// One node: its namespace, MAC, listeners and speaker.
struct Host {
    name: &'static str,
    ns: Netns,
    mac: String,
    speaker: Option<Process>,
    _listeners: Vec<Process>,
}

/// The client, the nodes and the segment.
struct Lab {
    client: Netns,
    hosts: Vec<Host>,
    dir: TempDir,
    vips: Vec<IpAddr>,
    _segment: Segment,
}

impl Lab {
    /// Client and three nodes, every VIP on every node's `lo`, manifests
    /// written, speakers not yet started.
    fn new(vips: &[&str], manifests: &str) -> Lab {
        let segment = Segment::new().unwrap();
        // Flood multicast (NS to solicited-node groups) to every port,
        // as an unmanaged switch does.
        segment
            .switch()
            .ip(&[
                "link",
                "set",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ])
            .unwrap();
        let client = Netns::new("lc").unwrap();
        segment.attach(&client, "eth0").unwrap();
        client
            .ip(&["addr", "add", "192.0.2.100/24", "dev", "eth0"])
            .unwrap();
        client
            .ip(&["addr", "add", "2001:db8::64/64", "dev", "eth0", "nodad"])
            .unwrap();
        let dir = TempDir::new("hl2").unwrap();
        std::fs::write(dir.join("objects.yaml"), manifests).unwrap();
        let vips: Vec<IpAddr> = vips.iter().map(|v| v.parse().unwrap()).collect();
        let mut hosts = Vec::new();
        for (i, name) in NODES.into_iter().enumerate() {
            let ns = Netns::new("ln").unwrap();
            segment.attach(&ns, "eth0").unwrap();
            for key in ["all", "eth0"] {
                ns.sysctl(&format!("net.ipv4.conf.{key}.arp_ignore=1"))
                    .unwrap();
                ns.sysctl(&format!("net.ipv4.conf.{key}.arp_announce=2"))
                    .unwrap();
            }
            ns.ip(&["addr", "add", &format!("{}/24", node_ip(i)), "dev", "eth0"])
                .unwrap();
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/64", node_ip6(i)),
                "dev",
                "eth0",
                "nodad",
            ])
            .unwrap();
            for vip in &vips {
                let len = if vip.is_ipv4() { 32 } else { 128 };
                ns.ip(&["addr", "add", &format!("{vip}/{len}"), "dev", "lo"])
                    .unwrap();
            }
            let mac = String::from_utf8(
                ns.exec("cat", &["/sys/class/net/eth0/address"])
                    .unwrap()
                    .stdout,
            )
            .unwrap()
            .trim()
            .to_ascii_uppercase();
            let reply = format!("SYSTEM:echo {name}");
            let listeners = vec![
                ns.spawn(
                    "socat",
                    &[&format!("TCP4-LISTEN:{PORT},fork,reuseaddr"), &reply],
                    None,
                )
                .unwrap(),
                ns.spawn(
                    "socat",
                    &[
                        &format!("TCP6-LISTEN:{PORT},fork,reuseaddr,ipv6only=1"),
                        &reply,
                    ],
                    None,
                )
                .unwrap(),
            ];
            hosts.push(Host {
                name,
                ns,
                mac,
                speaker: None,
                _listeners: listeners,
            });
        }
        Lab {
            client,
            hosts,
            dir,
            vips,
            _segment: segment,
        }
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", NODES[i]))
    }

    /// Starts node `i`'s speaker (optionally under `wrapper`, e.g. setpriv).
    fn start(&mut self, i: usize, wrapper: &[&str]) {
        let members: Vec<String> = (0..NODES.len())
            .map(|j| format!("{}:7946", node_ip(j)))
            .collect();
        let manifests = self.dir.join("objects.yaml");
        let bind = format!("{}:7946", node_ip(i));
        let members = members.join(",");
        let mut args: Vec<&str> = wrapper.to_vec();
        args.extend([
            env!("CARGO_BIN_EXE_herald"),
            "speaker",
            "--node",
            NODES[i],
            "--manifests",
            manifests.to_str().unwrap(),
            "--gossip-bind",
            &bind,
            "--members",
            &members,
        ]);
        let log = self.log(i);
        let p = self.hosts[i]
            .ns
            .spawn("env", &with_log_level(&args), Some(&log))
            .unwrap();
        self.hosts[i].speaker = Some(p);
    }

    fn start_all(&mut self) {
        for i in 0..NODES.len() {
            self.start(i, &[]);
        }
    }

    /// The MACs that answer one broadcast ARP request for `vip` (waits 1 s).
    fn arp_answers(&self, vip: &str) -> BTreeSet<String> {
        let out = self
            .client
            .probe("arping", &["-b", "-c", "2", "-w", "1", "-I", "eth0", vip])
            .unwrap();
        bracketed(&String::from_utf8_lossy(&out.stdout))
    }

    /// The MACs that answer one Neighbor Solicitation for `vip`: every
    /// advertisement received in 500 ms (`ndisc6 -m`), not just the first,
    /// so a second answering node is seen.
    fn ndp_answers(&self, vip: &str) -> BTreeSet<String> {
        let out = self
            .client
            .probe("ndisc6", &["-m", "-r", "1", "-w", "500", vip, "eth0"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Target link-layer address:"))
            .map(|m| m.trim().to_ascii_uppercase())
            .collect()
    }

    /// The MACs that answer ARP (IPv4) or NDP (IPv6) for `vip`.
    fn answers(&self, vip: &IpAddr) -> BTreeSet<String> {
        match vip {
            IpAddr::V4(_) => self.arp_answers(&vip.to_string()),
            IpAddr::V6(_) => self.ndp_answers(&vip.to_string()),
        }
    }

    /// The node name a TCP connection to `vip` reaches.
    fn tcp(&self, vip: &IpAddr) -> Option<String> {
        let target = match vip {
            IpAddr::V4(a) => format!("TCP4:{a}:{PORT},connect-timeout=1"),
            IpAddr::V6(a) => format!("TCP6:[{a}]:{PORT},connect-timeout=1"),
        };
        let out = self
            .client
            .probe("socat", &["-T", "1", "-", &target])
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    }

    /// The client's neighbour entry for `vip` (upper-case MAC).
    fn neighbour(&self, vip: &IpAddr) -> Option<String> {
        let out = self
            .client
            .ip(&["neigh", "show", &vip.to_string(), "dev", "eth0"])
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = text.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_ascii_uppercase)
    }

    fn mac_of(&self, name: &str) -> String {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap()
            .mac
            .clone()
    }

    /// Waits until exactly `owner` answers ARP (or NDP) for `vip`.
    fn wait_owner(&self, vip: &IpAddr, owner: &str, timeout: Duration) {
        let want = self.mac_of(owner);
        wait_for(
            &format!("{vip} answered by {owner} ({want}) alone"),
            timeout,
            POLL,
            || (self.answers(vip) == BTreeSet::from([want.clone()])).then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    fn logs(&self) -> String {
        (0..NODES.len())
            .map(|i| {
                format!(
                    "--- {} ---\n{}",
                    NODES[i],
                    std::fs::read_to_string(self.log(i)).unwrap_or_default()
                )
            })
            .collect()
    }
}

fn with_log_level<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["RUST_LOG=info"];
    all.extend_from_slice(args);
    all
}

/// `[AA:BB:…]` groups of arping's output.
fn bracketed(text: &str) -> BTreeSet<String> {
    text.split('[')
        .skip(1)
        .filter_map(|s| s.split(']').next())
        .map(str::to_owned)
        .collect()
}

/// The rendezvous owner of `vip` among `alive`.
fn owner(vip: &IpAddr, alive: &[&'static str]) -> &'static str {
    alive
        .iter()
        .copied()
        .max_by_key(|n| (rendezvous_score(n, *vip), std::cmp::Reverse(*n)))
        .unwrap()
}

fn node_yaml(name: &str, i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nstatus:\n  conditions: [{{type: Ready, status: \"True\"}}]\n  addresses: [{{type: InternalIP, address: {}}}]\n---\n",
        node_ip(i)
    )
}

fn service_yaml(name: &str, vip: &str, local: bool) -> String {
    let policy = if local { "Local" } else { "Cluster" };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: {policy}\n  selector: {{app: {name}}}\n  ports: [{{port: {PORT}}}]\nstatus:\n  loadBalancer:\n    ingress: [{{ip: \"{vip}\"}}]\n---\n"
    )
}

fn manifests(extra: &str) -> String {
    let mut s: String = NODES
        .iter()
        .enumerate()
        .map(|(i, n)| node_yaml(n, i))
        .collect();
    s.push_str(
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: lan}\nspec:\n  addresses: [192.0.2.200/29, \"2001:db8::200/125\"]\n---\napiVersion: herald.dev/v1alpha1\nkind: L2Advertisement\nmetadata: {name: lan}\nspec:\n  ipPools: [lan]\n---\n",
    );
    s.push_str(extra);
    s
}

#[test]
fn vips_are_answered_by_their_rendezvous_owner_alone_over_ipv4_and_ipv6() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let vips = [
        "192.0.2.200",
        "192.0.2.201",
        "192.0.2.202",
        "2001:db8::200",
        "192.0.2.203",
    ];
    // web3 is `Local` with its only ready endpoint on the node that is
    // NOT its rendezvous winner: that node must own it.
    let v3: IpAddr = vips[4].parse().unwrap();
    let winner = owner(&v3, &NODES);
    let local_node = NODES.iter().copied().find(|n| *n != winner).unwrap();
    let mut extra = String::new();
    for (i, vip) in vips[..4].iter().enumerate() {
        extra.push_str(&service_yaml(&format!("web{i}"), vip, false));
    }
    extra.push_str(&service_yaml("local", vips[4], true));
    extra.push_str(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: local-1, namespace: default, labels: {{kubernetes.io/service-name: local}}}}\naddressType: IPv4\nendpoints:\n- {{addresses: [10.0.0.1], nodeName: {local_node}}}\n"
    ));
    let mut lab = Lab::new(&vips, &manifests(&extra));
    lab.start_all();

    for vip in &lab.vips[..4] {
        let want = owner(vip, &NODES);
        lab.wait_owner(vip, want, Duration::from_secs(10));
        assert_eq!(lab.tcp(vip).as_deref(), Some(want), "TCP to {vip}");
    }
    lab.wait_owner(&v3, local_node, Duration::from_secs(5));
    assert_eq!(lab.tcp(&v3).as_deref(), Some(local_node));
    // Exactly one MAC answers, sampled again now that all is steady.
    for vip in &lab.vips {
        assert_eq!(lab.answers(vip).len(), 1, "{vip}");
    }
}

#[test]
fn owner_killed_or_stopped_hands_over_to_the_next_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let v4: IpAddr = "192.0.2.200".parse().unwrap();
    let v6: IpAddr = "2001:db8::200".parse().unwrap();
    let extra =
        service_yaml("web", "192.0.2.200", false) + &service_yaml("web6", "2001:db8::200", false);
    let mut lab = Lab::new(&["192.0.2.200", "2001:db8::200"], &manifests(&extra));
    lab.start_all();
    let first = owner(&v4, &NODES);
    lab.wait_owner(&v4, first, Duration::from_secs(10));
    lab.wait_owner(&v6, owner(&v6, &NODES), Duration::from_secs(5));
    assert_eq!(lab.tcp(&v4).as_deref(), Some(first));
    assert_eq!(
        lab.neighbour(&v4).as_deref(),
        Some(lab.mac_of(first).as_str())
    );

    // SIGKILL: the survivors notice by gossip; the next owner's
    // gratuitous ARP updates the client's entry without the client asking.
    let i = NODES.iter().position(|n| *n == first).unwrap();
    let rest: Vec<&'static str> = NODES.iter().copied().filter(|n| *n != first).collect();
    let second = owner(&v4, &rest);
    let killed = Instant::now();
    lab.hosts[i]
        .speaker
        .as_ref()
        .unwrap()
        .signal("KILL")
        .unwrap();
    let want = lab.mac_of(second);
    wait_for(
        "the client's entry to move by gratuitous ARP",
        Duration::from_secs(3),
        POLL,
        || (lab.neighbour(&v4).as_deref() == Some(want.as_str())).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let moved = killed.elapsed();
    let reached = wait_for(
        "TCP through the new owner",
        Duration::from_secs(3),
        POLL,
        || lab.tcp(&v4).filter(|n| n == second),
    )
    .unwrap();
    eprintln!("SIGKILL of {first}: entry moved to {second} after {moved:?}; TCP reached {reached}");
    // IPv6 moves too (unsolicited NA), if its owner was the killed node:
    // every advertisement for it comes from the new owner alone.
    let second6 = owner(&v6, &rest);
    lab.wait_owner(&v6, second6, Duration::from_secs(3));
    assert_eq!(lab.tcp(&v6).as_deref(), Some(second6));
    assert_eq!(
        lab.ndp_answers(&v6.to_string()),
        BTreeSet::from([lab.mac_of(second6)]),
        "advertisements for {v6} after the handover\n{}",
        lab.logs()
    );

    // SIGTERM: the owner hands over before leaving; a client connecting
    // throughout sees at most one failed attempt.
    let j = NODES.iter().position(|n| *n == second).unwrap();
    let third = rest.iter().copied().find(|n| *n != second).unwrap();
    lab.hosts[j]
        .speaker
        .as_ref()
        .unwrap()
        .signal("TERM")
        .unwrap();
    let stopped = Instant::now();
    let mut failures = 0;
    let mut last = String::new();
    while stopped.elapsed() < Duration::from_secs(3) {
        match lab.tcp(&v4) {
            Some(name) => last = name,
            None => failures += 1,
        }
        if lab.neighbour(&v4).as_deref() == Some(lab.mac_of(third).as_str()) && last == third {
            break;
        }
    }
    assert!(
        failures <= 1,
        "{failures} failed connections during handover\n{}",
        lab.logs()
    );
    let status = lab.hosts[j]
        .speaker
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(3))
        .unwrap();
    assert!(status.success(), "speaker exit {status}");
    lab.wait_owner(&v4, third, Duration::from_secs(2));
    assert_eq!(lab.tcp(&v4).as_deref(), Some(third));
    assert!(
        std::fs::read_to_string(lab.log(j))
            .unwrap()
            .contains("handed over"),
        "{}",
        lab.logs()
    );
}

#[test]
fn twenty_failovers_never_show_two_answers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let vip: IpAddr = "192.0.2.200".parse().unwrap();
    let mut lab = Lab::new(
        &["192.0.2.200"],
        &manifests(&service_yaml("web", "192.0.2.200", false)),
    );
    lab.start_all();
    let first = owner(&vip, &NODES);
    lab.wait_owner(&vip, first, Duration::from_secs(10));
    let i = NODES.iter().position(|n| *n == first).unwrap();
    let rest: Vec<&'static str> = NODES.iter().copied().filter(|n| *n != first).collect();
    let second = owner(&vip, &rest);
    let mut times = Vec::new();
    for round in 0..20 {
        let killed = Instant::now();
        lab.hosts[i]
            .speaker
            .as_ref()
            .unwrap()
            .signal("KILL")
            .unwrap();
        wait_for(
            "TCP through the next owner",
            Duration::from_secs(3),
            Duration::from_millis(10),
            || lab.tcp(&vip).filter(|n| n == second),
        )
        .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", lab.logs()));
        times.push(killed.elapsed());
        let answers = lab.arp_answers("192.0.2.200");
        assert_eq!(
            answers,
            BTreeSet::from([lab.mac_of(second)]),
            "round {round} after kill"
        );
        // The first owner comes back and takes its VIP back: the second
        // stops answering.
        lab.hosts[i].speaker = None;
        lab.start(i, &[]);
        lab.wait_owner(&vip, first, Duration::from_secs(5));
    }
    times.sort();
    eprintln!(
        "20 SIGKILL failovers: median {:?}, p95 {:?}, max {:?}",
        times[10], times[18], times[19]
    );
}

#[test]
fn bad_input_is_reported_and_the_rest_keeps_working() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 198.51.100.7 is outside every interface's subnet (and the nodes have
    // no default route); the `ghost` advertisement names eth9; the owner of
    // 192.0.2.201 runs without CAP_NET_RAW.
    let vips = ["192.0.2.200", "192.0.2.201", "192.0.2.202", "192.0.2.203"];
    let mut extra: String = vips
        .iter()
        .enumerate()
        .map(|(i, v)| service_yaml(&format!("web{i}"), v, false))
        .collect();
    extra += &(service_yaml("far", "198.51.100.7", false)
        + &service_yaml("ghost", "203.0.113.9", false)
        + "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: far}\nspec:\n  addresses: [198.51.100.7/32]\n---\n"
        + "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: ghost}\nspec:\n  addresses: [203.0.113.9/32]\n---\n"
        + "apiVersion: herald.dev/v1alpha1\nkind: L2Advertisement\nmetadata: {name: far}\nspec:\n  ipPools: [far]\n---\n"
        + "apiVersion: herald.dev/v1alpha1\nkind: L2Advertisement\nmetadata: {name: ghost}\nspec:\n  ipPools: [ghost]\n  interfaces: [eth9]\n---\n");
    let mut lab = Lab::new(&vips, &manifests(&extra));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let weak = owner(&ip("192.0.2.201"), &NODES);
    for (i, name) in NODES.iter().enumerate() {
        if *name == weak {
            lab.start(
                i,
                &["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw"],
            );
        } else {
            lab.start(i, &[]);
        }
    }
    let log_of = |name: &str| lab.log(NODES.iter().position(|n| *n == name).unwrap());
    let said =
        |path: &Path, text: &str| std::fs::read_to_string(path).is_ok_and(|l| l.contains(text));
    for (name, text) in [
        (
            owner(&ip("198.51.100.7"), &NODES),
            "VIP 198.51.100.7 is outside every interface's subnet",
        ),
        (
            owner(&ip("203.0.113.9"), &NODES),
            "interface eth9 (for VIP 203.0.113.9) does not exist",
        ),
        (
            weak,
            "cannot open a raw socket on eth0 (answering ARP/NDP needs CAP_NET_RAW)",
        ),
    ] {
        wait_for(
            &format!("{name} to say {text:?}"),
            Duration::from_secs(10),
            POLL,
            || said(&log_of(name), text).then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    }
    // Every VIP whose owner can answer is answered, by it alone, and TCP
    // reaches it; the weak node's VIPs are not answered by anyone.
    for v in vips {
        let vip = ip(v);
        let want = owner(&vip, &NODES);
        if want == weak {
            assert!(
                lab.arp_answers(v).is_empty(),
                "{v} answered without CAP_NET_RAW"
            );
        } else {
            lab.wait_owner(&vip, want, Duration::from_secs(10));
            assert_eq!(lab.tcp(&vip).as_deref(), Some(want), "TCP to {v}");
        }
    }
}

#[test]
fn a_loaded_machine_causes_no_false_suspicion() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let vip: IpAddr = "192.0.2.200".parse().unwrap();
    let mut lab = Lab::new(
        &["192.0.2.200"],
        &manifests(&service_yaml("web", "192.0.2.200", false)),
    );
    lab.start_all();
    lab.wait_owner(&vip, owner(&vip, &NODES), Duration::from_secs(10));
    let changes = |lab: &Lab| {
        (0..NODES.len())
            .map(|i| {
                std::fs::read_to_string(lab.log(i))
                    .unwrap_or_default()
                    .matches("membership changed")
                    .count()
            })
            .collect::<Vec<_>>()
    };
    let before = changes(&lab);
    // Two busy loops per core for 15 s, beside the speakers: every core
    // is oversubscribed, whatever the machine.
    let loops = 2 * std::thread::available_parallelism().map_or(1, |n| n.get());
    let burners: Vec<Process> = (0..loops)
        .map(|_| {
            lab.client
                .spawn("sh", &["-c", "while :; do :; done"], None)
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        assert_eq!(
            lab.arp_answers("192.0.2.200").len(),
            1,
            "under load of {loops} busy loops\n{}",
            lab.logs()
        );
    }
    drop(burners);
    assert_eq!(
        changes(&lab),
        before,
        "a speaker was suspected under load of {loops} busy loops\n{}",
        lab.logs()
    );
}
