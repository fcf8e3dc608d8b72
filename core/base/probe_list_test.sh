#!/usr/bin/env bash
# Checks core/base/probe.h's list of code probes against their uses in core/: each entry
# X(group, name, "file", ...) must be used exactly once, as CODE_PROBE(group, name), in the file
# it names (tests aside). A use of a probe the list lacks does not compile. Runfiles are
# symlinks into the workspace, so following this script's link finds the real core/ tree.
set -uo pipefail
root=$(dirname "$(readlink -f "$0")")/../..
header="$root/core/base/probe.h"
entries=$(grep -oE '^ *X\([a-z_]+, [a-z_]+, "[^"]+"' "$header" | sed -E 's/^ *X\(//; s/[",]//g')
[ -n "$entries" ] || { echo "probe_list_test: no entries found in $header" >&2; exit 1; }
# Every use in core/ at once (one pass over the tree), as "path:line:text".
all_uses=$(grep -rnE --include='*.cc' --include='*.h' --exclude='*_test.cc' 'CODE_PROBE\(' \
  "$root/core" | grep -v '^[^:]*core/base/probe\.h:' | sed "s|^$root/||")
failures=0
count=0
while read -r group name file; do
  count=$((count + 1))
  uses=$(grep -E "CODE_PROBE\($group, $name\)" <<<"$all_uses")
  n=$(printf '%s' "$uses" | grep -c . || true)
  if [ "$n" -ne 1 ]; then
    echo "probe $group.$name: used $n times (want exactly 1)${uses:+: }$(echo $uses)"
    failures=$((failures + 1))
  elif [ "${uses%%:*}" != "$file" ]; then
    echo "probe $group.$name: listed in $file but used at ${uses%%:*}"
    failures=$((failures + 1))
  fi
done <<<"$entries"
if [ "$failures" -gt 0 ]; then
  echo "probe_list_test: $failures of $count probes do not match their uses" >&2
  exit 1
fi
echo "probe_list_test: $count probes, each used once where listed"
