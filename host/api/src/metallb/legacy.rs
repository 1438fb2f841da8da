//! MetalLB's legacy ConfigMap (before v0.13: `data.config` holding
//! `address-pools`, `peers`, `bgp-communities`, `bfd-profiles`) into the
//! CRD shapes, as MetalLB's own converter did: a `layer2` pool gets an
//! L2Advertisement of its own, a `bgp` pool one BGPAdvertisement per entry
//! of its `bgp-advertisements` (one with the defaults when it lists none),
//! the communities become one Community object's aliases, and peers (which
//! have no names) are named after their address.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::bfd::BFDProfileSpec;

use super::{
    BgpAdvertisementSpec, CommunityAlias, CommunitySpec, ImportError, Kind, L2Spec, Meta, Object,
    Origin, PeerSpec, PoolSpec,
};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Config {
    #[serde(default)]
    peers: Vec<Peer>,
    #[serde(default)]
    bgp_communities: BTreeMap<String, String>,
    #[serde(default)]
    address_pools: Vec<Pool>,
    #[serde(default)]
    bfd_profiles: Vec<BTreeMap<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Peer {
    #[serde(default)]
    my_asn: u32,
    #[serde(default)]
    peer_asn: u32,
    #[serde(default)]
    peer_address: String,
    #[serde(default)]
    source_address: String,
    #[serde(default)]
    peer_port: u16,
    hold_time: Option<Value>,
    keepalive_time: Option<Value>,
    #[serde(default)]
    router_id: String,
    #[serde(default)]
    node_selectors: Vec<NodeSelector>,
    #[serde(default)]
    password: String,
    #[serde(default)]
    bfd_profile: String,
    #[serde(default)]
    ebgp_multihop: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct NodeSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<Expression>,
}

#[derive(Deserialize)]
struct Expression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Pool {
    #[serde(default)]
    name: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    avoid_buggy_ips: bool,
    auto_assign: Option<bool>,
    #[serde(default)]
    bgp_advertisements: Vec<Advertisement>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Advertisement {
    aggregation_length: Option<i32>,
    aggregation_length_v6: Option<i32>,
    #[serde(default)]
    localpref: u32,
    #[serde(default)]
    communities: Vec<String>,
}

/// The objects `config` describes.
pub(super) fn read(at: &Origin, meta: &Meta, config: &str) -> Result<Vec<Object>, ImportError> {
    let mut unknown = Vec::new();
    let de = serde_yaml_ng::Deserializer::from_str(config);
    let config: Config = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
        .map_err(|e| at.error(format!("data.config is not MetalLB's configuration: {e}")))?;
    let namespace = meta.namespace.clone();
    let object = |name: &str, what: String, kind: Kind, unknown: Vec<String>| Object {
        origin: Origin {
            file: at.file.clone(),
            object: format!("{at} {what}"),
        },
        meta: Meta {
            name: name.to_owned(),
            namespace: namespace.clone(),
            labels: BTreeMap::new(),
        },
        kind,
        unknown,
    };
    let mut out = Vec::new();
    // Fields of the ConfigMap's own level that were not read are reported
    // against the ConfigMap.
    if !unknown.is_empty() {
        out.push(object(
            &meta.name,
            "(config)".into(),
            Kind::Community(CommunitySpec::default()),
            unknown,
        ));
    }
    if !config.bgp_communities.is_empty() {
        let communities = config
            .bgp_communities
            .into_iter()
            .map(|(name, value)| CommunityAlias { name, value })
            .collect();
        out.push(object(
            &meta.name,
            "bgp-communities".into(),
            Kind::Community(CommunitySpec { communities }),
            Vec::new(),
        ));
    }
    for (i, fields) in config.bfd_profiles.into_iter().enumerate() {
        let name = fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let what = format!("bfd-profiles[{i}] {name:?}");
        if name.is_empty() {
            return Err(at.error(format!("{what}: name is missing")));
        }
        // The legacy keys are the CRD's in kebab case (`receive-interval`).
        let mut spec = serde_yaml_ng::Mapping::new();
        for (key, value) in fields.into_iter().filter(|(k, _)| k != "name") {
            spec.insert(Value::String(camel_case(&key)), value);
        }
        let mut unknown = Vec::new();
        let spec: BFDProfileSpec = serde_ignored::deserialize(Value::Mapping(spec), |path| {
            unknown.push(format!("spec.{path}"))
        })
        .map_err(|e| at.error(format!("{what}: {e}")))?;
        out.push(object(&name, what, Kind::Bfd(spec), unknown));
    }
    let mut peer_names = BTreeSet::new();
    for (i, p) in config.peers.into_iter().enumerate() {
        let base = format!("peer-{}", p.peer_address.replace(['.', ':'], "-"));
        let mut name = base.clone();
        let mut n = 1;
        while !peer_names.insert(name.clone()) {
            n += 1;
            name = format!("{base}-{n}");
        }
        let duration = |v: Option<Value>| -> Result<Option<String>, ImportError> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(at.error(format!(
                    "peers[{i}]: a duration must be a string such as \"90s\", not {other:?}"
                ))),
            }
        };
        let spec = PeerSpec {
            my_asn: p.my_asn,
            peer_asn: p.peer_asn,
            peer_address: p.peer_address,
            source_address: p.source_address,
            peer_port: p.peer_port,
            hold_time: duration(p.hold_time)?,
            keepalive_time: duration(p.keepalive_time)?,
            router_id: p.router_id,
            node_selectors: p.node_selectors.into_iter().map(selector).collect(),
            password: p.password,
            bfd_profile: p.bfd_profile,
            ebgp_multi_hop: p.ebgp_multihop,
            ..PeerSpec::default()
        };
        out.push(object(
            &name,
            format!("peers[{i}]"),
            Kind::Peer(Box::new(spec)),
            Vec::new(),
        ));
    }
    for (i, p) in config.address_pools.into_iter().enumerate() {
        let what = format!("address-pools[{i}] {:?}", p.name);
        if p.name.is_empty() {
            return Err(at.error(format!("{what}: name is missing")));
        }
        let pools = vec![p.name.clone()];
        match p.protocol.as_str() {
            "layer2" => out.push(object(
                &p.name,
                format!("{what} (its L2 advertisement)"),
                Kind::L2(L2Spec {
                    ip_address_pools: pools,
                    ..L2Spec::default()
                }),
                Vec::new(),
            )),
            "bgp" => {
                let advertisements = if p.bgp_advertisements.is_empty() {
                    vec![Advertisement {
                        aggregation_length: None,
                        aggregation_length_v6: None,
                        localpref: 0,
                        communities: Vec::new(),
                    }]
                } else {
                    p.bgp_advertisements
                };
                let count = advertisements.len();
                for (j, a) in advertisements.into_iter().enumerate() {
                    let name = if count == 1 {
                        p.name.clone()
                    } else {
                        format!("{}-{}", p.name, j + 1)
                    };
                    out.push(object(
                        &name,
                        format!("{what} bgp-advertisements[{j}]"),
                        Kind::Bgp(BgpAdvertisementSpec {
                            aggregation_length: a.aggregation_length,
                            aggregation_length_v6: a.aggregation_length_v6,
                            local_pref: a.localpref,
                            communities: a.communities,
                            ip_address_pools: pools.clone(),
                            ..BgpAdvertisementSpec::default()
                        }),
                        Vec::new(),
                    ));
                }
            }
            other => {
                return Err(at.error(format!(
                    "{what}: protocol {other:?} is neither layer2 nor bgp"
                )));
            }
        }
        out.push(object(
            &p.name,
            what,
            Kind::Pool(PoolSpec {
                addresses: p.addresses,
                auto_assign: p.auto_assign,
                avoid_buggy_ips: p.avoid_buggy_ips,
                service_allocation: None,
            }),
            Vec::new(),
        ));
    }
    Ok(out)
}

fn selector(s: NodeSelector) -> LabelSelector {
    LabelSelector {
        match_labels: (!s.match_labels.is_empty()).then_some(s.match_labels),
        match_expressions: (!s.match_expressions.is_empty()).then(|| {
            s.match_expressions
                .into_iter()
                .map(|e| LabelSelectorRequirement {
                    key: e.key,
                    operator: e.operator,
                    values: (!e.values.is_empty()).then_some(e.values),
                })
                .collect()
        }),
    }
}

/// `receive-interval` → `receiveInterval`.
fn camel_case(kebab: &str) -> String {
    let mut out = String::with_capacity(kebab.len());
    let mut upper = false;
    for c in kebab.chars() {
        match c {
            '-' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}
