#!/usr/bin/env bash
# Builds MetalLB's controller from its published Go module
# (go.universe.tf/metallb, package ./controller) at a pinned release into a
# cache keyed by version, for the side-by-side controller benchmark
# (scripts/bench-controller.sh). Nothing is committed; a second run with the
# binary present builds nothing. Its CRDs come from the same module
# (config/crd/bases) and are copied beside the binary.
#
#   ./scripts/metallb-build.sh        # prints the bin directory
#
# MetalLB's go.mod has no replace lines at this release, so a wrapper
# module that requires it and imports nothing else is enough; the wrapper
# keeps MetalLB's own pinned dependency versions (go mod tidy selects them).
#
# HERALD_CACHE overrides the cache directory (default /var/cache/herald).
set -euo pipefail

METALLB_VERSION=0.15.2

cache="${HERALD_CACHE:-/var/cache/herald}"
bin="$cache/metallb-$METALLB_VERSION/bin"
if [ -x "$bin/metallb-controller" ] && [ -d "$bin/../crds" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "metallb-build: needs Go (1.26) on PATH" >&2; exit 1; }
mkdir -p "$bin" "$bin/../crds"
work="$cache/build-metallb$METALLB_VERSION"
mkdir -p "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
started=$(date +%s)
(
  cd "$work"
  if [ ! -f go.mod ]; then
    go mod init herald.dev/metallb-build >/dev/null 2>&1
    printf '\nrequire go.universe.tf/metallb v%s\n' "$METALLB_VERSION" >>go.mod
    printf 'package tools\n\nimport _ "go.universe.tf/metallb/controller"\n' >tools.go
  fi
  go mod tidy >/dev/null
  go build -trimpath -o "$bin/metallb-controller" go.universe.tf/metallb/controller
  src=$(go list -m -f '{{.Dir}}' go.universe.tf/metallb)
  cp "$src"/config/crd/bases/*.yaml "$bin/../crds/"
  chmod u+w "$bin"/../crds/*.yaml
)
echo "metallb-build: built in $(($(date +%s) - started)) s" >&2
echo "$bin"
