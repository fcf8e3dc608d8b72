#ifndef KVSTORE_NODE_TESTING_CLUSTER_H_
#define KVSTORE_NODE_TESTING_CLUSTER_H_

// The real-process tests' cluster: kvnode members on loopback ports the kernel picks, each with
// its data directory under TEST_TMPDIR, started, killed with SIGKILL and restarted by the test,
// and optionally with every peer link through a LinkProxy (link_proxy.h) so the test can cut,
// delay or break each direction of each link. Tests that use it list //node:kvnode as data.
//
// Members are numbered from 0 in the order they were added; member i is named "n<i+1>". The
// founding members share one --initial-cluster; a member added later (AddMember) joins with
// --initial-cluster-state=existing and the founding members plus itself as its --initial-cluster,
// once the test has added it through the Cluster API (kvctl member add's request).
//
// Proxied, member i listens for peers on its own port and advertises the proxy's port for it
// (--initial-advertise-peer-urls and --initial-cluster), so every peer connection to it goes
// through the proxy, which learns the member's process at every start.

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/crash_process.h"
#include "node/http_testing.h"
#include "node/testing/link_proxy.h"

namespace kvstore::node::testing {

struct ClusterOptions {
  int members = 3;
  // The data directories' folder under TEST_TMPDIR, and the cluster token.
  std::string name = "cluster";
  int64_t heartbeat_ms = 50;
  int64_t election_ms = 500;
  // Peer traffic through a LinkProxy (Cluster::proxy()).
  bool proxied = false;
  uint64_t proxy_seed = 1;
  // Every member's --quota-backend-bytes; 0: kvnode's default.
  uint64_t quota_backend_bytes = 0;
};

struct ClusterMember {
  std::string name;
  uint16_t client_port = 0;
  uint16_t listen_peer_port = 0;  // where the member listens for peers
  uint16_t peer_port = 0;         // what it advertises (the proxy's port when proxied)
  std::string dir;
  bool joins_existing = false;
  std::string initial_cluster;  // its --initial-cluster
  std::unique_ptr<crash::ChildProcess> process;

  std::string peer_url() const;  // the advertised one
  std::string endpoint() const;  // "127.0.0.1:<client port>"
  bool running() const { return process != nullptr; }
};

class Cluster {
 public:
  // Picks the founding members' ports and directories and starts none of them.
  static absl::StatusOr<std::unique_ptr<Cluster>> Create(ClusterOptions options);
  // Kills and reaps every member still running, then stops the proxy.
  ~Cluster();

  // Starts every founding member.
  absl::Status StartAll();
  // Starts member i with its flags (Args(i)); a restart reuses its data directory.
  absl::Status Start(size_t i);
  // Starts member i with `args` instead (a misconfigured member).
  absl::Status StartWithArgs(size_t i, std::vector<std::string> args);
  // kill -9, then reaps it (within 5 s).
  void Kill(size_t i);
  // A member to be added: ports, directory, proxy destination; not started, not yet known to the
  // cluster. Returns its index.
  absl::StatusOr<size_t> AddMember();
  // Member i's flags, as Start uses them.
  std::vector<std::string> Args(size_t i) const;

  size_t size() const { return members_.size(); }
  ClusterMember& member(size_t i) { return members_[i]; }
  const ClusterMember& member(size_t i) const { return members_[i]; }
  // Every member's client endpoint, in member order.
  std::vector<std::string> Endpoints() const;
  // The founding members' --initial-cluster.
  const std::string& initial_cluster() const { return initial_cluster_; }
  const ClusterOptions& options() const { return options_; }
  // The proxy of a proxied cluster; null otherwise.
  LinkProxy* proxy() { return proxy_.get(); }

 private:
  explicit Cluster(ClusterOptions options) : options_(std::move(options)) {}
  absl::Status NewMember(const std::string& root);

  ClusterOptions options_;
  std::string root_;
  std::unique_ptr<LinkProxy> proxy_;
  std::vector<ClusterMember> members_;
  std::string initial_cluster_;
};

}  // namespace kvstore::node::testing

#endif  // KVSTORE_NODE_TESTING_CLUSTER_H_
