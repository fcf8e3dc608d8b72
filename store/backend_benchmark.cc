// Backend throughput, MemoryBackend against LmdbBackend on a real file.
//
//   bazel run -c opt //store:backend_benchmark
//
// Keys are 16 bytes (a zero-padded hex counter, so new keys append, like revisions), values
// 256 bytes. LMDB directories are created under $TEST_TMPDIR, else $TMPDIR, else /tmp, and
// removed at exit; durability costs whatever that file system's fsync costs.
//   PutBatch/memory          kBatchPuts puts, then Commit
//   PutBatch/lmdb            the same with etcd's batching (100 ms / 10,000 batches): most
//                            Commits only end a batch; one in a while commits and fsyncs
//                            (every put benchmark flushes in its last iteration)
//   PutBatch/lmdb_durable    batch_limit_commits 1: every Commit fsyncs (why batching exists)
//   Range/<backend>          a scan of kRangeKeys consecutive keys of a kFillKeys-key bucket
//   Get/<backend>            a point Get of a present key of the same bucket
// Counters: items_per_second (puts or keys read; puts in real time), allocs/op (operator new
// calls per put or per key read; LMDB's own mallocs are not counted; a Get returns its value in
// a new std::string).

#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/alloc_counter.h"
#include "core/mvcc/backend.h"
#include "store/lmdb_backend.h"

namespace kvstore::store {
namespace {

namespace alloc_counter = ::kvstore::alloc_counter;
using mvcc::Backend;
using mvcc::Bucket;

constexpr size_t kValueSizeBytes = 256;
constexpr int64_t kBatchPuts = 1000;
constexpr size_t kKeySizeBytes = 16;
// Batches per put benchmark: a fixed count, so every backend writes the same 1M keys (~270 MB)
// and LMDB crosses several batch intervals; the last iteration also flushes.
constexpr int64_t kPutBatches = 1000;
constexpr int64_t kFillKeys = 100'000;
constexpr int64_t kRangeKeys = 1000;
// Writes per Commit while filling the read benchmarks' bucket.
constexpr int64_t kFillBatchPuts = 10'000;
// Coprime with kFillKeys: consecutive reads land far apart.
constexpr int64_t kKeyStride = 7919;

enum class Kind { kMemory, kLmdb, kLmdbDurable };

[[noreturn]] void Fail(const std::string& what) {
  absl::FPrintF(stderr, "backend_benchmark: %s\n", what);
  std::abort();
}

void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) Fail(absl::StrCat(what, ": ", status.ToString()));
}

// Writes key i (zero-padded hex) into `key`, which keeps its buffer: no allocation per key.
void SetKey(int64_t i, std::string& key) {
  key.resize(kKeySizeBytes);
  for (size_t b = kKeySizeBytes; b-- > 0; i >>= 4) key[b] = "0123456789abcdef"[i & 0xf];
}

std::string Value() {
  std::string value(kValueSizeBytes, '\0');
  for (size_t b = 0; b < kValueSizeBytes; ++b) value[b] = static_cast<char>('a' + (b * 7) % 26);
  return value;
}

// The LMDB directories made so far, removed at exit.
std::vector<std::string>& TempDirs() {
  static auto* const dirs = new std::vector<std::string>;
  return *dirs;
}

std::unique_ptr<Backend> Make(Kind kind) {
  if (kind == Kind::kMemory) return std::make_unique<mvcc::MemoryBackend>();
  const char* base = std::getenv("TEST_TMPDIR");
  if (base == nullptr) base = std::getenv("TMPDIR");
  std::string dir = absl::StrCat(base != nullptr ? base : "/tmp", "/backend_benchmark_XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) Fail(absl::StrCat("mkdtemp ", dir));
  TempDirs().push_back(dir);
  LmdbOptions options;
  if (kind == Kind::kLmdbDurable) options.batch_limit_commits = 1;
  auto backend = LmdbBackend::Open(dir, options);
  if (!backend.ok()) Fail(backend.status().ToString());
  return *std::move(backend);
}

void ReportPerItem(benchmark::State& state, int64_t items) {
  alloc_counter::Stop();
  state.SetItemsProcessed(items);
  state.counters["allocs/op"] =
      benchmark::Counter(static_cast<double>(alloc_counter::g_counts.total_calls()) / items);
}

void BM_PutBatch(benchmark::State& state, Kind kind) {
  std::unique_ptr<Backend> backend = Make(kind);
  const std::string value = Value();
  std::string key;
  int64_t next = 0;
  int64_t batches = 0;
  alloc_counter::Start();
  for (auto _ : state) {
    for (int64_t n = 0; n < kBatchPuts; ++n) {
      SetKey(next++, key);
      backend->Put(Bucket::kKey, key, value);
    }
    Check(backend->Commit(), "commit");
    if (++batches == kPutBatches) Check(backend->Flush(), "flush");
  }
  ReportPerItem(state, next);
}

// The bucket the read benchmarks scan: kFillKeys keys, flushed, kept for the process.
Backend& Filled(Kind kind) {
  static std::unique_ptr<Backend> filled[2];
  std::unique_ptr<Backend>& backend = filled[kind == Kind::kMemory ? 0 : 1];
  if (backend == nullptr) {
    backend = Make(kind);
    const std::string value = Value();
    std::string key;
    for (int64_t i = 0; i < kFillKeys; ++i) {
      SetKey(i, key);
      backend->Put(Bucket::kKey, key, value);
      if ((i + 1) % kFillBatchPuts == 0) Check(backend->Commit(), "fill commit");
    }
    Check(backend->Commit(), "fill commit");
    Check(backend->Flush(), "fill flush");
  }
  return *backend;
}

void BM_Range(benchmark::State& state, Kind kind) {
  const Backend& backend = Filled(kind);
  int64_t start = 0;
  int64_t read = 0;
  std::string first;
  std::string end;
  alloc_counter::Start();
  for (auto _ : state) {
    start = (start + kKeyStride) % (kFillKeys - kRangeKeys);
    SetKey(start, first);
    SetKey(start + kRangeKeys, end);
    int64_t keys = 0;
    uint64_t bytes = 0;
    backend.Range(Bucket::kKey, first, end, [&](absl::string_view, absl::string_view value) {
      ++keys;
      bytes += value.size();
      return true;
    });
    if (keys != kRangeKeys) Fail(absl::StrCat("a range returned ", keys, " keys"));
    benchmark::DoNotOptimize(bytes);
    read += keys;
  }
  ReportPerItem(state, read);
}

void BM_Get(benchmark::State& state, Kind kind) {
  const Backend& backend = Filled(kind);
  int64_t i = 0;
  int64_t read = 0;
  std::string key;
  alloc_counter::Start();
  for (auto _ : state) {
    i = (i + kKeyStride) % kFillKeys;
    SetKey(i, key);
    std::optional<std::string> value = backend.Get(Bucket::kKey, key);
    if (!value.has_value()) Fail(absl::StrCat("missing key ", key));
    benchmark::DoNotOptimize(value);
    ++read;
  }
  ReportPerItem(state, read);
}

// Real time: an fsync is waiting, not CPU.
BENCHMARK_CAPTURE(BM_PutBatch, memory, Kind::kMemory)->Iterations(kPutBatches)->UseRealTime();
BENCHMARK_CAPTURE(BM_PutBatch, lmdb, Kind::kLmdb)->Iterations(kPutBatches)->UseRealTime();
BENCHMARK_CAPTURE(BM_PutBatch, lmdb_durable, Kind::kLmdbDurable)
    ->Iterations(kPutBatches)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Range, memory, Kind::kMemory);
BENCHMARK_CAPTURE(BM_Range, lmdb, Kind::kLmdb);
BENCHMARK_CAPTURE(BM_Get, memory, Kind::kMemory);
BENCHMARK_CAPTURE(BM_Get, lmdb, Kind::kLmdb);

}  // namespace
}  // namespace kvstore::store

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (const std::string& dir : kvstore::store::TempDirs()) std::filesystem::remove_all(dir);
  return 0;
}
