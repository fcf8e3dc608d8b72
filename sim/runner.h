#ifndef KVSTORE_SIM_RUNNER_H_
#define KVSTORE_SIM_RUNNER_H_

// Runs a scenario (sim/scenario.proto) in a Simulation: the steps in order, each expectation
// checked when its step runs, then the standing checkers (including linearizability of the
// client history). The result says what failed, in words, with the trace hash that identifies
// the run exactly.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/probe.h"
#include "sim/availability.h"
#include "sim/history.h"
#include "sim/linearizability.h"
#include "sim/scenario.pb.h"
#include "sim/world.h"

namespace kvstore::sim {

struct RunResult {
  bool passed = true;
  std::vector<std::string> failures;    // failed expectations and checker violations
  std::vector<std::string> transcript;  // one line per step, with its outcome
  std::vector<std::string> trace;       // every event, when recorded
  uint64_t trace_hash = 0;
  uint64_t events = 0;
  int64_t virtual_ms = 0;
  // Steps the linearizability search took (0 when it did not run), to compare with its budget.
  uint64_t linearizability_search_steps = 0;
  // Joint configurations (member replace) entered and left, counted per node that applied them.
  uint64_t joint_configs_entered = 0;
  uint64_t joint_configs_left = 0;
  // The availability checker's figures (sim/availability.h); zero outside the simulator.
  AvailabilityFigures availability;
  // Hits of each code probe (core/base/probe.h) during this run, by probe id.
  probe::Counts probe_hits{};
  History history;  // the linearizable clients' history (FormatHistory writes the file format)
  // Steps the world could not carry out (sim/world.h: CannotRun), one line each: "step N
  // (<kind>): <reason>". The simulation skips none.
  std::vector<std::string> skipped;
  // Checks (expectations, leader waits, requests expecting an outcome, linearizability of a
  // non-empty history) run and skipped. A run whose checks were all skipped fails: it proved
  // nothing.
  int checks_run = 0;
  int checks_skipped = 0;
};

struct RunOptions {
  std::optional<uint64_t> seed;  // overrides the scenario's seed
  bool record_trace = false;
  // Search steps the linearizability checker may spend (deterministic, not wall-clock). A search
  // that runs out fails the run: it proved nothing. The checker's own default (~5 s at worst):
  // with 5,000,000, about one seed in 3,000 ran out on a linearizable history (fuzz seed 2487,
  // 5 nodes: 15.3 million steps, 1.3 s, on a key with 180 refused cas and 35 unknown mutations).
  uint64_t linearizability_budget_steps = kDefaultMaxSearchSteps;
};

// Refuses a scenario that cannot say what it means, naming the step: a remembered name read
// before any step remembers it (or as another kind of value), a node reference that names no node
// or several, an unknown outcome name, an expectation without the node it needs, a field the
// step's op does not use (see sim/scenario.proto).
absl::Status ValidateScenario(const pb::Scenario& scenario);

// Runs a scenario in a simulation; an invalid one (ValidateScenario) fails without running.
RunResult RunScenario(const pb::Scenario& scenario, const RunOptions& options = {});
// Runs a scenario in `world` (a real cluster: node/testing/real_world.h). The scenario's
// options the world was made with are its own business; `options.seed` and
// `options.record_trace` concern only the simulation.
RunResult RunScenarioIn(ScenarioWorld& world, const pb::Scenario& scenario,
                        const RunOptions& options = {});

// Parses and validates a text-format scenario; errors name the file and the parser's or the
// validation's complaint.
absl::StatusOr<pb::Scenario> ParseScenario(const std::string& text, const std::string& origin);
absl::StatusOr<pb::Scenario> LoadScenario(const std::string& path);
std::string FormatScenario(const pb::Scenario& scenario);

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_RUNNER_H_
