//! Why a plugin cannot be loaded: this crate's one error enum.

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
    /// The plugin refuses its config (`validate-config` answered an
    /// error), or failed on it (trapped, ran out of time or memory).
    #[error("plugin {plugin:?}: validate-config {message}")]
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
