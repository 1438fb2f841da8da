//! `L2Advertisement`: which VIPs are made reachable on the local segment by
//! ARP/NDP, from which nodes and interfaces; and its validation into the
//! core's [`herald_core::l2::L2Advertisement`].

use herald_core::l2::InterfaceName;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FieldError;
use crate::bgp::{names, node_selector, plugin_name};

/// Which VIPs are answered for by ARP/NDP, from which nodes, on which
/// interfaces.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    status = "L2AdvertisementStatus",
    derive = "PartialEq",
    doc = "Which Service addresses Herald's speakers make reachable on the local segment (ARP for IPv4, NDP for IPv6): one node at a time answers for each address.",
    printcolumn(name = "Pools", type_ = "string", json_path = ".spec.ipPools"),
    printcolumn(name = "Interfaces", type_ = "string", json_path = ".spec.interfaces")
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Names of the IPPools whose addresses are announced (empty: every
    /// pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_pools: Option<Vec<String>>,
    /// The nodes that may answer for an address (default every node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
    /// The network interfaces answered on (empty: the interfaces whose
    /// subnet contains the address, else the one holding the default route
    /// of its family); Linux names of 1 to 15 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<String>>,
    /// The name of a PolicyPlugin (world `announcer`) that picks the
    /// answering node instead of the built-in policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcer_plugin: Option<String>,
}

/// `L2Advertisement.status`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct L2AdvertisementStatus {
    /// Conditions of the advertisement (`Valid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl L2Advertisement {
    /// Validates the advertisement into the announcement planner's view of
    /// it.
    pub fn validate(&self) -> Result<herald_core::l2::L2Advertisement, FieldError> {
        let name = self.name_any();
        let err = |field: String, message: String| FieldError {
            kind: "L2Advertisement",
            name: name.clone(),
            field,
            message,
        };
        let spec = &self.spec;

        let mut interfaces: Vec<InterfaceName> = Vec::new();
        for (i, text) in spec.interfaces.iter().flatten().enumerate() {
            let interface: InterfaceName =
                text.parse()
                    .map_err(|e: herald_core::l2::InterfaceNameError| {
                        err(format!("spec.interfaces[{i}]"), e.to_string())
                    })?;
            if let Some(first) = interfaces.iter().position(|seen| *seen == interface) {
                return Err(err(
                    format!("spec.interfaces[{i}]"),
                    format!("{interface} is listed twice (also spec.interfaces[{first}])"),
                ));
            }
            interfaces.push(interface);
        }

        Ok(herald_core::l2::L2Advertisement {
            name: name.clone(),
            ip_pools: names(&spec.ip_pools, "spec.ipPools").map_err(|(f, m)| err(f, m))?,
            node_selector: node_selector(&spec.node_selector).map_err(|(f, m)| err(f, m))?,
            interfaces,
            announcer_plugin: plugin_name(&spec.announcer_plugin, "spec.announcerPlugin")
                .map_err(|(f, m)| err(f, m))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;

    fn advertisement(spec: L2AdvertisementSpec) -> L2Advertisement {
        L2Advertisement::new("lan", spec)
    }

    fn error(spec: L2AdvertisementSpec) -> (String, String) {
        let e = advertisement(spec).validate().unwrap_err();
        assert_eq!((e.kind, e.name.as_str()), ("L2Advertisement", "lan"));
        (e.field, e.message)
    }

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn fields_are_spelled_as_documented() {
        let json = json!({
            "ipPools": ["blue", "green"],
            "nodeSelector": {"matchLabels": {"rack": "a"}},
            "interfaces": ["eth0", "bond0.100"],
            "announcerPlugin": "zones",
        });
        let spec: L2AdvertisementSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), json);
        let a = advertisement(spec).validate().unwrap();
        assert_eq!(a.name, "lan");
        assert_eq!(a.ip_pools, vec!["blue", "green"]);
        let interfaces: Vec<&str> = a.interfaces.iter().map(InterfaceName::as_str).collect();
        assert_eq!(interfaces, ["eth0", "bond0.100"]);
        assert_eq!(a.node_selector.match_labels.len(), 1);
        assert_eq!(a.announcer_plugin.as_deref(), Some("zones"));
    }

    #[test]
    fn defaults() {
        let a = advertisement(L2AdvertisementSpec::default())
            .validate()
            .unwrap();
        assert!(a.ip_pools.is_empty());
        assert!(a.interfaces.is_empty());
        assert_eq!(a.node_selector, herald_core::LabelSelector::default());
        assert_eq!(a.announcer_plugin, None);
    }

    #[test]
    fn interface_names_are_checked() {
        for (bad, says) in [
            ("", "empty"),
            ("abcdefghijklmnop", "at most 15"),
            (".", "not a valid interface name"),
            ("..", "not a valid interface name"),
            ("eth/0", "'/'"),
            ("eth 0", "' '"),
            ("eth0:1", "':'"),
        ] {
            let (field, message) = error(L2AdvertisementSpec {
                interfaces: strings(&["eth0", bad]),
                ..Default::default()
            });
            assert_eq!(field, "spec.interfaces[1]", "{bad:?}");
            assert!(message.contains(says), "{bad:?}: {message}");
        }
        let (field, message) = error(L2AdvertisementSpec {
            interfaces: strings(&["eth0", "eth1", "eth0"]),
            ..Default::default()
        });
        assert_eq!(field, "spec.interfaces[2]");
        assert!(message.contains("spec.interfaces[0]"), "{message}");
    }

    #[test]
    fn other_fields_name_themselves() {
        let (field, _) = error(L2AdvertisementSpec {
            ip_pools: strings(&[""]),
            ..Default::default()
        });
        assert_eq!(field, "spec.ipPools[0]");
        let (field, _) = error(L2AdvertisementSpec {
            announcer_plugin: Some(String::new()),
            ..Default::default()
        });
        assert_eq!(field, "spec.announcerPlugin");
        let (field, _) = error(L2AdvertisementSpec {
            node_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: String::new(),
                    operator: "Exists".into(),
                    values: None,
                }]),
                match_labels: None,
            }),
            ..Default::default()
        });
        assert_eq!(field, "spec.nodeSelector.matchExpressions[0].key");
    }

    #[test]
    fn crd_carries_the_printer_columns() {
        let crd = L2Advertisement::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        let columns: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(columns, ["Pools", "Interfaces"]);
    }
}
