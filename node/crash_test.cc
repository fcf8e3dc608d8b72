// Crash tests with real processes (issue "Durable storage" §6). crash_child, one member on the
// real WAL and LMDB backend, is killed with SIGKILL at seeded random moments (after a random
// number of acknowledgements, or a random delay that often lands inside recovery) and restarted
// on the same directory, continuing with the next keys. At the end --verify lists every key and
// the test checks that
//   - every acknowledged put is present with exactly its value: the member answers a put only
//     once its entry is durable, so no crash may take it;
//   - every key present was submitted, with the value its run submitted: a put submitted but
//     not acknowledged may or may not be present, nothing else may appear;
//   - the child never refused to start after a crash, and never failed otherwise.
// SIGKILL keeps the page cache, so this tests the order of the process's own writes (the WAL
// before the answer, a backend that lost its unflushed batches repaired by the log replay,
// recovery killed midway), not lost fsyncs: the simulator's disk (store/sim_file_system.h)
// covers those.
//
// CRASH_ITERATIONS (default kDefaultIterations) and CRASH_SEED (default kDefaultSeed) choose the
// campaign; tools/crash_campaign.sh runs a long one. A seed fixes the schedule of kill points,
// not the timing of the child they interrupt. The figures are printed as one "crash figures:"
// line; recovery is the time from the spawn to the child's "ready" (exec, WAL and backend
// recovery, election).

#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/raft/rand.h"
#include "gtest/gtest.h"
#include "node/crash_process.h"
#include "node/crash_workload.h"

namespace kvstore::node::crash {
namespace {

constexpr uint64_t kDefaultIterations = 20;
constexpr uint64_t kDefaultSeed = 1;
// Kill points: after this many acknowledgements at most, or this long after the spawn at most.
constexpr uint64_t kMaxAcksBeforeKill = 200;
constexpr uint64_t kMaxDelayBeforeKillMs = 50;
// Puts asked of one run: more than any ack-count kill waits for, so those runs are killed
// mid-stream; a fast child may finish one before a delay kill (a clean exit, also checked).
constexpr uint64_t kPutsPerRun = 2 * kMaxAcksBeforeKill;
// Small segments and frequent compactions, so a short campaign kills the child while it cuts
// segments, flushes its backend for a compaction and removes covered segments.
constexpr uint64_t kWalSegmentBytes = 64 << 10;
constexpr uint64_t kWalCompactEntries = 500;
// Time limits: a run (start, recovery, puts, kill, reap), the final --verify, and the whole test
// (at least kMinTestBudget; long campaigns get kTestBudgetPerIteration per iteration).
constexpr auto kIterationBudget = std::chrono::seconds(5);
constexpr auto kVerifyBudget = std::chrono::seconds(30);
constexpr auto kMinTestBudget = std::chrono::seconds(120);
constexpr auto kTestBudgetPerIteration = std::chrono::seconds(1);
// Lost puts listed one by one; the count says how many there were in all.
constexpr uint64_t kMaxReportedLosses = 20;

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  uint64_t value = 0;
  // A misspelt value must not quietly run the default campaign.
  if (!absl::SimpleAtoi(text, &value)) {
    ADD_FAILURE() << name << "=" << text << " is not a non-negative integer";
    return fallback;
  }
  return value;
}

double Millis(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count() / 1000.0;
}

// One run of the child: the keys it may have submitted and the seed of their values.
struct ChildRun {
  uint64_t first = 0;
  uint64_t last_submittable = 0;  // first - 1 when it can have submitted nothing
  uint64_t seed = 0;
};

struct Figures {
  uint64_t iterations = 0;
  uint64_t kills_after_acks = 0;
  uint64_t kills_after_delay = 0;
  uint64_t kills_before_ready = 0;  // killed while starting: during WAL or backend recovery
  uint64_t clean_exits = 0;         // finished kPutsPerRun before the kill
  uint64_t acks = 0;
  std::vector<Clock::duration> recoveries;  // of the runs that got to "ready"
  uint64_t keys_present = 0;
  uint64_t unacknowledged_present = 0;
  Clock::duration verify_time{};
  Clock::duration total_time{};

  std::string Describe() const {
    std::vector<Clock::duration> sorted = recoveries;
    std::sort(sorted.begin(), sorted.end());
    auto percentile = [&](size_t p) {
      return sorted.empty() ? 0.0 : Millis(sorted[(sorted.size() - 1) * p / 100]);
    };
    return absl::StrCat(
        "crash figures: iterations=", iterations, " kills_after_acks=", kills_after_acks,
        " kills_after_delay=", kills_after_delay, " kills_before_ready=", kills_before_ready,
        " clean_exits=", clean_exits, " acks=", acks, " keys_present=", keys_present,
        " unacknowledged_present=", unacknowledged_present, " recoveries=", sorted.size(),
        " recovery_ms_p50=", percentile(50), " recovery_ms_p99=", percentile(99),
        " recovery_ms_max=", percentile(100), " verify_ms=", Millis(verify_time),
        " total_s=", Millis(total_time) / 1000.0);
  }
};

std::vector<std::string> ChildFlags(const std::string& dir) {
  return {absl::StrCat("--dir=", dir), absl::StrCat("--wal-segment-bytes=", kWalSegmentBytes),
          absl::StrCat("--wal-compact-entries=", kWalCompactEntries)};
}

TEST(CrashTest, KilledAtRandomMomentsKeepsEveryAcknowledgedPut) {
  const uint64_t iterations = EnvNumber("CRASH_ITERATIONS", kDefaultIterations);
  const uint64_t seed = EnvNumber("CRASH_SEED", kDefaultSeed);
  const std::string reproduce =
      absl::StrCat("reproduce: bazel test //node:crash_test --test_env=CRASH_SEED=", seed,
                   " --test_env=CRASH_ITERATIONS=", iterations);
  SCOPED_TRACE(reproduce);
  const Clock::time_point test_start = Clock::now();
  const Clock::time_point test_deadline =
      test_start + std::max<Clock::duration>(kMinTestBudget, iterations * kTestBudgetPerIteration);
  const std::string dir = FreshTestDir("crash");
  const KeepOnFailure keep{dir};
  raft::SplitMix64 random(seed);
  std::map<uint64_t, ChildRun> runs;      // by first key number
  std::map<uint64_t, std::string> acked;  // key number -> value
  Figures figures;
  uint64_t next = 1;

  for (uint64_t iteration = 0; iteration < iterations; ++iteration) {
    SCOPED_TRACE(absl::StrCat("iteration ", iteration));
    ASSERT_LT(Clock::now(), test_deadline) << "the campaign ran out of time";
    ChildRun run;
    run.first = next;
    run.seed = random.Next();
    const bool kill_by_acks = random.Percent(50);
    const uint64_t kill_after_acks = random.Uniform(kMaxAcksBeforeKill + 1);
    const auto kill_after = std::chrono::milliseconds(random.Uniform(kMaxDelayBeforeKillMs + 1));

    SpawnOptions options;
    options.args = ChildFlags(dir);
    options.args.push_back(absl::StrCat("--first=", run.first));
    options.args.push_back(absl::StrCat("--count=", kPutsPerRun));
    options.args.push_back(absl::StrCat("--seed=", run.seed));
    auto spawned = ChildProcess::Spawn(CrashChildPath(), options);
    ASSERT_TRUE(spawned.ok()) << spawned.status();
    ChildProcess& child = **spawned;
    const Clock::time_point deadline = child.started_at() + kIterationBudget;

    uint64_t acks_seen = 0;
    size_t lines_counted = 0;
    auto enough_acks = [&] {
      for (; lines_counted < child.lines().size(); ++lines_counted) {
        if (ParseKeyValueLine(child.lines()[lines_counted].text, kAckPrefix)) ++acks_seen;
      }
      return acks_seen >= kill_after_acks;
    };
    if (kill_by_acks) {
      child.ReadUntil(deadline, enough_acks);
      ++figures.kills_after_acks;
    } else {
      child.ReadUntil(std::min(deadline, child.started_at() + kill_after), [] { return false; });
      ++figures.kills_after_delay;
    }
    child.Kill();
    auto exit = child.Wait(deadline);
    ASSERT_TRUE(exit.ok()) << exit.status() << "\nstderr:\n" << child.stderr_text();
    if (exit->Exited(kExitOk)) {
      ++figures.clean_exits;
    } else {
      // Anything but our SIGKILL is a failure: a refusal to start after a crash, a storage
      // failure, a crash of its own.
      ASSERT_TRUE(exit->KilledBy(SIGKILL)) << "crash_child " << exit->Describe() << "\nstderr:\n"
                                           << child.stderr_text();
    }

    bool ready = false;
    uint64_t run_acks = 0;
    for (const OutputLine& line : child.lines()) {
      if (line.text == kReadyLine) {
        ASSERT_FALSE(ready) << "two ready lines";
        ready = true;
        figures.recoveries.push_back(line.read_at - child.started_at());
        continue;
      }
      auto ack = ParseKeyValueLine(line.text, kAckPrefix);
      ASSERT_TRUE(ack.has_value()) << "unexpected line '" << line.text << "'";
      ASSERT_TRUE(ready) << "an acknowledgement before the ready line: " << line.text;
      const std::optional<uint64_t> n = KeyNumber(ack->key);
      ASSERT_TRUE(n.has_value() && *n >= run.first && *n < run.first + kPutsPerRun)
          << "acknowledged a key this run was not asked to write: " << line.text;
      ASSERT_EQ(ack->value, Value(*n, run.seed))
          << "acknowledged a value it was not asked to write";
      ASSERT_TRUE(acked.emplace(*n, ack->value).second) << "acknowledged twice: " << line.text;
      ++run_acks;
    }
    if (!ready) ++figures.kills_before_ready;
    figures.acks += run_acks;
    // The child submits keys in order with at most kMaxInflightPuts unanswered.
    run.last_submittable = run.first + std::min(kPutsPerRun, run_acks + kMaxInflightPuts) - 1;
    runs[run.first] = run;
    next = run.last_submittable + 1;
    ++figures.iterations;
  }

  SpawnOptions verify;
  verify.args = ChildFlags(dir);
  verify.args.push_back("--verify");
  const Clock::time_point verify_start = Clock::now();
  auto verified = RunCrashChild(verify, kVerifyBudget);
  figures.verify_time = Clock::now() - verify_start;
  ASSERT_TRUE(verified.ok()) << verified.status();
  ASSERT_TRUE(verified->exit.Exited(kExitOk))
      << "--verify " << verified->exit.Describe() << "\nstderr:\n"
      << verified->stderr_text;

  std::map<uint64_t, std::string> present;
  for (const OutputLine& line : verified->lines) {
    auto kv = ParseKeyValueLine(line.text, kKvPrefix);
    ASSERT_TRUE(kv.has_value()) << "unexpected line '" << line.text << "'";
    const std::optional<uint64_t> n = KeyNumber(kv->key);
    ASSERT_TRUE(n.has_value()) << "a key the child never writes: " << line.text;
    // The run that may have submitted key n: the last one starting at or before it.
    auto run = runs.upper_bound(*n);
    const bool submittable = run != runs.begin() && *n <= std::prev(run)->second.last_submittable;
    EXPECT_TRUE(submittable) << "key " << kv->key << " appeared though it was never submitted";
    if (!submittable) continue;
    EXPECT_EQ(kv->value, Value(*n, std::prev(run)->second.seed))
        << "key " << kv->key << " holds a value its run never submitted";
    present[*n] = kv->value;
  }
  uint64_t lost = 0;
  for (const auto& [n, value] : acked) {
    auto it = present.find(n);
    if (it == present.end() || it->second != value) {
      if (++lost > kMaxReportedLosses) continue;
      ADD_FAILURE() << "acknowledged put " << Key(n) << "=" << value << " is "
                    << (it == present.end() ? "missing" : absl::StrCat("now ", it->second));
    }
  }
  EXPECT_EQ(lost, 0u) << "acknowledged puts lost";
  figures.keys_present = present.size();
  for (const auto& [n, value] : present) figures.unacknowledged_present += acked.count(n) == 0;
  figures.total_time = Clock::now() - test_start;
  std::printf("%s seed=%llu\n", figures.Describe().c_str(), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  EXPECT_LT(Clock::now(), test_deadline) << "the campaign ran out of time";
}

}  // namespace
}  // namespace kvstore::node::crash
