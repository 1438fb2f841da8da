//! The code wasmtime generates from `wit/`: one module per world; the
//! shared interfaces are generated once, in `allocator`.

#![allow(missing_docs)]

/// The pool resource handed to an allocator: a marker; the view itself is
/// the store's `State::pool` (one pool per call).
pub struct PoolHandle;

pub mod allocator {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "allocator",
        with: { "herald:policy/pools.pool": crate::bindings::PoolHandle },
    });
}

pub mod announcer {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "announcer",
        with: {
            "herald:policy/types": super::allocator::herald::policy::types,
            "herald:policy/log": super::allocator::herald::policy::log,
        },
    });
}

pub mod cni {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "cni-chain",
        with: {
            "herald:policy/types": super::allocator::herald::policy::types,
            "herald:policy/log": super::allocator::herald::policy::log,
        },
    });
}
