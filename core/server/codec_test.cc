// The log codec: every field of a request survives the trip through the Raft log (encode,
// serialize, parse, decode), and malformed entries decode to errors, not to requests.

#include "core/server/codec.h"

#include <memory>
#include <string>

#include "core/base/errors.h"
#include "gtest/gtest.h"

namespace kvstore::server {
namespace {

mvcc::RangeRequest FullRange() {
  mvcc::RangeRequest r;
  r.key = "a";
  r.range_end = "z";
  r.limit = 7;
  r.revision = 42;
  r.sort_order = mvcc::SortOrder::kDescend;
  r.sort_target = mvcc::SortTarget::kMod;
  r.serializable = true;
  r.keys_only = true;
  r.count_only = true;
  r.min_mod_revision = 3;
  r.max_mod_revision = 30;
  r.min_create_revision = 2;
  r.max_create_revision = 20;
  return r;
}

mvcc::PutRequest FullPut() {
  mvcc::PutRequest p;
  p.key = std::string("k\0ey", 4);  // bytes, not C strings
  p.value = "v";
  p.lease = 0x1234;
  p.prev_kv = true;
  p.ignore_value = true;
  p.ignore_lease = true;
  return p;
}

void ExpectRangeEq(const mvcc::RangeRequest& a, const mvcc::RangeRequest& b) {
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.range_end, b.range_end);
  EXPECT_EQ(a.limit, b.limit);
  EXPECT_EQ(a.revision, b.revision);
  EXPECT_EQ(a.sort_order, b.sort_order);
  EXPECT_EQ(a.sort_target, b.sort_target);
  EXPECT_EQ(a.serializable, b.serializable);
  EXPECT_EQ(a.keys_only, b.keys_only);
  EXPECT_EQ(a.count_only, b.count_only);
  EXPECT_EQ(a.min_mod_revision, b.min_mod_revision);
  EXPECT_EQ(a.max_mod_revision, b.max_mod_revision);
  EXPECT_EQ(a.min_create_revision, b.min_create_revision);
  EXPECT_EQ(a.max_create_revision, b.max_create_revision);
}

void ExpectPutEq(const mvcc::PutRequest& a, const mvcc::PutRequest& b) {
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.value, b.value);
  EXPECT_EQ(a.lease, b.lease);
  EXPECT_EQ(a.prev_kv, b.prev_kv);
  EXPECT_EQ(a.ignore_value, b.ignore_value);
  EXPECT_EQ(a.ignore_lease, b.ignore_lease);
}

void ExpectTxnEq(const mvcc::TxnRequest& a, const mvcc::TxnRequest& b) {
  ASSERT_EQ(a.compare.size(), b.compare.size());
  for (size_t i = 0; i < a.compare.size(); ++i) {
    EXPECT_EQ(a.compare[i].result, b.compare[i].result) << i;
    EXPECT_EQ(a.compare[i].target, b.compare[i].target) << i;
    EXPECT_EQ(a.compare[i].key, b.compare[i].key) << i;
    EXPECT_EQ(a.compare[i].range_end, b.compare[i].range_end) << i;
    EXPECT_EQ(a.compare[i].number, b.compare[i].number) << i;
    EXPECT_EQ(a.compare[i].value, b.compare[i].value) << i;
  }
  auto ops_eq = [](const std::vector<mvcc::RequestOp>& x, const std::vector<mvcc::RequestOp>& y) {
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(x[i].kind, y[i].kind) << i;
      switch (x[i].kind) {
        case mvcc::RequestOp::Kind::kRange:
          ExpectRangeEq(x[i].range, y[i].range);
          break;
        case mvcc::RequestOp::Kind::kPut:
          ExpectPutEq(x[i].put, y[i].put);
          break;
        case mvcc::RequestOp::Kind::kDeleteRange:
          EXPECT_EQ(x[i].delete_range.key, y[i].delete_range.key);
          EXPECT_EQ(x[i].delete_range.range_end, y[i].delete_range.range_end);
          EXPECT_EQ(x[i].delete_range.prev_kv, y[i].delete_range.prev_kv);
          break;
        case mvcc::RequestOp::Kind::kTxn:
          ASSERT_NE(x[i].txn, nullptr);
          ASSERT_NE(y[i].txn, nullptr);
          ExpectTxnEq(*x[i].txn, *y[i].txn);
          break;
      }
    }
  };
  ops_eq(a.success, b.success);
  ops_eq(a.failure, b.failure);
}

// Encodes, serializes to bytes (what the log holds), parses and decodes.
absl::StatusOr<mvcc::TxnRequest> ThroughTheLog(const mvcc::TxnRequest& txn) {
  pb::TxnRequest encoded;
  ToProto(txn, &encoded);
  pb::TxnRequest parsed;
  EXPECT_TRUE(parsed.ParseFromString(encoded.SerializeAsString()));
  return FromProto(parsed);
}

TEST(CodecTest, EveryFieldOfATxnSurvivesTheLog) {
  mvcc::TxnRequest inner;
  mvcc::Compare lease;
  lease.result = mvcc::Compare::Result::kNotEqual;
  lease.target = mvcc::Compare::Target::kLease;
  lease.key = "l";
  lease.number = 99;
  inner.compare.push_back(lease);
  mvcc::RequestOp inner_put;
  inner_put.kind = mvcc::RequestOp::Kind::kPut;
  inner_put.put = FullPut();
  inner.failure.push_back(inner_put);

  mvcc::TxnRequest txn;
  const mvcc::Compare::Target targets[] = {
      mvcc::Compare::Target::kVersion, mvcc::Compare::Target::kCreate, mvcc::Compare::Target::kMod,
      mvcc::Compare::Target::kValue, mvcc::Compare::Target::kLease};
  const mvcc::Compare::Result results[] = {
      mvcc::Compare::Result::kEqual, mvcc::Compare::Result::kGreater, mvcc::Compare::Result::kLess,
      mvcc::Compare::Result::kNotEqual};
  int n = 0;
  for (mvcc::Compare::Target target : targets) {
    for (mvcc::Compare::Result result : results) {
      mvcc::Compare c;
      c.target = target;
      c.result = result;
      c.key = "k" + std::to_string(n);
      c.range_end = n % 2 == 0 ? "" : "z";
      c.number = -5 + n;
      c.value = "v" + std::to_string(n);
      txn.compare.push_back(c);
      ++n;
    }
  }
  mvcc::RequestOp range;
  range.kind = mvcc::RequestOp::Kind::kRange;
  range.range = FullRange();
  mvcc::RequestOp put;
  put.kind = mvcc::RequestOp::Kind::kPut;
  put.put = FullPut();
  mvcc::RequestOp del;
  del.kind = mvcc::RequestOp::Kind::kDeleteRange;
  del.delete_range.key = "d";
  del.delete_range.range_end = std::string(1, '\0');
  del.delete_range.prev_kv = true;
  mvcc::RequestOp nested;
  nested.kind = mvcc::RequestOp::Kind::kTxn;
  nested.txn = std::make_shared<mvcc::TxnRequest>(inner);
  txn.success = {range, put, del, nested};
  txn.failure = {nested, del};

  auto decoded = ThroughTheLog(txn);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectTxnEq(txn, *decoded);
}

TEST(CodecTest, RangeAndPutSurviveTheLogOnTheirOwn) {
  pb::RangeRequest range;
  ToProto(FullRange(), &range);
  auto decoded = FromProto(range);
  ASSERT_TRUE(decoded.ok());
  ExpectRangeEq(FullRange(), *decoded);

  pb::PutRequest put;
  ToProto(FullPut(), &put);
  ExpectPutEq(FullPut(), FromProto(put));
}

TEST(CodecTest, AnEmptyNestedTxnStaysATxn) {
  mvcc::TxnRequest txn;
  mvcc::RequestOp nested;
  nested.kind = mvcc::RequestOp::Kind::kTxn;
  nested.txn = std::make_shared<mvcc::TxnRequest>();
  txn.success.push_back(nested);
  auto decoded = ThroughTheLog(txn);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->success.size(), 1u);
  EXPECT_EQ(decoded->success[0].kind, mvcc::RequestOp::Kind::kTxn);
}

TEST(CodecTest, MalformedEntriesAreErrors) {
  pb::RangeRequest bad_sort;
  bad_sort.set_sort_order(9);
  EXPECT_EQ(CodeOf(FromProto(bad_sort).status()), ErrorCode::kInvalidArgument);
  pb::RangeRequest bad_target;
  bad_target.set_sort_target(-1);
  EXPECT_EQ(CodeOf(FromProto(bad_target).status()), ErrorCode::kInvalidArgument);

  pb::TxnRequest bad_compare;
  bad_compare.add_compare()->set_target(17);
  EXPECT_EQ(CodeOf(FromProto(bad_compare).status()), ErrorCode::kInvalidArgument);
  pb::TxnRequest bad_result;
  bad_result.add_compare()->set_result(4);
  EXPECT_EQ(CodeOf(FromProto(bad_result).status()), ErrorCode::kInvalidArgument);

  pb::TxnRequest empty_op;
  empty_op.add_success();
  const absl::Status status = FromProto(empty_op).status();
  EXPECT_EQ(CodeOf(status), ErrorCode::kInvalidArgument);
  EXPECT_NE(status.message().find("without a request"), absl::string_view::npos) << status;
}

TEST(CodecTest, NestingIsBoundedByMaxTxnDepth) {
  auto nest = [](int depth) {
    pb::TxnRequest outer;
    pb::TxnRequest* at = &outer;
    for (int i = 0; i < depth; ++i) at = at->add_success()->mutable_txn();
    return outer;
  };
  EXPECT_TRUE(FromProto(nest(kMaxTxnDepth)).ok());
  const absl::Status too_deep = FromProto(nest(kMaxTxnDepth + 1)).status();
  EXPECT_EQ(CodeOf(too_deep), ErrorCode::kInvalidArgument);
  EXPECT_NE(too_deep.message().find("16"), absl::string_view::npos) << too_deep;
}

}  // namespace
}  // namespace kvstore::server
