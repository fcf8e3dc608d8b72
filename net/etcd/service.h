#ifndef KVSTORE_NET_ETCD_SERVICE_H_
#define KVSTORE_NET_ETCD_SERVICE_H_

// etcd's v3 gRPC API (net/etcd/rpc.proto) over a MemberService: the services KV, Watch, Lease,
// Cluster, Maintenance and Auth, so etcdctl and etcd's client libraries work against kvnode
// unchanged. A call's auth token is its "token" metadata, as etcd's clients send it.
//
// Threads. gRPC calls its handlers on its own threads; the member lives on a kj event loop, and
// is only ever touched on its own thread, exactly as the Cap'n Proto services touch it. Every
// method but Maintenance.Snapshot runs on gRPC's callback API: a handler converts its request
// (convert.h) and posts it to the loop without waiting, and the loop's answer finishes the call
// or writes the stream's response, so no thread waits per call or per stream, and a flood of
// calls (monitoring polling Status, say) grows no thread pool. Snapshot streams the database
// from a thread of gRPC's synchronous server, which holds one thread per download.
//
// Watches. One Watch stream carries many watchers under stream-local ids (etcd numbers them from
// 0 per stream, or takes the id the client asks for). The member's responses are queued per
// stream and written in order, one write outstanding at a time; a stream whose client does not
// read fast enough to keep the queue under watch_queue_limit_responses has the slow watch
// canceled with a reason, as etcd cancels a slow watcher, so memory stays bounded. The
// responses a stream makes itself (answers to create, cancel and progress requests) never
// cancel anything: the stream reads its next request only while fewer than
// kMaxQueuedControlResponses of them, and fewer than watch_queue_limit_responses items in all,
// wait to be written, as etcd 3.4's recvLoop blocks on its ctrlStream; so a client that floods
// requests and never reads is held back by HTTP/2 flow control instead of growing the queue.
//
// Memory of one stream whose client never reads: at most watch_queue_limit_responses responses
// queued, plus one cancel notice per slow watcher, plus what gRPC buffers within the HTTP/2
// flow-control windows. In bytes: a control response is a header and at most a cancel reason
// (under 300 bytes); a member's event response holds at most kDefaultMaxBufferedEventsPerWatcher
// events (mvcc's per-watcher buffer), or one revision's events where a catch-up cuts there, and
// each put event's key and value came in one request of at most --max-request-bytes (twice that
// with prev_kv). Nothing bounds one revision's events further: a DeleteRange over many keys is
// one revision, and etcd too sends it in one response unless the client asked for `fragment`
// (split at max-request-bytes; kvnode does not fragment). So the byte bound is the response
// bound times the largest response the stored data allows (with 1 KiB values and the defaults,
// 1024 responses of at most 1024 events: about 1 GiB at the very worst). A client that only
// sends requests, and watches nothing written to, holds at most 1024 small answers (~300 KiB).
//
// Open watchers are bounded per stream (kMaxWatchersPerStream) and over all the streams of one
// client connection (ServiceOptions::max_watchers_per_connection); a creation past either is
// refused as etcd refuses one (watch id -1, created and canceled, with a reason naming the
// limit), and a watch gives its slots back when it ends (canceled by the client or the member,
// or its stream closed).
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
// Responses one Watch stream makes itself (created or refused answers, progress
// answers, cancel answers) that may wait to be written: etcd 3.4's ctrlStream buffer. At it the
// stream stops reading its requests until some have been written (see "Watches").
inline constexpr size_t kMaxQueuedControlResponses = 16;
// Watchers open at once over every Watch stream of one client connection (kvnode's
// --max-watchers-per-connection; etcd has no such limit). A creation past it is refused the same
// way, with a reason naming this limit. One connection may open many streams
// (--max-concurrent-streams), so the per-stream limit alone would not bound it.
inline constexpr size_t kDefaultMaxWatchersPerConnection = 100000;

// Users authenticated by client certificates, by the socket kvnode hands gRPC for each TLS
// connection: etcd takes a verified certificate's common name as the user of a call that carries
// no token. Every socket handed to gRPC gets its entry set first (empty: no user), so a reused
// descriptor never inherits an earlier connection's user. Thread-safe.
class CertUsers {
 public:
  void Set(int fd, std::string user);
  // The user of a call whose ServerContext::peer() is `grpc_peer` ("fd:N"); empty: none.
  std::string Lookup(const std::string& grpc_peer) const;
  // Which connection a call whose peer() is `grpc_peer` came on: "fd:N#K", where K counts the
  // sockets handed over by Set, so a descriptor reused by a new connection (while the old one's
  // streams are still ending) names another connection. `grpc_peer` itself when never Set.
  std::string ConnectionOf(const std::string& grpc_peer) const;

 private:
  struct Entry {
    std::string user;
    uint64_t connection = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Entry> users_;  // "fd:N" -> the socket's user and connection number
  uint64_t connections_ = 0;
};

struct ServiceOptions {
  // Responses one Watch stream may hold for a client that does not read them.
  size_t watch_queue_limit_responses = 1024;
  // Bytes per SnapshotResponse (etcd sends 32 KiB).
  size_t snapshot_chunk_bytes = 32 << 10;
  // Client certificates' users (outliving the services); null: none. Also tells the connections
  // apart for max_watchers_per_connection (without it, a connection is its peer() address).
  const CertUsers* cert_users = nullptr;
  // Watchers open at once over all the Watch streams of one client connection.
  size_t max_watchers_per_connection = kDefaultMaxWatchersPerConnection;
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
