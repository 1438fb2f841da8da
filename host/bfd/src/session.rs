//! The tokio driver of one BFD session over UDP: it turns the machine's
//! [`Action`]s into datagrams and timers, and received datagrams into
//! [`Input`]s after the checks that need the socket (source address,
//! TTL).
//!
//! ```text
//!   Session (handle) ── Command (mpsc) ──▶ task ──▶ Fsm (sans IO)
//!        ▲                                  │ ▲
//!        ├──── watch<State>, watch<bool> ◀──┘ │ datagrams from the shared receiver
//!        │                                    │   (crate::receive, TTL from cmsg)
//!        └──── Counters (Arc, atomics) ◀──────┤ UDP tx :49152–65535, TTL 255
//!                                             └ transmit and detection timers
//! ```
//!
//! Single hop (RFC 5881): control packets to port 3784 from a source port
//! in 49152–65535, sent with TTL / Hop Limit 255; a packet received with
//! less than 255 is dropped (§5, the GTSM check). Multihop (RFC 5883):
//! port 4784, received packets below a configured TTL are dropped.
//!
//! Sessions share their receive sockets ([`Receivers`]), which hand each
//! its datagrams; a session owns only its sending socket. Packets meant
//! for a session from any other source are dropped and counted.
//!
//! What a client (the BGP speaker) acts on is [`Session::failed`], not the
//! raw state: the path is failed once the session has been Up and went
//! Down, unless the peer signalled AdminDown (RFC 5882 §3.2: that is no
//! path failure), until it is Up again.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::fsm::{Action, Config, Discard, Fsm, Input, Timers};
use crate::packet::{self, DecodeError, State};
use crate::receive::{Datagram, Receivers, Registration};

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
    /// The address packets are sent from; the unspecified address of the
    /// peer's family lets the kernel choose (by the route to the peer).
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
    failed: watch::Receiver<bool>,
    commands: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
    local_discriminator: u32,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the handle asks of its task.
#[derive(Debug)]
enum Command {
    Input(Input),
    /// AdminDown, sent to the peer, then the answer.
    Stop(oneshot::Sender<()>),
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
    /// Starts the session (in Down) with its datagrams from `receivers`
    /// (binding the port's shared socket if this is its first session)
    /// and its own sending socket. One session per peer address and port.
    /// Needs a runtime.
    pub fn start(receivers: &Receivers, config: SessionConfig) -> io::Result<Session> {
        let port = match config.hop {
            Hop::Single => SINGLE_HOP_PORT,
            Hop::Multi { .. } => MULTIHOP_PORT,
        };
        let tx = UdpSocket::from_std(bind_source(config.local)?.into())?;
        let registration = receivers.register(port, config.peer, random)?;
        let local_discriminator = registration.discriminator;
        let fsm = Fsm::new(
            Config {
                timers: config.timers,
                local_discriminator,
                passive: config.passive,
            },
            jitter_source(),
        );
        let (state_tx, state) = watch::channel(State::Down);
        let (failed_tx, failed) = watch::channel(false);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let driver = Driver {
            config,
            fsm,
            registration,
            tx,
            peer: SocketAddr::new(config.peer, port),
            state: state_tx,
            failed: failed_tx,
            counters: counters.clone(),
            transmit_at: None,
            detect_at: None,
        };
        // Every log line of the session names its peer through this span.
        let span = tracing::info_span!("bfd", peer = %config.peer, local = %config.local);
        let task = tokio::spawn(driver.run(commands_rx).instrument(span));
        Ok(Session {
            state,
            failed,
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

    /// Whether BFD says the path is down: true from a change Up → Down
    /// (detection time expired, or the peer said Down) until the session
    /// is Up again. False before the first Up (the peer may not run BFD
    /// yet) and after the peer's AdminDown (RFC 5882 §3.2).
    pub fn failed(&self) -> watch::Receiver<bool> {
        self.failed.clone()
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
        let _ = self.commands.send(Command::Input(Input::AdminDown));
    }

    /// Lets an AdminDown session run again.
    pub fn admin_up(&self) {
        let _ = self.commands.send(Command::Input(Input::AdminUp));
    }

    /// New timers, negotiated with a Poll Sequence while Up (RFC 5880
    /// §6.5, §6.8.3).
    pub fn set_timers(&self, timers: Timers) {
        let _ = self.commands.send(Command::Input(Input::SetTimers(timers)));
    }

    /// Ends the session the planned way: AdminDown is sent to the peer
    /// (RFC 5880 §6.8.16), so that its clients do not take the end for a
    /// path failure (RFC 5882 §3.2), then the task stops.
    pub async fn stop(self) {
        let (done, sent) = oneshot::channel();
        if self.commands.send(Command::Stop(done)).is_ok() {
            let _ = sent.await;
        }
    }
}

struct Driver {
    config: SessionConfig,
    fsm: Fsm,
    registration: Registration,
    tx: UdpSocket,
    peer: SocketAddr,
    state: watch::Sender<State>,
    failed: watch::Sender<bool>,
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
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let first = self.fsm.start();
        self.apply(first).await;
        loop {
            let input = tokio::select! {
                datagram = self.registration.datagrams.recv() => match datagram {
                    Some(d) => match self.accept(&d) {
                        Some(input) => input,
                        None => continue,
                    },
                    None => return,
                },
                () = until(self.transmit_at) => {
                    self.transmit_at = None;
                    Input::TransmitTimer
                }
                () = until(self.detect_at) => {
                    self.detect_at = None;
                    Input::DetectionTimer
                }
                command = commands.recv() => match command {
                    Some(Command::Input(input)) => input,
                    Some(Command::Stop(done)) => {
                        if let Ok(actions) = self.fsm.handle(Input::AdminDown) {
                            self.apply(actions).await;
                        }
                        let _ = done.send(());
                        return;
                    }
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
    fn accept(&self, datagram: &Datagram) -> Option<Input> {
        let Datagram { bytes, from, hops } = datagram;
        let (from, hops) = (*from, *hops);
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
        match packet::decode(bytes) {
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
                    let failed = match to {
                        State::Up => false,
                        // The peer's AdminDown is no path failure (RFC
                        // 5882 §3.2); nor is our own.
                        State::AdminDown => false,
                        _ if self.fsm.remote_state() == State::AdminDown => false,
                        _ if from == State::Up => true,
                        _ => *self.failed.borrow(),
                    };
                    self.failed
                        .send_if_modified(|f| std::mem::replace(f, failed) != failed);
                }
            }
        }
    }
}
