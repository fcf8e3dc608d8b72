// Fuzzes the JSON gateway's request bodies (net/etcd/gateway.cc) as the gateway reads them now:
// the first input byte picks a /v3/* endpoint, the rest is its body, decoded by the port of Go's
// json.Decoder and golang/protobuf's jsonpb (net/etcd/go_json.h: GoDecodeRequest for a unary
// call; GoUnmarshalJsonpb for one value of the /v3/watch and /v3/lease/keepalive streams, which
// the gateway's JsonValueSplitter cuts out of the body first) and, when that succeeds, converted
// as the endpoint converts it (net/etcd/convert.h: ToRequest; /v3/watch's create_request with
// ToWatchRequest, through DispatchWatchRequest as the stream does).
//
// Properties: no crash, no unbounded recursion (the decoder stops at Go's max depth, ToRequest
// refuses txns deeper than server::kMaxTxnDepth), no allocation past the fuzz bounds; a refused
// body names Go's reason (the gateway answers 400 / InvalidArgument with it), an accepted one
// carries none; a decoded request is a fixed point: printed with protobuf's JSON mapping (what
// etcd's gateway writes) and decoded again, it is the same message (so every string field holds
// valid UTF-8, as Go's decoder guarantees, or the printer refuses it). Conversion errors are
// answers, not findings.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "core/mvcc/watch.h"
#include "core/server/server.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "net/etcd/convert.h"
#include "net/etcd/go_json.h"
#include "net/etcd/rpc.pb.h"
#include "net/etcd/watch_request.h"
#include "tools/fuzz/fuzz_util.h"

namespace {

namespace pb = etcdserverpb;
using kvstore::net::etcd::DispatchWatchRequest;
using kvstore::net::etcd::GoDecodeRequest;
using kvstore::net::etcd::GoJsonResult;
using kvstore::net::etcd::GoUnmarshalJsonpb;
using kvstore::net::etcd::ToRequest;
using kvstore::net::etcd::ToWatchRequest;

enum class Reading {
  kUnary,        // the whole body: GoDecodeRequest
  kStreamValue,  // one value of a request stream: GoUnmarshalJsonpb
};

// `request` decoded from `body` as the gateway reads it; true when the gateway goes on with it
// (kPanics drops the connection, as etcd's gateway panics marshaling such a request).
bool Decode(Reading reading, absl::string_view body, google::protobuf::Message* request) {
  std::string error;
  const GoJsonResult result = reading == Reading::kUnary ? GoDecodeRequest(body, request, &error)
                                                         : GoUnmarshalJsonpb(body, request, &error);
  if (result == GoJsonResult::kRefused) {
    FUZZ_CHECK(!error.empty(), "a refused %s body carries no reason",
               request->GetDescriptor()->name().c_str());
    return false;
  }
  FUZZ_CHECK(error.empty(), "an accepted %s body carries the error \"%s\"",
             request->GetDescriptor()->name().c_str(), error.c_str());
  if (result == GoJsonResult::kPanics) return false;

  // Fixed point: protobuf's JSON printing of the decoded request reads back as the same request.
  std::string json;
  const auto printed = google::protobuf::util::MessageToJsonString(*request, &json);
  FUZZ_CHECK(printed.ok(), "a decoded %s does not print as JSON: %s",
             request->GetDescriptor()->name().c_str(), std::string(printed.message()).c_str());
  std::unique_ptr<google::protobuf::Message> again(request->New());
  std::string again_error;
  const GoJsonResult reread = GoDecodeRequest(json, again.get(), &again_error);
  FUZZ_CHECK(reread == GoJsonResult::kOk, "the printing of a decoded %s, %s, is refused: %s",
             request->GetDescriptor()->name().c_str(), json.c_str(), again_error.c_str());
  FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(*request, *again),
             "a decoded %s printed as %s reads back as %s",
             request->GetDescriptor()->name().c_str(), json.c_str(),
             again->ShortDebugString().c_str());
  return true;
}

template <typename Req, Reading kReading = Reading::kUnary>
void Convert(absl::string_view body) {
  Req request;
  if (!Decode(kReading, body, &request)) return;
  kvstore::server::Request converted;
  (void)ToRequest(request, &converted);
}

// A body the gateway reads but converts with nothing of convert.h (/v3/maintenance/status and
// /snapshot).
template <typename Req>
void DecodeOnly(absl::string_view body) {
  Req request;
  (void)Decode(Reading::kUnary, body, &request);
}

// /v3/watch: one value of the stream, handled as HttpWatchStream::Handle does; a creation is
// converted (a cancel or progress request carries only a watch id, which the stream looks up).
void ConvertWatch(absl::string_view body) {
  pb::WatchRequest request;
  if (!Decode(Reading::kStreamValue, body, &request)) return;
  DispatchWatchRequest(
      request,
      [](const pb::WatchCreateRequest& create) {
        kvstore::mvcc::WatchRequest converted;
        (void)ToWatchRequest(create, &converted);
      },
      [](int64_t) {}, []() {});
}

using Decoder = void (*)(absl::string_view);

// The request type of every /v3/* endpoint (Gateway::Impl::Dispatch and DispatchAuth). The first
// 19 keep the indices the seeds were written with; the others follow.
constexpr Decoder kDecoders[] = {
    Convert<pb::RangeRequest>,                                  // 0 /kv/range
    Convert<pb::PutRequest>,                                    // 1 /kv/put
    Convert<pb::DeleteRangeRequest>,                            // 2 /kv/deleterange
    Convert<pb::TxnRequest>,                                    // 3 /kv/txn
    Convert<pb::CompactionRequest>,                             // 4 /kv/compaction
    ConvertWatch,                                               // 5 /watch (one value)
    Convert<pb::LeaseGrantRequest>,                             // 6 /lease/grant
    Convert<pb::LeaseRevokeRequest>,                            // 7 /lease/revoke
    Convert<pb::LeaseKeepAliveRequest, Reading::kStreamValue>,  // 8 /lease/keepalive (one value)
    Convert<pb::LeaseTimeToLiveRequest>,                        // 9 /lease/timetolive
    Convert<pb::LeaseLeasesRequest>,                            // 10 /lease/leases
    Convert<pb::MemberAddRequest>,                              // 11 /cluster/member/add
    Convert<pb::MemberRemoveRequest>,                           // 12 /cluster/member/remove
    Convert<pb::MemberListRequest>,                             // 13 /cluster/member/list
    Convert<pb::MemberPromoteRequest>,                          // 14 /cluster/member/promote
    Convert<pb::AlarmRequest>,                                  // 15 /maintenance/alarm
    Convert<pb::DefragmentRequest>,                             // 16 /maintenance/defragment
    Convert<pb::HashRequest>,                                   // 17 /maintenance/hash
    Convert<pb::MoveLeaderRequest>,                             // 18 /transfer-leadership
    Convert<pb::MemberUpdateRequest>,                           // 19 /cluster/member/update
    DecodeOnly<pb::StatusRequest>,                              // 20 /maintenance/status
    DecodeOnly<pb::SnapshotRequest>,                            // 21 /maintenance/snapshot
    Convert<pb::AuthEnableRequest>,                             // 22 /auth/enable
    Convert<pb::AuthDisableRequest>,                            // 23 /auth/disable
    Convert<pb::AuthenticateRequest>,                           // 24 /auth/authenticate
    Convert<pb::AuthUserAddRequest>,                            // 25 /auth/user/add
    Convert<pb::AuthUserGetRequest>,                            // 26 /auth/user/get
    Convert<pb::AuthUserListRequest>,                           // 27 /auth/user/list
    Convert<pb::AuthUserDeleteRequest>,                         // 28 /auth/user/delete
    Convert<pb::AuthUserChangePasswordRequest>,                 // 29 /auth/user/changepw
    Convert<pb::AuthUserGrantRoleRequest>,                      // 30 /auth/user/grant
    Convert<pb::AuthUserRevokeRoleRequest>,                     // 31 /auth/user/revoke
    Convert<pb::AuthRoleAddRequest>,                            // 32 /auth/role/add
    Convert<pb::AuthRoleGetRequest>,                            // 33 /auth/role/get
    Convert<pb::AuthRoleListRequest>,                           // 34 /auth/role/list
    Convert<pb::AuthRoleDeleteRequest>,                         // 35 /auth/role/delete
    Convert<pb::AuthRoleGrantPermissionRequest>,                // 36 /auth/role/grant
    Convert<pb::AuthRoleRevokePermissionRequest>,               // 37 /auth/role/revoke
};
constexpr size_t kDecoderCount = sizeof(kDecoders) / sizeof(kDecoders[0]);

}  // namespace

// Protobuf logs what its JSON printer refuses; keep a finding's output to the check's message.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The gateway reads bodies up to the request limit plus 512 KiB.
  if (size < 1 || size > (1 << 20)) return 0;
  const absl::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  kDecoders[data[0] % kDecoderCount](body);
  return 0;
}
