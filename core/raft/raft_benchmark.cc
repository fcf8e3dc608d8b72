// Proposal throughput of the Raft core, driven through the public API exactly as a production
// driver would: Propose, GetReady, persist into an in-memory log, deliver every message by
// stepping it into its peer, apply committed entries, Advance, OnPersisted.
//
//   bazel run -c opt //core/raft:raft_benchmark
//
// Counters (per proposal, steady state, measured only inside the timed loop):
//   time/prop    wall time
//   allocs/prop  heap allocations (every global operator new variant is replaced below)
//   bytes/prop   heap bytes requested
//   msgs/prop    messages delivered between nodes
//   drv_allocs   the driver's share of allocs/prop: copying a Ready's messages into the
//                transport (a multi-entry append owns a heap array of entries) and compaction
//                snapshots. The rest is the core's.
// RAFT_BENCH_PHASES=1 adds allocations (a.*) and bytes (b.*) per proposal for each entry point of
// the core (propose, ready, step, advance, compact): where to look when a hot path allocates.
// Anchors (etcd 3.4 raft, Go): OneVoter256 ~470 ns (3 allocs) unbatched, ~280 ns (1 alloc) at
// batch 64; ThreeVoters256 ~5.5 us (24 allocs) unbatched, ~4.0 us at batch 64.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/base/alloc_counter.h"
#include "core/raft/raft.h"
#include "core/raft/types.h"

// ---------------------------------------------------------------------------------------------
// Allocation counting. The benchmark runs single-threaded, so plain counters suffice (an atomic
// increment per allocation would itself distort the timing).

namespace alloc_counter = kvstore::alloc_counter;

namespace {

// Who is running: allocations are attributed to the driver or to one entry point of the core.
enum class Phase : uint8_t { kDriver, kPropose, kReady, kStep, kAdvance, kCompact };
constexpr int kPhaseCount = 6;
static_assert(kPhaseCount <= alloc_counter::kMaxPhases);
constexpr const char* kPhaseNames[kPhaseCount] = {"driver", "propose", "ready",
                                                  "step",   "advance", "compact"};

}  // namespace

namespace kvstore::raft {
namespace {

constexpr std::size_t kPayloadSizeBytes = 256;
// Distinct payloads proposed round-robin: built before timing, shared by reference count, so the
// proposal's own buffer (the client's allocation) is not charged to the core.
constexpr std::size_t kPayloadPoolSize = 1024;
// Each node compacts its log once it holds this many applied entries, keeping a margin so that a
// follower is never sent a snapshot. Bounds memory however many iterations the benchmark runs.
constexpr Index kCompactionIntervalEntries = 4096;
constexpr Index kCompactionMarginEntries = 64;
// Rounds (all readies, then all messages) one proposal batch may take to quiesce.
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
  absl::FPrintF(stderr, "raft_benchmark: %s\n", what.c_str());
  std::abort();
}

// Durable storage of one node, in memory: the hard state, the latest snapshot and the entries
// after it. Its vector keeps its capacity across compactions, so steady state allocates nothing.
class LeanLog {
 public:
  void Write(const PersistRequest& request) {
    if (request.snapshot != nullptr) {
      snapshot_index_ = request.snapshot->metadata.index;
      entries_.clear();
    }
    if (!request.entries.empty()) {
      const Index first = request.entries.front().index;
      if (first <= snapshot_index_ || first > snapshot_index_ + entries_.size() + 1) {
        Fail("persist leaves a gap or rewrites the snapshot at index " + std::to_string(first));
      }
      entries_.resize(first - snapshot_index_ - 1);  // truncates a conflicting suffix
      entries_.insert(entries_.end(), request.entries.begin(), request.entries.end());
    }
    if (request.hard_state.has_value()) hard_state_ = *request.hard_state;
  }

  // The application snapshotted up to `index`: drop the entries it covers.
  void CompactTo(Index index) {
    if (index <= snapshot_index_) return;
    const Index drop = std::min<Index>(index - snapshot_index_, entries_.size());
    entries_.erase(entries_.begin(), entries_.begin() + drop);
    snapshot_index_ = index;
  }

 private:
  HardState hard_state_;
  Index snapshot_index_ = 0;
  std::vector<Entry> entries_;
};

struct BenchNode {
  std::unique_ptr<RawNode> node;
  LeanLog log;
  Index applied_index = 0;
  Term applied_term = 0;
  Index compacted_index = 0;
  uint64_t applied_payloads = 0;
  uint64_t digest = 0;  // of every applied payload: all nodes must agree
};

// Several RawNodes wired in memory; every message is delivered.
class Harness {
 public:
  explicit Harness(int voter_count) {
    std::vector<NodeId> voters;
    for (int i = 1; i <= voter_count; ++i) voters.push_back(i);
    nodes_.resize(voter_count);
    for (int i = 0; i < voter_count; ++i) {
      Config config;
      config.id = i + 1;
      config.random_seed = 0x9E3779B97F4A7C15ull * (i + 1);
      RestartState restart = BootstrapState(voters);
      conf_state_ = *restart.conf_state;
      PersistRequest bootstrap;
      bootstrap.hard_state = restart.hard_state;
      bootstrap.entries = restart.entries;
      nodes_[i].log.Write(bootstrap);
      auto node = RawNode::Create(config, std::move(restart));
      if (!node.ok()) Fail(node.status().ToString());
      nodes_[i].node = std::move(*node);
    }
    outbox_.reserve(64);
    delivering_.reserve(64);
  }

  // Applies the bootstrap entries, elects node 1 and waits until its first entry is applied
  // everywhere.
  void ElectLeader() {
    Drive();
    if (absl::Status status = leader().Campaign(); !status.ok()) Fail(status.ToString());
    Drive();
    if (leader().GetStatus().soft_state.role != Role::kLeader) Fail("node 1 did not win");
    for (const BenchNode& n : nodes_) {
      if (n.applied_index != nodes_[0].applied_index || n.applied_index == 0) {
        Fail("the leader's first entry is not applied everywhere");
      }
    }
  }

  RawNode& leader() { return *nodes_[0].node; }

  void Propose(const Bytes& payload) {
    ScopedPhase propose(Phase::kPropose);
    if (!leader().Propose(payload).ok()) Fail("proposal refused");
  }

  // Processes every Ready and delivers every message until nothing is left to do.
  void Drive() {
    for (int round = 0; round < kMaxDriveRounds; ++round) {
      bool busy = false;
      for (BenchNode& n : nodes_) {
        while (HasReady(n)) {
          ProcessReady(n);
          busy = true;
        }
      }
      if (outbox_.empty()) {
        if (!busy) return;
        continue;
      }
      std::swap(outbox_, delivering_);
      messages_delivered_ += delivering_.size();
      for (Message& message : delivering_) {
        ScopedPhase step(Phase::kStep);
        if (!nodes_[message.to - 1].node->Step(std::move(message)).ok()) Fail("step refused");
      }
      delivering_.clear();
    }
    Fail("the cluster did not quiesce");
  }

  // Compacts logs that hold more than kCompactionIntervalEntries applied entries.
  void MaybeCompact() {
    for (BenchNode& n : nodes_) {
      if (n.applied_index < n.compacted_index + kCompactionIntervalEntries) continue;
      auto snapshot = std::make_shared<Snapshot>();
      snapshot->metadata.index = n.applied_index;
      snapshot->metadata.term = n.applied_term;
      snapshot->metadata.conf_state = conf_state_;
      const Index compact_index = n.applied_index - kCompactionMarginEntries;
      {
        ScopedPhase compact(Phase::kCompact);
        if (!n.node->Compact(std::move(snapshot), compact_index).ok()) Fail("compaction refused");
      }
      n.log.CompactTo(compact_index);
      n.compacted_index = compact_index;
    }
  }

  const std::vector<BenchNode>& nodes() const { return nodes_; }
  uint64_t messages_delivered() const { return messages_delivered_; }

 private:
  static bool HasReady(BenchNode& n) {
    ScopedPhase ready(Phase::kReady);
    return n.node->HasReady();
  }

  void ProcessReady(BenchNode& n) {
    const Ready* ready;
    {
      ScopedPhase get_ready(Phase::kReady);
      ready = &n.node->GetReady();
    }
    n.log.Write(ready->persist);
    if (ready->apply_snapshot != nullptr) Fail("unexpected snapshot");
    for (const Message& message : ready->messages) outbox_.push_back(message);
    for (const Entry& entry : ready->committed_entries) Apply(n, entry);
    const uint64_t persist_id = ready->persist.id;
    ScopedPhase advance(Phase::kAdvance);
    n.node->Advance();
    if (persist_id != 0) n.node->OnPersisted(persist_id);
  }

  static void Apply(BenchNode& n, const Entry& entry) {
    if (entry.index != n.applied_index + 1) Fail("applied out of order");
    n.applied_index = entry.index;
    n.applied_term = entry.term;
    if (entry.type == EntryType::kConfChange) {  // the bootstrap membership, before timing
      auto change = DecodeConfChange(entry.data.view());
      if (!change.ok()) Fail(change.status().ToString());
      n.node->ApplyConfChange(*change);
      return;
    }
    if (entry.data.empty()) return;  // a new leader's empty entry
    if (entry.data.size() != kPayloadSizeBytes) Fail("payload of the wrong size");
    uint64_t word;
    std::memcpy(&word, entry.data.data(), sizeof(word));
    n.digest = n.digest * 0x100000001B3ull ^ word;
    ++n.applied_payloads;
  }

  ConfState conf_state_;
  std::vector<BenchNode> nodes_;
  std::vector<Message> outbox_;
  std::vector<Message> delivering_;
  uint64_t messages_delivered_ = 0;
};

std::vector<Bytes> MakePayloads() {
  std::vector<Bytes> payloads;
  payloads.reserve(kPayloadPoolSize);
  std::string buffer(kPayloadSizeBytes, '\0');
  for (std::size_t i = 0; i < kPayloadPoolSize; ++i) {
    for (std::size_t b = 0; b < kPayloadSizeBytes; ++b) {
      buffer[b] = static_cast<char>((i * 131 + b * 7) & 0xff);
    }
    payloads.emplace_back(buffer);
  }
  return payloads;
}

void RunProposals(benchmark::State& state, int voter_count) {
  const int batch = static_cast<int>(state.range(0));
  const std::vector<Bytes> payloads = MakePayloads();
  Harness harness(voter_count);
  harness.ElectLeader();
  // Warm up: grow every buffer (logs, message vectors, inflight rings) to steady-state size and
  // go through one compaction, so the timed loop sees steady state only.
  std::size_t next_payload = 0;
  for (Index i = 0; i < kCompactionIntervalEntries + 2 * kCompactionMarginEntries; i += batch) {
    for (int p = 0; p < batch; ++p) harness.Propose(payloads[next_payload++ % kPayloadPoolSize]);
    harness.Drive();
    harness.MaybeCompact();
  }
  const uint64_t applied_before = harness.nodes()[0].applied_payloads;
  const uint64_t delivered_before = harness.messages_delivered();

  alloc_counter::Start();
  for (auto _ : state) {
    for (int p = 0; p < batch; ++p) {
      harness.Propose(payloads[next_payload % kPayloadPoolSize]);
      ++next_payload;
    }
    harness.Drive();
    harness.MaybeCompact();
  }
  alloc_counter::Stop();

  const double proposals = static_cast<double>(state.iterations()) * batch;
  for (const BenchNode& n : harness.nodes()) {
    if (n.applied_payloads - applied_before != state.iterations() * batch ||
        n.digest != harness.nodes()[0].digest) {
      state.SkipWithError("a node did not apply every proposal");
      return;
    }
  }
  uint64_t calls = 0;
  uint64_t bytes = 0;
  for (int phase = 0; phase < kPhaseCount; ++phase) {
    calls += alloc_counter::g_counts.calls[phase];
    bytes += alloc_counter::g_counts.bytes[phase];
  }
  state.SetItemsProcessed(static_cast<int64_t>(proposals));
  state.counters["time/prop"] =
      benchmark::Counter(proposals, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["allocs/prop"] = benchmark::Counter(calls / proposals);
  state.counters["bytes/prop"] = benchmark::Counter(bytes / proposals);
  state.counters["msgs/prop"] =
      benchmark::Counter((harness.messages_delivered() - delivered_before) / proposals);
  state.counters["drv_allocs"] = benchmark::Counter(alloc_counter::g_counts.calls[0] / proposals);
  // RAFT_BENCH_PHASES=1: allocations and bytes per proposal in each entry point of the core.
  if (std::getenv("RAFT_BENCH_PHASES") != nullptr) {
    for (int phase = 1; phase < kPhaseCount; ++phase) {
      state.counters[std::string("a.") + kPhaseNames[phase]] =
          benchmark::Counter(alloc_counter::g_counts.calls[phase] / proposals);
      state.counters[std::string("b.") + kPhaseNames[phase]] =
          benchmark::Counter(alloc_counter::g_counts.bytes[phase] / proposals);
    }
  }
}

void BM_OneVoter256(benchmark::State& state) { RunProposals(state, 1); }
void BM_ThreeVoters256(benchmark::State& state) { RunProposals(state, 3); }

BENCHMARK(BM_OneVoter256)->ArgName("batch")->Arg(1)->Arg(64);
BENCHMARK(BM_ThreeVoters256)->ArgName("batch")->Arg(1)->Arg(64);

}  // namespace
}  // namespace kvstore::raft

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
