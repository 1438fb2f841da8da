//! Golden bytes for every message Herald sends, written out by hand from
//! the RFC layouts (not produced by the encoder under test), and the
//! RIB-out's diffing and packing.

use super::*;
use crate::fsm::{Config, Fsm};
use herald_core::bgp::Community;
use netgauze_bgp_pkt::BgpMessage;
use std::time::Duration;

const MARKER: &str = "ffffffff ffffffff ffffffff ffffffff";

fn hex(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

fn ebgp4() -> Encoding {
    Encoding {
        local_asn: Asn::new(4_200_000_001).unwrap(),
        ebgp: true,
        asn4: true,
        next_hop_v4: Some(Ipv4Addr::new(192, 0, 2, 2)),
        next_hop_v6: Some("2001:db8:ff::2".parse().unwrap()),
        ipv4: true,
        ipv6: true,
    }
}

/// An update's bytes, all of it sent: nothing skipped.
trait Whole {
    fn whole(self) -> Vec<u8>;
}

impl Whole for Update {
    fn whole(self) -> Vec<u8> {
        assert!(self.skipped.is_empty(), "skipped: {:?}", self.skipped);
        self.bytes
    }
}

fn routes(list: &[(&str, Attributes)]) -> Routes {
    list.iter()
        .map(|(p, a)| (p.parse().unwrap(), a.clone()))
        .collect()
}

/// Splits a byte stream into messages.
fn messages(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
        out.push(bytes[..len].to_vec());
        bytes = &bytes[len..];
    }
    out
}

#[test]
fn open_with_every_capability() {
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
    let expected = hex(&format!(
        "{MARKER} 003f 01
         04 5ba0 0009 c0000202
         22 02 20
         01 04 0001 00 01
         01 04 0002 00 01
         02 00
         41 04 fa56ea01
         40 0a 0078 0001 01 80 0002 01 80"
    ));
    // version 4, My AS = AS_TRANS (RFC 6793), hold 9, identifier
    // 192.0.2.2; one capabilities parameter: MP IPv4 and IPv6 unicast
    // (RFC 4760), route refresh (RFC 2918), 4-octet AS 4200000001, graceful
    // restart for 120 s with the forwarding state kept (RFC 4724).
    assert_eq!(crate::wire::encode(&fsm.open_message()).unwrap(), expected);
}

#[test]
fn keepalive_and_notifications() {
    assert_eq!(
        crate::wire::encode(&BgpMessage::KeepAlive).unwrap(),
        hex(&format!("{MARKER} 0013 04"))
    );
    let mut fsm = Fsm::new(Config {
        local_asn: Asn::new(65010).unwrap(),
        peer_asn: Asn::new(65001).unwrap(),
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        hold_time: 9,
        keepalive_time: 3,
        connect_retry: Duration::from_secs(120),
        graceful_restart: None,
        ipv4: true,
        ipv6: false,
        passive: false,
    });
    fsm.handle(crate::fsm::Event::Start);
    fsm.handle(crate::fsm::Event::Connected);
    let sent: Vec<Vec<u8>> = fsm
        .handle(crate::fsm::Event::HoldExpired(crate::fsm::Conn::Outgoing))
        .into_iter()
        .filter_map(|a| match a {
            crate::fsm::Action::Send(_, m) => Some(crate::wire::encode(&m).unwrap()),
            _ => None,
        })
        .collect();
    // Hold Timer Expired: code 4, subcode 0.
    assert_eq!(sent, [hex(&format!("{MARKER} 0015 03 04 00"))]);
}

#[test]
fn ipv4_update_with_every_attribute() {
    let attrs = Attributes {
        communities: vec![Community::new(64512, 100)],
        large_communities: vec!["4200000001:1:2".parse().unwrap()],
        med: Some(10),
        ..Attributes::default()
    };
    let mut rib = RibOut::new();
    let bytes = rib
        .update_to(&routes(&[("198.51.100.10/32", attrs)]), &ebgp4())
        .whole();
    let expected = hex(&format!(
        "{MARKER} 004d 02
         0000 0031
         40 01 01 00
         40 02 06 02 01 fa56ea01
         40 03 04 c0000202
         80 04 04 0000000a
         c0 08 04 fc000064
         c0 20 0c fa56ea01 00000001 00000002
         20 c633640a"
    ));
    assert_eq!(bytes, expected);
}

#[test]
fn ibgp_ipv6_update_with_local_pref_and_empty_as_path_even_with_prepends() {
    // Prepends apply to eBGP only: on iBGP our ASN is the router's own,
    // and a path carrying it is dropped as a loop.
    let attrs = Attributes {
        local_pref: Some(200),
        as_path_prepend: 2,
        ..Attributes::default()
    };
    let mut enc = ebgp4();
    enc.ebgp = false;
    let mut rib = RibOut::new();
    let bytes = rib
        .update_to(&routes(&[("2001:db8:100::10/128", attrs)]), &enc)
        .whole();
    let expected = hex(&format!(
        "{MARKER} 004f 02
         0000 0038
         90 0e 0026 0002 01 10 20010db8 00ff0000 00000000 00000002 00
            80 20010db8 01000000 00000000 00000010
         40 01 01 00
         40 02 00
         40 05 04 000000c8"
    ));
    assert_eq!(bytes, expected);
}

#[test]
fn prepends_and_link_bandwidth() {
    let attrs = Attributes {
        as_path_prepend: 2,
        weight: Some(3),
        ..Attributes::default()
    };
    let mut enc = ebgp4();
    enc.local_asn = Asn::new(65010).unwrap();
    let mut rib = RibOut::new();
    let bytes = rib
        .update_to(&routes(&[("198.51.100.0/24", attrs)]), &enc)
        .whole();
    // AS_PATH: three copies of 65010 (0xfdf2), 4 octets each; the
    // link-bandwidth community: non-transitive two-octet-AS type 0x40,
    // subtype 0x04, AS 65010, 3 x 125,000 octets/s = 375e3 as an IEEE
    // float (0x48b71b00).
    let expected = hex(&format!(
        "{MARKER} 0042 02
         0000 0027
         40 01 01 00
         40 02 0e 02 03 0000fdf2 0000fdf2 0000fdf2
         40 03 04 c0000202
         c0 10 08 40 04 fdf2 48b71b00
         18 c63364"
    ));
    assert_eq!(bytes, expected);
}

#[test]
fn two_octet_session_writes_as_trans_and_as4_path() {
    let mut enc = ebgp4();
    enc.asn4 = false;
    let mut rib = RibOut::new();
    let bytes = rib
        .update_to(
            &routes(&[("198.51.100.10/32", Attributes::default())]),
            &enc,
        )
        .whole();
    // AS_PATH [23456] and AS4_PATH [4200000001] (RFC 6793 §4.2.2); NEXT_HOP
    // sits between them (attribute order is free, §5).
    let expected = hex(&format!(
        "{MARKER} 0037 02
         0000 001b
         40 01 01 00
         40 02 04 02 01 5ba0
         40 03 04 c0000202
         c0 11 06 02 01 fa56ea01
         20 c633640a"
    ));
    assert_eq!(bytes, expected);
}

#[test]
fn withdrawals_and_end_of_rib() {
    let mut rib = RibOut::new();
    let both = routes(&[
        ("198.51.100.10/32", Attributes::default()),
        ("2001:db8:100::10/128", Attributes::default()),
    ]);
    rib.update_to(&both, &ebgp4()).whole();
    let bytes = rib.update_to(&Routes::new(), &ebgp4()).whole();
    let msgs = messages(&bytes);
    assert_eq!(
        msgs,
        [
            hex(&format!("{MARKER} 001c 02 0005 20 c633640a 0000")),
            hex(&format!(
                "{MARKER} 002f 02 0000 0018
                 90 0f 0014 0002 01 80 20010db8 01000000 00000000 00000010"
            )),
        ]
    );
    assert_eq!(
        crate::wire::encode(&end_of_rib(false).unwrap()).unwrap(),
        hex(&format!("{MARKER} 0017 02 0000 0000"))
    );
    assert_eq!(
        crate::wire::encode(&end_of_rib(true).unwrap()).unwrap(),
        hex(&format!("{MARKER} 001e 02 0000 0007 90 0f 0003 0002 01"))
    );
}

#[test]
fn only_differences_are_sent() {
    let a = Attributes::default();
    let b = Attributes {
        med: Some(5),
        ..Attributes::default()
    };
    let mut rib = RibOut::new();
    rib.update_to(
        &routes(&[
            ("198.51.100.1/32", a.clone()),
            ("198.51.100.2/32", a.clone()),
        ]),
        &ebgp4(),
    )
    .whole();
    // Nothing changed: nothing to send.
    assert!(
        rib.update_to(
            &routes(&[
                ("198.51.100.1/32", a.clone()),
                ("198.51.100.2/32", a.clone())
            ]),
            &ebgp4()
        )
        .whole()
        .is_empty()
    );
    // One attribute change and one removal: one withdrawal, one UPDATE.
    let bytes = rib
        .update_to(&routes(&[("198.51.100.1/32", b)]), &ebgp4())
        .whole();
    let msgs = messages(&bytes);
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[0],
        hex(&format!("{MARKER} 001c 02 0005 20 c6336402 0000"))
    );
    assert!(msgs[1].ends_with(&hex("20 c6336401")));
    assert_eq!(rib.sent().len(), 1);
}

#[test]
fn many_prefixes_pack_into_full_updates() {
    let wanted: Routes = (0..10_000u32)
        .map(|i| {
            let addr = Ipv4Addr::from(0xc633_0000 + i);
            (
                IpNet::V4(Ipv4Net::new(addr, 32).unwrap()),
                Attributes::default(),
            )
        })
        .collect();
    let mut rib = RibOut::new();
    let bytes = rib.update_to(&wanted, &ebgp4()).whole();
    let msgs = messages(&bytes);
    // 5 octets per /32 and ~4050 octets of room: 810 per UPDATE.
    assert_eq!(msgs.len(), 10_000usize.div_ceil(810));
    let mut seen = 0;
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE_LEN);
        let BgpMessage::Update(u) = crate::wire::decode(m, true).unwrap() else {
            panic!("not an UPDATE")
        };
        seen += u.nlri().len();
    }
    assert_eq!(seen, 10_000);
    // Withdrawing all of them packs just as well.
    let msgs = messages(&rib.update_to(&Routes::new(), &ebgp4()).whole());
    assert!(msgs.len() <= 10_000usize.div_ceil(800));
}

#[test]
fn routes_without_a_next_hop_or_family_are_withheld() {
    let mut enc = ebgp4();
    enc.next_hop_v4 = None;
    enc.ipv6 = false;
    let mut rib = RibOut::new();
    let bytes = rib
        .update_to(
            &routes(&[
                ("198.51.100.10/32", Attributes::default()),
                ("2001:db8:100::10/128", Attributes::default()),
            ]),
            &enc,
        )
        .whole();
    assert!(bytes.is_empty());
    assert!(rib.sent().is_empty());
}

#[test]
fn route_refresh_resends_one_family() {
    let mut rib = RibOut::new();
    let both = routes(&[
        ("198.51.100.10/32", Attributes::default()),
        ("2001:db8:100::10/128", Attributes::default()),
    ]);
    rib.update_to(&both, &ebgp4()).whole();
    rib.forget(true);
    let msgs = messages(&rib.update_to(&both, &ebgp4()).whole());
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0][23], 0x90, "an MP_REACH_NLRI UPDATE");
}

#[test]
fn link_bandwidth_above_what_fits_32_bits_of_octets_is_sent_as_the_largest_that_fits() {
    let encode = |weight: u32| {
        let attrs = Attributes {
            weight: Some(weight),
            ..Attributes::default()
        };
        RibOut::new()
            .update_to(&routes(&[("198.51.100.0/24", attrs)]), &ebgp4())
            .whole()
    };
    assert_eq!(encode(u32::MAX), encode(MAX_LINK_BANDWIDTH_WEIGHT));
    assert_ne!(
        encode(MAX_LINK_BANDWIDTH_WEIGHT - 1),
        encode(MAX_LINK_BANDWIDTH_WEIGHT)
    );
    let octets = f64::from(MAX_LINK_BANDWIDTH_WEIGHT) * f64::from(BANDWIDTH_PER_WEIGHT);
    assert!(octets <= f64::from(u32::MAX), "{octets}");
}

/// `n` distinct communities.
fn communities(n: usize) -> Vec<Community> {
    (0..n)
        .map(|i| Community::new(64512, u16::try_from(i).unwrap()))
        .collect()
}

/// The prefixes announced in `bytes`, each family.
fn announced(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for m in messages(bytes) {
        let BgpMessage::Update(u) = crate::wire::decode(&m, true).unwrap() else {
            panic!("not an UPDATE")
        };
        out.extend(u.nlri().iter().map(|n| n.network().address().to_string()));
        for a in u.path_attributes() {
            if let PathAttributeValue::MpReach(MpReach::Ipv6Unicast { nlri, .. }) = a.value() {
                out.extend(nlri.iter().map(|n| n.network().address().to_string()));
            }
        }
    }
    out
}

#[test]
fn a_group_too_large_for_one_update_is_skipped_and_the_rest_is_sent() {
    let big = Attributes {
        communities: communities(1_100),
        ..Attributes::default()
    };
    let small = Attributes {
        communities: communities(1),
        ..Attributes::default()
    };
    let wanted = routes(&[
        ("198.51.100.10/32", Attributes::default()),
        ("198.51.100.11/32", big.clone()),
        ("2001:db8:100::11/128", big.clone()),
        ("2001:db8:100::12/128", small.clone()),
    ]);
    let mut rib = RibOut::new();
    let update = rib.update_to(&wanted, &ebgp4());
    assert_eq!(
        announced(&update.bytes),
        ["198.51.100.10/32", "2001:db8:100::12/128"]
    );
    // One group per family, each with the reason.
    let skipped: Vec<(Vec<String>, bool)> = update
        .skipped
        .iter()
        .map(|s| {
            assert!(
                matches!(s.error, Error::TooLarge { octets } if octets > MAX_MESSAGE_LEN),
                "{:?}",
                s.error
            );
            (
                s.prefixes.iter().map(ToString::to_string).collect(),
                s.withdrawal,
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            (vec!["198.51.100.11/32".to_owned()], false),
            (vec!["2001:db8:100::11/128".to_owned()], false)
        ]
    );
    assert!(update.skipped(false) && update.skipped(true));
    // Only what was sent is recorded.
    let sent: Vec<String> = rib.sent().keys().map(ToString::to_string).collect();
    assert_eq!(sent, ["198.51.100.10/32", "2001:db8:100::12/128"]);

    // The next change retries the skipped group: still too large, it is
    // skipped again while the change itself (a withdrawal) goes out.
    let mut wanted = wanted;
    wanted.remove(&"198.51.100.10/32".parse().unwrap());
    let update = rib.update_to(&wanted, &ebgp4());
    assert_eq!(
        messages(&update.bytes),
        [hex(&format!("{MARKER} 001c 02 0005 20 c633640a 0000"))]
    );
    assert_eq!(update.skipped.len(), 2);

    // Fixed, it is sent, and nothing is owed any more.
    for p in ["198.51.100.11/32", "2001:db8:100::11/128"] {
        wanted.insert(p.parse().unwrap(), small.clone());
    }
    let update = rib.update_to(&wanted, &ebgp4());
    assert!(update.skipped.is_empty(), "{:?}", update.skipped);
    assert!(!update.skipped(false) && !update.skipped(true));
    assert_eq!(
        announced(&update.bytes),
        ["198.51.100.11/32", "2001:db8:100::11/128"]
    );
    assert_eq!(rib.sent().len(), 3);
}

#[test]
fn a_route_whose_new_attributes_cannot_be_encoded_keeps_its_old_ones() {
    let old = Attributes {
        med: Some(5),
        ..Attributes::default()
    };
    let big = Attributes {
        communities: communities(1_100),
        ..old.clone()
    };
    let prefix: IpNet = "198.51.100.10/32".parse().unwrap();
    let mut rib = RibOut::new();
    rib.update_to(&routes(&[("198.51.100.10/32", old.clone())]), &ebgp4())
        .whole();
    let update = rib.update_to(&routes(&[("198.51.100.10/32", big)]), &ebgp4());
    assert!(update.bytes.is_empty(), "neither announced nor withdrawn");
    assert_eq!(update.skipped.len(), 1);
    // The peer still has the old route, and the record says so: going
    // back to it sends nothing.
    assert_eq!(rib.sent().get(&prefix), Some(&old));
    let back = rib.update_to(&routes(&[("198.51.100.10/32", old)]), &ebgp4());
    assert!(back.bytes.is_empty() && back.skipped.is_empty());
}

#[test]
fn a_list_far_over_any_update_is_refused_before_encoding() {
    // 20,000 communities take 80,000 octets: more than an attribute's
    // 16-bit length can say.
    let huge = Attributes {
        communities: (0..20_000u32).map(Community).collect(),
        ..Attributes::default()
    };
    let mut rib = RibOut::new();
    let update = rib.update_to(&routes(&[("198.51.100.10/32", huge)]), &ebgp4());
    assert!(update.bytes.is_empty());
    assert!(
        matches!(update.skipped[0].error, Error::TooLarge { octets: 80_000 }),
        "{:?}",
        update.skipped[0].error
    );
}

/// The API's limits ([`herald_core::bgp::MAX_COMMUNITIES`] and
/// [`herald_core::bgp::MAX_LARGE_COMMUNITIES`]) against the real encoder:
/// a route with both lists full and every other attribute at its largest
/// takes exactly what the core's table says, within one UPDATE.
#[test]
fn a_route_at_the_community_limits_fits_one_update() {
    use herald_core::bgp::{
        MAX_AS_PATH_PREPEND, MAX_COMMUNITIES, MAX_LARGE_COMMUNITIES,
        UPDATE_OCTETS_BESIDE_COMMUNITIES,
    };
    let full = Attributes {
        communities: communities(MAX_COMMUNITIES),
        large_communities: (0..MAX_LARGE_COMMUNITIES)
            .map(|i| LargeCommunity {
                global_administrator: 4_200_000_001,
                local_data_1: 1,
                local_data_2: u32::try_from(i).unwrap(),
            })
            .collect(),
        local_pref: Some(200),
        med: Some(10),
        as_path_prepend: MAX_AS_PATH_PREPEND,
        weight: Some(3),
    };
    let lists = 4 * MAX_COMMUNITIES + 12 * MAX_LARGE_COMMUNITIES;
    // eBGP on a 2-octet session with a 4-octet ASN: AS_PATH and AS4_PATH
    // at their longest, no LOCAL_PREF (7 octets).
    let mut enc = ebgp4();
    enc.asn4 = false;
    let mut rib = RibOut::new();
    let bytes = rib
        .update_to(&routes(&[("2001:db8:100::10/128", full.clone())]), &enc)
        .whole();
    assert_eq!(bytes.len(), UPDATE_OCTETS_BESIDE_COMMUNITIES - 7 + lists);
    assert!(bytes.len() <= MAX_MESSAGE_LEN);
    // iBGP: LOCAL_PREF, and an empty AS_PATH (3 octets instead of 76).
    enc.ebgp = false;
    let mut rib = RibOut::new();
    let bytes = rib
        .update_to(&routes(&[("2001:db8:100::10/128", full)]), &enc)
        .whole();
    assert_eq!(
        bytes.len(),
        UPDATE_OCTETS_BESIDE_COMMUNITIES - 76 + 3 + lists
    );
}
