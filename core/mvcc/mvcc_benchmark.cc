// Read latency of the MVCC store over a large keyspace, and the cost of fanning one write out to
// many watchers, on the in-memory backend.
//
//   bazel run -c opt //core/mvcc:mvcc_benchmark
//
// Ranges: one store of kKeyCount keys (256-byte values), filled once per process, then every
// kOverwriteEvery-th key overwritten, so those keys have two versions and a read at the revision
// before the overwrites (the "past" revision) sees the first. Benchmarks pick keys with a fixed
// stride, so consecutive reads touch unrelated parts of the index.
//   RangeGet            one key, current revision
//   Range100            100 consecutive keys, current revision
//   RangeCountOnly      count_only over every key
//   RangeGetPast        one overwritten key at the past revision (sees its first version)
//   Range100Past        100 consecutive keys at the past revision
// Watch fan-out: a store with one key and N watchers on it; each iteration puts the key, feeds
// the store's events to the hub (Notify) and takes every response (TakeResponses).
//   WatchFanout         N watchers on the key; with prev_kv:0/1
//   WatchUnrelatedPut   N watchers on other keys: what a put costs that nobody watches
//
// Counters: time/op (per range call or per put), time/event (per delivered event), allocs/op
// and bytes/op (every global operator new is replaced), allocs/event, keys/op.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/base/alloc_counter.h"
#include "core/mvcc/backend.h"
#include "core/mvcc/store.h"
#include "core/mvcc/watch.h"

// ---------------------------------------------------------------------------------------------
// Allocation counting. The benchmark runs single-threaded, so plain counters suffice.

namespace alloc_counter = kvstore::alloc_counter;

namespace {}  // namespace

namespace kvstore::mvcc {
namespace {

constexpr std::size_t kValueSizeBytes = 256;
constexpr int64_t kKeyCount = 1000000;
// Every this many keys one is written a second time after the past revision.
constexpr int64_t kOverwriteEvery = 10;
constexpr int64_t kRangeKeys = 100;
// Writes between two backend commits while filling (bounds the backend's undo log).
constexpr int64_t kFillCommitEvery = 4096;
// A stride coprime with kKeyCount: consecutive reads land far apart in the index.
constexpr int64_t kKeyStride = 7919;
constexpr int64_t kWatchers = 10000;

[[noreturn]] void Fail(const std::string& what) {
  absl::FPrintF(stderr, "mvcc_benchmark: %s\n", what.c_str());
  std::abort();
}

std::string KeyOf(int64_t i) { return absl::StrFormat("key/%08d", i); }

std::string ValueOf(int64_t i, int64_t generation) {
  std::string value(kValueSizeBytes, '\0');
  for (std::size_t b = 0; b < kValueSizeBytes; ++b) {
    value[b] = static_cast<char>('a' + (i * 131 + generation * 17 + b * 7) % 26);
  }
  return value;
}

template <typename T>
T Check(absl::StatusOr<T> result, const char* what) {
  if (!result.ok()) Fail(absl::StrFormat("%s: %s", what, result.status().ToString()));
  return *std::move(result);
}

// The store every range benchmark reads, built on first use and kept for the process.
struct FilledStore {
  MemoryBackend backend;
  std::unique_ptr<Store> store;
  Revision past_revision = 0;  // after the first write of every key, before the overwrites
};

const FilledStore& Filled() {
  static FilledStore* const filled = [] {
    auto* f = new FilledStore;
    f->store = Check(Store::Open(&f->backend), "open");
    const std::vector<std::string> values = {ValueOf(0, 0), ValueOf(1, 0), ValueOf(2, 0)};
    PutRequest put;
    for (int64_t i = 0; i < kKeyCount; ++i) {
      put.key = KeyOf(i);
      put.value = values[i % values.size()];
      Check(f->store->Put(put), "fill");
      if (i % kFillCommitEvery == 0) {
        f->store->TakeEvents();
        if (!f->store->Commit(static_cast<uint64_t>(i + 1)).ok()) Fail("commit");
      }
    }
    f->past_revision = f->store->current_revision();
    const std::string overwrite = ValueOf(0, 1);
    for (int64_t i = 0; i < kKeyCount; i += kOverwriteEvery) {
      put.key = KeyOf(i);
      put.value = overwrite;
      Check(f->store->Put(put), "overwrite");
      if (i % (kFillCommitEvery * kOverwriteEvery) == 0) {
        f->store->TakeEvents();
        if (!f->store->Commit(static_cast<uint64_t>(kKeyCount + i + 1)).ok()) Fail("commit");
      }
    }
    f->store->TakeEvents();
    if (!f->store->Commit(static_cast<uint64_t>(2 * kKeyCount)).ok()) Fail("commit");
    if (f->store->key_count() != static_cast<size_t>(kKeyCount)) Fail("fill lost keys");
    return f;
  }();
  return *filled;
}

void StartCounting() { alloc_counter::Start(); }

void ReportPerOp(benchmark::State& state, double keys_per_op) {
  alloc_counter::Stop();
  const double ops = static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
  state.counters["time/op"] =
      benchmark::Counter(ops, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["allocs/op"] = benchmark::Counter(alloc_counter::g_counts.total_calls() / ops);
  state.counters["bytes/op"] = benchmark::Counter(alloc_counter::g_counts.total_bytes() / ops);
  state.counters["keys/op"] = benchmark::Counter(keys_per_op);
}

// Reads `keys` consecutive keys (1: a single-key get) from a strided start, at `revision`
// (0: current), and checks the answer.
void RunRange(benchmark::State& state, int64_t keys, bool past) {
  const FilledStore& filled = Filled();
  const Store& store = *filled.store;
  // Past reads start on overwritten keys, whose first version differs from the current one.
  const int64_t step = past ? kOverwriteEvery : 1;
  std::vector<RangeRequest> requests;
  for (int64_t n = 0; n < 1024; ++n) {
    const int64_t first = (n * kKeyStride) % ((kKeyCount - keys) / step) * step;
    RangeRequest request;
    request.key = KeyOf(first);
    if (keys > 1) request.range_end = KeyOf(first + keys);
    if (past) request.revision = filled.past_revision;
    requests.push_back(std::move(request));
  }
  std::size_t next = 0;
  int64_t returned = 0;
  StartCounting();
  for (auto _ : state) {
    auto response = store.Range(requests[next++ % requests.size()]);
    if (!response.ok()) Fail(response.status().ToString());
    returned += static_cast<int64_t>(response->kvs.size());
    benchmark::DoNotOptimize(response);
  }
  ReportPerOp(state, static_cast<double>(returned) / state.iterations());
  if (returned != keys * state.iterations()) state.SkipWithError("a range returned too few keys");
  if (past && keys == 1) {
    // The overwritten key read at the past revision must show its first version.
    auto old = store.Range(requests[0]);
    if (!old.ok() || old->kvs.size() != 1 || old->kvs[0].version != 1) {
      state.SkipWithError("the past read did not see the first version");
    }
  }
}

void BM_RangeGet(benchmark::State& state) { RunRange(state, 1, false); }
void BM_Range100(benchmark::State& state) { RunRange(state, kRangeKeys, false); }
void BM_RangeGetPast(benchmark::State& state) { RunRange(state, 1, true); }
void BM_Range100Past(benchmark::State& state) { RunRange(state, kRangeKeys, true); }

void BM_RangeCountOnly(benchmark::State& state) {
  const Store& store = *Filled().store;
  RangeRequest request;
  request.key = std::string(1, '\0');
  request.range_end = std::string(1, '\0');
  request.count_only = true;
  StartCounting();
  for (auto _ : state) {
    auto response = store.Range(request);
    if (!response.ok() || response->count != kKeyCount) Fail("count_only miscounted");
    benchmark::DoNotOptimize(response);
  }
  ReportPerOp(state, static_cast<double>(kKeyCount));
}

BENCHMARK(BM_RangeGet);
BENCHMARK(BM_Range100);
BENCHMARK(BM_RangeCountOnly)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RangeGetPast);
BENCHMARK(BM_Range100Past);

// ---------------------------------------------------------------------------------------------
// Watch fan-out

// Puts one key once per iteration into a store with state.range(0) watchers, all on that key or
// (`unrelated`) each on a key of its own that is never written, and delivers every event.
void RunWatch(benchmark::State& state, bool prev_kv, bool unrelated) {
  const int64_t watchers = state.range(0);
  MemoryBackend backend;
  std::unique_ptr<Store> store = Check(Store::Open(&backend), "open");
  WatchHub hub(store.get());
  const std::string key = "watched";
  for (int64_t i = 0; i < watchers; ++i) {
    WatchRequest request;
    request.key = unrelated ? KeyOf(i) : key;
    request.prev_kv = prev_kv;
    Check(hub.Watch(request), "watch");
  }
  hub.TakeResponses();  // the "created" responses
  PutRequest put;
  put.key = key;
  put.value = ValueOf(0, 0);
  // The first put creates the key, so every timed put has a previous version.
  Check(store->Put(put), "put");
  hub.Notify(store->TakeEvents());
  hub.TakeResponses();
  const int64_t expected = unrelated ? 0 : watchers;
  int64_t delivered = 0;
  StartCounting();
  for (auto _ : state) {
    Check(store->Put(put), "put");
    hub.Notify(store->TakeEvents());
    std::vector<WatchResponse> responses = hub.TakeResponses();
    if (static_cast<int64_t>(responses.size()) != expected) Fail("a watcher missed the put");
    for (const WatchResponse& response : responses) {
      delivered += static_cast<int64_t>(response.events.size());
    }
    benchmark::DoNotOptimize(responses);
    if (!store->Commit(0).ok()) Fail("commit");
  }
  alloc_counter::Stop();
  const double puts = static_cast<double>(state.iterations());
  state.SetItemsProcessed(delivered);
  state.counters["time/put"] =
      benchmark::Counter(puts, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  if (delivered > 0) {
    state.counters["time/event"] = benchmark::Counter(
        static_cast<double>(delivered), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    state.counters["allocs/event"] =
        benchmark::Counter(alloc_counter::g_counts.total_calls() / static_cast<double>(delivered));
  }
  state.counters["allocs/put"] = benchmark::Counter(alloc_counter::g_counts.total_calls() / puts);
  state.counters["bytes/put"] = benchmark::Counter(alloc_counter::g_counts.total_bytes() / puts);
}

void BM_WatchFanout(benchmark::State& state) { RunWatch(state, state.range(1) != 0, false); }
void BM_WatchUnrelatedPut(benchmark::State& state) { RunWatch(state, false, true); }

BENCHMARK(BM_WatchFanout)->ArgNames({"watchers", "prev_kv"})->Args({kWatchers, 0});
BENCHMARK(BM_WatchFanout)->ArgNames({"watchers", "prev_kv"})->Args({kWatchers, 1});
BENCHMARK(BM_WatchUnrelatedPut)->ArgName("watchers")->Arg(kWatchers);

}  // namespace
}  // namespace kvstore::mvcc

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
