//! Pools as the allocator sees them: merged address ranges per family, the
//! `avoidBuggyIPs` rule, capacity, and an index of free addresses that finds
//! the lowest free one in logarithmic time; the validation of a snapshot's
//! pools (DESIGN.md §4.2) and the index of valid pools by address that
//! allocation and announcement planning share.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::addr::{AddressRange, Family, value};
use crate::config::ConfigError;
use crate::selector::LabelSelector;
use crate::service::by_age;

/// A validated `IPPool` spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// The address entries, in the order written (they may overlap each other).
    pub addresses: Vec<AddressRange>,
    /// `autoAssign`: whether Services without a request for this pool may get
    /// addresses from it.
    pub auto_assign: bool,
    /// `avoidBuggyIPs`: skip IPv4 addresses ending in `.0` or `.255`.
    pub avoid_buggy_ips: bool,
    /// `allocation.priority`: pools with a priority come first, lower first.
    pub priority: Option<i32>,
    /// `allocation.namespaces`: when non-empty, only these namespaces.
    pub namespaces: Vec<String>,
    /// `allocation.namespaceSelector`, on the Namespace's labels.
    pub namespace_selector: Option<LabelSelector>,
    /// `allocation.serviceSelector`, on the Service's labels.
    pub service_selector: Option<LabelSelector>,
    /// `allocatorPlugin`: the PolicyPlugin that chooses fresh addresses.
    pub allocator_plugin: Option<String>,
}

impl PoolSpec {
    /// A pool with these addresses and every other field at its default.
    pub fn new(addresses: Vec<AddressRange>) -> PoolSpec {
        PoolSpec {
            addresses,
            auto_assign: true,
            avoid_buggy_ips: false,
            priority: None,
            namespaces: Vec::new(),
            namespace_selector: None,
            service_selector: None,
            allocator_plugin: None,
        }
    }
}

/// An `IPPool` object: its identity and either a valid spec or why it is
/// malformed (a malformed pool is reported and unused, nothing else stops).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolDecl {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.creationTimestamp` in seconds since the epoch, if set.
    pub created: Option<i64>,
    /// The spec, or the message saying which field is malformed.
    pub spec: Result<PoolSpec, String>,
}

/// Whether an address is skipped by `avoidBuggyIPs` (IPv4 `.0` and `.255`).
fn buggy(family: Family, v: u128) -> bool {
    family == Family::IPv4 && matches!(v & 0xff, 0 | 0xff)
}

/// How many addresses of `0..=n` are buggy.
fn buggy_up_to(n: u128) -> u128 {
    let r = n & 0xff;
    (n >> 8) * 2 + 1 + u128::from(r == 0xff)
}

/// The addresses of one family of a pool: merged, sorted, disjoint ranges.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ranges {
    ranges: Vec<(u128, u128)>,
}

impl Ranges {
    /// Merges the ranges of `family` out of `entries`.
    pub(crate) fn of(entries: &[AddressRange], family: Family) -> Ranges {
        let mut ranges: Vec<(u128, u128)> = entries
            .iter()
            .filter(|r| r.family == family)
            .map(|r| (r.first, r.last))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (first, last) in ranges {
            match merged.last_mut() {
                Some((_, end)) if end.checked_add(1).is_none_or(|next| first <= next) => {
                    *end = (*end).max(last);
                }
                _ => merged.push((first, last)),
            }
        }
        Ranges { ranges: merged }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.ranges.iter().copied()
    }

    fn contains(&self, v: u128) -> bool {
        let i = self.ranges.partition_point(|&(_, last)| last < v);
        self.ranges.get(i).is_some_and(|&(first, _)| first <= v)
    }
}

/// The usable addresses of one family of one pool, and which of them are
/// free.
///
/// Free addresses are kept as disjoint intervals keyed by their start, each
/// holding at least one usable (non-buggy) address, so the lowest free address
/// is the first usable address of the first interval: O(log n), however many
/// addresses are taken.
///
/// Cloning is cheap: the intervals are shared until one of the clones
/// changes (a policy plugin gets its own view of the pool for one call, so a
/// pool with thousands of holes is not copied for every decision).
#[derive(Clone, Debug)]
pub(crate) struct FamilyPool {
    family: Family,
    avoid_buggy: bool,
    ranges: Ranges,
    capacity: u128,
    taken: u128,
    free: Arc<BTreeMap<u128, u128>>,
}

impl FamilyPool {
    pub(crate) fn new(family: Family, ranges: Ranges, avoid_buggy: bool) -> FamilyPool {
        let avoid_buggy = avoid_buggy && family == Family::IPv4;
        let mut pool = FamilyPool {
            family,
            avoid_buggy,
            ranges,
            capacity: 0,
            taken: 0,
            free: Arc::new(BTreeMap::new()),
        };
        let ranges: Vec<_> = pool.ranges.iter().collect();
        for (first, last) in ranges {
            pool.capacity = pool.capacity.saturating_add(pool.count(first, last));
            pool.insert_free(first, last);
        }
        pool
    }

    /// Usable addresses in `first..=last` (saturating at `u128::MAX` for the
    /// whole IPv6 space).
    fn count(&self, first: u128, last: u128) -> u128 {
        let all = (last - first).saturating_add(1);
        if !self.avoid_buggy {
            return all;
        }
        let below = if first == 0 {
            0
        } else {
            buggy_up_to(first - 1)
        };
        all - (buggy_up_to(last) - below)
    }

    fn first_usable(&self, first: u128, last: u128) -> Option<u128> {
        let mut v = first;
        while self.avoid_buggy && buggy(self.family, v) {
            v += 1;
            if v > last {
                return None;
            }
        }
        Some(v)
    }

    fn insert_free(&mut self, first: u128, last: u128) {
        if self.first_usable(first, last).is_some() {
            Arc::make_mut(&mut self.free).insert(first, last);
        }
    }

    pub(crate) fn capacity(&self) -> u128 {
        self.capacity
    }

    /// The lowest and highest address of the ranges (usable or not).
    pub(crate) fn bounds(&self) -> Option<(u128, u128)> {
        let mut ranges = self.ranges.iter();
        let (first, mut last) = ranges.next()?;
        for (_, l) in ranges {
            last = last.max(l);
        }
        Some((first, last))
    }

    pub(crate) fn family(&self) -> Family {
        self.family
    }

    pub(crate) fn free_count(&self) -> u128 {
        self.capacity - self.taken
    }

    /// The lowest free address above `after` (`None`: the lowest).
    pub(crate) fn next_free_after(&self, after: Option<u128>) -> Option<u128> {
        let Some(after) = after else {
            return self.lowest_free();
        };
        let start = after.checked_add(1)?;
        if let Some((first, last)) = self.interval_of(start)
            && let Some(v) = self.first_usable(start.max(first), last)
        {
            return Some(v);
        }
        let (&first, &last) = self.free.range(start..).next()?;
        self.first_usable(first, last)
    }

    /// Whether `v` is an address of this pool (after `avoidBuggyIPs`).
    pub(crate) fn contains(&self, v: u128) -> bool {
        !(self.avoid_buggy && buggy(self.family, v)) && self.ranges.contains(v)
    }

    fn interval_of(&self, v: u128) -> Option<(u128, u128)> {
        self.free
            .range(..=v)
            .next_back()
            .filter(|&(_, &last)| last >= v)
            .map(|(&first, &last)| (first, last))
    }

    /// Whether `v` is an address of the pool that nobody holds.
    pub(crate) fn is_free(&self, v: u128) -> bool {
        self.contains(v) && self.interval_of(v).is_some()
    }

    /// The lowest free address.
    pub(crate) fn lowest_free(&self) -> Option<u128> {
        let (&first, &last) = self.free.iter().next()?;
        self.first_usable(first, last)
    }

    /// Marks `v` as held. Returns false when it was not free.
    pub(crate) fn take(&mut self, v: u128) -> bool {
        if !self.contains(v) {
            return false;
        }
        let Some((first, last)) = self.interval_of(v) else {
            return false;
        };
        Arc::make_mut(&mut self.free).remove(&first);
        self.taken += 1;
        if v > first {
            self.insert_free(first, v - 1);
        }
        if v < last {
            self.insert_free(v + 1, last);
        }
        true
    }

    /// The address with the given value, in this pool's family.
    pub(crate) fn addr(&self, v: u128) -> IpAddr {
        self.family.addr(v)
    }
}

/// How full a pool is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// `metadata.name`.
    pub name: String,
    /// Whether the pool is used at all.
    pub valid: bool,
    /// Usable addresses (after `avoidBuggyIPs`; 0 when invalid; saturates at
    /// `u128::MAX`).
    pub capacity: u128,
    /// Distinct addresses held.
    pub allocated: u128,
    /// Capacity and allocated by family, IPv4 then IPv6 ([`Family::index`]);
    /// `capacity` and `allocated` are their sums.
    pub families: [FamilyUsage; 2],
    /// Why the pool is not used: `Some` exactly when `valid` is false (the
    /// message is also one of the plan's errors).
    pub invalid: Option<InvalidPool>,
}

/// How full one family of a pool is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyUsage {
    /// Usable addresses of the family (saturates at `u128::MAX`).
    pub capacity: u128,
    /// Distinct addresses of the family held.
    pub allocated: u128,
}

/// Why a pool is not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidPool {
    /// The kind of fault.
    pub reason: InvalidReason,
    /// A sentence for people.
    pub message: String,
}

/// The kinds of fault that make a pool unused (DESIGN.md §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    /// A field does not validate (an address entry, a reserved block…).
    Malformed,
    /// An older pool has the same name (manifests only: a cluster cannot
    /// hold two).
    DuplicateName,
    /// Its addresses overlap those of an older valid pool.
    Overlapping,
}

impl InvalidReason {
    /// The reason as a condition or event reason (`Overlapping`).
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::Malformed => "Malformed",
            InvalidReason::DuplicateName => "DuplicateName",
            InvalidReason::Overlapping => "Overlapping",
        }
    }
}

/// A valid pool during allocation.
#[derive(Clone)]
pub(crate) struct LivePool<'a> {
    pub(crate) name: &'a str,
    pub(crate) spec: &'a PoolSpec,
    pub(crate) families: [FamilyPool; 2],
}

impl LivePool<'_> {
    pub(crate) fn has(&self, family: Family) -> bool {
        self.family(family).capacity() > 0
    }

    pub(crate) fn family(&self, family: Family) -> &FamilyPool {
        &self.families[family.index()]
    }
}

type Owners = BTreeMap<(Family, u128), (u128, usize)>;

/// The valid pools of a snapshot (DESIGN.md §4.2), and which pool each
/// address is in: what the speakers use to match VIPs to advertisements.
#[derive(Clone)]
pub struct PoolIndex<'a> {
    /// Valid pools in candidate order.
    pub(crate) pools: Vec<LivePool<'a>>,
    /// Valid pools' ranges by (family, first address): (last, pool index).
    owners: Owners,
}

impl<'a> PoolIndex<'a> {
    /// Validates the pools as the allocator does; invalid ones are left out.
    pub fn new(decls: &'a [PoolDecl]) -> PoolIndex<'a> {
        validate_pools(decls, &mut Vec::new()).0
    }

    /// The valid pool an address belongs to (after `avoidBuggyIPs`).
    pub(crate) fn pool_of(&self, ip: IpAddr) -> Option<usize> {
        let f = Family::of(ip);
        let v = value(ip);
        let (&(family, _), &(last, pool)) = self.owners.range(..=(f, v)).next_back()?;
        (family == f && last >= v && self.pools[pool].family(f).contains(v)).then_some(pool)
    }

    /// The name of the valid pool `ip` belongs to.
    pub fn pool_name(&self, ip: IpAddr) -> Option<&'a str> {
        self.pool_of(ip).map(|p| self.pools[p].name)
    }
}

/// Validates pools in age order and returns the valid ones in candidate
/// order, their ranges, and the usage rows of every pool (by name).
pub(crate) fn validate_pools<'a>(
    decls: &'a [PoolDecl],
    errors: &mut Vec<ConfigError>,
) -> (PoolIndex<'a>, Vec<PoolUsage>) {
    let mut by_age_order: Vec<&PoolDecl> = decls.iter().collect();
    by_age_order.sort_by(|a, b| by_age(a.created, b.created).then_with(|| a.name.cmp(&b.name)));

    let mut names: HashSet<&str> = HashSet::new();
    // Ranges of valid pools: (family, first) -> (last, name).
    let mut taken: BTreeMap<(Family, u128), (u128, &str)> = BTreeMap::new();
    let mut valid: Vec<(&str, &PoolSpec, [Ranges; 2])> = Vec::new();
    let mut usage = Vec::new();
    for decl in by_age_order {
        let first_of_name = names.insert(&decl.name);
        let verdict = match &decl.spec {
            Err(message) => Err((InvalidReason::Malformed, message.clone())),
            Ok(_) if !first_of_name => Err((
                InvalidReason::DuplicateName,
                "an earlier IPPool has the same name".to_owned(),
            )),
            Ok(spec) => {
                let ranges = Family::ALL.map(|f| Ranges::of(&spec.addresses, f));
                match overlap(&taken, &ranges) {
                    Some(message) => Err((InvalidReason::Overlapping, message)),
                    None => Ok((spec, ranges)),
                }
            }
        };
        match verdict {
            Ok((spec, ranges)) => {
                for f in Family::ALL {
                    for (first, last) in ranges[f.index()].iter() {
                        taken.insert((f, first), (last, &decl.name));
                    }
                }
                valid.push((&decl.name, spec, ranges));
            }
            Err((reason, message)) => {
                errors.push(ConfigError {
                    kind: "IPPool".into(),
                    name: decl.name.clone(),
                    message: message.clone(),
                });
                usage.push(PoolUsage {
                    name: decl.name.clone(),
                    valid: false,
                    capacity: 0,
                    allocated: 0,
                    families: [FamilyUsage::default(); 2],
                    invalid: Some(InvalidPool { reason, message }),
                });
            }
        }
    }

    valid.sort_by(|a, b| {
        (a.1.priority.is_none(), a.1.priority, a.0).cmp(&(
            b.1.priority.is_none(),
            b.1.priority,
            b.0,
        ))
    });
    let mut owners = Owners::new();
    let mut pools = Vec::with_capacity(valid.len());
    for (index, (name, spec, ranges)) in valid.into_iter().enumerate() {
        for f in Family::ALL {
            for (first, last) in ranges[f.index()].iter() {
                owners.insert((f, first), (last, index));
            }
        }
        let [v4, v6] = ranges;
        let families = [
            FamilyPool::new(Family::IPv4, v4, spec.avoid_buggy_ips),
            FamilyPool::new(Family::IPv6, v6, spec.avoid_buggy_ips),
        ];
        usage.push(PoolUsage {
            name: name.to_owned(),
            valid: true,
            capacity: families[0]
                .capacity()
                .saturating_add(families[1].capacity()),
            allocated: 0,
            families: families.each_ref().map(|f| FamilyUsage {
                capacity: f.capacity(),
                allocated: 0,
            }),
            invalid: None,
        });
        pools.push(LivePool {
            name,
            spec,
            families,
        });
    }
    usage.sort_by(|a, b| a.name.cmp(&b.name));
    (PoolIndex { pools, owners }, usage)
}

/// The first overlap of `ranges` with the ranges of earlier valid pools.
fn overlap(taken: &BTreeMap<(Family, u128), (u128, &str)>, ranges: &[Ranges; 2]) -> Option<String> {
    for f in Family::ALL {
        for (first, last) in ranges[f.index()].iter() {
            // Valid ranges are disjoint: only the last one starting at or
            // before `last` can reach back to `first`.
            if let Some((&(family, start), &(end, name))) = taken.range(..=(f, last)).next_back()
                && family == f
                && end >= first
            {
                let shared_first = first.max(start);
                return Some(format!(
                    "addresses overlap IPPool {name:?} (from {} on); pools must be disjoint",
                    f.addr(shared_first)
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family_pool(entries: &[&str], avoid_buggy: bool) -> FamilyPool {
        let entries: Vec<AddressRange> = entries.iter().map(|e| e.parse().unwrap()).collect();
        let family = entries[0].family;
        FamilyPool::new(family, Ranges::of(&entries, family), avoid_buggy)
    }

    fn v(s: &str) -> u128 {
        value(s.parse().unwrap())
    }

    #[test]
    fn overlapping_entries_of_one_pool_are_merged() {
        let p = family_pool(
            &[
                "198.51.100.0/25",
                "198.51.100.100-198.51.100.130",
                "198.51.100.131/32",
            ],
            false,
        );
        assert_eq!(p.capacity(), 132);
        assert_eq!(p.ranges.iter().count(), 1);
    }

    #[test]
    fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
        let p = family_pool(&["198.51.100.0/24"], true);
        assert_eq!(p.capacity(), 254);
        assert!(!p.contains(v("198.51.100.0")) && !p.contains(v("198.51.100.255")));
        assert_eq!(p.lowest_free(), Some(v("198.51.100.1")));
        let p = family_pool(&["198.51.100.255-198.51.101.0"], true);
        assert_eq!(p.capacity(), 0);
        assert_eq!(p.lowest_free(), None);
        let p = family_pool(&["198.51.100.250-198.51.101.5"], true);
        assert_eq!(p.capacity(), 10);
        let p = family_pool(&["0.0.0.0/0"], true);
        assert_eq!(p.capacity(), (1u128 << 32) - 2 * (1 << 24));
    }

    #[test]
    fn avoid_buggy_ips_does_not_apply_to_ipv6() {
        let p = family_pool(&["2001:db8::/120"], true);
        assert_eq!(p.capacity(), 256);
        assert_eq!(p.lowest_free(), Some(v("2001:db8::")));
    }

    #[test]
    fn whole_ipv6_space_saturates_capacity() {
        assert_eq!(family_pool(&["::/0"], false).capacity(), u128::MAX);
    }

    #[test]
    fn take_keeps_the_lowest_free_address() {
        let mut p = family_pool(&["198.51.100.0/24"], true);
        assert!(p.take(v("198.51.100.1")));
        assert!(!p.take(v("198.51.100.1")), "already held");
        assert!(
            !p.take(v("198.51.100.255")),
            "buggy address is not in the pool"
        );
        assert_eq!(p.lowest_free(), Some(v("198.51.100.2")));
        for i in 2..=254 {
            assert_eq!(p.lowest_free(), Some(v(&format!("198.51.100.{i}"))));
            assert!(p.take(v(&format!("198.51.100.{i}"))));
        }
        assert_eq!(p.lowest_free(), None, "only buggy addresses left");
        assert_eq!(p.free_count(), 0);
        assert!(!p.is_free(v("198.51.100.9")));
    }

    #[test]
    fn next_free_after_skips_held_and_buggy_addresses() {
        let mut p = family_pool(&["198.51.100.250-198.51.101.3", "198.51.102.0/30"], true);
        assert!(p.take(v("198.51.101.1")));
        assert_eq!(p.next_free_after(None), Some(v("198.51.100.250")));
        assert_eq!(
            p.next_free_after(Some(v("198.51.100.254"))),
            Some(v("198.51.101.2"))
        );
        assert_eq!(
            p.next_free_after(Some(v("198.51.101.3"))),
            Some(v("198.51.102.1"))
        );
        assert_eq!(p.next_free_after(Some(v("198.51.102.3"))), None);
        assert_eq!(p.free_count(), p.capacity() - 1);
    }

    #[test]
    fn edges_of_the_address_space() {
        let mut p = family_pool(&["::/127"], false);
        assert!(p.take(0));
        assert_eq!(p.lowest_free(), Some(1));
        let mut p = family_pool(&["ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"], false);
        assert!(p.take(u128::MAX));
        assert_eq!(p.lowest_free(), Some(u128::MAX - 1));
        assert!(p.take(u128::MAX - 1));
        assert_eq!(p.lowest_free(), None);
    }
}
