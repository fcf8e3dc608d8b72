#include "net/etcd/gateway.h"

#include <algorithm>
#include <deque>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "google/protobuf/util/json_util.h"
#include "net/entropy.h"
#include "net/etcd/convert.h"
#include "net/etcd/rpc.pb.h"
#include "net/member_service.h"

namespace kvstore::net::etcd {
namespace {

using Response = kj::HttpService::Response;

// Responses one /v3/watch stream may hold for a client that does not read them.
constexpr size_t kWatchQueueLimitResponses = 1024;
// Bytes of snapshot per streamed message (etcd sends 32 KiB).
constexpr size_t kSnapshotChunkBytes = 32 << 10;

// grpc-gateway v1's error body, its fields in the order etcd 3.4.23 writes them.
std::string ErrorBody(absl::string_view message, int grpc_code) {
  const std::string quoted = JsonQuote(message);
  return absl::StrCat("{\"error\":", quoted, ",\"message\":", quoted, ",\"code\":", grpc_code, "}");
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;  // grpc-gateway's OrigName, as etcd configures it
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

std::string ResultLine(const google::protobuf::Message& message) {
  return absl::StrCat("{\"result\":", ToJson(message), "}\n");
}

const char* StatusText(uint status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Internal Server Error";
  }
}

// etcd's access controller (embed/serve.go) writes these on every answer of a client URL, as
// --cors allows (its default "*": every origin).
void AddCorsHeaders(kj::HttpHeaders& headers) {
  headers.add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE");
  headers.add("Access-Control-Allow-Origin", "*");
  headers.add("Access-Control-Allow-Headers", "accept, content-type, authorization");
}

// A response whose every answer carries the CORS headers.
class CorsResponse final : public kj::HttpService::Response {
 public:
  explicit CorsResponse(kj::HttpService::Response& inner) : inner_(inner) {}

  kj::Own<kj::AsyncOutputStream> send(uint status, kj::StringPtr status_text,
                                      const kj::HttpHeaders& headers,
                                      kj::Maybe<uint64_t> expected_body_size) override {
    kj::HttpHeaders with_cors = headers.clone();
    AddCorsHeaders(with_cors);
    return inner_.send(status, status_text, with_cors, expected_body_size);
  }
  kj::Own<kj::WebSocket> acceptWebSocket(const kj::HttpHeaders& headers) override {
    return inner_.acceptWebSocket(headers);
  }

 private:
  kj::HttpService::Response& inner_;
};

// Go's net/http htmlEscape (used by http.Redirect).
std::string HtmlEscape(absl::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Sends `body` with `headers` (which must outlive the promise).
kj::Promise<void> SendBody(Response& response, uint status, kj::StringPtr status_text,
                           const kj::HttpHeaders& headers, std::string body) {
  auto owned = kj::heap<std::string>(std::move(body));
  auto out = response.send(status, status_text, headers, owned->size());
  auto written = out->write(owned->data(), owned->size());
  return written.attach(kj::mv(owned), kj::mv(out));
}

// Every path Dispatch serves (after /v3 or /v3beta): a request for any other answers 404
// whatever its method, one for these with a method but POST 405, as grpc-gateway's mux does.
bool IsGatewayPath(absl::string_view api) {
  static constexpr absl::string_view kPaths[] = {
      "/kv/range",
      "/kv/put",
      "/kv/deleterange",
      "/kv/txn",
      "/kv/compaction",
      "/watch",
      "/lease/grant",
      "/lease/revoke",
      "/kv/lease/revoke",
      "/lease/keepalive",
      "/lease/timetolive",
      "/kv/lease/timetolive",
      "/lease/leases",
      "/kv/lease/leases",
      "/cluster/member/add",
      "/cluster/member/remove",
      "/cluster/member/update",
      "/cluster/member/list",
      "/cluster/member/promote",
      "/maintenance/alarm",
      "/maintenance/status",
      "/maintenance/defragment",
      "/maintenance/hash",
      "/maintenance/snapshot",
      "/maintenance/transfer-leadership",
      "/auth/enable",
      "/auth/disable",
      "/auth/authenticate",
      "/auth/user/add",
      "/auth/user/get",
      "/auth/user/list",
      "/auth/user/delete",
      "/auth/user/changepw",
      "/auth/user/grant",
      "/auth/user/revoke",
      "/auth/role/add",
      "/auth/role/get",
      "/auth/role/list",
      "/auth/role/delete",
      "/auth/role/grant",
      "/auth/role/revoke",
  };
  return std::find(std::begin(kPaths), std::end(kPaths), api) != std::end(kPaths);
}

}  // namespace

// The handlers, one per endpoint; each owns nothing beyond its call.
class Gateway::Impl {
 public:
  // `token`: the caller's auth token from the request's headers (TokenOfHeaders), "" for none;
  // `cert_user`: the user of requests without a token, "" for none.
  Impl(Gateway& gateway, std::string token, std::string cert_user)
      : g_(gateway), token_(std::move(token)), cert_user_(std::move(cert_user)) {}

  kj::Promise<void> Send(Response& response, uint status, std::string body) {
    kj::HttpHeaders headers(g_.headers_);
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
    // grpc-gateway passes the call's response metadata on; etcd's errors carry it as a trailer
    // instead (Grpc-Trailer-Content-Type), which kj-http cannot send.
    if (status == 200) headers.add("Grpc-Metadata-Content-Type", "application/grpc");
    auto owned = kj::heap<std::string>(std::move(body));
    auto out = response.send(status, StatusText(status), headers, owned->size());
    auto written = out->write(owned->data(), owned->size());
    return written.attach(kj::mv(owned), kj::mv(out));
  }

  // grpc-gateway's answer for a path or method it does not route: Go's http.Error, plain text
  // (etcd 3.4.23: 404 "Not Found\n", 405 "Method Not Allowed\n").
  kj::Promise<void> SendPlain(Response& response, uint status) {
    kj::HttpHeaders headers(g_.headers_);
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; charset=utf-8");
    headers.add("X-Content-Type-Options", "nosniff");
    auto owned = kj::heap<std::string>(absl::StrCat(StatusText(status), "\n"));
    auto out = response.send(status, StatusText(status), headers, owned->size());
    auto written = out->write(owned->data(), owned->size());
    return written.attach(kj::mv(owned), kj::mv(out));
  }

  kj::Promise<void> SendError(Response& response, const absl::Status& status,
                              grpc::Status (*to_grpc)(const absl::Status&) = ToGrpcStatus) {
    const GatewayError error = ToGatewayError(status, to_grpc);
    return Send(response, error.http_status, ErrorBody(error.message, error.grpc_code));
  }

  template <typename Req>
  bool Parse(const std::string& body, Req* request, absl::Status* error) {
    *error = ParseGatewayJson(body, request);
    return error->ok();
  }

  // One unary call: the body parsed and converted, run as its caller, the answer in JSON.
  // etcd's Auth service (/v3/auth/*, kAuth), as the gRPC one, draws a salt here for the
  // requests that hash a password or make a token, and answers with its own header shape.
  // `to_grpc` maps the core's refusal as the gRPC method does (ToMoveLeaderStatus).
  template <typename Req, typename Resp, bool kAuth = false>
  kj::Promise<void> Unary(const std::string& body, Response& response,
                          grpc::Status (*to_grpc)(const absl::Status&) = ToGrpcStatus) {
    Req request;
    absl::Status error;
    if (!Parse(body, &request, &error)) return SendError(response, error);
    server::Request converted;
    if (absl::Status s = ToRequest(request, &converted); !s.ok()) return SendError(response, s);
    Identify(&converted);
    if constexpr (kAuth) AddAuthEntropy(&converted);
    return g_.member_.Call(std::move(converted))
        .then([this, &response, to_grpc](server::Response answer) -> kj::Promise<void> {
          if (!answer.status.ok()) return SendError(response, answer.status, to_grpc);
          Resp out;
          if constexpr (kAuth) {
            ToAuthProto(answer, g_.member_.cluster_id(), &out);
          } else {
            ToProto(answer, g_.member_.cluster_id(), &out);
          }
          return Send(response, 200, ToJson(out));
        });
  }
  template <typename Req, typename Resp>
  kj::Promise<void> AuthUnary(const std::string& body, Response& response) {
    return Unary<Req, Resp, /*kAuth=*/true>(body, response);
  }

  kj::Promise<void> TimeToLive(const std::string& body, Response& response) {
    etcdserverpb::LeaseTimeToLiveRequest request;
    absl::Status error;
    if (!Parse(body, &request, &error)) return SendError(response, error);
    server::Request converted;
    (void)ToRequest(request, &converted);
    Identify(&converted);
    return g_.member_.Call(std::move(converted))
        .then([this, &response, request](server::Response answer) -> kj::Promise<void> {
          etcdserverpb::LeaseTimeToLiveResponse out;
          absl::Status s =
              ToTimeToLiveResponse(request, std::move(answer), g_.member_.cluster_id(), &out);
          if (!s.ok()) return SendError(response, s);
          return Send(response, 200, ToJson(out));
        });
  }

  kj::Promise<void> KeepAlive(const std::string& body, Response& response) {
    etcdserverpb::LeaseKeepAliveRequest request;
    absl::Status error;
    if (!Parse(body, &request, &error)) return SendError(response, error);
    server::Request converted;
    (void)ToRequest(request, &converted);
    const int64_t id = request.id();
    Identify(&converted);
    return g_.member_.Call(std::move(converted))
        .then([this, &response, id](server::Response answer) -> kj::Promise<void> {
          etcdserverpb::LeaseKeepAliveResponse out;
          absl::Status s =
              ToKeepAliveResponse(id, std::move(answer), g_.member_.cluster_id(), &out);
          if (!s.ok()) return SendError(response, s);
          return Send(response, 200, ResultLine(out));
        });
  }

  kj::Promise<void> Status(Response& response) {
    etcdserverpb::StatusResponse out;
    ToProto(g_.member_.Status(), g_.member_.cluster_id(), &out);
    return Send(response, 200, ToJson(out));
  }

  // etcd's authMaintenanceServer.Snapshot: root only while auth is enabled. A local alarm list
  // asks the member that question (served without the log, refused as an admin check is).
  kj::Promise<void> Snapshot(Response& response) {
    server::Request admin_check;
    admin_check.type = server::RequestType::kAlarmList;
    Identify(&admin_check);
    return g_.member_.Call(std::move(admin_check))
        .then([this, &response](server::Response answer) -> kj::Promise<void> {
          if (!answer.status.ok()) return SendError(response, answer.status);
          return SendSnapshot(response);
        });
  }

  kj::Promise<void> SendSnapshot(Response& response) {
    const MemberStatusInfo info = g_.member_.Status();
    absl::StatusOr<std::string> data = g_.member_.SnapshotData();
    if (!data.ok()) return SendError(response, data.status());
    server::ResponseHeader header;
    header.member_id = info.id;
    header.revision = info.revision;
    header.raft_term = info.term;
    std::string lines;
    size_t offset = 0;
    do {
      const size_t n = std::min(kSnapshotChunkBytes, data->size() - offset);
      etcdserverpb::SnapshotResponse chunk;
      ToHeader(header, g_.member_.cluster_id(), chunk.mutable_header());
      chunk.set_blob(data->substr(offset, n));
      offset += n;
      chunk.set_remaining_bytes(data->size() - offset);
      lines += ResultLine(chunk);
    } while (offset < data->size());
    return Send(response, 200, std::move(lines));
  }

  kj::Promise<void> Watch(const std::string& body, Response& response);

  kj::Promise<void> Dispatch(const std::string& api, const std::string& body, Response& response) {
    using namespace etcdserverpb;  // NOLINT: the table reads better with the bare names
    if (api == "/kv/range") return Unary<RangeRequest, RangeResponse>(body, response);
    if (api == "/kv/put") return Unary<PutRequest, PutResponse>(body, response);
    if (api == "/kv/deleterange") {
      return Unary<DeleteRangeRequest, DeleteRangeResponse>(body, response);
    }
    if (api == "/kv/txn") return Unary<TxnRequest, TxnResponse>(body, response);
    if (api == "/kv/compaction")
      return Unary<CompactionRequest, CompactionResponse>(body, response);
    if (api == "/watch") return Watch(body, response);
    if (api == "/lease/grant") return Unary<LeaseGrantRequest, LeaseGrantResponse>(body, response);
    if (api == "/lease/revoke" || api == "/kv/lease/revoke") {
      return Unary<LeaseRevokeRequest, LeaseRevokeResponse>(body, response);
    }
    if (api == "/lease/keepalive") return KeepAlive(body, response);
    if (api == "/lease/timetolive" || api == "/kv/lease/timetolive") {
      return TimeToLive(body, response);
    }
    if (api == "/lease/leases" || api == "/kv/lease/leases") {
      return Unary<LeaseLeasesRequest, LeaseLeasesResponse>(body, response);
    }
    if (api == "/cluster/member/add") {
      return Unary<MemberAddRequest, MemberAddResponse>(body, response);
    }
    if (api == "/cluster/member/remove") {
      return Unary<MemberRemoveRequest, MemberRemoveResponse>(body, response);
    }
    if (api == "/cluster/member/update") {
      return Unary<MemberUpdateRequest, MemberUpdateResponse>(body, response);
    }
    if (api == "/cluster/member/list") {
      return Unary<MemberListRequest, MemberListResponse>(body, response);
    }
    if (api == "/cluster/member/promote") {
      return Unary<MemberPromoteRequest, MemberPromoteResponse>(body, response);
    }
    if (api == "/maintenance/alarm") return Unary<AlarmRequest, AlarmResponse>(body, response);
    if (api == "/maintenance/status") return Status(response);
    if (api == "/maintenance/defragment") {
      return Unary<DefragmentRequest, DefragmentResponse>(body, response);
    }
    if (api == "/maintenance/hash") return Unary<HashKVRequest, HashKVResponse>(body, response);
    if (api == "/maintenance/snapshot") return Snapshot(response);
    if (api == "/maintenance/transfer-leadership") {
      return Unary<MoveLeaderRequest, MoveLeaderResponse>(body, response, ToMoveLeaderStatus);
    }
    if (absl::StartsWith(api, "/auth/")) return DispatchAuth(api, body, response);
    return SendPlain(response, 404);
  }

  // etcd 3.4's paths of the Auth service (rpc.proto's google.api.http options).
  kj::Promise<void> DispatchAuth(const std::string& api, const std::string& body,
                                 Response& response) {
    using namespace etcdserverpb;  // NOLINT: the table reads better with the bare names
    if (api == "/auth/enable")
      return AuthUnary<AuthEnableRequest, AuthEnableResponse>(body, response);
    if (api == "/auth/disable") {
      return AuthUnary<AuthDisableRequest, AuthDisableResponse>(body, response);
    }
    if (api == "/auth/authenticate") {
      return AuthUnary<AuthenticateRequest, AuthenticateResponse>(body, response);
    }
    if (api == "/auth/user/add") {
      return AuthUnary<AuthUserAddRequest, AuthUserAddResponse>(body, response);
    }
    if (api == "/auth/user/get") {
      return AuthUnary<AuthUserGetRequest, AuthUserGetResponse>(body, response);
    }
    if (api == "/auth/user/list") {
      return AuthUnary<AuthUserListRequest, AuthUserListResponse>(body, response);
    }
    if (api == "/auth/user/delete") {
      return AuthUnary<AuthUserDeleteRequest, AuthUserDeleteResponse>(body, response);
    }
    if (api == "/auth/user/changepw") {
      return AuthUnary<AuthUserChangePasswordRequest, AuthUserChangePasswordResponse>(body,
                                                                                      response);
    }
    if (api == "/auth/user/grant") {
      return AuthUnary<AuthUserGrantRoleRequest, AuthUserGrantRoleResponse>(body, response);
    }
    if (api == "/auth/user/revoke") {
      return AuthUnary<AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse>(body, response);
    }
    if (api == "/auth/role/add") {
      return AuthUnary<AuthRoleAddRequest, AuthRoleAddResponse>(body, response);
    }
    if (api == "/auth/role/get") {
      return AuthUnary<AuthRoleGetRequest, AuthRoleGetResponse>(body, response);
    }
    if (api == "/auth/role/list") {
      return AuthUnary<AuthRoleListRequest, AuthRoleListResponse>(body, response);
    }
    if (api == "/auth/role/delete") {
      return AuthUnary<AuthRoleDeleteRequest, AuthRoleDeleteResponse>(body, response);
    }
    if (api == "/auth/role/grant") {
      return AuthUnary<AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse>(body,
                                                                                        response);
    }
    if (api == "/auth/role/revoke") {
      return AuthUnary<AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse>(body,
                                                                                          response);
    }
    return SendPlain(response, 404);
  }

 private:
  // Who a request runs as: its token, else the connection's certificate user.
  void Identify(server::Request* request) const {
    request->token = token_;
    request->cert_user = cert_user_;
  }

  Gateway& g_;
  const std::string token_;
  const std::string cert_user_;
};

namespace {

// One /v3/watch stream: the member's responses written in order as result lines. The request's
// promise stays pending until the watch ends; dropping it (the client went away) cancels the
// member's watch.
class HttpWatch final : public WatchSink {
 public:
  HttpWatch(MemberService& member, kj::Own<kj::AsyncOutputStream> out)
      : member_(member), out_(kj::mv(out)) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    done_ = kj::mv(paf.promise);
    done_fulfiller_ = kj::mv(paf.fulfiller);
    const MemberStatusInfo info = member_.Status();
    member_id_ = info.id;
    term_ = info.term;
  }

  ~HttpWatch() noexcept override {
    if (member_open_) (void)member_.CancelWatch(id_);
  }

  // Resolves when the watch has ended and its last response is written (or the client left).
  kj::Promise<void> Run(const mvcc::WatchRequest& request, const WatchCaller& caller) {
    member_open_ = true;  // responses may arrive before Watch returns
    absl::StatusOr<mvcc::WatchId> id = member_.Watch(request, caller, this);
    if (!id.ok()) {
      member_open_ = false;
      const MemberStatusInfo info = member_.Status();
      const RefusedWatch refused =
          RefusedWatchResponses(id.status(), info.revision, info.compact_revision);
      if (refused.one_response) {
        Deliver(refused.created, /*watch_id=*/-1);
      } else {
        Deliver(refused.created);
        Deliver(refused.canceled);
      }
    } else {
      id_ = *id;
    }
    return kj::mv(done_);
  }

  void Deliver(const mvcc::WatchResponse& response) override { Deliver(response, 0); }

  // `watch_id`: 0, as etcd numbers a stream's watches from 0 and an HTTP stream has one; -1 for
  // a watch refused at creation.
  void Deliver(const mvcc::WatchResponse& response, int64_t watch_id) {
    if (ended_) return;
    etcdserverpb::WatchResponse converted;
    ToProto(response, member_.cluster_id(), member_id_, term_, &converted);
    converted.set_watch_id(watch_id);
    if (response.canceled) {
      member_open_ = false;
      ended_ = true;
    } else if (queue_.size() >= kWatchQueueLimitResponses) {
      ended_ = true;
      cancel_after_write_ = true;
      ToSlowWatcherCancel(queue_.size(), kWatchQueueLimitResponses, &converted);
    }
    queue_.push_back(ResultLine(converted));
    Pump();
  }

 private:
  void Pump() {
    if (writing_) return;
    if (queue_.empty()) {
      if (ended_) Finish();
      return;
    }
    writing_ = true;
    auto line = kj::heap<std::string>(std::move(queue_.front()));
    queue_.pop_front();
    auto write = out_->write(line->data(), line->size()).attach(kj::mv(line));
    writes_ = write
                  .then(
                      [this]() {
                        writing_ = false;
                        if (cancel_after_write_ && queue_.empty() && member_open_) {
                          member_open_ = false;
                          (void)member_.CancelWatch(id_);
                        }
                        Pump();
                      },
                      [this](kj::Exception&&) {
                        // The client went away.
                        writing_ = false;
                        queue_.clear();
                        ended_ = true;
                        Finish();
                      })
                  .eagerlyEvaluate(nullptr);
  }

  void Finish() {
    if (done_fulfiller_->isWaiting()) done_fulfiller_->fulfill();
  }

  MemberService& member_;
  kj::Own<kj::AsyncOutputStream> out_;
  raft::NodeId member_id_ = 0;
  raft::Term term_ = 0;
  mvcc::WatchId id_ = 0;
  bool member_open_ = false;
  bool ended_ = false;
  bool cancel_after_write_ = false;
  bool writing_ = false;
  std::deque<std::string> queue_;
  kj::Promise<void> done_ = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> done_fulfiller_;
  kj::Promise<void> writes_ = nullptr;  // last: dropped first
};

}  // namespace

kj::Promise<void> Gateway::Impl::Watch(const std::string& body, Response& response) {
  // The body holds one WatchRequest (etcd's curl examples send a create_request).
  etcdserverpb::WatchRequest request;
  absl::Status error;
  if (!Parse(body, &request, &error)) return SendError(response, error);
  if (!request.has_create_request()) {
    return SendError(response, Error(ErrorCode::kInvalidArgument,
                                     "watch: the request body must hold a create_request"));
  }
  mvcc::WatchRequest converted;
  if (absl::Status s = ToWatchRequest(request.create_request(), &converted); !s.ok()) {
    return SendError(response, s);
  }
  kj::HttpHeaders headers(g_.headers_);
  headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
  headers.add("Grpc-Metadata-Content-Type", "application/grpc");
  auto watch = kj::heap<HttpWatch>(g_.member_, response.send(200, "OK", headers));
  auto ran = watch->Run(converted, WatchCaller{token_, cert_user_});
  return ran.attach(kj::mv(watch));
}

Gateway::Gateway(MemberService& member, const kj::HttpHeaderTable& headers,
                 kj::HttpService& fallback, uint64_t max_request_bytes)
    : member_(member),
      headers_(headers),
      fallback_(fallback),
      max_body_bytes_(max_request_bytes + (512 << 10)) {}

kj::Promise<void> Gateway::request(kj::HttpMethod method, kj::StringPtr url,
                                   const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                                   Response& response) {
  return Serve(method, url, headers, body, response, "");
}

namespace {

// The gateway for one TLS connection whose requests run as its client certificate's CN.
class CertUserGateway final : public kj::HttpService {
 public:
  CertUserGateway(Gateway& gateway, std::string cert_user)
      : gateway_(gateway), cert_user_(std::move(cert_user)) {}
  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url,
                            const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                            Response& response) override {
    return gateway_.Serve(method, url, headers, body, response, cert_user_);
  }

 private:
  Gateway& gateway_;
  const std::string cert_user_;
};

}  // namespace

std::string TokenOfHeaders(const kj::HttpHeaders& headers) {
  // grpc-gateway (v1, etcd 3.4's) passes "Authorization" on as the call's "authorization"
  // metadata and "Grpc-Metadata-<Name>" as "<name>"; etcd's AuthInfoFromCtx takes the "token"
  // metadata first, then "authorization", each's first value, the whole value as the token (no
  // "Bearer" scheme).
  std::string token, authorization;
  bool has_token = false, has_authorization = false;
  headers.forEach([&](kj::StringPtr name, kj::StringPtr value) {
    const absl::string_view header(name.cStr(), name.size());
    if (!has_token && absl::EqualsIgnoreCase(header, "Grpc-Metadata-Token")) {
      token = std::string(value.cStr(), value.size());
      has_token = true;
    } else if (!has_authorization &&
               (absl::EqualsIgnoreCase(header, "Authorization") ||
                absl::EqualsIgnoreCase(header, "Grpc-Metadata-Authorization"))) {
      authorization = std::string(value.cStr(), value.size());
      has_authorization = true;
    }
  });
  if (!has_token && !has_authorization) return std::string();
  const std::string& sent = has_token ? token : authorization;
  return sent.empty() ? std::string(kEmptyTokenSent) : sent;
}

kj::Own<kj::HttpService> Gateway::ForCertUser(std::string cert_user) {
  return kj::heap<CertUserGateway>(*this, std::move(cert_user));
}

kj::Promise<void> Gateway::Serve(kj::HttpMethod method, kj::StringPtr url,
                                 const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                                 Response& response, const std::string& cert_user) {
  // etcd's access controller first: the CORS headers on every answer, and OPTIONS (a CORS
  // preflight, or anything else) answered 200 with no body, whatever the path.
  auto cors = kj::heap<CorsResponse>(response);
  if (method == kj::HttpMethod::OPTIONS) {
    auto empty = kj::heap<kj::HttpHeaders>(headers_);
    auto sent = SendBody(*cors, 200, "OK", *empty, "");
    return sent.attach(kj::mv(empty), kj::mv(cors));
  }
  auto served = ServeApi(method, url, headers, body, *cors, cert_user);
  return served.attach(kj::mv(cors));
}

kj::Promise<void> Gateway::ServeApi(kj::HttpMethod method, kj::StringPtr url,
                                    const kj::HttpHeaders& headers, kj::AsyncInputStream& body,
                                    Response& response, const std::string& cert_user) {
  std::string path(url.cStr());
  std::string query;
  if (size_t at = path.find('?'); at != std::string::npos) {
    query = path.substr(at);
    path.resize(at);
  }
  if (path == "/v3") {
    // Go's ServeMux sends a subtree's root without its slash to the root with it (etcd 3.4.23:
    // 301 to /v3/, the query kept; a body for GET and HEAD only).
    auto redirect = kj::heap<kj::HttpHeaders>(headers_);
    const std::string location = absl::StrCat("/v3/", query);
    redirect->add("Location", kj::heapString(location.data(), location.size()));
    std::string text;
    if (method == kj::HttpMethod::GET || method == kj::HttpMethod::HEAD) {
      redirect->set(kj::HttpHeaderId::CONTENT_TYPE, "text/html; charset=utf-8");
      text = absl::StrCat("<a href=\"", HtmlEscape(location), "\">Moved Permanently</a>.\n\n");
    }
    auto sent = SendBody(response, 301, "Moved Permanently", *redirect, std::move(text));
    return sent.attach(kj::mv(redirect));
  }
  std::string api;
  for (absl::string_view prefix : {"/v3beta", "/v3"}) {
    if (absl::StartsWith(path, absl::StrCat(prefix, "/"))) {
      api = path.substr(prefix.size());
      break;
    }
  }
  if (api.empty()) return fallback_.request(method, url, headers, body, response);
  auto impl = kj::heap<Impl>(*this, TokenOfHeaders(headers), cert_user);
  if (!IsGatewayPath(api)) return impl->SendPlain(response, 404).attach(kj::mv(impl));
  if (method != kj::HttpMethod::POST) return impl->SendPlain(response, 405).attach(kj::mv(impl));
  Impl& handlers = *impl;
  return body.readAllText(max_body_bytes_)
      .then(
          [&handlers, api, &response](kj::String text) {
            return handlers.Dispatch(api, std::string(text.cStr(), text.size()), response);
          },
          [&handlers, &response](kj::Exception&& e) {
            return handlers.SendError(
                response, Error(ErrorCode::kRequestTooLarge,
                                absl::StrCat("request body: ", e.getDescription().cStr())));
          })
      .attach(kj::mv(impl));
}

}  // namespace kvstore::net::etcd
