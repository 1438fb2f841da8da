#!/usr/bin/env bash
# Node loss to route withdrawal (issue 13, results for BENCHMARKS.md): how
# long after a node hangs does the router (FRR 8.4, bgpd + bfdd) stop
# holding the node's route? Three speakers on the node, side by side in one
# run, same topology (one veth between a router and a node namespace):
#
#   herald-bfd  Herald's speaker, BGPPeer with a BFDProfile 100 ms x 3
#               (FRR: `neighbor … bfd profile fast`, the same 100 ms x 3);
#   herald-hold Herald's speaker without BFD at its minimum hold time, 3 s
#               (FRR's `frr defaults datacenter` proposes 9 s; 3 s is used);
#   frr-bfd     FRR's own bgpd + bfdd as the speaker (MetalLB's data path)
#               with the same BFD profile on both sides.
#
#   ./scripts/bench-bfd.sh [RUNS]        (default 20; needs root, frr, nft)
#
# Each run has fresh namespaces and daemons; the three take turns going
# first. Per run: the speaker announces 198.51.100.10/32; once the router's
# kernel holds the route (and, with BFD, both BFD sessions have been Up for
# a second, at the negotiated 100 ms), every packet in and out of the node
# is dropped by nft (a hung node: a SIGKILL would close the TCP session and
# a link down would show as carrier loss, PEERS.md); the time is from that
# command to the route leaving the router's kernel table (`ip route`,
# polled every 2 ms), which is where FRR's withdrawal takes effect on
# traffic. At the end: median and p95 per speaker.
#
# HERALD picks the binary (default: target/release/herald, else the debug
# build of $CARGO_TARGET_DIR): BFD's timing does not depend on the build.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
[[ $RUNS =~ ^[0-9]+$ ]] || { echo "usage: $0 [RUNS]" >&2; exit 2; }
HERALD=${HERALD:-target/release/herald}
[ -x "$HERALD" ] || HERALD=${CARGO_TARGET_DIR:-target}/debug/herald
[ -x "$HERALD" ] || { echo "build first: cargo build -p herald" >&2; exit 1; }
WORK=$(mktemp -d /tmp/herald-bench-bfd.XXXXXX)
RESULTS=$(mktemp /tmp/herald-bench-bfd-results.XXXXXX)
R=hfr$$; N=hfn$$
ROUTER=192.0.2.1; NODE=192.0.2.2; VIP=198.51.100.10/32

cleanup() {
  for ns in "$R" "$N"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap 'cleanup; rm -f "$RESULTS"' EXIT

now() { date +%s%N; }
waitfor() { # what, seconds, command...
  local what=$1 limit=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timed out waiting for $what" >&2; tail -n 30 "$WORK"/*.log >&2; exit 1; }
    sleep 0.05
  done
}
has_route() { [ -n "$(ip -n "$R" route show "$VIP")" ]; }
vtysh_() { vtysh --vty_socket "$WORK/$1" -c "$2" 2>/dev/null; }
bfd_up() { vtysh_ "$1" 'show bfd peers brief' | awk -v p="$2" '$3 == p && $4 == "up" {f=1} END {exit !f}'; }

setup() {
  cleanup; mkdir -p "$WORK"
  chmod 755 "$WORK"
  ip netns add "$R"; ip netns add "$N"
  ip link add "v$R" type veth peer name "v$N"
  ip link set "v$R" netns "$R" name eth0; ip link set "v$N" netns "$N" name eth0
  ip -n "$R" addr add "$ROUTER/24" dev eth0; ip -n "$N" addr add "$NODE/24" dev eth0
  for ns in "$R" "$N"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
}

# frr NS DIR CONF: zebra, bfdd and bgpd in NS, state in $WORK/DIR.
frr() {
  local ns=$1 dir=$WORK/$2
  mkdir -p "$dir"; printf '%s' "$3" > "$dir/frr.conf"; chown -R frr:frr "$dir"
  local common=(-f "$dir/frr.conf" -z "$dir/zserv.api" --vty_socket "$dir" -u frr -g frr)
  ip netns exec "$ns" /usr/lib/frr/zebra "${common[@]}" -i "$dir/zebra.pid" >"$WORK/$2-zebra.log" 2>&1 & disown
  waitfor "zebra in $2" 10 test -S "$dir/zserv.api"
  ip netns exec "$ns" /usr/lib/frr/bfdd "${common[@]}" -i "$dir/bfdd.pid" --bfdctl "$dir/bfdd.sock" >"$WORK/$2-bfdd.log" 2>&1 & disown
  ip netns exec "$ns" /usr/lib/frr/bgpd "${common[@]}" -i "$dir/bgpd.pid" >"$WORK/$2-bgpd.log" 2>&1 & disown
}

PROFILE=$'bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n'

# router BFD: FRR in the router, the node as its neighbour (with BFD or not).
router() {
  local bfd=""
  [ "$1" = yes ] && bfd=" neighbor $NODE bfd profile fast"$'\n'
  frr "$R" router "frr defaults datacenter
hostname router
${PROFILE}router bgp 65001
 bgp router-id $ROUTER
 no bgp ebgp-requires-policy
 neighbor $NODE remote-as 65010
 neighbor $NODE timers connect 1
${bfd} address-family ipv4 unicast
  neighbor $NODE activate
 exit-address-family
"
}

herald() { # yes|no: with the BFD profile
  mkdir -p "$WORK/manifests"
  local bfd="" hold=3
  [ "$1" = yes ] && { bfd="  bfdProfile: fast"; hold=30; }
  cat > "$WORK/manifests/all.yaml" <<EOF
apiVersion: v1
kind: Node
metadata: {name: n1}
status:
  conditions: [{type: Ready, status: "True"}]
  addresses: [{type: InternalIP, address: $NODE}]
---
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: public}
spec: {addresses: [198.51.100.0/24]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 198.51.100.10}]}}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: public}
spec: {ipPools: [public]}
---
apiVersion: herald.dev/v1alpha1
kind: BFDProfile
metadata: {name: fast}
spec: {receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: router}
spec:
  peerAddress: $ROUTER
  peerASN: 65001
  myASN: 65010
  holdTime: $hold
  families: [ipv4]
$bfd
EOF
  ip netns exec "$N" env RUST_LOG=info "$HERALD" speaker --node n1 --manifests "$WORK/manifests" \
    --bgp-listen "$NODE" >"$WORK/herald.log" 2>&1 & disown
}

frr_speaker() {
  frr "$N" node "frr defaults datacenter
hostname node
${PROFILE}router bgp 65010
 bgp router-id $NODE
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor $ROUTER remote-as 65001
 neighbor $ROUTER bfd profile fast
 address-family ipv4 unicast
  network $VIP
 exit-address-family
"
}

run_one() { # herald-bfd | herald-hold | frr-bfd
  setup
  case $1 in
    herald-bfd) router yes; herald yes ;;
    herald-hold) router no; herald no ;;
    frr-bfd) router yes; frr_speaker ;;
  esac
  waitfor "the route at the router ($1)" 30 has_route
  if [ "$1" != herald-hold ]; then
    waitfor "the router's BFD session ($1)" 30 bfd_up router "$NODE"
    # Past the Poll that follows Up: both sides at 100 ms.
    sleep 1
  fi
  local start end
  start=$(now)
  ip netns exec "$N" nft -f - <<'EOF'
table inet hang {
  chain cin { type filter hook input priority 0; policy drop; }
  chain cout { type filter hook output priority 0; policy drop; }
}
EOF
  while has_route; do
    [ $(( ($(now) - start) / 1000000 )) -lt 20000 ] || { echo "$1: the route stayed 20 s" >&2; exit 1; }
    sleep 0.002
  done
  end=$(now)
  local ms=$(( (end - start) / 1000000 ))
  printf '%-12s %6d ms\n' "$1" "$ms" | tee -a "$RESULTS"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "# $(/usr/lib/frr/bgpd --version 2>&1 | head -1), herald $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($HERALD)"
MODES=(herald-bfd herald-hold frr-bfd)
for i in $(seq 1 "$RUNS"); do
  for k in 0 1 2; do
    run_one "${MODES[$(( (i + k) % 3 ))]}"
  done
done

python3 - "$RESULTS" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    who, ms, _ = line.split()
    runs.setdefault(who, []).append(int(ms))
print("| speaker | runs | median | p95 | min | max |")
print("|---|---|---|---|---|---|")
for who in ["herald-bfd", "frr-bfd", "herald-hold"]:
    v = sorted(runs.get(who, []))
    if not v:
        continue
    p95 = v[min(len(v) - 1, max(0, round(0.95 * len(v)) - 1))]
    print(f"| {who} | {len(v)} | {statistics.median(v):.0f} ms | {p95} ms | {v[0]} ms | {v[-1]} ms |")
EOF
