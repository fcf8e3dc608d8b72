// Applied puts per second in the server core over the in-memory MVCC backend, driven as a
// production node drives it: Submit a batch of puts on the leader, then until nothing is left:
// GetReady (which applies committed entries), persist the Raft write into an in-memory log,
// deliver every message to its peer, Advance, OnPersisted. No ticks: the batch quiesces without
// them, so the figures are the cost of the request path, not of timers.
//
//   bazel run -c opt //core/server:server_benchmark
//
// Workload: 256-byte values, keys from a fixed set of 10,000 (scattered, each written in turn),
// batches of 1 and 64 puts per Ready round. As etcd's revision auto-compaction would, the driver
// compacts the MVCC history every kCompactionIntervalPuts puts (through the log, timed), keeping
// the newest kRetainedRevisions revisions, so the backend (and the Raft snapshots the server takes
// every ServerConfig::snapshot_every_entries entries) stays bounded however long the run.
// PutUncompactedHistory turns compaction off and times one snapshot interval after a given
// history: what a put costs when the backend holds that much.
//
// Counters (per put, steady state, measured only inside the timed loop):
//   time/put       wall time (items_per_second is its inverse)
//   allocs/put     heap allocations of every member (every global operator new is replaced)
//   bytes/put      heap bytes requested
//   core_allocs    the server cores' share of allocs/put; the rest is the client building the
//                  request and the driver (copying messages into the transport, the log)
//   msgs/put       Raft messages delivered between members
// SERVER_BENCH_PHASES=1 adds allocations (a.*) and bytes (b.*) per put of the driver and of each
// entry point of the core: submit, ready (GetReady, where entries are applied), step, advance
// (Advance and OnPersisted; Raft snapshots are taken in Advance).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/base/alloc_counter.h"
#include "core/base/errors.h"
#include "core/server/server.h"
#include "core/server/testing/server_cluster.h"

// ---------------------------------------------------------------------------------------------
// Allocation counting. The benchmark runs single-threaded, so plain counters suffice.

namespace alloc_counter = kvstore::alloc_counter;

namespace {

// Who is running: allocations are attributed to the client and driver, or to one entry point
// of the server core.
enum class Phase : uint8_t { kDriver, kSubmit, kReady, kStep, kAdvance };
constexpr int kPhaseCount = 5;
static_assert(kPhaseCount <= alloc_counter::kMaxPhases);
constexpr const char* kPhaseNames[kPhaseCount] = {"driver", "submit", "ready", "step", "advance"};

}  // namespace

namespace kvstore::server {
namespace {

constexpr std::size_t kValueSizeBytes = 256;
constexpr std::size_t kKeyCount = 10000;
// A stride coprime with kKeyCount scatters consecutive puts over the key set (every key is
// written once per kKeyCount puts) without a random generator.
constexpr std::size_t kKeyStride = 7919;
// Distinct values submitted round-robin, built before timing.
constexpr std::size_t kValuePoolSize = 1024;
// Revision-based auto-compaction (etcd --auto-compaction-mode=revision): every this many puts,
// compact to the current revision minus kRetainedRevisions.
constexpr uint64_t kCompactionIntervalPuts = 10000;
constexpr int64_t kRetainedRevisions = 10000;
// The driver's copy of the Raft log drops entries this far behind the newest.
constexpr std::size_t kLogRetainedEntries = 8192;
// Rounds (all readies, then all messages) one batch may take to quiesce.
constexpr int kMaxDriveRounds = 1000;

class ScopedPhase {
 public:
  explicit ScopedPhase(Phase phase)
      : previous_(std::exchange(alloc_counter::g_phase, static_cast<int>(phase))) {}
  ~ScopedPhase() { alloc_counter::g_phase = previous_; }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  int previous_;
};

[[noreturn]] void Fail(const std::string& what) {
  absl::FPrintF(stderr, "server_benchmark: %s\n", what.c_str());
  std::abort();
}

// Durable Raft storage of one member, in memory: the hard state and a bounded tail of the log
// (nothing reads it back: the benchmark never restarts a member). Its vector keeps its capacity
// across trims, so steady state allocates nothing here.
class LeanLog {
 public:
  void Write(const raft::PersistRequest& request) {
    if (request.snapshot != nullptr) {
      first_index_ = request.snapshot->metadata.index + 1;
      entries_.clear();
    }
    if (!request.entries.empty()) {
      const raft::Index first = request.entries.front().index;
      if (first < first_index_ || first > first_index_ + entries_.size()) {
        Fail(absl::StrFormat("persist leaves a gap at index %d", first));
      }
      entries_.resize(first - first_index_);  // truncates a conflicting suffix
      entries_.insert(entries_.end(), request.entries.begin(), request.entries.end());
      if (entries_.size() > 2 * kLogRetainedEntries) {
        const std::size_t drop = entries_.size() - kLogRetainedEntries;
        entries_.erase(entries_.begin(), entries_.begin() + drop);
        first_index_ += drop;
      }
    }
    if (request.hard_state.has_value()) hard_state_ = *request.hard_state;
  }

 private:
  raft::HardState hard_state_;
  raft::Index first_index_ = 1;
  std::vector<raft::Entry> entries_;
};

struct BenchMember {
  Server* server = nullptr;
  LeanLog log;
};

// The members of a ServerCluster (which bootstraps them and elects a leader), driven by a lean
// loop of their own from then on: every message is delivered, nothing is ticked.
class Harness {
 public:
  explicit Harness(int member_count) : cluster_(MemberIds(member_count)) {
    leader_id_ = cluster_.WaitForLeader();
    if (leader_id_ == raft::kNoNode) Fail("no leader elected");
    for (raft::NodeId id : cluster_.ids()) {
      members_.push_back(BenchMember{&cluster_.server(id), LeanLog()});
      // The cluster's log copy is not written from here on; seed ours with its tail.
      raft::PersistRequest seed;
      seed.hard_state = cluster_.member(id).log.hard_state();
      seed.snapshot = cluster_.member(id).log.snapshot();
      seed.entries = cluster_.member(id).log.entries();
      members_.back().log.Write(seed);
    }
    outbox_.reserve(64);
    delivering_.reserve(64);
  }

  Server& leader() { return cluster_.server(leader_id_); }

  void Submit(Request request) {
    ScopedPhase submit(Phase::kSubmit);
    leader().Submit(std::move(request));
  }

  // Processes every Ready and delivers every message until nothing is left to do.
  void Drive() {
    for (int round = 0; round < kMaxDriveRounds; ++round) {
      bool busy = false;
      for (BenchMember& m : members_) {
        while (HasReady(m)) {
          ProcessReady(m);
          busy = true;
        }
      }
      if (outbox_.empty()) {
        if (!busy) return;
        continue;
      }
      std::swap(outbox_, delivering_);
      messages_delivered_ += delivering_.size();
      for (raft::Message& message : delivering_) {
        ScopedPhase step(Phase::kStep);
        if (!cluster_.server(message.to).Step(std::move(message)).ok()) Fail("step refused");
      }
      delivering_.clear();
    }
    Fail("the cluster did not quiesce");
  }

  const std::vector<BenchMember>& members() const { return members_; }
  uint64_t puts_answered() const { return puts_answered_; }
  uint64_t messages_delivered() const { return messages_delivered_; }

 private:
  static std::vector<raft::NodeId> MemberIds(int member_count) {
    std::vector<raft::NodeId> ids;
    for (int i = 1; i <= member_count; ++i) ids.push_back(i);
    return ids;
  }

  static bool HasReady(BenchMember& m) {
    ScopedPhase ready(Phase::kReady);
    return m.server->HasReady();
  }

  void ProcessReady(BenchMember& m) {
    const Ready* ready;
    {
      ScopedPhase get_ready(Phase::kReady);
      ready = &m.server->GetReady();
    }
    m.log.Write(ready->raft->persist);
    for (const raft::Message& message : ready->raft->messages) outbox_.push_back(message);
    for (const Response& response : ready->responses) {
      if (!response.status.ok()) {
        Fail(absl::StrFormat("member %d: request %d failed: %s", m.server->id(),
                             response.request_id, response.status.ToString()));
      }
      if (response.type == RequestType::kPut) ++puts_answered_;
    }
    const uint64_t persist_id = ready->raft->persist.id;
    ScopedPhase advance(Phase::kAdvance);
    m.server->Advance();
    if (persist_id != 0) m.server->OnPersisted(persist_id);
  }

  testing::ServerCluster cluster_;
  raft::NodeId leader_id_ = raft::kNoNode;
  std::vector<BenchMember> members_;
  std::vector<raft::Message> outbox_;
  std::vector<raft::Message> delivering_;
  uint64_t puts_answered_ = 0;
  uint64_t messages_delivered_ = 0;
};

// The client side: keys, values and the compaction schedule.
class Workload {
 public:
  explicit Workload(bool compact) : compact_(compact) {
    keys_.reserve(kKeyCount);
    for (std::size_t i = 0; i < kKeyCount; ++i) keys_.push_back(absl::StrFormat("key/%08d", i));
    values_.reserve(kValuePoolSize);
    std::string value(kValueSizeBytes, '\0');
    for (std::size_t i = 0; i < kValuePoolSize; ++i) {
      for (std::size_t b = 0; b < kValueSizeBytes; ++b) {
        value[b] = static_cast<char>('a' + (i * 131 + b * 7) % 26);
      }
      values_.push_back(value);
    }
  }

  // Submits `batch` puts (and a compaction when one is due) on the leader.
  void SubmitBatch(Harness& harness, int batch) {
    for (int p = 0; p < batch; ++p) {
      Request request;
      request.type = RequestType::kPut;
      request.put.key = keys_[(puts_ * kKeyStride) % kKeyCount];
      request.put.value = values_[puts_ % kValuePoolSize];
      harness.Submit(std::move(request));
      ++puts_;
      if (compact_ && puts_ % kCompactionIntervalPuts == 0) {
        const mvcc::Store& store = harness.leader().store();
        const mvcc::Revision target = store.current_revision() - kRetainedRevisions;
        if (target > store.compact_revision()) {
          Request compact;
          compact.type = RequestType::kCompact;
          compact.revision = target;
          harness.Submit(std::move(compact));
        }
      }
    }
  }

  uint64_t puts() const { return puts_; }

 private:
  const bool compact_;
  std::vector<std::string> keys_;
  std::vector<std::string> values_;
  uint64_t puts_ = 0;
};

// `history_puts` puts are applied before timing; without `compact` they all stay in the MVCC
// history.
void RunPuts(benchmark::State& state, int member_count, int batch, uint64_t history_puts,
             bool compact) {
  Workload workload(compact);
  Harness harness(member_count);
  const uint64_t warm_up_puts = history_puts;
  while (workload.puts() < warm_up_puts) {
    workload.SubmitBatch(harness, batch);
    harness.Drive();
  }
  const uint64_t answered_before = harness.puts_answered();
  const uint64_t delivered_before = harness.messages_delivered();

  alloc_counter::Start();
  for (auto _ : state) {
    workload.SubmitBatch(harness, batch);
    harness.Drive();
  }
  alloc_counter::Stop();

  const double puts = static_cast<double>(state.iterations()) * batch;
  if (harness.puts_answered() - answered_before != state.iterations() * batch) {
    state.SkipWithError("a put was not answered");
    return;
  }
  const mvcc::Revision revision = harness.members().front().server->store().current_revision();
  for (const BenchMember& m : harness.members()) {
    if (m.server->store().current_revision() != revision) {
      state.SkipWithError("a member did not apply every put");
      return;
    }
  }
  uint64_t calls = 0;
  uint64_t bytes = 0;
  for (int phase = 0; phase < kPhaseCount; ++phase) {
    calls += alloc_counter::g_counts.calls[phase];
    bytes += alloc_counter::g_counts.bytes[phase];
  }
  state.SetItemsProcessed(static_cast<int64_t>(puts));
  state.counters["time/put"] =
      benchmark::Counter(puts, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["allocs/put"] = benchmark::Counter(calls / puts);
  state.counters["bytes/put"] = benchmark::Counter(bytes / puts);
  state.counters["core_allocs"] =
      benchmark::Counter((calls - alloc_counter::g_counts.calls[0]) / puts);
  state.counters["msgs/put"] =
      benchmark::Counter((harness.messages_delivered() - delivered_before) / puts);
  if (std::getenv("SERVER_BENCH_PHASES") != nullptr) {
    for (int phase = 0; phase < kPhaseCount; ++phase) {
      state.counters[std::string("a.") + kPhaseNames[phase]] =
          benchmark::Counter(alloc_counter::g_counts.calls[phase] / puts);
      state.counters[std::string("b.") + kPhaseNames[phase]] =
          benchmark::Counter(alloc_counter::g_counts.bytes[phase] / puts);
    }
  }
}

// Steady state: warmed up past one Raft snapshot and one compaction, with every key written.
uint64_t SteadyStatePuts() {
  const ServerConfig defaults;
  return std::max<uint64_t>(defaults.snapshot_every_entries, kCompactionIntervalPuts) + kKeyCount;
}

void BM_PutOneMember(benchmark::State& state) {
  RunPuts(state, 1, static_cast<int>(state.range(0)), SteadyStatePuts(), true);
}
void BM_PutThreeMembers(benchmark::State& state) {
  RunPuts(state, 3, static_cast<int>(state.range(0)), SteadyStatePuts(), true);
}

BENCHMARK(BM_PutOneMember)->ArgName("batch")->Arg(1)->Arg(64);
BENCHMARK(BM_PutThreeMembers)->ArgName("batch")->Arg(1)->Arg(64);

// The cost of a put as the MVCC history grows, nothing compacted: batches of 64 on one member,
// timed over exactly one Raft snapshot interval after `history` puts. Every Raft snapshot copies
// the whole backend (Server::Impl::DumpBackend), so time/put grows with the history.
constexpr int kHistoryBatch = 64;
void BM_PutUncompactedHistory(benchmark::State& state) {
  RunPuts(state, 1, kHistoryBatch, static_cast<uint64_t>(state.range(0)), false);
}
BENCHMARK(BM_PutUncompactedHistory)
    ->ArgName("history")
    ->Arg(50000)
    ->Arg(200000)
    ->Iterations(static_cast<int64_t>(ServerConfig{}.snapshot_every_entries) / kHistoryBatch + 1);

}  // namespace
}  // namespace kvstore::server

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
