#include "sim/elle.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace kvstore::sim::elle {
namespace {

std::vector<Txn> Parse(const std::string& text) {
  absl::StatusOr<std::vector<Txn>> history = ParseHistory(text);
  EXPECT_TRUE(history.ok()) << history.status();
  return history.ok() ? *history : std::vector<Txn>();
}

CheckResult CheckText(const std::string& text, bool realtime = true) {
  CheckOptions options;
  options.realtime = realtime;
  return Check(Parse(text), options);
}

// The one finding of `result` (its anomaly), after checking there is exactly one.
Anomaly Only(const CheckResult& result) {
  EXPECT_FALSE(result.valid);
  EXPECT_EQ(result.findings.size(), 1u) << result.Summary();
  return result.findings.empty() ? Anomaly::kCycle : result.findings.front().anomaly;
}

TEST(ElleTest, SerialHistoryIsValid) {
  const CheckResult result = CheckText(R"(
    ok 0 0 10 append x 1; append y 1
    ok 1 20 30 r x 1; append x 2; r x 1 2
    ok 0 40 50 r x 1 2; r y 1; r z
  )");
  EXPECT_TRUE(result.valid) << result.Summary();
  EXPECT_EQ(result.transactions, 3u);
  EXPECT_TRUE(absl::StartsWith(result.Summary(), "valid: 3 transactions")) << result.Summary();
}

TEST(ElleTest, ConcurrentTransactionsMayOrderEitherWay) {
  // T1 and T2 overlap in time, so the reads may see T2 before T1.
  const CheckResult result = CheckText(R"(
    ok 0 0 30 append x 1
    ok 1 0 30 append x 2
    ok 2 40 50 r x 2 1
  )");
  EXPECT_TRUE(result.valid) << result.Summary();
}

TEST(ElleTest, IndeterminateTransactionsMayOrMayNotHaveHappened) {
  const CheckResult result = CheckText(R"(
    # Seen: it happened, after its invocation (after T1's read of nothing).
    info 0 0 - append x 1
    ok 1 5 8 r x
    ok 2 20 30 r x 1
    # Never seen: it did not happen (or nobody read after it).
    info 3 0 - append y 7
    ok 4 40 50 r y
    # A failed transaction nobody saw.
    fail 5 0 10 append z 3
    ok 6 20 30 r z
  )");
  EXPECT_TRUE(result.valid) << result.Summary();
  EXPECT_EQ(result.transactions, 5u);  // the ok ones and the info one seen
}

TEST(ElleTest, G0WriteCycle) {
  // T0 before T1 on x, T1 before T0 on y: the writes interleaved.
  const CheckResult result = CheckText(R"(
    ok 0 0 10 append x 1; append y 1
    ok 1 0 10 append x 2; append y 2
    ok 2 20 30 r x 1 2; r y 2 1
  )");
  ASSERT_EQ(Only(result), Anomaly::kG0);
  const Finding& finding = result.findings.front();
  EXPECT_EQ(finding.cycle.size(), 2u);
  EXPECT_EQ(finding.edges, (std::vector<EdgeKind>{EdgeKind::kWw, EdgeKind::kWw}));
  EXPECT_TRUE(absl::StartsWith(finding.description, "G0: T")) << finding.description;
  EXPECT_TRUE(absl::StrContains(finding.description, "-ww x->")) << finding.description;
  EXPECT_TRUE(absl::StrContains(finding.description, "-ww y->")) << finding.description;
  EXPECT_TRUE(absl::StrContains(finding.description, "p0 ok @0-10 [append x 1] [append y 1]"))
      << finding.description;
}

TEST(ElleTest, G1aAbortedRead) {
  const CheckResult result = CheckText(R"(
    fail 0 0 10 append x 1
    ok 1 20 30 r x 1
  )");
  ASSERT_EQ(Only(result), Anomaly::kG1a);
  EXPECT_TRUE(absl::StrContains(result.findings.front().description, "appended by failed T0"))
      << result.findings.front().description;
}

TEST(ElleTest, G1bIntermediateRead) {
  const CheckResult result = CheckText(R"(
    ok 0 0 10 append x 1; append x 2
    ok 1 0 10 r x 1
    ok 2 20 30 r x 1 2
  )");
  // Also a G-single: T1 read x before T0's second append yet after its first.
  ASSERT_EQ(result.findings.size(), 2u) << result.Summary();
  EXPECT_EQ(result.findings[0].anomaly, Anomaly::kG1b);
  EXPECT_TRUE(absl::StartsWith(result.findings[0].description, "G1b (intermediate read): T1"));
  EXPECT_EQ(result.findings[1].anomaly, Anomaly::kGSingle);
}

TEST(ElleTest, G1cCircularInformationFlow) {
  // Each saw the other's append: T0 -wr x-> T1 -wr y-> T0.
  const CheckResult result = CheckText(R"(
    ok 0 0 10 append x 1; r y 2
    ok 1 0 10 append y 2; r x 1
  )");
  ASSERT_EQ(Only(result), Anomaly::kG1c);
  EXPECT_EQ(result.findings.front().edges, (std::vector<EdgeKind>{EdgeKind::kWr, EdgeKind::kWr}));
}

TEST(ElleTest, GSingleReadSkew) {
  // T1 saw T0's append to y but not its append to x.
  const CheckResult result = CheckText(R"(
    ok 0 0 10 append x 1; append y 1
    ok 1 0 10 r x; r y 1
    ok 2 20 30 r x 1
  )");
  ASSERT_EQ(Only(result), Anomaly::kGSingle);
  const Finding& finding = result.findings.front();
  int rw = 0;
  for (EdgeKind kind : finding.edges) rw += kind == EdgeKind::kRw ? 1 : 0;
  EXPECT_EQ(rw, 1);
  EXPECT_TRUE(absl::StrContains(finding.description, "-rw x->")) << finding.description;
  EXPECT_TRUE(absl::StrContains(finding.description, "-wr y->")) << finding.description;
}

TEST(ElleTest, G2WriteSkew) {
  // Each read the key the other appended to as empty: two anti-dependencies.
  const CheckResult result = CheckText(R"(
    ok 0 0 10 r x; append y 1
    ok 1 0 10 r y; append x 2
    ok 2 20 30 r x 2; r y 1
  )");
  ASSERT_EQ(Only(result), Anomaly::kG2);
  EXPECT_EQ(result.findings.front().edges, (std::vector<EdgeKind>{EdgeKind::kRw, EdgeKind::kRw}));
}

TEST(ElleTest, StaleReadIsOnlyARealtimeAnomaly) {
  // T1 began after T0's append was acknowledged and still read nothing: serializable (T1 first),
  // not strictly serializable.
  const std::string text = R"(
    ok 0 0 10 append x 1
    ok 1 20 30 r x
    ok 2 40 50 r x 1
  )";
  const CheckResult strict = CheckText(text);
  ASSERT_EQ(Only(strict), Anomaly::kGSingleRealtime);
  std::vector<EdgeKind> edges = strict.findings.front().edges;
  std::sort(edges.begin(), edges.end());
  EXPECT_EQ(edges, (std::vector<EdgeKind>{EdgeKind::kRw, EdgeKind::kRealtime}));
  EXPECT_TRUE(CheckText(text, /*realtime=*/false).valid);
}

TEST(ElleTest, IndeterminateWriteSeenBeforeItsInvocation) {
  // T1 completed before T0 was even invoked, yet read T0's append.
  const CheckResult result = CheckText(R"(
    ok 1 0 10 r x 1
    info 0 20 - append x 1
  )");
  ASSERT_EQ(Only(result), Anomaly::kG1cRealtime);
}

TEST(ElleTest, LostUpdateBreaksTheVersionOrder) {
  // Both appended on top of [1], one append was lost: the reads disagree on the order.
  const CheckResult result = CheckText(R"(
    ok 0 0 10 append x 1
    ok 1 20 30 r x 1; append x 2
    ok 2 20 30 r x 1; append x 3
    ok 3 40 50 r x 1 2
    ok 4 40 50 r x 1 3
  )");
  ASSERT_EQ(Only(result), Anomaly::kIncompatibleOrder);
  EXPECT_TRUE(absl::StrContains(result.findings.front().description, "[1 2]"));
  EXPECT_TRUE(absl::StrContains(result.findings.front().description, "[1 3]"));
}

TEST(ElleTest, InternalInconsistency) {
  const CheckResult result = CheckText(R"(
    ok 0 0 10 append x 1
    ok 1 20 30 r x 1; append x 2; r x 1
  )");
  EXPECT_FALSE(result.valid);
  EXPECT_EQ(result.findings.front().anomaly, Anomaly::kInternal) << result.Summary();
}

TEST(ElleTest, GarbageAndDuplicateElements) {
  EXPECT_EQ(Only(CheckText("ok 0 0 10 r x 9")), Anomaly::kGarbageRead);
  EXPECT_EQ(Only(CheckText("ok 0 0 10 append x 1\nok 1 20 30 r x 1 1")),
            Anomaly::kDuplicateElements);
  EXPECT_EQ(Only(CheckText("ok 0 0 10 append x 1\nok 1 20 30 append x 1")),
            Anomaly::kDuplicateAppend);
}

TEST(ElleTest, ParseErrorsNameTheLine) {
  EXPECT_TRUE(absl::StrContains(ParseHistory("ok 0 0 10 r x\nmaybe 0 0 1 r x").status().message(),
                                "line 2: type 'maybe'"));
  EXPECT_TRUE(absl::StrContains(ParseHistory("ok 0 0 - r x").status().message(),
                                "only an info transaction has no completion"));
  EXPECT_TRUE(
      absl::StrContains(ParseHistory("ok 0 0 1 put x 1").status().message(), "micro-op 'put'"));
  EXPECT_TRUE(
      absl::StrContains(ParseHistory("ok 0 0 1 append x").status().message(), "append KEY VALUE"));
}

TEST(ElleTest, RandomStrictlySerializableHistoriesAreValid) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    RandomHistoryOptions options;
    options.seed = seed;
    options.transactions = 2000;
    options.keys = 1 + static_cast<int>(seed % 8);
    const CheckResult result = Check(RandomHistory(options));
    EXPECT_TRUE(result.valid) << "seed " << seed << ": " << result.Summary();
  }
}

// A random valid history in which one read misses the last element it saw, appended by a
// transaction that completed before the reader was invoked: a stale read, which the real-time
// edge (writer before reader) and the anti-dependency (reader before writer) close into a cycle.
TEST(ElleTest, RandomHistoriesWithAStaleReadAreCaught) {
  int planted = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    RandomHistoryOptions options;
    options.seed = seed;
    options.transactions = 2000;
    options.keys = 4;
    std::vector<Txn> history = RandomHistory(options);
    // Who appended what, to find a read whose last element's writer ended before the reader.
    std::map<std::pair<std::string, int64_t>, size_t> writers;
    for (size_t t = 0; t < history.size(); ++t) {
      for (const MicroOp& op : history[t].ops) {
        if (op.kind == MicroOp::Kind::kAppend) writers[{op.key, op.value}] = t;
      }
    }
    bool done = false;
    for (size_t t = history.size(); t-- > 0 && !done;) {
      Txn& reader = history[t];
      if (reader.type != TxnType::kOk || reader.ops.size() != 1 ||
          !reader.ops[0].read.has_value() || reader.ops[0].read->empty()) {
        continue;
      }
      const Txn& writer = history[writers.at({reader.ops[0].key, reader.ops[0].read->back()})];
      if (writer.type != TxnType::kOk || writer.complete_ms >= reader.invoke_ms) continue;
      reader.ops[0].read->pop_back();
      done = true;
    }
    if (!done) continue;
    ++planted;
    const CheckResult result = Check(history);
    EXPECT_FALSE(result.valid) << "seed " << seed;
  }
  EXPECT_GE(planted, 15);
}

}  // namespace
}  // namespace kvstore::sim::elle
