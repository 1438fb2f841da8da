//! Herald's BGP speaker (RFC 4271): it originates the routes of Service IPs
//! towards routers and imports nothing.
//!
//! Layout:
//! - [`wire`]: the codec adapter over netgauze-bgp-pkt, with the framing
//!   checks that map malformed input onto NOTIFICATIONs;
//! - [`fsm`]: the session state machine, sans IO (events in, actions out);
//! - [`rib`]: the RIB-out, which turns the wanted routes into the UPDATEs
//!   that differ from what was sent, many prefixes per UPDATE;
//! - [`peer`]: a session's settings, decided from a validated `BGPPeer`
//!   and the node's addresses;
//! - [`session`]: the tokio driver of one session (its own and the peer's
//!   TCP connection, timers, End-of-RIB);
//! - [`listen`]: the listening sockets that hand the peers' connections to
//!   their sessions;
//! - `socket`: what both of those do with sockets (connect with source
//!   address, TTL and MD5 key; refuse a connection);
//! - `md5`: the `TCP_MD5SIG` socket option, the crate's only `unsafe`.
//!
//! Imports between the modules go one way, no cycle: `session` imports
//! `listen`, `socket`, `peer`, `rib`, `fsm` and `wire`; `listen` imports
//! `socket`, `peer` and `md5`; `socket` imports `peer`, `md5` and `wire`;
//! `peer` imports `fsm`; `rib` and `fsm` import `wire`.
//!
//! Depends on herald-core's validated BGP types, netgauze and tokio; never
//! on the API, Kubernetes or the speaker's manifests.

pub mod fsm;
pub mod listen;
#[allow(unsafe_code)]
mod md5;
pub mod peer;
pub mod rib;
pub mod session;
mod socket;
pub mod wire;

pub use fsm::{Config, Conn, Down, State};
pub use listen::{Inbound, Listeners};
pub use peer::{PeerConfig, PeerConfigError};
pub use rib::{Attributes, Routes, Skipped, Update};
pub use session::{Session, Status};

/// What can fail in the speaker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A message could not be written (a bug).
    #[error("cannot encode a BGP message: {0}")]
    Encode(String),
    /// A route's path attributes leave no room for its prefix in one
    /// UPDATE of [`wire::MAX_MESSAGE_LEN`] octets.
    #[error(
        "the path attributes take {octets} octets: no room for a prefix in a {}-octet UPDATE",
        wire::MAX_MESSAGE_LEN
    )]
    TooLarge {
        /// The octets an UPDATE takes without prefixes (or that the
        /// communities alone take).
        octets: usize,
    },
}
