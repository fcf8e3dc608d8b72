#include "sim/history.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "sim/random_history.h"

namespace kvstore::sim {
namespace {

History MustParse(const std::string& text) {
  absl::StatusOr<History> history = ParseHistory(text);
  EXPECT_TRUE(history.ok()) << history.status();
  return history.ok() ? *std::move(history) : History();
}

// The example of history.h, verbatim.
constexpr char kHeaderExample[] = R"(
  # two clients race on key x; client 1's read sees client 0's write
  @10 0 invoke write x 1
  @11 1 invoke read  x nil
  @12 0 ok     write x 1
  @14 1 ok     read  x 1
  @15 0 invoke cas   x 1->2
  @19 0 ok     cas   x 1->2
  @20 0 invoke cas   x 1->3
  @22 0 refused cas  x 1->3     # x was not 1 (it was 2): nothing changed
  @23 1 invoke append x ab
  @24 0 invoke cas   x 2->4
  @25 0 fail   cas   x 2->4     # rejected (no leader): nothing changed, nothing observed
  @28 1 info   append x ab      # timed out: may or may not have happened
)";

TEST(History, ParsesTheHeaderExample) {
  const History history = MustParse(kHeaderExample);
  ASSERT_EQ(history.events().size(), 12u);
  const Event& read = history.events()[3];
  EXPECT_EQ(read.time_ticks, 14);
  EXPECT_EQ(read.process, 1);
  EXPECT_EQ(read.type, EventType::kOk);
  EXPECT_EQ(read.function, Function::kRead);
  EXPECT_EQ(read.key, "x");
  EXPECT_EQ(read.value, "1");
  const Event& cas = history.events()[4];
  EXPECT_EQ(cas.value, "1");
  EXPECT_EQ(cas.new_value, "2");

  EXPECT_EQ(history.events()[7].type, EventType::kRefused);

  ASSERT_EQ(history.operations().size(), 6u);
  EXPECT_EQ(history.operations()[0].outcome, Outcome::kOk);
  EXPECT_EQ(history.operations()[1].outcome, Outcome::kOk);
  EXPECT_EQ(history.operations()[1].read_value, "1");
  EXPECT_EQ(history.operations()[1].invoke_event, 1u);
  EXPECT_EQ(history.operations()[1].complete_event, 3u);
  EXPECT_EQ(history.operations()[2].outcome, Outcome::kOk);
  EXPECT_EQ(history.operations()[3].outcome, Outcome::kRefused);
  EXPECT_EQ(history.operations()[3].value, "1");
  EXPECT_EQ(history.operations()[3].new_value, "3");
  EXPECT_EQ(history.operations()[4].outcome, Outcome::kUnknown);
  EXPECT_EQ(history.operations()[4].function, Function::kAppend);
  EXPECT_EQ(history.operations()[5].outcome, Outcome::kFail);
}

TEST(History, PrintsCanonicalLinesThatParseBack) {
  const History history = MustParse(kHeaderExample);
  EXPECT_EQ(FormatHistory(history),
            "@10 0 invoke write x 1\n"
            "@11 1 invoke read x nil\n"
            "@12 0 ok write x 1\n"
            "@14 1 ok read x 1\n"
            "@15 0 invoke cas x 1->2\n"
            "@19 0 ok cas x 1->2\n"
            "@20 0 invoke cas x 1->3\n"
            "@22 0 refused cas x 1->3\n"
            "@23 1 invoke append x ab\n"
            "@24 0 invoke cas x 2->4\n"
            "@25 0 fail cas x 2->4\n"
            "@28 1 info append x ab\n");
  EXPECT_EQ(MustParse(FormatHistory(history)), history);
}

TEST(History, AliasesNilAndOptionalTimes) {
  const History history = MustParse(
      "3 invoke put k v\n"
      "@7 4 invoke get k nil\n"
      "3 ok put k v\n"
      "4 ok get k nil\n"
      "5 invoke cas k nil->w\n"
      "6 invoke delete k nil\n");
  EXPECT_EQ(FormatHistory(history),
            "3 invoke write k v\n"
            "@7 4 invoke read k nil\n"
            "3 ok write k v\n"
            "4 ok read k nil\n"
            "5 invoke cas k nil->w\n"
            "6 invoke delete k nil\n");
  EXPECT_FALSE(history.events()[0].time_ticks.has_value());
  EXPECT_FALSE(history.operations()[1].read_value.has_value());
  EXPECT_FALSE(history.operations()[2].value.has_value());
  EXPECT_EQ(history.operations()[2].new_value, "w");
  // Never completed: outcome unknown.
  EXPECT_EQ(history.operations()[3].outcome, Outcome::kUnknown);
  EXPECT_FALSE(history.operations()[3].complete_event.has_value());
  EXPECT_EQ(MustParse(FormatHistory(history)), history);
}

TEST(History, FailAndInfoCompletionsMayOmitTheValue) {
  const History history = MustParse(
      "0 invoke write x 1\n"
      "0 info write x nil\n"
      "0 invoke cas x 1->2\n"
      "0 fail cas x nil->nil\n");
  EXPECT_EQ(history.operations()[0].outcome, Outcome::kUnknown);
  EXPECT_EQ(history.operations()[1].outcome, Outcome::kFail);
  EXPECT_EQ(MustParse(FormatHistory(history)), history);
}

TEST(History, AProcessMayInvokeAgainAfterInfo) {
  const History history = MustParse(
      "0 invoke write x 1\n"
      "0 info write x 1\n"
      "0 invoke read x nil\n"
      "0 ok read x 1\n");
  EXPECT_EQ(history.operations().size(), 2u);
}

TEST(History, EmptyAndCommentOnlyTextsAreEmptyHistories) {
  EXPECT_TRUE(MustParse("").events().empty());
  EXPECT_TRUE(MustParse("\n  \n# nothing\n\t# still nothing\n").events().empty());
}

TEST(History, GeneratedHistoriesRoundTrip) {
  RandomHistoryOptions options;
  options.operations = 2'000;
  options.keys = 10;
  options.info_percent = 10;
  options.fail_percent = 5;
  const History history = GenerateRandomHistory(options);
  EXPECT_EQ(history.operations().size(), 2'000u);
  const std::string text = FormatHistory(history);
  const History parsed = MustParse(text);
  EXPECT_EQ(parsed, history);
  EXPECT_EQ(FormatHistory(parsed), text);
  // Deterministic: the same seed gives the same history, another seed another one.
  EXPECT_EQ(FormatHistory(GenerateRandomHistory(options)), text);
  options.seed = 2;
  EXPECT_NE(FormatHistory(GenerateRandomHistory(options)), text);
}

struct BadHistory {
  const char* text;
  const char* error;
};

TEST(History, ParseErrorsNameTheLineAndTheProblem) {
  const BadHistory cases[] = {
      {"0 invoke write x", "line 1: expected 5 fields"},
      {"0 invoke write x 1 2", "line 1: expected 5 fields"},
      {"@3", "line 1: expected 5 fields"},
      {"0 done write x 1", "line 1: bad type `done`: want invoke, ok, fail, refused or info"},
      {"0 invoke write x 1\n0 refused write x 1",
       "line 2: refused completion of a write on process 0: only a cas is refused (use fail)"},
      {"0 invoke read x nil\n0 refused read x nil", "line 2: refused completion of a read"},
      // What a refused cas saw the value differ from is its expected value: never left out.
      {"0 invoke cas x 1->2\n0 refused cas x nil->nil",
       "line 2: completion value `nil->nil` differs from the invocation's `1->2`"},
      {"0 invoke inc x 1", "line 1: bad function `inc`"},
      {"p invoke write x 1", "line 1: bad process `p`: want a non-negative integer"},
      {"-1 invoke write x 1", "line 1: bad process `-1`"},
      {"@x 0 invoke write x 1", "line 1: bad time `x`"},
      {"@-2 0 invoke write x 1", "line 1: bad time `-2`"},
      {"@5 0 invoke write x 1\n@4 0 ok write x 1", "line 2: time @4 goes back from @5"},
      {"0 ok write x 1",
       "line 1: completion without invocation: process 0 has no operation outstanding"},
      {"0 invoke write x 1\n1 ok write x 1",
       "line 2: completion without invocation: process 1 has no operation outstanding"},
      {"0 invoke write x 1\n\n# comment\n0 invoke read x nil",
       "line 4: two invocations outstanding on process 0: it invokes read x while its write x "
       "has not completed"},
      {"0 invoke write x 1\n0 ok read x 1",
       "line 2: completion read x of process 0 does not match its outstanding write x"},
      {"0 invoke write x 1\n0 ok write y 1", "line 2: completion write y of process 0"},
      {"0 invoke write x 1\n0 ok write x 2",
       "line 2: completion value `2` differs from the invocation's `1`"},
      {"0 invoke cas x 1->2\n0 ok cas x 1->3",
       "line 2: completion value `1->3` differs from the invocation's `1->2`"},
      {"0 invoke read x nil\n0 info read x 1", "line 2: completion value `1` differs"},
      {"0 invoke cas x 1", "line 1: cas value `1` is not of the form <old>-><new>"},
      {"0 invoke write x nil", "line 1: write needs a value, got nil (use delete)"},
      {"0 invoke append x nil", "line 1: append needs a value, got nil"},
      {"0 invoke read x 1", "line 1: read invocation takes value nil, got `1`"},
      {"0 invoke delete x 1", "line 1: delete invocation takes value nil, got `1`"},
  };
  for (const BadHistory& bad : cases) {
    const absl::StatusOr<History> history = ParseHistory(bad.text);
    ASSERT_FALSE(history.ok()) << bad.text;
    EXPECT_EQ(history.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(history.status().message(), bad.error))
        << "text:\n"
        << bad.text << "\nerror: " << history.status().message() << "\nwant: " << bad.error;
  }
}

TEST(History, AppendRejectsEventsThatCannotBeWritten) {
  History history;
  Event event;
  event.function = Function::kWrite;
  event.key = "x";
  event.value = "a b";
  EXPECT_EQ(history.Append(event).message(), "value `a b` contains whitespace");
  event.value = "nil";
  EXPECT_EQ(history.Append(event).message(),
            "value is the string \"nil\", which the format reserves for absent");
  event.value = "#1";
  EXPECT_EQ(history.Append(event).message(), "value `#1` starts with '#' (a comment)");
  event.value = "";
  EXPECT_EQ(history.Append(event).message(), "value is empty");
  event.value = "1";
  event.new_value = "2";
  EXPECT_EQ(history.Append(event).message(), "write takes no new value (only cas does)");
  event.new_value.reset();
  event.key = "";
  EXPECT_EQ(history.Append(event).message(), "key is empty");
  event.key = "x";
  event.function = Function::kCas;
  event.value = "a->b";
  EXPECT_EQ(history.Append(event).message(), "cas expected value `a->b` contains \"->\"");
  event.function = Function::kWrite;
  event.value = "1";
  event.process = -3;
  EXPECT_EQ(history.Append(event).message(), "bad process -3: want a non-negative integer");
  EXPECT_TRUE(history.events().empty());
  event.process = 0;
  EXPECT_TRUE(history.Append(event).ok());
  EXPECT_EQ(FormatEvent(history.events()[0]), "0 invoke write x 1");
}

}  // namespace
}  // namespace kvstore::sim
