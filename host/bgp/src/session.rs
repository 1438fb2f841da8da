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
//!  path watch (BFD) ─────────┤
//!  stop watch ───────────────┘
//! ```
//!
//! The loop owns the write halves, so writes happen in action order (a
//! NOTIFICATION is written before the connection closes).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use herald_core::Family;
use ipnet::IpNet;
use netgauze_bgp_pkt::BgpMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::fsm::{Action, Conn, Down, Event, Fsm, Negotiated, State, Timer};
use crate::listen::Inbound;
use crate::peer::PeerConfig;
use crate::rib::{Encoding, RibOut, Routes, Update, end_of_rib};
use crate::socket::{connect, refuse};
use crate::wire;

/// How long a stopping session waits for its Cease to be written.
const STOP_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

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
        Session::spawn_guarded(config, routes, None)
    }

    /// As [`Session::spawn`], guarded by a BFD session: while `path_failed`
    /// holds true the session is down and held in Idle (the machine's
    /// [`Event::PathDown`]); its change to false starts it again.
    pub fn spawn_guarded(
        config: PeerConfig,
        routes: watch::Receiver<Arc<Routes>>,
        path_failed: Option<watch::Receiver<bool>>,
    ) -> Session {
        let (stop, stop_rx) = watch::channel(false);
        let (status_tx, status) = watch::channel(Status {
            state: State::Idle,
            established: 0,
            last_down: None,
            advertised: 0,
        });
        let (incoming_tx, incoming) = mpsc::channel(INCOMING_QUEUE);
        let inbound = Inbound::new(&config, incoming_tx);
        // Every log line of the session names its peer through this span.
        let span = tracing::info_span!("peer", name = %config.name);
        let task = tokio::spawn(
            run(config, routes, path_failed, incoming, stop_rx, status_tx).instrument(span),
        );
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
    /// The negotiated families whose End-of-RIB is not sent yet (see
    /// [`Driver::with_end_of_rib`]).
    end_of_rib_owed: BTreeSet<Family>,
    status: watch::Sender<Status>,
}

/// Waits for the next change of the path, or forever without BFD (or
/// once its sender is gone).
async fn path_changed(path: &mut Option<watch::Receiver<bool>>) -> bool {
    if let Some(p) = path.as_mut() {
        if p.changed().await.is_ok() {
            return *p.borrow_and_update();
        }
        *path = None;
    }
    std::future::pending().await
}

async fn run(
    config: PeerConfig,
    mut routes: watch::Receiver<Arc<Routes>>,
    mut path: Option<watch::Receiver<bool>>,
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
        end_of_rib_owed: BTreeSet::new(),
        status,
    };
    if path.as_mut().is_some_and(|p| *p.borrow_and_update()) {
        tracing::info!("BFD says the path is down: waiting for it before BGP");
        d.event(Event::PathDown, &routes).await;
    }
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
                tracing::debug!(remote = ?remote, "the peer connected");
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
            failed = path_changed(&mut path) => {
                if failed {
                    tracing::warn!("BFD says the path is down: session down, held until BFD is Up");
                    d.event(Event::PathDown, &routes).await;
                } else {
                    tracing::info!("BFD says the path is up");
                    d.event(Event::PathUp, &routes).await;
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
                        tracing::debug!(%local, "connected");
                        self.event(Event::Connected, routes).await;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "connection lost at once");
                        self.event(Event::TcpFailed(Conn::Outgoing), routes).await;
                    }
                }
            }
            Io::ConnectFailed(e) => {
                self.connecting = None;
                tracing::debug!(error = %e, "connection attempt failed");
                self.event(Event::TcpFailed(Conn::Outgoing), routes).await;
            }
            Io::Frame(frame) => {
                let asn4 = self.fsm.negotiated(conn).is_some_and(|n| n.asn4);
                let event = match wire::decode(&frame, asn4) {
                    Ok(message) => {
                        if let BgpMessage::Notification(n) = &message {
                            tracing::info!(connection = %conn, codes = ?wire::notification_codes(n), "notification received");
                        }
                        Event::Message(conn, message)
                    }
                    Err(notification) => {
                        tracing::warn!(connection = %conn, codes = ?wire::notification_codes(&notification), "malformed message from the peer");
                        Event::Malformed(conn, notification)
                    }
                };
                self.event(event, routes).await;
            }
            Io::BadHeader(notification) => {
                tracing::warn!(connection = %conn, codes = ?wire::notification_codes(&notification), "malformed message header from the peer");
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
                tracing::info!(from = %before, to = %after, "session state");
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
                tracing::info!(remote = %self.config.remote, "connecting");
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
                        tracing::info!(%local, "accepted the peer's connection");
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the peer's connection was lost at once");
                        return Some(Event::TcpFailed(Conn::Incoming));
                    }
                }
            }
            Action::Refuse(notification) => {
                let stream = self.pending.take()?;
                let codes = wire::notification_codes(&notification);
                tracing::info!(?codes, "refused the peer's connection");
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
                        tracing::info!(connection = %conn, "connection collision (RFC 4271 §6.8): closing this connection");
                    } else {
                        tracing::info!(connection = %conn, ?codes, "notification sent");
                    }
                }
                match wire::encode(&message) {
                    Ok(bytes) => return self.write(conn, &bytes).await,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a message");
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
                tracing::info!(reason = ?why, "session down");
                self.status.send_modify(|s| s.last_down = Some(why));
            }
            Action::Refresh { ipv6 } => {
                tracing::info!(ipv6, "route refresh requested");
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
        tracing::info!(connection = %conn, hold_time = n.hold_time, asn4 = n.asn4, ipv4 = n.ipv4, ipv6 = n.ipv6, peer_router_id = %n.peer_router_id, graceful_restart = n.peer_graceful_restart, "session established");
        self.status.send_modify(|s| s.established += 1);
        self.established = Some(conn);
        self.rib = RibOut::new();
        self.encoding = Some(encoding.clone());
        self.end_of_rib_owed = [(n.ipv4, Family::IPv4), (n.ipv6, Family::IPv6)]
            .into_iter()
            .filter_map(|(on, family)| on.then_some(family))
            .collect();
        let wanted = routes.borrow().clone();
        let update = self.rib.update_to(&wanted, &encoding);
        let bytes = self.with_end_of_rib(update);
        let advertised = self.rib.sent().len();
        self.status.send_modify(|s| s.advertised = advertised);
        tracing::info!(routes = advertised, "advertised");
        self.write(conn, &bytes).await
    }

    /// Sends the difference between what was advertised and `routes`.
    async fn advertise(&mut self, routes: &watch::Receiver<Arc<Routes>>) {
        let (Some(encoding), Some(conn)) = (self.encoding.clone(), self.established) else {
            return;
        };
        let wanted = routes.borrow().clone();
        let update = self.rib.update_to(&wanted, &encoding);
        let bytes = self.with_end_of_rib(update);
        if bytes.is_empty() {
            return;
        }
        let advertised = self.rib.sent().len();
        self.status.send_modify(|s| s.advertised = advertised);
        tracing::info!(routes = advertised, octets = bytes.len(), "routes updated");
        if let Some(event) = self.write(conn, &bytes).await {
            Box::pin(self.event(event, routes)).await;
        }
    }

    /// The UPDATEs of `update` (its skipped groups logged), followed by
    /// the End-of-RIB of each family that owes one and is now complete.
    ///
    /// End-of-RIB (RFC 4724 §2) tells a graceful-restart peer that the
    /// initial advertisement is over: it then drops every route it kept
    /// from before the restart and that was not sent again (§4.2). So a
    /// family's End-of-RIB waits until nothing of that family is skipped:
    /// after an encoding failure (even of every route) the peer keeps its
    /// stale routes instead of flushing them. The initial update is not
    /// complete while a wanted route is missing from it, so holding the
    /// marker back follows §4.1; it goes out with the first later update in
    /// which every route of the family was sent (the route fixed or
    /// removed). A peer that bounds how long it keeps stale routes flushes
    /// them at its own limit meanwhile.
    fn with_end_of_rib(&mut self, mut update: Update) -> Vec<u8> {
        for skipped in &update.skipped {
            tracing::error!(
                prefixes = %Prefixes(&skipped.prefixes),
                count = skipped.prefixes.len(),
                withdrawal = skipped.withdrawal,
                error = %skipped.error,
                "routes not sent: they cannot be encoded; the peer keeps what it had of them"
            );
        }
        let mut bytes = std::mem::take(&mut update.bytes);
        for family in self.end_of_rib_owed.clone() {
            let ipv6 = family == Family::IPv6;
            if update.skipped(ipv6) {
                tracing::warn!(%family, "End-of-RIB held back until every route of the family is sent: a graceful-restart peer keeps its stale routes meanwhile");
                continue;
            }
            match end_of_rib(ipv6).and_then(|m| wire::encode(&m)) {
                Ok(eor) => {
                    bytes.extend_from_slice(&eor);
                    self.end_of_rib_owed.remove(&family);
                }
                Err(e) => tracing::error!(%family, error = %e, "cannot encode End-of-RIB"),
            }
        }
        bytes
    }

    async fn write(&mut self, conn: Conn, bytes: &[u8]) -> Option<Event> {
        let c = self.conns[conn].as_mut()?;
        match c.writer.write_all(bytes).await {
            Ok(()) => None,
            Err(e) => {
                tracing::debug!(connection = %conn, error = %e, "write failed");
                Some(Event::TcpFailed(conn))
            }
        }
    }
}

/// Cease / Connection Collision Resolution (RFC 4486).
const CEASE_COLLISION: (u8, u8) = (6, 7);

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

/// Prefixes for a log line: the first few and how many more.
struct Prefixes<'a>(&'a [IpNet]);

impl fmt::Display for Prefixes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Enough to find the routes; the count says how many there are.
        const SHOWN: usize = 8;
        for (i, p) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, " and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}
