#ifndef KVSTORE_NET_MEMBER_SERVICE_H_
#define KVSTORE_NET_MEMBER_SERVICE_H_

// The seam between the RPC services of net/ and the member they serve. net/ converts Cap'n Proto
// to the core's structs and back; node/ (the runtime that drives the member library on a kj event
// loop) implements this interface. Everything is called on the loop's thread.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/mvcc/watch.h"
#include "core/raft/types.h"
#include "core/server/server.h"
#include "kj/async.h"
#include "net/snapshot_copy.h"

namespace kvstore::net {

// Receives one watch's responses, in order.
// Who a watch runs as: its token, else the user of the connection's verified client
// certificate (server::Request's `token` and `cert_user`). Both empty: nobody, which auth
// refuses while it is enabled.
struct WatchCaller {
  std::string token;
  std::string cert_user;
};

class WatchSink {
 public:
  virtual ~WatchSink() = default;
  virtual void Deliver(const mvcc::WatchResponse& response) = 0;
};

// What Maintenance.status reports (etcd's StatusResponse).
struct MemberStatusInfo {
  raft::NodeId id = raft::kNoNode;
  raft::NodeId leader = raft::kNoNode;
  raft::Term term = 0;
  raft::Index commit_index = 0;
  raft::Index applied_index = 0;
  mvcc::Revision revision = 0;          // the store's current revision
  mvcc::Revision compact_revision = 0;  // the store's compaction revision
  uint64_t db_size_bytes = 0;
  bool is_learner = false;
  std::vector<std::string> errors;
};

class MemberService {
 public:
  virtual ~MemberService() = default;

  // A client request; resolves with its response (errors are in Response::status). Never
  // rejects except when the member shuts down.
  virtual kj::Promise<server::Response> Call(server::Request request) = 0;
  // A leader-only request another member forwarded (Peer.forward): served here and never
  // forwarded again, so a member that lost the leadership answers NOT_LEADER and the sender
  // retries with the leader it learns of next.
  virtual kj::Promise<server::Response> CallForwarded(server::Request request) {
    return Call(std::move(request));
  }
  // Opens a watch whose responses go to `sink` until it ends: either the member ends it (a
  // response with `canceled` set, say for a compacted revision, is the sink's last) or
  // CancelWatch returns, after which the sink is never called again, so its owner may destroy
  // it. Responses may arrive before Watch returns, and the canceled notice during CancelWatch.
  // The sink must not call back into the member from Deliver. While auth is enabled the watch
  // is checked when it is created, as `caller` (read permission on its range).
  virtual absl::StatusOr<mvcc::WatchId> Watch(const mvcc::WatchRequest& request,
                                              const WatchCaller& caller, WatchSink* sink) = 0;
  virtual absl::Status CancelWatch(mvcc::WatchId id) = 0;
  virtual void RequestWatchProgress() = 0;
  virtual MemberStatusInfo Status() = 0;
  // A consistent copy of the whole backend (etcd's snapshot download), holding at least what
  // the member had applied when it was asked. Made off the loop: a copy of a large database
  // must not hold the member's heartbeats and requests for its duration.
  virtual kj::Promise<absl::StatusOr<std::shared_ptr<SnapshotCopy>>> TakeSnapshot() = 0;

  // The cluster this member belongs to (from --initial-cluster-token and the founding members);
  // peers of another cluster are refused.
  virtual uint64_t cluster_id() const = 0;
  // A message from a peer (snapshot data attached, if any). kMemberRemoved: the sender was
  // removed from the cluster and its message dropped; the peer server refuses it (etcd's
  // rafthttp answers 410 Gone), so the sender stops (MemberRemovedOf).
  virtual absl::Status Step(raft::Message message) = 0;
  // The members as this member knows them (Peer.members).
  virtual std::vector<server::Member> Members() = 0;
  // A Raft stream's sender told its peer URLs (validated: raft_stream.h), before the messages of
  // that batch are stepped: a member that does not know the sender (it missed the configuration
  // change that added it) may reach it there to answer. What to keep is the member's (node/:
  // the Router's learned routes). Default: ignored.
  virtual void LearnPeerUrls(raft::NodeId sender, std::vector<std::string> peer_urls) {}
};

}  // namespace kvstore::net

#endif  // KVSTORE_NET_MEMBER_SERVICE_H_
