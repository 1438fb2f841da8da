//! Nodes and EndpointSlices into the core's announcement inputs: what the
//! speaker reads to decide which nodes may announce a VIP.

use std::net::IpAddr;

use herald_core::ServiceRef;
use herald_core::node::{Endpoints, Node as CoreNode};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

use crate::FieldError;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Validates a Node: labels, the `Ready` condition, its addresses.
pub fn validate_node(node: &Node) -> Result<CoreNode, FieldError> {
    let name = node.name_any();
    let status = node.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let mut addresses = Vec::new();
    for (i, a) in status.addresses.iter().flatten().enumerate() {
        if a.type_ != "InternalIP" && a.type_ != "ExternalIP" {
            continue;
        }
        let ip: IpAddr = a.address.parse().map_err(|_| FieldError {
            kind: "Node",
            name: name.clone(),
            field: format!("status.addresses[{i}].address"),
            message: format!("{:?} is not an IP address", a.address),
        })?;
        addresses.push(ip);
    }
    Ok(CoreNode {
        labels: std::sync::Arc::new(node.labels().clone()),
        name,
        ready,
        addresses,
    })
}

/// Adds the ready endpoints of an EndpointSlice to `endpoints`, per node.
/// A slice without the service-name label, or an endpoint without a node,
/// counts for nothing. An endpoint whose `ready` condition is unset counts
/// as ready, as Kubernetes documents.
pub fn add_endpoint_slice(slice: &EndpointSlice, endpoints: &mut Endpoints) {
    let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) else {
        return;
    };
    let namespace = slice.namespace().unwrap_or_else(|| "default".to_owned());
    let by_node = endpoints
        .entry(ServiceRef::new(namespace, service.clone()))
        .or_default();
    for e in &slice.endpoints {
        let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        if let (true, Some(node)) = (ready, &e.node_name) {
            *by_node.entry(node.clone()).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ready_condition_and_addresses() {
        let node: Node = serde_yaml_ng::from_str(
            "metadata: {name: n1, labels: {topology.kubernetes.io/zone: z1}}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  addresses: [{type: InternalIP, address: 192.0.2.11}, {type: Hostname, address: n1}]\n",
        )
        .unwrap();
        let n = validate_node(&node).unwrap();
        assert!(n.ready);
        assert_eq!(n.zone(), Some("z1"));
        assert_eq!(n.addresses, vec!["192.0.2.11".parse::<IpAddr>().unwrap()]);
        let node: Node = serde_yaml_ng::from_str(
            "metadata: {name: n2}\nstatus: {conditions: [{type: Ready, status: Unknown}]}\n",
        )
        .unwrap();
        assert!(!validate_node(&node).unwrap().ready);
    }

    #[test]
    fn endpoint_slices_count_ready_endpoints_per_node() {
        let slice: EndpointSlice = serde_yaml_ng::from_str(
            "metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n- {addresses: [10.0.0.1], nodeName: n1}\n- {addresses: [10.0.0.2], nodeName: n1, conditions: {ready: true}}\n- {addresses: [10.0.0.3], nodeName: n2, conditions: {ready: false}}\n",
        )
        .unwrap();
        let mut endpoints = Endpoints::new();
        add_endpoint_slice(&slice, &mut endpoints);
        let web = &endpoints[&ServiceRef::new("shop", "web")];
        assert_eq!(web.get("n1"), Some(&2));
        assert_eq!(web.get("n2"), None);
    }
}
