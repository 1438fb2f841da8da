//! Herald's BFD, Bidirectional Forwarding Detection (RFC 5880,
//! asynchronous mode), single hop over UDP (RFC 5881) and multihop (RFC
//! 5883): it tells within a detection time of a few hundred milliseconds
//! that the path to a BGP peer is gone, so that the BGP session can be
//! taken down long before its hold timer would.
//!
//! Layout, in the shape of `herald-bgp`:
//! - [`packet`]: the Control packet codec (RFC 5880 §4.1) with the
//!   stateless checks of received packets (§6.8.6);
//! - [`fsm`]: the session state machine (§6.2, §6.8), sans IO: inputs in,
//!   actions out, poll/final timer negotiation (§6.5), jitter (§6.8.7);
//! - [`receive`]: the receive sockets all sessions share, one per port
//!   and family, and the demultiplexing of datagrams to sessions (by Your
//!   Discriminator, else by source address);
//! - [`session`]: the tokio driver of one session over UDP (its sending
//!   socket with TTL 255, the TTL check, timers, a `watch` of the state and
//!   of path failure, drop counters);
//! - `ttl`: reading the received TTL / Hop Limit from a control message,
//!   the crate's only `unsafe`.
//!
//! Tasks and channels (one task per session, one per shared receive
//! socket):
//!
//! ```text
//!   caller ── Session::{admin_down, admin_up, set_timers} ── mpsc ──▶ session task
//!   caller ◀── Session::{state, failed}(): watch::Receiver ─────────── session task
//!   peer  ──▶ UDP :3784 / :4784 ──▶ receiver task (shared) ── mpsc ──▶ session task ──▶ Fsm
//!   peer  ◀── UDP from :49152–65535, TTL 255 ◀──────────────────────── session task ◀── Fsm
//! ```
//!
//! Imports go one way: `session` imports `receive`, `fsm` and `packet`;
//! `receive` imports `ttl`; `fsm` imports `packet`. Depends on tokio, socket2 and libc only; never on
//! the BGP speaker, the API or Kubernetes (the speaker watches a
//! session's state).
//!
//! Not supported: Demand mode, the Echo function, authentication (a
//! packet with the A bit is refused).

pub mod fsm;
pub mod packet;
pub mod receive;
pub mod session;
#[allow(unsafe_code)]
mod ttl;

pub use fsm::{Fsm, Timers};
pub use packet::{DecodeError, Packet, State};
pub use receive::Receivers;
pub use session::{Dropped, Hop, Session, SessionConfig};
