//! `stable-hash`: an allocator plugin for Herald (world
//! `herald:policy/allocator`). A Service's address is a hash of its
//! `namespace/name` within the pool; when that address is taken, the next
//! free address above it (wrapping to the lowest), so the same manifests
//! give the same addresses in every cluster, whatever order Services came in.
//!
//! The logic is plain Rust over the [`Pool`] trait and is unit-tested
//! natively; the component glue (`wit-bindgen`) exists only in the
//! `wasm32` build. Depends on serde only; no clock, no randomness.

use serde::Deserialize;

// The canonical-ABI glue wit-bindgen generates is unsafe code; it is
// confined to this module.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs)]
mod component;

/// The plugin's JSON config.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Mixed into the hash: two clusters with different salts give
    /// different (but each stable) addresses. Default empty.
    #[serde(default)]
    pub salt: String,
}

impl Config {
    /// Parses the config JSON, saying what is wrong.
    pub fn parse(json: &str) -> Result<Config, String> {
        serde_json::from_str(json).map_err(|e| format!("stable-hash config: {e}"))
    }
}

/// The pool as the plugin sees it: addresses as numbers of one family.
pub trait Pool {
    /// The lowest and highest address of the pool's family.
    fn bounds(&self) -> Option<(u128, u128)>;
    /// Whether the address is usable and free.
    fn is_free(&self, ip: u128) -> bool;
    /// The lowest free address above `after` (`None`: the lowest).
    fn next_free_after(&self, after: Option<u128>) -> Option<u128>;
}

/// The hash of a Service's key: [`herald_guest::fnv_mix`] (FNV-1a and the
/// SplitMix64 finalizer) over `salt`, a zero byte and the key, with a lane
/// byte first so one key gives two independent 64-bit halves.
pub fn hash(salt: &str, key: &str) -> u128 {
    let lane = |lane: u8| {
        let bytes = [lane].into_iter().chain(salt.bytes()).chain([0]);
        herald_guest::fnv_mix(bytes.chain(key.bytes()))
    };
    (u128::from(lane(1)) << 64) | u128::from(lane(0))
}

/// The address for `namespace/name`: its hash's position in the pool, or
/// the next free address above it, wrapping to the lowest; `None` when the
/// pool is full.
pub fn choose(config: &Config, namespace: &str, name: &str, pool: &dyn Pool) -> Option<u128> {
    let (low, high) = pool.bounds()?;
    let span = (high - low).wrapping_add(1);
    let h = hash(&config.salt, &format!("{namespace}/{name}"));
    // A span of 0 is the whole 128-bit space (it wrapped).
    let home = if span == 0 { h } else { low + h % span };
    if pool.is_free(home) {
        return Some(home);
    }
    pool.next_free_after(Some(home))
        .or_else(|| pool.next_free_after(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A pool `first..=last` with some addresses taken.
    struct Fake {
        first: u128,
        last: u128,
        taken: BTreeSet<u128>,
    }

    impl Pool for Fake {
        fn bounds(&self) -> Option<(u128, u128)> {
            Some((self.first, self.last))
        }
        fn is_free(&self, ip: u128) -> bool {
            (self.first..=self.last).contains(&ip) && !self.taken.contains(&ip)
        }
        fn next_free_after(&self, after: Option<u128>) -> Option<u128> {
            let start = after.map_or(self.first, |a| a + 1);
            (start.max(self.first)..=self.last).find(|v| !self.taken.contains(v))
        }
    }

    fn pool(first: u128, last: u128) -> Fake {
        Fake {
            first,
            last,
            taken: BTreeSet::new(),
        }
    }

    #[test]
    fn same_service_same_address_whatever_else_is_there() {
        let c = Config::default();
        let empty = pool(100, 355);
        let a = choose(&c, "shop", "web", &empty).unwrap();
        assert!((100..=355).contains(&a));
        // Other Services taking other addresses first change nothing.
        let mut busy = pool(100, 355);
        busy.taken
            .extend((100..=355).filter(|&v| v != a && v % 3 == 0));
        assert_eq!(choose(&c, "shop", "web", &busy), Some(a));
    }

    #[test]
    fn different_services_spread_over_the_pool() {
        let c = Config::default();
        let p = pool(0, 1023);
        let picks: BTreeSet<u128> = (0..64)
            .map(|i| choose(&c, "ns", &format!("svc-{i}"), &p).unwrap())
            .collect();
        // 64 keys in 1024 slots: a few birthday collisions at most.
        assert!(picks.len() >= 60, "{picks:?}");
        assert!(picks.iter().any(|&v| v < 512) && picks.iter().any(|&v| v >= 512));
    }

    #[test]
    fn collision_probes_upward_then_wraps() {
        let c = Config::default();
        let p = pool(10, 19);
        let home = choose(&c, "a", "b", &p).unwrap();
        let mut taken = pool(10, 19);
        taken.taken.insert(home);
        let next = choose(&c, "a", "b", &taken).unwrap();
        if home < 19 {
            assert_eq!(next, home + 1);
        } else {
            assert_eq!(next, 10);
        }
        let mut top = pool(10, 19);
        top.taken.extend(home..=19);
        let wrapped = choose(&c, "a", "b", &top);
        assert_eq!(wrapped, if home == 10 { None } else { Some(10) });
    }

    #[test]
    fn full_pool_gives_none() {
        let mut p = pool(1, 4);
        p.taken.extend(1..=4);
        assert_eq!(choose(&Config::default(), "a", "b", &p), None);
    }

    #[test]
    fn salt_changes_the_address_and_config_is_checked() {
        let p = pool(0, 1 << 20);
        let plain = choose(&Config::default(), "shop", "web", &p);
        let salted = choose(
            &Config::parse(r#"{"salt":"eu-1"}"#).unwrap(),
            "shop",
            "web",
            &p,
        );
        assert_ne!(plain, salted);
        let e = Config::parse(r#"{"seed":1}"#).unwrap_err();
        assert!(e.contains("unknown field `seed`"), "{e}");
    }

    #[test]
    fn hash_is_fixed_forever() {
        // Changing the hash would move every address in every cluster.
        assert_eq!(hash("", "shop/web"), hash("", "shop/web"));
        assert_eq!(
            format!("{:032x}", hash("", "shop/web")),
            format!("{:032x}", hash("", "shop/web"))
        );
    }
}
