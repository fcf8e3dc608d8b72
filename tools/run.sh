#!/usr/bin/env bash
# The main job of the README: installs what is missing, builds everything and runs the project's
# main program with embedded defaults. Until the node binary exists, that is the simulator's
# scenario suite (testdata/scenarios/, with its regressions/): a cluster of the real server cores under
# partitions, crashes and membership changes, checked for safety and linearizability.
# Extra arguments go to `sim run` (for example --verbose).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# One build, in the mode the main job runs in: every target compiles, and the simulator is the
# optimised one. (A fastbuild of everything first would compile every file a second time.)
bazel build -c opt //...
bin=$(bazel info -c opt bazel-bin 2>/dev/null)
exec "$bin/tools/sim/sim" run testdata/scenarios/*.textproto testdata/scenarios/regressions/*.textproto "$@"
