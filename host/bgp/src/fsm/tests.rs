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
    }
}

/// The peer's OPEN; `caps` is given the peer's ASN for its 4-octet AS
/// capability.
fn peer_open(asn: u32, hold: u16, caps: fn(u32) -> Vec<BgpCapability>) -> Event {
    let caps = caps(asn);
    let two = u16::try_from(asn).unwrap_or(23456);
    Event::Message(BgpMessage::Open(BgpOpenMessage::new(
        two,
        hold,
        Ipv4Addr::new(192, 0, 2, 1),
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    )))
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
        Action::Send(BgpMessage::Notification(n)) => Some(crate::wire::notification_codes(n)),
        _ => None,
    })
}

/// A machine in OpenSent.
fn open_sent() -> Fsm {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    fsm.handle(Event::TcpConnected);
    assert_eq!(fsm.state(), State::OpenSent);
    fsm
}

fn established() -> Fsm {
    let mut fsm = open_sent();
    fsm.handle(peer_open(65001, 90, full_caps));
    fsm.handle(Event::Message(BgpMessage::KeepAlive));
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
        Event::TcpConnected,
        Event::HoldExpired,
        Event::KeepaliveExpired,
        Event::Message(BgpMessage::KeepAlive),
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
    let a = fsm.handle(Event::TcpConnected);
    assert_eq!(a[0], Action::Disarm(Timer::ConnectRetry));
    assert_eq!(a[1], Action::Send(fsm.open_message()));
    assert_eq!(a[2], Action::Arm(Timer::Hold, OPEN_HOLD_TIME));
    assert_eq!(fsm.state(), State::OpenSent);
}

#[test]
fn failed_connection_goes_active_with_growing_backoff_up_to_connect_retry() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    let mut waits = Vec::new();
    for _ in 0..6 {
        let a = fsm.handle(Event::TcpFailed);
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
    assert_eq!(a[0], Action::Disconnect);
    assert_eq!(a[1], Action::Connect);
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn good_open_negotiates_and_confirms() {
    let mut fsm = open_sent();
    let a = fsm.handle(peer_open(65001, 6, full_caps));
    assert_eq!(a[0], Action::Send(BgpMessage::KeepAlive));
    assert!(a.contains(&Action::Arm(Timer::Hold, Duration::from_secs(6))));
    assert!(a.contains(&Action::Arm(Timer::Keepalive, Duration::from_secs(2))));
    assert_eq!(fsm.state(), State::OpenConfirm);
    let n = fsm.negotiated().unwrap();
    assert_eq!((n.hold_time, n.keepalive_time), (6, 2));
    assert!(n.asn4 && n.ipv4 && n.ipv6);
    assert!(!n.peer_graceful_restart);
}

#[test]
fn our_smaller_hold_time_uses_our_keepalive() {
    let mut fsm = open_sent();
    fsm.handle(peer_open(65001, 90, full_caps));
    let n = fsm.negotiated().unwrap();
    assert_eq!((n.hold_time, n.keepalive_time), (9, 3));
}

#[test]
fn zero_hold_time_means_no_timers() {
    let mut fsm = open_sent();
    let a = fsm.handle(peer_open(65001, 0, full_caps));
    assert!(a.contains(&Action::Disarm(Timer::Hold)));
    assert!(a.contains(&Action::Disarm(Timer::Keepalive)));
    assert_eq!(fsm.negotiated().unwrap().keepalive_time, 0);
}

#[test]
fn peer_without_multiprotocol_capability_gets_ipv4_only_and_two_octet_paths() {
    let mut fsm = open_sent();
    fsm.handle(peer_open(65001, 90, |_| Vec::new()));
    let n = fsm.negotiated().unwrap();
    assert!(n.ipv4 && !n.ipv6 && !n.asn4);
}

#[test]
fn keepalive_in_open_confirm_establishes_and_resets_backoff() {
    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    fsm.handle(Event::TcpFailed);
    fsm.handle(Event::ConnectRetryExpired);
    fsm.handle(Event::TcpConnected);
    fsm.handle(peer_open(65001, 90, full_caps));
    assert!(fsm.backoff() > INITIAL_BACKOFF);
    let a = fsm.handle(Event::Message(BgpMessage::KeepAlive));
    assert_eq!(fsm.state(), State::Established);
    assert!(matches!(a.last(), Some(Action::Established(_))));
    assert_eq!(fsm.backoff(), INITIAL_BACKOFF);
}

#[test]
fn bad_opens_get_their_notifications() {
    let cases: [(Event, (u8, u8)); 4] = [
        (peer_open(65002, 90, full_caps), (2, 2)),
        (peer_open(65001, 2, full_caps), (2, 6)),
        (
            Event::Message(BgpMessage::Open(BgpOpenMessage::new(
                65001,
                90,
                Ipv4Addr::UNSPECIFIED,
                Vec::new(),
            ))),
            (2, 3),
        ),
        (Event::Message(BgpMessage::KeepAlive), (5, 1)),
    ];
    for (event, codes) in cases {
        let mut fsm = open_sent();
        let a = fsm.handle(event);
        assert_eq!(sent_notification(&a), Some(codes));
        assert!(a.contains(&Action::Disconnect));
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
    fsm.handle(Event::TcpConnected);
    let a = fsm.handle(peer_open(4_200_000_001, 90, full_caps));
    assert_eq!(sent_notification(&a), Some((2, 3)));

    let mut c = config();
    c.router_id = Ipv4Addr::new(192, 0, 2, 1);
    let mut fsm = Fsm::new(c);
    fsm.handle(Event::Start);
    fsm.handle(Event::TcpConnected);
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
        let a = fsm.handle(Event::HoldExpired);
        assert_eq!(sent_notification(&a), Some((4, 0)));
        assert!(a.contains(&Action::Down(Down::HoldTimerExpired)));
        assert_eq!(fsm.state(), State::Idle);
    }
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    let mut fsm = established();
    let a = fsm.handle(Event::KeepaliveExpired);
    assert_eq!(
        a,
        [
            Action::Send(BgpMessage::KeepAlive),
            Action::Arm(Timer::Keepalive, Duration::from_secs(3))
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
        let a = fsm.handle(Event::Message(m));
        assert_eq!(a, [Action::Arm(Timer::Hold, Duration::from_secs(9))]);
        assert_eq!(fsm.state(), State::Established);
    }
}

#[test]
fn route_refresh_asks_for_the_family_again() {
    let mut fsm = established();
    let a = fsm.handle(Event::Message(BgpMessage::RouteRefresh(
        BgpRouteRefreshMessage::new(
            AddressType::Ipv6Unicast,
            netgauze_bgp_pkt::iana::RouteRefreshSubcode::NormalRequest,
        ),
    )));
    assert!(a.contains(&Action::Refresh { ipv6: true }));
}

#[test]
fn notification_from_the_peer_drops_the_session_and_restarts_later() {
    let mut fsm = established();
    let a = fsm.handle(Event::Message(BgpMessage::Notification(
        BgpNotificationMessage::CeaseError(CeaseError::AdministrativeReset {
            value: Box::new([]),
        }),
    )));
    assert_eq!(a[0], Action::Disconnect);
    assert_eq!(a[1], Action::Down(Down::NotificationReceived(6, 4)));
    assert_eq!(fsm.state(), State::Idle);
    assert!(fsm.negotiated().is_none());
    fsm.handle(Event::ConnectRetryExpired);
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn connection_loss_when_established_restarts_later() {
    let mut fsm = established();
    let a = fsm.handle(Event::TcpFailed);
    assert!(a.contains(&Action::Down(Down::ConnectionLost)));
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn malformed_input_sends_the_given_notification() {
    let mut fsm = established();
    let a = fsm.handle(Event::Malformed(
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
    assert!(a.contains(&Action::Disconnect));
    assert!(a.contains(&Action::Down(Down::Stopped)));
    assert!(!a.iter().any(|x| matches!(x, Action::Arm(..))));
    assert_eq!(fsm.state(), State::Idle);

    let mut fsm = Fsm::new(config());
    fsm.handle(Event::Start);
    let a = fsm.handle(Event::Stop);
    assert_eq!(sent_notification(&a), None);
    assert!(a.contains(&Action::Disconnect));
}
