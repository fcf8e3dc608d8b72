#include "core/raft/quorum.h"

#include <algorithm>

namespace kvstore::raft {

MajorityConfig::MajorityConfig(std::vector<NodeId> ids) : ids_(std::move(ids)) {
  std::sort(ids_.begin(), ids_.end());
  ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
}

bool MajorityConfig::Contains(NodeId id) const {
  return std::binary_search(ids_.begin(), ids_.end(), id);
}

void MajorityConfig::Insert(NodeId id) {
  auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
  if (it == ids_.end() || *it != id) ids_.insert(it, id);
}

void MajorityConfig::Erase(NodeId id) {
  auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
  if (it != ids_.end() && *it == id) ids_.erase(it);
}

VoteResult MajorityConfig::Vote(const VoteMap& votes) const {
  if (ids_.empty()) return VoteResult::kWon;
  size_t granted = 0, missing = 0;
  for (NodeId id : ids_) {
    auto it = votes.find(id);
    if (it == votes.end()) {
      ++missing;
    } else if (it->second) {
      ++granted;
    }
  }
  const size_t quorum = ids_.size() / 2 + 1;
  if (granted >= quorum) return VoteResult::kWon;
  if (granted + missing >= quorum) return VoteResult::kPending;
  return VoteResult::kLost;
}

std::vector<NodeId> JointConfig::Ids() const {
  std::vector<NodeId> ids;
  std::set_union(incoming.ids().begin(), incoming.ids().end(), outgoing.ids().begin(),
                 outgoing.ids().end(), std::back_inserter(ids));
  return ids;
}

VoteResult JointConfig::Vote(const VoteMap& votes) const {
  const VoteResult a = incoming.Vote(votes);
  const VoteResult b = outgoing.Vote(votes);
  if (a == b) return a;
  if (a == VoteResult::kLost || b == VoteResult::kLost) return VoteResult::kLost;
  return VoteResult::kPending;
}

}  // namespace kvstore::raft
