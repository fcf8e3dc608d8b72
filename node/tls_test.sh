#!/usr/bin/env bash
# A three-member kvnode cluster with TLS on its client and peer URLs (client and peer
# certificates required), certificates made at test time (net/testing/make_certs.sh):
#   - puts and gets through kvctl (Cap'n Proto), etcdctl 3.4 (gRPC) and curl (the JSON gateway),
#     and kvbench over both of its protocols;
#   - a client trusting another CA, an expired client certificate, a client certificate from an
#     untrusted CA, and plain-text kvctl, etcdctl and curl on the TLS port: each refused, with a
#     'rejected connection' log line that says why, while the member keeps serving the others;
#   - with auth enabled, a gRPC call without a token runs as its client certificate's CN (etcd's
#     --client-cert-auth): alice writes her prefix; bob, and alice outside it, are refused; the
#     same through kvctl (Cap'n Proto) and curl (the JSON gateway);
#   - lease keep-alive, time-to-live and member promote at every member: the followers forward
#     them to the leader over the TLS peer URLs with the caller's certificate user.
set -uo pipefail
root="$TEST_SRCDIR/$TEST_WORKSPACE"
kvnode="$root/node/kvnode"
kvctl="$root/tools/ctl/kvctl"
kvbench="$root/tools/bench/kvbench"
dir="${TEST_TMPDIR:-$(mktemp -d)}"
certs="$dir/certs"
failures=0
export ETCDCTL_API=3

bash "$root/net/testing/make_certs.sh" "$certs" alice bob root || {
  echo "FAIL: making certificates"
  exit 1
}

source "$root/tools/testing/ports.sh"
declare -a client peer pids
cluster=""
for i in 1 2 3; do
  client[$i]=$(free_port_pair)
  peer[$i]=$((client[$i] + 1))
  cluster+="${cluster:+,}n$i=https://127.0.0.1:${peer[$i]}"
done
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
for i in 1 2 3; do
  "$kvnode" --name "n$i" --data-dir "$dir/n$i" --initial-cluster "$cluster" \
    --listen-client-urls "https://127.0.0.1:${client[$i]}" \
    --listen-peer-urls "https://127.0.0.1:${peer[$i]}" \
    --initial-advertise-peer-urls "https://127.0.0.1:${peer[$i]}" \
    --cert-file "$certs/server.crt" --key-file "$certs/server.key" \
    --trusted-ca-file "$certs/ca.crt" --client-cert-auth \
    --peer-cert-file "$certs/server.crt" --peer-key-file "$certs/server.key" \
    --peer-trusted-ca-file "$certs/ca.crt" --peer-client-cert-auth \
    >"$dir/n$i.log" 2>&1 &
  pids+=($!)
done

tls=(--cacert "$certs/ca.crt" --cert "$certs/client-alice.crt" --key "$certs/client-alice.key")
ctl() { # ctl MEMBER ARGS...
  local i=$1
  shift
  "$kvctl" --endpoints "https://127.0.0.1:${client[$i]}" --dial-timeout 1s --command-timeout 3s \
    "$@"
}
etcdctl_at() { # etcdctl_at MEMBER ARGS...
  local i=$1
  shift
  timeout 10 etcdctl --endpoints "https://127.0.0.1:${client[$i]}" --dial-timeout 2s \
    --command-timeout 3s "$@"
}

# The cluster is up once a write commits (its peers talk TLS to each other).
for _ in $(seq 100); do
  ctl 1 "${tls[@]}" put ready yes >/dev/null 2>&1 && break
  sleep 0.1
done

expect() { # expect NAME WANT GOT
  if [[ "$2" != "$3" ]]; then
    echo "FAIL: $1"
    diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | sed 's/^/    /'
    failures=$((failures + 1))
  else
    echo "ok: $1"
  fi
}
expect_fails() { # expect_fails NAME NEEDLE COMMAND...: the command fails, its output has NEEDLE
  local name=$1 needle=$2 out rc
  shift 2
  out=$("$@" 2>&1)
  rc=$?
  if [[ $rc -eq 0 || "$out" != *"$needle"* ]]; then
    echo "FAIL: $name: exit $rc, wanted a failure mentioning '$needle':"
    printf '%s\n' "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  else
    echo "ok: $name"
  fi
}
expect_log() { # expect_log NAME MEMBER NEEDLE: the member logged a rejected connection with NEEDLE
  local name=$1 i=$2 needle=$3
  for _ in $(seq 50); do
    grep '"msg":"rejected connection"' "$dir/n$i.log" | grep -qF -- "$needle" && {
      echo "ok: $name logged"
      return
    }
    sleep 0.1
  done
  echo "FAIL: $name: n$i logged no rejected connection with '$needle':"
  grep rejected "$dir/n$i.log" | sed 's/^/    /'
  failures=$((failures + 1))
}

expect "kvctl put over TLS" "OK" "$(ctl 1 "${tls[@]}" put greeting hello 2>&1)"
expect "kvctl get from another member" $'greeting\nhello' "$(ctl 2 "${tls[@]}" get greeting 2>&1)"
expect "etcdctl put over TLS (gRPC)" "OK" "$(etcdctl_at 3 "${tls[@]}" put tool etcdctl 2>&1)"
expect "etcdctl get over TLS (gRPC)" $'tool\netcdctl' "$(etcdctl_at 2 "${tls[@]}" get tool 2>&1)"
expect "kvctl reads etcdctl's write" $'tool\netcdctl' "$(ctl 1 "${tls[@]}" get tool 2>&1)"
got=$(curl -sS --max-time 5 "${tls[@]}" "https://127.0.0.1:${client[3]}/v3/kv/range" \
  -X POST -d '{"key":"Z3JlZXRpbmc="}' 2>&1)
expect "curl range over TLS (JSON gateway)" "aGVsbG8=" \
  "$(printf '%s' "$got" | sed -n 's/.*"value":"\([^"]*\)".*/\1/p')"
for protocol in capnp grpc; do
  if out=$("$kvbench" --endpoints "https://127.0.0.1:${client[1]},https://127.0.0.1:${client[2]}" \
    "${tls[@]}" --protocol "$protocol" --conns 2 --clients 4 --total 200 put 2>&1) &&
    [[ "$out" == *"Total"* ]]; then
    echo "ok: kvbench --protocol $protocol over TLS"
  else
    echo "FAIL: kvbench --protocol $protocol over TLS:"
    printf '%s\n' "$out" | tail -5 | sed 's/^/    /'
    failures=$((failures + 1))
  fi
done
expect "member list over TLS" "3" "$(ctl 1 "${tls[@]}" member list 2>&1 | grep -c https://)"

# Refusals, each on member 1, which must keep serving.
expect_fails "kvctl trusting another CA" "server certificate refused" \
  ctl 1 --cacert "$certs/other-ca.crt" --cert "$certs/client-alice.crt" \
  --key "$certs/client-alice.key" get greeting
expect_log "a client refusing the server's certificate" 1 "the client refused this side's certificate"
expect_fails "kvctl with an expired client certificate" "certificate expired" \
  ctl 1 --cacert "$certs/ca.crt" --cert "$certs/expired.crt" --key "$certs/expired.key" \
  get greeting
expect_log "an expired client certificate" 1 "client certificate refused: certificate has expired"
expect_fails "etcdctl with a certificate from an untrusted CA" "context deadline exceeded" \
  etcdctl_at 1 --cacert "$certs/ca.crt" --cert "$certs/untrusted.crt" \
  --key "$certs/untrusted.key" get greeting
expect_log "an untrusted client certificate" 1 \
  "client certificate refused: unable to get local issuer certificate"
expect_fails "kvctl without a client certificate" "Error" \
  ctl 1 --cacert "$certs/ca.crt" get greeting
expect_log "no client certificate" 1 "peer did not return a certificate"
expect_fails "plain-text kvctl on the TLS port" "Error" \
  "$kvctl" --endpoints "http://127.0.0.1:${client[1]}" --dial-timeout 1s --command-timeout 1s \
  get greeting
expect_log "plain-text Cap'n Proto" 1 "not a TLS client (plain text on a TLS port): it speaks Cap'n Proto"
expect_fails "plain-text etcdctl on the TLS port" "context deadline exceeded" \
  timeout 10 etcdctl --endpoints "http://127.0.0.1:${client[1]}" --dial-timeout 2s \
  --command-timeout 2s get greeting
expect_log "plain-text gRPC" 1 "not a TLS client (plain text on a TLS port): it speaks gRPC"
expect "plain-text curl on the TLS port" "Client sent an HTTP request to an HTTPS server." \
  "$(curl -sS --max-time 5 "http://127.0.0.1:${client[1]}/health" 2>&1)"
expect_log "plain-text HTTP" 1 "not a TLS client (plain text on a TLS port): it speaks HTTP/1.1"

expect "member 1 still serves kvctl" "OK" "$(ctl 1 "${tls[@]}" put after refusals 2>&1)"
expect "member 1 still serves etcdctl" $'after\nrefusals' \
  "$(etcdctl_at 1 "${tls[@]}" get after 2>&1)"

# The client certificate's CN is the user of a call without a token (etcdctl, gRPC).
as() { # as CN ARGS...: etcdctl on member 1 with CN's certificate
  local cn=$1
  shift
  etcdctl_at 1 --cacert "$certs/ca.crt" --cert "$certs/client-$cn.crt" --key "$certs/client-$cn.key" "$@"
}
for command in "user add root --new-user-password=r" "user add alice --new-user-password=a" \
  "user add bob --new-user-password=b" "role add alice-role" \
  "role grant-permission alice-role readwrite /alice/ --prefix=true" \
  "user grant-role alice alice-role" "auth enable"; do
  # shellcheck disable=SC2086
  as root $command >"$dir/auth_setup.log" 2>&1 || {
    echo "FAIL: etcdctl $command:"
    sed 's/^/    /' "$dir/auth_setup.log"
    failures=$((failures + 1))
  }
done
expect "CN alice writes her prefix" "OK" "$(as alice put /alice/x 1 2>/dev/null)"
expect_fails "CN alice outside her prefix" "Error: etcdserver: permission denied" \
  as alice put /other 1
expect_fails "CN bob in alice's prefix" "Error: etcdserver: permission denied" \
  as bob put /alice/y 2
expect "CN root writes anywhere" "OK" "$(as root put /other 3 2>/dev/null)"
expect "CN alice reads her prefix" $'/alice/x\n1' "$(as alice get /alice/x 2>/dev/null)"
expect_fails "a token wins over the certificate" "Error: etcdserver: permission denied" \
  as alice --user bob:b put /alice/z 1

# The same through kvctl (Cap'n Proto) and curl (the JSON gateway) on the TLS client URL.
kvctl_as() { # kvctl_as CN ARGS...: kvctl on member 1 with CN's certificate
  local cn=$1
  shift
  ctl 1 --cacert "$certs/ca.crt" --cert "$certs/client-$cn.crt" --key "$certs/client-$cn.key" "$@"
}
expect "kvctl: CN alice writes her prefix" "OK" "$(kvctl_as alice put /alice/k 1 2>&1)"
expect_fails "kvctl: CN alice outside her prefix" "permission denied" kvctl_as alice put /other 1
expect_fails "kvctl: CN bob in alice's prefix" "permission denied" kvctl_as bob put /alice/k 2
expect "kvctl: CN root writes anywhere" "OK" "$(kvctl_as root put /other 4 2>&1)"
expect "kvctl: CN alice reads her prefix" $'/alice/k\n1' "$(kvctl_as alice get /alice/k 2>&1)"
expect_fails "kvctl: a token wins over the certificate" "permission denied" \
  kvctl_as alice --user bob:b put /alice/k 3
curl_as() { # curl_as CN API BODY: the gateway on member 1 with CN's certificate
  curl -sS --max-time 5 --cacert "$certs/ca.crt" --cert "$certs/client-$1.crt" \
    --key "$certs/client-$1.key" "https://127.0.0.1:${client[1]}/v3/$2" -X POST -d "$3" 2>&1
}
got=$(curl_as alice kv/put '{"key":"L2FsaWNlL2M=","value":"dg=="}')
expect "curl: CN alice writes her prefix" "yes" "$([[ "$got" == *'"header"'* && "$got" != *error* ]] && echo yes || echo "$got")"
got=$(curl_as alice kv/put '{"key":"L290aGVy","value":"dg=="}')
expect "curl: CN alice outside her prefix" "yes" "$([[ "$got" == *'permission denied'* ]] && echo yes || echo "$got")"
got=$(curl_as bob kv/range '{"key":"L2FsaWNlL2M="}')
expect "curl: CN bob in alice's prefix" "yes" "$([[ "$got" == *'permission denied'* ]] && echo yes || echo "$got")"
got=$(curl_as alice kv/range '{"key":"L2FsaWNlL2M="}')
expect "curl: CN alice reads her prefix" "dg==" "$(printf '%s' "$got" | sed -n 's/.*"value":"\([^"]*\)".*/\1/p')"

# Lease keep-alive and time-to-live at each member: the followers forward them to the leader over
# the TLS peer URLs, with the caller's certificate user (root here; the leader checks it).
lease=$(as root lease grant 100 2>&1 | sed -n 's/^lease \([0-9a-f]*\) granted.*/\1/p')
for i in 1 2 3; do
  got=$(etcdctl_at "$i" --cacert "$certs/ca.crt" --cert "$certs/client-root.crt" \
    --key "$certs/client-root.key" lease keep-alive --once "$lease" 2>&1)
  expect "lease keep-alive --once at member $i" "yes" \
    "$([[ -n "$lease" && "$got" == *"keepalived with TTL(100)"* ]] && echo yes || echo "$got")"
  got=$(etcdctl_at "$i" --cacert "$certs/ca.crt" --cert "$certs/client-root.crt" \
    --key "$certs/client-root.key" lease timetolive "$lease" 2>&1)
  expect "lease timetolive at member $i" "yes" \
    "$([[ -n "$lease" && "$got" == *"granted with TTL(100s)"* ]] && echo yes || echo "$got")"
done
# Member promote (root only) of a learner that never started, at each member: the followers
# forward it with the caller's certificate user, so the leader refuses bob and checks root's
# request as root's (the learner is not in sync: the leader's own answer).
learner=$(as root member add learner --learner --peer-urls "https://127.0.0.1:1" 2>&1 |
  sed -n 's/^Member *\([0-9a-f]*\) added.*/\1/p')
for i in 1 2 3; do
  for cn in bob root; do
    got=$(etcdctl_at "$i" --cacert "$certs/ca.crt" --cert "$certs/client-$cn.crt" \
      --key "$certs/client-$cn.key" member promote "$learner" 2>&1)
    want="permission denied"
    [[ $cn == root ]] && want="can only promote a learner member which is in sync with leader"
    expect "member promote as $cn at member $i" "yes" \
      "$([[ -n "$learner" && "$got" == *"$want"* ]] && echo yes || echo "$got")"
  done
done

if ((failures > 0)); then
  echo "$failures failures; member logs:"
  for i in 1 2 3; do sed "s/^/    n$i: /" "$dir/n$i.log" | tail -20; done
  exit 1
fi
echo PASS
