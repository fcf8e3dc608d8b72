// The scenario runner: a check that cannot decide, or a scenario that cannot say what it means,
// fails instead of passing by skipping itself.

#include "sim/runner.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace kvstore::sim {
namespace {

pb::Scenario Parse(const std::string& text) {
  absl::StatusOr<pb::Scenario> scenario = ParseScenario(text, "test");
  EXPECT_TRUE(scenario.ok()) << scenario.status();
  return scenario.ok() ? *scenario : pb::Scenario();
}

// Whether one of `result`'s failures contains `text`.
bool FailsWith(const RunResult& result, const std::string& text) {
  for (const std::string& failure : result.failures) {
    if (absl::StrContains(failure, text)) return true;
  }
  return false;
}

constexpr char kWorkload[] = R"pb(
  options { seed: 1 voters: 3 clients: 3 keys: 1 }
  steps { wait_for_leader { within_ms: 5000 } }
  steps { start_workload: true }
  steps { run_ms: 2000 }
)pb";

TEST(RunnerTest, LinearizabilitySearchOutOfBudgetFailsTheRun) {
  const pb::Scenario scenario = Parse(kWorkload);
  const RunResult proven = RunScenario(scenario);
  ASSERT_TRUE(proven.passed) << absl::StrJoin(proven.failures, "\n");
  ASSERT_GT(proven.linearizability_search_steps, 1u);

  RunOptions starved;
  starved.linearizability_budget_steps = 1;
  const RunResult unknown = RunScenario(scenario, starved);
  EXPECT_FALSE(unknown.passed);
  EXPECT_TRUE(FailsWith(unknown, "linearizability: the check gave up"))
      << absl::StrJoin(unknown.failures, "\n");
  EXPECT_EQ(unknown.trace_hash, proven.trace_hash) << "the same run, only its check starved";
}

}  // namespace
}  // namespace kvstore::sim
