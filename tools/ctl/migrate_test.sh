#!/usr/bin/env bash
# kvctl member migrate on a real three-member kvnode cluster (free loopback ports): the leader
# is replaced by a new member, added as learner, refused promotion until it has caught up, then
# promoted, then the old member removed; the cluster serves throughout and the new member holds
# what was written before it joined. A first run whose learner never starts times out, leaving
# the learner, and a second run resumes with it. Every node is killed at the end (trap).
set -uo pipefail
root="$TEST_SRCDIR/$TEST_WORKSPACE"
kvnode="$root/node/kvnode"
kvctl="$root/tools/ctl/kvctl"
dir="${TEST_TMPDIR:-$(mktemp -d)}"
failures=0

source "$root/tools/testing/ports.sh"

declare -A pid client_port
cleanup() {
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT

# start NAME CLUSTER STATE: kvnode NAME with --initial-cluster CLUSTER (new or existing).
start() {
  local peer="http://127.0.0.1:$((client_port[$1] + 1))"
  "$kvnode" --name "$1" --data-dir "$dir/$1" --initial-cluster "$2" --initial-cluster-state "$3" \
    --listen-client-urls "http://127.0.0.1:${client_port[$1]}" \
    --advertise-client-urls "http://127.0.0.1:${client_port[$1]}" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" >"$dir/$1.log" 2>&1 &
  pid[$1]=$!
}
peer_url() { echo "http://127.0.0.1:$((client_port[$1] + 1))"; }
cluster=""
for n in n1 n2 n3; do
  client_port[$n]=$(free_port_pair)
  cluster="${cluster:+$cluster,}$n=$(peer_url $n)"
done
for n in n1 n2 n3; do start $n "$cluster" new; done
endpoints() {
  local e="" n
  for n in "$@"; do e="${e:+$e,}127.0.0.1:${client_port[$n]}"; done
  echo "$e"
}
ctl() { "$kvctl" --endpoints "$(endpoints n1 n2 n3)" --dial-timeout 1s --command-timeout 2s "$@"; }

wait_until() {  # wait_until SECONDS COMMAND...: true once COMMAND succeeds
  local deadline=$((SECONDS + $1))
  shift
  while ((SECONDS < deadline)); do
    "$@" && return 0
    sleep 0.1
  done
  "$@"
}
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
done_or_exit() {
  if [ $failures -gt 0 ]; then
    echo "$failures failures; logs:"
    tail -n 5 "$dir"/*.log
    exit 1
  fi
}

if ! wait_until 10 ctl put before-0 v >/dev/null 2>&1; then
  echo "FAIL: the cluster did not serve within 10 s"
  cat "$dir"/*.log
  exit 1
fi
for i in $(seq 1 30); do ctl put "before-$i" "v$i" >/dev/null || fail "put before-$i"; done
# The leader: endpoint status's fifth column.
leader_id=$(ctl endpoint status | awk -F', ' '$5 == "true" {print $2}')
leader=$(ctl member list | awk -F', ' -v id="$leader_id" '$1 == id {print $3}')
[ -n "$leader" ] || fail "no leader found"

# --- bad arguments -------------------------------------------------------------------------------
out=$(ctl member migrate 1234 n4 --peer-urls="$(peer_url n1)" 2>&1)
[ $? = 1 ] && [ "$out" = "Error: member 1234 is not in the cluster" ] || fail "unknown member: $out"
out=$(ctl member migrate "$leader_id" n4 2>&1 | head -1)
[ "$out" = "Error: member peer urls not provided" ] || fail "no peer URLs: $out"

# --- a learner that never starts: the wait times out and the learner stays ----------------------
client_port[n4]=$(free_port_pair)
out=$(ctl member migrate "$leader_id" n4 --peer-urls="$(peer_url n4)" --wait-timeout=1s 2>&1)
rc=$?
[ $rc = 1 ] && [[ "$out" == *"Error: member "*" did not catch up within 1s"*"it stays a learner"* ]] ||
  fail "timeout: exit $rc: $out"
learner_id=$(ctl member list | awk -F', ' '$6 == "true" {print $1}')
[ -n "$learner_id" ] || fail "the learner was not left in the cluster: $(ctl member list)"

# --- migrate the leader to n4: resumes with the learner, waits until n4 has caught up ------------
ctl member migrate "$leader_id" n4 --peer-urls="$(peer_url n4)" --wait-timeout=20s \
  >"$dir/migrate.out" 2>&1 &
migrate=$!
waiting() { grep -q "^Waiting for member $learner_id to catch up" "$dir/migrate.out"; }
wait_until 10 waiting || fail "migrate did not start waiting: $(cat "$dir/migrate.out")"
start n4 "$cluster,n4=$(peer_url n4)" existing
wait "$migrate"
rc=$?
[ $rc = 0 ] || fail "migrate exited $rc"
check_out() {
  local want
  want=$(cat)
  mapfile -t want_lines <<<"$want"
  mapfile -t got_lines <"$dir/migrate.out"
  local i
  if [ ${#want_lines[@]} != ${#got_lines[@]} ]; then
    fail "migrate output: $(cat "$dir/migrate.out")"
    return
  fi
  for i in "${!want_lines[@]}"; do
    [[ "${got_lines[$i]}" =~ ^${want_lines[$i]}$ ]] ||
      fail "migrate output line $((i + 1)): ${got_lines[$i]}"
  done
}
# Refusals while it catches up, if any, are printed as they change.
sed -i '/^  LEARNER_NOT_READY: /d' "$dir/migrate.out"
check_out <<EOF
Member +$learner_id with peer URLs $(peer_url n4) is already in the cluster as learner: resuming
Waiting for member $learner_id to catch up \(at most 20s\)
Member +$learner_id promoted in cluster
Member +$leader_id removed from cluster
Migrated: member $learner_id replaced member $leader_id; stop the old member's kvnode and point clients at the new member's client URLs
EOF
kill "${pid[$leader]}"
unset "pid[$leader]"

# --- the cluster: three voters without the old leader, serving; n4 holds the old writes --------
rest=()
for n in n1 n2 n3 n4; do [ "$n" != "$leader" ] && rest+=("$n"); done
now() { "$kvctl" --endpoints "$(endpoints "${rest[@]}")" --dial-timeout 1s --command-timeout 2s "$@"; }
three_voters() {
  [ "$(now member list | awk -F', ' '$6 == "false"' | wc -l)" = 3 ] &&
    ! now member list | grep -q "^$leader_id," && ! now member list | grep -q ', true$'
}
wait_until 10 three_voters || fail "member list after migrate: $(now member list)"
wait_until 10 now put after 1 >/dev/null 2>&1 || fail "the cluster does not serve after migrate"
on_n4() { "$kvctl" --endpoints "$(endpoints n4)" --dial-timeout 1s --command-timeout 2s "$@"; }
has_all() {
  [ "$(on_n4 get before-30 --print-value-only --consistency=s)" = v30 ] &&
    [ "$(on_n4 get after --print-value-only --consistency=s)" = 1 ]
}
wait_until 10 has_all || fail "n4 lacks the cluster's keys: $(on_n4 get before-30 2>&1)"

done_or_exit
echo PASS
