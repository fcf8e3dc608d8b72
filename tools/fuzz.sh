#!/usr/bin/env bash
# Builds the libFuzzer targets of tools/fuzz/ with clang and runs each for a bounded time.
#   bash tools/fuzz.sh --brief                  every target ~25 s (CI)
#   bash tools/fuzz.sh                          every target 10 minutes (a campaign)
#   bash tools/fuzz.sh --campaign 3600 wal      the named targets, an hour each
#   bash tools/fuzz.sh --build                  build only
#   bash tools/fuzz.sh --test //core/... -//x:y  run these tests in the same build (CI's sanitized
#                                               pass: clang, ASan+UBSan, sharing the fuzzers' objects);
#                                               --flag=value arguments go to bazel test
#
# The fuzzers are built in an output base of their own ($KVSTORE_FUZZ_OUTPUT_BASE, default
# ~/.cache/kvstore-fuzz) with CC=clang: Bazel picks its C++ toolchain per output base, so this
# never disturbs the gcc build's cache. Each target reads its seeds from testdata/fuzz/<target>/
# (never written) and keeps what it discovers in ~/.cache/kvstore-fuzz-corpus/<target>/, so
# campaigns build on each other. A crash, hang (-timeout) or allocation above -malloc_limit_mb
# stops the target and leaves the input in ~/.cache/kvstore-fuzz-corpus/artifacts/; fix the bug
# and copy the input to testdata/fuzz/<target>/regression-<what> so every `bazel test //...`
# replays it. Prints one line per target ("//tools/fuzz:<target>_fuzzer PASSED ...") and exits 1
# if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

targets_all=(client_message codec config etcd_request gateway_body history http_head peer_message peer_stream scenario snapshot_file wal)
seconds=600
build_only=0
test_mode=0
targets=()
test_flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --brief) seconds=${KVSTORE_FUZZ_BRIEF_SECONDS:-25} ;;
    --campaign) seconds="$2"; shift ;;
    --build) build_only=1 ;;
    --test) test_mode=1 ;;
    -/*) [ "$test_mode" -eq 1 ] && targets+=("$1") || { echo "fuzz: $1 needs --test" >&2; exit 2; } ;;
    --*=*) [ "$test_mode" -eq 1 ] && test_flags+=("$1") || { echo "fuzz: $1 needs --test" >&2; exit 2; } ;;
    -*) echo "usage: tools/fuzz.sh [--brief | --campaign SECONDS | --build | --test PATTERN...] [target...]" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || [ "$test_mode" -eq 1 ] || targets=("${targets_all[@]}")

# Bounds every input must respect (README.md in tools/fuzz/): time per input and bytes per
# allocation; past them libFuzzer reports the input as a failure.
timeout_seconds=10
malloc_limit_mb=128
rss_limit_mb=2048

output_base=${KVSTORE_FUZZ_OUTPUT_BASE:-$HOME/.cache/kvstore-fuzz}
work=${KVSTORE_FUZZ_CORPUS:-$HOME/.cache/kvstore-fuzz-corpus}
if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang not found; run tools/setup.sh" >&2
  exit 1
fi

# --symlink_prefix=/: no bazel-* links, which would otherwise point the checkout's bazel-bin at
# this output base (and make the gcc build's //... walk into it).
fuzz_bazel() { CC=clang bazel --output_base="$output_base" "$@"; }
if [ "$test_mode" -eq 1 ]; then
  # The sanitized test pass: the same compile flags as the fuzzers (--config=fuzz: ASan, UBSan,
  # coverage instrumentation that the tests' ASan runtime answers), so the two share objects.
  # KVSTORE_SANITIZED=1 tells the tests that loop over many seeds to run a fraction of them
  # (each check unchanged; the plain pass, tools/test.sh, runs the full counts):
  # tools/fuzz/README.md lists which.
  [ ${#targets[@]} -gt 0 ] || { echo "fuzz: --test needs target patterns" >&2; exit 2; }
  # `//...` would also walk the checkout's bazel-<folder> link (the plain build's output base,
  # which this Bazel does not know as its own) and fail loading the external packages in it: it
  # stands for every real top-level folder with packages instead (links are not folders to
  # find -type d).
  patterns=()
  for target in "${targets[@]}"; do
    if [ "$target" != "//..." ]; then patterns+=("$target"); continue; fi
    while IFS= read -r folder; do
      # Only folders with packages (a kvnode data directory is none).
      [ -n "$(find "$folder" -name BUILD.bazel -print -quit)" ] && patterns+=("//${folder#./}/...")
    done < <(find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' | sort)
  done
  targets=("${patterns[@]}")
  exec env CC=clang bazel --output_base="$output_base" test --config=fuzz --symlink_prefix=/ \
    --test_env=KVSTORE_SANITIZED=1 "${test_flags[@]}" -- "${targets[@]}"
fi

labels=()
for target in "${targets[@]}"; do labels+=("//tools/fuzz:${target}_fuzzer"); done
if ! fuzz_bazel build --config=fuzz --symlink_prefix=/ "${labels[@]}"; then
  echo "fuzz: build failed" >&2
  for label in "${labels[@]}"; do echo "$label FAILED (build)"; done
  exit 1
fi
[ "$build_only" -eq 1 ] && exit 0
bin=$(fuzz_bazel info --config=fuzz bazel-bin 2>/dev/null)

failed=0
summary=()
mkdir -p "$work/artifacts"
for target in "${targets[@]}"; do
  corpus="$work/$target"
  mkdir -p "$corpus"
  log="$work/$target.log"
  start=$(date +%s)
  "$bin/tools/fuzz/${target}_fuzzer" "$corpus" "testdata/fuzz/$target" \
    -max_total_time="$seconds" -timeout="$timeout_seconds" -malloc_limit_mb="$malloc_limit_mb" \
    -rss_limit_mb="$rss_limit_mb" -artifact_prefix="$work/artifacts/$target-" \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  units=$(ls "$corpus" | wc -l)
  if [ "$rc" -eq 0 ]; then
    result=PASSED
  else
    result=FAILED
    failed=1
    echo "fuzz: $target failed (exit $rc); the log's end:" >&2
    tail -n 40 "$log" >&2
    echo "fuzz: the input is in $work/artifacts/$target-*" >&2
  fi
  summary+=("//tools/fuzz:${target}_fuzzer $result in ${elapsed}s: ${runs:-0} runs, ${rate:-0} exec/s, corpus ${units} (+seeds)")
done
printf '%s\n' "${summary[@]}"
exit "$failed"
