//! Pool and plugin status without a cluster: objects built from YAML,
//! planned by the core, the plugin registry's report written by hand.

use std::sync::Arc;

use herald_core::plugin::World;
use herald_core::{Config, ConfigError, allocate};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::inputs::Inputs;

fn object<K: serde::de::DeserializeOwned>(yaml: &str) -> Arc<K> {
    Arc::new(serde_yaml_ng::from_str(yaml).unwrap())
}

/// A pool created at second `age` of the day.
fn pool(name: &str, age: u32, addresses: &str) -> Arc<IPPool> {
    object(&format!(
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: {name}, generation: 1, creationTimestamp: \"2026-01-01T00:00:{age:02}Z\"}}\nspec: {{addresses: [{addresses}]}}\n"
    ))
}

fn service(name: &str, age: u32, extra: &str) -> Arc<k8s_openapi::api::core::v1::Service> {
    object(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop, creationTimestamp: \"2026-01-02T00:00:{age:02}Z\"}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}] {extra}}}\n"
    ))
}

const DIGEST: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER_DIGEST: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn plugin(name: &str, sha256: &str) -> Arc<PolicyPlugin> {
    object(&format!(
        "apiVersion: herald.dev/v1alpha1\nkind: PolicyPlugin\nmetadata: {{name: {name}, generation: 2}}\nspec: {{world: allocator, sha256: \"{sha256}\", source: {{file: /plugins/{name}.wasm}}}}\n"
    ))
}

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).unwrap())
}

fn later() -> Time {
    Time(Timestamp::from_second(1_800_000_100).unwrap())
}

/// The plan of the objects, with the plugin errors the controller adds
/// (refused specs; `extra`: load and call failures).
fn plan(objects: &Objects, extra: &[ConfigError]) -> Plan {
    let inputs = Inputs::of(objects);
    let mut plan = allocate(&inputs.snapshot, &Config::default());
    plan.errors.extend(inputs.errors);
    plan.errors.extend(extra.iter().cloned());
    plan
}

/// The objects once `statuses` are written.
fn written(objects: &Objects, statuses: &Statuses) -> Objects {
    let mut out = objects.clone();
    for (name, status) in &statuses.pools {
        let at = out
            .pools
            .iter()
            .position(|p| &p.name_any() == name)
            .unwrap();
        let mut pool = (*out.pools[at]).clone();
        pool.status = Some(status.clone());
        out.pools[at] = Arc::new(pool);
    }
    for (name, status) in &statuses.plugins {
        let at = out
            .plugins
            .iter()
            .position(|p| &p.name_any() == name)
            .unwrap();
        let mut plugin = (*out.plugins[at]).clone();
        plugin.status = Some(status.clone());
        out.plugins[at] = Arc::new(plugin);
    }
    out
}

fn pool_of<'a>(statuses: &'a Statuses, name: &str) -> &'a IPPoolStatus {
    &statuses
        .pools
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no status for pool {name}: {statuses:?}"))
        .1
}

fn plugin_of<'a>(statuses: &'a Statuses, name: &str) -> &'a PolicyPluginStatus {
    &statuses
        .plugins
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no status for plugin {name}: {statuses:?}"))
        .1
}

fn condition_of(conditions: &[Condition]) -> (&str, &str, &str) {
    let c = &conditions[0];
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

#[test]
fn a_pool_shows_capacity_and_allocated_in_total_and_per_family() {
    let objects = Objects {
        pools: vec![pool("blue", 1, "198.51.100.8/30, \"2001:db8::/120\"")],
        services: vec![
            service("dual", 1, ", ipFamilyPolicy: PreferDualStack"),
            service("four", 2, ""),
        ],
        ..Objects::default()
    };
    let statuses = changes(&plan(&objects, &[]), &[], &objects, &now());
    let blue = pool_of(&statuses, "blue");
    assert_eq!(blue.capacity.as_deref(), Some("260"));
    assert_eq!(blue.allocated, Some(3));
    assert_eq!(
        blue.ipv4,
        Some(IPPoolFamilyStatus {
            capacity: "4".into(),
            allocated: 2
        })
    );
    assert_eq!(
        blue.ipv6,
        Some(IPPoolFamilyStatus {
            capacity: "256".into(),
            allocated: 1
        })
    );
    assert_eq!(
        condition_of(&blue.conditions),
        ("True", "Valid", "Services get addresses from this pool")
    );
    assert_eq!(blue.conditions[0].observed_generation, Some(1));
    assert_eq!(blue.conditions[0].last_transition_time, now());

    // Written, nothing is left to write.
    let after = written(&objects, &statuses);
    assert!(changes(&plan(&after, &[]), &[], &after, &later()).is_empty());
}

#[test]
fn a_single_family_pool_has_no_entry_for_the_other_family() {
    let objects = Objects {
        pools: vec![pool("four", 1, "198.51.100.8/30")],
        ..Objects::default()
    };
    let statuses = changes(&plan(&objects, &[]), &[], &objects, &now());
    let four = pool_of(&statuses, "four");
    assert!(four.ipv4.is_some() && four.ipv6.is_none(), "{four:?}");
    assert_eq!(four.allocated, Some(0));
}

#[test]
fn pool_numbers_follow_services_and_the_transition_time_stays() {
    let mut objects = Objects {
        pools: vec![pool("blue", 1, "198.51.100.8/30")],
        services: vec![service("a", 1, "")],
        ..Objects::default()
    };
    objects = written(
        &objects,
        &changes(&plan(&objects, &[]), &[], &objects, &now()),
    );
    objects.services.push(service("b", 2, ""));
    let statuses = changes(&plan(&objects, &[]), &[], &objects, &later());
    let blue = pool_of(&statuses, "blue");
    assert_eq!(blue.allocated, Some(2));
    assert_eq!(blue.ipv4.as_ref().unwrap().allocated, 2);
    assert_eq!(blue.conditions[0].last_transition_time, now());

    objects = written(&objects, &statuses);
    objects.services.clear();
    let statuses = changes(&plan(&objects, &[]), &[], &objects, &later());
    assert_eq!(pool_of(&statuses, "blue").allocated, Some(0));
}

#[test]
fn an_overlapping_pool_is_not_valid_and_says_why() {
    let objects = Objects {
        pools: vec![
            pool("older", 1, "198.51.100.0/28"),
            pool("newer", 2, "198.51.100.8/29"),
        ],
        services: vec![service("web", 1, "")],
        ..Objects::default()
    };
    let statuses = changes(&plan(&objects, &[]), &[], &objects, &now());
    let newer = pool_of(&statuses, "newer");
    let (status, reason, message) = condition_of(&newer.conditions);
    assert_eq!((status, reason), ("False", "Overlapping"));
    assert!(
        message.contains("\"older\"") && message.contains("198.51.100.8"),
        "{message}"
    );
    assert_eq!(newer.capacity.as_deref(), Some("0"));
    assert_eq!((newer.allocated, &newer.ipv4), (Some(0), &None));
    assert_eq!(
        condition_of(&pool_of(&statuses, "older").conditions).0,
        "True"
    );

    // The older pool goes: the newer one becomes valid, at that time.
    let mut after = written(&objects, &statuses);
    after.pools.retain(|p| p.name_any() != "older");
    let statuses = changes(&plan(&after, &[]), &[], &after, &later());
    let newer = pool_of(&statuses, "newer");
    assert_eq!(condition_of(&newer.conditions).0, "True");
    assert_eq!(newer.conditions[0].last_transition_time, later());
    assert_eq!(newer.capacity.as_deref(), Some("8"));
}

#[test]
fn a_malformed_pool_is_not_valid_and_says_why() {
    let objects = Objects {
        pools: vec![pool("loop", 1, "127.0.0.1/32")],
        ..Objects::default()
    };
    let statuses = changes(&plan(&objects, &[]), &[], &objects, &now());
    let (status, reason, message) = condition_of(&pool_of(&statuses, "loop").conditions);
    assert_eq!((status, reason), ("False", "Malformed"));
    assert!(message.contains("loopback"), "{message}");
}

fn loaded(name: &str, digest: Option<&str>, error: Option<&str>) -> PluginStatus {
    PluginStatus {
        name: name.to_owned(),
        world: digest.map(|_| World::Allocator),
        digest: digest.map(str::to_owned),
        error: error.map(str::to_owned),
    }
}

#[test]
fn a_loaded_plugin_shows_its_digest_and_is_ready() {
    let objects = Objects {
        plugins: vec![plugin("hash", DIGEST)],
        ..Objects::default()
    };
    let report = [loaded("hash", Some(DIGEST), None)];
    let statuses = changes(&plan(&objects, &[]), &report, &objects, &now());
    let hash = plugin_of(&statuses, "hash");
    assert_eq!(hash.loaded_digest.as_deref(), Some(DIGEST));
    assert_eq!(hash.last_error, None);
    let (status, reason, message) = condition_of(&hash.conditions);
    assert_eq!((status, reason), ("True", "Loaded"));
    assert!(message.contains(DIGEST), "{message}");
    assert_eq!(hash.conditions[0].observed_generation, Some(2));
    let after = written(&objects, &statuses);
    assert!(changes(&plan(&after, &[]), &report, &after, &later()).is_empty());
}

#[test]
fn a_refused_spec_is_invalid_with_its_error() {
    let objects = Objects {
        plugins: vec![plugin("bad", "not-a-digest")],
        ..Objects::default()
    };
    // Refused by validation: it never reaches the registry.
    let statuses = changes(&plan(&objects, &[]), &[], &objects, &now());
    let bad = plugin_of(&statuses, "bad");
    assert_eq!(bad.loaded_digest, None);
    let (status, reason, message) = condition_of(&bad.conditions);
    assert_eq!((status, reason), ("False", "Invalid"));
    assert!(message.contains("spec.sha256"), "{message}");
    assert_eq!(bad.last_error.as_deref(), Some(message));
}

#[test]
fn a_failed_load_keeps_the_running_digest_and_says_why() {
    let objects = Objects {
        plugins: vec![plugin("hash", OTHER_DIGEST)],
        ..Objects::default()
    };
    let why = "component digest mismatch; version 001122334455 keeps running";
    let report = [loaded("hash", Some(DIGEST), Some(why))];
    let failure = ConfigError {
        kind: "PolicyPlugin".into(),
        name: "hash".into(),
        message: why.into(),
    };
    let statuses = changes(&plan(&objects, &[failure]), &report, &objects, &now());
    let hash = plugin_of(&statuses, "hash");
    assert_eq!(hash.loaded_digest.as_deref(), Some(DIGEST));
    assert_eq!(hash.last_error.as_deref(), Some(why));
    assert_eq!(condition_of(&hash.conditions), ("False", "LoadFailed", why));
}

#[test]
fn a_failed_call_stays_the_last_error_until_a_new_version_loads() {
    let objects = Objects {
        plugins: vec![plugin("hash", DIGEST)],
        ..Objects::default()
    };
    let report = [loaded("hash", Some(DIGEST), None)];
    let call = ConfigError {
        kind: "PolicyPlugin".into(),
        name: "hash".into(),
        message: "failed for shop/web: trapped; the built-in policy decided".into(),
    };
    let statuses = changes(&plan(&objects, &[call]), &report, &objects, &now());
    let hash = plugin_of(&statuses, "hash");
    assert_eq!(condition_of(&hash.conditions).0, "True");
    assert!(hash.last_error.as_deref().unwrap().contains("trapped"));

    // A later plan without calls keeps it.
    let after = written(&objects, &statuses);
    assert!(changes(&plan(&after, &[]), &report, &after, &later()).is_empty());

    // A new version clears it.
    let report = [loaded("hash", Some(OTHER_DIGEST), None)];
    let statuses = changes(&plan(&after, &[]), &report, &after, &later());
    let hash = plugin_of(&statuses, "hash");
    assert_eq!(hash.last_error, None);
    assert_eq!(hash.loaded_digest.as_deref(), Some(OTHER_DIGEST));
    assert_eq!(hash.conditions[0].last_transition_time, now());
}

#[test]
fn a_fixed_load_failure_clears_the_error() {
    let objects = Objects {
        plugins: vec![plugin("hash", DIGEST)],
        ..Objects::default()
    };
    let failing = [loaded("hash", None, Some("no such file; not loaded"))];
    let statuses = changes(&plan(&objects, &[]), &failing, &objects, &now());
    assert_eq!(
        condition_of(&plugin_of(&statuses, "hash").conditions).1,
        "LoadFailed"
    );
    let after = written(&objects, &statuses);
    let report = [loaded("hash", Some(DIGEST), None)];
    let statuses = changes(&plan(&after, &[]), &report, &after, &later());
    let hash = plugin_of(&statuses, "hash");
    assert_eq!(hash.last_error, None);
    assert_eq!(condition_of(&hash.conditions).0, "True");
    assert_eq!(hash.conditions[0].last_transition_time, later());
}

#[test]
fn the_patch_removes_fields_the_status_leaves_out() {
    let status = IPPoolStatus {
        capacity: Some("4".into()),
        allocated: Some(1),
        ..IPPoolStatus::default()
    };
    let patch = patch(&status, &POOL_FIELDS);
    assert_eq!(
        patch,
        json!({"status": {"capacity": "4", "allocated": 1, "ipv4": null, "ipv6": null, "conditions": null}})
    );
}
