#include "net/concurrency/testing/kvnode_cluster.h"

#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kj/async-io.h"
#include "net/client.h"

namespace kvstore::net::concurrency::testing {

absl::StatusOr<std::unique_ptr<KvnodeCluster>> KvnodeCluster::Start(KvnodeClusterOptions options,
                                                                    int64_t ready_timeout_ms) {
  std::unique_ptr<KvnodeCluster> cluster(new KvnodeCluster());
  node::testing::ClusterOptions cluster_options;
  cluster_options.members = options.members;
  cluster_options.name = options.name;
  cluster_options.heartbeat_ms = options.heartbeat_ms;
  cluster_options.election_ms = options.election_ms;
  auto members = node::testing::Cluster::Create(cluster_options);
  if (!members.ok()) return members.status();
  cluster->cluster_ = std::move(*members);
  if (absl::Status s = cluster->cluster_->StartAll(); !s.ok()) return s;
  cluster->endpoints_ = cluster->cluster_->Endpoints();
  if (absl::Status ready = cluster->WaitUntilServing(ready_timeout_ms); !ready.ok()) {
    return ready;
  }
  return cluster;
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
