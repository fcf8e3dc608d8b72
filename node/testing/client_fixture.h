#ifndef KVSTORE_NODE_TESTING_CLIENT_FIXTURE_H_
#define KVSTORE_NODE_TESTING_CLIENT_FIXTURE_H_

// A gtest fixture for tests that drive real kvnode processes (node/testing/cluster.h) through
// the native client: a kj event loop on the test's thread, clients that give up on an endpoint
// within a second, and calls retried while they are refused before they reach the log.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/base/errors.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"

namespace kvstore::node::testing {

class ClientFixture : public ::testing::Test {
 protected:
  // A client of `endpoints` (nullptr if it cannot be made): 1 s per try, 100-500 ms backoff.
  std::unique_ptr<net::Client> ClientOf(std::vector<std::string> endpoints) {
    net::ClientOptions options;
    options.endpoints = std::move(endpoints);
    options.per_try_timeout = 1 * kj::SECONDS;
    options.endpoint_backoff_min = 100 * kj::MILLISECONDS;
    options.endpoint_backoff_max = 500 * kj::MILLISECONDS;
    auto client =
        net::Client::Create(io_.provider->getNetwork(), io_.provider->getTimer(), options);
    if (!client.ok()) return nullptr;
    return std::move(*client);
  }

  // Runs the loop for `ms` (answers and timers go on meanwhile).
  void Pause(int64_t ms) {
    io_.provider->getTimer().afterDelay(ms * kj::MILLISECONDS).wait(io_.waitScope);
  }

  // Retries what was refused before it reached the log (no leader yet, a member starting, a
  // learner not caught up), `attempts` times 100 ms at most; kMemberNotFound is final.
  absl::StatusOr<server::Response> CallRetrying(net::Client& client, const server::Request& request,
                                                int attempts = 100) {
    absl::StatusOr<server::Response> response = absl::UnavailableError("not tried");
    for (int attempt = 0; attempt < attempts; ++attempt) {
      response = client.Call(request, io_.waitScope);
      if (response.ok() || CodeOf(response.status()) == ErrorCode::kMemberNotFound) break;
      Pause(100);
    }
    return response;
  }

  // Held by pointer: kj::AsyncIoContext's destructor may throw, a test fixture's may not.
  std::unique_ptr<kj::AsyncIoContext> io_holder_ =
      std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
  kj::AsyncIoContext& io_ = *io_holder_;
};

}  // namespace kvstore::node::testing

#endif  // KVSTORE_NODE_TESTING_CLIENT_FIXTURE_H_
