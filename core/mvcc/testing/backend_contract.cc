#include "core/mvcc/testing/backend_contract.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace kvstore::mvcc {

void BackendContractTest::SetUp() {
  backend_ = GetParam().make();
  ASSERT_NE(backend_, nullptr) << "backend " << GetParam().name << " could not be made";
}

std::vector<std::string> BackendContractTest::Keys(Bucket bucket, absl::string_view start,
                                                   absl::string_view end, size_t stop_after) {
  std::vector<std::string> keys;
  backend_->Range(bucket, start, end, [&](absl::string_view key, absl::string_view) {
    keys.emplace_back(key);
    return stop_after == 0 || keys.size() < stop_after;
  });
  return keys;
}

namespace {

TEST_P(BackendContractTest, GetSeesEveryWriteCommittedOrNot) {
  EXPECT_FALSE(backend_->Get(Bucket::kKey, "a").has_value());
  backend_->Put(Bucket::kKey, "a", "1");
  EXPECT_EQ(backend_->Get(Bucket::kKey, "a"), "1");
  EXPECT_EQ(Keys(Bucket::kKey, "", ""), std::vector<std::string>{"a"});
  backend_->Put(Bucket::kKey, "a", "2");
  EXPECT_EQ(backend_->Get(Bucket::kKey, "a"), "2");
  ASSERT_TRUE(backend_->Commit().ok());
  backend_->Delete(Bucket::kKey, "a");
  EXPECT_FALSE(backend_->Get(Bucket::kKey, "a").has_value());
  EXPECT_EQ(Keys(Bucket::kKey, "", ""), std::vector<std::string>{});
  backend_->Delete(Bucket::kKey, "never-there");  // deleting a missing key is a no-op
  EXPECT_TRUE(backend_->Commit().ok());
}

TEST_P(BackendContractTest, BucketsAreSeparateKeySpaces) {
  backend_->Put(Bucket::kKey, "k", "key");
  backend_->Put(Bucket::kMeta, "k", "meta");
  EXPECT_EQ(backend_->Get(Bucket::kKey, "k"), "key");
  EXPECT_EQ(backend_->Get(Bucket::kMeta, "k"), "meta");
  EXPECT_FALSE(backend_->Get(Bucket::kLease, "k").has_value());
  EXPECT_EQ(Keys(Bucket::kLease, "", ""), std::vector<std::string>{});
}

TEST_P(BackendContractTest, RangeIsOrderedHalfOpenAndStopsWhenAsked) {
  // Bytes order, not C-string order: "\0" sorts first, "\xff" last.
  for (const std::string& key :
       std::vector<std::string>{"b", "a", std::string("a\0", 2), "c", "\xff", "ab"}) {
    backend_->Put(Bucket::kKey, key, "v");
  }
  EXPECT_EQ(Keys(Bucket::kKey, "", ""),
            (std::vector<std::string>{"a", std::string("a\0", 2), "ab", "b", "c", "\xff"}));
  EXPECT_EQ(Keys(Bucket::kKey, "ab", "c"), (std::vector<std::string>{"ab", "b"}));
  EXPECT_EQ(Keys(Bucket::kKey, "b", ""), (std::vector<std::string>{"b", "c", "\xff"}));
  EXPECT_EQ(Keys(Bucket::kKey, "", "", /*stop_after=*/2),
            (std::vector<std::string>{"a", std::string("a\0", 2)}));
  EXPECT_EQ(Keys(Bucket::kKey, "d", "e"), std::vector<std::string>{});
  // The same after the batch ends.
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  EXPECT_EQ(Keys(Bucket::kKey, "ab", "c"), (std::vector<std::string>{"ab", "b"}));
  EXPECT_EQ(Keys(Bucket::kKey, std::string("a\0", 2), "ab"),
            (std::vector<std::string>{std::string("a\0", 2)}));
}

TEST_P(BackendContractTest, ValuesAreBytes) {
  const std::string value("\0\x01\xff\0", 4);
  backend_->Put(Bucket::kKey, "k", value);
  backend_->Put(Bucket::kKey, "empty", "");
  EXPECT_EQ(backend_->Get(Bucket::kKey, "k"), value);
  EXPECT_EQ(backend_->Get(Bucket::kKey, "empty"), "");
  std::string seen;
  backend_->Range(Bucket::kKey, "k", "", [&](absl::string_view, absl::string_view v) {
    seen = std::string(v);
    return true;
  });
  EXPECT_EQ(seen, value);
}

// A visitor may read again, the same bucket included, without disturbing its own Range.
TEST_P(BackendContractTest, VisitorMayReadAgain) {
  for (const char* key : {"a", "b", "c"}) backend_->Put(Bucket::kKey, key, key);
  for (bool flushed : {false, true}) {
    if (flushed) {
      ASSERT_TRUE(backend_->Commit().ok());
      ASSERT_TRUE(backend_->Flush().ok());
    }
    std::vector<std::string> seen;
    backend_->Range(Bucket::kKey, "", "", [&](absl::string_view key, absl::string_view) {
      seen.push_back(absl::StrCat(key, "=", backend_->Get(Bucket::kKey, key).value_or("?")));
      seen.push_back(absl::StrCat(Keys(Bucket::kKey, "", "").size(), " keys"));
      return true;
    });
    EXPECT_EQ(seen, (std::vector<std::string>{"a=a", "3 keys", "b=b", "3 keys", "c=c", "3 keys"}))
        << "flushed: " << flushed;
  }
}

TEST_P(BackendContractTest, CommitAndFlushWithNothingWrittenSucceed) {
  EXPECT_TRUE(backend_->Flush().ok());
  EXPECT_TRUE(backend_->Commit().ok());
  EXPECT_TRUE(backend_->Flush().ok());
  EXPECT_EQ(Keys(Bucket::kKey, "", ""), std::vector<std::string>{});
}

// Flush makes committed batches durable; writes after the last Commit stay visible, in the
// batch that the next Commit ends. (What a crash keeps is each backend's own test.)
TEST_P(BackendContractTest, FlushKeepsOutstandingWritesVisible) {
  backend_->Put(Bucket::kKey, "kept", "1");
  backend_->Put(Bucket::kKey, "overwritten", "old");
  backend_->Put(Bucket::kMeta, "deleted", "x");
  ASSERT_TRUE(backend_->Commit().ok());

  backend_->Put(Bucket::kKey, "overwritten", "new");
  backend_->Delete(Bucket::kMeta, "deleted");
  backend_->Put(Bucket::kKey, "added", "2");
  backend_->Put(Bucket::kKey, "added", "3");
  backend_->Put(Bucket::kMeta, "recreated", "a");
  backend_->Delete(Bucket::kMeta, "recreated");
  backend_->Put(Bucket::kMeta, "recreated", "b");
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(backend_->Flush().ok());
    EXPECT_EQ(backend_->Get(Bucket::kKey, "kept"), "1");
    EXPECT_EQ(backend_->Get(Bucket::kKey, "overwritten"), "new");
    EXPECT_FALSE(backend_->Get(Bucket::kMeta, "deleted").has_value());
    EXPECT_EQ(backend_->Get(Bucket::kKey, "added"), "3");
    EXPECT_EQ(backend_->Get(Bucket::kMeta, "recreated"), "b");
    EXPECT_EQ(Keys(Bucket::kKey, "", ""),
              (std::vector<std::string>{"added", "kept", "overwritten"}));
    EXPECT_EQ(Keys(Bucket::kMeta, "", ""), std::vector<std::string>{"recreated"});
    ASSERT_TRUE(backend_->Commit().ok());  // the second round flushes it as a committed batch
  }
}

// Batches build on each other; whatever a backend commits in between, the latest write wins.
TEST_P(BackendContractTest, ManyBatchesReadBackInOrder) {
  constexpr int kBatches = 40;
  constexpr int kKeysPerBatch = 25;
  constexpr int kKeys = 300;
  std::vector<std::string> expected(kKeys);
  for (int batch = 0; batch < kBatches; ++batch) {
    for (int n = 0; n < kKeysPerBatch; ++n) {
      const int i = (batch * 37 + n * 11) % kKeys;
      const std::string key = "k" + std::to_string(1000 + i);
      if ((batch + n) % 7 == 0) {
        backend_->Delete(Bucket::kKey, key);
        expected[i].clear();
      } else {
        expected[i] = "v" + std::to_string(batch) + "." + std::to_string(n);
        backend_->Put(Bucket::kKey, key, expected[i]);
      }
    }
    ASSERT_TRUE(backend_->Commit().ok());
    if (batch % 10 == 9) {
      ASSERT_TRUE(backend_->Flush().ok());
    }
  }
  std::vector<std::string> want;
  for (int i = 0; i < kKeys; ++i) {
    if (!expected[i].empty()) want.push_back("k" + std::to_string(1000 + i) + "=" + expected[i]);
  }
  std::vector<std::string> got;
  backend_->Range(Bucket::kKey, "", "", [&](absl::string_view key, absl::string_view value) {
    got.push_back(absl::StrCat(key, "=", value));
    return true;
  });
  EXPECT_EQ(got, want);
}

TEST_P(BackendContractTest, SizeGrowsWithDataAndDefragmentReturnsFreedSpace) {
  // Sizes are read after Flush: a batching backend's file grows when a batch becomes durable.
  const uint64_t empty = backend_->SizeBytes();
  for (int i = 0; i < 100; ++i) backend_->Put(Bucket::kKey, "k" + std::to_string(i), "value");
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  const uint64_t full = backend_->SizeBytes();
  EXPECT_GT(full, empty);
  for (int i = 0; i < 100; ++i) backend_->Delete(Bucket::kKey, "k" + std::to_string(i));
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  // Like a B+tree file, deletes free pages but the file does not shrink until defragmented.
  EXPECT_GE(backend_->SizeBytes(), full);
  ASSERT_TRUE(backend_->Defragment().ok());
  EXPECT_LT(backend_->SizeBytes(), full);
  EXPECT_EQ(Keys(Bucket::kKey, "", ""), std::vector<std::string>{});
}

TEST_P(BackendContractTest, DefragmentKeepsCommittedAndOutstandingWrites) {
  for (int i = 0; i < 50; ++i) backend_->Put(Bucket::kKey, "k" + std::to_string(i), "old");
  ASSERT_TRUE(backend_->Commit().ok());
  for (int i = 0; i < 50; i += 2) backend_->Delete(Bucket::kKey, "k" + std::to_string(i));
  ASSERT_TRUE(backend_->Commit().ok());
  backend_->Put(Bucket::kKey, "k1", "outstanding");
  backend_->Put(Bucket::kLease, "lease", "outstanding");
  ASSERT_TRUE(backend_->Defragment().ok());
  EXPECT_EQ(Keys(Bucket::kKey, "", "").size(), 25u);
  EXPECT_FALSE(backend_->Get(Bucket::kKey, "k0").has_value());
  EXPECT_EQ(backend_->Get(Bucket::kKey, "k1"), "outstanding");
  EXPECT_EQ(backend_->Get(Bucket::kKey, "k3"), "old");
  EXPECT_EQ(backend_->Get(Bucket::kLease, "lease"), "outstanding");
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  EXPECT_EQ(backend_->Get(Bucket::kKey, "k1"), "outstanding");
}

}  // namespace
}  // namespace kvstore::mvcc
