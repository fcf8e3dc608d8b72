#!/usr/bin/env bash
# The simulator's command line does what its usage and the READMEs say: check-history gives the
# verdict alone with --no-shrink and bounds shrinking with --shrink-steps; shrink of a passing seed
# says so, writes nothing and exits 0; run refuses a scenario that reads an unknown name; help
# lists every command; fuzz runs shards and time-bounded campaigns whose summaries merge.
set -uo pipefail
sim="$TEST_SRCDIR/$TEST_WORKSPACE/tools/sim/sim"
dir="${TEST_TMPDIR:-$(mktemp -d)}"
failures=0

expect() {  # expect DESCRIPTION WANTED_EXIT_CODE WANTED_TEXT -- COMMAND...
  local what="$1" code="$2" text="$3"
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$code" ] || ! grep -qF -- "$text" <<<"$out"; then
    echo "FAIL: $what: exit $rc (wanted $code), output lacks '$text':"
    sed 's/^/    /' <<<"$out"
    failures=$((failures + 1))
  fi
}

# Key x reads 2, which nobody wrote; key y is fine.
cat >"$dir/h.txt" <<'HISTORY'
0 invoke write x 1
0 ok write x 1
2 invoke write y 5
2 ok write y 5
1 invoke read x nil
1 ok read x 1
1 invoke read x nil
1 ok read x 2
0 invoke write x 3
0 ok write x 3
HISTORY

expect "check-history shrinks a violation" 1 "already these 1 have none" -- \
  "$sim" check-history "$dir/h.txt"
expect "check-history --no-shrink gives the verdict alone" 1 \
  "key x (4 operations) has no linearization (not shrunk: --no-shrink)" -- \
  "$sim" check-history "$dir/h.txt" --no-shrink
if "$sim" check-history "$dir/h.txt" --no-shrink | grep -q "ok read x 2"; then
  echo "FAIL: check-history --no-shrink printed the history"
  failures=$((failures + 1))
fi
expect "check-history --shrink-steps bounds the shrinking" 1 \
  "shrinking stopped at its budget of 1 steps" -- \
  "$sim" check-history "$dir/h.txt" --shrink-steps=1
expect "--no-shrink and --shrink-steps together" 2 "exclude each other" -- \
  "$sim" check-history "$dir/h.txt" --no-shrink --shrink-steps=5

expect "shrink of a passing seed" 0 "seed 3 passes" -- \
  "$sim" shrink --seed=3 --nodes=3 --duration-ms=2000 --out="$dir/shrunk.textproto"
if [ -e "$dir/shrunk.textproto" ]; then
  echo "FAIL: shrink of a passing seed wrote a file"
  failures=$((failures + 1))
fi

cat >"$dir/misspelt.textproto" <<'SCENARIO'
steps { remember_node { leader: true } name: "leader" }
steps { crash { name: "leadr" } }
SCENARIO
expect "run refuses a misspelt name" 1 "step 2: uses the node name 'leadr' before any step" -- \
  "$sim" run "$dir/misspelt.textproto"

# Help: every command's usage, on stdout, exit 0. Each form runs once and every command is looked
# for in its output (a process start costs a second under the sanitizers).
help_again() { printf '%s\n' "$help_out"; return "$help_rc"; }
for help in "help" "--help" "fuzz --help"; do
  # shellcheck disable=SC2086
  help_out=$("$sim" $help 2>&1)
  help_rc=$?
  for command in "sim run FILE" "sim fuzz " "sim merge SUMMARY" "sim replay --seed" \
    "sim replay --trace" "sim shrink --seed" "sim check-history FILE" "--shard=I/N"; do
    expect "sim $help lists '$command'" 0 "$command" -- help_again
  done
done
expect "an unknown command prints the usage" 2 "sim merge SUMMARY..." -- "$sim" frobnicate
expect "--minutes must be positive" 2 "--minutes must be a positive number, got '0'" -- \
  "$sim" fuzz --minutes=0
expect "--shard must be I/N" 2 "shard '2/2' is not I/N" -- "$sim" fuzz --shard=2/2
expect "--nodes takes a list" 2 "node count '12' in '3,12'" -- "$sim" fuzz --nodes=3,12

# A campaign bounded by time reports and stops.
expect "fuzz --minutes" 0 "seeds from 7 for 0.005 minutes, 3 nodes" -- \
  "$sim" fuzz --seed=7 --minutes=0.005 --nodes=3 --duration-ms=500

# --isolate (each seed in a child process) reports the same figures as a run in-process,
# availability included.
in_process=$("$sim" fuzz --seed=5 --count=3 --nodes=3 --duration-ms=4000 | grep '^availability:')
isolated=$("$sim" fuzz --seed=5 --count=3 --nodes=3 --duration-ms=4000 --isolate |
  grep '^availability:')
if [ -z "$in_process" ] || [ "$in_process" != "$isolated" ]; then
  echo "FAIL: fuzz --isolate reported '$isolated', in-process '$in_process'"
  failures=$((failures + 1))
fi

# Two shards of one range, merged: every seed once. Then shard 0 with a planted failing shard 1,
# and shard 0 alone.
for shard in 0 1; do
  expect "fuzz shard $shard/2" 0 "summary written to $dir/shard-$shard.json" -- \
    "$sim" fuzz --seed=1 --count=4 --nodes=3 --duration-ms=500 --shard="$shard/2" \
    --summary="$dir/shard-$shard.json"
done
expect "merge of two shards" 0 "coverage: seeds 1..4 all run exactly once" -- \
  "$sim" merge "$dir/shard-0.json" "$dir/shard-1.json"
cat >"$dir/planted.json" <<'SUMMARY'
{"first_seed": "1", "seed_count": "4", "shard_index": "1", "shard_count": "2", "nodes": [3],
 "duration_ms": "500", "seeds_run": "2", "seeds_passed": "1", "last_seed_run": "3",
 "failures": [{"seed": "3", "nodes": 3, "replay": "sim replay --seed=3 --nodes=3 --duration-ms=500",
               "failures": ["checker: planted"]}],
 "by_nodes": [{"nodes": 3, "seeds": "2", "failed": "1", "cpu_ms": [10, 20]}]}
SUMMARY
expect "merge with a failed shard names the seed" 1 "FAILED seed 3 (3 nodes): checker: planted" -- \
  "$sim" merge "$dir/shard-0.json" "$dir/planted.json"
expect "merge with a failed shard gives its replay" 1 \
  "replay: sim replay --seed=3 --nodes=3 --duration-ms=500" -- \
  "$sim" merge "$dir/shard-0.json" "$dir/planted.json"
expect "merge with a shard missing" 3 "INCOMPLETE: 1 of 2 shards missing: 1/2" -- \
  "$sim" merge "$dir/shard-0.json"
expect "merge of shard 0 twice" 3 "overlap: shard 0/2 appears in" -- \
  "$sim" merge "$dir/shard-0.json" "$dir/shard-0.json" "$dir/shard-1.json"
echo '{"seeds_run": ' >"$dir/broken.json"
expect "merge of a broken summary" 2 "not a campaign summary" -- "$sim" merge "$dir/broken.json"

[ "$failures" -eq 0 ] && echo "PASS" || exit 1
