//! Typed objects into what allocation reads: the one place where Services,
//! Namespaces, `IPPool`s, `IPAllocation`s and `PolicyPlugin`s become a
//! [`Snapshot`] and plugin specs. The manifest loader ([`crate::load`]) and
//! the controller's reflectors (herald-k8s) both go through it, so
//! `herald plan` and the cluster agree on the same objects by construction.

use herald_core::plugin::PolicyPluginSpec;
use herald_core::{ConfigError, Snapshot};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::ResourceExt;

use crate::FieldError;
use crate::plugin::PolicyPlugin;
use crate::pool::{IPAllocation, IPPool};
use crate::service::{namespace_labels, validate_service};

impl From<FieldError> for ConfigError {
    fn from(e: FieldError) -> ConfigError {
        ConfigError {
            kind: e.kind.to_owned(),
            message: format!("{}: {}", e.field, e.message),
            name: e.name,
        }
    }
}

/// Adds a Service. A field the API server would refuse is an error (the
/// loader stops on it; a cluster cannot hold such a Service).
pub fn add_service(snapshot: &mut Snapshot, svc: &Service) -> Result<(), FieldError> {
    snapshot.services.push(validate_service(svc)?);
    Ok(())
}

/// Adds a Namespace's labels.
pub fn add_namespace(snapshot: &mut Snapshot, ns: &Namespace) {
    let (name, labels) = namespace_labels(ns);
    snapshot.namespaces.insert(name, labels);
}

/// Adds a pool; a malformed one is kept as invalid (the allocator reports
/// it and uses it for nothing).
pub fn add_pool(snapshot: &mut Snapshot, pool: &IPPool) {
    snapshot.pools.push(pool.validate());
}

/// Adds a held address; a record that does not validate is reported and
/// holds nothing.
pub fn add_allocation(snapshot: &mut Snapshot, record: &IPAllocation) -> Result<(), ConfigError> {
    snapshot.allocations.push(record.validate()?);
    Ok(())
}

/// A `PolicyPlugin` as the plugin registry takes it: its name and its
/// validated spec.
pub fn plugin(plugin: &PolicyPlugin) -> Result<(String, PolicyPluginSpec), ConfigError> {
    Ok((plugin.name_any(), plugin.validate()?))
}
