//! The cni-chain world's types live in the core ([`herald_core::cni`]);
//! [`Pod`] is kept at this path for the herald CLI's `plugin` module while
//! it is being rewritten.

pub use herald_core::cni::Pod;
