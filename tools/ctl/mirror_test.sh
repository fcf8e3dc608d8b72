#!/usr/bin/env bash
# kvctl make-mirror between two single-member kvnode clusters on free loopback ports: the base
# copy, puts, deletes and a txn of several keys followed by the watch (the txn lands in one
# destination revision), the destination equal to the source under the new prefix, progress
# lines, a clean stop on SIGTERM, a compacted source revision refused with a clear error, and
# etcdctl's make-mirror against the same kvnodes (kvnode speaks etcd's gRPC API), and a
# destination reached over TLS (--dest-cacert). Every node is killed at the end (trap).
set -uo pipefail
root="$TEST_SRCDIR/$TEST_WORKSPACE"
kvnode="$root/node/kvnode"
kvctl="$root/tools/ctl/kvctl"
dir="${TEST_TMPDIR:-$(mktemp -d)}"
failures=0

source "$root/tools/testing/ports.sh"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null; kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT

start_node() {  # start_node NAME CLIENT_PORT: one single-member cluster
  local peer="http://127.0.0.1:$(($2 + 1))"
  "$kvnode" --name "$1" --data-dir "$dir/$1" \
    --listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$1=$peer" >"$dir/$1.log" 2>&1 &
  pids+=($!)
}
source_port=$(free_port_pair)
start_node source "$source_port"
dest_port=$(free_port_pair)
start_node dest "$dest_port"
source="127.0.0.1:$source_port"
dest="127.0.0.1:$dest_port"
src() { "$kvctl" --endpoints "$source" --dial-timeout 1s --command-timeout 2s "$@"; }
# A mirror in the background: kvctl itself, not a subshell, so that $! is its pid.
mirror_to() { exec "$kvctl" --endpoints "$source" --dial-timeout 1s --command-timeout 2s "$@"; }
dst() { "$kvctl" --endpoints "$dest" --dial-timeout 1s --command-timeout 2s "$@"; }

# wait_until SECONDS COMMAND...: true once COMMAND succeeds, false at the deadline.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  while ((SECONDS < deadline)); do
    "$@" && return 0
    sleep 0.1
  done
  "$@"
}
for node in src dst; do
  if ! wait_until 10 "$node" endpoint health >/dev/null 2>&1; then
    echo "FAIL: kvnode did not serve within 10 s:"
    cat "$dir"/*.log
    exit 1
  fi
done

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# The source's keys under $1, renamed to prefix $2, equal the destination's under $2 (but for
# the destination's own /d/stale).
converged() {
  local want got
  want=$(src get "$1" --prefix | paste -d' ' - - | sed "s|^$1|$2|")
  got=$(dst get "$2" --prefix | paste -d' ' - - | grep -v '^/d/stale kept$')
  [ "$want" = "$got" ]
}

# --- flags ---------------------------------------------------------------------------------------
out=$(src make-mirror 2>&1)
[ $? = 1 ] && [ "$out" = "Error: make-mirror takes one destination argument" ] ||
  fail "no destination: $out"
out=$(src make-mirror --dest-prefix=/x --no-dest-prefix "$dest" 2>&1)
[ $? = 1 ] &&
  [ "$out" = 'Error: `--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one' ] ||
  fail "both prefixes: $out"
out=$(src make-mirror --dest-cacert=/nonexistent/ca.pem "$dest" 2>&1)
[ $? = 1 ] && [[ "$out" == "Error: "*"/nonexistent/ca.pem"* ]] || fail "--dest-cacert: $out"
out=$(src make-mirror --dest-insecure-transport=false "$dest" 2>&1)
[ $? = 1 ] && [[ "$out" == "Error: --dest-insecure-transport=false needs --dest-cacert"* ]] ||
  fail "--dest-insecure-transport=false: $out"

# --- kvctl make-mirror ---------------------------------------------------------------------------
for i in $(seq 1 20); do src put "/p/k$i" "v$i" >/dev/null; done
src put /other/x outside >/dev/null
dst put /d/stale kept >/dev/null  # the destination's own keys are left alone (etcdctl's too)

mirror_to make-mirror --prefix=/p --dest-prefix=/d --progress-interval=300ms "$dest" \
  >"$dir/mirror.out" 2>"$dir/mirror.err" &
mirror=$!
pids+=("$mirror")
base_done() { [ "$(dst get /d/k20 --print-value-only)" = v20 ]; }
wait_until 10 base_done || fail "the base copy did not arrive within 10 s"

src put /p/k1 changed >/dev/null
src del /p/k2 >/dev/null
src put /p/new fresh >/dev/null
src del /p/k1 /p/k19 >/dev/null  # a range: k1, k10..k18 (one revision, ten delete events)
printf '\nput /p/t1 a\nput /p/t2 b\ndel /p/k20\n\n\n' | src txn >/dev/null
src put /other/y outside >/dev/null
wait_until 10 converged /p/ /d/ || {
  fail "the destination did not converge within 10 s"
  diff <(src get /p/ --prefix | sed 's|^/p/|/d/|') <(dst get /d/ --prefix) | sed 's/^/    /'
}
[ "$(dst get /d/stale --print-value-only)" = kept ] || fail "the destination's own key was touched"
[ -z "$(dst get /other --prefix)" ] || fail "a key outside the prefix was mirrored"
# The txn's three changes landed at one destination revision.
rev_of() { dst get "$1" -w json | grep -o '"mod_revision":[0-9]*' | cut -d: -f2; }
t1=$(rev_of /d/t1)
t2=$(rev_of /d/t2)
[ -n "$t1" ] && [ "$t1" = "$t2" ] || fail "txn keys at destination revisions $t1 and $t2"
deleted_at=$(dst get /d/ --prefix --rev "$((t1 - 1))" --keys-only | grep -c '^/d/k20$')
[ "$deleted_at" = 1 ] || fail "/d/k20 was deleted before the txn's revision"
[ -z "$(dst get /d/k20 --rev "$t1")" ] || fail "/d/k20 not deleted in the txn's revision"

# Progress lines: counts of mirrored keys, never decreasing, the last one 20 base puts and
# 1+1+1+10+3 events (20 + 16 = 36).
progress_final() { [ "$(tail -1 "$dir/mirror.out")" = 36 ]; }
wait_until 5 progress_final || fail "progress: $(tr '\n' ' ' <"$dir/mirror.out")"
sort -n -c "$dir/mirror.out" 2>/dev/null || fail "progress decreased: $(cat "$dir/mirror.out")"
grep -qv '^[0-9]*$' "$dir/mirror.out" && fail "progress lines not counts: $(cat "$dir/mirror.out")"

kill -TERM "$mirror"
wait "$mirror"
rc=$?
[ $rc = 0 ] || fail "make-mirror exited $rc on SIGTERM: $(cat "$dir/mirror.err")"
[ -s "$dir/mirror.err" ] && fail "make-mirror wrote to stderr: $(cat "$dir/mirror.err")"

# --- --no-dest-prefix and the default (same keys) ------------------------------------------------
src put /r/a 1 >/dev/null
mirror_to make-mirror --prefix=/r/ --no-dest-prefix "$dest" >/dev/null 2>"$dir/root.err" &
mirror=$!
pids+=("$mirror")
root_copied() { [ "$(dst get a --print-value-only)" = 1 ]; }
wait_until 10 root_copied || fail "--no-dest-prefix: a not at the destination's root"
kill -TERM "$mirror"
wait "$mirror"

# --- a compacted source revision -----------------------------------------------------------------
# The destination is frozen so the mirror waits after reading its base at revision R; the
# source then writes twice and compacts at R+2, past R+1, so the watch from R+1 is refused (a
# watch from exactly the compact revision is served, as etcd serves it).
src put /c/early 1 >/dev/null
kill -STOP "${pids[1]}"
mirror_to make-mirror --prefix=/c --dial-timeout=1s --command-timeout=1s "$dest" \
  >/dev/null 2>"$dir/compacted.err" &
mirror=$!
pids+=("$mirror")
connected() {  # a TCP connection to the destination's port is established (/proc/net/tcp)
  awk -v port=":$(printf '%04X' "$dest_port")" '$4 == "01" && substr($3, 9) == port' \
    /proc/net/tcp | grep -q .
}
wait_until 10 connected || fail "the mirror did not reach the destination"
src put /c/late 1 >/dev/null
src put /c/later 1 >/dev/null
revision=$(src get /c/later -w json | grep -o '"revision":[0-9]*' | cut -d: -f2)
src compaction "$revision" >/dev/null
kill -CONT "${pids[1]}"
wait "$mirror"
rc=$?
[ $rc = 1 ] && grep -q "^Error: etcdserver: mvcc: required revision has been compacted: the source compacted revision $((revision - 1)) before the mirror read it" "$dir/compacted.err" ||
  fail "compacted: exit $rc: $(cat "$dir/compacted.err")"

# --- etcdctl make-mirror against kvnode ----------------------------------------------------------
if command -v etcdctl >/dev/null; then
  export ETCDCTL_API=3
  etcdctl --endpoints "$source" make-mirror --prefix=/p/ --dest-prefix=/e/ "$dest" \
    >/dev/null 2>"$dir/etcdctl.err" &
  mirror=$!
  pids+=("$mirror")
  etcdctl --endpoints "$source" put /p/by-etcdctl 1 >/dev/null
  printf '\nput /p/t3 c\ndel /p/t1\n\n\n' | etcdctl --endpoints "$source" txn >/dev/null
  wait_until 10 converged /p/ /e/ || fail "etcdctl make-mirror: not converged: $(cat "$dir/etcdctl.err")"
  kill "$mirror"
  wait "$mirror" 2>/dev/null
else
  echo "etcdctl not found: its make-mirror not checked"
fi

# --- a TLS destination (--dest-cacert) -----------------------------------------------------------
bash "$root/net/testing/make_certs.sh" "$dir/certs"
tls_port=$(free_port_pair)
tls_peer="http://127.0.0.1:$((tls_port + 1))"
"$kvnode" --name tls --data-dir "$dir/tls" \
  --listen-client-urls "https://127.0.0.1:$tls_port" \
  --advertise-client-urls "https://127.0.0.1:$tls_port" \
  --cert-file "$dir/certs/server.crt" --key-file "$dir/certs/server.key" \
  --listen-peer-urls "$tls_peer" --initial-advertise-peer-urls "$tls_peer" \
  --initial-cluster "tls=$tls_peer" >"$dir/tls.log" 2>&1 &
pids+=($!)
tls_dst() {
  "$kvctl" --endpoints "127.0.0.1:$tls_port" --cacert "$dir/certs/ca.crt" --dial-timeout 1s \
    --command-timeout 2s "$@"
}
wait_until 10 tls_dst endpoint health >/dev/null 2>&1 || fail "the TLS kvnode did not serve"
mirror_to make-mirror --prefix=/p/ --dest-prefix=/tls/ --dest-cacert="$dir/certs/ca.crt" \
  "127.0.0.1:$tls_port" >/dev/null 2>"$dir/tls-mirror.err" &
mirror=$!
pids+=("$mirror")
src put /p/over-tls 1 >/dev/null
tls_converged() {
  [ "$(src get /p/ --prefix | sed 's|^/p/|/tls/|')" = "$(tls_dst get /tls/ --prefix)" ]
}
wait_until 10 tls_converged || fail "TLS destination not converged: $(cat "$dir/tls-mirror.err")"
kill -TERM "$mirror"
wait "$mirror" || fail "make-mirror to the TLS destination: $(cat "$dir/tls-mirror.err")"

if [ $failures -gt 0 ]; then
  echo "$failures failures; logs:"
  tail -n 5 "$dir"/*.log
  exit 1
fi
echo PASS
