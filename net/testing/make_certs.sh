#!/bin/bash
# Test certificates, made at test time (no private key is ever committed):
#   make_certs.sh DIR [CN...]
# writes into DIR
#   ca.crt ca.key                  the trusted CA
#   other-ca.crt other-ca.key      a CA nobody trusts
#   server.crt server.key          CN=kvnode, SAN IP:127.0.0.1 and DNS:localhost, from ca (kvnode's
#                                  client and peer certificate)
#   client-CN.crt client-CN.key    one client certificate per CN argument, from ca
#   expired.crt expired.key        CN=expired, from ca, expired a day ago (-days -1)
#   untrusted.crt untrusted.key    CN=untrusted, from other-ca
#   server-untrusted.crt/.key      the server's names, from other-ca
set -euo pipefail
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$1" -days 2 -out "$1.crt" 2>/dev/null
}
# cert NAME CN CA DAYS [SAN]
cert() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  local ext=()
  if [[ -n "${5:-}" ]]; then
    printf 'subjectAltName=%s\n' "$5" >"$1.ext"
    ext=(-extfile "$1.ext")
  fi
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -set_serial "0x$(openssl rand -hex 8)" \
    -days "$4" "${ext[@]}" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca
ca other-ca
cert server kvnode ca 2 "IP:127.0.0.1,DNS:localhost"
cert server-untrusted kvnode other-ca 2 "IP:127.0.0.1,DNS:localhost"
cert expired expired ca -1
cert untrusted untrusted other-ca 2
for cn in "$@"; do
  cert "client-$cn" "$cn" ca 2
done
