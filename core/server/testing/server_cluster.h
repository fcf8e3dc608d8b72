#ifndef KVSTORE_CORE_SERVER_TESTING_SERVER_CLUSTER_H_
#define KVSTORE_CORE_SERVER_TESTING_SERVER_CLUSTER_H_

// Several server cores wired in memory, driven exactly as a production node drives one:
// GetReady, persist the Raft write, send messages, deliver responses, Advance, OnPersisted.
// Each member has its own MemoryBackend (MVCC) and Raft log storage; links can be cut; members
// can crash (losing nothing the driver acknowledged: storage is synchronous) and restart.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/mvcc/backend.h"
#include "core/raft/testing/cluster.h"
#include "core/server/server.h"

namespace kvstore::server::testing {

struct MemberRecord {
  std::unique_ptr<Server> server;
  mvcc::MemoryBackend backend;
  raft::testing::MemoryStorage log;
  std::map<RequestId, Response> responses;
  // Every response's id in delivery order: a request answered twice shows up twice.
  std::vector<RequestId> response_log;
  std::vector<mvcc::WatchResponse> watch_responses;
  bool crashed = false;
};

class ServerCluster {
 public:
  using ConfigFn = std::function<void(ServerConfig&)>;

  // Founding voters (and learners); `configure` adjusts each member's config.
  explicit ServerCluster(std::vector<raft::NodeId> voters, ConfigFn configure = nullptr,
                         std::vector<raft::NodeId> learners = {});

  Server& server(raft::NodeId id) { return *members_.at(id).server; }
  MemberRecord& member(raft::NodeId id) { return members_.at(id); }
  std::vector<raft::NodeId> ids() const;

  // Processes readies and delivers messages until quiet.
  void Stabilize();
  // Ticks every live member once, then stabilizes; `rounds` times.
  void TickAll(int rounds = 1);
  // Ticks until some member leads (bounded); returns it or kNoNode.
  raft::NodeId WaitForLeader(int max_rounds = 200);
  raft::NodeId Leader() const;

  // Submits on `id`, stabilizes (ticking a little if needed for reads) and returns the
  // response; nullopt if none arrived within `max_rounds` tick rounds.
  std::optional<Response> Call(raft::NodeId id, Request request, int max_rounds = 100);

  // Fine-grained driving: one Ready of one member; the messages in flight (tests may drop,
  // reorder or duplicate them).
  bool ProcessReadyOnce(raft::NodeId id) { return ProcessReady(id); }
  std::vector<raft::Message>& in_flight() { return in_flight_; }

  void Cut(raft::NodeId a, raft::NodeId b);
  void Isolate(raft::NodeId id);
  void Heal();
  void Crash(raft::NodeId id);
  void Restart(raft::NodeId id);
  // Starts a new, empty member (to be added with kMemberAdd; its id must match the one the
  // cluster assigned, see Response::member.id).
  void StartJoiner(raft::NodeId id);

 private:
  bool ProcessReady(raft::NodeId id);
  bool Deliver();
  void Start(raft::NodeId id, raft::RestartState restart, std::vector<Member> founding);
  bool Blocked(raft::NodeId from, raft::NodeId to) const;

  ConfigFn configure_;
  std::map<raft::NodeId, MemberRecord> members_;
  std::vector<raft::Message> in_flight_;
  std::set<std::pair<raft::NodeId, raft::NodeId>> cut_;
};

// Request builders for tests.
Request PutRequest(std::string key, std::string value, mvcc::LeaseId lease = 0);
Request GetRequest(std::string key, bool serializable = false);
Request RangeRequest(std::string key, std::string range_end, bool serializable = false);
Request DeleteRequest(std::string key, std::string range_end = "");

}  // namespace kvstore::server::testing

#endif  // KVSTORE_CORE_SERVER_TESTING_SERVER_CLUSTER_H_
