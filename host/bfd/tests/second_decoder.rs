//! The packets Herald sends, decoded by a second, independent decoder:
//! tcpdump's BFD dissector reads them from a capture file (UDP to port
//! 3784) and must print the values Herald meant; the golden vector of the
//! unit tests is pinned here too.
//!
//! Needs tcpdump (scripts/test.sh installs it).

use herald_bfd::packet::{Diag, Packet, State, decode, encode};

/// What tcpdump prints for one UDP datagram per payload, from
/// 192.0.2.1:50000 to 192.0.2.2:3784, TTL 255.
fn tcpdump(payloads: &[Vec<u8>]) -> String {
    let packets: Vec<Vec<u8>> = payloads
        .iter()
        .map(|payload| {
            let total = 28 + payload.len();
            let mut packet = Vec::with_capacity(total);
            packet.extend_from_slice(&[0x45, 0]);
            packet.extend_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0x40, 0, 255, 17, 0, 0]);
            packet.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
            packet.extend_from_slice(&50000u16.to_be_bytes());
            packet.extend_from_slice(&3784u16.to_be_bytes());
            packet.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
            packet.extend_from_slice(&[0, 0]);
            packet.extend_from_slice(payload);
            packet
        })
        .collect();
    herald_netns::tcpdump(&packets).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn tcpdump_decodes_what_herald_sends() {
    let up_poll = Packet {
        diag: Diag::NONE,
        state: State::Up,
        poll: true,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 0x1122_3344,
        your_discriminator: 0x5566_7788,
        desired_min_tx: 300_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
    };
    // The golden vector of packet.rs's unit tests.
    let golden: Vec<u8> = vec![
        0x20, 0xe0, 0x03, 0x18, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x00, 0x04, 0x93,
        0xe0, 0x00, 0x01, 0x86, 0xa0, 0x00, 0x00, 0x00, 0x00,
    ];
    assert_eq!(encode(&up_poll).to_vec(), golden);
    let down_expired = Packet {
        diag: Diag::DETECTION_TIME_EXPIRED,
        state: State::Down,
        poll: false,
        your_discriminator: 0,
        desired_min_tx: 1_000_000,
        ..up_poll
    };
    let init_final = Packet {
        state: State::Init,
        poll: false,
        final_: true,
        detect_mult: 5,
        ..up_poll
    };
    let admin_down = Packet {
        diag: Diag::ADMIN_DOWN,
        state: State::AdminDown,
        poll: false,
        ..up_poll
    };
    let packets = [up_poll, down_expired, init_final, admin_down];
    let payloads: Vec<Vec<u8>> = packets.iter().map(|p| encode(p).to_vec()).collect();
    for (p, bytes) in packets.iter().zip(&payloads) {
        assert_eq!(decode(bytes), Ok(*p), "Herald reads back what it wrote");
    }
    let text = tcpdump(&payloads);
    let lines: Vec<&str> = text.split("IP (tos").skip(1).collect();
    assert_eq!(lines.len(), 4, "four packets:\n{text}");
    let expect = [
        vec![
            "BFDv1",
            "Control",
            "State Up",
            "Flags: [Poll]",
            "Diagnostic: No Diagnostic (0x00)",
            "Detection Timer Multiplier: 3 (900 ms Detection time)",
            "My Discriminator: 0x11223344",
            "Your Discriminator: 0x55667788",
            "Desired min Tx Interval:     300 ms",
            "Required min Rx Interval:    100 ms",
            "Required min Echo Interval:    0 ms",
        ],
        vec![
            "State Down",
            "Diagnostic: Control Detection Time Expired (0x01)",
            "Your Discriminator: 0x00000000",
            "Desired min Tx Interval:    1000 ms",
        ],
        vec![
            "State Init",
            "Flags: [Final]",
            "Detection Timer Multiplier: 5 (1500 ms Detection time)",
        ],
        vec![
            "State AdminDown, Flags: [none]",
            "Diagnostic: Administratively Down (0x07)",
        ],
    ];
    for (line, wanted) in lines.iter().zip(expect) {
        for w in wanted {
            assert!(line.contains(w), "tcpdump should print {w:?} in:\n{line}");
        }
    }
}
