//! MetalLB's configuration into Herald's objects: what `herald import
//! metallb` runs. Pure functions: text in ([`read`]), Herald objects and a
//! report of what could not be carried over out ([`import`]); the command
//! only reads and writes files.
//!
//! Read: the `metallb.io` CRDs (`v1beta1` IPAddressPool, L2Advertisement,
//! BGPAdvertisement, Community, BFDProfile, BGPPeer; `v1beta2` BGPPeer),
//! `List`s of them (`kubectl get -o yaml`), and the legacy ConfigMap (its
//! `config` key: `address-pools`, `peers`, `bgp-communities`,
//! `bfd-profiles`), which `legacy` turns into the same CRD shapes first,
//! as MetalLB's own conversion did. Field names and semantics follow
//! MetalLB's `api/v1beta1`, `api/v1beta2` and `internal/config/config.go`.
//!
//! Layout:
//! - this file: MetalLB's types (only what is read), [`read`], errors;
//! - `legacy`: the ConfigMap format into the CRD shapes;
//! - `translate`: the CRD shapes into Herald objects, with the report.

mod legacy;
#[cfg(test)]
mod tests;
mod translate;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use crate::bfd::BFDProfileSpec;

pub use translate::{Dropped, Import, import};

/// The API group of MetalLB's resources.
pub const METALLB_GROUP: &str = "metallb.io";

/// Input that cannot be imported: a message naming the file and the object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {object}: {message}")]
pub struct ImportError {
    /// The file it was read from.
    pub file: String,
    /// The object (`IPAddressPool "metallb-system/blue"`, `document 2`).
    pub object: String,
    /// What is wrong.
    pub message: String,
}

/// Where an object came from: the file and how to name the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: String,
    /// `IPAddressPool "metallb-system/blue"`.
    pub object: String,
}

impl Origin {
    fn error(&self, message: impl Into<String>) -> ImportError {
        ImportError {
            file: self.file.clone(),
            object: self.object.clone(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.object)
    }
}

/// `metadata` as far as the import reads it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Meta {
    /// The object's name.
    #[serde(default)]
    pub name: String,
    /// Its namespace (MetalLB's own, usually `metallb-system`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Its labels (advertisements select pools by them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `IPAddressPool.spec`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpec {
    /// CIDRs or `first-last` ranges.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Default true.
    pub auto_assign: Option<bool>,
    /// Default false.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Which Services may use the pool, and its priority.
    pub service_allocation: Option<ServiceAllocation>,
}

/// `IPAddressPool.spec.serviceAllocation`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower first; 0 (unset) after every set one.
    #[serde(default)]
    pub priority: i32,
    /// Namespaces (or'ed with `namespaceSelectors`).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespace selectors, any of which admits.
    #[serde(default)]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Service selectors, any of which admits.
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
}

/// `L2Advertisement.spec`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2Spec {
    /// Pools by name.
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    /// Pools by label.
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes, any selector of which admits.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// Interfaces (empty: all).
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// `BGPAdvertisement.spec`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpAdvertisementSpec {
    /// IPv4 prefix length (default 32).
    pub aggregation_length: Option<i32>,
    /// IPv6 prefix length (default 128).
    pub aggregation_length_v6: Option<i32>,
    /// LOCAL_PREF (0: unset).
    #[serde(default)]
    pub local_pref: u32,
    /// `64512:100`, `large:1:2:3`, or a Community alias.
    #[serde(default)]
    pub communities: Vec<String>,
    /// Pools by name.
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    /// Pools by label.
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// Nodes, any selector of which admits.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// BGPPeer names (empty: all).
    #[serde(default)]
    pub peers: Vec<String>,
}

/// `BGPPeer.spec` (`v1beta2`; `v1beta1` is a subset).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerSpec {
    /// Local AS.
    #[serde(default, rename = "myASN")]
    pub my_asn: u32,
    /// The router's AS (0: unset).
    #[serde(default, rename = "peerASN")]
    pub peer_asn: u32,
    /// `internal` or `external` instead of `peerASN`.
    #[serde(default, rename = "dynamicASN")]
    pub dynamic_asn: String,
    /// The router's address.
    #[serde(default)]
    pub peer_address: String,
    /// Unnumbered BGP over this interface instead of an address.
    #[serde(default)]
    pub interface: String,
    /// Local address.
    #[serde(default)]
    pub source_address: String,
    /// TCP port (0: 179).
    #[serde(default)]
    pub peer_port: u16,
    /// A Go duration (`90s`).
    pub hold_time: Option<String>,
    /// A Go duration.
    pub keepalive_time: Option<String>,
    /// A Go duration.
    pub connect_time: Option<String>,
    /// BGP Identifier.
    #[serde(default, rename = "routerID")]
    pub router_id: String,
    /// Nodes, any selector of which peers.
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 password, inline.
    #[serde(default)]
    pub password: String,
    /// TCP MD5 password from a Secret (key `password`).
    pub password_secret: Option<SecretRef>,
    /// A BFDProfile's name.
    #[serde(default)]
    pub bfd_profile: String,
    /// Graceful restart (RFC 4724).
    #[serde(default)]
    pub enable_graceful_restart: bool,
    /// The router is more than one hop away.
    #[serde(default)]
    pub ebgp_multi_hop: bool,
    /// A host VRF to peer from.
    #[serde(default)]
    pub vrf: String,
    /// Separate sessions per family (deprecated).
    #[serde(default, rename = "disableMP")]
    pub disable_mp: bool,
    /// Both families over this session.
    #[serde(default)]
    pub dual_stack_address_family: bool,
}

/// A `SecretReference`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SecretRef {
    /// The Secret's name.
    #[serde(default)]
    pub name: String,
    /// Its namespace (default: the BGPPeer's).
    #[serde(default)]
    pub namespace: String,
}

/// `Community.spec`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CommunitySpec {
    /// Aliases.
    #[serde(default)]
    pub communities: Vec<CommunityAlias>,
}

/// One alias of a Community object.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CommunityAlias {
    /// The alias.
    #[serde(default)]
    pub name: String,
    /// `64512:100` or `large:1:2:3`.
    #[serde(default)]
    pub value: String,
}

/// One MetalLB object, in the CRD shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `IPAddressPool`.
    Pool(PoolSpec),
    /// `L2Advertisement`.
    L2(L2Spec),
    /// `BGPAdvertisement`.
    Bgp(BgpAdvertisementSpec),
    /// `BGPPeer` (boxed: by far the largest spec).
    Peer(Box<PeerSpec>),
    /// `Community`.
    Community(CommunitySpec),
    /// `BFDProfile`: MetalLB's fields are Herald's (`crate::bfd`).
    Bfd(BFDProfileSpec),
}

/// A MetalLB object read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Where it came from.
    pub origin: Origin,
    /// Its metadata.
    pub meta: Meta,
    /// Its spec.
    pub kind: Kind,
    /// Fields this importer does not know (a newer MetalLB, a typo):
    /// reported as not carried over.
    pub unknown: Vec<String>,
}

/// Reads every MetalLB object of one file's text (multi-document YAML or
/// JSON). Anything else is an error: a kind that is not MetalLB's, a
/// `metallb.io` kind or version this importer does not know, a field of the
/// wrong type, a legacy `config` that is not YAML.
pub fn read(file: &str, text: &str) -> Result<Vec<Object>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let at = Origin {
            file: file.to_owned(),
            object: format!("document {}", i + 1),
        };
        let value = Value::deserialize(doc).map_err(|e| at.error(e.to_string()))?;
        read_value(&at, value, &mut out)?;
    }
    Ok(out)
}

fn read_value(at: &Origin, value: Value, out: &mut Vec<Object>) -> Result<(), ImportError> {
    if value.is_null() {
        return Ok(());
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let api_version = text(value.get("apiVersion"));
    let kind = text(value.get("kind"));
    if kind.is_empty() {
        return Err(at.error("not a Kubernetes object: no kind"));
    }
    if kind == "List" || (kind.ends_with("List") && api_version.starts_with(METALLB_GROUP)) {
        let items = value.get("items").and_then(Value::as_sequence);
        for (i, item) in items.into_iter().flatten().enumerate() {
            let at = Origin {
                file: at.file.clone(),
                object: format!("{} item {}", at.object, i + 1),
            };
            read_value(&at, item.clone(), out)?;
        }
        return Ok(());
    }
    let meta: Meta = match value.get("metadata") {
        Some(m) => {
            serde_yaml_ng::from_value(m.clone()).map_err(|e| at.error(format!("metadata: {e}")))?
        }
        None => Meta::default(),
    };
    let ns = meta.namespace.clone().unwrap_or_default();
    let object = Origin {
        file: at.file.clone(),
        object: if ns.is_empty() {
            format!("{kind} {:?}", meta.name)
        } else {
            format!("{kind} \"{ns}/{}\"", meta.name)
        },
    };
    if meta.name.is_empty() {
        return Err(object.error("metadata.name is missing"));
    }
    if api_version == "v1" && kind == "ConfigMap" {
        let config = value
            .get("data")
            .and_then(|d| d.get("config"))
            .ok_or_else(|| {
                object.error("not MetalLB's legacy configuration: no data.config key")
            })?;
        let config = config
            .as_str()
            .ok_or_else(|| object.error("data.config is not a string"))?;
        out.extend(legacy::read(&object, &meta, config)?);
        return Ok(());
    }
    let spec = value.get("spec").cloned().unwrap_or(Value::Null);
    let spec = if spec.is_null() {
        Value::Mapping(Default::default())
    } else {
        spec
    };
    let mut unknown = Vec::new();
    let kind = match (api_version.as_str(), kind.as_str()) {
        ("metallb.io/v1beta1", "IPAddressPool") => Kind::Pool(parse(&object, spec, &mut unknown)?),
        ("metallb.io/v1beta1", "L2Advertisement") => Kind::L2(parse(&object, spec, &mut unknown)?),
        ("metallb.io/v1beta1", "BGPAdvertisement") => {
            Kind::Bgp(parse(&object, spec, &mut unknown)?)
        }
        ("metallb.io/v1beta1" | "metallb.io/v1beta2", "BGPPeer") => {
            Kind::Peer(Box::new(parse(&object, spec, &mut unknown)?))
        }
        ("metallb.io/v1beta1", "Community") => Kind::Community(parse(&object, spec, &mut unknown)?),
        ("metallb.io/v1beta1", "BFDProfile") => Kind::Bfd(parse(&object, spec, &mut unknown)?),
        (version, kind) if version.starts_with(METALLB_GROUP) => {
            return Err(object.error(format!(
                "{version} {kind} is not a MetalLB kind this importer reads (IPAddressPool, L2Advertisement, BGPAdvertisement, Community, BFDProfile: metallb.io/v1beta1; BGPPeer: v1beta1 or v1beta2)"
            )));
        }
        (version, kind) => {
            return Err(object.error(format!(
                "{version} {kind} is not MetalLB configuration (pass only metallb.io objects and MetalLB's legacy ConfigMap)"
            )));
        }
    };
    out.push(Object {
        origin: object,
        meta,
        kind,
        unknown,
    });
    Ok(())
}

/// Deserializes a spec, collecting the paths of fields its type does not
/// have.
fn parse<T: DeserializeOwned>(
    at: &Origin,
    spec: Value,
    unknown: &mut Vec<String>,
) -> Result<T, ImportError> {
    serde_ignored::deserialize(spec, |path| unknown.push(format!("spec.{path}")))
        .map_err(|e| at.error(format!("spec: {e}")))
}
