//! The plugin registry on the built components: what a sync loads,
//! replaces, keeps and drops, and what it reports.

mod fixtures;

use fixtures::{plugin_dir, spec, wasm};
use herald_core::plugin::{FailurePolicy, PluginSource, PolicyPluginSpec, World};
use herald_policy::Registry;

/// A spec for the built component `name`, read from its file.
fn file_spec(world: World, name: &str) -> PolicyPluginSpec {
    let mut s = spec(world, name, &wasm(name), "{}");
    s.source = PluginSource::File(plugin_dir().join(format!("{name}.wasm")));
    s
}

fn names(map: &std::collections::BTreeMap<String, impl Sized>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

#[test]
fn sync_loads_by_world_keeps_unchanged_replaces_changed_and_drops_removed() {
    let mut registry = Registry::new();
    let zone = file_spec(World::Announcer, "zone-spread");
    let hash = file_spec(World::Allocator, "stable-hash");
    let cni = file_spec(World::CniChain, "dsr-loopback");
    let errors = registry.sync(&[
        ("spread".into(), zone.clone()),
        ("hash".into(), hash.clone()),
        ("dsr".into(), cni),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    {
        let p = registry.policies();
        assert_eq!(names(&p.announcers), ["spread"]);
        assert_eq!(names(&p.allocators), ["hash"]);
    }
    let zone_digest = registry.get("spread").unwrap().current().digest();

    // The same spec again: nothing is loaded (the running version is the
    // very same object).
    let before = registry.get("spread").unwrap().current();
    assert!(
        registry
            .sync(&[
                ("spread".into(), zone.clone()),
                ("hash".into(), hash.clone())
            ])
            .is_empty()
    );
    assert!(std::sync::Arc::ptr_eq(
        &before,
        &registry.get("spread").unwrap().current()
    ));
    assert!(registry.get("dsr").is_none(), "a removed plugin is dropped");

    // Another component under the same name, with Fail: replaced in place.
    let mut weighted = file_spec(World::Announcer, "endpoint-weighted");
    weighted.failure_policy = FailurePolicy::Fail;
    assert!(registry.sync(&[("spread".into(), weighted)]).is_empty());
    let now = registry.get("spread").unwrap().current();
    assert_ne!(now.digest(), zone_digest);
    assert_eq!(
        registry.policies().announcers["spread"].failure_policy,
        FailurePolicy::Fail
    );
    assert!(registry.get("hash").is_none());
}

#[test]
fn a_bad_new_version_leaves_the_old_one_running_and_is_reported_until_fixed() {
    let mut registry = Registry::new();
    let good = file_spec(World::Announcer, "zone-spread");
    assert!(registry.sync(&[("spread".into(), good.clone())]).is_empty());
    let running = registry.get("spread").unwrap().current().digest();

    let mut bad = good.clone();
    bad.sha256 = [0; 32];
    for _ in 0..2 {
        let errors = registry.sync(&[("spread".into(), bad.clone())]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind, "PolicyPlugin");
        assert_eq!(errors[0].name, "spread");
        let m = &errors[0].message;
        assert!(m.contains("sha256 mismatch"), "{m}");
        assert!(
            m.contains(&format!("version {} keeps running", &running[..12])),
            "{m}"
        );
        assert_eq!(registry.get("spread").unwrap().current().digest(), running);
        assert!(registry.policies().announcers.contains_key("spread"));
    }
    let status = registry.status();
    assert_eq!(status[0].digest.as_deref(), Some(running.as_str()));
    assert!(status[0].error.is_some());

    // Fixed: the error is gone.
    assert!(registry.sync(&[("spread".into(), good)]).is_empty());
    assert!(registry.status()[0].error.is_none());
}

#[test]
fn a_plugin_that_never_loaded_is_not_registered_and_says_so() {
    let mut registry = Registry::new();
    let mut missing = file_spec(World::Announcer, "zone-spread");
    missing.source = PluginSource::File(plugin_dir().join("no-such-plugin.wasm"));
    let errors = registry.sync(&[("ghost".into(), missing)]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("no-such-plugin.wasm"),
        "{errors:?}"
    );
    assert!(errors[0].message.ends_with("not loaded"), "{errors:?}");
    assert!(registry.policies().announcers.is_empty());
    assert_eq!(registry.status()[0].digest, None);
}
