#include "node/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "kj/time.h"
#include "kj/timer.h"
#include "net/cross_thread.h"
#include "store/file_system.h"

namespace kvstore::node {
namespace {

// How long a request may wait to apply before it answers TIMEOUT (etcd's 5 s request timeout).
constexpr int64_t kRequestTimeoutMs = 5000;
// Applied entries between compactions of the in-memory Raft log. Here a compaction only marks
// (index, term, configuration), since the backend is the durable state, so it is cheap; etcd
// keeps --snapshot-count entries (100,000) in memory because its snapshots copy state. With at
// most this many plus the 5,000 catch-up entries in memory, 100,000 puts of 256 B leave about
// 30 MB less resident. --snapshot-count keeps etcd's meaning for the WAL: segments are dropped
// after that many applied entries.
constexpr uint64_t kRaftLogCompactEntriesMax = 10000;

server::Response ErrorResponse(server::RequestType type, absl::Status status) {
  server::Response response;
  response.type = type;
  response.status = std::move(status);
  return response;
}

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// etcd's bucket layouts (etcd 3.4: wal/metrics.go, mvcc/backend/metrics.go,
// etcdserver/api/rafthttp/metrics.go).
std::vector<double> DiskBuckets() { return ExponentialBuckets(0.001, 2, 14); }
std::vector<double> PeerRttBuckets() { return ExponentialBuckets(0.0001, 2, 16); }

bool TxnReadOnly(const mvcc::TxnRequest& txn) {
  for (const auto* branch : {&txn.success, &txn.failure}) {
    for (const mvcc::RequestOp& op : *branch) {
      if (op.kind != mvcc::RequestOp::Kind::kRange) return false;
    }
  }
  return true;
}

// Between two tries of a forward to the leader (etcd's throttle in LeaseRenew).
constexpr int64_t kForwardRetryDelayMs = 50;

// Snapshot downloads' copies of the backend, in member/ (Runtime::TakeSnapshot).
constexpr absl::string_view kSnapshotCopyPrefix = "snapshot-";

// Requests only the leader serves, which a follower forwards to it (etcd forwards lease renewal
// and time-to-live over its peer API, and member promote; see Runtime::Call).
bool LeaderOnly(server::RequestType type) {
  return type == server::RequestType::kLeaseKeepAlive ||
         type == server::RequestType::kLeaseTimeToLive ||
         type == server::RequestType::kMemberPromote;
}

// Requests that etcd proposes through the log as internal Raft requests (what its
// proposals_pending and proposals_failed_total count): writes, compaction, lease grant and
// revoke, alarm changes, every auth request. Reads (a read-only txn too) use ReadIndex;
// membership changes and leader moves take their own paths.
bool IsProposal(const server::Request& request) {
  switch (request.type) {
    case server::RequestType::kPut:
    case server::RequestType::kDeleteRange:
    case server::RequestType::kCompact:
    case server::RequestType::kLeaseGrant:
    case server::RequestType::kLeaseRevoke:
    case server::RequestType::kAlarmDisarm:
    case server::RequestType::kAlarmActivate:
    case server::RequestType::kAuthEnable:
    case server::RequestType::kAuthDisable:
    case server::RequestType::kAuthenticate:
    case server::RequestType::kUserAdd:
    case server::RequestType::kUserDelete:
    case server::RequestType::kUserChangePassword:
    case server::RequestType::kUserGrantRole:
    case server::RequestType::kUserRevokeRole:
    case server::RequestType::kUserGet:
    case server::RequestType::kUserList:
    case server::RequestType::kRoleAdd:
    case server::RequestType::kRoleDelete:
    case server::RequestType::kRoleGrantPermission:
    case server::RequestType::kRoleRevokePermission:
    case server::RequestType::kRoleGet:
    case server::RequestType::kRoleList:
      return true;
    case server::RequestType::kTxn:
      return !TxnReadOnly(request.txn);
    default:
      return false;
  }
}

// A proposal that failed to commit (etcd counts a dropped proposal and a timeout), not one that
// applied with an error of its own (a compacted revision, a missing lease).
bool ProposalFailed(const absl::Status& status) {
  switch (CodeOf(status)) {
    case ErrorCode::kTimeout:
    case ErrorCode::kNoLeader:
    case ErrorCode::kNotLeader:
    case ErrorCode::kLeadershipChanged:
      return true;
    default:
      return false;
  }
}

// etcd's v3 API method that serves each request type, for the grpc_server_* labels. nullptr
// for a stream (LeaseKeepAlive: a gRPC stream counts once when it ends, not per message). No
// default: a new request type must be given its method here (-Wswitch says so).
struct ApiMethod {
  const char* service;
  const char* method;
};
const ApiMethod* ServiceMethod(server::RequestType type) {
  using T = server::RequestType;
  static constexpr ApiMethod kRange{"etcdserverpb.KV", "Range"}, kPut{"etcdserverpb.KV", "Put"},
      kDeleteRange{"etcdserverpb.KV", "DeleteRange"}, kTxn{"etcdserverpb.KV", "Txn"},
      kCompact{"etcdserverpb.KV", "Compact"}, kLeaseGrant{"etcdserverpb.Lease", "LeaseGrant"},
      kLeaseRevoke{"etcdserverpb.Lease", "LeaseRevoke"},
      kLeaseTimeToLive{"etcdserverpb.Lease", "LeaseTimeToLive"},
      kLeaseLeases{"etcdserverpb.Lease", "LeaseLeases"},
      kMemberList{"etcdserverpb.Cluster", "MemberList"},
      kMemberAdd{"etcdserverpb.Cluster", "MemberAdd"},
      kMemberPromote{"etcdserverpb.Cluster", "MemberPromote"},
      kMemberRemove{"etcdserverpb.Cluster", "MemberRemove"},
      kAlarm{"etcdserverpb.Maintenance", "Alarm"}, kHashKV{"etcdserverpb.Maintenance", "HashKV"},
      kDefragment{"etcdserverpb.Maintenance", "Defragment"},
      kMoveLeader{"etcdserverpb.Maintenance", "MoveLeader"},
      kAuthEnable{"etcdserverpb.Auth", "AuthEnable"},
      kAuthDisable{"etcdserverpb.Auth", "AuthDisable"},
      kAuthenticate{"etcdserverpb.Auth", "Authenticate"}, kUserAdd{"etcdserverpb.Auth", "UserAdd"},
      kUserDelete{"etcdserverpb.Auth", "UserDelete"},
      kUserChangePassword{"etcdserverpb.Auth", "UserChangePassword"},
      kUserGrantRole{"etcdserverpb.Auth", "UserGrantRole"},
      kUserRevokeRole{"etcdserverpb.Auth", "UserRevokeRole"},
      kUserGet{"etcdserverpb.Auth", "UserGet"}, kUserList{"etcdserverpb.Auth", "UserList"},
      kRoleAdd{"etcdserverpb.Auth", "RoleAdd"}, kRoleDelete{"etcdserverpb.Auth", "RoleDelete"},
      kRoleGrantPermission{"etcdserverpb.Auth", "RoleGrantPermission"},
      kRoleRevokePermission{"etcdserverpb.Auth", "RoleRevokePermission"},
      kRoleGet{"etcdserverpb.Auth", "RoleGet"}, kRoleList{"etcdserverpb.Auth", "RoleList"};
  switch (type) {
    case T::kRange:
      return &kRange;
    case T::kPut:
      return &kPut;
    case T::kDeleteRange:
      return &kDeleteRange;
    case T::kTxn:
      return &kTxn;
    case T::kCompact:
      return &kCompact;
    case T::kLeaseGrant:
      return &kLeaseGrant;
    case T::kLeaseRevoke:
      return &kLeaseRevoke;
    case T::kLeaseTimeToLive:
      return &kLeaseTimeToLive;
    case T::kLeaseLeases:
      return &kLeaseLeases;
    case T::kMemberList:
      return &kMemberList;
    case T::kMemberAdd:
      return &kMemberAdd;
    case T::kMemberPromote:
      return &kMemberPromote;
    case T::kMemberRemove:
      return &kMemberRemove;
    case T::kAlarmList:
    case T::kAlarmDisarm:
    case T::kAlarmActivate:
      return &kAlarm;
    case T::kHash:
      return &kHashKV;
    case T::kDefragment:
      return &kDefragment;
    case T::kMoveLeader:
      return &kMoveLeader;
    case T::kAuthEnable:
      return &kAuthEnable;
    case T::kAuthDisable:
      return &kAuthDisable;
    case T::kAuthenticate:
      return &kAuthenticate;
    case T::kUserAdd:
      return &kUserAdd;
    case T::kUserDelete:
      return &kUserDelete;
    case T::kUserChangePassword:
      return &kUserChangePassword;
    case T::kUserGrantRole:
      return &kUserGrantRole;
    case T::kUserRevokeRole:
      return &kUserRevokeRole;
    case T::kUserGet:
      return &kUserGet;
    case T::kUserList:
      return &kUserList;
    case T::kRoleAdd:
      return &kRoleAdd;
    case T::kRoleDelete:
      return &kRoleDelete;
    case T::kRoleGrantPermission:
      return &kRoleGrantPermission;
    case T::kRoleRevokePermission:
      return &kRoleRevokePermission;
    case T::kRoleGet:
      return &kRoleGet;
    case T::kRoleList:
      return &kRoleList;
    case T::kLeaseKeepAlive:
      return nullptr;
  }
  return nullptr;  // not a RequestType value
}

// gRPC's code names as go-grpc-prometheus prints them (absl's codes are gRPC's codes).
const char* GrpcCodeName(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return "OK";
    case absl::StatusCode::kCancelled:
      return "Canceled";
    case absl::StatusCode::kInvalidArgument:
      return "InvalidArgument";
    case absl::StatusCode::kDeadlineExceeded:
      return "DeadlineExceeded";
    case absl::StatusCode::kNotFound:
      return "NotFound";
    case absl::StatusCode::kAlreadyExists:
      return "AlreadyExists";
    case absl::StatusCode::kPermissionDenied:
      return "PermissionDenied";
    case absl::StatusCode::kResourceExhausted:
      return "ResourceExhausted";
    case absl::StatusCode::kFailedPrecondition:
      return "FailedPrecondition";
    case absl::StatusCode::kAborted:
      return "Aborted";
    case absl::StatusCode::kOutOfRange:
      return "OutOfRange";
    case absl::StatusCode::kUnimplemented:
      return "Unimplemented";
    case absl::StatusCode::kInternal:
      return "Internal";
    case absl::StatusCode::kUnavailable:
      return "Unavailable";
    case absl::StatusCode::kDataLoss:
      return "DataLoss";
    case absl::StatusCode::kUnauthenticated:
      return "Unauthenticated";
    default:
      return "Unknown";
  }
}

}  // namespace

// The LMDB backend as the member sees it, timing its durable commits for
// etcd_disk_backend_commit_duration_seconds. LmdbBackend commits durably inside Commit() when
// batch_limit_commits batches are pending or batch_interval_ms passed since the first one
// (store/lmdb_backend.h), and in Flush() when any batch is pending. It reads the clock through
// LmdbOptions::now_ms exactly once per Commit() that ends a batch; this wrapper hands it that
// clock, so it sees the same times and applies the same rule to know which calls committed.
class CommitTimingBackend : public mvcc::Backend {
 public:
  CommitTimingBackend(Histogram* commit_seconds, int64_t batch_interval_ms,
                      int64_t batch_limit_commits)
      : commit_seconds_(commit_seconds),
        batch_interval_ms_(batch_interval_ms),
        batch_limit_commits_(batch_limit_commits) {}
  void set_inner(store::LmdbBackend* inner) { inner_ = inner; }
  // LmdbOptions::now_ms.
  int64_t NowMs() {
    clock_read_ = true;
    last_now_ms_ = SteadyNowNs() / 1'000'000;
    return last_now_ms_;
  }

  std::optional<std::string> Get(mvcc::Bucket bucket, absl::string_view key) const override {
    return inner_->Get(bucket, key);
  }
  void Range(mvcc::Bucket bucket, absl::string_view start, absl::string_view end,
             Visitor visit) const override {
    inner_->Range(bucket, start, end, visit);
  }
  void Put(mvcc::Bucket bucket, absl::string_view key, absl::string_view value) override {
    inner_->Put(bucket, key, value);
  }
  void Delete(mvcc::Bucket bucket, absl::string_view key) override { inner_->Delete(bucket, key); }
  absl::Status Commit() override {
    clock_read_ = false;
    const int64_t start_ns = SteadyNowNs();
    absl::Status status = inner_->Commit();
    if (clock_read_ && status.ok()) {
      if (pending_batches_++ == 0) first_pending_ms_ = last_now_ms_;
      if (pending_batches_ >= batch_limit_commits_ ||
          last_now_ms_ - first_pending_ms_ >= batch_interval_ms_) {
        Committed(start_ns);
      }
    }
    return status;
  }
  absl::Status Flush() override {
    const int64_t start_ns = SteadyNowNs();
    absl::Status status = inner_->Flush();
    if (pending_batches_ > 0 && status.ok()) Committed(start_ns);
    return status;
  }
  uint64_t SizeBytes() const override { return inner_->SizeBytes(); }
  absl::Status Defragment() override {
    pending_batches_ = 0;  // defragmentation commits first; etcd times it apart (defrag metric)
    return inner_->Defragment();
  }

 private:
  void Committed(int64_t start_ns) {
    commit_seconds_->Observe(static_cast<double>(SteadyNowNs() - start_ns) / 1e9);
    pending_batches_ = 0;
  }

  Histogram* commit_seconds_;
  const int64_t batch_interval_ms_;
  const int64_t batch_limit_commits_;
  store::LmdbBackend* inner_ = nullptr;
  bool clock_read_ = false;
  int64_t last_now_ms_ = 0;
  int64_t pending_batches_ = 0;
  int64_t first_pending_ms_ = 0;
};

raft::NodeId MemberIdOf(const std::vector<std::string>& peer_urls, const std::string& token) {
  std::vector<std::string> sorted = peer_urls;
  std::sort(sorted.begin(), sorted.end());
  uint64_t id = Fnv1a64(absl::StrCat(absl::StrJoin(sorted, ","), "\n", token));
  return id == raft::kNoNode ? 1 : id;
}

uint64_t ClusterIdOf(std::vector<raft::NodeId> founding_ids) {
  std::sort(founding_ids.begin(), founding_ids.end());
  std::string text = "cluster";
  for (raft::NodeId id : founding_ids) absl::StrAppend(&text, "\n", absl::Hex(id));
  const uint64_t id = Fnv1a64(text);
  return id == 0 ? 1 : id;  // 0 asks Peer.members for the cluster id (peer.capnp)
}

int64_t MinLeaseTtlSeconds(int64_t heartbeat_interval_ms, int64_t election_timeout_ms) {
  const int64_t election_ticks = election_timeout_ms / heartbeat_interval_ms;
  const int64_t min_ttl_ms = (3 * election_ticks / 2) * heartbeat_interval_ms;
  return (min_ttl_ms + 999) / 1000;  // etcd: math.Ceil(minTTL.Seconds())
}

Runtime::Runtime(const RuntimeOptions& options, kj::AsyncIoContext& io, Logger* log)
    : options_(options),
      io_(io),
      log_(log),
      tasks_(kj::heap<kj::TaskSet>(static_cast<kj::TaskSet::ErrorHandler&>(*this))),
      stopped_(nullptr) {
  auto paf = kj::newPromiseAndFulfiller<absl::Status>();
  stopped_fulfiller_ = std::move(paf.fulfiller);
  stopped_ = paf.promise.fork();
  RegisterMetrics();
}

// etcd's metric names and help texts (etcd 3.4), where kvnode's meaning is the same.
void Runtime::RegisterMetrics() {
  metric_.has_leader = &metrics_.GetGauge(
      "etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.");
  metric_.is_leader = &metrics_.GetGauge(
      "etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.");
  metric_.leader_changes = &metrics_.GetCounter("etcd_server_leader_changes_seen_total",
                                                "The number of leader changes seen.");
  // etcd declares these two gauges despite their _total suffix (they are the commit and
  // applied indexes); kept as etcd has them, so its dashboards and alerts read them unchanged.
  metric_.proposals_committed =
      &metrics_.GetGauge("etcd_server_proposals_committed_total",
                         "The total number of consensus proposals committed.");
  metric_.proposals_applied = &metrics_.GetGauge(
      "etcd_server_proposals_applied_total", "The total number of consensus proposals applied.");
  metric_.proposals_pending = &metrics_.GetGauge(
      "etcd_server_proposals_pending", "The current number of pending proposals to commit.");
  metric_.proposals_failed = &metrics_.GetCounter("etcd_server_proposals_failed_total",
                                                  "The total number of failed proposals seen.");
  metric_.wal_fsync =
      &metrics_.GetHistogram("etcd_disk_wal_fsync_duration_seconds",
                             "The latency distributions of fsync called by WAL.", DiskBuckets());
  metric_.backend_commit = &metrics_.GetHistogram(
      "etcd_disk_backend_commit_duration_seconds",
      "The latency distributions of commit called by backend.", DiskBuckets());
  metric_.db_size =
      &metrics_.GetGauge("etcd_mvcc_db_total_size_in_bytes",
                         "Total size of the underlying database physically allocated in bytes.");
  metrics_
      .GetGauge("etcd_server_id",
                "Server or member ID in hexadecimal format. 1 for 'server_id' label with current "
                "ID.",
                {{"server_id", absl::StrCat(absl::Hex(options_.id))}})
      .Set(1);
  // The API version kvnode answers as (kvnode's --version names it).
  metrics_
      .GetGauge("etcd_cluster_version",
                "Which version is running. 1 for 'cluster_version' label with current cluster "
                "version",
                {{"cluster_version", "3.4"}})
      .Set(1);
  metrics_.AddCollector([this] { CollectMetrics(); });
  AddProcessMetrics(metrics_);
}

void Runtime::CollectMetrics() {
  if (member_ == nullptr) return;
  const server::Server& server = member_->server();
  const raft::Status raft = server.RaftStatus();
  metric_.has_leader->Set(raft.soft_state.leader != raft::kNoNode ? 1 : 0);
  metric_.is_leader->Set(raft.soft_state.role == raft::Role::kLeader ? 1 : 0);
  metric_.proposals_committed->Set(static_cast<double>(raft.hard_state.commit));
  metric_.proposals_applied->Set(static_cast<double>(server.applied_index()));
  metric_.proposals_pending->Set(static_cast<double>(pending_proposals_));
  metric_.db_size->Set(static_cast<double>(backend_->SizeBytes()));
}

Counter& Runtime::HandledCounter(server::RequestType type, absl::StatusCode code) {
  Counter*& counter = handled_counters_[{type, code}];
  if (counter == nullptr) {
    const ApiMethod* method = ServiceMethod(type);
    counter = &metrics_.GetCounter(
        "grpc_server_handled_total",
        "Total number of RPCs completed on the server, regardless of success or failure.",
        {{"grpc_code", GrpcCodeName(code)},
         {"grpc_method", method->method},
         {"grpc_service", method->service},
         {"grpc_type", "unary"}});
  }
  return *counter;
}

Runtime::~Runtime() noexcept {
  {
    std::lock_guard<std::mutex> lock(sync_mutex_);
    sync_exit_ = true;
  }
  sync_wake_.notify_all();
  if (sync_thread_.joinable()) sync_thread_.join();
  // Copies in progress read the backend: they end before it goes.
  for (SnapshotThread& copy : snapshot_threads_) copy.thread.join();
  snapshot_threads_.clear();
  tasks_ = nullptr;
  member_.reset();
  backend_.reset();
}

// Errors of background tasks are bugs, never expected control flow: logged, not rethrown.
void Runtime::taskFailed(kj::Exception&& exception) {
  log_->Error("background task failed", {{"error", exception.getDescription().cStr()}});
}

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(const RuntimeOptions& options,
                                                         kj::AsyncIoContext& io, Logger* log) {
  if (options.heartbeat_interval_ms <= 0 ||
      options.election_timeout_ms < 5 * options.heartbeat_interval_ms) {
    return absl::InvalidArgumentError(
        absl::StrCat("--election-timeout (", options.election_timeout_ms,
                     " ms) must be at least 5 times --heartbeat-interval (",
                     options.heartbeat_interval_ms, " ms)"));
  }
  std::unique_ptr<Runtime> runtime(new Runtime(options, io, log));
  if (absl::Status s = runtime->Open(); !s.ok()) return s;
  return runtime;
}

absl::Status Runtime::Open() {
  const std::string member_dir = store::JoinPath(options_.data_dir, "member");
  if (absl::Status s = store::MakeDirDurable(&fs_, member_dir); !s.ok()) return s;
  auto lock = fs_.Lock(store::JoinPath(member_dir, "lock"));
  if (!lock.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("data dir ", options_.data_dir,
                                                      " is in use by another process (",
                                                      lock.status().message(), ")"));
  }
  lock_ = std::move(*lock);
  // Snapshot copies a download left behind (the process died before the download ended): nobody
  // reads them now that the data dir is this process's.
  if (auto names = fs_.List(member_dir); names.ok()) {
    for (const std::string& name : *names) {
      if (absl::StartsWith(name, kSnapshotCopyPrefix) && absl::EndsWith(name, ".tmp")) {
        (void)fs_.Remove(store::JoinPath(member_dir, name));
      }
    }
  }
  store::LmdbOptions lmdb;
  lmdb.batch_interval_ms = options_.backend_batch_interval_ms;
  lmdb.batch_limit_commits = static_cast<int64_t>(options_.backend_batch_limit);
  timed_backend_ = std::make_unique<CommitTimingBackend>(
      metric_.backend_commit, lmdb.batch_interval_ms, lmdb.batch_limit_commits);
  lmdb.now_ms = [timed = timed_backend_.get()] { return timed->NowMs(); };
  // The backend makes its directory (member/db) and fsyncs it; its entry in member/ is made
  // durable by the WAL's MakeDirDurable below, which fsyncs member/ whether it creates member/wal
  // (a first boot) or finds it (a restart), before anything is acknowledged.
  auto backend = store::LmdbBackend::Open(store::JoinPath(member_dir, "db"), lmdb);
  if (!backend.ok()) return backend.status();
  backend_ = std::move(*backend);
  timed_backend_->set_inner(backend_.get());

  MemberOptions member;
  server::ServerConfig& config = member.server;
  config.id = options_.id;
  config.tick_ms = options_.heartbeat_interval_ms;
  config.heartbeat_tick = 1;
  config.election_tick =
      static_cast<int>(options_.election_timeout_ms / options_.heartbeat_interval_ms);
  config.min_lease_ttl_seconds =
      MinLeaseTtlSeconds(options_.heartbeat_interval_ms, options_.election_timeout_ms);
  config.random_seed = std::random_device{}() ^ (options_.id * 0x9E3779B97F4A7C15ull);
  config.quota_bytes = options_.quota_backend_bytes;
  config.max_request_bytes = options_.max_request_bytes;
  config.token_provider = options_.token_provider;
  config.auth_token_ttl_seconds = options_.auth_token_ttl_seconds;
  config.snapshot_every_entries = std::min(options_.snapshot_count, kRaftLogCompactEntriesMax);
  config.snapshot_catch_up_entries = std::min<uint64_t>(5000, options_.snapshot_count / 2 + 1);
  // A request that neither applies nor fails within 5 s answers TIMEOUT, before a client's try
  // gives up on it (net::kDefaultPerTryTimeout, 6 s): the client then hears the member's own
  // verdict instead of a lost answer.
  config.request_timeout_ticks =
      static_cast<int>(std::max<int64_t>(1, kRequestTimeoutMs / options_.heartbeat_interval_ms));
  member.wal_compact_entries = options_.snapshot_count;
  member.wal.minimal_dir_syncs = true;
  member.wal.segment_bytes = options_.wal_segment_bytes;
  member.name = options_.name;
  member.client_urls = options_.client_urls;
  MemberIo io;
  io.transport = this;
  io.sync = this;
  io.sink = this;
  sync_thread_ = std::thread([this] { SyncThreadLoop(); });
  auto opened = Member::Open(member, &fs_, store::JoinPath(member_dir, "wal"), timed_backend_.get(),
                             io, options_.founding);
  if (!opened.ok()) return opened.status();
  member_ = std::move(*opened);
  const store::WalRecovery& recovery = member_->wal().recovery();
  log_->Info("recovered the write-ahead log",
             {{"segments", absl::StrCat(recovery.segments)},
              {"records", absl::StrCat(recovery.records)},
              {"applied-index", absl::StrCat(member_->server().applied_index())},
              {"last-index", absl::StrCat(member_->server().last_index())}});
  if (recovery.torn_bytes > 0) {
    log_->Warn("cut a torn write at the end of the log",
               {{"file", recovery.torn_file},
                {"offset", absl::StrCat(recovery.torn_offset)},
                {"bytes", absl::StrCat(recovery.torn_bytes)}});
  }
  member_->Drain();
  if (member_->stopped()) return member_->failure();
  // etcd's advanceTicksForElection: start one tick short of an election timeout, so a fresh
  // member elects within a tick instead of a whole timeout. A lone voter has nobody to disrupt
  // and nobody to wait for: it ticks on through its randomized timeout (below two election
  // timeouts) until it campaigns, so a single member serves right after it starts instead of
  // up to a second later.
  const raft::ConfState conf = member_->server().RaftConfState();
  const bool lone_voter =
      conf.voters.size() == 1 && conf.voters.front() == options_.id && conf.voters_outgoing.empty();
  const int advance_ticks = lone_voter ? 2 * config.election_tick : config.election_tick - 1;
  for (int i = 0; i < advance_ticks; ++i) {
    if (lone_voter && member_->server().RaftStatus().soft_state.role != raft::Role::kFollower) {
      break;
    }
    member_->Tick();
  }
  tasks_->add(TickLoop());
  tasks_->add(FlushLoop());
  tasks_->add(ProgressNotifyLoop());
  return absl::OkStatus();
}

kj::Promise<void> Runtime::TickLoop() {
  return io_.provider->getTimer()
      .afterDelay(options_.heartbeat_interval_ms * kj::MILLISECONDS)
      .then([this]() -> kj::Promise<void> {
        if (member_->stopped()) return kj::READY_NOW;
        member_->Tick();
        LogLeaderChanges();
        return TickLoop();
      });
}

kj::Promise<void> Runtime::FlushLoop() {
  // The backend checks its batch interval only when something commits: an idle member's last
  // batch is made durable here.
  return io_.provider->getTimer()
      .afterDelay(options_.backend_batch_interval_ms * kj::MILLISECONDS)
      .then([this]() -> kj::Promise<void> {
        if (member_->stopped()) return kj::READY_NOW;
        // A failure stops the member itself (it told OnStop), not only the process: until the
        // process exits its loop still runs, and a member left serving would answer reads from
        // a backend that lost its latest batches.
        if (!member_->FlushBackend().ok()) return kj::READY_NOW;
        return FlushLoop();
      });
}

kj::Promise<void> Runtime::ProgressNotifyLoop() {
  return io_.provider->getTimer()
      .afterDelay(options_.watch_progress_notify_interval_ms * kj::MILLISECONDS)
      .then([this]() -> kj::Promise<void> {
        if (member_->stopped()) return kj::READY_NOW;
        member_->server().NotifyWatchProgress();
        member_->Drain();
        return ProgressNotifyLoop();
      });
}

void Runtime::LogLeaderChanges() {
  const raft::NodeId leader = member_->server().RaftStatus().soft_state.leader;
  if (leader == last_leader_) return;
  // As etcd counts: every change to a known leader (the first election included).
  if (leader != raft::kNoNode) metric_.leader_changes->Inc();
  if (leader == raft::kNoNode) {
    log_->Warn("lost the leader", {{"term", absl::StrCat(member_->server().hard_state().term)}});
  } else {
    log_->Info(leader == options_.id ? "became leader" : "elected leader",
               {{"leader", absl::StrCat(absl::Hex(leader))},
                {"term", absl::StrCat(member_->server().hard_state().term)}});
  }
  last_leader_ = leader;
}

// --- The WAL's sync thread --------------------------------------------------------------------

void Runtime::Start(store::Wal::SyncBatch* batch) {
  // Fulfilled by the sync thread: the net:: helper orders its result for ThreadSanitizer.
  auto paf = net::NewPromiseAndCrossThreadFulfiller<absl::Status>();
  {
    std::lock_guard<std::mutex> lock(sync_mutex_);
    sync_batch_ = batch;
    sync_done_ = std::move(paf.fulfiller);
  }
  sync_wake_.notify_one();
  tasks_->add(paf.promise.then([this](absl::Status result) {
    if (member_ == nullptr || member_->stopped()) return;
    member_->OnSyncDone(std::move(result));
  }));
}

void Runtime::SyncThreadLoop() {
  std::unique_lock<std::mutex> lock(sync_mutex_);
  while (true) {
    sync_wake_.wait(lock, [this] { return sync_exit_ || sync_batch_ != nullptr; });
    if (sync_exit_) return;
    store::Wal::SyncBatch* batch = sync_batch_;
    kj::Own<kj::CrossThreadPromiseFulfiller<absl::Status>> done = std::move(sync_done_);
    sync_batch_ = nullptr;
    lock.unlock();
    const int64_t start_ns = SteadyNowNs();
    absl::Status result = batch->Run();  // the fdatasyncs, off the loop
    metric_.wal_fsync->Observe(static_cast<double>(SteadyNowNs() - start_ns) / 1e9);
    done->fulfill(std::move(result));
    lock.lock();
  }
}

// --- The member's callbacks ---------------------------------------------------------------------

void Runtime::Send(const raft::Message& message) {
  if (message.type == raft::MessageType::kHeartbeat) {
    // A heartbeat unanswered for an election timeout was lost: time the next one instead.
    const kj::TimePoint now = io_.provider->getTimer().now();
    auto [it, inserted] = heartbeat_sent_.try_emplace(message.to, now);
    if (!inserted && now - it->second > options_.election_timeout_ms * kj::MILLISECONDS) {
      it->second = now;
    }
  }
  if (router_ != nullptr) router_->Send(message);
}

void Runtime::OnResponse(const server::Response& response) {
  auto it = pending_.find(response.request_id);
  if (it == pending_.end()) return;
  PendingCall call = std::move(it->second);
  pending_.erase(it);
  if (call.proposal) {
    --pending_proposals_;
    if (ProposalFailed(response.status)) metric_.proposals_failed->Inc();
  }
  if (call.counted) HandledCounter(call.type, response.status.code()).Inc();
  call.fulfiller->fulfill(server::Response(response));
}

void Runtime::OnWatchResponse(const mvcc::WatchResponse& response) {
  auto it = watches_.find(response.watch_id);
  if (it == watches_.end()) return;
  it->second->Deliver(response);
  if (response.canceled) watches_.erase(it);
}

void Runtime::OnStop(const absl::Status& why) {
  if (CodeOf(why) == ErrorCode::kMemberRemoved) {
    log_->Warn("member stopped", {{"error", std::string(why.message())}});
  } else {
    log_->Error("member stopped", {{"error", std::string(why.message())}});
  }
  for (auto& [id, call] : pending_) {
    absl::Status stopped = Error(ErrorCode::kStopped, "member stopped");
    if (call.counted) HandledCounter(call.type, stopped.code()).Inc();
    call.fulfiller->fulfill(ErrorResponse(call.type, std::move(stopped)));
  }
  pending_.clear();
  pending_proposals_ = 0;
  if (stopped_fulfiller_->isWaiting()) stopped_fulfiller_->fulfill(absl::Status(why));
}

kj::Promise<absl::Status> Runtime::Stopped() { return stopped_.addBranch(); }

// --- net::MemberService -------------------------------------------------------------------------

kj::Promise<server::Response> Runtime::Call(server::Request request) {
  if (!LeaderOnly(request.type)) return Submit(std::move(request), /*counted=*/true);
  // Counted once, with the answer the client gets (not a NOT_LEADER that was forwarded).
  const server::RequestType type = request.type;
  const bool counted = CountStarted(type);
  server::Request copy = request;
  const kj::TimePoint deadline =
      io_.provider->getTimer().now() +
      (kRequestTimeoutMs + 2 * options_.election_timeout_ms) * kj::MILLISECONDS;
  return Submit(std::move(request), /*counted=*/false)
      .then([this, copy = std::move(copy),
             deadline](server::Response response) mutable -> kj::Promise<server::Response> {
        if (CodeOf(response.status) != ErrorCode::kNotLeader) return std::move(response);
        return ServeAtLeader(std::move(copy), deadline);
      })
      .then([this, type, counted](server::Response response) {
        if (counted) HandledCounter(type, response.status.code()).Inc();
        return response;
      });
}

kj::Promise<server::Response> Runtime::CallForwarded(server::Request request) {
  // The forwarding member counted it; etcd's leader serves it over its peer API, uncounted.
  return Submit(std::move(request), /*counted=*/false);
}

kj::Promise<server::Response> Runtime::ServeAtLeader(server::Request request,
                                                     kj::TimePoint deadline) {
  kj::Timer& timer = io_.provider->getTimer();
  const server::RequestType type = request.type;
  if (member_->stopped()) return ErrorResponse(type, Error(ErrorCode::kStopped, "member stopped"));
  const kj::TimePoint now = timer.now();
  const raft::NodeId leader = member_->server().RaftStatus().soft_state.leader;
  if (now >= deadline) {
    // etcd's answers at its deadline: ErrNoLeader while waiting for a leader, ErrTimeout while
    // the leader it forwards to does not answer.
    return ErrorResponse(
        type, leader == raft::kNoNode
                  ? Error(ErrorCode::kNoLeader, "no leader")
                  : Error(ErrorCode::kTimeout, "request timed out forwarding to the leader"));
  }
  auto retry_after = [this, request, deadline](kj::Duration delay) mutable {
    return io_.provider->getTimer().afterDelay(delay).then(
        [this, request = std::move(request), deadline]() mutable {
          return ServeAtLeader(std::move(request), deadline);
        });
  };
  if (leader == raft::kNoNode || router_ == nullptr) {
    // etcd's waitLeader: wait for an election.
    return retry_after(options_.heartbeat_interval_ms * kj::MILLISECONDS);
  }
  if (leader == options_.id) {
    // Elected meanwhile: serve it here (NOT_LEADER again if the lessor is not primary yet).
    return Submit(request, /*counted=*/false)
        .then([retry_after = std::move(retry_after)](
                  server::Response response) mutable -> kj::Promise<server::Response> {
          if (CodeOf(response.status) != ErrorCode::kNotLeader) return std::move(response);
          return retry_after(kForwardRetryDelayMs * kj::MILLISECONDS);
        });
  }
  const raft::NodeId promoted =
      type == server::RequestType::kMemberPromote ? request.member.id : raft::kNoNode;
  return router_->Forward(leader, request, deadline - now)
      .then([this, retry_after = std::move(retry_after), promoted, deadline](
                absl::StatusOr<server::Response> answer) mutable -> kj::Promise<server::Response> {
        if (answer.ok() && CodeOf(answer->status) != ErrorCode::kNotLeader) {
          if (promoted != raft::kNoNode && answer->status.ok()) {
            return AwaitPromotionApplied(std::move(*answer), promoted, deadline);
          }
          return WithLocalHeader(std::move(*answer));
        }
        // Unreachable, or no longer the leader: try the leader known next (etcd's throttle).
        return retry_after(kForwardRetryDelayMs * kj::MILLISECONDS);
      });
}

server::Response Runtime::WithLocalHeader(server::Response response) {
  // The header is this member's, as etcd fills it for a forwarded request.
  response.header.member_id = options_.id;
  response.header.revision = member_->server().store().current_revision();
  response.header.raft_term = member_->server().hard_state().term;
  return response;
}

kj::Promise<server::Response> Runtime::AwaitPromotionApplied(server::Response response,
                                                             raft::NodeId id,
                                                             kj::TimePoint deadline) {
  kj::Timer& timer = io_.provider->getTimer();
  bool applied = member_->stopped() || timer.now() >= deadline;
  for (const server::Member& member : member_->server().Members()) {
    if (member.id == id && !member.is_learner) applied = true;
  }
  if (applied) return WithLocalHeader(std::move(response));
  return timer.afterDelay(options_.heartbeat_interval_ms * kj::MILLISECONDS)
      .then([this, response = std::move(response), id, deadline]() mutable {
        return AwaitPromotionApplied(std::move(response), id, deadline);
      });
}

bool Runtime::CountStarted(server::RequestType type) {
  const ApiMethod* method = ServiceMethod(type);
  if (method == nullptr) return false;
  Counter*& started = started_counters_[type];
  if (started == nullptr) {
    started = &metrics_.GetCounter("grpc_server_started_total",
                                   "Total number of RPCs started on the server.",
                                   {{"grpc_method", method->method},
                                    {"grpc_service", method->service},
                                    {"grpc_type", "unary"}});
  }
  started->Inc();
  return true;
}

kj::Promise<server::Response> Runtime::Submit(server::Request request, bool counted) {
  const server::RequestType type = request.type;
  counted = counted && CountStarted(type);
  if (member_->stopped()) {
    absl::Status stopped = Error(ErrorCode::kStopped, "member stopped");
    if (counted) HandledCounter(type, stopped.code()).Inc();
    return ErrorResponse(type, std::move(stopped));
  }
  const bool proposal = IsProposal(request);
  auto paf = kj::newPromiseAndFulfiller<server::Response>();
  const server::RequestId id = member_->server().Submit(std::move(request));
  pending_[id] = PendingCall{std::move(paf.fulfiller), type, proposal, counted};
  if (proposal) ++pending_proposals_;
  DrainSoon();
  return std::move(paf.promise);
}

void Runtime::DrainSoon() {
  if (drain_scheduled_) return;
  drain_scheduled_ = true;
  // evalLater queues behind the events already ready (the rest of an inbox batch, a peer's
  // frames already read), so they all step before this Drain.
  tasks_->add(kj::evalLater([this] {
    drain_scheduled_ = false;
    member_->Drain();
  }));
}

absl::StatusOr<mvcc::WatchId> Runtime::Watch(const mvcc::WatchRequest& request,
                                             const net::WatchCaller& caller, net::WatchSink* sink) {
  if (member_->stopped()) return Error(ErrorCode::kStopped, "member stopped");
  auto id = member_->server().Watch(request, caller.token, caller.cert_user);
  if (!id.ok()) return id.status();
  watches_[*id] = sink;
  member_->Drain();
  return *id;
}

absl::Status Runtime::CancelWatch(mvcc::WatchId id) {
  absl::Status status = member_->server().CancelWatch(id);
  member_->Drain();
  watches_.erase(id);
  return status;
}

void Runtime::RequestWatchProgress() {
  member_->server().RequestWatchProgress();
  member_->Drain();
}

net::MemberStatusInfo Runtime::Status() {
  const raft::Status raft = member_->server().RaftStatus();
  net::MemberStatusInfo info;
  info.id = options_.id;
  info.leader = raft.soft_state.leader;
  info.term = raft.hard_state.term;
  info.commit_index = raft.hard_state.commit;
  info.applied_index = member_->server().applied_index();
  info.revision = member_->server().store().current_revision();
  info.compact_revision = member_->server().store().compact_revision();
  info.db_size_bytes = backend_->SizeBytes();
  const auto& learners = raft.conf_state.learners;
  info.is_learner = std::find(learners.begin(), learners.end(), options_.id) != learners.end();
  if (member_->stopped()) info.errors.push_back(std::string(member_->failure().message()));
  const kj::TimePoint now = io_.provider->getTimer().now();
  for (const auto& [peer, refusal] : peer_refusals_) {
    if (now - refusal.second > kPeerRefusalMemory) continue;
    info.errors.push_back(
        absl::StrCat("peer ", absl::Hex(peer), " refused this member: ", refusal.first));
  }
  for (const server::Alarm& alarm : member_->server().Alarms()) {
    if (alarm.type == server::AlarmType::kNoSpace) {
      info.errors.push_back(absl::StrCat("memberID:", alarm.member_id, " alarm:NOSPACE "));
    }
  }
  return info;
}

kj::Promise<absl::StatusOr<std::shared_ptr<net::SnapshotCopy>>> Runtime::TakeSnapshot() {
  using Copy = absl::StatusOr<std::shared_ptr<net::SnapshotCopy>>;
  if (member_->stopped()) return Copy(member_->failure());
  // The copy reads LMDB's last commit: what has been applied is committed first (one fsync).
  if (absl::Status s = backend_->Flush(); !s.ok()) return Copy(s);
  // Threads of copies that have ended are joined here (a finished one has nothing left to do).
  for (auto it = snapshot_threads_.begin(); it != snapshot_threads_.end();) {
    if (!it->done->load()) {
      ++it;
      continue;
    }
    it->thread.join();
    it = snapshot_threads_.erase(it);
  }
  const std::string path = store::JoinPath(
      options_.data_dir,
      absl::StrCat("member/", kSnapshotCopyPrefix, getpid(), "-", ++snapshot_copies_, ".tmp"));
  // The copy runs on a thread of its own: a database of gigabytes takes seconds to copy, and the
  // loop must go on heartbeating and serving meanwhile (etcd copies from a goroutine too).
  auto paf = net::NewPromiseAndCrossThreadFulfiller<absl::Status>();
  auto done = std::make_shared<std::atomic<bool>>(false);
  store::LmdbBackend* backend = backend_.get();
  // std::thread wants a callable whose destructor cannot throw; kj::Own's may.
  auto fulfiller = std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<absl::Status>>>(
      kj::mv(paf.fulfiller));
  snapshot_threads_.push_back(SnapshotThread{std::thread([backend, path, done, fulfiller]() {
                                               absl::Status copied = backend->CopyCommittedTo(path);
                                               // Nobody waits any more (the download was
                                               // abandoned): the copy is nobody's to remove.
                                               if (!(*fulfiller)->isWaiting())
                                                 (void)::unlink(path.c_str());
                                               (*fulfiller)->fulfill(kj::mv(copied));
                                               done->store(true);
                                             }),
                                             done});
  return paf.promise.then([path](absl::Status copied) -> Copy {
    if (!copied.ok()) return copied;
    return net::SnapshotCopy::AdoptFile(path);
  });
}

absl::Status Runtime::Step(raft::Message message) {
  // Not the failure itself: a member stopped by its own removal must not answer kMemberRemoved,
  // which would tell the sender that it is the one removed.
  if (member_->stopped()) return Error(ErrorCode::kStopped, member_->failure().message());
  if (message.type == raft::MessageType::kHeartbeatResp) {
    // etcd measures peer round trips with a prober of its own; kvnode times its heartbeats.
    if (auto it = heartbeat_sent_.find(message.from); it != heartbeat_sent_.end()) {
      const kj::Duration rtt = io_.provider->getTimer().now() - it->second;
      heartbeat_sent_.erase(it);
      metrics_
          .GetHistogram("etcd_network_peer_round_trip_time_seconds",
                        "Round-Trip-Time histogram between peers", PeerRttBuckets(),
                        {{"To", absl::StrCat(absl::Hex(message.from))}})
          .Observe(static_cast<double>(rtt / kj::NANOSECONDS) / 1e9);
    }
  }
  absl::Status status = member_->StepDeferred(std::move(message));
  DrainSoon();
  return status;
}

void Runtime::ReportSnapshot(raft::NodeId peer, bool succeeded) {
  if (member_->stopped()) return;
  member_->server().ReportSnapshot(peer, succeeded);
  member_->Drain();
}

void Runtime::ReportPeerRefusal(raft::NodeId peer, const std::string& why) {
  peer_refusals_.insert_or_assign(peer, std::make_pair(why, io_.provider->getTimer().now()));
}

void Runtime::ReportRemovedByPeer(raft::NodeId peer, const std::string& why) {
  if (member_->stopped()) return;
  log_->Warn("a peer refused this member as removed from the cluster",
             {{"peer", absl::StrCat(absl::Hex(peer))}, {"error", why}});
  member_->StopRemoved(Error(ErrorCode::kMemberRemoved,
                             absl::StrCat("peer ", absl::Hex(peer), " refused it: ", why)));
}

void Runtime::ReportUnreachable(raft::NodeId peer) {
  if (member_->stopped()) return;
  member_->server().ReportUnreachable(peer);
  member_->Drain();
}

kj::Promise<void> Runtime::Shutdown() {
  log_->Info("shutting down");
  const raft::Status raft = member_->stopped() ? raft::Status{} : member_->server().RaftStatus();
  // etcd's TransferLeadership picks the voter connected longest; here, among the other voters,
  // one heard from lately (Raft's recent_active) with the longest log, else the longest log.
  raft::NodeId target = raft::kNoNode;
  std::pair<bool, raft::Index> best{false, 0};
  if (raft.soft_state.role == raft::Role::kLeader) {
    for (const auto& [id, progress] : raft.progress) {
      if (id == options_.id || progress.is_learner) continue;
      const std::pair<bool, raft::Index> rank{progress.recent_active, progress.match};
      if (target == raft::kNoNode || rank > best) {
        target = id;
        best = rank;
      }
    }
  }
  kj::Promise<void> handed_over = kj::READY_NOW;
  if (target != raft::kNoNode) {
    // etcd hands leadership over before it stops, so clients see no election timeout, and waits
    // for the transferee to lead (its MoveLeader) at most its request timeout ReqTimeout(): 5 s
    // plus two election timeouts. The core answers the move by then: once the transferee leads,
    // or LEADER_TRANSFER_TIMEOUT after kRequestTimeoutMs.
    const std::string transferee = absl::StrCat(absl::Hex(target));
    log_->Info("transferring leadership before stopping", {{"transferee", transferee}});
    const kj::TimePoint started = io_.provider->getTimer().now();
    server::Request move;
    move.type = server::RequestType::kMoveLeader;
    move.member.id = target;
    handed_over =
        Submit(std::move(move), /*counted=*/false)
            .then([this, transferee, started](server::Response response) {
              if (response.status.ok()) {
                const kj::Duration took = io_.provider->getTimer().now() - started;
                log_->Info("leadership transferred",
                           {{"transferee", transferee},
                            {"took_ms", absl::StrCat(took / kj::MILLISECONDS)}});
              } else {
                log_->Warn("leadership transfer failed",
                           {{"error", std::string(response.status.message())}});
              }
            })
            .exclusiveJoin(io_.provider->getTimer()
                               .afterDelay((kRequestTimeoutMs + 2 * options_.election_timeout_ms) *
                                           kj::MILLISECONDS)
                               .then([this]() {
                                 log_->Warn("leadership transfer failed",
                                            {{"error", "no answer within the request timeout"}});
                               }));
  }
  return handed_over.then([this]() {
    if (absl::Status s = backend_->Flush(); !s.ok()) {
      log_->Error("backend flush at shutdown failed", {{"error", std::string(s.message())}});
    }
    log_->Info("stopped");
  });
}

}  // namespace kvstore::node
