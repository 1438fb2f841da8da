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
//! Layout:
//! - [`host`]: the engine, the epoch ticker, the compile cache, loading;
//! - [`plugin`]: a loaded plugin, hot replacement, and the core's policy
//!   traits implemented by calling it;
//! - `convert`: core values to and from WIT values;
//! - [`cni`]: the cni-chain types' former path (they live in
//!   [`herald_core::cni`]).
//!
//! Depends on herald-core, wasmtime and wasmtime-wasi; never on the
//! Kubernetes API or the drivers.

pub mod cni;
mod convert;
pub mod host;
pub mod plugin;

pub use herald_core::policy::PolicyError;
pub use host::{Host, HostOptions};
pub use plugin::{Loaded, WasmPlugin};

/// Why a plugin cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the component's file failed.
    #[error("plugin {plugin:?}: reading {path}: {source}")]
    Read {
        /// The plugin's name.
        plugin: String,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes do not have the digest the `PolicyPlugin` names.
    #[error(
        "plugin {plugin:?}: sha256 mismatch: the component's digest is {actual}, the PolicyPlugin names {expected}"
    )]
    Digest {
        /// The plugin's name.
        plugin: String,
        /// The digest named in the spec.
        expected: String,
        /// The digest of the bytes.
        actual: String,
    },
    /// The bytes are not a WebAssembly component.
    #[error("plugin {plugin:?}: {reason}")]
    NotComponent {
        /// The plugin's name.
        plugin: String,
        /// What the bytes are instead.
        reason: String,
    },
    /// wasmtime could not compile the component.
    #[error("plugin {plugin:?}: the component does not compile: {message}")]
    Compile {
        /// The plugin's name.
        plugin: String,
        /// wasmtime's message.
        message: String,
    },
    /// The component imports something not granted.
    #[error("plugin {plugin:?}: imports {}, which the {world} world does not grant (plugins get no files, sockets, clocks or randomness)", .imports.join(", "))]
    ForbiddenImport {
        /// The plugin's name.
        plugin: String,
        /// The world it was loaded as.
        world: herald_core::plugin::World,
        /// Every import not granted, sorted.
        imports: Vec<String>,
    },
    /// The component does not implement the world.
    #[error("plugin {plugin:?}: is not a herald:policy/{world}@0.1.0 component: {message}")]
    WrongWorld {
        /// The plugin's name.
        plugin: String,
        /// The world it was loaded as.
        world: herald_core::plugin::World,
        /// What does not match.
        message: String,
    },
    /// The plugin refuses its config (`validate-config`), or failed on it.
    #[error("plugin {plugin:?}: config rejected: {message}")]
    Config {
        /// The plugin's name.
        plugin: String,
        /// The plugin's (or the host's) message.
        message: String,
    },
    /// The source is not one the host can read (a ConfigMap, outside a cluster).
    #[error("plugin {plugin:?}: {message}")]
    Source {
        /// The plugin's name.
        plugin: String,
        /// Why.
        message: String,
    },
    /// The engine could not be created.
    #[error("the WebAssembly engine: {0}")]
    Engine(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
