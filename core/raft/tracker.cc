#include "core/raft/tracker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvstore::raft {

ConfState TrackerConfig::ToConfState() const {
  ConfState cs;
  cs.voters = voters.incoming.ids();
  cs.voters_outgoing = voters.outgoing.ids();
  cs.learners.assign(learners.begin(), learners.end());
  cs.learners_next.assign(learners_next.begin(), learners_next.end());
  cs.auto_leave = auto_leave;
  return cs;
}

bool TrackerConfig::Matches(const ConfState& cs) const {
  return voters.incoming.ids() == cs.voters && voters.outgoing.ids() == cs.voters_outgoing &&
         std::equal(learners.begin(), learners.end(), cs.learners.begin(), cs.learners.end()) &&
         std::equal(learners_next.begin(), learners_next.end(), cs.learners_next.begin(),
                    cs.learners_next.end()) &&
         auto_leave == cs.auto_leave;
}

ProgressTracker::ProgressTracker(uint64_t max_inflight_msgs, uint64_t max_inflight_bytes)
    : max_inflight_msgs_(max_inflight_msgs), max_inflight_bytes_(max_inflight_bytes) {}

Index ProgressTracker::Committed() const {
  return config.voters.CommittedIndex([this](NodeId id) -> Index {
    auto it = progress.find(id);
    return it == progress.end() ? 0 : it->second.match;
  });
}

bool ProgressTracker::QuorumActive() const {
  VoteMap active;
  for (const auto& [id, pr] : progress) {
    if (!pr.is_learner) active[id] = pr.recent_active;
  }
  return config.voters.Vote(active) == VoteResult::kWon;
}

VoteResult ProgressTracker::RecordVote(NodeId id, bool granted) {
  votes_.emplace(id, granted);
  return TallyVotes();
}

absl::Status CheckTrackerInvariants(const TrackerConfig& config, const ProgressMap& progress) {
  auto need = [&](NodeId id) -> absl::Status {
    if (progress.count(id) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("no progress for member ", id));
    }
    return absl::OkStatus();
  };
  for (NodeId id : config.voters.Ids()) {
    if (auto s = need(id); !s.ok()) return s;
  }
  for (NodeId id : config.learners) {
    if (auto s = need(id); !s.ok()) return s;
    if (config.voters.Contains(id)) {
      return absl::InvalidArgumentError(absl::StrCat(id, " is both learner and voter"));
    }
    if (!progress.at(id).is_learner) {
      return absl::InvalidArgumentError(absl::StrCat(id, " is a learner without learner flag"));
    }
  }
  for (NodeId id : config.learners_next) {
    if (auto s = need(id); !s.ok()) return s;
    if (!config.voters.outgoing.Contains(id)) {
      return absl::InvalidArgumentError(absl::StrCat(id, " in learners_next is not outgoing"));
    }
    if (progress.at(id).is_learner) {
      return absl::InvalidArgumentError(absl::StrCat(id, " in learners_next has learner flag"));
    }
  }
  for (const auto& [id, pr] : progress) {
    if (!config.voters.Contains(id) && config.learners.count(id) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("progress for non-member ", id));
    }
    if (config.voters.Contains(id) && pr.is_learner && config.learners.count(id) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("voter ", id, " has learner flag"));
    }
  }
  if (!config.Joint()) {
    if (!config.learners_next.empty()) {
      return absl::InvalidArgumentError("learners_next outside a joint configuration");
    }
    if (config.auto_leave) {
      return absl::InvalidArgumentError("auto_leave outside a joint configuration");
    }
  }
  return absl::OkStatus();
}

void ConfChanger::InitProgress(Result& result, NodeId id, bool is_learner) const {
  // A new member is probed from the leader's last index; it will reject and back off quickly.
  Progress pr(std::max<Index>(last_index_, 1), tracker_.max_inflight_msgs(),
              tracker_.max_inflight_bytes(), is_learner);
  // Counted active so that adding members does not make check-quorum step the leader down.
  pr.recent_active = true;
  result.progress.insert_or_assign(id, std::move(pr));
}

void ConfChanger::MakeVoter(Result& result, NodeId id) const {
  auto it = result.progress.find(id);
  if (it == result.progress.end()) {
    InitProgress(result, id, false);
  } else {
    it->second.is_learner = false;
  }
  result.config.learners.erase(id);
  result.config.learners_next.erase(id);
  result.config.voters.incoming.Insert(id);
}

void ConfChanger::MakeLearner(Result& result, NodeId id) const {
  auto it = result.progress.find(id);
  if (it == result.progress.end()) {
    InitProgress(result, id, true);
    result.config.learners.insert(id);
    return;
  }
  if (it->second.is_learner) return;
  // Demote: drop from the incoming voters (keeping progress), then re-add as learner. A voter
  // still in the outgoing config cannot be a learner until the joint state is left.
  result.config.voters.incoming.Erase(id);
  result.config.learners.erase(id);
  result.config.learners_next.erase(id);
  if (result.config.voters.outgoing.Contains(id)) {
    result.config.learners_next.insert(id);
  } else {
    it->second.is_learner = true;
    result.config.learners.insert(id);
  }
}

void ConfChanger::Remove(Result& result, NodeId id) const {
  if (result.progress.count(id) == 0) return;
  result.config.voters.incoming.Erase(id);
  result.config.learners.erase(id);
  result.config.learners_next.erase(id);
  // Still needed by the outgoing majority until the joint state is left.
  if (!result.config.voters.outgoing.Contains(id)) result.progress.erase(id);
}

absl::Status ConfChanger::Apply(Result& result,
                                const std::vector<ConfChangeSingle>& changes) const {
  for (const ConfChangeSingle& change : changes) {
    if (change.node_id == kNoNode) continue;  // etcd: a zero node id is a no-op
    switch (change.type) {
      case ConfChangeType::kAddVoter:
        MakeVoter(result, change.node_id);
        break;
      case ConfChangeType::kAddLearner:
        MakeLearner(result, change.node_id);
        break;
      case ConfChangeType::kRemoveNode:
        Remove(result, change.node_id);
        break;
    }
  }
  if (result.config.voters.incoming.empty()) {
    return absl::InvalidArgumentError("conf change removes all voters");
  }
  return absl::OkStatus();
}

absl::StatusOr<ConfChanger::Result> ConfChanger::EnterJoint(
    bool auto_leave, const std::vector<ConfChangeSingle>& changes) const {
  Result result{tracker_.config, tracker_.progress};
  if (result.config.Joint()) {
    return absl::InvalidArgumentError("config is already joint; leave it first");
  }
  if (result.config.voters.incoming.empty()) {
    return absl::InvalidArgumentError("cannot make a zero-voter config joint");
  }
  result.config.voters.outgoing = result.config.voters.incoming;
  if (auto s = Apply(result, changes); !s.ok()) return s;
  result.config.auto_leave = auto_leave;
  if (auto s = CheckTrackerInvariants(result.config, result.progress); !s.ok()) return s;
  return result;
}

absl::StatusOr<ConfChanger::Result> ConfChanger::LeaveJoint() const {
  Result result{tracker_.config, tracker_.progress};
  if (!result.config.Joint()) {
    return absl::InvalidArgumentError("cannot leave a non-joint config");
  }
  for (NodeId id : result.config.learners_next) {
    result.config.learners.insert(id);
    result.progress.at(id).is_learner = true;
  }
  result.config.learners_next.clear();
  for (NodeId id : result.config.voters.outgoing.ids()) {
    if (!result.config.voters.incoming.Contains(id) && result.config.learners.count(id) == 0) {
      result.progress.erase(id);
    }
  }
  result.config.voters.outgoing = MajorityConfig();
  result.config.auto_leave = false;
  if (auto s = CheckTrackerInvariants(result.config, result.progress); !s.ok()) return s;
  return result;
}

absl::StatusOr<ConfChanger::Result> ConfChanger::Simple(
    const std::vector<ConfChangeSingle>& changes) const {
  Result result{tracker_.config, tracker_.progress};
  if (result.config.Joint()) {
    return absl::InvalidArgumentError("cannot apply a simple change in a joint config");
  }
  if (auto s = Apply(result, changes); !s.ok()) return s;
  // Raft thesis §4.1: changing one voter at a time keeps any two majorities overlapping.
  const auto& before = tracker_.config.voters.incoming.ids();
  const auto& after = result.config.voters.incoming.ids();
  std::vector<NodeId> difference;
  std::set_symmetric_difference(before.begin(), before.end(), after.begin(), after.end(),
                                std::back_inserter(difference));
  if (difference.size() > 1) {
    return absl::InvalidArgumentError(
        "more than one voter changed without entering a joint configuration");
  }
  if (auto s = CheckTrackerInvariants(result.config, result.progress); !s.ok()) return s;
  return result;
}

absl::Status RestoreConfState(ProgressTracker& tracker, const ConfState& cs, Index last_index) {
  tracker.config = TrackerConfig();
  tracker.progress.clear();
  auto apply_one_by_one = [&](const std::vector<ConfChangeSingle>& changes) -> absl::Status {
    for (const ConfChangeSingle& change : changes) {
      ConfChanger changer(tracker, last_index);
      // The very first voter of an empty config is added directly (a simple change of one).
      auto result = changer.Simple({change});
      if (!result.ok()) return result.status();
      tracker.config = std::move(result->config);
      tracker.progress = std::move(result->progress);
    }
    return absl::OkStatus();
  };
  std::vector<ConfChangeSingle> outgoing, incoming;
  for (NodeId id : cs.voters_outgoing) outgoing.push_back({ConfChangeType::kAddVoter, id});
  // The joint config's incoming half starts as a copy of the outgoing one: empty it first.
  for (NodeId id : cs.voters_outgoing) incoming.push_back({ConfChangeType::kRemoveNode, id});
  for (NodeId id : cs.voters) incoming.push_back({ConfChangeType::kAddVoter, id});
  for (NodeId id : cs.learners) incoming.push_back({ConfChangeType::kAddLearner, id});
  // learners_next are outgoing voters that become learners on leaving the joint state.
  for (NodeId id : cs.learners_next) incoming.push_back({ConfChangeType::kAddLearner, id});
  if (outgoing.empty()) {
    // Learners first would be rejected by the "removes all voters" rule; voters come first.
    return apply_one_by_one(incoming);
  }
  if (auto s = apply_one_by_one(outgoing); !s.ok()) return s;
  ConfChanger changer(tracker, last_index);
  auto result = changer.EnterJoint(cs.auto_leave, incoming);
  if (!result.ok()) return result.status();
  tracker.config = std::move(result->config);
  tracker.progress = std::move(result->progress);
  return absl::OkStatus();
}

}  // namespace kvstore::raft
