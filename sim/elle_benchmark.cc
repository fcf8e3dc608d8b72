// Time to check a list-append history for strict serializability (sim/elle.h): 10,000
// transactions of 1-4 micro-ops from 16 clients, strictly serializable by construction
// (elle::RandomHistory), so every run proves it. Target: well under a second.
//
//   bazel run -c opt //sim:elle_benchmark
//
// Argument: keys (fewer keys = longer lists and more dependencies per transaction).

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "sim/elle.h"

namespace kvstore::sim::elle {
namespace {

void BM_Check(benchmark::State& state) {
  RandomHistoryOptions options;  // 10,000 transactions, 16 clients
  options.keys = static_cast<int>(state.range(0));
  const std::vector<Txn> history = RandomHistory(options);
  CheckResult result;
  for (auto _ : state) {
    result = Check(history);
    if (!result.valid) {
      state.SkipWithError(result.Summary().c_str());
      break;
    }
    benchmark::DoNotOptimize(result);
  }
  state.counters["txns"] = static_cast<double>(history.size());
  state.counters["edges"] = static_cast<double>(result.edges);
}
BENCHMARK(BM_Check)->Arg(4)->Arg(32)->Arg(1000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvstore::sim::elle

BENCHMARK_MAIN();
