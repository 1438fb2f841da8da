//! `endpoint-weighted`: an announcer plugin for Herald (world
//! `herald:policy/announcer`). For BGP, each node's weight (the
//! link-bandwidth community of `weighted` advertisements) is proportional
//! to its ready endpoints of the VIP's Services, and nodes without
//! endpoints stop announcing while some node has them; LOCAL_PREF, MED and
//! communities come from the Service's annotations. For L2 the owner is the
//! node with the most endpoints.
//!
//! The logic is plain Rust, unit-tested natively; the component glue
//! exists only in the `wasm32` build.

use serde::Deserialize;

// The canonical-ABI glue wit-bindgen generates is unsafe code; it is
// confined to this module.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs)]
mod component;

/// The plugin's JSON config.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// The weight of one endpoint (default 100): a node's weight is
    /// `endpoints × weightPerEndpoint`.
    #[serde(default = "default_weight")]
    pub weight_per_endpoint: u32,
    /// Keep announcing from nodes without endpoints (weight 1) instead of
    /// withdrawing them while another node has endpoints (default false).
    #[serde(default)]
    pub keep_empty_nodes: bool,
    /// The annotation prefix of per-Service settings (default
    /// `endpoint-weighted.herald.dev/`): `local-pref`, `med`,
    /// `communities`, `large-communities`.
    #[serde(default = "default_prefix")]
    pub annotation_prefix: String,
}

fn default_weight() -> u32 {
    100
}

fn default_prefix() -> String {
    "endpoint-weighted.herald.dev/".to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            weight_per_endpoint: default_weight(),
            keep_empty_nodes: false,
            annotation_prefix: default_prefix(),
        }
    }
}

impl Config {
    /// Parses the config JSON, saying what is wrong.
    pub fn parse(json: &str) -> Result<Config, String> {
        let c: Config =
            serde_json::from_str(json).map_err(|e| format!("endpoint-weighted config: {e}"))?;
        if c.weight_per_endpoint == 0 {
            return Err("endpoint-weighted config: weightPerEndpoint must be at least 1".into());
        }
        Ok(c)
    }
}

/// BGP attributes a Service asks for in its annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `local-pref`.
    pub local_pref: Option<u32>,
    /// `med`.
    pub med: Option<u32>,
    /// `communities`: `ASN:VALUE` pairs, comma-separated.
    pub communities: Vec<(u16, u16)>,
    /// `large-communities`: `GLOBAL:LOCAL1:LOCAL2`, comma-separated.
    pub large_communities: Vec<(u32, u32, u32)>,
}

/// Reads the attributes from the annotations of the Services behind a
/// VIP (`(key, value)` pairs per Service). Services sharing a VIP must
/// agree; a malformed value is an error naming the annotation.
pub fn attributes(prefix: &str, services: &[Vec<(String, String)>]) -> Result<Attributes, String> {
    let mut out: Option<Attributes> = None;
    for annotations in services {
        let get = |k: &str| {
            annotations
                .iter()
                .find(|(key, _)| key.strip_prefix(prefix) == Some(k))
                .map(|(_, v)| v.trim())
        };
        let num = |k: &str| -> Result<Option<u32>, String> {
            get(k)
                .map(|v| {
                    v.parse::<u32>()
                        .map_err(|_| format!("annotation {prefix}{k}: {v:?} is not a number"))
                })
                .transpose()
        };
        let list = |k: &str| get(k).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()));
        let mut a = Attributes {
            local_pref: num("local-pref")?,
            med: num("med")?,
            ..Attributes::default()
        };
        for c in list("communities").into_iter().flatten() {
            let parsed = c
                .split_once(':')
                .and_then(|(x, y)| Some((x.parse().ok()?, y.parse().ok()?)));
            a.communities.push(parsed.ok_or_else(|| {
                format!("annotation {prefix}communities: {c:?} is not ASN:VALUE (64512:100)")
            })?);
        }
        for c in list("large-communities").into_iter().flatten() {
            let parts: Vec<Option<u32>> = c.split(':').map(|p| p.parse().ok()).collect();
            match parts[..] {
                [Some(g), Some(l1), Some(l2)] => a.large_communities.push((g, l1, l2)),
                _ => {
                    return Err(format!(
                        "annotation {prefix}large-communities: {c:?} is not GLOBAL:LOCAL1:LOCAL2"
                    ));
                }
            }
        }
        match &out {
            Some(prev) if *prev != a => {
                return Err(format!(
                    "the Services sharing this VIP disagree on their {prefix}* annotations"
                ));
            }
            _ => out = Some(a),
        }
    }
    Ok(out.unwrap_or_default())
}

/// The weight of each node (`(name, endpoints)`), in input order; nodes
/// left out announce nothing.
pub fn weights(config: &Config, nodes: &[(String, u32)]) -> Vec<(String, u32)> {
    let any = nodes.iter().any(|(_, e)| *e > 0);
    nodes
        .iter()
        .filter(|(_, e)| *e > 0 || !any || config.keep_empty_nodes)
        .map(|(n, e)| {
            (
                n.clone(),
                e.saturating_mul(config.weight_per_endpoint).max(1),
            )
        })
        .collect()
}

/// The L2 owner: the node with the most endpoints, ties by name.
pub fn l2_owner(nodes: &[(String, u32)]) -> Option<&str> {
    nodes
        .iter()
        .max_by_key(|(n, e)| (*e, std::cmp::Reverse(n.as_str())))
        .map(|(n, _)| n.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(v: &[(&str, u32)]) -> Vec<(String, u32)> {
        v.iter().map(|(n, e)| (n.to_string(), *e)).collect()
    }

    #[test]
    fn weights_follow_endpoints_and_empty_nodes_withdraw() {
        let c = Config::default();
        let w = weights(&c, &nodes(&[("a", 3), ("b", 0), ("c", 1)]));
        assert_eq!(w, nodes(&[("a", 300), ("c", 100)]));
        let keep = Config {
            keep_empty_nodes: true,
            ..Config::default()
        };
        assert_eq!(
            weights(&keep, &nodes(&[("a", 3), ("b", 0)])),
            nodes(&[("a", 300), ("b", 1)])
        );
        // Nobody has endpoints: everyone announces, equally.
        assert_eq!(
            weights(&c, &nodes(&[("a", 0), ("b", 0)])),
            nodes(&[("a", 1), ("b", 1)])
        );
    }

    #[test]
    fn l2_owner_has_most_endpoints() {
        assert_eq!(l2_owner(&nodes(&[("a", 1), ("b", 4), ("c", 4)])), Some("b"));
        assert_eq!(l2_owner(&[]), None);
    }

    fn ann(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (format!("endpoint-weighted.herald.dev/{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn attributes_come_from_annotations() {
        let p = default_prefix();
        let a = attributes(
            &p,
            &[ann(&[
                ("local-pref", "200"),
                ("med", "5"),
                ("communities", "64512:100, 64512:200"),
                ("large-communities", "4200000001:1:2"),
            ])],
        )
        .unwrap();
        assert_eq!(a.local_pref, Some(200));
        assert_eq!(a.med, Some(5));
        assert_eq!(a.communities, vec![(64512, 100), (64512, 200)]);
        assert_eq!(a.large_communities, vec![(4_200_000_001, 1, 2)]);
        assert_eq!(attributes(&p, &[vec![]]).unwrap(), Attributes::default());
    }

    #[test]
    fn malformed_or_conflicting_annotations_are_errors() {
        let p = default_prefix();
        let e = attributes(&p, &[ann(&[("local-pref", "high")])]).unwrap_err();
        assert!(e.contains("local-pref") && e.contains("\"high\""), "{e}");
        let e = attributes(&p, &[ann(&[("communities", "70000:1")])]).unwrap_err();
        assert!(e.contains("ASN:VALUE"), "{e}");
        let e = attributes(&p, &[ann(&[("large-communities", "1:2")])]).unwrap_err();
        assert!(e.contains("GLOBAL:LOCAL1:LOCAL2"), "{e}");
        let e = attributes(&p, &[ann(&[("med", "1")]), ann(&[("med", "2")])]).unwrap_err();
        assert!(e.contains("disagree"), "{e}");
    }

    #[test]
    fn config_is_checked() {
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
        assert!(
            Config::parse(r#"{"weightPerEndpoint":0}"#)
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(Config::parse("7").is_err());
    }
}
