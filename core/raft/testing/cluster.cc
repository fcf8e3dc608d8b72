#include "core/raft/testing/cluster.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/raft/check.h"

namespace kvstore::raft::testing {

void MemoryStorage::Write(const PersistRequest& request) {
  if (request.snapshot != nullptr) {
    // An installed snapshot replaces the whole log: a persisted tail after it may be stale.
    snapshot_ = request.snapshot;
    entries_.clear();
  }
  if (!request.entries.empty()) {
    const Index first = request.entries.front().index;
    while (!entries_.empty() && entries_.back().index >= first) entries_.pop_back();
    RAFT_CHECK(entries_.empty() ? true : entries_.back().index + 1 == first)
        << "storage gap: have up to " << entries_.back().index << ", writing from " << first;
    entries_.insert(entries_.end(), request.entries.begin(), request.entries.end());
  }
  if (request.hard_state.has_value()) hard_state_ = *request.hard_state;
}

RestartState MemoryStorage::Restart(Index applied) const {
  RestartState restart;
  restart.hard_state = hard_state_;
  restart.snapshot = snapshot_;
  restart.entries = entries_;
  restart.applied = applied;
  return restart;
}

Cluster::Cluster(std::vector<NodeId> voters, std::vector<NodeId> learners, ConfigFn configure,
                 std::vector<NodeId> extra)
    : configure_(std::move(configure)) {
  std::sort(voters.begin(), voters.end());
  std::sort(learners.begin(), learners.end());
  std::vector<NodeId> all = voters;
  all.insert(all.end(), learners.begin(), learners.end());
  for (NodeId id : all) {
    RestartState restart = BootstrapState(voters, learners);
    PersistRequest bootstrap;
    bootstrap.hard_state = restart.hard_state;
    bootstrap.entries = restart.entries;
    nodes_[id].storage.Write(bootstrap);
    nodes_[id].conf_state = *restart.conf_state;
    Start(id, std::move(restart));
    // Apply the bootstrap entries now, so tests start from an idle cluster that can campaign.
    while (ProcessReady(id)) {
    }
  }
  for (NodeId id : extra) AddEmptyNode(id);
}

void Cluster::AddEmptyNode(NodeId id) {
  RAFT_CHECK(nodes_.count(id) == 0) << "node " << id << " exists";
  nodes_[id];
  Start(id, RestartState{});
}

void Cluster::Start(NodeId id, RestartState restart) {
  Config config;
  config.id = id;
  config.random_seed = id * 0x9E3779B97F4A7C15ull;
  if (configure_) configure_(config);
  configs_[id] = config;
  auto node = RawNode::Create(config, std::move(restart));
  RAFT_CHECK(node.ok()) << "node " << id << ": " << node.status().ToString();
  nodes_[id].node = std::move(*node);
  nodes_[id].crashed = false;
}

std::vector<NodeId> Cluster::ids() const {
  std::vector<NodeId> ids;
  for (const auto& [id, record] : nodes_) ids.push_back(id);
  return ids;
}

bool Cluster::Blocked(NodeId from, NodeId to) const {
  if (nodes_.count(to) == 0 || nodes_.at(to).crashed) return true;
  return cut_.count({std::min(from, to), std::max(from, to)}) > 0;
}

bool Cluster::ProcessReady(NodeId id) {
  NodeRecord& record = nodes_.at(id);
  if (record.crashed || !record.node->HasReady()) return false;
  const Ready& ready = record.node->GetReady();
  if (ready_observer_) ready_observer_(id, ready);
  record.storage.Write(ready.persist);
  if (ready.apply_snapshot != nullptr) {
    record.applied.clear();
    record.applied_index = ready.apply_snapshot->metadata.index;
    record.conf_state = ready.apply_snapshot->metadata.conf_state;
  }
  for (const Message& message : ready.messages) {
    if (!Blocked(message.from, message.to)) in_flight_.push_back(message);
  }
  for (const Entry& entry : ready.committed_entries) {
    if (entry.type == EntryType::kConfChange) {
      auto change = DecodeConfChange(entry.data.view());
      RAFT_CHECK(change.ok()) << change.status().ToString();
      record.conf_state = record.node->ApplyConfChange(*change);
    }
    record.applied.push_back(entry);
    record.applied_index = entry.index;
  }
  record.read_states.insert(record.read_states.end(), ready.read_states.begin(),
                            ready.read_states.end());
  const uint64_t persist_id = ready.persist.id;
  record.node->Advance();
  if (persist_id != 0) record.node->OnPersisted(persist_id);
  return true;
}

size_t Cluster::Deliver(NodeId from, NodeId to) {
  std::vector<Message> batch;
  std::vector<Message> kept;
  for (Message& message : in_flight_) {
    const bool match =
        (from == kNoNode || message.from == from) && (to == kNoNode || message.to == to);
    (match ? batch : kept).push_back(std::move(message));
  }
  in_flight_ = std::move(kept);
  size_t delivered = 0;
  for (Message& message : batch) {
    const bool dropped = Blocked(message.from, message.to);
    if (delivery_observer_) delivery_observer_(message, dropped);
    if (dropped) continue;
    (void)nodes_.at(message.to).node->Step(std::move(message));
    ++delivered;
  }
  return delivered;
}

size_t Cluster::DeliverAll() { return Deliver(kNoNode, kNoNode); }

void Cluster::Stabilize() {
  for (int round = 0; round < 10000; ++round) {
    bool progress = false;
    for (auto& [id, record] : nodes_) {
      while (ProcessReady(id)) progress = true;
    }
    if (DeliverAll() > 0) progress = true;
    if (!progress) return;
  }
  RAFT_CHECK(false) << "cluster did not stabilize within 10000 rounds";
}

void Cluster::Tick(NodeId id, int ticks) {
  for (int i = 0; i < ticks; ++i) {
    if (!nodes_.at(id).crashed) nodes_.at(id).node->Tick();
  }
}

void Cluster::ElectLeader(NodeId id) {
  RAFT_CHECK(node(id).Campaign().ok()) << "node " << id << " cannot campaign";
  Stabilize();
}

NodeId Cluster::Leader() const {
  std::map<NodeId, int> votes;
  int live = 0;
  for (const auto& [id, record] : nodes_) {
    if (record.crashed) continue;
    ++live;
    Status status = record.node->GetStatus();
    if (status.soft_state.leader != kNoNode) ++votes[status.soft_state.leader];
  }
  for (const auto& [leader, count] : votes) {
    if (count * 2 > live && !nodes_.at(leader).crashed &&
        nodes_.at(leader).node->GetStatus().soft_state.role == Role::kLeader) {
      return leader;
    }
  }
  return kNoNode;
}

void Cluster::Cut(NodeId a, NodeId b) { cut_.insert({std::min(a, b), std::max(a, b)}); }

void Cluster::Isolate(NodeId id) {
  for (const auto& [other, record] : nodes_) {
    if (other != id) Cut(id, other);
  }
}

void Cluster::Heal() { cut_.clear(); }

void Cluster::DropInFlight() { in_flight_.clear(); }

void Cluster::Crash(NodeId id) {
  NodeRecord& record = nodes_.at(id);
  record.crashed = true;
  record.node.reset();
  in_flight_.erase(std::remove_if(in_flight_.begin(), in_flight_.end(),
                                  [&](const Message& m) { return m.to == id; }),
                   in_flight_.end());
}

void Cluster::Restart(NodeId id) {
  NodeRecord& record = nodes_.at(id);
  RAFT_CHECK(record.crashed) << "node " << id << " is running";
  RestartState restart = record.storage.Restart(record.applied_index);
  restart.conf_state = record.conf_state;
  Start(id, std::move(restart));
}

absl::Status Cluster::ProposeAndStabilize(NodeId id, const std::string& data) {
  absl::Status status = node(id).Propose(Bytes(data));
  Stabilize();
  return status;
}

}  // namespace kvstore::raft::testing
