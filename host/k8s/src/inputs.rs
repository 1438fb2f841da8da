//! The objects of the reflector stores into what the core plans with: the
//! same [`Snapshot`] and plugin specs `herald plan` builds from manifests,
//! through the same `herald_api::inputs` functions.

use std::sync::Arc;

use herald_api::inputs::{add_allocation, add_namespace, add_pool, add_service, plugin};
use herald_api::plugin::PolicyPlugin;
use herald_api::pool::{IPAllocation, IPPool};
use herald_core::plugin::PolicyPluginSpec;
use herald_core::{ConfigError, Snapshot};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::ResourceExt;

/// The objects the controller reads, as the stores hold them.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// Services of every type.
    pub services: Vec<Arc<Service>>,
    /// Namespaces (their labels).
    pub namespaces: Vec<Arc<Namespace>>,
    /// `IPPool`s.
    pub pools: Vec<Arc<IPPool>>,
    /// `IPAllocation`s: the record of held addresses.
    pub allocations: Vec<Arc<IPAllocation>>,
    /// `PolicyPlugin`s.
    pub plugins: Vec<Arc<PolicyPlugin>>,
}

impl Objects {
    /// Sorts every list by namespace and name: stores hand objects out in
    /// no particular order, and logs and plans read better in one.
    /// The keys are borrowed, not copied: at 10,000 Services, copying
    /// them was a good part of each plan.
    pub fn sort(&mut self) {
        fn key<K: ResourceExt>(k: &K) -> (&str, &str) {
            let meta = k.meta();
            (
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            )
        }
        fn by_key<K: ResourceExt>(a: &Arc<K>, b: &Arc<K>) -> std::cmp::Ordering {
            key(a.as_ref()).cmp(&key(b.as_ref()))
        }
        self.services.sort_by(by_key);
        self.namespaces.sort_by(by_key);
        self.pools.sort_by(by_key);
        self.allocations.sort_by(by_key);
        self.plugins.sort_by(by_key);
    }
}

/// What allocation needs, built from [`Objects`].
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// Pools, Services, Namespaces, held addresses.
    pub snapshot: Snapshot,
    /// Valid `PolicyPlugin`s by name.
    pub plugins: Vec<(String, PolicyPluginSpec)>,
    /// Objects ignored because a value is unusable.
    pub errors: Vec<ConfigError>,
}

impl Inputs {
    /// Builds the inputs of a plan from the objects.
    pub fn of(objects: &Objects) -> Inputs {
        let mut out = Inputs::default();
        for svc in &objects.services {
            // The API server refuses what validation refuses; a Service
            // that fails anyway is reported and left alone.
            if let Err(e) = add_service(&mut out.snapshot, svc) {
                out.errors.push(e.into());
            }
        }
        for ns in &objects.namespaces {
            add_namespace(&mut out.snapshot, ns);
        }
        for pool in &objects.pools {
            add_pool(&mut out.snapshot, pool);
        }
        for record in &objects.allocations {
            if let Err(e) = add_allocation(&mut out.snapshot, record) {
                out.errors.push(e);
            }
        }
        for p in &objects.plugins {
            match plugin(p) {
                Ok(entry) => out.plugins.push(entry),
                Err(e) => out.errors.push(e),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn object<K: serde::de::DeserializeOwned>(yaml: &str) -> Arc<K> {
        Arc::new(serde_yaml_ng::from_str(yaml).unwrap())
    }

    const POOL: &str = "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: blue, creationTimestamp: \"2026-01-01T00:00:00Z\"}\nspec: {addresses: [198.51.100.0/30]}\n";
    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop, creationTimestamp: \"2026-01-02T00:00:00Z\", annotations: {herald.dev/sharing-key: k}}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";
    const NAMESPACE: &str =
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}\n";
    const RECORD: &str = "apiVersion: herald.dev/v1alpha1\nkind: IPAllocation\nmetadata: {name: 198-51-100-2}\nspec: {address: 198.51.100.2, pool: blue, services: [{namespace: shop, name: web}]}\n";

    #[test]
    fn the_cluster_and_the_manifests_give_the_same_snapshot() {
        let objects = Objects {
            services: vec![object(SERVICE)],
            namespaces: vec![object(NAMESPACE)],
            pools: vec![object(POOL)],
            allocations: vec![object(RECORD)],
            plugins: Vec::new(),
        };
        let from_cluster = Inputs::of(&objects);
        let mut from_files = herald_api::load::Manifests::default();
        let text = [SERVICE, NAMESPACE, POOL, RECORD].join("---\n");
        herald_api::load::load_str(Path::new("m.yaml"), &text, &mut from_files).unwrap();
        assert_eq!(from_cluster.snapshot, from_files.snapshot);
        assert!(from_cluster.errors.is_empty());
        assert_eq!(
            from_cluster.snapshot.allocations[0].address.to_string(),
            "198.51.100.2"
        );
    }

    #[test]
    fn an_unusable_record_is_reported_not_held() {
        let objects = Objects {
            allocations: vec![object(
                "apiVersion: herald.dev/v1alpha1\nkind: IPAllocation\nmetadata: {name: x}\nspec: {address: nope, pool: blue, services: []}\n",
            )],
            ..Objects::default()
        };
        let inputs = Inputs::of(&objects);
        assert!(inputs.snapshot.allocations.is_empty());
        assert_eq!(inputs.errors[0].kind, "IPAllocation");
    }
}
