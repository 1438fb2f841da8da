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
//! - [`service`]: Services and held addresses as the allocator sees them;
//! - [`config`]: which Services are Herald's, and ignored-object reports;
//! - [`pool`]: validated pool specs, the free-address index, the index of
//!   valid pools by address;
//! - [`bgp`]: BGP peers and advertisements, ASNs, communities;
//! - [`l2`]: L2 advertisements and interface names;
//! - [`node`]: nodes and their ready endpoints;
//! - [`plugin`]: policy plugins: world, source, digest, limits;
//! - [`policy`]: the hooks plugins take decisions through, and what they
//!   exchange (the vocabulary allocation and announcement share);
//! - [`cni`]: the cni-chain hook: a pod, the actions it may get, their
//!   validation;
//! - [`allocate`](mod@allocate): the built-in allocation policy (DESIGN.md §4);
//! - [`announce`](mod@announce): announcement planning, BGP and L2 (DESIGN.md §5).
//!
//! Each module imports only modules listed above it: no module cycles.

pub mod addr;
pub mod allocate;
pub mod announce;
pub mod bgp;
pub mod cni;
pub mod config;
pub mod l2;
pub mod node;
pub mod plugin;
pub mod policy;
pub mod pool;
pub mod selector;
pub mod service;

pub use addr::{AddressEntryError, AddressRange, Family};
pub use allocate::{Allocator, Outcome, Pending, PendingReason, Plan, Snapshot, allocate};
pub use config::{Config, ConfigError};
pub use pool::{FamilyUsage, InvalidPool, InvalidReason, PoolDecl, PoolSpec, PoolUsage};
pub use selector::{LabelSelector, Labels, Requirement};
pub use service::{FamilyPolicy, Held, Port, Request, Service, ServiceRef, TrafficPolicy};
