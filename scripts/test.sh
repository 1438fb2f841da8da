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

# Debian packages the integration tests run for real (network namespaces,
# and later the BGP peers, keepalived, the CNI plugins).
DEBIAN_PACKAGES=(iproute2 iputils-ping
  bird2 gobgpd frr tcpdump # BGP and BFD peers of host/bgp, host/bfd and the speaker tests
  nftables # holds BGP messages back to force connection collisions; hangs a node (BFD)
  iputils-arping ndisc6 socat keepalived # L2: the client's eyes, TCP, the VRRP baseline (bench-l2.sh)
  openssl util-linux # the test control plane's certificates; setpriv ties its processes to the tests
  containernetworking-plugins) # bridge and host-local, chained before herald-cni (host/cni/tests/chain.rs)

step "Debian packages: ${DEBIAN_PACKAGES[*]}"
missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

step "toolchain components"
rustup component add rustfmt clippy
# Policy plugins are WebAssembly components (scripts/build-plugins.sh).
rustup target add wasm32-wasip2

step "the Kubernetes control plane (etcd, kube-apiserver, kubectl), built once per machine"
# Go is on every machine of this project's kind, in /usr/local/go.
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
HERALD_CONTROL_PLANE_BIN=$(./scripts/control-plane-build.sh)
export HERALD_CONTROL_PLANE_BIN
echo "$HERALD_CONTROL_PLANE_BIN"

step "format"
cargo fmt --all -- --check

step "no module cycle inside a crate (STYLE.md)"
python3 scripts/module-graph.py host/core host/api host/policy host/bgp host/bfd host/l2 host/membership host/k8s host/herald host/cni >/dev/null

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "policy plugins and hostile fixtures, from source, for wasm32-wasip2"
for f in infinite-loop memory-bomb trap forbidden-import wrong-world unknown-node huge-output; do
  cargo clippy --locked --target wasm32-wasip2 -p hostile --features "$f" -- -D warnings
done
cargo clippy --locked --target wasm32-wasip2 -p herald-guest -p stable-hash -p zone-spread -p endpoint-weighted -p dsr-loopback -- -D warnings
./scripts/build-plugins.sh

step "tests (unit, property, golden, benchmarks once in test mode)"
cargo test --workspace --all-targets --locked --no-fail-fast
cargo test --workspace --doc --locked
