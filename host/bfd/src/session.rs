//! The tokio driver of one BFD session over UDP: it turns the machine's
//! [`Action`]s into datagrams and timers, and received datagrams into
//! [`Input`]s after the checks that need the socket (source address,
//! TTL).
//!
//! ```text
//!   Session (handle) ── Input (mpsc) ──▶ task ──▶ Fsm (sans IO)
//!        ▲                                  │ ▲
//!        └──── watch<State> ◀───────────────┘ │ UDP rx :3784/:4784 (TTL from cmsg)
//!              Counters (Arc, atomics) ◀──────┤ UDP tx :49152–65535, TTL 255
//!                                             └ transmit and detection timers
//! ```
//!
//! Single hop (RFC 5881): control packets to port 3784 from a source port
//! in 49152–65535, sent with TTL / Hop Limit 255; a packet received with
//! less than 255 is dropped (§5, the GTSM check). Multihop (RFC 5883):
//! port 4784, received packets below a configured TTL are dropped.
//!
//! One session owns its receive socket, bound to its local address and
//! the BFD port, so one session per local address and port for now;
//! packets from any other source are dropped and counted.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::fsm::{Action, Config, Discard, Fsm, Input, Timers};
use crate::packet::{self, DecodeError, State};
use crate::ttl;

/// Single-hop control packets' destination port (RFC 5881 §4).
pub const SINGLE_HOP_PORT: u16 = 3784;

/// Multihop control packets' destination port (RFC 5883 §5).
pub const MULTIHOP_PORT: u16 = 4784;

/// The source ports a session sends from (RFC 5881 §4).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// The TTL / Hop Limit of every packet sent (RFC 5881 §5; RFC 5883 §2
/// leaves it to the sender, and 255 lets the peer apply a minimum).
pub const SEND_TTL: u32 = 255;

/// Which BFD the session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// RFC 5881: directly connected; TTL 255 required.
    Single,
    /// RFC 5883: packets with a TTL below `min_ttl` are dropped.
    Multi {
        /// The least TTL / Hop Limit accepted.
        min_ttl: u8,
    },
}

/// A session's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The address packets are sent from and received on.
    pub local: IpAddr,
    /// The peer's address.
    pub peer: IpAddr,
    /// Single hop or multihop.
    pub hop: Hop,
    /// The timers.
    pub timers: Timers,
    /// The Passive role (RFC 5880 §6.1).
    pub passive: bool,
}

/// How many received datagrams were dropped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Failed [`packet::decode`] (truncated, bad version, length, detect
    /// mult, multipoint, discriminators).
    pub malformed: u64,
    /// Carried authentication (not supported).
    pub authenticated: u64,
    /// TTL / Hop Limit below 255 (single hop) or the minimum (multihop),
    /// or none reported.
    pub ttl: u64,
    /// From an address that is not the peer's.
    pub wrong_source: u64,
    /// Your Discriminator not this session's.
    pub wrong_discriminator: u64,
    /// Arrived while AdminDown.
    pub admin_down: u64,
}

#[derive(Debug, Default)]
struct Counters {
    malformed: AtomicU64,
    authenticated: AtomicU64,
    ttl: AtomicU64,
    wrong_source: AtomicU64,
    wrong_discriminator: AtomicU64,
    admin_down: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Dropped {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Dropped {
            malformed: get(&self.malformed),
            authenticated: get(&self.authenticated),
            ttl: get(&self.ttl),
            wrong_source: get(&self.wrong_source),
            wrong_discriminator: get(&self.wrong_discriminator),
            admin_down: get(&self.admin_down),
        }
    }
}

/// A running session; dropping it stops the session (without telling the
/// peer: use [`Session::admin_down`] first for that).
#[derive(Debug)]
pub struct Session {
    state: watch::Receiver<State>,
    commands: mpsc::UnboundedSender<Input>,
    counters: Arc<Counters>,
    local_discriminator: u32,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A random number from the standard library's per-process hash keys
/// (no extra dependency; jitter and discriminators need no cryptographic
/// strength).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// A xorshift generator for the transmit jitter.
fn jitter_source() -> Box<dyn FnMut() -> u32 + Send> {
    let mut x = random() | 1;
    Box::new(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 32) as u32
    })
}

fn udp_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Binds the sending socket to a free port of [`SOURCE_PORTS`], starting
/// at a random one.
fn bind_source(local: IpAddr) -> io::Result<Socket> {
    let count = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let start = (random() % u64::from(count)) as u32;
    let mut last = None;
    for i in 0..count {
        let port = *SOURCE_PORTS.start() + ((start + i) % count) as u16;
        let socket = udp_socket(SocketAddr::new(local, port))?;
        match socket.bind(&SocketAddr::new(local, port).into()) {
            Ok(()) => {
                if local.is_ipv6() {
                    socket.set_unicast_hops_v6(SEND_TTL)?;
                } else {
                    socket.set_ttl_v4(SEND_TTL)?;
                }
                return Ok(socket);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no source port")))
}

impl Session {
    /// Binds the sockets and starts the session (in Down, or AdminDown
    /// never: send [`Session::admin_down`] for that). Needs a runtime.
    pub fn start(config: SessionConfig) -> io::Result<Session> {
        let port = match config.hop {
            Hop::Single => SINGLE_HOP_PORT,
            Hop::Multi { .. } => MULTIHOP_PORT,
        };
        let rx = udp_socket(SocketAddr::new(config.local, port))?;
        rx.set_reuse_address(true)?;
        rx.bind(&SocketAddr::new(config.local, port).into())?;
        ttl::enable(&rx, config.local.is_ipv6())?;
        let rx = UdpSocket::from_std(rx.into())?;
        let tx = UdpSocket::from_std(bind_source(config.local)?.into())?;
        let local_discriminator = loop {
            let d = random() as u32;
            if d != 0 {
                break d;
            }
        };
        let fsm = Fsm::new(
            Config {
                timers: config.timers,
                local_discriminator,
                passive: config.passive,
            },
            jitter_source(),
        );
        let (state_tx, state) = watch::channel(State::Down);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let driver = Driver {
            config,
            fsm,
            rx,
            tx,
            peer: SocketAddr::new(config.peer, port),
            state: state_tx,
            counters: counters.clone(),
            transmit_at: None,
            detect_at: None,
        };
        let task = tokio::spawn(driver.run(commands_rx));
        Ok(Session {
            state,
            commands,
            counters,
            local_discriminator,
            task,
        })
    }

    /// The session state, updated on every change.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// bfd.LocalDiscr.
    pub fn local_discriminator(&self) -> u32 {
        self.local_discriminator
    }

    /// The dropped datagrams so far, by reason.
    pub fn dropped(&self) -> Dropped {
        self.counters.snapshot()
    }

    /// Holds the session AdminDown (RFC 5880 §6.8.16).
    pub fn admin_down(&self) {
        let _ = self.commands.send(Input::AdminDown);
    }

    /// Lets an AdminDown session run again.
    pub fn admin_up(&self) {
        let _ = self.commands.send(Input::AdminUp);
    }

    /// New timers, negotiated with a Poll Sequence while Up (RFC 5880
    /// §6.5, §6.8.3).
    pub fn set_timers(&self, timers: Timers) {
        let _ = self.commands.send(Input::SetTimers(timers));
    }
}

struct Driver {
    config: SessionConfig,
    fsm: Fsm,
    rx: UdpSocket,
    tx: UdpSocket,
    peer: SocketAddr,
    state: watch::Sender<State>,
    counters: Arc<Counters>,
    transmit_at: Option<Instant>,
    detect_at: Option<Instant>,
}

/// Sleeps until `at`, or forever when `None`.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Input>) {
        let span = tracing::info_span!("bfd", peer = %self.config.peer, local = %self.config.local);
        let _enter = span.enter();
        let first = self.fsm.start();
        self.apply(first).await;
        let mut buf = [0u8; 512];
        loop {
            let input = tokio::select! {
                ready = self.rx.readable() => {
                    if let Err(e) = ready {
                        tracing::warn!(error = %e, "receive socket failed");
                        return;
                    }
                    match self.rx.try_io(Interest::READABLE, || ttl::recv(&self.rx, &mut buf)) {
                        Ok((len, from, hops)) => match self.accept(&buf[..len], from, hops) {
                            Some(input) => input,
                            None => continue,
                        },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => {
                            tracing::debug!(error = %e, "receive failed");
                            continue;
                        }
                    }
                }
                () = until(self.transmit_at) => {
                    self.transmit_at = None;
                    Input::TransmitTimer
                }
                () = until(self.detect_at) => {
                    self.detect_at = None;
                    Input::DetectionTimer
                }
                command = commands.recv() => match command {
                    Some(input) => input,
                    None => return,
                },
            };
            match self.fsm.handle(input) {
                Ok(actions) => self.apply(actions).await,
                Err(Discard::WrongDiscriminator(d)) => {
                    tracing::debug!(your_discriminator = d, "dropped: wrong discriminator");
                    self.counters
                        .wrong_discriminator
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(Discard::AdminDown) => {
                    self.counters.admin_down.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The checks that need the socket (RFC 5881 §5, RFC 5883 §2) and the
    /// codec's (RFC 5880 §6.8.6); counts what it drops.
    fn accept(&self, datagram: &[u8], from: SocketAddr, hops: Option<u8>) -> Option<Input> {
        let least = match self.config.hop {
            Hop::Single => 255,
            Hop::Multi { min_ttl } => min_ttl,
        };
        if hops.is_none_or(|h| h < least) {
            tracing::debug!(?hops, %from, "dropped: TTL");
            self.counters.ttl.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if from.ip() != self.config.peer {
            tracing::debug!(%from, "dropped: not the peer");
            self.counters.wrong_source.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match packet::decode(datagram) {
            Ok(p) => Some(Input::Packet(p)),
            Err(e) => {
                tracing::debug!(error = %e, %from, "dropped: invalid packet");
                let counter = match e {
                    DecodeError::Authenticated { .. } => &self.counters.authenticated,
                    _ => &self.counters.malformed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    async fn apply(&mut self, actions: Vec<Action>) {
        let now = Instant::now();
        for action in actions {
            match action {
                Action::Send(p) => {
                    if let Err(e) = self.tx.send_to(&packet::encode(&p), self.peer).await {
                        tracing::debug!(error = %e, "send failed");
                    }
                }
                Action::SetTransmitTimer(d) => self.transmit_at = Some(now + d),
                Action::CancelTransmitTimer => self.transmit_at = None,
                Action::SetDetectionTimer(d) => self.detect_at = Some(now + d),
                Action::CancelDetectionTimer => self.detect_at = None,
                Action::StateChanged { from, to, diag } => {
                    tracing::info!(%from, %to, diag = diag.0, "BFD session state");
                    self.state.send_replace(to);
                }
            }
        }
    }
}
