#include "core/server/testing/server_cluster.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/raft/check.h"

namespace kvstore::server::testing {

ServerCluster::ServerCluster(std::vector<raft::NodeId> voters, ConfigFn configure,
                             std::vector<raft::NodeId> learners)
    : configure_(std::move(configure)) {
  std::sort(voters.begin(), voters.end());
  std::sort(learners.begin(), learners.end());
  std::vector<Member> founding;
  for (raft::NodeId id : voters)
    founding.push_back(Member{id, absl::StrCat("m", id), {absl::StrCat("mem://", id)}, false});
  for (raft::NodeId id : learners)
    founding.push_back(Member{id, absl::StrCat("m", id), {absl::StrCat("mem://", id)}, true});
  for (const Member& m : founding) {
    raft::RestartState restart = BootstrapState(founding);
    raft::PersistRequest bootstrap;
    bootstrap.hard_state = restart.hard_state;
    bootstrap.entries = restart.entries;
    members_[m.id].log.Write(bootstrap);
    Start(m.id, std::move(restart), founding);
  }
  Stabilize();
}

void ServerCluster::Start(raft::NodeId id, raft::RestartState restart,
                          std::vector<Member> founding) {
  ServerConfig config;
  config.id = id;
  config.random_seed = id * 0x9E3779B97F4A7C15ull;
  if (configure_) configure_(config);
  MemberRecord& record = members_[id];
  auto server = Server::Create(config, &record.backend, std::move(restart), std::move(founding));
  RAFT_CHECK(server.ok()) << "member " << id << ": " << server.status().ToString();
  record.server = std::move(*server);
  record.crashed = false;
}

void ServerCluster::StartJoiner(raft::NodeId id) {
  RAFT_CHECK(members_.count(id) == 0) << "member " << id << " exists";
  Start(id, raft::RestartState{}, {});
}

std::vector<raft::NodeId> ServerCluster::ids() const {
  std::vector<raft::NodeId> out;
  for (const auto& [id, record] : members_) out.push_back(id);
  return out;
}

bool ServerCluster::Blocked(raft::NodeId from, raft::NodeId to) const {
  auto it = members_.find(to);
  if (it == members_.end() || it->second.crashed) return true;
  return cut_.count({std::min(from, to), std::max(from, to)}) > 0;
}

bool ServerCluster::ProcessReady(raft::NodeId id) {
  MemberRecord& record = members_.at(id);
  if (record.crashed || !record.server->HasReady()) return false;
  const Ready& ready = record.server->GetReady();
  record.log.Write(ready.raft->persist);
  for (const raft::Message& m : ready.raft->messages) {
    if (!Blocked(m.from, m.to)) in_flight_.push_back(m);
  }
  for (const Response& response : ready.responses) {
    record.responses[response.request_id] = response;
    record.response_log.push_back(response.request_id);
  }
  record.watch_responses.insert(record.watch_responses.end(), ready.watch_responses.begin(),
                                ready.watch_responses.end());
  const uint64_t persist_id = ready.raft->persist.id;
  record.server->Advance();
  if (persist_id != 0) record.server->OnPersisted(persist_id);
  return true;
}

bool ServerCluster::Deliver() {
  if (in_flight_.empty()) return false;
  std::vector<raft::Message> batch;
  batch.swap(in_flight_);
  for (raft::Message& m : batch) {
    if (Blocked(m.from, m.to)) continue;
    (void)members_.at(m.to).server->Step(std::move(m));
  }
  return true;
}

void ServerCluster::Stabilize() {
  for (int round = 0; round < 100000; ++round) {
    bool progress = false;
    for (auto& [id, record] : members_) {
      while (ProcessReady(id)) progress = true;
    }
    if (Deliver()) progress = true;
    if (!progress) return;
  }
  RAFT_CHECK(false) << "server cluster did not stabilize";
}

void ServerCluster::TickAll(int rounds) {
  for (int i = 0; i < rounds; ++i) {
    for (auto& [id, record] : members_) {
      if (!record.crashed) record.server->Tick();
    }
    Stabilize();
  }
}

raft::NodeId ServerCluster::Leader() const {
  for (const auto& [id, record] : members_) {
    if (!record.crashed && record.server->is_leader()) return id;
  }
  return raft::kNoNode;
}

raft::NodeId ServerCluster::WaitForLeader(int max_rounds) {
  for (int i = 0; i < max_rounds; ++i) {
    const raft::NodeId leader = Leader();
    if (leader != raft::kNoNode) return leader;
    TickAll();
  }
  return Leader();
}

std::optional<Response> ServerCluster::Call(raft::NodeId id, Request request, int max_rounds) {
  const RequestId request_id = server(id).Submit(std::move(request));
  MemberRecord& record = members_.at(id);
  for (int round = 0; round <= max_rounds; ++round) {
    Stabilize();
    auto it = record.responses.find(request_id);
    if (it != record.responses.end()) return it->second;
    if (record.crashed) return std::nullopt;
    TickAll();
  }
  return std::nullopt;
}

void ServerCluster::Cut(raft::NodeId a, raft::NodeId b) {
  cut_.insert({std::min(a, b), std::max(a, b)});
}

void ServerCluster::Isolate(raft::NodeId id) {
  for (const auto& [other, record] : members_) {
    if (other != id) Cut(id, other);
  }
}

void ServerCluster::Heal() { cut_.clear(); }

void ServerCluster::Crash(raft::NodeId id) {
  MemberRecord& record = members_.at(id);
  record.crashed = true;
  record.server.reset();
  record.backend.Crash();
  record.responses.clear();
  record.response_log.clear();
  record.watch_responses.clear();
  in_flight_.erase(std::remove_if(in_flight_.begin(), in_flight_.end(),
                                  [&](const raft::Message& m) { return m.to == id; }),
                   in_flight_.end());
}

void ServerCluster::Restart(raft::NodeId id) {
  MemberRecord& record = members_.at(id);
  RAFT_CHECK(record.crashed) << "member " << id << " is running";
  // The Raft configuration as of the backend's applied state is replayed from the log: the
  // restart state carries no conf_state, so the log's conf changes from the last snapshot are
  // re-applied (applied starts at the snapshot).
  raft::RestartState restart = record.log.Restart(0);
  if (restart.snapshot != nullptr) restart.applied = restart.snapshot->metadata.index;
  Start(id, std::move(restart), {});
}

Request PutRequest(std::string key, std::string value, mvcc::LeaseId lease) {
  Request r;
  r.type = RequestType::kPut;
  r.put.key = std::move(key);
  r.put.value = std::move(value);
  r.put.lease = lease;
  return r;
}

Request GetRequest(std::string key, bool serializable) {
  Request r;
  r.type = RequestType::kRange;
  r.range.key = std::move(key);
  r.range.serializable = serializable;
  return r;
}

Request RangeRequest(std::string key, std::string range_end, bool serializable) {
  Request r = GetRequest(std::move(key), serializable);
  r.range.range_end = std::move(range_end);
  return r;
}

Request DeleteRequest(std::string key, std::string range_end) {
  Request r;
  r.type = RequestType::kDeleteRange;
  r.delete_range.key = std::move(key);
  r.delete_range.range_end = std::move(range_end);
  return r;
}

}  // namespace kvstore::server::testing
