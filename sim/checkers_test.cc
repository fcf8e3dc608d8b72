// The checkers (sim/checkers.h), fed violating event sequences by hand: each must fail with a
// message that names the rule, and stay quiet when the rule holds.
#include "sim/checkers.h"

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/mvcc/backend.h"
#include "core/server/requests.pb.h"
#include "core/server/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/reference_model.h"
#include "store/posix_file_system.h"
#include "store/wal.h"

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
  // etcd's checkTxnRequest: a nested txn's limit is 4 less its holder's count (here 1).
  rules.OnFirstApply(txn_entry(8, 3, true));
  EXPECT_EQ(world.violations.size(), 2u);
  server::pb::InternalRequest two_compares;
  two_compares.set_id(1);
  two_compares.mutable_txn()->add_compare()->set_key("a");
  two_compares.mutable_txn()->add_compare()->set_key("b");
  server::pb::TxnRequest* inner = two_compares.mutable_txn()->add_success()->mutable_txn();
  for (int i = 0; i < 3; ++i) inner->add_compare()->set_key("key");
  rules.OnFirstApply(NormalEntry(9, two_compares.SerializeAsString()));
  ASSERT_EQ(world.violations.size(), 3u);
  EXPECT_THAT(world.violations[2], HasSubstr("index 9 applied a txn nesting one of 3 compares, 0 "
                                             "success and 0 failure operations; the limit is 2"));
}

// An alarm entry of the applied log: raise (`activate`, as an operator's ACTIVATE request does)
// or disarm the NOSPACE alarm.
raft::Entry AlarmEntry(raft::Index index, bool activate, raft::NodeId member) {
  server::pb::InternalRequest internal;
  internal.set_id(1000 + index);
  internal.set_member_id(9);
  internal.mutable_alarm()->set_action(activate ? 1 : 2);
  internal.mutable_alarm()->set_member_id(member);
  internal.mutable_alarm()->set_alarm(static_cast<int32_t>(server::AlarmType::kNoSpace));
  return NormalEntry(index, internal.SerializeAsString());
}

server::Response Answer(server::RequestId id, absl::Status status) {
  server::Response response;
  response.request_id = id;
  response.type = server::RequestType::kPut;
  response.status = std::move(status);
  return response;
}

TEST(ServerRuleCheckersTest, WriteAppliedDuringTheNoSpaceAlarmMustBeRefusedAndAfterItMustNot) {
  FakeWorld world;
  ServerRuleCheckers rules(&world, {});
  auto entry = [](raft::Index index, server::RequestId id, int kind) {
    server::pb::InternalRequest internal;
    internal.set_id(id);
    internal.set_member_id(2);
    if (kind == 0) internal.mutable_put()->set_key("k");
    if (kind == 1) internal.mutable_lease_grant()->set_id(5);
    if (kind == 2) internal.mutable_txn()->add_failure()->mutable_put()->set_key("k");
    if (kind == 3) internal.mutable_delete_range()->set_key("k");
    return NormalEntry(index, internal.SerializeAsString());
  };
  const absl::Status nospace = Error(ErrorCode::kNoSpace, "put refused: NOSPACE alarm");
  rules.OnFirstApply(AlarmEntry(10, true, 3));
  EXPECT_TRUE(rules.nospace_alarm_active());
  rules.OnFirstApply(entry(11, 7, 0));  // a put
  rules.OnFirstApply(entry(12, 8, 1));  // a lease grant
  rules.OnFirstApply(entry(13, 9, 2));  // a txn whose failure branch puts
  rules.OnFirstApply(entry(14, 6, 3));  // a delete: allowed
  rules.OnAnswer(2, Answer(7, nospace));
  rules.OnAnswer(2, Answer(8, nospace));
  rules.OnAnswer(2, Answer(6, absl::OkStatus()));
  EXPECT_THAT(world.violations, IsEmpty());
  rules.OnAnswer(2, Answer(9, absl::OkStatus()));
  ASSERT_EQ(world.violations.size(), 1u);
  EXPECT_THAT(world.violations[0], HasSubstr("n2 answered OK to request 9, whose entry adds data "
                                             "and applied while the NOSPACE alarm was active"));
  rules.OnFirstApply(AlarmEntry(15, false, 0));
  EXPECT_FALSE(rules.nospace_alarm_active());
  rules.OnFirstApply(entry(16, 11, 0));
  rules.OnFirstApply(entry(17, 12, 0));
  rules.OnAnswer(2, Answer(11, absl::OkStatus()));
  rules.OnAnswer(2, Answer(12, nospace));
  ASSERT_EQ(world.violations.size(), 2u);
  EXPECT_THAT(world.violations[1], HasSubstr("n2 refused request 12 NOSPACE, whose entry applied "
                                             "while no NOSPACE alarm was active"));
  EXPECT_EQ(rules.counts().nospace_alarms_raised, 1u);
  EXPECT_EQ(rules.counts().nospace_alarms_disarmed, 1u);
  EXPECT_EQ(rules.counts().writes_applied_in_alarm, 3u);
  EXPECT_EQ(rules.counts().writes_applied_outside_alarm, 2u);
  EXPECT_EQ(rules.counts().quota_answers_judged, 5u);
}

// etcd 3.4's raising rule: a request submitted past the quota is refused; a NOSPACE answer
// needs a reason; each alarm a member raises itself stands for one quota refusal or one
// over-quota Ready of that member (a duplicated alarm entry is skipped).
TEST(ServerRuleCheckersTest, NoSpaceIsRaisedOnlyByAWriteThatDoesNotFitTheQuota) {
  FakeWorld world;
  ServerRuleCheckers::Limits limits;
  limits.quota_bytes = 1000;
  ServerRuleCheckers rules(&world, limits);
  const absl::Status nospace = Error(ErrorCode::kNoSpace, "put refused: NOSPACE");
  auto put = [](std::string value) {
    server::Request request;
    request.type = server::RequestType::kPut;
    request.put.key = "k";
    request.put.value = std::move(value);
    return request;
  };
  auto member_alarm = [](raft::Index index, raft::NodeId member, server::RequestId id) {
    server::pb::InternalRequest internal;
    internal.set_system(true);
    internal.set_id(id);
    internal.set_member_id(member);
    internal.mutable_alarm()->set_action(1);
    internal.mutable_alarm()->set_member_id(member);
    internal.mutable_alarm()->set_alarm(static_cast<int32_t>(server::AlarmType::kNoSpace));
    return NormalEntry(index, internal.SerializeAsString());
  };
  // A put costs 256 bytes plus its key and value: 743 + 257 reaches 1000, 742 + 257 does not.
  EXPECT_EQ(ServerRuleCheckers::QuotaCost(put("")), 257u);
  EXPECT_TRUE(rules.MeasureQuota(put(""), 743, false, false).full);
  EXPECT_FALSE(rules.MeasureQuota(put(""), 742, false, false).full);
  server::Request read;
  read.type = server::RequestType::kRange;
  EXPECT_FALSE(rules.MeasureQuota(read, 5000, false, false).full);  // cost 0 always passes
  // n1 takes two puts past its quota: refusing them is right, answering one OK is not.
  rules.OnQuotaSubmitted(1, 5, rules.MeasureQuota(put("v"), 900, false, false));
  rules.OnQuotaSubmitted(1, 6, rules.MeasureQuota(put("v"), 900, false, false));
  rules.OnAnswer(1, Answer(5, nospace));
  EXPECT_THAT(world.violations, IsEmpty());
  rules.OnAnswer(1, Answer(6, absl::OkStatus()));
  ASSERT_EQ(world.violations.size(), 1u);
  EXPECT_THAT(world.violations[0], HasSubstr("n1 answered OK to request 6, submitted when its "
                                             "backend's size plus the request's cost reached"));
  // n2 refuses NOSPACE a put that fit while listing no alarm: no reason.
  rules.OnQuotaSubmitted(2, 7, rules.MeasureQuota(put("v"), 100, false, false));
  rules.OnAnswer(2, Answer(7, nospace));
  ASSERT_EQ(world.violations.size(), 2u);
  EXPECT_THAT(world.violations[1], HasSubstr("n2 refused request 7 NOSPACE when it was submitted"));
  // ... unless it listed an alarm then.
  rules.OnQuotaSubmitted(2, 8, rules.MeasureQuota(put("v"), 100, true, false));
  rules.OnAnswer(2, Answer(8, nospace));
  ASSERT_EQ(world.violations.size(), 2u);
  // n1's two refusals justify two alarms of its own; a copy of one is skipped; a third is not
  // justified.
  rules.OnFirstApply(member_alarm(20, 1, 100));
  rules.OnFirstApply(member_alarm(21, 1, 100));  // the network's duplicate
  rules.OnFirstApply(member_alarm(22, 1, 101));
  EXPECT_EQ(world.violations.size(), 2u);
  rules.OnFirstApply(member_alarm(23, 1, 102));
  ASSERT_EQ(world.violations.size(), 3u);
  EXPECT_THAT(world.violations[2], HasSubstr("index 23 raises the NOSPACE alarm of n1, which "
                                             "neither refused a write for its quota"));
  // n3 applies a put that does not fit the size its backend has after the Ready: one alarm.
  server::pb::InternalRequest internal;
  internal.set_id(9);
  internal.set_member_id(2);
  internal.mutable_put()->set_key("k");
  internal.mutable_put()->set_value(std::string(100, 'v'));
  const std::vector<raft::Entry> entries{NormalEntry(30, internal.SerializeAsString())};
  raft::Ready raft_ready;
  raft_ready.committed_entries = entries;
  server::Ready ready;
  ready.raft = &raft_ready;
  rules.OnApplied(3, ready, 500, false);  // 500 + 357 < 1000: fits
  rules.OnFirstApply(member_alarm(31, 3, 200));
  ASSERT_EQ(world.violations.size(), 4u);
  rules.OnApplied(3, ready, 700, true);  // past it, but n3 lists an alarm: it raises none
  rules.OnFirstApply(member_alarm(32, 3, 201));
  ASSERT_EQ(world.violations.size(), 5u);
  rules.OnApplied(3, ready, 700, false);  // 700 + 357 >= 1000
  rules.OnFirstApply(member_alarm(33, 3, 202));
  EXPECT_EQ(world.violations.size(), 5u);
  // A refusal while n1 lists its own alarm raises nothing either.
  rules.OnQuotaSubmitted(1, 40, rules.MeasureQuota(put("v"), 900, true, true));
  rules.OnFirstApply(member_alarm(41, 1, 103));
  EXPECT_EQ(world.violations.size(), 6u);
  EXPECT_EQ(rules.counts().member_alarms_judged, 7u);
  EXPECT_EQ(rules.counts().quota_full_submitted, 3u);
}

// etcd's quotaApplierV3: a write that no longer fits its proposer's quota when it applies is
// applied and answered NOSPACE. Such an answer needs the proposer's backend past the quota with
// the write's cost after the Ready that applied it, and no alarm active then.
TEST(ServerRuleCheckersTest, AWriteAnsweredNoSpaceAsAppliedPastTheQuotaMustNotHaveFit) {
  FakeWorld world;
  ServerRuleCheckers::Limits limits;
  limits.quota_bytes = 1000;
  ServerRuleCheckers rules(&world, limits);
  const absl::Status past = Error(
      ErrorCode::kNoSpace, absl::StrCat("put ", server::kAppliedPastQuota, ": NOSPACE (...)"));
  // `node` applies request `id` of `proposer` (default: its own).
  auto apply = [&](raft::NodeId node, server::RequestId id, uint64_t backend_bytes,
                   raft::NodeId proposer = 0) {
    server::pb::InternalRequest internal;
    internal.set_id(id);
    internal.set_member_id(proposer != 0 ? proposer : node);
    internal.mutable_put()->set_key("k");
    internal.mutable_put()->set_value(std::string(100, 'v'));  // costs 357
    const std::vector<raft::Entry> entries{NormalEntry(id, internal.SerializeAsString())};
    rules.OnFirstApply(entries[0]);
    raft::Ready raft_ready;
    raft_ready.committed_entries = entries;
    server::Ready ready;
    ready.raft = &raft_ready;
    rules.OnApplied(node, ready, backend_bytes, false);
  };
  apply(1, 5, 700);  // 700 + 357 reaches 1000
  rules.OnAnswer(1, Answer(5, past));
  EXPECT_THAT(world.violations, IsEmpty());
  EXPECT_EQ(rules.counts().applied_past_quota_answers, 1u);
  apply(1, 6, 600);  // 600 + 357 does not
  rules.OnAnswer(1, Answer(6, past));
  ASSERT_EQ(world.violations.size(), 1u);
  EXPECT_THAT(world.violations[0],
              HasSubstr("n1 answered request 6 NOSPACE as applied past the quota, though its "
                        "backend and the write's cost stay under the quota of 1000 bytes"));
  // Another member's backend says nothing of the proposer's.
  apply(2, 7, 900, /*proposer=*/1);
  rules.OnAnswer(1, Answer(7, past));
  ASSERT_EQ(world.violations.size(), 2u);
  EXPECT_THAT(world.violations[1], HasSubstr("n1 answered request 7 NOSPACE as applied past"));
  // In the alarm the write is refused, not applied.
  rules.OnFirstApply(AlarmEntry(20, true, 3));
  apply(1, 8, 900);
  rules.OnAnswer(1, Answer(8, past));
  ASSERT_EQ(world.violations.size(), 3u);
  EXPECT_THAT(world.violations[2], HasSubstr("the NOSPACE alarm was active when it applied"));
}

// A disarm that names a member clears that member's alarm only (etcd's alarmStore.Deactivate).
TEST(ServerRuleCheckersTest, DisarmOfOneMemberLeavesTheOthersAlarm) {
  FakeWorld world;
  ServerRuleCheckers rules(&world, {});
  rules.OnFirstApply(AlarmEntry(10, true, 1));
  rules.OnFirstApply(AlarmEntry(11, true, 2));
  server::pb::InternalRequest disarm;
  disarm.set_id(3);
  disarm.set_member_id(1);
  disarm.mutable_alarm()->set_action(2);
  disarm.mutable_alarm()->set_member_id(1);
  disarm.mutable_alarm()->set_alarm(static_cast<int32_t>(server::AlarmType::kNoSpace));
  disarm.mutable_alarm()->set_only_member(true);
  rules.OnFirstApply(NormalEntry(12, disarm.SerializeAsString()));
  EXPECT_TRUE(rules.nospace_alarm_active());
  EXPECT_EQ(rules.counts().nospace_alarms_disarmed, 0u);
  disarm.mutable_alarm()->set_member_id(2);
  rules.OnFirstApply(NormalEntry(13, disarm.SerializeAsString()));
  EXPECT_FALSE(rules.nospace_alarm_active());
  EXPECT_EQ(rules.counts().nospace_alarms_disarmed, 1u);
  EXPECT_THAT(world.violations, IsEmpty());
}

TEST(ServerRuleCheckersTest, RequestsOverALimitAreRefusedWithItsCodeAndNeverApply) {
  FakeWorld world;
  ServerRuleCheckers::Limits limits;
  limits.max_request_bytes = 1024;
  limits.max_txn_ops = 4;
  ServerRuleCheckers rules(&world, limits);
  server::Request big_put;
  big_put.type = server::RequestType::kPut;
  big_put.put.key = "k";
  big_put.put.value = std::string(1025, 'v');
  server::Request wide_txn;
  wide_txn.type = server::RequestType::kTxn;
  wide_txn.txn.compare.resize(5);
  server::Request small_put = big_put;
  small_put.put.value = "v";
  server::Request txn_at_limit = wide_txn;
  txn_at_limit.txn.compare.resize(4);
  EXPECT_EQ(rules.Measure(big_put).owed, ErrorCode::kValueTooLarge);
  EXPECT_EQ(rules.Measure(wide_txn).owed, ErrorCode::kTooManyOps);
  EXPECT_TRUE(rules.Measure(small_put).within);
  EXPECT_TRUE(rules.Measure(txn_at_limit).within);
  rules.OnSubmit(1, 20, rules.Measure(big_put));
  rules.OnSubmit(1, 21, rules.Measure(wide_txn));
  rules.OnSubmit(1, 22, rules.Measure(small_put));
  rules.OnSubmit(1, 23, rules.Measure(big_put));
  rules.OnSubmit(1, 24, rules.Measure(txn_at_limit));
  rules.OnAnswer(1, Answer(20, Error(ErrorCode::kValueTooLarge, "put: value too large")));
  rules.OnAnswer(1, Answer(21, Error(ErrorCode::kTooManyOps, "txn: too many")));
  rules.OnAnswer(1, Answer(22, absl::OkStatus()));
  EXPECT_THAT(world.violations, IsEmpty());
  EXPECT_EQ(rules.counts().over_limit_refused, 2u);
  rules.OnAnswer(1, Answer(23, absl::OkStatus()));
  rules.OnAnswer(1, Answer(24, Error(ErrorCode::kTooManyOps, "txn: too many")));
  server::pb::InternalRequest internal;
  internal.set_id(20);
  internal.set_member_id(1);
  internal.mutable_put()->set_key("k");
  rules.OnFirstApply(NormalEntry(30, internal.SerializeAsString()));
  ASSERT_EQ(world.violations.size(), 3u);
  EXPECT_THAT(world.violations[0], HasSubstr("n1 answered request 23, over a limit (owed "
                                             "VALUE_TOO_LARGE), with OK"));
  EXPECT_THAT(world.violations[1], HasSubstr("n1 refused request 24, well within the limits"));
  EXPECT_THAT(world.violations[2], HasSubstr("index 30 applied request 20 of n1, over a limit"));
  // The quota comes first (etcd's quotaKVServer): a put over the limit submitted past the quota
  // may be refused NOSPACE; one that fit the quota may not.
  rules.OnSubmit(1, 25, rules.Measure(big_put));
  rules.OnQuotaSubmitted(1, 25, rules.MeasureQuota(big_put, limits.quota_bytes, false, false));
  rules.OnAnswer(1, Answer(25, Error(ErrorCode::kNoSpace, "put refused: NOSPACE")));
  EXPECT_EQ(world.violations.size(), 3u);
  rules.OnSubmit(1, 26, rules.Measure(big_put));
  rules.OnQuotaSubmitted(1, 26, rules.MeasureQuota(big_put, 0, true, false));
  rules.OnAnswer(1, Answer(26, Error(ErrorCode::kNoSpace, "put refused: NOSPACE alarm")));
  ASSERT_EQ(world.violations.size(), 4u);
  EXPECT_THAT(world.violations[3], HasSubstr("n1 answered request 26, over a limit (owed "
                                             "VALUE_TOO_LARGE), with NOSPACE"));
}

// Leader Completeness (Raft §5.4) as RaftCheckers judges it: a leader of term T must hold every
// index committed in the terms before T, not what a later term committed. Two one-voter members
// started from hand-made logs stand for two members of one cluster: n1 (in `n1_term`) holds
// indexes 1..10 committed; n2, with the same log through index 6, campaigns from term 4 and
// leads term 5 with last index 7 (its empty entry). Fuzz seeds 121833 and 91864 met the later
// case before commit 1f0a683: a candidate's vote replies, held while it was paused, made it
// leader of an older term after a higher term's leader had committed more.
class LeaderCompletenessTest : public ::testing::Test {
 protected:
  LeaderCompletenessTest() : checkers_(&world_, &model_, "wal", 1 << 20) {
    const char* tmp = std::getenv("TEST_TMPDIR");
    auto wal = store::Wal::Open(&fs_, std::string(tmp != nullptr ? tmp : "/tmp") + "/wal");
    EXPECT_TRUE(wal.ok()) << wal.status();
    if (wal.ok()) wal_ = std::move(*wal);
  }

  struct Member {
    mvcc::MemoryBackend backend;
    std::unique_ptr<server::Server> server;
  };

  // Starts member `id` (the only voter of its configuration) in `term` from a log of `last`
  // entries: the bootstrap entry (term 1), indexes 2..6 of term 3, then `tail_term`; committed
  // through `commit`. Its checker state starts as the simulation's does.
  void Start(Member& member, raft::NodeId id, raft::Term term, raft::Index last,
             raft::Term tail_term, raft::Index commit, bool applied) {
    server::Member founding;
    founding.id = id;
    founding.name = absl::StrCat("n", id);
    raft::RestartState state = server::BootstrapState({founding});
    for (raft::Index index = 2; index <= last; ++index) {
      raft::Entry entry;
      entry.index = index;
      entry.term = index <= 6 ? 3 : tail_term;
      state.entries.push_back(entry);
    }
    state.hard_state.term = term;
    state.hard_state.commit = commit;
    if (applied) {
      // Applied before this incarnation (the two members' bootstrap entries differ).
      state.applied = commit;
      state.conf_state = raft::ConfState{};
      state.conf_state->voters = {id};
    }
    server::ServerConfig config;
    config.id = id;
    config.random_seed = id;
    auto created = server::Server::Create(config, &member.backend, std::move(state), {founding});
    ASSERT_TRUE(created.ok()) << created.status();
    member.server = std::move(*created);
    world_.SetDurable(id, last);
    checkers_.OnStart(checkers_.Track(id), *member.server);
    checkers_.OnStep(checkers_.Track(id), *member.server);
    Drain(member);
  }

  // Carries out the member's Readies as the simulation does, the checkers' hooks included, up
  // to the one that makes it leader (a leader elected late steps down before it commits).
  void Drain(Member& member) {
    RaftCheckers::NodeState& node = checkers_.Track(member.server->id());
    while (member.server->HasReady()) {
      const server::Ready& ready = member.server->GetReady();
      checkers_.OnReady(node, *member.server, ready, *wal_);
      const bool leads =
          ready.raft->soft_state.has_value() && ready.raft->soft_state->role == raft::Role::kLeader;
      const uint64_t persist_id = ready.raft->persist.id;
      member.server->Advance();
      if (persist_id != 0) member.server->OnPersisted(persist_id);
      world_.SetDurable(node.id, member.server->last_index());
      checkers_.OnStep(node, *member.server);
      if (leads) return;
    }
  }

  // Ticks n2 until it leads (a one-voter configuration elects it alone).
  void ElectN2() {
    for (int tick = 0; tick < 100 && !n2_.server->is_leader(); ++tick) {
      n2_.server->Tick();
      checkers_.OnStep(checkers_.Track(2), *n2_.server);
      Drain(n2_);
    }
    ASSERT_TRUE(n2_.server->is_leader());
    ASSERT_EQ(n2_.server->hard_state().term, 5u);
    ASSERT_EQ(n2_.server->last_index(), 7u);
  }

  // n1 in `n1_term` has applied indexes 1..10 (7..10 of its term), n2 in term 4 holds 1..6.
  void StartBoth(raft::Term n1_term) {
    ASSERT_NO_FATAL_FAILURE(Start(n1_, 1, n1_term, 10, n1_term, 10, /*applied=*/false));
    ASSERT_EQ(n1_.server->applied_index(), 10u);
    ASSERT_NO_FATAL_FAILURE(Start(n2_, 2, 4, 6, 3, 6, /*applied=*/true));
    ASSERT_THAT(world_.violations, IsEmpty());
  }

  FakeWorld world_;
  ReferenceModel model_;
  store::PosixFileSystem fs_;
  std::unique_ptr<store::Wal> wal_;
  RaftCheckers checkers_;
  Member n1_, n2_;
};

// Index 10 was committed (and applied) by a leader of term 6, later than n2's term 5: the
// leader of term 5 need not hold it.
TEST_F(LeaderCompletenessTest, ALeaderNeedNotHoldWhatALaterTermCommitted) {
  ASSERT_NO_FATAL_FAILURE(StartBoth(/*n1_term=*/6));
  ASSERT_NO_FATAL_FAILURE(ElectN2());
  EXPECT_THAT(world_.violations, IsEmpty());
}

// Index 10 was committed by term 4, before n2's term 5: a leader of term 5 without it breaks
// Leader Completeness.
TEST_F(LeaderCompletenessTest, ALeaderMustHoldWhatAnEarlierTermCommitted) {
  ASSERT_NO_FATAL_FAILURE(StartBoth(/*n1_term=*/4));
  ASSERT_NO_FATAL_FAILURE(ElectN2());
  EXPECT_THAT(
      world_.violations,
      ElementsAre("n2 leads term 5 with last index 7 but index 10 was committed by term 4"));
}

// Durable before reply (Raft §5.1) as RaftCheckers judges an append acknowledgement: the
// acknowledged index must be durable, unless a newer term's record durably replaced the log
// from that index or before. Fuzz seed 327057: a follower stepped n4's append of 5/544 and n1's
// conflicting 6/543 (term 6, after a leader transfer) in one drain; only 6/543 was written, and
// once it was durable the core released both replies, "index 544 in term 5" to n4 among them,
// as etcd's raft does (the follower left term 5 only for a durable term 6).
class DurableBeforeReplyTest : public ::testing::Test {
 protected:
  DurableBeforeReplyTest() : checkers_(&world_, &model_, "wal", 1 << 20) {
    const char* tmp = std::getenv("TEST_TMPDIR");
    const std::string dir =
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/",
                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    auto wal = store::Wal::Open(&fs_, dir);
    EXPECT_TRUE(wal.ok()) << wal.status();
    if (wal.ok()) wal_ = std::move(*wal);
    server::Member founding;
    founding.id = 7;
    founding.name = "n7";
    server::ServerConfig config;
    config.id = 7;
    config.random_seed = 7;
    auto created =
        server::Server::Create(config, &backend_, server::BootstrapState({founding}), {founding});
    EXPECT_TRUE(created.ok()) << created.status();
    if (created.ok()) server_ = std::move(*created);
  }

  // Makes indexes from..to of `term` durable, with hard state term `term`.
  void Sync(raft::Index from, raft::Index to, raft::Term term) {
    std::vector<raft::Entry> entries;
    for (raft::Index index = from; index <= to; ++index) {
      raft::Entry entry;
      entry.index = index;
      entry.term = term;
      entries.push_back(entry);
    }
    raft::PersistRequest persist;
    persist.id = ++persist_id_;
    persist.hard_state = raft::HardState{};
    persist.hard_state->term = term;
    persist.entries = entries;
    ASSERT_TRUE(wal_->AppendAndSync(persist).ok());
  }

  // n7 sends n4 "index `index` in `term`": the checkers see the Ready that carries it.
  void Acknowledge(raft::Term term, raft::Index index) {
    raft::Ready rr;
    raft::Message m;
    m.type = raft::MessageType::kAppResp;
    m.from = 7;
    m.to = 4;
    m.term = term;
    m.index = index;
    rr.messages.push_back(m);
    server::Ready ready;
    ready.raft = &rr;
    checkers_.OnReady(checkers_.Track(7), *server_, ready, *wal_);
  }

  FakeWorld world_;
  ReferenceModel model_;
  store::PosixFileSystem fs_;
  std::unique_ptr<store::Wal> wal_;
  mvcc::MemoryBackend backend_;
  std::unique_ptr<server::Server> server_;
  RaftCheckers checkers_;
  uint64_t persist_id_ = 0;
};

TEST_F(DurableBeforeReplyTest, AcknowledgementBeyondTheDurableLogFails) {
  ASSERT_NO_FATAL_FAILURE(Sync(1, 3, 5));
  Acknowledge(5, 4);
  EXPECT_THAT(world_.violations,
              ElementsAre("n7 acknowledged index 4 to n4 in term 5 but its durable log ends at 3"));
}

TEST_F(DurableBeforeReplyTest, AcknowledgementWhoseEntriesANewerTermReplacedPasses) {
  ASSERT_NO_FATAL_FAILURE(Sync(1, 2, 5));
  ASSERT_NO_FATAL_FAILURE(Sync(3, 3, 6));  // 5/3 and 5/4 were never written: 6/3 replaced them
  Acknowledge(5, 4);
  EXPECT_THAT(world_.violations, IsEmpty());
}

TEST_F(DurableBeforeReplyTest, TheNewerTermsOwnAcknowledgementStillNeedsItsEntries) {
  ASSERT_NO_FATAL_FAILURE(Sync(1, 2, 5));
  ASSERT_NO_FATAL_FAILURE(Sync(3, 3, 6));
  Acknowledge(6, 4);
  EXPECT_THAT(world_.violations,
              ElementsAre("n7 acknowledged index 4 to n4 in term 6 but its durable log ends at 3"));
}

}  // namespace
}  // namespace kvstore::sim
