// Fuzzes etcd's v3 requests as kvnode's gRPC services decode them (net/etcd/service.cc): the
// first input byte picks the request message, the rest is its binary protobuf, parsed as gRPC's
// protobuf codec does (ParseFromArray) and, when that succeeds, converted with the functions the
// services call (net/etcd/convert.h: ToRequest, ToWatchRequest).
//
// Properties: no crash, no unbounded recursion (protobuf's parser stops at its nesting limit,
// ToRequest refuses txns deeper than server::kMaxTxnDepth), no allocation past the fuzz bounds.
// Conversion errors are answers, not findings.

#include <cstddef>
#include <cstdint>

#include "core/mvcc/watch.h"
#include "core/server/server.h"
#include "google/protobuf/stubs/logging.h"
#include "net/etcd/convert.h"
#include "net/etcd/rpc.pb.h"

namespace {

namespace pb = etcdserverpb;
using kvstore::net::etcd::ToRequest;
using kvstore::net::etcd::ToWatchRequest;

template <typename Req>
void Convert(const uint8_t* data, size_t size) {
  Req request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;
  kvstore::server::Request converted;
  (void)ToRequest(request, &converted);
}

// The Watch stream's requests: a creation is converted; a cancel or progress request carries
// only a watch id, which the stream looks up.
void ConvertWatch(const uint8_t* data, size_t size) {
  pb::WatchRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;
  if (request.has_create_request()) {
    kvstore::mvcc::WatchRequest converted;
    (void)ToWatchRequest(request.create_request(), &converted);
  }
}

using Decoder = void (*)(const uint8_t*, size_t);

// Every request message convert.h converts, in rpc.proto's order.
constexpr Decoder kDecoders[] = {
    Convert<pb::RangeRequest>,
    Convert<pb::PutRequest>,
    Convert<pb::DeleteRangeRequest>,
    Convert<pb::TxnRequest>,
    Convert<pb::CompactionRequest>,
    Convert<pb::HashRequest>,
    Convert<pb::HashKVRequest>,
    ConvertWatch,
    Convert<pb::LeaseGrantRequest>,
    Convert<pb::LeaseRevokeRequest>,
    Convert<pb::LeaseKeepAliveRequest>,
    Convert<pb::LeaseTimeToLiveRequest>,
    Convert<pb::LeaseLeasesRequest>,
    Convert<pb::MemberAddRequest>,
    Convert<pb::MemberRemoveRequest>,
    Convert<pb::MemberUpdateRequest>,
    Convert<pb::MemberListRequest>,
    Convert<pb::MemberPromoteRequest>,
    Convert<pb::DefragmentRequest>,
    Convert<pb::MoveLeaderRequest>,
    Convert<pb::AlarmRequest>,
    Convert<pb::AuthEnableRequest>,
    Convert<pb::AuthDisableRequest>,
    Convert<pb::AuthenticateRequest>,
    Convert<pb::AuthUserAddRequest>,
    Convert<pb::AuthUserGetRequest>,
    Convert<pb::AuthUserDeleteRequest>,
    Convert<pb::AuthUserChangePasswordRequest>,
    Convert<pb::AuthUserGrantRoleRequest>,
    Convert<pb::AuthUserRevokeRoleRequest>,
    Convert<pb::AuthRoleAddRequest>,
    Convert<pb::AuthRoleGetRequest>,
    Convert<pb::AuthUserListRequest>,
    Convert<pb::AuthRoleListRequest>,
    Convert<pb::AuthRoleDeleteRequest>,
    Convert<pb::AuthRoleGrantPermissionRequest>,
    Convert<pb::AuthRoleRevokePermissionRequest>,
};
constexpr size_t kDecoderCount = sizeof(kDecoders) / sizeof(kDecoders[0]);

}  // namespace

// Protobuf logs every invalid UTF-8 string it meets; at thousands of inputs a second that is
// most of the time spent.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // gRPC's default receive limit is 4 MiB; kvnode's request limit is lower still.
  if (size < 1 || size > (1 << 20)) return 0;
  kDecoders[data[0] % kDecoderCount](data + 1, size - 1);
  return 0;
}
