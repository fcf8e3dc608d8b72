#include "net/concurrency/testing/cluster_fixture.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"

namespace kvstore::net::concurrency::testing {

KvnodeCluster* ClusterTest::cluster_ = nullptr;

void ClusterTest::SetUpTestSuite() {
  const ::testing::TestSuite* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
  ASSERT_NE(suite, nullptr);
  // A parameterized suite's name holds its instantiation's prefix ("Isolations/BankTest").
  std::string name = suite->name();
  std::replace(name.begin(), name.end(), '/', '-');
  absl::StatusOr<std::unique_ptr<KvnodeCluster>> started =
      KvnodeCluster::Start({.members = kMembers, .name = name});
  ASSERT_TRUE(started.ok()) << started.status();
  cluster_ = started->release();
}

void ClusterTest::TearDownTestSuite() {
  delete cluster_;
  cluster_ = nullptr;
}

void ClusterTest::SetUp() { ASSERT_NE(cluster_, nullptr) << "the suite's cluster did not start"; }

std::string ClusterTest::TestKeyPrefix() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(info->test_suite_name(), "/", info->name(), "/");
}

}  // namespace kvstore::net::concurrency::testing
