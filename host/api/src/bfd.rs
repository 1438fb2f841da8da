//! `BFDProfile`: the BFD settings (RFC 5880) of the BGP sessions whose
//! `BGPPeer.bfdProfile` names it, and its validation into the core's
//! [`BfdProfile`]. Field names and bounds are MetalLB's where they mean the
//! same, so a MetalLB profile reads unchanged unless it turns echo mode
//! on, which Herald refuses (it implements no Echo function).

use herald_core::bgp::{
    BFD_DEFAULT_DETECT_MULTIPLIER, BFD_DEFAULT_INTERVAL_MS, BFD_DEFAULT_MINIMUM_TTL,
    BFD_DETECT_MULTIPLIER, BFD_INTERVAL_MS, BfdProfile,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::FieldError;

/// BFD settings that `BGPPeer`s name in `bfdProfile`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "herald.dev",
    version = "v1alpha1",
    kind = "BFDProfile",
    plural = "bfdprofiles",
    status = "BFDProfileStatus",
    derive = "PartialEq",
    doc = "BFD (RFC 5880) settings of the BGP sessions whose BGPPeer names this profile in bfdProfile: a BFD Down takes the BGP session down at once.",
    printcolumn(
        name = "Receive (ms)",
        type_ = "integer",
        json_path = ".spec.receiveInterval"
    ),
    printcolumn(
        name = "Transmit (ms)",
        type_ = "integer",
        json_path = ".spec.transmitInterval"
    ),
    printcolumn(
        name = "Multiplier",
        type_ = "integer",
        json_path = ".spec.detectMultiplier"
    ),
    printcolumn(name = "Passive", type_ = "boolean", json_path = ".spec.passiveMode")
)]
#[serde(rename_all = "camelCase")]
pub struct BFDProfileSpec {
    /// The least interval between received packets this node can handle,
    /// in milliseconds, 10 to 60000 (default 300). The router's failure
    /// detection time is detectMultiplier × the larger of this and the
    /// router's transmit interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub receive_interval: Option<u32>,
    /// The interval at which this node would like to send, in
    /// milliseconds, 10 to 60000 (default 300); the larger of this and the
    /// router's receive interval is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub transmit_interval: Option<u32>,
    /// How many packets may be missed before the session is declared down,
    /// 2 to 255 (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 255))]
    pub detect_multiplier: Option<u8>,
    /// Echo mode. Herald implements no Echo function: only false (or
    /// unset) is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_mode: Option<bool>,
    /// The echo interval, 10 to 60000 ms: accepted for MetalLB's profiles
    /// and unused, as echo mode is not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub echo_interval: Option<u32>,
    /// Send nothing until the router is heard (RFC 5880 §6.1; default
    /// false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_mode: Option<bool>,
    /// Multihop sessions only (BGPPeers with ebgpMultiHop): the least TTL
    /// of an accepted packet, 1 to 254 (default 254). Single-hop sessions
    /// always require 255 (RFC 5881 §5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 254))]
    pub minimum_ttl: Option<u8>,
}

/// `BFDProfile.status`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct BFDProfileStatus {
    /// Conditions of the profile (`Valid`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl BFDProfile {
    /// Validates the profile into the speaker's view of it.
    pub fn validate(&self) -> Result<BfdProfile, FieldError> {
        let name = self.name_any();
        let err = |field: &str, message: String| FieldError {
            kind: "BFDProfile",
            name: name.clone(),
            field: field.into(),
            message,
        };
        let spec = &self.spec;
        let interval = |field: &str, v: Option<u32>| match v {
            None => Ok(BFD_DEFAULT_INTERVAL_MS),
            Some(ms) if BFD_INTERVAL_MS.contains(&ms) => Ok(ms),
            Some(ms) => Err(err(
                field,
                format!(
                    "must be from {} to {} milliseconds, not {ms}",
                    BFD_INTERVAL_MS.start(),
                    BFD_INTERVAL_MS.end()
                ),
            )),
        };
        let receive_interval_ms = interval("spec.receiveInterval", spec.receive_interval)?;
        let transmit_interval_ms = interval("spec.transmitInterval", spec.transmit_interval)?;
        let detect_multiplier = match spec.detect_multiplier {
            None => BFD_DEFAULT_DETECT_MULTIPLIER,
            Some(m) if BFD_DETECT_MULTIPLIER.contains(&m) => m,
            Some(m) => {
                return Err(err(
                    "spec.detectMultiplier",
                    format!(
                        "must be from {} to {}, not {m}",
                        BFD_DETECT_MULTIPLIER.start(),
                        BFD_DETECT_MULTIPLIER.end()
                    ),
                ));
            }
        };
        if spec.echo_mode == Some(true) {
            return Err(err(
                "spec.echoMode",
                "Herald does not implement the BFD Echo function: set false or leave it out (the session runs in asynchronous mode)".into(),
            ));
        }
        interval("spec.echoInterval", spec.echo_interval)?;
        let minimum_ttl = match spec.minimum_ttl {
            None => BFD_DEFAULT_MINIMUM_TTL,
            Some(t @ 1..=254) => t,
            Some(t) => {
                return Err(err(
                    "spec.minimumTtl",
                    format!("must be from 1 to 254, not {t}"),
                ));
            }
        };
        Ok(BfdProfile {
            name: name.clone(),
            receive_interval_ms,
            transmit_interval_ms,
            detect_multiplier,
            passive: spec.passive_mode.unwrap_or(false),
            minimum_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(spec: BFDProfileSpec) -> BFDProfile {
        BFDProfile::new("fast", spec)
    }

    fn error(spec: BFDProfileSpec) -> FieldError {
        profile(spec).validate().unwrap_err()
    }

    #[test]
    fn defaults_are_metallbs() {
        let p = profile(BFDProfileSpec::default()).validate().unwrap();
        assert_eq!(p, BfdProfile::new("fast"));
        assert_eq!(
            (
                p.receive_interval_ms,
                p.transmit_interval_ms,
                p.detect_multiplier,
                p.passive,
                p.minimum_ttl
            ),
            (300, 300, 3, false, 254)
        );
    }

    #[test]
    fn every_field_is_taken() {
        let p = profile(BFDProfileSpec {
            receive_interval: Some(100),
            transmit_interval: Some(150),
            detect_multiplier: Some(5),
            echo_mode: Some(false),
            echo_interval: Some(50),
            passive_mode: Some(true),
            minimum_ttl: Some(250),
        })
        .validate()
        .unwrap();
        assert_eq!(
            (
                p.receive_interval_ms,
                p.transmit_interval_ms,
                p.detect_multiplier,
                p.passive,
                p.minimum_ttl
            ),
            (100, 150, 5, true, 250)
        );
    }

    #[test]
    fn out_of_range_values_name_their_field_and_bounds() {
        for (spec, field, wanted) in [
            (
                BFDProfileSpec {
                    receive_interval: Some(9),
                    ..Default::default()
                },
                "spec.receiveInterval",
                "from 10 to 60000 milliseconds, not 9",
            ),
            (
                BFDProfileSpec {
                    transmit_interval: Some(60_001),
                    ..Default::default()
                },
                "spec.transmitInterval",
                "not 60001",
            ),
            (
                BFDProfileSpec {
                    detect_multiplier: Some(1),
                    ..Default::default()
                },
                "spec.detectMultiplier",
                "from 2 to 255, not 1",
            ),
            (
                BFDProfileSpec {
                    echo_interval: Some(5),
                    ..Default::default()
                },
                "spec.echoInterval",
                "not 5",
            ),
            (
                BFDProfileSpec {
                    minimum_ttl: Some(255),
                    ..Default::default()
                },
                "spec.minimumTtl",
                "from 1 to 254, not 255",
            ),
            (
                BFDProfileSpec {
                    minimum_ttl: Some(0),
                    ..Default::default()
                },
                "spec.minimumTtl",
                "not 0",
            ),
        ] {
            let e = error(spec);
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(wanted), "{e}");
            assert!(e.to_string().starts_with("BFDProfile \"fast\""), "{e}");
        }
    }

    #[test]
    fn echo_mode_is_refused_with_the_reason() {
        let e = error(BFDProfileSpec {
            echo_mode: Some(true),
            ..Default::default()
        });
        assert_eq!(e.field, "spec.echoMode");
        assert!(e.message.contains("Echo function"), "{e}");
    }
}
