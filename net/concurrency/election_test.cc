// Elections against a real three-member kvnode cluster: candidates lead in the order they
// campaigned (each waiting for the deletion of the key before its own), the leader proclaims
// and resigns, a lost session hands over, an observer sees every leader and proclamation in
// order, and a canceled or repeated campaign leaves the queue as etcd's does.

#include "net/concurrency/election.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"
#include "net/concurrency/session.h"
#include "net/concurrency/testing/client_loop.h"
#include "net/concurrency/testing/cluster_fixture.h"
#include "net/concurrency/testing/kvnode_cluster.h"

namespace kvstore::net::concurrency {
namespace {

// A thread's event loop and one client on it.
struct Loop : testing::ClientLoop {
  using ClientLoop::ClientLoop;
  // How many candidates' keys are under `prefix` + "/".
  size_t Keys(const std::string& prefix) {
    server::Request keys;
    keys.type = server::RequestType::kRange;
    keys.range.key = prefix + "/";
    keys.range.range_end = mvcc::PrefixEnd(prefix + "/");
    absl::StatusOr<server::Response> response = Call(keys);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->range.kvs.size() : 0;
  }
};

using ElectionTest = testing::ClusterTest;

// A candidate on a thread of its own: campaigns, records when it leads, and then holds until
// told to step down, by resigning or by losing its session (a revoked lease).
class Candidate {
 public:
  enum class StepDown { kResign, kRevokeLease };

  Candidate(const std::vector<std::string>& endpoints, const std::string& prefix,
            const std::string& value) {
    thread_ = std::thread([this, endpoints, prefix, value] {
      Loop loop(endpoints);
      std::unique_ptr<Session> session = loop.NewSession(10);
      ASSERT_NE(session, nullptr);
      Election election(*session, prefix);
      // Bounded: a test that fails before stepping its predecessors down still ends.
      campaign_status_ =
          election.Campaign(value, loop.io.provider->getTimer().afterDelay(20 * kj::SECONDS));
      rev_ = election.rev();
      leads_ = campaign_status_.ok();
      loop.WaitFor([&] { return step_down_.load() != 0; }, 20 * kj::SECONDS);
      if (step_down_.load() == 1) {
        EXPECT_TRUE(election.Resign().ok());
      } else {
        EXPECT_TRUE(session->Close().ok());
      }
    });
  }
  ~Candidate() {
    if (step_down_.load() == 0) step_down_ = 1;
    thread_.join();
  }
  bool leads() const { return leads_.load(); }
  mvcc::Revision rev() const { return rev_.load(); }
  void StepDownBy(StepDown how) { step_down_ = how == StepDown::kResign ? 1 : 2; }

 private:
  std::thread thread_;
  std::atomic<bool> leads_{false};
  std::atomic<int64_t> rev_{0};
  std::atomic<int> step_down_{0};
  absl::Status campaign_status_;
};

TEST_F(ElectionTest, CandidatesLeadInCampaignOrderAndObserversFollow) {
  const std::string prefix = "election-test/order";
  Loop loop(cluster_->endpoints());
  std::unique_ptr<Session> session = loop.NewSession(10);
  ASSERT_NE(session, nullptr);
  Election a(*session, prefix);
  EXPECT_EQ(Election(loop.context(), prefix).Leader().status().message(), kElectionNoLeader);

  // The observer starts before any candidate: it waits for the first one.
  std::mutex seen_mutex;
  std::vector<std::string> seen;
  std::vector<mvcc::Revision> seen_revisions;
  absl::Status observed;
  std::thread observer([&] {
    Loop observer_loop(cluster_->endpoints());
    Election watching(observer_loop.context(), prefix);
    observed = watching.Observe([&](const LeaderValue& leader) {
      std::lock_guard<std::mutex> lock(seen_mutex);
      seen.push_back(leader.kv.value);
      seen_revisions.push_back(leader.header_revision);
      return leader.kv.value != "c";
    });
  });
  loop.Sleep(200 * kj::MILLISECONDS);

  ASSERT_TRUE(a.Campaign("a").ok());
  EXPECT_EQ(a.key(), absl::StrFormat("%s/%x", prefix, static_cast<uint64_t>(session->lease())));
  absl::StatusOr<LeaderValue> leader = a.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(leader->kv.key, a.key());
  EXPECT_EQ(leader->kv.value, "a");
  EXPECT_EQ(leader->kv.create_revision, a.rev());
  EXPECT_EQ(leader->kv.lease, session->lease());

  // b, then c, queue behind a: each waits, in campaign order.
  Candidate b(cluster_->endpoints(), prefix, "b");
  ASSERT_TRUE(loop.WaitFor([&] { return loop.Keys(prefix) == 2; }));
  Candidate c(cluster_->endpoints(), prefix, "c");
  ASSERT_TRUE(loop.WaitFor([&] { return loop.Keys(prefix) == 3; }));
  loop.Sleep(300 * kj::MILLISECONDS);
  EXPECT_FALSE(b.leads());
  EXPECT_FALSE(c.leads());

  // The leader proclaims a new value: same key, same create revision.
  ASSERT_TRUE(a.Proclaim("a2").ok());
  leader = a.Leader();
  ASSERT_TRUE(leader.ok());
  EXPECT_EQ(leader->kv.value, "a2");
  EXPECT_EQ(leader->kv.create_revision, a.rev());

  // a resigns: b, the next created, leads; c still waits for b's key.
  const mvcc::Revision a_rev = a.rev();
  ASSERT_TRUE(a.Resign().ok());
  EXPECT_EQ(a.key(), "");
  ASSERT_TRUE(loop.WaitFor([&] { return b.leads(); })) << "b did not lead after a resigned";
  EXPECT_GT(b.rev(), a_rev);
  loop.Sleep(200 * kj::MILLISECONDS);
  EXPECT_FALSE(c.leads()) << "c led while b, created before it, still stood";
  EXPECT_EQ(a.Proclaim("late").message(), kElectionNotLeader);
  leader = a.Leader();
  ASSERT_TRUE(leader.ok());
  EXPECT_EQ(leader->kv.value, "b");

  // b's session ends (its lease revoked, its key with it): c leads.
  b.StepDownBy(Candidate::StepDown::kRevokeLease);
  ASSERT_TRUE(loop.WaitFor([&] { return c.leads(); })) << "c did not lead after b's session ended";
  EXPECT_GT(c.rev(), b.rev());
  observer.join();
  EXPECT_TRUE(observed.ok()) << observed;
  EXPECT_EQ(absl::StrJoin(seen, ","), "a,a2,b,c");
  for (size_t i = 1; i < seen_revisions.size(); ++i) {
    EXPECT_GT(seen_revisions[i], seen_revisions[i - 1]) << "observed out of order at " << i;
  }
  c.StepDownBy(Candidate::StepDown::kResign);
  ASSERT_TRUE(loop.WaitFor([&] { return loop.Keys(prefix) == 0; }));
  EXPECT_TRUE(absl::IsNotFound(a.Leader().status()));
  EXPECT_TRUE(session->Close().ok());
}

// A campaign canceled while waiting withdraws its key; a session that campaigns again keeps
// its place and changes its value; a leader whose key was deleted by another cannot proclaim,
// and its fenced writes fail.
TEST_F(ElectionTest, CanceledRepeatedAndDeposedCampaigns) {
  const std::string prefix = "election-test/cancel";
  Loop loop(cluster_->endpoints());
  std::unique_ptr<Session> first = loop.NewSession(10);
  std::unique_ptr<Session> second = loop.NewSession(10);
  Election leader(*first, prefix);
  Election waiter(*second, prefix);
  ASSERT_TRUE(leader.Campaign("one").ok());
  absl::Status waited =
      waiter.Campaign("two", loop.io.provider->getTimer().afterDelay(300 * kj::MILLISECONDS));
  EXPECT_TRUE(absl::IsCancelled(waited)) << waited;
  EXPECT_EQ(loop.Keys(prefix), 1u) << "a canceled campaign left its key";

  // Campaigning again on the same session: the key and its create revision stay, the value
  // changes (a proclamation).
  const mvcc::Revision rev = leader.rev();
  Election again(*first, prefix);
  ASSERT_TRUE(again.Campaign("one-again").ok());
  EXPECT_EQ(again.rev(), rev);
  EXPECT_EQ(again.key(), leader.key());
  absl::StatusOr<LeaderValue> now = again.Leader();
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->kv.value, "one-again");

  // Resumed elsewhere from its key and revision, the leader can proclaim.
  Election resumed = Election::Resume(*first, prefix, leader.key(), leader.rev());
  ASSERT_TRUE(resumed.Proclaim("resumed").ok());
  EXPECT_EQ(again.Leader()->kv.value, "resumed");

  // Deposed: its key deleted by someone else. Proclaim fails, and so does a fenced write.
  const mvcc::Compare fence = leader.IsLeader();
  server::Request del;
  del.type = server::RequestType::kDeleteRange;
  del.delete_range.key = leader.key();
  ASSERT_TRUE(loop.Call(del).ok());
  EXPECT_EQ(leader.Proclaim("still me").message(), kElectionNotLeader);
  server::Request fenced;
  fenced.type = server::RequestType::kTxn;
  fenced.txn.compare.push_back(fence);
  mvcc::RequestOp write;
  write.kind = mvcc::RequestOp::Kind::kPut;
  write.put.key = "election-test/fenced";
  write.put.value = "x";
  fenced.txn.success.push_back(write);
  absl::StatusOr<server::Response> response = loop.Call(fenced);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_FALSE(response->txn.succeeded) << "a deposed leader's fenced write was accepted";
  EXPECT_TRUE(leader.Resign().ok());  // nothing to do
  EXPECT_EQ(Election(loop.context(), prefix).Campaign("x").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(first->Close().ok());
  EXPECT_TRUE(second->Close().ok());
}

}  // namespace
}  // namespace kvstore::net::concurrency
