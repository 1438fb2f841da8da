//! `herald-cni`: a chained CNI plugin (CNI specification 1.0 and 1.1),
//! placed after the cluster's own plugins in a `.conflist` as `portmap` or
//! `bandwidth` are. For a pod behind a Service that uses direct server
//! return (DSR), it puts the Service's VIPs on the pod's loopback and sets
//! `arp_ignore=1` / `arp_announce=2` in the pod's network namespace, so the
//! pod accepts packets addressed to the VIP and answers the client
//! directly, without ever answering ARP for the VIP (only the announcing
//! node does). Every other pod is left alone; the previous plugin's result
//! is passed on unchanged either way.
//!
//! Layout:
//! - [`protocol`]: the CNI protocol as a pure function of the environment
//!   and stdin (commands, variables, the network configuration,
//!   `prevResult`, replies and error objects); unit-tested;
//! - [`state`]: the node-local state file naming the DSR pods and their
//!   VIPs (its format, and reading it);
//! - [`dsr`]: what a DSR pod needs (addresses and sysctls), pure;
//! - [`pod`]: carrying it out inside the pod's network namespace, over
//!   netlink and `/proc/sys` (the only module that touches the system);
//! - [`run`]: one invocation, from a parsed request to its reply.
//!
//! The binary (`src/main.rs`) only reads the environment and stdin and
//! writes the reply. Depends on serde, rtnetlink, nix (`setns`) and tokio
//! (one current-thread runtime for netlink); never on the Herald core,
//! the policy host or Kubernetes — the Wasm `cni-chain` decision is not
//! wired yet (docs/cni.md).

use std::path::PathBuf;

pub mod dsr;
pub mod pod;
pub mod protocol;
pub mod state;

use protocol::{Attachment, Reply, Request};

/// The CNI spec's well-known error codes this plugin returns, and its own
/// (100 and up, as the spec reserves 0–99).
pub mod code {
    /// "Incompatible CNI version".
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// "Container unknown or does not exist".
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// "Invalid necessary environment variables".
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// "I/O failure".
    pub const IO_FAILURE: u32 = 5;
    /// "Failed to decode content".
    pub const DECODING_FAILURE: u32 = 6;
    /// "Invalid network config".
    pub const INVALID_CONFIG: u32 = 7;
    /// STATUS (1.1): "The plugin is not available (i.e. cannot service ADD
    /// requests)".
    pub const NOT_AVAILABLE: u32 = 50;
    /// Herald's own: a netlink request or sysctl write in the pod failed.
    pub const POD_NETWORK: u32 = 100;
    /// Herald's own: CHECK found the pod not as ADD left it.
    pub const CHECK_FAILED: u32 = 101;
}

/// What went wrong, each variant mapped onto a CNI error code
/// ([`Error::code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration's `cniVersion` is not one this plugin speaks.
    #[error(
        "cniVersion {version:?} is not supported (supported: {})",
        protocol::SUPPORTED_VERSIONS.join(", ")
    )]
    IncompatibleVersion {
        /// The version asked for.
        version: String,
    },
    /// `CNI_NETNS` names no file.
    #[error("network namespace {netns} does not exist")]
    UnknownContainer {
        /// The path given.
        netns: PathBuf,
    },
    /// A CNI variable is missing or malformed.
    #[error("{var}: {reason}")]
    InvalidEnvironment {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A file could not be read or a namespace entered.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Input that is not the JSON it should be.
    #[error("{what}: {reason}")]
    Decoding {
        /// What was being decoded.
        what: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The network configuration is valid JSON but not a valid
    /// configuration for this plugin.
    #[error("network configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// STATUS: the plugin could not serve an ADD now.
    #[error("not available: {reason}")]
    NotAvailable {
        /// Why.
        reason: String,
    },
    /// A netlink request in the pod's namespace failed.
    #[error("{what} in the pod's network namespace: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// CHECK found a difference from what ADD sets up.
    #[error("CHECK: {reason}")]
    CheckFailed {
        /// The difference.
        reason: String,
    },
}

impl Error {
    /// The CNI error code (the spec's "Well-known Error Codes", or this
    /// plugin's own from 100).
    pub fn code(&self) -> u32 {
        match self {
            Error::IncompatibleVersion { .. } => code::INCOMPATIBLE_VERSION,
            Error::UnknownContainer { .. } => code::UNKNOWN_CONTAINER,
            Error::InvalidEnvironment { .. } => code::INVALID_ENVIRONMENT,
            Error::Io { .. } => code::IO_FAILURE,
            Error::Decoding { .. } => code::DECODING_FAILURE,
            Error::InvalidConfig { .. } => code::INVALID_CONFIG,
            Error::NotAvailable { .. } => code::NOT_AVAILABLE,
            Error::Netlink { .. } => code::POD_NETWORK,
            Error::CheckFailed { .. } => code::CHECK_FAILED,
        }
    }
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Carries out one parsed request: reads the state file, enters the pod's
/// namespace when the pod uses DSR, and says what to print.
pub fn run(request: &Request) -> Result<Reply> {
    match request {
        Request::Version => Ok(Reply::Version),
        Request::Add {
            attachment,
            config,
            prev_result,
        } => {
            let netns = pod::Netns::open(&attachment.netns)?;
            let vips = pod_vips(attachment, &config.state_file)?;
            let actions = dsr::actions(&attachment.ifname, &vips);
            if !actions.is_empty() {
                netns.apply(&actions)?;
            }
            Ok(Reply::Result(prev_result.clone()))
        }
        Request::Check {
            attachment, config, ..
        } => {
            let netns = pod::Netns::open(&attachment.netns)?;
            let vips = pod_vips(attachment, &config.state_file)?;
            netns.check(&dsr::actions(&attachment.ifname, &vips))?;
            Ok(Reply::Nothing)
        }
        Request::Del { netns, .. } => {
            // The pod's namespace may be gone already (DEL after the
            // sandbox died): then so is everything ADD put in it.
            if let Some(netns) = netns
                && let Some(netns) = pod::Netns::open_if_exists(netns)?
            {
                netns.remove()?;
            }
            Ok(Reply::Nothing)
        }
        Request::Status { config } => match state::State::load(&config.state_file) {
            Ok(_) => Ok(Reply::Nothing),
            Err(e) => Err(Error::NotAvailable {
                reason: e.to_string(),
            }),
        },
        // Everything this plugin adds lives inside the pod's namespace and
        // disappears with it: no host-side state is left to collect.
        Request::Gc { .. } => Ok(Reply::Nothing),
    }
}

/// The VIPs the state file lists for the attachment's pod (none for a pod
/// without Kubernetes identity in `CNI_ARGS`).
fn pod_vips(
    attachment: &Attachment,
    state_file: &std::path::Path,
) -> Result<Vec<std::net::IpAddr>> {
    let Some(pod) = &attachment.pod else {
        return Ok(Vec::new());
    };
    Ok(state::State::load(state_file)?.vips(pod))
}
