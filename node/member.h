#ifndef KVSTORE_NODE_MEMBER_H_
#define KVSTORE_NODE_MEMBER_H_

// The member library: the one driver of a server core (core/server), shared by the kvnode binary
// and the simulator, so every simulated seed tests the production driver.
//
// It carries out each Ready in Raft's order and owns the durable state:
//   - persist: the Ready's Raft write is appended to the WAL (store/wal.h) at once; messages are
//     sent right after, so a leader writes its disk in parallel with its followers (Raft thesis
//     §10.2.1: core/raft holds back whatever depends on unpersisted state);
//   - group commit: one WAL sync runs at a time on the SyncExecutor (the node's fsync thread, the
//     simulator's disk); appends arriving meanwhile go into the next. When a sync completes, its
//     persist id is acknowledged to the core (OnPersisted), which releases held votes and append
//     acknowledgements;
//   - apply and respond: the core applies committed entries inside GetReady; responses and watch
//     events go to the ClientSink;
//   - backend cadence: the MVCC backend commits in batches (mvcc::Backend::Commit); before the
//     member drops log entries it flushes the backend, so the WAL always holds every entry the
//     backend might have lost, and a restart replays them exactly once (the consistent index);
//   - compaction: every wal_compact_entries applied entries, a snapshot marker at the applied
//     index; the WAL removes the segments it covers once the marker is durable;
//   - received snapshots: saved by the WAL as a checksummed file before their marker; on restart
//     a snapshot newer than the backend's consistent index is restored from that file.
// A storage failure (a failed write or fsync) stops the member for good: it takes no more events
// and tells its host, which exits (the node) or marks it down (the simulator). It never retries
// a failed fsync as if it had worked.
// Removal stops it too, as etcd stops a removed member ("the member has been permanently removed
// from the cluster", kMemberRemoved): once it has applied its own removal (a removed leader once
// it has handed over, raft's retirement), or when a peer refuses its messages as a removed
// member's (StopRemoved: etcd's rafthttp answers 410 Gone to a member removed while it was down
// or cut off). Its backend is flushed first, so its data dir, which records the removal, is
// refused at the next Open: a removed id never serves again.
//
// Single-threaded: every call, and every callback, on the host's one loop thread.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/mvcc/backend.h"
#include "core/server/server.h"
#include "store/file_system.h"
#include "store/wal.h"

namespace kvstore::node {

// Sends Raft messages to peers. Never blocks; may drop (Raft retries).
class PeerTransport {
 public:
  virtual ~PeerTransport() = default;
  virtual void Send(const raft::Message& message) = 0;
};

// Runs WAL sync batches: Run() the batch (on any thread), then call Member::OnSyncDone with its
// result on the member's thread, later, never from inside Start.
class SyncExecutor {
 public:
  virtual ~SyncExecutor() = default;
  virtual void Start(store::Wal::SyncBatch* batch) = 0;
};

// Where answers go: client responses, watch events, and the member's stop.
class ClientSink {
 public:
  virtual ~ClientSink() = default;
  virtual void OnResponse(const server::Response& response) = 0;
  virtual void OnWatchResponse(const mvcc::WatchResponse& response) = 0;
  // The member stopped (a storage failure, or kMemberRemoved) and takes no more events.
  virtual void OnStop(const absl::Status& why) = 0;
};

// Sees each Ready before the member carries it out (the simulator's checkers).
class ReadyObserver {
 public:
  virtual ~ReadyObserver() = default;
  virtual void OnReady(const server::Ready& ready) = 0;
  // What the WAL recovered, before the server core starts from it.
  virtual void OnRecovered(const raft::RestartState& state) = 0;
};

struct MemberOptions {
  // The server core's settings. Its max_committed_size_per_ready_bytes also bounds each backend
  // batch the member carries out: a restart replays its log in many bounded batches, not one.
  server::ServerConfig server;
  store::WalOptions wal;
  // Applied entries between two WAL compaction markers (etcd's --snapshot-count).
  uint64_t wal_compact_entries = 10000;
  // This member's attributes, published through the log once a leader is known and whenever
  // the cluster's record of them differs (etcd's publish): its name (--name) and the URLs
  // clients reach it at (--advertise-client-urls). Empty name: nothing is published.
  std::string name;
  std::vector<std::string> client_urls;
};

struct MemberIo {
  PeerTransport* transport = nullptr;
  SyncExecutor* sync = nullptr;
  ClientSink* sink = nullptr;
  ReadyObserver* observer = nullptr;  // optional
};

class Member {
 public:
  // Opens the WAL in `wal_dir` on `fs` and starts the server core over `backend` (not owned).
  // With `founding` members and an empty WAL, bootstraps a new cluster (the bootstrap entries
  // are made durable first); with an empty WAL and no founding members, starts empty, to join.
  // Refuses (kMemberRemoved) the data of a member that was removed from its cluster.
  // The host then calls Drain, once it can take the member's callbacks.
  static absl::StatusOr<std::unique_ptr<Member>> Open(const MemberOptions& options,
                                                      store::FileSystem* fs,
                                                      const std::string& wal_dir,
                                                      mvcc::Backend* backend, const MemberIo& io,
                                                      std::vector<server::Member> founding = {});
  ~Member();

  // Events. Each carries out every Ready it causes before returning.
  server::RequestId Submit(server::Request request);
  absl::Status Step(raft::Message message);
  // Step without carrying out the Ready it causes: a host that takes several events in one turn
  // (a peer's frame of messages, a batch of client requests) calls Drain once after them, so
  // the batch costs one Ready, one WAL append and one message per peer instead of one each.
  absl::Status StepDeferred(raft::Message message);
  void Tick();
  // Carries out pending Readies (after a direct call into server(), such as Watch).
  void Drain();
  // The sync handed to SyncExecutor::Start finished with `result`.
  void OnSyncDone(absl::Status result);
  // Makes the backend's pending batches durable (the host's idle flush). A failure stops the
  // member at once, as a failed commit in the apply path does: the backend has lost the batches
  // since its last durable commit and reads its last durable state, while the core's key index
  // still holds their revisions, so a read served now would miss keys written in them (an empty
  // answer for a key that exists). The restart replays them from the WAL. Returns failure().
  absl::Status FlushBackend();
  // A peer refused this member's messages as a removed member's (Server::Step's kMemberRemoved
  // at the peer; `why` is its answer): the member stops as if it had applied its removal, unless
  // it is a leader retiring after its own removal, which stops once it has handed over.
  void StopRemoved(const absl::Status& why);

  bool stopped() const { return !failure_.ok(); }
  const absl::Status& failure() const { return failure_; }
  server::Server& server() { return *server_; }
  const server::Server& server() const { return *server_; }
  const store::Wal& wal() const { return *wal_; }
  // The highest persist id acknowledged to the core.
  uint64_t persisted_id() const { return persisted_id_; }

 private:
  Member(const MemberOptions& options, mvcc::Backend* backend, const MemberIo& io);
  void MaybeStartSync();
  void MaybePublish();
  void MaybeCompact();
  // Stops the member once it has applied its own removal and leads no more.
  void MaybeStopRemoved();
  void Stop(absl::Status why);

  MemberOptions options_;
  mvcc::Backend* backend_;
  MemberIo io_;
  std::unique_ptr<store::Wal> wal_;
  std::unique_ptr<server::Server> server_;
  std::unique_ptr<store::Wal::SyncBatch> sync_;  // in flight
  uint64_t persisted_id_ = 0;
  uint64_t appended_id_ = 0;  // the last persist id appended to the WAL
  // The publish request in flight (0: none), and ticks to wait before the next try.
  server::RequestId publish_id_ = 0;
  int publish_backoff_ticks_ = 0;
  // The term and vote last appended: a hard state that changes neither needs no sync.
  raft::HardState appended_hard_state_;
  raft::Index compacted_index_ = 0;
  absl::Status failure_;
  bool draining_ = false;
};

}  // namespace kvstore::node

#endif  // KVSTORE_NODE_MEMBER_H_
