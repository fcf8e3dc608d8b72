// A member that missed the configuration change adding a member answers that member, on a real
// kvnode cluster (node/kvnode.cc, Router's learned routes; net/peer.capnp, senderPeerUrls).
//
// n1, n2, n3 found the cluster; n3 is killed; n4 is added (as a learner, then promoted) and
// started; n1 is removed (it stops, as a removed member does); n2 is killed for good; n3 is
// restarted with its old flags, whose --initial-cluster has no n4, and whose log has neither n4's
// addition nor n1's removal. n3 and n4 are two of the three voters {n2, n3, n4}: n4 must win n3's
// vote. n3's Raft answers n4's vote request (core/raft: a stale vote request is answered with the
// newer term), but n3's transport reaches only its members and its --initial-cluster, so before
// the learned routes every answer to n4 was dropped and no leader was ever elected. n4's Raft
// stream now tells n3 its peer URL: a leader is elected and a put succeeds within 15 s.
//
// Bounded: every wait has a deadline, and the harness kills any child still running.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"
#include "node/crash_process.h"
#include "node/testing/client_fixture.h"
#include "node/testing/cluster.h"

namespace kvstore::node {
namespace {

using testing::Cluster;
using testing::ClusterOptions;

class LearnedRouteTest : public testing::ClientFixture {
 protected:
  // About 10 s of retries (CallRetrying); kMemberNotFound is final.
  absl::StatusOr<server::Response> Call(net::Client& client, const server::Request& request) {
    return CallRetrying(client, request);
  }

  std::vector<server::Member> Members(net::Client& client) {
    server::Request list;
    list.type = server::RequestType::kMemberList;
    auto members = Call(client, list);
    EXPECT_TRUE(members.ok()) << members.status();
    return members.ok() ? members->members : std::vector<server::Member>{};
  }

  // Whether the member at `endpoint` has applied a member list of exactly `ids`.
  bool HasApplied(const std::string& endpoint, std::vector<raft::NodeId> ids) {
    auto client = ClientOf({endpoint});
    server::Request list;
    list.type = server::RequestType::kMemberList;
    auto members = client->Call(list, io_.waitScope);
    if (!members.ok()) return false;
    std::vector<raft::NodeId> got;
    for (const server::Member& m : members->members) got.push_back(m.id);
    std::sort(got.begin(), got.end());
    std::sort(ids.begin(), ids.end());
    return got == ids;
  }
};

TEST_F(LearnedRouteTest, AMemberThatMissedAnAdditionVotesForTheNewMember) {
  ClusterOptions options;
  options.members = 3;
  options.name = "learned_route";
  auto created = Cluster::Create(options);
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<Cluster> cluster = std::move(*created);
  ASSERT_TRUE(cluster->StartAll().ok());
  auto client = ClientOf(cluster->Endpoints());
  ASSERT_NE(client, nullptr);

  server::Request put;
  put.type = server::RequestType::kPut;
  put.put.key = "before";
  put.put.value = "v";
  ASSERT_TRUE(Call(*client, put).ok());
  raft::NodeId n1 = raft::kNoNode, n2 = raft::kNoNode, n3 = raft::kNoNode;
  for (const server::Member& m : Members(*client)) {
    if (m.name == "n1") n1 = m.id;
    if (m.name == "n2") n2 = m.id;
    if (m.name == "n3") n3 = m.id;
  }
  ASSERT_NE(n1, raft::kNoNode);
  ASSERT_NE(n2, raft::kNoNode);
  ASSERT_NE(n3, raft::kNoNode);

  // n3 goes down and misses everything that follows.
  cluster->Kill(2);
  client = ClientOf({cluster->member(0).endpoint(), cluster->member(1).endpoint()});

  // n4 joins as a learner (the quorum stays n1, n2 of three), then is promoted.
  auto joiner = cluster->AddMember();
  ASSERT_TRUE(joiner.ok()) << joiner.status();
  server::Request add;
  add.type = server::RequestType::kMemberAdd;
  add.member.name = cluster->member(*joiner).name;
  add.member.peer_urls = {cluster->member(*joiner).peer_url()};
  add.member.is_learner = true;
  auto added = Call(*client, add);
  ASSERT_TRUE(added.ok()) << added.status();
  const raft::NodeId n4 = added->member.id;
  ASSERT_NE(n4, raft::kNoNode);
  ASSERT_TRUE(cluster->Start(*joiner).ok());
  server::Request promote;
  promote.type = server::RequestType::kMemberPromote;
  promote.member.id = n4;
  auto promoted = Call(*client, promote);
  ASSERT_TRUE(promoted.ok()) << promoted.status();

  // n1 is removed (n1, n2 and n4 are three of four: the removal commits) and stops.
  client = ClientOf({cluster->member(1).endpoint(), cluster->member(*joiner).endpoint()});
  server::Request remove;
  remove.type = server::RequestType::kMemberRemove;
  remove.member.id = n1;
  auto removed = Call(*client, remove);
  if (!removed.ok() && CodeOf(removed.status()) == ErrorCode::kMemberNotFound) {
    // A try whose answer was lost (n1 may have been serving it when it stopped) was tried again
    // after the removal.
    bool gone = true;
    for (const server::Member& m : Members(*client)) gone = gone && m.id != n1;
    if (gone) removed = server::Response{};
  }
  ASSERT_TRUE(removed.ok()) << removed.status();
  auto exit = cluster->member(0).process->Wait(crash::Clock::now() + std::chrono::seconds(15));
  ASSERT_TRUE(exit.ok()) << "the removed member did not stop: " << exit.status();
  cluster->Kill(0);
  // n4 has applied {n2, n3, n4}: its Raft campaigns to n2 and n3.
  bool applied = false;
  for (int attempt = 0; attempt < 100 && !applied; ++attempt) {
    applied = HasApplied(cluster->member(*joiner).endpoint(), {n2, n3, n4});
    if (!applied) Pause(100);
  }
  ASSERT_TRUE(applied);

  // n2 goes down for good; n3 comes back with its old flags (no n4 in its --initial-cluster).
  // n3 logs at info, so the test can read its learned route.
  cluster->Kill(1);
  std::vector<std::string> args = cluster->Args(2);
  for (size_t a = 0; a + 1 < args.size(); ++a) {
    if (args[a] == "--log-level") args[a + 1] = "info";
  }
  ASSERT_TRUE(cluster->StartWithArgs(2, std::move(args)).ok());
  const auto restarted = std::chrono::steady_clock::now();

  // n3 and n4 are a majority of {n2, n3, n4}: a leader is elected and a put commits.
  client = ClientOf({cluster->member(2).endpoint(), cluster->member(*joiner).endpoint()});
  put.put.key = "after";
  absl::StatusOr<server::Response> answer = absl::UnavailableError("not tried");
  while (std::chrono::steady_clock::now() - restarted < std::chrono::seconds(15)) {
    answer = client->Call(put, io_.waitScope);
    if (answer.ok()) break;
    Pause(100);
  }
  ASSERT_TRUE(answer.ok()) << "no leader within 15 s of n3's restart: " << answer.status();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - restarted);
  std::printf("put committed %lld ms after n3's restart\n", static_cast<long long>(took.count()));

  // n3 answered n4 through the URL n4's Raft stream told it.
  crash::ChildProcess& n3_process = *cluster->member(2).process;
  const std::string n4_url = cluster->member(*joiner).peer_url();
  auto learned = [&] {
    const std::string& log = n3_process.stderr_text();
    const size_t at = log.find("learned peer URL from its Raft stream");
    return at != std::string::npos && log.find(n4_url, at) != std::string::npos;
  };
  EXPECT_TRUE(n3_process.ReadUntil(crash::Clock::now() + std::chrono::seconds(5), learned))
      << n3_process.stderr_text();

  // n3 catches up: it applies n4's addition and n1's removal, and serves the write.
  applied = false;
  for (int attempt = 0; attempt < 100 && !applied; ++attempt) {
    applied = HasApplied(cluster->member(2).endpoint(), {n2, n3, n4});
    if (!applied) Pause(100);
  }
  EXPECT_TRUE(applied);
  // Once n4 is in its member list, that entry wins: the learned route is forgotten.
  EXPECT_TRUE(n3_process.ReadUntil(crash::Clock::now() + std::chrono::seconds(5), [&] {
    return absl::StrContains(n3_process.stderr_text(),
                             "forgot the peer URL learned from its Raft stream");
  })) << n3_process.stderr_text();
  auto only_n3 = ClientOf({cluster->member(2).endpoint()});
  server::Request get;
  get.type = server::RequestType::kRange;
  get.range.key = "after";
  get.range.serializable = true;
  absl::StatusOr<server::Response> got = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 100; ++attempt) {
    got = only_n3->Call(get, io_.waitScope);
    if (got.ok() && got->range.kvs.size() == 1) break;
    Pause(100);
  }
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->range.kvs.size(), 1u);
}

}  // namespace
}  // namespace kvstore::node
