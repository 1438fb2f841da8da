//! The session state machine of RFC 4271 §8, sans IO: [`Event`]s in,
//! [`Action`]s out. It never touches a socket or a clock; the driver
//! (`session.rs`) turns actions into TCP connections, writes and timers, and
//! the unit tests below drive every transition Herald uses directly.
//!
//! Differences from the RFC's optional-attribute menu, chosen for a speaker
//! that only originates routes:
//! - Automatic start after an error with backoff (§8.1.1
//!   `AllowAutomaticStart` and `DampPeerOscillations`): after a failure the
//!   session waits in Idle for the current backoff, then connects again.
//!   The backoff starts at [`INITIAL_BACKOFF`], doubles on every failure up
//!   to the configured connect-retry time and resets once Established.
//! - The connect-retry timer bounds each connection attempt (Connect and
//!   Active states) with the same backoff.
//! - Herald only connects (it does not accept connections), so connection
//!   collisions (§6.8) cannot arise and Active just waits for the next
//!   attempt.

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

/// The session states (RFC 4271 §8.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Refuses connections; waits for a start (or the backoff).
    Idle,
    /// Connecting.
    Connect,
    /// The last attempt failed; waits for the connect-retry timer.
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

/// The timers the machine arms (RFC 4271 §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer, also the Idle backoff before an automatic start.
    ConnectRetry,
    /// HoldTimer.
    Hold,
    /// KeepaliveTimer.
    Keepalive,
}

/// What happens to a session.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// ManualStart (Event 1).
    Start,
    /// ManualStop (Event 2): send a Cease and stay down.
    Stop,
    /// The connect-retry (or backoff) timer fired (Event 9).
    ConnectRetryExpired,
    /// The hold timer fired (Event 10).
    HoldExpired,
    /// The keepalive timer fired (Event 11).
    KeepaliveExpired,
    /// The TCP connection is up (Events 16/17).
    TcpConnected,
    /// The TCP connection failed or was closed (Event 18).
    TcpFailed,
    /// A well-formed message arrived (Events 19–28).
    Message(BgpMessage),
    /// A malformed message arrived; the NOTIFICATION to send (Events
    /// 21/22/28).
    Malformed(BgpNotificationMessage),
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Close the TCP connection (after sending what came before).
    Disconnect,
    /// Send a message.
    Send(BgpMessage),
    /// (Re)arm a timer.
    Arm(Timer, Duration),
    /// Stop a timer.
    Disarm(Timer),
    /// The session is Established with these parameters: send the RIB-out
    /// and End-of-RIB.
    Established(Negotiated),
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

/// One session's state machine.
#[derive(Debug)]
pub struct Fsm {
    config: Config,
    state: State,
    backoff: Duration,
    negotiated: Option<Negotiated>,
}

impl Fsm {
    /// A machine in Idle.
    pub fn new(config: Config) -> Fsm {
        Fsm {
            config,
            state: State::Idle,
            backoff: INITIAL_BACKOFF,
            negotiated: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What was negotiated, once OPENs were exchanged.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
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
        use State::*;
        let mut out = Vec::new();
        match (self.state, event) {
            (_, Event::Stop) => {
                if matches!(self.state, OpenSent | OpenConfirm | Established) {
                    // Cease / Administrative Shutdown (RFC 4486 §4).
                    out.push(Action::Send(BgpMessage::Notification(
                        BgpNotificationMessage::CeaseError(CeaseError::AdministrativeShutdown {
                            value: Box::new([]),
                        }),
                    )));
                }
                if self.state != Idle {
                    out.push(Action::Disconnect);
                }
                out.extend(disarm_all());
                out.push(Action::Down(Down::Stopped));
                self.state = Idle;
                self.negotiated = None;
            }
            (Idle, Event::Start | Event::ConnectRetryExpired) => self.connect(&mut out),
            (Idle, _) => {}
            (Connect | Active, Event::TcpConnected) => {
                out.push(Action::Disarm(Timer::ConnectRetry));
                out.push(Action::Send(self.open_message()));
                out.push(Action::Arm(Timer::Hold, OPEN_HOLD_TIME));
                self.state = OpenSent;
            }
            (Connect, Event::TcpFailed) => {
                // §8.2.2 Connect, Event 18: to Active, connect-retry armed.
                out.push(Action::Disconnect);
                out.push(Action::Arm(Timer::ConnectRetry, self.backoff));
                self.grow_backoff();
                self.state = Active;
            }
            (Connect | Active, Event::ConnectRetryExpired) => {
                out.push(Action::Disconnect);
                self.connect(&mut out);
            }
            (Connect | Active, _) => {}
            (OpenSent, Event::Message(BgpMessage::Open(open))) => match self.check_open(&open) {
                Ok(negotiated) => {
                    out.push(Action::Send(BgpMessage::KeepAlive));
                    arm_session_timers(&negotiated, &mut out);
                    self.negotiated = Some(negotiated);
                    self.state = OpenConfirm;
                }
                Err(notification) => self.fail_with(notification, &mut out),
            },
            (OpenSent | OpenConfirm | Established, Event::TcpFailed) => {
                out.push(Action::Disconnect);
                out.push(Action::Down(Down::ConnectionLost));
                self.go_idle(&mut out);
            }
            (OpenSent | OpenConfirm | Established, Event::HoldExpired) => {
                out.push(Action::Send(BgpMessage::Notification(
                    BgpNotificationMessage::HoldTimerExpiredError(
                        HoldTimerExpiredError::Unspecific {
                            sub_code: 0,
                            value: Box::new([]),
                        },
                    ),
                )));
                out.push(Action::Disconnect);
                out.push(Action::Down(Down::HoldTimerExpired));
                self.go_idle(&mut out);
            }
            (OpenSent | OpenConfirm | Established, Event::Malformed(n)) => {
                self.fail_with(n, &mut out);
            }
            (_, Event::Message(BgpMessage::Notification(n))) => {
                let (code, subcode) = crate::wire::notification_codes(&n);
                out.push(Action::Disconnect);
                out.push(Action::Down(Down::NotificationReceived(code, subcode)));
                self.go_idle(&mut out);
            }
            (OpenConfirm | Established, Event::KeepaliveExpired) => {
                out.push(Action::Send(BgpMessage::KeepAlive));
                if let Some(n) = &self.negotiated {
                    out.push(Action::Arm(
                        Timer::Keepalive,
                        Duration::from_secs(n.keepalive_time.into()),
                    ));
                }
            }
            (OpenConfirm, Event::Message(BgpMessage::KeepAlive)) => {
                self.restart_hold(&mut out);
                self.backoff = INITIAL_BACKOFF;
                self.state = Established;
                if let Some(n) = &self.negotiated {
                    out.push(Action::Established(n.clone()));
                }
            }
            (Established, Event::Message(BgpMessage::KeepAlive | BgpMessage::Update(_))) => {
                // Herald originates routes and imports none: an UPDATE only
                // proves the peer alive (§8.2.2 Established, Event 27).
                self.restart_hold(&mut out);
            }
            (Established, Event::Message(BgpMessage::RouteRefresh(r))) => {
                self.restart_hold(&mut out);
                match r.address_type() {
                    AddressType::Ipv4Unicast => out.push(Action::Refresh { ipv6: false }),
                    AddressType::Ipv6Unicast => out.push(Action::Refresh { ipv6: true }),
                    // A family we never offered: nothing to resend.
                    _ => {}
                }
            }
            (state @ (OpenSent | OpenConfirm | Established), _) => {
                // Any other event is an FSM error (§8.2.2, RFC 6608 subcodes).
                let value = Box::new([]);
                let error = match state {
                    OpenSent => {
                        FiniteStateMachineError::ReceiveUnexpectedMessageInOpenSentState { value }
                    }
                    OpenConfirm => {
                        FiniteStateMachineError::ReceiveUnexpectedMessageInOpenConfirmState {
                            value,
                        }
                    }
                    _ => FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState {
                        value,
                    },
                };
                self.fail_with(
                    BgpNotificationMessage::FiniteStateMachineError(error),
                    &mut out,
                );
            }
        }
        out
    }

    fn connect(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Connect);
        out.push(Action::Arm(
            Timer::ConnectRetry,
            self.backoff.max(connect_timeout()),
        ));
        self.state = State::Connect;
    }

    fn grow_backoff(&mut self) {
        self.backoff = (self.backoff * 2).min(self.config.connect_retry.max(INITIAL_BACKOFF));
    }

    /// Idle, to start again after the backoff (automatic start).
    fn go_idle(&mut self, out: &mut Vec<Action>) {
        out.extend(disarm_all());
        out.push(Action::Arm(Timer::ConnectRetry, self.backoff));
        self.grow_backoff();
        self.negotiated = None;
        self.state = State::Idle;
    }

    fn fail_with(&mut self, notification: BgpNotificationMessage, out: &mut Vec<Action>) {
        let (code, subcode) = crate::wire::notification_codes(&notification);
        out.push(Action::Send(BgpMessage::Notification(notification)));
        out.push(Action::Disconnect);
        out.push(Action::Down(Down::NotificationSent(code, subcode)));
        self.go_idle(out);
    }

    fn restart_hold(&self, out: &mut Vec<Action>) {
        if let Some(n) = &self.negotiated
            && n.hold_time > 0
        {
            out.push(Action::Arm(
                Timer::Hold,
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

fn disarm_all() -> [Action; 3] {
    [
        Action::Disarm(Timer::ConnectRetry),
        Action::Disarm(Timer::Hold),
        Action::Disarm(Timer::Keepalive),
    ]
}

fn arm_session_timers(n: &Negotiated, out: &mut Vec<Action>) {
    if n.hold_time > 0 {
        out.push(Action::Arm(
            Timer::Hold,
            Duration::from_secs(n.hold_time.into()),
        ));
        out.push(Action::Arm(
            Timer::Keepalive,
            Duration::from_secs(n.keepalive_time.into()),
        ));
    } else {
        out.push(Action::Disarm(Timer::Hold));
        out.push(Action::Disarm(Timer::Keepalive));
    }
}

#[cfg(test)]
mod tests;
