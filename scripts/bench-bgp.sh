#!/usr/bin/env bash
# Side-by-side BGP benchmark: Herald's speaker versus GoBGP, each announcing
# the same N /128 routes to the same BIRD, repeated and alternated in one
# run (results for BENCHMARKS.md). Needs root, bird2, gobgpd and a release
# build:
#
#   cargo build --release -p herald && ./scripts/bench-bgp.sh [N[:R]...]
#
# Sizes default to 1000 10000 100000. Each size runs R times (N:R, else
# $REPEATS, else 5 below 100,000 routes and 3 from there), Herald and GoBGP
# taking turns to go first; every run has a fresh BIRD and fresh namespaces.
# Per run:
# - the routes are loaded into the speaker before the session comes up
#   (Herald: N LoadBalancer Services in its manifests; GoBGP: an MRT
#   TABLE_DUMP_V2 file of the N routes injected with `gobgp mrt inject
#   global`, its bulk path: one gRPC stream of batched paths, instead of
#   one `gobgp global rib add` process per route; repeated when GoBGP ends
#   up short of routes, see run_gobgp), then the speaker peers with BIRD;
# - "announce" is the time from BIRD's session reaching Established to
#   BIRD holding all N routes (birdc polled every 10 ms);
# - "withdraw" is the time from the withdrawal command (Herald: the
#   Services file replaced by an empty one with a rename, which the speaker
#   sees through inotify; GoBGP: `gobgp global rib del all`, one command)
#   to BIRD holding none;
# - RSS is the speaker's VmRSS after announcing.
# At the end, per size: the median of each figure and the ratio
# GoBGP / Herald (above 1: Herald is faster).
# Prefixes are /128s of 2001:db8:1::/108: the project's documentation-only
# address rule leaves no room for 100,000 IPv4 /32s.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000 100000)
for s in "${SIZES[@]}"; do
  [[ $s =~ ^[0-9]+(:[0-9]+)?$ ]] || { echo "usage: $0 [N[:R]...] (got $s)" >&2; exit 2; }
done
HERALD=${HERALD:-target/release/herald}
[ -x "$HERALD" ] || { echo "build first: cargo build --release -p herald" >&2; exit 1; }
WORK=$(mktemp -d /tmp/herald-bench-bgp.XXXXXX)
RESULTS=$(mktemp /tmp/herald-bench-bgp-results.XXXXXX)
R=hbr$$; N=hbn$$
cleanup() {
  for ns in "$R" "$N"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap 'cleanup; rm -f "$RESULTS"' EXIT

now() { date +%s.%N; }
birdc_() { birdc -s "$WORK/bird.ctl" "$@" 2>/dev/null || true; }
routes() { birdc_ show route count table master6 | awk '/routes/ {print $1; exit}'; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

setup() {
  cleanup; mkdir -p "$WORK"
  ip netns add "$R"; ip netns add "$N"
  ip link add "v$R" type veth peer name "v$N"
  ip link set "v$R" netns "$R" name eth0; ip link set "v$N" netns "$N" name eth0
  for ns in "$R" "$N"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
  ip -n "$R" addr add 2001:db8:ff::1/64 dev eth0 nodad
  ip -n "$N" addr add 2001:db8:ff::2/64 dev eth0 nodad
  cat >"$WORK/bird.conf" <<CONF
router id 192.0.2.1;
protocol device {}
protocol bgp herald { local 2001:db8:ff::1 as 65001; neighbor 2001:db8:ff::2 as 4200000001;
  ipv6 { import all; export none; }; }
CONF
  ip netns exec "$R" bird -c "$WORK/bird.conf" -s "$WORK/bird.ctl" -P "$WORK/bird.pid"
}

# Prints "established_at all_routes_at" once BIRD holds $1 routes.
converge() {
  local want=$1 t_est="" t_all=""
  while :; do
    if [ -z "$t_est" ] && birdc_ show protocols herald | grep -q Established; then t_est=$(now); fi
    if [ -n "$t_est" ] && [ "$(routes)" = "$want" ]; then t_all=$(now); break; fi
    sleep 0.01
  done
  echo "$t_est $t_all"
}

wait_routes() { while [ "$(routes)" != "$1" ]; do sleep 0.01; done; now; }

run_herald() {
  local n=$1 m="$WORK/manifests"
  mkdir -p "$m"
  cat >"$m/base.yaml" <<YAML
apiVersion: v1
kind: Node
metadata: {name: n1}
status:
  conditions: [{type: Ready, status: "True"}]
  addresses: [{type: InternalIP, address: "2001:db8:ff::2"}]
---
apiVersion: herald.dev/v1alpha1
kind: IPPool
metadata: {name: bench}
spec: {addresses: ["2001:db8:1::/108"]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPPeer
metadata: {name: bird}
spec: {peerAddress: "2001:db8:ff::1", peerASN: 65001, myASN: 4200000001, routerID: 192.0.2.2, families: [ipv6]}
---
apiVersion: herald.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: bench}
spec: {ipPools: [bench]}
YAML
  python3 scripts/bench-bgp-gen.py manifests "$n" "$m/services.yaml"
  ip netns exec "$N" "$HERALD" speaker --node n1 --manifests "$m" >"$WORK/herald.log" 2>&1 &
  local pid=$!
  read -r t_est t_all < <(converge "$n")
  local rss; rss=$(rss_kib "$pid")
  : >"$WORK/empty.yaml"; local t0; t0=$(now)
  mv "$WORK/empty.yaml" "$m/services.yaml"
  local t_gone; t_gone=$(wait_routes 0)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  report herald "$n" "$t_est" "$t_all" "$t0" "$t_gone" "$rss"
}

run_gobgp() {
  local n=$1 api=127.0.0.1:50071
  cat >"$WORK/gobgpd.toml" <<TOML
[global.config]
  as = 4200000001
  router-id = "192.0.2.2"
TOML
  python3 scripts/bench-bgp-gen.py mrt "$n" "$WORK/routes.mrt"
  ip netns exec "$N" gobgpd -f "$WORK/gobgpd.toml" -t toml --api-hosts "$api" --pprof-disable \
    >"$WORK/gobgpd.log" 2>&1 &
  local pid=$!
  local g=(ip netns exec "$N" gobgp -u 127.0.0.1 -p 50071)
  until "${g[@]}" global >/dev/null 2>&1; do sleep 0.05; done
  # `gobgp mrt inject` can exit before gobgpd has read its whole stream,
  # losing a tail of a few hundred paths (more or less from run to run).
  # The file carries the routes again after themselves as that tail
  # (bench-bgp-gen.py); should GoBGP still be short, inject again (the same
  # paths replace themselves). Injection is not timed.
  local held prev tries=0
  while :; do
    "${g[@]}" mrt inject global "$WORK/routes.mrt"
    prev=-1
    while held=$("${g[@]}" global rib -a ipv6 summary | awk '/Destination/ {gsub(",", "", $2); print $2}')
      [ "$held" != "$n" ] && [ "$held" != "$prev" ]; do prev=$held; sleep 0.3; done
    [ "$held" = "$n" ] && break
    ((++tries < 5)) || { echo "GoBGP holds $held of $n routes after 5 injections" >&2; exit 1; }
  done
  "${g[@]}" neighbor add 2001:db8:ff::1 as 65001 -a ipv6
  read -r t_est t_all < <(converge "$n")
  local rss; rss=$(rss_kib "$pid")
  local t0; t0=$(now)
  "${g[@]}" global rib -a ipv6 del all
  local t_gone; t_gone=$(wait_routes 0)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  report gobgp "$n" "$t_est" "$t_all" "$t0" "$t_gone" "$rss"
}

report() {
  awk -v who="$1" -v n="$2" -v a="$(awk -v x="$4" -v y="$3" 'BEGIN {print x - y}')" \
    -v w="$(awk -v x="$6" -v y="$5" 'BEGIN {print x - y}')" -v rss="$7" \
    'BEGIN {printf "%-7s %7d  announce %8.3f s  withdraw %8.3f s  rss %7d KiB\n", who, n, a, w, rss}' |
    tee -a "$RESULTS"
}

# The medians per size and speaker, and GoBGP / Herald, as a Markdown table.
summary() {
  python3 - "$RESULTS" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.split()
    runs.setdefault((int(f[1]), f[0]), []).append((float(f[3]), float(f[6]), int(f[9])))
print("| N | runs | Herald announce | GoBGP announce | GoBGP / Herald | Herald withdraw | GoBGP withdraw | GoBGP / Herald | Herald RSS | GoBGP RSS |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in sorted({n for n, _ in runs}):
    h, g = runs.get((n, "herald"), []), runs.get((n, "gobgp"), [])
    if not h or not g:
        continue
    med = lambda rows, i: statistics.median(r[i] for r in rows)
    ratio = lambda i: med(g, i) / med(h, i) if med(h, i) > 0 else float("inf")
    print(f"| {n:,} | {len(h)}+{len(g)} | {med(h, 0):.3f} s | {med(g, 0):.3f} s | {ratio(0):.1f}x "
          f"| {med(h, 1):.3f} s | {med(g, 1):.3f} s | {ratio(1):.1f}x "
          f"| {med(h, 2) / 1024:.0f} MiB | {med(g, 2) / 1024:.0f} MiB |")
PY
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo "# bird $(bird --version 2>&1 | awk '{print $3}'), $(gobgpd --version), herald $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
for s in "${SIZES[@]}"; do
  n=${s%%:*}
  if [[ $s == *:* ]]; then reps=${s#*:}
  elif [ -n "${REPEATS:-}" ]; then reps=$REPEATS
  elif [ "$n" -ge 100000 ]; then reps=3
  else reps=5; fi
  for ((i = 0; i < reps; i++)); do
    if ((i % 2 == 0)); then order=(herald gobgp); else order=(gobgp herald); fi
    for who in "${order[@]}"; do setup; "run_$who" "$n"; done
  done
done
echo
summary
