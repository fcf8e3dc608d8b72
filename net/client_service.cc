#include "net/client_service.h"

#include <algorithm>
#include <cerrno>
#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/auth/password.h"
#include "core/base/errors.h"
#include "core/raft/check.h"
#include "net/convert.h"
#include "net/entropy.h"
#include "store/crc32c.h"

namespace kvstore::net {
namespace {

// Serves one client method: params -> request -> member -> results. A malformed request is
// answered at once and never reaches the member. The caller's token (every method's `token`
// parameter) travels with the request; the member checks it. `cert_user`: the CN of the
// connection's verified client certificate under --client-cert-auth, the user of a request
// without a token (etcd's AuthInfoFromTLS); "" for none.
template <typename Context>
kj::Promise<void> Serve(MemberService& member, Context context, const std::string& cert_user) {
  absl::StatusOr<server::Request> request = ToRequest(context.getParams());
  if (request.ok()) {
    if constexpr (requires { context.getParams().getToken(); }) {
      auto token = context.getParams().getToken();
      request->token.assign(token.cStr(), token.size());
    }
    request->cert_user = cert_user;
    AddAuthEntropy(&*request);
  }
  context.releaseParams();
  if (!request.ok()) {
    server::Response refused;
    refused.status = request.status();
    FillResults(refused, context.getResults());
    return kj::READY_NOW;
  }
  return member.Call(std::move(*request)).then([context](server::Response response) mutable {
    FillResults(response, context.getResults());
  });
}

class KvImpl final : public rpc::Kv::Server {
 public:
  KvImpl(MemberService& member, std::string cert_user)
      : member_(member), cert_user_(std::move(cert_user)) {}

  kj::Promise<void> range(RangeContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> put(PutContext context) override { return Serve(member_, context, cert_user_); }
  kj::Promise<void> deleteRange(DeleteRangeContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> txn(TxnContext context) override { return Serve(member_, context, cert_user_); }
  kj::Promise<void> compact(CompactContext context) override {
    return Serve(member_, context, cert_user_);
  }

 private:
  MemberService& member_;
  const std::string cert_user_;
};

// One watch: the member's sink, the queue of responses the watcher has not taken, and the
// delivery of one response at a time (see the file comment of client_service.h).
class WatchStream final : public WatchSink, private kj::TaskSet::ErrorHandler {
 public:
  WatchStream(MemberService& member, rpc::Watcher::Client watcher, size_t queue_limit,
              std::shared_ptr<size_t> open_on_connection)
      : member_(member),
        watcher_(kj::mv(watcher)),
        queue_limit_(queue_limit),
        open_on_connection_(std::move(open_on_connection)),
        tasks_(*this) {
    RAFT_CHECK(queue_limit_ > 0) << "a watch queue must hold at least one response";
    ++*open_on_connection_;
  }

  ~WatchStream() noexcept override {
    ended_ = true;  // the member may deliver the canceled notice while we cancel
    EndMemberWatch();
    --*open_on_connection_;
  }

  absl::Status Open(const mvcc::WatchRequest& request, const WatchCaller& caller) {
    member_watch_open_ = true;  // responses may arrive before Watch returns
    absl::StatusOr<mvcc::WatchId> id = member_.Watch(request, caller, this);
    if (!id.ok()) {
      member_watch_open_ = false;
      return id.status();
    }
    id_ = *id;
    return absl::OkStatus();
  }

  // The client's cancel: nothing more is delivered, queued responses included.
  absl::Status Cancel() {
    if (ended_) {
      EndMemberWatch();
      return Error(ErrorCode::kWatchNotFound,
                   absl::StrCat("watch ", id_, " already ended: ", end_reason_));
    }
    ended_ = true;
    end_reason_ = "canceled by the client";
    queue_.clear();
    member_watch_open_ = false;
    return member_.CancelWatch(id_);
  }

  void RequestProgress() { member_.RequestWatchProgress(); }

  void Deliver(const mvcc::WatchResponse& response) override {
    if (ended_) return;
    if (response.canceled) {
      // The member ended the watch; this notice is its last call.
      ended_ = true;
      member_watch_open_ = false;
      end_reason_ =
          response.cancel_reason.empty() ? "canceled by the member" : response.cancel_reason;
      queue_.push_back(response);
    } else if (queue_.size() >= queue_limit_) {
      CancelSlowWatcher(response);
    } else {
      queue_.push_back(response);
    }
    SendNext();
  }

 private:
  // etcd cancels a watcher that cannot keep up rather than buffer without bound. What is queued
  // still goes, then the notice (one past the limit: it must get through). The member's watch
  // is canceled on the next loop turn: this runs inside the member's callback, which must not
  // call back into it.
  void CancelSlowWatcher(const mvcc::WatchResponse& rejected) {
    ended_ = true;
    end_reason_ = absl::StrCat("watcher too slow: ", queue_.size(), " responses waiting (limit ",
                               queue_limit_, ")");
    mvcc::WatchResponse notice;
    notice.watch_id = rejected.watch_id;
    notice.header_revision =
        queue_.empty() ? rejected.header_revision : queue_.back().header_revision;
    notice.canceled = true;
    notice.cancel_reason = end_reason_;
    queue_.push_back(std::move(notice));
    tasks_.add(kj::evalLater([this] { EndMemberWatch(); }));
  }

  void SendNext() {
    if (sending_ || queue_.empty()) return;
    sending_ = true;
    auto request = watcher_.deliverRequest();
    ToCapnp(queue_.front(), request.initResponse());
    queue_.pop_front();
    tasks_.add(request.send().then(
        [this] {
          sending_ = false;
          SendNext();
        },
        [this](kj::Exception&& exception) {
          // The watcher is gone (its connection broke): stop watching for it.
          sending_ = false;
          queue_.clear();
          if (!ended_) {
            ended_ = true;
            end_reason_ = absl::StrCat("delivery failed: ", exception.getDescription().cStr());
          }
          EndMemberWatch();
        }));
  }

  void EndMemberWatch() {
    if (!member_watch_open_) return;
    member_watch_open_ = false;
    // WATCH_NOT_FOUND means the member ended it meanwhile: gone either way.
    (void)member_.CancelWatch(id_);
  }

  // Every task handles its own failure (see SendNext); nothing reaches here.
  void taskFailed(kj::Exception&& exception) override {
    RAFT_CHECK(false) << "watch task failed: " << exception.getDescription().cStr();
  }

  MemberService& member_;
  rpc::Watcher::Client watcher_;
  const size_t queue_limit_;
  std::shared_ptr<size_t> open_on_connection_;
  mvcc::WatchId id_ = 0;
  bool member_watch_open_ = false;  // the member may still call Deliver
  bool ended_ = false;              // no more responses are taken
  std::string end_reason_;
  std::deque<mvcc::WatchResponse> queue_;
  bool sending_ = false;  // a deliver call is outstanding
  kj::TaskSet tasks_;     // last: destroyed first, so no task outlives the state it uses
};

class WatchHandleImpl final : public rpc::WatchHandle::Server {
 public:
  explicit WatchHandleImpl(kj::Own<WatchStream> stream) : stream_(kj::mv(stream)) {}

  kj::Promise<void> cancel(CancelContext context) override {
    ToCapnp(stream_->Cancel(), context.getResults().initStatus());
    return kj::READY_NOW;
  }
  kj::Promise<void> requestProgress(RequestProgressContext) override {
    stream_->RequestProgress();
    return kj::READY_NOW;
  }

 private:
  // Released with the handle (the client canceled, dropped it or went away): the member's
  // watch is canceled with it.
  kj::Own<WatchStream> stream_;
};

class WatchImpl final : public rpc::Watch::Server {
 public:
  WatchImpl(MemberService& member, size_t queue_limit, size_t max_watches, std::string cert_user)
      : member_(member),
        cert_user_(std::move(cert_user)),
        queue_limit_(queue_limit),
        max_watches_(max_watches),
        open_watches_(std::make_shared<size_t>(0)) {}

  kj::Promise<void> watch(WatchContext context) override {
    auto params = context.getParams();
    absl::StatusOr<mvcc::WatchRequest> request = FromCapnp(params.getRequest());
    rpc::Watcher::Client watcher = params.getWatcher();
    WatchCaller caller;
    if (params.hasToken()) caller.token.assign(params.getToken().cStr(), params.getToken().size());
    caller.cert_user = cert_user_;
    context.releaseParams();
    auto results = context.getResults();
    if (!request.ok()) {
      ToCapnp(request.status(), results.initStatus());
      return kj::READY_NOW;
    }
    if (*open_watches_ >= max_watches_) {
      ToCapnp(Error(ErrorCode::kTooManyRequests,
                    absl::StrCat("too many watches on this connection (limit ", max_watches_,
                                 "); cancel some or open another connection")),
              results.initStatus());
      return kj::READY_NOW;
    }
    auto stream = kj::heap<WatchStream>(member_, kj::mv(watcher), queue_limit_, open_watches_);
    absl::Status opened = stream->Open(*request, caller);
    ToCapnp(opened, results.initStatus());
    if (opened.ok()) results.setHandle(kj::heap<WatchHandleImpl>(kj::mv(stream)));
    return kj::READY_NOW;
  }

 private:
  MemberService& member_;
  const std::string cert_user_;
  const size_t queue_limit_;
  const size_t max_watches_;
  // Streams alive on this connection; shared with them, since they may outlive this service.
  std::shared_ptr<size_t> open_watches_;
};

class KeepAliveImpl final : public rpc::KeepAlive::Server {
 public:
  KeepAliveImpl(MemberService& member, lease::LeaseId id, std::string cert_user)
      : member_(member), id_(id), cert_user_(std::move(cert_user)) {}

  kj::Promise<void> keepAlive(KeepAliveContext context) override {
    server::Request request;
    request.type = server::RequestType::kLeaseKeepAlive;
    request.lease_id = id_;
    request.cert_user = cert_user_;
    return member_.Call(std::move(request)).then([context](server::Response response) mutable {
      FillResults(response, context.getResults());
    });
  }

 private:
  MemberService& member_;
  const lease::LeaseId id_;
  const std::string cert_user_;
};

class LeaseImpl final : public rpc::Lease::Server {
 public:
  LeaseImpl(MemberService& member, std::string cert_user)
      : member_(member), cert_user_(std::move(cert_user)) {}

  kj::Promise<void> grant(GrantContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> revoke(RevokeContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> keepAlive(KeepAliveContext context) override {
    absl::StatusOr<server::Request> request = ToRequest(context.getParams());
    auto results = context.getResults();
    ToCapnp(request.status(), results.initStatus());
    if (request.ok()) {
      results.setStream(kj::heap<KeepAliveImpl>(member_, request->lease_id, cert_user_));
    }
    return kj::READY_NOW;
  }
  kj::Promise<void> timeToLive(TimeToLiveContext context) override {
    const bool keys = context.getParams().getKeys();
    absl::StatusOr<server::Request> request = ToRequest(context.getParams());
    if (request.ok()) {
      // Checked as its caller (etcd's checkLeaseTimeToLive): the answer names the lease's keys.
      auto token = context.getParams().getToken();
      request->token.assign(token.cStr(), token.size());
    }
    context.releaseParams();
    if (!request.ok()) {
      server::Response refused;
      refused.status = request.status();
      FillResults(refused, context.getResults());
      return kj::READY_NOW;
    }
    request->cert_user = cert_user_;
    return member_.Call(std::move(*request))
        .then([context, keys](server::Response response) mutable {
          if (!keys) response.lease.keys.clear();
          FillResults(response, context.getResults());
        });
  }
  kj::Promise<void> leases(LeasesContext context) override {
    return Serve(member_, context, cert_user_);
  }

 private:
  MemberService& member_;
  const std::string cert_user_;
};

class ClusterImpl final : public rpc::Cluster::Server {
 public:
  ClusterImpl(MemberService& member, std::string cert_user)
      : member_(member), cert_user_(std::move(cert_user)) {}

  kj::Promise<void> memberList(MemberListContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> memberAdd(MemberAddContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> memberRemove(MemberRemoveContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> memberPromote(MemberPromoteContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> memberReplace(MemberReplaceContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> memberUpdate(MemberUpdateContext context) override {
    return Serve(member_, context, cert_user_);
  }

 private:
  MemberService& member_;
  const std::string cert_user_;
};

// One snapshot download: a consistent copy taken when it starts, sent in chunks.
class SnapshotStreamImpl final : public rpc::SnapshotStream::Server {
 public:
  SnapshotStreamImpl(std::shared_ptr<SnapshotCopy> copy, uint64_t chunk_bytes)
      : copy_(std::move(copy)), chunk_bytes_(chunk_bytes) {
    RAFT_CHECK(chunk_bytes_ > 0) << "snapshot chunks must not be empty";
  }

  kj::Promise<void> next(NextContext context) override {
    auto results = context.getResults();
    if (offset_ == copy_->size()) {
      results.setDone(true);
      results.setCrc32c(crc_);
      return kj::READY_NOW;
    }
    // One chunk at a time from the copy's file: a read of the page cache, on the loop.
    if (absl::Status read = copy_->Read(offset_, chunk_bytes_, &chunk_); !read.ok()) {
      return KJ_EXCEPTION(FAILED, "snapshot stream", read.ToString().c_str());
    }
    offset_ += chunk_.size();
    crc_ = store::Crc32c(chunk_, crc_);
    results.setChunk(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(chunk_.data()), chunk_.size()));
    return kj::READY_NOW;
  }

 private:
  const std::shared_ptr<SnapshotCopy> copy_;
  const uint64_t chunk_bytes_;
  std::string chunk_;  // the last chunk read
  uint64_t offset_ = 0;
  uint32_t crc_ = 0;  // of the copy's bytes [0, offset_)
};

class MaintenanceImpl final : public rpc::Maintenance::Server {
 public:
  MaintenanceImpl(MemberService& member, uint64_t snapshot_chunk_bytes, std::string cert_user)
      : member_(member),
        snapshot_chunk_bytes_(snapshot_chunk_bytes),
        cert_user_(std::move(cert_user)) {}

  kj::Promise<void> status(StatusContext context) override {
    FillResults(member_.Status(), kServerVersion, context.getResults());
    return kj::READY_NOW;
  }
  kj::Promise<void> hash(HashContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> defragment(DefragmentContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> alarmList(AlarmListContext context) override {
    return Serve(member_, context, cert_user_);
  }
  kj::Promise<void> alarmDisarm(AlarmDisarmContext context) override {
    return Serve(member_, context, cert_user_);
  }
  // Root only while auth is enabled (etcd's authMaintenanceServer.Snapshot). A local alarm list
  // marked require_admin asks the member that question: it is served without the log and refused
  // exactly as an admin check is (no user, invalid token, permission denied).
  kj::Promise<void> snapshot(SnapshotContext context) override {
    server::Request admin_check;
    admin_check.type = server::RequestType::kAlarmList;
    admin_check.require_admin = true;
    auto token = context.getParams().getToken();
    admin_check.token.assign(token.cStr(), token.size());
    admin_check.cert_user = cert_user_;
    context.releaseParams();
    return member_.Call(std::move(admin_check))
        .then([this, context](server::Response answer) mutable -> kj::Promise<void> {
          if (!answer.status.ok()) {
            ToCapnp(answer.status, context.getResults().initStatus());
            return kj::READY_NOW;
          }
          return member_.TakeSnapshot().then(
              [this, context](absl::StatusOr<std::shared_ptr<SnapshotCopy>> copy) mutable {
                auto results = context.getResults();
                ToCapnp(copy.status(), results.initStatus());
                if (copy.ok()) {
                  results.setStream(
                      kj::heap<SnapshotStreamImpl>(std::move(*copy), snapshot_chunk_bytes_));
                }
              });
        });
  }
  kj::Promise<void> moveLeader(MoveLeaderContext context) override {
    return Serve(member_, context, cert_user_);
  }

 private:
  MemberService& member_;
  const uint64_t snapshot_chunk_bytes_;
  const std::string cert_user_;
};

class AuthImpl final : public rpc::Auth::Server {
 public:
  AuthImpl(MemberService& member, std::string cert_user)
      : member_(member), cert_user_(std::move(cert_user)) {}
  kj::Promise<void> call(CallContext context) override {
    return Serve(member_, context, cert_user_);
  }

 private:
  MemberService& member_;
  const std::string cert_user_;
};

class EndpointImpl final : public rpc::Endpoint::Server {
 public:
  EndpointImpl(MemberService& member, const ClientServiceOptions& options,
               const std::string& cert_user)
      : kv_(kj::heap<KvImpl>(member, cert_user)),
        watch_(kj::heap<WatchImpl>(member, options.watch_queue_limit_responses,
                                   options.max_watches_per_connection, cert_user)),
        lease_(kj::heap<LeaseImpl>(member, cert_user)),
        cluster_(kj::heap<ClusterImpl>(member, cert_user)),
        maintenance_(kj::heap<MaintenanceImpl>(member, options.snapshot_chunk_bytes, cert_user)),
        auth_(kj::heap<AuthImpl>(member, cert_user)) {}

  kj::Promise<void> kv(KvContext context) override {
    context.getResults().setKv(kv_);
    return kj::READY_NOW;
  }
  kj::Promise<void> watch(WatchContext context) override {
    context.getResults().setWatch(watch_);
    return kj::READY_NOW;
  }
  kj::Promise<void> lease(LeaseContext context) override {
    context.getResults().setLease(lease_);
    return kj::READY_NOW;
  }
  kj::Promise<void> cluster(ClusterContext context) override {
    context.getResults().setCluster(cluster_);
    return kj::READY_NOW;
  }
  kj::Promise<void> maintenance(MaintenanceContext context) override {
    context.getResults().setMaintenance(maintenance_);
    return kj::READY_NOW;
  }
  kj::Promise<void> auth(AuthContext context) override {
    context.getResults().setAuth(auth_);
    return kj::READY_NOW;
  }

 private:
  rpc::Kv::Client kv_;
  rpc::Watch::Client watch_;
  rpc::Lease::Client lease_;
  rpc::Cluster::Client cluster_;
  rpc::Maintenance::Client maintenance_;
  rpc::Auth::Client auth_;
};

}  // namespace

rpc::Endpoint::Client NewEndpoint(MemberService& member, const ClientServiceOptions& options,
                                  const std::string& cert_user) {
  return kj::heap<EndpointImpl>(member, options, cert_user);
}

ClientServer::ClientServer(MemberService& member, const ClientServiceOptions& options)
    : member_(member),
      options_(options),
      listener_([&member,
                 options]() -> capnp::Capability::Client { return NewEndpoint(member, options); },
                RequestReaderOptions(options.max_request_bytes)) {}

kj::Promise<kj::Own<ClientServer>> ClientServer::Listen(kj::Network& network, kj::Timer& timer,
                                                        std::string address, MemberService& member,
                                                        const ClientServiceOptions& options) {
  auto server = kj::heap<ClientServer>(member, options);
  kj::Promise<void> bound = server->listener_.Listen(network, timer, std::move(address));
  return bound.then([server = kj::mv(server)]() mutable { return kj::mv(server); });
}

void ClientServer::Accept(kj::Own<kj::AsyncIoStream> stream, const std::string& cert_user) {
  listener_.Accept(kj::mv(stream), NewEndpoint(member_, options_, cert_user));
}

}  // namespace kvstore::net
