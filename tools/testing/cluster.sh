# Sourced by the multi-process shell tests (node/forward_test.sh, node/move_leader_test.sh,
# net/etcd/gateway_test.sh): a three-member kvnode cluster on free loopback ports (ports.sh).

source "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# three_members PREFIX: picks the ports of members PREFIX1..PREFIX3 (client[i], peer[i]), sets
# `cluster` (their --initial-cluster) and `all` (their client endpoints), and traps EXIT to kill
# every member started (pid[i]) and then run the test's own `cleanup_extra`, if it defines one.
three_members() {
  declare -ga client peer pid
  member_prefix=$1
  cluster=
  local i
  for i in 1 2 3; do
    client[$i]=$(free_port)
    peer[$i]=$(free_port)
    cluster+="${cluster:+,}$member_prefix$i=http://127.0.0.1:${peer[$i]}"
  done
  all="127.0.0.1:${client[1]},127.0.0.1:${client[2]},127.0.0.1:${client[3]}"
  trap stop_members EXIT
}
stop_members() {
  local i
  for i in 1 2 3; do
    [ -n "${pid[$i]:-}" ] && kill -9 "${pid[$i]}" 2>/dev/null || true
  done
  if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
  wait 2>/dev/null || true
}

# start_member I FLAG...: starts member I of three_members ($kvnode, data under $tmp, heartbeat
# 50 ms, election timeout 500 ms) with FLAG... added; its output is appended to $tmp/<name>.log.
start_member() {
  local i=$1 name="$member_prefix$1"
  shift
  "$kvnode" --name "$name" --data-dir "$tmp/$name" --initial-cluster "$cluster" \
    --listen-client-urls "http://127.0.0.1:${client[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${peer[$i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${peer[$i]}" \
    --heartbeat-interval 50 --election-timeout 500 "$@" >>"$tmp/$name.log" 2>&1 &
  pid[$i]=$!
}

# ok NAME, fail NAME DETAIL... (counted in `failures`), and expect NAME WANT_EXIT
# WANT_OUTPUT_REGEX COMMAND...: a command's exit code and output checked (30 s at most).
ok() { echo "ok   $1"; }
fail() {
  echo "FAIL $1"
  shift
  printf '  %s\n' "$@"
  failures=$((failures + 1))
}
expect() {
  local name=$1 want_exit=$2 want=$3
  shift 3
  local out code=0
  out=$(timeout 30 "$@" 2>&1) || code=$?
  if [ "$code" = "$want_exit" ] && [[ "$out" =~ $want ]]; then
    ok "$name"
  else
    fail "$name" "want exit $want_exit and /$want/" "got exit $code: $out"
  fi
}
