#!/usr/bin/env bash
# A snapshot download does not hold the member's loop (node/README.md, "Snapshot downloads"):
# the fault shim (testing/fault_shim.cc, slow_copy) makes the fsync of the download's copy of
# the backend take 3 s, standing in for the copy of a large database. While `etcdctl snapshot
# save` waits for it, the member answers puts at once; the snapshot then completes (etcdctl
# checks its SHA-256) and the copy's file is gone. With the copy on the loop (before 36f5ebd)
# every put waited for the copy.
set -euo pipefail

kvnode=${1:?usage: snapshot_download_test.sh path/to/kvnode path/to/libkvfault.so}
shim=${2:?usage: snapshot_download_test.sh path/to/kvnode path/to/libkvfault.so}
tmp=${TEST_TMPDIR:-$(mktemp -d)}
failures=0
export ETCDCTL_API=3

source "$(dirname "$0")/../tools/testing/cluster.sh"

client=$(free_port)
peer=$(free_port)
ep=127.0.0.1:$client
data=$tmp/snap
rm -rf "$data" "$data.faults"
LD_PRELOAD=$(realpath "$shim") ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
  "$kvnode" --name snap --data-dir "$data" \
  --listen-client-urls "http://$ep" --advertise-client-urls "http://$ep" \
  --listen-peer-urls "http://127.0.0.1:$peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
  --initial-cluster "snap=http://127.0.0.1:$peer" >"$tmp/snap.log" 2>&1 &
node_pid=$!
snap_pid=
cleanup() {
  [ -n "$snap_pid" ] && kill "$snap_pid" 2>/dev/null || true
  kill "$node_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  if etcdctl --endpoints "$ep" --command-timeout=1s endpoint health >/dev/null 2>&1; then break; fi
  sleep 0.1
done
for i in $(seq 1 50); do etcdctl --endpoints "$ep" put "key$i" "value$i" >/dev/null; done

now_ms() { echo $(($(date +%s%N) / 1000000)); }
echo "slow_copy 1 3000" >"$data.faults"
start=$(now_ms)
etcdctl --endpoints "$ep" --command-timeout=60s snapshot save "$tmp/saved.db" >"$tmp/save.out" 2>&1 &
snap_pid=$!
sleep 0.5
# The copy is in its held fsync now: each put must be answered well within it.
slowest=0
for i in 1 2 3 4 5; do
  t=$(now_ms)
  if ! etcdctl --endpoints "$ep" --command-timeout=10s put during "$i" >/dev/null 2>&1; then
    fail "put-during-snapshot" "put $i failed"
  fi
  took=$(($(now_ms) - t))
  [ "$took" -gt "$slowest" ] && slowest=$took
done
copy_running=no
kill -0 "$snap_pid" 2>/dev/null && copy_running=yes
if [ "$slowest" -lt 1500 ] && [ "$copy_running" = yes ]; then
  ok "puts-answered-during-the-copy (slowest ${slowest} ms)"
else
  fail "puts-answered-during-the-copy" "slowest put ${slowest} ms; snapshot still running: $copy_running"
fi
code=0
wait "$snap_pid" || code=$?
snap_pid=
took=$(($(now_ms) - start))
if [ "$code" = 0 ] && [ "$took" -ge 2900 ] && grep -q "Snapshot saved at" "$tmp/save.out"; then
  ok "snapshot-saved-after-the-held-copy (${took} ms)"
else
  fail "snapshot-saved-after-the-held-copy" "exit $code after ${took} ms (the copy is held 3000 ms)" \
    "$(cat "$tmp/save.out")"
fi
if [ "$(stat -c %s "$tmp/saved.db" 2>/dev/null || echo 0)" -gt 4096 ]; then
  ok "snapshot-file"
else
  fail "snapshot-file" "$tmp/saved.db missing or empty"
fi
left=$(find "$data/member" -maxdepth 1 -name 'snapshot-*.tmp' | wc -l)
if [ "$left" = 0 ]; then ok "copy-removed"; else fail "copy-removed" "$left copies left in member/"; fi
expect "value-written-during-the-copy" 0 "^during"$'\n'"5$" \
  etcdctl --endpoints "$ep" get during

if [ "$failures" -gt 0 ]; then
  echo "$failures failed; kvnode log:"
  tail -20 "$tmp/snap.log"
  exit 1
fi
echo "all passed"
