#include "sim/linearizability.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "core/raft/rand.h"
#include "gtest/gtest.h"
#include "sim/history.h"
#include "sim/random_history.h"

namespace kvstore::sim {
namespace {

History MustParse(const std::string& text) {
  absl::StatusOr<History> history = ParseHistory(text);
  EXPECT_TRUE(history.ok()) << history.status();
  return history.ok() ? *std::move(history) : History();
}

CheckResult MustCheck(const History& history, const CheckOptions& options = {}) {
  absl::StatusOr<CheckResult> result = CheckLinearizability(history, options);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *std::move(result) : CheckResult();
}

CheckResult MustCheck(const std::string& text, const CheckOptions& options = {}) {
  return MustCheck(MustParse(text), options);
}

// Checks under both models where the register model applies (one key, no append or delete).
Verdict VerdictOf(const std::string& text) {
  const History history = MustParse(text);
  const CheckResult kv = MustCheck(history);
  bool register_applies = true;
  for (const Operation& operation : history.operations()) {
    register_applies &= operation.function != Function::kAppend &&
                        operation.function != Function::kDelete &&
                        operation.key == history.operations()[0].key;
  }
  if (register_applies) {
    CheckOptions options;
    options.model = Model::kRegister;
    EXPECT_EQ(MustCheck(history, options).verdict, kv.verdict) << text;
  }
  return kv.verdict;
}

// ---------------------------------------------------------------------------------------------
// Linearizable histories.

TEST(Linearizable, EmptyHistory) {
  const CheckResult result = MustCheck("");
  EXPECT_EQ(result.verdict, Verdict::kLinearizable);
  EXPECT_EQ(result.Describe(), "linearizable: 0 operations on 0 keys, 0 search steps\n");
}

TEST(Linearizable, Sequential) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke read x nil
    0 ok read x nil
    0 invoke write x 1
    0 ok write x 1
    1 invoke read x nil
    1 ok read x 1
    1 invoke write x 2
    1 ok write x 2
    0 invoke read x nil
    0 ok read x 2
  )"),
            Verdict::kLinearizable);
}

TEST(Linearizable, OverlappingWritesAndReadsSeeingEither) {
  // Writes of 1 and 2 overlap; reads overlapping both may see either, in either order, as long
  // as a later read does not go back.
  for (const char* first : {"1", "2"}) {
    EXPECT_EQ(VerdictOf(absl::StrCat(R"(
      0 invoke write x 1
      1 invoke write x 2
      2 invoke read x nil
      3 invoke read x nil
      2 ok read x )",
                                     first, R"(
      0 ok write x 1
      1 ok write x 2
      3 ok read x 2
    )")),
              Verdict::kLinearizable)
        << first;
  }
  // A read overlapping a write may still see the value before it.
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 ok write x 1
    0 invoke write x 2
    1 invoke read x nil
    1 ok read x 1
    0 ok write x 2
  )"),
            Verdict::kLinearizable);
}

TEST(Linearizable, CasSuccessesAndFailures) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke cas x nil->1
    0 ok cas x nil->1
    0 invoke cas x 1->2
    1 invoke cas x 1->3
    0 ok cas x 1->2
    1 fail cas x 1->3
    1 invoke read x nil
    1 ok read x 2
    1 invoke cas x 2->nil
    1 ok cas x 2->nil
    0 invoke read x nil
    0 ok read x nil
  )"),
            Verdict::kLinearizable);
}

TEST(Linearizable, Appends) {
  // Concurrent appends land in either order; a read sees a consistent concatenation.
  for (const char* seen : {"ab", "ba"}) {
    EXPECT_EQ(VerdictOf(absl::StrCat(R"(
      0 invoke append x a
      1 invoke append x b
      0 ok append x a
      1 ok append x b
      2 invoke read x nil
      2 ok read x )",
                                     seen, "\n")),
              Verdict::kLinearizable)
        << seen;
  }
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x v
    0 ok write x v
    0 invoke append x 1
    0 ok append x 1
    1 invoke append x 2
    2 invoke read x nil
    2 ok read x v1
    1 ok append x 2
    2 invoke read x nil
    2 ok read x v12
  )"),
            Verdict::kLinearizable);
}

TEST(Linearizable, Deletes) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 ok write x 1
    0 invoke delete x nil
    1 invoke read x nil
    1 ok read x 1
    0 ok delete x nil
    1 invoke read x nil
    1 ok read x nil
    1 invoke append x a
    1 ok append x a
    0 invoke read x nil
    0 ok read x a
  )"),
            Verdict::kLinearizable);
}

TEST(Linearizable, ADeleteOfAnAbsentKeyStillMattersLater) {
  // The second delete changes nothing where the search first tries it (x is absent), but it is
  // no no-op: ordered after the concurrent write it explains the read. (A search that treated
  // "changed nothing here" as "changes nothing anywhere" once called this a violation.)
  EXPECT_EQ(VerdictOf(R"(
    0 invoke delete x nil
    0 ok delete x nil
    0 invoke delete x nil
    1 invoke write x 1
    1 ok write x 1
    0 ok delete x nil
    1 invoke read x nil
    1 ok read x nil
  )"),
            Verdict::kLinearizable);
}

TEST(Linearizable, UnknownWriteSeenLater) {
  // The write timed out, yet took effect: a read long after the timeout sees it.
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 ok write x 1
    1 invoke write x 2
    1 info write x 2
    0 invoke read x nil
    0 ok read x 1
    0 invoke read x nil
    0 ok read x 2
  )"),
            Verdict::kLinearizable);
  // Same with an invocation that never completes.
  EXPECT_EQ(VerdictOf(R"(
    1 invoke cas x nil->2
    0 invoke read x nil
    0 ok read x nil
    0 invoke read x nil
    0 ok read x 2
  )"),
            Verdict::kLinearizable);
}

TEST(Linearizable, UnknownWriteNeverSeen) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 ok write x 1
    1 invoke write x 2
    1 info write x 2
    2 invoke cas x 7->8
    0 invoke read x nil
    0 ok read x 1
    0 invoke read x nil
    0 ok read x 1
  )"),
            Verdict::kLinearizable);
}

TEST(Linearizable, FailedOperationsAreDropped) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 fail write x 1
    0 invoke read x nil
    0 ok read x nil
    1 invoke read x nil
    1 fail read x nil
  )"),
            Verdict::kLinearizable);
}

// A refused cas saw a value other than its expected one at some point of its window: here a
// concurrent write of 3 explains it (and the write of 1 before it completed after the cas began,
// so the refusal may also come before it, at nil).
TEST(Linearizable, RefusedCasSawAConcurrentValue) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 ok write x 1
    1 invoke cas x 1->2
    0 invoke write x 3
    0 ok write x 3
    1 refused cas x 1->2
    1 invoke read x nil
    1 ok read x 3
  )"),
            Verdict::kLinearizable);
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    1 invoke cas x 1->2
    0 ok write x 1
    1 refused cas x 1->2
  )"),
            Verdict::kLinearizable);
  // Refused while the key was absent: it expected a value, or (nil) expected absence.
  EXPECT_EQ(VerdictOf(R"(
    1 invoke cas x 1->2
    1 refused cas x 1->2
    0 invoke write x 1
    0 ok write x 1
    1 invoke cas x nil->2
    1 refused cas x nil->2
  )"),
            Verdict::kLinearizable);
}

// ---------------------------------------------------------------------------------------------
// Violations.

// The value was 1 during the whole of the cas's window, so it cannot have been refused for a
// value other than 1. As `fail` (did not happen, nothing observed) the same history is fine.
TEST(NotLinearizable, RefusedCasWhileTheValueCertainlyMatched) {
  const std::string history = R"(
    @1 0 invoke write x 1
    @2 0 ok write x 1
    @3 1 invoke cas x 1->2
    @4 0 invoke read x nil
    @5 0 ok read x 1
    @6 1 %s cas x 1->2
    @7 0 invoke write x 3
    @8 0 ok write x 3
  )";
  EXPECT_EQ(VerdictOf(absl::StrReplaceAll(history, {{"%s", "fail"}})), Verdict::kLinearizable);
  const CheckResult result = MustCheck(absl::StrReplaceAll(history, {{"%s", "refused"}}));
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(result.key, "x");
  // The read is not needed to prove it, and nothing after the refusal is.
  EXPECT_EQ(FormatHistory(result.window),
            "@1 0 invoke write x 1\n"
            "@2 0 ok write x 1\n"
            "@3 1 invoke cas x 1->2\n"
            "@6 1 refused cas x 1->2\n");
  CheckOptions options;
  options.model = Model::kRegister;
  EXPECT_EQ(MustCheck(absl::StrReplaceAll(history, {{"%s", "refused"}}), options).verdict,
            Verdict::kNotLinearizable);
  // A cas expecting absence is refused only while the key is present.
  EXPECT_EQ(VerdictOf(R"(
    0 invoke cas x nil->2
    0 refused cas x nil->2
  )"),
            Verdict::kNotLinearizable);
}

// A refused cas observes the value a write with unknown outcome left (it differs from the
// expected one), so that write must not be pruned as unobserved: without it the refusal has no
// explanation, with it (taking effect before the refusal) the history is fine.
TEST(Linearizable, RefusedCasExplainedOnlyByAnUnknownWrite) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 ok write x 1
    2 invoke write x 5
    1 invoke cas x 1->2
    1 refused cas x 1->2
    2 info write x 5
  )"),
            Verdict::kLinearizable);
  // And when the unknown write is of the expected value itself, it explains nothing.
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 ok write x 1
    2 invoke write x 1
    1 invoke cas x 1->2
    1 refused cas x 1->2
    2 info write x 1
  )"),
            Verdict::kNotLinearizable);
}

TEST(NotLinearizable, StaleReadAfterCompletedWrite) {
  const CheckResult result = MustCheck(R"(
    @1 0 invoke write x 1
    @2 0 ok write x 1
    @3 1 invoke read x nil
    @4 1 ok read x 1
    @5 0 invoke write x 2
    @6 0 ok write x 2
    @7 1 invoke read x nil
    @8 1 ok read x 1       # stale: the write of 2 completed before this read began
    @9 0 invoke read x nil
    @10 0 ok read x 2
  )");
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(result.key, "x");
  EXPECT_EQ(result.key_operations, 5u);
  // The first read and the last read do not matter; the two writes and the stale read do.
  EXPECT_EQ(FormatHistory(result.window),
            "@1 0 invoke write x 1\n"
            "@2 0 ok write x 1\n"
            "@5 0 invoke write x 2\n"
            "@6 0 ok write x 2\n"
            "@7 1 invoke read x nil\n"
            "@8 1 ok read x 1\n");
  EXPECT_EQ(result.Describe(),
            absl::StrCat("not linearizable: 5 operations on 1 key, ", result.search_steps,
                         " search steps (", result.minimize_steps,
                         " more to shrink)\n"
                         "key x (5 operations) has no linearization, and already these 3 have "
                         "none (an invocation without completion has an unknown outcome):\n"
                         "  @1 0 invoke write x 1\n"
                         "  @2 0 ok write x 1\n"
                         "  @5 0 invoke write x 2\n"
                         "  @6 0 ok write x 2\n"
                         "  @7 1 invoke read x nil\n"
                         "  @8 1 ok read x 1\n"));
  CheckOptions options;
  options.model = Model::kRegister;
  EXPECT_EQ(MustCheck(FormatHistory(result.window), options).verdict, Verdict::kNotLinearizable);
}

TEST(NotLinearizable, ReadOfAValueNeverWritten) {
  const CheckResult result = MustCheck(R"(
    0 invoke write x 1
    1 invoke read x nil
    0 ok write x 1
    1 ok read x 3
  )");
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(FormatHistory(result.window),
            "1 invoke read x nil\n"
            "1 ok read x 3\n");
}

TEST(NotLinearizable, LostUpdateViaCas) {
  // Both clients read 0 and both cas succeed from 0: one update is lost.
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 0
    0 ok write x 0
    1 invoke read x nil
    2 invoke read x nil
    1 ok read x 0
    2 ok read x 0
    1 invoke cas x 0->1
    2 invoke cas x 0->2
    1 ok cas x 0->1
    2 ok cas x 0->2
  )"),
            Verdict::kNotLinearizable);
}

TEST(NotLinearizable, ReadGoesBackInTime) {
  // Two sequential reads, both overlapping the write of 2, see new then old.
  const CheckResult result = MustCheck(R"(
    0 invoke write x 1
    0 ok write x 1
    0 invoke write x 2
    1 invoke read x nil
    1 ok read x 2
    1 invoke read x nil
    1 ok read x 1
    0 ok write x 2
  )");
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  // Cut at the second read: the write of 2 is still outstanding there.
  EXPECT_EQ(FormatHistory(result.window),
            "0 invoke write x 1\n"
            "0 ok write x 1\n"
            "0 invoke write x 2\n"
            "1 invoke read x nil\n"
            "1 ok read x 2\n"
            "1 invoke read x nil\n"
            "1 ok read x 1\n");
}

TEST(NotLinearizable, UnknownWriteSeenThenOldValueAgain) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 ok write x 1
    1 invoke write x 2
    1 info write x 2
    0 invoke read x nil
    0 ok read x 2
    2 invoke read x nil
    2 ok read x 1
  )"),
            Verdict::kNotLinearizable);
}

TEST(NotLinearizable, AppendsOutOfOrder) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke append x a
    0 ok append x a
    0 invoke append x b
    0 ok append x b
    1 invoke read x nil
    1 ok read x ba
  )"),
            Verdict::kNotLinearizable);
}

TEST(NotLinearizable, ReadAfterDeleteSeesTheValue) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 ok write x 1
    0 invoke delete x nil
    0 ok delete x nil
    1 invoke read x nil
    1 ok read x 1
  )"),
            Verdict::kNotLinearizable);
}

TEST(NotLinearizable, ReadOfAFailedWrite) {
  EXPECT_EQ(VerdictOf(R"(
    0 invoke write x 1
    0 fail write x 1
    1 invoke read x nil
    1 ok read x 1
  )"),
            Verdict::kNotLinearizable);
}

// ---------------------------------------------------------------------------------------------
// Partitioning per key, models, budgets.

TEST(PerKey, EachKeyIsItsOwnRegister) {
  // Interleaved keys, each linearizable on its own.
  const CheckResult fine = MustCheck(R"(
    0 invoke write x 1
    1 invoke write y 2
    0 ok write x 1
    1 ok write y 2
    0 invoke read y nil
    1 invoke read x nil
    0 ok read y 2
    1 ok read x 1
  )");
  EXPECT_EQ(fine.verdict, Verdict::kLinearizable);
  EXPECT_EQ(fine.keys, 2u);
  // A read of y cannot see a write of x: the violation is on y, and the window holds only y.
  const CheckResult bad = MustCheck(R"(
    0 invoke write a 1
    0 ok write a 1
    0 invoke write x 1
    0 ok write x 1
    1 invoke read y nil
    1 ok read y 1
    1 invoke read z nil
    1 ok read z nil
  )");
  EXPECT_EQ(bad.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(bad.key, "y");
  EXPECT_EQ(bad.key_operations, 1u);
  EXPECT_EQ(FormatHistory(bad.window), "1 invoke read y nil\n1 ok read y 1\n");
}

TEST(Models, RegisterRejectsWhatItCannotExpress) {
  CheckOptions options;
  options.model = Model::kRegister;
  absl::StatusOr<CheckResult> result =
      CheckLinearizability(MustParse("0 invoke append x a\n0 ok append x a\n"), options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().message(),
            "the register model has no append (process 0 on key x); use the kv model");
  result = CheckLinearizability(
      MustParse("0 invoke write x 1\n0 ok write x 1\n0 invoke write y 1\n"), options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().message(),
            "the register model holds one value but the history names 2 keys (first x, last y); "
            "use the kv model");
}

TEST(Budget, RunningOutOfStepsIsUnknown) {
  const std::string text = R"(
    0 invoke write x 1
    1 invoke write x 2
    2 invoke read x nil
    0 ok write x 1
    1 ok write x 2
    2 ok read x 1
  )";
  const CheckResult full = MustCheck(text);
  ASSERT_EQ(full.verdict, Verdict::kLinearizable);
  ASSERT_GT(full.search_steps, 2u);
  CheckOptions options;
  options.max_search_steps = full.search_steps - 1;
  const CheckResult cut = MustCheck(text, options);
  EXPECT_EQ(cut.verdict, Verdict::kUnknown);
  EXPECT_EQ(cut.key, "x");
  EXPECT_EQ(cut.search_steps, full.search_steps - 1);
  EXPECT_EQ(cut.Describe(),
            absl::StrCat("unknown: 3 operations on 1 key, ", full.search_steps - 1,
                         " search steps; search step budget of ", full.search_steps - 1,
                         " exhausted on key x (3 operations)\n"));
  options.max_search_steps = full.search_steps;
  EXPECT_EQ(MustCheck(text, options).verdict, Verdict::kLinearizable);
}

TEST(Budget, RunningOutOfMemoIsUnknownButLaterKeysAreStillChecked) {
  CheckOptions options;
  options.max_memo_bytes = 1;
  const CheckResult result = MustCheck(R"(
    0 invoke write a 1
    0 ok write a 1
    0 invoke read b nil
    0 ok read b 1
  )",
                                       options);
  EXPECT_EQ(result.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(result.key, "b");
  const CheckResult unknown = MustCheck("0 invoke write a 1\n0 ok write a 1\n", options);
  EXPECT_EQ(unknown.verdict, Verdict::kUnknown);
  EXPECT_EQ(unknown.reason, "memo table budget of 1 bytes exhausted");
}

TEST(Minimize, CanBeTurnedOff) {
  const std::string text = R"(
    0 invoke read x nil
    0 ok read x nil
    0 invoke read x nil
    0 ok read x 5
  )";
  CheckOptions options;
  options.minimize = false;
  const CheckResult whole = MustCheck(text, options);
  EXPECT_EQ(whole.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(whole.window, MustParse(text));
  EXPECT_EQ(whole.minimize_steps, 0u);
  EXPECT_EQ(MustCheck(text).window.events().size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Generated histories: linearizable by construction, and broken on purpose.

// A copy of `history` in which one ok read returns a value nothing ever wrote.
History WithBogusRead(const History& history, size_t nth_read, std::string* bogus_line) {
  size_t reads_seen = 0;
  History broken;
  for (const Event& original : history.events()) {
    Event event = original;
    if (event.type == EventType::kOk && event.function == Function::kRead &&
        reads_seen++ == nth_read) {
      event.value = "bogus";
      *bogus_line = FormatEvent(event);
    }
    EXPECT_TRUE(broken.Append(event).ok());
  }
  return broken;
}

TEST(Generated, ManySeedsWithHighConcurrencyAreLinearizable) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    RandomHistoryOptions options;
    options.seed = seed;
    options.operations = 400;
    options.keys = 2;
    options.info_percent = 10;
    options.fail_percent = 5;
    const History history = GenerateRandomHistory(options);
    const CheckResult result = MustCheck(history);
    EXPECT_EQ(result.verdict, Verdict::kLinearizable) << "seed " << seed << "\n"
                                                      << result.Describe();
  }
}

TEST(Generated, ABogusReadIsFoundAndShrunk) {
  RandomHistoryOptions options;
  options.operations = 3'000;
  options.keys = 20;
  options.info_percent = 5;
  for (int append_percent : {0, 5}) {
    options.append_percent = append_percent;
    const History history = GenerateRandomHistory(options);
    std::string bogus_line;
    const History broken = WithBogusRead(history, 700, &bogus_line);
    const CheckResult result = MustCheck(broken);
    ASSERT_EQ(result.verdict, Verdict::kNotLinearizable);
    const std::string window = FormatHistory(result.window);
    EXPECT_TRUE(absl::StrContains(window, bogus_line)) << window;
    EXPECT_EQ(MustCheck(result.window).verdict, Verdict::kNotLinearizable);
    // A read of a value never written needs nothing but itself to fail.
    EXPECT_EQ(result.window.operations().size(), 1u) << result.Describe();
    std::printf("bogus read, appends %d%%: window of %zu operations (key has %zu)\n%s",
                append_percent, result.window.operations().size(), result.key_operations,
                result.Describe().c_str());
  }
}

// The definition, by brute force, for small histories: is there an order of the known (ok)
// operations and some of the unknown ones that respects real time and is a legal run of the kv
// model? An operation may go next unless a known operation not yet placed completed before it was
// invoked.
bool BruteForceLinearizable(const History& history) {
  struct Op {
    Function function;
    bool known;
    bool refused;  // a cas that saw a value other than `value` and changed nothing
    Value value, new_value, read_value;
    size_t invoke, complete;
  };
  absl::btree_map<std::string, std::vector<Op>> by_key;
  for (const Operation& operation : history.operations()) {
    if (operation.outcome == Outcome::kFail) continue;
    const bool refused = operation.outcome == Outcome::kRefused;
    const bool known = operation.outcome == Outcome::kOk || refused;
    if (!known && operation.function == Function::kRead) continue;
    by_key[operation.key].push_back(Op{operation.function, known, refused, operation.value,
                                       operation.new_value, operation.read_value,
                                       operation.invoke_event,
                                       known ? *operation.complete_event : SIZE_MAX});
  }
  for (const auto& entry : by_key) {
    // A reference, not a structured binding: clang 14 (the sanitized build's compiler) refuses
    // a lambda's capture of a structured binding, which C++20 allows and gcc accepts.
    const std::vector<Op>& ops = entry.second;
    std::vector<bool> placed(ops.size(), false);
    std::function<bool(const Value&, size_t)> extend = [&](const Value& state,
                                                           size_t known_left) -> bool {
      if (known_left == 0) return true;
      for (size_t p = 0; p < ops.size(); ++p) {
        if (placed[p]) continue;
        bool blocked = false;
        for (size_t q = 0; q < ops.size(); ++q) {
          blocked |= !placed[q] && ops[q].known && ops[q].complete < ops[p].invoke;
        }
        if (blocked) continue;
        const Op& op = ops[p];
        Value next = state;
        switch (op.function) {
          case Function::kRead:
            if (op.read_value != state) continue;
            break;
          case Function::kWrite:
            next = op.value;
            break;
          case Function::kCas:
            if (op.refused) {
              if (op.value == state) continue;
              break;
            }
            if (op.value != state) continue;
            next = op.new_value;
            break;
          case Function::kAppend:
            next = state.value_or("") + *op.value;
            break;
          case Function::kDelete:
            next.reset();
            break;
        }
        placed[p] = true;
        const bool found = extend(next, known_left - (op.known ? 1 : 0));
        placed[p] = false;
        if (found) return true;
      }
      return false;
    };
    size_t known = 0;
    for (const Op& op : ops) known += op.known ? 1 : 0;
    if (!extend(std::nullopt, known)) return false;
  }
  return true;
}

// A small random history, linearizable or not. With few values operations collide on them; with
// fresh ones every write, cas and append sets a value of its own (the case the checker prunes
// hardest), and reads mostly return what a store applying mutations at invocation would hold.
enum class Values { kFew, kFresh };

History RandomSmallHistory(uint64_t seed, Values values = Values::kFew) {
  raft::SplitMix64 random(seed);
  const char* const kValues[] = {"1", "2", "a", "b"};
  const char* const kReads[] = {"nil", "1", "2", "a", "ab", "ba", "1a", "2b"};
  int fresh = 0;
  std::vector<std::string> tokens;            // fresh values handed out so far
  absl::btree_map<std::string, Value> truth;  // by key
  const auto some_value = [&]() -> Value {
    if (values == Values::kFew) return Value(kValues[random.Uniform(4)]);
    tokens.push_back(absl::StrCat("t", ++fresh, "."));
    return tokens.back();
  };
  const auto some_read = [&](const std::string& key) -> Value {
    if (values == Values::kFew) {
      const std::string read = kReads[random.Uniform(8)];
      return read == "nil" ? Value() : Value(read);
    }
    const uint64_t roll = random.Uniform(100);
    if (roll < 60 || tokens.empty()) return truth[key];
    const std::string& token = tokens[random.Uniform(tokens.size())];
    if (roll < 75) return Value();
    if (roll < 90) return token;
    return absl::StrCat(truth[key].value_or(""), token);
  };
  const int keys = random.Percent(25) ? 2 : 1;
  History history;
  absl::btree_map<int64_t, Event> outstanding;
  absl::btree_set<int64_t> stuck;  // invoked and never to complete: the process is gone
  for (int operations = 0; stuck.size() < 3 && (operations < 7 || outstanding.size() > 0);) {
    const int64_t process = static_cast<int64_t>(random.Uniform(3));
    if (stuck.contains(process)) continue;
    auto pending = outstanding.find(process);
    Event event;
    if (pending == outstanding.end()) {
      if (operations == 7) continue;
      ++operations;
      event.process = process;
      event.key = keys == 2 && random.Percent(50) ? "y" : "x";
      event.function = static_cast<Function>(random.Uniform(5));
      Value& state = truth[event.key];
      if (event.function == Function::kWrite || event.function == Function::kAppend) {
        event.value = some_value();
        state = event.function == Function::kWrite ? *event.value
                                                   : absl::StrCat(state.value_or(""), *event.value);
      } else if (event.function == Function::kCas) {
        if (values == Values::kFresh && random.Percent(60)) {
          event.value = state;
        } else if (random.Percent(75)) {
          event.value = values == Values::kFew ? some_value() : some_read(event.key);
        }
        if (random.Percent(85)) event.new_value = some_value();
        if (event.value == state) state = event.new_value;
      } else if (event.function == Function::kDelete) {
        state.reset();
      }
      outstanding.emplace(process, event);
    } else {
      event = pending->second;
      outstanding.erase(pending);
      const uint64_t roll = random.Uniform(100);
      if (roll < 8) {
        stuck.insert(process);
        continue;
      }
      event.type = roll < 78 ? EventType::kOk : (roll < 89 ? EventType::kFail : EventType::kInfo);
      // Half the failed cas operations were refused for a value that differed (an observation).
      if (event.function == Function::kCas && event.type == EventType::kFail && roll % 2 == 0) {
        event.type = EventType::kRefused;
      }
      if (event.function == Function::kRead && event.type == EventType::kOk) {
        event.value = some_read(event.key);
      }
    }
    EXPECT_TRUE(history.Append(event).ok()) << FormatEvent(event);
  }
  return history;
}

// 3,000 histories per value mode by default; ORACLE_HISTORIES=N checks N (seeds 1..N) instead,
// for a change to the search's prunings:
//   bazel test -c opt //sim:linearizability_test --test_env=ORACLE_HISTORIES=60000
uint64_t OracleHistories() {
  const char* count = std::getenv("ORACLE_HISTORIES");
  return count == nullptr ? 3'000 : std::strtoull(count, nullptr, 10);
}

void AgreeWithBruteForce(Values values) {
  int violations = 0;
  const uint64_t count = OracleHistories();
  for (uint64_t seed = 1; seed <= count; ++seed) {
    const History history = RandomSmallHistory(seed, values);
    const CheckResult result = MustCheck(history);
    const bool linearizable = BruteForceLinearizable(history);
    ASSERT_EQ(result.verdict, linearizable ? Verdict::kLinearizable : Verdict::kNotLinearizable)
        << "seed " << seed << "\n"
        << FormatHistory(history) << result.Describe();
    if (linearizable) continue;
    ++violations;
    // The window is a real witness: it has no linearization by itself either.
    ASSERT_FALSE(BruteForceLinearizable(result.window))
        << "seed " << seed << "\n"
        << FormatHistory(history) << result.Describe();
  }
  // Both verdicts are well represented.
  EXPECT_GT(violations, static_cast<int64_t>(count / 10));
  EXPECT_LT(violations, static_cast<int64_t>(count - count / 10));
  std::printf("%d of %llu small random histories are not linearizable\n", violations,
              static_cast<unsigned long long>(count));
}

TEST(Oracle, AgreesWithBruteForceOnSmallRandomHistories) { AgreeWithBruteForce(Values::kFew); }

TEST(Oracle, AgreesWithBruteForceWhenEveryMutationSetsAValueOfItsOwn) {
  AgreeWithBruteForce(Values::kFresh);
}

TEST(Generated, TenThousandOperationsSixteenClientsWithinBudget) {
  RandomHistoryOptions generator;  // the defaults: 10,000 operations, 16 clients, 100 keys
  ASSERT_EQ(generator.operations, 10'000u);
  ASSERT_EQ(generator.clients, 16);
  // ~10,000 steps over 100 keys, ~16,000 over 10, ~280,000 on one key (all 16 clients on it); the
  // budgets leave room without hiding a regression in the search (before the stranded-observer
  // pruning one key took 15 million).
  for (const auto& [keys, budget] : {std::pair{100, 100'000}, {10, 100'000}, {1, 1'000'000}}) {
    generator.keys = keys;
    const History history = GenerateRandomHistory(generator);
    CheckOptions options;
    options.max_search_steps = budget;
    const CheckResult result = MustCheck(history, options);
    EXPECT_EQ(result.verdict, Verdict::kLinearizable) << result.Describe();
    EXPECT_EQ(result.keys, static_cast<size_t>(keys));
    std::printf("10,000 operations, 16 clients, %d keys: %llu search steps\n", keys,
                static_cast<unsigned long long>(result.search_steps));
    // Deterministic: the same history takes the same steps.
    EXPECT_EQ(MustCheck(history, options).search_steps, result.search_steps);
  }
}

// Fuzz histories whose busiest key has dozens of unknown-outcome writes beside cas operations
// refused for values long overwritten or never written: the refusals must not keep every unknown
// write in the search (they took 5 to 48 million steps; now a few hundred), and where they do
// (seed 2487: refused values that unknown writes could leave), unobserved values must be one
// state and configurations with an extra unknown operation given up (15.3 million; now ~16,500).
TEST(Regression, FuzzHistoriesWithManyRefusalsAndUnknownWrites) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  ASSERT_NE(srcdir, nullptr);
  ASSERT_NE(workspace, nullptr);
  const std::filesystem::path directory =
      std::filesystem::path(srcdir) / workspace / "testdata" / "sim" / "histories";
  int checked = 0;
  for (const auto& file : std::filesystem::directory_iterator(directory)) {
    std::ifstream in(file.path());
    std::stringstream text;
    text << in.rdbuf();
    CheckOptions options;
    options.max_search_steps = 100'000;
    const CheckResult result = MustCheck(text.str(), options);
    EXPECT_EQ(result.verdict, Verdict::kLinearizable) << file.path() << "\n" << result.Describe();
    std::printf("%s: %llu search steps\n", file.path().filename().c_str(),
                static_cast<unsigned long long>(result.search_steps));
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

}  // namespace
}  // namespace kvstore::sim
