// The simulated disk's durability model and faults (store/sim_file_system.h). Crash outcomes are
// seeded, so each property is checked over many seeds: what must hold for every seed, and that
// each allowed outcome (lost, kept, torn) does occur for some seed.

#include "store/sim_file_system.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/raft/rand.h"
#include "gtest/gtest.h"

namespace kvstore::store {
namespace {

constexpr uint64_t kSeeds = 200;
constexpr uint64_t kSectorBytes = SimFileSystem::kSectorBytes;
constexpr char kDir[] = "/d";
constexpr char kFile[] = "/d/f";

std::unique_ptr<File> OpenOrDie(SimFileSystem& fs, const std::string& path, OpenMode mode) {
  auto file = fs.Open(path, mode);
  EXPECT_TRUE(file.ok()) << file.status();
  return file.ok() ? std::move(*file) : nullptr;
}

std::string ReadAll(SimFileSystem& fs, const std::string& path) {
  std::string out;
  EXPECT_TRUE(OpenOrDie(fs, path, OpenMode::kRead)->ReadAt(0, 1 << 20, &out).ok());
  return out;
}

// `kDir` and `path` in it, both durable, `path` holding `content` durably.
void MakeDurableFile(SimFileSystem& fs, const std::string& path, absl::string_view content) {
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  ASSERT_TRUE(fs.SyncDir("/").ok());
  auto file = OpenOrDie(fs, path, OpenMode::kCreateTruncate);
  ASSERT_TRUE(file->Append(content).ok());
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(fs.SyncDir(kDir).ok());
  ASSERT_FALSE(fs.HasUnsynced(path));
}

TEST(SimFileSystemTest, SyncedWritesSurviveAndUnsyncedOnesMayNot) {
  int lost = 0;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    SimFileSystem fs(seed);
    MakeDurableFile(fs, kFile, "synced");
    {
      auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
      ASSERT_TRUE(file->Append("unsynced").ok());
      EXPECT_TRUE(fs.HasUnsynced(kFile));
      EXPECT_EQ(*fs.DurableContent(kFile), "synced");
      fs.Crash();
    }
    const std::string content = ReadAll(fs, kFile);
    ASSERT_TRUE(absl::StartsWith(content, "synced")) << "seed " << seed;
    // The unsynced append is one sector: lost, or there (whole, torn or garbled).
    ASSERT_TRUE(content.size() == 6 || content.size() == 14) << "seed " << seed;
    if (content.size() == 6) ++lost;
    EXPECT_FALSE(fs.HasUnsynced(kFile));
  }
  EXPECT_GT(lost, 0);
}

TEST(SimFileSystemTest, TornWriteKeepsASectorPrefixWithTheLastSectorPossiblyGarbled) {
  constexpr uint64_t kSectors = 4;
  std::string data;
  for (uint64_t i = 0; i < kSectors * kSectorBytes; ++i) data.push_back('a' + i % 26);
  int lost = 0, whole = 0, torn = 0, garbled = 0;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    SimFileSystem fs(seed);
    MakeDurableFile(fs, kFile, "");
    {
      auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
      ASSERT_TRUE(file->WriteAt(0, data).ok());
      fs.Crash();
    }
    const std::string content = *fs.DurableContent(kFile);
    if (content.empty()) {
      ++lost;
    } else if (content == data) {
      ++whole;
    } else {
      ++torn;
      ASSERT_EQ(content.size() % kSectorBytes, 0u) << "seed " << seed;
      ASSERT_LE(content.size(), data.size()) << "seed " << seed;
      const size_t intact_bytes = content.size() - kSectorBytes;
      ASSERT_EQ(content.substr(0, intact_bytes), data.substr(0, intact_bytes)) << "seed " << seed;
      if (content.substr(intact_bytes) != data.substr(intact_bytes, kSectorBytes)) ++garbled;
    }
  }
  EXPECT_GT(lost, 0);
  EXPECT_GT(whole, 0);
  EXPECT_GT(torn, 0);
  EXPECT_GT(garbled, 0);
}

TEST(SimFileSystemTest, UnsyncedWritesReachTheDiskInOrder) {
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    SimFileSystem fs(seed);
    MakeDurableFile(fs, kFile, "");
    {
      auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
      for (char c : {'a', 'b', 'c'}) ASSERT_TRUE(file->Append(std::string(kSectorBytes, c)).ok());
      fs.Crash();
    }
    const std::string content = *fs.DurableContent(kFile);
    ASSERT_EQ(content.size() % kSectorBytes, 0u);
    // Every sector but the last is the one written there; a later write never lands without the
    // earlier ones.
    for (size_t sector = 0; sector + 1 < content.size() / kSectorBytes; ++sector) {
      EXPECT_EQ(content.substr(sector * kSectorBytes, kSectorBytes),
                std::string(kSectorBytes, 'a' + sector))
          << "seed " << seed;
    }
  }
}

TEST(SimFileSystemTest, CreationIsDurableOnlyAfterSyncDir) {
  int lost = 0;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    for (bool sync_dir : {false, true}) {
      SimFileSystem fs(seed);
      ASSERT_TRUE(fs.CreateDir(kDir).ok());
      ASSERT_TRUE(fs.SyncDir("/").ok());
      {
        auto file = OpenOrDie(fs, kFile, OpenMode::kCreate);
        ASSERT_TRUE(file->Append("x").ok());
        ASSERT_TRUE(file->Sync().ok());  // the bytes, not the name
        EXPECT_TRUE(fs.HasUnsynced(kFile));
        if (sync_dir) {
          ASSERT_TRUE(fs.SyncDir(kDir).ok());
        }
        fs.Crash();
      }
      if (sync_dir) {
        ASSERT_TRUE(fs.Exists(kFile)) << "seed " << seed;
        EXPECT_EQ(ReadAll(fs, kFile), "x");
      } else if (!fs.Exists(kFile)) {
        ++lost;
        EXPECT_EQ(fs.file_count(), 0u);
      }
    }
  }
  EXPECT_GT(lost, 0);
}

TEST(SimFileSystemTest, UnsyncedDirectoryOperationsSurviveAsAPrefix) {
  int kept_first_only = 0;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    SimFileSystem fs(seed);
    ASSERT_TRUE(fs.CreateDir(kDir).ok());
    ASSERT_TRUE(fs.SyncDir("/").ok());
    OpenOrDie(fs, "/d/first", OpenMode::kCreate);
    OpenOrDie(fs, "/d/second", OpenMode::kCreate);
    fs.Crash();
    ASSERT_FALSE(fs.Exists("/d/second") && !fs.Exists("/d/first")) << "seed " << seed;
    if (fs.Exists("/d/first") && !fs.Exists("/d/second")) ++kept_first_only;
  }
  EXPECT_GT(kept_first_only, 0);
}

TEST(SimFileSystemTest, FilesInALostDirectoryAreLostWithIt) {
  int lost = 0;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    SimFileSystem fs(seed);
    ASSERT_TRUE(fs.CreateDir(kDir).ok());  // not synced in "/"
    OpenOrDie(fs, kFile, OpenMode::kCreate);
    ASSERT_TRUE(fs.SyncDir(kDir).ok());
    fs.Crash();
    if (!fs.Exists(kDir)) {
      ++lost;
      EXPECT_EQ(fs.file_count(), 0u) << "seed " << seed;
    }
  }
  EXPECT_GT(lost, 0);
}

TEST(SimFileSystemTest, RenameIsAtomicAndDurableAfterSyncDir) {
  int old_names = 0, new_names = 0;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    for (bool sync_dir : {false, true}) {
      SimFileSystem fs(seed);
      MakeDurableFile(fs, "/d/final", "v1");
      MakeDurableFile(fs, "/d/final.tmp", "v2");
      ASSERT_TRUE(fs.Rename("/d/final.tmp", "/d/final").ok());
      EXPECT_TRUE(fs.HasUnsynced("/d/final"));
      if (sync_dir) {
        ASSERT_TRUE(fs.SyncDir(kDir).ok());
      }
      fs.Crash();
      ASSERT_TRUE(fs.Exists("/d/final"));
      if (fs.Exists("/d/final.tmp")) {
        ASSERT_FALSE(sync_dir) << "seed " << seed;
        EXPECT_EQ(ReadAll(fs, "/d/final"), "v1");
        EXPECT_EQ(ReadAll(fs, "/d/final.tmp"), "v2");
        ++old_names;
      } else {
        EXPECT_EQ(ReadAll(fs, "/d/final"), "v2");
        if (!sync_dir) ++new_names;
      }
    }
  }
  EXPECT_GT(old_names, 0);
  EXPECT_GT(new_names, 0);
}

TEST(SimFileSystemTest, SyncedRemovalIsDurable) {
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    SimFileSystem fs(seed);
    MakeDurableFile(fs, kFile, "data");
    ASSERT_TRUE(fs.Remove(kFile).ok());
    ASSERT_TRUE(fs.SyncDir(kDir).ok());
    EXPECT_FALSE(fs.HasUnsynced(kFile));
    fs.Crash();
    EXPECT_FALSE(fs.Exists(kFile)) << "seed " << seed;
  }
}

TEST(SimFileSystemTest, UnsyncedRemovalMayBeUndone) {
  int came_back = 0;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    SimFileSystem fs(seed);
    MakeDurableFile(fs, kFile, "data");
    ASSERT_TRUE(fs.Remove(kFile).ok());
    EXPECT_TRUE(fs.HasUnsynced(kFile));
    fs.Crash();
    if (fs.Exists(kFile)) {
      ++came_back;
      EXPECT_EQ(ReadAll(fs, kFile), "data");
    }
  }
  EXPECT_GT(came_back, 0);
}

TEST(SimFileSystemTest, FailedSyncPoisonsTheFile) {
  for (uint64_t seed = 0; seed < kSeeds / 10; ++seed) {
    SimFileSystem fs(seed);
    MakeDurableFile(fs, kFile, "a");
    {
      auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
      ASSERT_TRUE(file->Append("b").ok());
      fs.FailNextSync("/d/");
      absl::Status failed = file->Sync();
      EXPECT_EQ(failed.code(), absl::StatusCode::kInternal);
      EXPECT_TRUE(absl::StrContains(failed.message(), "EIO")) << failed;
      EXPECT_TRUE(absl::StrContains(failed.message(), kFile)) << failed;
      // fsyncgate: a retry must not pretend the write reached the disk.
      EXPECT_FALSE(file->Sync().ok());
      EXPECT_FALSE(file->DataSync().ok());
      EXPECT_EQ(*fs.DurableContent(kFile), "a");
      EXPECT_EQ(ReadAll(fs, kFile), "ab");  // the current view still has it
      fs.Crash();
    }
    EXPECT_EQ(ReadAll(fs, kFile), "a") << "seed " << seed;
    // After the crash the file is healthy again.
    auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
    ASSERT_TRUE(file->Append("c").ok());
    ASSERT_TRUE(file->Sync().ok());
    EXPECT_EQ(*fs.DurableContent(kFile), "ac");
  }
}

TEST(SimFileSystemTest, FailedSyncDirLeavesTheOperationsUnsynced) {
  SimFileSystem fs(1);
  ASSERT_TRUE(fs.CreateDir(kDir).ok());
  ASSERT_TRUE(fs.SyncDir("/").ok());
  OpenOrDie(fs, kFile, OpenMode::kCreate);
  fs.FailNextSync(kDir);
  EXPECT_EQ(fs.SyncDir(kDir).code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(fs.HasUnsynced(kFile));
  ASSERT_TRUE(fs.SyncDir(kDir).ok());
  EXPECT_FALSE(fs.HasUnsynced(kFile));
}

TEST(SimFileSystemTest, FailedWriteChangesNothing) {
  SimFileSystem fs(1);
  MakeDurableFile(fs, kFile, "abc");
  auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
  fs.FailNextWrite(kFile);
  absl::Status failed = file->Append("def");
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(failed.message(), "EIO")) << failed;
  EXPECT_EQ(ReadAll(fs, kFile), "abc");
  EXPECT_FALSE(fs.HasUnsynced(kFile));
  ASSERT_TRUE(file->Append("def").ok());  // one-shot
  EXPECT_EQ(ReadAll(fs, kFile), "abcdef");

  fs.set_faults({.write_eio_per_million = SimFileSystem::kPerMillion});
  EXPECT_FALSE(file->WriteAt(0, "x").ok());
  EXPECT_FALSE(file->Truncate(0).ok());
  EXPECT_EQ(ReadAll(fs, kFile), "abcdef");
}

TEST(SimFileSystemTest, FullDiskWritesNothing) {
  SimFileSystem fs(1, {.capacity_bytes = 100});
  MakeDurableFile(fs, kFile, std::string(60, 'a'));
  auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
  absl::Status full = file->Append(std::string(50, 'b'));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(full.message(), "ENOSPC")) << full;
  EXPECT_EQ(*file->Size(), 60u);
  EXPECT_FALSE(fs.HasUnsynced(kFile));
  EXPECT_EQ(file->Truncate(101).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(file->WriteAt(90, std::string(20, 'c')).code(), absl::StatusCode::kResourceExhausted);
  // Overwriting and growing up to the capacity need no new space beyond it.
  EXPECT_TRUE(file->WriteAt(0, std::string(60, 'c')).ok());
  EXPECT_TRUE(file->Append(std::string(40, 'd')).ok());
  EXPECT_EQ(*file->Size(), 100u);
}

TEST(SimFileSystemTest, FlippedBitIsSeenByEveryLaterRead) {
  SimFileSystem fs(1);
  MakeDurableFile(fs, kFile, "hello");
  ASSERT_TRUE(fs.FlipBit(kFile, 0, 0).ok());
  EXPECT_EQ(ReadAll(fs, kFile), "iello");  // 'h' ^ 1
  EXPECT_EQ(*fs.DurableContent(kFile), "iello");
  fs.Crash();
  EXPECT_EQ(ReadAll(fs, kFile), "iello");
  EXPECT_EQ(fs.FlipBit(kFile, 5, 0).code(), absl::StatusCode::kOutOfRange);

  absl::StatusOr<uint64_t> offset = fs.CorruptRandomDurableByte(kFile);
  ASSERT_TRUE(offset.ok()) << offset.status();
  ASSERT_LT(*offset, 5u);
  const std::string corrupted = ReadAll(fs, kFile);
  const unsigned char difference = corrupted[*offset] ^ std::string("iello")[*offset];
  EXPECT_EQ(difference & (difference - 1), 0) << "exactly one bit";
  EXPECT_NE(difference, 0);
  EXPECT_EQ(corrupted.substr(0, *offset), std::string("iello").substr(0, *offset));
  EXPECT_EQ(corrupted.substr(*offset + 1), std::string("iello").substr(*offset + 1));
}

TEST(SimFileSystemTest, HandlesAndLocksFromBeforeACrashAreDead) {
  SimFileSystem fs(1);
  MakeDurableFile(fs, kFile, "data");
  auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
  auto lock = fs.Lock("/d/LOCK");
  ASSERT_TRUE(lock.ok());
  fs.Crash();

  std::string out;
  for (const absl::Status& status :
       {file->Append("x"), file->WriteAt(0, "x"), file->ReadAt(0, 1, &out), file->Sync(),
        file->DataSync(), file->Truncate(0), file->Size().status()}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_TRUE(absl::StrContains(status.message(), "stale handle after crash")) << status;
  }
  // The crash released the lock (if its file survived at all); the dead lock's destruction must
  // not release the new holder's.
  auto relock = fs.Lock("/d/LOCK");
  ASSERT_TRUE(relock.ok()) << relock.status();
  lock->reset();
  EXPECT_EQ(fs.Lock("/d/LOCK").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadAll(fs, kFile), "data");
}

// The sparse contents against a flat string: random overlapping writes, appends and truncates.
TEST(SimFileSystemTest, ContentsMatchAFlatModel) {
  constexpr int kOperations = 2000;
  constexpr uint64_t kSpanBytes = 4 * kSectorBytes;
  raft::SplitMix64 rng(7);
  SimFileSystem fs(1);
  MakeDurableFile(fs, kFile, "");
  auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
  std::string model;
  for (int i = 0; i < kOperations; ++i) {
    const uint64_t offset = rng.Uniform(kSpanBytes);
    const std::string data(rng.Uniform(kSectorBytes), static_cast<char>('a' + i % 26));
    switch (rng.Uniform(4)) {
      case 0:
        ASSERT_TRUE(file->Append(data).ok());
        model += data;
        break;
      case 1:
        ASSERT_TRUE(file->Truncate(offset).ok());
        model.resize(offset);
        break;
      default:
        ASSERT_TRUE(file->WriteAt(offset, data).ok());
        if (!data.empty()) {
          model.resize(std::max<uint64_t>(model.size(), offset + data.size()));
          model.replace(offset, data.size(), data);
        }
        break;
    }
    if (rng.Uniform(10) == 0) ASSERT_TRUE(file->Sync().ok());
    std::string window;
    ASSERT_TRUE(file->ReadAt(offset, kSectorBytes, &window).ok());
    ASSERT_EQ(window, offset < model.size() ? model.substr(offset, kSectorBytes) : "") << i;
  }
  ASSERT_TRUE(file->Sync().ok());
  EXPECT_EQ(ReadAll(fs, kFile), model);
  EXPECT_EQ(*fs.DurableContent(kFile), model);
}

TEST(SimFileSystemTest, PreallocationDoesNotAllocate) {
  constexpr uint64_t kSegmentBytes = 64 << 20;
  SimFileSystem fs(1);
  MakeDurableFile(fs, kFile, "");
  auto file = OpenOrDie(fs, kFile, OpenMode::kReadWrite);
  ASSERT_TRUE(file->Truncate(kSegmentBytes).ok());
  ASSERT_TRUE(file->WriteAt(0, std::string(4096, 'x')).ok());
  ASSERT_TRUE(file->Sync().ok());
  EXPECT_EQ(*file->Size(), kSegmentBytes);
  EXPECT_LT(fs.stored_bytes(), 3 * 4096u);  // durable and current copies of the written bytes
  std::string tail;
  ASSERT_TRUE(file->ReadAt(kSegmentBytes - 4, 8, &tail).ok());
  EXPECT_EQ(tail, std::string(4, '\0'));
  fs.Crash();
  auto reopened = OpenOrDie(fs, kFile, OpenMode::kRead);
  EXPECT_EQ(*reopened->Size(), kSegmentBytes);
  EXPECT_LT(fs.stored_bytes(), 3 * 4096u);
}

TEST(SimFileSystemTest, LatencyIsSeededWithinTheRangeTimesSlowness) {
  SimFileSystem fs(1, {.latency_micros_min = 10, .latency_micros_max = 20, .slowness = 3});
  constexpr int kOperations = 100;
  for (int i = 0; i < kOperations; ++i) fs.Exists("/x");
  const uint64_t micros = fs.TakeLatencyMicros();
  EXPECT_GE(micros, kOperations * 10 * 3u);
  EXPECT_LE(micros, kOperations * 20 * 3u);
  EXPECT_NE(micros, kOperations * 10 * 3u);  // not all at the minimum
  EXPECT_EQ(fs.TakeLatencyMicros(), 0u);
}

TEST(SimFileSystemTest, IntrospectionCountsSyncsAndFiles) {
  SimFileSystem fs(1);
  EXPECT_EQ(fs.synced_ops(), 0u);
  MakeDurableFile(fs, kFile, "x");  // SyncDir("/"), Sync, SyncDir(kDir)
  EXPECT_EQ(fs.synced_ops(), 3u);
  EXPECT_EQ(fs.file_count(), 1u);
  EXPECT_EQ(fs.DurableContent("/d/missing"), std::nullopt);
  EXPECT_EQ(fs.DurableContent(kDir), std::nullopt);
  EXPECT_EQ(fs.Open("relative", OpenMode::kCreate).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(fs.Exists("//d///f/"));  // repeated and trailing slashes are ignored
}

// A workload with every kind of unsynced operation and a crash, summarized: what survived.
std::string RunAndCrash(uint64_t seed) {
  SimFileSystem fs(seed, {.latency_micros_min = 1, .latency_micros_max = 100});
  EXPECT_TRUE(fs.CreateDir(kDir).ok());
  EXPECT_TRUE(fs.SyncDir("/").ok());
  for (int i = 0; i < 8; ++i) {
    auto file = OpenOrDie(fs, absl::StrCat(kDir, "/", i), OpenMode::kCreate);
    EXPECT_TRUE(file->Append(std::string(3 * kSectorBytes, 'a' + i)).ok());
    if (i % 2 == 0) {
      EXPECT_TRUE(file->Sync().ok());
    }
    EXPECT_TRUE(file->Append(std::string(2 * kSectorBytes, 'A' + i)).ok());
    EXPECT_TRUE(file->Truncate(4 * kSectorBytes).ok());
    if (i == 4) {
      EXPECT_TRUE(fs.SyncDir(kDir).ok());
    }
  }
  EXPECT_TRUE(fs.Rename("/d/1", "/d/renamed").ok());
  EXPECT_TRUE(fs.Remove("/d/2").ok());
  fs.Crash();
  std::string summary = absl::StrCat("latency ", fs.TakeLatencyMicros(), "\n");
  const absl::StatusOr<std::vector<std::string>> names = fs.List(kDir);
  EXPECT_TRUE(names.ok()) << names.status();
  for (const std::string& name : *names) {
    absl::StrAppend(&summary, name, " ", *fs.DurableContent(JoinPath(kDir, name)), "\n");
  }
  return summary;
}

TEST(SimFileSystemTest, SameSeedSameOutcome) {
  for (uint64_t seed = 0; seed < 20; ++seed) EXPECT_EQ(RunAndCrash(seed), RunAndCrash(seed));
  EXPECT_NE(RunAndCrash(1), RunAndCrash(2));
}

}  // namespace
}  // namespace kvstore::store
