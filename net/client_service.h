#ifndef KVSTORE_NET_CLIENT_SERVICE_H_
#define KVSTORE_NET_CLIENT_SERVICE_H_

// The member's side of the native client API (client.capnp): Endpoint, Kv, Watch, WatchHandle,
// Lease, KeepAlive, Cluster, Maintenance and SnapshotStream, served over a MemberService.
//
// Every method converts its params with convert.h, hands the request to the member and writes
// the member's answer into its results; a malformed request is answered with INVALID_ARGUMENT
// and never reaches the member. Errors are results (a Status); an exception means the
// connection broke or the member shut down.
//
// Watches. The client hands the server a Watcher capability; the server calls its `deliver`
// with each response, in order, with one call outstanding at a time (Cap'n Proto's streaming
// flow control decides when the next may go). Responses the watcher has not taken wait in a
// queue of at most watch_queue_limit_responses; one more means the watcher is too slow, and the
// watch is canceled, as etcd cancels a slow watcher: the queued responses still go, then a
// final response with `canceled` and a reason naming the limit, and the member's watch is
// canceled. So a slow watcher costs bounded memory and never blocks the loop. A watch also ends
// when the member ends it (a compacted revision), when the client cancels it
// (WatchHandle.cancel: queued responses are dropped), when its WatchHandle is released (the
// client went away), or when a delivery fails.
//
// Snapshots. Maintenance.snapshot takes a consistent copy of the backend (MemberService::
// TakeSnapshot, made off the loop) and streams it in chunks of snapshot_chunk_bytes, read from
// the copy one at a time; the last call returns no chunk, `done` and the CRC-32C
// (store/crc32c.h) of the whole.
//
// Lifetimes: everything runs on the member's loop thread. The MemberService must outlive every
// capability served: destroy the ClientServer (which closes its connections) before it.

#include <cstddef>
#include <cstdint>
#include <string>

#include "kj/async-io.h"
#include "kj/timer.h"
#include "net/client.capnp.h"
#include "net/connection.h"
#include "net/convert.h"
#include "net/member_service.h"

namespace kvstore::net {

// The software version Maintenance.status reports.
inline constexpr char kServerVersion[] = "0.1.0";
// Responses waiting for one slow watcher before its watch is canceled. A response holds the
// events of whole revisions (at most the core's catch-up batch when replaying history), so this
// bounds a watcher's memory to a few hundred revisions' worth.
inline constexpr size_t kDefaultWatchQueueLimitResponses = 256;

// Watches one client connection may hold open at once (a WatchHandle not yet released). One past
// it is refused TOO_MANY_REQUESTS, so one connection cannot hold the member's watcher memory.
inline constexpr size_t kMaxWatchesPerConnection = 10000;

struct ClientServiceOptions {
  size_t watch_queue_limit_responses = kDefaultWatchQueueLimitResponses;
  uint64_t snapshot_chunk_bytes = kSnapshotChunkBytes;
  // The member's --max-request-bytes: requests above it plus kRequestEnvelopeBytes are refused
  // before decoding (RequestReaderOptions).
  uint64_t max_request_bytes = server::kDefaultMaxRequestBytes;
  size_t max_watches_per_connection = kMaxWatchesPerConnection;
};

// The Endpoint a client connection bootstraps, serving `member` (not owned). ClientServer makes
// one per connection, so the per-connection limits hold.
// `cert_user`: the user of the connection's requests that carry no token (the CN of its verified
// client certificate under --client-cert-auth, as etcd's AuthInfoFromTLS); "" for none.
rpc::Endpoint::Client NewEndpoint(MemberService& member, const ClientServiceOptions& options = {},
                                  const std::string& cert_user = "");

// Serves Endpoint on a client URL: every accepted connection reads with RequestReaderOptions.
class ClientServer {
 public:
  // Listens on `address` ("host:port", NetworkAddressOf's form; port 0 picks a free port).
  // Rejects with a kj exception when it cannot be resolved or bound (the port is taken).
  static kj::Promise<kj::Own<ClientServer>> Listen(kj::Network& network, kj::Timer& timer,
                                                   std::string address, MemberService& member,
                                                   const ClientServiceOptions& options = {});
  // Without a socket: connections come through Accept (in-process tests).
  ClientServer(MemberService& member, const ClientServiceOptions& options = {});

  // Serves one connection (say, one end of kj::newTwoWayPipe()).
  void Accept(kj::Own<kj::AsyncIoStream> stream) { listener_.Accept(kj::mv(stream)); }
  // Serves one connection whose requests without a token run as `cert_user` (NewEndpoint).
  void Accept(kj::Own<kj::AsyncIoStream> stream, const std::string& cert_user);
  // The port listened on (0 without a socket).
  uint port() const { return listener_.port(); }

 private:
  MemberService& member_;
  const ClientServiceOptions options_;
  RpcListener listener_;
};

}  // namespace kvstore::net

#endif  // KVSTORE_NET_CLIENT_SERVICE_H_
