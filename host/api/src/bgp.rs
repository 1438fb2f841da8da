//! `BGPPeer` (a session the nodes open to a router) and `BGPAdvertisement`
//! (which VIPs go to which peers, with which attributes), and their
//! validation into the core's [`BgpPeer`] and [`BgpAdvertisement`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use herald_core::Family;
use herald_core::bgp::{
    Asn, BGP_PORT, BgpAdvertisement, BgpPeer, Community, DEFAULT_CONNECT_TIME, DEFAULT_HOLD_TIME,
    KEEPALIVE_DIVISOR, LargeCommunity, MAX_AS_PATH_PREPEND, MAX_COMMUNITIES, MAX_LARGE_COMMUNITIES,
    MIN_HOLD_TIME, Password, SecretKeyRef, TCP_MD5_MAX_KEY_LEN, TooManyCommunities,
    check_community_counts,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{FieldError, selector};

/// The Secret key a `passwordSecret` names when it names none (MetalLB's
/// convention, so its Secrets work unchanged).
pub const DEFAULT_PASSWORD_KEY: &str = "password";

/// A BGP session that selected nodes open to a router.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BGPPeer",
    plural = "bgppeers",
    status = "BGPPeerStatus",
    derive = "PartialEq",
    doc = "A BGP router that Herald's speakers peer with, and how.",
    printcolumn(
        name = "Peer address",
        type_ = "string",
        json_path = ".spec.peerAddress"
    ),
    printcolumn(name = "Peer ASN", type_ = "integer", json_path = ".spec.peerASN"),
    printcolumn(name = "My ASN", type_ = "integer", json_path = ".spec.myASN"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// The router's address (IPv4 or IPv6).
    pub peer_address: String,
    /// The router's AS number, 1 to 4294967295 (not 23456, AS_TRANS).
    #[serde(rename = "peerASN")]
    pub peer_asn: u32,
    /// The nodes' AS number on this session, 1 to 4294967295 (not 23456).
    /// Equal to peerASN for iBGP.
    #[serde(rename = "myASN")]
    pub my_asn: u32,
    /// The router's TCP port (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<u16>,
    /// The local address to connect from, of the peer's family (default:
    /// chosen by the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    /// The BGP Identifier, a non-zero IPv4 dotted quad (default: the node's
    /// IPv4 address).
    #[serde(default, rename = "routerID", skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    /// Hold time: 0 (no keepalives) or 3 to 65535 seconds (RFC 4271 §4.2;
    /// default 90). Seconds (`90`) or a duration as MetalLB writes it
    /// (`"90s"`, `"1m30s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<IntOrString>,
    /// Time between keepalives, less than holdTime (default holdTime / 3;
    /// must be 0 or unset when holdTime is 0). Seconds or a duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<IntOrString>,
    /// Time between connection attempts, 1 to 65535 seconds
    /// (ConnectRetryTime, default 120 as RFC 4271 §10 suggests). Seconds or
    /// a duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_time: Option<IntOrString>,
    /// eBGP only: the router is up to this many IP hops away, 1 to 255 (the
    /// TTL of the session's packets). Unset: directly connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebgp_multi_hop: Option<u8>,
    /// The Secret key holding the session's TCP MD5 password (RFC 2385).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyReference>,
    /// The TCP MD5 password itself, at most 80 bytes. Standalone mode only
    /// (manifests on disk); in a cluster use passwordSecret. Not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Announce graceful restart (RFC 4724) so the router keeps routes
    /// while a speaker restarts (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<bool>,
    /// Wait for the router to connect: the speakers never open this
    /// session, they accept it on peerPort (default false: they connect,
    /// and accept the router's connection too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<bool>,
    /// The address families exchanged on the session (default both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub families: Option<Vec<AddressFamily>>,
    /// The nodes that peer with this router (default every node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// The name of a BFDProfile: each node runs a BFD session (RFC 5880)
    /// with the router beside this BGP session, and a BFD Down takes the
    /// BGP session down at once (default: no BFD). Single hop, or multihop
    /// (RFC 5883) when ebgpMultiHop is set. A peer naming a profile that
    /// does not exist is left out until it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd_profile: Option<String>,
}

/// A key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct SecretKeyReference {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The key in the Secret's data (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An address family of BGP routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AddressFamily {
    /// IPv4 unicast.
    Ipv4,
    /// IPv6 unicast.
    Ipv6,
}

impl AddressFamily {
    /// The family as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressFamily::Ipv4 => "ipv4",
            AddressFamily::Ipv6 => "ipv6",
        }
    }
}

impl From<AddressFamily> for Family {
    fn from(family: AddressFamily) -> Family {
        match family {
            AddressFamily::Ipv4 => Family::IPv4,
            AddressFamily::Ipv6 => Family::IPv6,
        }
    }
}

/// `BGPPeer.status`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct BGPPeerStatus {
    /// Conditions of the peer (`Valid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Which VIPs are advertised over BGP, to which peers, from which nodes.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BGPAdvertisement",
    plural = "bgpadvertisements",
    status = "BGPAdvertisementStatus",
    derive = "PartialEq",
    doc = "Which Service addresses Herald's speakers advertise over BGP, to which peers, with which attributes.",
    printcolumn(name = "Pools", type_ = "string", json_path = ".spec.ipPools"),
    printcolumn(name = "Peers", type_ = "string", json_path = ".spec.peers"),
    printcolumn(name = "Weighted", type_ = "boolean", json_path = ".spec.weighted")
)]
#[serde(rename_all = "camelCase")]
pub struct BGPAdvertisementSpec {
    /// Names of the IPPools whose addresses are advertised (empty: every
    /// pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_pools: Option<Vec<String>>,
    /// The nodes that advertise (default every node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// Names of the BGPPeers advertised to (empty: every peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<String>>,
    /// BGP communities (RFC 1997): `64512:100`, or a well-known name:
    /// NO_EXPORT, NO_ADVERTISE, NO_EXPORT_SUBCONFED, NO_PEER, BLACKHOLE,
    /// GRACEFUL_SHUTDOWN, LLGR_STALE, NO_LLGR, ACCEPT_OWN. At most 500:
    /// with the other attributes they must fit one 4,096-octet UPDATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_COMMUNITIES))]
    pub communities: Option<Vec<String>>,
    /// BGP large communities (RFC 8092): `4200000001:1:2`. At most 150.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_LARGE_COMMUNITIES))]
    pub large_communities: Option<Vec<String>>,
    /// LOCAL_PREF, sent to iBGP peers only (default: not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC (default: not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    /// The prefix length IPv4 addresses are advertised with, 0 to 32
    /// (default 32: each address on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_length: Option<u8>,
    /// The prefix length IPv6 addresses are advertised with, 0 to 128
    /// (default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_length_v6: Option<u8>,
    /// Add a link-bandwidth extended community proportional to the node's
    /// ready endpoints, so routers split traffic by endpoints rather than by
    /// nodes (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted: Option<bool>,
    /// The name of a PolicyPlugin (world `announcer`) that plans these
    /// advertisements instead of the built-in policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcer_plugin: Option<String>,
    /// How many extra times the node's own ASN is prepended to the AS_PATH
    /// on eBGP sessions, 0 to 10 (default 0). iBGP routes always carry an
    /// empty AS_PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_path_prepend: Option<u8>,
}

/// `BGPAdvertisement.status`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct BGPAdvertisementStatus {
    /// Conditions of the advertisement (`Valid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl BGPPeer {
    /// Validates the peer into the speaker's view of it.
    pub fn validate(&self) -> Result<BgpPeer, FieldError> {
        let name = self.name_any();
        let err = |(field, message): Invalid| FieldError {
            kind: "BGPPeer",
            name: name.clone(),
            field,
            message,
        };
        let spec = &self.spec;

        // In the order of the spec's fields: the first invalid one is
        // reported.
        let peer_address = endpoint_address(&spec.peer_address)
            .map_err(|m| err(invalid("spec.peerAddress", m)))?;
        let peer_asn =
            Asn::new(spec.peer_asn).map_err(|e| err(invalid("spec.peerASN", e.to_string())))?;
        let my_asn =
            Asn::new(spec.my_asn).map_err(|e| err(invalid("spec.myASN", e.to_string())))?;
        let peer_port = peer_port(spec.peer_port).map_err(err)?;
        let source_address = source_address(&spec.source_address, peer_address).map_err(err)?;
        let router_id = spec
            .router_id
            .as_deref()
            .map(router_id)
            .transpose()
            .map_err(|m| err(invalid("spec.routerID", m)))?;
        let timers = timers(spec).map_err(err)?;
        let ebgp_multihop = ebgp_multihop(spec.ebgp_multi_hop, peer_asn, my_asn).map_err(err)?;
        let password = password(&spec.password_secret, &spec.password).map_err(err)?;
        let families = families(&spec.families).map_err(err)?;
        let node_selector = node_selector(&spec.node_selector).map_err(err)?;
        let bfd_profile = plugin_name(&spec.bfd_profile, "spec.bfdProfile")
            .map_err(|(f, _)| err((f, "must not be empty (leave it out for no BFD)".into())))?;

        Ok(BgpPeer {
            name: name.clone(),
            peer_address,
            peer_asn,
            my_asn,
            peer_port,
            source_address,
            router_id,
            hold_time: timers.hold,
            keepalive_time: timers.keepalive,
            connect_time: timers.connect,
            ebgp_multihop,
            password,
            graceful_restart: spec.graceful_restart.unwrap_or(false),
            passive: spec.passive.unwrap_or(false),
            families,
            node_selector,
            bfd_profile,
        })
    }
}

/// A field that does not validate, before the object's kind and name are
/// added: its full path and the message.
type Invalid = (String, String);

fn invalid(field: &str, message: String) -> Invalid {
    (field.to_owned(), message)
}

/// `peerPort`: default [`BGP_PORT`], never 0.
fn peer_port(port: Option<u16>) -> Result<u16, Invalid> {
    match port {
        None => Ok(BGP_PORT),
        Some(0) => Err(invalid(
            "spec.peerPort",
            "must be from 1 to 65535, not 0".into(),
        )),
        Some(port) => Ok(port),
    }
}

/// `sourceAddress`: an address of the peer's family, if set.
fn source_address(text: &Option<String>, peer_address: IpAddr) -> Result<Option<IpAddr>, Invalid> {
    let Some(text) = text else {
        return Ok(None);
    };
    let source = endpoint_address(text).map_err(|m| invalid("spec.sourceAddress", m))?;
    if Family::of(source) != Family::of(peer_address) {
        return Err(invalid(
            "spec.sourceAddress",
            format!(
                "{source} is {} but peerAddress {peer_address} is {}",
                Family::of(source),
                Family::of(peer_address)
            ),
        ));
    }
    Ok(Some(source))
}

/// A session's timers in seconds.
struct Timers {
    hold: u16,
    keepalive: u16,
    connect: u16,
}

/// `holdTime`, `keepaliveTime` and `connectTime` with their defaults
/// (RFC 4271 §4.2, §4.4, §10).
fn timers(spec: &BGPPeerSpec) -> Result<Timers, Invalid> {
    let seconds = |field: &str, v: &Option<IntOrString>| -> Result<Option<u64>, Invalid> {
        v.as_ref()
            .map(duration_seconds)
            .transpose()
            .map_err(|m| invalid(field, m))
    };
    let (hold_time, keepalive_time, connect_time) = (
        seconds("spec.holdTime", &spec.hold_time)?,
        seconds("spec.keepaliveTime", &spec.keepalive_time)?,
        seconds("spec.connectTime", &spec.connect_time)?,
    );
    let hold = match hold_time {
        None => DEFAULT_HOLD_TIME,
        Some(0) => 0,
        Some(t) => match u16::try_from(t) {
            Ok(t) if t >= MIN_HOLD_TIME => t,
            _ => {
                return Err(invalid(
                    "spec.holdTime",
                    format!(
                        "must be 0 (no keepalives) or from 3 to 65535 seconds (RFC 4271 §4.2), not {t}"
                    ),
                ));
            }
        },
    };
    let keepalive = match (keepalive_time, hold) {
        (None, hold) => hold / KEEPALIVE_DIVISOR,
        (Some(0), 0) => 0,
        (Some(k), 0) => {
            return Err(invalid(
                "spec.keepaliveTime",
                format!(
                    "must be 0 or unset when holdTime is 0: no keepalives are sent (RFC 4271 §4.4), not {k}"
                ),
            ));
        }
        (Some(k), hold) => match u16::try_from(k) {
            Ok(k) if k >= 1 && k < hold => k,
            _ => {
                return Err(invalid(
                    "spec.keepaliveTime",
                    format!("must be at least 1 and less than holdTime ({hold}), not {k}"),
                ));
            }
        },
    };
    let connect = match connect_time {
        None => DEFAULT_CONNECT_TIME,
        Some(t) => match u16::try_from(t) {
            Ok(t) if t >= 1 => t,
            _ => {
                return Err(invalid(
                    "spec.connectTime",
                    format!("must be from 1 to 65535 seconds, not {t}"),
                ));
            }
        },
    };
    Ok(Timers {
        hold,
        keepalive,
        connect,
    })
}

/// A time field in whole seconds: a number of seconds (`90`), or a
/// duration string as Kubernetes and MetalLB write one (Go's
/// `time.ParseDuration`: `"90s"`, `"1m30s"`, `"1.5m"`, units `h`, `m`, `s`,
/// `ms`, `us`/`µs`, `ns`); a string of digits alone counts as seconds.
pub fn duration_seconds(value: &IntOrString) -> Result<u64, String> {
    const FORMS: &str = "a number of seconds (90) or a duration (\"90s\", \"1m30s\")";
    let text = match value {
        IntOrString::Int(n) => {
            return u64::try_from(*n).map_err(|_| format!("must be {FORMS}, not {n}"));
        }
        IntOrString::String(s) => s.trim(),
    };
    let wrong = || format!("must be {FORMS}, not {text:?}");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| wrong());
    }
    // Nanoseconds per unit, longest unit names first where one is a prefix
    // of another (`ms` before `m`).
    const UNITS: [(&str, u128); 7] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut rest = text;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return Err(wrong());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(wrong)?;
        let (number, after) = rest.split_at(number_len);
        let (unit, ns) = UNITS
            .iter()
            .filter(|(u, _)| after.starts_with(u))
            .max_by_key(|(u, _)| u.len())
            .ok_or_else(wrong)?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(wrong());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| wrong())?
        };
        let mut part = whole.checked_mul(*ns).ok_or_else(wrong)?;
        let mut scale = *ns;
        for digit in fraction.bytes() {
            scale /= 10;
            part += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(part).ok_or_else(wrong)?;
        rest = &after[unit.len()..];
    }
    if !total.is_multiple_of(1_000_000_000) {
        return Err(format!("must be a whole number of seconds, not {text:?}"));
    }
    u64::try_from(total / 1_000_000_000).map_err(|_| wrong())
}

/// `ebgpMultiHop`: a TTL of 1 to 255, on eBGP sessions only.
fn ebgp_multihop(ttl: Option<u8>, peer_asn: Asn, my_asn: Asn) -> Result<Option<u8>, Invalid> {
    match ttl {
        None => Ok(None),
        Some(0) => Err(invalid(
            "spec.ebgpMultiHop",
            "must be a TTL from 1 to 255, not 0".into(),
        )),
        Some(_) if peer_asn == my_asn => Err(invalid(
            "spec.ebgpMultiHop",
            format!("applies to eBGP only, but peerASN and myASN are both {peer_asn}"),
        )),
        Some(ttl) => Ok(Some(ttl)),
    }
}

/// `passwordSecret` or `password` (not both); the password itself is never
/// echoed in a message.
fn password(
    secret: &Option<SecretKeyReference>,
    password: &Option<String>,
) -> Result<Option<Password>, Invalid> {
    match (secret, password) {
        (Some(_), Some(_)) => Err(invalid(
            "spec.password",
            "set either password (standalone) or passwordSecret, not both".into(),
        )),
        (Some(secret), None) => Ok(Some(Password::Secret(
            secret_key_ref(secret).map_err(|(sub, m)| (format!("spec.passwordSecret.{sub}"), m))?,
        ))),
        (None, Some(password)) => {
            if password.is_empty() {
                return Err(invalid("spec.password", "must not be empty".into()));
            }
            if password.len() > TCP_MD5_MAX_KEY_LEN {
                return Err(invalid(
                    "spec.password",
                    format!(
                        "is {} bytes long; a TCP MD5 key is at most {TCP_MD5_MAX_KEY_LEN}",
                        password.len()
                    ),
                ));
            }
            Ok(Some(Password::Inline(password.clone())))
        }
        (None, None) => Ok(None),
    }
}

/// `families`: default both; none twice; sorted.
fn families(list: &Option<Vec<AddressFamily>>) -> Result<Vec<Family>, Invalid> {
    let Some(list) = list else {
        return Ok(Family::ALL.to_vec());
    };
    if list.is_empty() {
        return Err(invalid(
            "spec.families",
            "must list ipv4, ipv6 or both (or be left out)".into(),
        ));
    }
    let mut families = Vec::with_capacity(list.len());
    for (i, &family) in list.iter().enumerate() {
        if let Some(first) = list.iter().position(|&f| f == family)
            && first < i
        {
            return Err(invalid(
                &format!("spec.families[{i}]"),
                format!(
                    "{} is listed twice (also spec.families[{first}])",
                    family.as_str()
                ),
            ));
        }
        families.push(Family::from(family));
    }
    families.sort();
    Ok(families)
}

impl BGPAdvertisement {
    /// Validates the advertisement into the announcement planner's view of
    /// it.
    pub fn validate(&self) -> Result<BgpAdvertisement, FieldError> {
        let name = self.name_any();
        let err = |field: &str, message: String| FieldError {
            kind: "BGPAdvertisement",
            name: name.clone(),
            field: field.into(),
            message,
        };
        let spec = &self.spec;

        let count = |list: &Option<Vec<String>>| list.as_ref().map_or(0, Vec::len);
        check_community_counts(count(&spec.communities), count(&spec.large_communities)).map_err(
            |e| {
                let field = match e {
                    TooManyCommunities::Communities { .. } => "spec.communities",
                    TooManyCommunities::LargeCommunities { .. } => "spec.largeCommunities",
                };
                err(field, e.to_string())
            },
        )?;
        let communities = parse_list::<Community>(&spec.communities, "spec.communities")
            .map_err(|(f, m)| err(&f, m))?;
        let large_communities =
            parse_list::<LargeCommunity>(&spec.large_communities, "spec.largeCommunities")
                .map_err(|(f, m)| err(&f, m))?;
        let aggregation_length = match spec.aggregation_length {
            None => 32,
            Some(len) if len <= 32 => len,
            Some(len) => {
                return Err(err(
                    "spec.aggregationLength",
                    format!("must be an IPv4 prefix length from 0 to 32, not {len}"),
                ));
            }
        };
        let aggregation_length_v6 = match spec.aggregation_length_v6 {
            None => 128,
            Some(len) if len <= 128 => len,
            Some(len) => {
                return Err(err(
                    "spec.aggregationLengthV6",
                    format!("must be an IPv6 prefix length from 0 to 128, not {len}"),
                ));
            }
        };
        let as_path_prepend = match spec.as_path_prepend {
            None => 0,
            Some(n) if n <= MAX_AS_PATH_PREPEND => n,
            Some(n) => {
                return Err(err(
                    "spec.asPathPrepend",
                    format!("must be from 0 to {MAX_AS_PATH_PREPEND}, not {n}"),
                ));
            }
        };

        Ok(BgpAdvertisement {
            name: name.clone(),
            ip_pools: names(&spec.ip_pools, "spec.ipPools").map_err(|(f, m)| err(&f, m))?,
            node_selector: node_selector(&spec.node_selector).map_err(|(f, m)| err(&f, m))?,
            peers: names(&spec.peers, "spec.peers").map_err(|(f, m)| err(&f, m))?,
            communities,
            large_communities,
            local_pref: spec.local_pref,
            med: spec.med,
            aggregation_length,
            aggregation_length_v6,
            weighted: spec.weighted.unwrap_or(false),
            announcer_plugin: plugin_name(&spec.announcer_plugin, "spec.announcerPlugin")
                .map_err(|(f, m)| err(&f, m))?,
            as_path_prepend,
        })
    }
}

/// The address of one end of a session: an IP address that can be one.
fn endpoint_address(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address"))?;
    if ip.is_unspecified() {
        return Err(format!("{ip} is the unspecified address"));
    }
    if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(format!("{ip} is not a unicast address"));
    }
    Ok(ip)
}

/// A BGP Identifier: a non-zero IPv4 dotted quad (RFC 6286 §2.1).
fn router_id(text: &str) -> Result<Ipv4Addr, String> {
    match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(id)) if id.is_unspecified() => {
            Err("0.0.0.0 is not a BGP Identifier: it must be non-zero (RFC 6286)".into())
        }
        Ok(IpAddr::V4(id)) => Ok(id),
        Ok(IpAddr::V6(_)) => Err(format!(
            "{text:?} is an IPv6 address; a router ID is an IPv4 dotted quad (192.0.2.1), even on IPv6 sessions"
        )),
        Err(_) => Err(format!("{text:?} is not an IPv4 dotted quad (192.0.2.1)")),
    }
}

/// A Secret key reference, defaulting the key. `Err` carries the sub-path
/// and the message.
fn secret_key_ref(secret: &SecretKeyReference) -> Result<SecretKeyRef, (String, String)> {
    non_empty(&secret.namespace).map_err(|m| ("namespace".to_owned(), m))?;
    non_empty(&secret.name).map_err(|m| ("name".to_owned(), m))?;
    let key = secret
        .key
        .clone()
        .unwrap_or_else(|| DEFAULT_PASSWORD_KEY.to_owned());
    data_key(&key).map_err(|m| ("key".to_owned(), m))?;
    Ok(SecretKeyRef {
        namespace: secret.namespace.clone(),
        name: secret.name.clone(),
        key,
    })
}

fn non_empty(text: &str) -> Result<(), String> {
    if text.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
}

/// Checks a key of a Secret's or a ConfigMap's data: what the API server
/// accepts (`[-._a-zA-Z0-9]+`, at most 253 characters).
pub(crate) fn data_key(key: &str) -> Result<(), String> {
    // The API server's limit on data keys (a DNS subdomain's length).
    const MAX_KEY_LEN: usize = 253;
    if key.is_empty() {
        return Err("must not be empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "is {} characters long; a key is at most {MAX_KEY_LEN}",
            key.len()
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{key:?} contains {c:?}; a key consists of letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// A `nodeSelector` (absent: every node). `Err` carries the full path.
pub(crate) fn node_selector(
    sel: &Option<LabelSelector>,
) -> Result<herald_core::LabelSelector, (String, String)> {
    match sel {
        None => Ok(herald_core::LabelSelector::default()),
        Some(sel) => {
            selector::validate(sel).map_err(|(sub, m)| (format!("spec.nodeSelector.{sub}"), m))
        }
    }
}

/// A list of object names (absent: empty); no name may be empty. `Err`
/// carries the full path of the entry.
pub(crate) fn names(
    list: &Option<Vec<String>>,
    field: &str,
) -> Result<Vec<String>, (String, String)> {
    let list = list.clone().unwrap_or_default();
    match list.iter().position(|n| n.is_empty()) {
        Some(i) => Err((format!("{field}[{i}]"), "must not be empty".into())),
        None => Ok(list),
    }
}

/// The name of a PolicyPlugin, if set; it must not be empty.
pub(crate) fn plugin_name(
    name: &Option<String>,
    field: &str,
) -> Result<Option<String>, (String, String)> {
    match name {
        Some(n) if n.is_empty() => Err((
            field.to_owned(),
            "must not be empty (leave it out for the built-in policy)".into(),
        )),
        other => Ok(other.clone()),
    }
}

/// Parses every entry of a list of communities, refusing duplicates (the
/// same value written twice, perhaps once by name and once as numbers).
fn parse_list<T>(list: &Option<Vec<String>>, field: &str) -> Result<Vec<T>, (String, String)>
where
    T: std::str::FromStr<Err = herald_core::bgp::CommunityError> + Ord + Copy + std::fmt::Display,
{
    let mut seen = BTreeMap::new();
    let mut parsed = Vec::new();
    for (i, text) in list.iter().flatten().enumerate() {
        let value: T = text
            .parse()
            .map_err(|e: herald_core::bgp::CommunityError| {
                (format!("{field}[{i}]"), e.to_string())
            })?;
        if let Some(first) = seen.insert(value, i) {
            return Err((
                format!("{field}[{i}]"),
                format!("{value} is listed twice (also {field}[{first}])"),
            ));
        }
        parsed.push(value);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use serde_json::json;

    use super::*;

    fn peer(spec: BGPPeerSpec) -> BGPPeer {
        BGPPeer::new("edge", spec)
    }

    fn base() -> BGPPeerSpec {
        BGPPeerSpec {
            peer_address: "192.0.2.1".into(),
            peer_asn: 64501,
            my_asn: 64512,
            ..Default::default()
        }
    }

    /// The field and message of the error `spec` gives.
    fn peer_error(spec: BGPPeerSpec) -> (String, String) {
        let e = peer(spec).validate().unwrap_err();
        assert_eq!((e.kind, e.name.as_str()), ("BGPPeer", "edge"));
        (e.field, e.message)
    }

    fn advertisement(spec: BGPAdvertisementSpec) -> BGPAdvertisement {
        BGPAdvertisement::new("out", spec)
    }

    fn advertisement_error(spec: BGPAdvertisementSpec) -> (String, String) {
        let e = advertisement(spec).validate().unwrap_err();
        assert_eq!((e.kind, e.name.as_str()), ("BGPAdvertisement", "out"));
        (e.field, e.message)
    }

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn peer_fields_are_spelled_as_documented() {
        let json = json!({
            "peerAddress": "2001:db8::1",
            "peerASN": 4200000001u32,
            "myASN": 64512,
            "peerPort": 1179,
            "sourceAddress": "2001:db8::2",
            "routerID": "192.0.2.7",
            "holdTime": 30,
            "keepaliveTime": 5,
            "connectTime": 10,
            "ebgpMultiHop": 4,
            "passwordSecret": {"namespace": "herald", "name": "edge"},
            "gracefulRestart": true,
            "passive": true,
            "families": ["ipv6"],
            "nodeSelector": {"matchLabels": {"rack": "a"}},
        });
        let spec: BGPPeerSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), json);
        let p = peer(spec).validate().unwrap();
        assert_eq!(p.name, "edge");
        assert_eq!(p.peer_address, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(p.peer_asn.get(), 4_200_000_001);
        assert_eq!(p.my_asn.get(), 64512);
        assert!(p.is_ebgp());
        assert_eq!(p.peer_port, 1179);
        assert_eq!(p.source_address, Some("2001:db8::2".parse().unwrap()));
        assert_eq!(p.router_id, Some(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!((p.hold_time, p.keepalive_time, p.connect_time), (30, 5, 10));
        assert_eq!(p.ebgp_multihop, Some(4));
        assert_eq!(
            p.password,
            Some(Password::Secret(SecretKeyRef {
                namespace: "herald".into(),
                name: "edge".into(),
                key: "password".into(),
            }))
        );
        assert!(p.graceful_restart);
        assert!(p.passive);
        assert_eq!(p.families, vec![Family::IPv6]);
        assert_eq!(
            p.node_selector.match_labels.get("rack").map(String::as_str),
            Some("a")
        );
    }

    #[test]
    fn peer_defaults() {
        let p = peer(base()).validate().unwrap();
        assert_eq!(p.peer_port, 179);
        assert_eq!(p.source_address, None);
        assert_eq!(p.router_id, None);
        assert_eq!(p.hold_time, 90);
        assert_eq!(p.keepalive_time, 30);
        assert_eq!(p.connect_time, 120);
        assert_eq!(p.ebgp_multihop, None);
        assert_eq!(p.password, None);
        assert!(!p.graceful_restart);
        assert!(!p.passive);
        assert_eq!(p.families, vec![Family::IPv4, Family::IPv6]);
        assert_eq!(p.node_selector, herald_core::LabelSelector::default());
    }

    #[test]
    fn keepalive_defaults_to_a_third_of_the_hold_time() {
        let p = peer(BGPPeerSpec {
            hold_time: Some(IntOrString::Int(9)),
            ..base()
        })
        .validate()
        .unwrap();
        assert_eq!((p.hold_time, p.keepalive_time), (9, 3));
        let p = peer(BGPPeerSpec {
            hold_time: Some(IntOrString::Int(0)),
            ..base()
        })
        .validate()
        .unwrap();
        assert_eq!((p.hold_time, p.keepalive_time), (0, 0));
        let p = peer(BGPPeerSpec {
            hold_time: Some(IntOrString::Int(3)),
            ..base()
        })
        .validate()
        .unwrap();
        assert_eq!((p.hold_time, p.keepalive_time), (3, 1));
    }

    #[test]
    fn asns() {
        let ok = |asn| {
            peer(BGPPeerSpec {
                peer_asn: asn,
                ..base()
            })
            .validate()
        };
        assert!(ok(4_200_000_001).is_ok());
        assert!(ok(u32::MAX).is_ok());
        assert!(ok(1).is_ok());
        let (field, message) = peer_error(BGPPeerSpec {
            peer_asn: 0,
            ..base()
        });
        assert_eq!(field, "spec.peerASN");
        assert!(message.contains("RFC 7607"), "{message}");
        let (field, message) = peer_error(BGPPeerSpec {
            my_asn: 23456,
            ..base()
        });
        assert_eq!(field, "spec.myASN");
        assert!(message.contains("AS_TRANS"), "{message}");
    }

    #[test]
    fn addresses() {
        for (bad, says) in [
            ("192.0.2.300", "not an IP address"),
            ("", "not an IP address"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.5", "not a unicast"),
            ("255.255.255.255", "not a unicast"),
        ] {
            let (field, message) = peer_error(BGPPeerSpec {
                peer_address: bad.into(),
                ..base()
            });
            assert_eq!(field, "spec.peerAddress", "{bad:?}");
            assert!(message.contains(says), "{bad:?}: {message}");
        }
        let (field, message) = peer_error(BGPPeerSpec {
            source_address: Some("2001:db8::2".into()),
            ..base()
        });
        assert_eq!(field, "spec.sourceAddress");
        assert!(
            message.contains("IPv6") && message.contains("IPv4"),
            "{message}"
        );
        let (field, _) = peer_error(BGPPeerSpec {
            source_address: Some("192.0.2".into()),
            ..base()
        });
        assert_eq!(field, "spec.sourceAddress");
    }

    #[test]
    fn router_id_is_a_non_zero_dotted_quad() {
        for (bad, says) in [
            ("0.0.0.0", "non-zero"),
            ("2001:db8::1", "IPv6"),
            ("router-1", "dotted quad"),
            ("3232235777", "dotted quad"),
        ] {
            let (field, message) = peer_error(BGPPeerSpec {
                router_id: Some(bad.into()),
                ..base()
            });
            assert_eq!(field, "spec.routerID", "{bad:?}");
            assert!(message.contains(says), "{bad:?}: {message}");
        }
    }

    #[test]
    fn peer_port_zero_is_refused() {
        let (field, _) = peer_error(BGPPeerSpec {
            peer_port: Some(0),
            ..base()
        });
        assert_eq!(field, "spec.peerPort");
    }

    #[test]
    fn timers() {
        for hold in [1, 2, 65536] {
            let (field, message) = peer_error(BGPPeerSpec {
                hold_time: Some(IntOrString::Int(hold)),
                ..base()
            });
            assert_eq!(field, "spec.holdTime");
            assert!(message.contains(&hold.to_string()), "{message}");
        }
        assert_eq!(
            peer(BGPPeerSpec {
                hold_time: Some(IntOrString::Int(65535)),
                ..base()
            })
            .validate()
            .unwrap()
            .hold_time,
            65535
        );
        for (hold, keepalive) in [
            (Some(90), 90),
            (Some(90), 91),
            (None, 0),
            (Some(0), 1),
            (Some(3), 3),
        ] {
            let (field, _) = peer_error(BGPPeerSpec {
                hold_time: hold.map(IntOrString::Int),
                keepalive_time: Some(IntOrString::Int(keepalive)),
                ..base()
            });
            assert_eq!(field, "spec.keepaliveTime", "{hold:?} {keepalive}");
        }
        let p = peer(BGPPeerSpec {
            keepalive_time: Some(IntOrString::Int(89)),
            ..base()
        })
        .validate()
        .unwrap();
        assert_eq!(p.keepalive_time, 89);
        for connect in [0, 65536] {
            let (field, _) = peer_error(BGPPeerSpec {
                connect_time: Some(IntOrString::Int(connect)),
                ..base()
            });
            assert_eq!(field, "spec.connectTime");
        }
    }

    #[test]
    fn times_are_seconds_or_durations_as_metallb_writes_them() {
        let secs = |v: IntOrString| duration_seconds(&v);
        let text = |t: &str| secs(IntOrString::String(t.to_owned()));
        assert_eq!(secs(IntOrString::Int(90)), Ok(90));
        for (t, want) in [
            ("90s", 90),
            ("1m30s", 90),
            ("1.5m", 90),
            ("90", 90),
            ("0s", 0),
            ("2h", 7200),
            ("1m29s1000ms", 90),
            ("90000ms", 90),
        ] {
            assert_eq!(text(t), Ok(want), "{t}");
        }
        for bad in ["", "s", "90x", "1.5s", "-3s", "1..2s", "abc", "9 0s"] {
            let e = text(bad).unwrap_err();
            assert!(
                e.contains("\"90s\"") || e.contains("whole number of seconds"),
                "{bad}: {e}"
            );
        }
        let e = secs(IntOrString::Int(-5)).unwrap_err();
        assert!(e.contains("a number of seconds (90) or a duration"), "{e}");
        let p = peer(BGPPeerSpec {
            hold_time: Some(IntOrString::String("1m30s".into())),
            keepalive_time: Some(IntOrString::String("30s".into())),
            connect_time: Some(IntOrString::String("2m".into())),
            ..base()
        })
        .validate()
        .unwrap();
        assert_eq!(
            (p.hold_time, p.keepalive_time, p.connect_time),
            (90, 30, 120)
        );
        let (field, message) = peer_error(BGPPeerSpec {
            hold_time: Some(IntOrString::String("ninety".into())),
            ..base()
        });
        assert_eq!(field, "spec.holdTime");
        assert!(message.contains("\"1m30s\""), "{message}");
    }

    #[test]
    fn ebgp_multihop() {
        let (field, _) = peer_error(BGPPeerSpec {
            ebgp_multi_hop: Some(0),
            ..base()
        });
        assert_eq!(field, "spec.ebgpMultiHop");
        let (field, message) = peer_error(BGPPeerSpec {
            ebgp_multi_hop: Some(2),
            my_asn: 64501,
            ..base()
        });
        assert_eq!(field, "spec.ebgpMultiHop");
        assert!(message.contains("eBGP"), "{message}");
        let p = peer(BGPPeerSpec {
            ebgp_multi_hop: Some(255),
            ..base()
        })
        .validate()
        .unwrap();
        assert_eq!(p.ebgp_multihop, Some(255));
    }

    #[test]
    fn passwords() {
        let secret = SecretKeyReference {
            namespace: "herald".into(),
            name: "edge".into(),
            key: Some("md5".into()),
        };
        let (field, _) = peer_error(BGPPeerSpec {
            password_secret: Some(secret.clone()),
            password: Some("s3cret".into()),
            ..base()
        });
        assert_eq!(field, "spec.password");

        let p = peer(BGPPeerSpec {
            password: Some("s3cret".into()),
            ..base()
        })
        .validate()
        .unwrap();
        assert_eq!(p.password, Some(Password::Inline("s3cret".into())));

        let long = "x".repeat(81);
        let (field, message) = peer_error(BGPPeerSpec {
            password: Some(long.clone()),
            ..base()
        });
        assert_eq!(field, "spec.password");
        assert!(
            message.contains("81") && !message.contains(&long),
            "{message}"
        );
        assert!(
            peer(BGPPeerSpec {
                password: Some("x".repeat(80)),
                ..base()
            })
            .validate()
            .is_ok()
        );
        let (field, _) = peer_error(BGPPeerSpec {
            password: Some(String::new()),
            ..base()
        });
        assert_eq!(field, "spec.password");

        let p = peer(BGPPeerSpec {
            password_secret: Some(secret.clone()),
            ..base()
        })
        .validate()
        .unwrap();
        let Some(Password::Secret(s)) = p.password else {
            panic!("a Secret reference");
        };
        assert_eq!(s.key, "md5");
        for (bad, sub) in [
            (
                SecretKeyReference {
                    namespace: String::new(),
                    ..secret.clone()
                },
                "namespace",
            ),
            (
                SecretKeyReference {
                    name: String::new(),
                    ..secret.clone()
                },
                "name",
            ),
            (
                SecretKeyReference {
                    key: Some("a/b".into()),
                    ..secret.clone()
                },
                "key",
            ),
        ] {
            let (field, _) = peer_error(BGPPeerSpec {
                password_secret: Some(bad),
                ..base()
            });
            assert_eq!(field, format!("spec.passwordSecret.{sub}"));
        }
    }

    #[test]
    fn families() {
        let (field, _) = peer_error(BGPPeerSpec {
            families: Some(vec![]),
            ..base()
        });
        assert_eq!(field, "spec.families");
        let (field, message) = peer_error(BGPPeerSpec {
            families: Some(vec![
                AddressFamily::Ipv4,
                AddressFamily::Ipv6,
                AddressFamily::Ipv4,
            ]),
            ..base()
        });
        assert_eq!(field, "spec.families[2]");
        assert_eq!(message, "ipv4 is listed twice (also spec.families[0])");
        let p = peer(BGPPeerSpec {
            families: Some(vec![AddressFamily::Ipv6, AddressFamily::Ipv4]),
            ..base()
        })
        .validate()
        .unwrap();
        assert_eq!(p.families, vec![Family::IPv4, Family::IPv6]);
        let e = serde_json::from_value::<Vec<AddressFamily>>(json!(["ipv5"])).unwrap_err();
        assert!(e.to_string().contains("ipv4"), "{e}");
    }

    #[test]
    fn bfd_profile_is_a_name_and_not_empty() {
        let p = peer(BGPPeerSpec {
            bfd_profile: Some("fast".into()),
            ..base()
        })
        .validate()
        .unwrap();
        assert_eq!(p.bfd_profile.as_deref(), Some("fast"));
        assert_eq!(peer(base()).validate().unwrap().bfd_profile, None);
        let (field, message) = peer_error(BGPPeerSpec {
            bfd_profile: Some(String::new()),
            ..base()
        });
        assert_eq!(field, "spec.bfdProfile");
        assert!(message.contains("must not be empty"), "{message}");
    }

    #[test]
    fn node_selector_errors_name_the_subfield() {
        let sel = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "rack".into(),
                operator: "Is".into(),
                values: Some(vec!["a".into()]),
            }]),
            match_labels: None,
        };
        let (field, _) = peer_error(BGPPeerSpec {
            node_selector: Some(sel.clone()),
            ..base()
        });
        assert_eq!(field, "spec.nodeSelector.matchExpressions[0].operator");
        let (field, _) = advertisement_error(BGPAdvertisementSpec {
            node_selector: Some(sel),
            ..Default::default()
        });
        assert_eq!(field, "spec.nodeSelector.matchExpressions[0].operator");
    }

    #[test]
    fn advertisement_fields_are_spelled_as_documented() {
        let json = json!({
            "ipPools": ["blue"],
            "nodeSelector": {"matchLabels": {"rack": "a"}},
            "peers": ["edge"],
            "communities": ["64512:100", "NO_EXPORT"],
            "largeCommunities": ["4200000001:1:2"],
            "localPref": 200,
            "med": 10,
            "aggregationLength": 24,
            "aggregationLengthV6": 64,
            "weighted": true,
            "announcerPlugin": "zones",
            "asPathPrepend": 2,
        });
        let spec: BGPAdvertisementSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), json);
        let a = advertisement(spec).validate().unwrap();
        assert_eq!(a.name, "out");
        assert_eq!(a.ip_pools, vec!["blue"]);
        assert_eq!(a.peers, vec!["edge"]);
        assert_eq!(
            a.communities,
            vec![Community::new(64512, 100), Community::NO_EXPORT]
        );
        assert_eq!(a.large_communities[0].to_string(), "4200000001:1:2");
        assert_eq!((a.local_pref, a.med), (Some(200), Some(10)));
        assert_eq!((a.aggregation_length, a.aggregation_length_v6), (24, 64));
        assert!(a.weighted);
        assert_eq!(a.announcer_plugin.as_deref(), Some("zones"));
        assert_eq!(a.as_path_prepend, 2);
    }

    #[test]
    fn advertisement_defaults() {
        let a = advertisement(BGPAdvertisementSpec::default())
            .validate()
            .unwrap();
        assert!(a.ip_pools.is_empty() && a.peers.is_empty());
        assert!(a.communities.is_empty() && a.large_communities.is_empty());
        assert_eq!((a.local_pref, a.med), (None, None));
        assert_eq!((a.aggregation_length, a.aggregation_length_v6), (32, 128));
        assert!(!a.weighted);
        assert_eq!(a.announcer_plugin, None);
        assert_eq!(a.as_path_prepend, 0);
        assert_eq!(a.node_selector, herald_core::LabelSelector::default());
    }

    #[test]
    fn communities_name_the_entry() {
        let (field, message) = advertisement_error(BGPAdvertisementSpec {
            communities: strings(&["64512:100", "NO_EXPORT", "65536:1"]),
            ..Default::default()
        });
        assert_eq!(field, "spec.communities[2]");
        assert!(message.contains("65536:1"), "{message}");
        let (field, message) = advertisement_error(BGPAdvertisementSpec {
            communities: strings(&["NO_EXPORT", "65535:65281"]),
            ..Default::default()
        });
        assert_eq!(field, "spec.communities[1]");
        assert!(message.contains("spec.communities[0]"), "{message}");
        let (field, _) = advertisement_error(BGPAdvertisementSpec {
            large_communities: strings(&["4200000001:1:2", "4200000001:1"]),
            ..Default::default()
        });
        assert_eq!(field, "spec.largeCommunities[1]");
        let (field, _) = advertisement_error(BGPAdvertisementSpec {
            large_communities: strings(&["1:2:3", "1:2:3"]),
            ..Default::default()
        });
        assert_eq!(field, "spec.largeCommunities[1]");
    }

    #[test]
    fn community_lists_are_bounded_by_what_fits_one_update() {
        let many = |n: usize, large: bool| {
            Some(
                (0..n)
                    .map(|i| {
                        if large {
                            format!("4200000001:1:{i}")
                        } else {
                            format!("64512:{i}")
                        }
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let e = advertisement(BGPAdvertisementSpec {
            communities: many(1_200, false),
            ..Default::default()
        })
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "spec.communities");
        assert_eq!(
            e.to_string(),
            "BGPAdvertisement \"out\": spec.communities: 1200 communities; at most 500 fit in one BGP UPDATE beside the other path attributes"
        );
        let (field, message) = advertisement_error(BGPAdvertisementSpec {
            large_communities: many(MAX_LARGE_COMMUNITIES + 1, true),
            ..Default::default()
        });
        assert_eq!(field, "spec.largeCommunities");
        assert!(message.contains("151 large communities"), "{message}");
        let a = advertisement(BGPAdvertisementSpec {
            communities: many(MAX_COMMUNITIES, false),
            large_communities: many(MAX_LARGE_COMMUNITIES, true),
            ..Default::default()
        })
        .validate()
        .unwrap();
        assert_eq!(
            (a.communities.len(), a.large_communities.len()),
            (MAX_COMMUNITIES, MAX_LARGE_COMMUNITIES)
        );
    }

    #[test]
    fn crd_schema_bounds_the_community_lists() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(BGPAdvertisement::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec["communities"]["maxItems"], json!(MAX_COMMUNITIES));
        assert_eq!(
            spec["largeCommunities"]["maxItems"],
            json!(MAX_LARGE_COMMUNITIES)
        );
    }

    #[test]
    fn advertisement_ranges() {
        let (field, _) = advertisement_error(BGPAdvertisementSpec {
            aggregation_length: Some(33),
            ..Default::default()
        });
        assert_eq!(field, "spec.aggregationLength");
        let (field, _) = advertisement_error(BGPAdvertisementSpec {
            aggregation_length_v6: Some(129),
            ..Default::default()
        });
        assert_eq!(field, "spec.aggregationLengthV6");
        let (field, message) = advertisement_error(BGPAdvertisementSpec {
            as_path_prepend: Some(11),
            ..Default::default()
        });
        assert_eq!(field, "spec.asPathPrepend");
        assert!(message.contains("10"), "{message}");
        let a = advertisement(BGPAdvertisementSpec {
            aggregation_length: Some(0),
            aggregation_length_v6: Some(128),
            as_path_prepend: Some(10),
            ..Default::default()
        })
        .validate()
        .unwrap();
        assert_eq!((a.aggregation_length, a.as_path_prepend), (0, 10));
    }

    #[test]
    fn empty_names_are_refused() {
        let (field, _) = advertisement_error(BGPAdvertisementSpec {
            ip_pools: strings(&["blue", ""]),
            ..Default::default()
        });
        assert_eq!(field, "spec.ipPools[1]");
        let (field, _) = advertisement_error(BGPAdvertisementSpec {
            peers: strings(&[""]),
            ..Default::default()
        });
        assert_eq!(field, "spec.peers[0]");
        let (field, _) = advertisement_error(BGPAdvertisementSpec {
            announcer_plugin: Some(String::new()),
            ..Default::default()
        });
        assert_eq!(field, "spec.announcerPlugin");
    }

    #[test]
    fn crds_carry_the_printer_columns() {
        use kube::CustomResourceExt;
        let columns = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
            crd.spec.versions[0]
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            columns(BGPPeer::crd()),
            ["Peer address", "Peer ASN", "My ASN", "Age"]
        );
        assert_eq!(
            columns(BGPAdvertisement::crd()),
            ["Pools", "Peers", "Weighted"]
        );
        assert_eq!(BGPPeer::crd().spec.scope, "Cluster");
        assert_eq!(BGPAdvertisement::crd().spec.scope, "Cluster");
    }
}
