//! Hostile policy plugins: test fixtures that prove the Wasm host contains
//! a misbehaving component. Each cargo feature builds one (an announcer
//! unless said otherwise); `scripts/build-plugins.sh` builds every one of
//! them for wasm32-wasip2:
//!
//! - `infinite-loop`: never returns;
//! - `memory-bomb`: allocates until memory runs out;
//! - `trap`: panics;
//! - `forbidden-import`: reads a file (imports `wasi:filesystem`);
//! - `wrong-world`: an allocator, loaded as an announcer;
//! - `unknown-node`: names a node that does not exist;
//! - `huge-output`: answers 100 000 nodes.
//!
//! The native build is empty: there is no logic to test here.

// The canonical-ABI glue wit-bindgen generates is unsafe code; it is
// confined to these modules.
#[cfg(all(target_arch = "wasm32", not(feature = "wrong-world")))]
#[allow(unsafe_code, missing_docs)]
mod announcer;

#[cfg(all(target_arch = "wasm32", feature = "wrong-world"))]
#[allow(unsafe_code, missing_docs)]
mod allocator;
