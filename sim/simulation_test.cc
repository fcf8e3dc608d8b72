// The simulation itself: a healthy cluster elects a leader and serves a workload without
// violations; the same seed gives the same trace hash; faults break neither safety nor
// linearizability.

#include "sim/simulation.h"

#include "gtest/gtest.h"
#include "sim/linearizability.h"

namespace kvstore::sim {
namespace {

SimOptions Options(uint64_t seed) {
  SimOptions options;
  options.seed = seed;
  options.voters = 3;
  return options;
}

TEST(SimulationTest, HealthyClusterServesWorkload) {
  Simulation sim(Options(1));
  ASSERT_TRUE(sim.RunUntil([&] { return sim.Leader() != raft::kNoNode; }, 5000));
  sim.StartWorkload();
  sim.RunFor(5000);
  sim.StopWorkload();
  sim.RunFor(1000);
  EXPECT_TRUE(sim.violations().empty()) << sim.violations().front();
  size_t ok = 0;
  for (const Event& e : sim.history().events()) ok += e.type == EventType::kOk ? 1 : 0;
  EXPECT_GT(ok, 100u) << FormatHistory(sim.history());
  // The history file written for a run (sim replay --history-out) reads back as the same history.
  absl::StatusOr<History> parsed = ParseHistory(FormatHistory(sim.history()));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(*parsed == sim.history());
  sim.CheckHashes();
  EXPECT_TRUE(sim.violations().empty());
}

TEST(SimulationTest, SameSeedSameTrace) {
  auto run = [](uint64_t seed) {
    Simulation sim(Options(seed));
    sim.StartWorkload();
    sim.RunFor(3000);
    sim.Crash(1);
    sim.RunFor(1000);
    sim.Restart(1);
    sim.RunFor(2000);
    return sim.trace_hash();
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

// Faults break no standing checker, and the clients' history stays linearizable.
TEST(SimulationTest, FaultsKeepSafetyAndLinearizability) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    SimOptions options = Options(seed);
    options.voters = 5;
    options.network.loss = 0.05;
    options.network.duplicate = 0.05;
    options.network.max_delay_ms = 30;
    Simulation sim(options);
    sim.StartWorkload();
    sim.RunFor(2000);
    sim.Partition({{1, 2}, {3, 4, 5}});
    sim.RunFor(2000);
    sim.Crash(3);
    sim.RunFor(1000);
    sim.Heal();
    sim.Restart(3);
    sim.RunFor(3000);
    sim.StopWorkload();
    sim.RunFor(1000);  // outstanding requests complete, so the history ends with their outcomes
    EXPECT_TRUE(sim.violations().empty()) << "seed " << seed << ": " << sim.violations().front();
    const History history = sim.TakeHistory();
    size_t ok = 0;
    for (const Event& e : history.events()) ok += e.type == EventType::kOk ? 1 : 0;
    EXPECT_GT(ok, 100u) << "seed " << seed << ": too little was checked";
    const absl::StatusOr<CheckResult> check = CheckLinearizability(history);
    ASSERT_TRUE(check.ok()) << check.status();
    EXPECT_EQ(check->verdict, Verdict::kLinearizable)
        << "seed " << seed << ": " << check->Describe();
  }
}

}  // namespace
}  // namespace kvstore::sim
