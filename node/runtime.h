#ifndef KVSTORE_NODE_RUNTIME_H_
#define KVSTORE_NODE_RUNTIME_H_

// The node's runtime: one kj event-loop thread drives the member library (node/member.h) with
// wall-clock ticks, POSIX files and the LMDB backend; WAL fsyncs run on a thread of their own and
// report back to the loop, so group commit and a leader's parallel disk write work; peers and
// clients reach it through net/ (Cap'n Proto). It implements net::MemberService for the RPC
// services. Nothing slow blocks the loop: a sync runs elsewhere, peers have bounded queues.
//
// Data directory layout (etcd's): <data-dir>/member/wal (the WAL and received snapshot files),
// <data-dir>/member/db (LMDB), <data-dir>/member/lock (held while the process runs: a second
// process on the same data dir is refused).

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/server/server.h"
#include "kj/async-io.h"
#include "kj/async.h"
#include "kj/time.h"
#include "net/member_service.h"
#include "node/log.h"
#include "node/member.h"
#include "node/metrics.h"
#include "store/lmdb_backend.h"
#include "store/posix_file_system.h"

namespace kvstore::node {

struct RuntimeOptions {
  raft::NodeId id = raft::kNoNode;
  std::string name;
  // The URLs clients reach this member at (--advertise-client-urls), published with its name.
  std::vector<std::string> client_urls;
  std::string data_dir;
  uint64_t cluster_id = 0;
  // Founding members (an empty WAL with these bootstraps a new cluster); empty to join.
  std::vector<server::Member> founding;
  int64_t heartbeat_interval_ms = 100;  // one Raft tick
  int64_t election_timeout_ms = 1000;
  // Progress notifications to watchers created with progress_notify (etcd's
  // --experimental-watch-progress-notify-interval, 10 minutes by default).
  int64_t watch_progress_notify_interval_ms = 10 * 60 * 1000;
  uint64_t snapshot_count = 100000;  // applied entries between WAL compactions (etcd's default)
  uint64_t quota_backend_bytes = server::kDefaultQuotaBytes;
  uint64_t max_request_bytes = server::kDefaultMaxRequestBytes;
  // The size each WAL segment is preallocated to (--experimental-wal-segment-bytes).
  uint64_t wal_segment_bytes = store::kDefaultSegmentBytes;
  // Auth tokens: a JWT provider (--auth-token=jwt,...; null: simple tokens) and the simple
  // tokens' TTL (--auth-token-ttl).
  std::shared_ptr<auth::TokenProvider> token_provider;
  int64_t auth_token_ttl_seconds = 300;
  int64_t backend_batch_interval_ms = 100;  // etcd's --backend-batch-interval
  uint64_t backend_batch_limit = 10000;     // etcd's --backend-batch-limit
};

// Where the runtime sends Raft messages (net::PeerClient per peer, in the node).
class PeerRouter {
 public:
  virtual ~PeerRouter() = default;
  virtual void Send(const raft::Message& message) = 0;
  // Forwards a leader-only request to `leader` (net::PeerForwarder in the node); resolves with
  // the leader's response or an error when it could not be reached within `timeout`.
  virtual kj::Promise<absl::StatusOr<server::Response>> Forward(raft::NodeId leader,
                                                                server::Request request,
                                                                kj::Duration timeout) {
    return absl::StatusOr<server::Response>(
        absl::UnavailableError("this member forwards no requests"));
  }
  // A peer's Raft stream told its peer URLs (net::MemberService::LearnPeerUrls): the router may
  // keep them to reach a sender it does not otherwise know. Default: ignored.
  virtual void LearnRoute(raft::NodeId peer, std::vector<std::string> peer_urls) {}
};

class CommitTimingBackend;  // runtime.cc: times the LMDB backend's durable commits

class Runtime : public net::MemberService,
                public PeerTransport,
                public SyncExecutor,
                public ClientSink,
                private kj::TaskSet::ErrorHandler {
 public:
  // Locks the data directory, opens the backend and the WAL, starts the member, its tick and
  // flush timers and its sync thread. `router` may be set later (set_router) but before the
  // first message leaves.
  static absl::StatusOr<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options,
                                                         kj::AsyncIoContext& io, Logger* log);
  ~Runtime() noexcept override;

  void set_router(PeerRouter* router) { router_ = router; }
  // Resolves when the member stops with its reason: a storage failure, or its removal from the
  // cluster (kMemberRemoved), after which kvnode exits as etcd's removed member does.
  kj::Promise<absl::Status> Stopped();
  // A clean stop: a leader first hands leadership to another voter and waits until that voter
  // leads (at most etcd's request timeout: 5 s plus two election timeouts), then the backend is
  // flushed.
  kj::Promise<void> Shutdown();
  // The Raft snapshot send to `peer` succeeded or failed (from the peer transport).
  void ReportSnapshot(raft::NodeId peer, bool succeeded);
  void ReportUnreachable(raft::NodeId peer);
  // `peer` refused this member's messages because it belongs to another cluster (`why` names
  // both cluster ids): Status lists it among its errors while it keeps happening (it was reported
  // within kPeerRefusalMemory), as a misconfigured member must not serve silently.
  void ReportPeerRefusal(raft::NodeId peer, const std::string& why);
  // `peer` refused this member's messages as a removed member's (net::MemberRemovedOf: its 410
  // Gone): this member was removed while it was down or cut off, and stops.
  void ReportRemovedByPeer(raft::NodeId peer, const std::string& why);
  // Long beyond the peer transport's longest reconnection backoff (a refusal repeats within
  // that), and beyond a status poller's interval.
  static constexpr kj::Duration kPeerRefusalMemory = 15 * kj::SECONDS;
  server::Server& server() { return member_->server(); }
  // The member's metrics, with etcd's names (runtime.cc lists them). Read on the loop thread.
  Metrics& metrics() { return metrics_; }
  // A request of the node's own (the /health probe): served as Call serves a client's, but not
  // counted as a client request.
  kj::Promise<server::Response> CallInternal(server::Request request) {
    return Submit(std::move(request), /*counted=*/false);
  }

  // net::MemberService. A request only the leader serves (lease keep-alive and time-to-live,
  // member promote) that this member answers NOT_LEADER goes to the leader through the router,
  // as etcd forwards it: while there is no leader it waits for one, and it gives up after etcd's
  // request timeout (5 s plus two election timeouts) with NO_LEADER if no leader was known, or
  // TIMEOUT if the leader could not be reached.
  kj::Promise<server::Response> Call(server::Request request) override;
  kj::Promise<server::Response> CallForwarded(server::Request request) override;
  absl::StatusOr<mvcc::WatchId> Watch(const mvcc::WatchRequest& request,
                                      const net::WatchCaller& caller,
                                      net::WatchSink* sink) override;
  absl::Status CancelWatch(mvcc::WatchId id) override;
  void RequestWatchProgress() override;
  net::MemberStatusInfo Status() override;
  kj::Promise<absl::StatusOr<std::shared_ptr<net::SnapshotCopy>>> TakeSnapshot() override;
  uint64_t cluster_id() const override { return options_.cluster_id; }
  absl::Status Step(raft::Message message) override;
  std::vector<server::Member> Members() override { return member_->server().Members(); }
  // Handed to the router (PeerRouter::LearnRoute).
  void LearnPeerUrls(raft::NodeId sender, std::vector<std::string> peer_urls) override {
    if (router_ != nullptr) router_->LearnRoute(sender, std::move(peer_urls));
  }

  // PeerTransport, SyncExecutor, ClientSink (the member's callbacks).
  void Send(const raft::Message& message) override;
  void Start(store::Wal::SyncBatch* batch) override;
  void OnResponse(const server::Response& response) override;
  void OnWatchResponse(const mvcc::WatchResponse& response) override;
  void OnStop(const absl::Status& why) override;

 private:
  Runtime(const RuntimeOptions& options, kj::AsyncIoContext& io, Logger* log);
  absl::Status Open();
  kj::Promise<void> TickLoop();
  kj::Promise<void> FlushLoop();
  kj::Promise<void> ProgressNotifyLoop();
  // Carries out the member's pending Ready once the events queued in this turn have run: a
  // peer's frame of messages or a batch of client requests then costs one Ready (one WAL
  // append, one append message per follower) instead of one per message or request.
  void DrainSoon();
  void SyncThreadLoop();
  void LogLeaderChanges();
  void RegisterMetrics();
  void CollectMetrics();
  // Call without counting it as a client request (the runtime's own requests).
  kj::Promise<server::Response> Submit(server::Request request, bool counted);
  // Serves a leader-only request at the leader, this member or another, until `deadline`
  // (see Call).
  kj::Promise<server::Response> ServeAtLeader(server::Request request, kj::TimePoint deadline);
  // A promotion the leader committed is answered once this member has applied it too (or at
  // `deadline`), so the client's next member list here shows it.
  kj::Promise<server::Response> AwaitPromotionApplied(server::Response response, raft::NodeId id,
                                                      kj::TimePoint deadline);
  // A forwarded answer with this member's header, as etcd fills it.
  server::Response WithLocalHeader(server::Response response);
  // Counts a client request of `type` started (grpc_server_started_total); false for a type
  // that is not counted (a stream's).
  bool CountStarted(server::RequestType type);
  // grpc_server_handled_total's child for (request type, code), created on first use.
  Counter& HandledCounter(server::RequestType type, absl::StatusCode code);

  RuntimeOptions options_;
  // First, so it outlives everything that updates it (the sync thread observes fsyncs).
  Metrics metrics_;
  struct MetricRefs {
    Gauge* has_leader = nullptr;
    Gauge* is_leader = nullptr;
    Counter* leader_changes = nullptr;
    Gauge* proposals_committed = nullptr;
    Gauge* proposals_applied = nullptr;
    Gauge* proposals_pending = nullptr;
    Counter* proposals_failed = nullptr;
    Histogram* wal_fsync = nullptr;  // observed on the sync thread
    Histogram* backend_commit = nullptr;
    Gauge* db_size = nullptr;
  } metric_;
  kj::AsyncIoContext& io_;
  Logger* log_;
  store::PosixFileSystem fs_;
  std::unique_ptr<store::FileLock> lock_;
  std::unique_ptr<store::LmdbBackend> backend_;
  std::unique_ptr<CommitTimingBackend> timed_backend_;  // backend_ as the member sees it
  std::unique_ptr<Member> member_;
  PeerRouter* router_ = nullptr;
  // Background tasks (timers, sync completions); their errors are logged (taskFailed).
  void taskFailed(kj::Exception&& exception) override;
  kj::Own<kj::TaskSet> tasks_;
  bool drain_scheduled_ = false;  // DrainSoon's Drain is queued

  struct PendingCall {
    kj::Own<kj::PromiseFulfiller<server::Response>> fulfiller;
    server::RequestType type;
    bool proposal;  // goes through the log (etcd's proposals_pending counts these)
    bool counted;   // a client request (grpc_server_handled_total counts these)
  };
  std::map<server::RequestId, PendingCall> pending_;
  int64_t pending_proposals_ = 0;
  // The grpc_server_* children by label values, so a request allocates no labels.
  std::map<server::RequestType, Counter*> started_counters_;
  std::map<std::pair<server::RequestType, absl::StatusCode>, Counter*> handled_counters_;
  // Peer round-trip times from Raft heartbeats: when the oldest unanswered heartbeat to each
  // peer left.
  std::map<raft::NodeId, kj::TimePoint> heartbeat_sent_;
  // ReportPeerRefusal: why each peer last refused this member, and when.
  std::map<raft::NodeId, std::pair<std::string, kj::TimePoint>> peer_refusals_;
  std::map<mvcc::WatchId, net::WatchSink*> watches_;
  kj::Own<kj::PromiseFulfiller<absl::Status>> stopped_fulfiller_;
  kj::ForkedPromise<absl::Status> stopped_;
  raft::NodeId last_leader_ = raft::kNoNode;

  // The sync thread: one batch at a time (the member starts the next when this one is done).
  std::thread sync_thread_;
  std::mutex sync_mutex_;
  std::condition_variable sync_wake_;
  store::Wal::SyncBatch* sync_batch_ = nullptr;
  kj::Own<kj::CrossThreadPromiseFulfiller<absl::Status>> sync_done_;
  bool sync_exit_ = false;

  // Snapshot downloads' copies of the backend (TakeSnapshot), each on a thread of its own, into
  // member/snapshot-<pid>-<n>.tmp; joined once done, and all at the destruction.
  struct SnapshotThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<SnapshotThread> snapshot_threads_;
  uint64_t snapshot_copies_ = 0;
};

// The member id of a founding member, as etcd derives it: from its peer URLs and the cluster
// token (never 0).
raft::NodeId MemberIdOf(const std::vector<std::string>& peer_urls, const std::string& token);
// The cluster id of a new cluster, as etcd derives it: from the sorted ids of its founding
// members (which already include the token), never 0. A founding member given a wrong
// --initial-cluster entry derives another id, so its peers refuse it (net/peer_service.h). A member
// joining later learns the id from the cluster (kvnode: Peer.members); every member keeps it in
// its data directory (kvnode: <data-dir>/member/cluster_id).
uint64_t ClusterIdOf(std::vector<raft::NodeId> founding_ids);
// The shortest lease TTL a member grants, as etcd 3.4's server.go derives its lessor's
// MinLeaseTTL: (3 * electionTicks / 2) heartbeats (integer ticks, electionTicks = election
// timeout / heartbeat interval), rounded up to whole seconds: 2 s at the defaults (100 ms,
// 1000 ms), 7 s at 1000 ms and 5000 ms. A lease cannot expire before a new leader could be elected.
int64_t MinLeaseTtlSeconds(int64_t heartbeat_interval_ms, int64_t election_timeout_ms);

}  // namespace kvstore::node

#endif  // KVSTORE_NODE_RUNTIME_H_
