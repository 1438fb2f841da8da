//! Services as the allocator sees them, and the held addresses recorded by
//! `IPAllocation` objects.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::addr::Family;
use crate::selector::Labels;

/// A namespaced name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServiceRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ServiceRef {
    /// `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ServiceRef {
        ServiceRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Orders objects by age: those with a creation time first, oldest first;
/// objects without one (usual in git) after them. Ties are for the caller to
/// break (by name).
pub fn by_age(a: Option<i64>, b: Option<i64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// `spec.ipFamilyPolicy`. Which families a Service gets addresses of is
/// [`Service::address_families`]: its `ipFamilies`, which the policy only
/// completes when the list is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FamilyPolicy {
    /// One address, of `ipFamilies[0]` (IPv4 when unset).
    #[default]
    SingleStack,
    /// One address of each listed family where one pool has them all,
    /// else one.
    PreferDualStack,
    /// One address of each of the two listed families, or Pending.
    RequireDualStack,
}

/// `spec.externalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TrafficPolicy {
    /// `Cluster` (the default).
    #[default]
    Cluster,
    /// `Local`.
    Local,
}

/// One entry of `spec.ports`: what clashes when Services share an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Port {
    /// `port`.
    pub port: u16,
    /// `protocol` (`TCP` when unset).
    pub protocol: String,
}

/// The addresses a Service asks for, by annotation or `spec.loadBalancerIP`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Request {
    /// No request: any free address.
    #[default]
    None,
    /// These addresses, as written (not yet checked against the family policy).
    Ips(Vec<IpAddr>),
    /// A request that does not parse; the message says why.
    Invalid(String),
}

/// A Service, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Namespace and name.
    pub id: ServiceRef,
    /// `metadata.creationTimestamp` in seconds since the epoch, if set.
    pub created: Option<i64>,
    /// `metadata.labels`.
    pub labels: Labels,
    /// `metadata.annotations` (policy plugins read their own there).
    pub annotations: Labels,
    /// `spec.type == LoadBalancer`.
    pub load_balancer: bool,
    /// `spec.loadBalancerClass`.
    pub class: Option<String>,
    /// `spec.ipFamilyPolicy`.
    pub family_policy: FamilyPolicy,
    /// `spec.ipFamilies` as the API server fills it (no duplicates): the
    /// families the Service has cluster IPs of, so the only ones it gets
    /// addresses of, in order. On a single-stack cluster a PreferDualStack
    /// Service lists one. `herald_api` completes a manifest that has not
    /// been through an API server as a dual-stack one would. Empty: the
    /// policy's default ([`Service::address_families`]).
    pub families: Vec<Family>,
    /// Requested addresses.
    pub request: Request,
    /// Requested pool (`herald.dev/pool` and its MetalLB spellings).
    pub pool: Option<String>,
    /// Sharing key (`herald.dev/sharing-key` and its MetalLB spellings).
    pub sharing_key: Option<String>,
    /// `spec.ports`.
    pub ports: Vec<Port>,
    /// `spec.externalTrafficPolicy`.
    pub traffic_policy: TrafficPolicy,
    /// `spec.selector`.
    pub selector: Labels,
    /// `status.loadBalancer.ingress[].ip`: what the Service holds when no
    /// `IPAllocation` object records it.
    pub status_ips: Vec<IpAddr>,
}

impl Service {
    /// A `type: LoadBalancer` Service with every other field at its default.
    pub fn new(namespace: &str, name: &str) -> Service {
        Service {
            id: ServiceRef::new(namespace, name),
            created: None,
            labels: Labels::new(),
            annotations: Labels::new(),
            load_balancer: true,
            class: None,
            family_policy: FamilyPolicy::SingleStack,
            families: Vec::new(),
            request: Request::None,
            pool: None,
            sharing_key: None,
            ports: Vec::new(),
            traffic_policy: TrafficPolicy::Cluster,
            selector: Labels::new(),
            status_ips: Vec::new(),
        }
    }

    /// Both families in the Service's order: its first family, then the
    /// other (IPv4 before IPv6 when `ipFamilies` is empty).
    pub fn family_order(&self) -> [Family; 2] {
        match self.families.first() {
            Some(&first) => [first, first.other()],
            None => Family::ALL,
        }
    }

    /// The families the Service gets addresses of, in order, at most one
    /// address each (docs/allocation.md, "Families"): `ipFamilies` as it
    /// is, only its first entry for SingleStack. An empty `ipFamilies`
    /// means what the API server of a dual-stack cluster would fill in:
    /// IPv4 for SingleStack, IPv4 then IPv6 for the dual-stack policies.
    ///
    /// A RequireDualStack Service that lists one family gets one here; the
    /// allocator leaves it Pending (`InvalidRequest`), as no API server
    /// stores such a Service.
    pub fn address_families(&self) -> &'static [Family] {
        const V4: &[Family] = &[Family::IPv4];
        const V6: &[Family] = &[Family::IPv6];
        const V4_V6: &[Family] = &[Family::IPv4, Family::IPv6];
        const V6_V4: &[Family] = &[Family::IPv6, Family::IPv4];
        match (self.family_policy, self.families.as_slice()) {
            (FamilyPolicy::SingleStack, [] | [Family::IPv4, ..]) => V4,
            (FamilyPolicy::SingleStack, [Family::IPv6, ..]) => V6,
            (_, [] | [Family::IPv4, Family::IPv6, ..]) => V4_V6,
            (_, [Family::IPv6, Family::IPv4, ..]) => V6_V4,
            (_, [Family::IPv4, ..]) => V4,
            (_, [Family::IPv6, ..]) => V6,
        }
    }

    /// Whether `self` and `other` may share an address as far as traffic
    /// goes: both `Cluster`, or both `Local` with equal selectors (an
    /// equivalence: a Service sharing with one holder shares with all). Their
    /// (port, protocol) pairs must not clash besides.
    pub fn same_traffic_policy(&self, other: &Service) -> bool {
        match (self.traffic_policy, other.traffic_policy) {
            (TrafficPolicy::Cluster, TrafficPolicy::Cluster) => true,
            (TrafficPolicy::Local, TrafficPolicy::Local) => self.selector == other.selector,
            _ => false,
        }
    }
}

/// An `IPAllocation` object: an address and the Services holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// `spec.address`.
    pub address: IpAddr,
    /// `spec.pool` (informative: the address decides the pool).
    pub pool: String,
    /// `spec.services`.
    pub services: Vec<ServiceRef>,
}
