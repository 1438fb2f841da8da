//! Herald's L2 announcer: on flat networks without BGP routers, the node
//! that owns a VIP answers ARP (IPv4) and Neighbor Solicitations (IPv6) for
//! it and announces it when it takes over. Ownership itself is decided by
//! the pure core (`herald_core::announce`) from the speakers alive
//! (`herald-membership`); this crate only carries it out.
//!
//! Layout:
//! - [`frame`]: ARP and NDP frames, parsed and built (pure, golden-tested);
//! - [`interfaces`]: which interfaces answer for a VIP (the rule, and
//!   reading interfaces and default routes from the system);
//! - [`responder`]: raw channels per interface, answers, announcement bursts.
//!
//! Depends on the core, pnet (raw frames), rtnetlink (routes) and tokio;
//! never on the API types, Kubernetes, membership or the BGP code.
//! No `unsafe`: pnet owns the raw sockets.

use std::net::IpAddr;

pub mod frame;
pub mod interfaces;
pub mod responder;

/// What went wrong in the L2 announcer, and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No interface's subnet contains the VIP and there is no default
    /// route of its family.
    #[error(
        "VIP {vip} is outside every interface's subnet and no interface holds an {} default route: it is not answered for",
        if vip.is_ipv4() { "IPv4" } else { "IPv6" }
    )]
    NoInterface {
        /// The VIP.
        vip: IpAddr,
    },
    /// An interface named by an L2Advertisement does not exist here (or is
    /// down, loopback, or not Ethernet).
    #[error(
        "interface {interface} (for VIP {vip}) does not exist, is down, or is not an Ethernet interface: VIP not answered for there"
    )]
    UnknownInterface {
        /// The VIP.
        vip: IpAddr,
        /// The interface as named.
        interface: String,
    },
    /// The raw socket of an interface could not be opened.
    #[error(
        "cannot open a raw socket on {interface} (answering ARP/NDP needs CAP_NET_RAW): {source}"
    )]
    RawSocket {
        /// The interface.
        interface: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("reading routes over netlink: {source}")]
    Netlink {
        /// Why.
        #[source]
        source: rtnetlink::Error,
    },
    /// Another I/O step failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
