#!/usr/bin/env bash
# Mutation harness: measures how fast the simulator finds classic Raft/KV bugs.
#
# Each patch under testdata/mutants/ (NN_name.patch, applied in name order) plants one bug that
# a developer could plausibly write. For each one, in a single scratch copy of the committed tree
# (HEAD, cloned under $TMPDIR; this checkout's working tree and index are never touched):
#   1. apply the patch, `bazel build -c opt //tools/sim:sim` (one output base for every mutant,
#      so each rebuild is incremental),
#   2. run fuzz seeds 1, 2, 3, ... (odd seeds on 3 nodes, even seeds on 5), one `sim fuzz
#      --count=1` per seed so every verdict belongs to one seed, until the first seed that fails
#      or --max-seeds,
#   3. run the scenario suite (testdata/scenarios/*.textproto) once, for reference,
#   4. revert the patch.
# A control run first checks that the unmutated tree passes the very same seeds and scenarios.
# A patch whose header says "# Judged by: //pkg:test" plants a bug `sim fuzz` does not exercise
# (the auth workload runs apart): it is caught when that test fails in the mutated tree (its
# seeds are its own; the table's seed column says which test).
#
# A seed catches the mutant when `sim fuzz` exits 1 (a checker reported it) or aborts (a
# RAFT_CHECK invariant inside the core fired). A seed that runs past --seed-timeout (a livelock,
# e.g. a message storm) is noted as hung but is no checker's catch: the campaign goes on. The
# table names the checker that caught each mutant and the first failure line.
#
# Usage: tools/mutants.sh [--only NAME[,NAME...]] [--max-seeds N] [--duration-ms D]
#                         [--seed-timeout S] [--markdown FILE] [--keep]
#   --only         mutants whose file name contains NAME (e.g. 04 or leader_reads_locally)
#   --max-seeds    seeds per mutant before it counts as not caught (default 1000)
#   --duration-ms  virtual duration of each seed's faulty phase (default 15000)
#   --seed-timeout wall-clock seconds a seed may run before it counts as hung (default 30)
#   --markdown     also write the results table to FILE (markdown)
#   --keep         keep the scratch copy and its Bazel output base (printed at the end)
# Exit status: 0 if the control run passed and every mutant was caught, 1 otherwise, 2 on usage
# errors. Needs git and bazel (tools/setup.sh); takes ~1 minute per caught mutant and ~1.5 per
# uncaught one on 2 cores.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

only=""
max_seeds=1000
duration_ms=15000
seed_timeout=30
markdown=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only="${2:?--only needs a value}"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    --max-seeds) max_seeds="${2:?--max-seeds needs a value}"; shift 2 ;;
    --max-seeds=*) max_seeds="${1#*=}"; shift ;;
    --duration-ms) duration_ms="${2:?--duration-ms needs a value}"; shift 2 ;;
    --duration-ms=*) duration_ms="${1#*=}"; shift ;;
    --seed-timeout) seed_timeout="${2:?--seed-timeout needs a value}"; shift 2 ;;
    --seed-timeout=*) seed_timeout="${1#*=}"; shift ;;
    --markdown) markdown="${2:?--markdown needs a value}"; shift 2 ;;
    --markdown=*) markdown="${1#*=}"; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage ;;
    *) echo "mutants: unknown argument '$1'" >&2; usage ;;
  esac
done
for n in "$max_seeds" "$duration_ms" "$seed_timeout"; do
  if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
    echo "mutants: '$n' is not a positive integer" >&2
    exit 2
  fi
done
if [ -n "$markdown" ] && [[ "$markdown" != /* ]]; then markdown="$PWD/$markdown"; fi

repo=$(cd "$(dirname "$0")/.." && pwd)
patch_dir="$repo/testdata/mutants"
commit=$(git -C "$repo" rev-parse HEAD)

patches=()
for patch in "$patch_dir"/*.patch; do
  [ -e "$patch" ] || continue
  name=$(basename "$patch" .patch)
  if [ -n "$only" ]; then
    wanted=0
    IFS=',' read -r -a needles <<<"$only"
    for needle in "${needles[@]}"; do
      if [ -n "$needle" ] && [[ "$name" == *"$needle"* ]]; then wanted=1; fi
    done
    [ "$wanted" -eq 1 ] || continue
  fi
  patches+=("$patch")
done
if [ ${#patches[@]} -eq 0 ]; then
  echo "mutants: no patch in $patch_dir matches '${only}'" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kvstore-mutants.XXXXXX")
tree="$work/tree"
output_base="$work/output_base"
cleanup() {
  local status=$?
  if [ -d "$tree" ]; then
    (cd "$tree" && bazel --output_base="$output_base" shutdown >/dev/null 2>&1) || true
  fi
  if [ "$keep" -eq 1 ]; then
    echo "mutants: kept $work" >&2
  else
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "mutants: $*" >&2; }

git clone -q "$repo" "$tree"
git -C "$tree" checkout -q --detach "$commit"
log "scratch copy of ${commit:0:12} in $tree (Bazel output base $output_base)"

build() {
  (cd "$tree" && bazel --output_base="$output_base" build -c opt --define=lto=off //tools/sim:sim) \
    >"$work/build.log" 2>&1
}
# The checker a failure line came from.
checker_of() {
  case "$1" in
    "RAFT_CHECK "*) echo "RAFT_CHECK (core invariant)" ;;
    "watchdog "*) echo "watchdog (hang)" ;;
    *"applied a different entry"*) echo "state machine safety" ;;
    *"two leaders in term"*) echo "election safety" ;;
    *"term decreased"* | *"commit decreased"* | *"beyond last index"* | *"without voting"* | \
      *"voted twice"*) echo "node invariants" ;;
    *" more violations after the first "*) ;;  # the tail of a flood: no checker of its own
    *"disagree on the store hash"*) echo "hash agreement" ;;
    *"before the vote was durable"* | *"but its durable log ends at"*) echo "durable before reply" ;;
    *"advanced commit to"*) echo "commit rule (current term)" ;;
    *"holds durably"*) echo "commit quorum durable" ;;
    *" leads term "*" with last index "* | *" leads term "*" holding term "*)
      echo "leader completeness" ;;
    *"changed its configuration"*) echo "configuration on apply" ;;
    *" applies index "*" again "*) echo "exactly-once apply" ;;
    *"but its store holds no such write"*) echo "write provenance" ;;
    list-append:*) echo "Elle (list-append)" ;;
    *watch*) echo "watch checker" ;;
    linearizability:*) echo "linearizability" ;;
    *"acknowledged write"*) echo "acknowledged writes survive" ;;
    *"refuses to start on a disk nothing corrupted"* | *"lost durable entry"* | \
      *"what recovery left on disk"* | \
      *" recovered term "* | *" recovered entry "* | *"recovered a log starting"*)
      echo "storage checker" ;;
    *"cannot start"*) echo "restart check" ;;
    *" is at revision "*", below "*) echo "revision never decreases (expect step)" ;;
    *"no leader"* | *"expected "*", got "*) echo "recovery after heal" ;;
    *"the NOSPACE alarm was active"* | *"while no NOSPACE alarm was active"*) echo "quota checker" ;;
    *"over a limit"* | *"well within the limits"*) echo "request limits checker" ;;
    *) echo "other" ;;
  esac
}

# Runs one seed. Prints nothing and returns 0 if it passed; otherwise prints its failure lines,
# most telling first (standing checkers, then linearizability, then scenario steps).
run_seed() {
  local seed=$1 nodes=$2 out="$work/seed.out" rc=0
  timeout "$seed_timeout" "$tree/bazel-bin/tools/sim/sim" fuzz --seed="$seed" --count=1 \
    --nodes="$nodes" --duration-ms="$duration_ms" >"$out" 2>&1 || rc=$?
  case "$rc" in
    0) return 0 ;;
    1)
      local lines
      # Failure lines are indented by two; skip the replay hint, the seed's knobs (they name
      # the watch buffer, which read as a watch checker's catch in every row) and the history
      # excerpt that follows a linearizability verdict.
      lines=$(sed -n 's/^  \(.*\)$/\1/p' "$out" |
        grep -v -e '^replay: ' -e '^knobs: ' -e '^ ' -e '^@[0-9]* ' || true)
      { grep '^checker: ' <<<"$lines" | sed 's/^checker: //' || true
        grep '^linearizability: ' <<<"$lines" || true
        grep -v -e '^checker: ' -e '^linearizability: ' <<<"$lines" || true; } | grep -v '^$'
      ;;
    124) echo "watchdog seed ran over ${seed_timeout}s (livelock; no checker reported)" ;;
    *)
      local check
      check=$(grep -m1 -o 'invariant violated: .*' "$out" || true)
      if [ -n "$check" ]; then
        echo "RAFT_CHECK ${check}"
      else
        echo "crash exit status $rc: $(tail -n 1 "$out")"
      fi
      ;;
  esac
  return 1
}

# Seeds 1..max until a checker (or a RAFT_CHECK abort) catches the bug. Prints
# "seed RS nodes RS failure lines RS hangs" for that seed (RS: the \036 separator; the failure
# lines are joined by \037), or "RS RS RS hangs" if none
# does. A seed that hangs is no checker's catch: it is noted ("hangs") and the campaign goes on.
campaign() {
  local seed nodes failures hangs=""
  for ((seed = 1; seed <= max_seeds; seed++)); do
    nodes=$((seed % 2 == 1 ? 3 : 5))
    if ! failures=$(run_seed "$seed" "$nodes"); then
      if [[ "$failures" == "watchdog "* ]]; then
        log "  seed $seed ($nodes nodes) hung (over ${seed_timeout}s); going on"
        hangs="${hangs:+$hangs, }$seed"
        continue
      fi
      printf '%s\036%s\036%s\036%s\n' "$seed" "$nodes" "$(tr '\n' '\037' <<<"$failures")" "$hangs"
      return 0
    fi
    if ((seed % 100 == 0)); then log "  $seed seeds pass"; fi
  done
  printf '\036\036\036%s\n' "$hangs"
}

# Failing scenarios of the suite, comma-separated ("-" when all pass).
scenarios() {
  local out="$work/scenarios.out" failed
  (cd "$tree" && timeout 600 "$tree/bazel-bin/tools/sim/sim" run testdata/scenarios/*.textproto) \
    >"$out" 2>&1 || true
  failed=$(sed -n 's/^FAIL \([^ ]*\) .*/\1/p' "$out" | paste -sd, -)
  if grep -q 'invariant violated' "$out"; then
    failed="${failed:+$failed,}aborted (RAFT_CHECK)"
  fi
  echo "${failed:--}"
}

shorten() {
  local text=$1
  text=${text//|/\\|}
  if [ ${#text} -gt 110 ]; then text="${text:0:107}..."; fi
  echo "$text"
}

rows=()
all_caught=1

log "control: building the unmutated tree"
if ! build; then
  tail -n 30 "$work/build.log" >&2
  log "the unmutated tree does not build"
  exit 1
fi
log "control: $max_seeds seeds, ${duration_ms}ms each"
IFS=$'\036' read -r seed nodes failures hangs <<<"$(campaign)"
control_scenarios=$(scenarios)
if [ -n "$seed" ]; then
  first=$(tr '\037' '\n' <<<"$failures" | awk 'NR == 1')
  log "CONTROL FAILED at seed $seed ($nodes nodes): $first"
  rows+=("| (control: no mutant) | FAILED | $seed | $(checker_of "$first") | $control_scenarios | ${hangs:+hung: $hangs; }$(shorten "$first") |")
  all_caught=0
elif [ -n "$hangs" ]; then
  log "CONTROL: seeds $hangs hung"
  rows+=("| (control: no mutant) | HANGS | - | - | $control_scenarios | hung: $hangs |")
  all_caught=0
else
  log "control: all $max_seeds seeds pass; scenarios failing: $control_scenarios"
  rows+=("| (control: no mutant) | passes | $max_seeds of $max_seeds pass | - | $control_scenarios | - |")
fi

for patch in "${patches[@]}"; do
  name=$(basename "$patch" .patch)
  if ! git -C "$tree" apply "$patch"; then
    log "$name: does not apply"
    rows+=("| $name | does not apply | - | - | - | - |")
    all_caught=0
    continue
  fi
  judge=$(sed -n 's|^# Judged by: \(//[^ ]*\).*|\1|p' "$patch" | head -n 1)
  log "$name: building"
  if [ -n "$judge" ]; then
    out="$work/judge.out"
    if (cd "$tree" && bazel --output_base="$output_base" test "$judge" --test_output=errors) \
      >"$out" 2>&1; then
      log "$name: NOT caught by $judge"
      rows+=("| $name | no | $judge passes | - | - | - |")
      all_caught=0
    elif grep -q '^seed [0-9]* (' "$out"; then
      first=$(grep -m1 -o -e 'auth checker: .*' -e 'list-append: .*' "$out" ||
        grep -m1 '^seed [0-9]* (' "$out")
      seed=$(grep -m1 -o '^seed [0-9]* ([0-9] nodes)' "$out")
      case "$first" in
        "list-append: "*) judged_by="Elle (list-append)" ;;
        *) judged_by="auth checker" ;;
      esac
      log "$name: caught by $judge at $seed: $first"
      rows+=("| $name | yes | $seed, $judge | $judged_by | - | $(shorten "$first") |")
    else
      tail -n 20 "$out" >&2
      log "$name: $judge does not build or fails otherwise"
      rows+=("| $name | does not build | - | - | - | - |")
      all_caught=0
    fi
  elif ! build; then
    tail -n 20 "$work/build.log" >&2
    log "$name: does not build"
    rows+=("| $name | does not build | - | - | - | - |")
    all_caught=0
  else
    IFS=$'\036' read -r seed nodes failures hangs <<<"$(campaign)"
    suite=$(scenarios)
    hung="${hangs:+seeds hung (watchdog, no checker): $hangs; }"
    if [ -n "$seed" ]; then
      first=$(tr '\037' '\n' <<<"$failures" | awk 'NR == 1')
      checkers=$(tr '\037' '\n' <<<"$failures" | grep -v '^$' | while IFS= read -r line; do
        checker_of "$line"
      done | awk '!seen[$0]++' | paste -sd, - | sed 's/,/, /g')
      log "$name: caught at seed $seed ($nodes nodes) by $checkers: $first"
      rows+=("| $name | yes | $seed ($nodes nodes) | $checkers | $suite | $hung$(shorten "$first") |")
    else
      log "$name: NOT caught in $max_seeds seeds (scenario suite: $suite)${hangs:+; hung: $hangs}"
      rows+=("| $name | no | > $max_seeds | - | $suite | ${hung:--} |")
      all_caught=0
    fi
  fi
  git -C "$tree" apply -R "$patch" 2>/dev/null || true
  git -C "$tree" checkout -q -- .
  git -C "$tree" clean -fdq
done

# Rebuild the clean tree last, so a kept copy holds an unmutated binary.
build || true

table=$(
  echo "| mutant | caught | seeds until caught | checker | scenario suite fails | first failure (and hung seeds) |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
)
echo
echo "Mutation run $(date -u +%Y-%m-%d), commit ${commit:0:12}, --max-seeds=$max_seeds," \
  "--duration-ms=$duration_ms, odd seeds on 3 nodes, even seeds on 5"
echo
echo "$table"
if [ -n "$markdown" ]; then
  echo "$table" >"$markdown"
  log "table written to $markdown"
fi
[ "$all_caught" -eq 1 ]
