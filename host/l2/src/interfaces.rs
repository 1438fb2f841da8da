//! Which interfaces answer for a VIP (docs/l2.md, "Interfaces"):
//!
//! 1. `L2Advertisement.interfaces` set: exactly those interfaces; one that
//!    does not exist (or is loopback, or has no MAC) is an error for that
//!    interface alone, the others still answer.
//! 2. Unset: every interface with an address whose subnet contains the VIP.
//! 3. No such interface: the interface of the main table's default route of
//!    the VIP's family.
//! 4. None either: an error for that VIP; other VIPs are unaffected.
//!
//! Loopback interfaces and interfaces without an Ethernet address never
//! answer (a VIP on `lo` is how nodes accept its traffic, not where ARP is
//! asked). The choice itself is a pure function ([`choose`]); reading the
//! system ([`system`]) is separate.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use herald_core::l2::InterfaceName;
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::RouteMessageBuilder;

use crate::Error;
use crate::frame::Mac;

/// An interface that can answer ARP/NDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its index.
    pub index: u32,
    /// Its Ethernet address.
    pub mac: Mac,
    /// Its addresses with prefix lengths.
    pub networks: Vec<(IpAddr, u8)>,
}

/// The interfaces (by index) holding the main table's default routes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultRoutes {
    /// IPv4 `0.0.0.0/0`.
    pub v4: Option<u32>,
    /// IPv6 `::/0`.
    pub v6: Option<u32>,
}

/// Where a VIP is answered, and what could not be used.
#[derive(Debug, Default)]
pub struct Choice {
    /// Names of the interfaces that answer.
    pub interfaces: Vec<String>,
    /// Requested interfaces that do not exist, or why there is none.
    pub errors: Vec<Error>,
}

/// Applies the rule of this module to one VIP.
pub fn choose(
    vip: IpAddr,
    requested: &[InterfaceName],
    interfaces: &[Interface],
    defaults: DefaultRoutes,
) -> Choice {
    let mut out = Choice::default();
    if !requested.is_empty() {
        for name in requested {
            if interfaces.iter().any(|i| i.name == name.as_str()) {
                out.interfaces.push(name.as_str().to_owned());
            } else {
                out.errors.push(Error::UnknownInterface {
                    vip,
                    interface: name.as_str().to_owned(),
                });
            }
        }
        return out;
    }
    out.interfaces = interfaces
        .iter()
        .filter(|i| i.networks.iter().any(|&(net, len)| contains(net, len, vip)))
        .map(|i| i.name.clone())
        .collect();
    if out.interfaces.is_empty() {
        let index = match vip {
            IpAddr::V4(_) => defaults.v4,
            IpAddr::V6(_) => defaults.v6,
        };
        match index.and_then(|x| interfaces.iter().find(|i| i.index == x)) {
            Some(i) => out.interfaces.push(i.name.clone()),
            None => out.errors.push(Error::NoInterface { vip }),
        }
    }
    out
}

/// Whether `net/len` contains `ip` (same family, equal leading bits).
fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Reading the system's interfaces and default routes.
pub mod system {
    use super::*;

    /// The interfaces that can answer: up, not loopback, with an Ethernet
    /// address.
    pub fn interfaces() -> Vec<Interface> {
        pnet_datalink::interfaces()
            .into_iter()
            .filter(|i| i.is_up() && !i.is_loopback())
            .filter_map(|i| {
                let mac = i.mac.filter(|m| !m.is_zero())?;
                Some(Interface {
                    networks: i.ips.iter().map(|n| (n.ip(), n.prefix())).collect(),
                    name: i.name,
                    index: i.index,
                    mac: mac.octets(),
                })
            })
            .collect()
    }

    /// The interfaces of the main table's default routes, over netlink.
    pub async fn default_routes() -> Result<DefaultRoutes, Error> {
        let netlink = |source| Error::Netlink { source };
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| Error::Io {
            what: "opening a netlink socket".into(),
            source: e,
        })?;
        let task = tokio::spawn(connection);
        let v4: Vec<RouteMessage> = handle
            .route()
            .get(RouteMessageBuilder::<std::net::Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(netlink)?;
        let v6: Vec<RouteMessage> = handle
            .route()
            .get(RouteMessageBuilder::<std::net::Ipv6Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(netlink)?;
        task.abort();
        Ok(DefaultRoutes {
            v4: default_oif(&v4),
            v6: default_oif(&v6),
        })
    }

    fn default_oif(routes: &[RouteMessage]) -> Option<u32> {
        routes
            .iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .filter(|r| {
                let table = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                });
                table.unwrap_or(u32::from(r.header.table)) == u32::from(RouteHeader::RT_TABLE_MAIN)
            })
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, index: u32, nets: &[(&str, u8)]) -> Interface {
        Interface {
            name: name.into(),
            index,
            mac: [2, 0, 0, 0, 0, index as u8],
            networks: nets.iter().map(|(a, l)| (a.parse().unwrap(), *l)).collect(),
        }
    }

    fn system() -> Vec<Interface> {
        vec![
            iface("eth0", 2, &[("192.0.2.11", 24), ("2001:db8::11", 64)]),
            iface("eth1", 3, &[("203.0.113.11", 26)]),
        ]
    }

    #[test]
    fn the_subnet_holding_the_vip_wins() {
        let c = choose(
            "192.0.2.200".parse().unwrap(),
            &[],
            &system(),
            DefaultRoutes::default(),
        );
        assert_eq!(c.interfaces, ["eth0"]);
        assert!(c.errors.is_empty());
        let c = choose(
            "2001:db8::200".parse().unwrap(),
            &[],
            &system(),
            DefaultRoutes::default(),
        );
        assert_eq!(c.interfaces, ["eth0"]);
        let c = choose(
            "203.0.113.63".parse().unwrap(),
            &[],
            &system(),
            DefaultRoutes::default(),
        );
        assert_eq!(c.interfaces, ["eth1"]);
    }

    #[test]
    fn otherwise_the_default_route_of_the_family_or_an_error() {
        let defaults = DefaultRoutes {
            v4: Some(3),
            v6: None,
        };
        let c = choose("198.51.100.1".parse().unwrap(), &[], &system(), defaults);
        assert_eq!(c.interfaces, ["eth1"]);
        let c = choose("203.0.113.64".parse().unwrap(), &[], &system(), defaults);
        assert_eq!(c.interfaces, ["eth1"], "just outside eth1's /26");
        let c = choose("2001:db8:1::1".parse().unwrap(), &[], &system(), defaults);
        assert!(c.interfaces.is_empty());
        assert_eq!(
            c.errors[0].to_string(),
            "VIP 2001:db8:1::1 is outside every interface's subnet and no interface holds an IPv6 default route: it is not answered for"
        );
    }

    #[test]
    fn requested_interfaces_are_used_and_unknown_ones_reported_alone() {
        let want: Vec<InterfaceName> = vec!["eth1".parse().unwrap(), "eth9".parse().unwrap()];
        let c = choose(
            "192.0.2.200".parse().unwrap(),
            &want,
            &system(),
            DefaultRoutes::default(),
        );
        assert_eq!(c.interfaces, ["eth1"]);
        assert_eq!(c.errors.len(), 1);
        assert!(c.errors[0].to_string().contains("eth9"), "{}", c.errors[0]);
    }

    #[test]
    fn prefix_arithmetic() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(contains(ip("0.0.0.0"), 0, ip("198.51.100.1")));
        assert!(contains(ip("192.0.2.200"), 32, ip("192.0.2.200")));
        assert!(!contains(ip("192.0.2.200"), 32, ip("192.0.2.201")));
        assert!(!contains(ip("192.0.2.0"), 24, ip("2001:db8::1")));
        assert!(contains(ip("2001:db8::"), 32, ip("2001:db8:ffff::1")));
        assert!(!contains(ip("2001:db8::"), 33, ip("2001:db8:ffff::1")));
    }
}
