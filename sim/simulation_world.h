#ifndef KVSTORE_SIM_SIMULATION_WORLD_H_
#define KVSTORE_SIM_SIMULATION_WORLD_H_

// The deterministic simulation (sim/simulation.h) as a world a scenario runs in (sim/world.h):
// every step is carried out, and each call forwards to the Simulation as the runner used to call
// it, so a seed's trace and trace hash are those of the simulation alone.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sim/scenario.pb.h"
#include "sim/simulation.h"
#include "sim/world.h"

namespace kvstore::sim {

class SimulationWorld : public ScenarioWorld {
 public:
  explicit SimulationWorld(const SimOptions& options) : sim_(options) {}

  Simulation& simulation() { return sim_; }

  int64_t now_ms() override { return sim_.now_ms(); }
  void RunFor(int64_t ms) override { sim_.RunFor(ms); }
  bool RunUntil(const std::function<bool()>& done, int64_t max_ms) override {
    return sim_.RunUntil(done, max_ms);
  }

  void Partition(const std::vector<std::vector<NodeId>>& groups) override {
    sim_.Partition(groups);
  }
  void BlockLink(NodeId from, NodeId to) override { sim_.BlockLink(from, to); }
  void SetLinkDelay(NodeId from, NodeId to, int64_t min_ms, int64_t max_ms) override {
    sim_.SetLinkDelay(from, to, min_ms, max_ms);
  }
  void Heal() override { sim_.Heal(); }
  void Isolate(NodeId id) override { sim_.Isolate(id); }
  void Crash(NodeId id) override { sim_.Crash(id); }
  void Kill(NodeId id) override { sim_.Kill(id); }
  void Restart(NodeId id) override { sim_.Restart(id); }
  void Pause(NodeId id, int64_t ms) override { sim_.Pause(id, ms); }
  void SetTickRate(NodeId id, double rate) override { sim_.SetTickRate(id, rate); }
  void SetNetwork(const pb::Network& network) override;
  bool CorruptRecord(NodeId id, bool oldest_segment) override {
    return sim_.CorruptRecord(id, oldest_segment);
  }
  bool CrashMidWrite(NodeId id, int64_t max_ms) override { return sim_.CrashMidWrite(id, max_ms); }
  bool KillMidWrite(NodeId id, int64_t max_ms) override { return sim_.KillMidWrite(id, max_ms); }
  void FailNextWalSync(NodeId id) override { sim_.FailNextWalSync(id); }
  void FailNextWalWrite(NodeId id) override { sim_.FailNextWalWrite(id); }
  void FillDisk(NodeId id) override { sim_.FillDisk(id); }
  void FreeDisk(NodeId id) override { sim_.FreeDisk(id); }
  void HealDisk(NodeId id) override { sim_.HealDisk(id); }
  void PauseBuffering(NodeId id, int64_t ms) override { sim_.Pause(id, ms, /*buffer=*/true); }
  void Clog(NodeId from, NodeId to, int64_t ms) override { sim_.Clog(from, to, ms); }
  void StopClock(NodeId id, int64_t ms) override { sim_.StopClock(id, ms); }
  void SetDiskLatency(NodeId id, int64_t min_ms, int64_t max_ms) override {
    sim_.SetDiskLatency(id, min_ms, max_ms);
  }
  void SlowWatchReader(NodeId id, int64_t ms) override { sim_.SlowWatchReader(id, ms); }

  void StartWorkload() override { sim_.StartWorkload(); }
  void StopWorkload() override { sim_.StopWorkload(); }
  std::optional<server::Response> Call(NodeId node, server::Request request,
                                       int64_t timeout_ms) override {
    return sim_.Call(node, std::move(request), timeout_ms);
  }
  // The scenario's URL, or "sim://<name>", which the simulation starts a process for.
  std::string PeerUrlFor(const std::string& name, const std::string& requested) override;
  void StartJoiner(NodeId id) override { sim_.StartJoiner(id); }
  absl::Status AddWatch(NodeId node, const mvcc::WatchRequest& request) override {
    return sim_.AddWatch(node, request);
  }

  NodeId Leader() override { return sim_.Leader(); }
  std::vector<NodeId> node_ids() override { return sim_.node_ids(); }
  bool up(NodeId id) override { return sim_.up(id); }
  std::optional<raft::Term> Term(NodeId id) override;
  std::optional<int64_t> Revision(NodeId id) override;
  std::vector<NodeId> Voters() override;
  std::optional<raft::ConfState> ConfState(NodeId id) override;
  std::string CheckHashes() override;
  std::optional<std::pair<raft::Term, NodeId>> FirstVote(NodeId id) override {
    return sim_.FirstVote(id);
  }
  bool refused_to_start(NodeId id) override { return sim_.refused_to_start(id); }
  bool stopped_on_storage_failure(NodeId id) override {
    return sim_.stopped_on_storage_failure(id);
  }
  std::vector<NodeId> NodesInJointConfig() override { return sim_.NodesInJointConfig(); }
  uint64_t joint_configs_entered() override { return sim_.joint_configs_entered(); }
  uint64_t joint_configs_left() override { return sim_.joint_configs_left(); }

  std::vector<std::string> TakeViolations() override;
  History TakeHistory() override { return sim_.TakeHistory(); }
  void Describe(RunResult& result) override;

 private:
  Simulation sim_;
};

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_SIMULATION_WORLD_H_
