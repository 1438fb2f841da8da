//! What Herald's policy plugins share inside their components: the
//! allocator below, and [`fnv_mix`], the hash the example plugins place
//! things with.
//!
//! `Leak` (built for `wasm32` only) is a global allocator for a component
//! the host instantiates afresh for every call (Herald does: a fresh
//! `Store` per decision). It
//! hands out memory by bumping a pointer and never frees: everything a call
//! allocates is thrown away with its instance a moment later, so freeing
//! would be wasted work. Passing a node list into a plugin allocates once
//! per string, so this is most of the cost of a call the guest controls:
//! the allocator alone took Herald's zone-spread plugin from 67 µs to
//! 48 µs a decision over 50 nodes (BENCHMARKS.md). The memory limit
//! (`memoryLimitMiB`) still bounds a call; a plugin that allocates without
//! bound fails the same way with either allocator.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: herald_guest::Leak = herald_guest::Leak::new();
//! ```
//!
//! Only for plugins whose every export call starts from a fresh instance;
//! a long-lived instance would run out of memory.

#![no_std]

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod leak;

#[cfg(target_arch = "wasm32")]
pub use leak::Leak;

/// FNV-1a (64 bit) over `bytes`, finished with the SplitMix64 finalizer to
/// spread FNV's weak low bits: the hash Herald's built-in rendezvous
/// placement uses too (`herald_core::announce::rendezvous_score`), so a
/// plugin hashing the same bytes ranks nodes the same way.
pub fn fnv_mix(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::fnv_mix;

    #[test]
    fn fnv_mix_is_fixed_forever() {
        // Placements in every cluster depend on these values.
        assert_eq!(fnv_mix([]), 0xf52a_15e9_a9b5_e89b);
        // "node-a", a zero byte, then 198.51.100.7: a node and a VIP.
        assert_eq!(fnv_mix(*b"node-a\0\xc6\x33\x64\x07"), 0x5908_a555_c89e_1861);
    }
}
