#include "sim/simulation_world.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "sim/runner.h"

namespace kvstore::sim {

void SimulationWorld::SetNetwork(const pb::Network& network) {
  NetworkOptions options;
  options.min_delay_ms = network.min_delay_ms();
  options.max_delay_ms = std::max(network.max_delay_ms(), options.min_delay_ms);
  options.loss = network.loss();
  options.duplicate = network.duplicate();
  sim_.SetNetwork(options);
}

std::string SimulationWorld::PeerUrlFor(const std::string& name, const std::string& requested) {
  return requested.empty() ? absl::StrCat("sim://", name) : requested;
}

std::optional<raft::Term> SimulationWorld::Term(NodeId id) {
  server::Server* server = sim_.server(id);
  if (server == nullptr) return std::nullopt;
  return server->RaftStatus().hard_state.term;
}

std::optional<int64_t> SimulationWorld::Revision(NodeId id) {
  server::Server* server = sim_.server(id);
  if (server == nullptr) return std::nullopt;
  return server->store().current_revision();
}

std::vector<raft::NodeId> SimulationWorld::Voters() {
  for (NodeId id : sim_.node_ids()) {
    if (server::Server* server = sim_.server(id)) {
      return server->RaftStatus().conf_state.voters;
    }
  }
  return {};
}

std::optional<raft::ConfState> SimulationWorld::ConfState(NodeId id) {
  server::Server* server = sim_.server(id);
  if (server == nullptr) return std::nullopt;
  return server->RaftConfState();
}

std::string SimulationWorld::CheckHashes() {
  const size_t before = sim_.violations().size();
  sim_.CheckHashes();
  return sim_.violations().size() != before ? sim_.violations().back() : "";
}

std::vector<std::string> SimulationWorld::TakeViolations() {
  std::vector<std::string> violations = sim_.violations();
  if (sim_.violations_not_kept() > 0) {
    violations.push_back(absl::StrCat(sim_.violations_not_kept(),
                                      " more violations after the first ",
                                      Simulation::kMaxViolationsKept));
  }
  return violations;
}

void SimulationWorld::Describe(RunResult& result) {
  result.trace_hash = sim_.trace_hash();
  result.trace = sim_.trace();
  result.events = sim_.events_processed();
  result.virtual_ms = sim_.now_ms();
  result.joint_configs_entered = sim_.joint_configs_entered();
  result.joint_configs_left = sim_.joint_configs_left();
  result.availability = sim_.availability();
  // What the KV reference model judged, and what it could not.
  result.transcript.push_back(sim_.reference_model().Summary());
}

}  // namespace kvstore::sim
