#include "node/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "kj/time.h"
#include "kj/timer.h"
#include "store/file_system.h"

namespace kvstore::node {
namespace {

// How long a request may wait to apply before it answers TIMEOUT (etcd's 5 s request timeout).
constexpr int64_t kRequestTimeoutMs = 5000;

server::Response ErrorResponse(server::RequestType type, absl::Status status) {
  server::Response response;
  response.type = type;
  response.status = std::move(status);
  return response;
}

}  // namespace

raft::NodeId MemberIdOf(const std::vector<std::string>& peer_urls, const std::string& token) {
  std::vector<std::string> sorted = peer_urls;
  std::sort(sorted.begin(), sorted.end());
  uint64_t id = Fnv1a64(absl::StrCat(absl::StrJoin(sorted, ","), "\n", token));
  return id == raft::kNoNode ? 1 : id;
}

uint64_t ClusterIdOf(const std::string& token) { return Fnv1a64(absl::StrCat("cluster\n", token)); }

Runtime::Runtime(const RuntimeOptions& options, kj::AsyncIoContext& io, Logger* log)
    : options_(options),
      io_(io),
      log_(log),
      tasks_(kj::heap<kj::TaskSet>(static_cast<kj::TaskSet::ErrorHandler&>(*this))),
      stopped_(nullptr) {
  auto paf = kj::newPromiseAndFulfiller<absl::Status>();
  stopped_fulfiller_ = std::move(paf.fulfiller);
  stopped_ = paf.promise.fork();
}

Runtime::~Runtime() noexcept {
  {
    std::lock_guard<std::mutex> lock(sync_mutex_);
    sync_exit_ = true;
  }
  sync_wake_.notify_all();
  if (sync_thread_.joinable()) sync_thread_.join();
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
  if (absl::Status s = store::CreateDirDurably(&fs_, member_dir); !s.ok()) return s;
  auto lock = fs_.Lock(store::JoinPath(member_dir, "lock"));
  if (!lock.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("data dir ", options_.data_dir,
                                                      " is in use by another process (",
                                                      lock.status().message(), ")"));
  }
  lock_ = std::move(*lock);
  store::LmdbOptions lmdb;
  lmdb.batch_interval_ms = options_.backend_batch_interval_ms;
  lmdb.batch_limit_commits = static_cast<int64_t>(options_.backend_batch_limit);
  auto backend = store::LmdbBackend::Open(store::JoinPath(member_dir, "db"), lmdb);
  if (!backend.ok()) return backend.status();
  backend_ = std::move(*backend);

  MemberOptions member;
  server::ServerConfig& config = member.server;
  config.id = options_.id;
  config.tick_ms = options_.heartbeat_interval_ms;
  config.heartbeat_tick = 1;
  config.election_tick =
      static_cast<int>(options_.election_timeout_ms / options_.heartbeat_interval_ms);
  config.random_seed = std::random_device{}() ^ (options_.id * 0x9E3779B97F4A7C15ull);
  config.quota_bytes = options_.quota_backend_bytes;
  config.max_request_bytes = options_.max_request_bytes;
  config.snapshot_every_entries = options_.snapshot_count;
  config.snapshot_catch_up_entries = std::min<uint64_t>(5000, options_.snapshot_count / 2 + 1);
  // A request that neither applies nor fails within 5 s answers TIMEOUT, before a client's try
  // gives up on it (net::kDefaultPerTryTimeout, 6 s): the client then hears the member's own
  // verdict instead of a lost answer.
  config.request_timeout_ticks =
      static_cast<int>(std::max<int64_t>(1, kRequestTimeoutMs / options_.heartbeat_interval_ms));
  member.wal_compact_entries = options_.snapshot_count;
  MemberIo io;
  io.transport = this;
  io.sync = this;
  io.sink = this;
  sync_thread_ = std::thread([this] { SyncThreadLoop(); });
  auto opened = Member::Open(member, &fs_, store::JoinPath(member_dir, "wal"), backend_.get(), io,
                             options_.founding);
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
  // member (a single one above all) elects within a tick instead of a whole timeout.
  for (int i = 1; i < config.election_tick; ++i) member_->Tick();
  tasks_->add(TickLoop());
  tasks_->add(FlushLoop());
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
        if (absl::Status s = backend_->Flush(); !s.ok()) {
          OnStop(absl::Status(s.code(), absl::StrCat("backend flush failed: ", s.message())));
          return kj::READY_NOW;
        }
        return FlushLoop();
      });
}

void Runtime::LogLeaderChanges() {
  const raft::NodeId leader = member_->server().RaftStatus().soft_state.leader;
  if (leader == last_leader_) return;
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
  auto paf = kj::newPromiseAndCrossThreadFulfiller<absl::Status>();
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
    absl::Status result = batch->Run();  // the fdatasyncs, off the loop
    done->fulfill(std::move(result));
    lock.lock();
  }
}

// --- The member's callbacks ---------------------------------------------------------------------

void Runtime::Send(const raft::Message& message) {
  if (router_ != nullptr) router_->Send(message);
}

void Runtime::OnResponse(const server::Response& response) {
  auto it = pending_.find(response.request_id);
  if (it == pending_.end()) return;
  kj::Own<kj::PromiseFulfiller<server::Response>> fulfiller = std::move(it->second);
  pending_.erase(it);
  fulfiller->fulfill(server::Response(response));
}

void Runtime::OnWatchResponse(const mvcc::WatchResponse& response) {
  auto it = watches_.find(response.watch_id);
  if (it == watches_.end()) return;
  it->second->Deliver(response);
  if (response.canceled) watches_.erase(it);
}

void Runtime::OnStop(const absl::Status& why) {
  log_->Error("member stopped", {{"error", std::string(why.message())}});
  for (auto& [id, fulfiller] : pending_) {
    fulfiller->fulfill(
        ErrorResponse(server::RequestType::kRange, Error(ErrorCode::kStopped, "member stopped")));
  }
  pending_.clear();
  if (stopped_fulfiller_->isWaiting()) stopped_fulfiller_->fulfill(absl::Status(why));
}

kj::Promise<absl::Status> Runtime::Stopped() { return stopped_.addBranch(); }

// --- net::MemberService -------------------------------------------------------------------------

kj::Promise<server::Response> Runtime::Call(server::Request request) {
  if (member_->stopped()) {
    return ErrorResponse(request.type, Error(ErrorCode::kStopped, "member stopped"));
  }
  auto paf = kj::newPromiseAndFulfiller<server::Response>();
  const server::RequestId id = member_->server().Submit(std::move(request));
  pending_[id] = std::move(paf.fulfiller);
  member_->Drain();
  return std::move(paf.promise);
}

absl::StatusOr<mvcc::WatchId> Runtime::Watch(const mvcc::WatchRequest& request,
                                             net::WatchSink* sink) {
  if (member_->stopped()) return Error(ErrorCode::kStopped, "member stopped");
  auto id = member_->server().Watch(request);
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
  info.db_size_bytes = backend_->SizeBytes();
  const auto& learners = raft.conf_state.learners;
  info.is_learner = std::find(learners.begin(), learners.end(), options_.id) != learners.end();
  if (member_->stopped()) info.errors.push_back(std::string(member_->failure().message()));
  for (const server::Alarm& alarm : member_->server().Alarms()) {
    if (alarm.type == server::AlarmType::kNoSpace) {
      info.errors.push_back(
          absl::StrCat("memberID:", absl::Hex(alarm.member_id), " alarm:NOSPACE"));
    }
  }
  return info;
}

absl::StatusOr<std::string> Runtime::SnapshotData() {
  const std::string path =
      store::JoinPath(options_.data_dir, absl::StrCat("member/snapshot-", getpid(), ".tmp"));
  if (absl::Status s = backend_->CopyTo(path); !s.ok()) return s;
  auto file = fs_.Open(path, store::OpenMode::kRead);
  if (!file.ok()) return file.status();
  auto size = (*file)->Size();
  if (!size.ok()) return size.status();
  std::string data;
  absl::Status read = (*file)->ReadAt(0, *size, &data);
  file->reset();
  (void)fs_.Remove(path);
  if (!read.ok()) return read;
  return data;
}

void Runtime::Step(raft::Message message) {
  if (member_->stopped()) return;
  (void)member_->Step(std::move(message));
}

void Runtime::ReportSnapshot(raft::NodeId peer, bool succeeded) {
  if (member_->stopped()) return;
  member_->server().ReportSnapshot(peer, succeeded);
  member_->Drain();
}

void Runtime::ReportUnreachable(raft::NodeId peer) {
  if (member_->stopped()) return;
  member_->server().ReportUnreachable(peer);
  member_->Drain();
}

kj::Promise<void> Runtime::Shutdown() {
  log_->Info("shutting down");
  const raft::Status raft = member_->stopped() ? raft::Status{} : member_->server().RaftStatus();
  raft::NodeId target = raft::kNoNode;
  raft::Index best = 0;
  if (raft.soft_state.role == raft::Role::kLeader) {
    for (const auto& [id, progress] : raft.progress) {
      if (id == options_.id || progress.is_learner) continue;
      if (target == raft::kNoNode || progress.match > best) {
        target = id;
        best = progress.match;
      }
    }
  }
  kj::Promise<void> handed_over = kj::READY_NOW;
  if (target != raft::kNoNode) {
    // etcd hands leadership over before it stops, so clients see no election timeout.
    log_->Info("transferring leadership before stopping",
               {{"transferee", absl::StrCat(absl::Hex(target))}});
    server::Request move;
    move.type = server::RequestType::kMoveLeader;
    move.member.id = target;
    handed_over = Call(std::move(move))
                      .then([this](server::Response response) {
                        if (!response.status.ok()) {
                          log_->Warn("leadership transfer failed",
                                     {{"error", std::string(response.status.message())}});
                        }
                      })
                      .exclusiveJoin(io_.provider->getTimer().afterDelay(
                          options_.election_timeout_ms * kj::MILLISECONDS));
  }
  return handed_over.then([this]() {
    if (absl::Status s = backend_->Flush(); !s.ok()) {
      log_->Error("backend flush at shutdown failed", {{"error", std::string(s.message())}});
    }
    log_->Info("stopped");
  });
}

}  // namespace kvstore::node
