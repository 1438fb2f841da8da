//! ARP and NDP frames on Ethernet: parsing the questions a client asks
//! (ARP requests, Neighbor Solicitations) and building the answers and the
//! unsolicited announcements (gratuitous ARP, unsolicited Neighbor
//! Advertisements). Pure byte work, no I/O.
//!
//! References: RFC 826 (ARP packet format), RFC 5227 §3 (ARP
//! announcements), RFC 4861 §4.3–4.4 (NS/NA formats), §7.1.1 (validating a
//! solicitation), §7.2.4 (answering one), §7.2.6 (unsolicited
//! advertisements), RFC 4443 §2.3 (ICMPv6 checksum), RFC 8200 §8.1 (the
//! pseudo-header).

use std::net::{Ipv4Addr, Ipv6Addr};

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];

/// The Ethernet broadcast address.
pub const BROADCAST: Mac = [0xff; 6];

/// EtherType of ARP.
const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv4 (ARP's protocol type).
const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// ARP hardware type Ethernet (RFC 826).
const ARP_HTYPE_ETHERNET: u16 = 1;
/// ARP operation: request.
const ARP_REQUEST: u16 = 1;
/// ARP operation: reply.
const ARP_REPLY: u16 = 2;
/// IPv6 next header value of ICMPv6.
const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv6 type Neighbor Solicitation (RFC 4861 §4.3).
const ICMPV6_NS: u8 = 135;
/// ICMPv6 type Neighbor Advertisement (RFC 4861 §4.4).
const ICMPV6_NA: u8 = 136;
/// NDP option Source Link-Layer Address (RFC 4861 §4.6.1).
const OPT_SOURCE_LL: u8 = 1;
/// NDP option Target Link-Layer Address (RFC 4861 §4.6.1).
const OPT_TARGET_LL: u8 = 2;
/// NDP packets are sent, and only accepted, with hop limit 255, which
/// proves they were not forwarded by a router (RFC 4861 §7.1.1).
const NDP_HOP_LIMIT: u8 = 255;
/// NA flag: the answer is to a solicitation (RFC 4861 §4.4).
const NA_SOLICITED: u32 = 0x4000_0000;
/// NA flag: override an existing cache entry (RFC 4861 §4.4).
const NA_OVERRIDE: u32 = 0x2000_0000;

const ETH_LEN: usize = 14;
const ARP_LEN: usize = 28;
const IPV6_LEN: usize = 40;
/// NA with one Target Link-Layer Address option: 24 bytes of message and
/// 8 of option.
const NA_LEN: usize = 32;

/// The all-nodes multicast address, destination of unsolicited NAs.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A question this responder may have to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Question {
    /// An ARP request for `target` (RFC 826).
    Arp {
        /// The asker's hardware address.
        sender_mac: Mac,
        /// The asker's IPv4 address (0.0.0.0 for an RFC 5227 probe).
        sender_ip: Ipv4Addr,
        /// The address asked about.
        target: Ipv4Addr,
    },
    /// A Neighbor Solicitation for `target` (RFC 4861 §4.3).
    Ns {
        /// The Ethernet source of the frame.
        sender_mac: Mac,
        /// The IPv6 source (unspecified for duplicate address detection).
        source: Ipv6Addr,
        /// The address asked about.
        target: Ipv6Addr,
    },
}

/// Reads an ARP request or a valid Neighbor Solicitation out of an Ethernet
/// frame; anything else (other traffic, replies, announcements, malformed
/// or invalid packets) is `None`.
pub fn parse(frame: &[u8]) -> Option<Question> {
    if frame.len() < ETH_LEN {
        return None;
    }
    let eth_src: Mac = frame[6..12].try_into().ok()?;
    let payload = &frame[ETH_LEN..];
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ETHERTYPE_ARP => parse_arp(payload),
        ETHERTYPE_IPV6 => parse_ns(eth_src, payload),
        _ => None,
    }
}

fn parse_arp(p: &[u8]) -> Option<Question> {
    if p.len() < ARP_LEN
        || u16::from_be_bytes([p[0], p[1]]) != ARP_HTYPE_ETHERNET
        || u16::from_be_bytes([p[2], p[3]]) != ETHERTYPE_IPV4
        || p[4] != 6
        || p[5] != 4
        || u16::from_be_bytes([p[6], p[7]]) != ARP_REQUEST
    {
        return None;
    }
    let sender_ip = Ipv4Addr::from(<[u8; 4]>::try_from(&p[14..18]).ok()?);
    let target = Ipv4Addr::from(<[u8; 4]>::try_from(&p[24..28]).ok()?);
    // A gratuitous request (RFC 5227 §3 announcement: sender = target)
    // asks nothing; answering it would contradict its sender.
    if sender_ip == target {
        return None;
    }
    Some(Question::Arp {
        sender_mac: p[8..14].try_into().ok()?,
        sender_ip,
        target,
    })
}

fn parse_ns(eth_src: Mac, p: &[u8]) -> Option<Question> {
    // Extension headers are not followed: NDP messages carry none in
    // practice, and one we cannot read is one we must not answer.
    if p.len() < IPV6_LEN + 24 || p[0] >> 4 != 6 || p[6] != NEXT_HEADER_ICMPV6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([p[4], p[5]]));
    let icmp = p.get(IPV6_LEN..IPV6_LEN + payload_len)?;
    let source = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).ok()?);
    let destination = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?);
    // RFC 4861 §7.1.1: hop limit 255, ICMP code 0, length of 24 or more,
    // a correct checksum, target not multicast, options of non-zero
    // length; with an unspecified source, the destination is a
    // solicited-node multicast address and there is no source link-layer
    // option.
    if p[7] != NDP_HOP_LIMIT
        || icmp.len() < 24
        || icmp[0] != ICMPV6_NS
        || icmp[1] != 0
        || icmpv6_checksum(source, destination, icmp) != 0
    {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).ok()?);
    if target.is_multicast() {
        return None;
    }
    let mut options = &icmp[24..];
    let mut has_source_ll = false;
    while !options.is_empty() {
        let len = usize::from(*options.get(1)?) * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        has_source_ll |= options[0] == OPT_SOURCE_LL;
        options = &options[len..];
    }
    if source.is_unspecified() && (!is_solicited_node_multicast(destination) || has_source_ll) {
        return None;
    }
    Some(Question::Ns {
        sender_mac: eth_src,
        source,
        target,
    })
}

/// `ff02::1:ffXX:XXXX` (RFC 4291 §2.7.1).
fn is_solicited_node_multicast(a: Ipv6Addr) -> bool {
    let s = a.segments();
    s[..5] == [0xff02, 0, 0, 0, 0] && s[5] == 1 && s[6] >> 8 == 0xff
}

/// The ARP reply to a request for `vip`, sent from `mac` to the asker
/// (RFC 826; for a probe with sender 0.0.0.0 the reply still goes to the
/// prober's hardware address, as Linux does).
pub fn arp_reply(mac: Mac, vip: Ipv4Addr, asker_mac: Mac, asker_ip: Ipv4Addr) -> Vec<u8> {
    arp(asker_mac, mac, ARP_REPLY, vip, asker_mac, asker_ip)
}

/// A gratuitous ARP announcing `vip` at `mac`: a broadcast request with
/// sender and target address both `vip` (RFC 5227 §3), which every Linux
/// host uses to update an existing neighbour entry.
pub fn gratuitous_arp(mac: Mac, vip: Ipv4Addr) -> Vec<u8> {
    arp(BROADCAST, mac, ARP_REQUEST, vip, [0; 6], vip)
}

fn arp(dst: Mac, src: Mac, oper: u16, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_LEN + ARP_LEN);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    f.extend_from_slice(&ARP_HTYPE_ETHERNET.to_be_bytes());
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&oper.to_be_bytes());
    f.extend_from_slice(&src);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f
}

/// The Neighbor Advertisement answering a solicitation for `vip` from
/// `asker` (RFC 4861 §7.2.4): to the asker with Solicited and Override
/// set; to all-nodes without Solicited when the asker was doing duplicate
/// address detection (unspecified source).
pub fn neighbor_advertisement(mac: Mac, vip: Ipv6Addr, asker_mac: Mac, asker: Ipv6Addr) -> Vec<u8> {
    if asker.is_unspecified() {
        na(mac, vip, multicast_mac(ALL_NODES), ALL_NODES, NA_OVERRIDE)
    } else {
        na(mac, vip, asker_mac, asker, NA_SOLICITED | NA_OVERRIDE)
    }
}

/// An unsolicited Neighbor Advertisement of `vip` at `mac` to all-nodes,
/// Override set, Solicited clear (RFC 4861 §7.2.6).
pub fn unsolicited_na(mac: Mac, vip: Ipv6Addr) -> Vec<u8> {
    na(mac, vip, multicast_mac(ALL_NODES), ALL_NODES, NA_OVERRIDE)
}

fn na(mac: Mac, vip: Ipv6Addr, dst_mac: Mac, dst: Ipv6Addr, flags: u32) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(NA_LEN);
    icmp.extend_from_slice(&[ICMPV6_NA, 0, 0, 0]);
    icmp.extend_from_slice(&flags.to_be_bytes());
    icmp.extend_from_slice(&vip.octets());
    icmp.extend_from_slice(&[OPT_TARGET_LL, 1]);
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(vip, dst, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(ETH_LEN + IPV6_LEN + NA_LEN);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(NA_LEN as u16).to_be_bytes());
    f.extend_from_slice(&[NEXT_HEADER_ICMPV6, NDP_HOP_LIMIT]);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The Ethernet address of an IPv6 multicast group: 33:33 and the group's
/// last four bytes (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> Mac {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1) and
/// `message` (RFC 4443 §2.3). Over a message whose checksum field is
/// filled in correctly, the result is 0.
pub fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u64::from);
            sum += hi | lo;
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: Mac = [0x02, 0, 0, 0, 0, 0x11];
    const CLIENT: Mac = [0x02, 0, 0, 0, 0, 0x64];

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A Neighbor Solicitation as Linux sends it (hop limit 255, source
    /// link-layer option), checksum filled in.
    fn ns(source: Ipv6Addr, target: Ipv6Addr, with_option: bool, hop_limit: u8) -> Vec<u8> {
        let t = target.octets();
        let dst = Ipv6Addr::from([
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
        ]);
        let mut icmp = vec![ICMPV6_NS, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&t);
        if with_option {
            icmp.extend_from_slice(&[OPT_SOURCE_LL, 1]);
            icmp.extend_from_slice(&CLIENT);
        }
        let sum = icmpv6_checksum(source, dst, &icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut f = Vec::new();
        f.extend_from_slice(&multicast_mac(dst));
        f.extend_from_slice(&CLIENT);
        f.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[NEXT_HEADER_ICMPV6, hop_limit]);
        f.extend_from_slice(&source.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(&icmp);
        f
    }

    #[test]
    fn arp_request_from_a_linux_client_is_a_question() {
        // `arping -I eth0 192.0.2.200` from 192.0.2.100, as captured.
        let frame = [
            "ffffffffffff",
            "020000000064",
            "0806",
            "0001",
            "0800",
            "06",
            "04",
            "0001",
            "020000000064",
            "c0000264",
            "000000000000",
            "c00002c8",
        ]
        .concat();
        let bytes: Vec<u8> = (0..frame.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&frame[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(
            parse(&bytes),
            Some(Question::Arp {
                sender_mac: CLIENT,
                sender_ip: Ipv4Addr::new(192, 0, 2, 100),
                target: Ipv4Addr::new(192, 0, 2, 200),
            })
        );
        // Truncated, or a reply, or gratuitous: no question.
        assert_eq!(parse(&bytes[..40]), None);
        let mut reply = bytes.clone();
        reply[21] = 2;
        assert_eq!(parse(&reply), None);
        assert_eq!(
            parse(&gratuitous_arp(NODE, Ipv4Addr::new(192, 0, 2, 200))),
            None
        );
    }

    #[test]
    fn arp_reply_golden_bytes() {
        let f = arp_reply(
            NODE,
            Ipv4Addr::new(192, 0, 2, 200),
            CLIENT,
            Ipv4Addr::new(192, 0, 2, 100),
        );
        assert_eq!(
            hex(&f),
            "020000000064020000000011080600010800060400020200000000".to_owned()
                + "11c00002c8020000000064c0000264"
        );
    }

    #[test]
    fn gratuitous_arp_golden_bytes() {
        let f = gratuitous_arp(NODE, Ipv4Addr::new(192, 0, 2, 200));
        assert_eq!(
            hex(&f),
            "ffffffffffff020000000011080600010800060400010200000000".to_owned()
                + "11c00002c8000000000000c00002c8"
        );
    }

    #[test]
    fn unsolicited_na_golden_bytes() {
        // Checksum computed independently (Python, RFC 4443 §2.3) over the
        // pseudo-header 2001:db8::200 → ff02::1, length 32, next header 58.
        let f = unsolicited_na(NODE, "2001:db8::200".parse().unwrap());
        assert_eq!(
            hex(&f),
            [
                "333300000001",
                "020000000011",
                "86dd",
                "60000000",
                "0020",
                "3a",
                "ff",
                "20010db8000000000000000000000200",
                "ff020000000000000000000000000001",
                "88",
                "00",
                "f51c",
                "20000000",
                "20010db8000000000000000000000200",
                "02",
                "01",
                "020000000011",
            ]
            .concat()
        );
    }

    #[test]
    fn na_checksums_verify() {
        let vip: Ipv6Addr = "2001:db8::200".parse().unwrap();
        let asker: Ipv6Addr = "2001:db8::64".parse().unwrap();
        let f = neighbor_advertisement(NODE, vip, CLIENT, asker);
        assert_eq!(&f[..6], &CLIENT);
        assert_eq!(icmpv6_checksum(vip, asker, &f[ETH_LEN + IPV6_LEN..]), 0);
        // Solicited and Override.
        assert_eq!(f[ETH_LEN + IPV6_LEN + 4], 0x60);
        // DAD: to all-nodes, Override only.
        let dad = neighbor_advertisement(NODE, vip, CLIENT, Ipv6Addr::UNSPECIFIED);
        assert_eq!(&dad[..6], &multicast_mac(ALL_NODES));
        assert_eq!(dad[ETH_LEN + IPV6_LEN + 4], 0x20);
        assert_eq!(
            icmpv6_checksum(vip, ALL_NODES, &dad[ETH_LEN + IPV6_LEN..]),
            0
        );
    }

    #[test]
    fn neighbor_solicitations_are_validated() {
        let vip: Ipv6Addr = "2001:db8::200".parse().unwrap();
        let asker: Ipv6Addr = "2001:db8::64".parse().unwrap();
        let good = ns(asker, vip, true, 255);
        assert_eq!(
            parse(&good),
            Some(Question::Ns {
                sender_mac: CLIENT,
                source: asker,
                target: vip
            })
        );
        // Forwarded by a router (hop limit below 255): ignored.
        assert_eq!(parse(&ns(asker, vip, true, 64)), None);
        // Corrupt checksum: ignored.
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(parse(&bad), None);
        // DAD probe: accepted without the option, refused with it.
        assert!(parse(&ns(Ipv6Addr::UNSPECIFIED, vip, false, 255)).is_some());
        assert_eq!(parse(&ns(Ipv6Addr::UNSPECIFIED, vip, true, 255)), None);
        // Our own advertisement is not a question; nor is a truncated one.
        assert_eq!(parse(&unsolicited_na(NODE, vip)), None);
        assert_eq!(parse(&good[..60]), None);
    }
}
