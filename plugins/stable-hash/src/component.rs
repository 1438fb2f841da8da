//! The component glue: WIT types to and from the plugin's logic.

use crate::{Config, Pool};

wit_bindgen::generate!({ world: "allocator", path: "../../wit" });

use exports::herald::policy::allocate::Guest;
use herald::policy::pools::Pool as HostPool;
use herald::policy::types::{IpAddress, Service};

struct Component;

export!(Component);

/// Each call runs in a fresh instance: allocate by bumping, never free.
#[global_allocator]
static ALLOC: herald_guest::Leak = herald_guest::Leak::new();

fn to_num(ip: IpAddress) -> u128 {
    match ip {
        IpAddress::Ipv4(v) => u128::from(v),
        IpAddress::Ipv6((hi, lo)) => (u128::from(hi) << 64) | u128::from(lo),
    }
}

/// Converts back in the pool's family.
fn to_ip(v: u128, v4: bool) -> IpAddress {
    if v4 {
        IpAddress::Ipv4(v as u32)
    } else {
        IpAddress::Ipv6(((v >> 64) as u64, v as u64))
    }
}

struct View<'a> {
    pool: &'a HostPool,
    v4: bool,
}

impl Pool for View<'_> {
    fn bounds(&self) -> Option<(u128, u128)> {
        self.pool.bounds().map(|(a, b)| (to_num(a), to_num(b)))
    }
    fn is_free(&self, ip: u128) -> bool {
        self.pool.is_free(to_ip(ip, self.v4))
    }
    fn next_free_after(&self, after: Option<u128>) -> Option<u128> {
        self.pool
            .next_free_after(after.map(|a| to_ip(a, self.v4)))
            .map(to_num)
    }
}

impl Guest for Component {
    fn validate_config(config: String) -> Result<(), String> {
        Config::parse(&config).map(|_| ())
    }

    fn choose(config: String, svc: Service, pool: &HostPool) -> Result<Option<IpAddress>, String> {
        let config = Config::parse(&config)?;
        let v4 = matches!(pool.family(), herald::policy::types::Family::Ipv4);
        let view = View { pool, v4 };
        Ok(crate::choose(&config, &svc.namespace, &svc.name, &view).map(|v| to_ip(v, v4)))
    }
}
