// A removed member stops, as etcd's does ("the member has been permanently removed from the
// cluster"), on a real three-member kvnode cluster:
//   - a running member that applies its own removal exits 0 with etcd's two warnings, and its data
//     dir is refused at the next start (exit 1), so a removed id never serves again;
//   - a member removed while it was down does not know it: restarted on its old data dir, it
//     campaigns, its peers refuse its messages as a removed member's (rafthttp's 410 Gone, here
//     a refusal on the Raft stream), and it exits 0 the same way;
//   - a leader that removes itself hands over first, then stops.
// Before, a removed member kept running: it served serializable reads of a frozen state forever
// and, removed while down, campaigned at ever higher terms.
//
// Bounded: every wait has a deadline, and the harness kills any child still running.

#include <chrono>
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

constexpr absl::string_view kRemovedLog =
    "the member has been permanently removed from the cluster";

class RemovedMemberTest : public testing::ClientFixture {
 protected:
  void StartCluster(const std::string& name) {
    ClusterOptions options;
    options.members = 3;
    options.name = name;
    auto created = Cluster::Create(options);
    ASSERT_TRUE(created.ok()) << created.status();
    cluster_ = std::move(*created);
    for (size_t i = 0; i < cluster_->size(); ++i) ASSERT_TRUE(Start(i).ok());
    client_ = ClientOf(cluster_->Endpoints());
    ASSERT_NE(client_, nullptr);
  }

  // Starts member i logging warnings too (the harness's members log errors only): the removed
  // member's are what this test reads.
  absl::Status Start(size_t i) {
    std::vector<std::string> args = cluster_->Args(i);
    for (size_t a = 0; a + 1 < args.size(); ++a) {
      if (args[a] == "--log-level") args[a + 1] = "warn";
    }
    return cluster_->StartWithArgs(i, std::move(args));
  }

  // Member i's process ended: reaped and forgotten, so it can be started again.
  void Forget(size_t i) { cluster_->Kill(i); }

  // Retries what was refused before it reached the log (no leader yet, a member starting).
  absl::StatusOr<server::Response> Call(const server::Request& request) {
    return CallRetrying(*client_, request, /*attempts=*/60);
  }

  raft::NodeId IdOf(const std::string& name) {
    server::Request list;
    list.type = server::RequestType::kMemberList;
    auto members = Call(list);
    if (!members.ok()) return raft::kNoNode;
    for (const server::Member& m : members->members) {
      if (m.name == name) return m.id;
    }
    return raft::kNoNode;
  }

  // The name of the member that leads, from the members' own status; "" if none within 10 s.
  std::string LeaderName() {
    for (int attempt = 0; attempt < 100; ++attempt) {
      for (size_t i = 0; i < cluster_->size(); ++i) {
        if (!cluster_->member(i).running()) continue;
        auto client = ClientOf({cluster_->member(i).endpoint()});
        auto status = client->StatusAsync(0).wait(io_.waitScope);
        if (status.ok() && status->member.leader != raft::kNoNode &&
            status->member.leader == status->member.id) {
          return cluster_->member(i).name;
        }
      }
      Pause(100);
    }
    return "";
  }

  // Picks the member the test removes: the leader, or a follower. Sets `index` (its place in
  // the cluster) and `id` (its member id), or fails the test.
  void PickVictim(bool leader, size_t* index, raft::NodeId* id) {
    const std::string leading = LeaderName();
    ASSERT_FALSE(leading.empty());
    *index = 0;
    while ((cluster_->member(*index).name == leading) != leader) ++*index;
    *id = IdOf(cluster_->member(*index).name);
    ASSERT_NE(*id, raft::kNoNode);
  }

  void Remove(raft::NodeId id) {
    server::Request remove;
    remove.type = server::RequestType::kMemberRemove;
    remove.member.id = id;
    auto removed = Call(remove);
    ASSERT_TRUE(removed.ok()) << removed.status();
  }

  // Waits (at most 15 s) for member i's process to end by itself; its exit.
  absl::StatusOr<crash::ChildExit> ExitOf(size_t i) {
    return cluster_->member(i).process->Wait(crash::Clock::now() + std::chrono::seconds(15));
  }

  // The cluster still serves writes and reads them back.
  void ExpectServes(const std::string& key) {
    server::Request put;
    put.type = server::RequestType::kPut;
    put.put.key = key;
    put.put.value = "v";
    auto put_answer = Call(put);
    ASSERT_TRUE(put_answer.ok()) << put_answer.status();
    server::Request get;
    get.type = server::RequestType::kRange;
    get.range.key = key;
    auto got = Call(get);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->range.kvs.size(), 1u);
  }

  std::unique_ptr<Cluster> cluster_;
  std::unique_ptr<net::Client> client_;
};

TEST_F(RemovedMemberTest, ARunningMemberStopsOnItsRemovalAndItsDataDirIsRefused) {
  StartCluster("removed_running");
  ExpectServes("before");
  // A follower: the leader's own case is the third test.
  size_t victim = 0;
  raft::NodeId id = raft::kNoNode;
  ASSERT_NO_FATAL_FAILURE(PickVictim(/*leader=*/false, &victim, &id));
  Remove(id);

  auto exit = ExitOf(victim);
  ASSERT_TRUE(exit.ok()) << "the removed member did not stop: " << exit.status();
  const std::string err = cluster_->member(victim).process->stderr_text();
  EXPECT_TRUE(exit->Exited(0)) << err;
  EXPECT_TRUE(absl::StrContains(err, kRemovedLog)) << err;
  EXPECT_TRUE(absl::StrContains(err, "the data-dir used by this member must be removed")) << err;

  // Its data dir records the removal: it refuses to start on it.
  Forget(victim);
  ASSERT_TRUE(Start(victim).ok());
  auto refused = ExitOf(victim);
  ASSERT_TRUE(refused.ok()) << "the removed member started again: " << refused.status();
  const std::string again = cluster_->member(victim).process->stderr_text();
  EXPECT_TRUE(refused->Exited(1)) << again;
  EXPECT_TRUE(absl::StrContains(again, "has been permanently removed from the cluster")) << again;
  EXPECT_TRUE(absl::StrContains(again, "data dir must be removed")) << again;

  ExpectServes("after");
}

TEST_F(RemovedMemberTest, AMemberRemovedWhileDownStopsWhenItsPeersRefuseIt) {
  StartCluster("removed_down");
  ExpectServes("before");
  size_t victim = 0;
  raft::NodeId id = raft::kNoNode;
  ASSERT_NO_FATAL_FAILURE(PickVictim(/*leader=*/false, &victim, &id));
  cluster_->Kill(victim);
  Remove(id);
  ExpectServes("removed");

  // Its data dir knows nothing of the removal: it starts, hears from no leader, campaigns, and
  // its peers refuse its messages.
  ASSERT_TRUE(Start(victim).ok());
  auto exit = ExitOf(victim);
  ASSERT_TRUE(exit.ok()) << "the removed member did not stop: " << exit.status();
  const std::string err = cluster_->member(victim).process->stderr_text();
  EXPECT_TRUE(exit->Exited(0)) << err;
  EXPECT_TRUE(absl::StrContains(err, "a peer refused this member as removed from the cluster"))
      << err;
  EXPECT_TRUE(absl::StrContains(err, kRemovedLog)) << err;

  // And the cluster kept its leader's term meanwhile, serving writes.
  ExpectServes("after");
}

TEST_F(RemovedMemberTest, ALeaderThatRemovesItselfHandsOverThenStops) {
  StartCluster("removed_leader");
  ExpectServes("before");
  size_t victim = 0;
  raft::NodeId id = raft::kNoNode;
  ASSERT_NO_FATAL_FAILURE(PickVictim(/*leader=*/true, &victim, &id));
  const std::string leader = cluster_->member(victim).name;
  Remove(id);

  auto exit = ExitOf(victim);
  ASSERT_TRUE(exit.ok()) << "the removed leader did not stop: " << exit.status();
  const std::string err = cluster_->member(victim).process->stderr_text();
  EXPECT_TRUE(exit->Exited(0)) << err;
  EXPECT_TRUE(absl::StrContains(err, kRemovedLog)) << err;

  // The two left elect a leader and serve.
  ExpectServes("after");
  EXPECT_NE(LeaderName(), leader);
}

}  // namespace
}  // namespace kvstore::node
