//! `PolicyPlugin`: a WebAssembly component that replaces a built-in policy
//! (DESIGN.md §6), and its validation into the core's
//! [`herald_core::plugin::PolicyPluginSpec`].

use herald_core::plugin::{
    DEFAULT_CONFIG_JSON, DEFAULT_MEMORY_LIMIT_MIB, DEFAULT_TIMEOUT_MS, MAX_MEMORY_LIMIT_MIB,
    MAX_TIMEOUT_MS, PluginSource, parse_sha256,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FieldError;
use crate::bgp::data_key;

/// A policy written as a WebAssembly component.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "PolicyPlugin",
    plural = "policyplugins",
    status = "PolicyPluginStatus",
    derive = "PartialEq",
    doc = "A policy written as a WebAssembly component (herald:policy WIT worlds) that IPPools, advertisements or the CNI plugin use instead of a built-in policy.",
    printcolumn(name = "World", type_ = "string", json_path = ".spec.world"),
    printcolumn(
        name = "Failure policy",
        type_ = "string",
        json_path = ".spec.failurePolicy"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Loaded digest",
        type_ = "string",
        json_path = ".status.loadedDigest"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Last error",
        type_ = "string",
        priority = 1,
        json_path = ".status.lastError"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPluginSpec {
    /// The WIT world the component implements: allocator, announcer or
    /// cni-chain.
    pub world: World,
    /// Where the component comes from: exactly one of file and configMap.
    pub source: PolicyPluginSource,
    /// The SHA-256 digest of the component, 64 hex digits. A component with
    /// another digest is refused.
    pub sha256: String,
    /// Any JSON, handed unchanged to every call of the plugin (default `{}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub config: Option<serde_json::Value>,
    /// What a plugin failure (trap, timeout, out of memory, invalid answer)
    /// leads to: Fallback to the built-in policy (default), or Fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// The time limit of one call in milliseconds, 1 to 10000 (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    /// The memory limit of one instance in MiB, 1 to 4096 (default 16).
    #[serde(
        default,
        rename = "memoryLimitMiB",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_limit_mib: Option<u32>,
}

/// The schema of a field that holds any JSON value. Kubernetes needs a
/// structural schema, so an untyped node must say that it keeps whatever it
/// is given; kube-derive would otherwise emit an empty schema, which the API
/// server refuses.
fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// The WIT world a plugin implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Chooses addresses for Services from IPPools.
    Allocator,
    /// Chooses the nodes and attributes of BGP and L2 announcements.
    Announcer,
    /// Decides what a pod's network gets when it joins (herald-cni).
    CniChain,
}

impl From<World> for herald_core::plugin::World {
    fn from(world: World) -> Self {
        match world {
            World::Allocator => herald_core::plugin::World::Allocator,
            World::Announcer => herald_core::plugin::World::Announcer,
            World::CniChain => herald_core::plugin::World::CniChain,
        }
    }
}

/// What a plugin failure (trap, timeout, out of memory, invalid answer)
/// leads to: Fallback to the built-in policy (default), or Fail.
// This text, not the field's, becomes `failurePolicy`'s description: kube
// hoists the enum's schema over the field's when it removes the `Option`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum FailurePolicy {
    /// Decide with the built-in policy instead.
    Fallback,
    /// Make no decision: the Service stays Pending, or the announcement or
    /// the pod's network setup fails.
    Fail,
}

impl From<FailurePolicy> for herald_core::plugin::FailurePolicy {
    fn from(policy: FailurePolicy) -> Self {
        match policy {
            FailurePolicy::Fallback => herald_core::plugin::FailurePolicy::Fallback,
            FailurePolicy::Fail => herald_core::plugin::FailurePolicy::Fail,
        }
    }
}

/// Where a plugin's component comes from: exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPluginSource {
    /// A path on the host running Herald.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A key of a ConfigMap (binaryData or data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKeyReference>,
}

/// A key of a ConfigMap.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ConfigMapKeyReference {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
    /// The key holding the component.
    pub key: String,
}

/// `PolicyPlugin.status`, written by the controller as it loads the plugin.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPluginStatus {
    /// The SHA-256 digest of the component the controller runs (64 hex
    /// digits); absent when none runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded_digest: Option<String>,
    /// The last failure: a refused spec, a failed load or verification
    /// (until the wanted version runs), or a failed call (until a new
    /// version is loaded or another failure replaces it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `Ready`: True when the version the spec asks for runs; False with
    /// the reason (`Invalid`, `LoadFailed`) and message when it does not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl PolicyPlugin {
    /// Validates the plugin's spec. The caller keeps it beside the name
    /// (`metadata.name`), which pools and advertisements refer to.
    pub fn validate(&self) -> Result<herald_core::plugin::PolicyPluginSpec, FieldError> {
        let err = |field: &str, message: String| FieldError {
            kind: "PolicyPlugin",
            name: self.name_any(),
            field: field.into(),
            message,
        };
        let spec = &self.spec;

        let source = match (&spec.source.file, &spec.source.config_map) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "spec.source",
                    "set exactly one of file and configMap, not both".into(),
                ));
            }
            (None, None) => return Err(err("spec.source", "set one of file and configMap".into())),
            (Some(file), None) if file.is_empty() => {
                return Err(err("spec.source.file", "must not be empty".into()));
            }
            (Some(file), None) => PluginSource::File(file.into()),
            (None, Some(cm)) => {
                for (field, value) in [("namespace", &cm.namespace), ("name", &cm.name)] {
                    if value.is_empty() {
                        return Err(err(
                            &format!("spec.source.configMap.{field}"),
                            "must not be empty".into(),
                        ));
                    }
                }
                data_key(&cm.key).map_err(|m| err("spec.source.configMap.key", m))?;
                PluginSource::ConfigMap {
                    namespace: cm.namespace.clone(),
                    name: cm.name.clone(),
                    key: cm.key.clone(),
                }
            }
        };
        let sha256 = parse_sha256(&spec.sha256).map_err(|e| err("spec.sha256", e.to_string()))?;
        let config_json = match &spec.config {
            None => DEFAULT_CONFIG_JSON.to_owned(),
            Some(value) => {
                serde_json::to_string(value).map_err(|e| err("spec.config", e.to_string()))?
            }
        };
        let timeout_ms = match spec.timeout_ms {
            None => DEFAULT_TIMEOUT_MS,
            Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => ms,
            Some(ms) => {
                return Err(err(
                    "spec.timeoutMs",
                    format!("must be from 1 to {MAX_TIMEOUT_MS} milliseconds, not {ms}"),
                ));
            }
        };
        let memory_limit_mib = match spec.memory_limit_mib {
            None => DEFAULT_MEMORY_LIMIT_MIB,
            Some(mib) if (1..=MAX_MEMORY_LIMIT_MIB).contains(&mib) => mib,
            Some(mib) => {
                return Err(err(
                    "spec.memoryLimitMiB",
                    format!(
                        "must be from 1 to {MAX_MEMORY_LIMIT_MIB} MiB (a 32-bit memory holds 4 GiB), not {mib}"
                    ),
                ));
            }
        };

        Ok(herald_core::plugin::PolicyPluginSpec {
            world: spec.world.into(),
            source,
            sha256,
            config_json,
            failure_policy: spec.failure_policy.map(Into::into).unwrap_or_default(),
            timeout_ms,
            memory_limit_mib,
        })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    use super::*;
    use herald_core::plugin as domain;

    const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn base() -> PolicyPluginSpec {
        PolicyPluginSpec {
            world: World::Allocator,
            source: PolicyPluginSource {
                file: Some("/var/lib/herald/plugins/zones.wasm".into()),
                config_map: None,
            },
            sha256: DIGEST.into(),
            config: None,
            failure_policy: None,
            timeout_ms: None,
            memory_limit_mib: None,
        }
    }

    fn error(spec: PolicyPluginSpec) -> (String, String) {
        let e = PolicyPlugin::new("zones", spec).validate().unwrap_err();
        assert_eq!((e.kind, e.name.as_str()), ("PolicyPlugin", "zones"));
        (e.field, e.message)
    }

    fn config_map() -> ConfigMapKeyReference {
        ConfigMapKeyReference {
            namespace: "herald".into(),
            name: "plugins".into(),
            key: "zones.wasm".into(),
        }
    }

    #[test]
    fn fields_are_spelled_as_documented() {
        let json = json!({
            "world": "cni-chain",
            "source": {"configMap": {"namespace": "herald", "name": "plugins", "key": "zones.wasm"}},
            "sha256": DIGEST,
            "config": {"zones": ["a", "b"], "spread": true},
            "failurePolicy": "Fail",
            "timeoutMs": 50,
            "memoryLimitMiB": 64,
        });
        let spec: PolicyPluginSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), json);
        let p = PolicyPlugin::new("zones", spec).validate().unwrap();
        assert_eq!(p.world, domain::World::CniChain);
        assert_eq!(
            p.source,
            PluginSource::ConfigMap {
                namespace: "herald".into(),
                name: "plugins".into(),
                key: "zones.wasm".into(),
            }
        );
        assert_eq!(domain::sha256_hex(&p.sha256), DIGEST);
        let config: Value = serde_json::from_str(&p.config_json).unwrap();
        assert_eq!(config, json!({"zones": ["a", "b"], "spread": true}));
        assert_eq!(p.failure_policy, domain::FailurePolicy::Fail);
        assert_eq!((p.timeout_ms, p.memory_limit_mib), (50, 64));
    }

    #[test]
    fn defaults() {
        let p = PolicyPlugin::new("zones", base()).validate().unwrap();
        assert_eq!(p.world, domain::World::Allocator);
        assert_eq!(
            p.source,
            PluginSource::File("/var/lib/herald/plugins/zones.wasm".into())
        );
        assert_eq!(p.config_json, "{}");
        assert_eq!(p.failure_policy, domain::FailurePolicy::Fallback);
        assert_eq!(p.timeout_ms, 20);
        assert_eq!(p.memory_limit_mib, 16);
    }

    #[test]
    fn worlds_and_policies_match_the_core_spellings() {
        for (world, name) in [
            (World::Allocator, "allocator"),
            (World::Announcer, "announcer"),
            (World::CniChain, "cni-chain"),
        ] {
            assert_eq!(serde_json::to_value(world).unwrap(), json!(name));
            let core_world = domain::World::from(world);
            assert_eq!(serde_json::to_value(core_world).unwrap(), json!(name));
            assert_eq!(core_world.to_string(), name);
        }
        for policy in [FailurePolicy::Fallback, FailurePolicy::Fail] {
            let core_policy = domain::FailurePolicy::from(policy);
            assert_eq!(
                serde_json::to_value(policy).unwrap(),
                serde_json::to_value(core_policy).unwrap()
            );
            assert_eq!(
                serde_json::to_value(core_policy).unwrap(),
                json!(core_policy.to_string())
            );
        }
        assert!(serde_json::from_value::<World>(json!("cni_chain")).is_err());
    }

    #[test]
    fn any_json_config_is_kept() {
        for config in [json!(5), json!("text"), json!([1, {"a": null}]), json!({})] {
            let p = PolicyPlugin::new(
                "zones",
                PolicyPluginSpec {
                    config: Some(config.clone()),
                    ..base()
                },
            )
            .validate()
            .unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&p.config_json).unwrap(),
                config
            );
        }
    }

    #[test]
    fn source_is_exactly_one() {
        let (field, message) = error(PolicyPluginSpec {
            source: PolicyPluginSource {
                file: Some("/a.wasm".into()),
                config_map: Some(config_map()),
            },
            ..base()
        });
        assert_eq!(field, "spec.source");
        assert!(message.contains("not both"), "{message}");
        let (field, _) = error(PolicyPluginSpec {
            source: PolicyPluginSource::default(),
            ..base()
        });
        assert_eq!(field, "spec.source");
        let (field, _) = error(PolicyPluginSpec {
            source: PolicyPluginSource {
                file: Some(String::new()),
                config_map: None,
            },
            ..base()
        });
        assert_eq!(field, "spec.source.file");
        for (bad, sub) in [
            (
                ConfigMapKeyReference {
                    namespace: String::new(),
                    ..config_map()
                },
                "namespace",
            ),
            (
                ConfigMapKeyReference {
                    name: String::new(),
                    ..config_map()
                },
                "name",
            ),
            (
                ConfigMapKeyReference {
                    key: "zones wasm".into(),
                    ..config_map()
                },
                "key",
            ),
        ] {
            let (field, _) = error(PolicyPluginSpec {
                source: PolicyPluginSource {
                    file: None,
                    config_map: Some(bad),
                },
                ..base()
            });
            assert_eq!(field, format!("spec.source.configMap.{sub}"));
        }
    }

    #[test]
    fn digest_is_64_hex_digits() {
        for (bad, says) in [
            (&DIGEST[1..], "not 63"),
            ("", "not 0"),
            ("sha256:e3b0", "'s'"),
        ] {
            let (field, message) = error(PolicyPluginSpec {
                sha256: bad.into(),
                ..base()
            });
            assert_eq!(field, "spec.sha256");
            assert!(message.contains(says), "{bad:?}: {message}");
        }
    }

    #[test]
    fn limits() {
        for ms in [0, 10_001] {
            let (field, message) = error(PolicyPluginSpec {
                timeout_ms: Some(ms),
                ..base()
            });
            assert_eq!(field, "spec.timeoutMs");
            assert!(message.contains(&ms.to_string()), "{message}");
        }
        for mib in [0, 4097] {
            let (field, _) = error(PolicyPluginSpec {
                memory_limit_mib: Some(mib),
                ..base()
            });
            assert_eq!(field, "spec.memoryLimitMiB");
        }
        let p = PolicyPlugin::new(
            "zones",
            PolicyPluginSpec {
                timeout_ms: Some(10_000),
                memory_limit_mib: Some(4096),
                ..base()
            },
        )
        .validate()
        .unwrap();
        assert_eq!((p.timeout_ms, p.memory_limit_mib), (10_000, 4096));
    }

    #[test]
    fn crd_carries_the_printer_columns_and_any_json() {
        let crd = PolicyPlugin::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        let version = &crd.spec.versions[0];
        let columns: Vec<(String, String)> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.json_path.clone()))
            .collect();
        assert_eq!(
            columns,
            [
                ("World".to_owned(), ".spec.world".to_owned()),
                (
                    "Failure policy".to_owned(),
                    ".spec.failurePolicy".to_owned()
                ),
                (
                    "Ready".to_owned(),
                    ".status.conditions[?(@.type==\"Ready\")].status".to_owned()
                ),
                (
                    "Loaded digest".to_owned(),
                    ".status.loadedDigest".to_owned()
                ),
                ("Age".to_owned(), ".metadata.creationTimestamp".to_owned()),
                ("Last error".to_owned(), ".status.lastError".to_owned()),
            ]
        );
        let schema = serde_json::to_value(&version.schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        let config = &spec["properties"]["config"];
        assert_eq!(
            config["x-kubernetes-preserve-unknown-fields"],
            json!(true),
            "{config}"
        );
        assert_eq!(
            spec["properties"]["world"]["enum"],
            json!(["allocator", "announcer", "cni-chain"])
        );
        assert_eq!(
            spec["properties"]["failurePolicy"]["enum"],
            json!(["Fallback", "Fail"])
        );
        let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
        for field in ["loadedDigest", "lastError", "conditions"] {
            assert!(status.get(field).is_some(), "status.{field}");
        }
    }

    /// Checks the rules of a structural schema that a derive can break:
    /// every node has a type unless it keeps unknown fields; no `$ref`; no
    /// `anyOf`/`oneOf`/`allOf`; no `properties` beside
    /// `additionalProperties`; every field of the spec has a description.
    fn check_structural(schema: &Value, path: &str, errors: &mut Vec<String>) {
        let Some(node) = schema.as_object() else {
            errors.push(format!("{path}: not an object"));
            return;
        };
        let preserves = node.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))
            || node.get("x-kubernetes-int-or-string") == Some(&json!(true));
        if !preserves
            && node
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            errors.push(format!("{path}: no type"));
        }
        for forbidden in ["$ref", "anyOf", "oneOf", "allOf", "not"] {
            if node.contains_key(forbidden) {
                errors.push(format!("{path}: {forbidden}"));
            }
        }
        if node.contains_key("properties") && node.contains_key("additionalProperties") {
            errors.push(format!("{path}: properties and additionalProperties"));
        }
        for (name, child) in node
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let child_path = format!("{path}.{name}");
            if child_path.starts_with(".spec.") && child.get("description").is_none() {
                errors.push(format!("{child_path}: no description"));
            }
            check_structural(child, &child_path, errors);
        }
        if let Some(items) = node.get("items") {
            check_structural(items, &format!("{path}[]"), errors);
        }
        if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
            check_structural(additional, &format!("{path}{{}}"), errors);
        }
    }

    #[test]
    fn crds_are_structural() {
        let crds: [CustomResourceDefinition; 4] = [
            crate::bgp::BGPPeer::crd(),
            crate::bgp::BGPAdvertisement::crd(),
            crate::l2::L2Advertisement::crd(),
            PolicyPlugin::crd(),
        ];
        for crd in crds {
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            let mut errors = Vec::new();
            check_structural(&schema["openAPIV3Schema"], "", &mut errors);
            assert!(errors.is_empty(), "{}: {errors:#?}", crd.spec.names.kind);
        }
    }
}
