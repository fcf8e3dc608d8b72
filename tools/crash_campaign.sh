#!/usr/bin/env bash
# A long crash campaign: //node:crash_test (crash_child killed with SIGKILL at random moments and
# restarted on the same directory) with CRASH_ITERATIONS=ITERATIONS, then its figures.
#   tools/crash_campaign.sh [ITERATIONS [SEED]]    defaults: 500 iterations, seed 1
# Exits with the test's status; on a failure the test log says how to reproduce it.
set -euo pipefail
cd "$(dirname "$0")/.."

iterations="${1:-500}"
seed="${2:-1}"
if ! [[ "$iterations" =~ ^[0-9]+$ && "$seed" =~ ^[0-9]+$ ]]; then
  echo "usage: tools/crash_campaign.sh [ITERATIONS [SEED]]" >&2
  exit 2
fi
# The test allows itself a second per iteration (at least two minutes); Bazel's timeout must not
# cut it shorter.
timeout_seconds=$((iterations * 2 + 300))

start=$(date +%s)
status=0
bazel test //node:crash_test \
  --test_env=CRASH_ITERATIONS="$iterations" --test_env=CRASH_SEED="$seed" \
  --test_timeout="$timeout_seconds" --nocache_test_results || status=$?
elapsed=$(($(date +%s) - start))

log="$(bazel info bazel-testlogs 2>/dev/null)/node/crash_test/test.log"
if ! grep -h "crash figures:" "$log"; then
  echo "crash_campaign: no figures in $log" >&2
  [ "$status" -ne 0 ] || status=1
fi
echo "crash_campaign: $iterations iterations, seed $seed, ${elapsed} s including the build," \
  "test exit status $status"
exit "$status"
