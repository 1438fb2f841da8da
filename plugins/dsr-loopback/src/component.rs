//! The component glue: WIT types to and from the plugin's logic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Config;

wit_bindgen::generate!({ world: "cni-chain", path: "../../wit" });

use exports::herald::policy::chain::{Action, Address, Guest, Pod, Sysctl};
use herald::policy::types::IpAddress;

struct Component;

export!(Component);

/// Each call runs in a fresh instance: allocate by bumping, never free.
#[global_allocator]
static ALLOC: herald_guest::Leak = herald_guest::Leak::new();

fn from_wit(ip: &IpAddress) -> IpAddr {
    match *ip {
        IpAddress::Ipv4(v) => IpAddr::V4(Ipv4Addr::from(v)),
        IpAddress::Ipv6((hi, lo)) => {
            IpAddr::V6(Ipv6Addr::from((u128::from(hi) << 64) | u128::from(lo)))
        }
    }
}

fn to_wit(ip: IpAddr) -> IpAddress {
    match ip {
        IpAddr::V4(a) => IpAddress::Ipv4(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            IpAddress::Ipv6(((v >> 64) as u64, v as u64))
        }
    }
}

impl Guest for Component {
    fn validate_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn setup(config: String, p: Pod) -> Result<Vec<Action>, String> {
        let config = Config::parse(&config)?;
        let services: Vec<crate::ServiceVips> = p
            .services
            .iter()
            .map(|s| {
                (
                    s.service
                        .annotations
                        .iter()
                        .map(|a| (a.key.clone(), a.value.clone()))
                        .collect(),
                    s.vips.iter().map(from_wit).collect(),
                )
            })
            .collect();
        Ok(crate::setup(&config, &p.interface, &services)
            .into_iter()
            .map(|a| match a {
                crate::Action::Address { interface, vip } => Action::AddAddress(Address {
                    interface,
                    address: to_wit(vip),
                    prefix_len: if vip.is_ipv4() { 32 } else { 128 },
                }),
                crate::Action::Sysctl { key, value } => Action::SetSysctl(Sysctl { key, value }),
            })
            .collect())
    }
}
