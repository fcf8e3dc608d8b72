// The auth workload over seeds: no client operation succeeds without a permission valid at its
// auth revision, and every member ends with the auth state the admin built. A failing seed
// names itself; replay it alone with --gtest_filter and AUTH_SEED=N.

#include "sim/auth_workload.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "sim/auth_checker.h"

namespace kvstore::sim {
namespace {

constexpr uint64_t kSeeds = 30;
// CI's sanitized pass (tools/fuzz.sh --test sets KVSTORE_SANITIZED) runs the first 8 seeds, both
// cluster sizes, with every check: ASan and UBSan make each seed several times slower, and the
// plain pass runs all 30.
constexpr uint64_t kSanitizedSeeds = 8;

TEST(AuthWorkloadTest, NoOperationSucceedsWithoutPermission) {
  uint64_t first = 1, last = std::getenv("KVSTORE_SANITIZED") != nullptr ? kSanitizedSeeds : kSeeds;
  if (const char* seed = std::getenv("AUTH_SEED"); seed != nullptr) {
    first = last = std::stoull(seed);
  }
  uint64_t checked = 0;
  for (uint64_t seed = first; seed <= last; ++seed) {
    AuthWorkloadOptions options;
    options.seed = seed;
    options.voters = seed % 2 == 1 ? 3 : 5;
    AuthWorkloadResult result = RunAuthWorkload(options);
    checked += result.checked;
    ASSERT_TRUE(result.violations.empty())
        << "seed " << seed << " (" << options.voters << " nodes): " << result.Summary() << "\n"
        << absl::StrJoin(result.violations, "\n") << "\nreplay: AUTH_SEED=" << seed
        << " bazel test //sim:auth_workload_test";
    std::printf("seed %llu: %s\n", static_cast<unsigned long long>(seed), result.Summary().c_str());
  }
  // The workload exercises the checks: most operations are judged.
  EXPECT_GT(checked, 20u * (last - first + 1));
}

// The checker is not vacuous: a success the model forbids is reported, in a txn's failure
// branch and nested txns too; a revision whose state is unknown is not judged.
TEST(AuthCheckerTest, ReportsSuccessesTheModelForbids) {
  AuthChecker checker;
  AuthModel model;
  model.roles["r1"] = {auth::Permission{auth::PermissionType::kRead, "a/", "a0"},
                       auth::Permission{auth::PermissionType::kWrite, "a/1", ""}};
  model.user_roles["alice"] = {"r1"};
  checker.Record(5, model);
  server::Response ok;
  ok.header.auth_revision = 5;
  server::Request get;
  get.type = server::RequestType::kRange;
  get.range.key = "a/";
  get.range.range_end = "a0";
  checker.CheckSucceeded("alice", get, ok);
  server::Request put;
  put.type = server::RequestType::kPut;
  put.put.key = "a/1";
  checker.CheckSucceeded("alice", put, ok);
  EXPECT_TRUE(checker.violations().empty());
  put.put.key = "a/2";
  checker.CheckSucceeded("alice", put, ok);
  ASSERT_EQ(checker.violations().size(), 1u);
  EXPECT_EQ(checker.violations()[0],
            "alice's request succeeded at auth revision 5 without permission: put of key a/2");
  server::Request txn;
  txn.type = server::RequestType::kTxn;
  mvcc::RequestOp op;
  op.kind = mvcc::RequestOp::Kind::kPut;
  op.put.key = "a/1";
  txn.txn.success.push_back(op);
  auto nested = std::make_shared<mvcc::TxnRequest>();
  op.put.key = "b/0";
  nested->failure.push_back(op);
  mvcc::RequestOp nested_op;
  nested_op.kind = mvcc::RequestOp::Kind::kTxn;
  nested_op.txn = nested;
  txn.txn.failure.push_back(nested_op);
  checker.CheckSucceeded("alice", txn, ok);
  ASSERT_EQ(checker.violations().size(), 2u);
  EXPECT_NE(checker.violations()[1].find("failure nested txn: failure put of key b/0"),
            std::string::npos);
  checker.MarkUnknown();
  ok.header.auth_revision = 6;
  checker.CheckSucceeded("alice", put, ok);
  EXPECT_EQ(checker.violations().size(), 2u);
  EXPECT_EQ(checker.unchecked(), 1u);
}

}  // namespace
}  // namespace kvstore::sim
