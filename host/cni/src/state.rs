//! The node-local state file: which pods on this node are backends of a
//! Service that uses direct server return, and that Service's VIPs.
//!
//! Format (JSON, `deny_unknown_fields` so that a typo is an error rather
//! than a pod silently without its VIP):
//!
//! ```json
//! {
//!   "pods": [
//!     { "namespace": "shop", "name": "web-0", "vips": ["203.0.113.10", "2001:db8::10"] }
//!   ]
//! }
//! ```
//!
//! A pod may appear more than once (one entry per Service); its VIPs are
//! the union. The file is meant to be written by the speaker and replaced
//! atomically (written beside it, then renamed over it), so a reader sees
//! the old file or the new one, never half of one. Nothing writes it yet
//! (docs/cni.md); tests and operators write it by hand.
//!
//! A missing file means "no pod uses DSR" (the speaker has not written one
//! yet, or DSR is not used on this node): ADD passes every pod on
//! unchanged. An unreadable or malformed file fails ADD and CHECK (and
//! STATUS reports the plugin not available), so a DSR pod is never
//! started silently without its VIP.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::protocol::PodRef;
use crate::{Error, Result};

/// The state file's contents.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The DSR pods.
    pub pods: Vec<DsrPod>,
}

/// One pod behind a DSR Service.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DsrPod {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The VIPs of the DSR Service(s) selecting it.
    pub vips: Vec<IpAddr>,
}

impl State {
    /// Parses the file's contents.
    pub fn parse(json: &str, path: &Path) -> Result<State> {
        serde_json::from_str(json).map_err(|e| Error::Decoding {
            what: format!("state file {}", path.display()),
            reason: e.to_string(),
        })
    }

    /// Reads the file; a missing file is the empty state.
    pub fn load(path: &Path) -> Result<State> {
        match std::fs::read_to_string(path) {
            Ok(json) => State::parse(&json, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(Error::Io {
                what: format!("reading state file {}", path.display()),
                source,
            }),
        }
    }

    /// The VIPs to put on `pod`'s loopback, sorted, without duplicates.
    pub fn vips(&self, pod: &PodRef) -> Vec<IpAddr> {
        let mut vips: Vec<IpAddr> = self
            .pods
            .iter()
            .filter(|p| p.namespace == pod.namespace && p.name == pod.name)
            .flat_map(|p| p.vips.iter().copied())
            .collect();
        vips.sort();
        vips.dedup();
        vips
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code;

    fn pod(namespace: &str, name: &str) -> PodRef {
        PodRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_pods_vips_are_the_union_of_its_entries_and_other_pods_get_none() {
        let state = State::parse(
            r#"{"pods":[
                {"namespace":"shop","name":"web-0","vips":["203.0.113.10","2001:db8::10"]},
                {"namespace":"shop","name":"web-0","vips":["203.0.113.11","203.0.113.10"]},
                {"namespace":"other","name":"web-0","vips":["203.0.113.99"]}]}"#,
            Path::new("/s"),
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            state.vips(&pod("shop", "web-0")),
            vec![ip("203.0.113.10"), ip("203.0.113.11"), ip("2001:db8::10")]
        );
        assert!(state.vips(&pod("shop", "web-1")).is_empty());
    }

    #[test]
    fn a_typo_or_a_bad_address_is_a_decoding_error() {
        for json in [
            r#"{"pods":[{"namespace":"a","name":"b","vip":["203.0.113.1"]}]}"#,
            r#"{"pods":[{"namespace":"a","name":"b","vips":["203.0.113.300"]}]}"#,
            r#"{"pods":"#,
        ] {
            let e = State::parse(json, Path::new("/s")).unwrap_err();
            assert_eq!(e.code(), code::DECODING_FAILURE, "{json}");
        }
    }

    #[test]
    fn a_missing_file_is_the_empty_state() {
        let state = State::load(Path::new("/nonexistent/herald-cni/state.json")).unwrap();
        assert_eq!(state, State::default());
    }
}
