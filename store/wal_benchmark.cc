// What the WAL's group commit makes of the disk, on real files (issue "Durable storage").
//
//   bazel run -c opt //store:wal_benchmark -- [--dir=DIR] [--seconds=3] [--repetitions=3]
//
// The anchor is the disk: a loop of one 4 KiB pwrite and one fdatasync, in three shapes, because
// what fdatasync must write besides the data differs:
//   overwrite     the same block again and again: data only;
//   preallocated  consecutive blocks of a file extended by fallocate, as a WAL segment is
//                 written: ext4 also journals the conversion of each "unwritten" extent;
//   append        consecutive blocks past the end of the file: the new size is journaled too.
// Group commit is the node's loop: P proposers each keep one put-sized entry (kPayloadBytes)
// outstanding. The loop thread appends every waiting proposer's entry (one PersistRequest each,
// then the hard state with the commit index, as Raft's Readies do), starts a sync, and hands the
// batch to a dedicated fsync thread (Wal::SyncBatch::Run there), which hands the result back
// through a one-slot mutex+condvar exchange (at most one batch is in flight, wal.h). The loop
// calls FinishSync, and each proposer whose entry became durable proposes its next one. The
// proposers are counters on the loop thread, not threads: with two cores, 64 threads would
// measure the scheduler.
//
// Reported per configuration (min / median / max over the repetitions): entries made durable
// per second; its ratio to the anchor, run right before it (other work on the machine comes and
// goes), in the preallocated shape (what a WAL segment sees; the target is at least 20x
// with 64 proposers) and in the overwrite shape (the disk's best case); syncs per second,
// entries per sync, and each entry's latency from Append to FinishSync.
//
// Segment cuts: a segment is preallocated (kDefaultSegmentBytes, etcd's 64 MiB), and the Append
// that fills one writes and fdatasyncs it on the loop thread, then creates and fallocates the
// next, while every proposer waits; the first sync after it also fsyncs the directory. Each run
// starts with its first segment nearly full (kCutMarginBytes short, filled before the clock
// starts), so every run crosses a cut; the cutting Appends and the syncs after them are
// reported, and creating and preallocating a segment on its own.
//
// Files go to a fresh directory under --dir (default: $TEST_TMPDIR, else /tmp), removed at exit.
// Other processes on the machine share the disk and the two cores: compare the ranges, not one
// run.

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/raft/raft.h"
#include "store/file_system.h"
#include "store/posix_file_system.h"
#include "store/wal.h"

ABSL_FLAG(std::string, dir, "",
          "parent of the benchmark's scratch directory (default: $TEST_TMPDIR, else /tmp)");
ABSL_FLAG(double, seconds, 3.0, "measured seconds of each run");
ABSL_FLAG(int, repetitions, 3, "runs of each configuration");
ABSL_FLAG(std::string, proposers, "1,8,16,64", "proposer counts of the group-commit curve");
ABSL_FLAG(uint64_t, segment_mib, 64, "WAL segment size in MiB");

namespace kvstore::store {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kAnchorBlockBytes = 4096;
// The anchor's file: large enough that no sequential run reaches its end at 60,000 syncs/s for
// 4 s (a run stops there if one does, and says so).
constexpr uint64_t kAnchorFileBytes = uint64_t{1} << 30;
// A put's value, as the workload has it.
constexpr size_t kPayloadBytes = 256;
// An entry's record in a segment: header, term, index, type, payload (wal.cc).
constexpr uint64_t kEntryRecordBytes = kRecordHeaderBytes + 17 + kPayloadBytes;
// How far short of full a run's first segment starts: crossed within a second even by one
// proposer at the slowest sync rate seen here (about 250 syncs/s, each of one entry and one
// hard state record, ~315 bytes: 64 KiB last ~0.8 s).
constexpr uint64_t kCutMarginBytes = 64 << 10;
constexpr int kMaxProposers = 1024;
constexpr int kMaxRepetitions = 100;
constexpr double kMaxSeconds = 600;
// Per run: entry latencies (and sync times) kept for the percentiles (32 MiB each at most);
// entries past it still count.
constexpr size_t kMaxLatencySamples = size_t{1} << 22;
// Standalone segment preallocations measured.
constexpr int kPreallocationSamples = 5;
// The anchor's shapes; kPreallocated is the one the ratios divide by.
enum class AnchorShape { kOverwrite, kPreallocated, kAppend };
constexpr AnchorShape kAnchorShapes[] = {AnchorShape::kOverwrite, AnchorShape::kPreallocated,
                                         AnchorShape::kAppend};

const char* ShapeName(AnchorShape shape) {
  switch (shape) {
    case AnchorShape::kOverwrite:
      return "overwrite";
    case AnchorShape::kPreallocated:
      return "preallocated";
    case AnchorShape::kAppend:
      return "append";
  }
  return "?";
}

[[noreturn]] void Fail(const std::string& what) {
  absl::FPrintF(stderr, "wal_benchmark: %s\n", what);
  std::exit(1);
}

void Check(const absl::Status& status, absl::string_view what) {
  if (!status.ok()) Fail(absl::StrCat(what, ": ", status.ToString()));
}

void CheckErrno(bool ok, absl::string_view what) {
  if (!ok) Fail(absl::StrCat(what, ": ", strerror(errno)));
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Micros(Clock::duration duration) {
  return std::chrono::duration<double, std::micro>(duration).count();
}

// The value at fraction `q` of `values` (sorted in place).
double Quantile(std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t at = std::min(values.size() - 1, static_cast<size_t>(q * values.size()));
  return values[at];
}

// "min / median / max" of the runs' values.
std::string Range(std::vector<double> values, const char* format) {
  if (values.empty()) return "-";
  const double median = Quantile(values, 0.5);
  return absl::StrCat(absl::StrFormat(format, values.front()), " / ",
                      absl::StrFormat(format, median), " / ",
                      absl::StrFormat(format, values.back()));
}

// A fresh directory under the scratch root, for one run.
std::string FreshDir(const std::string& root, absl::string_view name) {
  std::string dir = absl::StrCat(root, "/", name, "_XXXXXX");
  CheckErrno(mkdtemp(dir.data()) != nullptr, absl::StrCat("mkdtemp ", dir));
  return dir;
}

// ---------------------------------------------------------------------------------------------
// The anchor

struct AnchorRun {
  double syncs_per_second = 0;
  bool reached_end_of_file = false;
};

AnchorRun RunAnchor(const std::string& root, AnchorShape shape, double seconds) {
  const std::string dir = FreshDir(root, "anchor");
  const std::string path = dir + "/anchor";
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  CheckErrno(fd >= 0, absl::StrCat("open ", path));
  if (shape == AnchorShape::kPreallocated) {
    CheckErrno(fallocate(fd, 0, 0, kAnchorFileBytes) == 0, "fallocate");
    CheckErrno(fsync(fd) == 0, "fsync");
  }
  std::string block(kAnchorBlockBytes, 'a');
  uint64_t syncs = 0;
  AnchorRun run;
  const Clock::time_point start = Clock::now();
  const uint64_t max_syncs = kAnchorFileBytes / kAnchorBlockBytes;
  for (; syncs < max_syncs; ++syncs) {
    if (SecondsSince(start) >= seconds) break;
    const uint64_t offset = shape == AnchorShape::kOverwrite ? 0 : syncs * kAnchorBlockBytes;
    block[0] = static_cast<char>('a' + syncs % 26);  // new bytes every time
    CheckErrno(pwrite(fd, block.data(), block.size(), static_cast<off_t>(offset)) ==
                   static_cast<ssize_t>(block.size()),
               "pwrite");
    CheckErrno(fdatasync(fd) == 0, "fdatasync");
  }
  run.syncs_per_second = syncs / SecondsSince(start);
  run.reached_end_of_file = syncs == max_syncs;
  close(fd);
  std::filesystem::remove_all(dir);
  return run;
}

// ---------------------------------------------------------------------------------------------
// Group commit

// The fsync thread: runs one sync batch at a time and hands its result back to the loop thread.
// One slot each way, because the WAL has at most one batch in flight.
class FsyncThread {
 public:
  struct Completion {
    absl::Status status;
    Clock::duration run_time{};
  };

  FsyncThread() : thread_([this] { Loop(); }) {}
  ~FsyncThread() {
    {
      absl::MutexLock lock(&mutex_);
      stop_ = true;
    }
    thread_.join();
  }
  FsyncThread(const FsyncThread&) = delete;
  FsyncThread& operator=(const FsyncThread&) = delete;

  // Loop thread: hands over a batch (none may be running).
  void Start(Wal::SyncBatch* batch) {
    absl::MutexLock lock(&mutex_);
    if (batch_ != nullptr || done_.has_value()) Fail("a sync batch is already in flight");
    batch_ = batch;
  }

  // Loop thread: waits for the batch handed over by Start.
  Completion Wait() {
    absl::MutexLock lock(&mutex_);
    mutex_.Await(absl::Condition(
        +[](std::optional<Completion>* done) { return done->has_value(); }, &done_));
    Completion completion = std::move(*done_);
    done_.reset();
    return completion;
  }

 private:
  void Loop() {
    while (true) {
      Wal::SyncBatch* batch = nullptr;
      {
        absl::MutexLock lock(&mutex_);
        mutex_.Await(absl::Condition(this, &FsyncThread::HasWorkOrStop));
        if (batch_ == nullptr) return;  // stopped
        batch = std::exchange(batch_, nullptr);
      }
      const Clock::time_point start = Clock::now();
      absl::Status status = batch->Run();
      const Clock::duration run_time = Clock::now() - start;
      absl::MutexLock lock(&mutex_);
      done_ = Completion{std::move(status), run_time};
    }
  }

  bool HasWorkOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return batch_ != nullptr || stop_;
  }

  absl::Mutex mutex_;
  Wal::SyncBatch* batch_ ABSL_GUARDED_BY(mutex_) = nullptr;
  std::optional<Completion> done_ ABSL_GUARDED_BY(mutex_);
  bool stop_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread thread_;  // last: starts once the members above exist
};

struct GroupCommitRun {
  double entries_per_second = 0;
  double syncs_per_second = 0;
  double entries_per_sync = 0;
  double latency_p50_us = 0;
  double latency_p99_us = 0;
  double latency_max_us = 0;
  double sync_median_us = 0;
  uint64_t segment_cuts = 0;
  // Of the Appends that cut a segment (write + fdatasync of the full one, create + fallocate of
  // the next, all on the loop thread), and of the first sync after each (directory included).
  std::vector<double> cut_append_us;
  std::vector<double> sync_after_cut_us;
};

GroupCommitRun RunGroupCommit(const std::string& root, int proposers, double seconds,
                              uint64_t segment_bytes) {
  const std::string dir = FreshDir(root, "wal");
  PosixFileSystem fs;
  WalOptions options;
  options.segment_bytes = segment_bytes;
  auto opened = Wal::Open(&fs, dir, options);
  Check(opened.status(), "Wal::Open");
  std::unique_ptr<Wal> wal = std::move(*opened);
  FsyncThread fsync;

  constexpr raft::Term kTerm = 1;
  constexpr raft::NodeId kSelf = 1;
  // One payload shared by every entry (raft::Bytes is reference-counted), as a proposal's bytes
  // are shared between the log and the write queue.
  const raft::Bytes payload(std::string(kPayloadBytes, 'v'));
  raft::Index next_index = wal->last_index() + 1;
  uint64_t next_persist_id = 1;
  std::vector<Clock::time_point> appended_at(proposers);
  std::vector<int> waiting;    // appended since the last StartSync
  std::vector<int> in_flight;  // in the batch the fsync thread runs
  waiting.reserve(proposers);
  in_flight.reserve(proposers);
  std::vector<double> latencies_us;
  latencies_us.reserve(kMaxLatencySamples);
  std::vector<double> syncs_us;
  GroupCommitRun run;
  bool cut_since_last_sync = false;

  raft::Entry entry;
  entry.term = kTerm;
  entry.data = payload;
  auto append_entry = [&](int proposer) {
    entry.index = next_index++;
    raft::PersistRequest request;
    request.id = next_persist_id++;
    request.entries = absl::MakeConstSpan(&entry, 1);
    const uint64_t segments_before = wal->segment_count();
    const Clock::time_point start = Clock::now();
    Check(wal->Append(request), "Wal::Append");
    if (wal->segment_count() != segments_before) {
      run.cut_append_us.push_back(Micros(Clock::now() - start));
      ++run.segment_cuts;
      cut_since_last_sync = true;
    }
    appended_at[proposer] = start;
    waiting.push_back(proposer);
  };

  // Fill the first segment to kCutMarginBytes short of full, in one unmeasured sync, so that
  // every run, even one proposer's, crosses a segment cut early.
  const uint64_t prefill_entries = (segment_bytes - kCutMarginBytes) / kEntryRecordBytes;
  for (uint64_t i = 0; i < prefill_entries; ++i) {
    entry.index = next_index++;
    raft::PersistRequest request;
    request.entries = absl::MakeConstSpan(&entry, 1);
    Check(wal->Append(request), "Wal::Append (prefill)");
  }
  if (wal->segment_count() != 1) Fail("the prefill cut a segment: kEntryRecordBytes is wrong");
  Check(wal->AppendAndSync(raft::PersistRequest{}), "prefill sync");

  for (int p = 0; p < proposers; ++p) append_entry(p);
  uint64_t durable_entries = 0;
  uint64_t syncs = 0;
  const Clock::time_point start = Clock::now();
  Clock::time_point end = start;
  // Bounded by the clock; the round limit only guards against a clock that stands still.
  const uint64_t max_rounds = static_cast<uint64_t>(seconds * 10'000'000);
  for (uint64_t round = 0; round < max_rounds; ++round) {
    // The commit index advanced by the last sync, persisted with the next entries (a leader's
    // Ready carries both).
    raft::PersistRequest hard_state;
    hard_state.id = next_persist_id++;
    hard_state.hard_state = raft::HardState{kTerm, kSelf, wal->durable_last_index()};
    Check(wal->Append(hard_state), "Wal::Append (hard state)");

    auto batch = wal->StartSync();
    Check(batch.status(), "Wal::StartSync");
    if (*batch == nullptr) Fail("StartSync returned no batch with entries appended");
    const bool after_cut = std::exchange(cut_since_last_sync, false);
    in_flight.swap(waiting);
    waiting.clear();
    fsync.Start(batch->get());
    FsyncThread::Completion completion = fsync.Wait();
    Check(wal->FinishSync(**batch, std::move(completion.status)), "Wal::FinishSync");
    const Clock::time_point now = Clock::now();
    ++syncs;
    const double sync_us = Micros(completion.run_time);
    if (syncs_us.size() < kMaxLatencySamples) syncs_us.push_back(sync_us);
    if (after_cut) run.sync_after_cut_us.push_back(sync_us);
    for (int p : in_flight) {
      if (latencies_us.size() < kMaxLatencySamples) {
        latencies_us.push_back(Micros(now - appended_at[p]));
      }
    }
    durable_entries += in_flight.size();
    end = now;
    if (std::chrono::duration<double>(now - start).count() >= seconds) break;
    // Each proposer whose entry is durable proposes its next one.
    for (int p : in_flight) append_entry(p);
  }
  const double elapsed = std::chrono::duration<double>(end - start).count();
  run.entries_per_second = durable_entries / elapsed;
  run.syncs_per_second = syncs / elapsed;
  run.entries_per_sync = static_cast<double>(durable_entries) / syncs;
  run.latency_p50_us = Quantile(latencies_us, 0.5);
  run.latency_p99_us = Quantile(latencies_us, 0.99);
  run.latency_max_us = latencies_us.empty() ? 0 : latencies_us.back();
  run.sync_median_us = Quantile(syncs_us, 0.5);
  wal.reset();
  std::filesystem::remove_all(dir);
  return run;
}

// Creating a segment file and preallocating it, as Wal::CreateSegment does, and the fsync of the
// directory that makes its name durable.
struct PreallocationCost {
  std::vector<double> create_and_fallocate_us;
  std::vector<double> sync_dir_us;
};

PreallocationCost MeasurePreallocation(const std::string& root, uint64_t segment_bytes) {
  const std::string dir = FreshDir(root, "prealloc");
  PosixFileSystem fs;
  PreallocationCost cost;
  for (int i = 0; i < kPreallocationSamples; ++i) {
    const std::string path = absl::StrCat(dir, "/segment", i);
    const Clock::time_point start = Clock::now();
    auto file = fs.Open(path, OpenMode::kCreate);
    Check(file.status(), "open segment");
    Check((*file)->Truncate(segment_bytes), "preallocate segment");
    const Clock::time_point allocated = Clock::now();
    Check(fs.SyncDir(dir), "sync dir");
    cost.create_and_fallocate_us.push_back(Micros(allocated - start));
    cost.sync_dir_us.push_back(Micros(Clock::now() - allocated));
  }
  std::filesystem::remove_all(dir);
  return cost;
}

std::vector<int> ParseProposers(const std::string& text) {
  std::vector<int> counts;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int count = 0;
    if (!absl::SimpleAtoi(part, &count) || count < 1 || count > kMaxProposers) {
      Fail(absl::StrCat("--proposers: '", part, "' is not a count in [1, ", kMaxProposers, "]"));
    }
    counts.push_back(count);
  }
  if (counts.empty()) Fail("--proposers: no counts");
  return counts;
}

int Main() {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int repetitions = absl::GetFlag(FLAGS_repetitions);
  const uint64_t segment_bytes = absl::GetFlag(FLAGS_segment_mib) << 20;
  if (!(seconds > 0 && seconds <= kMaxSeconds)) Fail("--seconds must be in (0, 600]");
  if (repetitions < 1 || repetitions > kMaxRepetitions) Fail("--repetitions must be in [1, 100]");
  const std::vector<int> proposer_counts = ParseProposers(absl::GetFlag(FLAGS_proposers));
  std::string parent = absl::GetFlag(FLAGS_dir);
  if (parent.empty()) {
    const char* tmp = std::getenv("TEST_TMPDIR");
    parent = tmp != nullptr ? tmp : "/tmp";
  }
  const std::string root = FreshDir(parent, "wal_benchmark");
  absl::PrintF("scratch directory %s; %d runs of %.1f s per configuration; segments of %d MiB\n",
               root, repetitions, seconds, segment_bytes >> 20);

  absl::PrintF("\nanchor: 4 KiB pwrite + fdatasync, syncs/s (min / median / max)\n");
  for (AnchorShape shape : kAnchorShapes) {
    std::vector<double> rates;
    for (int r = 0; r < repetitions; ++r) {
      const AnchorRun run = RunAnchor(root, shape, seconds);
      if (run.reached_end_of_file) {
        absl::PrintF("  (%s reached the end of its file)\n", ShapeName(shape));
      }
      rates.push_back(run.syncs_per_second);
    }
    absl::PrintF("  %-13s %s\n", ShapeName(shape), Range(rates, "%.0f"));
  }

  absl::PrintF(
      "\ngroup commit: %zu-byte entries, one outstanding per proposer (min / median / max);\n"
      "each run follows anchor runs of its own (preallocated, then overwrite), its ratios are\n"
      "to those\n",
      kPayloadBytes);
  for (int proposers : proposer_counts) {
    std::vector<double> paired_anchor, paired_overwrite, rate, ratio, ratio_overwrite;
    std::vector<double> syncs, per_sync, p50, p99, worst;
    std::vector<double> sync_median, cut_append, sync_after_cut;
    uint64_t cuts = 0;
    for (int r = 0; r < repetitions; ++r) {
      // The disk's rate right before the run: other work on the machine comes and goes, and a
      // ratio of two runs seconds apart is steadier than one to a median taken minutes earlier.
      const double anchor = RunAnchor(root, AnchorShape::kPreallocated, seconds).syncs_per_second;
      const double overwrite = RunAnchor(root, AnchorShape::kOverwrite, seconds).syncs_per_second;
      GroupCommitRun run = RunGroupCommit(root, proposers, seconds, segment_bytes);
      paired_anchor.push_back(anchor);
      paired_overwrite.push_back(overwrite);
      rate.push_back(run.entries_per_second);
      ratio.push_back(run.entries_per_second / anchor);
      ratio_overwrite.push_back(run.entries_per_second / overwrite);
      syncs.push_back(run.syncs_per_second);
      per_sync.push_back(run.entries_per_sync);
      p50.push_back(run.latency_p50_us);
      p99.push_back(run.latency_p99_us);
      worst.push_back(run.latency_max_us);
      sync_median.push_back(run.sync_median_us);
      cuts += run.segment_cuts;
      cut_append.insert(cut_append.end(), run.cut_append_us.begin(), run.cut_append_us.end());
      sync_after_cut.insert(sync_after_cut.end(), run.sync_after_cut_us.begin(),
                            run.sync_after_cut_us.end());
    }
    absl::PrintF("  %d proposers\n", proposers);
    absl::PrintF("    anchor syncs/s     %s   (overwrite: %s)\n", Range(paired_anchor, "%.0f"),
                 Range(paired_overwrite, "%.0f"));
    absl::PrintF("    entries/s          %s\n", Range(rate, "%.0f"));
    absl::PrintF("    x anchor           %s   (x overwrite: %s)\n", Range(ratio, "%.1f"),
                 Range(ratio_overwrite, "%.1f"));
    absl::PrintF("    syncs/s            %s\n", Range(syncs, "%.0f"));
    absl::PrintF("    entries/sync       %s\n", Range(per_sync, "%.1f"));
    absl::PrintF("    sync median us     %s\n", Range(sync_median, "%.0f"));
    absl::PrintF("    latency p50 us     %s\n", Range(p50, "%.0f"));
    absl::PrintF("    latency p99 us     %s\n", Range(p99, "%.0f"));
    absl::PrintF("    latency max us     %s\n", Range(worst, "%.0f"));
    absl::PrintF("    segment cuts       %d in %d runs; cutting Append us %s; next sync us %s\n",
                 cuts, repetitions, Range(cut_append, "%.0f"), Range(sync_after_cut, "%.0f"));
  }

  const PreallocationCost cost = MeasurePreallocation(root, segment_bytes);
  absl::PrintF("\nsegment preallocation (%d samples, min / median / max)\n", kPreallocationSamples);
  absl::PrintF("  create + fallocate %d MiB us  %s\n", segment_bytes >> 20,
               Range(cost.create_and_fallocate_us, "%.0f"));
  absl::PrintF("  fsync of the directory us    %s\n", Range(cost.sync_dir_us, "%.0f"));
  std::filesystem::remove_all(root);
  return 0;
}

}  // namespace
}  // namespace kvstore::store

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return kvstore::store::Main();
}
