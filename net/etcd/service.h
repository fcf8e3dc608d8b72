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
#include <memory>

#include "grpcpp/server_builder.h"
#include "kj/async.h"
#include "net/member_service.h"

namespace kvstore::net::etcd {

// Watchers open at once on one Watch stream (etcd sets no limit). A creation past it is refused
// (created and canceled, with a reason naming the limit), so one stream cannot hold the member's
// watcher memory; the client cancels some or opens another stream.
inline constexpr size_t kMaxWatchersPerStream = 10000;

struct ServiceOptions {
  // Responses one Watch stream may hold for a client that does not read them.
  size_t watch_queue_limit_responses = 1024;
  // Bytes per SnapshotResponse (etcd sends 32 KiB).
  size_t snapshot_chunk_bytes = 32 << 10;
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
