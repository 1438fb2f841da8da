//! Code shared by the integration tests; each test binary includes it with
//! `mod common;`.

pub mod bgp;
