#!/usr/bin/env bash
# Issue 14 §1 acceptance: etcdctl 3.4.23 runs one script (etcdctl_script.txt) against a fresh
# etcd 3.4.23 cluster and a fresh kvnode cluster on the same loopback ports, and the two
# transcripts (each command's stdout, stderr and exit code) must be identical once
# normalize.pl has replaced what differs by nature (random ids and the rest it lists).
#
#   etcdctl_compat_test.sh KVNODE SCRIPT NORMALIZE RECONCILE EXPECTED GOLDEN
#
# GOLDEN (etcdctl.golden) is etcd's normalised transcript, kept so that a reviewer reads what
# etcdctl answers and notices when Debian's etcd answers otherwise. Regenerate it with
#   REWRITE=1 bazel run //tools/compat:etcdctl_compat_test
#
# Where kvnode answers otherwise for a reason the gRPC layer cannot fix (the core lacks
# something), the answer of both servers is written down in EXPECTED (expected_differences.txt)
# with the reason; RECONCILE (reconcile.pl) checks both answers against it before comparing.
#
# ETCD and ETCDCTL name the binaries to compare with (default: Debian's etcd and etcdctl on
# PATH). Both transcripts and their normalised forms are kept in TEST_UNDECLARED_OUTPUTS_DIR.
#
# The script's lines (run by bash, in order, with the helpers below):
#   CMD         recorded: "$ CMD", its stdout, its stderr (each line "! ..."), "[exit N]"
#   ~ CMD       retried every 0.5 s until it exits 0 (at most 40 times); the last try is recorded
#   @ CMD       harness step, not recorded (start a member, capture an id)
#   # ...       comment
set -u

kvnode=$(realpath "$1")
script=$(realpath "$2")
normalize=$(realpath "$3")
reconcile=$(realpath "$4")
expected=$(realpath "$5")
golden_path=$6
golden=$(realpath "$6")
etcd_bin=${ETCD:-etcd}
etcdctl_bin=${ETCDCTL:-etcdctl}
export ETCDCTL_API=3
# Under bazel run (BUILD_WORKSPACE_DIRECTORY set) the TEST_* directories lie in the output
# base's _tmp, which the next Bazel command of anyone sharing the server empties: use /tmp.
if [[ -n ${BUILD_WORKSPACE_DIRECTORY:-} ]]; then unset TEST_TMPDIR TEST_UNDECLARED_OUTPUTS_DIR; fi
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/compat.XXXXXX") || exit 1
out_dir=${TEST_UNDECLARED_OUTPUTS_DIR:-$tmp}
# Every wait is bounded: a command by kCommandSeconds, a member's start by kStartSeconds.
readonly kCommandSeconds=30
readonly kStartSeconds=30

pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  pids=()
}
trap stop_all EXIT
trap 'exit 143' TERM INT  # so that a timed-out test still kills its members on the way out

# Eight ports nobody listens on now (tools/testing/ports.sh, found from the runfiles root, the
# working directory under both bazel test and bazel run): four per flavour (two members, client
# and peer each), since both flavours run at once. normalize.pl names them, so the transcripts
# agree.
ports_taken_file="$tmp/ports_taken"
source tools/testing/ports.sh || exit 1
ports=()
while ((${#ports[@]} < 8)); do ports+=("$(free_port)") || exit 1; done
# use_ports FIRST: this flavour's four ports from ports[FIRST..FIRST+3].
use_ports() {
  C1=${ports[$1]} P1=${ports[$1 + 1]} C2=${ports[$1 + 2]} P2=${ports[$1 + 3]}
  EP1=127.0.0.1:$C1
  EP2=127.0.0.1:$C2
  EP=$EP1
}

# etcdctl against $EP, every call bounded.
ctl() {
  timeout -k 2 "$kCommandSeconds" "$etcdctl_bin" --endpoints="$EP" --dial-timeout=3s \
    --command-timeout=10s "$@"
}
# etcdctl stopped after SECONDS (watch, elect): the exit code is timeout's 124.
ctl_for() {
  local seconds=$1
  shift
  timeout -k 2 "$seconds" "$etcdctl_bin" --endpoints="$EP" --dial-timeout=3s "$@"
}

# start_member NAME INDEX STATE INITIAL_CLUSTER [FLAG...]: the same etcd flags for both servers.
start_member() {
  local name=$1 index=$2 state=$3 cluster=$4
  shift 4
  local c p
  if ((index == 1)); then c=$C1 p=$P1; else c=$C2 p=$P2; fi
  "$server" --name "$name" --data-dir "$run_dir/$name.data" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$cluster" --initial-cluster-state "$state" \
    --initial-cluster-token compat "$@" </dev/null >>"$run_dir/$name.log" 2>&1 &
  pids+=($!)
  local deadline=$((SECONDS + kStartSeconds))
  until port_in_use "$c"; do
    if ((SECONDS > deadline)); then
      echo "member $name did not listen on $c in ${kStartSeconds}s" >&2
      cat "$run_dir/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
}
# Waits until the cluster behind $EP commits a proposal (etcdctl endpoint health).
wait_healthy() {
  local deadline=$((SECONDS + kStartSeconds))
  until ctl endpoint health >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then
      echo "$EP not healthy in ${kStartSeconds}s" >&2
      exit 1
    fi
    sleep 0.2
  done
}
# Kills every member and starts over with fresh data (a new cluster for the quota part).
restart_fresh() {
  stop_all
  rm -rf "$run_dir"/*.data
}

# note_id KIND HEX: lists an id for normalize.pl.
note_id() { echo "$1 $2" >>"$ids"; }
# capture VAR KIND REGEX [decimal]: sets VAR to REGEX's first group in the last recorded stdout
# (hex, or decimal as -w json prints ids) and lists it, in hex, as an id of KIND (lease, member)
# for normalize.pl.
capture() {
  local var=$1 kind=$2 regex=$3 value
  value=$(perl -ne "if (/$regex/) { print \$1; exit }" "$last_out")
  if [[ -z $value ]]; then
    echo "capture $var: /$regex/ not found in:" >&2
    cat "$last_out" >&2
    exit 1
  fi
  if [[ ${4:-} == decimal ]]; then
    value=$(perl -Mbigint -e 'print substr(Math::BigInt->new($ARGV[0])->as_hex, 2)' "$value")
  fi
  printf -v "$var" '%s' "$value"
  note_id "$kind" "$value"
}

record() {
  local line=$1 retry=$2 code tries=0
  while :; do
    (eval "$line") >"$last_out" 2>"$last_err" </dev/null
    code=$?
    ((retry == 0 || code == 0 || ++tries >= 40)) && break
    sleep 0.5
  done
  {
    echo "\$ $line"
    cat "$last_out"
    sed 's/^/! /' "$last_err"
    echo "[exit $code]"
  } >>"$transcript"
}

# run_script FLAVOUR SERVER: the whole script against one kind of server.
run_script() {
  local flavour=$1
  server=$2
  run_dir=$tmp/$flavour
  mkdir -p "$run_dir"
  transcript=$out_dir/$flavour.transcript
  ids=$run_dir/ids
  last_out=$run_dir/last.out
  last_err=$run_dir/last.err
  : >"$transcript"
  printf 'port-client-1 %s\nport-peer-1 %s\nport-client-2 %s\nport-peer-2 %s\n' \
    "$C1" "$P1" "$C2" "$P2" >"$ids"
  : >"$last_out"
  EP=$EP1
  local line
  while IFS= read -r line; do
    case $line in
      '' | '#'*) ;;
      '@ '*) eval "${line#@ }" ;;
      '~ '*) record "${line#\~ }" 1 ;;
      *) record "$line" 0 ;;
    esac
  done <"$script"
  stop_all
  perl "$normalize" "$ids" <"$transcript" >"$out_dir/$flavour.normalized"
}

# The two flavours run at once, each in a subshell of its own with its own ports, directory and
# members (a subshell's EXIT trap kills its members; the parent's kills the subshells).
run_flavour() {
  local first=$1 flavour=$2 binary=$3
  (
    pids=()
    trap stop_all EXIT
    trap 'exit 143' TERM INT
    use_ports "$first"
    mkdir -p "$tmp/$flavour" && cd "$tmp/$flavour" || exit 1
    run_script "$flavour" "$binary"
  ) &
  flavours+=($!)
}
flavours=()
trap 'kill "${flavours[@]}" 2>/dev/null; wait' EXIT
run_flavour 0 etcd "$etcd_bin"
run_flavour 4 kvnode "$kvnode"
for pid in "${flavours[@]}"; do
  wait "$pid" || { echo "FAIL: a flavour's run stopped early (its log above)" >&2; exit 1; }
done
commands=$(grep -c '^\$ ' "$out_dir/etcd.transcript")
if [[ ${REWRITE:-} == 1 && -n ${BUILD_WORKSPACE_DIRECTORY:-} ]]; then
  cp "$out_dir/etcd.normalized" "$BUILD_WORKSPACE_DIRECTORY/$golden_path"
  echo "wrote $golden_path"
elif ! diff -u "$golden" "$out_dir/etcd.normalized"; then
  echo "FAIL: etcd no longer answers as $golden_path says (-); see REWRITE=1 above" >&2
  exit 1
fi
perl "$reconcile" "$expected" "$out_dir/etcd.normalized" "$out_dir/kvnode.normalized" \
  >"$out_dir/kvnode.reconciled" || exit 1
if diff -u "$out_dir/etcd.normalized" "$out_dir/kvnode.reconciled"; then
  echo "PASS: $commands etcdctl commands answered alike by etcd and kvnode"
  exit 0
fi
echo "FAIL: the transcripts differ (etcd -, kvnode +); raw ones in $out_dir" >&2
exit 1
