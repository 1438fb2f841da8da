//! Nodes and their ready endpoints, as announcement planning and the
//! announcer policies see them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::selector::Labels;
use crate::service::ServiceRef;

/// The label that names a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A node as announcement planning sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`, shared: a policy plugin reads them on request
    /// during a call, without copying them.
    pub labels: Arc<Labels>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `status.addresses` (InternalIP and ExternalIP), in order.
    pub addresses: Vec<IpAddr>,
}

impl Node {
    /// The node's zone (`topology.kubernetes.io/zone`), if labelled.
    pub fn zone(&self) -> Option<&str> {
        self.labels.get(ZONE_LABEL).map(String::as_str)
    }
}

/// Ready endpoints of each Service, per node name (from EndpointSlices).
pub type Endpoints = BTreeMap<ServiceRef, BTreeMap<String, u32>>;
