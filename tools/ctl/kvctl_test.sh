#!/usr/bin/env bash
# kvctl and kvbench against a real kvnode on free loopback ports: every kvctl verb the README
# shows, checked against etcdctl's output shapes (golden text where it is stable, one regular
# expression per line where ids, terms and timings vary), then a short kvbench run. The node is
# killed at the end whatever happens (trap).
set -uo pipefail
root="$TEST_SRCDIR/$TEST_WORKSPACE"
kvnode="$root/node/kvnode"
kvctl="$root/tools/ctl/kvctl"
kvbench="$root/tools/bench/kvbench"
dir="${TEST_TMPDIR:-$(mktemp -d)}"
failures=0

source "$root/tools/testing/ports.sh"
client_port=$(free_port_pair)
peer_port=$((client_port + 1))
endpoint="127.0.0.1:$client_port"
peer_url="http://127.0.0.1:$peer_port"

"$kvnode" --name n1 --data-dir "$dir/data" \
  --listen-client-urls "http://$endpoint" --advertise-client-urls "http://$endpoint" \
  --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
  --initial-cluster "n1=$peer_url" >"$dir/node.log" 2>&1 &
node=$!
background=()
cleanup() {
  for pid in "${background[@]}" "$node"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT

ctl() { "$kvctl" --endpoints "$endpoint" --dial-timeout 1s --command-timeout 3s "$@"; }

for _ in $(seq 100); do
  ctl endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done
if ! ctl endpoint health >/dev/null 2>&1; then
  echo "FAIL: kvnode did not serve within 10 s:"
  sed 's/^/    /' "$dir/node.log"
  exit 1
fi

fail() {  # fail NAME WANT GOT RC WANT_RC
  echo "FAIL: $1: exit $4 (wanted $5)"
  diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | sed 's/^/    /'
  failures=$((failures + 1))
}

# check NAME WANT_EXIT -- COMMAND...: stdout and stderr together equal the text on stdin.
check() {
  local name="$1" want_rc="$2" want got rc
  shift 3
  want=$(cat)
  got=$("$@" 2>&1)
  rc=$?
  if [ "$rc" != "$want_rc" ] || [ "$got" != "$want" ]; then
    fail "$name" "$want" "$got" "$rc" "$want_rc"
  fi
}

# check_re NAME WANT_EXIT -- COMMAND...: as many output lines as stdin has, each matching its
# line of stdin as a whole (an extended regular expression).
check_re() {
  local name="$1" want_rc="$2" want got rc ok=1 i
  shift 3
  want=$(cat)
  got=$("$@" 2>&1)
  rc=$?
  mapfile -t want_lines <<<"$want"
  mapfile -t got_lines <<<"$got"
  if [ "$rc" != "$want_rc" ] || [ ${#want_lines[@]} != ${#got_lines[@]} ]; then
    ok=0
  else
    for i in "${!want_lines[@]}"; do
      [[ "${got_lines[$i]}" =~ ^${want_lines[$i]}$ ]] || ok=0
    done
  fi
  [ $ok = 1 ] || fail "$name" "$want" "$got" "$rc" "$want_rc"
}

member_id=$(ctl member list | cut -d, -f1)

# --- put and get ---------------------------------------------------------------------------------
check "put" 0 -- ctl put foo bar <<<"OK"
check "put --prev-kv" 0 -- ctl put foo baz --prev-kv <<'EOF'
OK
foo
bar
EOF
check "put from stdin" 0 -- sh -c "printf v1 | \"$kvctl\" --endpoints $endpoint put a" <<<"OK"
check "put b" 0 -- ctl put b 2 <<<"OK"
check "get" 0 -- ctl get foo <<<$'foo\nbaz'
check "get --prefix --keys-only" 0 -- ctl get "" --prefix --keys-only <<<$'a\n\nb\n\nfoo'
check "get --print-value-only" 0 -- ctl get a --print-value-only <<<"v1"
check "get --count-only" 0 -- ctl get "" --from-key --count-only <<<"3"
check "get --sort-by --order --limit" 0 -- \
  ctl get "" --prefix --sort-by=VALUE --order=DESCEND --limit 2 <<<$'a\nv1\nfoo\nbaz'
check "get a range" 0 -- ctl get a c <<<$'a\nv1\nb\n2'
check "get --rev" 0 -- ctl get foo --rev 2 <<<$'foo\nbar'
check_re "get -w json" 0 -- ctl get foo -w json <<EOF
\{"header":\{"member_id":[0-9]+,"revision":5,"raft_term":[0-9]+\},"kvs":\[\{"key":"Zm9v","create_revision":2,"mod_revision":3,"version":2,"value":"YmF6"\}\],"count":1\}
EOF
check "get -w table" 1 -- ctl get foo -w table <<<"Error: table not supported as output format"
# Usage errors: the message, then the command's usage (first_line keeps the message).
first_line() {
  "$@" 2>&1 | head -1
  return "${PIPESTATUS[0]}"
}
check "get without a key" 1 -- first_line ctl get \
  <<<"Error: get command needs one argument as key and an optional argument as range_end"
check "unknown flag" 1 -- first_line ctl get foo --bogus <<<"Error: unknown flag: --bogus"

# --- del and txn ---------------------------------------------------------------------------------
check "del --prev-kv" 0 -- ctl del a --prev-kv <<<$'1\na\nv1'
check "del of nothing" 0 -- ctl del zz <<<"0"
check "txn from stdin" 0 -- sh -c "printf '%s\n' 'mod(\"foo\") > \"0\"' 'value(\"b\") = \"2\"' '' \
  'put x y' 'get b' 'del b' '' 'put z w' '' | \"$kvctl\" --endpoints $endpoint txn" <<'EOF'
SUCCESS

OK

b
2

1
EOF
check "txn failure branch" 0 -- sh -c "printf '%s\n' 'version(\"foo\") = \"9\"' '' 'put x y' '' \
  'put z w' 'get --prefix \"\"' | \"$kvctl\" --endpoints $endpoint txn" <<'EOF'
FAILURE

OK

foo
baz
x
y
z
w
EOF
check "txn malformed compare" 1 -- sh -c "printf 'bad\n\n\n' | \"$kvctl\" --endpoints $endpoint txn" \
  <<<"Error: malformed comparison: bad"

# --- leases --------------------------------------------------------------------------------------
lease=$(ctl lease grant 60 | sed -n 's/^lease \([0-9a-f]\{16\}\) granted with TTL(60s)$/\1/p')
if [ -z "$lease" ]; then
  echo "FAIL: lease grant printed no lease id"
  failures=$((failures + 1))
fi
check "put --lease" 0 -- ctl put held v --lease "$lease" <<<"OK"
check_re "lease timetolive --keys" 0 -- ctl lease timetolive "$lease" --keys <<EOF
lease $lease granted with TTL\(60s\), remaining\([0-9]+s\), attached keys\(\[held\]\)
EOF
check "lease list" 0 -- ctl lease list <<<$'found 1 leases\n'"$lease"
check "lease keep-alive --once" 0 -- ctl lease keep-alive --once "$lease" \
  <<<"lease $lease keepalived with TTL(60)"
check "lease revoke" 0 -- ctl lease revoke "$lease" <<<"lease $lease revoked"
check "the lease's key went with it" 0 -- ctl get held </dev/null
check "lease timetolive of a revoked lease" 0 -- ctl lease timetolive "$lease" \
  <<<"lease $lease already expired"

# --- cluster and maintenance ---------------------------------------------------------------------
check "member list" 0 -- ctl member list <<<"$member_id, started, n1, $peer_url, , false"
check_re "member list -w table" 0 -- ctl member list -w table <<EOF
\+-+\+---------\+------\+-+\+--------------\+------------\+
\| +ID +\| STATUS  \| NAME \| +PEER ADDRS +\| CLIENT ADDRS \| IS LEARNER \|
\+-+\+---------\+------\+-+\+--------------\+------------\+
\| +$member_id \| started \|   n1 \| $peer_url \|              \|      false \|
\+-+\+---------\+------\+-+\+--------------\+------------\+
EOF
# etcdctl's "Member %16x": an id of fewer than 16 hex digits (1 in 16) is padded with spaces.
check "member update" 0 -- ctl member update "$member_id" --peer-urls "$peer_url" \
  <<<"$(printf 'Member %16s updated in cluster' "$member_id")"
check_re "member update of an unknown member" 1 -- ctl member update 1234 \
  --peer-urls http://127.0.0.1:1 <<'EOF'
Error: .*member update: no member 4660.*
EOF
check_re "member replace by a URL in use" 1 -- ctl member replace "$member_id" \
  --peer-urls "$peer_url" <<EOF
Error: .*peer URL $peer_url is member .*
EOF
check_re "endpoint status -w table" 0 -- ctl endpoint status -w table <<EOF
\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+
\| +ENDPOINT +\| +ID +\| VERSION \| DB SIZE \| IS LEADER \| IS LEARNER \| RAFT TERM \| RAFT INDEX \| RAFT APPLIED INDEX \| ERRORS \|
\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+
\| $endpoint \| +$member_id \| +[0-9.]+ \| +[0-9.]+ [kMG]?B \| +true \| +false \| +[0-9]+ \| +[0-9]+ \| +[0-9]+ \| +\|
\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+-+\+
EOF
check_re "endpoint health -w table" 0 -- ctl endpoint health -w table <<EOF
\+-+\+--------\+-+\+-------\+
\| +ENDPOINT +\| HEALTH \| +TOOK +\| ERROR \|
\+-+\+--------\+-+\+-------\+
\| $endpoint \|   true \| +[0-9.]+(ns|µs|ms|s) \|       \|
\+-+\+--------\+-+\+-------\+
EOF
check_re "endpoint health" 0 -- ctl endpoint health <<EOF
$endpoint is healthy: successfully committed proposal: took = [0-9.]+(ns|µs|ms|s)
EOF
# A member that is down costs its own row and the exit code, not the others' answers.
dead_port=$(free_port_pair)
check_re "endpoint health with a member down" 1 -- \
  "$kvctl" --endpoints "$endpoint,127.0.0.1:$dead_port" endpoint health -w table <<EOF
\+-+\+--------\+-+\+-+\+
\| +ENDPOINT +\| HEALTH \| +TOOK +\| +ERROR +\|
\+-+\+--------\+-+\+-+\+
\| +$endpoint \|   true \| +[0-9.]+(ns|µs|ms|s) \| +\|
\| +127.0.0.1:$dead_port \|  false \| +[0-9.]+(ns|µs|ms|s) \| .*Connection refused \|
\+-+\+--------\+-+\+-+\+
Error: unhealthy cluster
EOF
check "compaction" 0 -- ctl compaction 3 <<<"compacted revision 3"
check_re "compaction again" 1 -- ctl compaction 3 <<<"Error: COMPACTED: .*"
check "compaction --physical" 0 -- ctl compaction --physical 4 <<<"compacted revision 4"
check "defrag" 0 -- ctl defrag <<<"Finished defragmenting etcd member[$endpoint]"
check "alarm list" 0 -- ctl alarm list </dev/null
check "snapshot save" 0 -- ctl snapshot save "$dir/snapshot.db" <<<"Snapshot saved at $dir/snapshot.db"
if [ ! -s "$dir/snapshot.db" ] || [ -e "$dir/snapshot.db.part" ]; then
  echo "FAIL: snapshot save left no snapshot, or its .part file"
  failures=$((failures + 1))
fi
check "move-leader to itself" 0 -- ctl move-leader "$member_id" \
  <<<"Leadership transferred from $member_id to $member_id"

# --- watch ---------------------------------------------------------------------------------------
# History is replayed from --rev, so this output does not depend on timing; SIGTERM ends it
# cleanly (exit 0).
rev=$(ctl put w 1 -w json | sed 's/.*"revision":\([0-9]*\).*/\1/')
ctl put w 2 >/dev/null
check "watch --rev --prev-kv" 0 -- timeout --preserve-status -s TERM 1 \
  "$kvctl" --endpoints "$endpoint" watch w --rev "$rev" --prev-kv <<'EOF'
PUT
w
1
PUT
w
1
w
2
EOF
# A live watch on a prefix sees a put made after it started.
"$kvctl" --endpoints "$endpoint" watch --prefix live >"$dir/watch.out" 2>&1 &
watcher=$!
background+=("$watcher")
sleep 0.5
ctl put live/1 x >/dev/null
sleep 0.3
kill -TERM "$watcher"
wait "$watcher"
check "watch --prefix" 0 -- cat "$dir/watch.out" <<<$'PUT\nlive/1\nx'

# --- lock and elect ------------------------------------------------------------------------------
check_re "lock with a command" 0 -- ctl lock job sh -c 'echo "$ETCD_LOCK_KEY $ETCD_LOCK_REV"' <<'EOF'
job/[0-9a-f]+ [0-9]+
EOF
# The second holder waits for the first and gets a larger create revision: the fencing token.
"$kvctl" --endpoints "$endpoint" lock mutex >"$dir/first.out" 2>&1 &
first=$!
background+=("$first")
sleep 0.5
"$kvctl" --endpoints "$endpoint" lock mutex >"$dir/second.out" 2>&1 &
second=$!
background+=("$second")
sleep 0.5
if [ -s "$dir/second.out" ]; then
  echo "FAIL: lock: the second holder got the lock while the first held it"
  failures=$((failures + 1))
fi
kill -TERM "$first"
wait "$first"
for _ in $(seq 30); do
  [ "$(wc -l <"$dir/second.out")" -ge 2 ] && break
  sleep 0.1
done
kill -TERM "$second"
wait "$second"
first_rev=$(sed -n 2p "$dir/first.out")
second_rev=$(sed -n 2p "$dir/second.out")
if ! [[ "$(head -1 "$dir/first.out")" =~ ^mutex/[0-9a-f]+$ ]] ||
  ! [[ "$first_rev" =~ ^[0-9]+$ && "$second_rev" =~ ^[0-9]+$ ]] ||
  [ "$second_rev" -le "$first_rev" ]; then
  echo "FAIL: lock: fencing tokens not increasing:"
  sed 's/^/    first: /' "$dir/first.out"
  sed 's/^/    second: /' "$dir/second.out"
  failures=$((failures + 1))
fi
check "locks are released" 0 -- ctl get --prefix mutex/ </dev/null
check_re "elect" 0 -- timeout --preserve-status -s TERM 1 \
  "$kvctl" --endpoints "$endpoint" elect ballot proposal-1 <<'EOF'
ballot/[0-9a-f]+
proposal-1
[0-9]+
EOF
# An observer (elect -l) started with no candidate waits for the first and prints it.
"$kvctl" --endpoints "$endpoint" elect -l ballot >"$dir/observe.out" 2>&1 &
observer=$!
background+=("$observer")
sleep 0.3
timeout --preserve-status -s TERM 1 "$kvctl" --endpoints "$endpoint" elect ballot proposal-2 \
  >/dev/null 2>&1
for _ in $(seq 30); do
  [ "$(wc -l <"$dir/observe.out")" -ge 2 ] && break
  sleep 0.1
done
kill -TERM "$observer"
wait "$observer"
check_re "elect -l" 0 -- cat "$dir/observe.out" <<'EOF'
ballot/[0-9a-f]+
proposal-2
EOF

# --- user, role, auth: etcdctl 3.4.23's output against etcd 3.4, word for word ------------------
check "user add" 0 -- ctl user add root:rootpw <<<"User root created"
check "user add taken" 1 -- ctl user add root:x <<<"Error: etcdserver: user name already exists"
check "role add" 0 -- ctl role add r1 <<<"Role r1 created"
check "role add taken" 1 -- ctl role add r1 <<<"Error: etcdserver: role name already exists"
check "auth enable adds role root" 0 -- ctl auth enable <<<"Authentication Enabled"
check "no user" 1 -- ctl get k1 <<<"Error: etcdserver: user name is empty"
root=(--user root:rootpw)
check "grant read" 0 -- ctl "${root[@]}" role grant-permission r1 read k1 <<<"Role r1 updated"
check "grant --prefix" 0 -- ctl "${root[@]}" role grant-permission r1 --prefix readwrite p/ \
  <<<"Role r1 updated"
check "grant --from-key" 0 -- ctl "${root[@]}" role grant-permission r1 --from-key write z \
  <<<"Role r1 updated"
check "grant range" 0 -- ctl "${root[@]}" role grant-permission r1 write a c <<<"Role r1 updated"
check "role get" 0 -- ctl "${root[@]}" role get r1 <<'EOF'
Role r1
KV Read:
	k1
	[p/, p0) (prefix p/)
KV Write:
	[a, c)
	[p/, p0) (prefix p/)
	[z, <open ended>
EOF
check "role list" 0 -- ctl "${root[@]}" role list <<<$'r1\nroot'
check "user add as root" 0 -- ctl "${root[@]}" user add u:upw <<<"User u created"
check "grant-role" 0 -- ctl "${root[@]}" user grant-role u r1 <<<"Role r1 is granted to user u"
check "user get" 0 -- ctl "${root[@]}" user get u <<<$'User: u\nRoles: r1'
check "user list" 0 -- ctl "${root[@]}" user list <<<$'root\nu'
check "denied" 1 -- ctl --user u:upw put k1 v <<<"Error: etcdserver: permission denied"
check "bad password" 2 -- ctl --user u:bad get k1 \
  <<<"Error: etcdserver: authentication failed, invalid user ID or password"
check "permitted write" 0 -- ctl --user u:upw put p/x 1 <<<"OK"
check "permitted read" 0 -- ctl --user u:upw get p/x <<<$'p/x\n1'
# etcd 3.4's alarms check no one's rights; the other maintenance commands are root only.
check "alarm list is any user's" 0 -- ctl --user u:upw alarm list </dev/null
# The commands that ask each endpoint carry --user's token too; etcd's snapshot is root only.
check "defrag is root only" 1 -- ctl --user u:upw defrag \
  <<<"Failed to defragment etcd member[$endpoint] (etcdserver: permission denied)"
check "defrag as root" 0 -- ctl "${root[@]}" defrag <<<"Finished defragmenting etcd member[$endpoint]"
check "hashkv is root only" 1 -- ctl --user u:upw endpoint hashkv \
  <<<"Failed to get the hash of endpoint $endpoint (etcdserver: permission denied)"
check_re "hashkv as root" 0 -- ctl "${root[@]}" endpoint hashkv <<<"$endpoint, [0-9]+"
check "snapshot save without a user" 1 -- ctl snapshot save "$dir/anonymous.db" \
  <<<"Error: etcdserver: user name is empty"
check "snapshot save is root only" 1 -- ctl --user u:upw snapshot save "$dir/denied.db" \
  <<<"Error: etcdserver: permission denied"
if [ -e "$dir/anonymous.db" ] || [ -e "$dir/denied.db" ] || [ -e "$dir/denied.db.part" ]; then
  echo "FAIL: a refused snapshot save left a file"
  failures=$((failures + 1))
fi
check "snapshot save as root" 0 -- ctl "${root[@]}" snapshot save "$dir/root.db" \
  <<<"Snapshot saved at $dir/root.db"
check "revoke key" 0 -- ctl "${root[@]}" role revoke-permission r1 k1 \
  <<<"Permission of key k1 is revoked from role r1"
check "revoke again" 1 -- ctl "${root[@]}" role revoke-permission r1 k1 \
  <<<"Error: etcdserver: permission is not granted to the role"
check "revoke prefix" 0 -- ctl "${root[@]}" role revoke-permission r1 p/ --prefix \
  <<<"Permission of range [p/, p0) is revoked from role r1"
check "revoked at once" 1 -- ctl --user u:upw get p/x <<<"Error: etcdserver: permission denied"
check "revoke-role" 0 -- ctl "${root[@]}" user revoke-role u r1 <<<"Role r1 is revoked from user u"
check "passwd" 0 -- sh -c "echo newpw | \"$kvctl\" --endpoints $endpoint --user root:rootpw \
  user passwd u --interactive=false" <<<"Password updated"
check "new password (authenticated, no roles left)" 1 -- ctl --user u:newpw get k1 \
  <<<"Error: etcdserver: permission denied"
check "user delete" 0 -- ctl "${root[@]}" user delete u <<<"User u deleted"
check "user delete again" 1 -- ctl "${root[@]}" user delete u \
  <<<"Error: etcdserver: user name not found"
check "role delete" 0 -- ctl "${root[@]}" role delete r1 <<<"Role r1 deleted"
check "root stays" 1 -- ctl "${root[@]}" user delete root \
  <<<"Error: etcdserver: invalid auth management"
check "auth disable" 0 -- ctl "${root[@]}" auth disable <<<"Authentication Disabled"
check "open again" 0 -- ctl get p/x <<<$'p/x\n1'

# --- replies larger than a request may be -------------------------------------------------------
# Two 1 MiB values: a range and a watch's catch-up over both (2 MiB) exceed the member's request
# limit (1.5 MiB plus envelope), which bounds what it reads, not what it answers.
big=$(head -c 1048576 /dev/zero | tr '\0' x)
base_rev=$(ctl get "" --from-key --count-only -w json | sed -n 's/.*"revision":\([0-9]*\).*/\1/p')
printf '%s' "$big" | ctl put /big/1 >/dev/null
printf '%s' "$big" | ctl put /big/2 >/dev/null
check "get of 2 MiB" 0 -- sh -c "\"$kvctl\" --endpoints $endpoint get /big/ --prefix | wc -c" \
  <<<"$(((7 + 1048577) * 2))"
check "watch catching up on 2 MiB" 0 -- sh -c "timeout 5 \"$kvctl\" --endpoints $endpoint watch \
  /big/ --prefix --rev $((base_rev + 1)) | grep -c '^PUT\$'; true" <<<"2"
ctl del /big/ --prefix >/dev/null
# A put over the member's reader limit (--max-request-bytes 1.5 MiB plus 512 KiB of envelope)
# is refused with etcd's words and the sizes, not a broken pipe; the next request is served.
head -c 3145728 /dev/zero | tr '\0' x >"$dir/huge"
check_re "put over the request limit" 1 -- sh -c "\"$kvctl\" --endpoints $endpoint put /big/huge \
  <\"$dir/huge\"" <<'EOF'
Error: REQUEST_TOO_LARGE: etcdserver: request is too large \(a message of [0-9]+ bytes; this member reads at most 2097152\)
EOF
check "put after the refusal" 0 -- ctl put /big/after ok <<<"OK"
ctl del /big/ --prefix >/dev/null

# --- kvbench -------------------------------------------------------------------------------------
check_re "kvbench put" 0 -- sh -c "\"$kvbench\" --endpoints $endpoint --conns 2 --clients 4 \
  --total 200 --val-size 64 put 2>/dev/null | grep -E '^(Summary|  Requests/sec|  99% in)'" <<'EOF'
Summary:
  Requests/sec:	[0-9.]+
  99% in [0-9.]+ secs.
EOF
check_re "kvbench range" 0 -- sh -c "\"$kvbench\" --endpoints $endpoint --clients 4 --total 200 \
  range foo --consistency l 2>/dev/null | grep -E '^(  Requests/sec|  50% in|Error)'" <<'EOF'
  Requests/sec:	[0-9.]+
  50% in [0-9.]+ secs.
EOF

if [ "$failures" -gt 0 ]; then
  echo "$failures checks failed; kvnode's log:"
  sed 's/^/    /' "$dir/node.log"
  exit 1
fi
echo "all kvctl checks passed"
