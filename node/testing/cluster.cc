#include "node/testing/cluster.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kvstore::node::testing {
namespace {

// Runs `script` with /bin/sh to its end (within 30 s); an error says how it failed and what it
// wrote on stderr.
absl::Status RunShell(const std::string& script) {
  crash::SpawnOptions spawn;
  spawn.args = {"-c", script};
  auto child = crash::ChildProcess::Spawn("/bin/sh", spawn);
  if (!child.ok()) return child.status();
  auto exit = (*child)->Wait(crash::Clock::now() + std::chrono::seconds(30));
  if (!exit.ok()) return exit.status();
  if (!exit->Exited(0)) {
    return absl::InternalError(
        absl::StrCat("`", script, "`: ", exit->Describe(), ": ", (*child)->stderr_text()));
  }
  return absl::OkStatus();
}

// A P-256 key DIR/NAME.key and its certificate DIR/NAME.crt with common name `cn`, signed by the
// CA DIR/ca (self-signed when NAME is "ca"), valid two days, with subjectAltName `san` if given.
absl::Status MakeCertificate(const std::string& dir, const std::string& name, const std::string& cn,
                             const std::string& san) {
  static std::mt19937_64 serials(std::random_device{}());
  const std::string base = absl::StrCat(dir, "/", name);
  std::string script =
      absl::StrCat("set -e; mkdir -p '", dir, "'; openssl genpkey -algorithm EC -pkeyopt ",
                   "ec_paramgen_curve:P-256 -out '", base, ".key'; ");
  if (name == "ca") {
    absl::StrAppend(&script, "openssl req -x509 -new -key '", base, ".key' -subj '/CN=", cn,
                    "' -days 2 -out '", base, ".crt'");
    return RunShell(script);
  }
  absl::StrAppend(&script, "openssl req -new -key '", base, ".key' -subj '/CN=", cn, "' -out '",
                  base, ".csr'; ");
  std::string extensions;
  if (!san.empty()) {
    absl::StrAppend(&script, "printf 'subjectAltName=%s\n' '", san, "' >'", base, ".ext'; ");
    extensions = absl::StrCat(" -extfile '", base, ".ext'");
  }
  absl::StrAppend(&script, "openssl x509 -req -in '", base, ".csr' -CA '", dir, "/ca.crt' -CAkey '",
                  dir, "/ca.key' -set_serial 0x", absl::StrFormat("%016x", serials() >> 1),
                  " -days 2", extensions, " -out '", base, ".crt'; rm -f '", base, ".csr' '", base,
                  ".ext'");
  return RunShell(script);
}

}  // namespace

std::string ClusterMember::peer_url() const {
  return absl::StrCat(tls ? "https" : "http", "://127.0.0.1:", peer_port);
}

std::string ClusterMember::client_url() const {
  return absl::StrCat(tls ? "https" : "http", "://127.0.0.1:", client_port);
}

std::string ClusterMember::endpoint() const { return absl::StrCat("127.0.0.1:", client_port); }

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Create(ClusterOptions options) {
  std::unique_ptr<Cluster> cluster(new Cluster(std::move(options)));
  cluster->root_ = crash::FreshTestDir(cluster->options_.name);
  if (cluster->options_.tls) {
    if (absl::Status s = cluster->MakeCertificates(); !s.ok()) return s;
  }
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
  auto client_port = ReservePort();
  if (!client_port.ok()) return client_port.status();
  auto peer_port = ReservePort();
  if (!peer_port.ok()) return peer_port.status();
  m.client_port = *client_port;
  m.listen_peer_port = *peer_port;
  m.peer_port = m.listen_peer_port;
  if (options_.tls) {
    // Its own certificate, for clients and peers (and as a client of its peers).
    if (absl::Status s = MakeCertificate(certs_dir(), m.name, m.name, "IP:127.0.0.1"); !s.ok()) {
      return s;
    }
    m.tls = true;
    m.cert_file = absl::StrCat(certs_dir(), "/", m.name, ".crt");
    m.key_file = absl::StrCat(certs_dir(), "/", m.name, ".key");
  }
  if (proxy_ != nullptr) {
    auto port = proxy_->AddDestination(static_cast<int>(index), m.listen_peer_port);
    if (!port.ok()) return port.status();
    m.peer_port = *port;
  }
  m.dir = absl::StrCat(root, "/", m.name);
  members_.push_back(std::move(m));
  return absl::OkStatus();
}

absl::Status Cluster::MakeCertificates() {
  if (absl::Status s = MakeCertificate(certs_dir(), "ca", "kvstore test CA", ""); !s.ok()) {
    return s;
  }
  if (absl::Status s = MakeCertificate(certs_dir(), "client", "root", ""); !s.ok()) return s;
  net::TlsFiles files;
  files.cert_file = client_cert_file();
  files.key_file = client_key_file();
  files.trusted_ca_file = ca_file();
  auto context = net::TlsContext::NewClient(files);
  if (!context.ok()) return context.status();
  client_tls_ = std::move(*context);
  return absl::OkStatus();
}

std::string Cluster::ca_file() const { return certs_dir() + "/ca.crt"; }
std::string Cluster::client_cert_file() const { return certs_dir() + "/client.crt"; }
std::string Cluster::client_key_file() const { return certs_dir() + "/client.key"; }

absl::StatusOr<uint16_t> Cluster::ReservePort() {
  int lock = -1;
  auto port = ReserveLoopbackPort(&lock);
  if (port.ok() && lock >= 0) reservations_.push_back(lock);
  return port;
}

Cluster::~Cluster() {
  for (size_t i = 0; i < members_.size(); ++i) Kill(i);
  proxy_.reset();
  for (int fd : reservations_) close(fd);
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
  std::vector<std::string> args = {
      "--name",
      m.name,
      "--data-dir",
      m.dir,
      "--listen-client-urls",
      m.client_url(),
      "--listen-peer-urls",
      absl::StrCat(m.tls ? "https" : "http", "://127.0.0.1:", m.listen_peer_port),
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
  if (m.tls) {
    for (const char* prefix : {"", "peer-"}) {
      args.insert(args.end(), {absl::StrCat("--", prefix, "cert-file"), m.cert_file,
                               absl::StrCat("--", prefix, "key-file"), m.key_file,
                               absl::StrCat("--", prefix, "trusted-ca-file"), ca_file(),
                               absl::StrCat("--", prefix, "client-cert-auth")});
    }
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
