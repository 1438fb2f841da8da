//! The tokio driver of one session: turns the machine's [`Action`]s into
//! TCP connections (source address, TTL, MD5 key), writes and timers, and
//! feeds back what the network does as [`Event`]s. A session has up to two
//! connections, its own and the peer's (handed over by
//! [`Listeners`](crate::listen::Listeners) through [`Session::inbound`]).
//!
//! ```text
//!  connect task ──Connected──┐
//!  reader tasks ─frames/EOF──┼─► mpsc ─► session loop ─► Fsm ─► actions ─► socket writes, timers
//!  listener ──peer's conn────┤  (tagged by Conn       └─► RibOut diff on Established / on change
//!  routes watch ─────────────┤   and generation)
//!  stop watch ───────────────┘
//! ```
//!
//! The loop owns the write halves, so writes happen in action order (a
//! NOTIFICATION is written before the connection closes).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::notification::BgpNotificationMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::fsm::{Action, Conn, Down, Event, Fsm, Negotiated, State, Timer};
use crate::listen::Inbound;
use crate::rib::{Encoding, RibOut, Routes, end_of_rib};
use crate::wire;

/// How long a stopping session waits for its Cease to be written.
const STOP_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// A session's settings beyond the state machine's. Its `Debug` hides the
/// MD5 password, so a debug log never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// A name for logs (the `BGPPeer`).
    pub name: String,
    /// The peer's address and port (also the port Herald accepts the
    /// peer's connections on).
    pub remote: SocketAddr,
    /// The local address to connect from, and the only one the peer's
    /// connections are accepted on; `None` lets the kernel choose (and
    /// accepts on any).
    pub source: Option<IpAddr>,
    /// The IP TTL (hop limit) of the session's packets.
    pub ttl: Option<u8>,
    /// TCP MD5 key (RFC 2385).
    pub password: Option<String>,
    /// The state machine's settings.
    pub fsm: crate::fsm::Config,
    /// NEXT_HOP for IPv4 routes when the session is not over IPv4 (next hop
    /// self uses the session's local address otherwise).
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes when the session is not over IPv6.
    pub next_hop_v6: Option<Ipv6Addr>,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("name", &self.name)
            .field("remote", &self.remote)
            .field("source", &self.source)
            .field("ttl", &self.ttl)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("fsm", &self.fsm)
            .field("next_hop_v4", &self.next_hop_v4)
            .field("next_hop_v6", &self.next_hop_v6)
            .finish()
    }
}

/// What a session reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The current state.
    pub state: State,
    /// How many times it reached Established.
    pub established: u64,
    /// Why it last went down.
    pub last_down: Option<Down>,
    /// Prefixes currently advertised.
    pub advertised: usize,
}

/// How many of the peer's connections may wait for the session loop.
const INCOMING_QUEUE: usize = 4;

/// A running session; stopping it sends a Cease.
#[derive(Debug)]
pub struct Session {
    stop: watch::Sender<bool>,
    status: watch::Receiver<Status>,
    inbound: Inbound,
    task: JoinHandle<()>,
}

impl Session {
    /// Starts a session that advertises what `routes` holds, following
    /// every change.
    pub fn spawn(config: PeerConfig, routes: watch::Receiver<Arc<Routes>>) -> Session {
        let (stop, stop_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(Status {
            state: State::Idle,
            established: 0,
            last_down: None,
            advertised: 0,
        });
        let (incoming_tx, incoming) = mpsc::channel(INCOMING_QUEUE);
        let inbound = Inbound::new(&config, incoming_tx);
        let task = tokio::spawn(run(config, routes, incoming, stop_rx, status_tx));
        Session {
            stop,
            status,
            inbound,
            task,
        }
    }

    /// Where the peer's connections to this session go: give it to
    /// [`Listeners::set`](crate::listen::Listeners::set).
    pub fn inbound(&self) -> Inbound {
        self.inbound.clone()
    }

    /// The session's status, to watch.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Sends a Cease (when a session is up) and ends the session.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the helper tasks report, tagged with the connection and its
/// generation.
enum Io {
    Connected(TcpStream),
    ConnectFailed(std::io::Error),
    Frame(Vec<u8>),
    BadHeader(netgauze_bgp_pkt::notification::BgpNotificationMessage),
    Closed,
}

/// The helper tasks' reports: which connection, which generation of it.
type Report = (Conn, u64, Io);

/// One open TCP connection.
struct Connection {
    writer: OwnedWriteHalf,
    reader: JoinHandle<()>,
    local: SocketAddr,
}

/// Per-connection values, indexed by [`Conn`].
#[derive(Default)]
struct PerConn<T> {
    outgoing: T,
    incoming: T,
}

impl<T> std::ops::Index<Conn> for PerConn<T> {
    type Output = T;
    fn index(&self, conn: Conn) -> &T {
        match conn {
            Conn::Outgoing => &self.outgoing,
            Conn::Incoming => &self.incoming,
        }
    }
}

impl<T> std::ops::IndexMut<Conn> for PerConn<T> {
    fn index_mut(&mut self, conn: Conn) -> &mut T {
        match conn {
            Conn::Outgoing => &mut self.outgoing,
            Conn::Incoming => &mut self.incoming,
        }
    }
}

struct Driver {
    config: PeerConfig,
    fsm: Fsm,
    io_tx: mpsc::Sender<Report>,
    /// Reports of an older generation (a closed connection) are dropped.
    generation: PerConn<u64>,
    conns: PerConn<Option<Connection>>,
    connecting: Option<JoinHandle<()>>,
    /// The peer's new connection while the machine decides on it.
    pending: Option<TcpStream>,
    /// The connection the session is Established on.
    established: Option<Conn>,
    timers: HashMap<Timer, Instant>,
    rib: RibOut,
    encoding: Option<Encoding>,
    status: watch::Sender<Status>,
}

async fn run(
    config: PeerConfig,
    mut routes: watch::Receiver<Arc<Routes>>,
    mut incoming: mpsc::Receiver<TcpStream>,
    mut stop: watch::Receiver<bool>,
    status: watch::Sender<Status>,
) {
    let (io_tx, mut io_rx) = mpsc::channel(256);
    let mut d = Driver {
        fsm: Fsm::new(config.fsm.clone()),
        config,
        io_tx,
        generation: PerConn::default(),
        conns: PerConn::default(),
        connecting: None,
        pending: None,
        established: None,
        timers: HashMap::new(),
        rib: RibOut::new(),
        encoding: None,
        status,
    };
    d.event(Event::Start, &routes).await;
    loop {
        let deadline = d.timers.values().min().copied();
        tokio::select! {
            Some((conn, generation, io)) = io_rx.recv() => {
                if generation == d.generation[conn] {
                    d.io(conn, io, &routes).await;
                }
            }
            Some(stream) = incoming.recv() => {
                let remote = stream.peer_addr().ok();
                tracing::debug!(peer = %d.config.name, remote = ?remote, "the peer connected");
                d.pending = Some(stream);
                d.event(Event::PeerConnected, &routes).await;
                // Neither accepted nor refused (cannot happen): close it.
                d.pending = None;
            }
            _ = sleep_until(deadline) => {
                let now = Instant::now();
                let expired: Vec<Timer> = d.timers.iter().filter(|(_, at)| **at <= now).map(|(t, _)| *t).collect();
                for timer in expired {
                    if d.timers.remove(&timer).is_some() {
                        let event = match timer {
                            Timer::ConnectRetry => Event::ConnectRetryExpired,
                            Timer::Hold(conn) => Event::HoldExpired(conn),
                            Timer::Keepalive(conn) => Event::KeepaliveExpired(conn),
                        };
                        d.event(event, &routes).await;
                    }
                }
            }
            changed = routes.changed() => {
                if changed.is_err() {
                    // The owner is gone: treat as a stop.
                    let _ = tokio::time::timeout(STOP_WRITE_TIMEOUT, d.event(Event::Stop, &routes)).await;
                    return;
                }
                d.advertise(&routes).await;
            }
            _ = stop.changed() => {
                let _ = tokio::time::timeout(STOP_WRITE_TIMEOUT, d.event(Event::Stop, &routes)).await;
                return;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    /// What a helper task reported about the current generation of `conn`.
    async fn io(&mut self, conn: Conn, io: Io, routes: &watch::Receiver<Arc<Routes>>) {
        match io {
            Io::Connected(stream) => {
                self.connecting = None;
                match self.install(Conn::Outgoing, stream) {
                    Ok(local) => {
                        tracing::debug!(peer = %self.config.name, %local, "connected");
                        self.event(Event::Connected, routes).await;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.config.name, error = %e, "connection lost at once");
                        self.event(Event::TcpFailed(Conn::Outgoing), routes).await;
                    }
                }
            }
            Io::ConnectFailed(e) => {
                self.connecting = None;
                tracing::debug!(peer = %self.config.name, error = %e, "connection attempt failed");
                self.event(Event::TcpFailed(Conn::Outgoing), routes).await;
            }
            Io::Frame(frame) => {
                let asn4 = self.fsm.negotiated(conn).is_some_and(|n| n.asn4);
                let event = match wire::decode(&frame, asn4) {
                    Ok(message) => {
                        if let BgpMessage::Notification(n) = &message {
                            tracing::info!(peer = %self.config.name, connection = %conn, codes = ?wire::notification_codes(n), "notification received");
                        }
                        Event::Message(conn, message)
                    }
                    Err(notification) => {
                        tracing::warn!(peer = %self.config.name, connection = %conn, codes = ?wire::notification_codes(&notification), "malformed message from the peer");
                        Event::Malformed(conn, notification)
                    }
                };
                self.event(event, routes).await;
            }
            Io::BadHeader(notification) => {
                tracing::warn!(peer = %self.config.name, connection = %conn, codes = ?wire::notification_codes(&notification), "malformed message header from the peer");
                self.event(Event::Malformed(conn, notification), routes)
                    .await;
            }
            Io::Closed => self.event(Event::TcpFailed(conn), routes).await,
        }
    }

    /// Makes `stream` the current connection `conn`, with its reader task.
    fn install(&mut self, conn: Conn, stream: TcpStream) -> std::io::Result<SocketAddr> {
        self.generation[conn] += 1;
        let local = stream.local_addr()?;
        let (read, writer) = stream.into_split();
        let reader = tokio::spawn(read_frames(
            read,
            self.io_tx.clone(),
            conn,
            self.generation[conn],
        ));
        self.conns[conn] = Some(Connection {
            writer,
            reader,
            local,
        });
        Ok(local)
    }

    /// Feeds one event and carries out the actions (which may feed more
    /// events, such as a failed write).
    async fn event(&mut self, event: Event, routes: &watch::Receiver<Arc<Routes>>) {
        let mut queue = vec![event];
        while let Some(event) = queue.pop() {
            let before = self.fsm.state();
            let actions = self.fsm.handle(event);
            let after = self.fsm.state();
            if before != after {
                tracing::info!(peer = %self.config.name, from = %before, to = %after, "session state");
                self.status.send_modify(|s| s.state = after);
            }
            for action in actions {
                if let Some(next) = self.act(action, routes).await {
                    queue.push(next);
                    break;
                }
            }
        }
    }

    async fn act(
        &mut self,
        action: Action,
        routes: &watch::Receiver<Arc<Routes>>,
    ) -> Option<Event> {
        match action {
            Action::Connect => {
                tracing::info!(peer = %self.config.name, remote = %self.config.remote, "connecting");
                self.generation[Conn::Outgoing] += 1;
                let generation = self.generation[Conn::Outgoing];
                let tx = self.io_tx.clone();
                let config = self.config.clone();
                self.connecting = Some(tokio::spawn(async move {
                    let io = match connect(&config).await {
                        Ok(stream) => Io::Connected(stream),
                        Err(e) => Io::ConnectFailed(e),
                    };
                    let _ = tx.send((Conn::Outgoing, generation, io)).await;
                }));
            }
            Action::Accept => {
                let stream = self.pending.take()?;
                match self.install(Conn::Incoming, stream) {
                    Ok(local) => {
                        tracing::info!(peer = %self.config.name, %local, "accepted the peer's connection");
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.config.name, error = %e, "the peer's connection was lost at once");
                        return Some(Event::TcpFailed(Conn::Incoming));
                    }
                }
            }
            Action::Refuse(notification) => {
                let stream = self.pending.take()?;
                let codes = wire::notification_codes(&notification);
                tracing::info!(peer = %self.config.name, ?codes, "refused the peer's connection");
                refuse(stream, &notification);
            }
            Action::Disconnect(conn) => {
                self.generation[conn] += 1;
                if conn == Conn::Outgoing
                    && let Some(c) = self.connecting.take()
                {
                    c.abort();
                }
                if let Some(mut c) = self.conns[conn].take() {
                    c.reader.abort();
                    let _ = c.writer.shutdown().await;
                }
                if self.established == Some(conn) {
                    self.established = None;
                    self.encoding = None;
                    self.status.send_modify(|s| s.advertised = 0);
                }
            }
            Action::Send(conn, message) => {
                if let BgpMessage::Notification(n) = &message {
                    let codes = wire::notification_codes(n);
                    if codes == CEASE_COLLISION {
                        tracing::info!(peer = %self.config.name, connection = %conn, "connection collision (RFC 4271 §6.8): closing this connection");
                    } else {
                        tracing::info!(peer = %self.config.name, connection = %conn, ?codes, "notification sent");
                    }
                }
                match wire::encode(&message) {
                    Ok(bytes) => return self.write(conn, &bytes).await,
                    Err(e) => {
                        tracing::error!(peer = %self.config.name, error = %e, "cannot encode a message");
                    }
                }
            }
            Action::Arm(timer, after) => {
                self.timers.insert(timer, Instant::now() + after);
            }
            Action::Disarm(timer) => {
                self.timers.remove(&timer);
            }
            Action::Established(conn, n) => return self.established(conn, n, routes).await,
            Action::Down(why) => {
                tracing::info!(peer = %self.config.name, reason = ?why, "session down");
                self.status.send_modify(|s| s.last_down = Some(why));
            }
            Action::Refresh { ipv6 } => {
                tracing::info!(peer = %self.config.name, ipv6, "route refresh requested");
                self.rib.forget(ipv6);
                self.advertise(routes).await;
            }
        }
        None
    }

    /// The session is up on `conn`: the whole RIB-out, then End-of-RIB.
    async fn established(
        &mut self,
        conn: Conn,
        n: Negotiated,
        routes: &watch::Receiver<Arc<Routes>>,
    ) -> Option<Event> {
        let local = self.conns[conn].as_ref().map(|c| c.local.ip());
        let encoding = Encoding {
            local_asn: self.config.fsm.local_asn,
            ebgp: self.config.fsm.local_asn != self.config.fsm.peer_asn,
            asn4: n.asn4,
            next_hop_v4: match local {
                Some(IpAddr::V4(a)) => Some(a),
                _ => self.config.next_hop_v4,
            },
            next_hop_v6: match local {
                Some(IpAddr::V6(a)) => Some(a),
                _ => self.config.next_hop_v6,
            },
            ipv4: n.ipv4,
            ipv6: n.ipv6,
        };
        tracing::info!(peer = %self.config.name, connection = %conn, hold_time = n.hold_time, asn4 = n.asn4, ipv4 = n.ipv4, ipv6 = n.ipv6, peer_router_id = %n.peer_router_id, graceful_restart = n.peer_graceful_restart, "session established");
        self.status.send_modify(|s| s.established += 1);
        self.established = Some(conn);
        self.rib = RibOut::new();
        self.encoding = Some(encoding.clone());
        let wanted = routes.borrow().clone();
        let mut bytes = match self.rib.update_to(&wanted, &encoding) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(peer = %self.config.name, error = %e, "cannot encode the routes");
                Vec::new()
            }
        };
        // End-of-RIB for each family (RFC 4724 §2).
        for (on, ipv6) in [(n.ipv4, false), (n.ipv6, true)] {
            if on && let Ok(eor) = end_of_rib(ipv6).and_then(|m| wire::encode(&m)) {
                bytes.extend_from_slice(&eor);
            }
        }
        let advertised = self.rib.sent().len();
        self.status.send_modify(|s| s.advertised = advertised);
        tracing::info!(peer = %self.config.name, routes = advertised, "advertised");
        self.write(conn, &bytes).await
    }

    /// Sends the difference between what was advertised and `routes`.
    async fn advertise(&mut self, routes: &watch::Receiver<Arc<Routes>>) {
        let (Some(encoding), Some(conn)) = (self.encoding.clone(), self.established) else {
            return;
        };
        let wanted = routes.borrow().clone();
        match self.rib.update_to(&wanted, &encoding) {
            Ok(bytes) if bytes.is_empty() => {}
            Ok(bytes) => {
                let advertised = self.rib.sent().len();
                self.status.send_modify(|s| s.advertised = advertised);
                tracing::info!(peer = %self.config.name, routes = advertised, octets = bytes.len(), "routes updated");
                if let Some(event) = self.write(conn, &bytes).await {
                    Box::pin(self.event(event, routes)).await;
                }
            }
            Err(e) => {
                tracing::error!(peer = %self.config.name, error = %e, "cannot encode the routes");
            }
        }
    }

    async fn write(&mut self, conn: Conn, bytes: &[u8]) -> Option<Event> {
        let c = self.conns[conn].as_mut()?;
        match c.writer.write_all(bytes).await {
            Ok(()) => None,
            Err(e) => {
                tracing::debug!(peer = %self.config.name, connection = %conn, error = %e, "write failed");
                Some(Event::TcpFailed(conn))
            }
        }
    }
}

/// Cease / Connection Collision Resolution (RFC 4486).
const CEASE_COLLISION: (u8, u8) = (6, 7);

/// How long a refused connection is drained after its NOTIFICATION, so
/// that closing it with unread input (the peer's OPEN) does not reset it
/// before the NOTIFICATION arrives.
const REFUSE_LINGER: Duration = Duration::from_secs(1);

/// Sends `notification` on a connection that is being turned away and
/// closes it, in a task of its own.
pub(crate) fn refuse(mut stream: TcpStream, notification: &BgpNotificationMessage) {
    let Ok(bytes) = wire::encode(&BgpMessage::Notification(notification.clone())) else {
        return;
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSE_LINGER, async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            std::io::Result::Ok(())
        })
        .await;
    });
}

/// Opens the TCP connection with the configured source address, TTL and
/// MD5 key (all set before the SYN goes out).
async fn connect(config: &PeerConfig) -> std::io::Result<TcpStream> {
    let socket = match config.remote {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(key) = &config.password {
        crate::md5::set_key(&socket, config.remote.ip(), key.as_bytes())?;
    }
    if let Some(ttl) = config.ttl {
        set_ttl(&socket, config.remote.is_ipv6(), ttl)?;
    }
    if let Some(source) = config.source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(config.remote).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sets the IP TTL (IPv6 hop limit) of the packets a socket sends.
pub(crate) fn set_ttl(socket: &impl AsFd, ipv6: bool, ttl: u8) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    if ipv6 {
        sock.set_unicast_hops_v6(ttl.into())
    } else {
        sock.set_ttl_v4(ttl.into())
    }
}

/// Reads messages off the connection and hands each complete one to the
/// session loop; a broken header or the end of the stream ends it.
async fn read_frames(
    mut read: tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::Sender<Report>,
    conn: Conn,
    generation: u64,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 65536];
    loop {
        loop {
            match wire::frame_len(&buf) {
                Ok(Some(len)) if buf.len() >= len => {
                    let frame: Vec<u8> = buf.drain(..len).collect();
                    if tx.send((conn, generation, Io::Frame(frame))).await.is_err() {
                        return;
                    }
                }
                Ok(_) => break,
                Err(notification) => {
                    let _ = tx
                        .send((conn, generation, Io::BadHeader(notification)))
                        .await;
                    return;
                }
            }
        }
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                let _ = tx.send((conn, generation, Io::Closed)).await;
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::bgp::Asn;

    #[test]
    fn debug_output_never_shows_the_md5_password() {
        let config = PeerConfig {
            name: "tor".into(),
            remote: "192.0.2.1:179".parse().unwrap(),
            source: None,
            ttl: None,
            password: Some("s3cret-md5-key".into()),
            fsm: crate::fsm::Config {
                local_asn: Asn::new(65000).unwrap(),
                peer_asn: Asn::new(65001).unwrap(),
                router_id: "192.0.2.2".parse().unwrap(),
                hold_time: 90,
                keepalive_time: 30,
                connect_retry: Duration::from_secs(120),
                graceful_restart: None,
                ipv4: true,
                ipv6: false,
                passive: false,
            },
            next_hop_v4: None,
            next_hop_v6: None,
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
