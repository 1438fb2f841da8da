//! The cni-chain hook (DESIGN.md §6): the pod a policy is asked about, the
//! actions it may answer with, their validation, and the [`CniPolicy`]
//! trait a CNI plugin calls. Applying the actions in the pod's network
//! namespace is the CNI plugin's job; answering is the policy host's. Both
//! use these types without depending on each other (or on wasmtime).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::policy::PolicyError;
use crate::service::Service;

/// The most actions one answer may hold: a pod behind many Services needs
/// one address per VIP and a few sysctls; far more is a broken plugin.
pub const MAX_ACTIONS: usize = 256;

/// A pod joining the network.
#[derive(Clone, Debug)]
pub struct Pod {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// Its interface in its network namespace (`eth0`).
    pub interface: String,
    /// The addresses earlier plugins gave it.
    pub addresses: Vec<IpAddr>,
    /// The Services selecting it, with their VIPs.
    pub services: Vec<(Service, Vec<IpAddr>)>,
}

/// One action a cni-chain plugin asks for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Put `address/prefix_len` on `interface`.
    AddAddress {
        /// `lo` or the pod's interface.
        interface: String,
        /// One of the VIPs of the pod's Services.
        address: IpAddr,
        /// The full length (32 or 128): a VIP is a host address.
        prefix_len: u8,
    },
    /// Write `value` to the sysctl `key` inside the pod's namespace.
    SetSysctl {
        /// `net.ipv4.conf.DEV.NAME` or `net.ipv6.conf.DEV.NAME`.
        key: String,
        /// A decimal integer.
        value: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::AddAddress {
                interface,
                address,
                prefix_len,
            } => write!(f, "address {address}/{prefix_len} on {interface}"),
            Action::SetSysctl { key, value } => write!(f, "sysctl {key}={value}"),
        }
    }
}

/// Decides the actions that set a pod up as it joins the network.
pub trait CniPolicy: Send + Sync {
    /// The actions for `pod`, validated ([`validate_actions`]); anything
    /// invalid is a failure.
    fn setup(&self, pod: &Pod) -> Result<Vec<Action>, PolicyError>;
}

/// Checks every action of an answer before any is applied: addresses only
/// VIPs of the pod's Services, as host addresses, on `lo` or the pod's
/// interface; sysctls only per-interface IPv4/IPv6 settings of the pod's
/// own interfaces, with integer values, never two values for one key.
/// Returns the actions sorted and without duplicates.
pub fn validate_actions(pod: &Pod, actions: Vec<Action>) -> Result<Vec<Action>, String> {
    if actions.len() > MAX_ACTIONS {
        return Err(format!(
            "answered {} actions; at most {MAX_ACTIONS} are accepted",
            actions.len()
        ));
    }
    let interfaces = ["lo", pod.interface.as_str()];
    let mut sysctls: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, a) in actions.iter().enumerate() {
        match a {
            Action::AddAddress {
                interface,
                address,
                prefix_len,
            } => {
                if !interfaces.contains(&interface.as_str()) {
                    return Err(format!(
                        "action {i} ({a}): interface {interface:?} is neither lo nor the pod's {:?}",
                        pod.interface
                    ));
                }
                let vip = pod.services.iter().any(|(_, vips)| vips.contains(address));
                if !vip {
                    return Err(format!(
                        "action {i} ({a}): {address} is not a VIP of a Service selecting pod {}/{}",
                        pod.namespace, pod.name
                    ));
                }
                let full = if address.is_ipv4() { 32 } else { 128 };
                if *prefix_len != full {
                    return Err(format!(
                        "action {i} ({a}): a VIP is a host address: /{full}, not /{prefix_len}"
                    ));
                }
            }
            Action::SetSysctl { key, value } => {
                let parts: Vec<&str> = key.split('.').collect();
                let ok_shape = parts.len() == 5
                    && parts[0] == "net"
                    && (parts[1] == "ipv4" || parts[1] == "ipv6")
                    && parts[2] == "conf"
                    && (["all", "default"].contains(&parts[3]) || interfaces.contains(&parts[3]))
                    && !parts[4].is_empty()
                    && parts[4]
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !ok_shape {
                    return Err(format!(
                        "action {i} ({a}): only net.ipv4.conf.DEV.NAME and net.ipv6.conf.DEV.NAME for DEV all, default, lo or {:?} may be set",
                        pod.interface
                    ));
                }
                let ok_value = !value.is_empty()
                    && value.len() <= 12
                    && value
                        .trim_start_matches('-')
                        .bytes()
                        .all(|b| b.is_ascii_digit());
                if !ok_value {
                    return Err(format!("action {i} ({a}): the value must be an integer"));
                }
                if let Some(old) = sysctls.insert(key, value)
                    && old != value
                {
                    return Err(format!("sets {key} twice, to {old} and to {value}"));
                }
            }
        }
    }
    let mut actions = actions;
    actions.sort();
    actions.dedup();
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        Pod {
            namespace: "shop".into(),
            name: "web-1".into(),
            interface: "eth0".into(),
            addresses: vec!["10.0.0.5".parse().unwrap()],
            services: vec![(
                Service::new("shop", "web"),
                vec!["198.51.100.7".parse().unwrap()],
            )],
        }
    }

    fn addr(interface: &str, ip: &str, len: u8) -> Action {
        Action::AddAddress {
            interface: interface.into(),
            address: ip.parse().unwrap(),
            prefix_len: len,
        }
    }

    fn sysctl(key: &str, value: &str) -> Action {
        Action::SetSysctl {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn accepts_vip_on_loopback_and_arp_sysctls() {
        let ok = validate_actions(
            &pod(),
            vec![
                sysctl("net.ipv4.conf.all.arp_ignore", "1"),
                addr("lo", "198.51.100.7", 32),
                sysctl("net.ipv4.conf.all.arp_ignore", "1"),
            ],
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
    }

    #[test]
    fn refuses_what_a_plugin_must_not_do() {
        let cases = [
            (addr("eth1", "198.51.100.7", 32), "neither lo nor"),
            (addr("lo", "203.0.113.1", 32), "not a VIP"),
            (addr("lo", "198.51.100.7", 24), "/32, not /24"),
            (sysctl("net.ipv4.ip_forward", "1"), "only net.ipv4.conf"),
            (sysctl("kernel.panic", "1"), "only net.ipv4.conf"),
            (
                sysctl("net.ipv4.conf.eth9.arp_ignore", "1"),
                "only net.ipv4.conf",
            ),
            (
                sysctl("net.ipv4.conf.all.arp_ignore", "1; reboot"),
                "integer",
            ),
        ];
        for (action, want) in cases {
            let e = validate_actions(&pod(), vec![action.clone()]).unwrap_err();
            assert!(e.contains(want), "{action}: {e}");
        }
        let e = validate_actions(
            &pod(),
            vec![
                sysctl("net.ipv4.conf.all.arp_ignore", "1"),
                sysctl("net.ipv4.conf.all.arp_ignore", "2"),
            ],
        )
        .unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let many = vec![sysctl("net.ipv4.conf.lo.arp_ignore", "1"); MAX_ACTIONS + 1];
        assert!(
            validate_actions(&pod(), many)
                .unwrap_err()
                .contains("at most")
        );
    }
}
