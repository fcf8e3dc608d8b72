#ifndef KVSTORE_CORE_RAFT_QUORUM_H_
#define KVSTORE_CORE_RAFT_QUORUM_H_

// Majority arithmetic over one voter set and over a joint configuration (Raft thesis §4.3):
// a joint decision needs a majority of each half.

#include <cstdint>
#include <limits>
#include <vector>

#include "absl/container/btree_map.h"
#include "core/raft/types.h"

namespace kvstore::raft {

enum class VoteResult : uint8_t { kPending, kLost, kWon };

// Votes cast so far: voter -> granted.
using VoteMap = absl::btree_map<NodeId, bool>;

// An empty config commits everything and wins every vote, so a joint config whose outgoing half
// is empty behaves like its incoming half alone.
inline constexpr Index kIndexMax = std::numeric_limits<Index>::max();

class MajorityConfig {
 public:
  MajorityConfig() = default;
  explicit MajorityConfig(std::vector<NodeId> ids);

  const std::vector<NodeId>& ids() const { return ids_; }
  bool empty() const { return ids_.empty(); }
  size_t size() const { return ids_.size(); }
  bool Contains(NodeId id) const;
  void Insert(NodeId id);
  void Erase(NodeId id);

  // The largest index acknowledged by a majority.
  template <typename Match>
  Index CommittedIndex(const Match& match) const;
  VoteResult Vote(const VoteMap& votes) const;

  friend bool operator==(const MajorityConfig& a, const MajorityConfig& b) {
    return a.ids_ == b.ids_;
  }

 private:
  std::vector<NodeId> ids_;  // sorted, unique
};

struct JointConfig {
  MajorityConfig incoming;
  MajorityConfig outgoing;  // empty unless joint

  bool Contains(NodeId id) const { return incoming.Contains(id) || outgoing.Contains(id); }
  // Sorted union of both halves.
  std::vector<NodeId> Ids() const;
  template <typename Match>
  Index CommittedIndex(const Match& match) const {
    const Index a = incoming.CommittedIndex(match);
    const Index b = outgoing.CommittedIndex(match);
    return a < b ? a : b;
  }
  VoteResult Vote(const VoteMap& votes) const;
};

template <typename Match>
Index MajorityConfig::CommittedIndex(const Match& match) const {
  const size_t n = ids_.size();
  if (n == 0) return kIndexMax;
  if (n == 1) return match(ids_[0]);  // a single voter: its own match is the quorum's
  // Small configs (the common case) sort on the stack: no allocation on the commit path.
  constexpr size_t kStackVoters = 16;
  Index stack[kStackVoters];
  std::vector<Index> heap;
  Index* matched = stack;
  if (n > kStackVoters) {
    heap.resize(n);
    matched = heap.data();
  }
  for (size_t i = 0; i < n; ++i) matched[i] = match(ids_[i]);
  // Insertion sort, descending: n is tiny.
  for (size_t i = 1; i < n; ++i) {
    for (size_t j = i; j > 0 && matched[j - 1] < matched[j]; --j) {
      const Index t = matched[j];
      matched[j] = matched[j - 1];
      matched[j - 1] = t;
    }
  }
  // The (n/2+1)-th largest value is held by a majority.
  return matched[n / 2];
}

}  // namespace kvstore::raft

#endif  // KVSTORE_CORE_RAFT_QUORUM_H_
