#ifndef KVSTORE_NET_ETCD_CONVERT_H_
#define KVSTORE_NET_ETCD_CONVERT_H_

// The one place where etcd's v3 API (net/etcd/rpc.proto, protobuf) meets the core's structs:
// requests in, responses and errors out. The gRPC services (service.h) and the JSON gateway
// (gateway.h) convert only through these functions, so both protocols answer alike.
//
// Requests are validated while converted: enums out of range and transactions nested deeper
// than server::kMaxTxnDepth are refused with INVALID_ARGUMENT before they reach the member, but
// where etcd 3.4.23 takes a number its enum does not name: a range's unknown sort order reads
// in key order (as etcd's applier, which sorts only for ASCEND and DESCEND), an alarm request
// takes any alarm type. (The JSON gateway reads its bodies with go_json.h before converting.)
// Sizes the core limits by configuration (key, value, request bytes, txn ops) are left to the
// core.
//
// Errors carry etcd's gRPC codes and exact messages (etcd's rpctypes, "etcdserver: ..."), so
// etcdctl and etcd's client libraries recognise them: ErrCompacted, ErrLeaseNotFound, ErrNoSpace
// and the rest. A core code without an etcd counterpart keeps the core's message.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/mvcc/types.h"
#include "core/mvcc/watch.h"
#include "core/server/server.h"
#include "grpcpp/support/status.h"
#include "net/etcd/rpc.pb.h"
#include "net/member_service.h"

namespace kvstore::net::etcd {

// The version Maintenance.Status reports: the etcd API level kvnode speaks. Clients use it to
// decide which features the server has (etcd's own clients check it), so it names etcd's.
inline constexpr char kApiVersion[] = "3.4.23";

// What a call carries as its token when the caller sent an empty one (a "token" metadata or an
// Authorization header with no value). etcd's AuthInfoFromCtx looks an empty token up like any
// other and refuses it ("etcdserver: invalid auth token"), while an empty Request::token means
// "no token": this is a token no member issues, so the core refuses it the same way.
inline constexpr char kEmptyTokenSent[] = " ";

// --- Errors ---------------------------------------------------------------------------------

// A core status as etcd's gRPC error (code and message). OK stays OK.
grpc::Status ToGrpcStatus(const absl::Status& status);
// The gRPC code as an integer and the message: what the JSON gateway answers with.
struct GatewayError {
  int grpc_code = 0;
  std::string message;
  int http_status = 200;  // grpc-gateway's mapping of the gRPC code
};
// MoveLeader's error: etcd refuses a transferee that is not a voting member with
// ErrBadLeaderTransferee, where the core says the member is not found.
grpc::Status ToMoveLeaderStatus(const absl::Status& status);
// The error of etcd's Maintenance.Alarm and of its authMaintenanceServer's admin check
// (Snapshot, Defragment, Hash, HashKV): etcd returns the auth store's error unconverted, so a
// refused token or user is
// gRPC code Unknown with the auth package's text ("auth: permission denied"). Other refusals as
// ToGrpcStatus.
grpc::Status ToRawAuthStatus(const absl::Status& status);
// `to_grpc`: the method's own mapping of core errors to etcd's (ToMoveLeaderStatus for
// MoveLeader), the same for both protocols.
GatewayError ToGatewayError(const absl::Status& status,
                            grpc::Status (*to_grpc)(const absl::Status&) = ToGrpcStatus);

// --- Requests -------------------------------------------------------------------------------

absl::Status ToRequest(const etcdserverpb::RangeRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::PutRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::DeleteRangeRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::TxnRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::CompactionRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::LeaseGrantRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::LeaseRevokeRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::LeaseKeepAliveRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::LeaseTimeToLiveRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::LeaseLeasesRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::MemberAddRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::MemberRemoveRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::MemberListRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::MemberUpdateRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::MemberPromoteRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AlarmRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::DefragmentRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::HashKVRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::HashRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::MoveLeaderRequest& in, server::Request* out);
// A watch creation (the stream-local watch id and progress_notify are the stream's business).
// An empty key range (key >= range_end) is refused with etcd's "mvcc: watcher range is empty".
absl::Status ToWatchRequest(const etcdserverpb::WatchCreateRequest& in, mvcc::WatchRequest* out);

// Auth (etcd's Auth service). A password's salt comes from the caller (net/entropy.h).
absl::Status ToRequest(const etcdserverpb::AuthEnableRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthDisableRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthenticateRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthUserAddRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthUserGetRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthUserListRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthUserDeleteRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthUserChangePasswordRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthUserGrantRoleRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthUserRevokeRoleRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthRoleAddRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthRoleGetRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthRoleListRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthRoleDeleteRequest& in, server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthRoleGrantPermissionRequest& in,
                       server::Request* out);
absl::Status ToRequest(const etcdserverpb::AuthRoleRevokePermissionRequest& in,
                       server::Request* out);

// --- Responses ------------------------------------------------------------------------------
// Each fills the header (with `cluster_id`) and the method's fields from an OK response.

void ToHeader(const server::ResponseHeader& in, uint64_t cluster_id,
              etcdserverpb::ResponseHeader* out);
void ToProto(const mvcc::KeyValue& in, mvccpb::KeyValue* out);
void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::RangeResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::PutResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::DeleteRangeResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::TxnResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::CompactionResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseGrantResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseRevokeResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseKeepAliveResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseTimeToLiveResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseLeasesResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::MemberAddResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MemberRemoveResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MemberListResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MemberUpdateResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MemberPromoteResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::AlarmResponse* out);
// etcd's applier answers an AlarmRequest from its alarm store: a GET with the alarms of the
// request's type (alarmStore.Get, every alarm for NONE), an ACTIVATE with the alarm it raised,
// a DEACTIVATE with the alarm it deactivated (of the request's member and type; none if that one
// was not active). The core
// lists every alarm, and answers a disarm with the alarms left: `alarms`, the conversion of the
// core's list (for a DEACTIVATE, as it was before the disarm), keeps the ones etcd answers with.
void KeepAnsweredAlarms(const etcdserverpb::AlarmRequest& request,
                        etcdserverpb::AlarmResponse* alarms);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::DefragmentResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::HashKVResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::HashResponse* out);
void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MoveLeaderResponse* out);
void ToProto(const MemberStatusInfo& in, uint64_t cluster_id, etcdserverpb::StatusResponse* out);
void ToProto(const mvcc::WatchResponse& in, uint64_t cluster_id, raft::NodeId member_id,
             raft::Term term, etcdserverpb::WatchResponse* out);
// etcd's answer to a watch the member refused to open. When the start revision was compacted,
// the watcher is created, then canceled with the compaction revision (two responses). Any other
// refusal (auth) is etcd 3.4.23's isWatchPermitted answer: one response, `created` only, both
// created and canceled, sent with watch id -1, its reason the gRPC error's Go text
// ("rpc error: code = PermissionDenied desc = etcdserver: permission denied").
// `revision` is the member's current revision, `compact_revision` its compaction revision.
struct RefusedWatch {
  mvcc::WatchResponse created;
  mvcc::WatchResponse canceled;
  bool one_response = false;  // send `created` alone, with watch id -1
};
// Go's grpc status error text for `status` as etcd's clients see it: "rpc error: code = <Code>
// desc = <etcd's message>".
std::string GoRpcErrorText(const absl::Status& status);
RefusedWatch RefusedWatchResponses(const absl::Status& refused, int64_t revision,
                                   int64_t compact_revision);
// Turns `response` into the cancel notice of a watcher that did not read fast enough (etcd
// cancels a slow watcher rather than buffer without bound): no events, and a reason naming the
// responses waiting and the limit.
void ToSlowWatcherCancel(size_t waiting_responses, size_t limit_responses,
                         etcdserverpb::WatchResponse* response);

// Auth responses: the header, and the token, roles, users or permissions asked for.
template <typename Resp>
void ToAuthProto(const server::Response& in, uint64_t cluster_id, Resp* out);

// Lease answers as etcd gives them, for both protocols. TimeToLive: a lease that does not exist
// is TTL -1 (etcdctl: "already expired"), not an error; keys only when asked for. KeepAlive: a
// lease that does not exist is TTL 0 (etcdctl: "expired or revoked"). Other errors are returned.
absl::Status ToTimeToLiveResponse(const etcdserverpb::LeaseTimeToLiveRequest& request,
                                  server::Response answer, uint64_t cluster_id,
                                  etcdserverpb::LeaseTimeToLiveResponse* out);
absl::Status ToKeepAliveResponse(int64_t lease_id, server::Response answer, uint64_t cluster_id,
                                 etcdserverpb::LeaseKeepAliveResponse* out);

// etcd's snapshot stream (Maintenance.Snapshot, and its gateway's lines): the copy's bytes, then
// their SHA-256 (etcdctl's snapshot save refuses a stream without it; snapshot restore checks
// it), in blobs of chunk_bytes, each with `header` and the bytes remaining after it. The copy is
// read and hashed a chunk at a time.
class SnapshotChunks {
 public:
  SnapshotChunks(std::shared_ptr<SnapshotCopy> copy, size_t chunk_bytes,
                 const server::ResponseHeader& header, uint64_t cluster_id);
  ~SnapshotChunks();
  SnapshotChunks(const SnapshotChunks&) = delete;
  SnapshotChunks& operator=(const SnapshotChunks&) = delete;

  // The next response into *out: false once the stream has ended, an error when the copy cannot
  // be read.
  absl::StatusOr<bool> Next(etcdserverpb::SnapshotResponse* out);

 private:
  struct Hasher;
  const std::shared_ptr<SnapshotCopy> copy_;
  const size_t chunk_bytes_;
  const server::ResponseHeader header_;
  const uint64_t cluster_id_;
  const uint64_t total_;  // the copy's bytes and the digest's
  uint64_t offset_ = 0;
  std::unique_ptr<Hasher> hasher_;
  std::string digest_;  // once every byte of the copy is hashed
};

}  // namespace kvstore::net::etcd

#endif  // KVSTORE_NET_ETCD_CONVERT_H_
