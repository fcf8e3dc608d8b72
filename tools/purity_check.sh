#!/usr/bin/env bash
# Fails, naming file and line, when a pure tree (core/ by default) reaches for a clock, a thread,
# a file, a socket or unseeded randomness. core/ is what the simulator replays bit for bit, so
# none of these may enter it; time arrives as ticks and randomness as a seed.
#   purity_check.sh [DIR...]
set -uo pipefail

dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(core)

headers='chrono|thread|mutex|shared_mutex|condition_variable|future|semaphore|stop_token'
headers+='|random|ctime|time\.h|sys/[a-z_/]+\.h|unistd\.h|fcntl\.h|pthread\.h|dirent\.h'
headers+='|fstream|iostream|filesystem|cstdio|stdio\.h|netinet/[a-z_]+\.h|arpa/inet\.h|netdb\.h'
headers+='|absl/time/clock\.h|absl/synchronization/[a-z_]+\.h|absl/random/[a-z_/]+\.h'
headers+='|kj/async[a-z_-]*\.h|kj/filesystem\.h|kj/thread\.h|capnp/rpc[a-z_-]*\.h|lmdb\.h'
include_pattern="^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($headers)[>\"]"
call_pattern='std::chrono|std::this_thread|std::random_device|absl::Now\(|absl::GetCurrentTimeNanos'
call_pattern+='|(^|[^A-Za-z0-9_:.>])(time|clock|clock_gettime|gettimeofday|rand|srand|random|getpid)[[:space:]]*\('

violations=0
while IFS= read -r -d '' file; do
  while IFS= read -r hit; do
    echo "$file:$hit: impure include (clock/thread/file/socket/random) in a pure tree"
    violations=$((violations + 1))
  done < <(grep -nE "$include_pattern" "$file" | cut -d: -f1)
  while IFS= read -r hit; do
    echo "$file:$hit: wall clock, thread or unseeded randomness in a pure tree"
    violations=$((violations + 1))
  done < <(sed -E 's@//.*$@@' "$file" | grep -nE "$call_pattern" | cut -d: -f1)
done < <(find -L "${dirs[@]}" -type f \( -name '*.h' -o -name '*.cc' \) -print0 | sort -z)

if [ "$violations" -gt 0 ]; then
  echo "purity: $violations violation(s)" >&2
  exit 1
fi
echo "purity: clean (${dirs[*]})"
