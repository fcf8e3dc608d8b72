#ifndef KVSTORE_CORE_RAFT_TESTING_CLUSTER_H_
#define KVSTORE_CORE_RAFT_TESTING_CLUSTER_H_

// An in-memory driver for several RawNodes, for tests and benchmarks: synchronous in-memory
// storage, a message queue with drop filters, and a record of what each node applied. It drives
// the nodes exactly as a production driver would (GetReady, persist, send, apply, Advance,
// OnPersisted), so tests exercise the public contract only.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/raft/raft.h"

namespace kvstore::raft::testing {

// Durable storage in memory: what a node would find on restart.
class MemoryStorage {
 public:
  void Write(const PersistRequest& request);
  // Rebuilds the restart state (applied: the given index, at least the snapshot's).
  RestartState Restart(Index applied) const;
  const std::vector<Entry>& entries() const { return entries_; }
  // The last index held: of the last entry, else of the snapshot, else 0.
  Index last_index() const {
    if (!entries_.empty()) return entries_.back().index;
    return snapshot_ != nullptr ? snapshot_->metadata.index : 0;
  }
  // For fault injection (the simulator corrupts records to test detection).
  std::vector<Entry>& mutable_entries() { return entries_; }
  const HardState& hard_state() const { return hard_state_; }
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }

 private:
  HardState hard_state_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<Entry> entries_;  // contiguous, after the snapshot
};

struct NodeRecord {
  std::unique_ptr<RawNode> node;
  MemoryStorage storage;
  std::vector<Entry> applied;  // every committed entry applied, in order
  Index applied_index = 0;
  ConfState conf_state;
  std::vector<ReadState> read_states;
  bool crashed = false;
};

class Cluster {
 public:
  using ConfigFn = std::function<void(Config&)>;

  // Bootstraps voters (and learners) with a snapshot at index 0 listing them. Node ids in
  // `extra` start empty (as nodes that will join an existing cluster).
  Cluster(std::vector<NodeId> voters, std::vector<NodeId> learners = {},
          ConfigFn configure = nullptr, std::vector<NodeId> extra = {});

  RawNode& node(NodeId id) { return *nodes_.at(id).node; }
  NodeRecord& record(NodeId id) { return nodes_.at(id); }
  std::vector<NodeId> ids() const;

  // Carries out one Ready of `id` if it has one; returns whether it did. Messages go to the
  // in-flight queue (subject to filters).
  bool ProcessReady(NodeId id);
  // Delivers every in-flight message once (messages they cause are queued, not delivered).
  // Returns how many were delivered.
  size_t DeliverAll();
  // Delivers only messages matching from/to (kNoNode: any).
  size_t Deliver(NodeId from, NodeId to);
  // Processes readies and delivers messages until nothing is left to do.
  void Stabilize();
  void Tick(NodeId id, int ticks = 1);
  // Ticks `id` until it starts an election (bounded), then stabilizes.
  void ElectLeader(NodeId id);
  // The leader known by a majority of live nodes, or kNoNode.
  NodeId Leader() const;

  // Filters: a cut link drops messages in both directions; Isolate cuts a node from all.
  void Cut(NodeId a, NodeId b);
  void Isolate(NodeId id);
  void Heal();
  // Drops in-flight messages.
  void DropInFlight();
  std::vector<Message>& in_flight() { return in_flight_; }

  // Crash loses nothing that OnPersisted covered (storage here is synchronous); restart
  // rebuilds the node from its storage with the configuration it had applied.
  void Crash(NodeId id);
  void Restart(NodeId id);
  // Adds a brand-new empty node (to be added by a conf change).
  void AddEmptyNode(NodeId id);

  // Proposes on `id` then stabilizes; returns the proposal status.
  absl::Status ProposeAndStabilize(NodeId id, const std::string& data);

  const Config& config(NodeId id) const { return configs_.at(id); }

  // Sees every Ready that ProcessReady carries out, before it is carried out (tests hash them).
  using ReadyObserver = std::function<void(NodeId, const Ready&)>;
  void set_ready_observer(ReadyObserver observer) { ready_observer_ = std::move(observer); }
  // Sees every in-flight message Deliver takes, as it is delivered or as a filter drops it.
  using DeliveryObserver = std::function<void(const Message&, bool dropped)>;
  void set_delivery_observer(DeliveryObserver observer) {
    delivery_observer_ = std::move(observer);
  }
  // Whether a message from -> to is dropped: the link is cut, or the recipient is down or unknown.
  bool Blocked(NodeId from, NodeId to) const;

 private:
  void Start(NodeId id, RestartState restart);

  ConfigFn configure_;
  std::map<NodeId, NodeRecord> nodes_;
  std::map<NodeId, Config> configs_;
  std::vector<Message> in_flight_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  ReadyObserver ready_observer_;
  DeliveryObserver delivery_observer_;
};

}  // namespace kvstore::raft::testing

#endif  // KVSTORE_CORE_RAFT_TESTING_CLUSTER_H_
