#!/usr/bin/env bash
# The JSON gateway of a real kvnode, driven with the curl examples of etcd's documentation
# (dev-guide/api_grpc_gateway.md): put, range, watch stream, lease grant, txn, plus etcd's
# errors as grpc-gateway renders them. As in etcd, the responses inside a txn carry only the
# revision in their headers. Bodies are compared whole, with the member and cluster
# ids (random per cluster) replaced by ID.
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
expect future-revision 400 '{"error":"etcdserver: mvcc: required revision is a future revision","code":11,"message":"etcdserver: mvcc: required revision is a future revision"}' \
  -L "$url/v3/kv/range" -X POST -d '{"key": "Zm9v", "revision": 100}'
expect missing-lease 404 '{"error":"etcdserver: requested lease not found","code":5,"message":"etcdserver: requested lease not found"}' \
  -L "$url/v3/lease/revoke" -X POST -d '{"ID": 1234}'
expect empty-key 400 '{"error":"etcdserver: key is not provided","code":3,"message":"etcdserver: key is not provided"}' \
  -L "$url/v3/kv/put" -X POST -d '{"value": "YmFy"}'
expect unknown-path 404 '{"error":"Not Found","code":5,"message":"Not Found"}' \
  -L "$url/v3/kv/nothing" -X POST -d '{}'
expect get-method 405 '{"error":"Method Not Allowed","code":12,"message":"Method Not Allowed"}' \
  -L "$url/v3/kv/range"
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

if [ "$failures" -ne 0 ]; then
  echo "$failures failed; kvnode's log:"
  tail -20 "$tmp/kvnode.log"
  exit 1
fi
echo "all passed"
