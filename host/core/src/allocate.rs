//! The built-in allocation policy (DESIGN.md §4): a snapshot of pools,
//! Services, Namespaces and held addresses in, a plan out.
//!
//! The steps, in order:
//! 1. pools are validated in age order (malformed, duplicate name, overlap
//!    with an earlier valid pool) and put in candidate order (priority, name);
//! 2. qualifying Services are sorted by age, then namespace/name;
//! 3. held addresses are kept, oldest Service first, while still valid;
//! 4. Services with requested addresses are served, then the rest.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::addr::{Family, value};
use crate::config::{Config, ConfigError, qualifies};
use crate::plugin::FailurePolicy;
use crate::policy::{BUILT_IN, Failures, Policies, PolicyError, PoolView};
use crate::pool::{FamilyPool, PoolDecl, PoolIndex, PoolUsage, validate_pools};
use crate::selector::Labels;
use crate::service::{FamilyPolicy, Held, Port, Request, Service, ServiceRef, by_age};

// Kept at their old paths for the herald CLI's `plan` and `speaker`
// modules while they are being rewritten; other code imports them from
// `config`.

/// The label every Namespace carries, even one with no Namespace object.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Everything allocation looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `IPPool` objects.
    pub pools: Vec<PoolDecl>,
    /// Services of every type (those that do not qualify are ignored).
    pub services: Vec<Service>,
    /// Namespace labels by namespace name.
    pub namespaces: BTreeMap<String, Labels>,
    /// `IPAllocation` objects.
    pub allocations: Vec<Held>,
}

/// Why a Service has no addresses: the fixed vocabulary of DESIGN.md §4.8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum PendingReason {
    /// No pool may serve the Service at all.
    NoMatchingPool,
    /// Some pool could serve it, but all such pools are full.
    PoolExhausted,
    /// A requested address lies in no pool the Service may use, or the
    /// requested addresses lie in different pools.
    #[serde(rename = "RequestedIPNotInPool")]
    RequestedIpNotInPool,
    /// A requested address is held by a Service it may not share with.
    #[serde(rename = "RequestedIPInUse")]
    RequestedIpInUse,
    /// RequireDualStack, and no candidate pool has both families.
    DualStackUnavailable,
    /// The request does not parse or does not fit the family policy.
    InvalidRequest,
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PendingReason::NoMatchingPool => "NoMatchingPool",
            PendingReason::PoolExhausted => "PoolExhausted",
            PendingReason::RequestedIpNotInPool => "RequestedIPNotInPool",
            PendingReason::RequestedIpInUse => "RequestedIPInUse",
            PendingReason::DualStackUnavailable => "DualStackUnavailable",
            PendingReason::InvalidRequest => "InvalidRequest",
        })
    }
}

/// A Service that got no addresses, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The reason, from the fixed vocabulary.
    pub reason: PendingReason,
    /// A sentence for people.
    pub message: String,
}

/// What one qualifying Service gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The Service.
    pub service: ServiceRef,
    /// Its addresses, in the Service's family order; empty when Pending.
    pub ips: Vec<IpAddr>,
    /// The pool they come from; `None` when Pending.
    pub pool: Option<String>,
    /// The Service's sharing key.
    pub sharing_key: Option<String>,
    /// The allocator plugin that chose its address (`None`: built in).
    pub plugin: Option<String>,
    /// Why it has no addresses.
    pub pending: Option<Pending>,
}

/// The result of [`allocate`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Qualifying Services, by namespace and name.
    pub services: Vec<Outcome>,
    /// Every pool, by name (invalid ones too).
    pub pools: Vec<PoolUsage>,
    /// Objects that were ignored, and why.
    pub errors: Vec<ConfigError>,
}

impl Plan {
    /// The held addresses this plan records, one per address, as the
    /// controller writes them as `IPAllocation` objects (sorted by address).
    pub fn allocations(&self) -> Vec<Held> {
        let mut by_address: BTreeMap<IpAddr, Held> = BTreeMap::new();
        for outcome in &self.services {
            for &address in &outcome.ips {
                by_address
                    .entry(address)
                    .or_insert_with(|| Held {
                        address,
                        pool: outcome.pool.clone().unwrap_or_default(),
                        services: Vec::new(),
                    })
                    .services
                    .push(outcome.service.clone());
            }
        }
        by_address.into_values().collect()
    }
}

/// An address in use: its pool and its holders (indices into the sorted
/// Services, oldest first).
///
/// Holders of one address share its first holder's sharing key and traffic
/// policy (compatibility of policies is an equivalence), and no two hold
/// the same (port, protocol) ([`Allocator::joinable`] admits only such), so
/// a joining Service is checked against the first holder and `ports`: its
/// own ports' cost, not holders × ports² (issue 15's 40 Services × 4,900
/// ports).
#[derive(Clone)]
struct Use {
    pool: usize,
    /// The first holder inline: most addresses have one, and a `Vec` each
    /// would cost an allocation per address.
    first: usize,
    others: Vec<usize>,
    /// Every holder's ports ([`Protocols::key`]), kept only when the
    /// address can be shared (its first holder has a sharing key); empty
    /// otherwise, which allocates nothing.
    ports: FxHashSet<u32>,
}

impl Use {
    fn holders(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.first).chain(self.others.iter().copied())
    }
}

/// The addresses held under one sharing key in one pool and family.
#[derive(Clone, Default)]
struct Shared {
    /// The addresses, lowest first (the order they are joined in).
    addresses: BTreeSet<IpAddr>,
    /// How many of them hold each port ([`Protocols::key`]): a Service with
    /// a port that all of them hold can join none, which is known without
    /// trying each (issue 15: N Services with one key and the same port
    /// tried every earlier address in turn, N²).
    holding: FxHashMap<u32, usize>,
}

type PendingResult = Result<(), Pending>;

/// The protocols of the ports of Services that share addresses, numbered,
/// so that a (port, protocol) pair is a `u32`: a shared address's set of
/// them stays small and hashes fast (40 Services × 4,900 ports would
/// otherwise cost a string comparison per probe). Protocols past the
/// 65,536th would share numbers, which could only refuse a share; the API
/// admits three.
#[derive(Clone, Default)]
struct Protocols<'a>(HashMap<&'a str, u32>);

impl<'a> Protocols<'a> {
    /// The key of `port`, numbering its protocol if new.
    fn add(&mut self, port: &'a Port) -> u32 {
        let next = self.0.len() as u32;
        let n = *self.0.entry(port.protocol.as_str()).or_insert(next);
        (n << 16) | u32::from(port.port)
    }

    /// The key of `port`; `None` when no holder of any address uses its
    /// protocol (then it clashes with nothing).
    fn key(&self, port: &Port) -> Option<u32> {
        let n = *self.0.get(port.protocol.as_str())?;
        Some((n << 16) | u32::from(port.port))
    }
}

/// A picked address, and the plugin that chose it (`None`: built in).
type Pick<'a> = (IpAddr, Option<&'a str>);

/// The view of one family of a pool an allocator plugin gets.
struct View<'p> {
    name: &'p str,
    fp: &'p FamilyPool,
}

/// An owned [`View`] ([`PoolView::to_static`]).
struct OwnedView {
    name: String,
    fp: FamilyPool,
}

impl PoolView for OwnedView {
    fn name(&self) -> &str {
        &self.name
    }

    fn family(&self) -> Family {
        self.view().family()
    }

    fn capacity(&self) -> u128 {
        self.view().capacity()
    }

    fn free_count(&self) -> u128 {
        self.view().free_count()
    }

    fn is_free(&self, ip: IpAddr) -> bool {
        self.view().is_free(ip)
    }

    fn next_free_after(&self, after: Option<IpAddr>) -> Option<IpAddr> {
        self.view().next_free_after(after)
    }

    fn bounds(&self) -> Option<(IpAddr, IpAddr)> {
        self.view().bounds()
    }

    fn to_static(&self) -> Box<dyn PoolView + Send + Sync> {
        self.view().to_static()
    }
}

impl OwnedView {
    fn view(&self) -> View<'_> {
        View {
            name: &self.name,
            fp: &self.fp,
        }
    }
}

impl PoolView for View<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn family(&self) -> Family {
        self.fp.family()
    }

    fn capacity(&self) -> u128 {
        self.fp.capacity()
    }

    fn free_count(&self) -> u128 {
        self.fp.free_count()
    }

    fn is_free(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.fp.family() && self.fp.is_free(value(ip))
    }

    fn next_free_after(&self, after: Option<IpAddr>) -> Option<IpAddr> {
        let after = match after {
            Some(ip) if Family::of(ip) != self.fp.family() => return None,
            Some(ip) => Some(value(ip)),
            None => None,
        };
        self.fp.next_free_after(after).map(|v| self.fp.addr(v))
    }

    fn bounds(&self) -> Option<(IpAddr, IpAddr)> {
        self.fp
            .bounds()
            .map(|(lo, hi)| (self.fp.addr(lo), self.fp.addr(hi)))
    }

    fn to_static(&self) -> Box<dyn PoolView + Send + Sync> {
        Box::new(OwnedView {
            name: self.name.to_owned(),
            fp: self.fp.clone(),
        })
    }
}

fn pending(reason: PendingReason, message: impl Into<String>) -> PendingResult {
    Err(Pending {
        reason,
        message: message.into(),
    })
}

/// The allocator's working state: the result of a full allocation, which
/// can then serve more Services one at a time ([`Allocator::add`]) without
/// starting over, as a controller does when a Service is created.
#[derive(Clone)]
pub struct Allocator<'a> {
    services: Vec<&'a Service>,
    namespaces: &'a BTreeMap<String, Labels>,
    /// Namespaces without an object: only their name label. Built on demand.
    implicit_namespaces: HashMap<&'a str, Labels>,
    /// Valid pools in candidate order, and which pool an address is in.
    index: PoolIndex<'a>,
    used: HashMap<IpAddr, Use>,
    protocols: Protocols<'a>,
    /// Addresses held under a sharing key, by key, pool and family.
    shared: HashMap<(&'a str, usize, Family), Shared>,
    /// What each Service holds so far, by family.
    held: Vec<[Option<IpAddr>; 2]>,
    /// Why each Service is Pending, once served.
    pending: Vec<Option<Pending>>,
    /// The plugin that chose a Service's fresh address, if one did.
    decided_by: Vec<Option<&'a str>>,
    policies: &'a Policies<'a>,
    /// Problems met while allocating (plugin failures), reported in the plan.
    policy_errors: RefCell<Vec<ConfigError>>,
    /// Plugin failures, reported once per plugin and outcome.
    failures: RefCell<Failures>,
    usage: Vec<PoolUsage>,
    errors: Vec<ConfigError>,
}

/// Allocates addresses to every qualifying Service of `snapshot`.
///
/// Pure and deterministic: the same snapshot (in any order) gives the same
/// plan; feeding a plan's [`Plan::allocations`] back in moves nothing.
pub fn allocate(snapshot: &Snapshot, config: &Config) -> Plan {
    Allocator::new(snapshot, config, &BUILT_IN).into_plan()
}

impl<'a> Allocator<'a> {
    /// Allocates addresses to every qualifying Service of `snapshot`, with
    /// the given plugins for pools that name one.
    pub fn new(
        snapshot: &'a Snapshot,
        config: &Config,
        policies: &'a Policies<'a>,
    ) -> Allocator<'a> {
        let mut errors = Vec::new();
        let (index, usage) = validate_pools(&snapshot.pools, &mut errors);

        let mut seen = HashSet::new();
        let mut services: Vec<&Service> = Vec::new();
        for s in &snapshot.services {
            if !seen.insert(&s.id) {
                errors.push(ConfigError {
                    kind: "Service".into(),
                    name: s.id.to_string(),
                    message: "defined more than once; only the first definition is used".into(),
                });
                continue;
            }
            if qualifies(s, config) {
                services.push(s);
            }
        }
        services.sort_by(|a, b| by_age(a.created, b.created).then_with(|| a.id.cmp(&b.id)));

        let mut alloc = Allocator {
            held: vec![[None; 2]; services.len()],
            pending: vec![None; services.len()],
            decided_by: vec![None; services.len()],
            policies,
            policy_errors: RefCell::new(Vec::new()),
            failures: RefCell::new(Failures::default()),
            services,
            namespaces: &snapshot.namespaces,
            implicit_namespaces: HashMap::new(),
            index,
            used: HashMap::new(),
            shared: HashMap::new(),
            protocols: Protocols::default(),
            usage,
            errors,
        };
        let claims = alloc.claims(&snapshot.allocations);
        for (i, claim) in claims.into_iter().enumerate() {
            alloc.keep_held(i, claim);
        }
        let (requests, rest): (Vec<usize>, Vec<usize>) = (0..alloc.services.len())
            .partition(|&i| !matches!(alloc.services[i].request, Request::None));
        for i in requests.into_iter().chain(rest) {
            alloc.pending[i] = alloc.serve(i).err();
        }
        alloc
    }

    /// Serves one more Service after all the others, as the newest: what a
    /// controller does when a Service is created. The Service must not be
    /// one the allocator already has. Its status addresses count as held.
    /// Returns `None` when the Service does not qualify.
    pub fn add(&mut self, service: &'a Service, config: &Config) -> Option<Outcome> {
        if !qualifies(service, config) {
            return None;
        }
        let i = self.services.len();
        self.services.push(service);
        self.held.push([None; 2]);
        self.pending.push(None);
        self.decided_by.push(None);
        self.keep_held(i, service.status_ips.clone());
        self.pending[i] = self.serve(i).err();
        Some(self.outcome(i))
    }

    /// What Service `i` gets, its addresses in its family order.
    fn outcome(&self, i: usize) -> Outcome {
        let s = self.services[i];
        let ips: Vec<IpAddr> = s
            .family_order()
            .iter()
            .filter_map(|f| self.held[i][f.index()])
            .collect();
        let pool = ips
            .first()
            .and_then(|ip| self.used.get(ip))
            .map(|u| self.index.pools[u.pool].name.to_owned());
        Outcome {
            service: s.id.clone(),
            ips,
            pool,
            sharing_key: s.sharing_key.clone(),
            plugin: self.decided_by[i].map(str::to_owned),
            pending: self.pending[i].clone(),
        }
    }

    /// The plan: every Service's outcome, pool usage, ignored objects.
    pub fn into_plan(self) -> Plan {
        let mut outcomes: Vec<Outcome> =
            (0..self.services.len()).map(|i| self.outcome(i)).collect();
        outcomes.sort_by(|a, b| a.service.cmp(&b.service));
        let mut allocated: HashMap<&str, [u128; 2]> = HashMap::new();
        for (ip, u) in &self.used {
            allocated.entry(self.index.pools[u.pool].name).or_default()[Family::of(*ip).index()] +=
                1;
        }
        let mut usage = self.usage;
        for p in usage.iter_mut().filter(|p| p.valid) {
            let by_family = allocated.get(p.name.as_str()).copied().unwrap_or_default();
            for (family, count) in p.families.iter_mut().zip(by_family) {
                family.allocated = count;
            }
            p.allocated = by_family[0] + by_family[1];
        }
        let mut errors = self.errors;
        errors.extend(self.policy_errors.into_inner());
        errors.extend(self.failures.into_inner().into_errors());
        errors.sort();
        errors.dedup();
        Plan {
            services: outcomes,
            pools: usage,
            errors,
        }
    }
}

impl<'a> Allocator<'a> {
    /// What each Service claims to hold: the addresses `IPAllocation` objects
    /// give it; for a Service no `IPAllocation` names, the addresses in its
    /// status that no `IPAllocation` records (the records are the lock).
    fn claims(&self, allocations: &[Held]) -> Vec<Vec<IpAddr>> {
        if allocations.is_empty() {
            return self.services.iter().map(|s| s.status_ips.clone()).collect();
        }
        let index: HashMap<&ServiceRef, usize> = self
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (&s.id, i))
            .collect();
        let mut claims = vec![Vec::new(); self.services.len()];
        let mut named = vec![false; self.services.len()];
        let mut recorded: HashSet<IpAddr> = HashSet::new();
        for held in allocations {
            recorded.insert(held.address);
            for s in &held.services {
                if let Some(&i) = index.get(s) {
                    named[i] = true;
                    claims[i].push(held.address);
                }
            }
        }
        for (i, s) in self.services.iter().enumerate() {
            if !named[i] {
                claims[i].extend(s.status_ips.iter().filter(|ip| !recorded.contains(ip)));
            }
        }
        claims
    }

    fn namespace_labels(&mut self, namespace: &'a str) -> &Labels {
        if let Some(labels) = self.namespaces.get(namespace) {
            return labels;
        }
        self.implicit_namespaces
            .entry(namespace)
            .or_insert_with(|| {
                Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned())])
            })
    }

    /// Whether the pool's selectors admit the Service.
    fn admits(&mut self, pool: usize, s: &'a Service) -> bool {
        let spec = self.index.pools[pool].spec;
        if !spec.namespaces.is_empty() && !spec.namespaces.contains(&s.id.namespace) {
            return false;
        }
        if let Some(sel) = &spec.service_selector
            && !sel.matches(&s.labels)
        {
            return false;
        }
        match &spec.namespace_selector {
            Some(sel) => sel.matches(self.namespace_labels(&s.id.namespace)),
            None => true,
        }
    }

    /// Whether the Service may take addresses from the pool without naming
    /// them: selectors match, and the pool is the requested one, or no pool
    /// is requested and the pool assigns automatically.
    fn candidate(&mut self, pool: usize, s: &'a Service) -> bool {
        let spec = self.index.pools[pool].spec;
        let named = match &s.pool {
            Some(name) => name == self.index.pools[pool].name,
            None => spec.auto_assign,
        };
        named && self.admits(pool, s)
    }

    fn pool_of(&self, ip: IpAddr) -> Option<usize> {
        self.index.pool_of(ip)
    }

    /// Whether Service `i` may join the address held by others.
    fn joinable(&self, i: usize, ip: IpAddr) -> bool {
        let s = self.services[i];
        let Some(key) = &s.sharing_key else {
            return false;
        };
        let Some(u) = self.used.get(&ip) else {
            return false;
        };
        let first = self.services[u.first];
        first.sharing_key.as_ref() == Some(key)
            && s.same_traffic_policy(first)
            && !s
                .ports
                .iter()
                .filter_map(|p| self.protocols.key(p))
                .any(|k| u.ports.contains(&k))
            && self.held[i][Family::of(ip).index()] != Some(ip)
    }

    /// The lowest address of `family` in the pool that Service `i` may join.
    fn joinable_in(&self, i: usize, pool: usize, family: Family) -> Option<IpAddr> {
        let s = self.services[i];
        let shared = self
            .shared
            .get(&(s.sharing_key.as_deref()?, pool, family))?;
        let everywhere = |k: u32| shared.holding.get(&k) == Some(&shared.addresses.len());
        if s.ports
            .iter()
            .filter_map(|p| self.protocols.key(p))
            .any(everywhere)
        {
            return None;
        }
        shared
            .addresses
            .iter()
            .copied()
            .find(|&ip| self.joinable(i, ip))
    }

    /// The address Service `i` would get of `family` from the pool: the
    /// lowest joinable one, else a fresh one; with the plugin that chose it.
    fn pick(&self, i: usize, pool: usize, family: Family) -> Option<Pick<'a>> {
        match self.joinable_in(i, pool, family) {
            Some(ip) => Some((ip, None)),
            None => self.fresh(i, pool, family),
        }
    }

    /// A free address of `family` from the pool: the lowest one, or the one
    /// the pool's allocator plugin chooses.
    fn fresh(&self, i: usize, pool: usize, family: Family) -> Option<Pick<'a>> {
        let lp = &self.index.pools[pool];
        let fp = lp.family(family);
        let built_in = || fp.lowest_free().map(|v| (fp.addr(v), None));
        let Some(name) = lp.spec.allocator_plugin.as_deref() else {
            return built_in();
        };
        let Some(plugin) = self.policies.allocators.get(name) else {
            self.report(
                "IPPool",
                lp.name,
                format!("allocatorPlugin {name:?} is not loaded; the built-in policy decides"),
            );
            return built_in();
        };
        let view = View { name: lp.name, fp };
        let answer =
            plugin
                .policy
                .choose(self.services[i], &view)
                .and_then(|answer| match answer {
                    Some(ip) if !view.is_free(ip) => Err(PolicyError {
                        plugin: name.to_owned(),
                        message: format!(
                            "chose {ip} for {}, which is not a free {family} address of pool {:?}",
                            self.services[i].id, lp.name
                        ),
                    }),
                    answer => Ok(answer),
                });
        match answer {
            Ok(answer) => answer.map(|ip| (ip, Some(name))),
            Err(e) => {
                let then = match plugin.failure_policy {
                    FailurePolicy::Fallback => "the built-in policy decided",
                    FailurePolicy::Fail => {
                        "the pool did not serve the Service (failurePolicy Fail)"
                    }
                };
                // Reported under the name the pool uses.
                let e = PolicyError {
                    plugin: name.to_owned(),
                    ..e
                };
                self.failures
                    .borrow_mut()
                    .record(e, &self.services[i].id, then);
                match plugin.failure_policy {
                    FailurePolicy::Fallback => built_in(),
                    FailurePolicy::Fail => None,
                }
            }
        }
    }

    /// Records a problem met while allocating (reported once in the plan).
    fn report(&self, kind: &str, name: &str, message: String) {
        self.policy_errors.borrow_mut().push(ConfigError {
            kind: kind.to_owned(),
            name: name.to_owned(),
            message,
        });
    }

    /// Whether the address is free in the pool, or joinable by Service `i`.
    fn available(&self, i: usize, pool: usize, ip: IpAddr) -> bool {
        self.index.pools[pool]
            .family(Family::of(ip))
            .is_free(value(ip))
            || self.joinable(i, ip)
    }

    /// Holds a picked address, remembering the plugin that chose it.
    fn take(&mut self, i: usize, pool: usize, (ip, plugin): Pick<'a>) {
        if plugin.is_some() {
            self.decided_by[i] = plugin;
        }
        self.hold(i, pool, ip);
    }

    /// Records that Service `i` holds `ip` (free, or joinable) in the pool.
    fn hold(&mut self, i: usize, pool: usize, ip: IpAddr) {
        let s = self.services[i];
        let fresh = self.index.pools[pool].families[Family::of(ip).index()].take(value(ip));
        let u = match self.used.entry(ip) {
            Entry::Occupied(u) => {
                debug_assert!(!fresh);
                let u = u.into_mut();
                u.others.push(i);
                u
            }
            Entry::Vacant(v) => {
                debug_assert!(fresh);
                v.insert(Use {
                    pool,
                    first: i,
                    others: Vec::new(),
                    ports: FxHashSet::default(),
                })
            }
        };
        if let Some(key) = &s.sharing_key {
            // The joiner's key is the first holder's (`joinable`).
            let shared = self
                .shared
                .entry((key.as_str(), pool, Family::of(ip)))
                .or_default();
            if fresh {
                shared.addresses.insert(ip);
            }
            for p in &s.ports {
                let k = self.protocols.add(p);
                if u.ports.insert(k) {
                    *shared.holding.entry(k).or_default() += 1;
                }
            }
        }
        self.held[i][Family::of(ip).index()] = Some(ip);
    }

    /// Keeps what Service `i` held before, as far as it is still valid.
    ///
    /// What is kept here is never given up later in the run, so a restart
    /// finds the same holders: a Service with a request keeps its addresses
    /// only when they are exactly what it requests, and a RequireDualStack
    /// Service only a pair of both families. Anything less is dropped, and
    /// the Service is allocated in its turn like any other.
    fn keep_held(&mut self, i: usize, mut claim: Vec<IpAddr>) {
        let s = self.services[i];
        if check_families(s).is_err() {
            return;
        }
        let requested = match &s.request {
            Request::None => None,
            Request::Ips(ips) => match check_request(s, ips) {
                Ok(()) => Some(ips),
                Err(_) => return,
            },
            Request::Invalid(_) => return,
        };
        let wanted = s.address_families();
        claim.sort_by_key(|ip| (wanted.iter().position(|&f| f == Family::of(*ip)), *ip));
        claim.dedup();
        let mut keep: Vec<IpAddr> = Vec::new();
        let mut kept_pool = None;
        for ip in claim {
            let family = Family::of(ip);
            if !wanted.contains(&family) || keep.iter().any(|h| Family::of(*h) == family) {
                continue;
            }
            if requested.is_some_and(|r| !r.contains(&ip)) {
                continue;
            }
            let Some(pool) = self.pool_of(ip) else {
                continue;
            };
            if kept_pool.is_some_and(|p| p != pool) {
                continue;
            }
            // autoAssign governs handing out new addresses, not keeping
            // held ones (as in MetalLB, whose Services keep an address from
            // such a pool across restarts): a held address stays where the
            // pool admits the Service and it names no other pool.
            let usable = s
                .pool
                .as_deref()
                .is_none_or(|n| n == self.index.pools[pool].name)
                && self.admits(pool, s);
            if usable && self.available(i, pool, ip) {
                keep.push(ip);
                kept_pool = Some(pool);
            }
        }
        let complete = match requested {
            Some(ips) => keep.len() == ips.len(),
            None => s.family_policy != FamilyPolicy::RequireDualStack || keep.len() == 2,
        };
        if let (true, Some(pool)) = (complete, kept_pool) {
            for ip in keep {
                self.hold(i, pool, ip);
            }
        }
    }

    /// Serves Service `i` in its turn.
    fn serve(&mut self, i: usize) -> PendingResult {
        let s = self.services[i];
        let requested = match &s.request {
            Request::Invalid(message) => {
                return pending(PendingReason::InvalidRequest, message.clone());
            }
            Request::Ips(ips) => Some(ips),
            Request::None => None,
        };
        if let Err(message) = check_families(s) {
            return pending(PendingReason::InvalidRequest, message);
        }
        if let Some(ips) = requested {
            return self.serve_request(i, ips);
        }
        match self.held[i].iter().flatten().next() {
            Some(held) => {
                let pool = self.used[held].pool;
                self.complete(i, pool);
                Ok(())
            }
            None => self.serve_fresh(i),
        }
    }

    /// Adds what a PreferDualStack Service that kept one address lacks,
    /// from the same pool, when it can.
    fn complete(&mut self, i: usize, pool: usize) {
        for &family in self.services[i].address_families() {
            if self.held[i][family.index()].is_some() {
                continue;
            }
            if let Some(pick) = self.pick(i, pool, family) {
                self.take(i, pool, pick);
            }
        }
    }

    fn serve_request(&mut self, i: usize, ips: &[IpAddr]) -> PendingResult {
        let s = self.services[i];
        if let Err(message) = check_request(s, ips) {
            return pending(PendingReason::InvalidRequest, message);
        }
        let mut pool: Option<usize> = None;
        for &ip in ips {
            let Some(p) = self.pool_of(ip) else {
                return pending(
                    PendingReason::RequestedIpNotInPool,
                    format!("requested address {ip} is in no valid pool"),
                );
            };
            if let Some(other) = pool
                && other != p
            {
                return pending(
                    PendingReason::RequestedIpNotInPool,
                    format!(
                        "requested addresses are in two pools, {:?} and {:?}; a Service's addresses come from one pool",
                        self.index.pools[other].name, self.index.pools[p].name
                    ),
                );
            }
            pool = Some(p);
            let name = self.index.pools[p].name;
            if let Some(wanted) = &s.pool
                && wanted != name
            {
                return pending(
                    PendingReason::RequestedIpNotInPool,
                    format!(
                        "requested address {ip} is in pool {name:?}, not in the requested pool {wanted:?}"
                    ),
                );
            }
            if !self.admits(p, s) {
                return pending(
                    PendingReason::RequestedIpNotInPool,
                    format!(
                        "requested address {ip} is in pool {name:?}, whose selectors do not admit this Service"
                    ),
                );
            }
        }
        let Some(pool) = pool else {
            return pending(
                PendingReason::InvalidRequest,
                "the request names no address",
            );
        };
        // Check every address before holding any: a Pending Service holds
        // nothing.
        for &ip in ips {
            if !self.held[i].contains(&Some(ip)) && !self.available(i, pool, ip) {
                let holders: Vec<String> = self.used[&ip]
                    .holders()
                    .map(|h| self.services[h].id.to_string())
                    .collect();
                return pending(
                    PendingReason::RequestedIpInUse,
                    format!("requested address {ip} is held by {}", holders.join(", ")),
                );
            }
        }
        for &ip in ips {
            if !self.held[i].contains(&Some(ip)) {
                self.hold(i, pool, ip);
            }
        }
        Ok(())
    }

    fn serve_fresh(&mut self, i: usize) -> PendingResult {
        let s = self.services[i];
        let wanted = s.address_families();
        let candidates: Vec<usize> = (0..self.index.pools.len())
            .filter(|&p| self.candidate(p, s))
            .collect();
        let has: Vec<(usize, [bool; 2])> = candidates
            .iter()
            .map(|&p| (p, Family::ALL.map(|f| self.index.pools[p].has(f))))
            .collect();
        let with = |fams: &[Family]| -> Vec<usize> {
            has.iter()
                .filter(|(_, h)| fams.iter().all(|f| h[f.index()]))
                .map(|&(p, _)| p)
                .collect()
        };
        let no_pool = |fams: &[Family]| {
            let what = match &s.pool {
                Some(name) => format!(
                    "pool {name:?} does not exist, is invalid, or does not admit this Service"
                ),
                None => "no pool admits this Service".to_owned(),
            };
            pending(
                PendingReason::NoMatchingPool,
                format!("{what} with {} addresses", families(fams, " or ")),
            )
        };
        match s.family_policy {
            FamilyPolicy::RequireDualStack => {
                let pools = with(wanted);
                if pools.is_empty() {
                    if wanted.iter().all(|&f| with(&[f]).is_empty()) {
                        return no_pool(wanted);
                    }
                    return pending(
                        PendingReason::DualStackUnavailable,
                        "RequireDualStack, and no pool that admits this Service has both IPv4 and IPv6 addresses",
                    );
                }
                if self.choose(i, &pools, wanted) {
                    return Ok(());
                }
                self.exhausted(&pools, wanted)
            }
            // SingleStack wants one family; PreferDualStack wants one or two,
            // and settles for the first family a candidate pool can serve.
            // A PreferDualStack Service is served from the pools with a
            // priority when they can serve it at all (both families from
            // one pool, else one family), and only then from the others:
            // a priority is an explicit preference, which a pool without
            // one does not outrank for holding a second family (MetalLB
            // does the same with its namespace- and label-restricted pools;
            // `herald import metallb` gives those a priority).
            FamilyPolicy::SingleStack | FamilyPolicy::PreferDualStack => {
                if wanted.len() > 1 {
                    let prioritized = |p: &usize| self.index.pools[*p].spec.priority.is_some();
                    let (first, second): (Vec<usize>, Vec<usize>) =
                        with(&[]).into_iter().partition(prioritized);
                    for group in [first, second] {
                        let within = |fams: &[Family]| -> Vec<usize> {
                            with(fams)
                                .into_iter()
                                .filter(|p| group.contains(p))
                                .collect()
                        };
                        if self.choose(i, &within(wanted), wanted) {
                            return Ok(());
                        }
                        for &f in wanted {
                            if self.choose(i, &within(&[f]), &[f]) {
                                return Ok(());
                            }
                        }
                    }
                }
                let mut any = Vec::new();
                for &f in wanted {
                    let pools = with(&[f]);
                    if self.choose(i, &pools, &[f]) {
                        return Ok(());
                    }
                    any.extend(pools);
                }
                if any.is_empty() {
                    return no_pool(wanted);
                }
                any.sort_unstable();
                any.dedup();
                self.exhausted(&any, wanted)
            }
        }
    }

    fn exhausted(&self, pools: &[usize], fams: &[Family]) -> PendingResult {
        let names: Vec<&str> = pools.iter().map(|&p| self.index.pools[p].name).collect();
        pending(
            PendingReason::PoolExhausted,
            format!(
                "no free {} address in {} {}",
                families(fams, "+"),
                if names.len() == 1 { "pool" } else { "pools" },
                names.join(", ")
            ),
        )
    }

    /// Takes one address of each family from the first pool that can serve
    /// them all, preferring (for a Service with a sharing key) a pool where
    /// it can join an address of its first family.
    fn choose(&mut self, i: usize, pools: &[usize], fams: &[Family]) -> bool {
        let picks = |this: &Self, p: usize| -> Option<Vec<Pick<'a>>> {
            fams.iter().map(|&f| this.pick(i, p, f)).collect()
        };
        let shared_first = pools
            .iter()
            .find(|&&p| self.joinable_in(i, p, fams[0]).is_some())
            .and_then(|&p| picks(self, p).map(|ips| (p, ips)));
        let chosen = shared_first.or_else(|| {
            pools
                .iter()
                .find_map(|&p| picks(self, p).map(|ips| (p, ips)))
        });
        match chosen {
            Some((pool, picks)) => {
                for pick in picks {
                    self.take(i, pool, pick);
                }
                true
            }
            None => false,
        }
    }
}

/// Checks the Service's families against its policy: a RequireDualStack
/// Service must list both (an API server fills in the second, or refuses
/// the Service on a single-stack cluster, so a live one always does).
fn check_families(s: &Service) -> Result<(), String> {
    match (s.family_policy, s.address_families()) {
        (FamilyPolicy::RequireDualStack, &[only]) => Err(format!(
            "RequireDualStack, but spec.ipFamilies lists only {only}; an API server lists both families or refuses the Service"
        )),
        _ => Ok(()),
    }
}

/// Checks a request against the Service's families: at most one address
/// per family, each of a family the Service has ([`Service::address_families`]);
/// SingleStack exactly one; RequireDualStack one of each.
fn check_request(s: &Service, ips: &[IpAddr]) -> Result<(), String> {
    let count = |f: Family| ips.iter().filter(|ip| Family::of(**ip) == f).count();
    let (v4, v6) = (count(Family::IPv4), count(Family::IPv6));
    if v4 > 1 || v6 > 1 {
        return Err(format!(
            "the request names two addresses of one family: {}",
            join(ips)
        ));
    }
    let wanted = s.address_families();
    match s.family_policy {
        FamilyPolicy::SingleStack => {
            let family = wanted[0];
            if ips.len() != 1 || Family::of(ips[0]) != family {
                return Err(format!(
                    "a SingleStack {family} Service must request exactly one {family} address, not {}",
                    join(ips)
                ));
            }
        }
        FamilyPolicy::RequireDualStack if v4 != 1 || v6 != 1 => {
            return Err(format!(
                "a RequireDualStack Service must request one IPv4 and one IPv6 address, not {}",
                join(ips)
            ));
        }
        _ if ips.is_empty() => return Err("the request names no address".to_owned()),
        _ => {
            if let Some(ip) = ips.iter().find(|ip| !wanted.contains(&Family::of(**ip))) {
                return Err(format!(
                    "requested address {ip} is {}, but the Service has only {} (spec.ipFamilies)",
                    Family::of(*ip),
                    families(wanted, " and ")
                ));
            }
        }
    }
    Ok(())
}

fn families(fams: &[Family], separator: &str) -> String {
    let parts: Vec<String> = fams.iter().map(|f| f.to_string()).collect();
    parts.join(separator)
}

fn join(ips: &[IpAddr]) -> String {
    let parts: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
    parts.join(",")
}

#[cfg(test)]
mod tests;
