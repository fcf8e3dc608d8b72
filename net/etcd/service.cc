#include "net/etcd/service.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "net/cross_thread.h"
#include "net/entropy.h"
#include "net/etcd/convert.h"
#include "net/etcd/rpc.grpc.pb.h"
#include "net/etcd/watch_request.h"
#include "openssl/sha.h"

namespace kvstore::net::etcd {
namespace {

using grpc::ServerContext;

absl::Status Stopped() { return Error(ErrorCode::kStopped, "the member's event loop has stopped"); }

// The member's loop, seen from gRPC's threads.
class Loop {
 public:
  Loop(MemberService& member, const kj::Executor& executor)
      : member_(member), executor_(executor.addRef()), cluster_id_(member.cluster_id()) {}

  MemberService& member() const { return member_; }
  uint64_t cluster_id() const { return cluster_id_; }
  void set_cert_users(const CertUsers* users) { cert_users_ = users; }
  // The user of the call's client certificate (CertUsers), or "".
  std::string CertUserOf(const grpc::ServerContextBase* context) const {
    return cert_users_ == nullptr ? std::string() : cert_users_->Lookup(context->peer());
  }
  // The client connection of the call (CertUsers::ConnectionOf), or its peer address.
  std::string ConnectionOf(const grpc::ServerContextBase* context) const {
    return cert_users_ == nullptr ? context->peer() : cert_users_->ConnectionOf(context->peer());
  }

  // Runs `f` on the loop and waits for its result (a promise's, if it returns one), through
  // net::ExecuteSync so ThreadSanitizer sees the handoff. Fails with kStopped when the loop is
  // gone.
  template <typename F>
  absl::Status Run(F&& f) const {
    try {
      net::ExecuteSync(*executor_, std::forward<F>(f));
      return absl::OkStatus();
    } catch (const kj::Exception& e) {
      return Stopped();
    }
  }

  server::Response Call(server::Request request) const {
    server::Response response;
    absl::Status ran = Run([&]() {
      return member_.Call(std::move(request)).then([&](server::Response r) {
        response = std::move(r);
      });
    });
    if (!ran.ok()) response.status = ran;
    return response;
  }

  absl::StatusOr<MemberStatusInfo> Status() const {
    MemberStatusInfo info;
    absl::Status ran = Run([&]() { info = member_.Status(); });
    if (!ran.ok()) return ran;
    return info;
  }

 private:
  MemberService& member_;
  kj::Own<const kj::Executor> executor_;
  const uint64_t cluster_id_;
  const CertUsers* cert_users_ = nullptr;
};

// The caller's auth token: etcd's clients send it as the "token" metadata of every call; etcd's
// AuthInfoFromCtx also takes "authorization" (what its JSON gateway makes of an Authorization
// header) when there is no "token".
std::string TokenOf(const grpc::ServerContextBase* context) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("token");
  if (it == metadata.end()) it = metadata.find("authorization");
  if (it == metadata.end()) return std::string();
  if (it->second.empty()) return std::string(kEmptyTokenSent);
  return std::string(it->second.data(), it->second.size());
}

// One unary method: request -> member -> response, or etcd's error.
template <typename Req, typename Resp>
grpc::Status Unary(const Loop& loop, const grpc::ServerContext* context, const Req& request,
                   Resp* response, grpc::Status (*to_status)(const absl::Status&) = ToGrpcStatus) {
  server::Request converted;
  if (absl::Status s = ToRequest(request, &converted); !s.ok()) return ToGrpcStatus(s);
  converted.token = TokenOf(context);
  converted.cert_user = loop.CertUserOf(context);
  server::Response answer = loop.Call(std::move(converted));
  if (!answer.status.ok()) return to_status(answer.status);
  ToProto(answer, loop.cluster_id(), response);
  return grpc::Status::OK;
}

// Work for the member's loop from gRPC's threads without blocking them: jobs queue under a mutex
// and one cross-thread wake-up makes the loop run every job queued meanwhile. Created, drained
// and destroyed on the loop's thread; Post from any thread.
class Inbox : private kj::TaskSet::ErrorHandler {
 public:
  Inbox() : tasks_(static_cast<kj::TaskSet::ErrorHandler&>(*this)) {
    draining_ = Drain().eagerlyEvaluate(nullptr);
  }
  ~Inbox() noexcept(false) {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    wake_ = nullptr;
  }

  // False when the loop has gone: the job will never run.
  bool Post(std::function<void(kj::TaskSet&)> job) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    jobs_.push_back(std::move(job));
    if (wake_.get() != nullptr && wake_->isWaiting()) wake_->fulfill();
    return true;
  }

 private:
  kj::Promise<void> Drain() {
    // Fulfilled by Post on a gRPC thread: the net:: helper orders the wake-up for ThreadSanitizer.
    auto paf = NewPromiseAndCrossThreadFulfiller<void>();
    {
      std::lock_guard<std::mutex> lock(mu_);
      wake_ = kj::mv(paf.fulfiller);
      if (!jobs_.empty()) wake_->fulfill();
    }
    return paf.promise.then([this]() {
      std::vector<std::function<void(kj::TaskSet&)>> jobs;
      {
        std::lock_guard<std::mutex> lock(mu_);
        jobs.swap(jobs_);
        wake_ = nullptr;
      }
      for (auto& job : jobs) job(tasks_);
      return Drain();
    });
  }

  // Every job's promise handles its own failure.
  void taskFailed(kj::Exception&&) override {}

  std::mutex mu_;
  std::vector<std::function<void(kj::TaskSet&)>> jobs_;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake_;
  bool closed_ = false;
  kj::TaskSet tasks_;
  kj::Promise<void> draining_ = nullptr;
};

// One unary method without blocking a gRPC thread: the request goes to the member through the
// inbox, and the member's answer finishes the call from the loop.
template <typename Req, typename Resp>
grpc::ServerUnaryReactor* UnaryAsync(const Loop& loop, Inbox& inbox,
                                     grpc::CallbackServerContext* context, const Req* request,
                                     Resp* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  server::Request converted;
  if (absl::Status s = ToRequest(*request, &converted); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  converted.token = TokenOf(context);
  converted.cert_user = loop.CertUserOf(context);
  const bool posted = inbox.Post([&loop, reactor, response,
                                  converted = std::move(converted)](kj::TaskSet& tasks) mutable {
    tasks.add(loop.member()
                  .Call(std::move(converted))
                  .then(
                      [&loop, reactor, response](server::Response answer) {
                        if (!answer.status.ok()) {
                          reactor->Finish(ToGrpcStatus(answer.status));
                          return;
                        }
                        ToProto(answer, loop.cluster_id(), response);
                        reactor->Finish(grpc::Status::OK);
                      },
                      [reactor](kj::Exception&&) { reactor->Finish(ToGrpcStatus(Stopped())); }));
  });
  if (!posted) reactor->Finish(ToGrpcStatus(Stopped()));
  return reactor;
}

// The hot path (every read and write) runs on gRPC's callback API: no thread waits per call.
class KvService final : public etcdserverpb::KV::CallbackService {
 public:
  KvService(const Loop& loop, Inbox& inbox) : loop_(loop), inbox_(inbox) {}

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const etcdserverpb::RangeRequest* request,
                                  etcdserverpb::RangeResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context,
                                const etcdserverpb::PutRequest* request,
                                etcdserverpb::PutResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const etcdserverpb::DeleteRangeRequest* request,
                                        etcdserverpb::DeleteRangeResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* context,
                                const etcdserverpb::TxnRequest* request,
                                etcdserverpb::TxnResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context,
                                    const etcdserverpb::CompactionRequest* request,
                                    etcdserverpb::CompactionResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }

 private:
  const Loop& loop_;
  Inbox& inbox_;
};

// The watchers open on each client connection, over all its Watch streams (any thread).
class ConnectionWatchers {
 public:
  explicit ConnectionWatchers(size_t limit) : limit_(limit) {}

  size_t limit() const { return limit_; }

  // Takes one of `connection`'s slots; false when it holds the limit already.
  bool TryAcquire(const std::string& connection) {
    std::lock_guard<std::mutex> lock(mu_);
    size_t& open = open_[connection];
    if (open >= limit_) return false;
    ++open;
    return true;
  }

  void Release(const std::string& connection) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = open_.find(connection);
    if (it == open_.end()) return;
    if (--it->second == 0) open_.erase(it);  // a closed connection leaves nothing behind
  }

 private:
  const size_t limit_;
  std::mutex mu_;
  std::map<std::string, size_t> open_;  // connection -> watchers open; none: no entry
};

// One Watch stream: its watchers, the queue of responses not yet written, and the writer thread
// that writes them in order (see the file comment of service.h).
class WatchSession {
 public:
  using Stream = grpc::ServerReaderWriter<etcdserverpb::WatchResponse, etcdserverpb::WatchRequest>;

  // `caller`: who the stream's watches run as (its call's token metadata, else the client
  // certificate's user), checked as each watch is created.
  // `connection` names the stream's client connection in `connection_watchers`, whose slots
  // its open watchers hold.
  WatchSession(const Loop& loop, ServerContext* context, Stream* stream, size_t queue_limit,
               WatchCaller caller, ConnectionWatchers& connection_watchers, std::string connection)
      : loop_(loop),
        context_(context),
        stream_(stream),
        queue_limit_(queue_limit),
        caller_(std::move(caller)),
        connection_watchers_(connection_watchers),
        connection_(std::move(connection)) {
    writer_ = std::thread([this] { WriteLoop(); });
  }

  ~WatchSession() { Close(); }

  // False when the stream ended (or was canceled) while the request waited for room.
  bool Handle(const etcdserverpb::WatchRequest& request) {
    if (!WaitForRoom()) return false;
    DispatchWatchRequest(
        request, [this](const etcdserverpb::WatchCreateRequest& create) { Create(create); },
        [this](int64_t watch_id) { Cancel(watch_id); }, [this] { Progress(); });
    return true;
  }

  // Ends every watch of the stream and the writer. Idempotent.
  void Close() {
    if (closed_) return;
    closed_ = true;
    (void)loop_.Run([&]() {
      for (auto& [local_id, watch] : watches_) {
        if (watch->member_open) (void)loop_.member().CancelWatch(watch->member_id);
        watch->member_open = false;
      }
    });
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      // Watches the member could not cancel (its loop has stopped) give their slots back too.
      for (auto& [local_id, watch] : watches_) EndLocked(watch.get());
    }
    wake_.notify_all();
    if (writer_.joinable()) writer_.join();
  }

 private:
  // The member's sink for one watch; Deliver runs on the loop thread.
  struct Watch final : public WatchSink {
    WatchSession* session = nullptr;
    int64_t local_id = 0;
    mvcc::WatchId member_id = 0;
    bool member_open = false;    // loop thread only
    bool ended = false;          // under the session's mutex: nothing more is queued
    bool counted = false;        // under the session's mutex: holds a slot (open_, connection)
    size_t queued = 0;           // under the session's mutex: items in the queue that point here
    bool client_cancel = false;  // loop thread: the member is canceling it for its client

    void Deliver(const mvcc::WatchResponse& response) override {
      if (response.canceled) member_open = false;
      session->Enqueue(this, response, response.canceled && client_cancel);
    }
  };

  struct Queued {
    Watch* watch = nullptr;  // nullptr: not for a member watch
    etcdserverpb::WatchResponse response;
    bool cancel_member_watch = false;  // a slow watcher's end: cancel it once written
    bool control = false;              // made by the reader thread (EnqueueLocal)
  };

  // Loop thread (from Deliver) or the reader thread (responses it makes itself).
  // `client_cancel`: the canceled notice of a watch its client canceled, which etcd 3.4 answers
  // {watch_id, canceled} with no reason (its recvLoop's answer to a WatchCancelRequest).
  void Enqueue(Watch* watch, const mvcc::WatchResponse& response, bool client_cancel = false) {
    Queued item;
    item.watch = watch;
    ToProto(response, loop_.cluster_id(), member_id_.load(std::memory_order_relaxed),
            term_.load(std::memory_order_relaxed), &item.response);
    item.response.set_watch_id(watch->local_id);
    if (client_cancel) item.response.clear_cancel_reason();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (watch->ended) return;
      if (response.canceled) {
        EndLocked(watch);
      } else if (queue_.size() >= queue_limit_) {
        // etcd cancels a watcher that cannot keep up rather than buffer without bound. Its slots
        // are kept until the member's watch is canceled, after the notice is written: a client
        // that reads nothing cannot make the member hold more watches than the limits.
        watch->ended = true;
        ToSlowWatcherCancel(queue_.size(), queue_limit_, &item.response);
        item.cancel_member_watch = true;
      }
      ++watch->queued;
      queue_.push_back(std::move(item));
    }
    wake_.notify_one();
  }

  // Reader thread, after WaitForRoom: at most kMaxQueuedControlResponses of these are queued.
  void EnqueueLocal(etcdserverpb::WatchResponse response) {
    Queued item;
    item.response = std::move(response);
    item.control = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++control_queued_;
      queue_.push_back(std::move(item));
    }
    wake_.notify_one();
  }

  // Reader thread, before each request: waits, holding no lock the writer or the member's loop
  // needs, until the writer has room for what the request may queue (fewer than
  // kMaxQueuedControlResponses of the reader's own responses, and the queue under its limit).
  // etcd 3.4's recvLoop blocks the same way on its ctrlStream channel (16 responses): the
  // server stops reading the client's requests, and HTTP/2 flow control pushes back on a
  // client that sends requests and never reads the answers. False when the stream was canceled
  // meanwhile (a failed write empties the queue, so a client gone away wakes it too).
  bool WaitForRoom() {
    std::unique_lock<std::mutex> lock(mu_);
    while (control_queued_ >= kMaxQueuedControlResponses || queue_.size() >= queue_limit_) {
      if (stopping_ || context_->IsCancelled()) return false;
      room_.wait_for(lock, std::chrono::milliseconds(100));
    }
    return !stopping_;
  }

  void Create(const etcdserverpb::WatchCreateRequest& request) {
    Reap();
    auto status = loop_.Status();
    if (status.ok()) {
      member_id_.store(status->id, std::memory_order_relaxed);
      term_.store(status->term, std::memory_order_relaxed);
    }
    // An automatic id is taken (next_id_ moves past it) only by a watch that opens, as etcd's
    // mvcc watchStream.Watch increments nextID only past its checks: a refused creation leaves
    // the next automatic id as it was.
    int64_t local_id = request.watch_id();
    const bool automatic = local_id == 0;
    bool in_use = false;
    if (automatic) {
      while (watches_.count(next_id_) > 0) ++next_id_;
      local_id = next_id_;
    } else {
      in_use = watches_.count(local_id) > 0;
    }
    mvcc::WatchRequest converted;
    absl::Status valid = ToWatchRequest(request, &converted);
    if (valid.ok() && !in_use && OpenWatchers() >= kMaxWatchersPerStream) {
      valid = absl::ResourceExhaustedError(absl::StrCat("too many watchers on this stream (limit ",
                                                        kMaxWatchersPerStream,
                                                        "); cancel some or open another stream"));
    }
    if (valid.ok() && !in_use && !connection_watchers_.TryAcquire(connection_)) {
      valid = absl::ResourceExhaustedError(
          absl::StrCat("too many watchers on this connection (limit ", connection_watchers_.limit(),
                       ", --max-watchers-per-connection); cancel some or open another connection"));
    }
    if (in_use || !valid.ok()) {
      // etcd answers a refused creation with watch id -1, created and canceled.
      etcdserverpb::WatchResponse refused;
      server::ResponseHeader header;
      header.member_id = member_id_.load(std::memory_order_relaxed);
      header.raft_term = term_.load(std::memory_order_relaxed);
      header.revision = status.ok() ? status->revision : 0;
      ToHeader(header, loop_.cluster_id(), refused.mutable_header());
      refused.set_watch_id(-1);
      refused.set_created(true);
      refused.set_canceled(true);
      refused.set_cancel_reason(in_use ? "mvcc: duplicate watch ID provided on the WatchStream"
                                       : std::string(valid.message()));
      EnqueueLocal(std::move(refused));
      return;
    }
    auto watch = std::make_unique<Watch>();
    watch->session = this;
    watch->local_id = local_id;
    {
      // The connection's slot taken above, until the watch ends (EndLocked).
      std::lock_guard<std::mutex> lock(mu_);
      watch->counted = true;
      ++open_;
    }
    absl::Status opened;
    absl::Status ran = loop_.Run([&]() {
      watch->member_open = true;  // responses may arrive before Watch returns
      absl::StatusOr<mvcc::WatchId> id = loop_.member().Watch(converted, caller_, watch.get());
      if (!id.ok()) {
        watch->member_open = false;
        opened = id.status();
        return;
      }
      watch->member_id = *id;
    });
    if (!ran.ok()) opened = ran;
    if (!opened.ok()) {
      MemberStatusInfo info = status.ok() ? *status : MemberStatusInfo{};
      if (CodeOf(opened) == ErrorCode::kCompacted) {
        // The refusal may come from a compaction applied since `status` was read.
        if (auto now = loop_.Status(); now.ok()) info.compact_revision = now->compact_revision;
      }
      const RefusedWatch refused =
          RefusedWatchResponses(opened, info.revision, info.compact_revision);
      if (refused.one_response) {
        // Never opened: one response with watch id -1, and nothing kept for the id.
        {
          std::lock_guard<std::mutex> lock(mu_);
          EndLocked(watch.get());
        }
        etcdserverpb::WatchResponse single;
        ToProto(refused.created, loop_.cluster_id(), member_id_.load(std::memory_order_relaxed),
                term_.load(std::memory_order_relaxed), &single);
        single.set_watch_id(-1);
        EnqueueLocal(std::move(single));
        return;
      }
      // A compacted start revision: etcd opens the watch (its id is taken), then cancels it.
      Enqueue(watch.get(), refused.created);
      Enqueue(watch.get(), refused.canceled);
    }
    if (automatic) ++next_id_;
    watches_[local_id] = std::move(watch);
  }

  // Watchers of this stream that have not ended.
  size_t OpenWatchers() {
    std::lock_guard<std::mutex> lock(mu_);
    return open_;
  }

  // `watch` has ended (under mu_): nothing more is queued for it, and its slots of the stream
  // and of the connection are given back.
  void EndLocked(Watch* watch) {
    watch->ended = true;
    if (!watch->counted) return;
    watch->counted = false;
    --open_;
    connection_watchers_.Release(connection_);
  }

  // etcd 3.4's answer to a WatchProgressRequest: one response at once, for the whole stream
  // (watch id -1, which clients hand to every watcher of the stream), at the member's current
  // revision. The revision is read on the loop, after every event it covers has been queued
  // here for the stream's synced watchers.
  void Progress() {
    auto status = loop_.Status();
    if (!status.ok()) return;  // the member stopped: the stream ends with it
    etcdserverpb::WatchResponse progress;
    server::ResponseHeader header;
    header.member_id = status->id;
    header.raft_term = status->term;
    header.revision = status->revision;
    ToHeader(header, loop_.cluster_id(), progress.mutable_header());
    progress.set_watch_id(-1);
    EnqueueLocal(std::move(progress));
  }

  void Cancel(int64_t local_id) {
    Reap();
    auto it = watches_.find(local_id);
    if (it == watches_.end()) return;  // etcd ignores an unknown id
    Watch* watch = it->second.get();
    (void)loop_.Run([&]() {
      if (watch->member_open) {
        // The member delivers the canceled notice during CancelWatch.
        watch->client_cancel = true;
        (void)loop_.member().CancelWatch(watch->member_id);
        watch->client_cancel = false;
        watch->member_open = false;
      }
    });
    // Kept until its canceled notice is written (Reap): the writer may still hold responses
    // for it.
  }

  // Forgets the watches that have ended and whose last response has been written (reader
  // thread): the member calls an ended watch's sink no more, and the writer holds nothing of it.
  // So a stream that creates and cancels watches for days holds only its open ones, and a
  // canceled watch's id may be used again, as etcd's watch stream allows.
  void Reap() {
    std::vector<int64_t> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done.swap(reapable_);
    }
    for (int64_t local_id : done) watches_.erase(local_id);
  }

  void WriteLoop() {
    for (;;) {
      Queued item;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        item = std::move(queue_.front());
        queue_.pop_front();
        if (item.control) --control_queued_;
        // Only a slow watcher's cancel needs its watch after the write: any other item lets go
        // of it now, so a watch canceled by its client is forgotten before the client can read
        // the notice and use the id again.
        if (!item.cancel_member_watch) {
          ReleaseLocked(item.watch);
          item.watch = nullptr;
        }
      }
      if (!stream_->Write(item.response)) {
        // The client went away; the reader sees the end of the stream and closes the session.
        {
          std::lock_guard<std::mutex> lock(mu_);
          queue_.clear();
          control_queued_ = 0;
        }
        room_.notify_all();
        continue;
      }
      room_.notify_all();
      if (item.cancel_member_watch && item.watch != nullptr) {
        Watch* watch = item.watch;
        (void)loop_.Run([&]() {
          if (watch->member_open) (void)loop_.member().CancelWatch(watch->member_id);
          watch->member_open = false;
        });
      }
      if (item.watch != nullptr) {
        std::lock_guard<std::mutex> lock(mu_);
        EndLocked(item.watch);
        ReleaseLocked(item.watch);
      }
    }
  }

  // The writer is done with one queued item of `watch` (under mu_): the watch may be forgotten
  // once it has ended and nothing of it is queued (Reap).
  void ReleaseLocked(Watch* watch) {
    if (watch == nullptr) return;
    if (--watch->queued == 0 && watch->ended) reapable_.push_back(watch->local_id);
  }

  const Loop& loop_;
  ServerContext* const context_;
  Stream* stream_;
  const size_t queue_limit_;
  const WatchCaller caller_;
  ConnectionWatchers& connection_watchers_;
  const std::string connection_;
  // The member and term the stream's responses report: written by the reader thread at each
  // creation, read by the loop thread as it delivers events to the stream's earlier watches.
  std::atomic<raft::NodeId> member_id_{0};
  std::atomic<raft::Term> term_{0};
  int64_t next_id_ = 0;
  std::map<int64_t, std::unique_ptr<Watch>> watches_;  // reader thread
  bool closed_ = false;

  std::mutex mu_;
  std::condition_variable wake_;  // the writer's: something to write, or stopping
  std::condition_variable room_;  // the reader's: the writer took an item out of the queue
  std::deque<Queued> queue_;
  size_t control_queued_ = 0;      // items of queue_ made by the reader thread (EnqueueLocal)
  std::vector<int64_t> reapable_;  // local ids of ended watches the writer is done with
  size_t open_ = 0;                // watches that hold a slot (not ended)
  bool stopping_ = false;
  std::thread writer_;
};

class WatchService final : public etcdserverpb::Watch::Service {
 public:
  WatchService(const Loop& loop, size_t queue_limit, size_t max_watchers_per_connection)
      : loop_(loop), queue_limit_(queue_limit), connection_watchers_(max_watchers_per_connection) {}

  grpc::Status Watch(ServerContext* context, WatchSession::Stream* stream) override {
    WatchSession session(loop_, context, stream, queue_limit_,
                         WatchCaller{TokenOf(context), loop_.CertUserOf(context)},
                         connection_watchers_, loop_.ConnectionOf(context));
    etcdserverpb::WatchRequest request;
    while (stream->Read(&request) && session.Handle(request)) {
    }
    session.Close();
    return grpc::Status::OK;
  }

 private:
  const Loop& loop_;
  const size_t queue_limit_;
  ConnectionWatchers connection_watchers_;
};

class LeaseService final : public etcdserverpb::Lease::Service {
 public:
  explicit LeaseService(const Loop& loop) : loop_(loop) {}

  grpc::Status LeaseGrant(ServerContext* context, const etcdserverpb::LeaseGrantRequest* request,
                          etcdserverpb::LeaseGrantResponse* response) override {
    return Unary(loop_, context, *request, response);
  }
  grpc::Status LeaseRevoke(ServerContext* context, const etcdserverpb::LeaseRevokeRequest* request,
                           etcdserverpb::LeaseRevokeResponse* response) override {
    return Unary(loop_, context, *request, response);
  }
  grpc::Status LeaseKeepAlive(
      ServerContext*,
      grpc::ServerReaderWriter<etcdserverpb::LeaseKeepAliveResponse,
                               etcdserverpb::LeaseKeepAliveRequest>* stream) override {
    etcdserverpb::LeaseKeepAliveRequest request;
    while (stream->Read(&request)) {
      server::Request converted;
      (void)ToRequest(request, &converted);
      etcdserverpb::LeaseKeepAliveResponse response;
      absl::Status answered = ToKeepAliveResponse(request.id(), loop_.Call(std::move(converted)),
                                                  loop_.cluster_id(), &response);
      if (!answered.ok()) return ToGrpcStatus(answered);
      if (!stream->Write(response)) break;
    }
    return grpc::Status::OK;
  }
  grpc::Status LeaseTimeToLive(ServerContext* context,
                               const etcdserverpb::LeaseTimeToLiveRequest* request,
                               etcdserverpb::LeaseTimeToLiveResponse* response) override {
    server::Request converted;
    (void)ToRequest(*request, &converted);
    // Checked as its caller (etcd's checkLeaseTimeToLive): the answer names the lease's keys.
    converted.token = TokenOf(context);
    converted.cert_user = loop_.CertUserOf(context);
    return ToGrpcStatus(ToTimeToLiveResponse(*request, loop_.Call(std::move(converted)),
                                             loop_.cluster_id(), response));
  }
  grpc::Status LeaseLeases(ServerContext* context, const etcdserverpb::LeaseLeasesRequest* request,
                           etcdserverpb::LeaseLeasesResponse* response) override {
    return Unary(loop_, context, *request, response);
  }

 private:
  const Loop& loop_;
};

class ClusterService final : public etcdserverpb::Cluster::Service {
 public:
  explicit ClusterService(const Loop& loop) : loop_(loop) {}

  grpc::Status MemberAdd(ServerContext* context, const etcdserverpb::MemberAddRequest* request,
                         etcdserverpb::MemberAddResponse* response) override {
    return Unary(loop_, context, *request, response);
  }
  grpc::Status MemberRemove(ServerContext* context,
                            const etcdserverpb::MemberRemoveRequest* request,
                            etcdserverpb::MemberRemoveResponse* response) override {
    return Unary(loop_, context, *request, response);
  }
  grpc::Status MemberUpdate(ServerContext* context,
                            const etcdserverpb::MemberUpdateRequest* request,
                            etcdserverpb::MemberUpdateResponse* response) override {
    return Unary(loop_, context, *request, response);
  }
  grpc::Status MemberList(ServerContext* context, const etcdserverpb::MemberListRequest* request,
                          etcdserverpb::MemberListResponse* response) override {
    return Unary(loop_, context, *request, response);
  }
  grpc::Status MemberPromote(ServerContext* context,
                             const etcdserverpb::MemberPromoteRequest* request,
                             etcdserverpb::MemberPromoteResponse* response) override {
    return Unary(loop_, context, *request, response);
  }

 private:
  const Loop& loop_;
};

class MaintenanceService final : public etcdserverpb::Maintenance::Service {
 public:
  MaintenanceService(const Loop& loop, size_t chunk_bytes)
      : loop_(loop), chunk_bytes_(chunk_bytes) {}

  grpc::Status Alarm(ServerContext* context, const etcdserverpb::AlarmRequest* request,
                     etcdserverpb::AlarmResponse* response) override {
    // etcd answers from its alarm store (KeepAnsweredAlarms): a GET with the alarms of the
    // request's type, a disarm with the alarm it deactivated, which etcdctl alarm disarm prints.
    // Its refusals are etcd's unconverted errors (ToRawAuthStatus).
    if (request->action() != etcdserverpb::AlarmRequest::DEACTIVATE) {
      if (grpc::Status s = Unary(loop_, context, *request, response, ToRawAuthStatus); !s.ok()) {
        return s;
      }
      KeepAnsweredAlarms(*request, response);
      return grpc::Status::OK;
    }
    // The core answers a disarm with the alarms left: the deactivated one is that of the
    // request's member and type active just before. If none is, etcd deactivates nothing (the
    // list already checked the permission a disarm needs).
    etcdserverpb::AlarmRequest list;
    list.set_action(etcdserverpb::AlarmRequest::GET);
    etcdserverpb::AlarmResponse before;
    if (grpc::Status s = Unary(loop_, context, list, &before, ToRawAuthStatus); !s.ok()) return s;
    KeepAnsweredAlarms(*request, &before);
    if (before.alarms().empty()) return grpc::Status::OK;
    if (grpc::Status s = Unary(loop_, context, *request, response, ToRawAuthStatus); !s.ok()) {
      return s;
    }
    *response = std::move(before);
    return grpc::Status::OK;
  }
  grpc::Status Status(ServerContext* context, const etcdserverpb::StatusRequest*,
                      etcdserverpb::StatusResponse* response) override {
    auto info = loop_.Status();
    if (!info.ok()) return ToGrpcStatus(info.status());
    ToProto(*info, loop_.cluster_id(), response);
    return grpc::Status::OK;
  }
  // Root only while auth is enabled: etcd's authMaintenanceServer refuses with the auth store's
  // own errors (ToRawAuthStatus), as it does Snapshot.
  grpc::Status Defragment(ServerContext* context, const etcdserverpb::DefragmentRequest* request,
                          etcdserverpb::DefragmentResponse* response) override {
    return Unary(loop_, context, *request, response, ToRawAuthStatus);
  }
  grpc::Status Hash(ServerContext* context, const etcdserverpb::HashRequest* request,
                    etcdserverpb::HashResponse* response) override {
    return Unary(loop_, context, *request, response, ToRawAuthStatus);
  }
  grpc::Status HashKV(ServerContext* context, const etcdserverpb::HashKVRequest* request,
                      etcdserverpb::HashKVResponse* response) override {
    return Unary(loop_, context, *request, response, ToRawAuthStatus);
  }
  grpc::Status Snapshot(ServerContext* context, const etcdserverpb::SnapshotRequest*,
                        grpc::ServerWriter<etcdserverpb::SnapshotResponse>* writer) override {
    // etcd's authMaintenanceServer.Snapshot: root only while auth is enabled (IsAdminPermitted).
    // The member answers that question for a local alarm list marked require_admin (an alarm
    // list alone is open to every caller), which it serves without the log and refuses exactly
    // as an admin check does (no user, invalid token, permission denied).
    server::Request admin_check;
    admin_check.type = server::RequestType::kAlarmList;
    admin_check.require_admin = true;
    admin_check.token = TokenOf(context);
    admin_check.cert_user = loop_.CertUserOf(context);
    if (server::Response answer = loop_.Call(std::move(admin_check)); !answer.status.ok()) {
      return ToRawAuthStatus(answer.status);
    }
    absl::StatusOr<std::string> data = Stopped();
    MemberStatusInfo info;
    (void)loop_.Run([&]() {
      info = loop_.member().Status();
      data = loop_.member().SnapshotData();
    });
    if (!data.ok()) return ToGrpcStatus(data.status());
    // etcd ends the stream with the SHA-256 of the database: etcdctl's snapshot save refuses a
    // stream without it and snapshot restore checks it.
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(data->data()), data->size(), digest);
    data->append(reinterpret_cast<const char*>(digest), sizeof(digest));
    server::ResponseHeader header;
    header.member_id = info.id;
    header.revision = info.revision;
    header.raft_term = info.term;
    size_t offset = 0;
    do {
      const size_t n = std::min(chunk_bytes_, data->size() - offset);
      etcdserverpb::SnapshotResponse response;
      ToHeader(header, loop_.cluster_id(), response.mutable_header());
      response.set_blob(data->substr(offset, n));
      offset += n;
      response.set_remaining_bytes(data->size() - offset);
      if (!writer->Write(response)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "snapshot: the client went away");
      }
    } while (offset < data->size());
    return grpc::Status::OK;
  }
  grpc::Status MoveLeader(ServerContext* context, const etcdserverpb::MoveLeaderRequest* request,
                          etcdserverpb::MoveLeaderResponse* response) override {
    return Unary(loop_, context, *request, response, ToMoveLeaderStatus);
  }

 private:
  const Loop& loop_;
  const size_t chunk_bytes_;
};

// etcd's Auth service: every call goes through the member's log; passwords are hashed by the
// member with a salt drawn here (net/entropy.h), and the caller's token travels with the call.
template <typename Req, typename Resp>
grpc::Status AuthUnary(const Loop& loop, const grpc::ServerContext* context, const Req& request,
                       Resp* response) {
  server::Request converted;
  if (absl::Status s = ToRequest(request, &converted); !s.ok()) return ToGrpcStatus(s);
  converted.token = TokenOf(context);
  converted.cert_user = loop.CertUserOf(context);
  AddAuthEntropy(&converted);
  server::Response answer = loop.Call(std::move(converted));
  if (!answer.status.ok()) return ToGrpcStatus(answer.status);
  ToAuthProto(answer, loop.cluster_id(), response);
  return grpc::Status::OK;
}

class AuthService final : public etcdserverpb::Auth::Service {
 public:
  explicit AuthService(const Loop& loop) : loop_(loop) {}

  grpc::Status AuthEnable(ServerContext* context, const etcdserverpb::AuthEnableRequest* request,
                          etcdserverpb::AuthEnableResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status AuthDisable(ServerContext* context, const etcdserverpb::AuthDisableRequest* request,
                           etcdserverpb::AuthDisableResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status Authenticate(ServerContext* context,
                            const etcdserverpb::AuthenticateRequest* request,
                            etcdserverpb::AuthenticateResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status UserAdd(ServerContext* context, const etcdserverpb::AuthUserAddRequest* request,
                       etcdserverpb::AuthUserAddResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status UserGet(ServerContext* context, const etcdserverpb::AuthUserGetRequest* request,
                       etcdserverpb::AuthUserGetResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status UserList(ServerContext* context, const etcdserverpb::AuthUserListRequest* request,
                        etcdserverpb::AuthUserListResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status UserDelete(ServerContext* context,
                          const etcdserverpb::AuthUserDeleteRequest* request,
                          etcdserverpb::AuthUserDeleteResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status UserChangePassword(ServerContext* context,
                                  const etcdserverpb::AuthUserChangePasswordRequest* request,
                                  etcdserverpb::AuthUserChangePasswordResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status UserGrantRole(ServerContext* context,
                             const etcdserverpb::AuthUserGrantRoleRequest* request,
                             etcdserverpb::AuthUserGrantRoleResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status UserRevokeRole(ServerContext* context,
                              const etcdserverpb::AuthUserRevokeRoleRequest* request,
                              etcdserverpb::AuthUserRevokeRoleResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status RoleAdd(ServerContext* context, const etcdserverpb::AuthRoleAddRequest* request,
                       etcdserverpb::AuthRoleAddResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status RoleGet(ServerContext* context, const etcdserverpb::AuthRoleGetRequest* request,
                       etcdserverpb::AuthRoleGetResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status RoleList(ServerContext* context, const etcdserverpb::AuthRoleListRequest* request,
                        etcdserverpb::AuthRoleListResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status RoleDelete(ServerContext* context,
                          const etcdserverpb::AuthRoleDeleteRequest* request,
                          etcdserverpb::AuthRoleDeleteResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status RoleGrantPermission(
      ServerContext* context, const etcdserverpb::AuthRoleGrantPermissionRequest* request,
      etcdserverpb::AuthRoleGrantPermissionResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }
  grpc::Status RoleRevokePermission(
      ServerContext* context, const etcdserverpb::AuthRoleRevokePermissionRequest* request,
      etcdserverpb::AuthRoleRevokePermissionResponse* response) override {
    return AuthUnary(loop_, context, *request, response);
  }

 private:
  const Loop& loop_;
};

}  // namespace

struct Services::Impl {
  Impl(MemberService& member, const kj::Executor& executor, const ServiceOptions& options)
      : loop(member, executor),
        kv(loop, inbox),
        watch(loop, options.watch_queue_limit_responses, options.max_watchers_per_connection),
        lease(loop),
        cluster(loop),
        maintenance(loop, options.snapshot_chunk_bytes),
        auth(loop) {
    loop.set_cert_users(options.cert_users);
  }

  Loop loop;
  Inbox inbox;
  KvService kv;
  WatchService watch;
  LeaseService lease;
  ClusterService cluster;
  MaintenanceService maintenance;
  AuthService auth;
};

void CertUsers::Set(int fd, std::string user) {
  std::lock_guard<std::mutex> lock(mutex_);
  users_[absl::StrCat("fd:", fd)] = Entry{std::move(user), ++connections_};
}

std::string CertUsers::Lookup(const std::string& grpc_peer) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = users_.find(grpc_peer);
  return it == users_.end() ? std::string() : it->second.user;
}

std::string CertUsers::ConnectionOf(const std::string& grpc_peer) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = users_.find(grpc_peer);
  return it == users_.end() ? grpc_peer : absl::StrCat(grpc_peer, "#", it->second.connection);
}

Services::Services(MemberService& member, const kj::Executor& loop, const ServiceOptions& options)
    : impl_(std::make_unique<Impl>(member, loop, options)) {}

Services::~Services() = default;

void Services::RegisterWith(grpc::ServerBuilder& builder) {
  builder.RegisterService(&impl_->kv);
  builder.RegisterService(&impl_->watch);
  builder.RegisterService(&impl_->lease);
  builder.RegisterService(&impl_->cluster);
  builder.RegisterService(&impl_->maintenance);
  builder.RegisterService(&impl_->auth);
}

server::Response Services::Call(server::Request request) {
  return impl_->loop.Call(std::move(request));
}

uint64_t Services::cluster_id() const { return impl_->loop.cluster_id(); }

}  // namespace kvstore::net::etcd
