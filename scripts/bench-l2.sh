#!/usr/bin/env bash
# L2 failover benchmark: Herald beside keepalived (VRRP), same topology, same
# run. A client and three nodes on one bridge (network namespaces, documentation
# prefixes only, no default route); each node serves TCP port 7000 answering
# with its name. One run: SIGKILL the process holding the VIP on its owner,
# then measure until the client's first TCP connect that reaches another node.
#
#   ./scripts/bench-l2.sh [RUNS]      # as root; default 20 runs per system
#   ./scripts/bench-l2.sh stability [SECONDS]   # flaps under CPU load, no failure
#
# Systems: herald (VIP on lo, arp_ignore=1, speakers with gossip membership),
# keepalived at its defaults (advert_int 1) and tuned (VRRPv3, advert_int
# 0.1 s and 0.05 s). SYSTEMS="herald keepalived-0.05" picks some.
# Needs iproute2, socat, keepalived (scripts/test.sh installs them).
#
# Fairness: a SIGKILLed keepalived leaves the VIP on its interface, so the old
# node's kernel keeps answering ARP until the new master's gratuitous ARP; a
# SIGKILLed Herald speaker leaves nothing answering. Both are measured to the
# first connection served by the *new* owner.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
[ "$RUNS" = stability ] && RUNS=0
VIP=192.0.2.200
TAG=b$$
SW=${TAG}sw
CLIENT=${TAG}c
NODES=(${TAG}n1 ${TAG}n2 ${TAG}n3)
NAMES=(n1 n2 n3)
WORK=$(mktemp -d)

cleanup() {
  for ns in "$CLIENT" "${NODES[@]}" "$SW"; do
    if ip netns list | grep -qw "$ns"; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# HERALD=path/to/herald skips the build (for trying the script out).
if [ -z "${HERALD:-}" ]; then
  cargo build --release -q -p herald
  HERALD=${CARGO_TARGET_DIR:-target}/release/herald
fi

now_ms() { date +%s%3N; }

topology() { # $1 = herald|vrrp
  ip netns add "$SW"; ip -n "$SW" link set lo up
  ip -n "$SW" link add br0 type bridge mcast_snooping 0; ip -n "$SW" link set br0 up
  local i=0
  for ns in "$CLIENT" "${NODES[@]}"; do
    ip netns add "$ns"; ip -n "$ns" link set lo up
    ip link add "${TAG}p$i" type veth peer name "${TAG}q$i"
    ip link set "${TAG}p$i" netns "$SW"; ip -n "$SW" link set "${TAG}p$i" master br0 up
    ip link set "${TAG}q$i" netns "$ns" name eth0; ip -n "$ns" link set eth0 up
    i=$((i + 1))
  done
  ip -n "$CLIENT" addr add 192.0.2.100/24 dev eth0
  for i in 0 1 2; do
    local ns=${NODES[$i]}
    ip -n "$ns" addr add "192.0.2.1$((i + 1))/24" dev eth0
    if [ "$1" = herald ]; then
      for k in all eth0; do
        ip netns exec "$ns" sysctl -q -w "net.ipv4.conf.$k.arp_ignore=1" "net.ipv4.conf.$k.arp_announce=2"
      done
      ip -n "$ns" addr add "$VIP/32" dev lo
    fi
    ip netns exec "$ns" socat "TCP4-LISTEN:7000,fork,reuseaddr" "SYSTEM:echo ${NAMES[$i]}" &
    disown $!
  done
}

teardown() {
  for ns in "$CLIENT" "${NODES[@]}" "$SW"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns"
  done
  # keepalived refuses to start over a pid file whose pid was reused.
  rm -f "$WORK"/k*.pid "$WORK"/k*.log
  sleep 0.2
}

# The node name a TCP connection to the VIP reaches (empty on failure).
probe() { ip netns exec "$CLIENT" socat -T 0.5 - "TCP4:$VIP:7000,connect-timeout=0.2" 2>/dev/null || true; }

# Waits (at most 10 s) until the VIP is served by node $1.
wait_served_by() {
  local deadline=$(( $(now_ms) + 10000 ))
  until [ "$(probe)" = "$1" ]; do
    [ "$(now_ms)" -lt "$deadline" ] || { echo "timeout waiting for $1" >&2; return 1; }
    sleep 0.05
  done
}

# ms from now until the VIP is served by a node other than $1.
time_to_other() {
  local start; start=$(now_ms)
  while :; do
    local got; got=$(probe)
    if [ -n "$got" ] && [ "$got" != "$1" ]; then echo $(( $(now_ms) - start )); return; fi
    [ $(( $(now_ms) - start )) -lt 30000 ] || { echo "timeout" >&2; return 1; }
  done
}

stats() { # name, then ms values
  local name=$1; shift
  printf '%s\n' "$@" | sort -n | awk -v name="$name" '
    { v[NR] = $1 } END {
      n = NR; med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      p = int(0.95 * n + 0.999); if (p < 1) p = 1; if (p > n) p = n
      printf "%-28s runs %2d  median %6.0f ms  p95 %6.0f ms  min %5d  max %5d\n", name, n, med, v[p], v[1], v[n] }'
}

# --- Herald -------------------------------------------------------------------
declare -A SPEAKER
start_speaker() { # index
  local i=$1 ns=${NODES[$1]}
  ip netns exec "$ns" env RUST_LOG=warn "$HERALD" speaker --node "${NAMES[$i]}" --manifests "$WORK/m" \
    --gossip-bind "192.0.2.1$((i + 1)):7946" \
    --members 192.0.2.11:7946,192.0.2.12:7946,192.0.2.13:7946 >>"$WORK/${NAMES[$i]}.log" 2>&1 &
  SPEAKER[$i]=$!
  disown "${SPEAKER[$i]}"
}

bench_herald_setup() {
  mkdir -p "$WORK/m"
  {
    for i in 0 1 2; do
      printf 'apiVersion: v1\nkind: Node\nmetadata: {name: %s}\nstatus:\n  conditions: [{type: Ready, status: "True"}]\n---\n' "${NAMES[$i]}"
    done
    printf 'apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {name: lan}\nspec:\n  addresses: [192.0.2.200/32]\n---\n'
    printf 'apiVersion: herald.dev/v1alpha1\nkind: L2Advertisement\nmetadata: {name: lan}\nspec: {}\n---\n'
    printf 'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: LoadBalancer\n  ports: [{port: 7000}]\nstatus:\n  loadBalancer:\n    ingress: [{ip: "%s"}]\n' "$VIP"
  } >"$WORK/m/objects.yaml"
  topology herald
  for i in 0 1 2; do start_speaker "$i"; done
}

bench_herald() {
  bench_herald_setup
  local times=()
  for _ in $(seq "$RUNS"); do
    local owner="" i
    until [ -n "$owner" ]; do owner=$(probe); sleep 0.05; done
    for i in 0 1 2; do [ "${NAMES[$i]}" = "$owner" ] && break; done
    # Let the gossip reach steady rhythm after the last restart.
    sleep 2
    kill -9 "${SPEAKER[$i]}"
    times+=("$(time_to_other "$owner")")
    start_speaker "$i"
    wait_served_by "$owner"
  done
  stats "herald (SIGKILL speaker)" "${times[@]}"
  teardown
}

# --- keepalived ---------------------------------------------------------------
declare -A KEEPALIVED
start_keepalived() { # index, advert_int, version
  local i=$1 ns=${NODES[$1]} conf=$WORK/k${1}.conf
  cat >"$conf" <<CONF
global_defs { vrrp_version $3 }
vrrp_instance VI {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority $((150 - 50 * i))
  advert_int $2
  virtual_ipaddress { $VIP/32 dev eth0 }
}
CONF
  ip netns exec "$ns" keepalived -n -l -D -f "$conf" -p "$WORK/k$i.pid" -r "$WORK/k$i.vrrp.pid" \
    >>"$WORK/k$i.log" 2>&1 &
  KEEPALIVED[$i]=$!
  disown "${KEEPALIVED[$i]}"
}

bench_keepalived() { # label, advert_int, version
  topology vrrp
  for i in 0 1 2; do start_keepalived "$i" "$2" "$3"; done
  local times=()
  for _ in $(seq "$RUNS"); do
    wait_served_by n1
    sleep 2
    # SIGKILL the master's keepalived: stop the parent first (it would
    # respawn the child; killed first, it would make the child shut down
    # gracefully), kill the VRRP child (by its pid file), then the parent.
    kill -STOP "${KEEPALIVED[0]}"
    kill -9 "$(cat "$WORK/k0.vrrp.pid")" "${KEEPALIVED[0]}" 2>/dev/null || true
    times+=("$(time_to_other n1)") || { cat "$WORK"/k*.log >&2; exit 1; }
    # Clean the VIP it left behind, then let it come back and preempt.
    ip -n "${NODES[0]}" addr del "$VIP/32" dev eth0 2>/dev/null || true
    rm -f "$WORK/k0.pid" "$WORK/k0.vrrp.pid"
    start_keepalived 0 "$2" "$3"
  done
  stats "$1" "${times[@]}"
  teardown
}

# --- stability under load ----------------------------------------------------
# "Fastest stable settings": with no node failing, the VIP must stay on one
# node while the machine is busy. For SECONDS, four busy loops load the two
# cores while the client probes the VIP every 50 ms; every change of the node
# that answers is a false failover (flap).
LOAD_PIDS=()
load_on() { for _ in 1 2 3 4; do (while :; do :; done) & LOAD_PIDS+=($!); done; }
load_off() { kill "${LOAD_PIDS[@]}" 2>/dev/null || true; wait "${LOAD_PIDS[@]}" 2>/dev/null || true; LOAD_PIDS=(); }

watch_flaps() { # label, seconds
  local end=$(( $(now_ms) + $2 * 1000 )) last="" flaps=0 misses=0 samples=0 got
  load_on
  while [ "$(now_ms)" -lt "$end" ]; do
    got=$(probe); samples=$((samples + 1))
    if [ -z "$got" ]; then misses=$((misses + 1))
    elif [ -n "$last" ] && [ "$got" != "$last" ]; then flaps=$((flaps + 1)); last=$got
    else last=$got; fi
    sleep 0.05
  done
  load_off
  printf '%-28s %3d s under load  samples %5d  owner changes %3d  unanswered %3d\n' "$1" "$2" "$samples" "$flaps" "$misses"
}

stability_herald() { # seconds
  bench_herald_setup
  local owner=""; until [ -n "$owner" ]; do owner=$(probe); sleep 0.05; done
  sleep 2
  watch_flaps "herald" "$1"
  teardown
}

stability_keepalived() { # label, advert_int, version, seconds
  topology vrrp
  for i in 0 1 2; do start_keepalived "$i" "$2" "$3"; done
  wait_served_by n1
  sleep 2
  watch_flaps "$1" "$4"
  teardown
}

if [ "${1:-}" = stability ]; then
  SECONDS_UNDER_LOAD=${2:-60}
  echo "L2 stability under load, $SECONDS_UNDER_LOAD s each, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r)"
  stability_herald "$SECONDS_UNDER_LOAD"
  stability_keepalived "keepalived VRRPv3 0.1 s" 0.1 3 "$SECONDS_UNDER_LOAD"
  stability_keepalived "keepalived VRRPv3 0.05 s" 0.05 3 "$SECONDS_UNDER_LOAD"
  exit 0
fi

echo "L2 failover, $RUNS runs each, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r)"
for system in ${SYSTEMS:-herald keepalived-default keepalived-fast keepalived-0.05}; do
  case $system in
    herald) bench_herald ;;
    keepalived-default) bench_keepalived "keepalived default (1 s)" 1 2 ;;
    keepalived-fast) bench_keepalived "keepalived VRRPv3 0.1 s" 0.1 3 ;;
    keepalived-0.05) bench_keepalived "keepalived VRRPv3 0.05 s" 0.05 3 ;;
  esac
done
