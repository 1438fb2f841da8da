//! The RIB-out: what a session has advertised, and the UPDATEs that turn it
//! into what should be advertised now — only the differences, with every
//! prefix that shares its path attributes packed into as few UPDATEs as
//! the 4096-octet limit allows (RFC 4271 §9.2).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use herald_core::bgp::Asn;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::community::{
    self as ng_community, ExtendedCommunity, NonTransitiveTwoOctetExtendedCommunity,
};
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::{
    As2PathSegment, As4Path, As4PathSegment, AsPath, AsPathSegmentType, Communities,
    ExtendedCommunities, LargeCommunities, LocalPreference, MpReach, MpUnreach,
    MultiExitDiscriminator, NextHop, Origin, PathAttribute, PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;

use crate::Error;
use crate::wire::{self, MAX_MESSAGE_LEN};

/// The LOCAL_PREF sent to iBGP peers when the advertisement sets none:
/// the customary default (RFC 4271 §5.1.5 requires the attribute on iBGP).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// Octets per second that one unit of weight stands for in the
/// link-bandwidth extended community: 1 Mbit/s. Receivers only compare the
/// values, so the unit is free, but not its range: FRR reads the value into
/// 32 bits of octets per second, so anything above 4,294,967,295 wraps
/// (seen with 1 Gbit/s units: weights 100 and 300 reached the kernel as
/// 55:44). At 1 Mbit/s a weight up to [`MAX_LINK_BANDWIDTH_WEIGHT`] fits.
pub const BANDWIDTH_PER_WEIGHT: f32 = 125_000.0;

/// The largest weight sent as it is (`u32::MAX` octets/s over
/// [`BANDWIDTH_PER_WEIGHT`]); larger weights are sent as this one.
pub const MAX_LINK_BANDWIDTH_WEIGHT: u32 = 34_359;

/// The path attributes of one route: the core's type, the one the
/// announcement plan fills in. A weight is sent in units of
/// [`BANDWIDTH_PER_WEIGHT`].
pub use herald_core::bgp::RouteAttributes as Attributes;

/// The routes one session should advertise: prefix to attributes.
pub type Routes = BTreeMap<IpNet, Attributes>;

/// What a session needs to know to write UPDATEs: fixed once it is
/// Established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoding {
    /// Our ASN.
    pub local_asn: Asn,
    /// External session (the ASNs differ): AS_PATH starts with our ASN and
    /// LOCAL_PREF is not sent.
    pub ebgp: bool,
    /// Both sides sent the 4-octet ASN capability (RFC 6793).
    pub asn4: bool,
    /// NEXT_HOP for IPv4 routes (next hop self); `None` withholds IPv4
    /// routes (for example on an IPv6 session of a node without IPv4).
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes; `None` withholds IPv6 routes.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// IPv4 unicast was negotiated.
    pub ipv4: bool,
    /// IPv6 unicast was negotiated (RFC 4760).
    pub ipv6: bool,
}

impl Encoding {
    /// Whether `prefix` may be sent on this session.
    pub fn carries(&self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(_) => self.ipv4 && self.next_hop_v4.is_some(),
            IpNet::V6(_) => self.ipv6 && self.next_hop_v6.is_some(),
        }
    }
}

/// What one session has advertised.
#[derive(Debug, Default)]
pub struct RibOut {
    sent: Routes,
}

impl RibOut {
    /// An empty RIB-out: a new session has advertised nothing.
    pub fn new() -> RibOut {
        RibOut::default()
    }

    /// The routes advertised so far.
    pub fn sent(&self) -> &Routes {
        &self.sent
    }

    /// Forgets what was sent of one family, so that the next
    /// [`RibOut::update_to`] sends all of it again (route refresh, RFC 2918
    /// §4).
    pub fn forget(&mut self, ipv6: bool) {
        self.sent.retain(|p, _| matches!(p, IpNet::V6(_)) != ipv6);
    }

    /// The UPDATEs (encoded) that bring the peer from what was sent to
    /// `wanted`, and records `wanted` (restricted to what the session
    /// carries) as sent. Withdrawals come first, then announcements grouped
    /// by attributes.
    pub fn update_to(&mut self, wanted: &Routes, enc: &Encoding) -> Result<Vec<u8>, Error> {
        let mut withdraw_v4 = Vec::new();
        let mut withdraw_v6 = Vec::new();
        for prefix in self.sent.keys() {
            if !wanted.contains_key(prefix) || !enc.carries(prefix) {
                match prefix {
                    IpNet::V4(p) => withdraw_v4.push(*p),
                    IpNet::V6(p) => withdraw_v6.push(*p),
                }
            }
        }
        let mut groups: BTreeMap<&Attributes, (Vec<Ipv4Net>, Vec<Ipv6Net>)> = BTreeMap::new();
        for (prefix, attrs) in wanted {
            if !enc.carries(prefix) || self.sent.get(prefix) == Some(attrs) {
                continue;
            }
            let group = groups.entry(attrs).or_default();
            match prefix {
                IpNet::V4(p) => group.0.push(*p),
                IpNet::V6(p) => group.1.push(*p),
            }
        }
        let mut out = Vec::new();
        withdraw_ipv4(&withdraw_v4, &mut out)?;
        withdraw_ipv6(&withdraw_v6, &mut out)?;
        for (attrs, (v4, v6)) in &groups {
            if let Some(nh) = enc.next_hop_v4 {
                announce_ipv4(attrs, enc, nh, v4, &mut out)?;
            }
            if let Some(nh) = enc.next_hop_v6 {
                announce_ipv6(attrs, enc, nh, v6, &mut out)?;
            }
        }
        self.sent = wanted
            .iter()
            .filter(|(p, _)| enc.carries(p))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        Ok(out)
    }
}

/// The End-of-RIB marker of a family (RFC 4724 §2): an empty UPDATE for
/// IPv4 unicast, an empty MP_UNREACH_NLRI for the others.
pub fn end_of_rib(ipv6: bool) -> Result<BgpMessage, Error> {
    let attributes = if ipv6 {
        vec![mp_unreach_v6(Vec::new())?]
    } else {
        Vec::new()
    };
    Ok(BgpMessage::Update(BgpUpdateMessage::new(
        Vec::new(),
        attributes,
        Vec::new(),
    )))
}

/// Octets an NLRI takes: length octet and the significant prefix octets
/// (RFC 4271 §4.3).
fn nlri_len(prefix_len: u8) -> usize {
    1 + usize::from(prefix_len).div_ceil(8)
}

/// Splits `prefixes` into chunks whose NLRI fit in `room` octets each.
fn chunks<P: Copy>(prefixes: &[P], room: usize, len: impl Fn(&P) -> usize) -> Vec<Vec<P>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for p in prefixes {
        let l = len(p);
        if used + l > room && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(*p);
        used += l;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn v4(p: &Ipv4Net) -> Result<Ipv4UnicastAddress, Error> {
    let net = Ipv4Unicast::from_net(*p).map_err(|e| Error::Encode(format!("{p}: {e:?}")))?;
    Ok(Ipv4UnicastAddress::new_no_path_id(net))
}

fn v6(p: &Ipv6Net) -> Result<Ipv6UnicastAddress, Error> {
    let net = Ipv6Unicast::from_net(*p).map_err(|e| Error::Encode(format!("{p}: {e:?}")))?;
    Ok(Ipv6UnicastAddress::new(None, net))
}

fn append(message: &BgpMessage, out: &mut Vec<u8>) -> Result<(), Error> {
    out.extend_from_slice(&wire::encode(message)?);
    Ok(())
}

fn withdraw_ipv4(prefixes: &[Ipv4Net], out: &mut Vec<u8>) -> Result<(), Error> {
    // Header, withdrawn-routes length, path-attributes length (§4.3).
    let room = MAX_MESSAGE_LEN - wire::HEADER_LEN - 4;
    for chunk in chunks(prefixes, room, |p| nlri_len(p.prefix_len())) {
        let withdrawn = chunk.iter().map(v4).collect::<Result<Vec<_>, _>>()?;
        append(
            &BgpMessage::Update(BgpUpdateMessage::new(withdrawn, Vec::new(), Vec::new())),
            out,
        )?;
    }
    Ok(())
}

fn withdraw_ipv6(prefixes: &[Ipv6Net], out: &mut Vec<u8>) -> Result<(), Error> {
    // Header, two length fields, the attribute header with extended length
    // (4) and AFI/SAFI (3).
    let room = MAX_MESSAGE_LEN - wire::HEADER_LEN - 4 - 4 - 3;
    for chunk in chunks(prefixes, room, |p| nlri_len(p.prefix_len())) {
        let nlri = chunk.iter().map(v6).collect::<Result<Vec<_>, _>>()?;
        append(
            &BgpMessage::Update(BgpUpdateMessage::new(
                Vec::new(),
                vec![mp_unreach_v6(nlri)?],
                Vec::new(),
            )),
            out,
        )?;
    }
    Ok(())
}

fn mp_unreach_v6(nlri: Vec<Ipv6UnicastAddress>) -> Result<PathAttribute, Error> {
    attribute(
        true,
        false,
        true,
        PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri: nlri.into() }),
    )
}

fn announce_ipv4(
    attrs: &Attributes,
    enc: &Encoding,
    next_hop: Ipv4Addr,
    prefixes: &[Ipv4Net],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if prefixes.is_empty() {
        return Ok(());
    }
    let mut path = common_attributes(attrs, enc)?;
    path.insert(
        2,
        attribute(
            false,
            true,
            false,
            PathAttributeValue::NextHop(NextHop::new(next_hop)),
        )?,
    );
    let base = wire::encode(&BgpMessage::Update(BgpUpdateMessage::new(
        Vec::new(),
        path.clone(),
        Vec::new(),
    )))?
    .len();
    let room = MAX_MESSAGE_LEN.saturating_sub(base);
    if room < nlri_len(32) {
        return Err(Error::Encode(format!(
            "the path attributes take {base} octets: no room for any prefix"
        )));
    }
    for chunk in chunks(prefixes, room, |p| nlri_len(p.prefix_len())) {
        let nlri = chunk.iter().map(v4).collect::<Result<Vec<_>, _>>()?;
        append(
            &BgpMessage::Update(BgpUpdateMessage::new(Vec::new(), path.clone(), nlri)),
            out,
        )?;
    }
    Ok(())
}

fn announce_ipv6(
    attrs: &Attributes,
    enc: &Encoding,
    next_hop: Ipv6Addr,
    prefixes: &[Ipv6Net],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if prefixes.is_empty() {
        return Ok(());
    }
    let common = common_attributes(attrs, enc)?;
    let with = |nlri: Vec<Ipv6UnicastAddress>| {
        let reach = attribute(
            true,
            false,
            true,
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                next_hop_global: next_hop,
                next_hop_local: None,
                nlri: nlri.into(),
            }),
        )?;
        let mut path = vec![reach];
        path.extend(common.iter().cloned());
        Ok::<_, Error>(BgpMessage::Update(BgpUpdateMessage::new(
            Vec::new(),
            path,
            Vec::new(),
        )))
    };
    let base = wire::encode(&with(Vec::new())?)?.len();
    let room = MAX_MESSAGE_LEN.saturating_sub(base);
    if room < nlri_len(128) {
        return Err(Error::Encode(format!(
            "the path attributes take {base} octets: no room for any prefix"
        )));
    }
    for chunk in chunks(prefixes, room, |p| nlri_len(p.prefix_len())) {
        let nlri = chunk.iter().map(v6).collect::<Result<Vec<_>, _>>()?;
        append(&with(nlri)?, out)?;
    }
    Ok(())
}

/// A path attribute with the flags RFC 4271 §4.3 gives it (netgauze
/// checks them against the attribute type).
fn attribute(
    optional: bool,
    transitive: bool,
    extended_length: bool,
    value: PathAttributeValue,
) -> Result<PathAttribute, Error> {
    PathAttribute::from(optional, transitive, false, extended_length, value)
        .map_err(|(value, e)| Error::Encode(format!("path attribute {value:?}: {e:?}")))
}

/// ORIGIN, AS_PATH (and AS4_PATH), then MED, LOCAL_PREF and the
/// communities, in type-code order as RFC 4271 §5 suggests. NEXT_HOP or
/// MP_REACH_NLRI are added by the caller.
fn common_attributes(attrs: &Attributes, enc: &Encoding) -> Result<Vec<PathAttribute>, Error> {
    let asn = enc.local_asn.get();
    // eBGP: our ASN once (RFC 4271 §5.1.2) plus the prepends. iBGP: an
    // empty AS_PATH, prepends ignored: our ASN is the router's own, and
    // BIRD, GoBGP and FRR all drop a route carrying it as an AS loop.
    let copies = if enc.ebgp {
        1 + usize::from(attrs.as_path_prepend)
    } else {
        0
    };
    let mut out = vec![attribute(
        false,
        true,
        false,
        PathAttributeValue::Origin(Origin::IGP),
    )?];
    let segments = |n: usize| -> Vec<u32> { vec![asn; n] };
    let as_path = if enc.asn4 {
        let segs = if copies == 0 {
            Vec::new()
        } else {
            vec![As4PathSegment::new(
                AsPathSegmentType::AsSequence,
                segments(copies),
            )]
        };
        AsPath::As4PathSegments(segs.into())
    } else {
        // A 2-octet session: a 4-octet ASN is written AS_TRANS, and the
        // real path travels in AS4_PATH (RFC 6793 §4.2.2).
        let two = u16::try_from(asn).unwrap_or(Asn::AS_TRANS as u16);
        let segs = if copies == 0 {
            Vec::new()
        } else {
            vec![As2PathSegment::new(
                AsPathSegmentType::AsSequence,
                vec![two; copies],
            )]
        };
        AsPath::As2PathSegments(segs.into())
    };
    out.push(attribute(
        false,
        true,
        false,
        PathAttributeValue::AsPath(as_path),
    )?);
    if !enc.asn4 && asn > u32::from(u16::MAX) && copies > 0 {
        out.push(attribute(
            true,
            true,
            false,
            PathAttributeValue::As4Path(As4Path::new(vec![As4PathSegment::new(
                AsPathSegmentType::AsSequence,
                segments(copies),
            )])),
        )?);
    }
    if let Some(med) = attrs.med {
        out.push(attribute(
            true,
            false,
            false,
            PathAttributeValue::MultiExitDiscriminator(MultiExitDiscriminator::new(med)),
        )?);
    }
    if !enc.ebgp {
        out.push(attribute(
            false,
            true,
            false,
            PathAttributeValue::LocalPreference(LocalPreference::new(
                attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF),
            )),
        )?);
    }
    if !attrs.communities.is_empty() {
        let list: Vec<_> = attrs
            .communities
            .iter()
            .map(|c| ng_community::Community::new(c.0))
            .collect();
        let long = list.len() * 4 > 255;
        out.push(attribute(
            true,
            true,
            long,
            PathAttributeValue::Communities(Communities::new(list)),
        )?);
    }
    if let Some(weight) = attrs.weight {
        // Link bandwidth: non-transitive two-octet-AS extended community,
        // type 0x40 subtype 0x04, the bandwidth in octets per second as an
        // IEEE float (draft-ietf-idr-link-bandwidth §2). A 4-octet ASN is
        // written AS_TRANS: receivers use only the value.
        #[allow(clippy::cast_precision_loss)]
        let bandwidth = weight.min(MAX_LINK_BANDWIDTH_WEIGHT) as f32 * BANDWIDTH_PER_WEIGHT;
        let global_admin = u16::try_from(asn).unwrap_or(Asn::AS_TRANS as u16);
        out.push(attribute(
            true,
            true,
            false,
            PathAttributeValue::ExtendedCommunities(ExtendedCommunities::new(vec![
                ExtendedCommunity::NonTransitiveTwoOctet(
                    NonTransitiveTwoOctetExtendedCommunity::LinkBandwidth {
                        global_admin,
                        local_admin: bandwidth.to_bits(),
                    },
                ),
            ])),
        )?);
    }
    if !attrs.large_communities.is_empty() {
        let list: Vec<_> = attrs
            .large_communities
            .iter()
            .map(|c| {
                ng_community::LargeCommunity::new(
                    c.global_administrator,
                    c.local_data_1,
                    c.local_data_2,
                )
            })
            .collect();
        let long = list.len() * 12 > 255;
        out.push(attribute(
            true,
            true,
            long,
            PathAttributeValue::LargeCommunities(LargeCommunities::new(list)),
        )?);
    }
    Ok(out)
}

/// The prefix a VIP is advertised as: `addr/len` with the host bits
/// cleared.
pub fn prefix(addr: IpAddr, len: u8) -> Result<IpNet, Error> {
    IpNet::new(addr, len)
        .map(|n| n.trunc())
        .map_err(|_| Error::Encode(format!("{addr}/{len} is not a prefix")))
}

#[cfg(test)]
mod tests;
