// The server-rule checkers (sim/checkers.h), fed violating event sequences by hand: each must
// fail with a message that names the rule, and stay quiet when the rule holds.
#include "sim/checkers.h"

#include <map>
#include <string>
#include <vector>

#include "core/base/errors.h"
#include "core/server/requests.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvstore::sim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class FakeWorld : public CheckedWorld {
 public:
  void Violation(std::string what) override { violations.push_back(std::move(what)); }
  void Trace(const std::string&) override {}
  const store::Wal::LogIndex* DurableLog(raft::NodeId id) const override {
    auto it = logs.find(id);
    return it == logs.end() ? nullptr : &it->second;
  }
  // Member `id`'s disk holds a log up to `last` (as a snapshot marker: what counts is its end).
  void SetDurable(raft::NodeId id, raft::Index last) {
    store::Wal::LogIndex log;
    log.snapshot_index = last;
    log.snapshot_term = 1;
    logs[id] = log;
  }

  std::vector<std::string> violations;
  std::map<raft::NodeId, store::Wal::LogIndex> logs;
};

raft::ConfState Conf(std::vector<raft::NodeId> voters, std::vector<raft::NodeId> learners) {
  raft::ConfState conf;
  conf.voters = std::move(voters);
  conf.learners = std::move(learners);
  return conf;
}

raft::Entry NormalEntry(raft::Index index, const std::string& data) {
  raft::Entry entry;
  entry.term = 1;
  entry.index = index;
  entry.data = raft::Bytes(data);
  return entry;
}

TEST(ServerRuleCheckersTest, PromotionOfALearnerWhoseDiskIsBehindFails) {
  FakeWorld world;
  ServerRuleCheckers rules(&world, {});
  world.SetDurable(4, 10);
  // Leader n1 took the promote request while it held 300 entries; n2 applies the promotion.
  rules.OnPromoteSubmitted(1, 7, 4, 300);
  rules.OnConfChanged(2, Conf({1, 2, 3}, {4}), Conf({1, 2, 3, 4}, {}));
  ASSERT_EQ(world.violations.size(), 1u);
  EXPECT_THAT(world.violations[0],
              HasSubstr("n2 applied the promotion of learner n4 whose durable log ends at 10, "
                        "below 90% of the 300 entries the leader held"));
  EXPECT_EQ(rules.counts().promotions_judged, 1u);
}

TEST(ServerRuleCheckersTest, PromotionOfAReadyLearnerPasses) {
  FakeWorld world;
  ServerRuleCheckers rules(&world, {});
  world.SetDurable(4, 270);  // exactly 90% of 300
  rules.OnPromoteSubmitted(1, 7, 4, 300);
  rules.OnConfChanged(2, Conf({1, 2, 3}, {4}), Conf({1, 2, 3, 4}, {}));
  EXPECT_THAT(world.violations, IsEmpty());
  EXPECT_EQ(rules.counts().promotions_judged, 1u);
}

TEST(ServerRuleCheckersTest, PromotionOfALearnerThatNeverStartedFails) {
  FakeWorld world;  // no disk for n4 at all
  ServerRuleCheckers rules(&world, {});
  rules.OnPromoteSubmitted(1, 7, 4, 50);
  rules.OnConfChanged(1, Conf({1, 2, 3}, {4}), Conf({1, 2, 3, 4}, {}));
  ASSERT_EQ(world.violations.size(), 1u);
  EXPECT_THAT(world.violations[0], HasSubstr("whose durable log ends at 0"));
}

TEST(ServerRuleCheckersTest, PromotionIsJudgedByItsLeastDemandingRequest) {
  FakeWorld world;
  ServerRuleCheckers rules(&world, {});
  world.SetDurable(4, 100);
  rules.OnPromoteSubmitted(1, 7, 4, 500);  // refused: the learner was not ready
  rules.OnPromoteSubmitted(1, 8, 4, 110);  // accepted
  server::Response refused;
  refused.request_id = 7;
  refused.type = server::RequestType::kMemberPromote;
  refused.status = Error(ErrorCode::kLearnerNotReady, "member promote: learner 4 has ...");
  rules.OnAnswer(1, refused);
  rules.OnConfChanged(1, Conf({1, 2, 3}, {4}), Conf({1, 2, 3, 4}, {}));
  EXPECT_THAT(world.violations, IsEmpty());
}

TEST(ServerRuleCheckersTest, OnlyARefusedPromoteAnswerForgetsItsRequest) {
  FakeWorld world;
  ServerRuleCheckers rules(&world, {});
  world.SetDurable(4, 10);
  rules.OnPromoteSubmitted(1, 7, 4, 300);
  // Another request of the same member with the same id (a restarted member numbers anew).
  server::Response other;
  other.request_id = 7;
  other.type = server::RequestType::kPut;
  other.status = Error(ErrorCode::kNoLeader, "no leader");
  rules.OnAnswer(1, other);
  rules.OnConfChanged(1, Conf({1, 2, 3}, {4}), Conf({1, 2, 3, 4}, {}));
  ASSERT_EQ(world.violations.size(), 1u);
  EXPECT_THAT(world.violations[0], HasSubstr("whose durable log ends at 10"));
}

TEST(ServerRuleCheckersTest, PromotionWithoutAnyRequestIsCountedUnjudged) {
  FakeWorld world;
  ServerRuleCheckers rules(&world, {});
  rules.OnConfChanged(1, Conf({1, 2, 3}, {4}), Conf({1, 2, 3, 4}, {}));
  EXPECT_THAT(world.violations, IsEmpty());
  EXPECT_EQ(rules.counts().promotions_unjudged, 1u);
}

TEST(ServerRuleCheckersTest, ConfigurationBeyondTheLearnerLimitFails) {
  FakeWorld world;
  ServerRuleCheckers rules(&world, {});  // max_learners 1, etcd's default
  rules.OnConfChanged(3, Conf({1, 2, 3}, {4}), Conf({1, 2, 3}, {4}));
  EXPECT_THAT(world.violations, IsEmpty());
  EXPECT_EQ(rules.counts().configurations_at_learner_limit, 1u);
  rules.OnConfChanged(3, Conf({1, 2, 3}, {4}), Conf({1, 2, 3}, {4, 5}));
  ASSERT_EQ(world.violations.size(), 1u);
  EXPECT_THAT(world.violations[0],
              HasSubstr("n3 applied a configuration with 2 learners, beyond the limit of 1"));
}

TEST(ServerRuleCheckersTest, EntryBeyondTheRequestSizeLimitFails) {
  FakeWorld world;
  ServerRuleCheckers::Limits limits;
  limits.max_request_bytes = 100;
  ServerRuleCheckers rules(&world, limits);
  rules.OnFirstApply(NormalEntry(5, std::string(100, 'x')));
  EXPECT_THAT(world.violations, IsEmpty());
  rules.OnFirstApply(NormalEntry(6, std::string(101, 'x')));
  EXPECT_THAT(world.violations,
              ElementsAre("index 6 applied a request of 101 bytes, beyond the limit of 100 bytes"));
}

TEST(ServerRuleCheckersTest, TxnBeyondTheOpsLimitFailsAlsoWhenNested) {
  FakeWorld world;
  ServerRuleCheckers::Limits limits;
  limits.max_txn_ops = 4;
  ServerRuleCheckers rules(&world, limits);
  auto txn_entry = [](raft::Index index, int compares, bool nested) {
    server::pb::InternalRequest internal;
    internal.set_id(1);
    server::pb::TxnRequest* txn = internal.mutable_txn();
    if (nested) txn = txn->add_success()->mutable_txn();
    for (int i = 0; i < compares; ++i) txn->add_compare()->set_key("key");
    return NormalEntry(index, internal.SerializeAsString());
  };
  rules.OnFirstApply(txn_entry(5, 4, false));
  EXPECT_THAT(world.violations, IsEmpty());
  rules.OnFirstApply(txn_entry(6, 5, false));
  rules.OnFirstApply(txn_entry(7, 5, true));
  ASSERT_EQ(world.violations.size(), 2u);
  EXPECT_THAT(world.violations[0], HasSubstr("index 6 applied a txn of 5 compares"));
  EXPECT_THAT(world.violations[1], HasSubstr("index 7 applied a txn nesting one of 5 compares"));
}

}  // namespace
}  // namespace kvstore::sim
