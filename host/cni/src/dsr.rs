//! What a pod behind a direct-server-return Service needs in its network
//! namespace, as data: the VIPs as host addresses on `lo`, and, when one is
//! IPv4, `arp_ignore=1` (answer ARP only for addresses of the interface
//! the request came in on — the VIP is on `lo`, so never for it) and
//! `arp_announce=2` (never use the VIP as an ARP source) for `all` and the
//! pod's interface. The same decision as the `dsr-loopback` cni-chain
//! plugin makes; [`crate::pod`] carries it out.

use std::net::IpAddr;

/// One change inside the pod's network namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// The VIP as a host address (/32 or /128) on `lo`.
    LoopbackAddress(IpAddr),
    /// An IPv4 ARP sysctl: `net.ipv4.conf.{device}.{key} = value`.
    ArpSysctl {
        /// `all` or the pod's interface.
        device: String,
        /// The setting.
        key: ArpKey,
        /// Its value.
        value: u8,
    },
}

/// The two ARP settings DSR needs: the allow-list of sysctls this plugin
/// writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ArpKey {
    /// `arp_ignore`.
    Ignore,
    /// `arp_announce`.
    Announce,
}

impl ArpKey {
    /// The sysctl's name.
    pub fn name(self) -> &'static str {
        match self {
            ArpKey::Ignore => "arp_ignore",
            ArpKey::Announce => "arp_announce",
        }
    }
}

impl Action {
    /// The `/proc/sys` path of a sysctl action.
    pub fn sysctl_path(device: &str, key: ArpKey) -> String {
        format!("/proc/sys/net/ipv4/conf/{device}/{}", key.name())
    }
}

/// The actions for a pod on `ifname` with `vips` (none when there are no
/// VIPs).
pub fn actions(ifname: &str, vips: &[IpAddr]) -> Vec<Action> {
    let mut actions: Vec<Action> = vips.iter().map(|&v| Action::LoopbackAddress(v)).collect();
    if vips.iter().any(IpAddr::is_ipv4) {
        for device in ["all", ifname] {
            for (key, value) in [(ArpKey::Ignore, 1), (ArpKey::Announce, 2)] {
                actions.push(Action::ArpSysctl {
                    device: device.to_owned(),
                    key,
                    value,
                });
            }
        }
    }
    actions.sort();
    actions.dedup();
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv4_vip_brings_the_arp_settings_for_all_and_the_pod_interface() {
        let a = actions("eth0", &[ip("203.0.113.10")]);
        assert!(a.contains(&Action::LoopbackAddress(ip("203.0.113.10"))));
        for device in ["all", "eth0"] {
            assert!(a.contains(&Action::ArpSysctl {
                device: device.into(),
                key: ArpKey::Ignore,
                value: 1
            }));
            assert!(a.contains(&Action::ArpSysctl {
                device: device.into(),
                key: ArpKey::Announce,
                value: 2
            }));
        }
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn ipv6_only_vips_need_no_arp_settings_and_no_vips_need_nothing() {
        assert_eq!(
            actions("eth0", &[ip("2001:db8::10")]),
            vec![Action::LoopbackAddress(ip("2001:db8::10"))]
        );
        assert!(actions("eth0", &[]).is_empty());
    }

    #[test]
    fn sysctl_paths_are_under_net_ipv4_conf() {
        assert_eq!(
            Action::sysctl_path("eth0", ArpKey::Announce),
            "/proc/sys/net/ipv4/conf/eth0/arp_announce"
        );
    }
}
