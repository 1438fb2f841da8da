//! The policy hooks: decisions a plugin may take over from the built-in
//! policies. The core calls these traits and never knows whether a built-in
//! Rust policy or a WebAssembly component answers (DESIGN.md §1, §6).
//!
//! A policy's "no" is a value (`Ok(None)`: this pool cannot serve); a
//! plugin's failure (trap, timeout, invalid answer) is a [`PolicyError`],
//! handled by the plugin's [`FailurePolicy`]: `Fallback` decides with the
//! built-in policy, `Fail` makes no decision (the pool does not serve the
//! Service). Every failure is reported with the plugin's name.
//!
//! This is the vocabulary allocation and announcement planning share with
//! the plugin host: the hooks and what they exchange. It depends only on
//! the leaf modules (`addr`, `bgp`, `config`, `node`, `plugin`, `service`), never on
//! [`allocate`](mod@crate::allocate) or [`announce`](mod@crate::announce),
//! which both use it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::addr::Family;
use crate::bgp::{Community, LargeCommunity};
use crate::config::ConfigError;
use crate::node::Node;
use crate::plugin::FailurePolicy;
use crate::service::Service;

/// A plugin failed: it trapped, ran out of time or memory, or answered
/// something invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin:?}: {message}")]
pub struct PolicyError {
    /// The `PolicyPlugin`'s name.
    pub plugin: String,
    /// What went wrong.
    pub message: String,
}

/// A read-only view of the free addresses of one family of one pool: what an
/// allocator policy may look at instead of a copied address list.
pub trait PoolView {
    /// The pool's name.
    fn name(&self) -> &str;
    /// The family of the addresses in view.
    fn family(&self) -> Family;
    /// Usable addresses of the family (after `avoidBuggyIPs`; saturating).
    fn capacity(&self) -> u128;
    /// Free usable addresses of the family.
    fn free_count(&self) -> u128;
    /// Whether `ip` is a usable, free address of the pool.
    fn is_free(&self, ip: IpAddr) -> bool;
    /// The lowest free address greater than `after` (`None`: the lowest).
    fn next_free_after(&self, after: Option<IpAddr>) -> Option<IpAddr>;
    /// The lowest and highest address of the family in the pool, usable or
    /// not (`None`: the pool has none of the family).
    fn bounds(&self) -> Option<(IpAddr, IpAddr)>;
    /// An owned copy of this view, for a host that must hand `'static` data
    /// to a sandbox (a WebAssembly `Store`). Costs a copy of the pool's
    /// free-interval index.
    fn to_static(&self) -> Box<dyn PoolView + Send + Sync>;
}

/// Chooses which free address of a pool a Service gets.
pub trait AllocatorPolicy: Send + Sync {
    /// A free address of `pool`'s family for `service`, or `None` when the
    /// policy will not serve it from this pool. Called only for a fresh
    /// address (held, requested and shared addresses are the core's rules).
    /// The answer must be free in the view; anything else is a failure.
    fn choose(&self, service: &Service, pool: &dyn PoolView)
    -> Result<Option<IpAddr>, PolicyError>;
}

/// The built-in allocator policy: the lowest free address.
#[derive(Clone, Copy, Debug, Default)]
pub struct LowestFree;

impl AllocatorPolicy for LowestFree {
    fn choose(
        &self,
        _service: &Service,
        pool: &dyn PoolView,
    ) -> Result<Option<IpAddr>, PolicyError> {
        Ok(pool.next_free_after(None))
    }
}

/// How a VIP is announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// By BGP: any number of nodes.
    Bgp,
    /// On the local segment: exactly one node.
    L2,
}

/// A node as an announcer policy sees it for one VIP.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// The node.
    pub node: &'a Node,
    /// Ready endpoints of the VIP's Services on the node.
    pub endpoints: u32,
}

/// What an announcer policy is asked about one VIP.
#[derive(Clone, Debug)]
pub struct AnnounceQuery<'a> {
    /// The VIP.
    pub vip: IpAddr,
    /// BGP or L2.
    pub mode: Mode,
    /// The Services sharing the VIP.
    pub services: Vec<&'a Service>,
    /// The eligible nodes, by name. Only these may be named in the answer.
    pub eligible: Vec<Candidate<'a>>,
}

/// One node an announcer policy chooses, with its per-node attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeChoice {
    /// The node's name (one of the eligible nodes).
    pub node: String,
    /// The weight (link bandwidth) for weighted BGP.
    pub weight: u32,
    /// LOCAL_PREF override.
    pub local_pref: Option<u32>,
    /// MED override.
    pub med: Option<u32>,
    /// Communities added to the advertisement's.
    pub communities: Vec<Community>,
    /// Large communities added to the advertisement's.
    pub large_communities: Vec<LargeCommunity>,
    /// AS-path prepends override.
    pub as_path_prepend: Option<u8>,
}

/// Chooses which eligible nodes announce a VIP, and how.
pub trait AnnouncerPolicy: Send + Sync {
    /// The chosen nodes: for L2 exactly one; for BGP any subset of the
    /// eligible nodes. The host checks the answer; anything else is a
    /// failure.
    fn announce(&self, query: &AnnounceQuery<'_>) -> Result<Vec<NodeChoice>, PolicyError>;
}

/// A loaded plugin as the core sees it: the policy and what to do when it
/// fails.
pub struct Plugin<'a, P: ?Sized> {
    /// The policy.
    pub policy: &'a P,
    /// What a failure leads to.
    pub failure_policy: FailurePolicy,
}

// Derives would ask `P: Clone`; a shared reference is copyable whatever `P`.
impl<P: ?Sized> Clone for Plugin<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: ?Sized> Copy for Plugin<'_, P> {}

/// The plugins available to a run, by `PolicyPlugin` name. Pools and
/// advertisements that name a plugin missing here use the built-in policy,
/// and the plan reports it.
#[derive(Clone, Default)]
pub struct Policies<'a> {
    /// Allocator plugins (world `allocator`).
    pub allocators: BTreeMap<String, Plugin<'a, dyn AllocatorPolicy + 'a>>,
    /// Announcer plugins (world `announcer`).
    pub announcers: BTreeMap<String, Plugin<'a, dyn AnnouncerPolicy + 'a>>,
}

/// No plugins: every decision is built in.
pub static BUILT_IN: Policies<'static> = Policies {
    allocators: BTreeMap::new(),
    announcers: BTreeMap::new(),
};

/// The plugin failures met while planning, reported once per plugin and
/// outcome: the first in full, with what it was deciding, and how many
/// more there were. One broken plugin over a thousand Services is one line
/// of the plan (and of the speaker's log), not a thousand differing only
/// in their timings.
#[derive(Clone, Debug, Default)]
pub struct Failures {
    by_plugin: BTreeMap<(String, &'static str), (usize, String)>,
}

impl Failures {
    /// Records that `e` happened while deciding `subject` (a Service, a
    /// VIP), and what was done instead (`outcome`).
    pub fn record(
        &mut self,
        e: PolicyError,
        subject: &dyn std::fmt::Display,
        outcome: &'static str,
    ) {
        self.by_plugin
            .entry((e.plugin, outcome))
            .or_insert_with(|| (0, format!("for {subject}: {}", e.message)))
            .0 += 1;
    }

    /// One error of kind `PolicyPlugin` per plugin and outcome.
    pub fn into_errors(self) -> impl Iterator<Item = ConfigError> {
        self.by_plugin
            .into_iter()
            .map(|((plugin, outcome), (count, first))| ConfigError {
                kind: "PolicyPlugin".to_owned(),
                name: plugin,
                message: if count == 1 {
                    format!("failed {first}; {outcome}")
                } else {
                    format!("failed {count} times, first {first}; each time {outcome}")
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_one_line_per_plugin_and_outcome_with_the_first_in_full() {
        let mut f = Failures::default();
        let e = |plugin: &str, us: u32| PolicyError {
            plugin: plugin.to_owned(),
            message: format!("trapped after {us} µs"),
        };
        for i in 0..1000 {
            f.record(
                e("slow", i),
                &format!("a/svc-{i}"),
                "the built-in policy decided",
            );
        }
        f.record(e("other", 7), &"a/web", "the built-in policy decided");
        let errors: Vec<ConfigError> = f.into_errors().collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].name, "other");
        assert_eq!(
            errors[0].message,
            "failed for a/web: trapped after 7 µs; the built-in policy decided"
        );
        assert_eq!(
            errors[1].message,
            "failed 1000 times, first for a/svc-0: trapped after 0 µs; each time the built-in policy decided"
        );
    }
}
