// LmdbBackend: the Backend contract suite (core/mvcc/testing/backend_contract.h), then what only
// a file can show: which batches survive a close and reopen. AbandonForTest stands in for
// kill -9 (the open write transaction is lost); the clock is injected, so "within the batch
// interval" is exact.

#include "store/lmdb_backend.h"

#include <stdlib.h>

#include <cctype>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/mvcc/testing/backend_contract.h"
#include "gtest/gtest.h"

namespace kvstore::store {
namespace {

using mvcc::Backend;
using mvcc::BackendContractTest;
using mvcc::BackendFactory;
using mvcc::BackendFactoryName;
using mvcc::Bucket;

// A fresh, empty directory under TEST_TMPDIR (Bazel's per-test scratch space).
std::string MakeTempDir() {
  const char* test_tmpdir = std::getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(test_tmpdir != nullptr ? test_tmpdir : "/tmp", "/lmdb_XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << pattern;
  return pattern;
}

// A backend on a fresh directory whose clock never moves, so batches become durable only
// through batch_limit_commits and Flush.
BackendFactory LmdbFactory(std::string name, int64_t batch_limit_commits) {
  return BackendFactory{std::move(name), [batch_limit_commits]() -> std::unique_ptr<Backend> {
                          LmdbOptions options;
                          options.batch_limit_commits = batch_limit_commits;
                          options.now_ms = [] { return int64_t{0}; };
                          auto backend = LmdbBackend::Open(MakeTempDir(), options);
                          if (!backend.ok()) {
                            ADD_FAILURE() << backend.status();
                            return nullptr;
                          }
                          return *std::move(backend);
                        }};
}

// Every batch in one transaction until Flush, and a durable commit every third batch.
INSTANTIATE_TEST_SUITE_P(Lmdb, BackendContractTest,
                         ::testing::Values(LmdbFactory("lmdb", LmdbOptions().batch_limit_commits),
                                           LmdbFactory("lmdb_limit_3", 3)),
                         BackendFactoryName);

class LmdbBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    options_.now_ms = [this] { return now_ms_; };
    Reopen();
  }

  // Closes the backend (its destructor flushes what is committed) and opens the directory again.
  void Reopen() {
    backend_.reset();
    auto backend = LmdbBackend::Open(dir_, options_);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *std::move(backend);
  }

  // kill -9, then a restart.
  void CrashAndReopen() {
    backend_->AbandonForTest();
    Reopen();
  }

  std::vector<std::string> Contents(Bucket bucket) {
    std::vector<std::string> out;
    backend_->Range(bucket, "", "", [&](absl::string_view key, absl::string_view value) {
      out.push_back(absl::StrCat(key, "=", value));
      return true;
    });
    return out;
  }

  std::string dir_;
  int64_t now_ms_ = 0;
  LmdbOptions options_;
  std::unique_ptr<LmdbBackend> backend_;
};

TEST_F(LmdbBackendTest, FlushedBatchesSurviveACrash) {
  backend_->Put(Bucket::kKey, "a", "1");
  backend_->Put(Bucket::kMeta, "consistent_index", "7");
  ASSERT_TRUE(backend_->Commit().ok());
  backend_->Put(Bucket::kKey, "b", "2");
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  CrashAndReopen();
  EXPECT_EQ(Contents(Bucket::kKey), (std::vector<std::string>{"a=1", "b=2"}));
  EXPECT_EQ(backend_->Get(Bucket::kMeta, "consistent_index"), "7");
}

// A crash keeps a prefix of the committed batches, and never part of one: the batch committed
// within the interval and not flushed is gone entirely (its put, overwrite and delete alike).
TEST_F(LmdbBackendTest, UnflushedBatchIsLostWholeAndFlushedOnesKept) {
  backend_->Put(Bucket::kKey, "kept", "1");
  backend_->Put(Bucket::kKey, "overwritten", "old");
  backend_->Put(Bucket::kMeta, "consistent_index", "1");
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());

  now_ms_ = 10;
  backend_->Put(Bucket::kKey, "added", "2");
  backend_->Put(Bucket::kKey, "overwritten", "new");
  backend_->Delete(Bucket::kKey, "kept");
  backend_->Put(Bucket::kMeta, "consistent_index", "2");
  ASSERT_TRUE(backend_->Commit().ok());
  now_ms_ = 10 + options_.batch_interval_ms - 1;
  backend_->Put(Bucket::kKey, "later", "3");
  backend_->Put(Bucket::kMeta, "consistent_index", "3");
  ASSERT_TRUE(backend_->Commit().ok());
  EXPECT_EQ(Contents(Bucket::kKey),
            (std::vector<std::string>{"added=2", "later=3", "overwritten=new"}));

  CrashAndReopen();
  EXPECT_EQ(Contents(Bucket::kKey), (std::vector<std::string>{"kept=1", "overwritten=old"}));
  EXPECT_EQ(backend_->Get(Bucket::kMeta, "consistent_index"), "1");
}

TEST_F(LmdbBackendTest, IntervalMakesPendingBatchesDurable) {
  now_ms_ = 1000;
  backend_->Put(Bucket::kKey, "first", "1");
  ASSERT_TRUE(backend_->Commit().ok());  // pending since 1000
  now_ms_ = 1000 + options_.batch_interval_ms;
  backend_->Put(Bucket::kKey, "second", "2");
  ASSERT_TRUE(backend_->Commit().ok());  // the interval has passed: both become durable
  backend_->Put(Bucket::kKey, "third", "3");
  ASSERT_TRUE(backend_->Commit().ok());  // pending again, since now
  CrashAndReopen();
  EXPECT_EQ(Contents(Bucket::kKey), (std::vector<std::string>{"first=1", "second=2"}));
}

TEST_F(LmdbBackendTest, BatchLimitMakesPendingBatchesDurable) {
  options_.batch_limit_commits = 3;
  Reopen();
  for (int batch = 1; batch <= 4; ++batch) {
    backend_->Put(Bucket::kKey, absl::StrCat("k", batch), "v");
    ASSERT_TRUE(backend_->Commit().ok());
  }
  CrashAndReopen();
  EXPECT_EQ(Contents(Bucket::kKey), (std::vector<std::string>{"k1=v", "k2=v", "k3=v"}));
}

// Flush commits the committed batches and none of the writes after them: a crash right after
// keeps the batch and loses the outstanding writes, which were visible until then.
TEST_F(LmdbBackendTest, FlushLeavesOutstandingWritesOutOfTheDurableState) {
  backend_->Put(Bucket::kKey, "overwritten", "old");
  backend_->Put(Bucket::kKey, "deleted", "x");
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  backend_->Put(Bucket::kKey, "batch", "1");
  ASSERT_TRUE(backend_->Commit().ok());

  backend_->Put(Bucket::kKey, "overwritten", "new");
  backend_->Delete(Bucket::kKey, "deleted");
  backend_->Put(Bucket::kKey, "outstanding", "2");
  ASSERT_TRUE(backend_->Flush().ok());
  EXPECT_EQ(Contents(Bucket::kKey),
            (std::vector<std::string>{"batch=1", "outstanding=2", "overwritten=new"}));

  CrashAndReopen();
  EXPECT_EQ(Contents(Bucket::kKey),
            (std::vector<std::string>{"batch=1", "deleted=x", "overwritten=old"}));
}

// A clean close is a Flush: committed batches survive, outstanding writes do not.
TEST_F(LmdbBackendTest, CloseFlushesCommittedBatchesOnly) {
  backend_->Put(Bucket::kKey, "committed", "1");
  ASSERT_TRUE(backend_->Commit().ok());
  backend_->Put(Bucket::kKey, "outstanding", "2");
  Reopen();
  EXPECT_EQ(Contents(Bucket::kKey), std::vector<std::string>{"committed=1"});
}

TEST_F(LmdbBackendTest, KeysAndValuesAreBytes) {
  const std::string nul_key("k\0ey", 4);
  const std::string nul_value("\0v\0", 3);
  const std::string big_value(100'000, '\xab');  // spans LMDB overflow pages
  const std::string longest_key(511, '\xff');
  backend_->Put(Bucket::kKey, nul_key, nul_value);
  backend_->Put(Bucket::kKey, "k", "");
  backend_->Put(Bucket::kLease, "big", big_value);
  backend_->Put(Bucket::kDedup, longest_key, "");
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  CrashAndReopen();
  EXPECT_EQ(backend_->Get(Bucket::kKey, nul_key), nul_value);
  EXPECT_EQ(backend_->Get(Bucket::kKey, "k"), "");
  EXPECT_FALSE(backend_->Get(Bucket::kKey, std::string("k\0", 2)).has_value());
  EXPECT_EQ(backend_->Get(Bucket::kLease, "big"), big_value);
  EXPECT_EQ(backend_->Get(Bucket::kDedup, longest_key), "");
  EXPECT_EQ(Contents(Bucket::kKey), (std::vector<std::string>{"k=", nul_key + "=" + nul_value}));
}

// Keys LMDB cannot hold are a caller bug: the backend fails loudly at the next Commit and
// Flush, commits nothing more, and the flushed state survives. Reads of such keys just miss.
TEST_F(LmdbBackendTest, AKeyLongerThanLmdbAllowsFailsTheBackend) {
  backend_->Put(Bucket::kKey, "flushed", "1");
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());

  const std::string too_long(512, 'k');
  EXPECT_FALSE(backend_->Get(Bucket::kKey, too_long).has_value());
  backend_->Delete(Bucket::kKey, too_long);  // never present: a no-op
  EXPECT_TRUE(backend_->Commit().ok());
  backend_->Put(Bucket::kKey, "lost", "2");
  backend_->Put(Bucket::kKey, too_long, "v");
  backend_->Put(Bucket::kKey, "ignored", "3");
  const absl::Status commit = backend_->Commit();
  EXPECT_EQ(commit.code(), absl::StatusCode::kInvalidArgument) << commit;
  EXPECT_TRUE(absl::StrContains(commit.message(), "512-byte key")) << commit;
  EXPECT_TRUE(absl::StrContains(commit.message(), "1 to 511 bytes")) << commit;
  EXPECT_TRUE(absl::StrContains(commit.message(), dir_)) << commit;
  EXPECT_EQ(backend_->Flush(), commit);
  EXPECT_EQ(backend_->Defragment(), commit);
  EXPECT_EQ(Contents(Bucket::kKey), std::vector<std::string>{"flushed=1"});

  Reopen();
  EXPECT_EQ(Contents(Bucket::kKey), std::vector<std::string>{"flushed=1"});
  backend_->Put(Bucket::kKey, "", "v");
  EXPECT_EQ(backend_->Commit().code(), absl::StatusCode::kInvalidArgument);
}

// Range bounds of any length, including past LMDB's key limit, compare as bytes.
TEST_F(LmdbBackendTest, RangeBoundsLongerThanAnyKey) {
  backend_->Put(Bucket::kKey, "a", "1");
  backend_->Put(Bucket::kKey, "b", "2");
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  std::vector<std::string> keys;
  backend_->Range(Bucket::kKey, "a" + std::string(600, '\0'), "b" + std::string(600, '\0'),
                  [&](absl::string_view key, absl::string_view) {
                    keys.emplace_back(key);
                    return true;
                  });
  EXPECT_EQ(keys, std::vector<std::string>{"b"});
}

// Compaction deletes old revisions, a prefix of the kKey bucket: the pages it empties are free
// but stay in the file until Defragment copies the live ones.
TEST_F(LmdbBackendTest, DefragmentKeepsTheDataAndShrinksTheFile) {
  constexpr int kKeys = 5000;
  constexpr int kCompacted = 4500;
  const std::string value(256, 'v');
  for (int i = 0; i < kKeys; ++i) backend_->Put(Bucket::kKey, absl::StrCat("k", 100000 + i), value);
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  const uint64_t full = backend_->SizeBytes();
  EXPECT_GT(full, uint64_t{kKeys} * value.size());
  for (int i = 0; i < kCompacted; ++i)
    backend_->Delete(Bucket::kKey, absl::StrCat("k", 100000 + i));
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  EXPECT_GE(backend_->SizeBytes(), full);

  ASSERT_TRUE(backend_->Defragment().ok());
  EXPECT_LT(backend_->SizeBytes(), full / 4);
  const uint64_t defragmented = backend_->SizeBytes();
  CrashAndReopen();
  EXPECT_EQ(backend_->SizeBytes(), defragmented);
  std::vector<std::string> keys;
  backend_->Range(Bucket::kKey, "", "", [&](absl::string_view key, absl::string_view v) {
    EXPECT_EQ(v, value);
    keys.emplace_back(key);
    return true;
  });
  ASSERT_EQ(keys.size(), size_t{kKeys - kCompacted});
  EXPECT_EQ(keys.front(), absl::StrCat("k", 100000 + kCompacted));
  EXPECT_EQ(keys.back(), absl::StrCat("k", 100000 + kKeys - 1));
}

// etcd's snapshot save off the member's loop: a copy taken on another thread holds everything
// flushed before it began, while the owner goes on writing, reading, committing and even
// defragmenting (which waits for the copy to end before it swaps the file).
TEST_F(LmdbBackendTest, ACopyOnAnotherThreadHoldsWhatWasFlushedWhileWritesGoOn) {
  constexpr int kKeys = 20000;
  const std::string value(200, 'v');
  for (int i = 0; i < kKeys; ++i) backend_->Put(Bucket::kKey, absl::StrCat("k", 100000 + i), value);
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());

  const std::string copy_dir = MakeTempDir();
  absl::Status copied = absl::UnknownError("not run");
  std::thread copier(
      [&] { copied = backend_->CopyCommittedTo(absl::StrCat(copy_dir, "/data.mdb")); });
  for (int round = 0; round < 50; ++round) {
    backend_->Put(Bucket::kKey, absl::StrCat("later", round), "x");
    backend_->Delete(Bucket::kKey, absl::StrCat("k", 100000 + round));
    ASSERT_TRUE(backend_->Commit().ok());
    EXPECT_EQ(backend_->Get(Bucket::kKey, absl::StrCat("later", round)), "x");
    if (round == 25) ASSERT_TRUE(backend_->Defragment().ok());
  }
  copier.join();
  ASSERT_TRUE(copied.ok()) << copied;

  auto copy = LmdbBackend::Open(copy_dir, options_);
  ASSERT_TRUE(copy.ok()) << copy.status();
  int keys = 0;
  (*copy)->Range(Bucket::kKey, "", "", [&](absl::string_view key, absl::string_view v) {
    // The copy began after the flush: every flushed key, and perhaps some later commits.
    if (absl::StartsWith(key, "k")) {
      EXPECT_EQ(v, value);
      ++keys;
    }
    return true;
  });
  EXPECT_GE(keys, kKeys - 50);
  EXPECT_EQ((*copy)->Get(Bucket::kKey, absl::StrCat("k", 100000 + kKeys - 1)), value);
  // The owner's own state went on: every later write is there, defragmented or not.
  EXPECT_EQ(backend_->Get(Bucket::kKey, "later49"), "x");
  EXPECT_EQ(backend_->Get(Bucket::kKey, "k100000"), std::nullopt);
}

// Kilobytes of `path` this process has resident through its maps (/proc/self/smaps).
int64_t MappedResidentKb(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_file = false;
  int64_t kb = 0;
  while (std::getline(smaps, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find('-') != std::string::npos && line.find(' ') > line.find('-')) {
      in_file = absl::EndsWith(line, path);  // a mapping's first line ends with its file
    } else if (in_file && absl::StartsWith(line, "Rss:")) {
      int64_t value = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(4, line.size() - 7)), &value)) {
        kb += value;
      }
    }
  }
  return kb;
}

// A read through the whole file maps every page; a few commits later the backend has dropped
// them from the process again (see "Resident memory" in lmdb_backend.h), and every value reads
// back the same.
TEST_F(LmdbBackendTest, CommitsReleaseTheMapsResidentPages) {
  constexpr int kKeys = 20000;
  const std::string value(256, 'v');
  for (int i = 0; i < kKeys; ++i) backend_->Put(Bucket::kKey, absl::StrCat("k", 100000 + i), value);
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  const std::string data_file = absl::StrCat(dir_, "/data.mdb");
  const int64_t file_kb = static_cast<int64_t>(backend_->SizeBytes() / 1024);
  ASSERT_GT(file_kb, 4096);
  int read = 0;
  backend_->Range(Bucket::kKey, "", "", [&](absl::string_view, absl::string_view v) {
    EXPECT_EQ(v, value);
    ++read;
    return true;
  });
  ASSERT_EQ(read, kKeys);
  EXPECT_GT(MappedResidentKb(data_file), file_kb / 2);

  for (int64_t i = 0; i < LmdbBackend::kReleaseMapEveryCommits; ++i) {
    backend_->Put(Bucket::kMeta, "consistent_index", absl::StrCat(i));
    ASSERT_TRUE(backend_->Commit().ok());
    ASSERT_TRUE(backend_->Flush().ok());
  }
  EXPECT_LT(MappedResidentKb(data_file), file_kb / 8);
  EXPECT_EQ(backend_->Get(Bucket::kKey, absl::StrCat("k", 100000 + kKeys / 2)), value);
}

TEST_F(LmdbBackendTest, AWriteInsideARangeVisitorIsABug) {
  backend_->Put(Bucket::kKey, "a", "1");
  ASSERT_TRUE(backend_->Commit().ok());
  ASSERT_TRUE(backend_->Flush().ok());
  EXPECT_DEATH(backend_->Range(Bucket::kKey, "", "",
                               [&](absl::string_view, absl::string_view) {
                                 backend_->Put(Bucket::kKey, "b", "2");
                                 return true;
                               }),
               "a write inside a Range visitor");
}

TEST(LmdbBackendOpenTest, RefusesBadOptionsAndAMissingParent) {
  const std::string dir = absl::StrCat(MakeTempDir(), "/missing_parent/dir");
  auto backend = LmdbBackend::Open(dir, LmdbOptions());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kNotFound) << backend.status();
  EXPECT_TRUE(absl::StrContains(backend.status().message(), dir)) << backend.status();
  LmdbOptions bad;
  bad.batch_limit_commits = 0;
  EXPECT_EQ(LmdbBackend::Open(MakeTempDir(), bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvstore::store
