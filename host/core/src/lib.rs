//! Herald's pure core: addresses, pools, Services and the allocator.
//!
//! A snapshot in, decisions out: no I/O, no async, no Kubernetes types. The
//! controller, the speakers, `herald plan` and the plugins all reuse it, so
//! the same inputs give the same addresses everywhere. It depends on std,
//! serde and thiserror only, and nothing in Herald may make it depend on more.
//!
//! Layout:
//! - [`addr`]: address families, addresses as numbers, pool address entries;
//! - [`selector`]: Kubernetes label selectors;
//! - [`pool`]: validated pool specs and the free-address index;
//! - [`service`]: Services and held addresses as the allocator sees them;
//! - [`bgp`]: BGP peers and advertisements, ASNs, communities;
//! - [`l2`]: L2 advertisements and interface names;
//! - [`plugin`]: policy plugins: world, source, digest, limits;
//! - [`allocate`](mod@allocate): the built-in allocation policy (DESIGN.md §4);
//! - [`announce`](mod@announce): announcement planning, BGP and L2 (DESIGN.md §5);
//! - [`policy`]: the hooks plugins take decisions through.

pub mod addr;
pub mod allocate;
pub mod announce;
pub mod bgp;
pub mod l2;
pub mod plugin;
pub mod policy;
pub mod pool;
pub mod selector;
pub mod service;

pub use addr::{AddressEntryError, AddressRange, Family};
pub use allocate::{
    Allocator, Config, ConfigError, Outcome, Pending, PendingReason, Plan, PoolUsage, Snapshot,
    allocate,
};
pub use pool::{PoolDecl, PoolSpec};
pub use selector::{LabelSelector, Labels, Requirement};
pub use service::{FamilyPolicy, Held, Port, Request, Service, ServiceRef, TrafficPolicy};
