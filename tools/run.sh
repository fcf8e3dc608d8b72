#!/usr/bin/env bash
# The main job of the README: installs what is missing, builds everything, then starts kvnode with
# its embedded default (one member on 127.0.0.1: clients 2379, peers 2380, data in
# ./default.kvnode), shows a put and a get with kvctl, and keeps serving until Ctrl-C (a clean
# stop). `--demo` stops the node after the put and the get instead.
# The simulator's scenario suite is its own command: bash tools/sim_suite.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
demo_only=0
for arg in "$@"; do
  case "$arg" in
    --demo) demo_only=1 ;;
    *) echo "run.sh: unknown argument '$arg' (only --demo)" >&2; exit 2 ;;
  esac
done
bash tools/setup.sh
# One build, in the mode the main job runs in.
bazel build -c opt //...
bin=$(bazel info -c opt bazel-bin 2>/dev/null)
kvnode="$bin/node/kvnode"
kvctl="$bin/tools/ctl/kvctl"

"$kvnode" &
node=$!
trap 'kill -TERM "$node" 2>/dev/null; wait "$node" 2>/dev/null || true' EXIT
# Ready: it answers an endpoint health check (bounded: 10 s).
for _ in $(seq 1 100); do
  if "$kvctl" --endpoints=127.0.0.1:2379 endpoint health >/dev/null 2>&1; then break; fi
  if ! kill -0 "$node" 2>/dev/null; then echo "run.sh: kvnode exited" >&2; exit 1; fi
  sleep 0.1
done
echo "\$ kvctl put greeting hello"
"$kvctl" --endpoints=127.0.0.1:2379 put greeting hello
echo "\$ kvctl get greeting"
"$kvctl" --endpoints=127.0.0.1:2379 get greeting
if [ "$demo_only" -eq 1 ]; then exit 0; fi
echo "kvnode serves on 127.0.0.1:2379 (data in ./default.kvnode); Ctrl-C stops it."
wait "$node"
