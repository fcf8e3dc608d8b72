// How long a member takes to serve again after a restart, with a ~1 GiB LMDB backend and 100,000
// WAL entries to replay (issue "Durable storage"; target: under 1 s).
//
//   bazel run -c opt //node:restart_benchmark -- [--dir=/tmp/restart_benchmark] [--runs=5]
//       [--cache=both|warm|cold] [--rebuild]
//
// The data directory (--dir/pristine) is built once and reused while its LAYOUT file matches
// the constants below (building writes ~2 GiB, about 20 s here):
//   phase A: kLargePuts puts of kLargeValueBytes (distinct keys, all live) through a Member over
//            an LmdbBackend, so data.mdb holds ~1 GiB; the WAL is compacted every
//            kBuildCompactEntries entries, and filler puts run until a durable compaction marker
//            covers every large entry, so none of them is replayed or even kept by a restart;
//   phase B: kSmallPuts small puts through a Member whose backend never commits durably on its
//            own (batch interval and limit at their maximum) and whose WAL never compacts, then
//            LmdbBackend::AbandonForTest (what kill -9 does to the open write transaction). The
//            backend's consistent index stays at the end of phase A, and the WAL holds every
//            small put, committed (its hard state is synced before the abandon).
// The build checks what it made: the WAL's last index and commit, and the consistent index a
// fresh mvcc::Store reads from the backend, at least kSmallPuts apart.
//
// A measurement copies pristine/ to run/ (a restart writes, and LMDB writes in place),
// fdatasyncs the copy and, for --cache=cold, evicts it from the page cache (posix_fadvise
// DONTNEED on those files only; a virtual disk may still be cached by its host). Then a fresh
// process of this binary times, with the options a node would use:
//   LmdbBackend::Open; Member::Open; the first Drain, which replays the entries, at most
//   ServerConfig::max_committed_size_per_ready_bytes of them per Ready and backend batch (and,
//   past wal_compact_entries of them, flushes the backend for the WAL's first compaction); a
//   serializable get of the last small key, whose value only the replay can have put back
//   (checked, as are the applied indexes before and after the Drain).
// Member::Open is split into phases by the backend calls that begin them (Phase, below), which a
// decorator of the backend timestamps, so nothing of core/ changes. Each phase also reports its
// page faults: they are what fresh memory and a newly mapped file cost, and on this machine
// (a virtual machine whose page faults are slow; the parent prints their price) they dominate.
// The process's resident memory at the end is split into anonymous memory (what start-up
// allocated) and file pages (data.mdb as mapped: the kernel maps pages around each one read).
//
// Each child prints one RESULT line; the parent prints min / median / max of every figure.

#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/mvcc/backend.h"
#include "core/mvcc/store.h"
#include "core/server/server.h"
#include "node/member.h"
#include "store/file_system.h"
#include "store/lmdb_backend.h"
#include "store/posix_file_system.h"
#include "store/wal.h"

ABSL_FLAG(std::string, dir, "/tmp/restart_benchmark",
          "holds pristine/ (built once, reused) and run/ (a fresh copy per measured restart)");
ABSL_FLAG(int, runs, 5, "measured restarts per cache state");
ABSL_FLAG(std::string, cache, "both", "page cache before each restart: warm, cold or both");
ABSL_FLAG(bool, rebuild, false, "rebuild pristine/ even if its LAYOUT matches");
ABSL_FLAG(std::string, child, "", "internal: restart the member in this directory and report");

namespace kvstore::node {
namespace {

using Clock = std::chrono::steady_clock;

// Phase A: ~1 GiB of live values. LMDB stores a value of this size on 26 overflow pages of
// 4 KiB (the record is the value plus ~30 bytes), so data.mdb ends near 10,000 * 104 KiB.
constexpr int kLargePuts = 10'000;
constexpr size_t kLargeValueBytes = 100 << 10;
// Phase B: the entries a restart replays.
constexpr int kSmallPuts = 100'000;
constexpr size_t kSmallValueBytes = 100;
// Puts submitted before their syncs run, so the build group-commits (about 6 MiB of large
// values, or a typical burst of small puts).
constexpr int kLargeGroupPuts = 64;
constexpr int kSmallGroupPuts = 1000;
// Phase A compacts the WAL this often (etcd's --snapshot-count is 10,000, which would keep up
// to 1 GiB of large entries in the WAL during the build), and the in-memory Raft log likewise.
constexpr uint64_t kBuildCompactEntries = 1000;
constexpr uint64_t kBuildRaftSnapshotEntries = 1000;
constexpr uint64_t kBuildRaftCatchUpEntries = 100;
constexpr uint64_t kNeverCompactEntries = uint64_t{1} << 62;
// Ticks a lone voter needs to elect itself (twice the election timeout is the worst case).
constexpr int kMaxElectionTicks = 100;
// Sync rounds one group of puts may take before the build gives up.
constexpr int kMaxSyncRoundsPerGroup = 10'000;
constexpr int kMaxRuns = 100;
constexpr int kProgressEveryPuts = 1000;
constexpr size_t kMaxLayoutBytes = 1 << 16;
constexpr int kLayoutVersion = 1;
constexpr raft::NodeId kMemberId = 1;

constexpr absl::string_view kPristine = "pristine";
constexpr absl::string_view kRun = "run";
constexpr absl::string_view kBackendDir = "backend";
constexpr absl::string_view kWalDir = "wal";
constexpr absl::string_view kLayoutFile = "LAYOUT";
// LMDB's lock file: recreated by every open, never copied.
constexpr absl::string_view kLmdbLockFile = "lock.mdb";

[[noreturn]] void Fail(const std::string& what) {
  absl::FPrintF(stderr, "restart_benchmark: %s\n", what);
  std::exit(1);
}

void Check(const absl::Status& status, absl::string_view what) {
  if (!status.ok()) Fail(absl::StrCat(what, ": ", status.ToString()));
}

double MillisBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string LargeKey(int i) { return absl::StrFormat("large/%06d", i); }
std::string SmallKey(int i) { return absl::StrFormat("small/%06d", i); }

// Distinct per key, so a value read back proves which put it came from.
std::string Value(absl::string_view key, size_t size_bytes) {
  std::string value(size_bytes, '.');
  for (size_t i = 0; i < size_bytes; ++i) value[i] = key[i % key.size()] + static_cast<char>(i % 7);
  return value;
}

// The build's parameters and what it made; a LAYOUT whose parameters differ is rebuilt.
std::map<std::string, std::string> ExpectedLayout() {
  return {{"version", absl::StrCat(kLayoutVersion)},
          {"large_puts", absl::StrCat(kLargePuts)},
          {"large_value_bytes", absl::StrCat(kLargeValueBytes)},
          {"small_puts", absl::StrCat(kSmallPuts)},
          {"small_value_bytes", absl::StrCat(kSmallValueBytes)},
          {"segment_bytes", absl::StrCat(store::kDefaultSegmentBytes)}};
}

std::optional<std::map<std::string, std::string>> ReadLayout(const std::string& path) {
  store::PosixFileSystem fs;
  auto file = fs.Open(path, store::OpenMode::kRead);
  if (!file.ok()) return std::nullopt;
  std::string text;
  if (!(*file)->ReadAt(0, kMaxLayoutBytes, &text).ok()) return std::nullopt;
  std::map<std::string, std::string> layout;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    layout[kv.first] = kv.second;
  }
  return layout;
}

uint64_t LayoutNumber(const std::map<std::string, std::string>& layout, const std::string& key) {
  auto it = layout.find(key);
  uint64_t value = 0;
  if (it == layout.end() || !absl::SimpleAtoi(it->second, &value)) {
    Fail(absl::StrCat("LAYOUT has no number '", key, "'"));
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// One member on a loop turned by hand: WAL syncs queue until RunSyncs runs them inline.

class Harness : public PeerTransport, public SyncExecutor, public ClientSink {
 public:
  void Send(const raft::Message&) override {}
  void Start(store::Wal::SyncBatch* batch) override { pending_syncs_.push_back(batch); }
  void OnResponse(const server::Response& response) override {
    responses_[response.request_id] = response;
  }
  void OnWatchResponse(const mvcc::WatchResponse&) override {}
  void OnStop(const absl::Status& why) override {
    Fail(absl::StrCat("member stopped: ", why.ToString()));
  }

  MemberIo Io() {
    MemberIo io;
    io.transport = this;
    io.sync = this;
    io.sink = this;
    return io;
  }

  void RunSyncs(Member& member) {
    for (int round = 0; round < kMaxSyncRoundsPerGroup && !pending_syncs_.empty(); ++round) {
      store::Wal::SyncBatch* batch = pending_syncs_.front();
      pending_syncs_.pop_front();
      member.OnSyncDone(batch->Run());
    }
    if (!pending_syncs_.empty()) Fail("syncs keep coming");
  }

  void ElectSelf(Member& member) {
    member.Drain();
    for (int tick = 0; tick < kMaxElectionTicks && !member.server().is_leader(); ++tick) {
      member.Tick();
      RunSyncs(member);
    }
    if (!member.server().is_leader()) Fail("the lone member did not become leader");
  }

  // Submits the puts together, then syncs until every one is answered OK.
  void PutGroup(Member& member, const std::vector<std::pair<std::string, std::string>>& puts) {
    std::vector<server::RequestId> ids;
    ids.reserve(puts.size());
    for (const auto& [key, value] : puts) {
      server::Request request;
      request.type = server::RequestType::kPut;
      request.put.key = key;
      request.put.value = value;
      ids.push_back(member.Submit(std::move(request)));
    }
    RunSyncs(member);
    for (server::RequestId id : ids) {
      auto it = responses_.find(id);
      if (it == responses_.end()) Fail(absl::StrCat("put ", id, " was not answered"));
      Check(it->second.status, "put");
      responses_.erase(it);
    }
  }

  std::optional<server::Response> Take(server::RequestId id) {
    auto it = responses_.find(id);
    if (it == responses_.end()) return std::nullopt;
    server::Response response = std::move(it->second);
    responses_.erase(it);
    return response;
  }

 private:
  std::deque<store::Wal::SyncBatch*> pending_syncs_;
  std::map<server::RequestId, server::Response> responses_;
};

MemberOptions BaseOptions() {
  MemberOptions options;
  options.server.id = kMemberId;
  return options;
}

std::unique_ptr<store::LmdbBackend> OpenBackend(const std::string& dir,
                                                const store::LmdbOptions& options) {
  auto backend = store::LmdbBackend::Open(dir, options);
  Check(backend.status(), "LmdbBackend::Open");
  return std::move(*backend);
}

// ---------------------------------------------------------------------------------------------
// Building pristine/

void Build(const std::string& pristine) {
  std::filesystem::remove_all(pristine);
  std::filesystem::create_directories(pristine);
  const std::string backend_dir = store::JoinPath(pristine, kBackendDir);
  const std::string wal_dir = store::JoinPath(pristine, kWalDir);
  store::PosixFileSystem fs;
  Harness harness;
  const Clock::time_point start = Clock::now();

  // Phase A: the large values, made durable in the backend and compacted out of the WAL.
  raft::Index covered_index = 0;
  {
    auto backend = OpenBackend(backend_dir, store::LmdbOptions{});
    MemberOptions options = BaseOptions();
    options.wal_compact_entries = kBuildCompactEntries;
    options.server.snapshot_every_entries = kBuildRaftSnapshotEntries;
    options.server.snapshot_catch_up_entries = kBuildRaftCatchUpEntries;
    std::vector<server::Member> founding = {
        server::Member{kMemberId, "restart-benchmark", {"http://127.0.0.1:2380"}}};
    auto member = Member::Open(options, &fs, wal_dir, backend.get(), harness.Io(), founding);
    Check(member.status(), "Member::Open (phase A)");
    harness.ElectSelf(**member);
    std::vector<std::pair<std::string, std::string>> group;
    for (int i = 0; i < kLargePuts; ++i) {
      const std::string key = LargeKey(i);
      group.emplace_back(key, Value(key, kLargeValueBytes));
      if (group.size() == kLargeGroupPuts || i + 1 == kLargePuts) {
        harness.PutGroup(**member, group);
        group.clear();
      }
      if ((i + 1) % kProgressEveryPuts == 0) {
        absl::PrintF("  phase A: %d of %d large puts, %.0f s\n", i + 1, kLargePuts,
                     MillisBetween(start, Clock::now()) / 1000);
      }
    }
    const raft::Index last_large = (*member)->server().applied_index();
    // Filler puts until a durable compaction marker covers every large entry.
    const int max_filler_groups = kBuildCompactEntries / kSmallGroupPuts + 2;
    for (int g = 0; g < max_filler_groups && (*member)->wal().durable_snapshot_index() < last_large;
         ++g) {
      group.clear();
      for (int i = 0; i < kSmallGroupPuts; ++i) {
        group.emplace_back(absl::StrFormat("filler/%06d", g * kSmallGroupPuts + i), "f");
      }
      harness.PutGroup(**member, group);
    }
    covered_index = (*member)->wal().durable_snapshot_index();
    if (covered_index < last_large) Fail("no compaction marker covers the large entries");
    member->reset();
    // The destructor flushes: phase A is durable in the backend.
  }

  // Phase B: small puts that the backend loses and the WAL keeps.
  {
    store::LmdbOptions never_durable;
    never_durable.batch_interval_ms = std::numeric_limits<int64_t>::max();
    never_durable.batch_limit_commits = std::numeric_limits<int64_t>::max();
    auto backend = OpenBackend(backend_dir, never_durable);
    MemberOptions options = BaseOptions();
    options.wal_compact_entries = kNeverCompactEntries;
    auto member = Member::Open(options, &fs, wal_dir, backend.get(), harness.Io());
    Check(member.status(), "Member::Open (phase B)");
    harness.ElectSelf(**member);
    std::vector<std::pair<std::string, std::string>> group;
    for (int i = 0; i < kSmallPuts; ++i) {
      const std::string key = SmallKey(i);
      group.emplace_back(key, Value(key, kSmallValueBytes));
      if (group.size() == kSmallGroupPuts || i + 1 == kSmallPuts) {
        harness.PutGroup(**member, group);
        group.clear();
      }
    }
    // PutGroup ran every sync, the one of the final commit index included.
    if ((*member)->wal().HasUnsynced()) Fail("the WAL has unsynced records after phase B");
    backend->AbandonForTest();
    member->reset();
    backend.reset();
  }

  // What a restart will find.
  uint64_t consistent_index = 0, data_bytes = 0;
  {
    auto backend = OpenBackend(backend_dir, store::LmdbOptions{});
    auto store = mvcc::Store::Open(backend.get());
    Check(store.status(), "mvcc::Store::Open (check)");
    consistent_index = (*store)->consistent_index();
    data_bytes = backend->SizeBytes();
  }
  raft::Index last_index = 0, commit_index = 0;
  uint64_t segments = 0;
  {
    auto wal = store::Wal::Open(&fs, wal_dir);
    Check(wal.status(), "Wal::Open (check)");
    last_index = (*wal)->last_index();
    commit_index = (*wal)->recovery().state.hard_state.commit;
    segments = (*wal)->segment_count();
  }
  if (last_index < consistent_index + kSmallPuts || commit_index != last_index) {
    Fail(absl::StrCat("built a log that replays too little: consistent index ", consistent_index,
                      ", last index ", last_index, ", commit ", commit_index));
  }
  std::map<std::string, std::string> layout = ExpectedLayout();
  layout["consistent_index"] = absl::StrCat(consistent_index);
  layout["last_index"] = absl::StrCat(last_index);
  layout["covered_index"] = absl::StrCat(covered_index);
  layout["data_mdb_bytes"] = absl::StrCat(data_bytes);
  layout["wal_segments"] = absl::StrCat(segments);
  layout["build_seconds"] = absl::StrFormat("%.0f", MillisBetween(start, Clock::now()) / 1000);
  std::string text;
  for (const auto& [key, value] : layout) absl::StrAppend(&text, key, "=", value, "\n");
  // Written last: a build cut short leaves no LAYOUT and is redone.
  auto file = fs.Open(store::JoinPath(pristine, kLayoutFile), store::OpenMode::kCreateTruncate);
  Check(file.status(), "create LAYOUT");
  Check((*file)->Append(text), "write LAYOUT");
  Check((*file)->Sync(), "sync LAYOUT");
}

// ---------------------------------------------------------------------------------------------
// The measured restart (the child)

double CpuMillis() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3 +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3;
}

// Page faults so far (minor and major): on this machine each costs far more than on bare metal
// (see PrintFreshMemoryCost), so the phases report them too.
uint64_t PageFaults() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_minflt + usage.ru_majflt);
}

// A resident-memory field of /proc/self/status ("RssAnon", "RssFile"), in MiB.
double ResidentMib(absl::string_view field) {
  std::FILE* status = std::fopen("/proc/self/status", "r");
  if (status == nullptr) Fail("open /proc/self/status");
  double mib = -1;
  char line[256];
  while (mib < 0 && std::fgets(line, sizeof(line), status) != nullptr) {
    absl::string_view rest = line;
    uint64_t kib = 0;
    if (absl::ConsumePrefix(&rest, field) && absl::ConsumePrefix(&rest, ":") &&
        absl::ConsumeSuffix(&rest, " kB\n") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) {
      mib = kib / 1024.0;
    }
  }
  std::fclose(status);
  if (mib < 0) Fail(absl::StrCat("no ", field, " in /proc/self/status"));
  return mib;
}

// The phases of Member::Open, in order, each begun by the first backend call of a kind
// (core/server/server.cc, Server::Impl::Init and LoadLocalState).
enum class Phase {
  kWalRecovery,  // until the first backend call
  kStoreOpen,    // mvcc::Store::Open, until the lessor's first lease-bucket call
  kLoadLeases,   // LoadLocalState: the lessor's leases, and the keys the store's restore
                 // found on them, until the first meta-bucket Range (the member records)
  kLoadRest,     // the rest of LoadLocalState, until Init's first meta-bucket Get (the
                 // request epoch)
  kInitRest,     // request epoch, commit, RawNode::Create, until Member::Open's Flush
  kFlush,        // the durable LMDB commit of Member::Open
  kDone,
};
constexpr int kPhaseCount = static_cast<int>(Phase::kDone) + 1;
constexpr const char* kPhaseNames[kPhaseCount] = {"open.wal_recovery",
                                                  "open.store_open",
                                                  "open.load_local_state_leases",
                                                  "open.load_local_state_rest",
                                                  "open.init_rest",
                                                  "open.flush",
                                                  ""};

// Forwards to the LMDB backend, timestamps the calls that begin the phases of Member::Open, and
// measures what commits and flushes cost.
class PhaseClock : public mvcc::Backend {
 public:
  explicit PhaseClock(mvcc::Backend* inner) : inner_(inner) {}

  std::optional<std::string> Get(mvcc::Bucket bucket, absl::string_view key) const override {
    Saw(bucket, Call::kGet);
    return inner_->Get(bucket, key);
  }
  void Range(mvcc::Bucket bucket, absl::string_view start, absl::string_view end,
             Visitor visit) const override {
    Saw(bucket, Call::kRange);
    inner_->Range(bucket, start, end, visit);
  }
  void Put(mvcc::Bucket bucket, absl::string_view key, absl::string_view value) override {
    Saw(bucket, Call::kWrite);
    inner_->Put(bucket, key, value);
  }
  void Delete(mvcc::Bucket bucket, absl::string_view key) override {
    Saw(bucket, Call::kWrite);
    inner_->Delete(bucket, key);
  }
  absl::Status Commit() override {
    const Clock::time_point start = Clock::now();
    absl::Status status = inner_->Commit();
    commit_ms_ += MillisBetween(start, Clock::now());
    ++commits_;
    return status;
  }
  absl::Status Flush() override {
    if (phase_ == Phase::kInitRest) Enter(Phase::kFlush);
    const Clock::time_point start = Clock::now();
    absl::Status status = inner_->Flush();
    flush_ms_ += MillisBetween(start, Clock::now());
    ++flushes_;
    if (phase_ == Phase::kFlush) Enter(Phase::kDone);
    return status;
  }
  uint64_t SizeBytes() const override { return inner_->SizeBytes(); }
  absl::Status Defragment() override { return inner_->Defragment(); }

  // Call when Member::Open begins.
  void Start() { Enter(Phase::kWalRecovery); }
  // When `phase` began; fails if it never did (the server's start-up changed: update Saw).
  Clock::time_point Began(Phase phase) const {
    const auto& at = began_[static_cast<int>(phase)];
    if (!at.has_value()) {
      Fail(absl::StrCat("Member::Open never reached ", kPhaseNames[static_cast<int>(phase)],
                        ": the server's start-up changed; update PhaseClock"));
    }
    return *at;
  }
  uint64_t faults_at(Phase phase) const {
    Began(phase);
    return faults_[static_cast<int>(phase)];
  }
  double commit_ms() const { return commit_ms_; }
  uint64_t commits() const { return commits_; }
  double flush_ms() const { return flush_ms_; }
  uint64_t flushes() const { return flushes_; }

 private:
  enum class Call { kGet, kRange, kWrite };

  void Saw(mvcc::Bucket bucket, Call call) const {
    switch (phase_) {
      case Phase::kWalRecovery:
        Enter(Phase::kStoreOpen);
        break;
      case Phase::kStoreOpen:
        if (bucket == mvcc::Bucket::kLease) Enter(Phase::kLoadLeases);
        break;
      case Phase::kLoadLeases:
        if (bucket == mvcc::Bucket::kMeta && call == Call::kRange) Enter(Phase::kLoadRest);
        break;
      case Phase::kLoadRest:
        if (bucket == mvcc::Bucket::kMeta && call == Call::kGet) Enter(Phase::kInitRest);
        break;
      default:
        break;
    }
  }
  void Enter(Phase phase) const {
    phase_ = phase;
    began_[static_cast<int>(phase)] = Clock::now();
    faults_[static_cast<int>(phase)] = PageFaults();
  }

  mvcc::Backend* inner_;
  mutable Phase phase_ = Phase::kDone;  // kDone until Start: calls before it are not timed
  mutable std::optional<Clock::time_point> began_[kPhaseCount];
  mutable uint64_t faults_[kPhaseCount] = {};  // PageFaults() when each phase began
  double commit_ms_ = 0;
  uint64_t commits_ = 0;
  double flush_ms_ = 0;
  uint64_t flushes_ = 0;
};

void PrintResult(const std::vector<std::pair<std::string, double>>& figures) {
  std::string line = "RESULT";
  for (const auto& [name, value] : figures) {
    absl::StrAppend(&line, " ", name, "=", absl::StrFormat("%.1f", value));
  }
  absl::PrintF("%s\n", line);
  std::fflush(stdout);
}

int RunChild(const std::string& dir) {
  const auto layout = ReadLayout(store::JoinPath(dir, kLayoutFile));
  if (!layout.has_value()) Fail(absl::StrCat("no LAYOUT in ", dir));
  const uint64_t consistent_index = LayoutNumber(*layout, "consistent_index");
  const uint64_t last_index = LayoutNumber(*layout, "last_index");
  store::PosixFileSystem fs;
  Harness harness;
  struct rusage before;
  getrusage(RUSAGE_SELF, &before);
  const double cpu_before_ms = CpuMillis();

  const Clock::time_point start = Clock::now();
  auto backend = OpenBackend(store::JoinPath(dir, kBackendDir), store::LmdbOptions{});
  PhaseClock clock(backend.get());
  const Clock::time_point backend_opened = Clock::now();
  clock.Start();
  auto opened =
      Member::Open(BaseOptions(), &fs, store::JoinPath(dir, kWalDir), &clock, harness.Io());
  Check(opened.status(), "Member::Open");
  std::unique_ptr<Member> member = std::move(*opened);
  const Clock::time_point member_opened = Clock::now();
  const uint64_t faults_opened = PageFaults();
  const raft::Index applied_after_open = member->server().applied_index();
  const uint64_t commits_before_drain = clock.commits();
  const double commit_ms_before_drain = clock.commit_ms();
  const uint64_t flushes_before_drain = clock.flushes();
  const double flush_ms_before_drain = clock.flush_ms();
  member->Drain();
  const Clock::time_point drained = Clock::now();
  const uint64_t faults_drained = PageFaults();
  const raft::Index applied_after_drain = member->server().applied_index();

  // The last small put: only the replay can have put it back in the backend.
  const std::string last_key = SmallKey(kSmallPuts - 1);
  server::Request get;
  get.type = server::RequestType::kRange;
  get.range.key = last_key;
  get.range.serializable = true;
  const server::RequestId id = member->Submit(std::move(get));
  std::optional<server::Response> response = harness.Take(id);
  const Clock::time_point served = Clock::now();
  const double cpu_ms = CpuMillis() - cpu_before_ms;
  struct rusage after;
  getrusage(RUSAGE_SELF, &after);

  if (!response.has_value()) Fail("the serializable get was not answered at once");
  Check(response->status, "serializable get");
  if (response->range.kvs.size() != 1 ||
      response->range.kvs[0].value != Value(last_key, kSmallValueBytes)) {
    Fail(absl::StrCat("the get of ", last_key, " did not find the replayed value"));
  }
  if (applied_after_open != consistent_index || applied_after_drain < last_index) {
    Fail(absl::StrCat("expected a replay from ", consistent_index, " to ", last_index,
                      ", the member applied from ", applied_after_open, " to ",
                      applied_after_drain));
  }

  std::vector<std::pair<std::string, double>> figures = {
      {"total.ms", MillisBetween(start, served)},
      {"backend_open.ms", MillisBetween(start, backend_opened)},
      {"member_open.ms", MillisBetween(backend_opened, member_opened)},
  };
  for (int p = 0; p + 1 < kPhaseCount; ++p) {
    const Phase phase = static_cast<Phase>(p);
    const bool last = p + 2 == kPhaseCount;
    const Clock::time_point end = last ? member_opened : clock.Began(static_cast<Phase>(p + 1));
    const uint64_t end_faults = last ? faults_opened : clock.faults_at(static_cast<Phase>(p + 1));
    figures.emplace_back(absl::StrCat(kPhaseNames[p], ".ms"),
                         MillisBetween(clock.Began(phase), end));
    figures.emplace_back(absl::StrCat(kPhaseNames[p], ".faults"),
                         static_cast<double>(end_faults - clock.faults_at(phase)));
  }
  const store::WalRecovery& recovery = member->wal().recovery();
  figures.insert(
      figures.end(),
      {
          {"drain.ms", MillisBetween(member_opened, drained)},
          {"drain.faults", static_cast<double>(faults_drained - faults_opened)},
          {"drain.entries_replayed", static_cast<double>(applied_after_drain - applied_after_open)},
          {"drain.commits", static_cast<double>(clock.commits() - commits_before_drain)},
          {"drain.commit.ms", clock.commit_ms() - commit_ms_before_drain},
          {"drain.flushes", static_cast<double>(clock.flushes() - flushes_before_drain)},
          {"drain.flush.ms", clock.flush_ms() - flush_ms_before_drain},
          {"first_get.ms", MillisBetween(drained, served)},
          {"wal.segments", static_cast<double>(recovery.segments)},
          {"wal.records", static_cast<double>(recovery.records)},
          {"process.cpu_ms", cpu_ms},
          {"process.minor_faults", static_cast<double>(after.ru_minflt - before.ru_minflt)},
          {"process.major_faults", static_cast<double>(after.ru_majflt - before.ru_majflt)},
          {"process.max_rss_mib", after.ru_maxrss / 1024.0},
          {"process.end_rss_anon_mib", ResidentMib("RssAnon")},
          {"process.end_rss_file_mib", ResidentMib("RssFile")},
      });
  PrintResult(figures);
  // The copy is thrown away: skip the destructor's flush of the replayed batches.
  backend->AbandonForTest();
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The parent: copies, spawns, tabulates

// fdatasyncs every file under `dir` (so no writeback of the copy overlaps a restart) and, when
// `cold`, evicts them from the page cache, so the restart reads them from the disk.
void Settle(const std::string& dir, bool cold) {
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const int fd = open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fdatasync(fd) != 0) Fail(absl::StrCat("fdatasync ", entry.path().string()));
    if (cold && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
      Fail(absl::StrCat("posix_fadvise ", entry.path().string()));
    }
    close(fd);
  }
}

// Copies pristine/ to run/ (LMDB's lock file aside), then Settle.
void PrepareRun(const std::string& pristine, const std::string& run, bool cold) {
  std::filesystem::remove_all(run);
  std::filesystem::create_directories(run);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(pristine)) {
    const std::filesystem::path to =
        std::filesystem::path(run) / std::filesystem::relative(entry.path(), pristine);
    if (entry.is_directory()) {
      std::filesystem::create_directories(to);
    } else if (entry.path().filename() != std::string(kLmdbLockFile)) {
      std::filesystem::copy_file(entry.path(), to);
    }
  }
  Settle(run, cold);
}

// Runs this binary with `flag`=`dir` and returns its RESULT figures.
std::vector<std::pair<std::string, double>> SpawnChild(absl::string_view flag,
                                                       const std::string& dir) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) Fail("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  std::string self = "/proc/self/exe";
  std::string child_flag = absl::StrCat(flag, "=", dir);
  char* argv[] = {self.data(), child_flag.data(), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, self.c_str(), &actions, nullptr, argv, environ) != 0) Fail("posix_spawn");
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0;) output.append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Fail(absl::StrCat(flag, " failed"));
  std::vector<std::pair<std::string, double>> figures;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    if (!absl::ConsumePrefix(&line, "RESULT ")) continue;
    for (absl::string_view field : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(field, absl::MaxSplits('=', 1));
      double value = 0;
      if (!absl::SimpleAtod(kv.second, &value)) Fail(absl::StrCat("bad figure ", field));
      figures.emplace_back(kv.first, value);
    }
  }
  if (figures.empty()) Fail(absl::StrCat(flag, " printed no RESULT"));
  return figures;
}

// Memory the process never touched costs a page fault per page on first touch (and, in a
// virtual machine, possibly a fault in the host too): the start-up allocates ~1 GiB, so this
// machine's price for it says how far the figures carry to another machine.
void PrintFreshMemoryCost() {
  constexpr size_t kProbeBytes = size_t{256} << 20;
  void* memory =
      mmap(nullptr, kProbeBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) Fail("mmap of the memory probe");
  const Clock::time_point start = Clock::now();
  std::memset(memory, 1, kProbeBytes);
  const Clock::time_point first = Clock::now();
  std::memset(memory, 2, kProbeBytes);
  const Clock::time_point second = Clock::now();
  munmap(memory, kProbeBytes);
  constexpr size_t kPageBytes = 4096;
  absl::PrintF(
      "machine: writing 256 MiB of fresh memory %.0f ms (%.1f us per 4 KiB page, its fault\n"
      "included), the same memory again %.0f ms\n",
      MillisBetween(start, first), MillisBetween(start, first) * 1e3 / (kProbeBytes / kPageBytes),
      MillisBetween(first, second));
}

std::string Range(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return absl::StrFormat("%9.1f / %9.1f / %9.1f", values.front(), values[values.size() / 2],
                         values.back());
}

void Measure(const std::string& root, bool cold, int runs) {
  const std::string pristine = store::JoinPath(root, kPristine);
  const std::string run = store::JoinPath(root, kRun);
  std::vector<std::string> order;
  std::map<std::string, std::vector<double>> figures;
  for (int r = 0; r < runs; ++r) {
    PrepareRun(pristine, run, cold);
    auto record = [&](const std::vector<std::pair<std::string, double>>& results) {
      for (const auto& [name, value] : results) {
        if (figures.find(name) == figures.end()) order.push_back(name);
        figures[name].push_back(value);
      }
    };
    record(SpawnChild("--child", run));
    absl::PrintF("  %s run %d: %.0f ms\n", cold ? "cold" : "warm", r + 1,
                 figures["total.ms"].back());
  }
  absl::PrintF("\n%s page cache, %d restarts (min / median / max)\n", cold ? "cold" : "warm", runs);
  for (const std::string& name : order) {
    absl::PrintF("  %-34s %s\n", name, Range(figures[name]));
  }
  std::filesystem::remove_all(run);
}

int Main() {
  const std::string child = absl::GetFlag(FLAGS_child);
  if (!child.empty()) return RunChild(child);
  const std::string root = absl::GetFlag(FLAGS_dir);
  const int runs = absl::GetFlag(FLAGS_runs);
  const std::string cache = absl::GetFlag(FLAGS_cache);
  if (runs < 1 || runs > kMaxRuns) Fail("--runs must be in [1, 100]");
  if (cache != "both" && cache != "warm" && cache != "cold") Fail("--cache: both, warm or cold");

  const std::string pristine = store::JoinPath(root, kPristine);
  auto layout = ReadLayout(store::JoinPath(pristine, kLayoutFile));
  bool matches = layout.has_value() && !absl::GetFlag(FLAGS_rebuild);
  for (const auto& [key, value] : ExpectedLayout()) {
    if (matches && (layout->find(key) == layout->end() || layout->at(key) != value)) {
      matches = false;
    }
  }
  if (!matches) {
    absl::PrintF("building %s\n", pristine);
    Build(pristine);
    layout = ReadLayout(store::JoinPath(pristine, kLayoutFile));
    if (!layout.has_value()) Fail("the build wrote no LAYOUT");
  }
  std::vector<std::string> described;
  for (const auto& [key, value] : *layout) described.push_back(absl::StrCat(key, "=", value));
  absl::PrintF("data directory %s: %s\n", pristine, absl::StrJoin(described, " "));
  PrintFreshMemoryCost();
  if (cache != "cold") Measure(root, /*cold=*/false, runs);
  if (cache != "warm") Measure(root, /*cold=*/true, runs);
  return 0;
}

}  // namespace
}  // namespace kvstore::node

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return kvstore::node::Main();
}
