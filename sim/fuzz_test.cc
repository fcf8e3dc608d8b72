// Shrinking keeps the failure it shrinks: failure kinds, and the delta-debugging loop.

#include "sim/fuzz.h"

#include <string>

#include "gtest/gtest.h"

namespace kvstore::sim {
namespace {

TEST(FailureKindTest, DropsPrefixesAndNumbers) {
  EXPECT_EQ(FailureKind("checker: @67560ms: n1 and n9208547398137510776 disagree on the store "
                        "hash at revision 1486"),
            "n# and n# disagree on the store hash at revision #");
  EXPECT_EQ(FailureKind("step 110: @67560ms: n5 and n2 disagree on the store hash at revision 7"),
            "n# and n# disagree on the store hash at revision #");
  EXPECT_EQ(FailureKind("step 5: expected OK, got UNAVAILABLE"), "expected OK, got UNAVAILABLE");
}

TEST(FailsLikeTest, OnlyTheSameKindCounts) {
  RunResult hash;
  hash.passed = false;
  hash.failures = {"step 3: replicas agree failed",
                   "checker: @10ms: n1 and n2 disagree on the store hash at revision 5"};
  const std::string target = ShrinkTarget(hash);
  EXPECT_EQ(target, hash.failures[1]) << "a standing checker's failure is the most telling";

  RunResult quorum_lost;
  quorum_lost.passed = false;
  quorum_lost.failures = {"step 5: expected OK, got UNAVAILABLE"};
  EXPECT_FALSE(FailsLike(quorum_lost, target));

  RunResult same;
  same.passed = false;
  same.failures = {"checker: @99ms: n4 and n3 disagree on the store hash at revision 77"};
  EXPECT_TRUE(FailsLike(same, target));

  RunResult passed;
  EXPECT_FALSE(FailsLike(passed, target));
  EXPECT_EQ(ShrinkTarget(passed), "");
}

TEST(ShrinkScenarioTest, KeepsOnlyTheStepsTheFailureNeeds) {
  pb::Scenario scenario;
  for (int i = 0; i < 40; ++i) scenario.add_steps()->set_run_ms(i);
  // "Fails" while steps 7 and 31 are both present.
  auto fails = [](const pb::Scenario& candidate) {
    bool seven = false, thirty_one = false;
    for (const pb::Step& step : candidate.steps()) {
      seven |= step.run_ms() == 7;
      thirty_one |= step.run_ms() == 31;
    }
    return seven && thirty_one;
  };
  const pb::Scenario shrunk = ShrinkScenario(scenario, fails);
  ASSERT_EQ(shrunk.steps_size(), 2);
  EXPECT_EQ(shrunk.steps(0).run_ms(), 7);
  EXPECT_EQ(shrunk.steps(1).run_ms(), 31);
}

}  // namespace
}  // namespace kvstore::sim
