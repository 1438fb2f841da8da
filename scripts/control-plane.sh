#!/usr/bin/env bash
# Starts the test control plane (etcd and kube-apiserver on loopback, RBAC
# on, an admin kubeconfig) for trying Herald by hand; builds the binaries
# first if this machine has none (scripts/control-plane-build.sh). Prints
# the kubeconfig path; Enter or Ctrl-C stops everything.
#
#   sudo ./scripts/control-plane.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
HERALD_CONTROL_PLANE_BIN=$(./scripts/control-plane-build.sh)
export HERALD_CONTROL_PLANE_BIN
exec cargo run --quiet --locked -p herald-control-plane
