//! Herald's BFD against FRR's bfdd (8.4) in network namespaces: the
//! session comes Up over IPv4 and IPv6 single hop and multihop with the
//! timers negotiated; malformed, truncated, wrong-TTL, wrong-source,
//! wrong-discriminator and authenticated packets are dropped and counted
//! while the session stays Up; and bfdd detects a hung node within its
//! detection time.
//!
//! Needs root, FRR and nft (scripts/test.sh installs them).

mod lab;

use std::time::{Duration, Instant};

use herald_bfd::packet::{Diag, Packet, encode};
use herald_bfd::{Dropped, Hop, State};
use herald_netns::wait_for;
use lab::{Lab, NODE_V4, NODE_V6, ROUTER_V4, ROUTER_V6, UP_WITHIN, wait_state};

fn frr_conf(peers: &str) -> String {
    format!(
        "hostname r\n\
         bfd\n\
         {peers}\
         !\n"
    )
}

fn peer(addr: &str, local: &str, extra: &str) -> String {
    format!(
        " peer {addr} local-address {local}{extra}\n\
        \x20 receive-interval 100\n\
        \x20 transmit-interval 100\n\
        \x20 detect-multiplier 3\n\
        \x20 no shutdown\n\
        !\n"
    )
}

fn wait_frr(lab: &Lab, peer: &str, status: &str, within: Duration) -> Duration {
    let start = Instant::now();
    wait_for(
        &format!("FRR's BFD peer {peer} to be {status}"),
        within,
        Duration::from_millis(5),
        || (lab.frr_status(peer).as_deref() == Some(status)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.vtysh("show bfd peers")));
    start.elapsed()
}

#[test]
fn comes_up_with_frr_over_ipv4_and_ipv6_and_frr_detects_a_hung_node() {
    let lab = Lab::new();
    let _frr = lab.frr(&frr_conf(&format!(
        "{}{}",
        peer(NODE_V4, ROUTER_V4, " interface eth0"),
        peer(NODE_V6, ROUTER_V6, " interface eth0"),
    )));
    let v4 = lab.session(NODE_V4, ROUTER_V4, Hop::Single);
    let v6 = lab.session(NODE_V6, ROUTER_V6, Hop::Single);
    wait_state(&v4, State::Up, UP_WITHIN);
    wait_state(&v6, State::Up, UP_WITHIN);
    wait_frr(&lab, NODE_V4, "up", UP_WITHIN);
    wait_frr(&lab, NODE_V6, "up", UP_WITHIN);
    // The poll/final after Up settles FRR on 100 ms × 3 from Herald.
    let detail = lab.vtysh(&format!("show bfd peer {NODE_V4}"));
    for wanted in [
        "Detect-multiplier: 3",
        "Receive interval: 100ms",
        "Transmission interval: 100ms",
    ] {
        assert!(
            detail.matches(wanted).count() == 2,
            "FRR's local and remote timers should both show {wanted:?}:\n{detail}"
        );
    }
    assert_eq!(v4.dropped(), Dropped::default(), "FRR's packets all pass");

    // A hung node: all its packets dropped. FRR's detection time is
    // Herald's multiplier 3 × max(FRR's RX 100, Herald's TX 100) = 300 ms.
    lab.hang(&lab.node);
    let hung = Instant::now();
    wait_frr(&lab, NODE_V4, "down", Duration::from_secs(5));
    let frr_saw = hung.elapsed();
    // Herald detects the router's silence the same way.
    wait_state(&v4, State::Down, Duration::from_secs(5));
    let herald_saw = hung.elapsed();
    eprintln!(
        "FRR saw the hung node after {frr_saw:?}; Herald saw FRR's silence after {herald_saw:?}"
    );
    assert!(
        frr_saw < Duration::from_millis(300 + 400),
        "FRR should detect the hung node within 300 ms plus a small bound, took {frr_saw:?}"
    );
    assert!(
        herald_saw < Duration::from_millis(300 + 400),
        "Herald should detect FRR's silence within 300 ms plus a small bound, took {herald_saw:?}"
    );
}

#[test]
fn comes_up_multihop_with_frr() {
    let lab = Lab::new();
    let _frr = lab.frr(&frr_conf(&peer(NODE_V4, ROUTER_V4, " multihop")));
    let session = lab.session(NODE_V4, ROUTER_V4, Hop::Multi { min_ttl: 254 });
    wait_state(&session, State::Up, UP_WITHIN);
    wait_frr(&lab, NODE_V4, "up", UP_WITHIN);
}

#[test]
fn bad_packets_are_dropped_and_counted_and_the_session_stays_up() {
    let lab = Lab::new();
    let _frr = lab.frr(&frr_conf(&peer(NODE_V4, ROUTER_V4, " interface eth0")));
    let session = lab.session(NODE_V4, ROUTER_V4, Hop::Single);
    wait_state(&session, State::Up, UP_WITHIN);
    wait_frr(&lab, NODE_V4, "up", UP_WITHIN);
    let mut state = session.state();
    state.mark_unchanged();

    // What a valid packet from the router would be, had it the right
    // TTL and discriminators: Down with Your Discriminator 0 — which,
    // accepted, would take Herald's Up session Down (RFC 5880 §6.8.6).
    let down = Packet {
        diag: Diag::NONE,
        state: herald_bfd::State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 0xdead_beef,
        your_discriminator: 0,
        desired_min_tx: 1_000_000,
        required_min_rx: 1_000_000,
        required_min_echo_rx: 0,
    };
    let to = format!("{NODE_V4}:3784");
    let ok_ttl = lab::sender(&lab.router, ROUTER_V4.parse().unwrap(), 255);
    let low_ttl = lab::sender(&lab.router, ROUTER_V4.parse().unwrap(), 254);
    lab.router
        .ip(&["addr", "add", "192.0.2.3/24", "dev", "eth0"])
        .unwrap();
    let stranger = lab::sender(&lab.router, "192.0.2.3".parse().unwrap(), 255);

    // From an address that is not the peer's: addressed to this session
    // (counted against it), and with Your Discriminator 0 (no session has
    // this peer: counted by the shared receiver).
    let addressed = Packet {
        your_discriminator: session.local_discriminator(),
        ..down
    };
    stranger.send_to(&encode(&addressed), &to).unwrap();
    stranger.send_to(&encode(&down), &to).unwrap();

    // Wrong TTL (RFC 5881 §5): a packet that would otherwise pass.
    low_ttl.send_to(&encode(&down), &to).unwrap();
    // Malformed: truncated, version 0, Detect Mult 0, Length beyond the
    // datagram, Multipoint, Your Discriminator 0 while Up.
    let good = encode(&down);
    let mut malformed: Vec<Vec<u8>> = vec![good[..20].to_vec()];
    for (at, value) in [(0, 0x00), (2, 0), (3, 40), (1, 0x41), (1, 0xc0)] {
        let mut b = good.to_vec();
        b[at] = value;
        malformed.push(b);
    }
    for m in &malformed {
        ok_ttl.send_to(m, &to).unwrap();
    }
    // Authenticated: Simple Password, key id 1, "secret".
    let mut auth = good.to_vec();
    auth[1] |= 0x04;
    auth.extend_from_slice(&[1, 9, 1]);
    auth.extend_from_slice(b"secret");
    auth[3] = u8::try_from(auth.len()).unwrap();
    ok_ttl.send_to(&auth, &to).unwrap();
    // Wrong discriminator: Up, addressed to a session that is not this one.
    let wrong = Packet {
        state: herald_bfd::State::Up,
        your_discriminator: session.local_discriminator().wrapping_add(1).max(1),
        ..down
    };
    ok_ttl.send_to(&encode(&wrong), &to).unwrap();

    let expected = Dropped {
        malformed: 6,
        authenticated: 1,
        ttl: 1,
        wrong_source: 1,
        wrong_discriminator: 1,
        admin_down: 0,
    };
    wait_for(
        "the bad packets to be counted",
        Duration::from_secs(5),
        Duration::from_millis(5),
        || (session.dropped() == expected).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", session.dropped()));
    assert_eq!(lab.receivers.unmatched(), 1, "the stranger's other packet");
    // Still Up on both sides, no flap in between, a few detection times later.
    // An observation window, not a synchronisation: more than three
    // detection times in which the session must not flap.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !state.has_changed().unwrap(),
        "Herald's session never left Up: now {:?}",
        *state.borrow()
    );
    assert_eq!(*state.borrow(), State::Up);
    assert_eq!(lab.frr_status(NODE_V4).as_deref(), Some("up"));
    let counters = lab.vtysh(&format!("show bfd peer {NODE_V4} counters"));
    assert!(
        counters.contains("Session down events: 0"),
        "FRR saw no flap:\n{counters}"
    );
    assert_eq!(session.dropped(), expected);
}

#[test]
fn a_timer_change_while_up_is_negotiated_with_frr_without_a_flap() {
    let lab = Lab::new();
    let _frr = lab.frr(&frr_conf(&peer(NODE_V4, ROUTER_V4, " interface eth0")));
    let session = lab.session(NODE_V4, ROUTER_V4, Hop::Single);
    wait_state(&session, State::Up, UP_WITHIN);
    wait_frr(&lab, NODE_V4, "up", UP_WITHIN);
    let mut state = session.state();
    state.mark_unchanged();
    // Slower than FRR's 100 ms: the larger of the two is used (RFC 5880
    // §6.8.2), after a Poll Sequence (§6.5).
    session.set_timers(herald_bfd::Timers {
        desired_min_tx: Duration::from_millis(300),
        required_min_rx: Duration::from_millis(250),
        detect_mult: 4,
    });
    wait_for(
        "FRR to take Herald's new timers",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let detail = lab.vtysh(&format!("show bfd peer {NODE_V4}"));
            let remote = detail.split("Remote timers:").nth(1)?.to_owned();
            (remote.contains("Detect-multiplier: 4")
                && remote.contains("Receive interval: 250ms")
                && remote.contains("Transmission interval: 300ms"))
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.vtysh(&format!("show bfd peer {NODE_V4}"))));
    // An observation window: several of the new detection times.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!state.has_changed().unwrap(), "no flap");
    let counters = lab.vtysh(&format!("show bfd peer {NODE_V4} counters"));
    assert!(
        counters.contains("Session down events: 0"),
        "FRR saw no flap:\n{counters}"
    );
}
