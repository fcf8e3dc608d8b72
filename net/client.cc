#include "net/client.h"

#include <algorithm>
#include <memory>
#include <numeric>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/errors.h"
#include "core/raft/check.h"
#include "net/client.capnp.h"
#include "net/connection.h"
#include "net/convert.h"
#include "store/crc32c.h"

namespace kvstore::net {
namespace {

using server::RequestType;

const char* RequestName(RequestType type) {
  switch (type) {
    case RequestType::kRange:
      return "range";
    case RequestType::kPut:
      return "put";
    case RequestType::kDeleteRange:
      return "delete";
    case RequestType::kTxn:
      return "txn";
    case RequestType::kCompact:
      return "compact";
    case RequestType::kLeaseGrant:
      return "lease grant";
    case RequestType::kLeaseRevoke:
      return "lease revoke";
    case RequestType::kLeaseKeepAlive:
      return "lease keep-alive";
    case RequestType::kLeaseTimeToLive:
      return "lease time-to-live";
    case RequestType::kLeaseLeases:
      return "lease list";
    case RequestType::kMemberList:
      return "member list";
    case RequestType::kMemberAdd:
      return "member add";
    case RequestType::kMemberPromote:
      return "member promote";
    case RequestType::kMemberRemove:
      return "member remove";
    case RequestType::kMemberReplace:
      return "member replace";
    case RequestType::kMemberUpdate:
      return "member update";
    case RequestType::kAlarmList:
      return "alarm list";
    case RequestType::kAlarmDisarm:
      return "alarm disarm";
    case RequestType::kHash:
      return "hash";
    case RequestType::kDefragment:
      return "defragment";
    case RequestType::kMoveLeader:
      return "move-leader";
    default:
      break;
  }
  if (type >= RequestType::kAuthEnable && type <= RequestType::kRoleList) return "auth";
  return "request";
}

// Requests that change nothing when run twice (see client.h).
bool IsIdempotent(RequestType type) {
  switch (type) {
    case RequestType::kRange:
    case RequestType::kLeaseKeepAlive:
    case RequestType::kLeaseTimeToLive:
    case RequestType::kLeaseLeases:
    case RequestType::kMemberList:
    case RequestType::kAlarmList:
    case RequestType::kHash:
      return true;
    default:
      return false;
  }
}

// Requests only the leader serves (the core answers NOT_LEADER elsewhere).
bool IsLeaderOnly(RequestType type) {
  return type == RequestType::kLeaseKeepAlive || type == RequestType::kLeaseTimeToLive ||
         type == RequestType::kMemberPromote || type == RequestType::kMoveLeader;
}

// Whether a member's answer lets the request go to another endpoint (see client.h).
bool RetryableAnswer(const absl::Status& status, bool idempotent) {
  switch (CodeOf(status)) {
    case ErrorCode::kNoLeader:
    case ErrorCode::kNotLeader:
      return true;
    case ErrorCode::kLeadershipChanged:
    case ErrorCode::kTimeout:
    case ErrorCode::kStopped:
      return idempotent;
    default:
      return false;
  }
}

// Answers that say the member cannot serve at all for now: skip it for a while.
bool MemberUnfit(const absl::Status& status) {
  const ErrorCode code = CodeOf(status);
  return code == ErrorCode::kNoLeader || code == ErrorCode::kStopped;
}

// The member's error, if any, as the result.
absl::StatusOr<server::Response> Fold(absl::StatusOr<server::Response> response) {
  if (response.ok() && !response->status.ok()) return response->status;
  return response;
}

template <typename Params, typename Results>
kj::Promise<absl::StatusOr<server::Response>> Invoke(capnp::Request<Params, Results> request) {
  return request.send().then(
      [](capnp::Response<Results> response) { return Fold(ToResponse(response)); });
}

// Fills the method's parameters and the caller's token (every method but keep-alive has one).
template <typename Params, typename Results>
kj::Promise<absl::StatusOr<server::Response>> Invoke(capnp::Request<Params, Results> request,
                                                     const server::Request& in) {
  if constexpr (requires { FillParams(in, request); }) FillParams(in, request);
  if constexpr (requires { request.setToken(""); }) {
    request.setToken(capnp::Text::Reader(in.token.c_str(), in.token.size()));
  }
  return Invoke(kj::mv(request));
}

// One connection to an endpoint, shared by the requests, watches and keep-alives using it.
struct Conn : public kj::Refcounted {
  Conn(kj::Own<kj::AsyncIoStream> stream, uint64_t id, std::string address)
      : id(id),
        address(std::move(address)),
        connection(kj::mv(stream), ResponseReaderOptions()),
        endpoint(connection.Bootstrap<rpc::Endpoint>()),
        watch(endpoint.watchRequest().send().getWatch()),
        lease(endpoint.leaseRequest().send().getLease()),
        cluster(endpoint.clusterRequest().send().getCluster()),
        maintenance(endpoint.maintenanceRequest().send().getMaintenance()),
        auth(endpoint.authRequest().send().getAuth()) {}

  const uint64_t id;  // unique per client
  const std::string address;
  RpcConnection connection;
  rpc::Endpoint::Client endpoint;
  rpc::Kv::Client kv = nullptr;  // from the first call, whose answer proves the member serves
  rpc::Watch::Client watch;
  rpc::Lease::Client lease;
  rpc::Cluster::Client cluster;
  rpc::Maintenance::Client maintenance;
  rpc::Auth::Client auth;
};

// A connection being made, and the tries waiting for it.
struct Connecting {
  kj::Promise<void> task = nullptr;
  std::vector<kj::Own<kj::PromiseFulfiller<kj::Own<Conn>>>> waiters;
};

struct EndpointState {
  std::string address;
  TlsContext* tls = nullptr;  // null: plain text
  kj::Own<Conn> connection;   // answered once, not known broken
  kj::Own<Connecting> connecting;
  kj::TimePoint skip_until = kj::origin<kj::TimePoint>();
  kj::Duration backoff;
};

// How a request may move between endpoints.
struct Policy {
  bool idempotent = false;
  bool leader_only = false;
  std::string what;  // for error messages
};

template <typename T>
using Attempt = std::function<kj::Promise<absl::StatusOr<T>>(Conn&)>;

// One try on one endpoint: the member's answer, or why there was none.
template <typename T>
struct TryOutcome {
  bool answered = false;
  absl::StatusOr<T> answer = absl::UnknownError("no answer");
  std::string failure;  // when !answered
  bool sent = false;    // the request left before the failure
  // The member refused the request and closed its connection (a message over its reader's
  // limit): answered, and the connection (this id) is forgotten without skipping the member.
  uint64_t refused_connection = 0;
};

// The status for a call that failed with the reason a member closes a connection with when a
// message is over its reader's limit (connection.h), or nullopt for any other failure.
std::optional<absl::Status> RequestTooLarge(const kj::Exception& e) {
  absl::string_view description(e.getDescription().cStr(), e.getDescription().size());
  const size_t at = description.find(kRequestTooLargeReason);
  if (at == absl::string_view::npos) return std::nullopt;
  return Error(ErrorCode::kRequestTooLarge, description.substr(at));
}

// A watch's responses on their way to the caller's callback (shared with the Watcher server).
struct WatchState {
  explicit WatchState(std::function<void(const mvcc::WatchResponse&)> on_response)
      : on_response(std::move(on_response)) {}

  void Take(mvcc::WatchResponse response) {
    if (closed) return;
    watch_id = response.watch_id;
    if (!confirmed) {
      held.push_back(std::move(response));
      return;
    }
    Emit(response);
  }
  void Confirm() {
    confirmed = true;
    std::vector<mvcc::WatchResponse> responses = std::move(held);
    for (const mvcc::WatchResponse& r : responses) Emit(r);
  }
  // The connection broke: the watch is over, say so once.
  void Lost(const std::string& why) {
    if (closed || !confirmed || ended) return;
    mvcc::WatchResponse notice;
    notice.watch_id = watch_id;
    notice.canceled = true;
    notice.cancel_reason = why;
    Emit(notice);
  }
  void Emit(const mvcc::WatchResponse& response) {
    if (ended) return;
    if (response.canceled) ended = true;
    on_response(response);
  }

  std::function<void(const mvcc::WatchResponse&)> on_response;
  mvcc::WatchId watch_id = 0;
  bool confirmed = false;  // the member answered the watch call
  bool closed = false;     // this attempt failed, or the caller canceled or dropped the watch
  bool ended = false;      // the canceled response was delivered
  std::vector<mvcc::WatchResponse> held;
};

class WatcherImpl final : public rpc::Watcher::Server {
 public:
  explicit WatcherImpl(std::shared_ptr<WatchState> state) : state_(std::move(state)) {}

  kj::Promise<void> deliver(DeliverContext context) override {
    absl::StatusOr<mvcc::WatchResponse> response = FromCapnp(context.getParams().getResponse());
    if (!response.ok()) {
      mvcc::WatchResponse notice;
      notice.watch_id = state_->watch_id;
      notice.canceled = true;
      notice.cancel_reason = std::string(response.status().message());
      state_->Take(std::move(notice));
      // Failing the call makes the member end the watch.
      return KJ_EXCEPTION(FAILED, "malformed watch response",
                          std::string(response.status().message()).c_str());
    }
    state_->Take(std::move(*response));
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<WatchState> state_;
};

}  // namespace

class Client::Impl final : private kj::TaskSet::ErrorHandler {
 public:
  Impl(kj::Network& network, kj::Timer& timer, ClientOptions options,
       std::vector<std::string> addresses, std::unique_ptr<TlsContext> default_tls)
      : network_(network),
        timer_(timer),
        options_(std::move(options)),
        default_tls_(std::move(default_tls)),
        tasks_(*this) {
    for (size_t i = 0; i < addresses.size(); ++i) {
      EndpointState endpoint;
      endpoint.address = std::move(addresses[i]);
      const std::string& url = options_.endpoints[i];
      if (IsTlsUrl(url)) {
        endpoint.tls = options_.tls != nullptr ? options_.tls : default_tls_.get();
      } else if (url.find("://") == std::string::npos) {
        endpoint.tls = options_.tls;
      }
      endpoint.backoff = options_.endpoint_backoff_min;
      endpoints_.push_back(std::move(endpoint));
    }
  }

  const ClientOptions& options() const { return options_; }
  kj::Timer& timer() { return timer_; }
  bool InBackoff(size_t i) const { return endpoints_[i].skip_until > timer_.now(); }
  size_t endpoint_count() const { return endpoints_.size(); }
  const std::string& address(size_t i) const { return endpoints_[i].address; }

  // Endpoints in the order a request tries them (see client.h).
  std::vector<size_t> Order(bool leader_only) const {
    const size_t n = endpoints_.size();
    const size_t start = leader_only ? leader_hint_ : preferred_;
    const kj::TimePoint now = timer_.now();
    std::vector<size_t> order;
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (start + k) % n;
      if (endpoints_[i].skip_until <= now) order.push_back(i);
    }
    if (!order.empty()) return order;
    order.resize(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [this](size_t a, size_t b) {
      return endpoints_[a].skip_until < endpoints_[b].skip_until;
    });
    return order;
  }

  template <typename T>
  kj::Promise<absl::StatusOr<T>> Failover(Policy policy, Attempt<T> attempt,
                                          std::vector<size_t> order) {
    auto state = kj::heap<FailoverState<T>>();
    state->policy = std::move(policy);
    state->attempt = std::move(attempt);
    state->order = std::move(order);
    return Next(kj::mv(state));
  }

  kj::Promise<absl::StatusOr<server::Response>> Send(Conn& c, const server::Request& r) {
    switch (r.type) {
      case RequestType::kRange:
        return Invoke(c.kv.rangeRequest(), r);
      case RequestType::kPut:
        return Invoke(c.kv.putRequest(), r);
      case RequestType::kDeleteRange:
        return Invoke(c.kv.deleteRangeRequest(), r);
      case RequestType::kTxn:
        return Invoke(c.kv.txnRequest(), r);
      case RequestType::kCompact:
        return Invoke(c.kv.compactRequest(), r);
      case RequestType::kLeaseGrant:
        return Invoke(c.lease.grantRequest(), r);
      case RequestType::kLeaseRevoke:
        return Invoke(c.lease.revokeRequest(), r);
      case RequestType::kLeaseKeepAlive: {
        // Opening the stream and renewing once travel together (promise pipelining).
        auto open = c.lease.keepAliveRequest();
        FillParams(r, open);
        const lease::LeaseId id = r.lease_id;
        return open.send().getStream().keepAliveRequest().send().then(
            [id](capnp::Response<rpc::KeepAlive::KeepAliveResults> response) {
              return Fold(ToResponse(response, id));
            });
      }
      case RequestType::kLeaseTimeToLive:
        return Invoke(c.lease.timeToLiveRequest(), r);
      case RequestType::kLeaseLeases:
        return Invoke(c.lease.leasesRequest(), r);
      case RequestType::kMemberList:
        return Invoke(c.cluster.memberListRequest(), r);
      case RequestType::kMemberAdd:
        return Invoke(c.cluster.memberAddRequest(), r);
      case RequestType::kMemberPromote:
        return Invoke(c.cluster.memberPromoteRequest(), r);
      case RequestType::kMemberRemove:
        return Invoke(c.cluster.memberRemoveRequest(), r);
      case RequestType::kMemberReplace:
        return Invoke(c.cluster.memberReplaceRequest(), r);
      case RequestType::kMemberUpdate:
        return Invoke(c.cluster.memberUpdateRequest(), r);
      case RequestType::kAlarmList:
        return Invoke(c.maintenance.alarmListRequest(), r);
      case RequestType::kAlarmDisarm:
        return Invoke(c.maintenance.alarmDisarmRequest(), r);
      case RequestType::kHash:
        return Invoke(c.maintenance.hashRequest(), r);
      case RequestType::kDefragment:
        return Invoke(c.maintenance.defragmentRequest(), r);
      case RequestType::kMoveLeader:
        return Invoke(c.maintenance.moveLeaderRequest(), r);
      default:
        if (r.type >= RequestType::kAuthEnable && r.type <= RequestType::kRoleList) {
          return Invoke(c.auth.callRequest(), r);
        }
        break;
    }
    return absl::StatusOr<server::Response>(
        Error(ErrorCode::kInvalidArgument, "unknown request type"));
  }

  // A connection to endpoint `i` that the member has answered on.
  kj::Promise<kj::Own<Conn>> Get(size_t i) {
    EndpointState& endpoint = endpoints_[i];
    if (endpoint.connection.get() != nullptr) return kj::addRef(*endpoint.connection);
    if (endpoint.connecting.get() == nullptr) {
      endpoint.connecting = kj::heap<Connecting>();
      endpoint.connecting->task =
          Connect(i)
              .then([this, i](kj::Own<Conn> c) { OnConnected(i, kj::mv(c)); },
                    [this, i](kj::Exception&& e) { OnConnectFailed(i, kj::mv(e)); })
              .eagerlyEvaluate(nullptr);
    }
    auto paf = kj::newPromiseAndFulfiller<kj::Own<Conn>>();
    endpoint.connecting->waiters.push_back(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }

  // Endpoint `i` failed a try: forget its connection (users keep theirs) and skip it a while.
  void Drop(size_t i) {
    EndpointState& endpoint = endpoints_[i];
    endpoint.connection = nullptr;
    // Cancels a connection still being made (never called from inside its task), so its
    // completion cannot land later; its waiting tries fail.
    endpoint.connecting = nullptr;
    Skip(i);
  }

  void Skip(size_t i) {
    EndpointState& endpoint = endpoints_[i];
    endpoint.skip_until = timer_.now() + endpoint.backoff;
    endpoint.backoff = std::min(endpoint.backoff * 2, options_.endpoint_backoff_max);
  }

  void Healthy(size_t i) {
    endpoints_[i].skip_until = kj::origin<kj::TimePoint>();
    endpoints_[i].backoff = options_.endpoint_backoff_min;
  }

  kj::Promise<void> Bounded(kj::Promise<void> promise) {
    return timer_.timeoutAfter(options_.per_try_timeout, kj::mv(promise));
  }

 private:
  template <typename T>
  struct FailoverState {
    Policy policy;
    Attempt<T> attempt;
    std::vector<size_t> order;
    size_t next = 0;
    std::vector<std::string> failures;
    absl::Status last_answer;  // the last answer that let the request move on
  };

  template <typename T>
  kj::Promise<absl::StatusOr<T>> Next(kj::Own<FailoverState<T>> state) {
    if (state->next == state->order.size()) {
      if (!state->last_answer.ok()) return absl::StatusOr<T>(state->last_answer);
      return absl::StatusOr<T>(absl::UnavailableError(absl::StrCat(
          state->policy.what, ": no endpoint answered: ", absl::StrJoin(state->failures, "; "))));
    }
    const size_t i = state->order[state->next++];
    kj::Promise<TryOutcome<T>> outcome = Try<T>(i, state->attempt);
    return outcome.then([this, i, state = kj::mv(state)](
                            TryOutcome<T> outcome) mutable -> kj::Promise<absl::StatusOr<T>> {
      const std::string& address = endpoints_[i].address;
      if (outcome.answered) {
        EndpointState& endpoint = endpoints_[i];
        if (outcome.refused_connection != 0 && endpoint.connection.get() != nullptr &&
            endpoint.connection->id == outcome.refused_connection) {
          endpoint.connection = nullptr;
        }
        const bool moves_on = !outcome.answer.ok() &&
                              RetryableAnswer(outcome.answer.status(), state->policy.idempotent);
        if (!moves_on) {
          Healthy(i);
          preferred_ = i;
          if (state->policy.leader_only && outcome.answer.ok()) leader_hint_ = i;
          return kj::mv(outcome.answer);
        }
        if (MemberUnfit(outcome.answer.status())) Skip(i);
        state->last_answer = outcome.answer.status();
        state->failures.push_back(absl::StrCat(address, ": ", state->last_answer.message()));
        return Next(kj::mv(state));
      }
      Drop(i);
      if (outcome.sent && !state->policy.idempotent) {
        return absl::StatusOr<T>(
            Error(ErrorCode::kTimeout, absl::StrCat(state->policy.what, " sent to ", address, ": ",
                                                    outcome.failure, "; its outcome is unknown")));
      }
      state->failures.push_back(absl::StrCat(address, ": ", outcome.failure));
      return Next(kj::mv(state));
    });
  }

  template <typename T>
  kj::Promise<TryOutcome<T>> Try(size_t i, const Attempt<T>& attempt) {
    auto sent = std::make_shared<bool>(false);
    auto conn_id = std::make_shared<uint64_t>(0);
    kj::Promise<TryOutcome<T>> work =
        Get(i)
            .then([sent, conn_id, attempt](kj::Own<Conn> conn) {
              *sent = true;
              *conn_id = conn->id;
              Conn& c = *conn;
              return attempt(c).attach(kj::mv(conn));
            })
            .then(
                [](absl::StatusOr<T> answer) {
                  TryOutcome<T> outcome;
                  outcome.answered = true;
                  outcome.answer = std::move(answer);
                  return outcome;
                },
                [sent, conn_id](kj::Exception&& e) {
                  TryOutcome<T> outcome;
                  if (std::optional<absl::Status> refused = RequestTooLarge(e)) {
                    outcome.answered = true;
                    outcome.answer = *std::move(refused);
                    outcome.refused_connection = *conn_id;
                    return outcome;
                  }
                  outcome.failure = e.getDescription().cStr();
                  outcome.sent = *sent;
                  return outcome;
                });
    kj::Promise<TryOutcome<T>> timeout =
        timer_.afterDelay(options_.per_try_timeout).then([this, sent] {
          TryOutcome<T> outcome;
          outcome.failure =
              absl::StrCat("no answer within ", options_.per_try_timeout / kj::MILLISECONDS, " ms");
          outcome.sent = *sent;
          return outcome;
        });
    return work.exclusiveJoin(kj::mv(timeout));
  }

  kj::Promise<kj::Own<Conn>> Connect(size_t i) {
    const uint64_t id = ++connection_count_;
    const std::string& address = endpoints_[i].address;
    return ConnectWithin(network_, timer_, address, options_.per_try_timeout, endpoints_[i].tls)
        .then([id, address](kj::Own<kj::AsyncIoStream> stream) {
          auto c = kj::refcounted<Conn>(kj::mv(stream), id, address);
          auto probe = c->endpoint.kvRequest().send();
          c->kv = probe.getKv();
          kj::Promise<capnp::Response<rpc::Endpoint::KvResults>> answered = kj::mv(probe);
          return answered.then([c = kj::mv(c)](capnp::Response<rpc::Endpoint::KvResults>) mutable {
            return kj::mv(c);
          });
        });
  }

  void OnConnected(size_t i, kj::Own<Conn> c) {
    EndpointState& endpoint = endpoints_[i];
    const uint64_t id = c->id;
    auto lost = [this, i, id] {
      EndpointState& endpoint = endpoints_[i];
      if (endpoint.connection.get() != nullptr && endpoint.connection->id == id) Drop(i);
    };
    tasks_.add(
        c->connection.OnDisconnect().then([lost] { lost(); }, [lost](kj::Exception&&) { lost(); }));
    for (auto& waiter : endpoint.connecting->waiters) waiter->fulfill(kj::addRef(*c));
    endpoint.connection = kj::mv(c);
    Dispose(kj::mv(endpoint.connecting));
  }

  void OnConnectFailed(size_t i, kj::Exception&& exception) {
    EndpointState& endpoint = endpoints_[i];
    // Each waiting try fails with it, and skips the endpoint (Drop).
    for (auto& waiter : endpoint.connecting->waiters) waiter->reject(kj::cp(exception));
    Dispose(kj::mv(endpoint.connecting));
  }

  // Destroys `connecting` on the next turn: this may run inside its own task.
  void Dispose(kj::Own<Connecting> connecting) {
    tasks_.add(kj::evalLater([connecting = kj::mv(connecting)] {}));
  }

  // Every task handles its own failure; nothing reaches here.
  void taskFailed(kj::Exception&& exception) override {
    RAFT_CHECK(false) << "client task failed: " << exception.getDescription().cStr();
  }

  kj::Network& network_;
  kj::Timer& timer_;
  const ClientOptions options_;
  // For https:// endpoints when the options name no TLS context: the system's trust store.
  std::unique_ptr<TlsContext> default_tls_;
  std::vector<EndpointState> endpoints_;
  size_t preferred_ = 0;    // the endpoint that last answered
  size_t leader_hint_ = 0;  // the endpoint that last served a leader-only request
  uint64_t connection_count_ = 0;
  kj::TaskSet tasks_;  // last: destroyed first, so no task outlives the state it uses
};

namespace {

class ClientWatch final : public Client::Watch {
 public:
  ClientWatch(Client::Impl& client, std::shared_ptr<WatchState> state,
              rpc::WatchHandle::Client handle, kj::Own<Conn> connection)
      : client_(client),
        state_(std::move(state)),
        handle_(kj::mv(handle)),
        connection_(kj::mv(connection)),
        lost_(connection_->connection.OnDisconnect()
                  .then(
                      [state = state_, address = connection_->address] {
                        state->Lost(absl::StrCat("connection to ", address, " lost"));
                      },
                      [state = state_, address = connection_->address](kj::Exception&& e) {
                        state->Lost(absl::StrCat("connection to ", address,
                                                 " lost: ", e.getDescription().cStr()));
                      })
                  .eagerlyEvaluate(nullptr)) {}

  // Releasing the handle ends the watch on the member.
  ~ClientWatch() noexcept override { state_->closed = true; }

  kj::Promise<absl::Status> Cancel() override {
    state_->closed = true;
    kj::Promise<capnp::Response<rpc::WatchHandle::CancelResults>> call =
        handle_.cancelRequest().send();
    return client_.timer()
        .timeoutAfter(client_.options().per_try_timeout, kj::mv(call))
        .then([](capnp::Response<rpc::WatchHandle::CancelResults> r) {
          return StatusFromCapnp(r.getStatus());
        })
        .catch_([](kj::Exception&& e) {
          return absl::UnavailableError(absl::StrCat("watch cancel: ", e.getDescription().cStr()));
        });
  }

  kj::Promise<absl::Status> RequestProgress() override {
    return client_.Bounded(handle_.requestProgressRequest().send().ignoreResult())
        .then([] { return absl::OkStatus(); })
        .catch_([](kj::Exception&& e) {
          return absl::UnavailableError(
              absl::StrCat("watch progress: ", e.getDescription().cStr()));
        });
  }

  bool ended() const override { return state_->ended; }

 private:
  Client::Impl& client_;
  std::shared_ptr<WatchState> state_;
  rpc::WatchHandle::Client handle_;
  kj::Own<Conn> connection_;  // kept open for the watch
  kj::Promise<void> lost_;    // after connection_: destroyed first
};

class ClientKeepAlive final : public Client::KeepAlive {
 public:
  ClientKeepAlive(Client::Impl& client, lease::LeaseId id) : client_(client), id_(id) {}
  ~ClientKeepAlive() noexcept override {}

  kj::Promise<absl::StatusOr<int64_t>> Renew() override {
    if (id_ == lease::kNoLease) {
      return absl::StatusOr<int64_t>(
          Error(ErrorCode::kInvalidArgument, "lease keep-alive: lease id 0"));
    }
    Policy policy;
    policy.idempotent = true;
    policy.leader_only = true;
    policy.what = "lease keep-alive";
    Attempt<server::Response> attempt =
        [this](Conn& c) -> kj::Promise<absl::StatusOr<server::Response>> {
      if (stream_connection_.get() == nullptr || stream_connection_->id != c.id) {
        auto open = c.lease.keepAliveRequest();
        open.setId(id_);
        stream_ = open.send().getStream();
        stream_connection_ = kj::addRef(c);
      }
      const lease::LeaseId id = id_;
      return stream_.keepAliveRequest().send().then(
          [id](capnp::Response<rpc::KeepAlive::KeepAliveResults> response) {
            return Fold(ToResponse(response, id));
          });
    };
    return client_
        .Failover<server::Response>(std::move(policy), std::move(attempt), client_.Order(true))
        .then([](absl::StatusOr<server::Response> response) -> absl::StatusOr<int64_t> {
          if (!response.ok()) return response.status();
          return response->lease.remaining_ttl_seconds;
        });
  }

 private:
  Client::Impl& client_;
  const lease::LeaseId id_;
  kj::Own<Conn> stream_connection_;  // where stream_ lives
  rpc::KeepAlive::Client stream_ = nullptr;
};

kj::Promise<absl::Status> NextChunk(Client::Impl& client, rpc::SnapshotStream::Client stream,
                                    uint32_t crc, uint64_t bytes,
                                    std::function<absl::Status(absl::string_view)> on_chunk) {
  kj::Promise<capnp::Response<rpc::SnapshotStream::NextResults>> next = stream.nextRequest().send();
  return client.timer()
      .timeoutAfter(client.options().per_try_timeout, kj::mv(next))
      .then([&client, stream = kj::mv(stream), crc, bytes, on_chunk = std::move(on_chunk)](
                capnp::Response<rpc::SnapshotStream::NextResults> r) mutable
            -> kj::Promise<absl::Status> {
        if (r.getDone()) {
          if (r.getCrc32c() != crc) {
            return absl::DataLossError(absl::StrCat("snapshot of ", bytes,
                                                    " bytes: CRC-32C of the chunks ", crc,
                                                    ", the member sent ", r.getCrc32c()));
          }
          return absl::OkStatus();
        }
        auto data = r.getChunk();
        const absl::string_view chunk(reinterpret_cast<const char*>(data.begin()), data.size());
        if (absl::Status s = on_chunk(chunk); !s.ok()) return s;
        return NextChunk(client, kj::mv(stream), store::Crc32c(chunk, crc), bytes + chunk.size(),
                         std::move(on_chunk));
      });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Create(kj::Network& network, kj::Timer& timer,
                                                       ClientOptions options) {
  if (options.endpoints.empty()) {
    return Error(ErrorCode::kInvalidArgument, "client: no endpoints");
  }
  std::vector<std::string> addresses;
  std::unique_ptr<TlsContext> default_tls;
  for (const std::string& url : options.endpoints) {
    absl::StatusOr<std::string> address = NetworkAddressOf(url);
    if (!address.ok()) return address.status();
    addresses.push_back(std::move(*address));
    if (IsTlsUrl(url) && options.tls == nullptr && default_tls == nullptr) {
      auto tls = TlsContext::NewClient(TlsFiles{});
      if (!tls.ok()) return tls.status();
      default_tls = std::move(*tls);
    }
  }
  return std::unique_ptr<Client>(new Client(std::make_unique<Impl>(
      network, timer, std::move(options), std::move(addresses), std::move(default_tls))));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

kj::Promise<absl::StatusOr<server::Response>> Client::CallAsync(server::Request request) {
  if (request.type == RequestType::kLeaseKeepAlive && request.lease_id == lease::kNoLease) {
    return absl::StatusOr<server::Response>(
        Error(ErrorCode::kInvalidArgument, "lease keep-alive: lease id 0"));
  }
  Policy policy;
  policy.idempotent = IsIdempotent(request.type);
  policy.leader_only = IsLeaderOnly(request.type);
  policy.what = RequestName(request.type);
  std::vector<size_t> order = impl_->Order(policy.leader_only);
  Impl* impl = impl_.get();
  Attempt<server::Response> attempt = [impl, request = std::move(request)](Conn& c) {
    return impl->Send(c, request);
  };
  return impl_->Failover<server::Response>(std::move(policy), std::move(attempt), std::move(order));
}

absl::StatusOr<server::Response> Client::Call(server::Request request, kj::WaitScope& wait_scope) {
  return CallAsync(std::move(request)).wait(wait_scope);
}

kj::Promise<absl::StatusOr<server::Response>> Client::CallEndpointAsync(size_t endpoint,
                                                                        server::Request request) {
  if (endpoint >= impl_->endpoint_count()) {
    return absl::StatusOr<server::Response>(
        Error(ErrorCode::kInvalidArgument, absl::StrCat("client: no endpoint ", endpoint)));
  }
  Policy policy;
  policy.idempotent = IsIdempotent(request.type);
  policy.what = RequestName(request.type);
  Impl* impl = impl_.get();
  Attempt<server::Response> attempt = [impl, request = std::move(request)](Conn& c) {
    return impl->Send(c, request);
  };
  return impl_->Failover<server::Response>(std::move(policy), std::move(attempt), {endpoint});
}

kj::Promise<absl::StatusOr<EndpointStatus>> Client::StatusAsync(size_t endpoint) {
  if (endpoint >= impl_->endpoint_count()) {
    return absl::StatusOr<EndpointStatus>(
        Error(ErrorCode::kInvalidArgument, absl::StrCat("client: no endpoint ", endpoint)));
  }
  Policy policy;
  policy.idempotent = true;
  policy.what = "status";
  const std::string address = impl_->address(endpoint);
  Attempt<EndpointStatus> attempt =
      [address](Conn& c) -> kj::Promise<absl::StatusOr<EndpointStatus>> {
    return c.maintenance.statusRequest().send().then(
        [address](
            capnp::Response<rpc::Maintenance::StatusResults> r) -> absl::StatusOr<EndpointStatus> {
          absl::StatusOr<MemberStatusReply> reply = ToMemberStatus(r);
          if (!reply.ok()) return reply.status();
          if (!reply->status.ok()) return reply->status;
          EndpointStatus status;
          status.endpoint = address;
          status.version = std::move(reply->version);
          status.member = std::move(reply->member);
          return status;
        });
  };
  return impl_->Failover<EndpointStatus>(std::move(policy), std::move(attempt), {endpoint});
}

kj::Promise<absl::StatusOr<std::unique_ptr<Client::Watch>>> Client::WatchAsync(
    mvcc::WatchRequest request, std::function<void(const mvcc::WatchResponse&)> on_response,
    std::string token) {
  using Result = absl::StatusOr<std::unique_ptr<Watch>>;
  Policy policy;
  policy.idempotent = true;  // a watch that failed to open is released with its connection
  policy.what = "watch";
  Impl* impl = impl_.get();
  Attempt<std::unique_ptr<Watch>> attempt =
      [impl, request = std::move(request), on_response = std::move(on_response),
       token = std::move(token)](Conn& c) -> kj::Promise<Result> {
    auto state = std::make_shared<WatchState>(on_response);
    auto call = c.watch.watchRequest();
    ToCapnp(request, call.initRequest());
    call.setToken(capnp::Text::Reader(token.c_str(), token.size()));
    call.setWatcher(kj::heap<WatcherImpl>(state));
    return call.send()
        .then([impl, state, conn = kj::addRef(c)](
                  capnp::Response<rpc::Watch::WatchResults> r) mutable -> Result {
          absl::Status status = StatusFromCapnp(r.getStatus());
          if (!status.ok()) return status;
          auto watch = std::make_unique<ClientWatch>(*impl, state, r.getHandle(), kj::mv(conn));
          state->Confirm();
          return std::unique_ptr<Watch>(std::move(watch));
        })
        // Until confirmed, a failed or abandoned attempt drops what its watcher receives.
        .attach(kj::defer([state] {
          if (!state->confirmed) state->closed = true;
        }));
  };
  return impl_->Failover<std::unique_ptr<Watch>>(std::move(policy), std::move(attempt),
                                                 impl_->Order(false));
}

std::unique_ptr<Client::KeepAlive> Client::NewKeepAlive(lease::LeaseId id) {
  return std::make_unique<ClientKeepAlive>(*impl_, id);
}

kj::Promise<absl::Status> Client::SnapshotAsync(
    size_t endpoint, std::function<absl::Status(absl::string_view chunk)> on_chunk,
    std::string token) {
  if (endpoint >= impl_->endpoint_count()) {
    return Error(ErrorCode::kInvalidArgument, absl::StrCat("client: no endpoint ", endpoint));
  }
  Impl* impl = impl_.get();
  kj::Promise<kj::Own<Conn>> connected = impl->Get(endpoint);
  return impl->timer()
      .timeoutAfter(impl->options().per_try_timeout, kj::mv(connected))
      .then([impl, on_chunk = std::move(on_chunk),
             token = std::move(token)](kj::Own<Conn> c) mutable {
        auto request = c->maintenance.snapshotRequest();
        request.setToken(capnp::Text::Reader(token.c_str(), token.size()));
        kj::Promise<capnp::Response<rpc::Maintenance::SnapshotResults>> opened = request.send();
        return impl->timer()
            .timeoutAfter(impl->options().per_try_timeout, kj::mv(opened))
            .then([impl, on_chunk = std::move(on_chunk)](
                      capnp::Response<rpc::Maintenance::SnapshotResults> r) mutable
                  -> kj::Promise<absl::Status> {
              absl::Status status = StatusFromCapnp(r.getStatus());
              if (!status.ok()) return status;
              return NextChunk(*impl, r.getStream(), 0, 0, std::move(on_chunk));
            })
            .attach(kj::mv(c));
      })
      .catch_([impl, endpoint](kj::Exception&& e) -> absl::Status {
        impl->Drop(endpoint);
        return absl::UnavailableError(absl::StrCat("snapshot from ", impl->address(endpoint), ": ",
                                                   e.getDescription().cStr()));
      });
}

const std::vector<std::string>& Client::endpoints() const { return impl_->options().endpoints; }

bool Client::InBackoff(size_t endpoint) const { return impl_->InBackoff(endpoint); }

}  // namespace kvstore::net
