#include "sim/reference_model.h"

#include <string>
#include <vector>

#include "core/base/errors.h"
#include "core/server/codec.h"
#include "core/server/requests.pb.h"
#include "gtest/gtest.h"

namespace kvstore::sim {
namespace {

using mvcc::Compare;
using mvcc::KeyValue;
using mvcc::RequestOp;
using server::RequestType;

KeyValue Kv(const std::string& key, const std::string& value, mvcc::Revision create,
            mvcc::Revision mod, int64_t version, mvcc::LeaseId lease = 0) {
  KeyValue kv;
  kv.key = key;
  kv.value = value;
  kv.create_revision = create;
  kv.mod_revision = mod;
  kv.version = version;
  kv.lease = lease;
  return kv;
}

mvcc::Event PutEvent(const KeyValue& kv) { return mvcc::Event{mvcc::Event::Type::kPut, kv, {}}; }

mvcc::Event DeleteEvent(const std::string& key, mvcc::Revision revision) {
  KeyValue kv;
  kv.key = key;
  kv.mod_revision = revision;
  return mvcc::Event{mvcc::Event::Type::kDelete, kv, {}};
}

RequestOp PutOp(const std::string& key, const std::string& value) {
  RequestOp op;
  op.kind = RequestOp::Kind::kPut;
  op.put.key = key;
  op.put.value = value;
  return op;
}

RequestOp RangeOp(const std::string& key) {
  RequestOp op;
  op.kind = RequestOp::Kind::kRange;
  op.range.key = key;
  return op;
}

Compare Cmp(const std::string& key, Compare::Target target, Compare::Result result, int64_t number,
            const std::string& value = "") {
  Compare c;
  c.key = key;
  c.target = target;
  c.result = result;
  c.number = number;
  c.value = value;
  return c;
}

// Feeds the model a log the way the simulator does (one entry per index, member 1 proposing)
// and builds the answers a member would give.
class ReferenceModelTest : public ::testing::Test {
 protected:
  uint64_t Log(server::pb::InternalRequest internal, bool system = false) {
    if (!system) {
      internal.set_id(++request_id_);
      internal.set_member_id(1);
    } else {
      internal.set_system(true);
    }
    const std::string data = internal.SerializeAsString();
    model_.Apply(index_++, false, data);
    return system ? 0 : request_id_;
  }
  uint64_t Put(const std::string& key, const std::string& value, mvcc::LeaseId lease = 0) {
    server::pb::InternalRequest internal;
    internal.mutable_put()->set_key(key);
    internal.mutable_put()->set_value(value);
    internal.mutable_put()->set_lease(lease);
    internal.mutable_put()->set_prev_kv(true);
    return Log(internal);
  }
  uint64_t Txn(const mvcc::TxnRequest& txn) {
    server::pb::InternalRequest internal;
    server::ToProto(txn, internal.mutable_txn());
    return Log(internal);
  }
  uint64_t Grant(mvcc::LeaseId id) {
    server::pb::InternalRequest internal;
    internal.mutable_lease_grant()->set_id(id);
    internal.mutable_lease_grant()->set_ttl_seconds(5);
    return Log(internal);
  }
  uint64_t Revoke(mvcc::LeaseId id, bool expiry = false) {
    server::pb::InternalRequest internal;
    internal.mutable_lease_revoke()->set_id(id);
    return Log(internal, expiry);
  }
  uint64_t Compact(mvcc::Revision revision) {
    server::pb::InternalRequest internal;
    internal.mutable_compaction()->set_revision(revision);
    return Log(internal);
  }
  static server::Response Answer(uint64_t id, RequestType type, mvcc::Revision revision) {
    server::Response response;
    response.request_id = id;
    response.type = type;
    response.header.member_id = 1;
    response.header.revision = revision;
    return response;
  }
  // A range the client asked for, answered at `served`.
  std::optional<std::string> JudgeRange(const std::string& key, mvcc::Revision at,
                                        mvcc::Revision served, absl::Status status,
                                        std::vector<KeyValue> kvs) {
    server::Request request;
    request.type = RequestType::kRange;
    request.range.key = key;
    request.range.revision = at;
    server::Response response = Answer(++read_id_, RequestType::kRange, served);
    response.status = std::move(status);
    response.range.count = static_cast<int64_t>(kvs.size());
    response.range.kvs = std::move(kvs);
    return model_.Judge(1, &request, response);
  }

  ReferenceModel model_;
  uint64_t index_ = 1;
  uint64_t request_id_ = 0;
  uint64_t read_id_ = 1000;
};

TEST_F(ReferenceModelTest, PutAnswersItsPrevKv) {
  const uint64_t first = Put("a", "1");   // revision 2
  const uint64_t second = Put("a", "2");  // revision 3
  server::Response answer = Answer(first, RequestType::kPut, 2);
  answer.put.revision = 2;
  EXPECT_EQ(model_.Judge(1, nullptr, answer), std::nullopt);
  answer = Answer(second, RequestType::kPut, 3);
  answer.put.revision = 3;
  answer.put.prev_kv = Kv("a", "1", 2, 2, 1);
  EXPECT_EQ(model_.Judge(1, nullptr, answer), std::nullopt);
  EXPECT_EQ(model_.Get("a", 3), Kv("a", "2", 2, 3, 2));
  EXPECT_EQ(model_.counts().writes_judged, 2u);
}

TEST_F(ReferenceModelTest, FlagsAWrongPrevKv) {
  Put("a", "1");
  const uint64_t second = Put("a", "2");
  server::Response answer = Answer(second, RequestType::kPut, 3);
  answer.put.revision = 3;
  answer.put.prev_kv = Kv("a", "stale", 2, 2, 1);
  auto diff = model_.Judge(1, nullptr, answer);
  ASSERT_TRUE(diff.has_value());
  EXPECT_NE(diff->find("prev_kv a=stale"), std::string::npos) << *diff;
  EXPECT_NE(diff->find("the model's a=1"), std::string::npos) << *diff;
}

// Every compare target and result against a key put at revision 3 (created at 2, version 2,
// lease 7), and against a missing key: the branch the model takes, pinned.
TEST_F(ReferenceModelTest, TxnCompareTargetsPickTheBranch) {
  Grant(7);
  Put("a", "v1");     // revision 2
  Put("a", "v2", 7);  // revision 3
  struct Case {
    Compare compare;
    bool succeeded;
  };
  using T = Compare::Target;
  using R = Compare::Result;
  const std::vector<Case> cases = {
      {Cmp("a", T::kValue, R::kEqual, 0, "v2"), true},
      {Cmp("a", T::kValue, R::kNotEqual, 0, "v2"), false},
      {Cmp("a", T::kValue, R::kGreater, 0, "v1"), true},
      {Cmp("a", T::kValue, R::kLess, 0, "v1"), false},
      {Cmp("a", T::kVersion, R::kEqual, 2), true},
      {Cmp("a", T::kVersion, R::kGreater, 2), false},
      {Cmp("a", T::kCreate, R::kEqual, 2), true},
      {Cmp("a", T::kCreate, R::kLess, 3), true},
      {Cmp("a", T::kMod, R::kEqual, 3), true},
      {Cmp("a", T::kMod, R::kNotEqual, 3), false},
      {Cmp("a", T::kLease, R::kEqual, 7), true},
      {Cmp("a", T::kLease, R::kEqual, 0), false},
      // A missing key: a zero key-value, except that a value compare always fails.
      {Cmp("zz", T::kVersion, R::kEqual, 0), true},
      {Cmp("zz", T::kCreate, R::kEqual, 0), true},
      {Cmp("zz", T::kLease, R::kEqual, 0), true},
      {Cmp("zz", T::kValue, R::kEqual, 0, ""), false},
      {Cmp("zz", T::kValue, R::kNotEqual, 0, "x"), false},
  };
  for (const Case& c : cases) {
    mvcc::TxnRequest txn;
    txn.compare.push_back(c.compare);
    const uint64_t id = Txn(txn);
    server::Response answer = Answer(id, RequestType::kTxn, 3);
    answer.txn.succeeded = c.succeeded;
    EXPECT_EQ(model_.Judge(1, nullptr, answer), std::nullopt)
        << "target " << static_cast<int>(c.compare.target) << " result "
        << static_cast<int>(c.compare.result) << " on " << c.compare.key;
  }
}

// Mutant 23's bug: a txn whose first compare fails and whose last holds must take the failure
// branch; a member that took the success branch is caught, naming the branches.
TEST_F(ReferenceModelTest, FlagsAWrongTxnBranch) {
  Put("a", "1");  // revision 2
  Put("b", "1");  // revision 3
  mvcc::TxnRequest txn;
  txn.compare.push_back(Cmp("a", Compare::Target::kMod, Compare::Result::kEqual, 99));
  txn.compare.push_back(Cmp("b", Compare::Target::kMod, Compare::Result::kEqual, 3));
  txn.success.push_back(PutOp("a", "2"));
  txn.success.push_back(PutOp("b", "2"));
  txn.failure.push_back(RangeOp("a"));
  const uint64_t id = Txn(txn);
  // The model took the failure branch: no revision, a range of a.
  server::Response wrong = Answer(id, RequestType::kTxn, 4);
  wrong.txn.succeeded = true;
  auto diff = model_.Judge(1, nullptr, wrong);
  ASSERT_TRUE(diff.has_value());
  EXPECT_NE(diff->find("took the success branch, the model's compares say failure"),
            std::string::npos)
      << *diff;

  const uint64_t again = Txn(txn);
  server::Response branch = Answer(again, RequestType::kTxn, 3);
  branch.txn.succeeded = true;
  diff = model_.Judge(1, nullptr, branch);
  ASSERT_TRUE(diff.has_value());
  EXPECT_NE(diff->find("took the success branch"), std::string::npos) << *diff;

  // The right answer passes: the failure branch's range reads a at revision 3.
  const uint64_t right = Txn(txn);
  server::Response answer = Answer(right, RequestType::kTxn, 3);
  answer.txn.succeeded = false;
  mvcc::ResponseOp op;
  op.kind = RequestOp::Kind::kRange;
  op.range.kvs = {Kv("a", "1", 2, 2, 1)};
  op.range.count = 1;
  answer.txn.responses.push_back(op);
  EXPECT_EQ(model_.Judge(1, nullptr, answer), std::nullopt);
}

TEST_F(ReferenceModelTest, TxnWritesShareOneRevisionAndItsReadsSeeThem) {
  Put("a", "1");  // revision 2
  mvcc::TxnRequest txn;
  txn.success.push_back(PutOp("a", "2"));
  txn.success.push_back(PutOp("b", "1"));
  txn.success.push_back(RangeOp("a"));
  const uint64_t id = Txn(txn);
  server::Response answer = Answer(id, RequestType::kTxn, 3);
  answer.txn.succeeded = true;
  mvcc::ResponseOp put;
  put.kind = RequestOp::Kind::kPut;
  answer.txn.responses = {put, put};
  mvcc::ResponseOp range;
  range.kind = RequestOp::Kind::kRange;
  range.range.kvs = {Kv("a", "2", 2, 3, 2)};
  range.range.count = 1;
  answer.txn.responses.push_back(range);
  EXPECT_EQ(model_.Judge(1, nullptr, answer), std::nullopt);
  EXPECT_EQ(
      model_.JudgeWatch(3, {PutEvent(Kv("a", "2", 2, 3, 2)), PutEvent(Kv("b", "1", 3, 3, 1))}),
      std::nullopt);
}

TEST_F(ReferenceModelTest, RangesAtPastRevisionsBeforeAndAfterCompaction) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("b", "1");  // 4
  Put("a", "3");  // 5
  EXPECT_EQ(JudgeRange("a", 2, 5, absl::OkStatus(), {Kv("a", "1", 2, 2, 1)}), std::nullopt);
  EXPECT_EQ(JudgeRange("a", 0, 4, absl::OkStatus(), {Kv("a", "2", 2, 3, 2)}), std::nullopt);
  // A past revision with the wrong value.
  auto diff = JudgeRange("a", 3, 5, absl::OkStatus(), {Kv("a", "3", 2, 5, 3)});
  ASSERT_TRUE(diff.has_value());
  EXPECT_NE(diff->find("the model's [a=2"), std::string::npos) << *diff;
  EXPECT_TRUE(JudgeRange("a", 6, 5, absl::OkStatus(), {}).has_value());  // ErrFutureRev
  EXPECT_EQ(JudgeRange("a", 6, 5, Error(ErrorCode::kFutureRevision, "future"), {}), std::nullopt);

  const uint64_t compact = Compact(4);
  server::Response answer = Answer(compact, RequestType::kCompact, 5);
  EXPECT_EQ(model_.Judge(1, nullptr, answer), std::nullopt);
  Put("c", "1");  // 6: the compaction applied at 5, so a member at 6 has it
  // Below the compact revision: ErrCompacted; at it: still readable.
  EXPECT_EQ(JudgeRange("a", 3, 6, Error(ErrorCode::kCompacted, "compacted"), {}), std::nullopt);
  diff = JudgeRange("a", 3, 6, absl::OkStatus(), {Kv("a", "2", 2, 3, 2)});
  ASSERT_TRUE(diff.has_value());
  EXPECT_NE(diff->find("the model's COMPACTED"), std::string::npos) << *diff;
  EXPECT_EQ(JudgeRange("a", 4, 6, absl::OkStatus(), {Kv("a", "2", 2, 3, 2)}), std::nullopt);
  EXPECT_TRUE(JudgeRange("a", 4, 6, Error(ErrorCode::kCompacted, "compacted"), {}).has_value());
  // A member still at revision 5 may not have applied the compaction yet: either answer.
  EXPECT_EQ(JudgeRange("a", 3, 5, Error(ErrorCode::kCompacted, "compacted"), {}), std::nullopt);
  EXPECT_EQ(JudgeRange("a", 3, 5, absl::OkStatus(), {Kv("a", "2", 2, 3, 2)}), std::nullopt);
  EXPECT_EQ(model_.counts().compaction_either_way, 2u);
  // Compacting again at or below the compact revision: ErrCompacted.
  const uint64_t again = Compact(4);
  answer = Answer(again, RequestType::kCompact, 6);
  EXPECT_TRUE(model_.Judge(1, nullptr, answer).has_value());
  answer.status = Error(ErrorCode::kCompacted, "compacted");
  EXPECT_EQ(model_.Judge(1, nullptr, answer), std::nullopt);
}

// A revoked lease deletes every key attached, in one revision, sorted by key; an expiry (the
// leader's own proposal) does the same.
TEST_F(ReferenceModelTest, LeaseRevocationDeletesAllItsKeysInOneRevision) {
  Grant(5);
  Grant(6);
  Put("c", "1", 5);  // 2
  Put("a", "1", 5);  // 3
  Put("b", "1", 5);  // 4
  Put("d", "1");     // 5
  Put("b", "2", 6);  // 6: b moves to lease 6
  const uint64_t revoke = Revoke(5);
  server::Response answer = Answer(revoke, RequestType::kLeaseRevoke, 7);
  answer.lease.id = 5;
  EXPECT_EQ(model_.Judge(1, nullptr, answer), std::nullopt);
  EXPECT_EQ(model_.JudgeWatch(7, {DeleteEvent("a", 7), DeleteEvent("c", 7)}), std::nullopt);
  // A revocation that leaves a key: its watch events miss one, and a read still finds it.
  auto diff = model_.JudgeWatch(7, {DeleteEvent("a", 7)});
  ASSERT_TRUE(diff.has_value());
  EXPECT_NE(diff->find("the model's DELETE c"), std::string::npos) << *diff;
  EXPECT_TRUE(JudgeRange("c", 0, 7, absl::OkStatus(), {Kv("c", "1", 2, 2, 1, 5)}).has_value());
  EXPECT_EQ(JudgeRange("c", 0, 7, absl::OkStatus(), {}), std::nullopt);
  // A put on the revoked lease fails; lease 6 expires and takes b.
  const uint64_t put = Put("e", "1", 5);
  server::Response refused = Answer(put, RequestType::kPut, 7);
  refused.status = Error(ErrorCode::kLeaseNotFound, "lease 5 not found");
  EXPECT_EQ(model_.Judge(1, nullptr, refused), std::nullopt);
  Revoke(6, /*expiry=*/true);
  EXPECT_EQ(model_.revision(), 8);
  EXPECT_EQ(model_.JudgeWatch(8, {DeleteEvent("b", 8)}), std::nullopt);
  EXPECT_EQ(model_.Get("d", 8), Kv("d", "1", 5, 5, 1));
}

TEST_F(ReferenceModelTest, FlagsAWatchEventOutOfPlace) {
  Put("a", "1");  // 2
  Put("b", "1");  // 3
  EXPECT_EQ(model_.JudgeWatch(2, {PutEvent(Kv("a", "1", 2, 2, 1))}), std::nullopt);
  // Revision 3's event delivered as revision 2's, and an event at a revision nobody made.
  EXPECT_TRUE(model_.JudgeWatch(2, {PutEvent(Kv("b", "1", 3, 3, 1))}).has_value());
  EXPECT_TRUE(
      model_.JudgeWatch(2, {PutEvent(Kv("a", "1", 2, 2, 1)), PutEvent(Kv("b", "1", 3, 3, 1))})
          .has_value());
  auto diff = model_.JudgeWatch(4, {PutEvent(Kv("c", "1", 4, 4, 1))});
  ASSERT_TRUE(diff.has_value());
  EXPECT_NE(diff->find("which no entry of the committed log made"), std::string::npos) << *diff;
}

TEST_F(ReferenceModelTest, DuplicateProposalAppliesOnce) {
  server::pb::InternalRequest internal;
  internal.set_id(1);
  internal.set_member_id(2);
  internal.mutable_put()->set_key("a");
  internal.mutable_put()->set_value("1");
  model_.Apply(index_++, false, internal.SerializeAsString());
  model_.Apply(index_++, false, internal.SerializeAsString());
  EXPECT_EQ(model_.revision(), 2);
}

// What the model cannot judge is counted, never passed silently; an acknowledged write the log
// never carried is a violation.
TEST_F(ReferenceModelTest, CountsWhatItCannotJudge) {
  server::Response refused = Answer(77, RequestType::kPut, 1);
  refused.status = Error(ErrorCode::kNoLeader, "no leader");
  EXPECT_EQ(model_.Judge(1, nullptr, refused), std::nullopt);
  EXPECT_EQ(model_.counts().not_from_store, 1u);
  server::Response phantom = Answer(78, RequestType::kPut, 1);
  auto diff = model_.Judge(1, nullptr, phantom);
  ASSERT_TRUE(diff.has_value());
  EXPECT_NE(diff->find("no entry of the committed log"), std::string::npos) << *diff;
  model_.NoteUnknownOutcome();
  // A missed index makes the model blind: it judges nothing after, and says so.
  Put("a", "1");
  model_.Apply(index_ + 5, false, "");
  EXPECT_TRUE(model_.blind());
  EXPECT_EQ(model_.JudgeWatch(2, {}), std::nullopt);
  EXPECT_EQ(JudgeRange("a", 0, 2, absl::OkStatus(), {}), std::nullopt);
  EXPECT_EQ(model_.counts().unjudged, 2u);
  const std::string summary = model_.Summary();
  EXPECT_NE(summary.find("1 unknown outcomes"), std::string::npos) << summary;
  EXPECT_NE(summary.find("blind: it missed log index"), std::string::npos) << summary;
}

}  // namespace
}  // namespace kvstore::sim
