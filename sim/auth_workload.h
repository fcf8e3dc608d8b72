#ifndef KVSTORE_SIM_AUTH_WORKLOAD_H_
#define KVSTORE_SIM_AUTH_WORKLOAD_H_

// The auth workload: a simulated cluster with auth enabled, clients acting as different users
// (puts, reads, deletes, txns with both branches and nested txns, on keys their roles may or may
// not cover), and an admin (root) granting and revoking roles and permissions at the same time,
// under crashes and partitions. The AuthChecker (auth_checker.h) judges every successful
// operation against the permissions in force at its auth revision, and at the end every member
// must hold the auth state the admin built. One seed fixes everything.

#include <cstdint>
#include <string>
#include <vector>

namespace kvstore::sim {

struct AuthWorkloadOptions {
  uint64_t seed = 1;
  int voters = 3;
  int64_t duration_ms = 4000;  // virtual time of the concurrent phase
  bool faults = true;          // crashes, restarts and isolations during it
};

struct AuthWorkloadResult {
  std::vector<std::string> violations;  // empty: passed
  uint64_t client_ops_succeeded = 0;
  uint64_t client_ops_refused = 0;
  uint64_t admin_changes = 0;
  uint64_t checked = 0;
  uint64_t unchecked = 0;
  std::string Summary() const;
};

AuthWorkloadResult RunAuthWorkload(const AuthWorkloadOptions& options);

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_AUTH_WORKLOAD_H_
