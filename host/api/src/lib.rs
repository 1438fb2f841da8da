//! The `herald.dev/v1alpha1` API: the custom resources users write, loading
//! them (and Services, Namespaces) from manifest files, and validating every
//! field once into the core's types.
//!
//! Errors name the object and the field. This crate may depend on the core,
//! kube's derive and k8s-openapi; never on a client, a runtime or the network.
//!
//! Layout:
//! - [`pool`]: `IPPool` and `IPAllocation`;
//! - [`bgp`], [`l2`], [`plugin`]: `BGPPeer`, `BGPAdvertisement`,
//!   `L2Advertisement`, `PolicyPlugin`;
//! - [`bfd`]: `BFDProfile`, which `BGPPeer.bfdProfile` names;
//! - [`service`]: Services and Namespaces into core types (annotations);
//! - [`node`]: Nodes and EndpointSlices into announcement inputs;
//! - [`selector`]: Kubernetes label selectors into core selectors;
//! - [`inputs`]: typed objects into a snapshot and plugin specs (shared by
//!   the loader and the controller, so both read objects alike);
//! - [`load`]: files and directories of multi-document YAML into a snapshot;
//! - [`metallb`]: MetalLB's configuration into these objects (`herald import
//!   metallb`).

// kube's `printcolumn(...)` lists repeat `type_ = ...`, which clippy
// mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod bfd;
pub mod bgp;
pub mod inputs;
pub mod l2;
pub mod load;
pub mod metallb;
pub mod node;
pub mod plugin;
pub mod pool;
pub mod selector;
pub mod service;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of Herald's resources.
pub const GROUP: &str = "herald.dev";
/// The `apiVersion` of Herald's resources.
pub const API_VERSION: &str = "herald.dev/v1alpha1";

/// A field that does not validate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?}: {field}: {message}")]
pub struct FieldError {
    /// The object's kind.
    pub kind: &'static str,
    /// The object's name (`namespace/name` when namespaced).
    pub name: String,
    /// The field's path (`spec.addresses[1]`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every Herald CRD, in a fixed order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        pool::IPPool::crd(),
        pool::IPAllocation::crd(),
        bgp::BGPPeer::crd(),
        bgp::BGPAdvertisement::crd(),
        l2::L2Advertisement::crd(),
        plugin::PolicyPlugin::crd(),
        bfd::BFDProfile::crd(),
    ]
}

/// The CRDs as one multi-document YAML stream: what `herald crds` prints and
/// `examples/deploy/crds.yaml` holds.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| {
            let yaml = serde_yaml_ng::to_string(crd).expect("a CRD serializes to YAML");
            format!("---\n{yaml}")
        })
        .collect()
}
