//! Graceful restart (RFC 4724) against BIRD when a route cannot be encoded:
//! BIRD keeps every route of the previous session, a group that does not
//! fit one UPDATE costs no other route, and End-of-RIB (which would make
//! BIRD drop whatever was not sent again) waits until every route is sent.
//!
//! The session runs in the test process, through the library, on a thread
//! that entered the node's network namespace: the oversized attributes
//! (1,100 communities on one route) cannot come through `herald speaker`
//! any more, because the API and the plugin host refuse them, so the
//! library is the honest way to produce them (as a bug or a future path
//! would). BIRD runs in the router's namespace, the two joined by a veth
//! pair on 192.0.2.0/24.
//!
//! Needs root and bird2.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_bgp::rib::{Attributes, Routes};
use herald_bgp::{PeerConfig, Session, State, Status};
use herald_core::Family;
use herald_core::LabelSelector;
use herald_core::bgp::{Asn, BgpPeer, Community};
use herald_netns::{Netns, Process, TempDir, run, veth, wait_for};
use tokio::sync::{oneshot, watch};

const ROUTER: &str = "192.0.2.1";
const NODE: &str = "192.0.2.2";
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// Enters the network namespace `name` on the calling thread: every socket
/// the thread opens afterwards is in it.
#[allow(unsafe_code)]
fn enter(name: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{name}")).unwrap();
    // SAFETY: setns(2) only reads the descriptor, which `file` keeps open
    // for the call, and changes nothing but this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// One life of Herald's session: a current-thread runtime on a thread in
/// the node's namespace. [`Speaker::crash`] ends it without a Cease, as a
/// killed process would (the kernel closes the connection).
struct Speaker {
    status: watch::Receiver<Status>,
    crash: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Speaker {
    fn start(node: &Netns, routes: watch::Receiver<Arc<Routes>>) -> Speaker {
        let peer = BgpPeer {
            name: "bird".into(),
            peer_address: ROUTER.parse().unwrap(),
            peer_asn: Asn::new(65001).unwrap(),
            my_asn: Asn::new(65010).unwrap(),
            peer_port: 179,
            source_address: Some(NODE.parse().unwrap()),
            router_id: None,
            hold_time: 9,
            keepalive_time: 3,
            connect_time: 1,
            ebgp_multihop: None,
            password: None,
            graceful_restart: true,
            passive: false,
            families: vec![Family::IPv4],
            node_selector: LabelSelector::default(),
            bfd_profile: None,
        };
        let node_addresses: Vec<IpAddr> = vec![NODE.parse().unwrap()];
        let config = PeerConfig::for_node(&peer, &node_addresses, None).unwrap();
        let (crash, crashed) = oneshot::channel();
        let (status_tx, status_rx) = std::sync::mpsc::channel();
        let ns = node.name().to_owned();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let session = Session::spawn(config, routes);
                status_tx.send(session.status()).unwrap();
                let _ = crashed.await;
                // Dropped with the runtime, never stopped: no Cease.
                drop(session);
            });
        });
        Speaker {
            status: status_rx.recv().unwrap(),
            crash: Some(crash),
            thread: Some(thread),
        }
    }

    fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    fn crash(mut self) {
        let _ = self.crash.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        if let Some(crash) = self.crash.take() {
            let _ = crash.send(());
        }
    }
}

/// The router's namespace with BIRD, the node's namespace, and BIRD's
/// files.
struct Lab {
    /// First to go: BIRD before its namespace.
    _bird: Process,
    _router: Netns,
    node: Netns,
    dir: TempDir,
}

impl Lab {
    fn new() -> Lab {
        let router = Netns::new("gr").unwrap();
        let node = Netns::new("gn").unwrap();
        veth(&router, "eth0", &node, "eth0").unwrap();
        router
            .ip(&["addr", "add", &format!("{ROUTER}/24"), "dev", "eth0"])
            .unwrap();
        node.ip(&["addr", "add", &format!("{NODE}/24"), "dev", "eth0"])
            .unwrap();
        let dir = TempDir::new("hgr").unwrap();
        let conf = dir.join("bird.conf");
        std::fs::write(
            &conf,
            format!(
                "router id {ROUTER};\nprotocol device {{}}\n\
                 protocol bgp herald {{ local {ROUTER} as 65001; neighbor {NODE} as 65010; \
                 hold time 9; graceful restart on; ipv4 {{ import all; export none; }}; }}\n"
            ),
        )
        .unwrap();
        let bird = router
            .spawn(
                "bird",
                &[
                    "-f",
                    "-c",
                    conf.to_str().unwrap(),
                    "-s",
                    dir.join("bird.ctl").to_str().unwrap(),
                    "-P",
                    dir.join("bird.pid").to_str().unwrap(),
                ],
                Some(&dir.join("bird.log")),
            )
            .unwrap();
        Lab {
            _bird: bird,
            _router: router,
            node,
            dir,
        }
    }

    fn birdc(&self, args: &[&str]) -> String {
        let ctl: PathBuf = self.dir.join("bird.ctl");
        let mut all = vec!["-s", ctl.to_str().unwrap()];
        all.extend_from_slice(args);
        match run("birdc", &all) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => e.to_string(),
        }
    }

    /// BIRD's routes from Herald: prefix to the route's whole entry (its
    /// attributes and the time it last changed, so an unchanged entry is
    /// the same route, neither withdrawn nor replaced).
    fn routes(&self) -> BTreeMap<String, String> {
        let out = self.birdc(&["show", "route", "all", "protocol", "herald"]);
        let mut routes = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in out.lines() {
            if line.contains(" unicast [herald ") {
                let prefix = line.split_whitespace().next().unwrap().to_owned();
                routes.insert(prefix.clone(), format!("{line}\n"));
                current = Some(prefix);
            } else if line.starts_with(char::is_whitespace) {
                if let Some(p) = &current {
                    routes.get_mut(p).unwrap().push_str(&format!("{line}\n"));
                }
            } else {
                current = None;
            }
        }
        routes
    }

    /// `show protocols all herald`: the session and its graceful restart.
    fn protocol(&self) -> String {
        self.birdc(&["show", "protocols", "all", "herald"])
    }

    /// The `received` column of the IPv4 channel's import updates.
    fn received_updates(&self) -> u64 {
        self.protocol()
            .lines()
            .find_map(|l| l.trim().strip_prefix("Import updates:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Waits for `check`, failing with BIRD's view and log.
    fn wait(&self, what: &str, mut check: impl FnMut() -> bool) {
        if let Err(e) = wait_for(what, WAIT, POLL, || check().then_some(())) {
            panic!(
                "{e}\n--- routes ---\n{:#?}\n--- protocol ---\n{}\n--- bird.log ---\n{}",
                self.routes(),
                self.protocol(),
                std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
            );
        }
    }
}

fn attributes(communities: impl IntoIterator<Item = Community>) -> Attributes {
    Attributes {
        communities: communities.into_iter().collect(),
        ..Attributes::default()
    }
}

fn routes(list: &[(&str, Attributes)]) -> Arc<Routes> {
    Arc::new(
        list.iter()
            .map(|(p, a)| (p.parse().unwrap(), a.clone()))
            .collect(),
    )
}

#[test]
fn bird_keeps_every_route_when_one_group_cannot_be_sent_after_a_restart() {
    let lab = Lab::new();
    let (a, b, c) = ("198.51.100.10/32", "198.51.100.11/32", "198.51.100.12/32");
    let first = routes(&[
        (a, attributes([Community::new(64512, 1)])),
        (b, attributes([Community::new(64512, 2)])),
        (c, attributes([Community::new(64512, 3)])),
    ]);
    let (routes_tx, routes_rx) = watch::channel(first.clone());

    // The first life: BIRD holds the three routes.
    let speaker = Speaker::start(&lab.node, routes_rx.clone());
    lab.wait("BIRD to hold the three routes", || lab.routes().len() == 3);
    let before = lab.routes();
    assert!(before[b].contains("(64512,2)"), "{}", before[b]);

    // A crash: BIRD keeps the routes as stale.
    speaker.crash();
    lab.wait("BIRD to hold Herald's routes as stale", || {
        let p = lab.protocol();
        !p.contains("Established") && p.contains("Neighbor graceful restart active")
    });
    assert_eq!(lab.routes(), before, "a route changed while stale");
    let received = lab.received_updates();

    // The second life wants `b` with 1,100 communities: 4,400 octets, more
    // than one UPDATE holds. `a` and `c` are sent (BIRD counts two
    // updates), `b` is skipped, and End-of-RIB is held back, so BIRD still
    // holds every route of the first life, `b` as it was.
    let oversized = attributes((0..1_100).map(|i| Community::new(64512, i)));
    routes_tx.send_replace(routes(&[
        (a, first[&a.parse().unwrap()].clone()),
        (b, oversized),
        (c, first[&c.parse().unwrap()].clone()),
    ]));
    let speaker = Speaker::start(&lab.node, routes_rx);
    lab.wait("the new session's two routes at BIRD", || {
        assert_eq!(lab.routes(), before, "a route was withdrawn or replaced");
        lab.received_updates() >= received + 2
    });
    let status = speaker.status();
    assert_eq!((status.state, status.advertised), (State::Established, 2));
    assert_eq!(
        lab.received_updates(),
        received + 2,
        "only a and c were sent"
    );
    assert_eq!(lab.routes(), before, "a route was withdrawn or replaced");
    assert!(
        lab.protocol().contains("Neighbor GR:"),
        "BIRD ended the graceful restart: End-of-RIB was sent\n{}",
        lab.protocol()
    );

    // `b` fixed: it is sent, then End-of-RIB ends the restart. `a` and `c`
    // were never withdrawn.
    routes_tx.send_replace(routes(&[
        (a, first[&a.parse().unwrap()].clone()),
        (b, attributes([Community::new(64512, 22)])),
        (c, first[&c.parse().unwrap()].clone()),
    ]));
    lab.wait("BIRD to take the fixed route and end the restart", || {
        let now = lab.routes();
        assert_eq!(now.get(a), before.get(a), "a was withdrawn or replaced");
        assert_eq!(now.get(c), before.get(c), "c was withdrawn or replaced");
        let p = lab.protocol();
        now.get(b).is_some_and(|r| r.contains("(64512,22)"))
            && !p.contains("Neighbor GR:")
            && !p.contains("Restart timer")
    });
    assert_eq!(speaker.status().advertised, 3);
    assert_eq!(lab.routes().len(), 3);
    speaker.crash();
}
