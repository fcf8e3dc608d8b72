#ifndef KVSTORE_SIM_FUZZ_H_
#define KVSTORE_SIM_FUZZ_H_

// Random fault schedules as scenarios: a seed becomes a scenario (network faults, partitions,
// crashes, pauses, clock skew, with a workload running), so a failing seed can be replayed,
// printed, shrunk by removing steps, and committed as a regression file.

#include <cstdint>
#include <functional>

#include "sim/runner.h"
#include "sim/scenario.pb.h"

namespace kvstore::sim {

struct FuzzOptions {
  int nodes = 5;
  int64_t duration_ms = 60'000;  // virtual time of the faulty phase
};

pb::Scenario RandomScenario(uint64_t seed, const FuzzOptions& options);

// Removes steps (delta debugging, one at a time then in chunks) while `fails` still holds;
// returns the smallest failing scenario found. `fails` must hold for the input.
pb::Scenario ShrinkScenario(const pb::Scenario& scenario,
                            const std::function<bool(const pb::Scenario&)>& fails);

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_FUZZ_H_
