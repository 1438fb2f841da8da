#!/usr/bin/env bash
# Builds the real Kubernetes control plane Herald's API tests run against —
# kube-apiserver and kubectl from k8s.io/kubernetes, etcd from
# go.etcd.io/etcd — from their published Go modules at pinned releases, into
# a cache keyed by version. Nothing is committed; a second run with the
# binaries present builds nothing.
#
#   ./scripts/control-plane-build.sh        # prints the bin directory
#
# k8s.io/kubernetes's go.mod names its staging modules (k8s.io/api,
# k8s.io/apiserver, …) at v0.0.0 and points them at ./staging with replace
# lines that a dependent module does not inherit, so a small wrapper module
# (made here, in the cache, never in the repository) pins each to the
# matching v0.x release with replace lines of its own.
#
# HERALD_CACHE overrides the cache directory (default /var/cache/herald).
set -euo pipefail

K8S_VERSION=1.34.4   # kube-apiserver, kubectl; staging modules v0.34.4
ETCD_VERSION=3.6.16

cache="${HERALD_CACHE:-/var/cache/herald}"
bin="$cache/control-plane-k8s$K8S_VERSION-etcd$ETCD_VERSION/bin"
if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ] && [ -x "$bin/etcd" ]; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "control-plane-build: needs Go (1.26) on PATH" >&2; exit 1; }
mkdir -p "$bin"
work="$cache/build-k8s$K8S_VERSION"
mkdir -p "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
started=$(date +%s)

# The staging modules k8s.io/kubernetes replaces at this release.
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
  cloud-provider cluster-bootstrap code-generator component-base component-helpers
  controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation
  endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy
  kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission
  sample-apiserver sample-cli-plugin sample-controller)
(
  cd "$work"
  if [ ! -f go.mod ]; then
    go mod init herald.dev/control-plane-build >/dev/null 2>&1
    {
      echo
      echo "require k8s.io/kubernetes v$K8S_VERSION"
      echo
      echo "replace ("
      for m in "${staging[@]}"; do
        echo "	k8s.io/$m => k8s.io/$m v0.${K8S_VERSION#1.}"
      done
      echo ")"
    } >>go.mod
    printf 'package tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n\t_ "k8s.io/kubectl/pkg/cmd"\n)\n' >tools.go
  fi
  go mod tidy >/dev/null
  go build -trimpath -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -trimpath -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl
)
# etcd: its server module has replace lines too (for its sibling modules),
# so `go install` refuses it; a wrapper module with etcd's own two-line main
# (etcdmain.Main) pins the siblings to the same release.
etcd_work="$cache/build-etcd$ETCD_VERSION"
mkdir -p "$etcd_work"
(
  cd "$etcd_work"
  if [ ! -f go.mod ]; then
    go mod init herald.dev/etcd-build >/dev/null 2>&1
    {
      echo
      echo "require go.etcd.io/etcd/server/v3 v$ETCD_VERSION"
      echo
      echo "replace ("
      for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
        echo "	go.etcd.io/etcd/$m => go.etcd.io/etcd/$m v$ETCD_VERSION"
      done
      echo ")"
    } >>go.mod
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >main.go
  fi
  go mod tidy >/dev/null
  go build -trimpath -o "$bin/etcd" .
)
echo "control-plane-build: built in $(($(date +%s) - started)) s" >&2
echo "$bin"
