//! The RIB-out: what a session has advertised, and the UPDATEs that turn it
//! into what should be advertised now — only the differences, with every
//! prefix that shares its path attributes packed into as few UPDATEs as
//! the 4096-octet limit allows (RFC 4271 §9.2).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use herald_core::bgp::{Asn, Community, LargeCommunity};
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

/// What [`RibOut::update_to`] produced: the UPDATEs to write and the
/// routes it could not write.
#[derive(Debug, Default)]
pub struct Update {
    /// The UPDATEs, encoded back to back: withdrawals first, then
    /// announcements grouped by attributes.
    pub bytes: Vec<u8>,
    /// The groups that could not be encoded, so were not sent.
    pub skipped: Vec<Skipped>,
}

impl Update {
    /// Whether a route of the family (IPv6 or IPv4) was not sent: the
    /// RIB-out of that family lags behind what is wanted.
    pub fn skipped(&self, ipv6: bool) -> bool {
        self.skipped
            .iter()
            .flat_map(|s| &s.prefixes)
            .any(|p| matches!(p, IpNet::V6(_)) == ipv6)
    }
}

/// A group of prefixes (one family, one attribute set) that could not be
/// encoded: their announcement, or their withdrawal.
#[derive(Debug)]
pub struct Skipped {
    /// The prefixes.
    pub prefixes: Vec<IpNet>,
    /// Whether they were to be withdrawn (otherwise announced).
    pub withdrawal: bool,
    /// Why they could not be encoded.
    pub error: Error,
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
    /// `wanted` (restricted to what the session carries). Each group of
    /// prefixes with one attribute set in one family is encoded whole or
    /// not at all: a group that cannot be (attributes too large for one
    /// UPDATE, say) is reported in [`Update::skipped`] and the others are
    /// sent. Only what is sent is recorded, so a skipped group is tried
    /// again at the next call; until then the peer keeps what it had of
    /// those prefixes (nothing, or their previous attributes).
    pub fn update_to(&mut self, wanted: &Routes, enc: &Encoding) -> Update {
        let mut update = Update::default();
        self.withdraw(wanted, enc, &mut update);
        self.announce(wanted, enc, &mut update);
        update
    }

    /// Withdraws what was sent but is no longer wanted or carried.
    fn withdraw(&mut self, wanted: &Routes, enc: &Encoding, update: &mut Update) {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for prefix in self.sent.keys() {
            if !wanted.contains_key(prefix) || !enc.carries(prefix) {
                match prefix {
                    IpNet::V4(p) => v4.push(*p),
                    IpNet::V6(p) => v6.push(*p),
                }
            }
        }
        let v4_nets: Vec<IpNet> = v4.iter().copied().map(IpNet::V4).collect();
        let v6_nets: Vec<IpNet> = v6.iter().copied().map(IpNet::V6).collect();
        for (prefixes, encoded) in [(v4_nets, withdraw_ipv4(&v4)), (v6_nets, withdraw_ipv6(&v6))] {
            match encoded {
                Ok(bytes) => {
                    update.bytes.extend_from_slice(&bytes);
                    for p in &prefixes {
                        self.sent.remove(p);
                    }
                }
                Err(error) => update.skipped.push(Skipped {
                    prefixes,
                    withdrawal: true,
                    error,
                }),
            }
        }
    }

    /// Announces what is wanted and was not sent as it is, one group of
    /// prefixes per attribute set and family.
    fn announce(&mut self, wanted: &Routes, enc: &Encoding, update: &mut Update) {
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
        for (attrs, (v4, v6)) in groups {
            if let Some(nh) = enc.next_hop_v4
                && !v4.is_empty()
            {
                let prefixes = v4.iter().copied().map(IpNet::V4).collect();
                let encoded = announce_ipv4(attrs, enc, nh, &v4);
                self.record(attrs, prefixes, encoded, update);
            }
            if let Some(nh) = enc.next_hop_v6
                && !v6.is_empty()
            {
                let prefixes = v6.iter().copied().map(IpNet::V6).collect();
                let encoded = announce_ipv6(attrs, enc, nh, &v6);
                self.record(attrs, prefixes, encoded, update);
            }
        }
    }

    /// Takes one group's announcement into `update` and records it as
    /// sent, or reports it skipped.
    fn record(
        &mut self,
        attrs: &Attributes,
        prefixes: Vec<IpNet>,
        encoded: Result<Vec<u8>, Error>,
        update: &mut Update,
    ) {
        match encoded {
            Ok(bytes) => {
                update.bytes.extend_from_slice(&bytes);
                for p in prefixes {
                    self.sent.insert(p, attrs.clone());
                }
            }
            Err(error) => update.skipped.push(Skipped {
                prefixes,
                withdrawal: false,
                error,
            }),
        }
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

/// The UPDATEs that withdraw IPv4 `prefixes` (none when there are none).
fn withdraw_ipv4(prefixes: &[Ipv4Net]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    // Header, withdrawn-routes length, path-attributes length (§4.3).
    let room = MAX_MESSAGE_LEN - wire::HEADER_LEN - 4;
    for chunk in chunks(prefixes, room, |p| nlri_len(p.prefix_len())) {
        let withdrawn = chunk.iter().map(v4).collect::<Result<Vec<_>, _>>()?;
        append(
            &BgpMessage::Update(BgpUpdateMessage::new(withdrawn, Vec::new(), Vec::new())),
            &mut out,
        )?;
    }
    Ok(out)
}

/// The UPDATEs that withdraw IPv6 `prefixes` (none when there are none).
fn withdraw_ipv6(prefixes: &[Ipv6Net]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
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
            &mut out,
        )?;
    }
    Ok(out)
}

fn mp_unreach_v6(nlri: Vec<Ipv6UnicastAddress>) -> Result<PathAttribute, Error> {
    attribute(
        true,
        false,
        true,
        PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri: nlri.into() }),
    )
}

/// The UPDATEs that announce IPv4 `prefixes` with `attrs`: NEXT_HOP and
/// the NLRI field (RFC 4271 §4.3).
fn announce_ipv4(
    attrs: &Attributes,
    enc: &Encoding,
    next_hop: Ipv4Addr,
    prefixes: &[Ipv4Net],
) -> Result<Vec<u8>, Error> {
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
    let update = |nlri| BgpMessage::Update(BgpUpdateMessage::new(Vec::new(), path.clone(), nlri));
    let room = room_for_nlri(&update(Vec::new()), nlri_len(32))?;
    let mut out = Vec::new();
    for chunk in chunks(prefixes, room, |p| nlri_len(p.prefix_len())) {
        let nlri = chunk.iter().map(v4).collect::<Result<Vec<_>, _>>()?;
        append(&update(nlri), &mut out)?;
    }
    Ok(out)
}

/// The UPDATEs that announce IPv6 `prefixes` with `attrs`: MP_REACH_NLRI
/// with a global next hop (RFC 4760 §3, RFC 2545 §3).
fn announce_ipv6(
    attrs: &Attributes,
    enc: &Encoding,
    next_hop: Ipv6Addr,
    prefixes: &[Ipv6Net],
) -> Result<Vec<u8>, Error> {
    let common = common_attributes(attrs, enc)?;
    let update = |nlri: Vec<Ipv6UnicastAddress>| {
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
    let room = room_for_nlri(&update(Vec::new())?, nlri_len(128))?;
    let mut out = Vec::new();
    for chunk in chunks(prefixes, room, |p| nlri_len(p.prefix_len())) {
        let nlri = chunk.iter().map(v6).collect::<Result<Vec<_>, _>>()?;
        append(&update(nlri)?, &mut out)?;
    }
    Ok(out)
}

/// The octets left for prefixes in an UPDATE whose path attributes are
/// those of `empty` (an UPDATE without prefixes); an error when not even
/// one prefix of `longest` octets fits.
fn room_for_nlri(empty: &BgpMessage, longest: usize) -> Result<usize, Error> {
    let octets = wire::encoded_len(empty)?;
    if octets + longest > MAX_MESSAGE_LEN {
        return Err(Error::TooLarge { octets });
    }
    Ok(MAX_MESSAGE_LEN - octets)
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
    // Lists that could never fit (the API bounds them well below this) are
    // refused before netgauze would have to write a length over 16 bits.
    let community_octets = 4 * attrs.communities.len() + 12 * attrs.large_communities.len();
    if community_octets > MAX_MESSAGE_LEN {
        return Err(Error::TooLarge {
            octets: community_octets,
        });
    }
    let mut out = vec![attribute(
        false,
        true,
        false,
        PathAttributeValue::Origin(Origin::IGP),
    )?];
    out.extend(as_path(enc, attrs.as_path_prepend)?);
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
        out.push(communities(&attrs.communities)?);
    }
    if let Some(weight) = attrs.weight {
        out.push(link_bandwidth(enc.local_asn, weight)?);
    }
    if !attrs.large_communities.is_empty() {
        out.push(large_communities(&attrs.large_communities)?);
    }
    Ok(out)
}

/// AS_PATH, and AS4_PATH where a 2-octet session needs it. eBGP: our ASN
/// once (RFC 4271 §5.1.2) plus the prepends. iBGP: an empty AS_PATH,
/// prepends ignored: our ASN is the router's own, and BIRD, GoBGP and FRR
/// all drop a route carrying it as an AS loop.
fn as_path(enc: &Encoding, prepend: u8) -> Result<Vec<PathAttribute>, Error> {
    let asn = enc.local_asn.get();
    let copies = if enc.ebgp {
        1 + usize::from(prepend)
    } else {
        0
    };
    let sequence = |asns: Vec<u32>| As4PathSegment::new(AsPathSegmentType::AsSequence, asns);
    let as_path = if enc.asn4 {
        let segments = if copies == 0 {
            Vec::new()
        } else {
            vec![sequence(vec![asn; copies])]
        };
        AsPath::As4PathSegments(segments.into())
    } else {
        // A 2-octet session: a 4-octet ASN is written AS_TRANS, and the
        // real path travels in AS4_PATH (RFC 6793 §4.2.2).
        let two = u16::try_from(asn).unwrap_or(Asn::AS_TRANS as u16);
        let segments = if copies == 0 {
            Vec::new()
        } else {
            vec![As2PathSegment::new(
                AsPathSegmentType::AsSequence,
                vec![two; copies],
            )]
        };
        AsPath::As2PathSegments(segments.into())
    };
    let mut out = vec![attribute(
        false,
        true,
        false,
        PathAttributeValue::AsPath(as_path),
    )?];
    if !enc.asn4 && asn > u32::from(u16::MAX) && copies > 0 {
        out.push(attribute(
            true,
            true,
            false,
            PathAttributeValue::As4Path(As4Path::new(vec![sequence(vec![asn; copies])])),
        )?);
    }
    Ok(out)
}

/// COMMUNITIES (RFC 1997), with an extended length when over 255 octets.
fn communities(list: &[Community]) -> Result<PathAttribute, Error> {
    let list: Vec<_> = list
        .iter()
        .map(|c| ng_community::Community::new(c.0))
        .collect();
    let long = list.len() * 4 > 255;
    attribute(
        true,
        true,
        long,
        PathAttributeValue::Communities(Communities::new(list)),
    )
}

/// LARGE_COMMUNITY (RFC 8092), with an extended length when over 255
/// octets.
fn large_communities(list: &[LargeCommunity]) -> Result<PathAttribute, Error> {
    let list: Vec<_> = list
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
    attribute(
        true,
        true,
        long,
        PathAttributeValue::LargeCommunities(LargeCommunities::new(list)),
    )
}

/// Link bandwidth: a non-transitive two-octet-AS extended community, type
/// 0x40 subtype 0x04, the bandwidth in octets per second as an IEEE float
/// (draft-ietf-idr-link-bandwidth §2). A 4-octet ASN is written AS_TRANS:
/// receivers use only the value.
fn link_bandwidth(local_asn: Asn, weight: u32) -> Result<PathAttribute, Error> {
    #[allow(clippy::cast_precision_loss)]
    let bandwidth = weight.min(MAX_LINK_BANDWIDTH_WEIGHT) as f32 * BANDWIDTH_PER_WEIGHT;
    let global_admin = u16::try_from(local_asn.get()).unwrap_or(Asn::AS_TRANS as u16);
    attribute(
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
    )
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
