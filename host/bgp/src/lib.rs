//! Herald's BGP speaker (RFC 4271): it originates the routes of Service IPs
//! towards routers and imports nothing.
//!
//! Layout:
//! - [`wire`]: the codec adapter over netgauze-bgp-pkt, with the framing
//!   checks that map malformed input onto NOTIFICATIONs;
//! - [`fsm`]: the session state machine, sans IO (events in, actions out);
//! - [`rib`]: the RIB-out, which turns the wanted routes into the UPDATEs
//!   that differ from what was sent, many prefixes per UPDATE;
//! - [`session`]: the tokio driver of one session (its own and the peer's
//!   TCP connection, timers, MD5, TTL);
//! - [`listen`]: the listening sockets that hand the peers' connections to
//!   their sessions;
//! - `md5`: the `TCP_MD5SIG` socket option, the crate's only `unsafe`.
//!
//! Depends on herald-core's validated BGP types, netgauze and tokio; never
//! on the API, Kubernetes or the speaker's manifests.

pub mod fsm;
pub mod listen;
#[allow(unsafe_code)]
mod md5;
pub mod rib;
pub mod session;
pub mod wire;

pub use fsm::{Config, Conn, Down, State};
pub use listen::{Inbound, Listeners};
pub use rib::{Attributes, Routes};
pub use session::{PeerConfig, Session, Status};

/// What can fail in the speaker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A message could not be written (a bug, or attributes too large for
    /// one UPDATE).
    #[error("cannot encode a BGP message: {0}")]
    Encode(String),
}
