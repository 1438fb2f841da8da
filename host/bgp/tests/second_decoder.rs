//! Every kind of message Herald sends, decoded by a second, independent
//! decoder: tcpdump's BGP dissector reads them from a capture file and
//! must print the values Herald meant (the unit tests pin the same bytes
//! against vectors written by hand from the RFCs).
//!
//! Needs tcpdump (scripts/test.sh installs it).

use std::net::Ipv4Addr;
use std::time::Duration;

use herald_bgp::fsm::{Config, Fsm};
use herald_bgp::rib::{Attributes, Encoding, RibOut, Routes, end_of_rib};
use herald_bgp::wire::encode;
use herald_core::bgp::{Asn, Community};

/// One TCP segment from port 179 per message, as bare IPv4 packets.
fn segments(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seq = 1u32;
    messages
        .iter()
        .map(|m| {
            let total = 40 + m.len();
            let mut packet = Vec::with_capacity(total);
            packet.extend_from_slice(&[0x45, 0]);
            packet.extend_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
            packet.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            packet.extend_from_slice(&[192, 0, 2, 2, 192, 0, 2, 1]);
            packet.extend_from_slice(&179u16.to_be_bytes());
            packet.extend_from_slice(&40000u16.to_be_bytes());
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&1u32.to_be_bytes());
            packet.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            packet.extend_from_slice(m);
            seq += u32::try_from(m.len()).unwrap();
            packet
        })
        .collect()
}

fn split(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
        out.push(bytes[..len].to_vec());
        bytes = &bytes[len..];
    }
    out
}

/// What tcpdump prints for the messages, one TCP segment each.
fn tcpdump(messages: &[Vec<u8>]) -> String {
    herald_netns::tcpdump(&segments(messages)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn tcpdump_decodes_what_herald_sends() {
    let fsm = Fsm::new(Config {
        local_asn: Asn::new(4_200_000_001).unwrap(),
        peer_asn: Asn::new(65001).unwrap(),
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        hold_time: 9,
        keepalive_time: 3,
        connect_retry: Duration::from_secs(120),
        graceful_restart: Some(120),
        ipv4: true,
        ipv6: true,
        passive: false,
    });
    let mut messages = vec![
        encode(&fsm.open_message()).unwrap(),
        encode(&netgauze_bgp_pkt::BgpMessage::KeepAlive).unwrap(),
    ];
    let mut routes = Routes::new();
    routes.insert(
        "198.51.100.10/32".parse().unwrap(),
        Attributes {
            communities: vec![Community::new(64512, 100), Community::NO_EXPORT],
            large_communities: vec!["4200000001:1:2".parse().unwrap()],
            med: Some(10),
            as_path_prepend: 1,
            weight: Some(3),
            ..Attributes::default()
        },
    );
    routes.insert(
        "2001:db8:100::10/128".parse().unwrap(),
        Attributes::default(),
    );
    let enc = Encoding {
        local_asn: Asn::new(4_200_000_001).unwrap(),
        ebgp: true,
        asn4: true,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 2)),
        next_hop_v6: Some("2001:db8:ff::2".parse().unwrap()),
        ipv4: true,
        ipv6: true,
    };
    let mut rib = RibOut::new();
    for wanted in [routes, Routes::new()] {
        let update = rib.update_to(&wanted, &enc);
        assert!(update.skipped.is_empty(), "{:?}", update.skipped);
        messages.extend(split(&update.bytes));
    }
    messages.push(encode(&end_of_rib(false).unwrap()).unwrap());
    messages.push(encode(&end_of_rib(true).unwrap()).unwrap());
    let text = tcpdump(&messages);
    for expected in [
        // OPEN
        "Open Message (1)",
        "my AS 23456, Holdtime 9s, ID 192.0.2.2",
        "AFI IPv4 (1), SAFI Unicast (1)",
        "AFI IPv6 (2), SAFI Unicast (1)",
        "Route Refresh (2)",
        "4 Byte AS 4200000001",
        "Restart Time 120s",
        "AFI IPv6 (2), SAFI Unicast (1), Forwarding state preserved: yes",
        "Keepalive Message (4)",
        // The IPv4 UPDATE
        "Origin (1), length: 1, Flags [T]: IGP",
        "AS Path (2), length: 10, Flags [T]: 4200000001 4200000001",
        "Next Hop (3), length: 4, Flags [T]: 192.0.2.2",
        "Multi Exit Discriminator (4), length: 4, Flags [O]: 10",
        "Flags [OT]: 64512:100,  NO_EXPORT",
        "4200000001:1:2",
        "link-BW (0x4004), Flags [non-transitive]: bandwidth: 3.000 Mbps",
        "198.51.100.10/32",
        // The IPv6 UPDATE
        "nexthop: 2001:db8:ff::2, nh-length: 16",
        "2001:db8:100::10/128",
        // Withdrawals and End-of-RIB
        "Withdrawn routes:",
        "Multi-Protocol Unreach NLRI (15), length: 20",
        "End-of-Rib Marker (empty NLRI)",
    ] {
        assert!(
            text.contains(expected),
            "tcpdump did not print {expected:?}:\n{text}"
        );
    }
}
