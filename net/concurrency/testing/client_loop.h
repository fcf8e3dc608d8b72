#ifndef KVSTORE_NET_CONCURRENCY_TESTING_CLIENT_LOOP_H_
#define KVSTORE_NET_CONCURRENCY_TESTING_CLIENT_LOOP_H_

// A test thread's kj event loop and one client on it, for the concurrency tests against a
// KvnodeCluster: the ClientContext the library takes, plain calls, sessions, sleeps and a
// bounded wait.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"
#include "net/concurrency/context.h"
#include "net/concurrency/session.h"

namespace kvstore::net::concurrency::testing {

struct ClientLoop {
  explicit ClientLoop(const std::vector<std::string>& endpoints) : io(kj::setupAsyncIo()) {
    ClientOptions options;
    options.endpoints = endpoints;
    options.per_try_timeout = 2 * kj::SECONDS;
    options.endpoint_backoff_min = 100 * kj::MILLISECONDS;
    auto created = Client::Create(io.provider->getNetwork(), io.provider->getTimer(), options);
    EXPECT_TRUE(created.ok()) << created.status();
    if (created.ok()) client = std::move(*created);
  }
  ClientContext context() { return {*client, io.provider->getTimer(), io.waitScope}; }
  absl::StatusOr<server::Response> Call(server::Request request) {
    return client->Call(std::move(request), io.waitScope);
  }
  std::unique_ptr<Session> NewSession(int64_t ttl_seconds) {
    auto session = Session::Create(context(), {.ttl_seconds = ttl_seconds});
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? std::move(*session) : nullptr;
  }
  void Sleep(kj::Duration duration) {
    io.provider->getTimer().afterDelay(duration).wait(io.waitScope);
  }
  // Runs the loop until `done` holds or `within` passes; whether it held.
  bool WaitFor(const std::function<bool()>& done, kj::Duration within = 5 * kj::SECONDS) {
    const kj::TimePoint deadline = io.provider->getTimer().now() + within;
    while (!done()) {
      if (io.provider->getTimer().now() >= deadline) return false;
      Sleep(20 * kj::MILLISECONDS);
    }
    return true;
  }

  kj::AsyncIoContext io;
  std::unique_ptr<Client> client;
};

}  // namespace kvstore::net::concurrency::testing

#endif  // KVSTORE_NET_CONCURRENCY_TESTING_CLIENT_LOOP_H_
