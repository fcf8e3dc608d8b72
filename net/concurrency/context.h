#ifndef KVSTORE_NET_CONCURRENCY_CONTEXT_H_
#define KVSTORE_NET_CONCURRENCY_CONTEXT_H_

// Where the concurrency objects run: a net::Client and the kj event loop of the thread that
// created it. Every blocking call of this package (Session::Create, Mutex::Lock, RunStm) waits
// on `wait_scope`, so the loop keeps running meanwhile: a session's keep-alives and watches
// progress while the caller waits for a lock or a read. The three references must outlive every
// object made with the context.

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "core/server/server.h"
#include "kj/async.h"
#include "kj/timer.h"
#include "net/client.h"

namespace kvstore::net::concurrency {

struct ClientContext {
  Client& client;
  kj::Timer& timer;
  kj::WaitScope& wait_scope;
  // Sent with every request that carries none (an auth token, as etcd's client sends the one it
  // got from its user); "" for none.
  std::string token = {};

  // One request through the client, waiting on the loop.
  absl::StatusOr<server::Response> Call(server::Request request) {
    if (request.token.empty()) request.token = token;
    return client.Call(std::move(request), wait_scope);
  }
};

}  // namespace kvstore::net::concurrency

#endif  // KVSTORE_NET_CONCURRENCY_CONTEXT_H_
