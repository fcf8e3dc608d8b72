#include "node/testing/cluster.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvstore::node::testing {

std::string ClusterMember::peer_url() const { return absl::StrCat("http://127.0.0.1:", peer_port); }

std::string ClusterMember::endpoint() const { return absl::StrCat("127.0.0.1:", client_port); }

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Create(ClusterOptions options) {
  std::unique_ptr<Cluster> cluster(new Cluster(std::move(options)));
  cluster->root_ = crash::FreshTestDir(cluster->options_.name);
  if (cluster->options_.proxied) {
    auto proxy = LinkProxy::Start(cluster->options_.proxy_seed);
    if (!proxy.ok()) return proxy.status();
    cluster->proxy_ = std::move(*proxy);
  }
  for (int i = 0; i < cluster->options_.members; ++i) {
    if (absl::Status s = cluster->NewMember(cluster->root_); !s.ok()) return s;
  }
  std::vector<std::string> founding;
  for (const ClusterMember& m : cluster->members_) {
    founding.push_back(absl::StrCat(m.name, "=", m.peer_url()));
  }
  cluster->initial_cluster_ = absl::StrJoin(founding, ",");
  for (ClusterMember& m : cluster->members_) m.initial_cluster = cluster->initial_cluster_;
  return cluster;
}

absl::Status Cluster::NewMember(const std::string& root) {
  ClusterMember m;
  const size_t index = members_.size();
  m.name = absl::StrCat("n", index + 1);
  m.client_port = FreeLoopbackPort();
  m.listen_peer_port = FreeLoopbackPort();
  if (m.client_port == 0 || m.listen_peer_port == 0) return absl::UnavailableError("no free port");
  m.peer_port = m.listen_peer_port;
  if (proxy_ != nullptr) {
    auto port = proxy_->AddDestination(static_cast<int>(index), m.listen_peer_port);
    if (!port.ok()) return port.status();
    m.peer_port = *port;
  }
  m.dir = absl::StrCat(root, "/", m.name);
  members_.push_back(std::move(m));
  return absl::OkStatus();
}

Cluster::~Cluster() {
  for (size_t i = 0; i < members_.size(); ++i) Kill(i);
  proxy_.reset();
}

absl::Status Cluster::StartAll() {
  for (size_t i = 0; i < members_.size(); ++i) {
    if (absl::Status s = Start(i); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// The members' --log-level: "error", or KVSTORE_TEST_LOG_LEVEL (say "info", to see why a member
// did what it did when a test fails).
static std::string LogLevel() {
  const char* level = std::getenv("KVSTORE_TEST_LOG_LEVEL");
  return level == nullptr || *level == '\0' ? "error" : level;
}

std::vector<std::string> Cluster::Args(size_t i) const {
  const ClusterMember& m = members_[i];
  std::vector<std::string> args = {"--name",
                                   m.name,
                                   "--data-dir",
                                   m.dir,
                                   "--listen-client-urls",
                                   absl::StrCat("http://127.0.0.1:", m.client_port),
                                   "--listen-peer-urls",
                                   absl::StrCat("http://127.0.0.1:", m.listen_peer_port),
                                   "--initial-advertise-peer-urls",
                                   m.peer_url(),
                                   "--initial-cluster",
                                   m.initial_cluster,
                                   "--initial-cluster-token",
                                   options_.name,
                                   "--heartbeat-interval",
                                   absl::StrCat(options_.heartbeat_ms),
                                   "--election-timeout",
                                   absl::StrCat(options_.election_ms),
                                   "--log-level",
                                   LogLevel()};
  if (options_.quota_backend_bytes > 0) {
    args.push_back("--quota-backend-bytes");
    args.push_back(absl::StrCat(options_.quota_backend_bytes));
  }
  if (m.joins_existing) {
    args.push_back("--initial-cluster-state");
    args.push_back("existing");
  }
  return args;
}

absl::Status Cluster::Start(size_t i) { return StartWithArgs(i, Args(i)); }

absl::Status Cluster::StartWithArgs(size_t i, std::vector<std::string> args) {
  ClusterMember& m = members_[i];
  if (m.process != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(m.name, " is running"));
  }
  crash::SpawnOptions spawn;
  spawn.args = std::move(args);
  auto child = crash::ChildProcess::Spawn(crash::RunfilePath("node/kvnode"), spawn);
  if (!child.ok()) return child.status();
  m.process = std::move(*child);
  if (proxy_ != nullptr) proxy_->SetProcess(static_cast<int>(i), m.process->pid());
  return absl::OkStatus();
}

void Cluster::Kill(size_t i) {
  ClusterMember& m = members_[i];
  if (m.process == nullptr) return;
  m.process->Kill();
  (void)m.process->Wait(crash::Clock::now() + std::chrono::seconds(5));
  m.process.reset();
  if (proxy_ != nullptr) proxy_->SetProcess(static_cast<int>(i), 0);
}

absl::StatusOr<size_t> Cluster::AddMember() {
  if (absl::Status s = NewMember(root_); !s.ok()) return s;
  ClusterMember& m = members_.back();
  m.joins_existing = true;
  m.initial_cluster = absl::StrCat(initial_cluster_, ",", m.name, "=", m.peer_url());
  return members_.size() - 1;
}

std::vector<std::string> Cluster::Endpoints() const {
  std::vector<std::string> endpoints;
  for (const ClusterMember& m : members_) endpoints.push_back(m.endpoint());
  return endpoints;
}

}  // namespace kvstore::node::testing
