//! Herald's WebAssembly policy host (DESIGN.md §6): loads policy components
//! written against the WIT package `herald:policy@0.1.0` (`wit/`), checks
//! them, and calls them safely and fast as the core's policy traits.
//!
//! What a component goes through before its first call:
//! 1. its bytes must have the `sha256` its `PolicyPlugin` names;
//! 2. they must be a component (not a core module, not something else);
//! 3. every import must be on the allow-list: its world's own imports and
//!    the few WASI interfaces Rust's standard library links in (no files,
//!    sockets, clocks or randomness); the refusal names the import;
//! 4. it must export its world's interface with the exact types
//!    (type-checked by instantiating a pre-linked [`wasmtime::component::InstancePre`]);
//! 5. compiled once per digest and engine, and cached ([`Host`]).
//!
//! Every call runs in a fresh `Store` (nothing leaks from one decision to
//! the next), with an epoch deadline (`timeoutMs`, ticked every millisecond
//! by an OS thread) and a memory limit (`memoryLimitMiB`). A trap, timeout,
//! out-of-memory, error answer or invalid answer is a [`PolicyError`] with
//! the plugin's name; the core applies the plugin's failure policy. The host
//! never panics because of a plugin.
//!
//! Every call runs inside a `plugin` tracing span naming the plugin and
//! its world, so the events of a call (the plugin's own log lines, its
//! failure) say whose they are.
//!
//! Calls block. A caller on a tokio runtime makes them from a blocking
//! context (`tokio::task::block_in_place`, `spawn_blocking`), never on a
//! runtime worker: wasmtime-wasi's standard streams, through which a
//! plugin's output (its panic message) goes, block on the ambient runtime,
//! and on a worker that panics the caller.
//!
//! Layout, each module importing only those above it:
//! - `error`: why a plugin cannot be loaded ([`Error`]);
//! - `bindings`: the code wasmtime generates from `wit/`;
//! - `convert`: core values to and from WIT values;
//! - `store`: one call's store data, the host functions, the linker of
//!   each world, a pre-linked component;
//! - [`plugin`]: a loaded plugin, and the core's policy traits (allocator,
//!   announcer, [`CniPolicy`](herald_core::cni::CniPolicy)) implemented by
//!   calling it;
//! - [`host`]: the engine, the epoch ticker, the compile cache, loading;
//! - [`replace`]: hot replacement ([`WasmPlugin`]);
//! - [`registry`]: the plugins a process runs, synced to its
//!   `PolicyPlugin`s and handed to the core as its `Policies`;
//! - [`cni`]: the cni-chain types' former path (they live in
//!   [`herald_core::cni`]).
//!
//! Depends on herald-core, wasmtime and wasmtime-wasi; never on the
//! Kubernetes API or the drivers.

mod bindings;
pub mod cni;
mod convert;
mod error;
pub mod host;
pub mod plugin;
pub mod registry;
pub mod replace;
mod store;

pub use error::{Error, Result};
pub use herald_core::policy::PolicyError;
pub use host::{Host, HostOptions};
pub use plugin::Loaded;
pub use registry::{PluginStatus, Registry};
pub use replace::WasmPlugin;
