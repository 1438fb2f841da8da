//! The lab the peer tests share: a node namespace where Herald's session
//! runs (the test thread enters it, so the sockets are made there) and a
//! router namespace with FRR's bfdd or BIRD, joined by a veth pair on
//! documentation prefixes.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use herald_bfd::{Hop, Receivers, Session, SessionConfig, State, Timers};
use herald_netns::{Netns, Process, TempDir, run, veth, wait_for};

/// The router's and the node's addresses.
pub const ROUTER_V4: &str = "192.0.2.1";
pub const NODE_V4: &str = "192.0.2.2";
pub const ROUTER_V6: &str = "2001:db8::1";
pub const NODE_V6: &str = "2001:db8::2";

/// 100 ms × 3 on both sides, as in PEERS.md.
pub const FAST: Timers = Timers {
    desired_min_tx: Duration::from_millis(100),
    required_min_rx: Duration::from_millis(100),
    detect_mult: 3,
};

/// How long a session may take to come Up: the slow 1 s rate until Up,
/// a few packets, and a loaded machine.
pub const UP_WITHIN: Duration = Duration::from_secs(15);

const POLL: Duration = Duration::from_millis(10);

/// Moves the calling thread (and the threads it starts later) into `ns`.
pub fn enter(ns: &Netns) {
    let file = std::fs::File::open(format!("/var/run/netns/{}", ns.name())).unwrap();
    // SAFETY: setns with a descriptor of a namespace file that stays open
    // for the call; it changes only this thread's network namespace.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

pub struct Lab {
    pub node: Netns,
    pub router: Netns,
    pub dir: TempDir,
    pub runtime: tokio::runtime::Runtime,
    /// The node's shared receive sockets.
    pub receivers: Receivers,
}

impl Lab {
    /// Two namespaces joined by a veth pair (eth0 on both), IPv4 and IPv6
    /// addresses, and the test thread (with a runtime) in the node's.
    pub fn new() -> Lab {
        let node = Netns::new("bfdn").unwrap();
        let router = Netns::new("bfdr").unwrap();
        veth(&node, "eth0", &router, "eth0").unwrap();
        for (ns, v4, v6) in [(&node, NODE_V4, NODE_V6), (&router, ROUTER_V4, ROUTER_V6)] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"])
                .unwrap();
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"])
                .unwrap();
            ns.ip(&["link", "set", "eth0", "up"]).unwrap();
        }
        let dir = TempDir::new("hbfd").unwrap();
        run("chmod", &["755", dir.path().to_str().unwrap()]).unwrap();
        enter(&node);
        // Worker threads start after `enter`, in the node's namespace.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Lab {
            node,
            router,
            dir,
            runtime,
            receivers: Receivers::new(),
        }
    }

    /// Starts Herald's session towards `peer` from `local`.
    pub fn session(&self, local: &str, peer: &str, hop: Hop) -> Session {
        let _guard = self.runtime.enter();
        Session::start(
            &self.receivers,
            SessionConfig {
                local: local.parse().unwrap(),
                peer: peer.parse().unwrap(),
                hop,
                timers: FAST,
                passive: false,
            },
        )
        .unwrap()
    }

    /// Starts zebra and bfdd in the router with `conf`; returns them.
    pub fn frr(&self, conf: &str) -> (Process, Process) {
        let dir = self.dir.join("frr");
        std::fs::create_dir_all(&dir).unwrap();
        let conf_path = dir.join("frr.conf");
        std::fs::write(&conf_path, conf).unwrap();
        run("chown", &["-R", "frr:frr", dir.to_str().unwrap()]).unwrap();
        let d = dir.to_str().unwrap();
        let zserv = format!("{d}/zserv.api");
        let start = |daemon: &str| {
            let pid = format!("{d}/{daemon}.pid");
            // bfdd's control socket defaults to /var/run/frr; keep it here.
            let bfdctl = format!("{d}/bfdd.sock");
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
                    Some(&self.dir.join(format!("{daemon}.log"))),
                )
                .unwrap()
        };
        let zebra = start("zebra");
        wait_for("zebra's socket", UP_WITHIN, POLL, || {
            std::path::Path::new(&zserv).exists().then_some(())
        })
        .unwrap();
        (zebra, start("bfdd"))
    }

    /// `vtysh -c COMMAND` against the router's FRR.
    pub fn vtysh(&self, command: &str) -> String {
        let dir = self.dir.join("frr");
        match run(
            "vtysh",
            &["--vty_socket", dir.to_str().unwrap(), "-c", command],
        ) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => e.to_string(),
        }
    }

    /// FRR's status of its BFD peer `peer` ("up", "down", "init"), if known.
    pub fn frr_status(&self, peer: &str) -> Option<String> {
        let out = self.vtysh("show bfd peers brief");
        out.lines()
            .find(|l| l.split_whitespace().nth(2) == Some(peer))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
    }

    /// Starts BIRD in the router with `conf`.
    pub fn bird(&self, conf: &str) -> Process {
        let conf_path = self.dir.join("bird.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let sock = self.dir.join("bird.ctl");
        self.router
            .spawn(
                "bird",
                &[
                    "-f",
                    "-c",
                    conf_path.to_str().unwrap(),
                    "-s",
                    sock.to_str().unwrap(),
                    "-P",
                    self.dir.join("bird.pid").to_str().unwrap(),
                ],
                Some(&self.dir.join("bird.log")),
            )
            .unwrap()
    }

    /// `birdc show bfd sessions`.
    pub fn bird_sessions(&self) -> String {
        let sock = self.dir.join("bird.ctl");
        match run(
            "birdc",
            &["-s", sock.to_str().unwrap(), "show", "bfd", "sessions"],
        ) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => e.to_string(),
        }
    }

    /// Drops every packet in and out of `ns` (a hung node, PEERS.md).
    pub fn hang(&self, ns: &Netns) {
        let path = self.dir.join(format!("hang-{}.nft", ns.name()));
        std::fs::write(
            &path,
            "table inet hang {\n\
             chain cin { type filter hook input priority 0; policy drop; }\n\
             chain cout { type filter hook output priority 0; policy drop; }\n\
             }\n",
        )
        .unwrap();
        ns.exec("nft", &["-f", path.to_str().unwrap()]).unwrap();
    }
}

/// Waits until `session` is in `state`; returns how long that took.
pub fn wait_state(session: &Session, state: State, within: Duration) -> Duration {
    let start = Instant::now();
    let rx = session.state();
    wait_for(
        &format!("Herald's BFD session to be {state}"),
        within,
        Duration::from_millis(1),
        || (*rx.borrow() == state).then_some(()),
    )
    .unwrap();
    start.elapsed()
}

/// A UDP socket in `ns` bound to `from` (port chosen by the kernel),
/// sending with `ttl`; made on a thread that enters `ns`.
pub fn sender(ns: &Netns, from: IpAddr, ttl: u32) -> UdpSocket {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            let socket = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
            if from.is_ipv6() {
                socket2::SockRef::from(&socket)
                    .set_unicast_hops_v6(ttl)
                    .unwrap();
            } else {
                socket.set_ttl(ttl).unwrap();
            }
            socket
        })
        .join()
        .unwrap()
    })
}
