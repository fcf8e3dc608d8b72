// The write-ahead log on real files: replay, segments, compaction, received snapshots, group
// commit, and recovery from a torn tail or corruption (store/wal.h); and, on the simulated disk,
// what a crash leaves of a compaction that overlapped a segment cut.

#include "store/wal.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/posix_file_system.h"
#include "store/sim_file_system.h"
#include "store/snapshot_file.h"

namespace kvstore::store {
namespace {

raft::Entry MakeEntry(raft::Index index, raft::Term term, const std::string& data = "") {
  raft::Entry e;
  e.index = index;
  e.term = term;
  e.data = raft::Bytes(data.empty() ? absl::StrCat("entry-", index, "-", term) : data);
  return e;
}

// Entries [first, last] of `term`.
std::vector<raft::Entry> Entries(raft::Index first, raft::Index last, raft::Term term) {
  std::vector<raft::Entry> entries;
  for (raft::Index i = first; i <= last; ++i) entries.push_back(MakeEntry(i, term));
  return entries;
}

class WalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = JoinPath(
        tmp != nullptr ? tmp : "/tmp",
        absl::StrCat("wal_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    ASSERT_EQ(std::system(absl::StrCat("rm -rf '", dir_, "'").c_str()), 0);
  }

  std::unique_ptr<Wal> OpenWal(WalOptions options = {}) {
    auto wal = Wal::Open(&fs_, dir_, options);
    EXPECT_TRUE(wal.ok()) << wal.status();
    return wal.ok() ? std::move(*wal) : nullptr;
  }

  // Appends entries [first, last] of `term` and a hard state, and syncs them.
  void Write(Wal& wal, raft::Index first, raft::Index last, raft::Term term, uint64_t id) {
    const std::vector<raft::Entry> entries = Entries(first, last, term);
    raft::PersistRequest request;
    request.id = id;
    request.entries = entries;
    request.hard_state = raft::HardState{term, 1, first > 1 ? first - 1 : 0};
    ASSERT_TRUE(wal.AppendAndSync(request).ok());
  }

  // Compacts to `mark` and syncs, so the removals of covered segments are durable.
  static ::testing::AssertionResult CompactDurably(Wal& wal, const raft::SnapshotMetadata& mark) {
    if (absl::Status compacted = wal.Compact(mark); !compacted.ok()) {
      return ::testing::AssertionFailure() << "compact: " << compacted;
    }
    auto batch = wal.StartSync();
    if (!batch.ok()) return ::testing::AssertionFailure() << "start sync: " << batch.status();
    if (*batch == nullptr) return ::testing::AssertionFailure() << "nothing to sync";
    if (absl::Status synced = wal.FinishSync(**batch, (*batch)->Run()); !synced.ok()) {
      return ::testing::AssertionFailure() << "finish sync: " << synced;
    }
    return ::testing::AssertionSuccess();
  }

  static std::string Describe(const raft::RestartState& state) {
    std::string out;
    if (state.snapshot != nullptr) {
      absl::StrAppend(&out, "snap@", state.snapshot->metadata.index, "/",
                      state.snapshot->metadata.term, " ");
    }
    for (const raft::Entry& e : state.entries) absl::StrAppend(&out, e.index, "/", e.term, " ");
    absl::StrAppend(&out, "hs=", state.hard_state.term, ",", state.hard_state.vote, ",",
                    state.hard_state.commit);
    return out;
  }

  PosixFileSystem fs_;
  std::string dir_;
};

TEST_F(WalTest, EmptyDirectoryStartsAnEmptyLog) {
  auto wal = OpenWal();
  EXPECT_EQ(wal->recovery().state.entries.size(), 0u);
  EXPECT_EQ(wal->segment_count(), 1u);
  EXPECT_EQ(wal->last_index(), 0u);
  wal.reset();
  wal = OpenWal();
  EXPECT_EQ(Describe(wal->recovery().state), "hs=0,0,0");
}

TEST_F(WalTest, ReplayRebuildsEntriesHardStateAndConflictingSuffixes) {
  {
    auto wal = OpenWal();
    Write(*wal, 1, 5, 1, 1);
    // A new leader's entries replace the suffix from index 4 (Raft §5.3).
    Write(*wal, 4, 6, 2, 2);
    EXPECT_EQ(wal->durable_last_index(), 6u);
    EXPECT_EQ(wal->DurableTerm(4), 2u);
  }
  auto wal = OpenWal();
  EXPECT_EQ(Describe(wal->recovery().state), "1/1 2/1 3/1 4/2 5/2 6/2 hs=2,1,3");
  EXPECT_EQ(wal->recovery().state.entries[3].data.view(), "entry-4-2");
  // Appends continue after what was recovered.
  Write(*wal, 7, 7, 2, 3);
  wal.reset();
  wal = OpenWal();
  EXPECT_EQ(Describe(wal->recovery().state), "1/1 2/1 3/1 4/2 5/2 6/2 7/2 hs=2,1,6");
}

TEST_F(WalTest, SegmentsRollOverAndCompactionDropsWholeSegments) {
  WalOptions options;
  options.segment_bytes = 4096;
  auto wal = OpenWal(options);
  for (uint64_t i = 1; i <= 200; ++i) Write(*wal, i, i, 1, i);
  const uint64_t segments = wal->segment_count();
  EXPECT_GT(segments, 3u);
  raft::SnapshotMetadata mark;
  mark.index = 150;
  mark.term = 1;
  mark.conf_state.voters = {1, 2, 3};
  ASSERT_TRUE(CompactDurably(*wal, mark));
  EXPECT_LT(wal->segment_count(), segments);
  EXPECT_EQ(wal->durable_snapshot_index(), 150u);
  wal.reset();

  wal = OpenWal(options);
  const raft::RestartState& state = wal->recovery().state;
  ASSERT_NE(state.snapshot, nullptr);
  EXPECT_EQ(state.snapshot->metadata.index, 150u);
  EXPECT_EQ(state.snapshot->metadata.conf_state.voters, (std::vector<raft::NodeId>{1, 2, 3}));
  EXPECT_FALSE(wal->recovery().snapshot_has_data);
  ASSERT_EQ(state.entries.size(), 50u);
  EXPECT_EQ(state.entries.front().index, 151u);
  EXPECT_EQ(state.entries.back().index, 200u);
  EXPECT_EQ(state.applied, 150u);
}

// A segment in the middle of the log went missing (a lost file, fsck): the run after the gap is
// not anchored by any snapshot marker, so recovery refuses to start, and the segments before the
// gap, which still hold the log's beginning, stay on disk for the operator. (Segments before a
// gap are removed only when the run after it recovers: compaction's leftovers.)
TEST_F(WalTest, AMissingMiddleSegmentRefusesAndRemovesNothing) {
  WalOptions options;
  options.segment_bytes = 4096;
  {
    auto wal = OpenWal(options);
    for (uint64_t i = 1; i <= 200; ++i) Write(*wal, i, i, 1, i);
    ASSERT_GT(wal->segment_count(), 3u);
  }
  auto segments = [&] {
    std::vector<std::string> names;
    auto listed = fs_.List(dir_);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (listed.ok()) {
      for (const std::string& name : *listed) {
        if (absl::EndsWith(name, ".wal")) names.push_back(name);
      }
    }
    std::sort(names.begin(), names.end());
    return names;
  };
  std::vector<std::string> before = segments();
  ASSERT_TRUE(fs_.Remove(JoinPath(dir_, before[1])).ok());
  before.erase(before.begin() + 1);

  auto wal = Wal::Open(&fs_, dir_, options);
  ASSERT_FALSE(wal.ok());
  EXPECT_EQ(wal.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(absl::StrContains(wal.status().message(), "segments are missing")) << wal.status();
  EXPECT_EQ(segments(), before);
}

// Found by the simulator (fuzz seed 969): a new leader rewrote an entry that lay in the previous
// segment, then compaction removed that segment. The remaining segment starts with an entry
// above the rewritten one; recovery must start the log again at the rewrite.
TEST_F(WalTest, RewriteBelowTheFirstEntryOfTheOldestSegmentRecovers) {
  WalOptions options;
  options.segment_bytes = 4096;
  auto wal = OpenWal(options);
  raft::Index last = 0;
  while (wal->segment_count() < 2) {
    ++last;
    Write(*wal, last, last, 1, last);
  }
  // `last` opened segment 2; a new leader of term 2 replaces the log from last - 1.
  Write(*wal, last - 1, last + 3, 2, last + 1);
  raft::SnapshotMetadata mark;
  mark.index = last + 1;
  mark.term = 2;
  ASSERT_TRUE(CompactDurably(*wal, mark));
  ASSERT_EQ(wal->segment_count(), 1u);
  wal.reset();
  wal = OpenWal(options);
  ASSERT_NE(wal, nullptr);
  const raft::RestartState& state = wal->recovery().state;
  ASSERT_NE(state.snapshot, nullptr);
  EXPECT_EQ(state.snapshot->metadata.index, last + 1);
  ASSERT_EQ(state.entries.size(), 2u);
  EXPECT_EQ(state.entries[0].index, last + 2);
  EXPECT_EQ(state.entries[1].term, 2u);
}

// Found by the simulator (fuzz seed 226): an isolated member campaigned for a long time and
// filled whole segments with hard states alone, then took entries again; a compaction covered
// every segment but the newest, and a crash kept only the first of the removals (names are
// volatile until the directory is synced, and a crash keeps a prefix of their order). The
// remaining run begins with segments holding no entries, whose marker predates the log's first
// entry; the marker that covers the gap comes later. Recovery must start the log at its first
// entry, not refuse with "entries are missing".
TEST_F(WalTest, SegmentsWithoutEntriesBeforeTheLogStartRecoverAfterAPartialCompaction) {
  WalOptions options;
  options.segment_bytes = 4096;
  auto wal = OpenWal(options);
  Write(*wal, 1, 20, 1, 1);
  raft::SnapshotMetadata mark;
  mark.index = 10;
  mark.term = 1;
  ASSERT_TRUE(wal->Compact(mark).ok());
  uint64_t id = 2;
  raft::Term term = 1;
  // Campaigns: hard states only, until two more segments hold nothing else.
  const uint64_t before = wal->segment_count();
  while (wal->segment_count() < before + 2) {
    raft::PersistRequest request;
    request.id = id++;
    request.hard_state = raft::HardState{++term, 1, 20};
    ASSERT_TRUE(wal->AppendAndSync(request).ok());
  }
  // Leader again: entries until a further segment holds two of them.
  raft::Index last = 20;
  raft::Index first_of_newest = 0;
  const uint64_t campaign_segments = wal->segment_count();
  while (first_of_newest == 0 || last < first_of_newest + 1) {
    ++last;
    Write(*wal, last, last, term, id++);
    if (first_of_newest == 0 && wal->segment_count() > campaign_segments) first_of_newest = last;
  }
  const std::vector<std::string> paths = wal->SegmentPaths();
  ASSERT_GE(paths.size(), 4u);
  std::vector<std::string> contents;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    contents.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  mark.index = last - 1;
  mark.term = term;
  ASSERT_TRUE(CompactDurably(*wal, mark));
  ASSERT_EQ(wal->segment_count(), 1u);
  wal.reset();
  // The crash undid every removal but the first: the segment with entries 11..20 is gone.
  for (size_t i = 1; i + 1 < paths.size(); ++i) {
    std::ofstream out(paths[i], std::ios::binary | std::ios::trunc);
    out.write(contents[i].data(), static_cast<std::streamsize>(contents[i].size()));
    ASSERT_TRUE(out.good());
  }
  wal = OpenWal(options);
  ASSERT_NE(wal, nullptr);
  const raft::RestartState& state = wal->recovery().state;
  ASSERT_NE(state.snapshot, nullptr);
  EXPECT_EQ(state.snapshot->metadata.index, last - 1);
  ASSERT_EQ(state.entries.size(), 1u);
  EXPECT_EQ(state.entries[0].index, last);
  EXPECT_EQ(state.hard_state.term, term);
  EXPECT_EQ(wal->recovery().segments, paths.size() - 1);
}

TEST_F(WalTest, ReceivedSnapshotReplacesTheLogAndKeepsItsDataInAFile) {
  {
    auto wal = OpenWal();
    Write(*wal, 1, 3, 1, 1);
    auto snapshot = std::make_shared<raft::Snapshot>();
    snapshot->metadata.index = 10;
    snapshot->metadata.term = 2;
    snapshot->metadata.conf_state.voters = {1, 2};
    snapshot->data = raft::Bytes("the whole backend");
    raft::PersistRequest request;
    request.id = 2;
    request.snapshot = snapshot;
    request.hard_state = raft::HardState{2, 0, 10};
    ASSERT_TRUE(wal->AppendAndSync(request).ok());
    Write(*wal, 11, 12, 2, 3);
  }
  auto wal = OpenWal();
  EXPECT_EQ(Describe(wal->recovery().state), "snap@10/2 11/2 12/2 hs=2,1,10");
  ASSERT_TRUE(wal->recovery().snapshot_has_data);
  auto data = wal->ReadSnapshotData(wal->recovery().state.snapshot->metadata);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->view(), "the whole backend");
}

// Found by the simulator (fuzz seed 300713, 5 nodes): a follower installed a snapshot, and while
// the sync that made its marker durable ran, the next append cut a new segment. When that sync
// finished, every segment but the newest was removed, the one holding the marker and the hard
// state too; the new segment's header repeats both, but nothing had synced it. A crash then left
// a log with no durable record at all: the member forgot its term and vote (Raft's one durable
// promise) and refused to start, its backend ahead of its log. The marker's segment now stays.
TEST(WalCrashTest, TheSegmentOfAMarkerStaysWhileANewerSegmentIsUnsynced) {
  SimFileSystem fs(/*seed=*/7);
  WalOptions options;
  options.segment_bytes = 4096;
  const std::string dir = "/wal";
  std::string marker_segment;
  {
    auto opened = Wal::Open(&fs, dir, options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    Wal& wal = **opened;
    // Entries of an old log, then the snapshot marker, in the first segment.
    const std::vector<raft::Entry> old_log = Entries(1, 5, 1);
    raft::PersistRequest request;
    request.id = 1;
    request.entries = old_log;
    request.hard_state = raft::HardState{1, 1, 0};
    ASSERT_TRUE(wal.AppendAndSync(request).ok());
    auto snapshot = std::make_shared<raft::Snapshot>();
    snapshot->metadata.index = 10;
    snapshot->metadata.term = 2;
    snapshot->metadata.conf_state.voters = {1, 2, 3};
    raft::PersistRequest install;
    install.id = 2;
    install.snapshot = snapshot;
    install.hard_state = raft::HardState{2, 3, 10};
    ASSERT_TRUE(wal.Append(install).ok());
    ASSERT_EQ(wal.segment_count(), 1u);
    marker_segment = wal.SegmentPaths().front();
    auto batch = wal.StartSync();
    ASSERT_TRUE(batch.ok() && *batch != nullptr);
    // While it runs: an entry too large for what is left of the segment cuts the next one.
    const std::vector<raft::Entry> large = {MakeEntry(11, 2, std::string(3900, 'x'))};
    raft::PersistRequest next;
    next.id = 3;
    next.entries = large;
    ASSERT_TRUE(wal.Append(next).ok());
    ASSERT_EQ(wal.segment_count(), 2u);
    ASSERT_TRUE(wal.FinishSync(**batch, (*batch)->Run()).ok());
    EXPECT_EQ(wal.durable_snapshot_index(), 10u);
    // The marker's segment stays: the newer one is not durable.
    EXPECT_EQ(wal.segment_count(), 2u);
    EXPECT_TRUE(fs.Exists(marker_segment));
    // Whatever reaches the disk of the directory's changes.
    ASSERT_TRUE(fs.SyncDir(dir).ok());
  }
  fs.Crash();
  auto reopened = Wal::Open(&fs, dir, options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  const raft::RestartState& state = (*reopened)->recovery().state;
  EXPECT_EQ(state.hard_state.term, 2u);
  EXPECT_EQ(state.hard_state.vote, 3u);
  ASSERT_NE(state.snapshot, nullptr);
  EXPECT_EQ(state.snapshot->metadata.index, 10u);
}

// A received snapshot's file stays while its marker is the durable one, though a later marker
// without data (a compaction) has been appended: a crash before that one is durable recovers
// the received marker, which reads its data from the file.
TEST(WalCrashTest, TheDurableMarkersSnapshotFileStaysUntilALaterMarkerIsDurable) {
  SimFileSystem fs(/*seed=*/7);
  const std::string dir = "/wal";
  raft::SnapshotMetadata received;
  received.index = 10;
  received.term = 2;
  received.conf_state.voters = {1, 2, 3};
  {
    auto opened = Wal::Open(&fs, dir, WalOptions{});
    ASSERT_TRUE(opened.ok()) << opened.status();
    Wal& wal = **opened;
    auto snapshot = std::make_shared<raft::Snapshot>();
    snapshot->metadata = received;
    snapshot->data = raft::Bytes("the backend at 10");
    raft::PersistRequest install;
    install.id = 1;
    install.snapshot = snapshot;
    install.hard_state = raft::HardState{2, 3, 10};
    ASSERT_TRUE(wal.Append(install).ok());
    auto batch = wal.StartSync();
    ASSERT_TRUE(batch.ok() && *batch != nullptr);
    // While it runs: entries after the snapshot, and a compaction marker among them.
    const std::vector<raft::Entry> entries = Entries(11, 20, 2);
    raft::PersistRequest next;
    next.id = 2;
    next.entries = entries;
    ASSERT_TRUE(wal.Append(next).ok());
    raft::SnapshotMetadata compaction;
    compaction.index = 15;
    compaction.term = 2;
    compaction.conf_state.voters = {1, 2, 3};
    ASSERT_TRUE(wal.Compact(compaction).ok());
    ASSERT_TRUE(wal.FinishSync(**batch, (*batch)->Run()).ok());
    EXPECT_EQ(wal.durable_snapshot_index(), 10u);
    ASSERT_TRUE(fs.SyncDir(dir).ok());  // whatever reaches the disk of the directory's changes
  }
  fs.Crash();
  auto reopened = Wal::Open(&fs, dir, WalOptions{});
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  const raft::RestartState& state = (*reopened)->recovery().state;
  ASSERT_NE(state.snapshot, nullptr);
  EXPECT_EQ(state.snapshot->metadata.index, 10u);
  ASSERT_TRUE((*reopened)->recovery().snapshot_has_data);
  auto data = (*reopened)->ReadSnapshotData(state.snapshot->metadata);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->view(), "the backend at 10");
}

// A process killed before its sync leaves its last appends readable (the page cache keeps them)
// but not durable. Raft takes what recovery reports as persisted (a vote, entries acknowledged
// to a leader), so the restart makes it durable before reporting it: a power loss afterwards
// keeps it.
TEST(WalCrashTest, WhatRecoveryReportsSurvivesAPowerLossAfterAProcessKill) {
  // A power loss keeps a seeded part of what was never synced: over 20 disks, some lose it.
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(absl::StrCat("disk seed ", seed));
    SimFileSystem fs(seed);
    const std::string dir = "/wal";
    {
      auto opened = Wal::Open(&fs, dir, WalOptions{});
      ASSERT_TRUE(opened.ok()) << opened.status();
      const std::vector<raft::Entry> first = Entries(1, 3, 1);
      raft::PersistRequest synced;
      synced.id = 1;
      synced.entries = first;
      synced.hard_state = raft::HardState{1, 1, 0};
      ASSERT_TRUE((*opened)->AppendAndSync(synced).ok());
      const std::vector<raft::Entry> second = Entries(4, 6, 2);
      raft::PersistRequest written;
      written.id = 2;
      written.entries = second;
      written.hard_state = raft::HardState{2, 2, 3};
      ASSERT_TRUE((*opened)->Append(written).ok());
      auto batch = (*opened)->StartSync();  // written to the file; the process dies in the fsync
      ASSERT_TRUE(batch.ok() && *batch != nullptr);
    }
    {
      auto restarted = Wal::Open(&fs, dir, WalOptions{});
      ASSERT_TRUE(restarted.ok()) << restarted.status();
      EXPECT_EQ((*restarted)->durable_last_index(), 6u);
      EXPECT_EQ((*restarted)->recovery().state.hard_state.term, 2u);
    }
    fs.Crash();
    auto after = Wal::Open(&fs, dir, WalOptions{});
    ASSERT_TRUE(after.ok()) << after.status();
    const raft::RestartState& state = (*after)->recovery().state;
    ASSERT_FALSE(state.entries.empty());
    EXPECT_EQ(state.entries.back().index, 6u);
    EXPECT_EQ(state.hard_state.term, 2u);
    EXPECT_EQ(state.hard_state.vote, 2u);
  }
}

// Two snapshots received within one sync: when the marker before them becomes durable, neither
// one's file is removed, though only the latest is the marker a new segment would repeat.
TEST(WalCrashTest, SnapshotFilesOfMarkersAwaitingTheirSyncStay) {
  SimFileSystem fs(/*seed=*/7);
  const std::string dir = "/wal";
  auto opened = Wal::Open(&fs, dir, WalOptions{});
  ASSERT_TRUE(opened.ok()) << opened.status();
  Wal& wal = **opened;
  auto install = [&](raft::Index index, uint64_t id) {
    auto snapshot = std::make_shared<raft::Snapshot>();
    snapshot->metadata.index = index;
    snapshot->metadata.term = 2;
    snapshot->metadata.conf_state.voters = {1, 2, 3};
    snapshot->data = raft::Bytes(absl::StrCat("the backend at ", index));
    raft::PersistRequest request;
    request.id = id;
    request.snapshot = snapshot;
    request.hard_state = raft::HardState{2, 3, index};
    return wal.Append(request);
  };
  ASSERT_TRUE(install(10, 1).ok());
  auto batch = wal.StartSync();
  ASSERT_TRUE(batch.ok() && *batch != nullptr);
  ASSERT_TRUE(install(20, 2).ok());
  ASSERT_TRUE(install(30, 3).ok());
  ASSERT_TRUE(wal.FinishSync(**batch, (*batch)->Run()).ok());
  EXPECT_EQ(wal.durable_snapshot_index(), 10u);
  for (raft::Index index : {10, 20, 30}) {
    EXPECT_TRUE(fs.Exists(JoinPath(dir, SnapshotFileName(2, index)))) << "snapshot " << index;
  }
}

TEST_F(WalTest, GroupCommitTakesEveryAppendMadeWhileASyncRuns) {
  auto wal = OpenWal();
  std::vector<raft::Entry> first = {MakeEntry(1, 1)};
  raft::PersistRequest request;
  request.id = 1;
  request.entries = first;
  ASSERT_TRUE(wal->Append(request).ok());
  auto batch1 = wal->StartSync();
  ASSERT_TRUE(batch1.ok() && *batch1 != nullptr);
  EXPECT_EQ((*batch1)->persist_id(), 1u);
  // Arrives while batch 1 runs: waits for the next batch.
  for (uint64_t id = 2; id <= 4; ++id) {
    std::vector<raft::Entry> more = {MakeEntry(id, 1)};
    request.id = id;
    request.entries = more;
    ASSERT_TRUE(wal->Append(request).ok());
  }
  auto none = wal->StartSync();
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);  // one batch in flight at a time
  ASSERT_TRUE((*batch1)->Run().ok());
  ASSERT_TRUE(wal->FinishSync(**batch1, absl::OkStatus()).ok());
  EXPECT_EQ(wal->durable_last_index(), 1u);
  EXPECT_EQ(wal->last_index(), 4u);
  auto batch2 = wal->StartSync();
  ASSERT_TRUE(batch2.ok() && *batch2 != nullptr);
  EXPECT_EQ((*batch2)->persist_id(), 4u);  // three appends, one sync
  ASSERT_TRUE(wal->FinishSync(**batch2, (*batch2)->Run()).ok());
  EXPECT_EQ(wal->durable_last_index(), 4u);
}

TEST_F(WalTest, ACommitOnlyHardStateWaitsForTheNextSyncAnotherWriteNeeds) {
  auto wal = OpenWal();
  Write(*wal, 1, 1, 1, /*id=*/1);
  raft::PersistRequest commit;
  commit.id = 2;
  commit.hard_state = raft::HardState{1, 1, 1};
  ASSERT_TRUE(wal->Append(commit, /*needs_sync=*/false).ok());
  EXPECT_FALSE(wal->HasUnsynced());  // nothing asks for a sync
  auto none = wal->StartSync();
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
  // The next write that needs a sync carries the commit-only record with it.
  std::vector<raft::Entry> next = {MakeEntry(2, 1)};
  raft::PersistRequest append;
  append.id = 3;
  append.entries = next;
  ASSERT_TRUE(wal->Append(append).ok());
  EXPECT_TRUE(wal->HasUnsynced());
  auto batch = wal->StartSync();
  ASSERT_TRUE(batch.ok() && *batch != nullptr);
  EXPECT_EQ((*batch)->persist_id(), 3u);
  ASSERT_TRUE(wal->FinishSync(**batch, (*batch)->Run()).ok());
  wal.reset();
  auto reopened = OpenWal();
  EXPECT_EQ(Describe(reopened->recovery().state), "1/1 2/1 hs=1,1,1");
}

TEST_F(WalTest, AFailedSyncFailsTheLogForGood) {
  auto wal = OpenWal();
  std::vector<raft::Entry> entries = {MakeEntry(1, 1)};
  raft::PersistRequest request;
  request.id = 1;
  request.entries = entries;
  ASSERT_TRUE(wal->Append(request).ok());
  auto batch = wal->StartSync();
  ASSERT_TRUE(batch.ok() && *batch != nullptr);
  const absl::Status failed =
      wal->FinishSync(**batch, absl::InternalError("fdatasync /x: Input/output error"));
  EXPECT_FALSE(failed.ok());
  EXPECT_TRUE(absl::StrContains(failed.message(), "member stops")) << failed;
  EXPECT_EQ(wal->durable_last_index(), 0u);
  // Never retried as if it had worked.
  EXPECT_FALSE(wal->Append(request).ok());
  EXPECT_FALSE(wal->StartSync().ok());
}

TEST_F(WalTest, TornTailIsCutAndTheMemberStarts) {
  std::string segment;
  {
    auto wal = OpenWal();
    Write(*wal, 1, 3, 1, 1);
    Write(*wal, 4, 4, 1, 2);
    segment = wal->SegmentPaths().back();
  }
  // Find where entry 4's record starts by reopening the segment: garble its last bytes, as a
  // write cut by a power loss would.
  auto file = fs_.Open(segment, OpenMode::kReadWrite);
  ASSERT_TRUE(file.ok());
  std::string data;
  ASSERT_TRUE((*file)->ReadAt(0, 1 << 20, &data).ok());
  const size_t end = data.find_last_not_of('\0') + 1;
  ASSERT_TRUE((*file)->WriteAt(end - 3, "XYZ").ok());
  file->reset();

  auto wal = OpenWal();
  const WalRecovery& recovery = wal->recovery();
  EXPECT_EQ(recovery.torn_file, segment);
  EXPECT_GT(recovery.torn_offset, 0u);
  // The record of the last write (hard state 1,1,3) is dropped, entry 4 stays.
  EXPECT_EQ(Describe(recovery.state), "1/1 2/1 3/1 4/1 hs=1,1,0");
  Write(*wal, 5, 5, 1, 3);
  wal.reset();
  wal = OpenWal();
  EXPECT_EQ(Describe(wal->recovery().state), "1/1 2/1 3/1 4/1 5/1 hs=1,1,4");
  EXPECT_TRUE(wal->recovery().torn_file.empty());
}

TEST_F(WalTest, FileCutShortInARecordIsATornTail) {
  std::string segment;
  {
    WalOptions options;
    auto wal = OpenWal(options);
    Write(*wal, 1, 2, 1, 1);
    segment = wal->SegmentPaths().back();
  }
  auto file = fs_.Open(segment, OpenMode::kReadWrite);
  ASSERT_TRUE(file.ok());
  std::string data;
  ASSERT_TRUE((*file)->ReadAt(0, 1 << 20, &data).ok());
  const size_t end = data.find_last_not_of('\0') + 1;
  ASSERT_TRUE((*file)->Truncate(end - 5).ok());
  file->reset();
  auto wal = OpenWal();
  EXPECT_EQ(Describe(wal->recovery().state), "1/1 2/1 hs=0,0,0");
}

// A record longer than a whole segment goes alone into a fresh segment and extends the file past
// its preallocated size. A crash in its write leaves the file anywhere short of the record's end:
// below the preallocated size (the rest still zeros), at it, or beyond it. Each is a torn tail,
// not corruption (fuzz seed 69595561373521: 8 KiB segments, a 13 KiB put, "record length 13147
// runs past the end of the file" refused a member that had only crashed).
TEST_F(WalTest, AnOversizedRecordCutShortAnywhereIsATornTail) {
  WalOptions options;
  options.segment_bytes = 8192;
  const std::string big(20000, 'v');
  for (const uint64_t keep : {uint64_t{600}, uint64_t{8192}, uint64_t{12000}, uint64_t{20000}}) {
    SCOPED_TRACE(absl::StrCat("file cut to ", keep, " bytes"));
    ASSERT_EQ(std::system(absl::StrCat("rm -rf '", dir_, "'").c_str()), 0);
    std::string segment;
    {
      auto wal = OpenWal(options);
      ASSERT_NE(wal, nullptr);
      Write(*wal, 1, 2, 1, 1);
      const std::vector<raft::Entry> entries = {MakeEntry(3, 1, big)};
      raft::PersistRequest request;
      request.id = 2;
      request.entries = entries;  // a span: the vector outlives the append
      ASSERT_TRUE(wal->AppendAndSync(request).ok());
      segment = wal->SegmentPaths().back();
    }
    auto file = fs_.Open(segment, OpenMode::kReadWrite);
    ASSERT_TRUE(file.ok());
    auto size = (*file)->Size();
    ASSERT_TRUE(size.ok());
    ASSERT_GT(*size, options.segment_bytes);  // the record extended its segment
    ASSERT_LT(keep, *size);
    // What a torn write leaves: a prefix of the record, zeros up to the preallocated size.
    ASSERT_TRUE((*file)->Truncate(keep).ok());
    if (keep < options.segment_bytes) ASSERT_TRUE((*file)->Truncate(options.segment_bytes).ok());
    file->reset();
    auto wal = OpenWal(options);
    ASSERT_NE(wal, nullptr);
    EXPECT_EQ(wal->recovery().torn_file, segment);
    EXPECT_EQ(Describe(wal->recovery().state), "1/1 2/1 hs=1,1,0");
  }
}

TEST_F(WalTest, CorruptionBeforeTheTailRefusesToStartNamingFileOffsetAndChecksums) {
  std::string segment;
  {
    auto wal = OpenWal();
    for (uint64_t i = 1; i <= 10; ++i) Write(*wal, i, i, 1, i);
    segment = wal->SegmentPaths().back();
  }
  auto file = fs_.Open(segment, OpenMode::kReadWrite);
  ASSERT_TRUE(file.ok());
  std::string data;
  ASSERT_TRUE((*file)->ReadAt(0, 1 << 20, &data).ok());
  const size_t at = data.find("entry-5-1");
  ASSERT_NE(at, std::string::npos);
  ASSERT_TRUE((*file)->WriteAt(at + 2, "X").ok());  // one byte in the middle of the log
  file->reset();

  auto wal = Wal::Open(&fs_, dir_);
  ASSERT_FALSE(wal.ok());
  EXPECT_EQ(wal.status().code(), absl::StatusCode::kDataLoss);
  const std::string message(wal.status().message());
  EXPECT_TRUE(absl::StrContains(message, segment)) << message;
  EXPECT_TRUE(absl::StrContains(message, "at offset")) << message;
  EXPECT_TRUE(absl::StrContains(message, "expected crc")) << message;
  EXPECT_TRUE(absl::StrContains(message, "found")) << message;
}

TEST_F(WalTest, CorruptionOfAnOldSegmentRefusesToStart) {
  WalOptions options;
  options.segment_bytes = 4096;
  std::string first_segment;
  {
    auto wal = OpenWal(options);
    for (uint64_t i = 1; i <= 100; ++i) Write(*wal, i, i, 1, i);
    ASSERT_GE(wal->segment_count(), 2u);
    first_segment = wal->SegmentPaths().front();
  }
  auto file = fs_.Open(first_segment, OpenMode::kReadWrite);
  ASSERT_TRUE(file.ok());
  std::string data;
  ASSERT_TRUE((*file)->ReadAt(0, 4096, &data).ok());
  const size_t end = data.find_last_not_of('\0') + 1;
  // Even the last record of an old segment is corruption: that segment was synced before the
  // next one was created.
  ASSERT_TRUE((*file)->WriteAt(end - 1, "\x55").ok());
  file->reset();
  auto wal = Wal::Open(&fs_, dir_, options);
  ASSERT_FALSE(wal.ok());
  EXPECT_TRUE(absl::StrContains(wal.status().message(), first_segment)) << wal.status();
}

// Recovery reads a segment a chunk (1 MiB) at a time: records that straddle chunks, one larger
// than a chunk, and the zero tail after them read back exactly.
TEST_F(WalTest, RecordsAcrossRecoveryReadChunksReplayExactly) {
  std::vector<raft::Entry> entries;
  for (raft::Index i = 1; i <= 3000; ++i) {
    entries.push_back(MakeEntry(i, 1, std::string(700 + i % 613, static_cast<char>('a' + i % 26))));
  }
  entries.push_back(MakeEntry(3001, 1, std::string(size_t{3} << 19, 'z')));  // 1.5 MiB
  entries.push_back(MakeEntry(3002, 1, "last"));
  {
    auto wal = OpenWal();
    raft::PersistRequest request;
    request.id = 1;
    request.entries = entries;
    request.hard_state = raft::HardState{1, 1, 3002};
    ASSERT_TRUE(wal->AppendAndSync(request).ok());
    ASSERT_EQ(wal->segment_count(), 1u);
  }
  auto wal = OpenWal();
  const raft::RestartState& state = wal->recovery().state;
  ASSERT_EQ(state.entries.size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(state.entries[i].index, entries[i].index);
    EXPECT_EQ(state.entries[i].data.view(), entries[i].data.view()) << "entry " << i + 1;
  }
  EXPECT_EQ(state.hard_state.commit, 3002u);
  EXPECT_TRUE(wal->recovery().torn_file.empty());
}

// Megabytes into a segment: a torn last record is cut as anywhere else; a stray byte far past
// the records, or a record whose garbled length spans the valid records after it, is
// corruption (the reader has slid past them to check the zeros, and must look back).
class WalLargeSegmentTest : public WalTest {
 protected:
  static constexpr int kEntries = 30;
  static constexpr size_t kEntryBytes = 100 << 10;  // 3 MiB of records in all

  // Writes the entries, one sync each; returns the segment.
  std::string WriteLarge() {
    auto wal = OpenWal();
    for (raft::Index i = 1; i <= kEntries; ++i) {
      const std::vector<raft::Entry> entries = {
          MakeEntry(i, 1, std::string(kEntryBytes, static_cast<char>('a' + i)))};
      raft::PersistRequest request;
      request.id = i;
      request.entries = entries;  // a span
      EXPECT_TRUE(wal->AppendAndSync(request).ok());
    }
    EXPECT_EQ(wal->segment_count(), 1u);
    return wal->SegmentPaths().back();
  }

  void Damage(const std::string& segment, uint64_t offset, const std::string& bytes) {
    auto file = fs_.Open(segment, OpenMode::kReadWrite);
    ASSERT_TRUE(file.ok());
    ASSERT_TRUE((*file)->WriteAt(offset, bytes).ok());
  }

  // Where the records end.
  uint64_t RecordsEnd() {
    auto records = ScanWal(&fs_, dir_);
    EXPECT_TRUE(records.ok()) << records.status();
    return records->back().offset + records->back().bytes;
  }

  void ExpectCorruption(const std::string& segment, absl::string_view reason) {
    auto wal = Wal::Open(&fs_, dir_);
    ASSERT_FALSE(wal.ok());
    EXPECT_EQ(wal.status().code(), absl::StatusCode::kDataLoss) << wal.status();
    EXPECT_TRUE(absl::StrContains(wal.status().message(), segment)) << wal.status();
    EXPECT_TRUE(absl::StrContains(wal.status().message(), reason)) << wal.status();
  }
};

TEST_F(WalLargeSegmentTest, TornLastRecordIsCut) {
  const std::string segment = WriteLarge();
  Damage(segment, RecordsEnd() - 3, "XYZ");
  auto wal = OpenWal();
  EXPECT_EQ(wal->recovery().torn_file, segment);
  // The last entry's record was the torn write.
  ASSERT_EQ(wal->recovery().state.entries.size(), static_cast<size_t>(kEntries - 1));
  EXPECT_EQ(wal->recovery().state.entries.back().data.view(),
            std::string(kEntryBytes, static_cast<char>('a' + kEntries - 1)));
}

TEST_F(WalLargeSegmentTest, AByteFarPastTheRecordsIsCorruption) {
  const std::string segment = WriteLarge();
  Damage(segment, uint64_t{40} << 20, "\x01");
  ExpectCorruption(segment, "zero header");
}

TEST_F(WalLargeSegmentTest, ALengthSpanningTheRecordsAfterItIsCorruption) {
  const std::string segment = WriteLarge();
  auto records = ScanWal(&fs_, dir_);
  ASSERT_TRUE(records.ok());
  const WalRecordLocation* fifth_entry = nullptr;
  int seen = 0;
  for (const WalRecordLocation& record : *records) {
    if (record.type == RecordType::kEntry && ++seen == 5) fifth_entry = &record;
  }
  ASSERT_NE(fifth_entry, nullptr);
  // Its claimed end lies past every record: only zeros follow it, but valid records start
  // inside it.
  const uint32_t length = static_cast<uint32_t>(RecordsEnd() - fifth_entry->offset + 4096);
  std::string bytes(4, '\0');
  std::memcpy(bytes.data(), &length, 4);
  Damage(segment, fifth_entry->offset, bytes);
  ExpectCorruption(segment, "expected crc");
}

TEST_F(WalTest, SnapshotFileDamageIsDetectedBeforeUse) {
  ASSERT_TRUE(fs_.CreateDir(dir_).ok());
  raft::SnapshotMetadata metadata;
  metadata.index = 7;
  metadata.term = 3;
  metadata.conf_state.voters = {1};
  ASSERT_TRUE(SaveSnapshotFile(&fs_, dir_, metadata, "state machine bytes").ok());
  auto loaded = LoadSnapshotFile(&fs_, dir_, 3, 7);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->data.view(), "state machine bytes");
  EXPECT_EQ(loaded->metadata.conf_state.voters, std::vector<raft::NodeId>{1});

  auto file = fs_.Open(JoinPath(dir_, SnapshotFileName(3, 7)), OpenMode::kReadWrite);
  ASSERT_TRUE(file.ok());
  auto size = (*file)->Size();
  ASSERT_TRUE((*file)->WriteAt(*size - 2, "!").ok());
  file->reset();
  loaded = LoadSnapshotFile(&fs_, dir_, 3, 7);
  ASSERT_FALSE(loaded.ok());
  EXPECT_TRUE(absl::StrContains(loaded.status().message(), "expected crc")) << loaded.status();
}

}  // namespace
}  // namespace kvstore::store
