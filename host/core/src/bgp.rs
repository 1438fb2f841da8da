//! BGP peers and advertisements as the speaker and the announcement planner
//! see them: validated AS numbers, session timers, communities (RFC 1997 and
//! its well-known values) and large communities (RFC 8092).
//!
//! Everything here is already valid: `host/api` checks each field once and
//! builds these types; the speaker never second-guesses them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use crate::addr::Family;
use crate::selector::LabelSelector;

/// The TCP port a BGP speaker listens on (RFC 4271 §2).
pub const BGP_PORT: u16 = 179;

/// Default hold time in seconds: the value RFC 4271 §10 suggests.
pub const DEFAULT_HOLD_TIME: u16 = 90;

/// The shortest non-zero hold time: RFC 4271 §4.2 allows zero (no
/// keepalives at all) or at least three seconds.
pub const MIN_HOLD_TIME: u16 = 3;

/// The keepalive interval is this fraction of the hold time unless set:
/// "one third of the Hold Time interval" (RFC 4271 §4.4, §10).
pub const KEEPALIVE_DIVISOR: u16 = 3;

/// Default connect-retry time in seconds (`ConnectRetryTime`, the value
/// RFC 4271 §10 suggests).
pub const DEFAULT_CONNECT_TIME: u16 = 120;

/// The most own-ASN prepends an advertisement may ask for. A handful already
/// makes a path the least preferred one; longer paths buy nothing and many
/// networks filter routes with long AS_PATHs.
pub const MAX_AS_PATH_PREPEND: u8 = 10;

/// The most communities (RFC 1997) one route may carry, and
/// [`MAX_LARGE_COMMUNITIES`] the most large ones (RFC 8092): with both lists
/// full, every other attribute at its largest and one prefix, the route
/// still fits one UPDATE of 4,096 octets (RFC 4271 §4.1; Herald does not
/// negotiate RFC 8654's extended messages). The worst case beside the two
/// lists is [`UPDATE_OCTETS_BESIDE_COMMUNITIES`]; each community takes 4
/// octets and each large community 12, so 500 × 4 + 150 × 12 = 3,800 of
/// the 3,918 octets left. A route beyond them could not be sent at all.
pub const MAX_COMMUNITIES: usize = 500;

/// The most large communities one route may carry: see
/// [`MAX_COMMUNITIES`].
pub const MAX_LARGE_COMMUNITIES: usize = 150;

/// The octets of one UPDATE that everything but the community values can
/// take at most (RFC 4271 §4.3, RFC 4760, RFC 6793):
///
/// | part | octets |
/// |---|---|
/// | header (19), withdrawn-routes length (2), attributes length (2) | 23 |
/// | ORIGIN | 4 |
/// | AS_PATH with 2-octet ASNs (AS_TRANS) and AS4_PATH, each our ASN 1 + [`MAX_AS_PATH_PREPEND`] times | 27 + 49 |
/// | MP_REACH_NLRI with a global IPv6 next hop and one /128 | 42 |
/// | MULTI_EXIT_DISC, LOCAL_PREF | 7 + 7 |
/// | link bandwidth (one extended community) | 11 |
/// | COMMUNITIES and LARGE_COMMUNITY headers (extended length) | 4 + 4 |
///
/// (An IPv4 route takes 12 octets of NEXT_HOP and NLRI instead of 42, and
/// LOCAL_PREF goes to iBGP peers only, whose AS_PATH is empty: the sum is
/// above any real route.)
pub const UPDATE_OCTETS_BESIDE_COMMUNITIES: usize = 23 + 4 + 27 + 49 + 42 + 7 + 7 + 11 + 4 + 4;

/// The largest BGP message Herald sends (RFC 4271 §4.1).
const MAX_UPDATE_LEN: usize = 4096;

const _: () = assert!(
    UPDATE_OCTETS_BESIDE_COMMUNITIES + 4 * MAX_COMMUNITIES + 12 * MAX_LARGE_COMMUNITIES
        <= MAX_UPDATE_LEN,
    "the community limits must leave every route room in one UPDATE"
);

/// Checks the sizes of a route's community lists against
/// [`MAX_COMMUNITIES`] and [`MAX_LARGE_COMMUNITIES`]: the API checks an
/// advertisement's lists with it, the host an announcer plugin's answer,
/// and the planner the merge of both.
pub fn check_community_counts(
    communities: usize,
    large_communities: usize,
) -> Result<(), TooManyCommunities> {
    if communities > MAX_COMMUNITIES {
        return Err(TooManyCommunities::Communities { count: communities });
    }
    if large_communities > MAX_LARGE_COMMUNITIES {
        return Err(TooManyCommunities::LargeCommunities {
            count: large_communities,
        });
    }
    Ok(())
}

/// A route with more communities than one UPDATE holds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TooManyCommunities {
    /// Over [`MAX_COMMUNITIES`].
    #[error(
        "{count} communities; at most {MAX_COMMUNITIES} fit in one BGP UPDATE beside the other path attributes"
    )]
    Communities {
        /// How many there are.
        count: usize,
    },
    /// Over [`MAX_LARGE_COMMUNITIES`].
    #[error(
        "{count} large communities; at most {MAX_LARGE_COMMUNITIES} fit in one BGP UPDATE beside the other path attributes"
    )]
    LargeCommunities {
        /// How many there are.
        count: usize,
    },
}

/// The longest TCP MD5 signature key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`,
/// the option behind RFC 2385 session passwords).
pub const TCP_MD5_MAX_KEY_LEN: usize = 80;

/// A BGP autonomous system number (4 octets, RFC 6793), never one of the
/// values the protocol reserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asn(u32);

impl Asn {
    /// `AS_TRANS`, the 2-octet stand-in for a 4-octet ASN on sessions with
    /// old speakers (RFC 6793); no network may use it as its own.
    pub const AS_TRANS: u32 = 23456;

    /// Checks that `value` may be used as an ASN: not 0 (RFC 7607) and not
    /// `AS_TRANS` (RFC 6793).
    pub fn new(value: u32) -> Result<Asn, AsnError> {
        match value {
            0 => Err(AsnError::Zero),
            Asn::AS_TRANS => Err(AsnError::AsTrans),
            _ => Ok(Asn(value)),
        }
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Asn {
    type Err = AsnError;

    /// Parses a plain decimal ASN (`4200000001`); the `asdot` notation
    /// (`64086.59904`) is not accepted.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let not_a_number = || AsnError::NotANumber {
            text: text.to_owned(),
        };
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_a_number());
        }
        Asn::new(text.parse().map_err(|_| not_a_number())?)
    }
}

/// Why a number is not a usable ASN.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsnError {
    /// ASN 0 is reserved and must not appear in BGP (RFC 7607).
    #[error("ASN 0 is reserved and may not be used (RFC 7607); ASNs run from 1 to 4294967295")]
    Zero,
    /// ASN 23456 is `AS_TRANS` (RFC 6793).
    #[error(
        "ASN 23456 is AS_TRANS, the stand-in for 4-byte ASNs on old sessions, and may not be used (RFC 6793)"
    )]
    AsTrans,
    /// Not a decimal number of at most 32 bits.
    #[error("{text:?} is not an ASN: write a number from 1 to 4294967295")]
    NotANumber {
        /// The text as written.
        text: String,
    },
}

/// A BGP community (RFC 1997): 16 bits of ASN and 16 bits of local value,
/// or one of the well-known values.
///
/// Written `64512:100`, or by name (`NO_EXPORT`); [`Display`](fmt::Display)
/// prints the name of a well-known value and `ASN:VALUE` otherwise, and
/// [`FromStr`] reads both back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl Community {
    /// Planned graceful shutdown of a session: lower the route's preference
    /// (RFC 8326).
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);
    /// Accept the route even though it carries the receiver's own
    /// originator (RFC 7611).
    pub const ACCEPT_OWN: Community = Community(0xFFFF_0001);
    /// A stale route kept by long-lived graceful restart (RFC 9494).
    pub const LLGR_STALE: Community = Community(0xFFFF_0006);
    /// Do not keep the route under long-lived graceful restart (RFC 9494).
    pub const NO_LLGR: Community = Community(0xFFFF_0007);
    /// Drop traffic to this destination (RFC 7999).
    pub const BLACKHOLE: Community = Community(0xFFFF_029A);
    /// Do not advertise outside the AS or confederation (RFC 1997).
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    /// Do not advertise to any peer (RFC 1997).
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    /// Do not advertise to eBGP peers, confederation members included
    /// (RFC 1997).
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);
    /// Do not advertise to bilateral peers (RFC 3765).
    pub const NO_PEER: Community = Community(0xFFFF_FF04);

    /// The well-known communities by the names users write.
    pub const WELL_KNOWN: [(&'static str, Community); 9] = [
        ("GRACEFUL_SHUTDOWN", Community::GRACEFUL_SHUTDOWN),
        ("ACCEPT_OWN", Community::ACCEPT_OWN),
        ("LLGR_STALE", Community::LLGR_STALE),
        ("NO_LLGR", Community::NO_LLGR),
        ("BLACKHOLE", Community::BLACKHOLE),
        ("NO_EXPORT", Community::NO_EXPORT),
        ("NO_ADVERTISE", Community::NO_ADVERTISE),
        ("NO_EXPORT_SUBCONFED", Community::NO_EXPORT_SUBCONFED),
        ("NO_PEER", Community::NO_PEER),
    ];

    /// The community `asn:value`.
    pub fn new(asn: u16, value: u16) -> Community {
        Community(u32::from(asn) << 16 | u32::from(value))
    }

    /// The high 16 bits: by convention the ASN that defines the community.
    pub fn asn(self) -> u16 {
        // Cannot truncate: the shift leaves 16 bits.
        (self.0 >> 16) as u16
    }

    /// The low 16 bits: the value the ASN defines.
    pub fn value(self) -> u16 {
        // Truncation is the point: the low 16 bits.
        self.0 as u16
    }

    /// The name of a well-known community.
    pub fn name(self) -> Option<&'static str> {
        Community::WELL_KNOWN
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(name, _)| *name)
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}:{}", self.asn(), self.value()),
        }
    }
}

impl FromStr for Community {
    type Err = CommunityError;

    /// Parses `64512:100` (two decimal numbers up to 65535) or a well-known
    /// name (`NO_EXPORT`, exactly as in [`Community::WELL_KNOWN`]).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Some((_, community)) = Community::WELL_KNOWN.iter().find(|(n, _)| *n == text) {
            return Ok(*community);
        }
        let malformed = || CommunityError::NotACommunity {
            text: text.to_owned(),
        };
        let Some((asn, value)) = text.split_once(':') else {
            return Err(malformed());
        };
        let asn = number(text, asn, "ASN part", u64::from(u16::MAX), malformed).map_err(|e| {
            // A 4-byte ASN is a common slip: say what to write instead.
            match e {
                CommunityError::OutOfRange { value, .. } if value.parse::<u32>().is_ok() => {
                    CommunityError::FourByteAsn {
                        text: text.to_owned(),
                        asn: value,
                    }
                }
                other => other,
            }
        })?;
        let value = number(text, value, "value part", u64::from(u16::MAX), malformed)?;
        // Both fit: `number` checked them against u16::MAX.
        Ok(Community::new(asn as u16, value as u16))
    }
}

/// A BGP large community (RFC 8092): a 4-octet global administrator (an
/// ASN) and two 4-octet local data parts, written `4200000001:1:2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity {
    /// The ASN that defines the community ("Global Administrator").
    pub global_administrator: u32,
    /// "Local Data Part 1".
    pub local_data_1: u32,
    /// "Local Data Part 2".
    pub local_data_2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.global_administrator, self.local_data_1, self.local_data_2
        )
    }
}

impl FromStr for LargeCommunity {
    type Err = CommunityError;

    /// Parses `GLOBAL:LOCAL1:LOCAL2`, three decimal numbers up to 4294967295.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || CommunityError::NotALargeCommunity {
            text: text.to_owned(),
        };
        let mut parts = text.split(':');
        let (Some(global), Some(local_1), Some(local_2), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let max = u64::from(u32::MAX);
        // Each fits: `number` checked it against u32::MAX.
        Ok(LargeCommunity {
            global_administrator: number(text, global, "global administrator", max, malformed)?
                as u32,
            local_data_1: number(text, local_1, "local data part 1", max, malformed)? as u32,
            local_data_2: number(text, local_2, "local data part 2", max, malformed)? as u32,
        })
    }
}

/// One decimal part of a community: digits only (no sign, no spaces), at
/// most `max`.
fn number(
    text: &str,
    digits: &str,
    part: &'static str,
    max: u64,
    malformed: impl Fn() -> CommunityError,
) -> Result<u64, CommunityError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    match digits.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        // Over `max`, or too many digits for a u64.
        _ => Err(CommunityError::OutOfRange {
            text: text.to_owned(),
            part,
            value: digits.to_owned(),
            max,
        }),
    }
}

/// Why a community or a large community does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommunityError {
    /// Neither `ASN:VALUE` nor a well-known name.
    #[error(
        "{text:?} is not a community: write ASN:VALUE (64512:100) or one of {}",
        well_known_names()
    )]
    NotACommunity {
        /// The text as written.
        text: String,
    },
    /// Not three numbers separated by colons.
    #[error("{text:?} is not a large community: write GLOBAL:LOCAL1:LOCAL2 (4200000001:1:2)")]
    NotALargeCommunity {
        /// The text as written.
        text: String,
    },
    /// A standard community whose ASN part needs 4 bytes.
    #[error(
        "{text:?}: ASN {asn} does not fit the 2-byte ASN part of a community (at most 65535); write a large community ({asn}:X:Y) instead"
    )]
    FourByteAsn {
        /// The text as written.
        text: String,
        /// The ASN part as written.
        asn: String,
    },
    /// A part larger than its field holds.
    #[error("{text:?}: the {part} {value} is over {max}")]
    OutOfRange {
        /// The text as written.
        text: String,
        /// Which part (`ASN part`, `local data part 1`…).
        part: &'static str,
        /// The part as written.
        value: String,
        /// The largest value the part holds.
        max: u64,
    },
}

fn well_known_names() -> String {
    let names: Vec<&str> = Community::WELL_KNOWN.iter().map(|(n, _)| *n).collect();
    names.join(", ")
}

/// Where a BGP session's TCP MD5 password comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    /// A key of a Secret (`passwordSecret`), read when the session starts.
    Secret(SecretKeyRef),
    /// Written in the manifest (`password`; standalone mode only). At most
    /// [`TCP_MD5_MAX_KEY_LEN`] bytes.
    Inline(String),
}

/// Keeps inline passwords out of logs and error messages.
impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::Secret(secret) => f.debug_tuple("Secret").field(secret).finish(),
            Password::Inline(_) => f.write_str("Inline(<redacted>)"),
        }
    }
}

/// TCP MD5 passwords read from the Secrets that `passwordSecret`s name
/// (the speaker on the API), by reference: each the password, or why there
/// is none (one line naming the Secret and key). Its `Debug` shows no
/// password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretPasswords(std::collections::BTreeMap<SecretKeyRef, Result<String, String>>);

impl SecretPasswords {
    /// Records what was read for `key`.
    pub fn insert(&mut self, key: SecretKeyRef, value: Result<String, String>) {
        self.0.insert(key, value);
    }

    /// What was read for `key`; `None` when it was never looked up.
    pub fn get(&self, key: &SecretKeyRef) -> Option<&Result<String, String>> {
        self.0.get(key)
    }
}

impl fmt::Debug for SecretPasswords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = match v {
                    Ok(_) => "<redacted>",
                    Err(e) => e.as_str(),
                };
                (k, shown)
            }))
            .finish()
    }
}

/// A key of a namespaced Secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretKeyRef {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The key within the Secret's data.
    pub key: String,
}

/// A validated `BGPPeer`: one BGP session that selected nodes open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpPeer {
    /// `metadata.name`: what advertisements list in `peers`.
    pub name: String,
    /// `peerAddress`: the router's address.
    pub peer_address: IpAddr,
    /// `peerASN`.
    pub peer_asn: Asn,
    /// `myASN`: the nodes' ASN on this session.
    pub my_asn: Asn,
    /// `peerPort` (default [`BGP_PORT`]).
    pub peer_port: u16,
    /// `sourceAddress`: the local address to connect from (same family as
    /// the peer); `None` lets the kernel choose.
    pub source_address: Option<IpAddr>,
    /// `routerID`: the BGP Identifier (non-zero, RFC 6286); `None` lets the
    /// speaker use the node's IPv4 address.
    pub router_id: Option<Ipv4Addr>,
    /// `holdTime` in seconds: 0 (no keepalives) or
    /// [`MIN_HOLD_TIME`]`..=65535` (default [`DEFAULT_HOLD_TIME`]).
    pub hold_time: u16,
    /// `keepaliveTime` in seconds: below the hold time, or 0 when the hold
    /// time is 0 (default: the hold time / [`KEEPALIVE_DIVISOR`]).
    pub keepalive_time: u16,
    /// `connectTime`: seconds between connection attempts (default
    /// [`DEFAULT_CONNECT_TIME`]).
    pub connect_time: u16,
    /// `ebgpMultiHop`: the IP TTL of the session's packets, for an eBGP peer
    /// that many hops away (1..=255); `None` for a directly connected peer.
    pub ebgp_multihop: Option<u8>,
    /// `passwordSecret` or `password`: the TCP MD5 key (RFC 2385), if any.
    pub password: Option<Password>,
    /// `gracefulRestart` (RFC 4724), default false.
    pub graceful_restart: bool,
    /// `passive`: Herald never opens the connection; it waits for the
    /// router's (default false: Herald connects, and accepts too).
    pub passive: bool,
    /// `families`: the address families exchanged (sorted, no duplicates;
    /// default both).
    pub families: Vec<Family>,
    /// `nodeSelector`: the nodes that open this session (empty: every node).
    pub node_selector: LabelSelector,
    /// `bfdProfile`: the name of the `BFDProfile` whose BFD session guards
    /// this BGP session (`None`: no BFD). The loader and the speaker's
    /// reflectors leave out a peer whose profile does not exist, so a
    /// speaker always finds it.
    pub bfd_profile: Option<String>,
}

impl BgpPeer {
    /// A peer with the API's defaults for everything but its name, address
    /// and ASNs: port 179, hold time 90 s (keepalive a third), connect
    /// retry 120 s, both families, no password, every node.
    pub fn new(name: &str, peer_address: IpAddr, peer_asn: Asn, my_asn: Asn) -> BgpPeer {
        BgpPeer {
            name: name.to_owned(),
            peer_address,
            peer_asn,
            my_asn,
            peer_port: BGP_PORT,
            source_address: None,
            router_id: None,
            hold_time: DEFAULT_HOLD_TIME,
            keepalive_time: DEFAULT_HOLD_TIME / 3,
            connect_time: DEFAULT_CONNECT_TIME,
            ebgp_multihop: None,
            password: None,
            graceful_restart: false,
            passive: false,
            families: vec![Family::IPv4, Family::IPv6],
            node_selector: LabelSelector::default(),
            bfd_profile: None,
        }
    }

    /// Whether the session is external BGP (the ASNs differ).
    pub fn is_ebgp(&self) -> bool {
        self.peer_asn != self.my_asn
    }
}

/// The least and greatest BFD interval a `BFDProfile` takes, in
/// milliseconds (MetalLB's bounds: below 10 ms a userspace sender cannot
/// keep time; above a minute BFD detects nothing the hold timer would not).
pub const BFD_INTERVAL_MS: std::ops::RangeInclusive<u32> = 10..=60_000;

/// The least and greatest BFD detect multiplier (MetalLB's bounds; RFC
/// 5880 allows 1, where one lost packet takes the session down).
pub const BFD_DETECT_MULTIPLIER: std::ops::RangeInclusive<u8> = 2..=255;

/// The default BFD intervals in milliseconds and multiplier (MetalLB's and
/// FRR's: 300 ms × 3).
pub const BFD_DEFAULT_INTERVAL_MS: u32 = 300;
/// See [`BFD_DEFAULT_INTERVAL_MS`].
pub const BFD_DEFAULT_DETECT_MULTIPLIER: u8 = 3;

/// The default least TTL of a multihop BFD packet (MetalLB's and FRR's:
/// 254, one router in between).
pub const BFD_DEFAULT_MINIMUM_TTL: u8 = 254;

/// A validated `BFDProfile`: the BFD settings of the BGP sessions that name
/// it (RFC 5880 asynchronous mode, no Echo function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BfdProfile {
    /// `metadata.name`: what `BGPPeer.bfdProfile` names.
    pub name: String,
    /// `receiveInterval`: Required Min RX Interval, in milliseconds.
    pub receive_interval_ms: u32,
    /// `transmitInterval`: Desired Min TX Interval, in milliseconds.
    pub transmit_interval_ms: u32,
    /// `detectMultiplier`.
    pub detect_multiplier: u8,
    /// `passiveMode`: send nothing until the peer is heard (RFC 5880
    /// §6.1).
    pub passive: bool,
    /// `minimumTtl`: the least TTL accepted on multihop sessions (single
    /// hop always requires 255, RFC 5881 §5).
    pub minimum_ttl: u8,
}

impl BfdProfile {
    /// A profile with the defaults: 300 ms × 3, active, minimum TTL 254.
    pub fn new(name: &str) -> BfdProfile {
        BfdProfile {
            name: name.to_owned(),
            receive_interval_ms: BFD_DEFAULT_INTERVAL_MS,
            transmit_interval_ms: BFD_DEFAULT_INTERVAL_MS,
            detect_multiplier: BFD_DEFAULT_DETECT_MULTIPLIER,
            passive: false,
            minimum_ttl: BFD_DEFAULT_MINIMUM_TTL,
        }
    }
}

/// A validated `BGPAdvertisement`: which VIPs go to which peers, from which
/// nodes, with which path attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpAdvertisement {
    /// `metadata.name`.
    pub name: String,
    /// `ipPools`: the pools whose addresses are advertised (empty: every
    /// pool).
    pub ip_pools: Vec<String>,
    /// `nodeSelector`: the nodes that advertise (empty: every node).
    pub node_selector: LabelSelector,
    /// `peers`: the `BGPPeer` names advertised to (empty: every peer).
    pub peers: Vec<String>,
    /// `communities`, in the order written (no duplicates).
    pub communities: Vec<Community>,
    /// `largeCommunities`, in the order written (no duplicates, as RFC 8092
    /// §5 asks of senders).
    pub large_communities: Vec<LargeCommunity>,
    /// `localPref` (iBGP only); `None` leaves LOCAL_PREF to the speaker's
    /// default.
    pub local_pref: Option<u32>,
    /// `med`: the MULTI_EXIT_DISC; `None` sends none.
    pub med: Option<u32>,
    /// `aggregationLength`: the prefix length IPv4 VIPs are advertised with
    /// (0..=32, default 32).
    pub aggregation_length: u8,
    /// `aggregationLengthV6`: the prefix length IPv6 VIPs are advertised with
    /// (0..=128, default 128).
    pub aggregation_length_v6: u8,
    /// `weighted`: carry a link-bandwidth extended community proportional
    /// to the node's ready endpoints.
    pub weighted: bool,
    /// `announcerPlugin`: the PolicyPlugin (world `announcer`) that plans
    /// this advertisement instead of the built-in policy.
    pub announcer_plugin: Option<String>,
    /// `asPathPrepend`: how many extra times the node's own ASN is put in
    /// front of the AS_PATH (0..=[`MAX_AS_PATH_PREPEND`], default 0).
    pub as_path_prepend: u8,
}

/// The path attributes Herald chooses for one route (the announcement plan
/// decides them, the speaker's RIB-out writes them); the session adds
/// ORIGIN, AS_PATH and NEXT_HOP.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttributes {
    /// COMMUNITIES (RFC 1997), in order.
    pub communities: Vec<Community>,
    /// LARGE_COMMUNITY (RFC 8092), in order.
    pub large_communities: Vec<LargeCommunity>,
    /// LOCAL_PREF; sent on iBGP only (RFC 4271 §5.1.5).
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC (RFC 4271 §5.1.4).
    pub med: Option<u32>,
    /// Extra copies of the local ASN in front of the AS_PATH (eBGP only).
    pub as_path_prepend: u8,
    /// The weight, sent as a link-bandwidth extended community
    /// (draft-ietf-idr-link-bandwidth), when the advertisement is
    /// `weighted`.
    pub weight: Option<u32>,
}

impl RouteAttributes {
    /// [`check_community_counts`] of this route's lists: the planner checks
    /// the merge of an advertisement's and an announcer plugin's lists
    /// with it.
    pub fn check_community_counts(&self) -> Result<(), TooManyCommunities> {
        check_community_counts(self.communities.len(), self.large_communities.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn_range() {
        assert_eq!(Asn::new(4_200_000_001).unwrap().get(), 4_200_000_001);
        assert_eq!(Asn::new(u32::MAX).unwrap().get(), u32::MAX);
        assert_eq!(Asn::new(1).unwrap().get(), 1);
        assert_eq!(Asn::new(0), Err(AsnError::Zero));
        assert_eq!(Asn::new(23456), Err(AsnError::AsTrans));
        assert!(AsnError::AsTrans.to_string().contains("23456"));
    }

    #[test]
    fn asn_parses_decimal_only() {
        assert_eq!("64512".parse::<Asn>().unwrap().get(), 64512);
        assert_eq!(
            "4200000001".parse::<Asn>().unwrap().to_string(),
            "4200000001"
        );
        assert_eq!("0".parse::<Asn>(), Err(AsnError::Zero));
        for bad in ["", "+1", "-1", "4294967296", "64086.59904", " 1"] {
            assert!(
                matches!(bad.parse::<Asn>(), Err(AsnError::NotANumber { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn community_round_trips() {
        for text in ["64512:100", "0:0", "65535:65535", "1:2"] {
            let c: Community = text.parse().unwrap();
            assert_eq!(c.to_string(), text);
        }
        let c: Community = "64512:100".parse().unwrap();
        assert_eq!(c, Community::new(64512, 100));
        assert_eq!(c.0, 64512 << 16 | 100);
        assert_eq!((c.asn(), c.value()), (64512, 100));
    }

    #[test]
    fn well_known_communities_have_their_rfc_values() {
        let expected = [
            ("NO_EXPORT", 0xFFFF_FF01),
            ("NO_ADVERTISE", 0xFFFF_FF02),
            ("NO_EXPORT_SUBCONFED", 0xFFFF_FF03),
            ("NO_PEER", 0xFFFF_FF04),
            ("BLACKHOLE", 0xFFFF_029A),
            ("GRACEFUL_SHUTDOWN", 0xFFFF_0000),
            ("LLGR_STALE", 0xFFFF_0006),
            ("NO_LLGR", 0xFFFF_0007),
            ("ACCEPT_OWN", 0xFFFF_0001),
        ];
        assert_eq!(expected.len(), Community::WELL_KNOWN.len());
        for (name, value) in expected {
            let c: Community = name.parse().unwrap();
            assert_eq!(c.0, value, "{name}");
            assert_eq!(c.to_string(), name);
            assert_eq!(c.name(), Some(name));
        }
    }

    #[test]
    fn numeric_spelling_of_a_well_known_community_prints_its_name() {
        let c: Community = "65535:65281".parse().unwrap();
        assert_eq!(c, Community::NO_EXPORT);
        assert_eq!(c.to_string(), "NO_EXPORT");
        // An unnamed value of the reserved range stays numeric.
        assert_eq!(
            "65535:5".parse::<Community>().unwrap().to_string(),
            "65535:5"
        );
    }

    #[test]
    fn community_parts_out_of_range() {
        let e = "65536:1".parse::<Community>().unwrap_err();
        assert!(matches!(e, CommunityError::FourByteAsn { .. }), "{e:?}");
        let message = e.to_string();
        assert!(message.contains("\"65536:1\""), "{message}");
        assert!(message.contains("65535"), "{message}");
        assert!(message.contains("large community"), "{message}");

        let e = "1:65536".parse::<Community>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"1:65536\": the value part 65536 is over 65535"
        );

        let e = "99999999999:1".parse::<Community>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"99999999999:1\": the ASN part 99999999999 is over 65535"
        );
    }

    #[test]
    fn malformed_communities() {
        for bad in [
            "",
            "64512",
            "64512:",
            ":100",
            "a:b",
            "64512:100:1",
            "+1:2",
            "1: 2",
            "no_export",
            "NO-EXPORT",
        ] {
            let e = bad.parse::<Community>().unwrap_err();
            assert!(
                matches!(e, CommunityError::NotACommunity { .. }),
                "{bad:?}: {e:?}"
            );
            let message = e.to_string();
            assert!(message.contains("NO_EXPORT"), "{message}");
            assert!(message.contains("64512:100"), "{message}");
        }
    }

    #[test]
    fn large_community_round_trips() {
        let c: LargeCommunity = "4200000001:1:2".parse().unwrap();
        assert_eq!(
            c,
            LargeCommunity {
                global_administrator: 4_200_000_001,
                local_data_1: 1,
                local_data_2: 2,
            }
        );
        assert_eq!(c.to_string(), "4200000001:1:2");
        let max = "4294967295:4294967295:4294967295";
        assert_eq!(max.parse::<LargeCommunity>().unwrap().to_string(), max);
        assert_eq!(
            "0:0:0".parse::<LargeCommunity>().unwrap().to_string(),
            "0:0:0"
        );
    }

    #[test]
    fn large_community_errors() {
        let e = "4294967296:1:2".parse::<LargeCommunity>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"4294967296:1:2\": the global administrator 4294967296 is over 4294967295"
        );
        let e = "1:2:4294967296".parse::<LargeCommunity>().unwrap_err();
        assert!(e.to_string().contains("local data part 2"), "{e}");
        for bad in ["", "1:2", "1:2:3:4", "1::3", "a:1:2", "NO_EXPORT", "-1:2:3"] {
            let e = bad.parse::<LargeCommunity>().unwrap_err();
            assert!(
                matches!(e, CommunityError::NotALargeCommunity { .. }),
                "{bad:?}: {e:?}"
            );
        }
    }

    #[test]
    fn inline_password_is_redacted() {
        let p = Password::Inline("hunter2".into());
        assert_eq!(format!("{p:?}"), "Inline(<redacted>)");
        let s = Password::Secret(SecretKeyRef {
            namespace: "herald".into(),
            name: "peer".into(),
            key: "password".into(),
        });
        assert!(format!("{s:?}").contains("\"peer\""));
    }

    #[test]
    fn community_counts_up_to_the_limits_pass() {
        assert_eq!(check_community_counts(0, 0), Ok(()));
        assert_eq!(
            check_community_counts(MAX_COMMUNITIES, MAX_LARGE_COMMUNITIES),
            Ok(())
        );
        let e = check_community_counts(1_200, 0).unwrap_err();
        assert_eq!(e, TooManyCommunities::Communities { count: 1_200 });
        assert_eq!(
            e.to_string(),
            "1200 communities; at most 500 fit in one BGP UPDATE beside the other path attributes"
        );
        let e = check_community_counts(MAX_COMMUNITIES, MAX_LARGE_COMMUNITIES + 1).unwrap_err();
        assert_eq!(e, TooManyCommunities::LargeCommunities { count: 151 });
        assert!(e.to_string().contains("at most 150"), "{e}");
        let route = RouteAttributes {
            communities: vec![Community::NO_EXPORT; MAX_COMMUNITIES + 1],
            ..RouteAttributes::default()
        };
        assert_eq!(
            route.check_community_counts(),
            Err(TooManyCommunities::Communities { count: 501 })
        );
    }
}
