// A real cluster: three kvnode processes on loopback, clients over Cap'n Proto, and a nemesis
// that kill -9s the leader and a follower and restarts them while the clients run. The clients
// record a history (sim/history.h) that the simulator's linearizability checker judges, so the
// production binary is held to the same standard as every simulated seed.
//
// Bounded: the faulty phase lasts kFaultyPhaseMs; every request has a per-try timeout; a child
// still running at the end is killed.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/errors.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "kj/vector.h"
#include "net/client.h"
#include "node/crash_process.h"
#include "sim/history.h"
#include "sim/linearizability.h"

namespace kvstore::node {
namespace {

using crash::ChildProcess;
using crash::Clock;
using crash::FreshTestDir;
using crash::SpawnOptions;

constexpr int kMembers = 3;
constexpr int kClients = 4;
constexpr int kKeys = 3;
constexpr int64_t kFaultyPhaseMs = 8000;
constexpr int64_t kHeartbeatMs = 50;
constexpr int64_t kElectionMs = 500;

// A port nobody listens on now (the kernel's choice for port 0).
uint16_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

struct Member {
  std::string name;
  uint16_t client_port = 0;
  uint16_t peer_port = 0;
  std::string dir;
  std::unique_ptr<ChildProcess> process;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string root = FreshTestDir("cluster");
    for (int i = 1; i <= kMembers; ++i) {
      Member m;
      m.name = absl::StrCat("n", i);
      m.client_port = FreePort();
      m.peer_port = FreePort();
      m.dir = absl::StrCat(root, "/", m.name);
      members_.push_back(std::move(m));
    }
    std::vector<std::string> cluster;
    for (const Member& m : members_) {
      cluster.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
      endpoints_.push_back(absl::StrCat("127.0.0.1:", m.client_port));
    }
    initial_cluster_ = absl::StrJoin(cluster, ",");
    for (size_t i = 0; i < members_.size(); ++i) StartMember(i);
  }

  void StartMember(size_t i, bool join_existing = false) {
    Member& m = members_[i];
    SpawnOptions options;
    options.args = {"--name",
                    m.name,
                    "--data-dir",
                    m.dir,
                    "--listen-client-urls",
                    absl::StrCat("http://127.0.0.1:", m.client_port),
                    "--listen-peer-urls",
                    absl::StrCat("http://127.0.0.1:", m.peer_port),
                    "--initial-advertise-peer-urls",
                    absl::StrCat("http://127.0.0.1:", m.peer_port),
                    "--initial-cluster",
                    initial_cluster_,
                    "--initial-cluster-token",
                    "cluster-test",
                    "--heartbeat-interval",
                    absl::StrCat(kHeartbeatMs),
                    "--election-timeout",
                    absl::StrCat(kElectionMs),
                    "--log-level",
                    "error"};
    if (join_existing) {
      options.args.push_back("--initial-cluster-state");
      options.args.push_back("existing");
    }
    auto child = ChildProcess::Spawn(crash::RunfilePath("node/kvnode"), options);
    ASSERT_TRUE(child.ok()) << child.status();
    m.process = std::move(*child);
  }

  void KillMember(size_t i) {
    members_[i].process->Kill();
    (void)members_[i].process->Wait(Clock::now() + std::chrono::seconds(5));
  }

  std::vector<Member> members_;
  std::vector<std::string> endpoints_;
  std::string initial_cluster_;
};

// One simulated client process: one operation at a time, recorded in the history.
struct Process {
  int64_t id = 0;
  uint64_t writes = 0;
};

TEST_F(ClusterTest, KillingLeaderAndFollowerUnderLoadKeepsTheHistoryLinearizable) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Timer& timer = io.provider->getTimer();
  net::ClientOptions options;
  options.endpoints = endpoints_;
  options.per_try_timeout = 1 * kj::SECONDS;
  options.endpoint_backoff_min = 200 * kj::MILLISECONDS;
  options.endpoint_backoff_max = 1 * kj::SECONDS;
  auto client = net::Client::Create(io.provider->getNetwork(), timer, options);
  ASSERT_TRUE(client.ok()) << client.status();

  // The cluster serves a write before the faults start.
  server::Request first;
  first.type = server::RequestType::kPut;
  first.put.key = "k0";
  first.put.value = "initial";
  absl::StatusOr<server::Response> warmup = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 50 && !warmup.ok(); ++attempt) {
    warmup = (*client)->Call(first, io.waitScope);
    if (!warmup.ok()) timer.afterDelay(100 * kj::MILLISECONDS).wait(io.waitScope);
  }
  ASSERT_TRUE(warmup.ok()) << warmup.status();

  sim::History history;
  // k0 starts at "initial": record it as a completed write so the model knows it.
  ASSERT_TRUE(history
                  .Append({std::nullopt, 1000, sim::EventType::kInvoke, sim::Function::kWrite, "k0",
                           "initial", std::nullopt})
                  .ok());
  ASSERT_TRUE(history
                  .Append({std::nullopt, 1000, sim::EventType::kOk, sim::Function::kWrite, "k0",
                           "initial", std::nullopt})
                  .ok());
  bool running = true;
  int64_t next_process = kClients;
  uint64_t ok_ops = 0, info_ops = 0, fail_ops = 0;
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  auto next_random = [&rng]() {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };

  std::function<kj::Promise<void>(Process&)> loop = [&](Process& p) -> kj::Promise<void> {
    if (!running) return kj::READY_NOW;
    const std::string key = absl::StrCat("k", next_random() % kKeys);
    const bool read = next_random() % 2 == 0;
    server::Request request;
    sim::Event invoke{std::nullopt,
                      p.id,
                      sim::EventType::kInvoke,
                      read ? sim::Function::kRead : sim::Function::kWrite,
                      key,
                      std::nullopt,
                      std::nullopt};
    if (read) {
      request.type = server::RequestType::kRange;
      request.range.key = key;
    } else {
      request.type = server::RequestType::kPut;
      request.put.key = key;
      request.put.value = absl::StrCat("p", p.id, "-", ++p.writes);
      invoke.value = request.put.value;
    }
    EXPECT_TRUE(history.Append(invoke).ok());
    return (*client)
        ->CallAsync(std::move(request))
        .then([&, invoke](absl::StatusOr<server::Response> response) mutable {
          sim::Event done = invoke;
          if (response.ok()) {
            done.type = sim::EventType::kOk;
            if (invoke.function == sim::Function::kRead) {
              done.value = response->range.kvs.empty() ? sim::Value()
                                                       : sim::Value(response->range.kvs[0].value);
            }
            ++ok_ops;
          } else if (CodeOf(response.status()) == ErrorCode::kTimeout ||
                     invoke.function == sim::Function::kRead) {
            // Unknown outcome (a read that failed changed nothing either way, but an unknown
            // read is simply left out of the model: info).
            done.type = sim::EventType::kInfo;
            done.value = invoke.value;
            ++info_ops;
          } else {
            done.type = sim::EventType::kFail;
            ++fail_ops;
          }
          EXPECT_TRUE(history.Append(done).ok()) << sim::FormatEvent(done);
          // After an unknown outcome the process is replaced, as in Jepsen.
          if (done.type == sim::EventType::kInfo) p.id = next_process++;
          return loop(p);
        });
  };

  std::vector<Process> processes(kClients);
  kj::Vector<kj::Promise<void>> workers;
  for (int i = 0; i < kClients; ++i) {
    processes[i].id = i;
    workers.add(loop(processes[i]));
  }

  // The nemesis: find the leader through the members' status and kill -9 it, then a follower.
  auto leader_index = [&]() -> std::optional<size_t> {
    for (size_t i = 0; i < members_.size(); ++i) {
      auto status = (*client)->StatusAsync(i).wait(io.waitScope);
      if (status.ok() && status->member.leader != raft::kNoNode &&
          status->member.leader == status->member.id) {
        return i;
      }
    }
    return std::nullopt;
  };
  auto pause = [&](int64_t ms) { timer.afterDelay(ms * kj::MILLISECONDS).wait(io.waitScope); };
  pause(1000);
  std::optional<size_t> leader = leader_index();
  ASSERT_TRUE(leader.has_value()) << "no leader";
  KillMember(*leader);
  pause(2000);
  StartMember(*leader);
  pause(1500);
  const size_t follower = (*leader + 1) % members_.size();
  KillMember(follower);
  pause(1500);
  StartMember(follower);
  pause(kFaultyPhaseMs - 6000);
  running = false;
  kj::joinPromises(workers.releaseAsArray()).wait(io.waitScope);

  // Every member serves again, and the history holds.
  EXPECT_TRUE(leader_index().has_value());
  EXPECT_GT(ok_ops, 50u) << "the workload barely ran";
  auto verdict = sim::CheckLinearizability(history);
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_EQ(verdict->verdict, sim::Verdict::kLinearizable) << verdict->Describe();
  std::printf("cluster_test: %llu ok, %llu unknown, %llu failed operations; %s\n",
              static_cast<unsigned long long>(ok_ops), static_cast<unsigned long long>(info_ops),
              static_cast<unsigned long long>(fail_ops), verdict->Describe().c_str());
}

// Membership with real processes: a member added as a learner starts with
// --initial-cluster-state=existing and finds its id through Peer.members, catches up, is
// promoted (refused while it is behind), and a founding member is removed; the cluster serves
// throughout.
TEST_F(ClusterTest, LearnerJoinsIsPromotedAndAFoundingMemberIsRemoved) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Timer& timer = io.provider->getTimer();
  net::ClientOptions options;
  options.endpoints = endpoints_;
  options.per_try_timeout = 2 * kj::SECONDS;
  options.endpoint_backoff_min = 200 * kj::MILLISECONDS;
  auto client = net::Client::Create(io.provider->getNetwork(), timer, options);
  ASSERT_TRUE(client.ok()) << client.status();
  auto call_until_ok = [&](const server::Request& request) {
    absl::StatusOr<server::Response> response = absl::UnavailableError("not tried");
    for (int attempt = 0; attempt < 100 && !response.ok(); ++attempt) {
      response = (*client)->Call(request, io.waitScope);
      if (!response.ok()) timer.afterDelay(100 * kj::MILLISECONDS).wait(io.waitScope);
    }
    return response;
  };
  for (int i = 0; i < 50; ++i) {
    server::Request put;
    put.type = server::RequestType::kPut;
    put.put.key = absl::StrCat("before-", i);
    put.put.value = "v";
    ASSERT_TRUE(call_until_ok(put).ok());
  }

  // Add n4 as a learner, then start it to join the running cluster.
  Member joiner;
  joiner.name = "n4";
  joiner.client_port = FreePort();
  joiner.peer_port = FreePort();
  joiner.dir = absl::StrCat(members_[0].dir, "-joiner-n4");
  const std::string joiner_peer_url = absl::StrCat("http://127.0.0.1:", joiner.peer_port);
  server::Request add;
  add.type = server::RequestType::kMemberAdd;
  add.member.name = "n4";
  add.member.peer_urls = {joiner_peer_url};
  add.member.is_learner = true;
  auto added = call_until_ok(add);
  ASSERT_TRUE(added.ok()) << added.status();
  const raft::NodeId joiner_id = added->member.id;
  ASSERT_NE(joiner_id, raft::kNoNode);
  members_.push_back(std::move(joiner));
  initial_cluster_ = absl::StrCat(initial_cluster_, ",n4=", joiner_peer_url);
  StartMember(members_.size() - 1, /*join_existing=*/true);

  // Promotion succeeds once the learner has caught up (LEARNER_NOT_READY until then).
  server::Request promote;
  promote.type = server::RequestType::kMemberPromote;
  promote.member.id = joiner_id;
  auto promoted = call_until_ok(promote);
  ASSERT_TRUE(promoted.ok()) << promoted.status();

  // Remove founding member n1.
  server::Request list;
  list.type = server::RequestType::kMemberList;
  auto members = call_until_ok(list);
  ASSERT_TRUE(members.ok()) << members.status();
  raft::NodeId n1 = raft::kNoNode;
  for (const server::Member& m : members->members) {
    EXPECT_FALSE(m.is_learner) << m.name;
    if (m.name == "n1") n1 = m.id;
  }
  EXPECT_EQ(members->members.size(), 4u);
  ASSERT_NE(n1, raft::kNoNode);
  server::Request remove;
  remove.type = server::RequestType::kMemberRemove;
  remove.member.id = n1;
  auto removed = call_until_ok(remove);
  ASSERT_TRUE(removed.ok()) << removed.status();
  KillMember(0);
  // A member list is served by whichever member answers, from what it has applied (as etcd's
  // is): the removal shows once that member has applied it.
  for (int attempt = 0; attempt < 50; ++attempt) {
    members = call_until_ok(list);
    ASSERT_TRUE(members.ok()) << members.status();
    if (members->members.size() == 3) break;
    timer.afterDelay(100 * kj::MILLISECONDS).wait(io.waitScope);
  }
  EXPECT_EQ(members->members.size(), 3u);

  // The new member serves what was written before it joined.
  net::ClientOptions only_joiner;
  only_joiner.endpoints = {absl::StrCat("127.0.0.1:", members_.back().client_port)};
  only_joiner.per_try_timeout = 2 * kj::SECONDS;
  auto joiner_client = net::Client::Create(io.provider->getNetwork(), timer, only_joiner);
  ASSERT_TRUE(joiner_client.ok());
  server::Request get;
  get.type = server::RequestType::kRange;
  get.range.key = "before-49";
  absl::StatusOr<server::Response> got = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 50 && !(got.ok() && !got->range.kvs.empty()); ++attempt) {
    got = (*joiner_client)->Call(get, io.waitScope);
    if (!got.ok()) timer.afterDelay(100 * kj::MILLISECONDS).wait(io.waitScope);
  }
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->range.kvs.size(), 1u);
  EXPECT_EQ(got->range.kvs[0].value, "v");
}

}  // namespace
}  // namespace kvstore::node
