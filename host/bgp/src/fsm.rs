//! The session state machine of RFC 4271 §8, sans IO: [`Event`]s in,
//! [`Action`]s out. It never touches a socket or a clock; the driver
//! (`session.rs`) turns actions into TCP connections, writes and timers, and
//! the unit tests beside it drive every transition directly.
//!
//! A session has up to two TCP connections ([`Conn`]): the one Herald opens
//! and the one the peer opens. Each goes through OpenSent and OpenConfirm
//! on its own; when both carry an OPEN, connection collision detection
//! (§6.8) keeps one: the connection opened by the side with the higher BGP
//! Identifier (on equal identifiers, the higher ASN: RFC 6286 §2.3), and
//! closes the other with Cease / Connection Collision Resolution (RFC 4486).
//! A connection the peer opens while a session is Established is refused
//! the same way; a new one replaces an earlier incoming connection that is
//! not Established (the peer has given that one up).
//!
//! Differences from the RFC's optional-attribute menu, chosen for a speaker
//! that only originates routes:
//! - Automatic start after an error with backoff (§8.1.1
//!   `AllowAutomaticStart` and `DampPeerOscillations`): after a failure the
//!   session waits in Idle (refusing connections) for the current backoff,
//!   then starts again. The backoff starts at [`INITIAL_BACKOFF`], doubles
//!   on every failure up to the configured connect-retry time and resets
//!   once Established.
//! - The connect-retry timer bounds each connection attempt (Connect state)
//!   and, after a failed one, the wait in Active, with the same backoff.
//! - A passive session (`PassiveTcpEstablishment`, §8.1.1) never connects:
//!   it starts in Active and waits for the peer.
//! - Active sessions accept the peer's connection too (in Connect, Active,
//!   OpenSent and OpenConfirm); once an OPEN arrives on one connection, an
//!   attempt still in Connect is abandoned, as BIRD does.
//! - A failure closes only its connection; the session goes Idle when no
//!   connection is left.
//! - BFD (RFC 5882 §4.3, RFC 9384): [`Event::PathDown`] (the session's BFD
//!   says the path failed) closes every connection at once, with Cease /
//!   BFD Down where an OPEN was sent, and holds the session in Idle —
//!   refusing the peer's connections, no automatic start — until
//!   [`Event::PathUp`], which starts it at once (with the first backoff).
//!   BGP so never comes up over a path BFD says is down.

use std::net::Ipv4Addr;
use std::time::Duration;

use herald_core::bgp::Asn;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::notification::{
    BgpNotificationMessage, CeaseError, FiniteStateMachineError, HoldTimerExpiredError,
    OpenMessageError,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_iana::address_family::AddressType;

/// The first wait before reconnecting after a failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// The hold timer while waiting for the peer's OPEN: "a large value …
/// 4 minutes is suggested" (RFC 4271 §8.2.2, Connect state).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// The session states (RFC 4271 §8.2.2). With two connections, the state
/// of the one furthest along.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Refuses connections; waits for a start (or the backoff).
    Idle,
    /// Connecting.
    Connect,
    /// Waiting for the peer to connect (passive), or for the connect-retry
    /// timer after a failed attempt; accepts the peer's connection.
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Exchanging UPDATEs.
    Established,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One of a session's two TCP connections (RFC 4271 §6.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conn {
    /// The connection Herald opened to the peer.
    Outgoing,
    /// The connection the peer opened to Herald.
    Incoming,
}

impl Conn {
    /// Both, in a fixed order.
    pub const BOTH: [Conn; 2] = [Conn::Outgoing, Conn::Incoming];

    /// The other connection.
    pub fn other(self) -> Conn {
        match self {
            Conn::Outgoing => Conn::Incoming,
            Conn::Incoming => Conn::Outgoing,
        }
    }
}

impl std::fmt::Display for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Outgoing => "outgoing",
            Conn::Incoming => "incoming",
        })
    }
}

/// The timers the machine arms (RFC 4271 §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer, also the Idle backoff before an automatic start.
    ConnectRetry,
    /// HoldTimer of one connection.
    Hold(Conn),
    /// KeepaliveTimer of one connection.
    Keepalive(Conn),
}

/// What happens to a session.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// ManualStart (Event 1), or ManualStart_with_PassiveTcpEstablishment
    /// (Event 4) for a passive session.
    Start,
    /// ManualStop (Event 2): send a Cease and stay down.
    Stop,
    /// The connect-retry (or backoff) timer fired (Event 9).
    ConnectRetryExpired,
    /// A connection's hold timer fired (Event 10).
    HoldExpired(Conn),
    /// A connection's keepalive timer fired (Event 11).
    KeepaliveExpired(Conn),
    /// Herald's connection to the peer is up (Event 16).
    Connected,
    /// The peer opened a connection (Event 17); the driver holds it until
    /// the machine answers [`Action::Accept`] or [`Action::Refuse`].
    PeerConnected,
    /// A connection failed or was closed (Event 18).
    TcpFailed(Conn),
    /// A well-formed message arrived on a connection (Events 19–28).
    Message(Conn, BgpMessage),
    /// A malformed message arrived on a connection; the NOTIFICATION to
    /// send (Events 21/22/28).
    Malformed(Conn, BgpNotificationMessage),
    /// BFD says the path to the peer is down (RFC 5882 §4.3).
    PathDown,
    /// BFD says the path is up again.
    PathUp,
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open a TCP connection to the peer (the outgoing one).
    Connect,
    /// Take the connection the peer just opened as the incoming one.
    Accept,
    /// Send this NOTIFICATION on the connection the peer just opened, then
    /// close it.
    Refuse(BgpNotificationMessage),
    /// Close a connection (after sending what came before).
    Disconnect(Conn),
    /// Send a message on a connection.
    Send(Conn, BgpMessage),
    /// (Re)arm a timer.
    Arm(Timer, Duration),
    /// Stop a timer.
    Disarm(Timer),
    /// The session is Established on this connection with these
    /// parameters: send the RIB-out and End-of-RIB.
    Established(Conn, Negotiated),
    /// The session left Established (or the attempt failed).
    Down(Down),
    /// The peer asked for our routes again (RFC 2918).
    Refresh {
        /// IPv6 unicast (else IPv4 unicast).
        ipv6: bool,
    },
}

/// Why a session went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Down {
    /// We stopped it.
    Stopped,
    /// The connection failed or closed.
    ConnectionLost,
    /// The hold timer expired.
    HoldTimerExpired,
    /// We sent a NOTIFICATION (code, subcode).
    NotificationSent(u8, u8),
    /// The peer sent a NOTIFICATION (code, subcode).
    NotificationReceived(u8, u8),
    /// BFD said the path is down.
    PathDown,
}

/// The session's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our ASN.
    pub local_asn: Asn,
    /// The ASN the peer must have.
    pub peer_asn: Asn,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds (0, or at least 3).
    pub hold_time: u16,
    /// Keepalive interval in seconds when our hold time is the one used.
    pub keepalive_time: u16,
    /// The longest backoff between attempts.
    pub connect_retry: Duration,
    /// Graceful restart (RFC 4724) with this restart time in seconds.
    pub graceful_restart: Option<u16>,
    /// Offer IPv4 unicast.
    pub ipv4: bool,
    /// Offer IPv6 unicast.
    pub ipv6: bool,
    /// Never connect: wait for the peer's connection.
    pub passive: bool,
}

/// What both sides agreed on in their OPENs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The hold time in use: the smaller of both (RFC 4271 §4.2).
    pub hold_time: u16,
    /// The keepalive interval in use (0: none).
    pub keepalive_time: u16,
    /// 4-octet AS numbers in AS_PATH (RFC 6793 §3).
    pub asn4: bool,
    /// IPv4 unicast on both sides (implicit when the peer sends no
    /// multiprotocol capability, RFC 4760 §8).
    pub ipv4: bool,
    /// IPv6 unicast on both sides.
    pub ipv6: bool,
    /// The peer's BGP Identifier.
    pub peer_router_id: Ipv4Addr,
    /// The peer can keep our routes across our restarts (RFC 4724).
    pub peer_graceful_restart: bool,
}

/// How far one connection got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// TCP connection under way (outgoing only).
    Connecting,
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug)]
struct Link {
    phase: Phase,
    negotiated: Option<Negotiated>,
}

impl Link {
    fn new(phase: Phase) -> Link {
        Link {
            phase,
            negotiated: None,
        }
    }
}

/// One session's state machine.
#[derive(Debug)]
pub struct Fsm {
    config: Config,
    /// Started (and not stopped since).
    started: bool,
    /// Started and not in the Idle backoff, nor held by BFD.
    running: bool,
    /// BFD says the path is down: held in Idle.
    path_down: bool,
    backoff: Duration,
    outgoing: Option<Link>,
    incoming: Option<Link>,
}

impl Fsm {
    /// A machine in Idle.
    pub fn new(config: Config) -> Fsm {
        Fsm {
            config,
            started: false,
            running: false,
            path_down: false,
            backoff: INITIAL_BACKOFF,
            outgoing: None,
            incoming: None,
        }
    }

    /// The current state: Idle, else that of the connection furthest
    /// along, else Active.
    pub fn state(&self) -> State {
        if !self.running {
            return State::Idle;
        }
        let furthest = [&self.outgoing, &self.incoming]
            .into_iter()
            .flatten()
            .map(|l| l.phase)
            .max();
        match furthest {
            None => State::Active,
            Some(Phase::Connecting) => State::Connect,
            Some(Phase::OpenSent) => State::OpenSent,
            Some(Phase::OpenConfirm) => State::OpenConfirm,
            Some(Phase::Established) => State::Established,
        }
    }

    /// What was negotiated on a connection, once OPENs were exchanged on it.
    pub fn negotiated(&self, conn: Conn) -> Option<&Negotiated> {
        self.link(conn).and_then(|l| l.negotiated.as_ref())
    }

    /// The wait before the next attempt.
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// The OPEN Herald sends (RFC 4271 §4.2) with its capabilities:
    /// multiprotocol (RFC 4760), route refresh (RFC 2918), 4-octet ASN
    /// (RFC 6793) and, when configured, graceful restart (RFC 4724) with the
    /// forwarding state preserved (the kernel keeps forwarding while Herald
    /// restarts).
    pub fn open_message(&self) -> BgpMessage {
        let c = &self.config;
        let mut caps = Vec::new();
        let mut families = Vec::new();
        if c.ipv4 {
            families.push(AddressType::Ipv4Unicast);
        }
        if c.ipv6 {
            families.push(AddressType::Ipv6Unicast);
        }
        for f in &families {
            caps.push(BgpCapability::MultiProtocolExtensions(
                MultiProtocolExtensionsCapability::new(*f),
            ));
        }
        caps.push(BgpCapability::RouteRefresh);
        caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(
            c.local_asn.get(),
        )));
        if let Some(time) = c.graceful_restart {
            caps.push(BgpCapability::GracefulRestartCapability(
                GracefulRestartCapability::new(
                    false,
                    false,
                    time,
                    families
                        .iter()
                        .map(|f| GracefulRestartAddressFamily::new(true, *f))
                        .collect::<Vec<_>>(),
                ),
            ));
        }
        // "My Autonomous System": AS_TRANS for a 4-octet ASN (RFC 6793 §4.1).
        let my_as = u16::try_from(c.local_asn.get()).unwrap_or(Asn::AS_TRANS as u16);
        BgpMessage::Open(BgpOpenMessage::new(
            my_as,
            c.hold_time,
            c.router_id,
            vec![BgpOpenMessageParameter::new_capabilities(caps)],
        ))
    }

    /// Feeds one event; returns the actions, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Stop => self.stop(&mut out),
            Event::Start => {
                self.started = true;
                if !self.running && !self.path_down {
                    self.start(&mut out);
                }
            }
            // The backoff is over: an automatic start (§8.1.1), unless
            // BFD holds the session.
            Event::ConnectRetryExpired if !self.running => {
                self.started = true;
                if !self.path_down {
                    self.start(&mut out);
                }
            }
            Event::ConnectRetryExpired => self.retry(&mut out),
            Event::Connected => {
                if self.phase(Conn::Outgoing) == Some(Phase::Connecting) {
                    out.push(Action::Disarm(Timer::ConnectRetry));
                    self.send_open(Conn::Outgoing, &mut out);
                }
            }
            Event::PeerConnected => self.peer_connected(&mut out),
            Event::TcpFailed(conn) => match self.phase(conn) {
                None => {}
                Some(Phase::Connecting) => self.connect_failed(&mut out),
                Some(_) => self.close(conn, None, Down::ConnectionLost, &mut out),
            },
            Event::HoldExpired(conn) => {
                if self.phase(conn) >= Some(Phase::OpenSent) {
                    let n = BgpNotificationMessage::HoldTimerExpiredError(
                        HoldTimerExpiredError::Unspecific {
                            sub_code: 0,
                            value: Box::new([]),
                        },
                    );
                    self.close(conn, Some(n), Down::HoldTimerExpired, &mut out);
                }
            }
            Event::KeepaliveExpired(conn) => {
                if self.phase(conn) >= Some(Phase::OpenConfirm) {
                    out.push(Action::Send(conn, BgpMessage::KeepAlive));
                    if let Some(n) = self.negotiated(conn) {
                        out.push(Action::Arm(
                            Timer::Keepalive(conn),
                            Duration::from_secs(n.keepalive_time.into()),
                        ));
                    }
                }
            }
            Event::Message(conn, message) => self.message(conn, message, &mut out),
            Event::Malformed(conn, n) => {
                if self.phase(conn) >= Some(Phase::OpenSent) {
                    self.fail_with(conn, n, &mut out);
                }
            }
            Event::PathDown => self.path_down(&mut out),
            Event::PathUp => {
                if self.path_down {
                    self.path_down = false;
                    self.backoff = INITIAL_BACKOFF;
                    if self.started && !self.running {
                        self.start(&mut out);
                    }
                }
            }
        }
        out
    }

    /// BFD says the path is down (RFC 5882 §4.3): every connection closes
    /// now, with Cease / BFD Down (RFC 9384) where an OPEN went out (it
    /// may not arrive: the path is down; it tells a peer that still hears
    /// why), and the session waits in Idle for [`Event::PathUp`].
    fn path_down(&mut self, out: &mut Vec<Action>) {
        if self.path_down {
            return;
        }
        self.path_down = true;
        let was_running = self.running;
        for conn in Conn::BOTH {
            let Some(link) = self.slot(conn).take() else {
                continue;
            };
            if link.phase >= Phase::OpenSent {
                out.push(Action::Send(
                    conn,
                    BgpMessage::Notification(cease(CeaseError::BfdDown {
                        value: Box::new([]),
                    })),
                ));
            }
            out.push(Action::Disconnect(conn));
        }
        if self.started {
            // Including the backoff of a session waiting in Idle.
            out.extend(disarm_all());
        }
        if was_running {
            out.push(Action::Down(Down::PathDown));
        }
        self.running = false;
    }

    fn link(&self, conn: Conn) -> Option<&Link> {
        match conn {
            Conn::Outgoing => self.outgoing.as_ref(),
            Conn::Incoming => self.incoming.as_ref(),
        }
    }

    fn slot(&mut self, conn: Conn) -> &mut Option<Link> {
        match conn {
            Conn::Outgoing => &mut self.outgoing,
            Conn::Incoming => &mut self.incoming,
        }
    }

    fn phase(&self, conn: Conn) -> Option<Phase> {
        self.link(conn).map(|l| l.phase)
    }

    fn set_phase(&mut self, conn: Conn, phase: Phase) {
        if let Some(link) = self.slot(conn) {
            link.phase = phase;
        }
    }

    /// Idle → Connect, or Active for a passive session (§8.2.2 Idle,
    /// Events 1/3 and 4/5).
    fn start(&mut self, out: &mut Vec<Action>) {
        self.running = true;
        if !self.config.passive {
            self.connect(out);
        }
    }

    fn stop(&mut self, out: &mut Vec<Action>) {
        for conn in Conn::BOTH {
            let Some(link) = self.slot(conn).take() else {
                continue;
            };
            if link.phase >= Phase::OpenSent {
                // Cease / Administrative Shutdown (RFC 4486 §4).
                out.push(Action::Send(
                    conn,
                    BgpMessage::Notification(BgpNotificationMessage::CeaseError(
                        CeaseError::AdministrativeShutdown {
                            value: Box::new([]),
                        },
                    )),
                ));
            }
            out.push(Action::Disconnect(conn));
        }
        out.extend(disarm_all());
        out.push(Action::Down(Down::Stopped));
        self.running = false;
        self.started = false;
    }

    /// The connect-retry timer while running: an attempt took too long (it
    /// is abandoned and, with no other connection, made again), or the wait
    /// in Active is over.
    fn retry(&mut self, out: &mut Vec<Action>) {
        match self.phase(Conn::Outgoing) {
            Some(Phase::Connecting) => {
                out.push(Action::Disconnect(Conn::Outgoing));
                self.outgoing = None;
                if self.incoming.is_none() {
                    self.connect(out);
                }
            }
            None if self.incoming.is_none() && !self.config.passive => self.connect(out),
            _ => {}
        }
    }

    fn connect(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Connect);
        out.push(Action::Arm(
            Timer::ConnectRetry,
            self.backoff.max(connect_timeout()),
        ));
        self.outgoing = Some(Link::new(Phase::Connecting));
    }

    /// §8.2.2 Connect, Event 18: to Active with the connect-retry timer
    /// armed, unless the peer's connection is there to carry on with.
    fn connect_failed(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Disconnect(Conn::Outgoing));
        self.outgoing = None;
        if self.incoming.is_none() {
            out.push(Action::Arm(Timer::ConnectRetry, self.backoff));
            self.grow_backoff();
        } else {
            out.push(Action::Disarm(Timer::ConnectRetry));
        }
    }

    fn peer_connected(&mut self, out: &mut Vec<Action>) {
        if !self.running {
            // Idle refuses connections (§8.2.2); RFC 4486 §4 asks for
            // Cease / Connection Rejected.
            out.push(Action::Refuse(cease(CeaseError::ConnectionRejected {
                value: Box::new([]),
            })));
            return;
        }
        if self.state() == State::Established {
            // A collision with an Established session closes the new
            // connection (§6.8).
            out.push(Action::Refuse(cease_collision()));
            return;
        }
        if self.incoming.take().is_some() {
            // The peer opens one connection at a time: it gave the earlier
            // one up, which the new one replaces.
            out.push(Action::Send(
                Conn::Incoming,
                BgpMessage::Notification(cease_collision()),
            ));
            out.push(Action::Disconnect(Conn::Incoming));
            out.push(Action::Disarm(Timer::Keepalive(Conn::Incoming)));
        }
        if self.outgoing.is_none() {
            // No more waiting in Active for an attempt of our own.
            out.push(Action::Disarm(Timer::ConnectRetry));
        }
        out.push(Action::Accept);
        self.incoming = Some(Link::new(Phase::OpenSent));
        self.send_open(Conn::Incoming, out);
    }

    fn send_open(&mut self, conn: Conn, out: &mut Vec<Action>) {
        out.push(Action::Send(conn, self.open_message()));
        out.push(Action::Arm(Timer::Hold(conn), OPEN_HOLD_TIME));
        self.set_phase(conn, Phase::OpenSent);
    }

    fn message(&mut self, conn: Conn, message: BgpMessage, out: &mut Vec<Action>) {
        let Some(phase) = self.phase(conn).filter(|p| *p >= Phase::OpenSent) else {
            return;
        };
        match (phase, message) {
            (_, BgpMessage::Notification(n)) => {
                let (code, subcode) = crate::wire::notification_codes(&n);
                self.close(conn, None, Down::NotificationReceived(code, subcode), out);
            }
            (Phase::OpenSent, BgpMessage::Open(open)) => match self.check_open(&open) {
                Ok(negotiated) => self.open_received(conn, negotiated, out),
                Err(notification) => self.fail_with(conn, notification, out),
            },
            (Phase::OpenConfirm, BgpMessage::KeepAlive) => {
                self.restart_hold(conn, out);
                self.backoff = INITIAL_BACKOFF;
                self.set_phase(conn, Phase::Established);
                if let Some(n) = self.negotiated(conn) {
                    out.push(Action::Established(conn, n.clone()));
                }
            }
            (Phase::Established, BgpMessage::KeepAlive | BgpMessage::Update(_)) => {
                // Herald originates routes and imports none: an UPDATE only
                // proves the peer alive (§8.2.2 Established, Event 27).
                self.restart_hold(conn, out);
            }
            (Phase::Established, BgpMessage::RouteRefresh(r)) => {
                self.restart_hold(conn, out);
                match r.address_type() {
                    AddressType::Ipv4Unicast => out.push(Action::Refresh { ipv6: false }),
                    AddressType::Ipv6Unicast => out.push(Action::Refresh { ipv6: true }),
                    // A family we never offered: nothing to resend.
                    _ => {}
                }
            }
            (phase, _) => {
                // Any other message is an FSM error (§8.2.2, RFC 6608
                // subcodes).
                let value = Box::new([]);
                let error = match phase {
                    Phase::OpenSent => {
                        FiniteStateMachineError::ReceiveUnexpectedMessageInOpenSentState { value }
                    }
                    Phase::OpenConfirm => {
                        FiniteStateMachineError::ReceiveUnexpectedMessageInOpenConfirmState {
                            value,
                        }
                    }
                    _ => FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState {
                        value,
                    },
                };
                self.fail_with(
                    conn,
                    BgpNotificationMessage::FiniteStateMachineError(error),
                    out,
                );
            }
        }
    }

    /// A good OPEN on `conn`: collision detection (§6.8), then OpenConfirm.
    fn open_received(&mut self, conn: Conn, negotiated: Negotiated, out: &mut Vec<Action>) {
        let other = conn.other();
        match self.phase(other) {
            Some(Phase::Established) => {
                self.fail_with(conn, cease_collision(), out);
                return;
            }
            Some(Phase::OpenConfirm) => {
                if self.survivor(negotiated.peer_router_id) == conn {
                    self.fail_with(other, cease_collision(), out);
                } else {
                    self.fail_with(conn, cease_collision(), out);
                    return;
                }
            }
            Some(Phase::Connecting) => {
                // The peer answered on its own connection: stop ours.
                out.push(Action::Disconnect(other));
                out.push(Action::Disarm(Timer::ConnectRetry));
                *self.slot(other) = None;
            }
            Some(Phase::OpenSent) | None => {}
        }
        out.push(Action::Send(conn, BgpMessage::KeepAlive));
        arm_session_timers(conn, &negotiated, out);
        if let Some(link) = self.slot(conn) {
            link.negotiated = Some(negotiated);
            link.phase = Phase::OpenConfirm;
        }
    }

    /// The connection that survives a collision with a peer whose BGP
    /// Identifier is `peer_id`: the one opened by the side with the higher
    /// identifier, compared as 32-bit numbers (§6.8), or with the higher ASN
    /// when the identifiers are equal (RFC 6286 §2.3).
    fn survivor(&self, peer_id: Ipv4Addr) -> Conn {
        let ours = (u32::from(self.config.router_id), self.config.local_asn);
        let theirs = (u32::from(peer_id), self.config.peer_asn);
        if ours > theirs {
            Conn::Outgoing
        } else {
            Conn::Incoming
        }
    }

    /// Closes `conn` (after sending `notification`, if any). The session
    /// goes down when that connection was Established or no other is left;
    /// it goes Idle (with backoff) when no other is left.
    fn close(
        &mut self,
        conn: Conn,
        notification: Option<BgpNotificationMessage>,
        why: Down,
        out: &mut Vec<Action>,
    ) {
        let Some(link) = self.slot(conn).take() else {
            return;
        };
        if let Some(n) = notification {
            out.push(Action::Send(conn, BgpMessage::Notification(n)));
        }
        out.push(Action::Disconnect(conn));
        out.push(Action::Disarm(Timer::Hold(conn)));
        out.push(Action::Disarm(Timer::Keepalive(conn)));
        let alone = self.link(conn.other()).is_none();
        if link.phase == Phase::Established || alone {
            out.push(Action::Down(why));
        }
        if alone {
            self.go_idle(out);
        }
    }

    fn fail_with(
        &mut self,
        conn: Conn,
        notification: BgpNotificationMessage,
        out: &mut Vec<Action>,
    ) {
        let (code, subcode) = crate::wire::notification_codes(&notification);
        self.close(
            conn,
            Some(notification),
            Down::NotificationSent(code, subcode),
            out,
        );
    }

    fn grow_backoff(&mut self) {
        self.backoff = (self.backoff * 2).min(self.config.connect_retry.max(INITIAL_BACKOFF));
    }

    /// Idle, to start again after the backoff (automatic start).
    fn go_idle(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Arm(Timer::ConnectRetry, self.backoff));
        self.grow_backoff();
        self.running = false;
    }

    fn restart_hold(&self, conn: Conn, out: &mut Vec<Action>) {
        if let Some(n) = self.negotiated(conn)
            && n.hold_time > 0
        {
            out.push(Action::Arm(
                Timer::Hold(conn),
                Duration::from_secs(n.hold_time.into()),
            ));
        }
    }

    /// Checks the peer's OPEN (RFC 4271 §6.2) and negotiates.
    fn check_open(&self, open: &BgpOpenMessage) -> Result<Negotiated, BgpNotificationMessage> {
        let c = &self.config;
        let err = BgpNotificationMessage::OpenMessageError;
        if open.version() != 4 {
            // "the largest locally-supported version number" (§6.2).
            return Err(err(OpenMessageError::UnsupportedVersionNumber {
                value: Box::new([0, 4]),
            }));
        }
        if open.my_asn4() != c.peer_asn.get() {
            return Err(err(OpenMessageError::BadPeerAs {
                value: Box::new([]),
            }));
        }
        let peer_hold = open.hold_time();
        if peer_hold == 1 || peer_hold == 2 {
            return Err(err(OpenMessageError::UnacceptableHoldTime {
                value: Box::new([]),
            }));
        }
        let id = open.bgp_id();
        // Zero is never valid; an equal one only on internal sessions
        // (RFC 6286 §2.2).
        if id.is_unspecified() || (id == c.router_id && c.peer_asn == c.local_asn) {
            return Err(err(OpenMessageError::BadBgpIdentifier {
                value: Box::new([]),
            }));
        }
        let caps = open.capabilities();
        let mut peer_v4 = false;
        let mut peer_v6 = false;
        let mut any_mp = false;
        let mut asn4 = false;
        let mut gr = false;
        for cap in caps {
            match cap {
                BgpCapability::MultiProtocolExtensions(mp) => {
                    any_mp = true;
                    match mp.address_type() {
                        AddressType::Ipv4Unicast => peer_v4 = true,
                        AddressType::Ipv6Unicast => peer_v6 = true,
                        _ => {}
                    }
                }
                BgpCapability::FourOctetAs(_) => asn4 = true,
                BgpCapability::GracefulRestartCapability(_) => gr = true,
                _ => {}
            }
        }
        if !any_mp {
            peer_v4 = true;
        }
        let hold_time = c.hold_time.min(peer_hold);
        let keepalive_time = if hold_time == 0 {
            0
        } else if hold_time == c.hold_time && c.keepalive_time > 0 {
            c.keepalive_time.min(hold_time / 3).max(1)
        } else {
            (hold_time / 3).max(1)
        };
        Ok(Negotiated {
            hold_time,
            keepalive_time,
            asn4,
            ipv4: c.ipv4 && peer_v4,
            ipv6: c.ipv6 && peer_v6,
            peer_router_id: id,
            peer_graceful_restart: gr,
        })
    }
}

/// How long one TCP connection attempt may take before it is abandoned
/// and retried (the connect-retry timer in Connect state).
fn connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn cease(error: CeaseError) -> BgpNotificationMessage {
    BgpNotificationMessage::CeaseError(error)
}

/// Cease / Connection Collision Resolution (RFC 4486 §4, subcode 7).
fn cease_collision() -> BgpNotificationMessage {
    cease(CeaseError::ConnectionCollisionResolution {
        value: Box::new([]),
    })
}

fn disarm_all() -> [Action; 5] {
    [
        Action::Disarm(Timer::ConnectRetry),
        Action::Disarm(Timer::Hold(Conn::Outgoing)),
        Action::Disarm(Timer::Keepalive(Conn::Outgoing)),
        Action::Disarm(Timer::Hold(Conn::Incoming)),
        Action::Disarm(Timer::Keepalive(Conn::Incoming)),
    ]
}

fn arm_session_timers(conn: Conn, n: &Negotiated, out: &mut Vec<Action>) {
    if n.hold_time > 0 {
        out.push(Action::Arm(
            Timer::Hold(conn),
            Duration::from_secs(n.hold_time.into()),
        ));
        out.push(Action::Arm(
            Timer::Keepalive(conn),
            Duration::from_secs(n.keepalive_time.into()),
        ));
    } else {
        out.push(Action::Disarm(Timer::Hold(conn)));
        out.push(Action::Disarm(Timer::Keepalive(conn)));
    }
}

#[cfg(test)]
mod tests;
