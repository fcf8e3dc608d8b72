#ifndef KVSTORE_SIM_WORLD_H_
#define KVSTORE_SIM_WORLD_H_

// The world a scenario runs in (sim/runner.h): the runner executes a scenario's steps through
// this interface only, so one runner drives both the deterministic simulation
// (sim/simulation_world.h) and a cluster of real kvnode processes
// (node/testing/real_world.h).
//
// Nodes are named by the scenario's ids: 1..voters for the founding members, then one more per
// member the scenario adds, in the order they are added. Time is the world's own: virtual
// milliseconds in the simulation, milliseconds of wall time on a real cluster.
//
// A world that cannot carry out a step (a real disk cannot be told to tear a write) says so in
// CannotRun, with the reason; the runner then skips the step and reports it by name, never
// silently, and the world's method for it is not called. A step kind added to the scenario
// format gets a method here (with a default that the simulation overrides), and a real world
// that does not know the step kind refuses it in CannotRun.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/mvcc/watch.h"
#include "core/raft/raft.h"
#include "core/server/server.h"
#include "sim/history.h"
#include "sim/scenario.pb.h"

namespace kvstore::sim {

struct RunResult;

class ScenarioWorld {
 public:
  using NodeId = raft::NodeId;
  virtual ~ScenarioWorld() = default;

  // Why this world cannot carry out `step`, or empty when it can.
  virtual std::string CannotRun(const pb::Step& /*step*/) { return ""; }

  // --- Time ---
  virtual int64_t now_ms() = 0;
  // Lets the world run for `ms`.
  virtual void RunFor(int64_t ms) = 0;
  // Runs until `done` holds or `max_ms` pass; returns done().
  virtual bool RunUntil(const std::function<bool()>& done, int64_t max_ms) = 0;

  // --- Faults ---
  // Only nodes in the same group talk (nodes in no group talk to no one).
  virtual void Partition(const std::vector<std::vector<NodeId>>& groups) = 0;
  virtual void BlockLink(NodeId from, NodeId to) = 0;  // one way
  virtual void SetLinkDelay(NodeId from, NodeId to, int64_t min_ms, int64_t max_ms) = 0;
  // Removes every partition, blocked link and link delay.
  virtual void Heal() = 0;
  virtual void Isolate(NodeId id) = 0;
  // Power loss of the node's machine (sim/simulation.h); a real world can only kill the process.
  virtual void Crash(NodeId id) = 0;
  // The process dies, the machine and its page cache live on (SIGKILL).
  virtual void Kill(NodeId id) = 0;
  virtual void Restart(NodeId id) = 0;
  // Stops the node's process for `ms`, then lets it go on; returns at once.
  virtual void Pause(NodeId id, int64_t ms) = 0;
  // What only a simulation can do; a real world refuses these steps in CannotRun.
  virtual void SetTickRate(NodeId /*id*/, double /*rate*/) {}
  virtual void SetNetwork(const pb::Network& /*network*/) {}
  // Disk faults (see pb::DiskFault): `done` false when the fault could not be placed (a log
  // too short to corrupt, a single segment, no write in flight for a torn crash).
  virtual bool CorruptRecord(NodeId /*id*/, bool /*oldest_segment*/) { return false; }
  virtual bool CrashMidWrite(NodeId /*id*/, int64_t /*max_ms*/) { return false; }
  virtual bool KillMidWrite(NodeId /*id*/, int64_t /*max_ms*/) { return false; }
  virtual void FailNextWalSync(NodeId /*id*/) {}
  virtual void FailNextWalWrite(NodeId /*id*/) {}
  virtual void FillDisk(NodeId /*id*/) {}
  virtual void FreeDisk(NodeId /*id*/) {}
  virtual void HealDisk(NodeId /*id*/) {}
  // The fault menu beyond (sim/simulation.h): a pause that holds the messages sent to the node
  // and delivers them when it resumes, clogged links, a clock that stops then bursts, slow disks,
  // slow watch readers.
  virtual void PauseBuffering(NodeId id, int64_t ms) { Pause(id, ms); }
  virtual void Clog(NodeId /*from*/, NodeId /*to*/, int64_t /*ms*/) {}
  virtual void StopClock(NodeId /*id*/, int64_t /*ms*/) {}
  virtual void SetDiskLatency(NodeId /*id*/, int64_t /*min_ms*/, int64_t /*max_ms*/) {}
  virtual void SlowWatchReader(NodeId /*id*/, int64_t /*ms*/) {}

  // --- Workload and requests ---
  virtual void StartWorkload() = 0;
  virtual void StopWorkload() = 0;
  // Sends `request` to `node` and waits for its response (at most `timeout_ms`): nullopt on a
  // timeout or when the node is down. Member ids in requests and responses are scenario ids.
  virtual std::optional<server::Response> Call(NodeId node, server::Request request,
                                               int64_t timeout_ms) = 0;
  // The peer URL a member added under `name` gets; `requested` is the scenario's (may be
  // empty; "bad://..." names a misconfigured member, whose process never starts).
  virtual std::string PeerUrlFor(const std::string& name, const std::string& requested) = 0;
  // Starts the process of a member the cluster added (it joins empty).
  virtual void StartJoiner(NodeId id) = 0;
  // Opens a watch that the world checks (start revision, order, progress notifications).
  virtual absl::Status AddWatch(NodeId /*node*/, const mvcc::WatchRequest& /*request*/) {
    return absl::UnimplementedError("watches are not checked in this world");
  }

  // --- Observation ---
  virtual NodeId Leader() = 0;  // a live node that believes it leads (the highest term)
  virtual std::vector<NodeId> node_ids() = 0;
  virtual bool up(NodeId id) = 0;
  // A live node's term and store revision; nullopt when it is down.
  virtual std::optional<raft::Term> Term(NodeId id) = 0;
  virtual std::optional<int64_t> Revision(NodeId id) = 0;
  // The voters of the configuration a live node holds (the runner's `follower: N` when no
  // leader is known).
  virtual std::vector<NodeId> Voters() = 0;
  // The configuration of live node `id` (expect voters_are); nullopt when it is down.
  virtual std::optional<raft::ConfState> ConfState(NodeId id) = 0;
  // Compares live nodes' stores: the violation found, or empty.
  virtual std::string CheckHashes() = 0;
  virtual std::optional<std::pair<raft::Term, NodeId>> FirstVote(NodeId /*id*/) {
    return std::nullopt;
  }
  virtual bool refused_to_start(NodeId /*id*/) { return false; }
  virtual bool stopped_on_storage_failure(NodeId /*id*/) { return false; }
  virtual std::vector<NodeId> NodesInJointConfig() { return {}; }
  virtual uint64_t joint_configs_entered() { return 0; }
  virtual uint64_t joint_configs_left() { return 0; }

  // --- The end of a run ---
  // What the world's own checkers found, one line each.
  virtual std::vector<std::string> TakeViolations() = 0;
  // The linearizable clients' history.
  virtual History TakeHistory() = 0;
  // Fills what the world knows of the run (trace, trace hash, events, time, counters).
  virtual void Describe(RunResult& result) = 0;
};

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_WORLD_H_
