#!/usr/bin/env bash
# A fuzz campaign bounded by wall time on this machine: N shards of `sim fuzz` side by side (one
# per core), each writing a summary, merged by `sim merge` into one report. It ends with one line
# in the shape of a test result, "//tools/sim:fuzz_campaign PASSED in 46.0s" (or FAILED), which
# .ci/run counts with the tests; the exit code is 0 only if every seed passed and every shard
# reported.
#
#   bazel run //tools/sim:fuzz_campaign -- [--seed=S] [--minutes=M] [--shards=N] [--nodes=3,5]
#                                           [--duration-ms=D] [--expected-rare=FILE]
#
# Defaults: seed 1, 0.75 minutes, one shard per core, 3 or 5 nodes, 15000 ms of faults per seed.
# CI passes a first seed derived from the commit hash, so every commit explores new schedules;
# a failing seed prints its replay command (`sim replay --seed=... --nodes=... --duration-ms=...`).
# The merged report counts the hits of each code probe (core/base/probe.h); a probe never hit
# fails the campaign unless FILE (testdata/sim/expected_rare_probes.txt) lists it with a reason.
set -uo pipefail

seed=1
minutes=0.75
shards=$(nproc 2>/dev/null || echo 1)
nodes=3,5
duration_ms=15000
expected_rare=testdata/sim/expected_rare_probes.txt
for arg in "$@"; do
  case "$arg" in
    --seed=*) seed=${arg#*=} ;;
    --minutes=*) minutes=${arg#*=} ;;
    --shards=*) shards=${arg#*=} ;;
    --nodes=*) nodes=${arg#*=} ;;
    --duration-ms=*) duration_ms=${arg#*=} ;;
    --expected-rare=*) expected_rare=${arg#*=} ;;
    *)
      echo "fuzz_campaign: unknown argument '$arg' (see the top of tools/sim/fuzz_campaign.sh)" >&2
      exit 2
      ;;
  esac
done
if ! [[ "$shards" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz_campaign: --shards must be a positive integer, got '$shards'" >&2
  exit 2
fi

# The sim binary beside this script: in the runfiles tree (bazel run's working directory, or
# this script's .runfiles when it is run directly).
sim=""
for candidate in "${RUNFILES_DIR:-/nonexistent}/kvstore/tools/sim/sim" \
  "$0.runfiles/kvstore/tools/sim/sim" "$PWD/tools/sim/sim"; do
  if [ -x "$candidate" ]; then
    sim=$candidate
    break
  fi
done
if [ -z "$sim" ]; then
  echo "fuzz_campaign: cannot find the sim binary; run it as bazel run //tools/sim:fuzz_campaign" >&2
  exit 2
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_campaign.XXXXXX")
start=$(date +%s.%N)
echo "fuzz campaign: seeds from $seed, $shards shards for $minutes minutes," \
  "$nodes nodes, $duration_ms ms of faults per seed"
pids=()
for ((i = 0; i < shards; i++)); do
  # Progress (stderr) shows live; each shard's report waits in its file.
  "$sim" fuzz --seed="$seed" --minutes="$minutes" --nodes="$nodes" --duration-ms="$duration_ms" \
    --shard="$i/$shards" --isolate --summary="$dir/shard-$i.json" >"$dir/shard-$i.out" &
  pids+=($!)
done
summaries=()
missing=0
for ((i = 0; i < shards; i++)); do
  wait "${pids[$i]}"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "--- shard $i/$shards exited with $rc:"
    cat "$dir/shard-$i.out"
  fi
  if [ -s "$dir/shard-$i.json" ]; then
    summaries+=("$dir/shard-$i.json")
  else
    echo "shard $i/$shards wrote no summary"
    missing=1
  fi
done
merge_rc=1
if [ "${#summaries[@]}" -gt 0 ]; then
  "$sim" merge --expected-rare="$expected_rare" "${summaries[@]}"
  merge_rc=$?
fi
seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
if [ "$merge_rc" -eq 0 ] && [ "$missing" -eq 0 ]; then
  rm -rf "$dir"
  echo "//tools/sim:fuzz_campaign PASSED in ${seconds}s"
  exit 0
fi
echo "summaries and outputs kept in $dir"
echo "//tools/sim:fuzz_campaign FAILED in ${seconds}s"
exit 1
