// The Backend contract (backend.h), run against every implementation: the in-memory one here,
// the LMDB one when the storage work adds it to Backends(). Plus MemoryBackend's crash
// semantics, which the simulator relies on.

#include "core/mvcc/backend.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace kvstore::mvcc {
namespace {

using Factory = std::function<std::unique_ptr<Backend>()>;

std::vector<std::pair<std::string, Factory>> Backends() {
  return {{"memory", [] { return std::make_unique<MemoryBackend>(); }}};
}

class BackendContractTest : public ::testing::TestWithParam<std::pair<std::string, Factory>> {
 protected:
  void SetUp() override { backend_ = GetParam().second(); }

  std::vector<std::string> Keys(Bucket bucket, absl::string_view start, absl::string_view end,
                                size_t stop_after = 0) {
    std::vector<std::string> keys;
    backend_->Range(bucket, start, end, [&](absl::string_view key, absl::string_view) {
      keys.emplace_back(key);
      return stop_after == 0 || keys.size() < stop_after;
    });
    return keys;
  }

  std::unique_ptr<Backend> backend_;
};

TEST_P(BackendContractTest, GetSeesEveryWriteCommittedOrNot) {
  EXPECT_FALSE(backend_->Get(Bucket::kKey, "a").has_value());
  backend_->Put(Bucket::kKey, "a", "1");
  EXPECT_EQ(backend_->Get(Bucket::kKey, "a"), "1");
  backend_->Put(Bucket::kKey, "a", "2");
  EXPECT_EQ(backend_->Get(Bucket::kKey, "a"), "2");
  ASSERT_TRUE(backend_->Commit().ok());
  backend_->Delete(Bucket::kKey, "a");
  EXPECT_FALSE(backend_->Get(Bucket::kKey, "a").has_value());
  backend_->Delete(Bucket::kKey, "never-there");  // deleting a missing key is a no-op
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
}

TEST_P(BackendContractTest, ValuesAreBytes) {
  const std::string value("\0\x01\xff\0", 4);
  backend_->Put(Bucket::kKey, "k", value);
  EXPECT_EQ(backend_->Get(Bucket::kKey, "k"), value);
  std::string seen;
  backend_->Range(Bucket::kKey, "", "", [&](absl::string_view, absl::string_view v) {
    seen = std::string(v);
    return true;
  });
  EXPECT_EQ(seen, value);
}

TEST_P(BackendContractTest, SizeGrowsWithDataAndDefragmentReturnsFreedSpace) {
  const uint64_t empty = backend_->SizeBytes();
  for (int i = 0; i < 100; ++i) backend_->Put(Bucket::kKey, "k" + std::to_string(i), "value");
  ASSERT_TRUE(backend_->Commit().ok());
  const uint64_t full = backend_->SizeBytes();
  EXPECT_GT(full, empty);
  for (int i = 0; i < 100; ++i) backend_->Delete(Bucket::kKey, "k" + std::to_string(i));
  ASSERT_TRUE(backend_->Commit().ok());
  // Like a B+tree file, deletes free pages but the file does not shrink until defragmented.
  EXPECT_GE(backend_->SizeBytes(), full);
  ASSERT_TRUE(backend_->Defragment().ok());
  EXPECT_LT(backend_->SizeBytes(), full);
  EXPECT_EQ(Keys(Bucket::kKey, "", ""), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendContractTest, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param.first; });

// MemoryBackend: what a power loss does. Everything up to the last Commit survives, exactly;
// later writes (puts, overwrites, deletes, in any order) are gone, and so is their size.
TEST(MemoryBackendTest, CrashKeepsExactlyTheCommittedState) {
  MemoryBackend backend;
  backend.Put(Bucket::kKey, "kept", "1");
  backend.Put(Bucket::kKey, "overwritten", "old");
  backend.Put(Bucket::kMeta, "deleted", "x");
  ASSERT_TRUE(backend.Commit().ok());
  const uint64_t committed_size = backend.SizeBytes();

  backend.Put(Bucket::kKey, "overwritten", "new");
  backend.Put(Bucket::kKey, "overwritten", "newer");
  backend.Delete(Bucket::kMeta, "deleted");
  backend.Put(Bucket::kMeta, "deleted", "recreated");
  backend.Put(Bucket::kKey, "added", "2");
  backend.Delete(Bucket::kKey, "kept");
  backend.Crash();

  EXPECT_EQ(backend.Get(Bucket::kKey, "kept"), "1");
  EXPECT_EQ(backend.Get(Bucket::kKey, "overwritten"), "old");
  EXPECT_EQ(backend.Get(Bucket::kMeta, "deleted"), "x");
  EXPECT_FALSE(backend.Get(Bucket::kKey, "added").has_value());
  EXPECT_EQ(backend.SizeBytes(), committed_size);

  // Committed writes after a crash are durable in turn.
  backend.Put(Bucket::kKey, "after", "3");
  ASSERT_TRUE(backend.Commit().ok());
  backend.Crash();
  EXPECT_EQ(backend.Get(Bucket::kKey, "after"), "3");
}

}  // namespace
}  // namespace kvstore::mvcc
