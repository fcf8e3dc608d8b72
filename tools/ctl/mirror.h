#ifndef KVSTORE_TOOLS_CTL_MIRROR_H_
#define KVSTORE_TOOLS_CTL_MIRROR_H_

// make-mirror: watch-based replication of a key prefix into another cluster, with etcd 3.4
// etcdctl make-mirror's semantics (etcd's clientv3/mirror Syncer and ctlv3 makeMirror):
//
//   1. The base: the source's current revision R is read, then every key under the prefix as
//      of R, a page of kBaseBatchKeys at a time, is put at the destination under the
//      destination prefix (the source prefix replaced). One consistent snapshot, whatever is
//      written meanwhile. Nothing else is touched at the destination: keys there that the
//      source lacks stay.
//   2. The updates: a watch of the prefix from R+1; each source revision's events become one
//      destination txn (puts and deletes, no compares), applied in revision order, so a txn
//      that changed several keys at the source lands atomically at the destination.
//   3. Progress: the count of keys mirrored (base puts, then one per event) is reported every
//      progress interval (etcdctl prints it every 30 s).
//
// Where it differs from etcdctl 3.4, and why:
//   - base keys go in txns of up to kMaxTxnOps puts (etcdctl puts them one by one): the same
//     keys and values, in fewer destination revisions and round trips.
//   - a source revision with more events than kMaxTxnOps (a large delete-range) lands in
//     several destination txns, since the destination refuses a larger txn (etcdctl fails).
//   - a write whose outcome is unknown (TIMEOUT, the destination unreachable or leaderless) is
//     retried: puts and deletes of whole values are idempotent, so applying one twice ends in
//     the same state.
//   - a watch lost with its connection is reopened from the next revision not yet applied.
//
// Compaction. If the source compacts a revision the mirror still needs (during the base copy,
// or while the watch catches up), the mirror stops with kCompacted and a message that names
// the revision the destination reflects.
//
// Memory is bounded: a base page is applied before the next is read; watch responses queue up
// to kMaxQueuedBytes while the destination is written, and beyond that the watch is dropped and
// reopened from the first revision not yet applied once the queue is drained.
//
// Threading: runs on the calling thread's kj event loop (the clients' loop).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/mvcc/types.h"
#include "kj/async-io.h"
#include "net/client.h"

namespace kvstore::ctl {

struct MirrorOptions {
  std::string prefix;             // source keys mirrored: those that start with it ("": all)
  std::string dest_prefix;        // replaces `prefix` in every key written to the destination
  std::string source_token;       // from --user: sent with every source request
  std::string destination_token;  // from --dest-user
  absl::Duration progress_interval = absl::Seconds(30);  // etcdctl's
};

class Mirror {
 public:
  // Named limits.
  static constexpr int64_t kBaseBatchKeys = 1000;  // etcd's mirror batchLimit
  // A destination txn's operations and bytes: under the destination's defaults (etcd's
  // --max-txn-ops 128 and --max-request-bytes 1.5 MiB). An operation larger than the byte
  // limit goes alone.
  static constexpr size_t kMaxTxnOps = 128;
  static constexpr uint64_t kMaxTxnBytes = 1 << 20;
  static constexpr uint64_t kMaxQueuedBytes = 16 << 20;
  // A request whose outcome is unknown is tried this many times in all, this far apart.
  static constexpr int kRequestAttempts = 10;
  static constexpr absl::Duration kRetryDelay = absl::Milliseconds(500);
  // A lost watch is reopened at most this many times in a row without an event in between.
  static constexpr int kWatchReopens = 5;

  // `on_progress` gets the count of keys mirrored so far, every progress interval.
  Mirror(kj::AsyncIoContext& io, net::Client& source, net::Client& destination,
         MirrorOptions options, std::function<void(int64_t mirrored)> on_progress);

  // Copies the base, then follows the source until `stop` resolves (OK) or a request fails.
  absl::Status Run(kj::Promise<void> stop);

  int64_t mirrored() const { return mirrored_; }
  // The source revision the destination reflects (0 before the base is copied).
  mvcc::Revision revision() const { return applied_revision_; }

 private:
  struct Queue;

  absl::Status CopyBase();
  absl::Status FollowUpdates();
  // Applies one watch response's events: one destination txn per source revision.
  absl::Status ApplyEvents(const std::vector<mvcc::Event>& events);
  // Writes `ops` as destination txns of at most kMaxTxnOps / kMaxTxnBytes each.
  absl::Status WriteOps(std::vector<mvcc::RequestOp> ops);
  absl::StatusOr<server::Response> CallWithRetries(net::Client& client, server::Request request);
  std::string RangeStart() const;
  std::string RangeEnd() const;
  absl::StatusOr<std::string> DestinationKey(const std::string& source_key) const;
  // The error for a compacted revision the mirror still needed, saying what the destination
  // holds.
  absl::Status Compacted(const absl::Status& status) const;
  kj::Promise<void> ReportProgress();
  // Ends the wait of FollowUpdates for the next watch response (one came, or stop).
  void Wake();

  kj::AsyncIoContext& io_;
  net::Client& source_;
  net::Client& destination_;
  const MirrorOptions options_;
  std::function<void(int64_t)> on_progress_;
  bool stopped_ = false;
  kj::Own<kj::PromiseFulfiller<void>> wake_;  // while FollowUpdates waits
  int64_t mirrored_ = 0;
  mvcc::Revision base_revision_ = 0;
  mvcc::Revision applied_revision_ = 0;
};

}  // namespace kvstore::ctl

#endif  // KVSTORE_TOOLS_CTL_MIRROR_H_
