#ifndef KVSTORE_NET_CLIENT_H_
#define KVSTORE_NET_CLIENT_H_

// The native client library (kvctl, kvbench, tests): server::Request in, server::Response out,
// over client.capnp, against several endpoints (members' client URLs).
//
// Endpoints. Connections are made on first use; a connection counts as made once the member
// has answered on it (a first Endpoint.kv call), so an address that accepts connections but
// never answers (a partitioned or frozen member) fails its try like one that refuses them. An
// endpoint that fails (no connection, no answer within the per-try timeout, a broken
// connection, NO_LEADER or STOPPED) is skipped for a backoff that doubles from
// endpoint_backoff_min to endpoint_backoff_max and resets when it answers; when every endpoint
// is in backoff, all are tried, the soonest to recover first. A request starts at the endpoint
// that last answered (for requests only the leader serves: the one that last served such a
// request), then the others in order.
//
// Per-try timeout. Each try (connecting and answering) is bounded by per_try_timeout (kj::Timer):
// a partitioned endpoint costs a request at most that, then the next endpoint is tried. A
// request makes at most one try per endpoint, so it takes at most endpoints x per_try_timeout.
//
// What is retried on another endpoint, and why (a write that may have been applied is never
// retried blindly):
//   - any request, when the try failed before the request was sent: no connection, or no answer
//     to the connection's first call. The member never saw the request.
//   - any request answered NO_LEADER or NOT_LEADER. The core answers NO_LEADER only when Raft
//     dropped the proposal or read before appending it anywhere, and NOT_LEADER when a
//     leader-only request reached a follower, which did nothing.
//   - idempotent requests (reads: range, lease time-to-live and list, member and alarm lists,
//     hash; lease keep-alive, which only restarts a TTL) also when answered LEADERSHIP_CHANGED,
//     TIMEOUT or STOPPED, or when the try timed out or the connection broke after sending:
//     running them twice changes nothing.
// A write (put, delete, txn, compact, lease grant and revoke, member changes, alarm disarm,
// defragment, move-leader) whose try timed out or lost its connection after it was sent is not
// retried: it fails with TIMEOUT ("its outcome is unknown"), as the core's own TIMEOUT does. A
// txn counts as a write even when it only reads.
//
// Results. Call resolves to the member's Response when its status is OK, and to an error
// otherwise: the member's status (its stable code: CodeOf), TIMEOUT as above, or, when no
// endpoint could be reached, absl::StatusCode::kUnavailable listing each endpoint's failure.
//
// Threading and lifetimes: everything runs on the kj event loop of the thread that created the
// client; `network` and `timer` must outlive it, and so must the client every promise, Watch and
// KeepAlive it handed out (drop those first).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/mvcc/watch.h"
#include "core/server/server.h"
#include "kj/async-io.h"
#include "kj/timer.h"
#include "net/member_service.h"
#include "net/tls.h"

namespace kvstore::net {

// A try longer than this gives up on its endpoint. Above the core's default request timeout
// (50 ticks of 100 ms), so a healthy member answers a slow write itself (TIMEOUT) first.
inline constexpr kj::Duration kDefaultPerTryTimeout = 6 * kj::SECONDS;
inline constexpr kj::Duration kEndpointBackoffMin = 1 * kj::SECONDS;
inline constexpr kj::Duration kEndpointBackoffMax = 30 * kj::SECONDS;

struct ClientOptions {
  // "host:port", "http://host:port" or "https://host:port" (NetworkAddressOf), at least one.
  std::vector<std::string> endpoints;
  // TLS (a client context, outliving the client): used for https:// endpoints, and, as etcdctl
  // does when given TLS flags, for endpoints without a scheme. Null: https:// endpoints verify
  // the server against the system's trust store, the others are plain text.
  TlsContext* tls = nullptr;
  kj::Duration per_try_timeout = kDefaultPerTryTimeout;
  kj::Duration endpoint_backoff_min = kEndpointBackoffMin;
  kj::Duration endpoint_backoff_max = kEndpointBackoffMax;
};

// What Maintenance.status reports for one endpoint.
struct EndpointStatus {
  std::string endpoint;
  std::string version;
  MemberStatusInfo member;
};

class Client {
 public:
  class Impl;

  // A watch in progress: its responses go to the callback given to Watch, in order. The last
  // one has `canceled` set: the member's (a compacted revision, a watcher too slow), or one
  // made here when the connection broke (cancel_reason names the endpoint). Destroying the Watch
  // releases it on the member.
  class Watch {
   public:
    virtual ~Watch() = default;
    // Cancels the watch; nothing more is delivered. Bounded by the per-try timeout.
    virtual kj::Promise<absl::Status> Cancel() = 0;
    // Asks for a progress notification (etcd's RequestProgress).
    virtual kj::Promise<absl::Status> RequestProgress() = 0;
    // Whether the canceled response was delivered.
    virtual bool ended() const = 0;
  };

  // Renews one lease, keeping its Lease.keepAlive stream open on the endpoint that last
  // renewed it (a new stream elsewhere when that one fails).
  class KeepAlive {
   public:
    virtual ~KeepAlive() = default;
    // One renewal: the lease's TTL in seconds; LEASE_NOT_FOUND once it is gone.
    virtual kj::Promise<absl::StatusOr<int64_t>> Renew() = 0;
  };

  // Refuses an empty endpoint list or a malformed URL (INVALID_ARGUMENT). Connects lazily.
  static absl::StatusOr<std::unique_ptr<Client>> Create(kj::Network& network, kj::Timer& timer,
                                                        ClientOptions options);
  ~Client();

  // One request, with failover (see the file comment).
  kj::Promise<absl::StatusOr<server::Response>> CallAsync(server::Request request);
  // The same, waiting on the calling thread's event loop (tools).
  absl::StatusOr<server::Response> Call(server::Request request, kj::WaitScope& wait_scope);
  // One request to one endpoint (index into options.endpoints), one try: for what concerns
  // one member (hash, defragment, or a tool's --endpoints of one).
  kj::Promise<absl::StatusOr<server::Response>> CallEndpointAsync(size_t endpoint,
                                                                  server::Request request);
  // Maintenance.status of one endpoint, one try.
  kj::Promise<absl::StatusOr<EndpointStatus>> StatusAsync(size_t endpoint);

  // Opens a watch (with failover, as a read). Responses that arrive before the member has
  // confirmed the watch are held, then delivered in order once the promise resolves. `token`:
  // the caller's auth token, as Request::token (while auth is enabled the member checks read
  // permission on the watched range when the watch is created).
  kj::Promise<absl::StatusOr<std::unique_ptr<Watch>>> WatchAsync(
      mvcc::WatchRequest request, std::function<void(const mvcc::WatchResponse&)> on_response,
      std::string token = {});
  // A keep-alive for lease `id` (non-zero); nothing is sent before the first Renew.
  std::unique_ptr<KeepAlive> NewKeepAlive(lease::LeaseId id);
  // Downloads one endpoint's backend snapshot, chunk by chunk, each within the per-try
  // timeout; the CRC-32C the member sends at the end is checked against the chunks received
  // (absl::StatusCode::kDataLoss when they differ). An error from `on_chunk` stops the download.
  // `token`: the caller's (root only while auth is enabled, as etcd's snapshot).
  kj::Promise<absl::Status> SnapshotAsync(
      size_t endpoint, std::function<absl::Status(absl::string_view chunk)> on_chunk,
      std::string token = {});

  const std::vector<std::string>& endpoints() const;
  // Whether `endpoint` is in its backoff after a failure.
  bool InBackoff(size_t endpoint) const;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstore::net

#endif  // KVSTORE_NET_CLIENT_H_
