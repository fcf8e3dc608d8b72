#!/usr/bin/env bash
# kvnode against etcd 3.4.23, side by side: the same cluster shape (3 members on loopback, data
# under one temporary directory), loaded by the same client (kvbench --protocol=grpc, which speaks
# etcd's v3 API), one system after the other in one run. Prints one line per (system, workload)
# and a table at the end (tools/bench/README.md).
#
#   bash tools/bench/compare.sh                      # every workload, both systems
#   WORKLOADS="put1 put64" SYSTEMS=kvnode bash tools/bench/compare.sh
#
# Workloads (key 8 B, value 256 B, clients on the leader's client URL as etcd's performance
# guide does):
#   put1    1 client, 1 connection, PUT1_TOTAL puts
#   put64   64 clients over 8 connections, PUT64_TOTAL puts (100,000: the RSS target's load)
#   rangel  linearizable ranges of one key, 64 clients over 8 connections, RANGE_TOTAL
#   ranges  serializable ranges, the same
#   watch   watch latency: WATCH_CLIENTS (64) watchers of one key over 8 connections (one Watch
#           stream each), WATCH_PUTS puts to it at
#           100/s; a latency runs from sending a put to a watcher reading its event (kvbench
#           watch-latency); the table's value column is the average latency in ms
#   start   a single member on an empty data dir: milliseconds from exec to its first answered
#           /health (kvnode) or endpoint health (etcd), START_RUNS runs, median printed
#   solo    the floor under put1: a single member (no replication), PUT1_TOTAL puts from one
#           client (solo-put1: one WAL fsync and one client round trip each) and as many
#           serializable ranges (solo-range1: the round trip alone)
# After the workloads, each member's resident memory (VmRSS) is printed, the largest in the
# table. Per request, the members' CPU time and voluntary context switches (all threads of the
# three members, summed) are printed too: on a shared machine they compare the two systems'
# cost more steadily than the throughput does. So is the client's (kvbench's) CPU time per
# request: the client shares the machine's cores with the members, so when the cores are busy
# its cost bounds the ratio of the two systems' throughputs (both pay it).
#
# Environment: KVNODE, KVBENCH (default: the -c opt build under bazel-out/k8-opt/bin), ETCD,
# ETCDCTL, PORT_BASE (default 27000, below the kernel's ephemeral ports, which outgoing
# connections may hold; members use PORT_BASE+10*i+{1,2}), KEEP=1 keeps the data.
# Needs: bazel build -c opt //node:kvnode //tools/bench:kvbench; Debian's etcd-server, etcd-client.
set -euo pipefail

cd "$(dirname "$0")/../.."
KVNODE=${KVNODE:-bazel-out/k8-opt/bin/node/kvnode}
KVBENCH=${KVBENCH:-bazel-out/k8-opt/bin/tools/bench/kvbench}
ETCD=${ETCD:-etcd}
ETCDCTL=${ETCDCTL:-etcdctl}
PORT_BASE=${PORT_BASE:-27000}
WORKLOADS=${WORKLOADS:-"solo put1 put64 rangel ranges watch"}
SYSTEMS=${SYSTEMS:-"kvnode etcd"}
PUT1_TOTAL=${PUT1_TOTAL:-3000}
PUT64_TOTAL=${PUT64_TOTAL:-100000}
RANGE_TOTAL=${RANGE_TOTAL:-50000}
WATCH_PUTS=${WATCH_PUTS:-500}
START_RUNS=${START_RUNS:-5}
MEMBERS=3

for tool in "$KVNODE" "$KVBENCH"; do
  [[ -x $tool ]] || { echo "missing $tool: bazel build -c opt //node:kvnode //tools/bench:kvbench" >&2; exit 2; }
done
command -v "$ETCD" >/dev/null || { echo "missing $ETCD (Debian etcd-server)" >&2; exit 2; }
command -v "$ETCDCTL" >/dev/null || { echo "missing $ETCDCTL (Debian etcd-client)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/kvcompare.XXXXXX)
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_all
  if [[ ${KEEP:-0} == 1 ]]; then echo "data and logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

client_port() { echo $((PORT_BASE + 10 * $1 + 1)); }
peer_port() { echo $((PORT_BASE + 10 * $1 + 2)); }
endpoints() {
  local list=() i
  for ((i = 1; i <= MEMBERS; i++)); do list+=("127.0.0.1:$(client_port "$i")"); done
  (IFS=,; echo "${list[*]}")
}

# start_cluster SYSTEM: MEMBERS members of SYSTEM with fresh data dirs; PIDS holds them.
start_cluster() {
  local system=$1 cluster=() i
  for ((i = 1; i <= MEMBERS; i++)); do cluster+=("m$i=http://127.0.0.1:$(peer_port "$i")"); done
  cluster=$(IFS=,; echo "${cluster[*]}")
  for ((i = 1; i <= MEMBERS; i++)); do
    local binary=$KVNODE
    [[ $system == etcd ]] && binary=$ETCD
    local dir=$WORK/$system-m$i
    rm -rf "$dir"
    "$binary" --name "m$i" --data-dir "$dir" --initial-cluster "$cluster" \
      --initial-cluster-state new --initial-cluster-token "bench-$system" \
      --listen-client-urls "http://127.0.0.1:$(client_port "$i")" \
      --advertise-client-urls "http://127.0.0.1:$(client_port "$i")" \
      --listen-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
      --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port "$i")" \
      >"$WORK/$system-m$i.log" 2>&1 &
    PIDS+=($!)
  done
  local deadline=$((SECONDS + 30))
  until ETCDCTL_API=3 "$ETCDCTL" --endpoints "$(endpoints)" --command-timeout=2s endpoint health \
    >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "$system cluster not healthy in 30 s (logs in $WORK)" >&2; KEEP=1; exit 1; }
    sleep 0.2
  done
}

# The client URL of the leader (etcdctl endpoint status: member id == leader id).
leader_endpoint() {
  ETCDCTL_API=3 "$ETCDCTL" --endpoints "$(endpoints)" endpoint status -w json |
    python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s["Status"]["header"]["member_id"] == s["Status"]["leader"]:
        print(s["Endpoint"]); break'
}

# CPU time (clock ticks, user + system) and voluntary context switches of every thread of the
# members, summed: "ticks switches". Per request, they compare the two systems' cost even when
# other work on the machine moves the throughput figures.
cluster_cost() {
  local ticks=0 switches=0 pid task
  for pid in "${PIDS[@]}"; do
    ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    for task in /proc/"$pid"/task/*/status; do
      switches=$((switches + $(awk '/^voluntary_ctxt_switches/ {print $2}' "$task" 2>/dev/null || echo 0)))
    done
  done
  echo "$ticks $switches"
}

RESULTS=()
# bench SYSTEM WORKLOAD ENDPOINT ARGS...: runs kvbench, records req/s, p99, and the members'
# CPU milliseconds and context switches per request.
bench() {
  local system=$1 workload=$2 endpoint=$3
  shift 3
  local out=$WORK/$system-$workload.out before after
  before=$(cluster_cost)
  # kvbench's own user + system seconds (bash's time keyword, which times only the child).
  local TIMEFORMAT='%U %S'
  { time "$KVBENCH" --protocol=grpc --endpoints "$endpoint" "$@" >"$out" 2>/dev/null; } 2>"$out.time"
  after=$(cluster_cost)
  local rps p99 errors done cpu switches
  rps=$(awk '/Requests\/sec:/ {printf "%d", $2}' "$out")
  # watch: the average latency (ms) instead, each event counting as a request.
  [[ $workload == watch ]] && rps=$(awk '/Average:/ {printf "%.2f", $2 * 1000}' "$out")
  p99=$(awk '$1 == "99%" {printf "%.1f", $3 * 1000}' "$out")
  errors=$(awk '/^Error distribution/ {e = 1; next} e && /\[/ {gsub(/[\[\]]/, "", $1); n += $1} END {print n + 0}' "$out")
  done=$(awk '/Requests\/sec:/ {r = $2} /Total:/ {t = $2} END {printf "%.0f", r * t}' "$out")
  read -r cpu switches < <(echo "$before $after" | awk -v n="$done" -v hz="$(getconf CLK_TCK)" \
    '{printf "%.3f %.1f\n", n ? ($3 - $1) * 1000 / hz / n : 0, n ? ($4 - $2) / n : 0}')
  local client_cpu
  client_cpu=$(awk -v n="$done" '{printf "%.3f", n ? ($1 + $2) * 1000 / n : 0}' "$out.time")
  echo "$system $workload: $rps req/s, p99 $p99 ms, errors $errors," \
    "members' CPU $cpu ms and $switches context switches per request, client CPU $client_cpu ms" >&2
  RESULTS+=("$system|$workload|$rps|$p99|$cpu|$switches|$client_cpu")
}

rss_mb() {
  local pid=$1
  awk '/^VmRSS:/ {printf "%d", $2 / 1024}' "/proc/$pid/status"
}

# start_ms SYSTEM: ms from exec to the first answer of a fresh single member, median of runs.
start_ms() {
  local system=$1 times=() run
  for ((run = 0; run < START_RUNS; run++)); do
    local dir=$WORK/$system-start-$run port url
    port=$(client_port 9)
    url=http://127.0.0.1:$port
    local binary=$KVNODE
    [[ $system == etcd ]] && binary=$ETCD
    local t0 t1
    t0=$(date +%s%N)
    "$binary" --name s --data-dir "$dir" --listen-client-urls "$url" --advertise-client-urls "$url" \
      --listen-peer-urls "http://127.0.0.1:$(peer_port 9)" \
      --initial-advertise-peer-urls "http://127.0.0.1:$(peer_port 9)" \
      --initial-cluster "s=http://127.0.0.1:$(peer_port 9)" >"$dir.log" 2>&1 &
    local pid=$!
    # /health answers {"health":"true"} once the member serves requests (both systems).
    until curl -sf --max-time 1 "$url/health" 2>/dev/null | grep -q '"true"'; do
      kill -0 "$pid" 2>/dev/null || { echo "$system exited at start (log: $dir.log)" >&2; KEEP=1; exit 1; }
      sleep 0.002
    done
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000000)))
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
  echo "$system start: median $median ms of ${times[*]}" >&2
  RESULTS+=("$system|start|$median|")
}

# solo SYSTEM: the solo workload on a single member of SYSTEM, started and stopped here.
solo() {
  local system=$1 saved=$MEMBERS endpoint
  MEMBERS=1
  start_cluster "$system"
  endpoint=127.0.0.1:$(client_port 1)
  ETCDCTL_API=3 "$ETCDCTL" --endpoints "$endpoint" put foo bar >/dev/null
  bench "$system" solo-put1 "$endpoint" --conns=1 --clients=1 put --total="$PUT1_TOTAL" \
    --key-size=8 --val-size=256 --key-space-size=100000
  bench "$system" solo-range1 "$endpoint" --conns=1 --clients=1 range foo --consistency=s \
    --total="$PUT1_TOTAL"
  stop_all
  MEMBERS=$saved
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for system in $SYSTEMS; do
  if [[ " $WORKLOADS " == *" start "* ]]; then start_ms "$system"; fi
  if [[ " $WORKLOADS " == *" solo "* ]]; then solo "$system"; fi
  # Only start or solo: no three-member cluster.
  if [[ -z $(echo " $WORKLOADS " | sed 's/ start / /g; s/ solo / /g; s/ //g') ]]; then continue; fi
  start_cluster "$system"
  leader=$(leader_endpoint)
  echo "$system: leader at $leader" >&2
  # A key for the ranges (etcd's benchmark reads one key).
  ETCDCTL_API=3 "$ETCDCTL" --endpoints "$leader" put foo bar >/dev/null
  for workload in $WORKLOADS; do
    case $workload in
      put1) bench "$system" put1 "$leader" --conns=1 --clients=1 put --total="$PUT1_TOTAL" \
        --key-size=8 --val-size=256 --key-space-size=100000 ;;
      put64) bench "$system" put64 "$leader" --conns=8 --clients=64 put --total="$PUT64_TOTAL" \
        --key-size=8 --val-size=256 --sequential-keys ;;
      rangel) bench "$system" rangel "$leader" --conns=8 --clients=64 range foo \
        --consistency=l --total="$RANGE_TOTAL" ;;
      ranges) bench "$system" ranges "$leader" --conns=8 --clients=64 range foo \
        --consistency=s --total="$RANGE_TOTAL" ;;
      watch) bench "$system" watch "$leader" --conns=8 --clients="${WATCH_CLIENTS:-64}" watch-latency \
        --put-total="$WATCH_PUTS" --put-rate=100 ;;
      start | solo) ;;
      *) echo "unknown workload $workload" >&2; exit 2 ;;
    esac
  done
  rss=()
  for pid in "${PIDS[@]}"; do rss+=("$(rss_mb "$pid")"); done
  echo "$system RSS per member (MB): ${rss[*]}" >&2
  RESULTS+=("$system|rss|$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)|")
  stop_all
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo "| system | workload | req/s (start: ms, rss: MB, watch: average ms) | p99 ms | CPU ms/req | switches/req | client CPU ms/req |"
echo "|---|---|---:|---:|---:|---:|---:|"
for r in "${RESULTS[@]}"; do
  IFS='|' read -r system workload value p99 cpu switches client_cpu <<<"$r"
  echo "| $system | $workload | $value | $p99 | $cpu | $switches | $client_cpu |"
done
