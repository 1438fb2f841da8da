//! `IPPool` (where addresses come from) and `IPAllocation` (who holds an
//! address), and their validation into core types.

use std::net::IpAddr;

use herald_core::{AddressRange, Held, PoolDecl, PoolSpec, ServiceRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{FieldError, selector};

/// A pool of addresses for Services of `type: LoadBalancer`.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "IPPool",
    plural = "ippools",
    shortname = "ipp",
    status = "IPPoolStatus",
    derive = "PartialEq",
    doc = "A pool of addresses that Herald gives to Services of type LoadBalancer.",
    printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses"),
    printcolumn(name = "Auto", type_ = "boolean", json_path = ".spec.autoAssign"),
    printcolumn(name = "Capacity", type_ = "string", json_path = ".status.capacity"),
    printcolumn(name = "Allocated", type_ = "integer", json_path = ".status.allocated"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// CIDRs (`198.51.100.0/24`, `2001:db8::/120`; one address is `/32` or
    /// `/128`) or inclusive ranges (`198.51.100.10-198.51.100.20`).
    pub addresses: Vec<String>,
    /// Whether Services that do not ask for this pool get addresses from it
    /// (default true).
    // The schema's default makes the API server store `true` when the field
    // is left out, so `kubectl get ippools` shows it in the AUTO column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub auto_assign: Option<bool>,
    /// Skip IPv4 addresses ending in .0 or .255 (default false).
    #[serde(
        default,
        rename = "avoidBuggyIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub avoid_buggy_ips: Option<bool>,
    /// Which Services may use the pool, and in which order pools are tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<IPPoolAllocation>,
    /// The name of a PolicyPlugin (world `allocator`) that chooses addresses
    /// from this pool instead of the built-in policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocator_plugin: Option<String>,
}

/// `IPPool.spec.allocation`: every selector that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolAllocation {
    /// Pools with a priority are tried first, lower numbers first; then the
    /// others; ties by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Only Services in these namespaces (empty: any namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    /// Only Services in namespaces whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only Services whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<LabelSelector>,
}

/// `IPPool.status`, written by the controller.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolStatus {
    /// Usable addresses (after avoidBuggyIPs), in decimal: a string because
    /// an IPv6 pool can hold more than 2^63. 0 when the pool is not valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// Distinct addresses held by Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<i64>,
    /// Capacity and allocated of the pool's IPv4 addresses (absent when it
    /// has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<IPPoolFamilyStatus>,
    /// Capacity and allocated of the pool's IPv6 addresses (absent when it
    /// has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<IPPoolFamilyStatus>,
    /// `Valid`: True when Services get addresses from the pool; False with
    /// the reason (`Malformed`, `Overlapping`) and message when it is not
    /// used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Capacity and allocated of one family of a pool.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct IPPoolFamilyStatus {
    /// Usable addresses of the family, in decimal.
    pub capacity: String,
    /// Distinct addresses of the family held by Services.
    pub allocated: i64,
}

/// One address held by one or more Services, named after the address.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "IPAllocation",
    plural = "ipallocations",
    shortname = "ipa",
    status = "IPAllocationStatus",
    derive = "PartialEq",
    doc = "An address held by Services; written only by the Herald controller. Its name is the address (198-51-100-10, 2001-db8--a), so the API server's name uniqueness keeps one address from being given twice.",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.pool"),
    printcolumn(
        name = "Services",
        type_ = "string",
        json_path = ".spec.services[*].name"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPAllocationSpec {
    /// The address.
    pub address: String,
    /// The pool it comes from.
    pub pool: String,
    /// The Services holding it (more than one when they share it).
    pub services: Vec<ServiceReference>,
}

/// A Service, by namespace and name.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ServiceReference {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
}

/// `IPAllocation.status`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct IPAllocationStatus {
    /// Conditions of the record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The `IPAllocation` name of an address: `198-51-100-10`, `2001-db8--a`.
///
/// The address's text with `.` and `:` as `-`. An object name must start
/// and end with a letter or digit, so an IPv6 text that starts or ends with
/// `::` (`::1`, `2001:db8::`) is written with a zero group there first
/// (`0::1`, `2001:db8::0`: the same address), giving `0--1` and
/// `2001-db8--0`. Still one name per address.
pub fn allocation_name(address: IpAddr) -> String {
    let mut text = address.to_string();
    if text.starts_with("::") {
        text.insert(0, '0');
    }
    if text.ends_with("::") {
        text.push('0');
    }
    text.replace(['.', ':'], "-")
}

/// Seconds since the epoch of `metadata.creationTimestamp`.
pub(crate) fn created(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<i64> {
    meta.creation_timestamp.as_ref().map(|t| t.0.as_second())
}

/// Blocks a pool must not overlap: addresses that cannot be a Service's
/// address on a network (RFC 6890 and the IANA special-purpose registries).
/// A pool that holds any of them is invalid (reported, and used for
/// nothing) rather than quietly narrowed, so the mistake is seen.
/// `0.0.0.0/8` and `::/128` name no host; loopback (`127.0.0.0/8`,
/// `::1/128`) never leaves a host; link-local (`169.254.0.0/16`,
/// `fe80::/10`) is not forwarded by routers; multicast (`224.0.0.0/4`,
/// `ff00::/8`) and the limited broadcast (`255.255.255.255`) are not unicast
/// addresses; IPv4-mapped IPv6 (`::ffff:0:0/96`) is an IPv4 address in
/// disguise.
pub const RESERVED_BLOCKS: [(&str, &str); 10] = [
    ("0.0.0.0/8", "\"this network\" (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "the broadcast address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped IPv6"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// The first reserved block `range` overlaps, with what it is.
fn reserved(range: &AddressRange) -> Option<(&'static str, &'static str)> {
    RESERVED_BLOCKS.into_iter().find(|(block, _)| {
        let block: AddressRange = block.parse().expect("a reserved block parses");
        block.overlaps(range)
    })
}

impl IPPool {
    /// Validates the pool. A malformed field makes the pool invalid (it is
    /// reported and unused) but is not an error of the manifests.
    pub fn validate(&self) -> PoolDecl {
        PoolDecl {
            name: self.name_any(),
            created: created(&self.metadata),
            spec: self
                .validate_spec()
                .map_err(|e| format!("{}: {}", e.field, e.message)),
        }
    }

    fn validate_spec(&self) -> Result<PoolSpec, FieldError> {
        let err = |field: String, message: String| FieldError {
            kind: "IPPool",
            name: self.name_any(),
            field,
            message,
        };
        let spec = &self.spec;
        if spec.addresses.is_empty() {
            return Err(err(
                "spec.addresses".into(),
                "must list at least one CIDR or range".into(),
            ));
        }
        let mut addresses = Vec::with_capacity(spec.addresses.len());
        for (i, entry) in spec.addresses.iter().enumerate() {
            let range: AddressRange =
                entry.parse().map_err(|e: herald_core::AddressEntryError| {
                    err(format!("spec.addresses[{i}]"), e.to_string())
                })?;
            if let Some((block, what)) = reserved(&range) {
                return Err(err(
                    format!("spec.addresses[{i}]"),
                    format!(
                        "{entry} holds {what} addresses ({block}), which cannot be a Service's address"
                    ),
                ));
            }
            addresses.push(range);
        }
        let alloc = spec.allocation.clone().unwrap_or_default();
        let selector = |field: &str, sel: &Option<LabelSelector>| {
            sel.as_ref()
                .map(|s| {
                    selector::validate(s)
                        .map_err(|(sub, m)| err(format!("spec.allocation.{field}.{sub}"), m))
                })
                .transpose()
        };
        let namespaces = alloc.namespaces.clone().unwrap_or_default();
        if let Some(i) = namespaces.iter().position(|n| n.is_empty()) {
            return Err(err(
                format!("spec.allocation.namespaces[{i}]"),
                "must not be empty".into(),
            ));
        }
        Ok(PoolSpec {
            addresses,
            auto_assign: spec.auto_assign.unwrap_or(true),
            avoid_buggy_ips: spec.avoid_buggy_ips.unwrap_or(false),
            priority: alloc.priority,
            namespaces,
            namespace_selector: selector("namespaceSelector", &alloc.namespace_selector)?,
            service_selector: selector("serviceSelector", &alloc.service_selector)?,
            allocator_plugin: match spec.allocator_plugin.as_deref().map(str::trim) {
                Some("") => {
                    return Err(err(
                        "spec.allocatorPlugin".into(),
                        "must not be empty".into(),
                    ));
                }
                other => other.map(str::to_owned),
            },
        })
    }
}

impl IPAllocation {
    /// Validates the record into a held address.
    pub fn validate(&self) -> Result<Held, FieldError> {
        let err = |field: &str, message: String| FieldError {
            kind: "IPAllocation",
            name: self.name_any(),
            field: field.into(),
            message,
        };
        let address: IpAddr = self.spec.address.trim().parse().map_err(|_| {
            err(
                "spec.address",
                format!("{:?} is not an IP address", self.spec.address),
            )
        })?;
        Ok(Held {
            address,
            pool: self.spec.pool.clone(),
            services: self
                .spec
                .services
                .iter()
                .map(|s| ServiceRef::new(&s.namespace, &s.name))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(addresses: &[&str]) -> IPPool {
        IPPool::new(
            "blue",
            IPPoolSpec {
                addresses: addresses.iter().map(|s| s.to_string()).collect(),
                auto_assign: None,
                avoid_buggy_ips: None,
                allocation: None,
                allocator_plugin: None,
            },
        )
    }

    #[test]
    fn the_schema_defaults_auto_assign_so_kubectl_shows_it() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(IPPool::crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["autoAssign"]["default"], true);
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            columns,
            ["Addresses", "Auto", "Capacity", "Allocated", "Valid", "Age"]
        );
    }

    #[test]
    fn defaults_apply() {
        let spec = pool(&["198.51.100.0/24"]).validate().spec.unwrap();
        assert!(spec.auto_assign);
        assert!(!spec.avoid_buggy_ips);
        assert_eq!(spec.priority, None);
    }

    #[test]
    fn malformed_entry_names_the_field() {
        let decl = pool(&["198.51.100.0/24", "198.51.100.5/24"]).validate();
        let message = decl.spec.unwrap_err();
        assert!(message.starts_with("spec.addresses[1]: "), "{message}");
        assert!(message.contains("198.51.100.0/24"), "{message}");
    }

    #[test]
    fn pools_holding_reserved_addresses_are_malformed() {
        for (entry, what) in [
            ("0.0.0.0/32", "this network"),
            ("0.0.0.0/0", "this network"),
            ("127.0.0.1/32", "loopback"),
            ("126.255.255.250-127.0.0.2", "loopback"),
            ("169.254.1.0/24", "link-local"),
            ("239.255.255.255/32", "multicast"),
            ("255.255.255.255/32", "broadcast"),
            ("::/128", "unspecified"),
            ("::1/128", "loopback"),
            ("::ffff:198.51.100.1/128", "IPv4-mapped"),
            ("fe80::/64", "link-local"),
            ("ff02::1/128", "multicast"),
        ] {
            let message = pool(&["198.51.100.0/24", entry])
                .validate()
                .spec
                .unwrap_err();
            assert!(message.starts_with("spec.addresses[1]: "), "{message}");
            assert!(message.contains(what), "{entry}: {message}");
        }
        // The edges just outside the blocks are ordinary addresses.
        for entry in [
            "1.0.0.0/32",
            "126.255.255.255/32",
            "128.0.0.0/32",
            "169.253.255.255/32",
            "223.255.255.255/32",
            "240.0.0.0-255.255.255.254",
            "::2/128",
            "fe7f:ffff::/32",
            "fec0::/10",
            "feff::/16",
            "2001:db8::/64",
        ] {
            let decl = pool(&[entry]).validate();
            assert!(decl.spec.is_ok(), "{entry}: {:?}", decl.spec);
        }
    }

    #[test]
    fn empty_pool_is_malformed() {
        assert!(pool(&[]).validate().spec.is_err());
    }

    #[test]
    fn allocation_names_follow_the_address() {
        assert_eq!(
            allocation_name("198.51.100.10".parse().unwrap()),
            "198-51-100-10"
        );
        assert_eq!(
            allocation_name("2001:db8::a".parse().unwrap()),
            "2001-db8--a"
        );
    }

    #[test]
    fn allocation_names_start_and_end_with_a_letter_or_digit() {
        for (address, name) in [
            ("2001:db8:1::", "2001-db8-1--0"),
            ("::1", "0--1"),
            ("::", "0--0"),
            ("::ffff:198.51.100.1", "0--ffff-198-51-100-1"),
        ] {
            assert_eq!(allocation_name(address.parse().unwrap()), name);
        }
    }
}
