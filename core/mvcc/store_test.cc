// Unit tests of the MVCC store against etcd v3 semantics (server/storage/mvcc, etcdserver
// apply), through the public API only. Each test names the etcd rule it pins.

#include "core/mvcc/store.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/errors.h"
#include "core/mvcc/backend.h"
#include "core/mvcc/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvstore::mvcc {

// gtest printer: failures show the key-value instead of raw bytes.
void PrintTo(const KeyValue& kv, std::ostream* os) {
  *os << "{key=\"" << kv.key << "\" create=" << kv.create_revision << " mod=" << kv.mod_revision
      << " version=" << kv.version << " value=\"" << kv.value << "\" lease=" << kv.lease << "}";
}

namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

KeyValue Kv(std::string key, Revision create, Revision mod, int64_t version, std::string value,
            LeaseId lease = kNoLease) {
  return KeyValue{std::move(key), create, mod, version, std::move(value), lease};
}

std::vector<std::string> Keys(const std::vector<KeyValue>& kvs) {
  std::vector<std::string> keys;
  for (const KeyValue& kv : kvs) keys.push_back(kv.key);
  return keys;
}

RangeRequest RangeOf(std::string key, std::string range_end = "", Revision revision = 0) {
  RangeRequest r;
  r.key = std::move(key);
  r.range_end = std::move(range_end);
  r.revision = revision;
  return r;
}

RequestOp PutOp(std::string key, std::string value) {
  RequestOp op;
  op.kind = RequestOp::Kind::kPut;
  op.put.key = std::move(key);
  op.put.value = std::move(value);
  return op;
}

RequestOp DeleteOp(std::string key, std::string range_end = "") {
  RequestOp op;
  op.kind = RequestOp::Kind::kDeleteRange;
  op.delete_range.key = std::move(key);
  op.delete_range.range_end = std::move(range_end);
  return op;
}

RequestOp RangeOp(std::string key, std::string range_end = "", Revision revision = 0) {
  RequestOp op;
  op.kind = RequestOp::Kind::kRange;
  op.range = RangeOf(std::move(key), std::move(range_end), revision);
  return op;
}

RequestOp TxnOp(TxnRequest txn) {
  RequestOp op;
  op.kind = RequestOp::Kind::kTxn;
  op.txn = std::make_shared<const TxnRequest>(std::move(txn));
  return op;
}

Compare NumberCompare(std::string key, Compare::Target target, Compare::Result result,
                      int64_t number, std::string range_end = "") {
  Compare c;
  c.key = std::move(key);
  c.range_end = std::move(range_end);
  c.target = target;
  c.result = result;
  c.number = number;
  return c;
}

Compare ValueCompare(std::string key, Compare::Result result, std::string value,
                     std::string range_end = "") {
  Compare c;
  c.key = std::move(key);
  c.range_end = std::move(range_end);
  c.target = Compare::Target::kValue;
  c.result = result;
  c.value = std::move(value);
  return c;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  // Rebuilds the store from the backend, as a restarted server does.
  void Reopen() {
    store_.reset();
    auto opened = Store::Open(&backend_);
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = std::move(*opened);
  }

  PutResponse Put(const std::string& key, const std::string& value, LeaseId lease = kNoLease) {
    PutRequest r;
    r.key = key;
    r.value = value;
    r.lease = lease;
    auto response = store_->Put(r);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : PutResponse{};
  }

  DeleteRangeResponse Delete(const std::string& key, const std::string& range_end = "") {
    DeleteRangeRequest r;
    r.key = key;
    r.range_end = range_end;
    r.prev_kv = true;
    auto response = store_->DeleteRange(r);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : DeleteRangeResponse{};
  }

  RangeResponse MustRange(const RangeRequest& r) {
    auto response = store_->Range(r);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : RangeResponse{};
  }

  std::optional<KeyValue> Get(const std::string& key, Revision revision = 0) {
    RangeResponse response = MustRange(RangeOf(key, "", revision));
    if (response.kvs.empty()) return std::nullopt;
    EXPECT_EQ(response.kvs.size(), 1u);
    return response.kvs.front();
  }

  std::vector<std::string> RangeKeys(const std::string& key, const std::string& range_end,
                                     Revision revision = 0) {
    return Keys(MustRange(RangeOf(key, range_end, revision)).kvs);
  }

  TxnResponse MustTxn(const TxnRequest& txn) {
    auto response = store_->Txn(txn);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : TxnResponse{};
  }

  MemoryBackend backend_;
  std::unique_ptr<Store> store_;
};

// ---------------------------------------------------------------------------------------------
// Revisions

// etcd: a new store's revision is 1 (the first write creates revision 2).
TEST_F(StoreTest, EmptyStoreIsRevisionOne) {
  EXPECT_EQ(store_->current_revision(), 1);
  EXPECT_EQ(store_->compact_revision(), 0);
  EXPECT_EQ(store_->key_count(), 0u);
  RangeResponse all = MustRange(RangeOf("", std::string(1, '\0')));
  EXPECT_EQ(all.revision, 1);
  EXPECT_THAT(all.kvs, IsEmpty());
  EXPECT_EQ(all.count, 0);
}

// etcd panics ("range cannot find rev") when the index names a revision the backend does not
// hold: a range, in a txn too, answers kDataLoss rather than leave the key out (count 1, no
// kvs); a count-only range and the other keys are unaffected.
TEST_F(StoreTest, RangeOfARecordTheBackendLostIsDataLoss) {
  Put("a", "1");  // 2
  Put("b", "1");  // 3
  backend_.Delete(Bucket::kKey, RevisionKey({2, 0}, false));
  auto lost = store_->Range(RangeOf("a", ""));
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(lost.status().message()),
              ::testing::HasSubstr("range cannot find rev (2,0) of key \"a\""));
  EXPECT_EQ(store_->Range(RangeOf("a", "c")).status().code(), absl::StatusCode::kDataLoss);
  TxnRequest txn;
  txn.success = {RangeOp("a")};
  EXPECT_EQ(store_->Txn(txn).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(MustRange(RangeOf("b", "")).kvs.size(), 1u);
  RangeRequest count = RangeOf("a", "c");
  count.count_only = true;
  EXPECT_EQ(MustRange(count).count, 2);
}

// etcd: every write transaction (put, delete of something, txn with writes) is exactly one
// revision, however many keys it touches.
TEST_F(StoreTest, EachWriteIsExactlyOneRevision) {
  EXPECT_EQ(Put("a", "1").revision, 2);
  EXPECT_EQ(Put("b", "1").revision, 3);
  EXPECT_EQ(Delete("a", "c").revision, 4);  // two keys, one revision
  TxnRequest txn;
  txn.success = {PutOp("x", "1"), PutOp("y", "1"), PutOp("z", "1")};
  EXPECT_EQ(MustTxn(txn).revision, 5);
  EXPECT_EQ(store_->current_revision(), 5);
}

// etcd: a delete that matches no key and a read-only txn write nothing, so no new revision.
TEST_F(StoreTest, DeleteOfNothingAndReadOnlyTxnDoNotBumpRevision) {
  Put("a", "1");
  DeleteRangeResponse deleted = Delete("missing");
  EXPECT_EQ(deleted.deleted, 0);
  EXPECT_EQ(deleted.revision, 2);
  EXPECT_EQ(Delete("m", "z").deleted, 0);
  EXPECT_EQ(store_->current_revision(), 2);

  TxnRequest read_only;
  read_only.success = {RangeOp("a"), RangeOp("", std::string(1, '\0'))};
  EXPECT_EQ(MustTxn(read_only).revision, 2);
  TxnRequest delete_nothing;
  delete_nothing.success = {DeleteOp("missing")};
  EXPECT_EQ(MustTxn(delete_nothing).revision, 2);
  EXPECT_EQ(store_->current_revision(), 2);
  EXPECT_THAT(store_->TakeEvents(), ::testing::SizeIs(1));  // only the put
}

// etcd mvccpb.KeyValue: create_revision is the creation's revision, mod_revision the last
// write's, version counts writes since creation; a delete resets it and a recreation starts a
// new generation (create_revision = the recreation's revision, version 1).
TEST_F(StoreTest, CreateModRevisionAndVersionPerKey) {
  Put("a", "1");  // 2
  EXPECT_EQ(Get("a"), Kv("a", 2, 2, 1, "1"));
  Put("b", "1");  // 3
  Put("a", "2");  // 4
  EXPECT_EQ(Get("a"), Kv("a", 2, 4, 2, "2"));
  EXPECT_EQ(Get("b"), Kv("b", 3, 3, 1, "1"));
  Delete("a");  // 5
  EXPECT_EQ(Get("a"), std::nullopt);
  Put("a", "3");  // 6
  EXPECT_EQ(Get("a"), Kv("a", 6, 6, 1, "3"));
  Put("a", "4");  // 7
  EXPECT_EQ(Get("a"), Kv("a", 6, 7, 2, "4"));
}

// etcd keyIndex: a read at a revision before the delete (tombstone) still sees the key; at and
// after the tombstone it is gone.
TEST_F(StoreTest, TombstoneHidesKeyOnlyFromItsRevisionOn) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Delete("a");    // 4
  Put("b", "1");  // 5
  EXPECT_EQ(Get("a", 2), Kv("a", 2, 2, 1, "1"));
  EXPECT_EQ(Get("a", 3), Kv("a", 2, 3, 2, "2"));
  EXPECT_EQ(Get("a", 4), std::nullopt);
  EXPECT_EQ(Get("a", 5), std::nullopt);
  EXPECT_EQ(Get("a", 1), std::nullopt);  // before the creation
  EXPECT_EQ(MustRange(RangeOf("a", "", 3)).count, 1);
  EXPECT_EQ(MustRange(RangeOf("a", "", 4)).count, 0);
}

// ---------------------------------------------------------------------------------------------
// Range

// etcd clientv3.GetPrefixRangeEnd: increment the last byte below 0xff, dropping trailing 0xff
// bytes; an all-0xff (or empty) prefix means "every key from here" ("\0").
TEST(PrefixEndTest, IncrementsLastByteBelowFf) {
  EXPECT_EQ(PrefixEnd("a"), "b");
  EXPECT_EQ(PrefixEnd("abc"), "abd");
  EXPECT_EQ(PrefixEnd("a\xff"), "b");
  EXPECT_EQ(PrefixEnd("a\xff\xff"), "b");
  EXPECT_EQ(PrefixEnd("\xff\xff"), std::string(1, '\0'));
  EXPECT_EQ(PrefixEnd(""), std::string(1, '\0'));
  EXPECT_EQ(PrefixEnd(std::string("a\0", 2)), std::string("a\x01", 2));
}

// etcd RangeRequest: range_end empty = one key; [key, range_end) otherwise; range_end "\0" =
// every key >= key; a prefix is [prefix, PrefixEnd(prefix)). Keys compare as unsigned bytes.
TEST_F(StoreTest, RangeSingleKeyIntervalPrefixAndFromKey) {
  for (const char* key : {"a", "ab", "abc", "a\xff", "a\xff\xff", "b", "c"}) Put(key, "v");
  const std::string from_key(1, '\0');
  EXPECT_THAT(RangeKeys("ab", ""), ElementsAre("ab"));
  EXPECT_THAT(RangeKeys("zz", ""), IsEmpty());
  EXPECT_THAT(RangeKeys("ab", "b"), ElementsAre("ab", "abc", "a\xff", "a\xff\xff"));
  EXPECT_THAT(RangeKeys("a", "c"), ElementsAre("a", "ab", "abc", "a\xff", "a\xff\xff", "b"));
  EXPECT_THAT(RangeKeys("c", "a"), IsEmpty());  // range_end below key: nothing
  EXPECT_THAT(RangeKeys("ab", PrefixEnd("ab")), ElementsAre("ab", "abc"));
  EXPECT_THAT(RangeKeys("a\xff", PrefixEnd("a\xff")), ElementsAre("a\xff", "a\xff\xff"));
  EXPECT_THAT(RangeKeys("b", from_key), ElementsAre("b", "c"));
  EXPECT_THAT(RangeKeys("", from_key),
              ElementsAre("a", "ab", "abc", "a\xff", "a\xff\xff", "b", "c"));
}

// etcd RangeRequest.limit: at most `limit` kvs, `more` set when more keys matched, `count` is
// every key in the range regardless of the limit.
TEST_F(StoreTest, RangeLimitSetsMoreAndCountsAll) {
  for (const char* key : {"a", "b", "c", "d"}) Put(key, "v");
  RangeRequest r = RangeOf("a", "z");
  r.limit = 2;
  RangeResponse limited = MustRange(r);
  EXPECT_THAT(Keys(limited.kvs), ElementsAre("a", "b"));
  EXPECT_TRUE(limited.more);
  EXPECT_EQ(limited.count, 4);
  r.limit = 4;
  RangeResponse exact = MustRange(r);
  EXPECT_EQ(exact.kvs.size(), 4u);
  EXPECT_FALSE(exact.more);
  EXPECT_EQ(exact.count, 4);
  r.limit = 0;
  EXPECT_EQ(MustRange(r).kvs.size(), 4u);
}

// etcd RangeRequest.revision: a read at a past revision sees the store as it was then; the
// header revision is still the current one.
TEST_F(StoreTest, RangeAtPastRevision) {
  Put("a", "1");  // 2
  Put("b", "1");  // 3
  Put("a", "2");  // 4
  Delete("b");    // 5
  Put("c", "1");  // 6
  RangeResponse at3 = MustRange(RangeOf("", std::string(1, '\0'), 3));
  EXPECT_THAT(at3.kvs, ElementsAre(Kv("a", 2, 2, 1, "1"), Kv("b", 3, 3, 1, "1")));
  EXPECT_EQ(at3.revision, 6);
  EXPECT_EQ(at3.count, 2);
  EXPECT_THAT(RangeKeys("", std::string(1, '\0'), 5), ElementsAre("a"));
  EXPECT_THAT(RangeKeys("", std::string(1, '\0'), 6), ElementsAre("a", "c"));
  EXPECT_THAT(RangeKeys("", std::string(1, '\0'), 1), IsEmpty());
}

// etcd RangeRequest.count_only returns only the count; keys_only drops the values.
TEST_F(StoreTest, RangeCountOnlyAndKeysOnly) {
  Put("a", "1");
  Put("b", "2");
  Put("c", "3");
  RangeRequest r = RangeOf("a", "c");
  r.count_only = true;
  RangeResponse counted = MustRange(r);
  EXPECT_THAT(counted.kvs, IsEmpty());
  EXPECT_EQ(counted.count, 2);
  r.count_only = false;
  r.keys_only = true;
  RangeResponse keys = MustRange(r);
  EXPECT_THAT(keys.kvs, ElementsAre(Kv("a", 2, 2, 1, ""), Kv("b", 3, 3, 1, "")));
}

// etcd RangeRequest.sort_order/sort_target: sort by key, version, create, mod or value, either
// way; a target other than the key with order NONE sorts ascending.
TEST_F(StoreTest, RangeSortsByEveryTargetBothWays) {
  Put("c", "c1");  // 2
  Put("a", "a1");  // 3
  Put("c", "c2");  // 4
  Put("b", "m");   // 5
  Put("a", "z");   // 6
  Put("c", "c");   // 7
  // a: create 3, mod 6, version 2, "z"; b: create 5, mod 5, version 1, "m";
  // c: create 2, mod 7, version 3, "c".
  struct Case {
    SortTarget target;
    std::vector<std::string> ascending;
  };
  const std::vector<Case> cases = {
      {SortTarget::kKey, {"a", "b", "c"}},    {SortTarget::kVersion, {"b", "a", "c"}},
      {SortTarget::kCreate, {"c", "a", "b"}}, {SortTarget::kMod, {"b", "a", "c"}},
      {SortTarget::kValue, {"c", "b", "a"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.target));
    RangeRequest r = RangeOf("a", "z");
    r.sort_target = c.target;
    r.sort_order = SortOrder::kAscend;
    EXPECT_EQ(Keys(MustRange(r).kvs), c.ascending);
    r.sort_order = SortOrder::kDescend;
    EXPECT_EQ(Keys(MustRange(r).kvs),
              std::vector<std::string>(c.ascending.rbegin(), c.ascending.rend()));
    r.sort_order = SortOrder::kNone;
    EXPECT_EQ(Keys(MustRange(r).kvs), c.ascending);
  }
  // Sorting happens before the limit: the limit keeps the first keys of the sorted order.
  RangeRequest r = RangeOf("a", "z");
  r.sort_target = SortTarget::kCreate;
  r.sort_order = SortOrder::kDescend;
  r.limit = 1;
  RangeResponse limited = MustRange(r);
  EXPECT_THAT(Keys(limited.kvs), ElementsAre("b"));
  EXPECT_TRUE(limited.more);
}

// etcd RangeRequest.{min,max}_{mod,create}_revision: inclusive bounds, 0 = no filter.
TEST_F(StoreTest, RangeFiltersOnModAndCreateRevision) {
  Put("a", "1");  // 2
  Put("b", "1");  // 3
  Put("c", "1");  // 4
  Put("a", "2");  // 5: a create 2 mod 5
  auto filtered = [&](Revision min_mod, Revision max_mod, Revision min_create,
                      Revision max_create) {
    RangeRequest r = RangeOf("a", "z");
    r.min_mod_revision = min_mod;
    r.max_mod_revision = max_mod;
    r.min_create_revision = min_create;
    r.max_create_revision = max_create;
    return Keys(MustRange(r).kvs);
  };
  EXPECT_THAT(filtered(4, 0, 0, 0), ElementsAre("a", "c"));
  EXPECT_THAT(filtered(0, 4, 0, 0), ElementsAre("b", "c"));
  EXPECT_THAT(filtered(3, 4, 0, 0), ElementsAre("b", "c"));
  EXPECT_THAT(filtered(0, 0, 3, 0), ElementsAre("b", "c"));
  EXPECT_THAT(filtered(0, 0, 0, 3), ElementsAre("a", "b"));
  EXPECT_THAT(filtered(0, 0, 2, 2), ElementsAre("a"));
  EXPECT_THAT(filtered(5, 0, 0, 2), ElementsAre("a"));
  EXPECT_THAT(filtered(6, 0, 0, 0), IsEmpty());
}

// etcd mvcc: reading beyond the current revision is ErrFutureRev; below the compaction it is
// ErrCompacted; exactly at the compaction revision it still works.
TEST_F(StoreTest, RangeOutsideHistoryFails) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  auto future = store_->Range(RangeOf("a", "", 5));
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(CodeOf(future.status()), ErrorCode::kFutureRevision);
  ASSERT_TRUE(store_->Compact(3).ok());
  auto compacted = store_->Range(RangeOf("a", "", 2));
  ASSERT_FALSE(compacted.ok());
  EXPECT_EQ(CodeOf(compacted.status()), ErrorCode::kCompacted);
  EXPECT_EQ(Get("a", 3), Kv("a", 2, 3, 2, "2"));
  EXPECT_EQ(Get("a", 4), Kv("a", 2, 4, 3, "3"));
}

// ---------------------------------------------------------------------------------------------
// Put

// etcd PutRequest.prev_kv: the response carries the key-value before the put, if there was one.
TEST_F(StoreTest, PutReturnsPrevKvOnlyWhenAsked) {
  PutRequest r;
  r.key = "a";
  r.value = "1";
  r.prev_kv = true;
  auto first = store_->Put(r);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->prev_kv, std::nullopt);
  r.value = "2";
  auto second = store_->Put(r);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->prev_kv, Kv("a", 2, 2, 1, "1"));
  r.prev_kv = false;
  r.value = "3";
  auto third = store_->Put(r);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->prev_kv, std::nullopt);
  Delete("a");
  r.prev_kv = true;
  auto recreated = store_->Put(r);
  ASSERT_TRUE(recreated.ok());
  EXPECT_EQ(recreated->prev_kv, std::nullopt);  // a deleted key has no previous value
}

// etcd PutRequest.lease: the key carries the lease; a later put without one detaches it.
TEST_F(StoreTest, PutAttachesLease) {
  Put("a", "1", 7);
  EXPECT_EQ(Get("a"), Kv("a", 2, 2, 1, "1", 7));
  Put("a", "2");
  EXPECT_EQ(Get("a"), Kv("a", 2, 3, 2, "2", kNoLease));
}

// etcd PutRequest.ignore_value / ignore_lease: keep the key's current value / lease while the
// other field (and the revisions) change.
TEST_F(StoreTest, PutIgnoreValueAndIgnoreLeaseKeepTheOldOnes) {
  Put("a", "1", 7);  // 2
  PutRequest keep_value;
  keep_value.key = "a";
  keep_value.value = "ignored";
  keep_value.lease = 9;
  keep_value.ignore_value = true;
  ASSERT_TRUE(store_->Put(keep_value).ok());  // 3
  EXPECT_EQ(Get("a"), Kv("a", 2, 3, 2, "1", 9));
  PutRequest keep_lease;
  keep_lease.key = "a";
  keep_lease.value = "2";
  keep_lease.ignore_lease = true;
  ASSERT_TRUE(store_->Put(keep_lease).ok());  // 4
  EXPECT_EQ(Get("a"), Kv("a", 2, 4, 3, "2", 9));
}

// etcd: ignore_value / ignore_lease on a key that does not exist is ErrKeyNotFound and writes
// nothing.
TEST_F(StoreTest, PutIgnoreOnMissingKeyIsKeyNotFound) {
  Put("deleted", "1");
  Delete("deleted");
  const Revision before = store_->current_revision();
  const size_t keys_before = store_->key_count();
  store_->TakeEvents();
  for (const char* key : {"missing", "deleted"}) {
    for (bool ignore_value : {false, true}) {
      PutRequest r;
      r.key = key;
      r.value = "v";
      r.ignore_value = ignore_value;
      r.ignore_lease = !ignore_value;
      auto response = store_->Put(r);
      ASSERT_FALSE(response.ok());
      EXPECT_EQ(CodeOf(response.status()), ErrorCode::kKeyNotFound);
    }
  }
  EXPECT_EQ(store_->current_revision(), before);
  EXPECT_EQ(store_->key_count(), keys_before);
  EXPECT_EQ(Get("missing"), std::nullopt);
  EXPECT_EQ(Get("deleted"), std::nullopt);
  EXPECT_THAT(store_->TakeEvents(), IsEmpty());
}

// ---------------------------------------------------------------------------------------------
// DeleteRange

// etcd DeleteRangeRequest: `deleted` counts live keys removed, prev_kv returns them; one key, a
// range and a prefix alike, all at one revision.
TEST_F(StoreTest, DeleteRangeCountsAndReturnsPrevKvs) {
  Put("a", "1");    // 2
  Put("b", "1");    // 3
  Put("b/1", "1");  // 4
  Put("b/2", "1");  // 5
  Put("c", "1");    // 6
  Put("d", "1");    // 7

  DeleteRangeResponse one = Delete("a");
  EXPECT_EQ(one.revision, 8);
  EXPECT_EQ(one.deleted, 1);
  EXPECT_THAT(one.prev_kvs, ElementsAre(Kv("a", 2, 2, 1, "1")));

  DeleteRangeResponse prefix = Delete("b/", PrefixEnd("b/"));
  EXPECT_EQ(prefix.revision, 9);
  EXPECT_EQ(prefix.deleted, 2);
  EXPECT_THAT(prefix.prev_kvs, ElementsAre(Kv("b/1", 4, 4, 1, "1"), Kv("b/2", 5, 5, 1, "1")));
  EXPECT_THAT(RangeKeys("", std::string(1, '\0')), ElementsAre("b", "c", "d"));

  DeleteRangeRequest range;
  range.key = "a";  // "a" is already deleted: not counted again
  range.range_end = "d";
  auto ranged = store_->DeleteRange(range);
  ASSERT_TRUE(ranged.ok());
  EXPECT_EQ(ranged->revision, 10);
  EXPECT_EQ(ranged->deleted, 2);
  EXPECT_THAT(ranged->prev_kvs, IsEmpty());  // not asked for
  EXPECT_THAT(RangeKeys("", std::string(1, '\0')), ElementsAre("d"));
  EXPECT_EQ(Get("b", 9), Kv("b", 3, 3, 1, "1"));
  EXPECT_EQ(store_->current_revision(), 10);
}

// ---------------------------------------------------------------------------------------------
// Txn

// etcd Compare: targets VALUE, VERSION, CREATE, MOD, LEASE with EQUAL, NOT_EQUAL, LESS, GREATER.
TEST_F(StoreTest, TxnComparesEveryTargetWithEveryOperator) {
  Put("a", "m", 5);  // 2
  Put("a", "m", 5);  // 3: a create 2, mod 3, version 2, lease 5
  using R = Compare::Result;
  using T = Compare::Target;
  struct Case {
    Compare compare;
    bool expected;
  };
  std::vector<Case> cases;
  auto numbers = [&](T target, int64_t actual) {
    cases.push_back({NumberCompare("a", target, R::kEqual, actual), true});
    cases.push_back({NumberCompare("a", target, R::kEqual, actual + 1), false});
    cases.push_back({NumberCompare("a", target, R::kNotEqual, actual + 1), true});
    cases.push_back({NumberCompare("a", target, R::kNotEqual, actual), false});
    cases.push_back({NumberCompare("a", target, R::kLess, actual + 1), true});
    cases.push_back({NumberCompare("a", target, R::kLess, actual), false});
    cases.push_back({NumberCompare("a", target, R::kGreater, actual - 1), true});
    cases.push_back({NumberCompare("a", target, R::kGreater, actual), false});
  };
  numbers(T::kVersion, 2);
  numbers(T::kCreate, 2);
  numbers(T::kMod, 3);
  numbers(T::kLease, 5);
  cases.push_back({ValueCompare("a", R::kEqual, "m"), true});
  cases.push_back({ValueCompare("a", R::kEqual, "n"), false});
  cases.push_back({ValueCompare("a", R::kNotEqual, "n"), true});
  cases.push_back({ValueCompare("a", R::kNotEqual, "m"), false});
  cases.push_back({ValueCompare("a", R::kLess, "n"), true});
  cases.push_back({ValueCompare("a", R::kLess, "m"), false});
  cases.push_back({ValueCompare("a", R::kLess, "\xff"), true});  // bytes compare unsigned
  cases.push_back({ValueCompare("a", R::kGreater, "l"), true});
  cases.push_back({ValueCompare("a", R::kGreater, "mm"), false});
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    TxnRequest txn;
    txn.compare = {cases[i].compare};
    EXPECT_EQ(MustTxn(txn).succeeded, cases[i].expected);
  }
  EXPECT_EQ(store_->current_revision(), 3);
}

// etcd applyCompare: a missing key compares as a zero key-value (version/create/mod/lease 0),
// but any VALUE comparison on it is false.
TEST_F(StoreTest, TxnCompareOnMissingKey) {
  Put("gone", "x");
  Delete("gone");
  using R = Compare::Result;
  using T = Compare::Target;
  for (const char* key : {"missing", "gone"}) {
    SCOPED_TRACE(key);
    auto succeeded = [&](Compare c) {
      TxnRequest txn;
      txn.compare = {std::move(c)};
      return MustTxn(txn).succeeded;
    };
    EXPECT_TRUE(succeeded(NumberCompare(key, T::kVersion, R::kEqual, 0)));
    EXPECT_TRUE(succeeded(NumberCompare(key, T::kCreate, R::kEqual, 0)));
    EXPECT_TRUE(succeeded(NumberCompare(key, T::kMod, R::kLess, 1)));
    EXPECT_TRUE(succeeded(NumberCompare(key, T::kLease, R::kEqual, 0)));
    EXPECT_FALSE(succeeded(NumberCompare(key, T::kVersion, R::kGreater, 0)));
    EXPECT_FALSE(succeeded(ValueCompare(key, R::kEqual, "")));
    EXPECT_FALSE(succeeded(ValueCompare(key, R::kNotEqual, "x")));
    EXPECT_FALSE(succeeded(ValueCompare(key, R::kGreater, "")));
  }
}

// etcd Compare.range_end: every key in the range must satisfy the comparison.
TEST_F(StoreTest, TxnCompareOverRangeNeedsEveryKey) {
  Put("k1", "v");
  Put("k2", "v");
  Put("k3", "w");
  using R = Compare::Result;
  auto succeeded = [&](Compare c) {
    TxnRequest txn;
    txn.compare = {std::move(c)};
    return MustTxn(txn).succeeded;
  };
  EXPECT_TRUE(succeeded(ValueCompare("k1", R::kEqual, "v", "k3")));
  EXPECT_FALSE(succeeded(ValueCompare("k1", R::kEqual, "v", "k4")));
  EXPECT_FALSE(succeeded(ValueCompare("k", R::kEqual, "v", PrefixEnd("k"))));
  EXPECT_TRUE(succeeded(ValueCompare("k", R::kLess, "x", PrefixEnd("k"))));
  EXPECT_TRUE(
      succeeded(NumberCompare("k", Compare::Target::kVersion, R::kEqual, 1, PrefixEnd("k"))));
  EXPECT_TRUE(
      succeeded(NumberCompare("k1", Compare::Target::kMod, R::kLess, 5, std::string(1, '\0'))));
  EXPECT_FALSE(
      succeeded(NumberCompare("k1", Compare::Target::kMod, R::kLess, 4, std::string(1, '\0'))));
  // An empty range compares as a missing key.
  EXPECT_TRUE(succeeded(NumberCompare("x", Compare::Target::kVersion, R::kEqual, 0, "y")));
}

// etcd Txn: if every compare holds the success ops run and succeeded is true, else the failure
// ops run; responses come in op order.
TEST_F(StoreTest, TxnRunsSuccessOrFailureBranch) {
  Put("a", "1");  // 2
  TxnRequest txn;
  txn.compare = {ValueCompare("a", Compare::Result::kEqual, "1"),
                 NumberCompare("a", Compare::Target::kVersion, Compare::Result::kEqual, 1)};
  txn.success = {PutOp("a", "2"), RangeOp("a")};
  txn.failure = {PutOp("b", "failure"), RangeOp("a")};
  TxnResponse first = MustTxn(txn);
  EXPECT_TRUE(first.succeeded);
  EXPECT_EQ(first.revision, 3);
  ASSERT_EQ(first.responses.size(), 2u);
  EXPECT_EQ(first.responses[0].kind, RequestOp::Kind::kPut);
  EXPECT_EQ(first.responses[0].put.revision, 3);
  EXPECT_EQ(first.responses[1].kind, RequestOp::Kind::kRange);
  EXPECT_THAT(first.responses[1].range.kvs, ElementsAre(Kv("a", 2, 3, 2, "2")));

  TxnResponse second = MustTxn(txn);  // a is now "2": the failure branch runs
  EXPECT_FALSE(second.succeeded);
  EXPECT_EQ(second.revision, 4);
  ASSERT_EQ(second.responses.size(), 2u);
  EXPECT_EQ(Get("b"), Kv("b", 4, 4, 1, "failure"));
  EXPECT_EQ(Get("a"), Kv("a", 2, 3, 2, "2"));
}

// etcd RequestOp.request_txn: a nested txn evaluates its own compares (against the state before
// the outer txn) and runs one of its branches inside the outer txn's revision.
TEST_F(StoreTest, TxnNestedRunsInsideTheOuterRevision) {
  Put("flag", "on");  // 2
  TxnRequest inner;
  inner.compare = {ValueCompare("flag", Compare::Result::kEqual, "on")};
  inner.success = {PutOp("inner", "yes"), RangeOp("outer")};
  inner.failure = {PutOp("inner", "no")};
  TxnRequest outer;
  outer.success = {PutOp("outer", "1"), TxnOp(inner)};
  TxnResponse response = MustTxn(outer);
  EXPECT_TRUE(response.succeeded);
  EXPECT_EQ(response.revision, 3);
  ASSERT_EQ(response.responses.size(), 2u);
  ASSERT_EQ(response.responses[1].kind, RequestOp::Kind::kTxn);
  const TxnResponse& nested = *response.responses[1].txn;
  EXPECT_TRUE(nested.succeeded);
  EXPECT_EQ(nested.revision, 3);
  ASSERT_EQ(nested.responses.size(), 2u);
  EXPECT_EQ(nested.responses[0].put.revision, 3);
  EXPECT_THAT(Keys(nested.responses[1].range.kvs), ElementsAre("outer"));
  EXPECT_EQ(Get("inner"), Kv("inner", 3, 3, 1, "yes"));
  EXPECT_EQ(Get("outer"), Kv("outer", 3, 3, 1, "1"));
  EXPECT_EQ(store_->current_revision(), 3);

  // Nested compares see the state before the outer txn, not the outer txn's own writes.
  outer.success = {PutOp("flag", "off"), TxnOp(inner)};
  TxnResponse before = MustTxn(outer);  // 4
  EXPECT_TRUE(before.responses[1].txn->succeeded);
  EXPECT_EQ(Get("inner"), Kv("inner", 3, 4, 2, "yes"));

  outer.success = {TxnOp(inner)};
  TxnResponse off = MustTxn(outer);
  ASSERT_EQ(off.responses.size(), 1u);
  EXPECT_FALSE(off.responses[0].txn->succeeded);
  EXPECT_EQ(Get("inner"), Kv("inner", 3, 5, 3, "no"));
}

// etcd: a txn is one revision; its writes are numbered by increasing sub-revisions, so two puts
// in one txn share the mod_revision and their events come out in op order.
TEST_F(StoreTest, TxnIsOneRevisionWithIncreasingSubRevisions) {
  Put("z", "1");  // 2
  store_->TakeEvents();
  TxnRequest txn;
  txn.success = {PutOp("b", "1"), PutOp("a", "1"), DeleteOp("z")};
  EXPECT_EQ(MustTxn(txn).revision, 3);
  EXPECT_EQ(Get("a")->mod_revision, 3);
  EXPECT_EQ(Get("b")->mod_revision, 3);
  EXPECT_TRUE(backend_.Get(Bucket::kKey, RevisionKey({3, 0}, false)).has_value());
  EXPECT_TRUE(backend_.Get(Bucket::kKey, RevisionKey({3, 1}, false)).has_value());
  EXPECT_TRUE(backend_.Get(Bucket::kKey, RevisionKey({3, 2}, true)).has_value());
  std::vector<Event> events = store_->TakeEvents();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kv.key, "b");
  EXPECT_EQ(events[1].kv.key, "a");
  EXPECT_EQ(events[2].kv.key, "z");
  EXPECT_EQ(events[2].type, Event::Type::kDelete);
  for (const Event& e : events) EXPECT_EQ(e.kv.mod_revision, 3);
}

// The events carry the previous value in prev_kv by default; with set_prev_values_in_events
// off (no watcher asks for prev_kv) they carry its other fields only, while a put or delete
// that asks for prev_kv still answers it whole, and an ignore_value put still keeps the value.
TEST_F(StoreTest, EventsCarryPreviousValuesOnlyWhenAsked) {
  Put("a", "one");  // 2
  Put("b", "two");  // 3
  store_->TakeEvents();
  Put("a", "uno");  // 4
  std::vector<Event> events = store_->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  ASSERT_TRUE(events[0].prev_kv.has_value());
  EXPECT_EQ(*events[0].prev_kv, Kv("a", 2, 2, 1, "one"));

  store_->set_prev_values_in_events(false);
  Put("a", "eins");  // 5
  events = store_->TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  ASSERT_TRUE(events[0].prev_kv.has_value());
  EXPECT_EQ(*events[0].prev_kv, Kv("a", 2, 4, 2, ""));
  EXPECT_EQ(events[0].kv, Kv("a", 2, 5, 3, "eins"));

  PutRequest put;
  put.key = "a";
  put.value = "ein";
  put.prev_kv = true;
  auto answered = store_->Put(std::move(put));  // 6
  ASSERT_TRUE(answered.ok()) << answered.status();
  ASSERT_TRUE(answered->prev_kv.has_value());
  EXPECT_EQ(*answered->prev_kv, Kv("a", 2, 5, 3, "eins"));
  PutRequest keep;
  keep.key = "a";
  keep.ignore_value = true;
  keep.lease = 0;
  ASSERT_TRUE(store_->Put(keep).ok());  // 7
  EXPECT_EQ(Get("a"), Kv("a", 2, 7, 5, "ein"));

  EXPECT_EQ(Delete("b").prev_kvs, std::vector<KeyValue>{Kv("b", 3, 3, 1, "two")});  // 8
  events = store_->TakeEvents();
  ASSERT_EQ(events.size(), 3u);
  ASSERT_TRUE(events[2].prev_kv.has_value());
  EXPECT_EQ(events[2].prev_kv->value, "two");  // asked for by the delete
}

// Txn(TxnRequest&&) moves the values of its puts into the store: the same effect as a copy.
TEST_F(StoreTest, MovedTxnWritesTheSameValues) {
  TxnRequest txn;
  txn.success = {PutOp("a", "1"), PutOp("b", std::string(100, 'x')), RangeOp("b")};
  auto response = store_->Txn(std::move(txn));
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->responses.size(), 3u);
  EXPECT_THAT(response->responses[2].range.kvs,
              ElementsAre(Kv("b", 2, 2, 1, std::string(100, 'x'))));
  EXPECT_EQ(Get("a"), Kv("a", 2, 2, 1, "1"));
}

// etcd: reads inside a txn see the txn's own earlier writes.
TEST_F(StoreTest, TxnReadsSeeEarlierWritesOfTheTxn) {
  Put("a", "old");  // 2
  Put("b", "old");  // 3
  TxnRequest txn;
  txn.success = {RangeOp("a"),       PutOp("a", "new"), RangeOp("a"),
                 DeleteOp("b"),      RangeOp("b"),      RangeOp("", std::string(1, '\0')),
                 RangeOp("a", "", 2)};
  TxnResponse response = MustTxn(txn);
  ASSERT_EQ(response.responses.size(), 7u);
  EXPECT_THAT(response.responses[0].range.kvs, ElementsAre(Kv("a", 2, 2, 1, "old")));
  EXPECT_THAT(response.responses[2].range.kvs, ElementsAre(Kv("a", 2, 4, 2, "new")));
  EXPECT_THAT(response.responses[4].range.kvs, IsEmpty());
  EXPECT_THAT(Keys(response.responses[5].range.kvs), ElementsAre("a"));
  EXPECT_EQ(response.responses[5].range.count, 1);
  EXPECT_THAT(response.responses[6].range.kvs, ElementsAre(Kv("a", 2, 2, 1, "old")));
  for (const ResponseOp& op : response.responses) {
    if (op.kind == RequestOp::Kind::kRange) {
      EXPECT_EQ(op.range.revision, 4);
    }
  }
}

// etcd checkIntervals: a txn may not put one key twice, nor put a key a delete in it covers
// (at any nesting level): ErrDuplicateKey, and nothing is applied.
TEST_F(StoreTest, TxnWritingAKeyTwiceIsDuplicateKeyAndAppliesNothing) {
  Put("a", "1");  // 2
  Put("b", "1");  // 3
  store_->TakeEvents();
  TxnRequest nested_put;
  nested_put.success = {PutOp("a", "nested")};
  TxnRequest nested_delete;
  nested_delete.success = {DeleteOp("a", "c")};
  const std::vector<std::vector<RequestOp>> bad = {
      {PutOp("x", "1"), PutOp("a", "2"), PutOp("a", "3")},
      {PutOp("x", "1"), PutOp("a", "2"), DeleteOp("a")},
      {PutOp("x", "1"), DeleteOp("a", "c"), PutOp("b", "2")},
      {PutOp("x", "1"), DeleteOp("", std::string(1, '\0')), PutOp("zzz", "2")},
      {PutOp("x", "1"), PutOp("a", "2"), TxnOp(nested_put)},
      {PutOp("x", "1"), PutOp("b", "2"), TxnOp(nested_delete)},
      {PutOp("x", "1"), TxnOp(nested_delete), PutOp("a", "2")},
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(i);
    TxnRequest txn;
    txn.success = bad[i];
    auto response = store_->Txn(txn);
    ASSERT_FALSE(response.ok());
    EXPECT_EQ(CodeOf(response.status()), ErrorCode::kDuplicateKey);
  }
  EXPECT_EQ(store_->current_revision(), 3);
  EXPECT_EQ(Get("x"), std::nullopt);
  EXPECT_EQ(Get("a"), Kv("a", 2, 2, 1, "1"));
  EXPECT_EQ(Get("b"), Kv("b", 3, 3, 1, "1"));
  EXPECT_THAT(store_->TakeEvents(), IsEmpty());

  // Deleting a range twice, or putting keys just outside a deleted range, is allowed.
  TxnRequest fine;
  fine.success = {DeleteOp("a", "b"), DeleteOp("a"), PutOp("b", "2"), PutOp("0", "1")};
  EXPECT_EQ(MustTxn(fine).revision, 4);
}

// etcd Txn validation (checkIntervals on Success and on Failure): a duplicate write makes the
// request invalid even in the branch that does not run; the same key in both branches is fine.
TEST_F(StoreTest, TxnDuplicateKeyInEitherBranchIsRefused) {
  Put("a", "1");  // 2
  TxnRequest txn;
  txn.success = {PutOp("ok", "1")};
  txn.failure = {PutOp("a", "2"), PutOp("a", "3")};
  auto response = store_->Txn(txn);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(CodeOf(response.status()), ErrorCode::kDuplicateKey);
  // The same inside a nested txn whose other branch runs, against the outer level too.
  TxnRequest nested;
  nested.compare = {ValueCompare("a", Compare::Result::kEqual, "1")};
  nested.failure = {PutOp("b", "1"), DeleteOp("b")};
  TxnRequest outer;
  outer.success = {TxnOp(nested)};
  response = store_->Txn(outer);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(CodeOf(response.status()), ErrorCode::kDuplicateKey);
  nested.failure = {PutOp("c", "1")};
  outer.success = {PutOp("c", "2"), TxnOp(nested)};
  response = store_->Txn(outer);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(CodeOf(response.status()), ErrorCode::kDuplicateKey);
  EXPECT_EQ(store_->current_revision(), 2);

  TxnRequest both;
  both.success = {PutOp("a", "then")};
  both.failure = {PutOp("a", "else")};
  EXPECT_TRUE(MustTxn(both).succeeded);
  TxnRequest inner;
  inner.compare = {ValueCompare("a", Compare::Result::kEqual, "then")};
  inner.success = {PutOp("k", "then")};
  inner.failure = {PutOp("k", "else")};
  outer.success = {TxnOp(inner)};
  EXPECT_TRUE(MustTxn(outer).responses[0].txn->succeeded);
  EXPECT_EQ(Get("k")->value, "then");
}

// etcd: a range inside a txn at a compacted (or future) revision fails the whole txn before
// anything is written.
TEST_F(StoreTest, TxnRangeOutsideHistoryFailsTheWholeTxn) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  ASSERT_TRUE(store_->Compact(3).ok());
  store_->TakeEvents();
  TxnRequest compacted;
  compacted.success = {PutOp("x", "1"), RangeOp("a", "", 2)};
  auto response = store_->Txn(compacted);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(CodeOf(response.status()), ErrorCode::kCompacted);
  TxnRequest future;
  future.success = {PutOp("x", "1"), RangeOp("a", "", 5)};
  response = store_->Txn(future);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(CodeOf(response.status()), ErrorCode::kFutureRevision);
  EXPECT_EQ(store_->current_revision(), 4);
  EXPECT_EQ(Get("x"), std::nullopt);
  EXPECT_THAT(store_->TakeEvents(), IsEmpty());
  // Exactly at the compaction revision is fine.
  TxnRequest at_compaction;
  at_compaction.success = {PutOp("x", "1"), RangeOp("a", "", 3)};
  TxnResponse ok = MustTxn(at_compaction);
  EXPECT_THAT(ok.responses[1].range.kvs, ElementsAre(Kv("a", 2, 3, 2, "2")));
}

// etcd: ignore_value / ignore_lease on a missing key inside a txn is ErrKeyNotFound for the
// whole txn, nothing applied.
TEST_F(StoreTest, TxnIgnoreValueOnMissingKeyAppliesNothing) {
  TxnRequest txn;
  RequestOp ignore = PutOp("missing", "");
  ignore.put.ignore_value = true;
  txn.success = {PutOp("x", "1"), ignore};
  auto response = store_->Txn(txn);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(CodeOf(response.status()), ErrorCode::kKeyNotFound);
  EXPECT_EQ(store_->current_revision(), 1);
  EXPECT_EQ(Get("x"), std::nullopt);
}

// ---------------------------------------------------------------------------------------------
// Compaction

// etcd Compact(rev): versions superseded at or before rev are gone (reads below rev are
// ErrCompacted); the version each key had at rev, and everything later, stays readable.
TEST_F(StoreTest, CompactionDropsOldVersionsAndKeepsTheLatest) {
  Put("a", "1");  // 2
  Put("b", "1");  // 3
  Put("a", "2");  // 4
  Put("a", "3");  // 5
  Put("b", "2");  // 6
  const size_t records_before = [&] {
    size_t n = 0;
    backend_.Range(Bucket::kKey, "", "", [&](absl::string_view, absl::string_view) {
      ++n;
      return true;
    });
    return n;
  }();
  EXPECT_EQ(records_before, 5u);
  auto compacted = store_->Compact(4);
  ASSERT_TRUE(compacted.ok());
  EXPECT_EQ(compacted->revision, 6);
  EXPECT_EQ(store_->compact_revision(), 4);
  EXPECT_FALSE(backend_.Get(Bucket::kKey, RevisionKey({2, 0}, false)).has_value());
  EXPECT_TRUE(backend_.Get(Bucket::kKey, RevisionKey({3, 0}, false)).has_value());
  EXPECT_TRUE(backend_.Get(Bucket::kKey, RevisionKey({4, 0}, false)).has_value());
  for (Revision rev : {1, 2, 3}) {
    auto response = store_->Range(RangeOf("a", "", rev));
    ASSERT_FALSE(response.ok());
    EXPECT_EQ(CodeOf(response.status()), ErrorCode::kCompacted);
  }
  EXPECT_EQ(Get("a", 4), Kv("a", 2, 4, 2, "2"));
  EXPECT_EQ(Get("b", 4), Kv("b", 3, 3, 1, "1"));
  EXPECT_EQ(Get("a", 5), Kv("a", 2, 5, 3, "3"));
  EXPECT_EQ(Get("a"), Kv("a", 2, 5, 3, "3"));
  EXPECT_EQ(Get("b"), Kv("b", 3, 6, 2, "2"));
  // Versions keep counting after compaction.
  Put("a", "4");
  EXPECT_EQ(Get("a"), Kv("a", 2, 7, 4, "4"));
}

// etcd Compact: a revision at or below the last compaction is ErrCompacted, one beyond the
// current revision ErrFutureRev; neither changes anything.
TEST_F(StoreTest, CompactionTwiceOrIntoTheFutureFails) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  auto future = store_->Compact(4);
  ASSERT_FALSE(future.ok());
  EXPECT_EQ(CodeOf(future.status()), ErrorCode::kFutureRevision);
  EXPECT_EQ(store_->compact_revision(), 0);
  ASSERT_TRUE(store_->Compact(2).ok());
  for (Revision rev : {2, 1}) {
    auto again = store_->Compact(rev);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(CodeOf(again.status()), ErrorCode::kCompacted);
  }
  EXPECT_EQ(store_->compact_revision(), 2);
  ASSERT_TRUE(store_->Compact(3).ok());  // up to the current revision is allowed
  EXPECT_EQ(Get("a"), Kv("a", 2, 3, 2, "2"));
}

// etcd keyIndex.compact: a key whose last generation ended (tombstone) before the compaction
// point disappears from the index and the backend entirely; a tombstone at exactly the
// compaction point stays until the next compaction (etcd #18274).
TEST_F(StoreTest, CompactionRemovesKeysDeletedBeforeIt) {
  Put("a", "1");                       // 2
  Put("b", "1");                       // 3
  Delete("a");                         // 4
  Put("c", "1");                       // 5
  Delete("c");                         // 6
  EXPECT_EQ(store_->key_count(), 3u);  // tombstoned keys stay until compacted
  ASSERT_TRUE(store_->Compact(5).ok());
  EXPECT_EQ(store_->key_count(), 2u);  // a is gone; c was deleted after the compaction point
  EXPECT_EQ(Get("c", 5), Kv("c", 5, 5, 1, "1"));
  EXPECT_FALSE(backend_.Get(Bucket::kKey, RevisionKey({2, 0}, false)).has_value());
  EXPECT_FALSE(backend_.Get(Bucket::kKey, RevisionKey({4, 0}, true)).has_value());
  ASSERT_TRUE(store_->Compact(6).ok());
  // c's tombstone is at the compaction point: kept for a watch from revision 6.
  EXPECT_EQ(store_->key_count(), 2u);
  EXPECT_FALSE(backend_.Get(Bucket::kKey, RevisionKey({5, 0}, false)).has_value());
  EXPECT_TRUE(backend_.Get(Bucket::kKey, RevisionKey({6, 0}, true)).has_value());
  EXPECT_THAT(RangeKeys("", std::string(1, '\0')), ElementsAre("b"));
  // A recreated key starts a fresh generation.
  Put("a", "2");  // 7
  EXPECT_EQ(Get("a"), Kv("a", 7, 7, 1, "2"));
  ASSERT_TRUE(store_->Compact(7).ok());
  EXPECT_EQ(store_->key_count(), 2u);  // a and b; c's tombstone went with this compaction
  EXPECT_FALSE(backend_.Get(Bucket::kKey, RevisionKey({6, 0}, true)).has_value());
}

// etcd #18089: compacting at a delete's revision keeps its tombstone, so history from the
// compact revision holds the delete; the revision never goes backwards on reopen (etcd #17780).
TEST_F(StoreTest, CompactionAtADeleteKeepsItsTombstone) {
  Put("a", "1");  // 2
  Delete("a");    // 3
  ASSERT_TRUE(store_->Compact(3).ok());
  auto history = store_->History(3, 3, "a", "", false, 0);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ((*history)[0].type, Event::Type::kDelete);
  EXPECT_EQ((*history)[0].kv.mod_revision, 3);
  EXPECT_EQ(Get("a"), std::nullopt);
  Reopen();
  EXPECT_EQ(store_->current_revision(), 3);
  EXPECT_EQ(store_->compact_revision(), 3);
  EXPECT_EQ(Put("b", "1").revision, 4);
}

// etcd #19179: after a reopen, a tombstone that is its key's only surviving record (compaction
// at exactly its revision removed the puts before it) is indexed again: still in history from
// the compact revision, dropped by the next compaction as on a member that never restarted,
// and a recreated key starts a fresh generation.
TEST_F(StoreTest, ReopenKeepsATombstoneAtTheCompactRevision) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Delete("a");    // 4
  Put("b", "1");  // 5
  ASSERT_TRUE(store_->Compact(4).ok());
  auto hash_before = store_->Hash(0);
  ASSERT_TRUE(hash_before.ok());
  Reopen();
  EXPECT_EQ(store_->key_count(), 2u);
  auto hash_after = store_->Hash(0);
  ASSERT_TRUE(hash_after.ok());
  EXPECT_EQ(hash_after->hash, hash_before->hash);
  auto history = store_->History(4, 5, "", std::string(1, '\0'), false, 0);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].type, Event::Type::kDelete);
  EXPECT_EQ((*history)[0].kv.key, "a");
  EXPECT_EQ((*history)[0].kv.mod_revision, 4);
  EXPECT_EQ(Get("a", 4), std::nullopt);
  Put("a", "3");  // 6
  EXPECT_EQ(Get("a"), Kv("a", 6, 6, 1, "3"));
  ASSERT_TRUE(store_->Compact(5).ok());
  EXPECT_FALSE(backend_.Get(Bucket::kKey, RevisionKey({4, 0}, true)).has_value());
  EXPECT_EQ(store_->key_count(), 2u);
  EXPECT_EQ(Get("a"), Kv("a", 6, 6, 1, "3"));
}

// etcd restore: reopening after a compaction rebuilds each key's history from the surviving
// records: same reads, versions and create revisions continue.
TEST_F(StoreTest, ReopenAfterCompactionKeepsKeyHistories) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("b", "1");  // 4
  Put("a", "3");  // 5
  Delete("b");    // 6
  Put("b", "2");  // 7
  ASSERT_TRUE(store_->Compact(4).ok());
  auto hash_before = store_->Hash(0);
  ASSERT_TRUE(hash_before.ok());
  Reopen();
  EXPECT_EQ(store_->current_revision(), 7);
  EXPECT_EQ(store_->compact_revision(), 4);
  EXPECT_EQ(Get("a", 4), Kv("a", 2, 3, 2, "2"));
  EXPECT_EQ(Get("b", 4), Kv("b", 4, 4, 1, "1"));
  EXPECT_EQ(Get("b", 6), std::nullopt);
  EXPECT_EQ(Get("b"), Kv("b", 7, 7, 1, "2"));
  auto hash_after = store_->Hash(0);
  ASSERT_TRUE(hash_after.ok());
  EXPECT_EQ(hash_after->hash, hash_before->hash);
  Put("a", "4");  // 8
  EXPECT_EQ(Get("a"), Kv("a", 2, 8, 4, "4"));
}

// etcd restoreChunk: rebuilding the index notes the lease of every live key that has one, from
// its newest record, so the lessor re-attaches keys without reading a value. Deleted keys, and
// keys a later put took off their lease, are not listed; a recreated key has its new lease.
TEST_F(StoreTest, ReopenListsTheLeasesOfLiveKeys) {
  Put("a", "1", 7);  // 2
  Put("b", "1", 7);  // 3
  Put("b", "2");     // 4: off its lease
  Put("c", "1", 8);  // 5
  Delete("c");       // 6
  Put("d", "1");     // 7
  Put("d", "2", 9);  // 8: on a lease
  Put("e", "1", 8);  // 9
  Delete("e");       // 10
  Put("e", "2", 7);  // 11: recreated on another lease
  ASSERT_TRUE(store_->Compact(5).ok());
  using Leases = absl::btree_map<std::string, LeaseId>;
  const Leases expected = {{"a", 7}, {"d", 9}, {"e", 7}};
  Reopen();
  EXPECT_EQ(store_->TakeRestoredLeases(), expected);
  EXPECT_TRUE(store_->TakeRestoredLeases().empty());  // moved out
  Put("f", "1", 7);
  ASSERT_TRUE(store_->Reload().ok());
  Leases with_f = expected;
  with_f["f"] = 7;
  EXPECT_EQ(store_->TakeRestoredLeases(), with_f);
}

// ---------------------------------------------------------------------------------------------
// Hash

// etcd HashKV: replicas that applied the same operations have equal hashes at every revision;
// different data gives a different hash.
TEST_F(StoreTest, HashIsEqualForEqualHistoriesAndDiffersOtherwise) {
  MemoryBackend other_backend;
  auto opened = Store::Open(&other_backend);
  ASSERT_TRUE(opened.ok());
  Store& other = **opened;
  auto both = [&](auto op) {
    op(*store_);
    op(other);
  };
  auto put = [](std::string key, std::string value) {
    return [=](Store& s) {
      PutRequest r;
      r.key = key;
      r.value = value;
      ASSERT_TRUE(s.Put(r).ok());
    };
  };
  both(put("a", "1"));
  both(put("b", "1"));
  both([](Store& s) {
    TxnRequest txn;
    txn.success = {PutOp("c", "1"), DeleteOp("a")};
    ASSERT_TRUE(s.Txn(txn).ok());
  });
  both(put("a", "2"));
  both([](Store& s) { ASSERT_TRUE(s.Compact(3).ok()); });
  both(put("d", "1"));
  ASSERT_EQ(store_->current_revision(), other.current_revision());
  for (Revision rev = store_->compact_revision(); rev <= store_->current_revision(); ++rev) {
    SCOPED_TRACE(rev);
    auto mine = store_->Hash(rev);
    auto theirs = other.Hash(rev);
    ASSERT_TRUE(mine.ok() && theirs.ok());
    EXPECT_EQ(mine->hash, theirs->hash);
    EXPECT_EQ(mine->revision, rev);
  }

  PutRequest diverge;
  diverge.key = "d";
  diverge.value = "mine";
  ASSERT_TRUE(store_->Put(diverge).ok());
  diverge.value = "theirs";
  ASSERT_TRUE(other.Put(diverge).ok());
  EXPECT_NE(store_->Hash(0)->hash, other.Hash(0)->hash);
  // The shared past still agrees.
  EXPECT_EQ(store_->Hash(6)->hash, other.Hash(6)->hash);
  // A hash before the compaction or beyond the head is refused.
  EXPECT_EQ(CodeOf(store_->Hash(2).status()), ErrorCode::kCompacted);
  EXPECT_EQ(CodeOf(store_->Hash(100).status()), ErrorCode::kFutureRevision);
}

// etcd HashKV reports the compact revision it reflects, and a compaction changes the hash of
// the same revision (a compacted and an uncompacted replica must not look equal).
TEST_F(StoreTest, HashAfterCompactionIncludesCompactRevision) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  auto before = store_->Hash(4);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->compact_revision, 0);
  ASSERT_TRUE(store_->Compact(3).ok());
  auto after = store_->Hash(4);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->compact_revision, 3);
  EXPECT_EQ(after->revision, 4);
  EXPECT_NE(after->hash, before->hash);
  ASSERT_TRUE(store_->Compact(4).ok());
  auto later = store_->Hash(4);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->compact_revision, 4);
  EXPECT_NE(later->hash, after->hash);
}

// ---------------------------------------------------------------------------------------------
// Durability

// etcd backend: only committed batches survive a crash, together with the consistent index
// that says which Raft entries they contain.
TEST_F(StoreTest, CrashKeepsOnlyCommittedWritesAndConsistentIndex) {
  Put("a", "1");  // 2
  Put("b", "1");  // 3
  ASSERT_TRUE(store_->Commit(10).ok());
  Put("a", "2");  // 4
  Delete("b");    // 5
  ASSERT_TRUE(store_->Compact(4).ok());
  backend_.Crash();
  Reopen();
  EXPECT_EQ(store_->current_revision(), 3);
  EXPECT_EQ(store_->compact_revision(), 0);
  EXPECT_EQ(store_->consistent_index(), 10u);
  EXPECT_EQ(Get("a"), Kv("a", 2, 2, 1, "1"));
  EXPECT_EQ(Get("b"), Kv("b", 3, 3, 1, "1"));
  EXPECT_EQ(Get("a", 2), Kv("a", 2, 2, 1, "1"));
  // Writing again reuses the lost revision numbers, as the re-applied entries will.
  EXPECT_EQ(Put("a", "2").revision, 4);
  ASSERT_TRUE(store_->Commit(11).ok());
  backend_.Crash();
  Reopen();
  EXPECT_EQ(store_->consistent_index(), 11u);
  EXPECT_EQ(Get("a"), Kv("a", 2, 4, 2, "2"));
}

// etcd: a corrupt record in the key bucket must stop the store from opening (DataLoss), never
// be served as data.
TEST_F(StoreTest, CorruptRecordFailsOpenWithDataLoss) {
  Put("a", "1");
  ASSERT_TRUE(store_->Commit(1).ok());
  {
    MemoryBackend backend;
    backend.Put(Bucket::kKey, RevisionKey({2, 0}, false), "garbage");
    auto opened = Store::Open(&backend);
    ASSERT_FALSE(opened.ok());
    EXPECT_TRUE(absl::IsDataLoss(opened.status())) << opened.status();
  }
  {
    MemoryBackend backend;
    KeyValue kv = Kv("a", 2, 2, 1, "1");
    backend.Put(Bucket::kKey, "not a revision", EncodeKeyValue(kv));
    auto opened = Store::Open(&backend);
    ASSERT_FALSE(opened.ok());
    EXPECT_TRUE(absl::IsDataLoss(opened.status())) << opened.status();
  }
  backend_.Put(Bucket::kKey, RevisionKey({2, 0}, false), "garbage");
  store_.reset();
  auto opened = Store::Open(&backend_);
  ASSERT_FALSE(opened.ok());
  EXPECT_TRUE(absl::IsDataLoss(opened.status())) << opened.status();
}

// ---------------------------------------------------------------------------------------------
// History (watch catch-up)

// etcd watchable store: replay yields the events in (revision, sub-revision) order, with the
// right types, the deleting revision on deletes, prev_kv when asked, and the key filter.
TEST_F(StoreTest, HistoryReplaysEventsInRevisionOrder) {
  Put("a", "1");  // 2
  Put("b", "1");  // 3
  TxnRequest txn;
  txn.success = {PutOp("a", "2"), DeleteOp("b"), PutOp("c", "1")};
  MustTxn(txn);   // 4
  Delete("a");    // 5
  Put("a", "3");  // 6

  auto all = store_->History(2, 6, "", std::string(1, '\0'), true, 0);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 7u);
  const std::vector<Event>& e = *all;
  EXPECT_EQ(e[0].type, Event::Type::kPut);
  EXPECT_EQ(e[0].kv, Kv("a", 2, 2, 1, "1"));
  EXPECT_EQ(e[0].prev_kv, std::nullopt);
  EXPECT_EQ(e[1].kv, Kv("b", 3, 3, 1, "1"));
  EXPECT_EQ(e[2].kv, Kv("a", 2, 4, 2, "2"));
  EXPECT_EQ(e[2].prev_kv, Kv("a", 2, 2, 1, "1"));
  EXPECT_EQ(e[3].type, Event::Type::kDelete);
  EXPECT_EQ(e[3].kv.key, "b");
  EXPECT_EQ(e[3].kv.mod_revision, 4);
  EXPECT_EQ(e[3].prev_kv, Kv("b", 3, 3, 1, "1"));
  EXPECT_EQ(e[4].kv, Kv("c", 4, 4, 1, "1"));
  EXPECT_EQ(e[4].prev_kv, std::nullopt);
  EXPECT_EQ(e[5].type, Event::Type::kDelete);
  EXPECT_EQ(e[5].kv.key, "a");
  EXPECT_EQ(e[5].kv.mod_revision, 5);
  EXPECT_EQ(e[5].prev_kv, Kv("a", 2, 4, 2, "2"));
  EXPECT_EQ(e[6].kv, Kv("a", 6, 6, 1, "3"));
  EXPECT_EQ(e[6].prev_kv, std::nullopt);

  auto only_a = store_->History(3, 5, "a", "", false, 0);
  ASSERT_TRUE(only_a.ok());
  ASSERT_EQ(only_a->size(), 2u);
  EXPECT_EQ((*only_a)[0].kv.mod_revision, 4);
  EXPECT_EQ((*only_a)[0].prev_kv, std::nullopt);  // not asked for
  EXPECT_EQ((*only_a)[1].type, Event::Type::kDelete);

  auto limited = store_->History(2, 6, "", std::string(1, '\0'), false, 3);
  ASSERT_TRUE(limited.ok());
  ASSERT_EQ(limited->size(), 3u);
  EXPECT_EQ((*limited)[2].kv.key, "a");
  EXPECT_EQ((*limited)[2].kv.mod_revision, 4);

  auto prefix = store_->History(1, 100, "b", PrefixEnd("b"), false, 0);
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(prefix->size(), 2u);
}

// etcd watch: catching up from a revision below the compaction is ErrCompacted; from the
// compaction revision itself it is served.
TEST_F(StoreTest, HistoryBelowCompactionIsCompacted) {
  Put("a", "1");  // 2
  Put("a", "2");  // 3
  Put("a", "3");  // 4
  ASSERT_TRUE(store_->Compact(3).ok());
  auto below = store_->History(2, 4, "a", "", false, 0);
  ASSERT_FALSE(below.ok());
  EXPECT_EQ(CodeOf(below.status()), ErrorCode::kCompacted);
  auto at = store_->History(3, 4, "a", "", false, 0);
  ASSERT_TRUE(at.ok()) << at.status();
  ASSERT_EQ(at->size(), 2u);
  EXPECT_EQ((*at)[0].kv, Kv("a", 2, 3, 2, "2"));
  auto history = store_->History(4, 4, "a", "", true, 0);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ((*history)[0].kv, Kv("a", 2, 4, 3, "3"));
  EXPECT_EQ((*history)[0].prev_kv, Kv("a", 2, 3, 2, "2"));  // readable at the compaction
}

// etcd watchable store notify: every write's events reach watchers once, in revision order.
TEST_F(StoreTest, TakeEventsReturnsWritesInOrderOnce) {
  EXPECT_THAT(store_->TakeEvents(), IsEmpty());
  Put("a", "1");  // 2
  TxnRequest txn;
  txn.success = {PutOp("b", "1"), PutOp("c", "1")};
  MustTxn(txn);  // 3
  Delete("a");   // 4
  std::vector<Event> events = store_->TakeEvents();
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].type, Event::Type::kPut);
  EXPECT_EQ(events[0].kv, Kv("a", 2, 2, 1, "1"));
  EXPECT_EQ(events[1].kv, Kv("b", 3, 3, 1, "1"));
  EXPECT_EQ(events[2].kv, Kv("c", 3, 3, 1, "1"));
  EXPECT_EQ(events[3].type, Event::Type::kDelete);
  EXPECT_EQ(events[3].kv.key, "a");
  EXPECT_EQ(events[3].kv.mod_revision, 4);
  EXPECT_EQ(events[3].prev_kv, Kv("a", 2, 2, 1, "1"));
  EXPECT_THAT(store_->TakeEvents(), IsEmpty());
}

// ---------------------------------------------------------------------------------------------
// Model check

// splitmix64: a seeded generator (core/ takes no <random>); the same seed replays the same run.
class Seeded {
 public:
  explicit Seeded(uint64_t seed) : state_(seed) {}
  uint64_t Uniform(uint64_t bound) {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (z ^ (z >> 31)) % bound;
  }

 private:
  uint64_t state_;
};

// etcd MVCC as a whole: a read at any revision the store still serves equals the state right
// after that revision's write, across compactions, reopens and crashes (which lose exactly the
// uncommitted revisions).
TEST_F(StoreTest, MatchesAReferenceModelUnderRandomOperations) {
  using State = std::map<std::string, KeyValue>;
  const std::vector<std::string> keys = {"a", "b", "b\xff", "c", "d"};
  std::vector<State> states = {State{}, State{}};  // states[rev]; revision 1 is empty
  Revision committed = 1;
  Seeded generator(20240601);
  auto model_put = [&](State& state, const std::string& key, const std::string& value,
                       Revision rev) {
    auto it = state.find(key);
    KeyValue kv = Kv(key, rev, rev, 1, value);
    if (it != state.end()) {
      kv.create_revision = it->second.create_revision;
      kv.version = it->second.version + 1;
    }
    state[key] = kv;
  };
  for (int step = 0; step < 3000; ++step) {
    SCOPED_TRACE(step);
    const Revision next = store_->current_revision() + 1;
    State state = states.back();
    const std::string& key = keys[generator.Uniform(keys.size())];
    const std::string value = "v" + std::to_string(step);
    switch (generator.Uniform(10)) {
      case 0:
      case 1:
      case 2:
        Put(key, value);
        model_put(state, key, value, next);
        break;
      case 3: {
        const std::string& end = keys[generator.Uniform(keys.size())];
        const bool one = generator.Uniform(2) == 0;
        const int64_t deleted = Delete(key, one ? "" : end).deleted;
        int64_t expected = 0;
        for (auto it = state.begin(); it != state.end();) {
          if (InRange(key, one ? "" : end, it->first)) {
            it = state.erase(it);
            ++expected;
          } else {
            ++it;
          }
        }
        EXPECT_EQ(deleted, expected);
        if (expected == 0) continue;  // no new revision
        break;
      }
      case 4: {
        const std::string& other = keys[generator.Uniform(keys.size())];
        TxnRequest txn;
        txn.compare = {NumberCompare(key, Compare::Target::kVersion, Compare::Result::kGreater, 0)};
        txn.success = {PutOp(key, value)};
        if (other != key) txn.success.push_back(DeleteOp(other));
        txn.failure = {PutOp(key, "created"), RangeOp(other)};
        const bool live = state.count(key) != 0;
        EXPECT_EQ(MustTxn(txn).succeeded, live);
        model_put(state, key, live ? value : "created", next);
        if (live && other != key) state.erase(other);
        break;
      }
      case 5: {
        if (store_->current_revision() == store_->compact_revision()) continue;
        const Revision at = store_->compact_revision() + 1 +
                            static_cast<Revision>(generator.Uniform(static_cast<uint64_t>(
                                store_->current_revision() - store_->compact_revision())));
        ASSERT_TRUE(store_->Compact(at).ok());
        continue;
      }
      case 6:
        ASSERT_TRUE(store_->Commit(static_cast<uint64_t>(step)).ok());
        committed = store_->current_revision();
        continue;
      case 7:
        if (generator.Uniform(4) != 0) continue;
        backend_.Crash();
        Reopen();
        states.resize(static_cast<size_t>(committed) + 1);
        ASSERT_EQ(store_->current_revision(), committed);
        continue;
      case 8:
        if (generator.Uniform(4) != 0) continue;
        Reopen();
        continue;
      case 9: {
        const Revision first = std::max<Revision>(store_->compact_revision(), 1);
        const Revision rev = first + static_cast<Revision>(generator.Uniform(static_cast<uint64_t>(
                                         store_->current_revision() - first + 1)));
        RangeResponse all = MustRange(RangeOf("", std::string(1, '\0'), rev));
        std::vector<KeyValue> expected;
        for (const auto& [k, kv] : states[static_cast<size_t>(rev)]) expected.push_back(kv);
        ASSERT_EQ(all.kvs, expected) << "at revision " << rev;
        continue;
      }
    }
    ASSERT_EQ(store_->current_revision(), next);
    states.push_back(std::move(state));
  }
  // Every revision still served matches.
  for (Revision rev = std::max<Revision>(store_->compact_revision(), 1);
       rev <= store_->current_revision(); ++rev) {
    std::vector<KeyValue> expected;
    for (const auto& [k, kv] : states[static_cast<size_t>(rev)]) expected.push_back(kv);
    ASSERT_EQ(MustRange(RangeOf("", std::string(1, '\0'), rev)).kvs, expected) << rev;
  }
}

}  // namespace
}  // namespace kvstore::mvcc
