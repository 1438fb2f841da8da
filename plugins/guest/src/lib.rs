//! What Herald's policy plugins share inside their components.
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
