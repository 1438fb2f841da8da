#!/usr/bin/env bash
# Builds Herald's policy plugins (plugins/*) and the hostile test fixtures
# (plugins/hostile, one component per feature) from source for
# wasm32-wasip2, and copies the components to target/plugins/NAME.wasm,
# where the integration tests, benchmarks and `herald plan` examples find
# them. No .wasm file is ever committed.
#
#   ./scripts/build-plugins.sh
#
# Honours CARGO_TARGET_DIR; the output directory is always
# target/plugins under the repository (HERALD_PLUGIN_DIR overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null

target_dir="${CARGO_TARGET_DIR:-target}"
out="${HERALD_PLUGIN_DIR:-target/plugins}"
mkdir -p "$out"
built="$target_dir/wasm32-wasip2/release"

for p in stable-hash zone-spread endpoint-weighted dsr-loopback; do
  cargo build --locked --release --target wasm32-wasip2 -p "$p"
  cp "$built/${p//-/_}.wasm" "$out/$p.wasm"
done

for f in infinite-loop memory-bomb trap forbidden-import wrong-world unknown-node huge-output; do
  cargo build --locked --release --target wasm32-wasip2 -p hostile --features "$f"
  cp "$built/hostile.wasm" "$out/hostile-$f.wasm"
done

ls -l "$out"
