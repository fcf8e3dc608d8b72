#include "net/etcd/service.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "net/cross_thread.h"
#include "net/entropy.h"
#include "net/etcd/convert.h"
#include "net/etcd/rpc.grpc.pb.h"
#include "net/etcd/watch_request.h"

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
      for (auto& job : jobs) {
        // A job that throws loses its own call only: the rest of the batch, and every later
        // one, still run.
        KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { job(tasks_); })) {
          (void)e;
        }
      }
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

// The member's answer to a unary call as the method's response (etcd's conversion): OK, or the
// status the call ends with.
template <typename Req, typename Resp>
absl::Status AnswerAsProto(const Loop& loop, const Req&, const server::Response& answer,
                           Resp* response) {
  if (!answer.status.ok()) return answer.status;
  ToProto(answer, loop.cluster_id(), response);
  return absl::OkStatus();
}

// The member's answer to an Auth call (etcd's auth responses).
template <typename Req, typename Resp>
absl::Status AnswerAsAuthProto(const Loop& loop, const Req&, const server::Response& answer,
                               Resp* response) {
  if (!answer.status.ok()) return answer.status;
  ToAuthProto(answer, loop.cluster_id(), response);
  return absl::OkStatus();
}

// The request of a unary call as the member takes it (the caller's token and certificate user
// included), or the conversion's failure.
template <typename Req>
absl::StatusOr<server::Request> CallerRequest(const Loop& loop,
                                              const grpc::ServerContextBase* context,
                                              const Req& request) {
  server::Request converted;
  if (absl::Status s = ToRequest(request, &converted); !s.ok()) return s;
  converted.token = TokenOf(context);
  converted.cert_user = loop.CertUserOf(context);
  return converted;
}

// How a unary method answers: `answer` converts the member's answer to the response (or the
// failure the call ends with), `to_status` maps a failure to etcd's status, and `prepare`, if
// set, completes the request first (AddAuthEntropy for Auth's).
template <typename Req, typename Resp>
struct UnaryWay {
  using Answer = absl::Status (*)(const Loop&, const Req&, const server::Response&, Resp*);
  // A default argument, not a member initializer: AnswerAsProto exists only for the methods
  // that use it.
  UnaryWay(Answer answer = AnswerAsProto<Req, Resp>) : answer(answer) {}  // NOLINT: implicit

  Answer answer;
  grpc::Status (*to_status)(const absl::Status&) = ToGrpcStatus;
  void (*prepare)(server::Request*) = nullptr;
};

// One unary method without blocking a gRPC thread: the request goes to the member through the
// inbox, and the member's answer finishes the call from the loop.
template <typename Req, typename Resp>
grpc::ServerUnaryReactor* UnaryAsync(const Loop& loop, Inbox& inbox,
                                     grpc::CallbackServerContext* context, const Req* request,
                                     Resp* response, UnaryWay<Req, Resp> way = {}) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<server::Request> converted = CallerRequest(loop, context, *request);
  if (!converted.ok()) {
    reactor->Finish(ToGrpcStatus(converted.status()));
    return reactor;
  }
  if (way.prepare != nullptr) way.prepare(&*converted);
  const bool posted = inbox.Post([&loop, reactor, request, response, way,
                                  converted = std::move(*converted)](kj::TaskSet& tasks) mutable {
    tasks.add(loop.member()
                  .Call(std::move(converted))
                  .then(
                      [&loop, reactor, request, response, way](server::Response result) {
                        reactor->Finish(
                            way.to_status(way.answer(loop, *request, result, response)));
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

// One Watch stream on gRPC's callback API: no thread waits for it. Its state lives in a
// WatchStreamState shared by the stream's reactor (gRPC's threads) and the jobs it posts to the
// member's loop (the Inbox), so a job that runs after the stream has ended still finds it.
//  - The member side (the watchers, their ids, creation, cancel and progress) is touched only
//    on the loop's thread, by jobs the reactor posts; the member delivers there too.
//  - The responses not yet written queue under `mu`; at most one write is outstanding, started
//    by whoever queues the first response while none is, then by OnWriteDone for the next.
//  - Requests are read one at a time: the next read starts once the loop has handled the last
//    request and there is room (fewer than kMaxQueuedControlResponses control responses, and
//    the queue under its limit); otherwise OnWriteDone starts it when a write makes room. So a
//    client that floods requests and never reads is held back by HTTP/2 flow control, as
//    etcd 3.4's recvLoop blocks on its ctrlStream.
//  - The stream ends on the client's half-close or cancel, or a failed write: a job cancels
//    every member watch and gives the slots back, then the stream finishes with OK once no
//    write is outstanding. No reactor method is called after Finish (`finished`), and OnDone
//    deletes the reactor.
class WatchReactor;

class WatchStreamState : public std::enable_shared_from_this<WatchStreamState> {
 public:
  // `caller`: who the stream's watches run as (its call's token metadata, else the client
  // certificate's user), checked as each watch is created.
  // `connection` names the stream's client connection in `connection_watchers`, whose slots
  // its open watchers hold.
  WatchStreamState(const Loop& loop, Inbox& inbox, size_t queue_limit, WatchCaller caller,
                   ConnectionWatchers& connection_watchers, std::string connection)
      : loop_(loop),
        inbox_(inbox),
        queue_limit_(queue_limit),
        caller_(std::move(caller)),
        connection_watchers_(connection_watchers),
        connection_(std::move(connection)) {}

  // Binds the reactor (before its first read) and starts reading.
  void Start(WatchReactor* reactor);
  // gRPC's threads: one request read (posted to the loop), a write done, the stream ending.
  void OnRequest(etcdserverpb::WatchRequest request);
  void OnWriteDone(bool ok);
  void BeginClose();

 private:
  // The member's sink for one watch; Deliver runs on the loop thread.
  struct Watch final : public WatchSink {
    WatchStreamState* state = nullptr;
    int64_t local_id = 0;
    mvcc::WatchId member_id = 0;
    bool member_open = false;    // loop thread only
    bool ended = false;          // under mu_: nothing more is queued
    bool counted = false;        // under mu_: holds a slot (open_, connection)
    size_t queued = 0;           // under mu_: items in the queue (or being written) that point here
    bool client_cancel = false;  // loop thread: the member is canceling it for its client

    void Deliver(const mvcc::WatchResponse& response) override {
      if (response.canceled) member_open = false;
      state->Enqueue(this, response, response.canceled && client_cancel);
    }
  };

  struct Queued {
    Watch* watch = nullptr;  // nullptr: not for a member watch
    etcdserverpb::WatchResponse response;
    bool cancel_member_watch = false;  // a slow watcher's end: cancel it once written
    bool control = false;              // an answer to a request (EnqueueControl)
  };

  enum class Reading { kHeld, kReading, kHandling };

  // Runs `job` on the loop (with the state kept alive); false when the loop has gone. A job's
  // failure is caught so the inbox keeps draining.
  bool PostToLoop(std::function<void()> job) {
    return inbox_.Post([self = shared_from_this(), job = std::move(job)](kj::TaskSet&) {
      try {
        job();
      } catch (const kj::Exception&) {
      }
    });
  }

  // Loop thread: the request read last; then the next read may start.
  void Handle(const etcdserverpb::WatchRequest& request) {
    if (!closed_on_loop_) {
      DispatchWatchRequest(
          request, [this](const etcdserverpb::WatchCreateRequest& create) { Create(create); },
          [this](int64_t watch_id) { Cancel(watch_id); }, [this] { Progress(); });
    }
    std::lock_guard<std::mutex> lock(mu_);
    reading_ = Reading::kHeld;
    MaybeReadLocked();
  }

  // Loop thread: the stream has ended; ends every member watch and gives the slots back.
  void CloseOnLoop() {
    closed_on_loop_ = true;
    for (auto& [local_id, watch] : watches_) {
      if (watch->member_open) (void)loop_.member().CancelWatch(watch->member_id);
      watch->member_open = false;
    }
    EndAllAndFinish();
  }

  // Every watch of the stream has ended: each gives its slots back, and the stream finishes once
  // no write is outstanding.
  void EndAllAndFinish() {
    WatchReactor* finish = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [local_id, watch] : watches_) EndLocked(watch.get());
      close_done_ = true;
      finish = TakeFinishLocked();
    }
    Finish(finish);
  }

  // The reactor to finish, when the stream has ended, its watches are closed and no write is
  // outstanding (under mu_); null otherwise. Called once it is not null.
  WatchReactor* TakeFinishLocked() {
    if (!closing_ || !close_done_ || writing_ || finished_) return nullptr;
    finished_ = true;
    return reactor_;
  }
  // Outside mu_: gRPC may run OnDone (which drops the reactor's reference) before it returns.
  static void Finish(WatchReactor* reactor);

  // Loop thread (from Deliver or a creation). `client_cancel`: the canceled notice of a watch
  // its client canceled, which etcd 3.4 answers {watch_id, canceled} with no reason (its
  // recvLoop's answer to a WatchCancelRequest).
  void Enqueue(Watch* watch, const mvcc::WatchResponse& response, bool client_cancel = false) {
    Queued item;
    item.watch = watch;
    ToProto(response, loop_.cluster_id(), member_id_, term_, &item.response);
    item.response.set_watch_id(watch->local_id);
    if (client_cancel) item.response.clear_cancel_reason();
    std::lock_guard<std::mutex> lock(mu_);
    if (watch->ended) return;
    if (closing_) {
      if (response.canceled) EndLocked(watch);
      return;  // nothing more is written
    }
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
    MaybeWriteLocked();
  }

  // Loop thread, handling a request (the read waits for room before each one): at most
  // kMaxQueuedControlResponses of these are queued.
  void EnqueueControl(etcdserverpb::WatchResponse response) {
    Queued item;
    item.response = std::move(response);
    item.control = true;
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return;
    ++control_queued_;
    queue_.push_back(std::move(item));
    MaybeWriteLocked();
  }

  // Under mu_: starts writing the queue's front when no write is outstanding.
  void MaybeWriteLocked();
  // Under mu_: starts reading the next request when none is being read or handled and the
  // queue has room for what it may add. etcd 3.4's recvLoop blocks the same way on its
  // ctrlStream channel (16 responses).
  void MaybeReadLocked();

  void Create(const etcdserverpb::WatchCreateRequest& request) {
    Reap();
    const MemberStatusInfo status = loop_.member().Status();
    member_id_ = status.id;
    term_ = status.term;
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
      header.member_id = member_id_;
      header.raft_term = term_;
      header.revision = status.revision;
      ToHeader(header, loop_.cluster_id(), refused.mutable_header());
      refused.set_watch_id(-1);
      refused.set_created(true);
      refused.set_canceled(true);
      refused.set_cancel_reason(in_use ? "mvcc: duplicate watch ID provided on the WatchStream"
                                       : std::string(valid.message()));
      EnqueueControl(std::move(refused));
      return;
    }
    auto watch = std::make_unique<Watch>();
    watch->state = this;
    watch->local_id = local_id;
    {
      // The connection's slot taken above, until the watch ends (EndLocked).
      std::lock_guard<std::mutex> lock(mu_);
      watch->counted = true;
      ++open_;
    }
    absl::Status opened;
    watch->member_open = true;  // responses may arrive before Watch returns
    absl::StatusOr<mvcc::WatchId> id = loop_.member().Watch(converted, caller_, watch.get());
    if (id.ok()) {
      watch->member_id = *id;
    } else {
      watch->member_open = false;
      opened = id.status();
    }
    if (!opened.ok()) {
      MemberStatusInfo info = status;
      if (CodeOf(opened) == ErrorCode::kCompacted) {
        // The refusal may come from a compaction applied since `status` was read.
        info.compact_revision = loop_.member().Status().compact_revision;
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
        ToProto(refused.created, loop_.cluster_id(), member_id_, term_, &single);
        single.set_watch_id(-1);
        EnqueueControl(std::move(single));
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
  // revision. Read on the loop, after every event it covers has been queued here for the
  // stream's synced watchers.
  void Progress() {
    const MemberStatusInfo status = loop_.member().Status();
    etcdserverpb::WatchResponse progress;
    server::ResponseHeader header;
    header.member_id = status.id;
    header.raft_term = status.term;
    header.revision = status.revision;
    ToHeader(header, loop_.cluster_id(), progress.mutable_header());
    progress.set_watch_id(-1);
    EnqueueControl(std::move(progress));
  }

  void Cancel(int64_t local_id) {
    Reap();
    auto it = watches_.find(local_id);
    if (it == watches_.end()) return;  // etcd ignores an unknown id
    Watch* watch = it->second.get();
    if (watch->member_open) {
      // The member delivers the canceled notice during CancelWatch.
      watch->client_cancel = true;
      (void)loop_.member().CancelWatch(watch->member_id);
      watch->client_cancel = false;
      watch->member_open = false;
    }
    // Kept until its canceled notice is written (Reap): a write may still hold it.
  }

  // Loop thread: a slow watcher's cancel notice has been written; its member watch ends now.
  void CancelSlowWatcher(Watch* watch) {
    if (watch->member_open) (void)loop_.member().CancelWatch(watch->member_id);
    watch->member_open = false;
    std::lock_guard<std::mutex> lock(mu_);
    EndLocked(watch);
    ReleaseLocked(watch);
  }

  // Forgets the watches that have ended and whose last response has been written (loop
  // thread): the member calls an ended watch's sink no more, and no write holds anything of it.
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

  // A write is done with one queued item of `watch` (under mu_): the watch may be forgotten
  // once it has ended and nothing of it is queued (Reap).
  void ReleaseLocked(Watch* watch) {
    if (watch == nullptr) return;
    if (--watch->queued == 0 && watch->ended) reapable_.push_back(watch->local_id);
  }

  const Loop& loop_;
  Inbox& inbox_;
  const size_t queue_limit_;
  const WatchCaller caller_;
  ConnectionWatchers& connection_watchers_;
  const std::string connection_;

  // Loop thread only.
  raft::NodeId member_id_ = 0;  // the member and term the stream's responses report
  raft::Term term_ = 0;
  int64_t next_id_ = 0;
  std::map<int64_t, std::unique_ptr<Watch>> watches_;
  bool closed_on_loop_ = false;

  std::mutex mu_;
  WatchReactor* reactor_ = nullptr;  // valid until finished_ (OnDone follows Finish)
  std::deque<Queued> queue_;
  size_t control_queued_ = 0;      // control items of queue_ (EnqueueControl)
  std::vector<int64_t> reapable_;  // local ids of ended watches no write holds any more
  size_t open_ = 0;                // watches that hold a slot (not ended)
  Queued writing_item_;            // the response being written (while writing_)
  bool writing_ = false;           // one StartWrite outstanding
  Reading reading_ = Reading::kHeld;
  bool closing_ = false;     // the stream has ended: nothing more is read or written
  bool close_done_ = false;  // CloseOnLoop has run (or the loop has gone)
  bool finished_ = false;    // Finish has been called: no reactor method any more
};

class WatchReactor final
    : public grpc::ServerBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse> {
 public:
  explicit WatchReactor(std::shared_ptr<WatchStreamState> state) : state_(std::move(state)) {
    state_->Start(this);
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      state_->OnRequest(std::move(request_));
    } else {
      state_->BeginClose();  // the client half-closed, or the stream broke
    }
  }
  void OnWriteDone(bool ok) override { state_->OnWriteDone(ok); }
  void OnCancel() override { state_->BeginClose(); }
  void OnDone() override { delete this; }

  etcdserverpb::WatchRequest* request() { return &request_; }

 private:
  std::shared_ptr<WatchStreamState> state_;
  etcdserverpb::WatchRequest request_;  // the read outstanding's
};

void WatchStreamState::Start(WatchReactor* reactor) {
  std::lock_guard<std::mutex> lock(mu_);
  reactor_ = reactor;
  MaybeReadLocked();
}

void WatchStreamState::Finish(WatchReactor* reactor) {
  if (reactor != nullptr) reactor->Finish(grpc::Status::OK);
}

void WatchStreamState::MaybeReadLocked() {
  if (closing_ || finished_ || reading_ != Reading::kHeld) return;
  if (control_queued_ >= kMaxQueuedControlResponses || queue_.size() >= queue_limit_) return;
  reading_ = Reading::kReading;
  reactor_->StartRead(reactor_->request());  // its reaction is never run inline
}

void WatchStreamState::MaybeWriteLocked() {
  if (writing_ || closing_ || finished_ || queue_.empty()) return;
  writing_item_ = std::move(queue_.front());
  queue_.pop_front();
  if (writing_item_.control) --control_queued_;
  // Only a slow watcher's cancel needs its watch after the write: any other item lets go of
  // it now, so a watch canceled by its client is forgotten before the client can read the
  // notice and use the id again.
  if (!writing_item_.cancel_member_watch) {
    ReleaseLocked(writing_item_.watch);
    writing_item_.watch = nullptr;
  }
  writing_ = true;
  reactor_->StartWrite(&writing_item_.response);  // its reaction is never run inline
}

void WatchStreamState::OnRequest(etcdserverpb::WatchRequest request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return;
    reading_ = Reading::kHandling;
  }
  auto shared = std::make_shared<etcdserverpb::WatchRequest>(std::move(request));
  if (!PostToLoop([this, shared] { Handle(*shared); })) BeginClose();
}

void WatchStreamState::OnWriteDone(bool ok) {
  Watch* slow = nullptr;
  WatchReactor* finish = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (ok && writing_item_.cancel_member_watch) slow = writing_item_.watch;
    writing_item_ = Queued();
    if (ok) {
      MaybeWriteLocked();
      MaybeReadLocked();
    }
    finish = TakeFinishLocked();
  }
  if (!ok) {
    BeginClose();  // the client went away
    Finish(finish);
    return;
  }
  if (slow != nullptr && !PostToLoop([this, slow] { CancelSlowWatcher(slow); })) {
    std::lock_guard<std::mutex> lock(mu_);
    EndLocked(slow);
    ReleaseLocked(slow);
  }
  Finish(finish);
}

void WatchStreamState::BeginClose() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return;
    closing_ = true;
    queue_.clear();
    control_queued_ = 0;
  }
  if (PostToLoop([this] { CloseOnLoop(); })) return;
  // The loop has gone, and no job of this stream will run: its watches give their slots back
  // here.
  EndAllAndFinish();
}

class WatchService final : public etcdserverpb::Watch::CallbackService {
 public:
  WatchService(const Loop& loop, Inbox& inbox, size_t queue_limit,
               size_t max_watchers_per_connection)
      : loop_(loop),
        inbox_(inbox),
        queue_limit_(queue_limit),
        connection_watchers_(max_watchers_per_connection) {}

  grpc::ServerBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>* Watch(
      grpc::CallbackServerContext* context) override {
    return new WatchReactor(std::make_shared<WatchStreamState>(
        loop_, inbox_, queue_limit_, WatchCaller{TokenOf(context), loop_.CertUserOf(context)},
        connection_watchers_, loop_.ConnectionOf(context)));
  }

 private:
  const Loop& loop_;
  Inbox& inbox_;
  const size_t queue_limit_;
  ConnectionWatchers connection_watchers_;
};

// One LeaseKeepAlive stream on gRPC's callback API: read a request, renew the lease on the
// member's loop (through the inbox), write the answer, read the next. One step at a time, so the
// reactor is alive for every step: it finishes only with no step outstanding (a client that
// cancels while a renewal is on the loop fails the answer's write, which finishes the stream).
// A refused renewal ends the stream with its status, as etcd's does.
class KeepAliveReactor final
    : public grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                     etcdserverpb::LeaseKeepAliveResponse> {
 public:
  KeepAliveReactor(const Loop& loop, Inbox& inbox) : loop_(loop), inbox_(inbox) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);  // the client half-closed, or went away
      return;
    }
    server::Request converted;
    (void)ToRequest(request_, &converted);
    const int64_t lease_id = request_.id();
    const bool posted = inbox_.Post([this, lease_id,
                                     converted = std::move(converted)](kj::TaskSet& tasks) mutable {
      tasks.add(loop_.member()
                    .Call(std::move(converted))
                    .then([this, lease_id](
                              server::Response answer) { Answered(lease_id, std::move(answer)); },
                          [this, lease_id](kj::Exception&&) {
                            server::Response stopped;
                            stopped.status = Stopped();
                            Answered(lease_id, std::move(stopped));
                          }));
    });
    if (!posted) {
      server::Response stopped;
      stopped.status = Stopped();
      Answered(lease_id, std::move(stopped));
    }
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);  // the client went away
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  // The member's answer (loop thread, or gRPC's when the loop has gone).
  void Answered(int64_t lease_id, server::Response answer) {
    absl::Status answered =
        ToKeepAliveResponse(lease_id, std::move(answer), loop_.cluster_id(), &response_);
    if (!answered.ok()) {
      Finish(ToGrpcStatus(answered));
      return;
    }
    StartWrite(&response_);  // fails at once on a canceled stream; OnWriteDone finishes it
  }

  const Loop& loop_;
  Inbox& inbox_;
  etcdserverpb::LeaseKeepAliveRequest request_;
  etcdserverpb::LeaseKeepAliveResponse response_;
};

// No call holds a thread: the unary methods wait on the loop as KV's do (UnaryAsync), the
// keep-alive stream as a reactor (KeepAliveReactor). Sessions, locks and elections (etcd's
// concurrency package) grant and revoke leases all the time.
class LeaseService final : public etcdserverpb::Lease::CallbackService {
 public:
  LeaseService(const Loop& loop, Inbox& inbox) : loop_(loop), inbox_(inbox) {}

  grpc::ServerUnaryReactor* LeaseGrant(grpc::CallbackServerContext* context,
                                       const etcdserverpb::LeaseGrantRequest* request,
                                       etcdserverpb::LeaseGrantResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerUnaryReactor* LeaseRevoke(grpc::CallbackServerContext* context,
                                        const etcdserverpb::LeaseRevokeRequest* request,
                                        etcdserverpb::LeaseRevokeResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                          etcdserverpb::LeaseKeepAliveResponse>*
  LeaseKeepAlive(grpc::CallbackServerContext*) override {
    return new KeepAliveReactor(loop_, inbox_);
  }
  // Checked as its caller (etcd's checkLeaseTimeToLive): the answer names the lease's keys.
  grpc::ServerUnaryReactor* LeaseTimeToLive(
      grpc::CallbackServerContext* context, const etcdserverpb::LeaseTimeToLiveRequest* request,
      etcdserverpb::LeaseTimeToLiveResponse* response) override {
    UnaryWay<etcdserverpb::LeaseTimeToLiveRequest, etcdserverpb::LeaseTimeToLiveResponse> way(
        +[](const Loop& loop, const etcdserverpb::LeaseTimeToLiveRequest& request,
            const server::Response& answer, etcdserverpb::LeaseTimeToLiveResponse* response) {
          return ToTimeToLiveResponse(request, answer, loop.cluster_id(), response);
        });
    return UnaryAsync(loop_, inbox_, context, request, response, way);
  }
  grpc::ServerUnaryReactor* LeaseLeases(grpc::CallbackServerContext* context,
                                        const etcdserverpb::LeaseLeasesRequest* request,
                                        etcdserverpb::LeaseLeasesResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }

 private:
  const Loop& loop_;
  Inbox& inbox_;
};

class ClusterService final : public etcdserverpb::Cluster::CallbackService {
 public:
  ClusterService(const Loop& loop, Inbox& inbox) : loop_(loop), inbox_(inbox) {}

  grpc::ServerUnaryReactor* MemberAdd(grpc::CallbackServerContext* context,
                                      const etcdserverpb::MemberAddRequest* request,
                                      etcdserverpb::MemberAddResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerUnaryReactor* MemberRemove(grpc::CallbackServerContext* context,
                                         const etcdserverpb::MemberRemoveRequest* request,
                                         etcdserverpb::MemberRemoveResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerUnaryReactor* MemberUpdate(grpc::CallbackServerContext* context,
                                         const etcdserverpb::MemberUpdateRequest* request,
                                         etcdserverpb::MemberUpdateResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerUnaryReactor* MemberList(grpc::CallbackServerContext* context,
                                       const etcdserverpb::MemberListRequest* request,
                                       etcdserverpb::MemberListResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }
  grpc::ServerUnaryReactor* MemberPromote(grpc::CallbackServerContext* context,
                                          const etcdserverpb::MemberPromoteRequest* request,
                                          etcdserverpb::MemberPromoteResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response);
  }

 private:
  const Loop& loop_;
  Inbox& inbox_;
};

// Every method but Snapshot on the callback API (status and hash are what monitoring polls);
// Snapshot streams the whole database from a thread of gRPC's, as etcd's does from a goroutine.
using MaintenanceBase = etcdserverpb::Maintenance::WithCallbackMethod_Alarm<
    etcdserverpb::Maintenance::WithCallbackMethod_Status<
        etcdserverpb::Maintenance::WithCallbackMethod_Defragment<
            etcdserverpb::Maintenance::WithCallbackMethod_Hash<
                etcdserverpb::Maintenance::WithCallbackMethod_HashKV<
                    etcdserverpb::Maintenance::WithCallbackMethod_MoveLeader<
                        etcdserverpb::Maintenance::Service>>>>>>;

class MaintenanceService final : public MaintenanceBase {
 public:
  MaintenanceService(const Loop& loop, Inbox& inbox, size_t chunk_bytes)
      : loop_(loop), inbox_(inbox), chunk_bytes_(chunk_bytes) {}

  grpc::ServerUnaryReactor* Alarm(grpc::CallbackServerContext* context,
                                  const etcdserverpb::AlarmRequest* request,
                                  etcdserverpb::AlarmResponse* response) override {
    // etcd answers from its alarm store (KeepAnsweredAlarms): a GET with the alarms of the
    // request's type, a disarm with the alarm it deactivated, which etcdctl alarm disarm prints.
    // Its refusals are etcd's unconverted errors (ToRawAuthStatus).
    using Way = UnaryWay<etcdserverpb::AlarmRequest, etcdserverpb::AlarmResponse>;
    if (request->action() != etcdserverpb::AlarmRequest::DEACTIVATE) {
      Way way(+[](const Loop& loop, const etcdserverpb::AlarmRequest& request,
                  const server::Response& answer, etcdserverpb::AlarmResponse* response) {
        if (!answer.status.ok()) return answer.status;
        ToProto(answer, loop.cluster_id(), response);
        KeepAnsweredAlarms(request, response);
        return absl::OkStatus();
      });
      way.to_status = ToRawAuthStatus;
      return UnaryAsync(loop_, inbox_, context, request, response, way);
    }
    // The core answers a disarm with the alarms left: the deactivated one is that of the
    // request's member and type active just before. If none is, etcd deactivates nothing (the
    // list already checked the permission a disarm needs).
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    etcdserverpb::AlarmRequest list_request;
    list_request.set_action(etcdserverpb::AlarmRequest::GET);
    absl::StatusOr<server::Request> list = CallerRequest(loop_, context, list_request);
    if (!list.ok()) {
      reactor->Finish(ToGrpcStatus(list.status()));
      return reactor;
    }
    absl::StatusOr<server::Request> disarm = CallerRequest(loop_, context, *request);
    const Loop& loop = loop_;
    const bool posted = inbox_.Post([&loop, reactor, request, response, list = std::move(*list),
                                     disarm = std::move(disarm)](kj::TaskSet& tasks) mutable {
      tasks.add(
          loop.member()
              .Call(std::move(list))
              .then([&loop, reactor, request, response, disarm = std::move(disarm)](
                        server::Response listed) mutable -> kj::Promise<void> {
                if (!listed.status.ok()) {
                  reactor->Finish(ToRawAuthStatus(listed.status));
                  return kj::READY_NOW;
                }
                auto before = std::make_shared<etcdserverpb::AlarmResponse>();
                ToProto(listed, loop.cluster_id(), before.get());
                KeepAnsweredAlarms(*request, before.get());
                if (before->alarms().empty()) {
                  reactor->Finish(grpc::Status::OK);
                  return kj::READY_NOW;
                }
                if (!disarm.ok()) {
                  reactor->Finish(ToGrpcStatus(disarm.status()));
                  return kj::READY_NOW;
                }
                return loop.member()
                    .Call(std::move(*disarm))
                    .then([reactor, response, before](server::Response disarmed) {
                      if (!disarmed.status.ok()) {
                        reactor->Finish(ToRawAuthStatus(disarmed.status));
                        return;
                      }
                      *response = std::move(*before);
                      reactor->Finish(grpc::Status::OK);
                    });
              })
              .catch_([reactor](kj::Exception&&) { reactor->Finish(ToGrpcStatus(Stopped())); }));
    });
    if (!posted) reactor->Finish(ToGrpcStatus(Stopped()));
    return reactor;
  }
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* context,
                                   const etcdserverpb::StatusRequest*,
                                   etcdserverpb::StatusResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    const Loop& loop = loop_;
    const bool posted = inbox_.Post([&loop, reactor, response](kj::TaskSet&) {
      ToProto(loop.member().Status(), loop.cluster_id(), response);
      reactor->Finish(grpc::Status::OK);
    });
    if (!posted) reactor->Finish(ToGrpcStatus(Stopped()));
    return reactor;
  }
  // Root only while auth is enabled: etcd's authMaintenanceServer refuses with the auth store's
  // own errors (ToRawAuthStatus), as it does Snapshot.
  grpc::ServerUnaryReactor* Defragment(grpc::CallbackServerContext* context,
                                       const etcdserverpb::DefragmentRequest* request,
                                       etcdserverpb::DefragmentResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response, RawAuthWay(request, response));
  }
  grpc::ServerUnaryReactor* Hash(grpc::CallbackServerContext* context,
                                 const etcdserverpb::HashRequest* request,
                                 etcdserverpb::HashResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response, RawAuthWay(request, response));
  }
  grpc::ServerUnaryReactor* HashKV(grpc::CallbackServerContext* context,
                                   const etcdserverpb::HashKVRequest* request,
                                   etcdserverpb::HashKVResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response, RawAuthWay(request, response));
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
    absl::StatusOr<std::shared_ptr<net::SnapshotCopy>> copy = Stopped();
    MemberStatusInfo info;
    // The copy is made off the loop (MemberService::TakeSnapshot); this thread waits for it and
    // then streams it from its file a chunk at a time.
    (void)loop_.Run([&]() {
      info = loop_.member().Status();
      return loop_.member().TakeSnapshot().then(
          [&](absl::StatusOr<std::shared_ptr<net::SnapshotCopy>> taken) {
            copy = std::move(taken);
          });
    });
    if (!copy.ok()) return ToGrpcStatus(copy.status());
    server::ResponseHeader header;
    header.member_id = info.id;
    header.revision = info.revision;
    header.raft_term = info.term;
    SnapshotChunks chunks(*std::move(copy), chunk_bytes_, header, loop_.cluster_id());
    etcdserverpb::SnapshotResponse response;
    while (true) {
      absl::StatusOr<bool> more = chunks.Next(&response);
      if (!more.ok()) return ToGrpcStatus(more.status());
      if (!*more) return grpc::Status::OK;
      if (!writer->Write(response)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "snapshot: the client went away");
      }
    }
  }
  grpc::ServerUnaryReactor* MoveLeader(grpc::CallbackServerContext* context,
                                       const etcdserverpb::MoveLeaderRequest* request,
                                       etcdserverpb::MoveLeaderResponse* response) override {
    UnaryWay<etcdserverpb::MoveLeaderRequest, etcdserverpb::MoveLeaderResponse> way;
    way.to_status = ToMoveLeaderStatus;
    return UnaryAsync(loop_, inbox_, context, request, response, way);
  }

 private:
  // The default answer, failures mapped by ToRawAuthStatus.
  template <typename Req, typename Resp>
  static UnaryWay<Req, Resp> RawAuthWay(const Req*, const Resp*) {
    UnaryWay<Req, Resp> way;
    way.to_status = ToRawAuthStatus;
    return way;
  }

  const Loop& loop_;
  Inbox& inbox_;
  const size_t chunk_bytes_;
};

// etcd's Auth service: every call goes through the member's log; passwords are hashed by the
// member with a salt drawn here (net/entropy.h), and the caller's token travels with the call.
template <typename Req, typename Resp>
UnaryWay<Req, Resp> AuthWay() {
  UnaryWay<Req, Resp> way(AnswerAsAuthProto<Req, Resp>);
  way.prepare = AddAuthEntropy;
  return way;
}

class AuthService final : public etcdserverpb::Auth::CallbackService {
 public:
  AuthService(const Loop& loop, Inbox& inbox) : loop_(loop), inbox_(inbox) {}

  grpc::ServerUnaryReactor* AuthEnable(grpc::CallbackServerContext* context,
                                       const etcdserverpb::AuthEnableRequest* request,
                                       etcdserverpb::AuthEnableResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response,
                      AuthWay<etcdserverpb::AuthEnableRequest, etcdserverpb::AuthEnableResponse>());
  }
  grpc::ServerUnaryReactor* AuthDisable(grpc::CallbackServerContext* context,
                                        const etcdserverpb::AuthDisableRequest* request,
                                        etcdserverpb::AuthDisableResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthDisableRequest, etcdserverpb::AuthDisableResponse>());
  }
  grpc::ServerUnaryReactor* Authenticate(grpc::CallbackServerContext* context,
                                         const etcdserverpb::AuthenticateRequest* request,
                                         etcdserverpb::AuthenticateResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthenticateRequest, etcdserverpb::AuthenticateResponse>());
  }
  grpc::ServerUnaryReactor* UserAdd(grpc::CallbackServerContext* context,
                                    const etcdserverpb::AuthUserAddRequest* request,
                                    etcdserverpb::AuthUserAddResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthUserAddRequest, etcdserverpb::AuthUserAddResponse>());
  }
  grpc::ServerUnaryReactor* UserGet(grpc::CallbackServerContext* context,
                                    const etcdserverpb::AuthUserGetRequest* request,
                                    etcdserverpb::AuthUserGetResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthUserGetRequest, etcdserverpb::AuthUserGetResponse>());
  }
  grpc::ServerUnaryReactor* UserList(grpc::CallbackServerContext* context,
                                     const etcdserverpb::AuthUserListRequest* request,
                                     etcdserverpb::AuthUserListResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthUserListRequest, etcdserverpb::AuthUserListResponse>());
  }
  grpc::ServerUnaryReactor* UserDelete(grpc::CallbackServerContext* context,
                                       const etcdserverpb::AuthUserDeleteRequest* request,
                                       etcdserverpb::AuthUserDeleteResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthUserDeleteRequest, etcdserverpb::AuthUserDeleteResponse>());
  }
  grpc::ServerUnaryReactor* UserChangePassword(
      grpc::CallbackServerContext* context,
      const etcdserverpb::AuthUserChangePasswordRequest* request,
      etcdserverpb::AuthUserChangePasswordResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response,
                      AuthWay<etcdserverpb::AuthUserChangePasswordRequest,
                              etcdserverpb::AuthUserChangePasswordResponse>());
  }
  grpc::ServerUnaryReactor* UserGrantRole(
      grpc::CallbackServerContext* context, const etcdserverpb::AuthUserGrantRoleRequest* request,
      etcdserverpb::AuthUserGrantRoleResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthUserGrantRoleRequest, etcdserverpb::AuthUserGrantRoleResponse>());
  }
  grpc::ServerUnaryReactor* UserRevokeRole(
      grpc::CallbackServerContext* context, const etcdserverpb::AuthUserRevokeRoleRequest* request,
      etcdserverpb::AuthUserRevokeRoleResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response,
                      AuthWay<etcdserverpb::AuthUserRevokeRoleRequest,
                              etcdserverpb::AuthUserRevokeRoleResponse>());
  }
  grpc::ServerUnaryReactor* RoleAdd(grpc::CallbackServerContext* context,
                                    const etcdserverpb::AuthRoleAddRequest* request,
                                    etcdserverpb::AuthRoleAddResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthRoleAddRequest, etcdserverpb::AuthRoleAddResponse>());
  }
  grpc::ServerUnaryReactor* RoleGet(grpc::CallbackServerContext* context,
                                    const etcdserverpb::AuthRoleGetRequest* request,
                                    etcdserverpb::AuthRoleGetResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthRoleGetRequest, etcdserverpb::AuthRoleGetResponse>());
  }
  grpc::ServerUnaryReactor* RoleList(grpc::CallbackServerContext* context,
                                     const etcdserverpb::AuthRoleListRequest* request,
                                     etcdserverpb::AuthRoleListResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthRoleListRequest, etcdserverpb::AuthRoleListResponse>());
  }
  grpc::ServerUnaryReactor* RoleDelete(grpc::CallbackServerContext* context,
                                       const etcdserverpb::AuthRoleDeleteRequest* request,
                                       etcdserverpb::AuthRoleDeleteResponse* response) override {
    return UnaryAsync(
        loop_, inbox_, context, request, response,
        AuthWay<etcdserverpb::AuthRoleDeleteRequest, etcdserverpb::AuthRoleDeleteResponse>());
  }
  grpc::ServerUnaryReactor* RoleGrantPermission(
      grpc::CallbackServerContext* context,
      const etcdserverpb::AuthRoleGrantPermissionRequest* request,
      etcdserverpb::AuthRoleGrantPermissionResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response,
                      AuthWay<etcdserverpb::AuthRoleGrantPermissionRequest,
                              etcdserverpb::AuthRoleGrantPermissionResponse>());
  }
  grpc::ServerUnaryReactor* RoleRevokePermission(
      grpc::CallbackServerContext* context,
      const etcdserverpb::AuthRoleRevokePermissionRequest* request,
      etcdserverpb::AuthRoleRevokePermissionResponse* response) override {
    return UnaryAsync(loop_, inbox_, context, request, response,
                      AuthWay<etcdserverpb::AuthRoleRevokePermissionRequest,
                              etcdserverpb::AuthRoleRevokePermissionResponse>());
  }

 private:
  const Loop& loop_;
  Inbox& inbox_;
};

}  // namespace

struct Services::Impl {
  Impl(MemberService& member, const kj::Executor& executor, const ServiceOptions& options)
      : loop(member, executor),
        kv(loop, inbox),
        watch(loop, inbox, options.watch_queue_limit_responses,
              options.max_watchers_per_connection),
        lease(loop, inbox),
        cluster(loop, inbox),
        maintenance(loop, inbox, options.snapshot_chunk_bytes),
        auth(loop, inbox) {
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
