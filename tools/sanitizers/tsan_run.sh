#!/usr/bin/env bash
# Runs one test under ThreadSanitizer (--config=tsan uses it as --run_under). It writes the
# suppressions below next to the test and points TSAN_OPTIONS at them, so they reach the test
# and every process it starts (kvnode children) wherever the sandbox puts it.
#
# Suppressed: only system libraries that are not built with -fsanitize=thread. They synchronise
# with their own futex-based primitives, which TSan cannot see, so their accesses look unordered.
# Nothing of this project is suppressed.
set -euo pipefail
suppressions="${TEST_TMPDIR:-/tmp}/tsan.supp"
cat >"$suppressions" <<'SUPPRESSIONS'
called_from_lib:libgrpc.so
called_from_lib:libgpr.so
race:absl::*synchronization_internal::
SUPPRESSIONS
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$suppressions"
exec "$@"
