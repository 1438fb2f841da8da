//! Herald's BFD against BIRD's (2.0) in network namespaces: the session
//! comes Up over IPv4 and IPv6, and BIRD detects a hung node within its
//! detection time.
//!
//! Needs root, BIRD and nft (scripts/test.sh installs them).

mod lab;

use std::time::{Duration, Instant};

use herald_bfd::{Dropped, Hop, State};
use herald_netns::wait_for;
use lab::{Lab, NODE_V4, NODE_V6, ROUTER_V4, ROUTER_V6, UP_WITHIN, wait_state};

/// BIRD's state of the session with `peer` ("Up", "Down", "Init"), if
/// listed.
fn bird_state(lab: &Lab, peer: &str) -> Option<String> {
    lab.bird_sessions()
        .lines()
        .find(|l| l.split_whitespace().next() == Some(peer))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
}

fn wait_bird(lab: &Lab, peer: &str, state: &str, within: Duration) -> Duration {
    let start = Instant::now();
    wait_for(
        &format!("BIRD's BFD session with {peer} to be {state}"),
        within,
        Duration::from_millis(5),
        || (bird_state(lab, peer).as_deref() == Some(state)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", lab.bird_sessions()));
    start.elapsed()
}

#[test]
fn comes_up_with_bird_over_ipv4_and_ipv6_and_bird_detects_a_hung_node() {
    let lab = Lab::new();
    let _bird = lab.bird(&format!(
        "router id {ROUTER_V4};\n\
         protocol device {{}}\n\
         protocol bfd {{\n\
           interface \"eth0\" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};\n\
           neighbor {NODE_V4} dev \"eth0\" local {ROUTER_V4};\n\
           neighbor {NODE_V6} dev \"eth0\" local {ROUTER_V6};\n\
         }}\n"
    ));
    let v4 = lab.session(NODE_V4, ROUTER_V4, Hop::Single);
    let v6 = lab.session(NODE_V6, ROUTER_V6, Hop::Single);
    wait_state(&v4, State::Up, UP_WITHIN);
    wait_state(&v6, State::Up, UP_WITHIN);
    wait_bird(&lab, NODE_V4, "Up", UP_WITHIN);
    wait_bird(&lab, NODE_V6, "Up", UP_WITHIN);
    assert_eq!(v4.dropped(), Dropped::default(), "BIRD's packets all pass");
    assert_eq!(v6.dropped(), Dropped::default(), "BIRD's packets all pass");

    lab.hang(&lab.node);
    let hung = Instant::now();
    wait_bird(&lab, NODE_V4, "Down", Duration::from_secs(5));
    let bird_saw = hung.elapsed();
    eprintln!("BIRD saw the hung node after {bird_saw:?}");
    assert!(
        bird_saw < Duration::from_millis(300 + 400),
        "BIRD should detect the hung node within 300 ms plus a small bound, took {bird_saw:?}"
    );
    wait_state(&v4, State::Down, Duration::from_secs(5));
}
