// Pins the trace hashes of a few fuzz seeds (testdata/sim/trace_hashes.txt). The simulator is
// deterministic by construction; this test makes it so across builds and over time: the file is
// written by a `-c opt` binary and CI checks it in its own (fastbuild) mode, so a difference
// between compilation modes, a dependence on pointer values or on hash-map order, fails here.
//
// A change that alters behaviour on purpose (a new fault in the fuzzer, a Raft change) changes
// the hashes too. Regenerate, read the diff, and say why in the commit:
//
//   REWRITE=1 bazel run -c opt //sim:trace_hash_test

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "sim/fuzz.h"
#include "sim/runner.h"

namespace kvstore::sim {
namespace {

constexpr char kGoldenPath[] = "testdata/sim/trace_hashes.txt";

struct Golden {
  uint64_t seed = 0;
  int nodes = 0;
  int64_t duration_ms = 0;
  std::string trace_hash;  // 16 hex digits
};

// The seeds the file pins when it is rewritten: both cluster sizes, short and long schedules,
// one that stages etcd #20418's story (fuzz.cc, MaybeStaleReadAfterPause), and regressions that
// must keep passing their checkers: 226 (5 nodes, 60 s) is a crash after a compaction whose
// segment removals survived only in part, leaving segments without entries before the log's
// first entry (store/wal_test.cc, SegmentsWithoutEntriesBeforeTheLogStart...).
const std::vector<Golden>& PinnedSeeds() {
  static const std::vector<Golden> seeds = {{1, 3, 15'000, ""},  {2, 5, 15'000, ""},
                                            {7, 3, 30'000, ""},  {42, 5, 30'000, ""},
                                            {21, 3, 15'000, ""}, {226, 5, 60'000, ""}};
  return seeds;
}

std::string TraceHash(const Golden& golden) {
  FuzzOptions options;
  options.nodes = golden.nodes;
  options.duration_ms = golden.duration_ms;
  const RunResult result = RunScenario(RandomScenario(golden.seed, options));
  EXPECT_TRUE(result.passed) << "seed " << golden.seed << " fails its checkers";
  return absl::StrFormat("%016x", result.trace_hash);
}

std::string Path() {
  if (const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY")) {
    return absl::StrCat(workspace, "/", kGoldenPath);
  }
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* name = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir == nullptr ? "." : srcdir, "/", name == nullptr ? "" : name, "/",
                      kGoldenPath);
}

std::vector<Golden> Load(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::vector<Golden> goldens;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    Golden golden;
    const bool parsed = fields.size() == 4 && absl::SimpleAtoi(fields[0], &golden.seed) &&
                        absl::SimpleAtoi(fields[1], &golden.nodes) &&
                        absl::SimpleAtoi(fields[2], &golden.duration_ms) && fields[3].size() == 16;
    EXPECT_TRUE(parsed) << path << ":" << number
                        << ": expected 'SEED NODES DURATION_MS HASH', got '" << line << "'";
    if (!parsed) continue;
    golden.trace_hash = fields[3];
    goldens.push_back(golden);
  }
  return goldens;
}

TEST(TraceHashTest, FuzzSeedsReplayToTheirPinnedHashes) {
  if (std::getenv("REWRITE") != nullptr) {
    std::string text =
        "# Trace hashes of fuzz seeds, written by `REWRITE=1 bazel run -c opt "
        "//sim:trace_hash_test`.\n# seed nodes duration_ms trace_hash\n";
    for (const Golden& golden : PinnedSeeds()) {
      absl::StrAppend(&text, golden.seed, " ", golden.nodes, " ", golden.duration_ms, " ",
                      TraceHash(golden), "\n");
    }
    std::ofstream out(Path());
    out << text;
    ASSERT_TRUE(out.good()) << "cannot write " << Path();
    std::printf("wrote %s\n", Path().c_str());
    return;
  }
  const std::vector<Golden> goldens = Load(Path());
  ASSERT_FALSE(goldens.empty()) << Path() << " pins no seed";
  for (const Golden& golden : goldens) {
    EXPECT_EQ(TraceHash(golden), golden.trace_hash)
        << "seed " << golden.seed << " on " << golden.nodes << " nodes, " << golden.duration_ms
        << " ms: the run differs from the pinned one. If the change is "
        << "meant to alter behaviour, regenerate (see the top of sim/trace_hash_test.cc); "
        << "otherwise compare traces: sim replay --seed=" << golden.seed
        << " --nodes=" << golden.nodes << " --duration-ms=" << golden.duration_ms
        << " --trace-out=t.txt in both builds";
  }
}

}  // namespace
}  // namespace kvstore::sim
