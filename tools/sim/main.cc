// sim: the simulator's command line. `sim help` prints the usage of every command (kUsage
// below). Everything but a campaign's wall-time bound is deterministic: the same command gives
// the same output, bit for bit.

#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "sim/campaign.h"
#include "sim/fuzz.h"
#include "sim/history.h"
#include "sim/linearizability.h"
#include "sim/runner.h"

namespace kvstore::sim {
namespace {

constexpr int kExitUsage = 2;
constexpr int kExitUnhitProbe = 4;  // a code probe the campaign never hit, not listed as rare

constexpr char kUsage[] =
    R"(usage: sim COMMAND [FLAGS]

  sim run FILE... [--seed=S] [--verbose] [--print-trace] [--history-out=FILE]
      Run scenario files (testdata/scenarios/); exit 0 only if all pass. --seed overrides
      their seeds; a failure prints the command that runs it again verbosely.

  sim fuzz [--seed=S] [--count=N] [--minutes=M] [--nodes=K[,K...]] [--duration-ms=D]
           [--shard=I/N] [--summary=FILE] [--isolate] [--expected-rare=FILE]
      A campaign of random fault schedules with a workload: seeds S, S+1, ... (S: 1), N of
      them, or as many as M minutes of wall time allow (both: whichever ends first; neither:
      N=10). Each seed runs on one of the node counts K (5), picked by a hash of the seed, with
      D ms of virtual faults (60000). --shard=I/N runs only the seeds s with s % N == I, so N
      shards of one campaign run each seed once; --summary writes a JSON summary of the run
      for `sim merge`. --isolate runs each seed in a child process, so that a seed aborting on
      an assertion inside the core is reported like any failure and the campaign goes on.
      Progress on stderr; a report at the end (seeds, failures, per node count CPU per seed).
      Every failure prints its replay command. The report counts the hits of each code probe
      (core/base/probe.h); with --expected-rare, a probe never hit that FILE does not list
      (testdata/sim/expected_rare_probes.txt: name and reason per line) fails the campaign.
      Exit 1 if a seed failed (130: interrupted), 4 if a probe went unhit.

  sim merge SUMMARY... [--expected-rare=FILE]
      Combine the summaries of a campaign's shards into one report: totals, probe hits,
      failures with replay commands, shards missing or present twice. Exit 1 if a seed failed,
      3 if the summaries do not make one complete campaign, 4 if a probe that FILE does not
      list was never hit, 0 otherwise.

  sim replay --seed=S [--nodes=K] [--duration-ms=D] [--kills=0] [--trace-out=FILE]
             [--print-trace] [--history-out=FILE]
      Run one fuzz seed again, verbosely; --trace-out records its trace. --kills=0: the
      schedule without process kills (as seeds found before they existed had it).
  sim replay --trace=FILE
      Re-execute a recorded trace; report the first divergence.

  sim shrink --seed=S [--nodes=K] [--duration-ms=D] [--kills=0] [--out=FILE]
      A shorter schedule failing like the seed, written as a scenario file (a seed that
      passes: says so, writes nothing, exits 0).

  sim check-history FILE [--model=register|kv] [--no-shrink] [--shrink-steps=N]
      The verdict on a history file (sim/history.h); a violation is shrunk to a small window
      within N search steps, or not at all. Exit 0 linearizable, 1 not, 3 unknown.

  sim help, sim --help, sim COMMAND --help
      This text.
)";

int Usage(const std::string& problem) {
  std::fprintf(stderr, "sim: %s\n%s", problem.c_str(), kUsage);
  return kExitUsage;
}

int Help() {
  std::printf("%s", kUsage);
  return 0;
}

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
};

Args Parse(int argc, char** argv, int first) {
  Args args;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      if (eq == std::string::npos) {
        args.flags[arg.substr(2)] = "true";
      } else {
        args.flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
      }
    } else {
      args.positional.push_back(arg);
    }
  }
  return args;
}

bool Number(const Args& args, const std::string& name, uint64_t fallback, uint64_t* out,
            std::string* error) {
  auto it = args.flags.find(name);
  if (it == args.flags.end()) {
    *out = fallback;
    return true;
  }
  if (!absl::SimpleAtoi(it->second, out)) {
    *error = absl::StrCat("--", name, " must be a non-negative integer, got '", it->second, "'");
    return false;
  }
  return true;
}

double CpuSeconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

// CPU time of the child processes waited for so far (user and system).
double ChildCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_CHILDREN, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

RunResult RunInChild(const pb::Scenario& scenario);
bool LoadExpectedRare(const Args& args, std::map<std::string, std::string>* expected_rare);
bool ReportUnhitProbes(const Args& args, const pb::CampaignSummary& summary,
                       const std::map<std::string, std::string>& expected_rare);

void PrintResult(const std::string& name, const RunResult& result, bool verbose) {
  std::printf("%s %s  (%llu events, %lld virtual ms, trace hash %016llx)\n",
              result.passed ? "PASS" : "FAIL", name.c_str(),
              static_cast<unsigned long long>(result.events),
              static_cast<long long>(result.virtual_ms),
              static_cast<unsigned long long>(result.trace_hash));
  if (!result.passed || verbose) {
    for (const std::string& line : result.transcript) std::printf("  %s\n", line.c_str());
    for (const std::string& failure : result.failures) {
      std::printf("  FAILURE: %s\n", failure.c_str());
    }
  }
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

std::string InWorkspace(const std::string& path) {
  // Under `bazel run`, relative paths are relative to the user's workspace, not the runfiles.
  const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  if (workspace == nullptr || path.empty() || path[0] == '/') return path;
  return absl::StrCat(workspace, "/", path);
}

int Run(const Args& args) {
  if (args.positional.empty()) return Usage("run needs at least one scenario file");
  std::string error;
  uint64_t seed = 0;
  if (!Number(args, "seed", 0, &seed, &error)) return Usage(error);
  RunOptions options;
  if (args.flags.count("seed")) options.seed = seed;
  options.record_trace = args.flags.count("print-trace") > 0;
  int failed = 0;
  for (const std::string& file : args.positional) {
    auto scenario = LoadScenario(InWorkspace(file));
    if (!scenario.ok()) {
      std::fprintf(stderr, "sim: %s\n", scenario.status().ToString().c_str());
      ++failed;
      continue;
    }
    const RunResult result = RunScenario(*scenario, options);
    for (const std::string& line : result.trace) std::printf("%s\n", line.c_str());
    if (args.flags.count("history-out")) {
      const std::string path = InWorkspace(args.flags.at("history-out"));
      if (!WriteFile(path, FormatHistory(result.history))) {
        std::fprintf(stderr, "sim: cannot write %s\n", path.c_str());
        return 1;
      }
    }
    PrintResult(scenario->name().empty() ? file : scenario->name(), result,
                args.flags.count("verbose") > 0);
    if (!result.passed) {
      std::printf("  replay: sim run %s%s --verbose\n", file.c_str(),
                  options.seed.has_value() ? absl::StrCat(" --seed=", seed).c_str() : "");
    }
    failed += result.passed ? 0 : 1;
  }
  std::printf("%zu scenarios, %d failed\n", args.positional.size(), failed);
  return failed == 0 ? 0 : 1;
}

bool FuzzOptionsFrom(const Args& args, FuzzOptions* options, std::string* error) {
  uint64_t nodes = 0, duration = 0, kills = 1;
  if (!Number(args, "nodes", 5, &nodes, error) ||
      !Number(args, "duration-ms", 60'000, &duration, error) ||
      !Number(args, "kills", 1, &kills, error)) {
    return false;
  }
  if (kills > 1) {
    *error = "--kills must be 0 or 1";
    return false;
  }
  options->kills = kills == 1;
  if (nodes < 1 || nodes > 9) {
    *error = "--nodes must be in [1, 9]";
    return false;
  }
  options->nodes = static_cast<int>(nodes);
  options->duration_ms = static_cast<int64_t>(duration);
  return true;
}

// An invariant assertion inside the core (RAFT_CHECK) aborts the process. So that the campaign
// still names the seed that did it, the replay command of the running seed waits in a buffer
// that the SIGABRT handler writes out (write(2) is async-signal-safe; formatting is not).
char abort_note[256];
size_t abort_note_size = 0;

void OnAbort(int signal) {
  if (abort_note_size > 0) {
    ssize_t ignored = write(STDOUT_FILENO, abort_note, abort_note_size);
    (void)ignored;
  }
  std::signal(signal, SIG_DFL);
  std::raise(signal);
}

void NoteRunningSeed(uint64_t seed, const std::string& replay) {
  const int size = std::snprintf(abort_note, sizeof(abort_note),
                                 "seed %llu ABORTED (an invariant inside the core failed)\n"
                                 "  replay: %s\n",
                                 static_cast<unsigned long long>(seed), replay.c_str());
  abort_note_size = size < 0 ? 0 : std::min(static_cast<size_t>(size), sizeof(abort_note) - 1);
}

// SIGINT ends a campaign after the running seed, with its report and summary.
volatile std::sig_atomic_t interrupted = 0;

void OnInterrupt(int) { interrupted = 1; }

// The campaign's progress line on stderr: rewritten in place on a terminal, otherwise one line
// every few seconds (a CI log).
class Progress {
 public:
  Progress(std::string label, std::optional<uint64_t> seeds_total, double seconds_total)
      : label_(std::move(label)),
        seeds_total_(seeds_total),
        seconds_total_(seconds_total),
        terminal_(isatty(STDERR_FILENO) != 0) {}

  void Update(const pb::CampaignSummary& summary, double elapsed_seconds) {
    if (elapsed_seconds - last_seconds_ < (terminal_ ? 0.2 : kLogIntervalSeconds)) return;
    last_seconds_ = elapsed_seconds;
    std::string line = absl::StrCat(label_, summary.seeds_run());
    if (seeds_total_.has_value()) absl::StrAppend(&line, "/", *seeds_total_);
    absl::StrAppendFormat(
        &line, " seeds, %d failed, %.2f seeds/s, %.0f", summary.failures_size(),
        elapsed_seconds > 0 ? static_cast<double>(summary.seeds_run()) / elapsed_seconds : 0.0,
        elapsed_seconds);
    if (seconds_total_ > 0) absl::StrAppendFormat(&line, "/%.0f", seconds_total_);
    absl::StrAppend(&line, " s");
    std::fprintf(stderr, terminal_ ? "\r\033[K%s" : "%s\n", line.c_str());
    shown_ = terminal_;
    std::fflush(stderr);
  }

  // Takes the line off a terminal before other output.
  void Clear() {
    if (!shown_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    shown_ = false;
  }

 private:
  static constexpr double kLogIntervalSeconds = 5;
  const std::string label_;
  const std::optional<uint64_t> seeds_total_;
  const double seconds_total_;
  const bool terminal_;
  double last_seconds_ = 0;
  bool shown_ = false;
};

int Fuzz(const Args& args, const std::string& command_line) {
  std::string error;
  uint64_t first_seed = 0, count = 0;
  FuzzOptions options;
  uint64_t duration_ms = 0;
  if (!Number(args, "seed", 1, &first_seed, &error) || !Number(args, "count", 10, &count, &error) ||
      !Number(args, "duration-ms", 60'000, &duration_ms, &error)) {
    return Usage(error);
  }
  options.duration_ms = static_cast<int64_t>(duration_ms);
  auto node_counts = ParseNodeCounts(args.flags.count("nodes") ? args.flags.at("nodes") : "5");
  if (!node_counts.ok()) return Usage(absl::StrCat("--nodes: ", node_counts.status().message()));
  double minutes = 0;
  if (args.flags.count("minutes") && (!absl::SimpleAtod(args.flags.at("minutes"), &minutes) ||
                                      !std::isfinite(minutes) || minutes <= 0)) {
    return Usage(
        absl::StrCat("--minutes must be a positive number, got '", args.flags.at("minutes"), "'"));
  }
  // Bounded by time alone unless --count is given too.
  const bool by_count = args.flags.count("count") > 0 || minutes == 0;
  if (by_count && count > std::numeric_limits<uint64_t>::max() - first_seed) {
    return Usage("--seed plus --count runs past the largest seed");
  }
  Shard shard;
  if (args.flags.count("shard")) {
    auto parsed = ParseShard(args.flags.at("shard"));
    if (!parsed.ok()) return Usage(absl::StrCat("--shard: ", parsed.status().message()));
    shard = *parsed;
  }
  const bool isolate = args.flags.count("isolate") > 0;

  pb::CampaignSummary summary;
  summary.set_command_line(command_line);
  summary.set_first_seed(first_seed);
  summary.set_seed_count(by_count ? count : 0);
  summary.set_minutes(minutes);
  summary.set_shard_index(shard.index);
  summary.set_shard_count(shard.count);
  for (int nodes : *node_counts) summary.add_nodes(nodes);
  summary.set_duration_ms(options.duration_ms);
  summary.set_search_steps_budget(RunOptions().linearizability_budget_steps);
  AddProbeHits(probe::Counts{}, &summary);  // every probe listed, the unhit ones as 0
  std::map<std::string, std::string> expected_rare;
  if (!LoadExpectedRare(args, &expected_rare)) return kExitUsage;

  const std::optional<uint64_t> shard_seeds =
      by_count ? std::optional<uint64_t>(SeedsInShard(first_seed, count, shard)) : std::nullopt;
  Progress progress(
      shard.count > 1 ? absl::StrCat("fuzz shard ", shard.ToString(), ": ") : std::string("fuzz: "),
      shard_seeds, minutes * 60);
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const auto elapsed = [&start] {
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  if (!isolate) std::signal(SIGABRT, OnAbort);
  std::signal(SIGINT, OnInterrupt);
  SeedSequence seeds(first_seed, by_count ? std::optional<uint64_t>(count) : std::nullopt, shard);
  while (interrupted == 0 && (minutes == 0 || elapsed() < minutes * 60)) {
    const std::optional<uint64_t> s = seeds.Next();
    if (!s.has_value()) break;
    options.nodes = NodesForSeed(*s, *node_counts);
    std::fflush(stdout);
    NoteRunningSeed(*s, ReplayCommand(*s, options.nodes, options.duration_ms));
    const auto cpu_now = [isolate] { return isolate ? ChildCpuSeconds() : CpuSeconds(); };
    const double cpu_start = cpu_now();
    const pb::Scenario scenario = RandomScenario(*s, options);
    const RunResult result = isolate ? RunInChild(scenario) : RunScenario(scenario);
    const double cpu = cpu_now() - cpu_start;
    // A child killed by the same Ctrl-C is no finding.
    if (isolate && interrupted != 0 && !result.passed) break;
    if (result.linearizability_search_steps > summary.most_search_steps()) {
      summary.set_most_search_steps(result.linearizability_search_steps);
      summary.set_most_search_steps_seed(*s);
    }
    RecordSeed(*s, options.nodes, result.passed, result.failures, cpu, options.duration_ms,
               &summary);
    AddProbeHits(result.probe_hits, &summary);
    AddAvailability(result.availability, *s, &summary);
    if (!result.passed) {
      progress.Clear();
      std::printf("[%llu%s] seed %llu FAILED\n",
                  static_cast<unsigned long long>(summary.seeds_run()),
                  shard_seeds.has_value() ? absl::StrCat("/", *shard_seeds).c_str() : "",
                  static_cast<unsigned long long>(*s));
      for (const std::string& failure : result.failures) {
        std::printf("  %s\n", failure.c_str());
      }
      std::printf("  knobs: %s\n", DescribeKnobs(scenario.options()).c_str());
      std::printf("  replay: %s\n", ReplayCommand(*s, options.nodes, options.duration_ms).c_str());
      std::fflush(stdout);
    }
    progress.Update(summary, elapsed());
  }
  progress.Clear();
  abort_note_size = 0;
  std::signal(SIGINT, SIG_DFL);
  summary.set_wall_seconds(elapsed());
  summary.set_interrupted(interrupted != 0);
  std::printf("%s", FormatReport(summary).c_str());
  if (args.flags.count("summary")) {
    const std::string path = InWorkspace(args.flags.at("summary"));
    if (!WriteFile(path, SummaryToJson(summary))) {
      std::fprintf(stderr, "sim: cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("summary written to %s\n", path.c_str());
  }
  if (summary.failures_size() > 0) return 1;
  if (interrupted != 0) return 130;
  return ReportUnhitProbes(args, summary, expected_rare) ? kExitUnhitProbe : 0;
}

// --expected-rare=FILE: the probes a campaign may leave unhit. False (after saying why) when the
// file cannot be read or is malformed; an empty map without the flag.
bool LoadExpectedRare(const Args& args, std::map<std::string, std::string>* expected_rare) {
  if (!args.flags.count("expected-rare")) return true;
  const std::string file = args.flags.at("expected-rare");
  std::ifstream in(InWorkspace(file));
  if (!in) {
    std::fprintf(stderr, "sim: cannot read --expected-rare file %s\n", file.c_str());
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = ParseExpectedRareProbes(text.str(), file);
  if (!parsed.ok()) {
    std::fprintf(stderr, "sim: %s\n", std::string(parsed.status().message()).c_str());
    return false;
  }
  *expected_rare = *std::move(parsed);
  return true;
}

// With --expected-rare: prints each probe of the list that the campaign never hit and the file
// does not excuse; true if there is any.
bool ReportUnhitProbes(const Args& args, const pb::CampaignSummary& summary,
                       const std::map<std::string, std::string>& expected_rare) {
  if (!args.flags.count("expected-rare")) return false;
  const std::vector<std::string> unhit = UnhitProbes(summary, expected_rare);
  for (const std::string& line : unhit) {
    std::printf("UNHIT PROBE: %s: never hit in this campaign and not listed in %s\n", line.c_str(),
                args.flags.at("expected-rare").c_str());
  }
  if (!unhit.empty()) {
    std::printf(
        "%zu code probe(s) never hit: make the fuzzer reach them (sim/fuzz.cc), or list "
        "each in %s with the reason it is rare\n",
        unhit.size(), args.flags.at("expected-rare").c_str());
  }
  return !unhit.empty();
}

int Merge(const Args& args) {
  if (args.positional.empty()) return Usage("merge needs at least one SUMMARY file");
  std::map<std::string, std::string> expected_rare;
  if (!LoadExpectedRare(args, &expected_rare)) return kExitUsage;
  std::vector<NamedSummary> shards;
  for (const std::string& file : args.positional) {
    std::ifstream in(InWorkspace(file));
    if (!in) return Usage(absl::StrCat("cannot read summary file ", file));
    std::stringstream text;
    text << in.rdbuf();
    auto summary = SummaryFromJson(text.str());
    if (!summary.ok()) {
      std::fprintf(stderr, "sim: %s: %s\n", file.c_str(),
                   std::string(summary.status().message()).c_str());
      return kExitUsage;
    }
    shards.push_back({file, *std::move(summary)});
  }
  const MergeOutcome outcome = MergeSummaries(shards);
  std::vector<std::string> names;
  for (const NamedSummary& shard : shards) {
    names.push_back(absl::StrCat(shard.name, " (shard ", shard.summary.shard_index(), "/",
                                 shard.summary.shard_count(), ", ", shard.summary.seeds_run(),
                                 " seeds)"));
  }
  std::printf("merged %zu summaries: %s\n", shards.size(), absl::StrJoin(names, ", ").c_str());
  std::printf("%s", FormatReport(outcome.merged).c_str());
  for (const std::string& note : outcome.notes) std::printf("coverage: %s\n", note.c_str());
  for (const std::string& problem : outcome.problems) {
    std::printf("INCOMPLETE: %s\n", problem.c_str());
  }
  if (outcome.merged.failures_size() > 0) return 1;
  if (!outcome.problems.empty()) return 3;
  return ReportUnhitProbes(args, outcome.merged, expected_rare) ? kExitUnhitProbe : 0;
}

std::string TraceFile(uint64_t seed, const FuzzOptions& options, const RunResult& result) {
  std::string out = "# kvstore-sim trace v1\n";
  absl::StrAppend(&out, "# fuzz seed=", seed, " nodes=", options.nodes,
                  " duration-ms=", options.duration_ms, options.kills ? "" : " kills=0", "\n");
  for (const std::string& line : result.trace) absl::StrAppend(&out, line, "\n");
  absl::StrAppend(&out, "# hash ", absl::Hex(result.trace_hash, absl::kZeroPad16), "\n");
  return out;
}

int ReplayTrace(const std::string& path) {
  std::ifstream in(InWorkspace(path));
  if (!in) return Usage(absl::StrCat("cannot read trace file ", path));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  if (lines.size() < 2 || lines[0] != "# kvstore-sim trace v1") {
    return Usage(absl::StrCat(path, " is not a kvstore-sim trace (bad header)"));
  }
  Args header;
  for (absl::string_view field : absl::StrSplit(lines[1], ' ')) {
    const size_t eq = field.find('=');
    if (eq != absl::string_view::npos) {
      header.flags[std::string(field.substr(0, eq))] = std::string(field.substr(eq + 1));
    }
  }
  std::string error;
  uint64_t seed = 0;
  FuzzOptions options;
  if (!Number(header, "seed", 0, &seed, &error) || !FuzzOptionsFrom(header, &options, &error)) {
    return Usage(absl::StrCat(path, ": ", error));
  }
  RunOptions run;
  run.record_trace = true;
  const RunResult result = RunScenario(RandomScenario(seed, options), run);
  const std::string replayed = TraceFile(seed, options, result);
  std::vector<std::string> again = absl::StrSplit(replayed, '\n');
  if (!again.empty() && again.back().empty()) again.pop_back();
  for (size_t i = 0; i < std::max(lines.size(), again.size()); ++i) {
    const std::string a = i < lines.size() ? lines[i] : "<end of recorded trace>";
    const std::string b = i < again.size() ? again[i] : "<end of replayed trace>";
    if (a != b) {
      std::printf("DIVERGED at line %zu\n  recorded: %s\n  replayed: %s\n", i + 1, a.c_str(),
                  b.c_str());
      return 1;
    }
  }
  std::printf("identical: %zu lines, trace hash %016llx\n", lines.size(),
              static_cast<unsigned long long>(result.trace_hash));
  return 0;
}

int Replay(const Args& args) {
  if (args.flags.count("trace")) return ReplayTrace(args.flags.at("trace"));
  std::string error;
  uint64_t seed = 0;
  FuzzOptions options;
  if (!args.flags.count("seed")) return Usage("replay needs --seed=S or --trace=FILE");
  if (!Number(args, "seed", 0, &seed, &error) || !FuzzOptionsFrom(args, &options, &error)) {
    return Usage(error);
  }
  RunOptions run;
  run.record_trace = true;
  const pb::Scenario scenario = RandomScenario(seed, options);
  const RunResult result = RunScenario(scenario, run);
  std::printf("knobs: %s\n", DescribeKnobs(scenario.options()).c_str());
  if (args.flags.count("print-trace")) {
    for (const std::string& line : result.trace) std::printf("%s\n", line.c_str());
  }
  PrintResult(absl::StrCat("fuzz seed ", seed), result, true);
  if (args.flags.count("trace-out")) {
    const std::string path = InWorkspace(args.flags.at("trace-out"));
    if (!WriteFile(path, TraceFile(seed, options, result))) {
      std::fprintf(stderr, "sim: cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("trace written to %s\n", path.c_str());
  }
  if (args.flags.count("history-out")) {
    const std::string path = InWorkspace(args.flags.at("history-out"));
    if (!WriteFile(path, FormatHistory(result.history))) {
      std::fprintf(stderr, "sim: cannot write %s\n", path.c_str());
      return 1;
    }
    std::printf("history written to %s (check it: sim check-history %s)\n", path.c_str(),
                path.c_str());
  }
  std::printf("trace hash %016llx\n", static_cast<unsigned long long>(result.trace_hash));
  return result.passed ? 0 : 1;
}

// Runs `scenario` in a child process, so that a core invariant that aborts (RAFT_CHECK) becomes a
// failure like any other, to report (fuzz --isolate) or shrink: "aborted: <the assertion's
// message>". The child writes the
// result's failures to a temporary file; its stderr goes to another, read for the message.
RunResult RunInChild(const pb::Scenario& scenario) {
  RunResult result;
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  if (out == nullptr || err == nullptr) {
    std::fprintf(stderr, "sim: cannot create temporary files; running in-process\n");
    if (out != nullptr) std::fclose(out);
    if (err != nullptr) std::fclose(err);
    return RunScenario(scenario);
  }
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = fork();
  if (child == 0) {
    dup2(fileno(err), STDERR_FILENO);
    std::signal(SIGABRT, SIG_DFL);
    const RunResult run = RunScenario(scenario);
    // One failure per record: its length, a newline, its bytes (failures span lines).
    // The availability figures and the joint-configuration counts travel too: the campaign's
    // summary reports them for isolated runs as for in-process ones.
    const AvailabilityFigures& a = run.availability;
    std::fprintf(out, "%d %llu %llu %lld %llu %llu %llu %llu %llu %llu %llu %llu\n",
                 run.passed ? 1 : 0, static_cast<unsigned long long>(run.events),
                 static_cast<unsigned long long>(run.linearizability_search_steps),
                 static_cast<long long>(run.virtual_ms),
                 static_cast<unsigned long long>(run.joint_configs_entered),
                 static_cast<unsigned long long>(run.joint_configs_left),
                 static_cast<unsigned long long>(a.calm_windows),
                 static_cast<unsigned long long>(a.settled),
                 static_cast<unsigned long long>(a.elections_after_heal),
                 static_cast<unsigned long long>(a.most_elections_after_heal),
                 static_cast<unsigned long long>(a.transfers_checked),
                 static_cast<unsigned long long>(a.proposals_refused_in_transfer));
    // The code probes' hits, one number per probe in the list's order.
    for (uint64_t hits : run.probe_hits) {
      std::fprintf(out, "%llu ", static_cast<unsigned long long>(hits));
    }
    std::fprintf(out, "\n");
    for (const std::string& failure : run.failures) {
      std::fprintf(out, "%zu\n", failure.size());
      std::fwrite(failure.data(), 1, failure.size(), out);
    }
    std::fflush(out);
    _exit(0);
  }
  int status = 0;
  const bool waited = child > 0 && waitpid(child, &status, 0) == child;
  const auto slurp = [](std::FILE* file) {
    std::string text;
    std::rewind(file);
    char buffer[4096];
    for (size_t n; (n = std::fread(buffer, 1, sizeof(buffer), file)) > 0;) text.append(buffer, n);
    std::fclose(file);
    return text;
  };
  const std::string results = slurp(out);
  const std::string errors = slurp(err);
  if (!waited || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    // The assertion's own line: "[check.cc : 13] RAW: <file>:<line>: invariant violated: ...".
    std::string why = waited && WIFSIGNALED(status)
                          ? absl::StrCat("killed by signal ", WTERMSIG(status))
                          : std::string("did not run to completion");
    for (absl::string_view line : absl::StrSplit(errors, '\n')) {
      const size_t raw = line.find("RAW: ");
      if (raw != absl::string_view::npos) why = std::string(line.substr(raw + 5));
    }
    result.passed = false;
    result.failures.push_back(absl::StrCat("aborted: ", why));
    return result;
  }
  absl::string_view in = results;
  const auto next_line = [&in]() {
    const size_t end = std::min(in.find('\n'), in.size());
    absl::string_view line = in.substr(0, end);
    in.remove_prefix(std::min(end + 1, in.size()));
    return line;
  };
  const std::vector<absl::string_view> header = absl::StrSplit(next_line(), ' ');
  result.passed = !header.empty() && header[0] == "1";
  if (header.size() > 1) (void)absl::SimpleAtoi(header[1], &result.events);
  if (header.size() > 2) (void)absl::SimpleAtoi(header[2], &result.linearizability_search_steps);
  if (header.size() > 11) {
    AvailabilityFigures& a = result.availability;
    (void)absl::SimpleAtoi(header[3], &result.virtual_ms);
    (void)absl::SimpleAtoi(header[4], &result.joint_configs_entered);
    (void)absl::SimpleAtoi(header[5], &result.joint_configs_left);
    (void)absl::SimpleAtoi(header[6], &a.calm_windows);
    (void)absl::SimpleAtoi(header[7], &a.settled);
    (void)absl::SimpleAtoi(header[8], &a.elections_after_heal);
    (void)absl::SimpleAtoi(header[9], &a.most_elections_after_heal);
    (void)absl::SimpleAtoi(header[10], &a.transfers_checked);
    (void)absl::SimpleAtoi(header[11], &a.proposals_refused_in_transfer);
  }
  const std::vector<absl::string_view> hits =
      absl::StrSplit(next_line(), ' ', absl::SkipWhitespace());
  for (size_t i = 0; i < hits.size() && i < result.probe_hits.size(); ++i) {
    (void)absl::SimpleAtoi(hits[i], &result.probe_hits[i]);
  }
  while (!in.empty()) {
    size_t size = 0;
    if (!absl::SimpleAtoi(next_line(), &size) || size > in.size()) break;
    result.failures.emplace_back(in.substr(0, size));
    in.remove_prefix(size);
  }
  return result;
}

int Shrink(const Args& args) {
  std::string error;
  uint64_t seed = 0;
  FuzzOptions options;
  if (!args.flags.count("seed")) return Usage("shrink needs --seed=S");
  if (!Number(args, "seed", 0, &seed, &error) || !FuzzOptionsFrom(args, &options, &error)) {
    return Usage(error);
  }
  const pb::Scenario scenario = RandomScenario(seed, options);
  // Every run in a child process: the failure may be an aborting core assertion.
  const std::string target = ShrinkTarget(RunInChild(scenario));
  if (target.empty()) {
    // Not an error: the question "what is the smallest schedule failing like this seed?" has the
    // answer "none, it passes". Exit 0 like any command that did its job; the message says no
    // file was written.
    std::printf("seed %llu passes (%s): nothing to shrink, no file written\n",
                static_cast<unsigned long long>(seed),
                ReplayCommand(seed, options.nodes, options.duration_ms).c_str());
    return 0;
  }
  std::printf("shrinking while it fails like: %s\n", target.c_str());
  // A candidate that lost the step remembering a name it still reads is refused, not run.
  auto fails = [&](const pb::Scenario& candidate) {
    return ValidateScenario(candidate).ok() && FailsLike(RunInChild(candidate), target);
  };
  pb::Scenario shrunk = ShrinkScenario(scenario, fails);
  shrunk.set_name(absl::StrCat("regression_fuzz_seed_", seed));
  const std::string path =
      InWorkspace(args.flags.count("out") ? args.flags.at("out")
                                          : absl::StrCat("fuzz_seed_", seed, ".textproto"));
  if (!WriteFile(
          path,
          absl::StrCat("# Shrunk from `", ReplayCommand(seed, options.nodes, options.duration_ms),
                       "`: ", scenario.steps_size(), " -> ", shrunk.steps_size(),
                       " steps, failing like\n#   ", target, "\n", FormatScenario(shrunk)))) {
    std::fprintf(stderr, "sim: cannot write %s\n", path.c_str());
    return 1;
  }
  std::printf("%d -> %d steps, written to %s\n", scenario.steps_size(), shrunk.steps_size(),
              path.c_str());
  return 0;
}

int CheckHistoryFile(const Args& args) {
  if (args.positional.size() != 1) return Usage("check-history needs exactly one FILE");
  std::ifstream in(InWorkspace(args.positional[0]));
  if (!in) return Usage(absl::StrCat("cannot read history file ", args.positional[0]));
  std::stringstream text;
  text << in.rdbuf();
  auto history = ParseHistory(text.str());
  if (!history.ok()) {
    std::fprintf(stderr, "sim: %s: %s\n", args.positional[0].c_str(),
                 history.status().ToString().c_str());
    return kExitUsage;
  }
  CheckOptions options;
  options.minimize = args.flags.count("no-shrink") == 0;
  std::string error;
  if (!Number(args, "shrink-steps", kDefaultMaxMinimizeSteps, &options.max_minimize_steps,
              &error)) {
    return Usage(error);
  }
  if (!options.minimize && args.flags.count("shrink-steps")) {
    return Usage("--no-shrink and --shrink-steps exclude each other");
  }
  const std::string model = args.flags.count("model") ? args.flags.at("model") : "kv";
  if (model == "register") {
    options.model = Model::kRegister;
  } else if (model != "kv") {
    return Usage(absl::StrCat("--model must be register or kv, got '", model, "'"));
  }
  auto result = CheckLinearizability(*history, options);
  if (!result.ok()) {
    std::fprintf(stderr, "sim: %s\n", result.status().ToString().c_str());
    return kExitUsage;
  }
  if (result->verdict == Verdict::kNotLinearizable && !options.minimize) {
    // The verdict alone: the unshrunk window would be the key's whole sub-history.
    std::printf(
        "not linearizable: %zu operations on %zu keys, %llu search steps; key %s (%zu "
        "operations) has no linearization (not shrunk: --no-shrink)\n",
        result->operations, result->keys, static_cast<unsigned long long>(result->search_steps),
        result->key.c_str(), result->key_operations);
  } else {
    std::printf("%s", result->Describe().c_str());
    if (result->verdict == Verdict::kNotLinearizable &&
        result->minimize_steps >= options.max_minimize_steps) {
      std::printf(
          "(shrinking stopped at its budget of %llu steps: the window still fails but "
          "may not be the smallest; raise --shrink-steps for a smaller one)\n",
          static_cast<unsigned long long>(options.max_minimize_steps));
    }
  }
  switch (result->verdict) {
    case Verdict::kLinearizable:
      return 0;
    case Verdict::kNotLinearizable:
      return 1;
    case Verdict::kUnknown:
      return 3;
  }
  return 1;
}

}  // namespace
}  // namespace kvstore::sim

int main(int argc, char** argv) {
  using namespace kvstore::sim;
  // A run builds and frees tens of megabytes (logs, stores, the history). glibc's defaults hand
  // big blocks back to the kernel and map fresh ones, so every seed paid again for zeroed pages
  // (12% of a campaign in page faults). Keep freed memory for reuse instead. Memory placement
  // cannot change a run: nothing in the simulation depends on addresses.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  if (argc < 2) return Usage("no command");
  const std::string command = argv[1];
  if (command == "help" || command == "--help" || command == "-h") return Help();
  const Args args = Parse(argc, argv, 2);
  if (args.flags.count("help")) return Help();
  std::vector<std::string> words(argv + 1, argv + argc);
  const std::string command_line = absl::StrCat("sim ", absl::StrJoin(words, " "));
  static const std::map<std::string, std::vector<std::string>> kFlags = {
      {"run", {"seed", "verbose", "print-trace", "history-out"}},
      {"fuzz",
       {"seed", "count", "minutes", "nodes", "duration-ms", "shard", "summary", "isolate",
        "expected-rare"}},
      {"merge", {"expected-rare"}},
      {"replay",
       {"seed", "nodes", "duration-ms", "kills", "trace-out", "print-trace", "history-out",
        "trace"}},
      {"shrink", {"seed", "nodes", "duration-ms", "kills", "out"}},
      {"check-history", {"model", "no-shrink", "shrink-steps"}},
  };
  auto allowed = kFlags.find(command);
  if (allowed == kFlags.end()) return Usage(absl::StrCat("unknown command '", command, "'"));
  for (const auto& [flag, value] : args.flags) {
    if (std::find(allowed->second.begin(), allowed->second.end(), flag) == allowed->second.end()) {
      return Usage(absl::StrCat("unknown flag --", flag, " for '", command, "'"));
    }
  }
  if (command != "run" && command != "check-history" && command != "merge" &&
      !args.positional.empty()) {
    return Usage(
        absl::StrCat("unexpected argument '", args.positional[0], "' for '", command, "'"));
  }
  if (command == "run") return Run(args);
  if (command == "fuzz") return Fuzz(args, command_line);
  if (command == "merge") return Merge(args);
  if (command == "replay") return Replay(args);
  if (command == "shrink") return Shrink(args);
  if (command == "check-history") return CheckHistoryFile(args);
  return Usage(absl::StrCat("unknown command '", command, "'"));
}
