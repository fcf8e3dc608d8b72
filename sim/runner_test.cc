// The scenario runner: a check that cannot decide, or a scenario that cannot say what it means,
// fails instead of passing by skipping itself.

#include "sim/runner.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
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

// The refusal of `text` at load time, or "" if it loads.
std::string Refusal(const std::string& text) {
  absl::StatusOr<pb::Scenario> scenario = ParseScenario(text, "test");
  return scenario.ok() ? "" : std::string(scenario.status().message());
}

TEST(ValidateScenarioTest, NameReadBeforeAnyStepRemembersItIsRefusedNamingTheStep) {
  const std::string refusal = Refusal(R"pb(
    steps { wait_for_leader { within_ms: 5000 } }
    steps {
      remember_node { leader: true }
      name: "leader"
    }
    steps { crash { name: "leadr" } }
  )pb");
  EXPECT_TRUE(absl::StrContains(refusal,
                                "step 3: uses the node name 'leadr' before any step "
                                "remembers it (node names remembered so far: 'leader')"))
      << refusal;
  EXPECT_TRUE(
      absl::StrContains(Refusal(R"pb(
                          steps {
                            remember_node { leader: true }
                            name: "n"
                          }
                          steps {
                            expect {
                              term_at_most: "n"
                              node { leader: true }
                            }
                          }
                        )pb"),
                        "step 2: uses 'n' as a term, but step 1 remembers a node under it"));
  EXPECT_TRUE(absl::StrContains(Refusal(R"pb(
                                  steps {
                                    request {
                                      node { leader: true }
                                      op: PUT_WITH_LEASE
                                      key: "k"
                                      lease: "l"
                                    }
                                  }
                                  steps {
                                    request {
                                      node { leader: true }
                                      op: LEASE_GRANT
                                      ttl_seconds: 5
                                      remember: "l"
                                    }
                                  }
                                )pb"),
                                "step 1: uses the lease name 'l' before any step remembers it"));
}

TEST(ValidateScenarioTest, StepsThatCannotSayWhatTheyMeanAreRefused) {
  const struct {
    const char* step;
    const char* refusal;
  } cases[] = {
      {"crash {}", "crash names no node"},
      {"crash { id: 1 leader: true }", "crash names more than one node"},
      {"expect { voted_never: false node { id: 1 } }", "a check set to false checks nothing"},
      {"expect { voted_never: true }", "expect.node names no node"},
      {"expect { }", "expect without a check"},
      {"request { node { id: 1 } op: PUT key: \"k\" expect_code: \"OKK\" }",
       "expect_code: unknown outcome 'OKK'"},
      {"request { node { id: 1 } op: PUT key: \"k\" also_accept: \"TIMEOUT\" }",
       "also_accept without expect_code"},
      {"request { node { id: 1 } op: PUT key: \"k\" expect_value: \"v\" }",
       "expect_value given to PUT"},
      {"request { node { id: 1 } op: GET key: \"k\" expect_code: \"TIMEOUT\" expect_value: \"v\" }",
       "expect_value needs the GET to succeed"},
      {"request { node { id: 1 } op: MEMBER_PROMOTE }", "request.target names no node"},
      {"request { node { id: 1 } op: PUT key: \"k\" remember: \"x\" }",
       "remember 'x' given to PUT, which has nothing to remember"},
      {"remember_node { leader: true }", "remember_* needs a `name`"},
      {"run_ms: 10 name: \"x\"", "`name: \"x\"` is only for remember_* steps"},
      {"", "step without an action"},
      {"disk_fault { every_node: true kind: SLOW_DISK latency_ms: 5 }",
       "disk_fault.every_node goes with DISK_HEALED, and without a node"},
      {"disk_fault { every_node: true kind: DISK_HEALED node { id: 1 } }",
       "disk_fault.every_node goes with DISK_HEALED, and without a node"},
      {"disk_fault { kind: DISK_HEALED }", "disk_fault.node names no node"},
  };
  for (const auto& c : cases) {
    const std::string refusal = Refusal(absl::StrCat("steps { ", c.step, " }"));
    EXPECT_TRUE(absl::StrContains(refusal, absl::StrCat("step 1: ", c.refusal)))
        << c.step << " gave: " << refusal;
  }
  EXPECT_EQ(Refusal(kWorkload), "");
}

TEST(ValidateScenarioTest, NospaceRunbookStepsNeedTheirFields) {
  const struct {
    const char* step;
    const char* refusal;
  } cases[] = {
      {"request { node { id: 1 } op: GET key: \"k\" value: \"v\" value_bytes: 8 }",
       "value_bytes given to GET, which writes no value"},
      {"request { node { id: 1 } op: PUT key: \"k\" value_bytes: 8 }",
       "value_bytes needs a `value` to repeat"},
      {"request { node { id: 1 } op: PUT key: \"k\" value: \"v\" value_bytes: -1 }",
       "value_bytes must not be negative"},
      {"expect { nospace_alarm: false }", "a check set to false checks nothing"},
      {"expect { no_alarm: false }", "a check set to false checks nothing"},
      {"expect { no_alarm: true node { id: 1 leader: true } }",
       "expect.node names more than one node"},
  };
  for (const auto& c : cases) {
    const std::string refusal = Refusal(absl::StrCat("steps { ", c.step, " }"));
    EXPECT_TRUE(absl::StrContains(refusal, absl::StrCat("step 1: ", c.refusal)))
        << c.step << " gave: " << refusal;
  }
}

// The alarm expectations read every member's alarm list and fail when it disagrees; a bulky put
// writes `value` repeated to value_bytes.
TEST(RunnerTest, AlarmExpectationsCheckEveryMembersAlarmList) {
  const RunResult none = RunScenario(Parse(R"pb(
    options { seed: 1 voters: 3 }
    steps { wait_for_leader {} }
    steps { expect { no_alarm: true } }
    steps { expect { nospace_alarm: true } }
  )pb"));
  EXPECT_FALSE(none.passed);
  ASSERT_EQ(none.failures.size(), 3u) << absl::StrJoin(none.failures, "\n");
  EXPECT_TRUE(FailsWith(none, "step 3: n1 lists no NOSPACE alarm"))
      << absl::StrJoin(none.failures, "\n");
  EXPECT_TRUE(absl::StrContains(none.transcript[1], "[n1: none] [n2: none] [n3: none] ok"))
      << none.transcript[1];

  const RunResult full = RunScenario(Parse(R"pb(
    options {
      seed: 1
      voters: 3
      no_nospace_operator: true
      knobs { quota_bytes: 65536 }
    }
    steps { wait_for_leader {} }
    steps {
      request {
        node { leader: true }
        op: PUT
        key: "small"
        value: "abc"
        value_bytes: 8
      }
    }
    steps {
      request {
        node { leader: true }
        op: GET
        key: "small"
        expect_value: "abcabcab"
      }
    }
    steps {
      request {
        node { leader: true }
        op: PUT
        key: "bulk"
        value: "x"
        value_bytes: 8192
        expect_code: "NOSPACE"
        retry_until_expected: true
        timeout_ms: 10000
      }
    }
    steps { expect { nospace_alarm: true } }
    steps {
      expect {
        no_alarm: true
        node { id: 2 }
      }
    }
  )pb"));
  EXPECT_FALSE(full.passed);
  ASSERT_EQ(full.failures.size(), 1u) << absl::StrJoin(full.failures, "\n");
  EXPECT_TRUE(FailsWith(full, "step 6: n2 lists alarms, expected none: NOSPACE of n"))
      << absl::StrJoin(full.failures, "\n");
}

TEST(ValidateScenarioTest, RunScenarioRefusesAnInvalidScenarioWithoutRunningIt) {
  pb::Scenario scenario = Parse(kWorkload);
  scenario.add_steps()->mutable_crash()->set_name("nobody");
  const RunResult result = RunScenario(scenario);
  EXPECT_FALSE(result.passed);
  EXPECT_TRUE(FailsWith(result, "scenario refused: step 4: uses the node name 'nobody'"))
      << absl::StrJoin(result.failures, "\n");
  EXPECT_EQ(result.events, 0u);
}

// A disk slower than an election timeout on two voters of three leaves no electable quorum (each
// candidate's own vote, or its voter's grant, is durable only after the timeout has fired
// again); `every_node` heals every disk, as the fuzzer's final heal does when a slow disk went
// to whichever node led (fuzz seed 761, 3 nodes, at aec3142).
TEST(RunnerTest, EveryNodeHealsEveryDisk) {
  const auto run = [](bool heal) {
    std::string steps = R"pb(
      options { seed: 3 voters: 3 }
      steps { wait_for_leader { within_ms: 5000 } }
      steps {
        disk_fault {
          node { id: 1 }
          kind: SLOW_DISK
          latency_ms: 3000
        }
      }
      steps {
        disk_fault {
          node { id: 2 }
          kind: SLOW_DISK
          latency_ms: 3000
        }
      }
      steps {
        disk_fault {
          node { id: 3 }
          kind: SLOW_DISK
          latency_ms: 3000
        }
      }
      steps { crash { leader: true } }
    )pb";
    if (heal)
      absl::StrAppend(&steps, "steps { disk_fault { every_node: true kind: DISK_HEALED } }");
    absl::StrAppend(&steps, "steps { wait_for_leader { within_ms: 3000 } }");
    return RunScenario(Parse(steps));
  };
  const RunResult healed = run(true);
  EXPECT_TRUE(healed.passed) << absl::StrJoin(healed.failures, "\n");
  EXPECT_TRUE(absl::StrContains(absl::StrJoin(healed.transcript, "\n"), "[every node]"));
  const RunResult slow = run(false);
  EXPECT_TRUE(FailsWith(slow, "no leader within 3000ms")) << absl::StrJoin(slow.failures, "\n");
}

// One node of three, so that crashing it leaves nobody to answer.
constexpr char kOneOfThreeDown[] = R"pb(
  options { seed: 2 voters: 3 }
  steps { wait_for_leader { within_ms: 5000 } }
  steps { crash { id: 3 } }
)pb";

TEST(RunnerTest, ExpectedCodeIsCheckedAndOtherOutcomesOnlyWhenListed) {
  const std::string put = R"pb(
    steps {
      request {
        node { id: 3 }
        op: PUT
        key: "k"
        value: "v"
        expect_code: "OK"
        timeout_ms: 200 %s
      }
    }
  )pb";
  const RunResult strict =
      RunScenario(Parse(absl::StrCat(kOneOfThreeDown, absl::StrReplaceAll(put, {{"%s", ""}}))));
  EXPECT_TRUE(FailsWith(strict, "step 3: expected OK, got UNAVAILABLE"))
      << absl::StrJoin(strict.failures, "\n");

  const RunResult uncertain = RunScenario(Parse(absl::StrCat(
      kOneOfThreeDown, absl::StrReplaceAll(put, {{"%s", "also_accept: \"UNAVAILABLE\""}}))));
  EXPECT_TRUE(uncertain.passed) << absl::StrJoin(uncertain.failures, "\n");
  EXPECT_TRUE(absl::StrContains(uncertain.transcript[2], "[UNAVAILABLE] ok"))
      << "the outcome is recorded: " << uncertain.transcript[2];

  const RunResult other = RunScenario(Parse(absl::StrCat(
      kOneOfThreeDown, absl::StrReplaceAll(put, {{"%s", "also_accept: \"TIMEOUT\""}}))));
  EXPECT_TRUE(FailsWith(other, "step 3: expected OK (or TIMEOUT), got UNAVAILABLE"))
      << absl::StrJoin(other.failures, "\n");
}

TEST(RunnerTest, GetThatExpectsAValueFailsWhenTheGetFails) {
  const RunResult result = RunScenario(Parse(absl::StrCat(kOneOfThreeDown, R"pb(
    steps {
      request {
        node { id: 3 }
        op: GET
        key: "k"
        expect_value: "nil"
        timeout_ms: 200
      }
    }
  )pb")));
  EXPECT_TRUE(FailsWith(result, "step 3: expected OK, got UNAVAILABLE"))
      << absl::StrJoin(result.failures, "\n");
}

TEST(RunnerTest, StepsReadingANameWhoseRememberingFailedDoNotRun) {
  const RunResult result = RunScenario(Parse(absl::StrCat(kOneOfThreeDown, R"pb(
    steps {
      request {
        node { id: 3 }
        op: LEASE_GRANT
        ttl_seconds: 5
        remember: "l"
        timeout_ms: 200
      }
    }
    steps {
      request {
        node { leader: true }
        op: PUT_WITH_LEASE
        key: "k"
        value: "v"
        lease: "l"
        expect_code: "OK"
      }
    }
    steps {
      remember_term { id: 3 }
      name: "t"
    }
    steps {
      expect {
        term_at_most: "t"
        node { id: 1 }
      }
    }
    steps {
      request {
        node { id: 3 }
        op: MEMBER_ADD_LEARNER
        remember: "j"
        timeout_ms: 200
      }
    }
    steps {
      remember_term { name: "j" }
      name: "u"
    }
    steps {
      expect {
        term_at_most: "u"
        node { id: 1 }
      }
    }
  )pb")));
  EXPECT_TRUE(FailsWith(result, "step 4: expected OK, got UNBOUND"))
      << absl::StrJoin(result.failures, "\n");
  EXPECT_TRUE(absl::StrContains(result.transcript[3],
                                "[not sent: the lease name 'l' is unbound: step 3, which "
                                "remembers it, did not succeed]"))
      << result.transcript[3];
  EXPECT_TRUE(FailsWith(result, "step 5: n3 is down: no term to remember as t"));
  EXPECT_TRUE(FailsWith(result, "step 6: not run: the term name 't' is unbound: step 5"))
      << absl::StrJoin(result.failures, "\n");
  // A remembering step that does not run binds nothing either.
  EXPECT_FALSE(FailsWith(result, "step 7:")) << "a member add without expect_code may fail";
  EXPECT_TRUE(FailsWith(result, "step 8: not run: the node name 'j' is unbound: step 7"));
  EXPECT_TRUE(FailsWith(result, "step 9: not run: the term name 'u' is unbound: step 8"))
      << absl::StrJoin(result.failures, "\n");
}

TEST(RunnerTest, VotedNeverSeesEveryVoteAlsoWhileTheNodeIsDown) {
  // The leader voted for itself; after a crash and a new election it is down and its current
  // vote is gone from view, but the vote happened.
  const RunResult result = RunScenario(Parse(R"pb(
    options { seed: 3 voters: 3 }
    steps { wait_for_leader { within_ms: 5000 } }
    steps {
      remember_node { leader: true }
      name: "first"
    }
    steps { crash { name: "first" } }
    steps { wait_for_leader { within_ms: 5000 } }
    steps {
      expect {
        voted_never: true
        node { name: "first" }
      }
    }
    steps {
      expect {
        voted_never: true
        node { id: 7 }
      }
    }
  )pb"));
  EXPECT_TRUE(FailsWith(result, "step 5: n")) << absl::StrJoin(result.failures, "\n");
  EXPECT_TRUE(FailsWith(result, " voted for n")) << absl::StrJoin(result.failures, "\n");
  EXPECT_TRUE(FailsWith(result, "step 6: n7 is not a node of this cluster"));
}

// A scenario that demonstrates a hazard passes only when the failure it expects happens: a
// healthy run (linearizable) fails it, and so does a starved search (it proves nothing).
TEST(RunnerTest, ExpectedFailureMustHappen) {
  pb::Scenario scenario = Parse(kWorkload);
  scenario.mutable_expect_failure()->set_kind(pb::ExpectedFailure::NOT_LINEARIZABLE);
  scenario.mutable_expect_failure()->set_why("a test");
  const RunResult healthy = RunScenario(scenario);
  EXPECT_FALSE(healthy.passed);
  EXPECT_TRUE(FailsWith(healthy, "expected failure did not happen"))
      << absl::StrJoin(healthy.failures, "\n");

  RunOptions starved;
  starved.linearizability_budget_steps = 1;
  const RunResult unknown = RunScenario(scenario, starved);
  EXPECT_FALSE(unknown.passed);
  EXPECT_TRUE(FailsWith(unknown, "the check gave up"));
  EXPECT_TRUE(FailsWith(unknown, "expected failure did not happen"));
}

TEST(ValidateScenarioTest, ExpectedFailureMustSayWhatAndWhy) {
  const std::string base(kWorkload);
  EXPECT_TRUE(absl::StrContains(Refusal(base + "expect_failure { why: \"x\" }"), "its kind"));
  EXPECT_TRUE(
      absl::StrContains(Refusal(base + "expect_failure { kind: NOT_LINEARIZABLE }"), "say why"));
  EXPECT_TRUE(
      absl::StrContains(Refusal(base + "skip_linearizability: true "
                                       "expect_failure { kind: NOT_LINEARIZABLE why: \"x\" }"),
                        "could never be found"));
  EXPECT_EQ(Refusal(base + "expect_failure { kind: NOT_LINEARIZABLE why: \"x\" }"), "");
}

// Randomised knobs live in the scenario's options: ones the server would refuse are refused at
// load time, and a scenario's text keeps them (a shrunk regression file replays with them).
TEST(ValidateScenarioTest, KnobsTheServerWouldRefuseAreRefused) {
  EXPECT_TRUE(
      absl::StrContains(Refusal(R"pb(options { knobs { election_tick: 5 heartbeat_tick: 5 } })pb"),
                        "heartbeat_tick 5 must be below election_tick 5"));
  EXPECT_TRUE(absl::StrContains(Refusal(R"pb(options { knobs { heartbeat_tick: 12 } })pb"),
                                "must be below election_tick 10"));
  EXPECT_TRUE(absl::StrContains(Refusal(R"pb(options { knobs { wal_segment_bytes: 4096 } })pb"),
                                "below 8 KiB"));
  EXPECT_EQ(Refusal(R"pb(options { knobs { election_tick: 6 heartbeat_tick: 2 } })pb"), "");
}

TEST(ValidateScenarioTest, NewFaultStepsNeedTheirFields) {
  EXPECT_TRUE(absl::StrContains(Refusal(R"pb(steps {
                                               disk_fault {
                                                 node { id: 1 }
                                                 kind: SLOW_DISK
                                               }
                                             })pb"),
                                "latency_ms"));
  EXPECT_TRUE(absl::StrContains(Refusal(R"pb(steps {
                                               disk_fault {
                                                 node { id: 1 }
                                                 kind: DISK_FULL
                                                 latency_ms: 5
                                               }
                                             })pb"),
                                "latency_ms"));
  EXPECT_TRUE(absl::StrContains(Refusal(R"pb(steps {
                                               clog {
                                                 from { id: 1 }
                                                 ms: 5
                                               }
                                             })pb"),
                                "clog.to names no node"));
  EXPECT_TRUE(absl::StrContains(Refusal(R"pb(steps {
                                               clock_stop {
                                                 node { id: 1 }
                                                 ms: -5
                                               }
                                             })pb"),
                                "negative duration"));
}

// The new faults run in a scenario, with a workload, and break no checker; the knobs reach the
// cluster (a seed's run differs with them).
TEST(RunnerTest, NewFaultsAndKnobsRun) {
  const std::string steps = R"pb(
    steps { wait_for_leader { within_ms: 5000 } }
    steps { start_workload: true }
    steps {
      pause {
        node { follower: 1 }
        ms: 400
        buffer: true
      }
    }
    steps {
      clog {
        from { leader: true }
        to { follower: 2 }
        ms: 300
        both_ways: true
      }
    }
    steps { run_ms: 500 }
    steps {
      clock_stop {
        node { leader: true }
        ms: 300
      }
    }
    steps {
      disk_fault {
        node { id: 2 }
        kind: SLOW_DISK
        latency_ms: 50
      }
    }
    steps {
      slow_watcher {
        node { id: 3 }
        ms: 800
      }
    }
    steps { run_ms: 1500 }
    steps { heal: true }
    steps {
      disk_fault {
        node { id: 2 }
        kind: DISK_HEALED
      }
    }
    steps { wait_for_leader { within_ms: 5000 } }
    steps { stop_workload: true }
    steps { run_ms: 1000 }
    steps { expect { hashes_equal: true } }
  )pb";
  const RunResult plain =
      RunScenario(Parse(absl::StrCat(R"pb(options { seed: 5 voters: 3 })pb", steps)));
  EXPECT_TRUE(plain.passed) << absl::StrJoin(plain.failures, "\n");
  const pb::Scenario knobbed = Parse(absl::StrCat(
      R"pb(options {
             seed: 5
             voters: 3
             knobs {
               election_tick: 7
               heartbeat_tick: 1
               max_inflight_msgs: 1
               max_size_per_msg_bytes: 256
               disable_pre_vote: true
               watch_max_buffered_events: 8
               watch_catch_up_batch_events: 4
             }
           })pb",
      steps));
  const RunResult with_knobs = RunScenario(knobbed);
  EXPECT_TRUE(with_knobs.passed) << absl::StrJoin(with_knobs.failures, "\n");
  EXPECT_NE(with_knobs.trace_hash, plain.trace_hash) << "the knobs did not reach the cluster";
  // The scenario's text keeps the knobs.
  EXPECT_EQ(Parse(FormatScenario(knobbed)).DebugString(), knobbed.DebugString());
}

}  // namespace
}  // namespace kvstore::sim
