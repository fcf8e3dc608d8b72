#!/usr/bin/env bash
# The JSON gateway of a real kvnode, driven with the curl examples of etcd's documentation
# (dev-guide/api_grpc_gateway.md): put, range, watch stream, lease grant, txn, auth with the
# Authorization header, plus etcd's errors as grpc-gateway renders them. As in etcd, the
# responses inside a txn carry only the revision in their headers. Bodies are compared whole,
# with the member and cluster ids (random per cluster) replaced by ID.
set -euo pipefail

kvnode=${1:?usage: gateway_test.sh path/to/kvnode}
tmp=${TEST_TMPDIR:-$(mktemp -d)}
failures=0

free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  echo "no free port" >&2
  exit 1
}

client=$(free_port)
peer=$(free_port)
url=http://127.0.0.1:$client
"$kvnode" --name gw --data-dir "$tmp/gw" \
  --listen-client-urls "$url" --advertise-client-urls "$url" \
  --listen-peer-urls "http://127.0.0.1:$peer" >"$tmp/kvnode.log" 2>&1 &
node_pid=$!
watch_pid=
cleanup() {
  [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null || true
  kill "$node_pid" 2>/dev/null || true
  wait "$node_pid" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  if [ "$(curl -s --max-time 1 "$url/health" || true)" = '{"health":"true"}' ]; then break; fi
  sleep 0.1
done

normalise() { sed -E 's/"(cluster_id|member_id|ID)":"[0-9]+"/"\1":"ID"/g'; }

# expect NAME HTTP_STATUS EXPECTED_BODY CURL_ARGS...
expect() {
  local name=$1 want_status=$2 want_body=$3
  shift 3
  local out status body
  out=$(curl -s --max-time 5 -w '\n%{http_code}' "$@")
  status=${out##*$'\n'}
  body=$(printf '%s' "${out%$'\n'*}" | normalise)
  if [ "$status" != "$want_status" ] || [ "$body" != "$want_body" ]; then
    echo "FAIL $name"
    echo "  want $want_status $want_body"
    echo "  got  $status $body"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

H='"header":{"cluster_id":"ID","member_id":"ID"'

# A watch from the documentation, started before the writes it must see.
curl -s -N --max-time 20 "$url/v3/watch" -X POST -d '{"create_request": {"key":"Zm9v"} }' \
  >"$tmp/watch.out" &
watch_pid=$!
sleep 0.5

expect put 200 "{$H,\"revision\":\"2\",\"raft_term\":\"2\"}}" \
  -L "$url/v3/kv/put" -X POST -d '{"key": "Zm9v", "value": "YmFy"}'
expect range 200 "{$H,\"revision\":\"2\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"YmFy\"}],\"count\":\"1\"}" \
  -L "$url/v3/kv/range" -X POST -d '{"key": "Zm9v"}'
expect range-prefix 200 "{$H,\"revision\":\"2\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"YmFy\"}],\"count\":\"1\"}" \
  -L "$url/v3/kv/range" -X POST -d '{"key": "Zm9v", "range_end": "Zm9w"}'
expect txn 200 "{$H,\"revision\":\"3\",\"raft_term\":\"2\"},\"succeeded\":true,\"responses\":[{\"response_put\":{\"header\":{\"revision\":\"3\"}}}]}" \
  -L "$url/v3/kv/txn" -X POST \
  -d '{"compare":[{"target":"CREATE","key":"Zm9v","createRevision":"2"}],"success":[{"requestPut":{"key":"Zm9v","value":"YmFy"}}]}'
expect txn-failed-compare 200 "{$H,\"revision\":\"3\",\"raft_term\":\"2\"}}" \
  -L "$url/v3/kv/txn" -X POST \
  -d '{"compare":[{"target":"CREATE","key":"Zm9v","createRevision":"9"}],"success":[{"requestPut":{"key":"Zm9v","value":"YmFy"}}]}'
expect lease-grant 200 "{$H,\"revision\":\"3\",\"raft_term\":\"2\"},\"ID\":\"ID\",\"TTL\":\"30\"}" \
  -L "$url/v3/lease/grant" -X POST -d '{"TTL": 30}'
expect v3beta-prefix 200 "{$H,\"revision\":\"3\",\"raft_term\":\"2\"},\"count\":\"1\"}" \
  -L "$url/v3beta/kv/range" -X POST -d '{"key": "Zm9v", "count_only": true}'
expect delete 200 "{$H,\"revision\":\"4\",\"raft_term\":\"2\"},\"deleted\":\"1\"}" \
  -L "$url/v3/kv/deleterange" -X POST -d '{"key": "Zm9v"}'

# etcd's errors, as grpc-gateway renders them.
expect future-revision 400 '{"error":"etcdserver: mvcc: required revision is a future revision","message":"etcdserver: mvcc: required revision is a future revision","code":11}' \
  -L "$url/v3/kv/range" -X POST -d '{"key": "Zm9v", "revision": 100}'
expect missing-lease 404 '{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}' \
  -L "$url/v3/lease/revoke" -X POST -d '{"ID": 1234}'
expect empty-key 400 '{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}' \
  -L "$url/v3/kv/put" -X POST -d '{"value": "YmFy"}'
expect member-update-unknown 404 '{"error":"etcdserver: member not found","message":"etcdserver: member not found","code":5}' \
  -L "$url/v3/cluster/member/update" -X POST -d '{"ID":"1234","peerURLs":["http://127.0.0.1:1"]}'
# Paths and methods grpc-gateway does not route: Go's http.Error, plain text, the path checked
# before the method (etcd 3.4.23's answers).
expect unknown-path 404 'Not Found' -L "$url/v3/kv/nothing" -X POST -d '{}'
expect unknown-path-get 404 'Not Found' -L "$url/v3/kv/nothing"
expect v3-root 404 'Not Found' -L "$url/v3/" -X POST -d '{}'
expect get-method 405 'Method Not Allowed' -L "$url/v3/kv/range"
expect put-method 405 'Method Not Allowed' -L "$url/v3beta/watch" -X PUT -d '{}'
for what in "404 kv/nothing Not Found" "405 kv/range Method Not Allowed"; do
  read -r code path text <<<"$what"
  got=$(curl -s --max-time 5 -D - "$url/v3/$path" | tr -d '\r' |
    grep -i -E '^(HTTP|content-type|content-length|x-content-type-options)|^(Not Found|Method Not Allowed)$' | sort)
  want=$(printf '%s\n' "Content-Length: $(( ${#text} + 1 ))" \
    "Content-Type: text/plain; charset=utf-8" "HTTP/1.1 $code $text" "$text" \
    "X-Content-Type-Options: nosniff" | sort)
  if [ "$got" = "$want" ]; then
    echo "ok   plain-$code"
  else
    echo "FAIL plain-$code"
    echo "  want $want"
    echo "  got  $got"
    failures=$((failures + 1))
  fi
done
out=$(curl -s --max-time 5 -w '\n%{http_code}' "$url/v3/kv/put" -X POST -d '{"key": 5')
if [ "${out##*$'\n'}" = 400 ] && [[ "$out" == *'"code":3'* ]] && [[ "$out" == *malformed* ]]; then
  echo "ok   malformed-json"
else
  echo "FAIL malformed-json: $out"
  failures=$((failures + 1))
fi

# The watch saw its creation, the put, the txn's put and the delete, one result line each.
for _ in $(seq 1 50); do
  [ "$(wc -l <"$tmp/watch.out")" -ge 4 ] && break
  sleep 0.1
done
kill "$watch_pid" 2>/dev/null || true
watch_pid=
want_watch="{\"result\":{$H,\"revision\":\"1\",\"raft_term\":\"2\"},\"created\":true}}
{\"result\":{$H,\"revision\":\"2\",\"raft_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"YmFy\"}}]}}
{\"result\":{$H,\"revision\":\"3\",\"raft_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"3\",\"version\":\"2\",\"value\":\"YmFy\"}}]}}
{\"result\":{$H,\"revision\":\"4\",\"raft_term\":\"2\"},\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":\"Zm9v\",\"mod_revision\":\"4\"}}]}}"
got_watch=$(normalise <"$tmp/watch.out")
if [ "$got_watch" = "$want_watch" ]; then
  echo "ok   watch-stream"
else
  echo "FAIL watch-stream"
  diff <(echo "$want_watch") <(echo "$got_watch") || true
  failures=$((failures + 1))
fi

# Auth through the gateway, as etcd 3.4 answers it (each body below is etcd 3.4.23's for the
# same calls, at its revisions): /v3/auth/* set up users and roles and enable auth, and a call
# runs as the token of its Authorization header, the whole value (no "Bearer" scheme), or of
# Grpc-Metadata-Token, which wins.
R='"header":{"cluster_id":"ID","member_id":"ID","revision":"4","raft_term":"2"}'
expect auth-user-add 200 "{$R}" "$url/v3/auth/user/add" -X POST -d '{"name": "root", "password": "pass"}'
expect auth-role-add 200 "{$R}" "$url/v3/auth/role/add" -X POST -d '{"name": "root"}'
expect auth-user-grant 200 "{$R}" "$url/v3/auth/user/grant" -X POST -d '{"user": "root", "role": "root"}'
expect auth-user-add-alice 200 "{$R}" \
  "$url/v3/auth/user/add" -X POST -d '{"name": "alice", "password": "alicepw"}'
expect auth-role-add-a 200 "{$R}" "$url/v3/auth/role/add" -X POST -d '{"name": "a"}'
expect auth-role-grant 200 "{$R}" "$url/v3/auth/role/grant" -X POST \
  -d '{"name": "a", "perm": {"permType": "READWRITE", "key": "L2Ev", "range_end": "L2Ew"}}'
expect auth-user-grant-alice 200 "{$R}" "$url/v3/auth/user/grant" -X POST -d '{"user": "alice", "role": "a"}'
expect auth-enable 200 "{$R}" "$url/v3/auth/enable" -X POST -d '{}'
expect auth-wrong-password 400 '{"error":"etcdserver: authentication failed, invalid user ID or password","message":"etcdserver: authentication failed, invalid user ID or password","code":3}' \
  "$url/v3/auth/authenticate" -X POST -d '{"name": "alice", "password": "wrong"}'
token_of() {
  curl -s --max-time 5 "$url/v3/auth/authenticate" -X POST -d "{\"name\": \"$1\", \"password\": \"$2\"}" |
    sed -nE 's/.*"token":"([^"]+)".*/\1/p'
}
alice=$(token_of alice alicepw)
root=$(token_of root pass)
if [ -z "$alice" ] || [ -z "$root" ]; then
  echo "FAIL auth-authenticate: no token"
  failures=$((failures + 1))
fi
R5='"header":{"cluster_id":"ID","member_id":"ID","revision":"5","raft_term":"2"}'
denied='{"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7}'
invalid='{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}'
expect auth-put 200 "{$R5}" \
  "$url/v3/kv/put" -H "Authorization: $alice" -X POST -d '{"key": "L2EveA==", "value": "MQ=="}'
expect auth-range 200 "{$R5,\"kvs\":[{\"key\":\"L2EveA==\",\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":\"1\",\"value\":\"MQ==\"}],\"count\":\"1\"}" \
  "$url/v3/kv/range" -H "Authorization: $alice" -X POST -d '{"key": "L2EveA=="}'
expect auth-range-denied 403 "$denied" \
  "$url/v3/kv/range" -H "Authorization: $alice" -X POST -d '{"key": "Yg=="}'
expect auth-no-token 400 '{"error":"etcdserver: user name is empty","message":"etcdserver: user name is empty","code":3}' \
  "$url/v3/kv/range" -X POST -d '{"key": "L2EveA=="}'
expect auth-bogus-token 401 "$invalid" \
  "$url/v3/kv/range" -H "Authorization: bogus" -X POST -d '{"key": "L2EveA=="}'
expect auth-empty-token 401 "$invalid" \
  "$url/v3/kv/range" -H "Authorization;" -X POST -d '{"key": "L2EveA=="}'
expect auth-bearer 401 "$invalid" \
  "$url/v3/kv/range" -H "Authorization: Bearer $alice" -X POST -d '{"key": "L2EveA=="}'
expect auth-metadata-token-wins 200 "{$R5,\"count\":\"1\"}" "$url/v3/kv/range" \
  -H "Grpc-Metadata-Token: $alice" -H "Authorization: bogus" -X POST -d '{"key": "L2EveA==", "count_only": true}'
expect auth-metadata-token-wins-bogus 401 "$invalid" "$url/v3/kv/range" \
  -H "Grpc-Metadata-Token: bogus" -H "Authorization: $alice" -X POST -d '{"key": "L2EveA==", "count_only": true}'
# A watch refused at creation: etcd 3.4.23's one response, watch id -1, Go's error text.
expect auth-watch-invalid-token 200 "{\"result\":{$R5,\"watch_id\":\"-1\",\"created\":true,\"canceled\":true,\"cancel_reason\":\"rpc error: code = Unauthenticated desc = etcdserver: invalid auth token\"}}" \
  "$url/v3/watch" -H "Authorization: bogus" -X POST -d '{"create_request": {"key": "L2EveA=="}}'
expect auth-watch-denied 200 "{\"result\":{$R5,\"watch_id\":\"-1\",\"created\":true,\"canceled\":true,\"cancel_reason\":\"rpc error: code = PermissionDenied desc = etcdserver: permission denied\"}}" \
  "$url/v3/watch" -H "Authorization: $alice" -X POST -d '{"create_request": {"key": "Yg=="}}'
expect auth-txn-denied 403 "$denied" "$url/v3/kv/txn" -H "Authorization: $alice" -X POST \
  -d '{"success":[{"requestPut":{"key":"Yg==","value":"MQ=="}}]}'
expect auth-lease-grant 200 "{$R5,\"ID\":\"ID\",\"TTL\":\"30\"}" \
  "$url/v3/lease/grant" -H "Authorization: $alice" -X POST -d '{"TTL": 30, "ID": 7}'
expect auth-user-list-denied 403 "$denied" \
  "$url/v3/auth/user/list" -H "Authorization: $alice" -X POST -d '{}'
expect auth-user-list 200 "{$R5,\"users\":[\"alice\",\"root\"]}" \
  "$url/v3/auth/user/list" -H "Authorization: $root" -X POST -d '{}'
expect auth-user-get-missing 412 '{"error":"etcdserver: user name not found","message":"etcdserver: user name not found","code":9}' \
  "$url/v3/auth/user/get" -H "Authorization: $root" -X POST -d '{"name": "nobody"}'
expect auth-user-get 200 "{$R5,\"roles\":[\"a\"]}" \
  "$url/v3/auth/user/get" -H "Authorization: $root" -X POST -d '{"name": "alice"}'
expect auth-role-get 200 "{$R5,\"perm\":[{\"permType\":\"READWRITE\",\"key\":\"L2Ev\",\"range_end\":\"L2Ew\"}]}" \
  "$url/v3/auth/role/get" -H "Authorization: $root" -X POST -d '{"role": "a"}'
expect auth-disable-denied 403 "$denied" "$url/v3/auth/disable" -H "Authorization: $alice" -X POST -d '{}'
expect auth-disable 200 "{$R5}" "$url/v3/auth/disable" -H "Authorization: $root" -X POST -d '{}'
expect auth-disabled-range 200 "{$R5,\"count\":\"1\"}" \
  "$url/v3/kv/range" -X POST -d '{"key": "L2EveA==", "count_only": true}'
# A token is checked with auth off too, as etcd's AuthInfoFromCtx does (etcd 3.4.23 answers
# these three alike): disabling auth dropped alice's; an empty one is looked up and refused.
expect auth-off-dropped-token 401 "$invalid" \
  "$url/v3/kv/range" -H "Authorization: $alice" -X POST -d '{"key": "L2EveA==", "count_only": true}'
expect auth-off-bogus-token 401 "$invalid" \
  "$url/v3/kv/put" -H "Grpc-Metadata-Token: bogus" -X POST -d '{"key": "L2EveA==", "value": "Mg=="}'
expect auth-off-empty-token 401 "$invalid" \
  "$url/v3/kv/put" -H "Authorization;" -X POST -d '{"key": "L2EveA==", "value": "Mg=="}'

if [ "$failures" -ne 0 ]; then
  echo "$failures failed; kvnode's log:"
  tail -20 "$tmp/kvnode.log"
  exit 1
fi
echo "all passed"
