#ifndef KVSTORE_CORE_RAFT_TRACKER_H_
#define KVSTORE_CORE_RAFT_TRACKER_H_

// The leader's view of the cluster: the active configuration, each member's Progress, and the
// votes of an election. Also the rules for changing the configuration (etcd's confchange):
// simple changes move at most one voter; anything else goes through a joint configuration
// (Raft thesis §4.3) that is entered, then left.
//
// Invariants (checked after every change): every member has a Progress and every Progress is a
// member; learners and voters are disjoint; learners_next are outgoing voters, not learners;
// outside a joint state learners_next is empty and auto_leave is false.

#include <cstdint>
#include <set>

#include "absl/status/statusor.h"
#include "core/raft/flat_map.h"
#include "core/raft/progress.h"
#include "core/raft/quorum.h"
#include "core/raft/types.h"

namespace kvstore::raft {

struct TrackerConfig {
  JointConfig voters;
  std::set<NodeId> learners;
  std::set<NodeId> learners_next;
  bool auto_leave = false;

  bool Joint() const { return !voters.outgoing.empty(); }
  ConfState ToConfState() const;
  // ToConfState() == cs, without building one: drivers compare on every event.
  bool Matches(const ConfState& cs) const;
};

using ProgressMap = FlatMap<NodeId, Progress>;

class ProgressTracker {
 public:
  ProgressTracker(uint64_t max_inflight_msgs, uint64_t max_inflight_bytes);

  TrackerConfig config;
  ProgressMap progress;

  // Inline: read several times per proposal.
  Progress* Get(NodeId id) {
    auto it = progress.find(id);
    return it == progress.end() ? nullptr : &it->second;
  }
  bool IsVoter(NodeId id) const { return config.voters.Contains(id); }
  // Largest index acknowledged by a quorum (both halves when joint).
  Index Committed() const;
  // Whether a quorum has been recently active (check-quorum). Learners do not count.
  bool QuorumActive() const;
  void ResetVotes() { votes_.clear(); }
  // Records a vote (the first from each voter counts) and tallies the election.
  VoteResult RecordVote(NodeId id, bool granted);
  VoteResult TallyVotes() const { return config.voters.Vote(votes_); }
  // Whether `acks` (node -> acknowledged) form a quorum.
  VoteResult Tally(const VoteMap& acks) const { return config.voters.Vote(acks); }
  uint64_t max_inflight_msgs() const { return max_inflight_msgs_; }
  uint64_t max_inflight_bytes() const { return max_inflight_bytes_; }

 private:
  VoteMap votes_;
  uint64_t max_inflight_msgs_;
  uint64_t max_inflight_bytes_;
};

// Computes configurations derived from the tracker's current one without modifying it.
// Each returns the new configuration and progress map, or kInvalidArgument naming the rule.
class ConfChanger {
 public:
  // last_index: new members' progress starts probing from here.
  ConfChanger(const ProgressTracker& tracker, Index last_index)
      : tracker_(tracker), last_index_(last_index) {}

  struct Result {
    TrackerConfig config;
    ProgressMap progress;
  };
  absl::StatusOr<Result> EnterJoint(bool auto_leave,
                                    const std::vector<ConfChangeSingle>& changes) const;
  absl::StatusOr<Result> LeaveJoint() const;
  absl::StatusOr<Result> Simple(const std::vector<ConfChangeSingle>& changes) const;

 private:
  absl::Status Apply(Result& result, const std::vector<ConfChangeSingle>& changes) const;
  void MakeVoter(Result& result, NodeId id) const;
  void MakeLearner(Result& result, NodeId id) const;
  void Remove(Result& result, NodeId id) const;
  void InitProgress(Result& result, NodeId id, bool is_learner) const;

  const ProgressTracker& tracker_;
  Index last_index_;
};

// Checks the invariants in the header comment; kInvalidArgument naming the violated one.
absl::Status CheckTrackerInvariants(const TrackerConfig& config, const ProgressMap& progress);

// Rebuilds the tracker's configuration from a ConfState (on restart or snapshot restore) by
// replaying it as changes, so the same rules validate it.
absl::Status RestoreConfState(ProgressTracker& tracker, const ConfState& conf_state,
                              Index last_index);

}  // namespace kvstore::raft

#endif  // KVSTORE_CORE_RAFT_TRACKER_H_
