//! Every transition Herald uses, driven without IO.

use super::*;
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_iana::address_family::AddressType;

fn config() -> Config {
    Config {
        local_asn: Asn::new(4_200_000_001).unwrap(),
        peer_asn: Asn::new(65001).unwrap(),
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        hold_time: 9,
        keepalive_time: 3,
        connect_retry: Duration::from_secs(8),
        graceful_restart: Some(120),
        ipv4: true,
        ipv6: true,
        passive: false,
    }
}

const OUT: Conn = Conn::Outgoing;
const IN: Conn = Conn::Incoming;

/// The peer's OPEN on the outgoing connection; `caps` is given the peer's
/// ASN for its 4-octet AS capability.
fn peer_open(asn: u32, hold: u16, caps: fn(u32) -> Vec<BgpCapability>) -> Event {
    open_on(OUT, Ipv4Addr::new(192, 0, 2, 1), asn, hold, caps)
}

/// The peer's OPEN with identifier `id` on `conn`.
fn open_on(
    conn: Conn,
    id: Ipv4Addr,
    asn: u32,
    hold: u16,
    caps: fn(u32) -> Vec<BgpCapability>,
) -> Event {
    let caps = caps(asn);
    let two = u16::try_from(asn).unwrap_or(23456);
    Event::Message(
        conn,
        BgpMessage::Open(BgpOpenMessage::new(
            two,
            hold,
            id,
            vec![BgpOpenMessageParameter::new_capabilities(caps)],
        )),
    )
}

fn keepalive(conn: Conn) -> Event {
    Event::Message(conn, BgpMessage::KeepAlive)
}

fn full_caps(asn: u32) -> Vec<BgpCapability> {
    vec![
        BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
            AddressType::Ipv4Unicast,
        )),
        BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
            AddressType::Ipv6Unicast,
        )),
        BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn)),
    ]
}

fn sent_notification(actions: &[Action]) -> Option<(u8, u8)> {
    actions.iter().find_map(|a| match a {
        Action::Send(_, BgpMessage::Notification(n)) => Some(crate::wire::notification_codes(n)),
        _ => None,
    })
}

/// The NOTIFICATIONs sent, with their connections.
fn notifications(actions: &[Action]) -> Vec<(Conn, (u8, u8))> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(conn, BgpMessage::Notification(n)) => {
                Some((*conn, crate::wire::notification_codes(n)))
            }
            _ => None,
        })
        .collect()
}

fn refused(actions: &[Action]) -> Option<(u8, u8)> {
    actions.iter().find_map(|a| match a {
        Action::Refuse(n) => Some(crate::wire::notification_codes(n)),
        _ => None,
    })
}

fn downs(actions: &[Action]) -> Vec<&Down> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Down(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// A machine in OpenSent.
fn open_sent() -> Fsm {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    fsm.handle(Event::Connected);
    assert_eq!(fsm.state(), State::OpenSent);
    fsm
}

fn established() -> Fsm {
    let mut fsm = open_sent();
    fsm.handle(peer_open(65001, 90, full_caps));
    fsm.handle(keepalive(OUT));
    assert_eq!(fsm.state(), State::Established);
    fsm
}

#[test]
fn start_connects_and_arms_connect_retry() {
    let mut fsm = Fsm::new(config());
    assert_eq!(fsm.state(), State::Idle);
    let a = fsm.handle(Event::Start);
    assert_eq!(a[0], Action::Connect);
    assert!(matches!(a[1], Action::Arm(Timer::ConnectRetry, _)));
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn idle_ignores_everything_but_start_and_retry() {
    let mut fsm = Fsm::new(config());
    for e in [
        Event::Connected,
        Event::HoldExpired(OUT),
        Event::KeepaliveExpired(IN),
        keepalive(OUT),
        Event::TcpFailed(IN),
    ] {
        assert!(fsm.handle(e).is_empty());
        assert_eq!(fsm.state(), State::Idle);
    }
    fsm.handle(Event::ConnectRetryExpired);
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn connected_sends_open_and_waits_with_the_large_hold_timer() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    let a = fsm.handle(Event::Connected);
    assert_eq!(a[0], Action::Disarm(Timer::ConnectRetry));
    assert_eq!(a[1], Action::Send(OUT, fsm.open_message()));
    assert_eq!(a[2], Action::Arm(Timer::Hold(OUT), OPEN_HOLD_TIME));
    assert_eq!(fsm.state(), State::OpenSent);
}

#[test]
fn failed_connection_goes_active_with_growing_backoff_up_to_connect_retry() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    let mut waits = Vec::new();
    for _ in 0..6 {
        let a = fsm.handle(Event::TcpFailed(OUT));
        assert_eq!(fsm.state(), State::Active);
        let Some(Action::Arm(Timer::ConnectRetry, d)) = a.last() else {
            panic!("{a:?}")
        };
        waits.push(d.as_secs());
        let a = fsm.handle(Event::ConnectRetryExpired);
        assert!(a.contains(&Action::Connect));
        assert_eq!(fsm.state(), State::Connect);
    }
    assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
}

#[test]
fn connect_retry_expiry_in_connect_abandons_and_retries() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    let a = fsm.handle(Event::ConnectRetryExpired);
    assert_eq!(a[0], Action::Disconnect(OUT));
    assert_eq!(a[1], Action::Connect);
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn good_open_negotiates_and_confirms() {
    let mut fsm = open_sent();
    let a = fsm.handle(peer_open(65001, 6, full_caps));
    assert_eq!(a[0], Action::Send(OUT, BgpMessage::KeepAlive));
    assert!(a.contains(&Action::Arm(Timer::Hold(OUT), Duration::from_secs(6))));
    assert!(a.contains(&Action::Arm(Timer::Keepalive(OUT), Duration::from_secs(2))));
    assert_eq!(fsm.state(), State::OpenConfirm);
    let n = fsm.negotiated(OUT).unwrap();
    assert_eq!((n.hold_time, n.keepalive_time), (6, 2));
    assert!(n.asn4 && n.ipv4 && n.ipv6);
    assert!(!n.peer_graceful_restart);
}

#[test]
fn our_smaller_hold_time_uses_our_keepalive() {
    let mut fsm = open_sent();
    fsm.handle(peer_open(65001, 90, full_caps));
    let n = fsm.negotiated(OUT).unwrap();
    assert_eq!((n.hold_time, n.keepalive_time), (9, 3));
}

#[test]
fn zero_hold_time_means_no_timers() {
    let mut fsm = open_sent();
    let a = fsm.handle(peer_open(65001, 0, full_caps));
    assert!(a.contains(&Action::Disarm(Timer::Hold(OUT))));
    assert!(a.contains(&Action::Disarm(Timer::Keepalive(OUT))));
    assert_eq!(fsm.negotiated(OUT).unwrap().keepalive_time, 0);
}

#[test]
fn peer_without_multiprotocol_capability_gets_ipv4_only_and_two_octet_paths() {
    let mut fsm = open_sent();
    fsm.handle(peer_open(65001, 90, |_| Vec::new()));
    let n = fsm.negotiated(OUT).unwrap();
    assert!(n.ipv4 && !n.ipv6 && !n.asn4);
}

#[test]
fn keepalive_in_open_confirm_establishes_and_resets_backoff() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    fsm.handle(Event::TcpFailed(OUT));
    fsm.handle(Event::ConnectRetryExpired);
    fsm.handle(Event::Connected);
    fsm.handle(peer_open(65001, 90, full_caps));
    assert!(fsm.backoff() > INITIAL_BACKOFF);
    let a = fsm.handle(keepalive(OUT));
    assert_eq!(fsm.state(), State::Established);
    assert!(matches!(a.last(), Some(Action::Established(OUT, _))));
    assert_eq!(fsm.backoff(), INITIAL_BACKOFF);
}

#[test]
fn bad_opens_get_their_notifications() {
    let cases: [(Event, (u8, u8)); 4] = [
        (peer_open(65002, 90, full_caps), (2, 2)),
        (peer_open(65001, 2, full_caps), (2, 6)),
        (
            Event::Message(
                OUT,
                BgpMessage::Open(BgpOpenMessage::new(
                    65001,
                    90,
                    Ipv4Addr::UNSPECIFIED,
                    Vec::new(),
                )),
            ),
            (2, 3),
        ),
        (keepalive(OUT), (5, 1)),
    ];
    for (event, codes) in cases {
        let mut fsm = open_sent();
        let a = fsm.handle(event);
        assert_eq!(sent_notification(&a), Some(codes));
        assert!(a.contains(&Action::Disconnect(OUT)));
        assert!(a.contains(&Action::Down(Down::NotificationSent(codes.0, codes.1))));
        assert_eq!(fsm.state(), State::Idle);
        // Automatic restart after the backoff.
        assert!(a.contains(&Action::Arm(Timer::ConnectRetry, INITIAL_BACKOFF)));
    }
}

#[test]
fn same_identifier_is_refused_on_ibgp_only() {
    let mut c = config();
    c.peer_asn = c.local_asn;
    c.router_id = Ipv4Addr::new(192, 0, 2, 1);
    let mut fsm = Fsm::new(c);
    fsm.handle(Event::Start);
    fsm.handle(Event::Connected);
    let a = fsm.handle(peer_open(4_200_000_001, 90, full_caps));
    assert_eq!(sent_notification(&a), Some((2, 3)));

    let mut c = config();
    c.router_id = Ipv4Addr::new(192, 0, 2, 1);
    let mut fsm = Fsm::new(c);
    fsm.handle(Event::Start);
    fsm.handle(Event::Connected);
    fsm.handle(peer_open(65001, 90, full_caps));
    assert_eq!(fsm.state(), State::OpenConfirm);
}

#[test]
fn unexpected_messages_are_fsm_errors_with_the_state_subcode() {
    let mut fsm = open_sent();
    fsm.handle(peer_open(65001, 90, full_caps));
    let a = fsm.handle(peer_open(65001, 90, full_caps));
    assert_eq!(sent_notification(&a), Some((5, 2)));

    let mut fsm = established();
    let a = fsm.handle(peer_open(65001, 90, full_caps));
    assert_eq!(sent_notification(&a), Some((5, 3)));
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn hold_timer_expiry_sends_its_notification() {
    for mut fsm in [open_sent(), established()] {
        let a = fsm.handle(Event::HoldExpired(OUT));
        assert_eq!(sent_notification(&a), Some((4, 0)));
        assert!(a.contains(&Action::Down(Down::HoldTimerExpired)));
        assert_eq!(fsm.state(), State::Idle);
    }
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    let mut fsm = established();
    let a = fsm.handle(Event::KeepaliveExpired(OUT));
    assert_eq!(
        a,
        [
            Action::Send(OUT, BgpMessage::KeepAlive),
            Action::Arm(Timer::Keepalive(OUT), Duration::from_secs(3))
        ]
    );
}

#[test]
fn messages_in_established_restart_the_hold_timer() {
    let mut fsm = established();
    for m in [
        BgpMessage::KeepAlive,
        BgpMessage::Update(netgauze_bgp_pkt::update::BgpUpdateMessage::new(
            Vec::new(),
            Vec::new(),
            Vec::new(),
        )),
    ] {
        let a = fsm.handle(Event::Message(OUT, m));
        assert_eq!(a, [Action::Arm(Timer::Hold(OUT), Duration::from_secs(9))]);
        assert_eq!(fsm.state(), State::Established);
    }
}

#[test]
fn route_refresh_asks_for_the_family_again() {
    let mut fsm = established();
    let a = fsm.handle(Event::Message(
        OUT,
        BgpMessage::RouteRefresh(BgpRouteRefreshMessage::new(
            AddressType::Ipv6Unicast,
            netgauze_bgp_pkt::iana::RouteRefreshSubcode::NormalRequest,
        )),
    ));
    assert!(a.contains(&Action::Refresh { ipv6: true }));
}

#[test]
fn notification_from_the_peer_drops_the_session_and_restarts_later() {
    let mut fsm = established();
    let a = fsm.handle(Event::Message(
        OUT,
        BgpMessage::Notification(BgpNotificationMessage::CeaseError(
            CeaseError::AdministrativeReset {
                value: Box::new([]),
            },
        )),
    ));
    assert_eq!(a[0], Action::Disconnect(OUT));
    assert!(a.contains(&Action::Down(Down::NotificationReceived(6, 4))));
    assert_eq!(fsm.state(), State::Idle);
    assert!(fsm.negotiated(OUT).is_none());
    fsm.handle(Event::ConnectRetryExpired);
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn connection_loss_when_established_restarts_later() {
    let mut fsm = established();
    let a = fsm.handle(Event::TcpFailed(OUT));
    assert!(a.contains(&Action::Down(Down::ConnectionLost)));
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn malformed_input_sends_the_given_notification() {
    let mut fsm = established();
    let a = fsm.handle(Event::Malformed(
        OUT,
        BgpNotificationMessage::UpdateMessageError(
            netgauze_bgp_pkt::notification::UpdateMessageError::MalformedAttributeList {
                value: Box::new([]),
            },
        ),
    ));
    assert_eq!(sent_notification(&a), Some((3, 1)));
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn stop_sends_cease_when_a_session_is_up_and_stays_idle() {
    let mut fsm = established();
    let a = fsm.handle(Event::Stop);
    assert_eq!(sent_notification(&a), Some((6, 2)));
    assert!(a.contains(&Action::Disconnect(OUT)));
    assert!(a.contains(&Action::Down(Down::Stopped)));
    assert!(!a.iter().any(|x| matches!(x, Action::Arm(..))));
    assert_eq!(fsm.state(), State::Idle);

    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    let a = fsm.handle(Event::Stop);
    assert_eq!(sent_notification(&a), None);
    assert!(a.contains(&Action::Disconnect(OUT)));
}

// Passive sessions and the peer's connections (RFC 4271 §8.1.1, §6.8).

const PEER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Higher than ours (192.0.2.2).
const HIGH_PEER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

fn passive() -> Fsm {
    Fsm::new(Config {
        passive: true,
        ..config()
    })
}

/// Started, Herald's own connection up (OpenSent) and the peer's accepted
/// (OpenSent): the set-up of a collision.
fn both_open_sent(config: Config) -> Fsm {
    let mut fsm = Fsm::new(config);
    fsm.handle(Event::Start);
    fsm.handle(Event::Connected);
    let a = fsm.handle(Event::PeerConnected);
    assert!(a.contains(&Action::Accept), "{a:?}");
    assert_eq!(fsm.state(), State::OpenSent);
    fsm
}

#[test]
fn passive_session_waits_in_active_and_never_connects() {
    let mut fsm = passive();
    let mut all = fsm.handle(Event::Start);
    assert!(all.is_empty(), "{all:?}");
    assert_eq!(fsm.state(), State::Active);
    all.extend(fsm.handle(Event::ConnectRetryExpired));
    assert_eq!(fsm.state(), State::Active);

    let a = fsm.handle(Event::PeerConnected);
    assert_eq!(
        a,
        [
            Action::Disarm(Timer::ConnectRetry),
            Action::Accept,
            Action::Send(IN, fsm.open_message()),
            Action::Arm(Timer::Hold(IN), OPEN_HOLD_TIME),
        ]
    );
    all.extend(a);
    assert_eq!(fsm.state(), State::OpenSent);
    all.extend(fsm.handle(open_on(IN, PEER_ID, 65001, 90, full_caps)));
    let a = fsm.handle(keepalive(IN));
    assert!(
        matches!(a.last(), Some(Action::Established(IN, _))),
        "{a:?}"
    );
    all.extend(a);

    // The peer goes away: Idle for the backoff, then Active again.
    let a = fsm.handle(Event::TcpFailed(IN));
    assert!(a.contains(&Action::Down(Down::ConnectionLost)));
    assert!(a.contains(&Action::Arm(Timer::ConnectRetry, INITIAL_BACKOFF)));
    all.extend(a);
    assert_eq!(fsm.state(), State::Idle);
    all.extend(fsm.handle(Event::ConnectRetryExpired));
    assert_eq!(fsm.state(), State::Active);
    all.extend(fsm.handle(Event::ConnectRetryExpired));
    assert_eq!(fsm.state(), State::Active);
    assert!(!all.contains(&Action::Connect), "{all:?}");
}

#[test]
fn active_session_accepts_the_peers_connection_while_waiting_to_retry() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    fsm.handle(Event::TcpFailed(OUT));
    assert_eq!(fsm.state(), State::Active);
    let a = fsm.handle(Event::PeerConnected);
    assert_eq!(a[0], Action::Disarm(Timer::ConnectRetry));
    assert_eq!(a[1], Action::Accept);
    assert_eq!(fsm.state(), State::OpenSent);
    // The retry timer was disarmed; a stale expiry starts nothing.
    assert!(fsm.handle(Event::ConnectRetryExpired).is_empty());
    fsm.handle(open_on(IN, PEER_ID, 65001, 90, full_caps));
    let a = fsm.handle(keepalive(IN));
    assert!(
        matches!(a.last(), Some(Action::Established(IN, _))),
        "{a:?}"
    );
    assert_eq!(fsm.backoff(), INITIAL_BACKOFF);
}

#[test]
fn an_open_on_the_peers_connection_abandons_our_attempt_in_connect() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    let a = fsm.handle(Event::PeerConnected);
    assert!(a.contains(&Action::Accept));
    // Our attempt still runs, bounded by its timer.
    assert!(!a.contains(&Action::Disarm(Timer::ConnectRetry)));
    assert_eq!(fsm.state(), State::OpenSent);
    let a = fsm.handle(open_on(IN, PEER_ID, 65001, 90, full_caps));
    assert_eq!(
        a[..2],
        [Action::Disconnect(OUT), Action::Disarm(Timer::ConnectRetry)]
    );
    assert!(a.contains(&Action::Send(IN, BgpMessage::KeepAlive)));
    assert_eq!(fsm.state(), State::OpenConfirm);
    // The abandoned attempt's late result changes nothing.
    assert!(fsm.handle(Event::Connected).is_empty());
    assert!(fsm.handle(Event::TcpFailed(OUT)).is_empty());
}

#[test]
fn collision_with_our_higher_identifier_keeps_our_connection() {
    // Ours is 192.0.2.2, the peer's 192.0.2.1: whichever OPEN comes first,
    // the incoming connection is closed with Cease / Collision Resolution.
    for first in [OUT, IN] {
        let mut fsm = both_open_sent(config());
        fsm.handle(open_on(first, PEER_ID, 65001, 90, full_caps));
        assert_eq!(fsm.state(), State::OpenConfirm);
        let a = fsm.handle(open_on(first.other(), PEER_ID, 65001, 90, full_caps));
        assert_eq!(notifications(&a), [(IN, (6, 7))], "first {first}: {a:?}");
        assert!(a.contains(&Action::Disconnect(IN)));
        assert!(downs(&a).is_empty(), "a collision is no session failure");
        assert_eq!(fsm.state(), State::OpenConfirm);
        assert!(fsm.negotiated(OUT).is_some());
        assert!(fsm.negotiated(IN).is_none());
        if first == IN {
            // Our connection's OPEN came second: it goes on to OpenConfirm.
            assert!(a.contains(&Action::Send(OUT, BgpMessage::KeepAlive)));
        }
        let a = fsm.handle(keepalive(OUT));
        assert!(
            matches!(a.last(), Some(Action::Established(OUT, _))),
            "{a:?}"
        );
    }
}

#[test]
fn collision_with_the_peers_higher_identifier_keeps_its_connection() {
    for first in [OUT, IN] {
        let mut fsm = both_open_sent(config());
        fsm.handle(open_on(first, HIGH_PEER_ID, 65001, 90, full_caps));
        let a = fsm.handle(open_on(first.other(), HIGH_PEER_ID, 65001, 90, full_caps));
        assert_eq!(notifications(&a), [(OUT, (6, 7))], "first {first}: {a:?}");
        assert!(a.contains(&Action::Disconnect(OUT)));
        assert!(downs(&a).is_empty());
        assert!(fsm.negotiated(OUT).is_none());
        assert!(fsm.negotiated(IN).is_some());
        let a = fsm.handle(keepalive(IN));
        assert!(
            matches!(a.last(), Some(Action::Established(IN, _))),
            "{a:?}"
        );
        assert_eq!(fsm.state(), State::Established);
    }
}

#[test]
fn collision_with_equal_identifiers_keeps_the_higher_asns_connection() {
    // eBGP may use equal identifiers (RFC 6286 §2.2); then the higher ASN
    // wins (§2.3). Ours is 4200000001, the peer's 65001.
    let ours = Ipv4Addr::new(192, 0, 2, 2);
    let mut fsm = both_open_sent(config());
    fsm.handle(open_on(OUT, ours, 65001, 90, full_caps));
    let a = fsm.handle(open_on(IN, ours, 65001, 90, full_caps));
    assert_eq!(notifications(&a), [(IN, (6, 7))]);

    let mut fsm = both_open_sent(Config {
        local_asn: Asn::new(64500).unwrap(),
        ..config()
    });
    fsm.handle(open_on(OUT, ours, 65001, 90, full_caps));
    let a = fsm.handle(open_on(IN, ours, 65001, 90, full_caps));
    assert_eq!(notifications(&a), [(OUT, (6, 7))]);
}

#[test]
fn peer_connection_while_established_is_refused_with_collision_resolution() {
    let mut fsm = established();
    let a = fsm.handle(Event::PeerConnected);
    assert_eq!(refused(&a), Some((6, 7)));
    assert!(!a.contains(&Action::Accept));
    assert_eq!(fsm.state(), State::Established);
    assert!(fsm.negotiated(OUT).is_some());
}

#[test]
fn open_on_the_other_connection_after_establishment_closes_that_one() {
    let mut fsm = both_open_sent(config());
    fsm.handle(open_on(OUT, HIGH_PEER_ID, 65001, 90, full_caps));
    fsm.handle(keepalive(OUT));
    assert_eq!(fsm.state(), State::Established);
    // Even though the peer's identifier is higher, the Established
    // connection stays (§6.8).
    let a = fsm.handle(open_on(IN, HIGH_PEER_ID, 65001, 90, full_caps));
    assert_eq!(notifications(&a), [(IN, (6, 7))]);
    assert!(downs(&a).is_empty());
    assert_eq!(fsm.state(), State::Established);
}

#[test]
fn peer_connection_in_idle_is_rejected() {
    let mut fsm = Fsm::new(config());
    assert_eq!(refused(&fsm.handle(Event::PeerConnected)), Some((6, 5)));
    // Also during the backoff after a failure.
    let mut fsm = established();
    fsm.handle(Event::TcpFailed(OUT));
    assert_eq!(fsm.state(), State::Idle);
    let a = fsm.handle(Event::PeerConnected);
    assert_eq!(refused(&a), Some((6, 5)));
    assert!(!a.contains(&Action::Accept));
}

#[test]
fn a_new_peer_connection_replaces_the_earlier_one() {
    let mut fsm = passive();
    fsm.handle(Event::Start);
    fsm.handle(Event::PeerConnected);
    let a = fsm.handle(Event::PeerConnected);
    let accept = a.iter().position(|x| *x == Action::Accept).unwrap();
    let close = a.iter().position(|x| *x == Action::Disconnect(IN)).unwrap();
    assert!(close < accept, "the old one is closed first: {a:?}");
    assert_eq!(notifications(&a), [(IN, (6, 7))]);
    assert!(a.contains(&Action::Send(IN, fsm.open_message())));
    assert!(downs(&a).is_empty());
    assert_eq!(fsm.state(), State::OpenSent);
}

#[test]
fn failure_of_one_connection_leaves_the_other_running() {
    let mut fsm = both_open_sent(config());
    let a = fsm.handle(Event::TcpFailed(OUT));
    assert_eq!(
        a,
        [
            Action::Disconnect(OUT),
            Action::Disarm(Timer::Hold(OUT)),
            Action::Disarm(Timer::Keepalive(OUT)),
        ]
    );
    assert_eq!(fsm.state(), State::OpenSent);
    let a = fsm.handle(Event::HoldExpired(IN));
    assert_eq!(sent_notification(&a), Some((4, 0)));
    assert_eq!(downs(&a), [&Down::HoldTimerExpired]);
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn failed_attempt_with_the_peers_connection_up_does_not_retry() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    fsm.handle(Event::PeerConnected);
    let a = fsm.handle(Event::TcpFailed(OUT));
    assert_eq!(
        a,
        [Action::Disconnect(OUT), Action::Disarm(Timer::ConnectRetry)]
    );
    assert_eq!(fsm.backoff(), INITIAL_BACKOFF);
    assert_eq!(fsm.state(), State::OpenSent);
}

#[test]
fn losing_the_established_connection_is_a_session_down_even_with_another() {
    let mut fsm = both_open_sent(config());
    fsm.handle(open_on(OUT, PEER_ID, 65001, 90, full_caps));
    fsm.handle(keepalive(OUT));
    let a = fsm.handle(Event::TcpFailed(OUT));
    assert_eq!(downs(&a), [&Down::ConnectionLost]);
    // The peer's connection carries on.
    assert_eq!(fsm.state(), State::OpenSent);
    fsm.handle(open_on(IN, PEER_ID, 65001, 90, full_caps));
    let a = fsm.handle(keepalive(IN));
    assert!(
        matches!(a.last(), Some(Action::Established(IN, _))),
        "{a:?}"
    );
}

#[test]
fn stop_ceases_on_both_connections() {
    let mut fsm = both_open_sent(config());
    let a = fsm.handle(Event::Stop);
    assert_eq!(notifications(&a), [(OUT, (6, 2)), (IN, (6, 2))]);
    assert!(a.contains(&Action::Disconnect(OUT)) && a.contains(&Action::Disconnect(IN)));
    assert_eq!(downs(&a), [&Down::Stopped]);
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn keepalives_and_messages_go_to_their_own_connection() {
    let mut fsm = both_open_sent(config());
    fsm.handle(open_on(IN, HIGH_PEER_ID, 65001, 6, full_caps));
    // The outgoing connection has no session timers yet.
    assert!(fsm.handle(Event::KeepaliveExpired(OUT)).is_empty());
    assert_eq!(
        fsm.handle(Event::KeepaliveExpired(IN)),
        [
            Action::Send(IN, BgpMessage::KeepAlive),
            Action::Arm(Timer::Keepalive(IN), Duration::from_secs(2))
        ]
    );
    // A KEEPALIVE on the connection still in OpenSent is an FSM error
    // there only.
    let a = fsm.handle(keepalive(OUT));
    assert_eq!(notifications(&a), [(OUT, (5, 1))]);
    assert_eq!(fsm.state(), State::OpenConfirm);
}

#[test]
fn bfd_down_closes_every_connection_with_cease_bfd_down_and_holds_the_session_idle() {
    // RFC 5882 §4.3 and RFC 9384 (Cease subcode 10, BFD Down).
    let mut fsm = established();
    let a = fsm.handle(Event::PathDown);
    assert_eq!(notifications(&a), [(OUT, (6, 10))]);
    assert_eq!(downs(&a), [&Down::PathDown]);
    fsm.handle(Event::PathUp);
    // Both connections in OpenSent: both are closed.
    fsm.handle(Event::Connected);
    fsm.handle(Event::PeerConnected);
    assert_eq!(fsm.state(), State::OpenSent);
    let a = fsm.handle(Event::PathDown);
    assert_eq!(notifications(&a), [(OUT, (6, 10)), (IN, (6, 10))]);
    assert!(a.contains(&Action::Disconnect(OUT)) && a.contains(&Action::Disconnect(IN)));
    assert_eq!(downs(&a), [&Down::PathDown]);
    assert!(
        a.contains(&Action::Disarm(Timer::ConnectRetry)),
        "no automatic start while BFD holds the session: {a:?}"
    );
    assert_eq!(fsm.state(), State::Idle);
    // Held: the peer's connection is refused, a stray retry starts nothing,
    // a second PathDown does nothing.
    let a = fsm.handle(Event::PeerConnected);
    assert_eq!(refused(&a), Some((6, 5)), "Cease / Connection Rejected");
    assert!(fsm.handle(Event::ConnectRetryExpired).is_empty());
    assert!(fsm.handle(Event::PathDown).is_empty());
    assert_eq!(fsm.state(), State::Idle);
    // BFD Up: connect at once.
    let a = fsm.handle(Event::PathUp);
    assert_eq!(a[0], Action::Connect);
    assert_eq!(fsm.state(), State::Connect);
    assert_eq!(fsm.backoff(), INITIAL_BACKOFF);
}

#[test]
fn bgp_does_not_start_over_a_path_bfd_says_is_down() {
    let mut fsm = Fsm::new(config());
    assert!(
        fsm.handle(Event::PathDown).is_empty(),
        "nothing was running"
    );
    assert!(fsm.handle(Event::Start).is_empty());
    assert_eq!(fsm.state(), State::Idle);
    let a = fsm.handle(Event::PathUp);
    assert_eq!(a[0], Action::Connect);
    // A path coming up for a stopped session starts nothing.
    fsm.handle(Event::Stop);
    fsm.handle(Event::PathDown);
    assert!(fsm.handle(Event::PathUp).is_empty());
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn bfd_down_during_an_attempt_abandons_it_without_a_notification() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    assert_eq!(fsm.state(), State::Connect);
    let a = fsm.handle(Event::PathDown);
    assert!(notifications(&a).is_empty(), "no OPEN went out: {a:?}");
    assert!(a.contains(&Action::Disconnect(OUT)));
    assert_eq!(downs(&a), [&Down::PathDown]);
    assert_eq!(fsm.state(), State::Idle);
}
