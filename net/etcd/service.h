#ifndef KVSTORE_NET_ETCD_SERVICE_H_
#define KVSTORE_NET_ETCD_SERVICE_H_

// etcd's v3 gRPC API (net/etcd/rpc.proto) over a MemberService: the services KV, Watch, Lease,
// Cluster, Maintenance and Auth, so etcdctl and etcd's client libraries work against kvnode
// unchanged. A call's auth token is its "token" metadata, as etcd's clients send it.
//
// Threads. gRPC calls its handlers on its own threads; the member lives on a kj event loop.
// Every handler converts its request (convert.h), hands it to the member's loop through the
// loop's kj::Executor and waits for the answer there, so the member is only ever touched on its
// own thread, exactly as the Cap'n Proto services touch it. A handler blocks one gRPC thread per
// outstanding call; gRPC's synchronous server grows its pool with the calls in flight.
//
// Watches. One Watch stream carries many watchers under stream-local ids (etcd numbers them from
// 0 per stream, or takes the id the client asks for). The member's responses are queued per
// stream and written by a writer thread in order; a stream whose client does not read fast
// enough to keep the queue under watch_queue_limit_responses has the slow watch canceled with a
// reason, as etcd cancels a slow watcher, so memory stays bounded.
//
// Errors are etcd's (convert.h: gRPC code and "etcdserver: ..." message). When the member's loop
// has stopped, calls fail with UNAVAILABLE "etcdserver: server stopped".

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "grpcpp/server_builder.h"
#include "kj/async.h"
#include "net/member_service.h"

namespace kvstore::net::etcd {

// Watchers open at once on one Watch stream (etcd sets no limit). A creation past it is refused
// (created and canceled, with a reason naming the limit), so one stream cannot hold the member's
// watcher memory; the client cancels some or opens another stream.
inline constexpr size_t kMaxWatchersPerStream = 10000;

// Users authenticated by client certificates, by the socket kvnode hands gRPC for each TLS
// connection: etcd takes a verified certificate's common name as the user of a call that carries
// no token. Every socket handed to gRPC gets its entry set first (empty: no user), so a reused
// descriptor never inherits an earlier connection's user. Thread-safe.
class CertUsers {
 public:
  void Set(int fd, std::string user);
  // The user of a call whose ServerContext::peer() is `grpc_peer` ("fd:N"); empty: none.
  std::string Lookup(const std::string& grpc_peer) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::string> users_;  // "fd:N" -> user
};

struct ServiceOptions {
  // Responses one Watch stream may hold for a client that does not read them.
  size_t watch_queue_limit_responses = 1024;
  // Bytes per SnapshotResponse (etcd sends 32 KiB).
  size_t snapshot_chunk_bytes = 32 << 10;
  // Client certificates' users (outliving the services); null: none.
  const CertUsers* cert_users = nullptr;
};

class Services {
 public:
  // Create on the member's loop thread (it reads the member's cluster id). `member` must outlive
  // the gRPC server these services are registered with.
  Services(MemberService& member, const kj::Executor& loop, const ServiceOptions& options = {});
  ~Services();

  // Registers KV, Watch, Lease, Cluster, Maintenance and Auth.
  void RegisterWith(grpc::ServerBuilder& builder);

  // For the JSON gateway: one unary call on the member's loop (blocks the calling thread, which
  // must not be the loop's).
  server::Response Call(server::Request request);
  uint64_t cluster_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstore::net::etcd

#endif  // KVSTORE_NET_ETCD_SERVICE_H_
