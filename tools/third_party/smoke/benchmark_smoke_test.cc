#include <benchmark/benchmark.h>

#include <numeric>
#include <vector>

namespace {

void BM_SumVector(benchmark::State& state) {
  std::vector<int> values(static_cast<size_t>(state.range(0)));
  std::iota(values.begin(), values.end(), 0);
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::accumulate(values.begin(), values.end(), 0));
  }
}
BENCHMARK(BM_SumVector)->Arg(64);

}  // namespace
