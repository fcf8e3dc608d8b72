// crash_child on damaged files (issue "Durable storage" §6): what a real process does when its
// WAL has a flipped byte or a cut tail, or its disk fills up. The WAL's rules (store/wal.h): a
// bad record that valid data follows is corruption, refused with the file, offset and CRCs; a
// bad record at the very end of the newest segment is a torn write, cut, and the member starts.
// A failed write stops the member, and nothing it acknowledged may be lost.

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/crash_process.h"
#include "node/crash_workload.h"
#include "store/file_system.h"
#include "store/posix_file_system.h"
#include "store/wal.h"

namespace kvstore::node::crash {
namespace {

// Small segments, so a few thousand puts fill several and the first is not the newest.
constexpr uint64_t kSegmentBytes = 64 << 10;
// A 64 KiB segment holds some 850 records of these puts.
constexpr uint64_t kPutsForSeveralSegments = 2000;
constexpr uint64_t kPuts = 300;
// The disk-full run: a file size limit a few seconds of puts reach, and more puts than fit.
constexpr uint64_t kFileSizeLimitBytes = 512 << 10;
constexpr uint64_t kPutsPastTheLimit = 1'000'000;
constexpr auto kRunBudget = std::chrono::seconds(30);

std::vector<std::string> StoreFlags(const std::string& dir) {
  return {absl::StrCat("--dir=", dir), absl::StrCat("--wal-segment-bytes=", kSegmentBytes)};
}

SpawnOptions PutOptions(const std::string& dir, uint64_t first, uint64_t count, uint64_t seed) {
  SpawnOptions options;
  options.args = StoreFlags(dir);
  options.args.push_back(absl::StrCat("--first=", first));
  options.args.push_back(absl::StrCat("--count=", count));
  options.args.push_back(absl::StrCat("--seed=", seed));
  return options;
}

// key number -> value of the lines with `prefix`.
std::map<uint64_t, std::string> Parse(const std::vector<OutputLine>& lines,
                                      absl::string_view prefix) {
  std::map<uint64_t, std::string> out;
  for (const OutputLine& line : lines) {
    auto kv = ParseKeyValueLine(line.text, prefix);
    if (!kv.has_value()) continue;
    const std::optional<uint64_t> n = KeyNumber(kv->key);
    EXPECT_TRUE(n.has_value()) << "a key the child never writes: " << line.text;
    if (n.has_value()) out[*n] = kv->value;
  }
  return out;
}

// Puts `count` keys from `first` and expects a clean exit; returns the acknowledged puts.
void PutAll(const std::string& dir, uint64_t first, uint64_t count, uint64_t seed,
            std::map<uint64_t, std::string>* acked) {
  auto run = RunCrashChild(PutOptions(dir, first, count, seed), kRunBudget);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_TRUE(run->exit.Exited(kExitOk)) << run->exit.Describe() << "\n" << run->stderr_text;
  std::map<uint64_t, std::string> got = Parse(run->lines, kAckPrefix);
  ASSERT_EQ(got.size(), count);
  acked->insert(got.begin(), got.end());
}

absl::StatusOr<FinishedChild> Verify(const std::string& dir) {
  SpawnOptions options;
  options.args = StoreFlags(dir);
  options.args.push_back("--verify");
  return RunCrashChild(options, kRunBudget);
}

std::vector<store::WalRecordLocation> Records(const std::string& dir) {
  store::PosixFileSystem fs;
  store::WalOptions options;
  options.segment_bytes = kSegmentBytes;
  auto records = store::ScanWal(&fs, store::JoinPath(dir, "wal"), options);
  EXPECT_TRUE(records.ok()) << records.status();
  return records.ok() ? *records : std::vector<store::WalRecordLocation>{};
}

std::vector<store::WalRecordLocation> EntriesIn(const std::vector<store::WalRecordLocation>& all,
                                                const std::string& path) {
  std::vector<store::WalRecordLocation> entries;
  for (const store::WalRecordLocation& record : all) {
    if (record.path == path && record.type == store::RecordType::kEntry) entries.push_back(record);
  }
  return entries;
}

// Flips every bit of the byte in the middle of `record`'s payload.
void FlipPayloadByte(const store::WalRecordLocation& record) {
  store::PosixFileSystem fs;
  auto file = fs.Open(record.path, store::OpenMode::kReadWrite);
  ASSERT_TRUE(file.ok()) << file.status();
  const uint64_t offset =
      record.offset + store::kRecordHeaderBytes + (record.bytes - store::kRecordHeaderBytes) / 2;
  std::string byte;
  ASSERT_TRUE((*file)->ReadAt(offset, 1, &byte).ok());
  ASSERT_EQ(byte.size(), 1u);
  byte[0] = static_cast<char>(~byte[0]);
  ASSERT_TRUE((*file)->WriteAt(offset, byte).ok());
}

// Cuts `record`'s segment in the middle of the record, as a write torn by a power loss would.
void CutInTheMiddleOf(const store::WalRecordLocation& record) {
  store::PosixFileSystem fs;
  auto file = fs.Open(record.path, store::OpenMode::kReadWrite);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Truncate(record.offset + record.bytes / 2).ok());
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Corrupts the middle entry of the first or the newest segment, which valid records follow, and
// expects --verify to refuse, naming the file and the offset.
void ExpectCorruptionRefused(const std::string& dir, bool newest_segment) {
  std::map<uint64_t, std::string> acked;
  ASSERT_NO_FATAL_FAILURE(PutAll(dir, 1, kPutsForSeveralSegments, /*seed=*/11, &acked));
  const std::vector<store::WalRecordLocation> records = Records(dir);
  ASSERT_FALSE(records.empty());
  const std::string first_path = records.front().path;
  const std::string newest_path = records.back().path;
  ASSERT_NE(first_path, newest_path) << "the puts should have filled more than one segment";
  const std::vector<store::WalRecordLocation> entries =
      EntriesIn(records, newest_segment ? newest_path : first_path);
  ASSERT_GE(entries.size(), 3u) << "need entries on both sides of the damaged one";
  const store::WalRecordLocation target = entries[entries.size() / 2];
  ASSERT_NO_FATAL_FAILURE(FlipPayloadByte(target));

  auto verify = Verify(dir);
  ASSERT_TRUE(verify.ok()) << verify.status();
  EXPECT_TRUE(verify->exit.Exited(kExitStoreRefused)) << verify->exit.Describe() << "\n"
                                                      << verify->stderr_text;
  EXPECT_TRUE(Contains(verify->stderr_text, target.path)) << verify->stderr_text;
  EXPECT_TRUE(Contains(verify->stderr_text, absl::StrCat("offset ", target.offset)))
      << verify->stderr_text;
  EXPECT_TRUE(Contains(verify->stderr_text, "crc")) << verify->stderr_text;
  EXPECT_TRUE(verify->lines.empty())
      << "a refusing store served " << verify->lines.size() << " lines";
}

TEST(CrashFilesTest, FlippedByteInTheFirstSegmentIsRefusedNamingFileAndOffset) {
  const std::string dir = FreshTestDir("flip_first");
  const KeepOnFailure keep{dir};
  ExpectCorruptionRefused(dir, /*newest_segment=*/false);
}

// In the newest segment too: valid records after the bad one mean it is not a torn tail.
TEST(CrashFilesTest, FlippedByteMidwayInTheNewestSegmentIsRefused) {
  const std::string dir = FreshTestDir("flip_newest");
  const KeepOnFailure keep{dir};
  ExpectCorruptionRefused(dir, /*newest_segment=*/true);
}

TEST(CrashFilesTest, TornLastRecordIsCutAndTheStoreGoesOn) {
  const std::string dir = FreshTestDir("torn_last");
  const KeepOnFailure keep{dir};
  std::map<uint64_t, std::string> acked;
  ASSERT_NO_FATAL_FAILURE(PutAll(dir, 1, kPuts, /*seed=*/21, &acked));
  const std::vector<store::WalRecordLocation> records = Records(dir);
  ASSERT_FALSE(records.empty());
  const store::WalRecordLocation last = records.back();
  // After a clean exit the log ends with the hard state that committed the last put: the child
  // answers a put once it is applied, and the commit index that applied it is appended then.
  ASSERT_EQ(last.type, store::RecordType::kHardState);
  ASSERT_NO_FATAL_FAILURE(CutInTheMiddleOf(last));

  auto verify = Verify(dir);
  ASSERT_TRUE(verify.ok()) << verify.status();
  ASSERT_TRUE(verify->exit.Exited(kExitOk)) << verify->exit.Describe() << "\n"
                                            << verify->stderr_text;
  EXPECT_TRUE(Contains(verify->stderr_text,
                       absl::StrCat("torn tail cut in ", last.path, " at offset ", last.offset)))
      << verify->stderr_text;
  // Only a commit index was cut, and the entries it covered are still in the log: the new
  // leader commits them again, so every acknowledged put is served, and nothing else.
  EXPECT_EQ(Parse(verify->lines, kKvPrefix), acked);

  // The store goes on writing after the cut.
  ASSERT_NO_FATAL_FAILURE(PutAll(dir, kPuts + 1, kPuts, /*seed=*/22, &acked));
  verify = Verify(dir);
  ASSERT_TRUE(verify.ok()) << verify.status();
  ASSERT_TRUE(verify->exit.Exited(kExitOk)) << verify->stderr_text;
  EXPECT_EQ(Parse(verify->lines, kKvPrefix), acked);
}

// A cut through the last entry takes a put that was durable and acknowledged, which no crash
// can do (its sync completed): it is damage to the medium. The clean exit flushed the backend,
// which has applied that entry, so the log now ends before the state machine: the store refuses
// to start rather than run with a state machine ahead of its log.
TEST(CrashFilesTest, CutThroughAnEntryTheBackendAppliedIsRefused) {
  const std::string dir = FreshTestDir("torn_entry");
  const KeepOnFailure keep{dir};
  std::map<uint64_t, std::string> acked;
  ASSERT_NO_FATAL_FAILURE(PutAll(dir, 1, kPuts, /*seed=*/31, &acked));
  const std::vector<store::WalRecordLocation> records = Records(dir);
  ASSERT_FALSE(records.empty());
  const std::vector<store::WalRecordLocation> entries = EntriesIn(records, records.back().path);
  ASSERT_FALSE(entries.empty());
  ASSERT_NO_FATAL_FAILURE(CutInTheMiddleOf(entries.back()));

  auto verify = Verify(dir);
  ASSERT_TRUE(verify.ok()) << verify.status();
  EXPECT_TRUE(verify->exit.Exited(kExitStoreRefused)) << verify->exit.Describe() << "\n"
                                                      << verify->stderr_text;
  EXPECT_TRUE(Contains(verify->stderr_text, "beyond the last log index")) << verify->stderr_text;
}

// Fills the disk under a child (RLIMIT_FSIZE: writes past the limit fail with EFBIG) that runs
// with `extra_args`, expects it to stop with its reason on stderr, then expects a run without
// the limit to serve every put it acknowledged.
void ExpectDiskFullStopsCleanly(const std::string& dir,
                                const std::vector<std::string>& extra_args) {
  constexpr uint64_t kSeed = 41;
  SpawnOptions options = PutOptions(dir, 1, kPutsPastTheLimit, kSeed);
  options.args.insert(options.args.end(), extra_args.begin(), extra_args.end());
  options.file_size_limit_bytes = kFileSizeLimitBytes;
  auto run = RunCrashChild(options, kRunBudget);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->exit.Exited(kExitStopped)) << run->exit.Describe() << "\n" << run->stderr_text;
  // The reason names the file that could not be written.
  EXPECT_TRUE(Contains(run->stderr_text, "stopped")) << run->stderr_text;
  EXPECT_TRUE(Contains(run->stderr_text, dir)) << run->stderr_text;
  const std::map<uint64_t, std::string> acked = Parse(run->lines, kAckPrefix);
  ASSERT_FALSE(acked.empty()) << "the limit should leave room for some puts";
  std::printf("disk full after %zu acknowledged puts: %s", acked.size(), run->stderr_text.c_str());

  auto verify = Verify(dir);
  ASSERT_TRUE(verify.ok()) << verify.status();
  ASSERT_TRUE(verify->exit.Exited(kExitOk)) << verify->exit.Describe() << "\n"
                                            << verify->stderr_text;
  const std::map<uint64_t, std::string> present = Parse(verify->lines, kKvPrefix);
  for (const auto& [n, value] : acked) {
    auto it = present.find(n);
    EXPECT_TRUE(it != present.end() && it->second == value)
        << "acknowledged put " << Key(n) << "=" << value << " was lost";
  }
  // Keys are submitted in order, at most kMaxInflightPuts unanswered.
  const uint64_t last_submittable = acked.size() + kMaxInflightPuts;
  for (const auto& [n, value] : present) {
    EXPECT_LE(n, last_submittable) << Key(n) << " appeared though it was never submitted";
    EXPECT_EQ(value, Value(n, kSeed)) << Key(n);
  }
}

// The child flushes its backend ahead of the backend's batch interval, so the commit that meets
// the full disk is its Flush, and it stops with the backend's error.
TEST(CrashFilesTest, DiskFullStopsTheChildAndKeepsEveryAcknowledgedPut) {
  const std::string dir = FreshTestDir("disk_full");
  const KeepOnFailure keep{dir};
  ExpectDiskFullStopsCleanly(dir, {});
}

// Without the loop's flushes every durable backend commit happens inside an apply
// (LmdbBackend::Commit past its batch interval): the server core reports the failed commit in
// its Ready (Ready::storage_failure) and the member stops with the error, as a failed WAL write
// does. No acknowledged put is lost (the WAL holds them).
TEST(CrashFilesTest, DiskFullDuringAnApplyStopsTheMemberCleanly) {
  const std::string dir = FreshTestDir("disk_full_in_apply");
  const KeepOnFailure keep{dir};
  ExpectDiskFullStopsCleanly(dir, {"--flush-interval-ms=0"});
}

}  // namespace
}  // namespace kvstore::node::crash
