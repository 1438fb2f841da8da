//! Herald on the Kubernetes API: the controller's side of DESIGN.md §1.
//! Reflectors keep Services, Namespaces, `IPPool`s, `IPAllocation`s and
//! `PolicyPlugin`s in memory; the snapshot builder turns them into the same
//! [`herald_core::Snapshot`] `herald plan` builds from manifests (through
//! `herald_api::inputs`, so both read objects alike); the core plans; a pure
//! diff says what to write; a thin driver writes only that.
//!
//! It may depend on herald-core, herald-api, herald-policy and kube (client
//! and runtime); nothing depends on it but the `herald` binary.
//!
//! Layout:
//! - [`inputs`]: the objects of the stores into a snapshot and plugin specs;
//! - [`diff`]: the apply step, pure: a plan and the current objects in, the
//!   `IPAllocation`s to create, replace and delete, the Service statuses
//!   to write out and the Events of their transitions (unit-tested
//!   without a cluster);
//! - [`status`]: `IPPool` and `PolicyPlugin` status, pure: usage,
//!   validity and loaded plugins in, the statuses that changed out;
//! - [`events`]: records the Events the diff decides, through
//!   kube-runtime's recorder, on a task of its own;
//! - [`reflect`]: watchers and reflector stores, a change signal, and
//!   waiting until the stores show the controller's own writes;
//! - [`write`](mod@write): the driver: records before statuses, a create conflict
//!   reported for a new plan, released records deleted last; then pool and
//!   plugin statuses;
//! - [`controller`]: the loop: wait for a change, debounce, plan, write the
//!   difference, while this replica leads;
//! - [`lease`]: leader election on a `coordination.k8s.io/v1` Lease
//!   (kube-lease-manager, with a watch for fast handover and a fence);
//! - [`error`]: failures, each one line naming what to fix;
//! - [`speaker`]: the speaker's side: reflectors for what `herald speaker`
//!   reads (and the Secrets `BGPPeer`s name, each watched by name), built
//!   into the same `Manifests` the standalone speaker plans from.
//!
//! Not built yet: `PolicyPlugin` sources from ConfigMaps.

pub mod controller;
pub mod diff;
pub mod error;
pub mod events;
pub mod inputs;
pub mod lease;
pub mod reflect;
pub mod speaker;
pub mod status;
pub mod write;

pub use controller::{Settings, connect, run};
pub use error::{Error, Result};
pub use lease::LeaseSettings;
