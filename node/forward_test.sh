#!/usr/bin/env bash
# Leader-only requests sent to a follower of a real three-member kvnode cluster are forwarded to
# the leader, as etcd forwards them: lease keep-alive and time-to-live (etcdctl 3.4.23 and kvctl)
# and member promote (the leader's refusal of a learner that is behind comes back through the
# follower); a JSON-gateway watch with progress_notify gets progress reports. With the majority
# down the follower has no leader, and keep-alive fails within etcd's request timeout (5 s plus
# two election timeouts) with etcd's "etcdserver: no leader".
set -euo pipefail

kvnode=${1:?usage: forward_test.sh path/to/kvnode path/to/kvctl}
kvctl=${2:?usage: forward_test.sh path/to/kvnode path/to/kvctl}
etcdctl=${ETCDCTL:-etcdctl}
export ETCDCTL_API=3
tmp=${TEST_TMPDIR:-$(mktemp -d)}
failures=0

source "$(dirname "$0")/../tools/testing/cluster.sh"
three_members f
cleanup_extra() { [ -n "${watch_pid:-}" ] && kill "$watch_pid" 2>/dev/null || true; }
for i in 1 2 3; do
  start_member "$i" --experimental-watch-progress-notify-interval 300ms --log-level error
done


# The leader and a follower, once every member agrees on a leader.
leader=
follower=
for _ in $(seq 1 100); do
  leaders=()
  ids=()
  for i in 1 2 3; do
    status=$("$etcdctl" --endpoints="127.0.0.1:${client[$i]}" --command-timeout=1s \
      endpoint status -w json 2>/dev/null || true)
    leaders[$i]=$(grep -o '"leader":[0-9]*' <<<"$status" | cut -d: -f2 || true)
    ids[$i]=$(grep -o '"member_id":[0-9]*' <<<"$status" | cut -d: -f2 || true)
  done
  if [ -n "${leaders[1]}" ] && [ "${leaders[1]}" = "${leaders[2]}" ] &&
    [ "${leaders[2]}" = "${leaders[3]}" ] && [ "${leaders[1]}" != 0 ]; then
    for i in 1 2 3; do
      if [ "${ids[$i]}" = "${leaders[1]}" ]; then leader=$i; elif [ -z "$follower" ]; then follower=$i; fi
    done
    [ -n "$leader" ] && [ -n "$follower" ] && break
    leader=
    follower=
  fi
  sleep 0.1
done
if [ -z "$leader" ]; then
  fail "cluster elects a leader" "statuses: ${leaders[*]:-}"
  exit 1
fi
ok "cluster elects a leader (f$leader; follower f$follower)"
at_follower="127.0.0.1:${client[$follower]}"

lease=$("$etcdctl" --endpoints="127.0.0.1:${client[$leader]}" lease grant 100 | awk '{print $2}')
"$etcdctl" --endpoints="127.0.0.1:${client[$leader]}" put k v --lease="$lease" >/dev/null

expect "etcdctl lease keep-alive --once at a follower" 0 "^lease $lease keepalived with TTL\(100\)$" \
  "$etcdctl" --endpoints="$at_follower" lease keep-alive --once "$lease"
expect "etcdctl lease timetolive --keys at a follower" 0 \
  "^lease $lease granted with TTL\(100s\), remaining\((99|100)s\), attached keys\(\[k\]\)$" \
  "$etcdctl" --endpoints="$at_follower" lease timetolive --keys "$lease"
expect "etcdctl keep-alive of a missing lease at a follower" 2 \
  "^Error: etcdserver: requested lease not found$" \
  "$etcdctl" --endpoints="$at_follower" lease keep-alive --once 1234
expect "etcdctl timetolive of a missing lease at a follower" 0 "^lease 0000000000001234 already expired$" \
  "$etcdctl" --endpoints="$at_follower" lease timetolive 1234
expect "kvctl lease keep-alive --once at a follower" 0 "^lease $lease keepalived with TTL\(100\)$" \
  "$kvctl" --endpoints="$at_follower" lease keep-alive --once "$lease"
expect "kvctl lease timetolive --keys at a follower" 0 \
  "^lease $lease granted with TTL\(100s\), remaining\((99|100)s\), attached keys\(\[k\]\)$" \
  "$kvctl" --endpoints="$at_follower" lease timetolive --keys "$lease"

# Member promote: a learner that never started is behind, which only the leader can tell.
learner_port=$(free_port)
added=$("$etcdctl" --endpoints="127.0.0.1:${client[$leader]}" member add learner --learner \
  --peer-urls="http://127.0.0.1:$learner_port" 2>&1 || true)
learner=$(sed -n 's/^Member *\([0-9a-f]*\) added.*/\1/p' <<<"$added")
[ -n "$learner" ] || fail "member add --learner" "$added"
expect "etcdctl member promote at a follower reaches the leader" 1 \
  "etcdserver: can only promote a learner member which is in sync with leader" \
  "$etcdctl" --endpoints="$at_follower" member promote "$learner"
expect "kvctl member promote at a follower reaches the leader" 1 \
  "^Error: LEARNER_NOT_READY: member promote: learner [0-9]+ has 0 of the leader's" \
  "$kvctl" --endpoints="$at_follower" member promote "$learner"
"$etcdctl" --endpoints="127.0.0.1:${client[$leader]}" member remove "$learner" >/dev/null

# A JSON-gateway watch with progress_notify at the follower: reports without events.
curl -s -N --max-time 2 "http://$at_follower/v3/watch" -X POST \
  -d '{"create_request": {"key":"d2F0Y2hlZA==", "progress_notify": true}}' >"$tmp/watch.out" || true
reports=$(grep -c '"result":{"header":{[^}]*}}' "$tmp/watch.out" || true)
if [ "$reports" -ge 2 ]; then
  ok "gateway watch with progress_notify gets progress reports ($reports in 2 s)"
else
  fail "gateway watch with progress_notify gets progress reports" "$(cat "$tmp/watch.out")"
fi

# The majority down: the follower loses its leader and answers etcd's errors in bounded time.
for i in 1 2 3; do
  if [ "$i" != "$follower" ]; then
    kill -9 "${pid[$i]}"
    wait "${pid[$i]}" 2>/dev/null || true
    pid[$i]=
  fi
done
start=$(date +%s)
expect "etcdctl keep-alive at a follower without a leader" 2 "^Error: etcdserver: no leader$" \
  "$etcdctl" --endpoints="$at_follower" lease keep-alive --once "$lease"
elapsed=$(($(date +%s) - start))
if [ "$elapsed" -le 10 ]; then
  ok "it failed within etcd's request timeout (${elapsed} s)"
else
  fail "it failed within etcd's request timeout" "took ${elapsed} s"
fi
start=$(date +%s)
expect "kvctl timetolive at a follower without a leader" 1 "no leader|request timed out|deadline" \
  "$kvctl" --endpoints="$at_follower" lease timetolive "$lease"
elapsed=$(($(date +%s) - start))
if [ "$elapsed" -le 15 ]; then
  ok "kvctl gave up in bounded time (${elapsed} s)"
else
  fail "kvctl gave up in bounded time" "took ${elapsed} s"
fi

if [ "$failures" -gt 0 ]; then
  echo "$failures failed"
  exit 1
fi
echo "all passed"
