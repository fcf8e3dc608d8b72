#!/usr/bin/env bash
# The main job of the README: installs what is missing, builds everything and runs the project's
# main program with embedded defaults. Until the node binary exists, that is the Raft demo cluster
# (tools/raft_demo) when built, else the dependency smoke binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bazel build //...

bin=$(bazel info bazel-bin 2>/dev/null)
if [ -x "$bin/tools/raft_demo/raft_demo" ]; then
  exec "$bin/tools/raft_demo/raft_demo" "$@"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for smoke in "$bin"/tools/third_party/smoke/*_test; do
  [ -x "$smoke" ] || continue
  echo "== $(basename "$smoke")"
  TEST_TMPDIR="$tmp" "$smoke"
done
