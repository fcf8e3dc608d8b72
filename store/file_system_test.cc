// The FileSystem contract (store/file_system.h), run against PosixFileSystem (under a fresh
// directory in TEST_TMPDIR) and SimFileSystem alike, so the simulator's disk behaves like the
// real one wherever no fault or crash is involved. POSIX-only behaviour follows at the end.

#include "store/file_system.h"

#include <stdlib.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/posix_file_system.h"
#include "store/sim_file_system.h"

namespace kvstore::store {
namespace {

using Names = std::vector<std::string>;

enum class Implementation { kPosix, kSim };

// A fresh, empty directory under TEST_TMPDIR (Bazel's per-test scratch space).
std::string MakeTempDir() {
  const char* test_tmpdir = std::getenv("TEST_TMPDIR");
  std::string pattern = JoinPath(test_tmpdir != nullptr ? test_tmpdir : "/tmp", "fs_XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << pattern;
  return pattern;
}

class FileSystemContractTest : public ::testing::TestWithParam<Implementation> {
 protected:
  void SetUp() override {
    if (GetParam() == Implementation::kPosix) {
      fs_ = std::make_unique<PosixFileSystem>();
      dir_ = MakeTempDir();
    } else {
      fs_ = std::make_unique<SimFileSystem>(/*seed=*/1);
      dir_ = "/data";
      ASSERT_TRUE(fs_->CreateDir(dir_).ok());
    }
  }

  std::string PathOf(absl::string_view name) const { return JoinPath(dir_, name); }

  std::unique_ptr<File> OpenOrDie(absl::string_view name, OpenMode mode) {
    auto file = fs_->Open(PathOf(name), mode);
    EXPECT_TRUE(file.ok()) << file.status();
    return file.ok() ? std::move(*file) : nullptr;
  }

  std::string ReadAll(const File& file) {
    std::string out;
    EXPECT_TRUE(file.ReadAt(0, 1 << 20, &out).ok());
    return out;
  }

  void WriteFile(absl::string_view name, absl::string_view content) {
    auto file = OpenOrDie(name, OpenMode::kCreateTruncate);
    ASSERT_TRUE(file->Append(content).ok());
    ASSERT_TRUE(file->Sync().ok());
  }

  std::unique_ptr<FileSystem> fs_;
  std::string dir_;
};

TEST_P(FileSystemContractTest, AppendWriteAtAndRead) {
  auto file = OpenOrDie("a", OpenMode::kCreate);
  ASSERT_TRUE(file->Append("hello").ok());
  ASSERT_TRUE(file->Append(" world").ok());
  ASSERT_TRUE(file->WriteAt(0, "J").ok());
  EXPECT_EQ(ReadAll(*file), "Jello world");
  EXPECT_EQ(*file->Size(), 11u);
  EXPECT_EQ(file->path(), PathOf("a"));

  std::string out;
  ASSERT_TRUE(file->ReadAt(6, 100, &out).ok());
  EXPECT_EQ(out, "world");  // short at the end
  ASSERT_TRUE(file->ReadAt(11, 5, &out).ok());
  EXPECT_EQ(out, "");  // empty past it
  ASSERT_TRUE(file->ReadAt(50, 5, &out).ok());
  EXPECT_EQ(out, "");
}

TEST_P(FileSystemContractTest, WriteAtPastTheEndLeavesZeros) {
  auto file = OpenOrDie("a", OpenMode::kCreate);
  ASSERT_TRUE(file->WriteAt(4, "x").ok());
  EXPECT_EQ(ReadAll(*file), std::string("\0\0\0\0x", 5));
  ASSERT_TRUE(file->Append("y").ok());  // after the write that extended the file
  EXPECT_EQ(ReadAll(*file), std::string("\0\0\0\0xy", 6));
}

TEST_P(FileSystemContractTest, TruncateCutsAndExtendsWithZeros) {
  auto file = OpenOrDie("a", OpenMode::kCreate);
  ASSERT_TRUE(file->Append("abcdef").ok());
  ASSERT_TRUE(file->Truncate(3).ok());
  EXPECT_EQ(ReadAll(*file), "abc");
  ASSERT_TRUE(file->Truncate(6).ok());
  EXPECT_EQ(ReadAll(*file), std::string("abc\0\0\0", 6));
  EXPECT_EQ(*file->Size(), 6u);
  ASSERT_TRUE(file->Append("g").ok());  // at the new end
  EXPECT_EQ(ReadAll(*file), std::string("abc\0\0\0g", 7));
  ASSERT_TRUE(file->Sync().ok());
  ASSERT_TRUE(file->DataSync().ok());
}

TEST_P(FileSystemContractTest, ReopenAppendsAtTheEnd) {
  WriteFile("a", "one");
  auto file = OpenOrDie("a", OpenMode::kReadWrite);
  EXPECT_EQ(*file->Size(), 3u);
  ASSERT_TRUE(file->Append("two").ok());
  EXPECT_EQ(ReadAll(*OpenOrDie("a", OpenMode::kRead)), "onetwo");
}

TEST_P(FileSystemContractTest, OpenModes) {
  EXPECT_EQ(fs_->Open(PathOf("missing"), OpenMode::kRead).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(fs_->Open(PathOf("missing"), OpenMode::kReadWrite).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(fs_->Open(PathOf("no/such/dir"), OpenMode::kCreate).status().code(),
            absl::StatusCode::kNotFound);

  WriteFile("a", "content");
  auto taken = fs_->Open(PathOf("a"), OpenMode::kCreate);
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(absl::StrContains(taken.status().message(), PathOf("a"))) << taken.status();
  EXPECT_EQ(ReadAll(*OpenOrDie("a", OpenMode::kRead)), "content");

  auto emptied = OpenOrDie("a", OpenMode::kCreateTruncate);
  EXPECT_EQ(*emptied->Size(), 0u);
  auto created = OpenOrDie("b", OpenMode::kCreateTruncate);
  EXPECT_EQ(*created->Size(), 0u);
}

TEST_P(FileSystemContractTest, ReadOnlyHandleRefusesWrites) {
  WriteFile("a", "content");
  auto file = OpenOrDie("a", OpenMode::kRead);
  EXPECT_FALSE(file->Append("x").ok());
  EXPECT_FALSE(file->WriteAt(0, "x").ok());
  EXPECT_EQ(ReadAll(*file), "content");
}

TEST_P(FileSystemContractTest, ListIsSortedAndShallow) {
  ASSERT_TRUE(fs_->CreateDir(PathOf("c/nested")).ok());
  WriteFile("b", "");
  WriteFile("a", "");
  WriteFile("a-b", "");
  WriteFile("c/inside", "");
  auto names = fs_->List(dir_);
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(*names, (Names{"a", "a-b", "b", "c"}));
  EXPECT_EQ(*fs_->List(PathOf("c")), (Names{"inside", "nested"}));
  EXPECT_EQ(fs_->List(PathOf("missing")).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(FileSystemContractTest, CreateDirMakesParentsAndAcceptsExisting) {
  ASSERT_TRUE(fs_->CreateDir(PathOf("x/y/z")).ok());
  EXPECT_TRUE(fs_->Exists(PathOf("x/y")));
  EXPECT_TRUE(fs_->Exists(PathOf("x/y/z")));
  EXPECT_TRUE(fs_->CreateDir(PathOf("x/y/z")).ok());
  EXPECT_TRUE(fs_->SyncDir(PathOf("x/y")).ok());
  WriteFile("file", "");
  EXPECT_FALSE(fs_->CreateDir(PathOf("file/sub")).ok());
}

TEST_P(FileSystemContractTest, RenameReplacesTheTarget) {
  WriteFile("old", "new content");
  WriteFile("target", "old content");
  ASSERT_TRUE(fs_->Rename(PathOf("old"), PathOf("target")).ok());
  ASSERT_TRUE(fs_->SyncDir(dir_).ok());
  EXPECT_FALSE(fs_->Exists(PathOf("old")));
  EXPECT_EQ(ReadAll(*OpenOrDie("target", OpenMode::kRead)), "new content");
  EXPECT_EQ(*fs_->List(dir_), Names{"target"});

  absl::Status missing = fs_->Rename(PathOf("old"), PathOf("other"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.message(), PathOf("old"))) << missing;
}

TEST_P(FileSystemContractTest, RemoveAndExists) {
  EXPECT_TRUE(fs_->Exists(dir_));
  WriteFile("a", "x");
  EXPECT_TRUE(fs_->Exists(PathOf("a")));
  ASSERT_TRUE(fs_->Remove(PathOf("a")).ok());
  EXPECT_FALSE(fs_->Exists(PathOf("a")));
  absl::Status missing = fs_->Remove(PathOf("a"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.message(), PathOf("a"))) << missing;
}

TEST_P(FileSystemContractTest, OpenHandleOutlivesRemove) {
  auto file = OpenOrDie("a", OpenMode::kCreate);
  ASSERT_TRUE(file->Append("still here").ok());
  ASSERT_TRUE(fs_->Remove(PathOf("a")).ok());
  EXPECT_EQ(ReadAll(*file), "still here");
  ASSERT_TRUE(file->Append("!").ok());
  EXPECT_EQ(ReadAll(*file), "still here!");
}

TEST_P(FileSystemContractTest, LockIsExclusiveUntilReleased) {
  auto lock = fs_->Lock(PathOf("LOCK"));
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_TRUE(fs_->Exists(PathOf("LOCK")));
  auto second = fs_->Lock(PathOf("LOCK"));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(second.status().message(), PathOf("LOCK"))) << second.status();
  EXPECT_TRUE(absl::StrContains(second.status().message(), "another process")) << second.status();
  lock->reset();
  EXPECT_TRUE(fs_->Lock(PathOf("LOCK")).ok());
}

TEST_P(FileSystemContractTest, SyncDirOfAMissingDirectoryFails) {
  EXPECT_EQ(fs_->SyncDir(PathOf("missing")).code(), absl::StatusCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Both, FileSystemContractTest,
                         ::testing::Values(Implementation::kPosix, Implementation::kSim),
                         [](const ::testing::TestParamInfo<Implementation>& info) {
                           return info.param == Implementation::kPosix ? "Posix" : "Sim";
                         });

TEST(JoinPathTest, PutsOneSlashBetween) {
  EXPECT_EQ(JoinPath("/data/wal", "0001.wal"), "/data/wal/0001.wal");
  EXPECT_EQ(JoinPath("relative", "name"), "relative/name");
}

// --- MakeDirDurable: what a power loss keeps, on the simulated disk ---

TEST(MakeDirDurableTest, NewDirectoriesSurviveAPowerLossWithOneFsyncEachPlusOne) {
  SimFileSystem fs(/*seed=*/1);
  const uint64_t before = fs.synced_ops();
  ASSERT_TRUE(MakeDirDurable(&fs, "/a/b/c").ok());
  // "/", "/a" and "/a/b" for the three entries, "/a/b/c" itself.
  EXPECT_EQ(fs.synced_ops() - before, 4u);
  fs.Crash();
  EXPECT_TRUE(fs.Exists("/a/b/c"));
}

TEST(MakeDirDurableTest, AnExistingDirectoryCostsOneFsync) {
  SimFileSystem fs(/*seed=*/1);
  ASSERT_TRUE(MakeDirDurable(&fs, "/a/b").ok());
  const uint64_t before = fs.synced_ops();
  ASSERT_TRUE(MakeDirDurable(&fs, "/a/b").ok());
  ASSERT_TRUE(MakeDirDurable(&fs, "/a/b/").ok());
  EXPECT_EQ(fs.synced_ops() - before, 2u);
  fs.Crash();
  EXPECT_TRUE(fs.Exists("/a/b"));
}

// A call that stopped (its process died, the machine did not) after any of its steps leaves
// directories whose entries are not all durable yet; the next call, from a new process, makes
// them durable before anything is put in them.
TEST(MakeDirDurableTest, RepairsWhatACallThatDiedMidwayLeft) {
  // The steps of MakeDirDurable("/a/b/c") on an empty disk, in order.
  const std::vector<std::function<void(SimFileSystem&)>> steps = {
      [](SimFileSystem& fs) { ASSERT_TRUE(fs.CreateDir("/a").ok()); },
      [](SimFileSystem& fs) { ASSERT_TRUE(fs.SyncDir("/").ok()); },
      [](SimFileSystem& fs) { ASSERT_TRUE(fs.CreateDir("/a/b").ok()); },
      [](SimFileSystem& fs) { ASSERT_TRUE(fs.SyncDir("/a").ok()); },
      [](SimFileSystem& fs) { ASSERT_TRUE(fs.CreateDir("/a/b/c").ok()); },
      [](SimFileSystem& fs) { ASSERT_TRUE(fs.SyncDir("/a/b").ok()); },
  };
  for (size_t done = 0; done <= steps.size(); ++done) {
    SimFileSystem fs(/*seed=*/done);
    for (size_t i = 0; i < done; ++i) steps[i](fs);
    ASSERT_TRUE(MakeDirDurable(&fs, "/a/b/c").ok()) << done;
    ASSERT_TRUE(WriteFileDurably(&fs, "/a/b/c", "f", "x").ok()) << done;
    fs.Crash();
    EXPECT_EQ(fs.DurableContent("/a/b/c/f"), "x") << "after " << done << " steps";
  }
}

TEST(MakeDirDurableTest, RelativePaths) {
  PosixFileSystem fs;
  const std::string dir = MakeTempDir();
  char* cwd = getcwd(nullptr, 0);
  ASSERT_EQ(chdir(dir.c_str()), 0);
  EXPECT_TRUE(MakeDirDurable(&fs, "x/y").ok());
  EXPECT_TRUE(MakeDirDurable(&fs, "x").ok());
  EXPECT_TRUE(fs.Exists(JoinPath(dir, "x/y")));
  ASSERT_EQ(chdir(cwd), 0);
  free(cwd);
}

// --- POSIX only ---

TEST(PosixFileSystemTest, ErrorsNameOperationPathAndErrno) {
  PosixFileSystem fs;
  const std::string path = JoinPath(MakeTempDir(), "missing");
  absl::Status status = fs.Open(path, OpenMode::kRead).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(status.message(), "open")) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), path)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "No such file or directory (ENOENT)")) << status;
}

TEST(PosixFileSystemTest, FullDiskIsResourceExhausted) {
  PosixFileSystem fs;
  // /dev/full: every write fails with ENOSPC, a full disk on demand.
  auto file = fs.Open("/dev/full", OpenMode::kReadWrite);
  if (!file.ok()) GTEST_SKIP() << "no /dev/full here: " << file.status();
  absl::Status status = (*file)->Append("x");
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "ENOSPC")) << status;
}

TEST(PosixFileSystemTest, AppendsStayInOrderWhileAnotherThreadSyncs) {
  constexpr int kAppends = 2000;
  constexpr absl::string_view kRecord = "0123456789abcdef";
  PosixFileSystem fs;
  auto file = fs.Open(JoinPath(MakeTempDir(), "wal"), OpenMode::kCreate);
  ASSERT_TRUE(file.ok()) << file.status();
  File& wal = **file;
  std::thread syncer([&] {
    for (int i = 0; i < kAppends / 10; ++i) EXPECT_TRUE(wal.DataSync().ok());
  });
  for (int i = 0; i < kAppends; ++i) ASSERT_TRUE(wal.Append(kRecord).ok());
  syncer.join();
  std::string content;
  ASSERT_TRUE(wal.ReadAt(0, kAppends * kRecord.size() + 1, &content).ok());
  std::string expected;
  for (int i = 0; i < kAppends; ++i) absl::StrAppend(&expected, kRecord);
  EXPECT_EQ(content, expected);
}

TEST(PosixFileSystemTest, PreallocationExtendsTheFile) {
  constexpr uint64_t kSegmentBytes = 1 << 20;
  PosixFileSystem fs;
  auto file = fs.Open(JoinPath(MakeTempDir(), "segment"), OpenMode::kCreate);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Truncate(kSegmentBytes).ok());
  EXPECT_EQ(*(*file)->Size(), kSegmentBytes);
  std::string tail;
  ASSERT_TRUE((*file)->ReadAt(kSegmentBytes - 4, 8, &tail).ok());
  EXPECT_EQ(tail, std::string(4, '\0'));
}

}  // namespace
}  // namespace kvstore::store
