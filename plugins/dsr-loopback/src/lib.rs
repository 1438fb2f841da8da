//! `dsr-loopback`: a cni-chain plugin for Herald (world
//! `herald:policy/cni-chain`). For a pod behind a Service marked for direct
//! server return, it puts the Service's VIPs on the pod's loopback (so the
//! pod accepts packets addressed to the VIP and answers from it, straight
//! to the client) and sets `arp_ignore=1` / `arp_announce=2` so the pod
//! never answers ARP for the VIP or uses it as an ARP source: only the
//! announcing node owns the VIP on the segment.
//!
//! The logic is plain Rust, unit-tested natively; the component glue
//! exists only in the `wasm32` build.

use std::net::IpAddr;

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
    /// The Service annotation that marks it for DSR (default
    /// `dsr-loopback.herald.dev/enabled`); its value must be `"true"`.
    #[serde(default = "default_annotation")]
    pub annotation: String,
}

fn default_annotation() -> String {
    "dsr-loopback.herald.dev/enabled".to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            annotation: default_annotation(),
        }
    }
}

impl Config {
    /// Parses the config JSON, saying what is wrong.
    pub fn parse(json: &str) -> Result<Config, String> {
        let c: Config =
            serde_json::from_str(json).map_err(|e| format!("dsr-loopback config: {e}"))?;
        if c.annotation.is_empty() {
            return Err("dsr-loopback config: annotation must not be empty".into());
        }
        Ok(c)
    }
}

/// An action for the pod's network namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// The VIP as a host address on an interface.
    Address {
        /// The interface.
        interface: String,
        /// The VIP.
        vip: IpAddr,
    },
    /// A sysctl write.
    Sysctl {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

/// A Service selecting the pod: its annotations and its VIPs.
pub type ServiceVips = (Vec<(String, String)>, Vec<IpAddr>);

/// The actions for a pod on `interface`, given the Services selecting it
/// (their annotations and VIPs).
pub fn setup(config: &Config, interface: &str, services: &[ServiceVips]) -> Vec<Action> {
    let mut vips: Vec<IpAddr> = services
        .iter()
        .filter(|(annotations, _)| {
            annotations
                .iter()
                .any(|(k, v)| *k == config.annotation && v.trim() == "true")
        })
        .flat_map(|(_, vips)| vips.iter().copied())
        .collect();
    vips.sort();
    vips.dedup();
    let mut actions: Vec<Action> = vips
        .iter()
        .map(|&vip| Action::Address {
            interface: "lo".to_owned(),
            vip,
        })
        .collect();
    if vips.iter().any(IpAddr::is_ipv4) {
        // arp_ignore=1: answer ARP only for addresses on the receiving
        // interface (the VIP is on lo). arp_announce=2: never use the VIP
        // as the source of an ARP request.
        for dev in ["all", interface] {
            actions.push(Action::Sysctl {
                key: format!("net.ipv4.conf.{dev}.arp_ignore"),
                value: "1".into(),
            });
            actions.push(Action::Sysctl {
                key: format!("net.ipv4.conf.{dev}.arp_announce"),
                value: "2".into(),
            });
        }
    }
    actions.sort();
    actions.dedup();
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(dsr: bool, vips: &[&str]) -> ServiceVips {
        let ann = if dsr {
            vec![(
                "dsr-loopback.herald.dev/enabled".to_owned(),
                "true".to_owned(),
            )]
        } else {
            vec![]
        };
        (ann, vips.iter().map(|v| v.parse().unwrap()).collect())
    }

    #[test]
    fn marked_service_gets_vip_on_lo_and_arp_sysctls() {
        let a = setup(&Config::default(), "eth0", &[svc(true, &["198.51.100.7"])]);
        assert!(a.contains(&Action::Address {
            interface: "lo".into(),
            vip: "198.51.100.7".parse().unwrap()
        }));
        for key in [
            "net.ipv4.conf.all.arp_ignore",
            "net.ipv4.conf.eth0.arp_ignore",
            "net.ipv4.conf.all.arp_announce",
            "net.ipv4.conf.eth0.arp_announce",
        ] {
            assert!(
                a.iter()
                    .any(|x| matches!(x, Action::Sysctl { key: k, .. } if k == key)),
                "{key} missing from {a:?}"
            );
        }
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn unmarked_services_get_nothing() {
        assert!(setup(&Config::default(), "eth0", &[svc(false, &["198.51.100.7"])]).is_empty());
        assert!(setup(&Config::default(), "eth0", &[]).is_empty());
    }

    #[test]
    fn ipv6_vip_needs_no_arp_sysctls() {
        let a = setup(&Config::default(), "eth0", &[svc(true, &["2001:db8::7"])]);
        assert_eq!(a.len(), 1, "{a:?}");
    }

    #[test]
    fn config_names_the_annotation() {
        let c = Config::parse(r#"{"annotation":"example.com/dsr"}"#).unwrap();
        let marked = (
            vec![("example.com/dsr".to_owned(), "true".to_owned())],
            vec!["192.0.2.1".parse().unwrap()],
        );
        assert_eq!(setup(&c, "eth0", &[marked]).len(), 5);
        assert!(Config::parse(r#"{"annotation":""}"#).is_err());
    }
}
