// The pieces of kvctl that must match etcdctl byte for byte: its flag syntax, its tables, Go's
// duration and quoting, humanized sizes, and the txn syntax. Expected texts are etcdctl 3.4.23's
// own output.

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tools/ctl/flags.h"
#include "tools/ctl/format.h"
#include "tools/ctl/txn_syntax.h"

namespace kvstore::ctl {
namespace {

TEST(RenderTable, MatchesEtcdctlMemberList) {
  const std::string want =
      "+------------------+---------+---------+------------------------+------------------------+"
      "------------+\n"
      "|        ID        | STATUS  |  NAME   |       PEER ADDRS       |      CLIENT ADDRS      |"
      " IS LEARNER |\n"
      "+------------------+---------+---------+------------------------+------------------------+"
      "------------+\n"
      "| b5179d13d0285315 | started | default | http://127.0.0.1:24380 | http://127.0.0.1:24379 |"
      "      false |\n"
      "+------------------+---------+---------+------------------------+------------------------+"
      "------------+\n";
  EXPECT_EQ(RenderTable({"ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"},
                        {{"b5179d13d0285315", "started", "default", "http://127.0.0.1:24380",
                          "http://127.0.0.1:24379", "false"}}),
            want);
}

TEST(RenderTable, CentresHeadersWithTheOddSpaceOnTheRight) {
  EXPECT_EQ(RenderTable({"endpoint", "health"}, {{"127.0.0.1:24379", "true"}}),
            "+-----------------+--------+\n"
            "|    ENDPOINT     | HEALTH |\n"
            "+-----------------+--------+\n"
            "| 127.0.0.1:24379 |   true |\n"
            "+-----------------+--------+\n");
}

TEST(GoDuration, MatchesGo) {
  EXPECT_EQ(GoDuration(absl::ZeroDuration()), "0s");
  EXPECT_EQ(GoDuration(absl::Nanoseconds(850)), "850ns");
  EXPECT_EQ(GoDuration(absl::Nanoseconds(1500)), "1.5µs");
  EXPECT_EQ(GoDuration(absl::Nanoseconds(5336456)), "5.336456ms");
  EXPECT_EQ(GoDuration(absl::Milliseconds(7008) + absl::Nanoseconds(53031)), "7.008053031s");
  EXPECT_EQ(GoDuration(absl::Seconds(90)), "1m30s");
  EXPECT_EQ(GoDuration(absl::Hours(2)), "2h0m0s");
  EXPECT_EQ(GoDuration(absl::Milliseconds(-1500)), "-1.5s");
}

TEST(HumanizeBytes, MatchesGoHumanize) {
  EXPECT_EQ(HumanizeBytes(9), "9 B");
  EXPECT_EQ(HumanizeBytes(20480), "20 kB");
  EXPECT_EQ(HumanizeBytes(77824), "78 kB");
  EXPECT_EQ(HumanizeBytes(1234567), "1.2 MB");
  EXPECT_EQ(HumanizeBytes(uint64_t{2} << 30), "2.1 GB");
}

TEST(GoQuote, EscapesLikeGo) {
  EXPECT_EQ(GoQuote("n2=http://a:1"), "\"n2=http://a:1\"");
  EXPECT_EQ(GoQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\x01\"");
  // As Go's %q: printable UTF-8 is kept, a byte that is not UTF-8 is \xNN, DEL and C1 escaped.
  EXPECT_EQ(GoQuote("caf\xc3\xa9 \xe2\x82\xac"), "\"caf\xc3\xa9 \xe2\x82\xac\"");
  EXPECT_EQ(GoQuote("\xff\x7f\xc2\x85\t"), "\"\\xff\\x7f\\u0085\\t\"");
}

TEST(Json, BuildsInOrderWithBase64Bytes) {
  EXPECT_EQ(JsonObject().Bytes("key", "foo").Int("version", 2).Bool("more", false).Build(),
            "{\"key\":\"Zm9v\",\"version\":2,\"more\":false}");
  EXPECT_EQ(JsonArray({"1", JsonString("a\"")}), "[1,\"a\\\"\"]");
}

TEST(ParseCompare, ReadsEveryTarget) {
  absl::StatusOr<mvcc::Compare> mod = ParseCompare("mod(\"key1\") > \"0\"");
  ASSERT_TRUE(mod.ok()) << mod.status();
  EXPECT_EQ(mod->key, "key1");
  EXPECT_EQ(mod->target, mvcc::Compare::Target::kMod);
  EXPECT_EQ(mod->result, mvcc::Compare::Result::kGreater);
  EXPECT_EQ(mod->number, 0);

  absl::StatusOr<mvcc::Compare> value = ParseCompare("val(\"k\\n\") != `raw \"v\"`");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->key, "k\n");
  EXPECT_EQ(value->target, mvcc::Compare::Target::kValue);
  EXPECT_EQ(value->result, mvcc::Compare::Result::kNotEqual);
  EXPECT_EQ(value->value, "raw \"v\"");

  absl::StatusOr<mvcc::Compare> lease = ParseCompare("lease(\"k\") = \"694d77aa9e38260f\"");
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->number, 0x694d77aa9e38260f);

  absl::StatusOr<mvcc::Compare> version = ParseCompare("ver(\"k\") < \"3\"");
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(version->target, mvcc::Compare::Target::kVersion);
  absl::StatusOr<mvcc::Compare> create = ParseCompare("c(\"k\") = \"5\"");
  ASSERT_TRUE(create.ok());
  EXPECT_EQ(create->target, mvcc::Compare::Target::kCreate);
}

TEST(ParseCompare, RefusesMalformedLines) {
  EXPECT_EQ(ParseCompare("bad").status().message(), "malformed comparison: bad");
  EXPECT_FALSE(ParseCompare("mod(\"k\") ~ \"1\"").ok());
  EXPECT_FALSE(ParseCompare("size(\"k\") = \"1\"").ok());
  EXPECT_EQ(ParseCompare("mod(\"k\") = \"x\"").status().message(),
            "invalid txn compare request: mod(\"k\") = \"x\"");
  EXPECT_FALSE(ParseCompare("mod(\"k) = \"1\"").ok());
}

TEST(Argify, SplitsLikeEtcdctl) {
  absl::StatusOr<std::vector<std::string>> args =
      Argify("put  \"a key\" 'it''s' --lease=12 \"tab\\tbed\"");
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(*args, (std::vector<std::string>{"put", "a key", "it", "s", "--lease=12", "tab\tbed"}));
  EXPECT_FALSE(Argify("put \"open").ok());
}

FlagSet TestFlags() {
  FlagSet f;
  f.AddString("write-out", 'w', "simple", "format", /*global=*/true);
  f.AddBool("prefix", 0, "prefix");
  f.AddInt("rev", 0, 0, "revision");
  f.AddDuration("dial-timeout", absl::Seconds(2), "dial", /*global=*/true);
  return f;
}

TEST(FlagSet, ParsesPflagSyntax) {
  FlagSet f = TestFlags();
  std::vector<std::string> positional;
  ASSERT_TRUE(f.Parse({"a", "-w", "json", "--prefix", "--rev=3", "b", "--dial-timeout", "1m30s",
                       "--", "--not-a-flag"},
                      &positional)
                  .ok());
  EXPECT_EQ(positional, (std::vector<std::string>{"a", "b", "--not-a-flag"}));
  EXPECT_EQ(f.GetString("write-out"), "json");
  EXPECT_TRUE(f.GetBool("prefix"));
  EXPECT_EQ(f.GetInt("rev"), 3);
  EXPECT_EQ(f.GetDuration("dial-timeout"), absl::Seconds(90));
  EXPECT_TRUE(f.Changed("rev"));
}

TEST(FlagSet, ABooleanNeverTakesTheNextArgument) {
  FlagSet f = TestFlags();
  std::vector<std::string> positional;
  ASSERT_TRUE(f.Parse({"--prefix", "false"}, &positional).ok());
  EXPECT_TRUE(f.GetBool("prefix"));
  EXPECT_EQ(positional, (std::vector<std::string>{"false"}));
  ASSERT_TRUE(f.Parse({"--prefix=false"}, &positional).ok());
  EXPECT_FALSE(f.GetBool("prefix"));
}

TEST(FlagSet, RefusesWhatPflagRefuses) {
  std::vector<std::string> positional;
  FlagSet f = TestFlags();
  EXPECT_EQ(f.Parse({"--bogus"}, &positional).message(), "unknown flag: --bogus");
  EXPECT_EQ(f.Parse({"-c"}, &positional).message(), "unknown shorthand flag: 'c' in -c");
  EXPECT_EQ(f.Parse({"--rev"}, &positional).message(), "flag needs an argument: --rev");
  EXPECT_EQ(f.Parse({"--rev", "x"}, &positional).message(),
            "invalid argument \"x\" for \"--rev\" flag");
  EXPECT_FALSE(f.Parse({"--dial-timeout=5"}, &positional).ok());
}

TEST(FlagSet, StopsAtACommandToRun) {
  FlagSet f = TestFlags();
  std::vector<std::string> positional;
  ASSERT_TRUE(f.Parse({"--rev", "1", "name", "sh", "-c", "--prefix"}, &positional, 1).ok());
  EXPECT_EQ(positional, (std::vector<std::string>{"name", "sh", "-c", "--prefix"}));
  EXPECT_FALSE(f.GetBool("prefix"));
}

TEST(FlagSet, TakesUnsetFlagsFromTheEnvironment) {
  FlagSet f = TestFlags();
  std::vector<std::string> positional;
  ASSERT_TRUE(f.Parse({"-w", "table"}, &positional).ok());
  ASSERT_TRUE(f.ApplyEnvironment("ETCDCTL", {"ETCDCTL_WRITE_OUT=json", "ETCDCTL_DIAL_TIMEOUT=3s",
                                             "ETCDCTL_API=3"})
                  .ok());
  EXPECT_EQ(f.GetString("write-out"), "table");  // the command line wins
  EXPECT_EQ(f.GetDuration("dial-timeout"), absl::Seconds(3));
  EXPECT_FALSE(f.ApplyEnvironment("ETCDCTL", {"ETCDCTL_REV=x"}).ok());
}

}  // namespace
}  // namespace kvstore::ctl
