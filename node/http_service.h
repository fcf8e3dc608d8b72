#ifndef KVSTORE_NODE_HTTP_SERVICE_H_
#define KVSTORE_NODE_HTTP_SERVICE_H_

// kvnode's HTTP endpoints for operators, as etcd serves them on --listen-metrics-urls:
//
//   GET /metrics      Prometheus text format 0.0.4 (node/metrics.h), etcd's metric names
//   GET /health       etcd 3.4's answer: 200 {"health":"true"} when the member has a leader, no
//                     alarm, and a read through consensus succeeds within a second; otherwise
//                     503 {"health":"false"} (etcd 3.4 gives no reason in the body; the member's
//                     log says which check failed). Any other method: 405 with Allow: GET.
//   GET /             a status page (self-contained HTML) that refreshes from /status.json
//   GET /status.json  this member's view: members, leader, term, indexes, each follower's match
//                     index and lag (the leader knows them), db size, alarms
//
// The service is a kj::HttpService and knows nothing of how its connections were accepted: the
// client listener may hand it plain HTTP/1 requests too, as etcd serves /metrics and /health
// on its client URLs. Everything runs on the runtime's loop thread.

#include <cstdint>
#include <string>

#include "kj/async-io.h"
#include "kj/compat/http.h"
#include "node/log.h"
#include "node/metrics.h"
#include "node/runtime.h"

namespace kvstore::node {

struct StatusHttpOptions {
  std::string name;  // this member's --name, for the page's title
  // How long /health waits for its read through consensus (etcd: one second).
  int64_t health_read_timeout_ms = 1000;
};

// The service over `runtime` and `metrics` (which must outlive it). Registers etcd's health
// check counters in `metrics`.
kj::Own<kj::HttpService> NewStatusHttpService(Runtime& runtime, Metrics& metrics, kj::Timer& timer,
                                              Logger& log, const StatusHttpOptions& options);

// Serves an HttpService over HTTP/1.1 on one listening address until destroyed, each connection
// behind net/etcd's http_guard as on the client URLs: Go's net/http rules for request heads (its
// 400/431/505 answers), "Connection: close" and HTTP/1.0 answered and closed as etcd 3.4.23's
// metrics listener does.
class HttpListener : private kj::TaskSet::ErrorHandler {
 public:
  // Binds `address` (host:port; port 0 picks one) and serves `service` (which must outlive the
  // listener) on every connection. Rejects when the address cannot be bound.
  static kj::Promise<kj::Own<HttpListener>> Listen(kj::Network& network, kj::Timer& timer,
                                                   kj::StringPtr address, kj::HttpService& service);
  HttpListener(kj::Timer& timer, kj::Own<kj::ConnectionReceiver> receiver,
               kj::HttpService& service);
  uint port() { return receiver_->getPort(); }

 private:
  kj::Promise<void> AcceptLoop();
  // A connection's promise never rejects (ServeCheckedHttp); kept for the TaskSet.
  void taskFailed(kj::Exception&& exception) override;

  kj::Timer& timer_;
  kj::HttpHeaderTable header_table_;
  kj::Own<kj::ConnectionReceiver> receiver_;
  kj::HttpServer server_;
  kj::TaskSet connections_;  // before serving_: destroyed after it
  // The accept loop; an accept error ends it (as kj's listenHttp).
  kj::Promise<void> serving_;
};

}  // namespace kvstore::node

#endif  // KVSTORE_NODE_HTTP_SERVICE_H_
