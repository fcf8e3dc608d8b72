// crash_child: a single-member store in a process of its own, for the crash tests
// (node/crash_test.cc), which kill it with SIGKILL at random moments and restart it on the same
// directory, then check that nothing it acknowledged was lost.
//
//   crash_child --dir=D --first=N --count=C --seed=S
//       Opens (or creates) the store in D (the WAL in D/wal, the LMDB backend in D/db), elects
//       itself, prints "ready", then puts k<N> .. k<N+C-1> (values: crash_workload.h), at most
//       kMaxInflightPuts at once, and prints "ack <key> <value>" when the member answers each
//       put, which it does only once the WAL sync that holds its entry has completed. Exits 0
//       after C acknowledgements. It checks nothing about what an earlier run left.
//   crash_child --verify --dir=D
//       Opens the store, elects itself, waits until its whole log is applied, prints
//       "kv <key> <value>" for every key (a serializable range over the keyspace) and exits 0.
//   Either mode: --wal-segment-bytes=B and --wal-compact-entries=E override the production
//   defaults, so a short test crosses segment boundaries and compactions; --flush-interval-ms=F
//   sets the loop's backend flush period (0: never; the backend's own batch interval alone).
// Exit codes (crash_workload.h): 3 when the store refuses to start (its error on stderr), 4 when
// the member or the backend stops on a storage failure (the member's stop reason on stderr).
//
// The driver is shaped like the node's: one loop thread polls an eventfd, and a sync thread runs
// each WAL sync batch (the fdatasyncs) while the loop goes on appending the next group commit.
// Ticks and backend flushes run on wall-clock timers.

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/raft/check.h"
#include "core/server/server.h"
#include "node/crash_workload.h"
#include "node/member.h"
#include "store/file_system.h"
#include "store/lmdb_backend.h"
#include "store/posix_file_system.h"
#include "store/wal.h"

namespace kvstore::node {
namespace {

using crash::kAckPrefix;
using crash::kExitOk;
using crash::kExitStalled;
using crash::kExitStopped;
using crash::kExitStoreRefused;
using crash::kExitUsage;
using crash::Key;
using crash::kKvPrefix;
using crash::kMaxInflightPuts;
using crash::kReadyLine;
using crash::Value;
using Clock = std::chrono::steady_clock;

// One Raft tick of wall time (ServerConfig::tick_ms; etcd's default heartbeat interval).
constexpr int64_t kTickMs = 100;
// The backend's batches become durable within etcd's --backend-batch-interval.
constexpr int64_t kLmdbBatchIntervalMs = 100;
// The loop flushes the backend a little more often than that interval. An idle loop needs its
// own flush (the backend checks the interval only inside Commit), and ahead of the interval
// every durable commit is a Flush here, whose failure (a full disk) stops the child cleanly. A
// commit the backend makes inside an apply's Commit fails into a RAFT_CHECK in the server,
// which aborts. The lead covers the backend's whole-millisecond clock and the loop's latency.
constexpr int64_t kDefaultFlushIntervalMs = 90;
// election_tick 10 randomized up to 20: a single member is leader well within this.
constexpr int kMaxElectionTicks = 200;
// --verify: ticks for the leader's first entry to commit and the log to be applied.
constexpr int kMaxApplyTicks = 50;
// A sync batch that has not finished by then is reported, not waited for forever.
constexpr int64_t kMaxSyncWaitMs = 10'000;
// The loop gives up when no put was acknowledged for this long.
constexpr int64_t kMaxStallMs = 10'000;

int64_t MillisSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// Writes all of `text` with write(2): nothing waits in a stdio buffer for a SIGKILL to drop, so
// the killer sees every line the child printed.
void WriteAll(int fd, absl::string_view text) {
  while (!text.empty()) {
    const ssize_t written = write(fd, text.data(), text.size());
    if (written < 0 && errno == EINTR) continue;
    // The reader is gone (EPIPE): nobody is left to tell; this run is over.
    if (written <= 0) std::_Exit(kExitStalled);
    text.remove_prefix(static_cast<size_t>(written));
  }
}

void PrintError(absl::string_view text) { WriteAll(STDERR_FILENO, absl::StrCat(text, "\n")); }

struct Flags {
  std::string dir;
  uint64_t first = 1;
  uint64_t count = 0;
  uint64_t seed = 0;
  bool verify = false;
  uint64_t wal_segment_bytes = store::kDefaultSegmentBytes;
  uint64_t wal_compact_entries = MemberOptions{}.wal_compact_entries;
  uint64_t flush_interval_ms = kDefaultFlushIntervalMs;
};

// Parses --name=value flags; every flag must be known and every number well formed (a
// misspelt flag read as a default would test something else than asked).
std::optional<Flags> ParseFlags(int argc, char** argv, std::string* error) {
  Flags flags;
  const std::map<std::string, uint64_t*> numbers = {
      {"first", &flags.first},
      {"count", &flags.count},
      {"seed", &flags.seed},
      {"wal-segment-bytes", &flags.wal_segment_bytes},
      {"wal-compact-entries", &flags.wal_compact_entries},
      {"flush-interval-ms", &flags.flush_interval_ms},
  };
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--verify") {
      flags.verify = true;
      continue;
    }
    const size_t equals = arg.find('=');
    if (arg.substr(0, 2) != "--" || equals == absl::string_view::npos) {
      *error = absl::StrCat("expected --name=value, got '", arg, "'");
      return std::nullopt;
    }
    const std::string name(arg.substr(2, equals - 2));
    const absl::string_view value = arg.substr(equals + 1);
    if (name == "dir") {
      flags.dir = std::string(value);
    } else if (auto it = numbers.find(name); it != numbers.end()) {
      if (!absl::SimpleAtoi(value, it->second)) {
        *error = absl::StrCat("--", name, " needs a non-negative integer, got '", value, "'");
        return std::nullopt;
      }
    } else {
      *error = absl::StrCat("unknown flag --", name);
      return std::nullopt;
    }
  }
  if (flags.dir.empty()) *error = "--dir is required";
  if (!flags.verify && flags.count == 0) *error = "--count must be at least 1";
  if (flags.first == 0) *error = "--first must be at least 1";
  if (!error->empty()) return std::nullopt;
  return flags;
}

// Runs the member's WAL sync batches on a thread of their own, as the node does: the loop keeps
// appending the next group commit while a batch's fdatasyncs run, and learns that the batch
// finished through an eventfd (Member::OnSyncDone must run on the loop thread).
class SyncThread : public SyncExecutor {
 public:
  SyncThread() : event_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    RAFT_CHECK(event_fd_ >= 0) << "crash_child: eventfd failed, errno " << errno;
    thread_ = std::thread([this] { Loop(); });
  }
  // The owner waits for a running batch first (it belongs to the member).
  ~SyncThread() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
    close(event_fd_);
  }

  void Start(store::Wal::SyncBatch* batch) override {
    std::lock_guard<std::mutex> lock(mu_);
    RAFT_CHECK(!busy_) << "crash_child: a WAL sync batch started while another runs";
    batch_ = batch;
    busy_ = true;
    wake_.notify_one();
  }

  int event_fd() const { return event_fd_; }
  // A batch was started and its result not yet taken.
  bool busy() const {
    std::lock_guard<std::mutex> lock(mu_);
    return busy_;
  }
  // The finished batch's result; nullopt while it still runs.
  std::optional<absl::Status> TakeResult() {
    uint64_t signals = 0;
    while (read(event_fd_, &signals, sizeof(signals)) < 0 && errno == EINTR) {
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!result_.has_value()) return std::nullopt;
    std::optional<absl::Status> result = std::move(result_);
    result_.reset();
    busy_ = false;
    return result;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      wake_.wait(lock, [this] { return stopping_ || batch_ != nullptr; });
      if (batch_ == nullptr) return;
      store::Wal::SyncBatch* batch = batch_;
      batch_ = nullptr;
      lock.unlock();
      absl::Status result = batch->Run();
      lock.lock();
      result_ = std::move(result);
      const uint64_t one = 1;
      while (write(event_fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
      }
    }
  }

  const int event_fd_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  store::Wal::SyncBatch* batch_ = nullptr;  // to run
  std::optional<absl::Status> result_;      // of the batch that ran
  bool busy_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

// One member over the WAL and the LMDB backend in --dir, driven by a poll loop.
class CrashChild : public PeerTransport, public ClientSink {
 public:
  explicit CrashChild(Flags flags) : flags_(std::move(flags)) {}

  ~CrashChild() override {
    // A running batch belongs to the member: let it finish before the member goes.
    const Clock::time_point start = Clock::now();
    while (sync_.busy() && MillisSince(start) < kMaxSyncWaitMs) {
      pollfd fd{sync_.event_fd(), POLLIN, 0};
      poll(&fd, 1, static_cast<int>(kMaxSyncWaitMs));
      if (std::optional<absl::Status> result = sync_.TakeResult(); result.has_value()) break;
    }
    if (sync_.busy()) {
      PrintError("crash_child: a WAL sync never finished; exiting without closing the store");
      std::_Exit(kExitStalled);
    }
    member_.reset();
    backend_.reset();  // flushes its committed batches
  }

  // Opens the store and elects the member; an error means the store refused to start.
  absl::Status Start() {
    if (absl::Status s = store::CreateDirDurably(&fs_, flags_.dir); !s.ok()) return s;
    // Two children on one directory would be a bug of the test, not a crash to survive.
    auto lock = fs_.Lock(store::JoinPath(flags_.dir, "lock"));
    if (!lock.ok()) return lock.status();
    lock_ = std::move(*lock);

    store::LmdbOptions lmdb;
    lmdb.batch_interval_ms = kLmdbBatchIntervalMs;
    auto backend = store::LmdbBackend::Open(store::JoinPath(flags_.dir, "db"), lmdb);
    if (!backend.ok()) return backend.status();
    backend_ = std::move(*backend);

    MemberOptions options;
    options.server.id = 1;
    options.server.election_tick = 10;
    options.server.heartbeat_tick = 1;
    options.server.tick_ms = kTickMs;
    options.server.random_seed = flags_.seed;
    options.wal.segment_bytes = flags_.wal_segment_bytes;
    options.wal_compact_entries = flags_.wal_compact_entries;
    MemberIo io;
    io.transport = this;
    io.sync = &sync_;
    io.sink = this;
    std::vector<server::Member> founding = {
        server::Member{1, "crash-child", {"http://127.0.0.1:2380"}}};
    auto member = Member::Open(options, &fs_, store::JoinPath(flags_.dir, "wal"), backend_.get(),
                               io, std::move(founding));
    if (!member.ok()) return member.status();
    member_ = std::move(*member);
    PrintRecovery(member_->wal().recovery());

    member_->Drain();
    for (int tick = 0; tick < kMaxElectionTicks && !member_->server().is_leader(); ++tick) {
      member_->Tick();
      if (absl::Status s = AwaitIdle(); !s.ok()) return s;
    }
    if (!member_->server().is_leader()) {
      return absl::DeadlineExceededError(
          absl::StrCat("no leader after ", kMaxElectionTicks, " ticks"));
    }
    return absl::OkStatus();
  }

  // The put loop; returns the exit code.
  int RunPuts() {
    WriteAll(STDOUT_FILENO, absl::StrCat(kReadyLine, "\n"));
    const uint64_t end = flags_.first + flags_.count;
    uint64_t next = flags_.first;
    Clock::time_point next_tick = Clock::now() + std::chrono::milliseconds(kTickMs);
    const bool flushes = flags_.flush_interval_ms != 0;
    const auto flush_interval = std::chrono::milliseconds(flags_.flush_interval_ms);
    Clock::time_point next_flush =
        flushes ? Clock::now() + flush_interval : Clock::time_point::max();
    last_ack_ = Clock::now();
    while (acked_ < flags_.count) {
      while (exit_code_ == kExitOk && puts_.size() < kMaxInflightPuts && next < end) {
        server::Request request;
        request.type = server::RequestType::kPut;
        request.put.key = Key(next);
        request.put.value = Value(next, flags_.seed);
        // Submitted to the core first and carried out after the id is recorded: a refusal is
        // answered by the very next Ready.
        puts_[member_->server().Submit(std::move(request))] = next;
        ++next;
        member_->Drain();
      }
      if (exit_code_ != kExitOk) return exit_code_;
      if (member_->stopped()) return kExitStopped;
      if (MillisSince(last_ack_) > kMaxStallMs) {
        PrintError(absl::StrCat("crash_child: no put acknowledged for ", kMaxStallMs, " ms"));
        return kExitStalled;
      }
      const Clock::time_point deadline = std::min(next_tick, next_flush);
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd fd{sync_.event_fd(), POLLIN, 0};
      const bool sync_done = poll(&fd, 1, static_cast<int>(std::max<int64_t>(wait.count(), 0))) > 0;
      const Clock::time_point now = Clock::now();
      // Before the applies a finished sync releases, so their Commit finds a fresh batch.
      if (now >= next_flush) {
        if (absl::Status s = backend_->Flush(); !s.ok()) {
          PrintError(absl::StrCat("crash_child: backend stopped: ", s.ToString()));
          return kExitStopped;
        }
        next_flush = now + flush_interval;
      }
      if (sync_done) FinishSync();
      if (now >= next_tick) {
        member_->Tick();
        next_tick = now + std::chrono::milliseconds(kTickMs);
      }
    }
    return member_->stopped() ? kExitStopped : exit_code_;
  }

  // --verify: prints every key; returns the exit code.
  int Verify() {
    for (int tick = 0; tick < kMaxApplyTicks &&
                       member_->server().applied_index() < member_->server().last_index();
         ++tick) {
      member_->Tick();
      if (absl::Status s = AwaitIdle(); !s.ok()) {
        PrintError(absl::StrCat("crash_child: ", s.ToString()));
        return kExitStoreRefused;
      }
    }
    if (member_->server().applied_index() < member_->server().last_index()) {
      PrintError(absl::StrCat("crash_child: applied ", member_->server().applied_index(), " of ",
                              member_->server().last_index(), " entries after ", kMaxApplyTicks,
                              " ticks"));
      return kExitStalled;
    }
    server::Request request;
    request.type = server::RequestType::kRange;
    // etcd's whole keyspace: from "\0" with range end "\0" (every key at or after it).
    request.range.key = std::string(1, '\0');
    request.range.range_end = std::string(1, '\0');
    request.range.serializable = true;
    range_id_ = member_->server().Submit(std::move(request));
    member_->Drain();
    if (!range_.has_value()) {
      PrintError("crash_child: the serializable range was not answered at once");
      return kExitStalled;
    }
    if (!range_->status.ok()) {
      PrintError(absl::StrCat("crash_child: range: ", range_->status.ToString()));
      return kExitStoreRefused;
    }
    std::string out;
    for (const mvcc::KeyValue& kv : range_->range.kvs) {
      absl::StrAppend(&out, kKvPrefix, kv.key, " ", kv.value, "\n");
    }
    WriteAll(STDOUT_FILENO, out);
    return member_->stopped() ? kExitStoreRefused : kExitOk;
  }

  // PeerTransport: a single member has no peers.
  void Send(const raft::Message&) override {}

  // ClientSink.
  void OnResponse(const server::Response& response) override {
    if (response.request_id == range_id_) {
      range_ = response;
      return;
    }
    auto it = puts_.find(response.request_id);
    RAFT_CHECK(it != puts_.end()) << "crash_child: a response to unknown request "
                                  << response.request_id;
    const uint64_t n = it->second;
    puts_.erase(it);
    if (!response.status.ok()) {
      PrintError(
          absl::StrCat("crash_child: put ", Key(n), " failed: ", response.status.ToString()));
      exit_code_ = kExitStalled;
      return;
    }
    WriteAll(STDOUT_FILENO, absl::StrCat(kAckPrefix, Key(n), " ", Value(n, flags_.seed), "\n"));
    ++acked_;
    last_ack_ = Clock::now();
  }
  void OnWatchResponse(const mvcc::WatchResponse&) override {}
  void OnStop(const absl::Status& why) override {
    PrintError(absl::StrCat("crash_child: ", why.ToString()));
  }

 private:
  // Hands the sync thread's finished batch, if any, to the member.
  void FinishSync() {
    if (std::optional<absl::Status> result = sync_.TakeResult(); result.has_value()) {
      member_->OnSyncDone(std::move(*result));
    }
  }

  // Runs sync batches until none is needed (the member starts the next one itself).
  absl::Status AwaitIdle() {
    const Clock::time_point start = Clock::now();
    while (sync_.busy() && !member_->stopped()) {
      const int64_t left_ms = kMaxSyncWaitMs - MillisSince(start);
      if (left_ms <= 0) {
        return absl::DeadlineExceededError(
            absl::StrCat("a WAL sync took longer than ", kMaxSyncWaitMs, " ms"));
      }
      pollfd fd{sync_.event_fd(), POLLIN, 0};
      if (poll(&fd, 1, static_cast<int>(left_ms)) > 0) FinishSync();
    }
    return member_->failure();
  }

  static void PrintRecovery(const store::WalRecovery& recovery) {
    std::string line = absl::StrCat("crash_child: wal recovered ", recovery.segments, " segments, ",
                                    recovery.records, " records");
    if (!recovery.torn_file.empty()) {
      absl::StrAppend(&line, "; torn tail cut in ", recovery.torn_file, " at offset ",
                      recovery.torn_offset, " (", recovery.torn_bytes, " bytes)");
    }
    PrintError(line);
  }

  const Flags flags_;
  store::PosixFileSystem fs_;
  std::unique_ptr<store::FileLock> lock_;
  std::unique_ptr<store::LmdbBackend> backend_;
  SyncThread sync_;
  std::unique_ptr<Member> member_;
  std::map<server::RequestId, uint64_t> puts_;  // in flight: request -> N
  uint64_t acked_ = 0;
  Clock::time_point last_ack_;
  int exit_code_ = kExitOk;
  server::RequestId range_id_ = 0;
  std::optional<server::Response> range_;
};

int Main(int argc, char** argv) {
  std::string error;
  std::optional<Flags> flags = ParseFlags(argc, argv, &error);
  if (!flags.has_value()) {
    PrintError(absl::StrCat("crash_child: ", error,
                            "\nusage: crash_child --dir=D --first=N --count=C --seed=S\n"
                            "       crash_child --verify --dir=D"));
    return kExitUsage;
  }
  const bool verify = flags->verify;
  CrashChild child(std::move(*flags));
  if (absl::Status s = child.Start(); !s.ok()) {
    PrintError(absl::StrCat("crash_child: the store refused to start: ", s.ToString()));
    return kExitStoreRefused;
  }
  return verify ? child.Verify() : child.RunPuts();
}

}  // namespace
}  // namespace kvstore::node

int main(int argc, char** argv) { return kvstore::node::Main(argc, argv); }
