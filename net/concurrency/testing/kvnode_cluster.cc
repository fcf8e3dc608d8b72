#include "net/concurrency/testing/kvnode_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kj/async-io.h"
#include "net/client.h"

namespace kvstore::net::concurrency::testing {

uint16_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

absl::StatusOr<std::unique_ptr<KvnodeCluster>> KvnodeCluster::Start(KvnodeClusterOptions options,
                                                                    int64_t ready_timeout_ms) {
  std::unique_ptr<KvnodeCluster> cluster(new KvnodeCluster());
  const std::string root = node::crash::FreshTestDir(options.name);
  std::vector<std::string> names, peer_urls, client_urls;
  for (int i = 1; i <= options.members; ++i) {
    const uint16_t client_port = FreePort(), peer_port = FreePort();
    if (client_port == 0 || peer_port == 0) return absl::UnavailableError("no free port");
    names.push_back(absl::StrCat("n", i));
    peer_urls.push_back(absl::StrCat("http://127.0.0.1:", peer_port));
    client_urls.push_back(absl::StrCat("http://127.0.0.1:", client_port));
    cluster->endpoints_.push_back(absl::StrCat("127.0.0.1:", client_port));
  }
  std::vector<std::string> initial;
  for (size_t i = 0; i < names.size(); ++i) initial.push_back(names[i] + "=" + peer_urls[i]);
  for (size_t i = 0; i < names.size(); ++i) {
    node::crash::SpawnOptions spawn;
    spawn.args = {"--name",
                  names[i],
                  "--data-dir",
                  absl::StrCat(root, "/", names[i]),
                  "--listen-client-urls",
                  client_urls[i],
                  "--listen-peer-urls",
                  peer_urls[i],
                  "--initial-advertise-peer-urls",
                  peer_urls[i],
                  "--initial-cluster",
                  absl::StrJoin(initial, ","),
                  "--initial-cluster-token",
                  options.name,
                  "--heartbeat-interval",
                  absl::StrCat(options.heartbeat_ms),
                  "--election-timeout",
                  absl::StrCat(options.election_ms),
                  "--log-level",
                  "error"};
    auto child = node::crash::ChildProcess::Spawn(node::crash::RunfilePath("node/kvnode"), spawn);
    if (!child.ok()) return child.status();
    cluster->processes_.push_back(std::move(*child));
  }
  if (absl::Status ready = cluster->WaitUntilServing(ready_timeout_ms); !ready.ok()) {
    return ready;
  }
  return cluster;
}

KvnodeCluster::~KvnodeCluster() {
  for (auto& process : processes_) {
    process->Kill();
    (void)process->Wait(node::crash::Clock::now() + std::chrono::seconds(5));
  }
}

std::string KvnodeCluster::EndpointsFlag() const { return absl::StrJoin(endpoints_, ","); }

absl::Status KvnodeCluster::WaitUntilServing(int64_t timeout_ms) {
  // On a thread of its own: the caller's thread may already have its event loop.
  absl::Status result;
  std::thread waiter([&] { result = PutUntilServing(timeout_ms); });
  waiter.join();
  return result;
}

absl::Status KvnodeCluster::PutUntilServing(int64_t timeout_ms) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  ClientOptions options;
  options.endpoints = endpoints_;
  options.per_try_timeout = 1 * kj::SECONDS;
  options.endpoint_backoff_min = 100 * kj::MILLISECONDS;
  options.endpoint_backoff_max = 500 * kj::MILLISECONDS;
  auto client = Client::Create(io.provider->getNetwork(), io.provider->getTimer(), options);
  if (!client.ok()) return client.status();
  server::Request put;
  put.type = server::RequestType::kPut;
  put.put.key = "kvnode-cluster-ready";
  put.put.value = "yes";
  const auto deadline = node::crash::Clock::now() + std::chrono::milliseconds(timeout_ms);
  absl::Status last = absl::UnavailableError("not tried");
  while (node::crash::Clock::now() < deadline) {
    absl::StatusOr<server::Response> response = (*client)->Call(put, io.waitScope);
    if (response.ok()) return absl::OkStatus();
    last = response.status();
    io.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).wait(io.waitScope);
  }
  return absl::DeadlineExceededError(absl::StrCat("the cluster did not serve a put within ",
                                                  timeout_ms, " ms: ", last.ToString()));
}

}  // namespace kvstore::net::concurrency::testing
