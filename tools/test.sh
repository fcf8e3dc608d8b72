#!/usr/bin/env bash
# The test command of the README: installs what is missing, then runs the tests.
#   bash tools/test.sh                                   every test (bazel test //...)
#   bash tools/test.sh //store/... //sim:runner_test     these target patterns only
#   bash tools/test.sh //... -//net/...                  all but some (negative patterns)
#   bash tools/test.sh --test_output=all //node/...      arguments starting with -- go to
#                                                        bazel test as flags (--flag=value form)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
flags=()
targets=()
positive=0
for arg in "$@"; do
  case "$arg" in
    --*) flags+=("$arg") ;;
    -*) targets+=("$arg") ;;
    *) targets+=("$arg"); positive=1 ;;
  esac
done
# Only negative patterns (or none at all) subtract from everything.
if [ "$positive" -eq 0 ]; then targets=(//... "${targets[@]}"); fi
exec bazel test "${flags[@]}" -- "${targets[@]}"
