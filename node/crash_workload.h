#ifndef KVSTORE_NODE_CRASH_WORKLOAD_H_
#define KVSTORE_NODE_CRASH_WORKLOAD_H_

// What the crash child (node/crash_child.cc) writes and prints, shared with the tests that kill
// it (node/crash_test.cc), so both sides agree on every key, value and line.
//
// Run i of a campaign writes keys k<N> for N = first, first + 1, ... with the value
// Value(N, seed_i). A value names its run through the seed, so a checker that finds k<N> holding
// anything but the value its run submitted has found a lost, stale or invented write.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "core/raft/rand.h"

namespace kvstore::node::crash {

// Puts the child keeps in flight at once: enough for the WAL's group commit to batch several
// entries into one fdatasync, so crashes also land between a batch's write and its sync. A
// checker bounds what a killed run may have submitted by its acknowledgements plus this.
inline constexpr uint64_t kMaxInflightPuts = 8;

// Exit codes of crash_child.
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 2;
// The store refused to start (corruption, a bad directory): nothing was served.
inline constexpr int kExitStoreRefused = 3;
// The member (or the backend) stopped on a storage failure while running.
inline constexpr int kExitStopped = 4;
// A put failed or nothing progressed within the child's own time limits.
inline constexpr int kExitStalled = 5;

// Lines on the child's stdout, one write(2) each (atomic on a pipe: at most PIPE_BUF bytes).
inline constexpr absl::string_view kReadyLine = "ready";  // leader, about to serve
inline constexpr absl::string_view kAckPrefix = "ack ";   // "ack <key> <value>"
inline constexpr absl::string_view kKvPrefix = "kv ";     // "kv <key> <value>" (--verify)

inline std::string Key(uint64_t n) { return absl::StrCat("k", n); }

// The value run `seed` submits for key n: "v<N>-" and 16 hex digits of a hash of (seed, n).
inline std::string Value(uint64_t n, uint64_t seed) {
  return absl::StrFormat("v%d-%016x", n, raft::SplitMix64::Mix(seed ^ raft::SplitMix64::Mix(n)));
}

// N of a key "k<N>"; nullopt for any other key.
inline std::optional<uint64_t> KeyNumber(absl::string_view key) {
  uint64_t n = 0;
  if (key.size() < 2 || key[0] != 'k' || !absl::SimpleAtoi(key.substr(1), &n)) return std::nullopt;
  if (Key(n) != key) return std::nullopt;  // "k007", "k+7": not a key the child writes
  return n;
}

struct KeyValueLine {
  std::string key;
  std::string value;
};
// The key and value of a line "<prefix><key> <value>" (kAckPrefix, kKvPrefix); nullopt for any
// other line.
inline std::optional<KeyValueLine> ParseKeyValueLine(absl::string_view line,
                                                     absl::string_view prefix) {
  if (line.substr(0, prefix.size()) != prefix) return std::nullopt;
  line.remove_prefix(prefix.size());
  const size_t space = line.find(' ');
  if (space == absl::string_view::npos || space == 0) return std::nullopt;
  return KeyValueLine{std::string(line.substr(0, space)), std::string(line.substr(space + 1))};
}

}  // namespace kvstore::node::crash

#endif  // KVSTORE_NODE_CRASH_WORKLOAD_H_
