#ifndef KVSTORE_NET_CONCURRENCY_TESTING_CLUSTER_FIXTURE_H_
#define KVSTORE_NET_CONCURRENCY_TESTING_CLUSTER_FIXTURE_H_

// The fixture of this package's tests: one real three-member kvnode cluster shared by the tests
// of a suite, started before its first test and stopped after its last (a start costs about a
// second; the tests keep to keys of their own). Tests reach it as `cluster_`; a suite whose
// cluster did not start fails each test at SetUp instead of running against nothing.

#include <string>

#include "gtest/gtest.h"
#include "net/concurrency/testing/kvnode_cluster.h"

namespace kvstore::net::concurrency::testing {

class ClusterTest : public ::testing::Test {
 protected:
  static constexpr int kMembers = 3;

  // Names the data directories after the suite (TEST_TMPDIR/<suite>).
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  // A subclass overriding it calls it first and returns on HasFatalFailure().
  void SetUp() override;

  // "<suite>/<test>/": a key prefix no other test of the binary uses.
  static std::string TestKeyPrefix();

  static KvnodeCluster* cluster_;
};

}  // namespace kvstore::net::concurrency::testing

#endif  // KVSTORE_NET_CONCURRENCY_TESTING_CLUSTER_FIXTURE_H_
