//! `IPPool` and `PolicyPlugin` status, pure: from a plan, the plugin
//! registry's report and the objects the cluster holds, the statuses that
//! differ from what the objects show (an unchanged cluster gives
//! [`Statuses::is_empty`]).
//!
//! - An `IPPool` shows its capacity and allocated addresses, in total and
//!   per family it has, and the condition `Valid`: True, or False with the
//!   reason (`Malformed`, `Overlapping`) and the message `herald plan`
//!   reports.
//! - A `PolicyPlugin` shows the digest of the component the controller runs
//!   (`loadedDigest`), the condition `Ready` (True when the version the spec
//!   asks for runs; False with `Invalid` for a spec Herald refuses, or
//!   `LoadFailed`), and `lastError`: the refusal or load failure while it
//!   lasts, else the latest failed call, kept until a new version is loaded
//!   or a later failure replaces it (a plan without calls clears nothing).
//!
//! A condition keeps its `lastTransitionTime` while its status stays.

use herald_api::plugin::{PolicyPlugin, PolicyPluginStatus};
use herald_api::pool::{IPPool, IPPoolFamilyStatus, IPPoolStatus};
use herald_core::{Plan, PoolUsage};
use herald_policy::PluginStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::inputs::Objects;

/// The type of an `IPPool`'s condition.
pub const POOL_CONDITION: &str = "Valid";
/// The type of a `PolicyPlugin`'s condition.
pub const PLUGIN_CONDITION: &str = "Ready";

/// The statuses to write.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statuses {
    /// `IPPool` statuses, by pool name.
    pub pools: Vec<(String, IPPoolStatus)>,
    /// `PolicyPlugin` statuses, by plugin name.
    pub plugins: Vec<(String, PolicyPluginStatus)>,
}

impl Statuses {
    /// Whether every object already shows its status.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty() && self.plugins.is_empty()
    }
}

/// The statuses that differ from what the objects show. `loaded` is the
/// plugin registry's report after the plan's sync; `now` stamps a
/// condition whose status changes.
pub fn changes(plan: &Plan, loaded: &[PluginStatus], objects: &Objects, now: &Time) -> Statuses {
    let mut out = Statuses::default();
    for pool in &objects.pools {
        let name = pool.name_any();
        let Some(usage) = plan.pools.iter().find(|u| u.name == name) else {
            continue;
        };
        let wanted = pool_status(usage, pool, now);
        if pool.status.as_ref() != Some(&wanted) {
            out.pools.push((name, wanted));
        }
    }
    for plugin in &objects.plugins {
        let name = plugin.name_any();
        let report = loaded.iter().find(|p| p.name == name);
        let wanted = plugin_status(plugin, report, plan, now);
        if plugin.status.as_ref() != Some(&wanted) {
            out.plugins.push((name, wanted));
        }
    }
    out
}

/// What a pool shows for its usage.
fn pool_status(usage: &PoolUsage, pool: &IPPool, now: &Time) -> IPPoolStatus {
    let have = pool.status.as_ref();
    let family = |index: usize| {
        let f = usage.families[index];
        (f.capacity > 0).then(|| IPPoolFamilyStatus {
            capacity: f.capacity.to_string(),
            allocated: count(f.allocated),
        })
    };
    let (status, reason, message) = match &usage.invalid {
        None => (
            "True",
            "Valid",
            "Services get addresses from this pool".to_owned(),
        ),
        Some(invalid) => ("False", invalid.reason.as_str(), invalid.message.clone()),
    };
    IPPoolStatus {
        capacity: Some(usage.capacity.to_string()),
        allocated: Some(count(usage.allocated)),
        ipv4: family(0),
        ipv6: family(1),
        conditions: vec![condition(
            POOL_CONDITION,
            (status, reason, message),
            pool.metadata.generation,
            have.map(|s| s.conditions.as_slice()),
            now,
        )],
    }
}

/// A count as the API's integer (a pool cannot hold 2^63 Services).
fn count(n: u128) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What a plugin shows, from the registry's report on it (`None`: Herald
/// refused its spec, so it never reached the registry).
fn plugin_status(
    plugin: &PolicyPlugin,
    report: Option<&PluginStatus>,
    plan: &Plan,
    now: &Time,
) -> PolicyPluginStatus {
    let name = plugin.name_any();
    let have = plugin.status.as_ref();
    let plan_errors: Vec<&str> = plan
        .errors
        .iter()
        .filter(|e| e.kind == "PolicyPlugin" && e.name == name)
        .map(|e| e.message.as_str())
        .collect();
    let digest = report.and_then(|r| r.digest.clone());
    // Why the version the spec asks for does not run.
    let problem = match report {
        None => Some(("Invalid", plan_errors.join("; "))),
        Some(r) => r.error.clone().map(|e| ("LoadFailed", e)),
    };
    let last_error = match &problem {
        Some((_, message)) => Some(message.clone()),
        // Loaded: what the plan reports of it are failed calls.
        None if !plan_errors.is_empty() => Some(plan_errors.join("; ")),
        None => have.and_then(|h| {
            let was_ready = h
                .conditions
                .iter()
                .any(|c| c.type_ == PLUGIN_CONDITION && c.status == "True");
            (was_ready && h.loaded_digest == digest)
                .then(|| h.last_error.clone())
                .flatten()
        }),
    };
    let ready = match problem {
        Some((reason, message)) => ("False", reason, message),
        None => (
            "True",
            "Loaded",
            format!(
                "the controller runs the component with SHA-256 {}",
                digest.as_deref().unwrap_or_default()
            ),
        ),
    };
    PolicyPluginStatus {
        loaded_digest: digest,
        last_error,
        conditions: vec![condition(
            PLUGIN_CONDITION,
            ready,
            plugin.metadata.generation,
            have.map(|s| s.conditions.as_slice()),
            now,
        )],
    }
}

/// A condition of type `type_`, keeping the transition time of the one in
/// `have` when its status is the same.
fn condition(
    type_: &str,
    (status, reason, message): (&str, &str, String),
    generation: Option<i64>,
    have: Option<&[Condition]>,
    now: &Time,
) -> Condition {
    let last_transition_time = have
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The JSON merge patch of a status subresource that makes it exactly
/// `status`: fields `status` leaves out are set to null (removed).
pub fn patch(status: &impl serde::Serialize, fields: &[&str]) -> Value {
    let mut value = serde_json::to_value(status).expect("a status serializes");
    if let Value::Object(map) = &mut value {
        for field in fields {
            map.entry(*field).or_insert(Value::Null);
        }
    }
    json!({ "status": value })
}

/// The fields of `IPPool.status`.
pub const POOL_FIELDS: [&str; 5] = ["capacity", "allocated", "ipv4", "ipv6", "conditions"];
/// The fields of `PolicyPlugin.status`.
pub const PLUGIN_FIELDS: [&str; 3] = ["loadedDigest", "lastError", "conditions"];

#[cfg(test)]
mod tests;
