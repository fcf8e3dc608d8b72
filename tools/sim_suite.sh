#!/usr/bin/env bash
# The simulator's scenario suite (testdata/scenarios/, with its regressions/): clusters of the real
# server cores and member library on simulated disks and networks under partitions, crashes,
# storage faults and membership changes, each checked for safety and linearizability. Exit 0
# only if every scenario passes. Extra arguments go to `sim run` (for example --verbose).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bazel build -c opt //tools/sim:sim
bin=$(bazel info -c opt bazel-bin 2>/dev/null)
exec "$bin/tools/sim/sim" run testdata/scenarios/*.textproto testdata/scenarios/regressions/*.textproto "$@"
