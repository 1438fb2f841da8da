#!/usr/bin/env bash
# Herald's one test entry point: installs what the tests need, then runs all
# of them. `.ci/run` calls exactly this; so should you:
#
#   ./scripts/test.sh
#
# It must pass on a fresh Debian machine with Rust, as root, in well under 30
# minutes on 2 cores. Later parts of Herald add their needs here (Debian
# packages for the real BGP peers, keepalived and CNI plugins; the
# wasm32-wasip2 target and the plugin builds).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "tests (unit, property, golden, benchmarks once in test mode)"
cargo test --workspace --all-targets --locked --no-fail-fast
cargo test --workspace --doc --locked
