#!/usr/bin/env bash
# Formats every C++ file of the project with clang-format (.clang-format at the root).
#   tools/format.sh          rewrite files in place
#   tools/format.sh --check  change nothing; list unformatted files and exit 1 if there are any
set -euo pipefail
cd "$(dirname "$0")/.."

mode=fix
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "usage: tools/format.sh [--check]" >&2; exit 2 ;;
esac

if ! command -v clang-format >/dev/null 2>&1; then
  echo "format: clang-format not found; run tools/setup.sh" >&2
  exit 1
fi

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.h' '*.cc' | sort)
else
  mapfile -t files < <(find core sim net store node tools -name '*.h' -o -name '*.cc' | sort)
fi
# Generated or deliberately broken fixtures are not ours to format.
mapfile -t files < <(printf '%s\n' "${files[@]}" | grep -v '^testdata/' || true)
[ ${#files[@]} -gt 0 ] || exit 0

if [ "$mode" = fix ]; then
  clang-format -i "${files[@]}"
  exit 0
fi

# A file needs formatting when clang-format reports a violation in it. Any other failure (a
# clang-format that could not run, say under memory pressure) is tried again and, if it
# persists, reported as what it is rather than as a formatting fault.
bad=()
for file in "${files[@]}"; do
  [ -f "$file" ] || continue
  for attempt in 1 2 3; do
    if out=$(clang-format --dry-run --Werror "$file" 2>&1); then
      break
    elif grep -q 'clang-format-violations' <<<"$out"; then
      bad+=("$file")
      break
    elif [ "$attempt" -eq 3 ]; then
      echo "format: clang-format failed on $file: $out" >&2
      bad+=("$file")
    fi
  done
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "format: these files need tools/format.sh:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format: ${#files[@]} files formatted"
