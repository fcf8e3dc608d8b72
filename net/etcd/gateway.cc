#include "net/etcd/gateway.h"

#include <algorithm>
#include <deque>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"
#include "google/protobuf/util/json_util.h"
#include "kj/debug.h"
#include "net/entropy.h"
#include "net/etcd/convert.h"
#include "net/etcd/go_json.h"
#include "net/etcd/go_quote.h"
#include "net/etcd/rpc.pb.h"
#include "net/etcd/watch_request.h"
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

// A request stream's body as Go's json.Decoder reads it (grpc-gateway decodes a bidi-stream
// endpoint's body so): top-level JSON values one after another, separated by optional white
// space. The splitter finds where each value ends (depth, strings and their escapes) and checks
// it with Go's scanner (GoSyntaxError), so a value is refused with Go's words; jsonpb's port
// (GoUnmarshalJsonpb) then maps it. As etcd's gateway, a value that is not an object is refused
// with Go's text too (null is an empty request).
class JsonValueSplitter {
 public:
  enum class Result { kValue, kNeedMore, kEnd, kError };

  explicit JsonValueSplitter(size_t max_value_bytes) : max_value_bytes_(max_value_bytes) {}

  void Feed(const char* data, size_t size) {
    if (pos_ > (64 << 10) && pos_ * 2 > buffer_.size()) {
      buffer_.erase(0, pos_);
      scan_ -= pos_;
      pos_ = 0;
    }
    buffer_.append(data, size);
  }

  // The next value into `value`, or kNeedMore (feed more bytes), kEnd (`at_end`: no more bytes
  // come, and none are left but white space) or kError (`error`: Go's text; `too_large`: a value
  // past max_value_bytes).
  Result Next(bool at_end, std::string* value, std::string* error, bool* too_large) {
    if (!in_value_) {
      while (pos_ < buffer_.size() && IsSpace(buffer_[pos_])) ++pos_;
      if (pos_ == buffer_.size()) return at_end ? Result::kEnd : Result::kNeedMore;
      const char c = buffer_[pos_];
      if (c == 'n') return Null(at_end, value, error);
      if (c != '{') {
        *error = NotAnObject(c);
        return Result::kError;
      }
      in_value_ = true;
      scan_ = pos_;
      depth_ = 0;
      in_string_ = escaped_ = false;
    }
    for (; scan_ < buffer_.size(); ++scan_) {
      const char c = buffer_[scan_];
      if (in_string_) {
        if (escaped_) {
          escaped_ = false;
        } else if (c == '\\') {
          escaped_ = true;
        } else if (c == '"') {
          in_string_ = false;
        }
        continue;
      }
      if (c == '"') {
        in_string_ = true;
      } else if (c == '{' || c == '[') {
        ++depth_;
      } else if ((c == '}' || c == ']') && --depth_ == 0) {
        value->assign(buffer_, pos_, scan_ + 1 - pos_);
        pos_ = ++scan_;
        in_value_ = false;
        // Go reads each value with its scanner, which refuses what protobuf's parser lets by.
        *error = GoSyntaxError(*value);
        return error->empty() ? Result::kValue : Result::kError;
      }
    }
    if (scan_ - pos_ > max_value_bytes_) {
      *too_large = true;
      *error = absl::StrCat("a request stream's value is over ", max_value_bytes_, " bytes");
      return Result::kError;
    }
    if (at_end) {
      *error = GoSyntaxError(absl::string_view(buffer_).substr(pos_));
      if (error->empty()) *error = "unexpected EOF";
      return Result::kError;
    }
    return Result::kNeedMore;
  }

 private:
  static bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

  // Go's answer to a top-level value that is not an object (jsonpb reads it into a map first).
  static std::string NotAnObject(char c) {
    const char* kind = nullptr;
    if (c == '[') {
      kind = "array";
    } else if (c == '"') {
      kind = "string";
    } else if (c == 't' || c == 'f') {
      kind = "bool";
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      kind = "number";
    }
    if (kind == nullptr)
      return absl::StrCat("invalid character ", GoQuoteChar(c), " looking for beginning of value");
    return absl::StrCat("json: cannot unmarshal ", kind,
                        " into Go value of type map[string]json.RawMessage");
  }

  // `null`: an empty request, as jsonpb reads it.
  Result Null(bool at_end, std::string* value, std::string* error) {
    static constexpr absl::string_view kNull = "null";
    for (size_t i = 1; i < kNull.size(); ++i) {
      if (pos_ + i == buffer_.size()) {
        if (!at_end) return Result::kNeedMore;
        *error = "unexpected EOF";
        return Result::kError;
      }
      if (buffer_[pos_ + i] != kNull[i]) {
        *error = absl::StrCat("invalid character ", GoQuoteChar(buffer_[pos_ + i]),
                              " in literal null (expecting ", GoQuoteChar(kNull[i]), ")");
        return Result::kError;
      }
    }
    pos_ += kNull.size();
    *value = "{}";
    return Result::kValue;
  }

  const size_t max_value_bytes_;
  std::string buffer_;
  size_t pos_ = 0;   // the start of the value being read, or of what follows the last one
  size_t scan_ = 0;  // how far the value being read has been scanned
  bool in_value_ = false;
  int depth_ = 0;
  bool in_string_ = false;
  bool escaped_ = false;
};

// One value of a request stream's body, or its end.
struct StreamItem {
  enum Kind { kValue, kEnd, kError } kind = kEnd;
  std::string text;   // kValue
  std::string error;  // kError: Go's text
  bool too_large = false;
};

// The values of a request stream's body, read as they arrive.
class BodyValues {
 public:
  BodyValues(kj::AsyncInputStream& body, size_t max_value_bytes)
      : body_(body), splitter_(max_value_bytes) {}

  kj::Promise<StreamItem> Next() {
    StreamItem item;
    switch (splitter_.Next(at_end_, &item.text, &item.error, &item.too_large)) {
      case JsonValueSplitter::Result::kValue:
        item.kind = StreamItem::kValue;
        return item;
      case JsonValueSplitter::Result::kEnd:
        item.kind = StreamItem::kEnd;
        return item;
      case JsonValueSplitter::Result::kError:
        item.kind = StreamItem::kError;
        return item;
      case JsonValueSplitter::Result::kNeedMore:
        break;
    }
    return body_.tryRead(buffer_, 1, sizeof(buffer_))
        .then(
            [this](size_t n) {
              if (n == 0) {
                at_end_ = true;
              } else {
                splitter_.Feed(buffer_, n);
              }
              return Next();
            },
            [this](kj::Exception&&) {
              // The body broke off (the client went away mid-body).
              at_end_ = broken_ = true;
              return Next();
            });
  }

  // The body ended before its end (its connection broke).
  bool broken() const { return broken_; }

 private:
  kj::AsyncInputStream& body_;
  JsonValueSplitter splitter_;
  bool at_end_ = false;
  bool broken_ = false;
  char buffer_[16 << 10];
};

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

// grpc-gateway ends a stream the gRPC call failed with its error object (no line feed).
std::string StreamErrorLine(const GatewayError& error) {
  return absl::StrCat("{\"error\":{\"grpc_code\":", error.grpc_code,
                      ",\"http_code\":", error.http_status,
                      ",\"message\":", JsonQuote(error.message),
                      ",\"http_status\":", JsonQuote(StatusText(error.http_status)), "}}");
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

  // A call's body read into `request` as etcd's gateway reads it (go_json.h); false when it
  // does not read, with `refused` the answer: grpc-gateway fails the call with InvalidArgument
  // and Go's text, or (a null element of a repeated message) etcd drops the connection.
  bool Parse(const std::string& body, google::protobuf::Message* request, Response& response,
             kj::Promise<void>* refused) {
    std::string error;
    switch (GoDecodeRequest(body, request, &error)) {
      case GoJsonResult::kOk:
        return true;
      case GoJsonResult::kRefused:
        *refused = Send(response, 400, ErrorBody(error, /*grpc_code=*/3));
        return false;
      case GoJsonResult::kPanics:
        *refused = KJ_EXCEPTION(DISCONNECTED, "etcd's gateway panics on this request");
        return false;
    }
    return true;
  }

  // One unary call: the body parsed and converted, run as its caller, the answer in JSON.
  // etcd's Auth service (/v3/auth/*, kAuth), as the gRPC one, draws a salt here for the
  // requests that hash a password or make a token, and answers with its own header shape.
  // `to_grpc` maps the core's refusal as the gRPC method does (ToMoveLeaderStatus).
  template <typename Req, typename Resp, bool kAuth = false>
  kj::Promise<void> Unary(const std::string& body, Response& response,
                          grpc::Status (*to_grpc)(const absl::Status&) = ToGrpcStatus) {
    Req request;
    kj::Promise<void> refused = nullptr;
    if (!Parse(body, &request, response, &refused)) return refused;
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
    kj::Promise<void> refused = nullptr;
    if (!Parse(body, &request, response, &refused)) return refused;
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

  // etcd's answer to a stream whose first value cannot be read (grpc-gateway fails the call
  // before it opens the stream): HTTP 500, gRPC Unknown, Go's text; a value past the size limit
  // is refused as any body over it is.
  kj::Promise<void> RefuseFirstValue(Response& response, const StreamItem& item,
                                     const std::string& parsed) {
    if (item.too_large) {
      return SendError(
          response, Error(ErrorCode::kRequestTooLarge, absl::StrCat("request body: ", item.error)));
    }
    const std::string& message = item.kind == StreamItem::kError ? item.error : parsed;
    return Send(response, 500, ErrorBody(message, /*grpc_code=*/2));
  }

  // The answer's headers once the stream has something to say; `metadata`: grpc-gateway's
  // Grpc-Metadata-Content-Type, which etcd sends once the gRPC stream has answered.
  kj::Own<kj::AsyncOutputStream> OpenStream(Response& response, uint status, bool metadata) {
    kj::HttpHeaders headers(g_.headers_);
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
    if (metadata) headers.add("Grpc-Metadata-Content-Type", "application/grpc");
    return response.send(status, StatusText(status), headers);
  }

  // /v3/lease/keepalive: each value of the body is one keep-alive, answered by one result line
  // in order; the answer ends once the body has ended (or holds a value that cannot be read, as
  // etcd's gateway stops reading there) and everything before is answered. Each answer is
  // written before the next value is read, so a client that does not read holds nothing.
  struct KeepAliveStream {
    KeepAliveStream(kj::AsyncInputStream& body, size_t max_value_bytes)
        : values(body, max_value_bytes) {}
    BodyValues values;
    kj::Own<kj::AsyncOutputStream> out;  // null until the first answer
    bool first = true;
  };

  kj::Promise<void> KeepAlive(kj::AsyncInputStream& body, Response& response) {
    auto stream = kj::heap<KeepAliveStream>(body, g_.max_body_bytes_);
    auto next = KeepAliveNext(*stream, response);
    return next.attach(kj::mv(stream));
  }

  kj::Promise<void> KeepAliveNext(KeepAliveStream& stream, Response& response) {
    return stream.values.Next().then([this, &stream,
                                      &response](StreamItem item) -> kj::Promise<void> {
      etcdserverpb::LeaseKeepAliveRequest request;
      std::string parsed;
      const bool readable =
          item.kind == StreamItem::kValue &&
          GoUnmarshalJsonpb(item.text, &request, &parsed) != GoJsonResult::kRefused;
      if (item.kind == StreamItem::kEnd || (!stream.first && !readable)) {
        // etcd: an empty body still answers 200 (without the gRPC metadata) and no lines.
        if (stream.out.get() == nullptr) stream.out = OpenStream(response, 200, false);
        stream.out = nullptr;  // the last chunk
        return kj::READY_NOW;
      }
      if (!readable) return RefuseFirstValue(response, item, parsed);
      stream.first = false;
      server::Request converted;
      (void)ToRequest(request, &converted);
      const int64_t id = request.id();
      Identify(&converted);
      return g_.member_.Call(std::move(converted))
          .then([this, &stream, &response, id](server::Response answer) -> kj::Promise<void> {
            etcdserverpb::LeaseKeepAliveResponse out;
            absl::Status s =
                ToKeepAliveResponse(id, std::move(answer), g_.member_.cluster_id(), &out);
            auto text = kj::heap<std::string>();
            const GatewayError error = ToGatewayError(s);
            if (s.ok()) {
              *text = ResultLine(out);
            } else {
              // grpc-gateway ends a stream the gRPC call failed with its error object (no line
              // feed), with the error's HTTP status when nothing was written before.
              *text = absl::StrCat(
                  "{\"error\":{\"grpc_code\":", error.grpc_code,
                  ",\"http_code\":", error.http_status, ",\"message\":", JsonQuote(error.message),
                  ",\"http_status\":", JsonQuote(StatusText(error.http_status)), "}}");
            }
            if (stream.out.get() == nullptr) {
              stream.out = OpenStream(response, s.ok() ? 200 : error.http_status, true);
            }
            auto written = stream.out->write(text->data(), text->size()).attach(kj::mv(text));
            if (!s.ok()) {
              return written.then([&stream]() { stream.out = nullptr; });
            }
            return written.then(
                [this, &stream, &response]() { return KeepAliveNext(stream, response); });
          });
    });
  }

  kj::Promise<void> Status(const std::string& body, Response& response) {
    etcdserverpb::StatusRequest request;
    kj::Promise<void> refused = nullptr;
    if (!Parse(body, &request, response, &refused)) return refused;
    etcdserverpb::StatusResponse out;
    ToProto(g_.member_.Status(), g_.member_.cluster_id(), &out);
    return Send(response, 200, ToJson(out));
  }

  // etcd answers from its alarm store (KeepAnsweredAlarms): a GET with the alarms of the
  // request's type, a disarm with the alarm it deactivated (as the gRPC service does). The core
  // answers a disarm with the alarms left: the deactivated one is that of the request's member
  // and type active just before; if none is, etcd deactivates nothing (the list already checked
  // the permission a disarm needs).
  kj::Promise<void> Alarm(const std::string& body, Response& response) {
    etcdserverpb::AlarmRequest request;
    kj::Promise<void> refused = nullptr;
    if (!Parse(body, &request, response, &refused)) return refused;
    server::Request converted;
    if (absl::Status s = ToRequest(request, &converted); !s.ok()) return SendError(response, s);
    Identify(&converted);
    if (request.action() != etcdserverpb::AlarmRequest::DEACTIVATE) {
      return g_.member_.Call(std::move(converted))
          .then([this, &response, request](server::Response answer) -> kj::Promise<void> {
            if (!answer.status.ok()) return SendError(response, answer.status, ToRawAuthStatus);
            etcdserverpb::AlarmResponse out;
            ToProto(answer, g_.member_.cluster_id(), &out);
            KeepAnsweredAlarms(request, &out);
            return Send(response, 200, ToJson(out));
          });
    }
    server::Request list;
    list.type = server::RequestType::kAlarmList;
    Identify(&list);
    return g_.member_.Call(std::move(list))
        .then([this, &response, request, converted = std::move(converted)](
                  server::Response answer) mutable -> kj::Promise<void> {
          if (!answer.status.ok()) return SendError(response, answer.status, ToRawAuthStatus);
          etcdserverpb::AlarmResponse before;
          ToProto(answer, g_.member_.cluster_id(), &before);
          KeepAnsweredAlarms(request, &before);
          if (before.alarms().empty()) return Send(response, 200, ToJson(before));
          return g_.member_.Call(std::move(converted))
              .then([this, &response,
                     before = std::move(before)](server::Response answer) -> kj::Promise<void> {
                if (!answer.status.ok()) return SendError(response, answer.status, ToRawAuthStatus);
                return Send(response, 200, ToJson(before));
              });
        });
  }

  // etcd's authMaintenanceServer.Snapshot: root only while auth is enabled. A local alarm list
  // marked require_admin asks the member that question (served without the log, refused as an
  // admin check is; an alarm list alone is open to every caller).
  kj::Promise<void> Snapshot(const std::string& body, Response& response) {
    etcdserverpb::SnapshotRequest request;
    kj::Promise<void> refused = nullptr;
    if (!Parse(body, &request, response, &refused)) return refused;
    server::Request admin_check;
    admin_check.type = server::RequestType::kAlarmList;
    admin_check.require_admin = true;
    Identify(&admin_check);
    return g_.member_.Call(std::move(admin_check))
        .then([this, &response](server::Response answer) -> kj::Promise<void> {
          if (!answer.status.ok()) return SendStreamError(response, answer.status);
          return SendSnapshot(response);
        });
  }

  // A snapshot stream refused before its first chunk: grpc-gateway ends a stream the gRPC call
  // failed with its error object, with the error's HTTP status (etcd's admin check answers
  // ToRawAuthStatus's errors: code Unknown, 500).
  kj::Promise<void> SendStreamError(Response& response, const absl::Status& status) {
    const GatewayError error = ToGatewayError(status, ToRawAuthStatus);
    return Send(response, error.http_status, StreamErrorLine(error));
  }

  // The copy is made off the loop (MemberService::TakeSnapshot); its lines are written one
  // chunk at a time, each after the last has gone out, as grpc-gateway relays the gRPC stream.
  kj::Promise<void> SendSnapshot(Response& response) {
    const MemberStatusInfo info = g_.member_.Status();
    return g_.member_.TakeSnapshot().then(
        [this, &response,
         info](absl::StatusOr<std::shared_ptr<SnapshotCopy>> copy) -> kj::Promise<void> {
          if (!copy.ok()) return SendError(response, copy.status());
          server::ResponseHeader header;
          header.member_id = info.id;
          header.revision = info.revision;
          header.raft_term = info.term;
          auto chunks = kj::heap<SnapshotChunks>(*std::move(copy), kSnapshotChunkBytes, header,
                                                 g_.member_.cluster_id());
          etcdserverpb::SnapshotResponse first;
          absl::StatusOr<bool> more = chunks->Next(&first);
          if (!more.ok()) return SendError(response, more.status());
          auto out = OpenStream(response, 200, /*metadata=*/true);
          auto sent = SendSnapshotLines(first, *chunks, *out);
          return sent.attach(kj::mv(chunks), kj::mv(out));
        });
  }

  // Writes `chunk`'s line, then the stream's next ones. A chunk that cannot be read ends the
  // stream early (the client sees it short of its remaining bytes, as when etcd's stream breaks).
  kj::Promise<void> SendSnapshotLines(const etcdserverpb::SnapshotResponse& chunk,
                                      SnapshotChunks& chunks, kj::AsyncOutputStream& out) {
    auto line = kj::heap<std::string>(ResultLine(chunk));
    auto written = out.write(line->data(), line->size()).attach(kj::mv(line));
    return written.then([this, &chunks, &out]() -> kj::Promise<void> {
      etcdserverpb::SnapshotResponse next;
      absl::StatusOr<bool> more = chunks.Next(&next);
      if (!more.ok() || !*more) return kj::READY_NOW;
      return SendSnapshotLines(next, chunks, out);
    });
  }

  kj::Promise<void> Watch(kj::AsyncInputStream& body, Response& response);

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
    if (api == "/lease/grant") return Unary<LeaseGrantRequest, LeaseGrantResponse>(body, response);
    if (api == "/lease/revoke" || api == "/kv/lease/revoke") {
      return Unary<LeaseRevokeRequest, LeaseRevokeResponse>(body, response);
    }
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
    if (api == "/maintenance/alarm") return Alarm(body, response);
    if (api == "/maintenance/status") return Status(body, response);
    // Defragment and Hash are root only, refused with the auth store's own errors (as Snapshot).
    if (api == "/maintenance/defragment") {
      return Unary<DefragmentRequest, DefragmentResponse>(body, response, ToRawAuthStatus);
    }
    // etcd 3.4 routes Hash and HashKV both here; its mux serves Hash (the body's revision is
    // not read).
    if (api == "/maintenance/hash") {
      return Unary<HashRequest, HashResponse>(body, response, ToRawAuthStatus);
    }
    if (api == "/maintenance/snapshot") return Snapshot(body, response);
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

// Watchers open at once on one /v3/watch stream, as the gRPC Watch stream allows
// (kMaxWatchersPerStream in service.h): a creation past it is refused with a reason.
constexpr size_t kMaxWatchersPerHttpStream = 10000;

// One /v3/watch stream, as etcd's gateway makes it of a gRPC Watch stream: each value of the
// request body is a WatchRequest handed on as it arrives (create, cancel, progress), and every
// response of the stream's watches is written in order as a result line. Watches are numbered
// per stream as the gRPC Watch stream numbers them (0, 1, ... unless the create names its
// watch_id; an id in use is refused as etcd refuses it). The body's end does not end the stream;
// the client leaving (a failed write, or its body breaking off) cancels every watch of it.
//
// The answer's headers go out with the first line (etcd answers nothing for a body that opened
// no watch and asked for no progress). A stream whose client does not read: its queue holds at
// most kWatchQueueLimitResponses member responses (past it the watch is canceled as a slow
// watcher, as the gRPC stream does), and the body is not read on while the queue is that long.
class HttpWatchStream final : private kj::TaskSet::ErrorHandler {
 public:
  HttpWatchStream(MemberService& member, const kj::HttpHeaderTable& table, Response& response,
                  WatchCaller caller, kj::Own<BodyValues> values)
      : member_(member),
        table_(table),
        response_(response),
        caller_(std::move(caller)),
        values_(kj::mv(values)),
        tasks_(*this) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    done_ = kj::mv(paf.promise);
    done_fulfiller_ = kj::mv(paf.fulfiller);
  }

  ~HttpWatchStream() noexcept { CancelAll(); }

  // Handles the body's first value, then reads the rest as it comes; resolves when the client
  // has gone.
  kj::Promise<void> Run(const etcdserverpb::WatchRequest& first) {
    Handle(first);
    tasks_.add(ReadOn());
    return kj::mv(done_);
  }

 private:
  // The member's sink for one watch.
  struct Watch final : public WatchSink {
    HttpWatchStream* stream = nullptr;
    int64_t local_id = 0;
    mvcc::WatchId member_id = 0;
    bool member_open = false;  // the member may still deliver to it
    bool ended = false;        // its last response is queued: nothing more is
    bool client_canceled = false;

    void Deliver(const mvcc::WatchResponse& response) override { stream->Enqueue(this, response); }
  };

  struct Line {
    std::string text;
    int64_t local_id = 0;
    bool cancel_member_watch = false;  // a slow watcher's end: cancel it once written
  };

  kj::Promise<void> ReadOn() {
    if (gone_) return kj::READY_NOW;
    if (queue_.size() >= kWatchQueueLimitResponses) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      drained_ = kj::mv(paf.fulfiller);
      return paf.promise.then([this]() { return ReadOn(); });
    }
    return values_->Next().then([this](StreamItem item) -> kj::Promise<void> {
      if (item.kind != StreamItem::kValue) {
        // etcd's gateway stops reading at the end or at a value it cannot read; the watches
        // stay. A body that broke off is a client gone.
        if (values_->broken()) ClientGone();
        return kj::READY_NOW;
      }
      etcdserverpb::WatchRequest request;
      std::string error;
      if (GoUnmarshalJsonpb(item.text, &request, &error) == GoJsonResult::kRefused) {
        return kj::READY_NOW;
      }
      Handle(request);
      return ReadOn();
    });
  }

  void Handle(const etcdserverpb::WatchRequest& request) {
    if (gone_) return;
    DispatchWatchRequest(
        request, [this](const etcdserverpb::WatchCreateRequest& create) { Create(create); },
        [this](int64_t watch_id) { Cancel(watch_id); }, [this]() { Progress(); });
  }

  void Create(const etcdserverpb::WatchCreateRequest& request) {
    Reap();
    const MemberStatusInfo info = member_.Status();
    member_id_ = info.id;
    term_ = info.term;
    // etcd's watch stream takes the next free id only for a watch it opens: a refused creation
    // leaves it for the next.
    int64_t local_id = request.watch_id();
    const bool auto_id = local_id == 0;
    bool in_use = false;
    if (auto_id) {
      while (watches_.count(next_id_) > 0) ++next_id_;
      local_id = next_id_;
    } else {
      in_use = watches_.count(local_id) > 0;
    }
    mvcc::WatchRequest converted;
    absl::Status valid = ToWatchRequest(request, &converted);
    if (valid.ok() && watches_.size() >= kMaxWatchersPerHttpStream) {
      valid = absl::ResourceExhaustedError(absl::StrCat("too many watchers on this stream (limit ",
                                                        kMaxWatchersPerHttpStream,
                                                        "); cancel some or open another stream"));
    }
    if (in_use || !valid.ok()) {
      // etcd answers a refused creation with watch id -1, created and canceled.
      etcdserverpb::WatchResponse refused;
      ToHeader(StreamHeader(info), member_.cluster_id(), refused.mutable_header());
      refused.set_watch_id(-1);
      refused.set_created(true);
      refused.set_canceled(true);
      refused.set_cancel_reason(in_use ? "mvcc: duplicate watch ID provided on the WatchStream"
                                       : std::string(valid.message()));
      EnqueueLocal(refused);
      return;
    }
    auto owned = std::make_unique<Watch>();
    Watch* watch = owned.get();
    watch->stream = this;
    watch->local_id = local_id;
    watches_[local_id] = std::move(owned);
    watch->member_open = true;  // responses may arrive before Watch returns
    absl::StatusOr<mvcc::WatchId> id = member_.Watch(converted, caller_, watch);
    if (id.ok()) {
      watch->member_id = *id;
      if (auto_id) next_id_ = local_id + 1;
      return;
    }
    watch->member_open = false;
    const MemberStatusInfo now = member_.Status();
    const RefusedWatch refused =
        RefusedWatchResponses(id.status(), now.revision, now.compact_revision);
    if (refused.one_response) {
      // Never opened (auth): one response with watch id -1, and nothing kept for the id.
      etcdserverpb::WatchResponse single;
      ToProto(refused.created, member_.cluster_id(), member_id_, term_, &single);
      single.set_watch_id(-1);
      EnqueueLocal(single);
      watches_.erase(local_id);
      return;
    }
    // A compacted start: etcd opens the watch (its id taken), then cancels it.
    if (auto_id) next_id_ = local_id + 1;
    Enqueue(watch, refused.created);
    Enqueue(watch, refused.canceled);
  }

  void Cancel(int64_t local_id) {
    Reap();
    auto it = watches_.find(local_id);
    if (it == watches_.end()) return;  // etcd ignores an unknown id
    Watch* watch = it->second.get();
    if (watch->member_open) {
      // The member delivers the canceled notice during CancelWatch.
      watch->member_open = false;
      watch->client_canceled = true;
      (void)member_.CancelWatch(watch->member_id);
    }
  }

  // etcd 3.4's answer to a WatchProgressRequest: one response for the whole stream (watch id
  // -1) at the member's current revision.
  void Progress() {
    const MemberStatusInfo info = member_.Status();
    etcdserverpb::WatchResponse progress;
    ToHeader(StreamHeader(info), member_.cluster_id(), progress.mutable_header());
    progress.set_watch_id(-1);
    EnqueueLocal(progress);
  }

  static server::ResponseHeader StreamHeader(const MemberStatusInfo& info) {
    server::ResponseHeader header;
    header.member_id = info.id;
    header.raft_term = info.term;
    header.revision = info.revision;
    return header;
  }

  // Forgets the watches that have ended and that the member no longer delivers to: a canceled
  // watch's id may be used again, as etcd's watch stream allows.
  void Reap() {
    for (auto it = watches_.begin(); it != watches_.end();) {
      if (it->second->ended && !it->second->member_open) {
        it = watches_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Enqueue(Watch* watch, const mvcc::WatchResponse& response) {
    if (watch->ended || gone_) return;
    etcdserverpb::WatchResponse converted;
    ToProto(response, member_.cluster_id(), member_id_, term_, &converted);
    converted.set_watch_id(watch->local_id);
    Line line;
    line.local_id = watch->local_id;
    if (response.canceled) {
      watch->member_open = false;
      watch->ended = true;
      // etcd's notice of a cancel the client asked for gives no reason.
      if (watch->client_canceled) converted.clear_cancel_reason();
    } else if (queue_.size() >= kWatchQueueLimitResponses) {
      // etcd cancels a watcher that cannot keep up rather than buffer without bound.
      watch->ended = true;
      line.cancel_member_watch = true;
      ToSlowWatcherCancel(queue_.size(), kWatchQueueLimitResponses, &converted);
    }
    line.text = ResultLine(converted);
    queue_.push_back(std::move(line));
    Pump();
  }

  void EnqueueLocal(const etcdserverpb::WatchResponse& response) {
    Line line;
    line.text = ResultLine(response);
    queue_.push_back(std::move(line));
    Pump();
  }

  void Pump() {
    if (writing_ || gone_) return;
    if (queue_.empty()) {
      if (drained_.get() != nullptr && drained_->isWaiting()) drained_->fulfill();
      return;
    }
    if (out_.get() == nullptr) {
      kj::HttpHeaders headers(table_);
      headers.set(kj::HttpHeaderId::CONTENT_TYPE, "application/json");
      headers.add("Grpc-Metadata-Content-Type", "application/grpc");
      out_ = response_.send(200, "OK", headers);
    }
    writing_ = true;
    auto line = kj::heap<Line>(std::move(queue_.front()));
    queue_.pop_front();
    auto write = out_->write(line->text.data(), line->text.size());
    tasks_.add(write.then([this, line = kj::mv(line)]() {
      writing_ = false;
      if (line->cancel_member_watch) {
        auto it = watches_.find(line->local_id);
        if (it != watches_.end() && it->second->member_open) {
          it->second->member_open = false;
          (void)member_.CancelWatch(it->second->member_id);
        }
      }
      Pump();
    }));
  }

  // A write failed: the client went away.
  void taskFailed(kj::Exception&&) override { ClientGone(); }

  void ClientGone() {
    if (gone_) return;
    gone_ = true;
    queue_.clear();
    CancelAll();
    if (drained_.get() != nullptr && drained_->isWaiting()) drained_->fulfill();
    if (done_fulfiller_->isWaiting()) done_fulfiller_->fulfill();
  }

  void CancelAll() {
    for (auto& [local_id, watch] : watches_) {
      if (watch->member_open) {
        watch->member_open = false;
        watch->ended = true;
        (void)member_.CancelWatch(watch->member_id);
      }
    }
  }

  MemberService& member_;
  const kj::HttpHeaderTable& table_;
  Response& response_;
  const WatchCaller caller_;
  kj::Own<BodyValues> values_;
  // The member and term the stream's responses report, as of the latest creation.
  raft::NodeId member_id_ = 0;
  raft::Term term_ = 0;
  int64_t next_id_ = 0;
  std::map<int64_t, std::unique_ptr<Watch>> watches_;
  std::deque<Line> queue_;
  bool writing_ = false;
  bool gone_ = false;
  kj::Own<kj::AsyncOutputStream> out_;  // null until the first line
  kj::Own<kj::PromiseFulfiller<void>> drained_;
  kj::Promise<void> done_ = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> done_fulfiller_;
  kj::TaskSet tasks_;  // last: dropped first
};

}  // namespace

kj::Promise<void> Gateway::Impl::Watch(kj::AsyncInputStream& body, Response& response) {
  auto values = kj::heap<BodyValues>(body, g_.max_body_bytes_);
  BodyValues& first = *values;
  return first.Next().then(
      [this, &response, values = kj::mv(values)](StreamItem item) mutable -> kj::Promise<void> {
        if (item.kind == StreamItem::kEnd) {
          // etcd answers nothing: the gRPC stream is open and has said nothing.
          return kj::NEVER_DONE;
        }
        etcdserverpb::WatchRequest request;
        std::string parsed;
        if (item.kind != StreamItem::kValue ||
            GoUnmarshalJsonpb(item.text, &request, &parsed) == GoJsonResult::kRefused) {
          return RefuseFirstValue(response, item, parsed);
        }
        auto stream = kj::heap<HttpWatchStream>(g_.member_, g_.headers_, response,
                                                WatchCaller{token_, cert_user_}, kj::mv(values));
        auto ran = stream->Run(request);
        return ran.attach(kj::mv(stream));
      });
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
  if (api == "/watch") return impl->Watch(body, response).attach(kj::mv(impl));
  if (api == "/lease/keepalive") return impl->KeepAlive(body, response).attach(kj::mv(impl));
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
