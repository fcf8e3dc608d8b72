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
//
// With ClusterOptions::tls, every client and peer URL is https:// and requires a client
// certificate (kvnode's --client-cert-auth and --peer-client-cert-auth), with certificates made
// at test time by the `openssl` command into the cluster's directory (<root>/certs), never
// committed: a CA, one certificate per member (CN its name, SAN IP:127.0.0.1) that it serves
// clients and peers with and presents to its peers, and a client certificate (CN root) with
// which the harness's own clients connect (client_tls()). A proxied TLS cluster works as a plain
// one: the proxy forwards bytes, and the member's certificate names the proxy's address too.
//
// Ports: each member's ports are picked below the kernel's ephemeral range and reserved for the
// cluster's lifetime against other harnesses (ReservePort), so that a port is never taken
// between its pick and kvnode's bind (issue 13's "Address already in use" flake).

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "net/tls.h"
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
  // https:// client and peer URLs with client certificates required (see above).
  bool tls = false;
};

struct ClusterMember {
  std::string name;
  uint16_t client_port = 0;
  uint16_t listen_peer_port = 0;  // where the member listens for peers
  uint16_t peer_port = 0;         // what it advertises (the proxy's port when proxied)
  std::string dir;
  bool joins_existing = false;
  std::string initial_cluster;  // its --initial-cluster
  bool tls = false;
  std::string cert_file;  // TLS: its certificate and key (client and peer)
  std::string key_file;
  std::unique_ptr<crash::ChildProcess> process;

  std::string peer_url() const;  // the advertised one
  std::string endpoint() const;  // "127.0.0.1:<client port>"
  // "http://127.0.0.1:<client port>", https:// in TLS mode.
  std::string client_url() const;
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

  // TLS mode: the context of the harness's clients (net::ClientOptions::tls), whose certificate
  // (CN root) the members accept and which trusts the cluster's CA; null without TLS.
  net::TlsContext* client_tls() const { return client_tls_.get(); }
  // TLS mode: the files of that client (kvctl's --cacert, --cert, --key).
  std::string ca_file() const;
  std::string client_cert_file() const;
  std::string client_key_file() const;

  // A loopback port no other process holds, reserved for this cluster's lifetime (a test that
  // moves a member to a new port takes it here): ReserveLoopbackPort (http_testing.h), whose
  // reservation the cluster releases when it is destroyed.
  absl::StatusOr<uint16_t> ReservePort();

 private:
  explicit Cluster(ClusterOptions options) : options_(std::move(options)) {}
  absl::Status NewMember(const std::string& root);
  absl::Status MakeCertificates();
  std::string certs_dir() const { return root_ + "/certs"; }

  ClusterOptions options_;
  std::string root_;
  std::unique_ptr<net::TlsContext> client_tls_;
  std::vector<int> reservations_;  // the abstract Unix sockets of ReservePort
  std::unique_ptr<LinkProxy> proxy_;
  std::vector<ClusterMember> members_;
  std::string initial_cluster_;
};

}  // namespace kvstore::node::testing

#endif  // KVSTORE_NODE_TESTING_CLUSTER_H_
