//! MetalLB objects (CRD shapes) into Herald objects, and the report of
//! every field that could not be carried over.
//!
//! Choices that keep MetalLB's allocation (docs/allocation.md, "Importing
//! from MetalLB"):
//! - a pool restricted to namespaces or Services is tried before every
//!   unrestricted one in MetalLB, whatever its priority; Herald tries pools
//!   with a priority first. So every restricted pool gets a priority: its
//!   own, or (when unset) one after the highest set one, as MetalLB puts
//!   unset after set; unrestricted pools get none. Herald also serves a
//!   PreferDualStack Service from the pools with a priority before the
//!   others, which is MetalLB's restricted-first rule for it.
//! - a CIDR with host bits set (`1000::1/127`) is masked as Go's
//!   `net.ParseCIDR` does (MetalLB uses `1000::/127`), and reported;
//! - a `serviceAllocation` that restricts nothing makes MetalLB skip the
//!   pool for automatic assignment: imported with `autoAssign: false`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use herald_core::Family;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    BgpAdvertisementSpec, ImportError, Kind, L2Spec, Object, Origin, PeerSpec, PoolSpec,
    ServiceAllocation,
};
use crate::bfd::{BFDProfile, BFDProfileSpec};
use crate::bgp::{
    AddressFamily, BGPAdvertisement, BGPAdvertisementSpec, BGPPeer, BGPPeerSpec,
    SecretKeyReference, duration_seconds,
};
use crate::l2::{L2Advertisement, L2AdvertisementSpec};
use crate::pool::{IPPool, IPPoolAllocation, IPPoolSpec};
use herald_core::allocate::NAMESPACE_NAME_LABEL;

/// The namespace MetalLB runs in when an object names none.
const METALLB_NAMESPACE: &str = "metallb-system";

/// The TTL of a session MetalLB marks `ebgpMultiHop` (FRR's `ebgp-multihop`
/// without a count: 255).
const MULTIHOP_TTL: u8 = 255;

/// What the import produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Import {
    /// `IPPool`s, by name.
    pub pools: Vec<IPPool>,
    /// `BGPPeer`s, by name.
    pub bgp_peers: Vec<BGPPeer>,
    /// `BGPAdvertisement`s, by name.
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    /// `L2Advertisement`s, by name.
    pub l2_advertisements: Vec<L2Advertisement>,
    /// `BFDProfile`s, by name.
    pub bfd_profiles: Vec<BFDProfile>,
    /// Every field that was not carried over, in input order.
    pub dropped: Vec<Dropped>,
    /// Things carried over in another form (a priority given, a selector
    /// resolved to names), for review; not counted by `--strict`.
    pub notes: Vec<Dropped>,
}

/// A field not carried over (or carried over differently), and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The MetalLB object.
    pub object: String,
    /// The field (`spec.bfdProfile`).
    pub field: String,
    /// What happened and what to do instead.
    pub instead: String,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.instead)
    }
}

/// Translates MetalLB objects into Herald objects. An error only for input
/// MetalLB itself refuses (a bad CIDR, an unknown community alias, two
/// objects of a kind with one name); anything Herald cannot express is in
/// [`Import::dropped`].
pub fn import(objects: &[Object]) -> Result<Import, ImportError> {
    let mut out = Import::default();
    for o in objects {
        for field in &o.unknown {
            out.dropped.push(Dropped {
                object: o.origin.object.clone(),
                field: field.clone(),
                instead: "not a field this importer knows; carry it over by hand".into(),
            });
        }
    }
    let communities = aliases(objects)?;
    let pools: Vec<(&Object, &PoolSpec)> = of_kind(objects, |k| match k {
        Kind::Pool(s) => Some(s),
        _ => None,
    })?;
    let restricted_priority = pools
        .iter()
        .filter_map(|(_, s)| s.service_allocation.as_ref())
        .filter(|a| restricts(a))
        .map(|a| a.priority)
        .max()
        .unwrap_or(0)
        .max(0);
    for (o, spec) in &pools {
        let imported = pool(o, spec, restricted_priority + 1, &mut out)?;
        out.pools.push(imported);
    }
    let peers: Vec<(&Object, &PeerSpec)> = of_kind(objects, |k| match k {
        Kind::Peer(s) => Some(s.as_ref()),
        _ => None,
    })?;
    for (o, spec) in &peers {
        if let Some(peer) = peer(o, spec, &mut out)? {
            out.bgp_peers.push(peer);
        }
    }
    let imported_peers: BTreeSet<String> = out
        .bgp_peers
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    for (o, spec) in of_kind(objects, |k| match k {
        Kind::Bgp(s) => Some(s),
        _ => None,
    })? {
        if let Some(a) =
            bgp_advertisement(o, spec, &pools, &communities, &imported_peers, &mut out)?
        {
            out.bgp_advertisements.push(a);
        }
    }
    for (o, spec) in of_kind(objects, |k| match k {
        Kind::L2(s) => Some(s),
        _ => None,
    })? {
        if let Some(a) = l2_advertisement(o, spec, &pools, &mut out)? {
            out.l2_advertisements.push(a);
        }
    }
    for (o, spec) in of_kind(objects, |k| match k {
        Kind::Bfd(s) => Some(s),
        _ => None,
    })? {
        out.bfd_profiles
            .push(bfd_profile(o, spec, &mut out.dropped));
    }
    let by_name = |a: &ObjectMeta, b: &ObjectMeta| a.name.cmp(&b.name);
    out.pools.sort_by(|a, b| by_name(&a.metadata, &b.metadata));
    out.bgp_peers
        .sort_by(|a, b| by_name(&a.metadata, &b.metadata));
    out.bgp_advertisements
        .sort_by(|a, b| by_name(&a.metadata, &b.metadata));
    out.l2_advertisements
        .sort_by(|a, b| by_name(&a.metadata, &b.metadata));
    out.bfd_profiles
        .sort_by(|a, b| by_name(&a.metadata, &b.metadata));
    Ok(out)
}

/// The objects of one kind, refusing two with one name (MetalLB reads one
/// namespace, where names are unique).
fn of_kind<'a, T>(
    objects: &'a [Object],
    pick: impl Fn(&'a Kind) -> Option<&'a T>,
) -> Result<Vec<(&'a Object, &'a T)>, ImportError> {
    let mut seen: BTreeMap<&str, &Origin> = BTreeMap::new();
    let mut out = Vec::new();
    for o in objects {
        let Some(spec) = pick(&o.kind) else { continue };
        if let Some(first) = seen.insert(&o.meta.name, &o.origin) {
            return Err(o.origin.error(format!(
                "has the same name as {first} ({}); Herald's objects are cluster-wide, so names must differ",
                first.file
            )));
        }
        out.push((o, spec));
    }
    Ok(out)
}

/// Community aliases from every Community object (and legacy
/// `bgp-communities`).
fn aliases(objects: &[Object]) -> Result<BTreeMap<String, String>, ImportError> {
    let mut out = BTreeMap::new();
    for o in objects {
        let Kind::Community(spec) = &o.kind else {
            continue;
        };
        for (i, alias) in spec.communities.iter().enumerate() {
            if parse_community(&alias.value).is_none() {
                return Err(o.origin.error(format!(
                    "spec.communities[{i}].value: {:?} is neither a community (64512:100) nor a large community (large:1:2:3)",
                    alias.value
                )));
            }
            if out
                .insert(alias.name.clone(), alias.value.clone())
                .is_some()
            {
                return Err(o.origin.error(format!(
                    "spec.communities[{i}].name: community {:?} is defined twice",
                    alias.name
                )));
            }
        }
    }
    Ok(out)
}

/// A community as MetalLB writes one: `(false, "64512:100")` or, for
/// `large:1:2:3`, `(true, "1:2:3")`.
pub(super) fn parse_community(text: &str) -> Option<(bool, String)> {
    let numbers = |s: &str, n: usize, max: u64| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() == n
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.parse::<u64>().is_ok_and(|v| v <= max))
    };
    match text.strip_prefix("large:") {
        Some(rest) if numbers(rest, 3, u32::MAX.into()) => Some((true, rest.to_owned())),
        Some(_) => None,
        None if numbers(text, 2, u16::MAX.into()) => Some((false, text.to_owned())),
        None => None,
    }
}

/// Whether a `serviceAllocation` restricts the pool to some Services.
fn restricts(a: &ServiceAllocation) -> bool {
    !a.namespaces.is_empty() || !a.namespace_selectors.is_empty() || !a.service_selectors.is_empty()
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

fn pool(
    o: &Object,
    spec: &PoolSpec,
    unset_priority: i32,
    out: &mut Import,
) -> Result<IPPool, ImportError> {
    if spec.addresses.is_empty() {
        return Err(o.origin.error("spec.addresses: the pool has no addresses"));
    }
    let mut addresses = Vec::new();
    for (i, entry) in spec.addresses.iter().enumerate() {
        let (text, masked) = address_entry(entry)
            .map_err(|m| o.origin.error(format!("spec.addresses[{i}]: {m}")))?;
        if masked {
            out.dropped.push(Dropped {
                object: o.origin.object.clone(),
                field: format!("spec.addresses[{i}]"),
                instead: format!(
                    "{entry} has host bits set; MetalLB masks them and uses {text}, which is what was imported (Herald refuses such an entry): write {text}"
                ),
            });
        }
        addresses.push(text);
    }
    let mut auto_assign = spec.auto_assign;
    let mut allocation = None;
    if let Some(a) = &spec.service_allocation {
        if restricts(a) {
            let (priority, note) = if a.priority > 0 {
                (a.priority, None)
            } else {
                (
                    unset_priority,
                    Some(format!(
                        "no priority: given {unset_priority}, after every restricted pool with one, as MetalLB orders them"
                    )),
                )
            };
            let mut alloc = IPPoolAllocation {
                priority: Some(priority),
                ..IPPoolAllocation::default()
            };
            if let Some(note) = note {
                out.notes.push(Dropped {
                    object: o.origin.object.clone(),
                    field: "spec.serviceAllocation.priority".into(),
                    instead: note,
                });
            }
            // MetalLB admits a namespace that is listed or matches any
            // namespace selector; Herald ands its fields, so the list joins
            // the selectors as a selector on the namespace's name.
            let mut namespace_selectors = a.namespace_selectors.clone();
            if !a.namespaces.is_empty() {
                if a.namespace_selectors.is_empty() {
                    alloc.namespaces = Some(a.namespaces.clone());
                } else {
                    namespace_selectors.push(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: NAMESPACE_NAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(a.namespaces.clone()),
                        }]),
                        match_labels: None,
                    });
                }
            }
            alloc.namespace_selector = any_of(
                &namespace_selectors,
                o,
                "spec.serviceAllocation.namespaceSelectors",
                out,
            );
            alloc.service_selector = any_of(
                &a.service_selectors,
                o,
                "spec.serviceAllocation.serviceSelectors",
                out,
            );
            allocation = Some(alloc);
        } else {
            if auto_assign != Some(false) {
                out.notes.push(Dropped {
                    object: o.origin.object.clone(),
                    field: "spec.serviceAllocation".into(),
                    instead: "restricts nothing, so MetalLB never assigns from this pool unless a Service names it: imported with autoAssign: false".into(),
                });
            }
            auto_assign = Some(false);
            if a.priority != 0 {
                out.dropped.push(Dropped {
                    object: o.origin.object.clone(),
                    field: "spec.serviceAllocation.priority".into(),
                    instead: "has no effect without namespaces or selectors; dropped".into(),
                });
            }
        }
    }
    let imported = IPPool {
        metadata: meta(&o.meta.name),
        spec: IPPoolSpec {
            addresses,
            auto_assign: auto_assign.filter(|a| !a),
            avoid_buggy_ips: spec.avoid_buggy_ips.then_some(true),
            allocation,
            allocator_plugin: None,
        },
        status: None,
    };
    if let Err(message) = imported.validate().spec {
        out.dropped.push(Dropped {
            object: o.origin.object.clone(),
            field: "spec".into(),
            instead: format!(
                "Herald will not use the imported pool: {message}; fix the pool before applying"
            ),
        });
    }
    Ok(imported)
}

/// One entry of `addresses` as Herald reads it, and whether host bits were
/// masked. MetalLB parses a CIDR with Go's `net.ParseCIDR` (which masks)
/// and a range as two addresses around a dash.
fn address_entry(entry: &str) -> Result<(String, bool), String> {
    let text = entry.trim();
    if let Some((a, b)) = text.split_once('-') {
        let (a, b) = (a.trim(), b.trim());
        let first: IpAddr = a
            .parse()
            .map_err(|_| format!("invalid IP range {entry:?}: {a:?} is not an address"))?;
        let last: IpAddr = b
            .parse()
            .map_err(|_| format!("invalid IP range {entry:?}: {b:?} is not an address"))?;
        if Family::of(first) != Family::of(last) {
            return Err(format!("invalid IP range {entry:?}: mixes IPv4 and IPv6"));
        }
        if last < first {
            return Err(format!(
                "invalid IP range {entry:?}: the start is after the end"
            ));
        }
        return Ok((format!("{first}-{last}"), false));
    }
    let invalid = || format!("invalid CIDR {entry:?}");
    let (addr, len) = text.split_once('/').ok_or_else(invalid)?;
    let ip: IpAddr = addr.parse().map_err(|_| invalid())?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
        return Err(invalid());
    }
    let len: u32 = len.parse().map_err(|_| invalid())?;
    let masked = match ip {
        IpAddr::V4(v4) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::from((u32::from(v4) & mask).to_be_bytes())
        }
        IpAddr::V6(v6) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::from((u128::from(v6) & mask).to_be_bytes())
        }
        _ => return Err(invalid()),
    };
    Ok((format!("{masked}/{len}"), masked != ip))
}

/// One selector admitting what any of `selectors` admits, when Herald's
/// single selector can say it: none (everything) when one selects
/// everything; the one; or `key In [...]` when each selects values of one
/// key. Otherwise the first, reported.
fn any_of(
    selectors: &[LabelSelector],
    o: &Object,
    field: &str,
    out: &mut Import,
) -> Option<LabelSelector> {
    let mut distinct: Vec<&LabelSelector> = Vec::new();
    for s in selectors {
        if !distinct.contains(&s) {
            distinct.push(s);
        }
    }
    let everything = |s: &LabelSelector| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    };
    if distinct.iter().any(|s| everything(s)) {
        return None;
    }
    match distinct.as_slice() {
        [] => return None,
        [one] => return Some((*one).clone()),
        _ => {}
    }
    // Each selector as (key, values) when it is one equality or `In`.
    let one_key = |s: &LabelSelector| -> Option<(String, Vec<String>)> {
        let labels = s.match_labels.clone().unwrap_or_default();
        let exprs = s.match_expressions.clone().unwrap_or_default();
        match (labels.len(), exprs.as_slice()) {
            (1, []) => labels.into_iter().next().map(|(k, v)| (k, vec![v])),
            (0, [e]) if e.operator == "In" => Some((e.key.clone(), e.values.clone()?)),
            _ => None,
        }
    };
    let parts: Option<Vec<(String, Vec<String>)>> = distinct.iter().map(|s| one_key(s)).collect();
    if let Some(parts) = parts
        && parts.iter().all(|(k, _)| *k == parts[0].0)
    {
        let values: BTreeSet<String> = parts.iter().flat_map(|(_, v)| v.clone()).collect();
        return Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: parts[0].0.clone(),
                operator: "In".into(),
                values: Some(values.into_iter().collect()),
            }]),
            match_labels: None,
        });
    }
    out.dropped.push(Dropped {
        object: o.origin.object.clone(),
        field: format!("{field}[1..]"),
        instead: format!(
            "Herald takes one selector here and these {} cannot be joined into one: only the first was imported; label the objects so one selector matches them all",
            distinct.len()
        ),
    });
    Some(distinct[0].clone())
}

fn peer(o: &Object, spec: &PeerSpec, out: &mut Import) -> Result<Option<BGPPeer>, ImportError> {
    let report = |out: &mut Import, field: &str, instead: String| {
        out.dropped.push(Dropped {
            object: o.origin.object.clone(),
            field: field.to_owned(),
            instead,
        })
    };
    if !spec.interface.is_empty() {
        report(
            out,
            "spec.interface",
            "unnumbered BGP is not supported by Herald: the peer was not imported; peer with the router's address instead".into(),
        );
        return Ok(None);
    }
    if spec.peer_asn == 0 {
        let instead = if spec.dynamic_asn.is_empty() {
            "missing: the peer was not imported; set peerASN".to_owned()
        } else {
            format!(
                "dynamicASN {:?} is not supported by Herald: the peer was not imported; set peerASN to the router's AS number",
                spec.dynamic_asn
            )
        };
        report(out, "spec.peerASN", instead);
        return Ok(None);
    }
    let address: IpAddr = spec.peer_address.parse().map_err(|_| {
        o.origin.error(format!(
            "spec.peerAddress: {:?} is not an IP address",
            spec.peer_address
        ))
    })?;
    let namespace = o
        .meta
        .namespace
        .clone()
        .unwrap_or_else(|| METALLB_NAMESPACE.to_owned());
    let duration = |field: &str, v: &Option<String>| -> Result<Option<u64>, ImportError> {
        v.as_ref()
            .map(|s| {
                duration_seconds(&IntOrString::String(s.clone()))
                    .map_err(|m| o.origin.error(format!("{field}: {m}")))
            })
            .transpose()
    };
    duration("spec.holdTime", &spec.hold_time)?;
    let keepalive = duration("spec.keepaliveTime", &spec.keepalive_time)?;
    duration("spec.connectTime", &spec.connect_time)?;
    // MetalLB: keepalive alone means a hold time three times as long.
    let hold_time = match (&spec.hold_time, keepalive) {
        (Some(h), _) => Some(IntOrString::String(h.clone())),
        (None, Some(k)) => Some(IntOrString::Int((k * 3).min(65535) as i32)),
        (None, None) => None,
    };
    let mut password_secret = None;
    if let Some(secret) = spec.password_secret.as_ref().filter(|s| !s.name.is_empty()) {
        if !spec.password.is_empty() {
            return Err(o.origin.error(
                "spec.password and spec.passwordSecret are both set; MetalLB refuses that",
            ));
        }
        password_secret = Some(SecretKeyReference {
            namespace: if secret.namespace.is_empty() {
                namespace.clone()
            } else {
                secret.namespace.clone()
            },
            name: secret.name.clone(),
            key: None,
        });
    } else if !spec.password.is_empty() {
        // Herald reads inline passwords only in standalone mode; in a
        // cluster the password comes from a Secret, named here.
        let name = format!("{}-bgp-password", o.meta.name);
        report(
            out,
            "spec.password",
            format!(
                "not copied into the Herald object: create the Secret it now names (kubectl -n {namespace} create secret generic {name} --from-literal=password=...), or for standalone manifests replace passwordSecret with password"
            ),
        );
        password_secret = Some(SecretKeyReference {
            namespace: namespace.clone(),
            name,
            key: None,
        });
    }
    let ebgp_multi_hop = if spec.ebgp_multi_hop {
        if spec.peer_asn == spec.my_asn {
            return Err(o.origin.error(
                "spec.ebgpMultiHop is set on an iBGP peer (peerASN = myASN); MetalLB refuses that",
            ));
        }
        Some(MULTIHOP_TTL)
    } else {
        None
    };
    if !spec.vrf.is_empty() {
        report(
            out,
            "spec.vrf",
            "Herald peers from the default VRF only: the session was imported without it; route to the peer from the default VRF".into(),
        );
    }
    // MetalLB exchanges only the session's own family unless
    // dualStackAddressFamily is set (disableMP says the same, deprecated).
    let families = (!spec.dual_stack_address_family).then(|| {
        vec![match address {
            IpAddr::V4(_) => AddressFamily::Ipv4,
            IpAddr::V6(_) => AddressFamily::Ipv6,
        }]
    });
    let node_selector = any_of(&spec.node_selectors, o, "spec.nodeSelectors", out);
    let imported = BGPPeer {
        metadata: meta(&o.meta.name),
        spec: BGPPeerSpec {
            peer_address: address.to_string(),
            peer_asn: spec.peer_asn,
            my_asn: spec.my_asn,
            peer_port: (spec.peer_port != 0).then_some(spec.peer_port),
            source_address: (!spec.source_address.is_empty()).then(|| spec.source_address.clone()),
            router_id: (!spec.router_id.is_empty()).then(|| spec.router_id.clone()),
            hold_time,
            keepalive_time: spec.keepalive_time.clone().map(IntOrString::String),
            connect_time: spec.connect_time.clone().map(IntOrString::String),
            ebgp_multi_hop,
            password_secret,
            password: None,
            graceful_restart: spec.enable_graceful_restart.then_some(true),
            passive: None,
            families,
            node_selector,
            bfd_profile: (!spec.bfd_profile.is_empty()).then(|| spec.bfd_profile.clone()),
        },
        status: None,
    };
    if let Err(e) = imported.validate() {
        report(
            out,
            &e.field,
            format!(
                "Herald refuses the imported peer: {}; fix it before applying",
                e.message
            ),
        );
    }
    Ok(Some(imported))
}

/// A `BFDProfile`: MetalLB's fields are Herald's, but Herald has no Echo
/// function, so echo mode is left off (and reported) rather than refused.
fn bfd_profile(o: &Object, spec: &BFDProfileSpec, dropped: &mut Vec<Dropped>) -> BFDProfile {
    let mut spec = spec.clone();
    if spec.echo_mode == Some(true) {
        spec.echo_mode = None;
        dropped.push(Dropped {
            object: o.origin.object.clone(),
            field: "spec.echoMode".into(),
            instead: "Herald has no BFD Echo function: imported with echo mode off; detection runs on the control packets (lower receiveInterval/transmitInterval for faster detection)".into(),
        });
    }
    let imported = BFDProfile {
        metadata: meta(&o.meta.name),
        spec,
        status: None,
    };
    if let Err(e) = imported.validate() {
        dropped.push(Dropped {
            object: o.origin.object.clone(),
            field: e.field.clone(),
            instead: format!(
                "Herald refuses the imported profile: {}; fix it before applying",
                e.message
            ),
        });
    }
    imported
}

/// The pools an advertisement names or selects; `None` for every pool.
/// `Err` when it selects pools but none exists (MetalLB then advertises
/// nothing, which Herald's empty list cannot say).
fn advertised_pools(
    o: &Object,
    names: &[String],
    selectors: &[LabelSelector],
    pools: &[(&Object, &PoolSpec)],
    out: &mut Import,
) -> Result<Option<Vec<String>>, ImportError> {
    if names.is_empty() && selectors.is_empty() {
        return Ok(None);
    }
    let mut chosen: BTreeSet<String> = names.iter().cloned().collect();
    let mut by_selector = BTreeSet::new();
    for (i, s) in selectors.iter().enumerate() {
        let s = crate::selector::validate(s).map_err(|(sub, m)| {
            o.origin
                .error(format!("spec.ipAddressPoolSelectors[{i}].{sub}: {m}"))
        })?;
        for (p, _) in pools {
            if s.matches(&p.meta.labels) {
                by_selector.insert(p.meta.name.clone());
            }
        }
    }
    if !selectors.is_empty() {
        out.notes.push(Dropped {
            object: o.origin.object.clone(),
            field: "spec.ipAddressPoolSelectors".into(),
            instead: format!(
                "resolved to the pools labelled so now ({}); a pool labelled later must be added to ipPools by name",
                by_selector.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    chosen.extend(by_selector);
    let existing: Vec<String> = chosen
        .into_iter()
        .filter(|n| pools.iter().any(|(p, _)| p.meta.name == *n))
        .collect();
    Ok(Some(existing))
}

fn bgp_advertisement(
    o: &Object,
    spec: &BgpAdvertisementSpec,
    pools: &[(&Object, &PoolSpec)],
    aliases: &BTreeMap<String, String>,
    peers: &BTreeSet<String>,
    out: &mut Import,
) -> Result<Option<BGPAdvertisement>, ImportError> {
    let ip_pools = advertised_pools(
        o,
        &spec.ip_address_pools,
        &spec.ip_address_pool_selectors,
        pools,
        out,
    )?;
    if ip_pools.as_ref().is_some_and(Vec::is_empty) {
        out.dropped.push(Dropped {
            object: o.origin.object.clone(),
            field: "spec.ipAddressPools".into(),
            instead: "names or selects no pool that exists, so MetalLB advertises nothing by it: not imported".into(),
        });
        return Ok(None);
    }
    let mut communities = Vec::new();
    let mut large_communities = Vec::new();
    for (i, c) in spec.communities.iter().enumerate() {
        let value = aliases.get(c).unwrap_or(c);
        let Some((large, text)) = parse_community(value) else {
            return Err(o.origin.error(format!(
                "spec.communities[{i}]: {c:?} is neither a community (64512:100), a large community (large:1:2:3), nor the name of one in a Community object"
            )));
        };
        if large {
            large_communities.push(text);
        } else {
            communities.push(text);
        }
    }
    let length = |field: &str, v: Option<i32>, max: i32| -> Result<Option<u8>, ImportError> {
        match v {
            None => Ok(None),
            Some(n) if (0..=max).contains(&n) => Ok(Some(n as u8)),
            Some(n) => Err(o.origin.error(format!(
                "{field}: {n} is not a prefix length from 0 to {max}"
            ))),
        }
    };
    for p in &spec.peers {
        if !peers.contains(p) {
            out.dropped.push(Dropped {
                object: o.origin.object.clone(),
                field: "spec.peers".into(),
                instead: format!(
                    "peer {p:?} was not imported (see its own lines), so nothing is advertised to it until it is"
                ),
            });
        }
    }
    Ok(Some(BGPAdvertisement {
        metadata: meta(&o.meta.name),
        spec: BGPAdvertisementSpec {
            ip_pools,
            node_selector: any_of(&spec.node_selectors, o, "spec.nodeSelectors", out),
            peers: (!spec.peers.is_empty()).then(|| spec.peers.clone()),
            communities: (!communities.is_empty()).then_some(communities),
            large_communities: (!large_communities.is_empty()).then_some(large_communities),
            local_pref: (spec.local_pref != 0).then_some(spec.local_pref),
            med: None,
            aggregation_length: length("spec.aggregationLength", spec.aggregation_length, 32)?,
            aggregation_length_v6: length(
                "spec.aggregationLengthV6",
                spec.aggregation_length_v6,
                128,
            )?,
            weighted: None,
            announcer_plugin: None,
            as_path_prepend: None,
        },
        status: None,
    }))
}

fn l2_advertisement(
    o: &Object,
    spec: &L2Spec,
    pools: &[(&Object, &PoolSpec)],
    out: &mut Import,
) -> Result<Option<L2Advertisement>, ImportError> {
    let ip_pools = advertised_pools(
        o,
        &spec.ip_address_pools,
        &spec.ip_address_pool_selectors,
        pools,
        out,
    )?;
    if ip_pools.as_ref().is_some_and(Vec::is_empty) {
        out.dropped.push(Dropped {
            object: o.origin.object.clone(),
            field: "spec.ipAddressPools".into(),
            instead: "names or selects no pool that exists, so MetalLB announces nothing by it: not imported".into(),
        });
        return Ok(None);
    }
    Ok(Some(L2Advertisement {
        metadata: meta(&o.meta.name),
        spec: L2AdvertisementSpec {
            ip_pools,
            node_selector: any_of(&spec.node_selectors, o, "spec.nodeSelectors", out),
            interfaces: (!spec.interfaces.is_empty()).then(|| spec.interfaces.clone()),
            announcer_plugin: None,
        },
        status: None,
    }))
}
