#ifndef KVSTORE_NET_CONCURRENCY_TESTING_KVNODE_CLUSTER_H_
#define KVSTORE_NET_CONCURRENCY_TESTING_KVNODE_CLUSTER_H_

// Real kvnode processes on loopback ports picked by the kernel, for tests of client-side
// libraries (this package, tools/failover): the real-process harness (node/testing/cluster.h),
// started and waited for until it serves a put. The tests that depend on it list //node:kvnode
// as data. A member still running when the cluster goes is killed and reaped.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/testing/cluster.h"

namespace kvstore::net::concurrency::testing {

struct KvnodeClusterOptions {
  int members = 1;
  std::string name = "cluster";  // the data directories' folder under TEST_TMPDIR
  int64_t heartbeat_ms = 50;
  int64_t election_ms = 500;
};

class KvnodeCluster {
 public:
  // Starts the members and waits (at most `ready_timeout_ms`) until a put succeeds. Callable
  // from a thread that has its event loop (the wait runs on a thread of its own).
  static absl::StatusOr<std::unique_ptr<KvnodeCluster>> Start(KvnodeClusterOptions options,
                                                              int64_t ready_timeout_ms = 20000);

  // "127.0.0.1:port" of each member's client URL.
  const std::vector<std::string>& endpoints() const { return endpoints_; }
  std::string EndpointsFlag() const;  // comma-separated

 private:
  KvnodeCluster() = default;
  absl::Status WaitUntilServing(int64_t timeout_ms);
  absl::Status PutUntilServing(int64_t timeout_ms);

  std::unique_ptr<node::testing::Cluster> cluster_;
  std::vector<std::string> endpoints_;
};

}  // namespace kvstore::net::concurrency::testing

#endif  // KVSTORE_NET_CONCURRENCY_TESTING_KVNODE_CLUSTER_H_
