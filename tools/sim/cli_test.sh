#!/usr/bin/env bash
# The simulator's command line does what its usage and the READMEs say: check-history gives the
# verdict alone with --no-shrink and bounds shrinking with --shrink-steps; shrink of a passing seed
# says so, writes nothing and exits 0; run refuses a scenario that reads an unknown name.
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

[ "$failures" -eq 0 ] && echo "PASS" || exit 1
