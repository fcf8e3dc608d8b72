// Fuzzes the JSON gateway's request bodies (net/etcd/gateway.cc): the first input byte picks a
// /v3/* endpoint, the rest is its body, parsed as the gateway parses it (ParseGatewayJson:
// protobuf's JSON mapping, unknown fields refused) and, when that succeeds, converted as the
// endpoint converts it (net/etcd/convert.h: ToRequest; /v3/watch's create_request with
// ToWatchRequest).
//
// Properties: no crash, no unbounded recursion (protobuf's JSON parser stops at its nesting
// limit, ToRequest refuses txns deeper than server::kMaxTxnDepth), no allocation past the fuzz
// bounds; a refused body answers as the gateway does: HTTP 400, gRPC INVALID_ARGUMENT,
// "malformed JSON request: ...". Conversion errors are answers, not findings.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "core/mvcc/watch.h"
#include "core/server/server.h"
#include "google/protobuf/stubs/logging.h"
#include "net/etcd/convert.h"
#include "net/etcd/rpc.pb.h"
#include "tools/fuzz/fuzz_util.h"

namespace {

namespace pb = etcdserverpb;
using kvstore::net::etcd::GatewayError;
using kvstore::net::etcd::ParseGatewayJson;
using kvstore::net::etcd::ToGatewayError;
using kvstore::net::etcd::ToRequest;
using kvstore::net::etcd::ToWatchRequest;

bool Parse(absl::string_view body, google::protobuf::Message* request) {
  const absl::Status parsed = ParseGatewayJson(body, request);
  if (parsed.ok()) return true;
  // What the client gets: 400 with gRPC's INVALID_ARGUMENT (3) and the gateway's message.
  const GatewayError error = ToGatewayError(parsed);
  FUZZ_CHECK(error.grpc_code == 3 && error.http_status == 400 &&
                 absl::StrContains(error.message, "malformed JSON request: "),
             "a refused body answers %d (gRPC %d) \"%s\", not 400 INVALID_ARGUMENT",
             error.http_status, error.grpc_code, error.message.c_str());
  return false;
}

template <typename Req>
void Convert(absl::string_view body) {
  Req request;
  if (!Parse(body, &request)) return;
  kvstore::server::Request converted;
  (void)ToRequest(request, &converted);
}

// /v3/watch: one WatchRequest whose create_request opens the stream's watch.
void ConvertWatch(absl::string_view body) {
  pb::WatchRequest request;
  if (!Parse(body, &request) || !request.has_create_request()) return;
  kvstore::mvcc::WatchRequest converted;
  (void)ToWatchRequest(request.create_request(), &converted);
}

using Decoder = void (*)(absl::string_view);

// The request type of every /v3/* endpoint that has a body (Gateway::Impl::Dispatch's order;
// /v3/maintenance/status and /snapshot read none).
constexpr Decoder kDecoders[] = {
    Convert<pb::RangeRequest>,            // /kv/range
    Convert<pb::PutRequest>,              // /kv/put
    Convert<pb::DeleteRangeRequest>,      // /kv/deleterange
    Convert<pb::TxnRequest>,              // /kv/txn
    Convert<pb::CompactionRequest>,       // /kv/compaction
    ConvertWatch,                         // /watch
    Convert<pb::LeaseGrantRequest>,       // /lease/grant
    Convert<pb::LeaseRevokeRequest>,      // /lease/revoke
    Convert<pb::LeaseKeepAliveRequest>,   // /lease/keepalive
    Convert<pb::LeaseTimeToLiveRequest>,  // /lease/timetolive
    Convert<pb::LeaseLeasesRequest>,      // /lease/leases
    Convert<pb::MemberAddRequest>,        // /cluster/member/add
    Convert<pb::MemberRemoveRequest>,     // /cluster/member/remove
    Convert<pb::MemberListRequest>,       // /cluster/member/list
    Convert<pb::MemberPromoteRequest>,    // /cluster/member/promote
    Convert<pb::AlarmRequest>,            // /maintenance/alarm
    Convert<pb::DefragmentRequest>,       // /maintenance/defragment
    Convert<pb::HashKVRequest>,           // /maintenance/hash
    Convert<pb::MoveLeaderRequest>,       // /maintenance/transfer-leadership
};
constexpr size_t kDecoderCount = sizeof(kDecoders) / sizeof(kDecoders[0]);

}  // namespace

// Protobuf logs what its JSON parser refuses; at thousands of inputs a second that is most of
// the time spent.
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
