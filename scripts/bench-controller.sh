#!/usr/bin/env bash
# Controller benchmark: `herald controller` beside MetalLB's controller on
# one real kube-apiserver (tests/control-plane), in one run. For each size N
# and each controller in turn: N IPv6 LoadBalancer Services created at once
# (32 requests in flight), time until all have an address in their status,
# per-Service creation→status latency (median, p99), then 100 more created
# one at a time with the N present; controller CPU seconds and peak RSS
# (/proc/PID/stat, VmHWM). Prints a Markdown table (BENCHMARKS.md).
#
#   ./scripts/bench-controller.sh              # sizes 1000 and 10000, one run each
#   BENCH_SIZES=1000 BENCH_RUNS=3 ./scripts/bench-controller.sh
#
# Builds Herald (release), the control plane and MetalLB's controller
# (scripts/metallb-build.sh; cached) first. Takes about half an hour at the
# default sizes on two cores. Pools: 2001:db8:1::/112 (Herald) and
# 2001:db8:2::/112 (MetalLB), documentation prefixes; ClusterIPs come from
# the control plane's 2001:db8:ffff::/112. See tests/bench-controller.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
HERALD_CONTROL_PLANE_BIN=$(./scripts/control-plane-build.sh)
METALLB_BIN=$(./scripts/metallb-build.sh)
export HERALD_CONTROL_PLANE_BIN METALLB_BIN
cargo build --release --locked -p herald -p herald-bench-controller
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target/release/herald-bench-controller" --herald "$target/release/herald" "$@"
