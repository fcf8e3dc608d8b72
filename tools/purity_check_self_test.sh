#!/usr/bin/env bash
# Proves purity_check.sh catches what it must and leaves clean code alone.
set -uo pipefail
check=tools/purity_check.sh
out=$(bash "$check" testdata/purity/impure 2>&1)
rc=$?
echo "$out"
[ "$rc" -ne 0 ] || { echo "FAIL: impure fixture passed"; exit 1; }
for line in 2 3 4 6 7; do
  echo "$out" | grep -q "clock_user.cc:$line:" || { echo "FAIL: line $line not reported"; exit 1; }
done
bash "$check" testdata/purity/pure || { echo "FAIL: clean fixture reported"; exit 1; }
echo "PASS"
