// Member replace and member update with real processes: on a three-member kvnode cluster under
// client load, founding member n1 is replaced by a new process in one joint configuration change
// (kvstore's own request; etcd needs a remove and an add). The joiner starts with
// --initial-cluster-state=existing and finds its id through Peer.members, as an added member does;
// the old process is stopped. The clients' history, judged by the simulator's linearizability
// checker, must hold across the change, and the new member must serve what was written before it
// existed.
//
// Bounded: each request has a per-try timeout, the loaded phase lasts about 5 s, every wait has a
// deadline, and the harness kills any child still running.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"
#include "node/testing/cluster.h"
#include "node/testing/history_workload.h"
#include "sim/linearizability.h"

namespace kvstore::node {
namespace {

using testing::Cluster;
using testing::ClusterOptions;
using testing::HistoryWorkload;

TEST(ReplaceTest, AMemberIsReplacedByANewProcessUnderLoad) {
  ClusterOptions cluster_options;
  cluster_options.members = 3;
  cluster_options.name = "replace";
  auto created = Cluster::Create(cluster_options);
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<Cluster> cluster = std::move(*created);
  ASSERT_TRUE(cluster->StartAll().ok());

  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Timer& timer = io.provider->getTimer();
  auto pause = [&](int64_t ms) { timer.afterDelay(ms * kj::MILLISECONDS).wait(io.waitScope); };
  net::ClientOptions options;
  options.endpoints = cluster->Endpoints();
  options.per_try_timeout = 1 * kj::SECONDS;
  options.endpoint_backoff_min = 200 * kj::MILLISECONDS;
  options.endpoint_backoff_max = 1 * kj::SECONDS;
  auto client = net::Client::Create(io.provider->getNetwork(), timer, options);
  ASSERT_TRUE(client.ok()) << client.status();
  // Retries a request refused before it reached the log (no leader yet, a member starting).
  auto call = [&](net::Client& via, const server::Request& request) {
    absl::StatusOr<server::Response> response = absl::UnavailableError("not tried");
    for (int attempt = 0; attempt < 50; ++attempt) {
      response = via.Call(request, io.waitScope);
      if (response.ok() || CodeOf(response.status()) == ErrorCode::kMemberNotFound ||
          CodeOf(response.status()) == ErrorCode::kMemberExists) {
        break;
      }
      pause(100);
    }
    return response;
  };

  for (int i = 0; i < 20; ++i) {
    server::Request put;
    put.type = server::RequestType::kPut;
    put.put.key = absl::StrCat("before-", i);
    put.put.value = absl::StrCat("v", i);
    ASSERT_TRUE(call(**client, put).ok());
  }
  HistoryWorkload workload(**client, timer);
  workload.Start();
  pause(1000);

  server::Request list;
  list.type = server::RequestType::kMemberList;
  auto members = call(**client, list);
  ASSERT_TRUE(members.ok()) << members.status();
  raft::NodeId n1 = raft::kNoNode;
  for (const server::Member& m : members->members) {
    if (m.name == "n1") n1 = m.id;
  }
  ASSERT_NE(n1, raft::kNoNode);

  // n1 out, the joiner in: answered once the joint configuration is left.
  auto joiner = cluster->AddMember();
  ASSERT_TRUE(joiner.ok()) << joiner.status();
  server::Request replace;
  replace.type = server::RequestType::kMemberReplace;
  replace.member.id = n1;
  replace.member.peer_urls = {cluster->member(*joiner).peer_url()};
  auto replaced = call(**client, replace);
  if (!replaced.ok() && CodeOf(replaced.status()) == ErrorCode::kMemberNotFound) {
    // A try whose answer was lost (n1 stops once it has left the configuration, and a request
    // it was serving may be cut off) was tried again after the replace had happened: the member
    // list must then show it done, as an etcd client that retried would check.
    auto after = call(**client, list);
    ASSERT_TRUE(after.ok()) << after.status();
    for (const server::Member& m : after->members) {
      if (!m.peer_urls.empty() && m.peer_urls.front() == replace.member.peer_urls.front()) {
        server::Response done;
        done.member = m;
        done.members = after->members;
        replaced = done;
      }
    }
  }
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  const raft::NodeId joiner_id = replaced->member.id;
  ASSERT_NE(joiner_id, raft::kNoNode);
  EXPECT_FALSE(replaced->member.is_learner);
  ASSERT_EQ(replaced->members.size(), 3u);
  for (const server::Member& m : replaced->members) EXPECT_NE(m.id, n1);
  cluster->Kill(0);
  ASSERT_TRUE(cluster->Start(*joiner).ok());

  // The new member serves what was written before it existed (a linearizable read on it alone).
  net::ClientOptions only_joiner = options;
  only_joiner.endpoints = {cluster->member(*joiner).endpoint()};
  auto joiner_client = net::Client::Create(io.provider->getNetwork(), timer, only_joiner);
  ASSERT_TRUE(joiner_client.ok()) << joiner_client.status();
  server::Request get;
  get.type = server::RequestType::kRange;
  get.range.key = "before-19";
  absl::StatusOr<server::Response> got = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 100 && !(got.ok() && !got->range.kvs.empty()); ++attempt) {
    got = (*joiner_client)->Call(get, io.waitScope);
    if (!got.ok()) pause(100);
  }
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->range.kvs.size(), 1u);
  EXPECT_EQ(got->range.kvs[0].value, "v19");
  // It takes writes too, and the load goes on through the change.
  server::Request put;
  put.type = server::RequestType::kPut;
  put.put.key = "after";
  put.put.value = "from-the-new-member";
  ASSERT_TRUE(call(**joiner_client, put).ok());
  pause(1500);
  workload.Stop(io.waitScope);

  // Every member, the new one included, lists n2, n3 and the joiner.
  for (const std::string& endpoint : {cluster->member(1).endpoint(), cluster->member(2).endpoint(),
                                      cluster->member(*joiner).endpoint()}) {
    net::ClientOptions one = options;
    one.endpoints = {endpoint};
    auto member_client = net::Client::Create(io.provider->getNetwork(), timer, one);
    ASSERT_TRUE(member_client.ok());
    absl::StatusOr<server::Response> listed = call(**member_client, list);
    ASSERT_TRUE(listed.ok()) << endpoint << ": " << listed.status();
    std::vector<raft::NodeId> ids;
    for (const server::Member& m : listed->members) ids.push_back(m.id);
    EXPECT_EQ(ids.size(), 3u) << endpoint;
    EXPECT_EQ(std::count(ids.begin(), ids.end(), n1), 0) << endpoint;
    EXPECT_EQ(std::count(ids.begin(), ids.end(), joiner_id), 1) << endpoint;
  }

  EXPECT_GT(workload.ok_operations(), 20u) << "the workload barely ran";
  auto verdict = workload.Check();
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_EQ(verdict->verdict, sim::Verdict::kLinearizable) << verdict->Describe();
  std::printf("replace_test: %s; %s\n", workload.Summary().c_str(), verdict->Describe().c_str());
}

// etcd's way to move a member to a new peer address: member update with the new URL, then restart
// the member listening there (with the new URL in its flags). The other members' peer connections
// follow the recorded URL (the old one is dropped, the new one dialed), so the moved member catches
// up and serves.
TEST(ReplaceTest, AMemberMovesToANewPeerUrl) {
  ClusterOptions cluster_options;
  cluster_options.members = 3;
  cluster_options.name = "update";
  auto created = Cluster::Create(cluster_options);
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<Cluster> cluster = std::move(*created);
  ASSERT_TRUE(cluster->StartAll().ok());

  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Timer& timer = io.provider->getTimer();
  auto pause = [&](int64_t ms) { timer.afterDelay(ms * kj::MILLISECONDS).wait(io.waitScope); };
  net::ClientOptions options;
  options.endpoints = {cluster->member(0).endpoint(), cluster->member(1).endpoint()};
  options.per_try_timeout = 1 * kj::SECONDS;
  options.endpoint_backoff_min = 200 * kj::MILLISECONDS;
  auto client = net::Client::Create(io.provider->getNetwork(), timer, options);
  ASSERT_TRUE(client.ok()) << client.status();
  auto call = [&](net::Client& via, const server::Request& request) {
    absl::StatusOr<server::Response> response = absl::UnavailableError("not tried");
    for (int attempt = 0; attempt < 50 && !response.ok(); ++attempt) {
      response = via.Call(request, io.waitScope);
      if (!response.ok()) pause(100);
    }
    return response;
  };
  server::Request list;
  list.type = server::RequestType::kMemberList;
  auto members = call(**client, list);
  ASSERT_TRUE(members.ok()) << members.status();
  raft::NodeId n3 = raft::kNoNode;
  for (const server::Member& m : members->members) {
    if (m.name == "n3") n3 = m.id;
  }
  ASSERT_NE(n3, raft::kNoNode);
  // A founding member's id follows from its --initial-cluster URLs (etcd keeps it in the WAL): the
  // member that moves is one that joined, which keeps its id in its data directory. n3 is replaced
  // by n4 first.
  auto joiner = cluster->AddMember();
  ASSERT_TRUE(joiner.ok()) << joiner.status();
  server::Request replace;
  replace.type = server::RequestType::kMemberReplace;
  replace.member.id = n3;
  replace.member.peer_urls = {cluster->member(*joiner).peer_url()};
  auto replaced = call(**client, replace);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  const raft::NodeId n4 = replaced->member.id;
  cluster->Kill(2);
  ASSERT_TRUE(cluster->Start(*joiner).ok());
  server::Request first;
  first.type = server::RequestType::kPut;
  first.put.key = "before-moving";
  first.put.value = "v";
  ASSERT_TRUE(call(**client, first).ok());

  // Refused with etcd's errors: an unknown member, a URL another member has.
  server::Request update;
  update.type = server::RequestType::kMemberUpdate;
  update.member.id = 1234;
  update.member.peer_urls = {"http://127.0.0.1:1"};
  auto refused = (*client)->Call(update, io.waitScope);
  EXPECT_EQ(CodeOf(refused.ok() ? refused->status : refused.status()), ErrorCode::kMemberNotFound);
  update.member.id = n4;
  update.member.peer_urls = {cluster->member(0).peer_url()};
  refused = (*client)->Call(update, io.waitScope);
  EXPECT_EQ(CodeOf(refused.ok() ? refused->status : refused.status()), ErrorCode::kMemberExists);

  cluster->Kill(*joiner);
  auto reserved = cluster->ReservePort();
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  const uint16_t port = *reserved;
  update.member.peer_urls = {absl::StrCat("http://127.0.0.1:", port)};
  auto updated = call(**client, update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  for (const server::Member& m : updated->members) {
    if (m.id == n4) EXPECT_EQ(m.peer_urls, update.member.peer_urls);
  }
  server::Request put;
  put.type = server::RequestType::kPut;
  put.put.key = "while-moving";
  put.put.value = "v";
  ASSERT_TRUE(call(**client, put).ok());

  testing::ClusterMember& moved = cluster->member(*joiner);
  const std::string old_url = moved.peer_url();
  moved.listen_peer_port = port;
  moved.peer_port = port;
  moved.initial_cluster.replace(moved.initial_cluster.find(old_url), old_url.size(),
                                moved.peer_url());
  ASSERT_TRUE(cluster->Start(*joiner).ok());
  net::ClientOptions only_n4 = options;
  only_n4.endpoints = {moved.endpoint()};
  auto n4_client = net::Client::Create(io.provider->getNetwork(), timer, only_n4);
  ASSERT_TRUE(n4_client.ok());
  // A linearizable read on n4 needs the leader to reach it at its new address.
  server::Request get;
  get.type = server::RequestType::kRange;
  get.range.key = "while-moving";
  absl::StatusOr<server::Response> got = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 100 && !(got.ok() && !got->range.kvs.empty()); ++attempt) {
    got = (*n4_client)->Call(get, io.waitScope);
    if (!got.ok()) pause(100);
  }
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->range.kvs.size(), 1u);
  EXPECT_EQ(got->range.kvs[0].value, "v");
}

}  // namespace
}  // namespace kvstore::node
