#!/usr/bin/env bash
# move-leader on a real three-member kvnode cluster answers as etcd 3.4's MoveLeader does: once
# the transferee leads (so the old leader's status names the new one right after the answer),
# and, for a transferee that never leads, etcd's "etcdserver: request timed out, leader transfer
# took too long" after the request timeout (5 s), through etcdctl 3.4.23 (gRPC) and kvctl (Cap'n
# Proto). On SIGTERM a leader hands leadership over and waits until the transferee leads before
# it exits 0.
set -euo pipefail

kvnode=${1:?usage: move_leader_test.sh path/to/kvnode path/to/kvctl}
kvctl=${2:?usage: move_leader_test.sh path/to/kvnode path/to/kvctl}
etcdctl=${ETCDCTL:-etcdctl}
export ETCDCTL_API=3
tmp=${TEST_TMPDIR:-$(mktemp -d)}
failures=0

source "$(dirname "$0")/../tools/testing/cluster.sh"
three_members m
start() { start_member "$1" --log-level info; }
for i in 1 2 3; do start "$i"; done

# Member i's id and the leader it sees, in hex (etcdctl's -w json gives decimal).
declare -a id lead
status_of() {
  local i=$1 status
  status=$("$etcdctl" --endpoints="127.0.0.1:${client[$i]}" --command-timeout=1s \
    endpoint status -w json 2>/dev/null || true)
  id[$i]=$(grep -o '"member_id":[0-9]*' <<<"$status" | cut -d: -f2 || true)
  lead[$i]=$(grep -o '"leader":[0-9]*' <<<"$status" | cut -d: -f2 || true)
  [ -n "${id[$i]}" ] && id[$i]=$(printf '%x' "${id[$i]}")
  [ -n "${lead[$i]}" ] && [ "${lead[$i]}" != 0 ] && lead[$i]=$(printf '%x' "${lead[$i]}")
  return 0
}
# The index of the member every member in "$@" agrees leads, once they do (within 10 s).
leader_among() {
  for _ in $(seq 1 100); do
    local agreed= i
    for i in "$@"; do status_of "$i"; done
    for i in "$@"; do
      if [ -z "${lead[$i]}" ] || [ "${lead[$i]}" = 0 ] ||
        { [ -n "$agreed" ] && [ "${lead[$i]}" != "$agreed" ]; }; then
        agreed=
        break
      fi
      agreed=${lead[$i]}
    done
    if [ -n "$agreed" ]; then
      for i in "$@"; do
        if [ "${id[$i]}" = "$agreed" ]; then
          echo "$i"
          return
        fi
      done
    fi
    sleep 0.1
  done
  echo 0
}

leader=$(leader_among 1 2 3)
if [ "$leader" = 0 ]; then
  fail "cluster elects a leader" "$(tail -n 5 "$tmp"/m*.log)"
  exit 1
fi
for i in 1 2 3; do status_of "$i"; done
others=()
for i in 1 2 3; do [ "$i" != "$leader" ] && others+=("$i"); done
to=${others[0]}
down=${others[1]}
ok "cluster elects a leader (m$leader)"

# A transfer to a live follower: answered once it leads, so the old leader names it at once.
expect "etcdctl move-leader to a follower" 0 "^Leadership transferred from ${id[$leader]} to ${id[$to]}$" \
  "$etcdctl" --endpoints="127.0.0.1:${client[$leader]}" move-leader "${id[$to]}"
status_of "$leader"
if [ "${lead[$leader]}" = "${id[$to]}" ]; then
  ok "the old leader sees the transferee lead when move-leader returns"
else
  fail "the old leader sees the transferee lead when move-leader returns" \
    "m$leader sees ${lead[$leader]:-none}, want ${id[$to]}"
fi
expect "kvctl move-leader back" 0 "^Leadership transferred from ${id[$to]} to ${id[$leader]}$" \
  "$kvctl" --endpoints="127.0.0.1:${client[$to]}" move-leader "${id[$leader]}"

# A transferee that is down never leads: etcd's timeout error once the request times out (5 s;
# etcdctl's own --command-timeout raised past it so the server's answer is what it prints).
# etcd 3.4 sends ErrTimeoutLeaderTransfer as gRPC code Unknown, which etcdctl's client does not
# map back to an etcd error, so etcdctl prints the raw gRPC status.
kill -9 "${pid[$down]}"
wait "${pid[$down]}" 2>/dev/null || true
pid[$down]=
started=$(date +%s%N)
"$kvctl" --endpoints="127.0.0.1:${client[$leader]}" --command-timeout=15s \
  move-leader "${id[$down]}" >"$tmp/kvctl.out" 2>&1 &
kvctl_pid=$!
expect "etcdctl move-leader to a member that is down times out" 1 \
  "Error: rpc error: code = Unknown desc = etcdserver: request timed out, leader transfer took too long$" \
  "$etcdctl" --endpoints="127.0.0.1:${client[$leader]}" --command-timeout=15s \
  move-leader "${id[$down]}"
took_ms=$((($(date +%s%N) - started) / 1000000))
if [ "$took_ms" -ge 4500 ] && [ "$took_ms" -le 12000 ]; then
  ok "answered after the 5 s request timeout (${took_ms} ms)"
else
  fail "answered after the 5 s request timeout" "took ${took_ms} ms"
fi
kvctl_code=0
wait "$kvctl_pid" || kvctl_code=$?
if [ "$kvctl_code" = 1 ] &&
  grep -q "^Error: .*etcdserver: request timed out, leader transfer took too long (${id[$down]} did not lead within 100 ticks)$" "$tmp/kvctl.out"; then
  ok "kvctl move-leader to a member that is down times out"
else
  fail "kvctl move-leader to a member that is down times out" "exit $kvctl_code: $(cat "$tmp/kvctl.out")"
fi
status_of "$leader"
[ "${lead[$leader]}" = "${id[$leader]}" ] && ok "the leader still leads" ||
  fail "the leader still leads" "m$leader sees ${lead[$leader]:-none}"

# SIGTERM: the leader hands over to the live follower and waits until it leads, then exits 0.
start "$down"
if [ "$(leader_among 1 2 3)" != "$leader" ]; then
  fail "the restarted member rejoins" "$(tail -n 5 "$tmp/m$down.log")"
fi
kill -TERM "${pid[$leader]}"
# Until it has exited (a zombie, not yet reaped) or 15 s have passed.
for _ in $(seq 1 150); do
  state=$(awk '{print $3}' "/proc/${pid[$leader]}/stat" 2>/dev/null || echo gone)
  [ "$state" = Z ] || [ "$state" = gone ] && break
  sleep 0.1
done
[ "$state" = Z ] || [ "$state" = gone ] || kill -9 "${pid[$leader]}"
code=0
wait "${pid[$leader]}" || code=$?
pid[$leader]=
if [ "$code" = 0 ] && grep -q '"msg":"leadership transferred"' "$tmp/m$leader.log"; then
  ok "SIGTERM: the leader hands leadership over, then exits 0"
else
  fail "SIGTERM: the leader hands leadership over, then exits 0" "exit $code" \
    "$(grep -i 'leader\|stop' "$tmp/m$leader.log" | tail -n 8)"
fi
survivors=()
for i in 1 2 3; do [ "$i" != "$leader" ] && survivors+=("$i"); done
new=$(leader_among "${survivors[@]}")
if [ "$new" != 0 ]; then
  ok "m$new leads after the hand-over"
else
  fail "a survivor leads after the hand-over"
fi
expect "a put after the hand-over" 0 "^OK$" \
  "$etcdctl" --endpoints="127.0.0.1:${client[${survivors[0]}]},127.0.0.1:${client[${survivors[1]}]}" \
  put after-handover yes

if [ "$failures" -gt 0 ]; then
  echo "move_leader_test: $failures failed"
  exit 1
fi
echo "move_leader_test: all passed"
