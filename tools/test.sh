#!/usr/bin/env bash
# The test command of the README: installs what is missing, then runs every test.
# Extra arguments go to `bazel test` (for example a narrower target pattern is NOT accepted here:
# use bazel directly for that).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec bazel test //... "$@"
