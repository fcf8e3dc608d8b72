// MemoryBackend: the Backend contract suite (core/mvcc/testing/backend_contract.h), and the crash
// semantics the simulator relies on.

#include "core/mvcc/backend.h"

#include <memory>

#include "core/mvcc/testing/backend_contract.h"
#include "gtest/gtest.h"

namespace kvstore::mvcc {
namespace {

// Every Commit durable at once, and batches durable every third Commit (as the simulator runs
// it to exercise the replay of what a crash took).
INSTANTIATE_TEST_SUITE_P(
    Memory, BackendContractTest,
    ::testing::Values(BackendFactory{"memory", [] { return std::make_unique<MemoryBackend>(); }},
                      BackendFactory{
                          "memory_commits_per_flush_3",
                          [] { return std::make_unique<MemoryBackend>(/*commits_per_flush=*/3); }}),
    BackendFactoryName);

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

// Batching: a crash keeps a prefix of the committed batches, never part of one, and never the
// writes after the last Commit, even when a Flush came after them.
TEST(MemoryBackendTest, BatchedCrashKeepsTheFlushedBatchesOnly) {
  MemoryBackend backend(/*commits_per_flush=*/2);
  backend.Put(Bucket::kKey, "batch1", "1");
  ASSERT_TRUE(backend.Commit().ok());
  backend.Put(Bucket::kKey, "batch2", "2");
  ASSERT_TRUE(backend.Commit().ok());  // the second Commit: batches 1 and 2 are durable
  backend.Put(Bucket::kKey, "batch3", "3");
  backend.Delete(Bucket::kKey, "batch1");
  ASSERT_TRUE(backend.Commit().ok());  // pending
  backend.Crash();
  EXPECT_EQ(backend.Get(Bucket::kKey, "batch1"), "1");
  EXPECT_EQ(backend.Get(Bucket::kKey, "batch2"), "2");
  EXPECT_FALSE(backend.Get(Bucket::kKey, "batch3").has_value());

  backend.Put(Bucket::kKey, "batch4", "4");
  ASSERT_TRUE(backend.Commit().ok());  // pending
  backend.Put(Bucket::kKey, "outstanding", "5");
  backend.Put(Bucket::kKey, "batch2", "overwritten");
  ASSERT_TRUE(backend.Flush().ok());
  EXPECT_EQ(backend.Get(Bucket::kKey, "outstanding"), "5");
  backend.Crash();
  EXPECT_EQ(backend.Get(Bucket::kKey, "batch4"), "4");
  EXPECT_EQ(backend.Get(Bucket::kKey, "batch2"), "2");
  EXPECT_FALSE(backend.Get(Bucket::kKey, "outstanding").has_value());
}

}  // namespace
}  // namespace kvstore::mvcc
