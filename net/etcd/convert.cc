#include "net/etcd/convert.h"

#include <algorithm>
#include <iterator>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/server/codec.h"
#include "openssl/evp.h"
#include "openssl/sha.h"

namespace kvstore::net::etcd {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RequestOp;

// etcd's rpctypes: the gRPC code and exact message etcd answers each error with.
struct EtcdError {
  ErrorCode code;
  grpc::StatusCode grpc_code;
  const char* message;  // nullptr: keep the core's message
};

constexpr EtcdError kErrors[] = {
    {ErrorCode::kEmptyKey, grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: key is not provided"},
    {ErrorCode::kKeyTooLarge, grpc::StatusCode::INVALID_ARGUMENT,
     "etcdserver: request is too large"},
    {ErrorCode::kValueTooLarge, grpc::StatusCode::INVALID_ARGUMENT,
     "etcdserver: request is too large"},
    {ErrorCode::kRequestTooLarge, grpc::StatusCode::INVALID_ARGUMENT,
     "etcdserver: request is too large"},
    {ErrorCode::kTooManyOps, grpc::StatusCode::INVALID_ARGUMENT,
     "etcdserver: too many operations in txn request"},
    {ErrorCode::kDuplicateKey, grpc::StatusCode::INVALID_ARGUMENT,
     "etcdserver: duplicate key given in txn request"},
    {ErrorCode::kLeaseNotFound, grpc::StatusCode::NOT_FOUND,
     "etcdserver: requested lease not found"},
    {ErrorCode::kLeaseExists, grpc::StatusCode::FAILED_PRECONDITION,
     "etcdserver: lease already exists"},
    {ErrorCode::kLeaseTtlTooLarge, grpc::StatusCode::OUT_OF_RANGE,
     "etcdserver: too large lease TTL"},
    {ErrorCode::kCompacted, grpc::StatusCode::OUT_OF_RANGE,
     "etcdserver: mvcc: required revision has been compacted"},
    {ErrorCode::kFutureRevision, grpc::StatusCode::OUT_OF_RANGE,
     "etcdserver: mvcc: required revision is a future revision"},
    {ErrorCode::kKeyNotFound, grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: key not found"},
    {ErrorCode::kNoLeader, grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader"},
    {ErrorCode::kNotLeader, grpc::StatusCode::FAILED_PRECONDITION, "etcdserver: not leader"},
    {ErrorCode::kLearnerNotReady, grpc::StatusCode::FAILED_PRECONDITION,
     "etcdserver: can only promote a learner member which is in sync with leader"},
    {ErrorCode::kTooManyLearners, grpc::StatusCode::FAILED_PRECONDITION,
     "etcdserver: too many learner members in cluster"},
    {ErrorCode::kMemberNotFound, grpc::StatusCode::NOT_FOUND, "etcdserver: member not found"},
    {ErrorCode::kMemberExists, grpc::StatusCode::FAILED_PRECONDITION,
     "etcdserver: Peer URLs already exists"},
    {ErrorCode::kNoSpace, grpc::StatusCode::RESOURCE_EXHAUSTED,
     "etcdserver: mvcc: database space exceeded"},
    {ErrorCode::kTimeout, grpc::StatusCode::UNAVAILABLE, "etcdserver: request timed out"},
    {ErrorCode::kLeadershipChanged, grpc::StatusCode::UNAVAILABLE, "etcdserver: leader changed"},
    {ErrorCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT, nullptr},
    {ErrorCode::kWatchNotFound, grpc::StatusCode::NOT_FOUND, nullptr},
    {ErrorCode::kConfChangePending, grpc::StatusCode::FAILED_PRECONDITION, nullptr},
    {ErrorCode::kLearnerNotPromotable, grpc::StatusCode::FAILED_PRECONDITION,
     "etcdserver: can only promote a learner member"},
    {ErrorCode::kStopped, grpc::StatusCode::UNAVAILABLE, "etcdserver: server stopped"},
    {ErrorCode::kTooManyRequests, grpc::StatusCode::RESOURCE_EXHAUSTED,
     "etcdserver: too many requests"},
    // etcd 3.4 has no gRPC error for ErrTimeoutLeaderTransfer (rpctypes lacks one and v3rpc's
    // toGRPCErrorMap has no entry), so togRPCError answers codes.Unknown with its text.
    {ErrorCode::kLeaderTransferTimeout, grpc::StatusCode::UNKNOWN,
     "etcdserver: request timed out, leader transfer took too long"},
    {ErrorCode::kValueProvided, grpc::StatusCode::INVALID_ARGUMENT,
     "etcdserver: value is provided"},
    {ErrorCode::kLeaseProvided, grpc::StatusCode::INVALID_ARGUMENT,
     "etcdserver: lease is provided"},
};

// grpc-gateway's HTTP status for a gRPC code (runtime.HTTPStatusFromCode).
int HttpStatusOf(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 408;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 412;  // grpc-gateway v1 (etcd 3.4's): "user name not found" answers 412
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    default:
      return 500;
  }
}

absl::Status Malformed(absl::string_view what) {
  return Error(ErrorCode::kInvalidArgument, absl::StrCat("malformed request: ", what));
}

absl::Status ConvertRange(const RangeRequest& in, mvcc::RangeRequest* out) {
  if (RangeRequest::SortOrder_IsValid(in.sort_order())) {
    // etcd 3.4.23 crashes sorting by a target it does not know (a nil sorter; NONE sorts too
    // when the target is not KEY): refused here instead.
    if (!RangeRequest::SortTarget_IsValid(in.sort_target())) {
      return Malformed(absl::StrCat("sort target ", in.sort_target()));
    }
    out->sort_order = static_cast<mvcc::SortOrder>(in.sort_order());
    out->sort_target = static_cast<mvcc::SortTarget>(in.sort_target());
  } else {
    // An order etcd does not know: its applier sorts only for ASCEND and DESCEND (and turns only
    // NONE into ASCEND), so the keys come in key order whatever the target, all of them read
    // before the limit cuts them (the same answer as no sort).
    out->sort_order = mvcc::SortOrder::kNone;
    out->sort_target = mvcc::SortTarget::kKey;
  }
  out->key = in.key();
  out->range_end = in.range_end();
  out->limit = in.limit();
  out->revision = in.revision();
  out->serializable = in.serializable();
  out->keys_only = in.keys_only();
  out->count_only = in.count_only();
  out->min_mod_revision = in.min_mod_revision();
  out->max_mod_revision = in.max_mod_revision();
  out->min_create_revision = in.min_create_revision();
  out->max_create_revision = in.max_create_revision();
  return absl::OkStatus();
}

void ConvertPut(const etcdserverpb::PutRequest& in, mvcc::PutRequest* out) {
  out->key = in.key();
  out->value = in.value();
  out->lease = in.lease();
  out->prev_kv = in.prev_kv();
  out->ignore_value = in.ignore_value();
  out->ignore_lease = in.ignore_lease();
}

void ConvertDelete(const etcdserverpb::DeleteRangeRequest& in, mvcc::DeleteRangeRequest* out) {
  out->key = in.key();
  out->range_end = in.range_end();
  out->prev_kv = in.prev_kv();
}

absl::Status ConvertCompare(const Compare& in, mvcc::Compare* out) {
  if (!Compare::CompareResult_IsValid(in.result())) {
    return Malformed(absl::StrCat("compare result ", in.result()));
  }
  if (!Compare::CompareTarget_IsValid(in.target())) {
    return Malformed(absl::StrCat("compare target ", in.target()));
  }
  out->result = static_cast<mvcc::Compare::Result>(in.result());
  out->target = static_cast<mvcc::Compare::Target>(in.target());
  out->key = in.key();
  out->range_end = in.range_end();
  // etcd reads the union member the target names; an unset member compares against zero.
  switch (in.target()) {
    case Compare::VERSION:
      out->number = in.version();
      break;
    case Compare::CREATE:
      out->number = in.create_revision();
      break;
    case Compare::MOD:
      out->number = in.mod_revision();
      break;
    case Compare::VALUE:
      out->value = in.value();
      break;
    case Compare::LEASE:
      out->number = in.lease();
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

absl::Status ConvertTxn(const etcdserverpb::TxnRequest& in, int depth, mvcc::TxnRequest* out);

absl::Status ConvertOps(const google::protobuf::RepeatedPtrField<RequestOp>& in, int depth,
                        std::vector<mvcc::RequestOp>* out) {
  out->reserve(in.size());
  for (const RequestOp& op : in) {
    mvcc::RequestOp converted;
    switch (op.request_case()) {
      case RequestOp::kRequestRange:
        converted.kind = mvcc::RequestOp::Kind::kRange;
        if (absl::Status s = ConvertRange(op.request_range(), &converted.range); !s.ok()) return s;
        break;
      case RequestOp::kRequestPut:
        converted.kind = mvcc::RequestOp::Kind::kPut;
        ConvertPut(op.request_put(), &converted.put);
        break;
      case RequestOp::kRequestDeleteRange:
        converted.kind = mvcc::RequestOp::Kind::kDeleteRange;
        ConvertDelete(op.request_delete_range(), &converted.delete_range);
        break;
      case RequestOp::kRequestTxn: {
        converted.kind = mvcc::RequestOp::Kind::kTxn;
        auto nested = std::make_shared<mvcc::TxnRequest>();
        if (absl::Status s = ConvertTxn(op.request_txn(), depth + 1, nested.get()); !s.ok()) {
          return s;
        }
        converted.txn = std::move(nested);
        break;
      }
      default:
        // An operation with no request (an empty RequestOp, or {"request_put":null} through the
        // gateway) goes to the core as a nested txn without one, which its checks answer as
        // etcd's checkRequestOp does (ErrGRPCKeyNotFound) where etcd finds it: past the count of
        // operations and whatever stands before it.
        converted.kind = mvcc::RequestOp::Kind::kTxn;
        break;
    }
    out->push_back(std::move(converted));
  }
  return absl::OkStatus();
}

absl::Status ConvertTxn(const etcdserverpb::TxnRequest& in, int depth, mvcc::TxnRequest* out) {
  if (depth > server::kMaxTxnDepth) {
    return Malformed(absl::StrCat("txn nested deeper than ", server::kMaxTxnDepth));
  }
  out->compare.reserve(in.compare_size());
  for (const Compare& compare : in.compare()) {
    mvcc::Compare converted;
    if (absl::Status s = ConvertCompare(compare, &converted); !s.ok()) return s;
    out->compare.push_back(std::move(converted));
  }
  if (absl::Status s = ConvertOps(in.success(), depth, &out->success); !s.ok()) return s;
  return ConvertOps(in.failure(), depth, &out->failure);
}

void Fill(const mvcc::RangeResponse& in, etcdserverpb::RangeResponse* out) {
  out->mutable_kvs()->Reserve(in.kvs.size());
  for (const mvcc::KeyValue& kv : in.kvs) ToProto(kv, out->add_kvs());
  out->set_more(in.more);
  out->set_count(in.count);
}

void Fill(const mvcc::PutResponse& in, etcdserverpb::PutResponse* out) {
  if (in.prev_kv.has_value()) ToProto(*in.prev_kv, out->mutable_prev_kv());
}

void Fill(const mvcc::DeleteRangeResponse& in, etcdserverpb::DeleteRangeResponse* out) {
  out->set_deleted(in.deleted);
  for (const mvcc::KeyValue& kv : in.prev_kvs) ToProto(kv, out->add_prev_kvs());
}

// Operations inside a txn carry a header with the txn's revision alone, as etcd's applier fills
// them (cluster, member and term only on the outer header).
void Fill(const mvcc::TxnResponse& in, const etcdserverpb::ResponseHeader& txn_header,
          etcdserverpb::TxnResponse* out) {
  etcdserverpb::ResponseHeader header;
  header.set_revision(txn_header.revision());
  out->set_succeeded(in.succeeded);
  for (const mvcc::ResponseOp& op : in.responses) {
    etcdserverpb::ResponseOp* converted = out->add_responses();
    switch (op.kind) {
      case mvcc::RequestOp::Kind::kRange: {
        auto* range = converted->mutable_response_range();
        *range->mutable_header() = header;
        Fill(op.range, range);
        break;
      }
      case mvcc::RequestOp::Kind::kPut: {
        auto* put = converted->mutable_response_put();
        *put->mutable_header() = header;
        Fill(op.put, put);
        break;
      }
      case mvcc::RequestOp::Kind::kDeleteRange: {
        auto* del = converted->mutable_response_delete_range();
        *del->mutable_header() = header;
        Fill(op.delete_range, del);
        break;
      }
      case mvcc::RequestOp::Kind::kTxn: {
        // etcd 3.4's applier gives a nested txn's response an empty header (newTxnResp), while
        // the operations inside it carry the revision (Debian's etcd 3.4.23:
        // "response_txn":{"header":{},...,"responses":[{"response_put":{"header":{"revision":..}}}]}).
        auto* txn = converted->mutable_response_txn();
        txn->mutable_header();
        if (op.txn != nullptr) Fill(*op.txn, header, txn);
        break;
      }
    }
  }
}

void ToProto(const server::Member& in, etcdserverpb::Member* out) {
  out->set_id(in.id);
  out->set_name(in.name);
  for (const std::string& url : in.peer_urls) out->add_peerurls(url);
  for (const std::string& url : in.client_urls) out->add_clienturls(url);
  out->set_islearner(in.is_learner);
}

template <typename Out>
void FillMembers(const std::vector<server::Member>& in, Out* out) {
  for (const server::Member& member : in) ToProto(member, out->add_members());
}

server::Request RequestOf(server::RequestType type) {
  server::Request r;
  r.type = type;
  return r;
}

// The Cluster service's header: etcd's cluster server fills cluster, member and term, but no
// revision (membership is not in the key space).
void ToClusterHeader(const server::ResponseHeader& in, uint64_t cluster_id,
                     etcdserverpb::ResponseHeader* out) {
  ToHeader(in, cluster_id, out);
  out->clear_revision();
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const ErrorCode code = CodeOf(status);
  // Auth errors carry etcd's gRPC code (the canonical one) and message (core/base/errors.h).
  if (absl::string_view auth = EtcdAuthMessage(code); !auth.empty()) {
    return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(auth));
  }
  for (const EtcdError& e : kErrors) {
    if (e.code != code) continue;
    return grpc::Status(e.grpc_code,
                        e.message != nullptr ? e.message : std::string(status.message()));
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::Status ToMoveLeaderStatus(const absl::Status& status) {
  if (!status.ok() && CodeOf(status) == ErrorCode::kMemberNotFound) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "etcdserver: bad leader transferee");
  }
  return ToGrpcStatus(status);
}

grpc::Status ToRawAuthStatus(const absl::Status& status) {
  // etcd 3.4's auth package errors (auth/store.go) that a token check or IsAdminPermitted
  // returns.
  static constexpr std::pair<ErrorCode, const char*> kRaw[] = {
      {ErrorCode::kInvalidAuthToken, "auth: invalid auth token"},
      {ErrorCode::kUserEmpty, "auth: user name is empty"},
      {ErrorCode::kUserNotFound, "auth: user not found"},
      {ErrorCode::kPermissionDenied, "auth: permission denied"},
      {ErrorCode::kAuthOldRevision, "auth: revision in header is old"},
  };
  const ErrorCode code = CodeOf(status);
  for (const auto& [raw_code, message] : kRaw) {
    if (raw_code == code) return grpc::Status(grpc::StatusCode::UNKNOWN, message);
  }
  return ToGrpcStatus(status);
}

GatewayError ToGatewayError(const absl::Status& status,
                            grpc::Status (*to_grpc)(const absl::Status&)) {
  const grpc::Status converted = to_grpc(status);
  GatewayError error;
  error.grpc_code = static_cast<int>(converted.error_code());
  error.message = converted.error_message();
  error.http_status = HttpStatusOf(converted.error_code());
  return error;
}

absl::Status ToRequest(const etcdserverpb::RangeRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kRange);
  return ConvertRange(in, &out->range);
}

absl::Status ToRequest(const etcdserverpb::PutRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kPut);
  ConvertPut(in, &out->put);
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::DeleteRangeRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kDeleteRange);
  ConvertDelete(in, &out->delete_range);
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::TxnRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kTxn);
  return ConvertTxn(in, 1, &out->txn);
}

absl::Status ToRequest(const etcdserverpb::CompactionRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kCompact);
  out->revision = in.revision();
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::LeaseGrantRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kLeaseGrant);
  // etcd's lessor raises any TTL below its minimum (zero and negative ones too) to it; the
  // core's does so for positive ones.
  out->ttl_seconds = std::max<int64_t>(in.ttl(), 1);
  out->lease_id = in.id();
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::LeaseRevokeRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kLeaseRevoke);
  out->lease_id = in.id();
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::LeaseKeepAliveRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kLeaseKeepAlive);
  out->lease_id = in.id();
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::LeaseTimeToLiveRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kLeaseTimeToLive);
  out->lease_id = in.id();
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::LeaseLeasesRequest&, server::Request* out) {
  *out = RequestOf(server::RequestType::kLeaseLeases);
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::MemberAddRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kMemberAdd);
  out->member.peer_urls.assign(in.peerurls().begin(), in.peerurls().end());
  out->member.is_learner = in.islearner();
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::MemberRemoveRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kMemberRemove);
  out->member.id = in.id();
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::MemberUpdateRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kMemberUpdate);
  out->member.id = in.id();
  out->member.peer_urls.assign(in.peerurls().begin(), in.peerurls().end());
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::MemberListRequest&, server::Request* out) {
  *out = RequestOf(server::RequestType::kMemberList);
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::MemberPromoteRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kMemberPromote);
  out->member.id = in.id();
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::AlarmRequest& in, server::Request* out) {
  if (!etcdserverpb::AlarmRequest::AlarmAction_IsValid(in.action())) {
    return Malformed(absl::StrCat("alarm action ", in.action()));
  }
  // Any alarm type is taken, as etcd takes it (an AlarmType it does not know is just a number).
  switch (in.action()) {
    case etcdserverpb::AlarmRequest::GET:
      *out = RequestOf(server::RequestType::kAlarmList);
      return absl::OkStatus();
    case etcdserverpb::AlarmRequest::DEACTIVATE:
      // etcd's alarmStore.Deactivate clears the (member, alarm) pair given, and no other
      // (etcdctl alarm disarm lists the alarms and disarms each in turn). The core's only alarm
      // is NOSPACE: another type has nothing to deactivate, and the alarms are only listed
      // (with the same permission check).
      if (in.alarm() != etcdserverpb::NOSPACE) {
        *out = RequestOf(server::RequestType::kAlarmList);
        return absl::OkStatus();
      }
      *out = RequestOf(server::RequestType::kAlarmDisarm);
      out->alarm_member = in.memberid();
      return absl::OkStatus();
    default:
      // etcd raises the alarm of the member id given through the log, whatever the id (0 too).
      // kvnode's core knows NOSPACE only: CORRUPT (which would stop every write "corrupt
      // cluster"), NONE or a number are refused rather than listed with no effect.
      if (in.alarm() != etcdserverpb::NOSPACE) {
        return Error(ErrorCode::kInvalidArgument,
                     absl::StrCat("alarm activate: kvnode raises NOSPACE alarms only, not ",
                                  etcdserverpb::AlarmType_IsValid(in.alarm())
                                      ? etcdserverpb::AlarmType_Name(in.alarm())
                                      : absl::StrCat(static_cast<int>(in.alarm()))));
      }
      *out = RequestOf(server::RequestType::kAlarmActivate);
      out->alarm_member = in.memberid();
      return absl::OkStatus();
  }
}

absl::Status ToRequest(const etcdserverpb::DefragmentRequest&, server::Request* out) {
  *out = RequestOf(server::RequestType::kDefragment);
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::HashKVRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kHash);
  out->revision = in.revision();
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::HashRequest&, server::Request* out) {
  *out = RequestOf(server::RequestType::kHash);
  return absl::OkStatus();
}

absl::Status ToRequest(const etcdserverpb::MoveLeaderRequest& in, server::Request* out) {
  *out = RequestOf(server::RequestType::kMoveLeader);
  out->member.id = in.targetid();
  return absl::OkStatus();
}

absl::Status ToWatchRequest(const etcdserverpb::WatchCreateRequest& in, mvcc::WatchRequest* out) {
  // etcd's mvcc watchStream.Watch refuses a range that holds no key (key >= range_end; "\0", from
  // the key on, is not one) before it takes an id.
  if (!in.range_end().empty() && in.range_end() != std::string(1, '\0') &&
      in.key() >= in.range_end()) {
    return absl::InvalidArgumentError("mvcc: watcher range is empty");
  }
  out->key = in.key();
  out->range_end = in.range_end();
  out->start_revision = in.start_revision();
  out->prev_kv = in.prev_kv();
  out->progress_notify = in.progress_notify();
  for (int filter : in.filters()) {
    switch (filter) {
      case etcdserverpb::WatchCreateRequest::NOPUT:
        out->no_put = true;
        break;
      case etcdserverpb::WatchCreateRequest::NODELETE:
        out->no_delete = true;
        break;
      default:
        return Malformed(absl::StrCat("watch filter ", filter));
    }
  }
  return absl::OkStatus();
}

void ToHeader(const server::ResponseHeader& in, uint64_t cluster_id,
              etcdserverpb::ResponseHeader* out) {
  out->set_cluster_id(cluster_id);
  out->set_member_id(in.member_id);
  out->set_revision(in.revision);
  out->set_raft_term(in.raft_term);
}

void ToProto(const mvcc::KeyValue& in, mvccpb::KeyValue* out) {
  out->set_key(in.key);
  out->set_create_revision(in.create_revision);
  out->set_mod_revision(in.mod_revision);
  out->set_version(in.version);
  out->set_value(in.value);
  out->set_lease(in.lease);
}

void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::RangeResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  Fill(in.range, out);
}

void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::PutResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  Fill(in.put, out);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::DeleteRangeResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  Fill(in.delete_range, out);
}

void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::TxnResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  Fill(in.txn, out->header(), out);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::CompactionResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseGrantResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  out->set_id(in.lease.id);
  out->set_ttl(in.lease.granted_ttl_seconds);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseRevokeResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseKeepAliveResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  out->set_id(in.lease.id);
  out->set_ttl(in.lease.remaining_ttl_seconds);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseTimeToLiveResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  out->set_id(in.lease.id);
  out->set_ttl(in.lease.remaining_ttl_seconds);
  out->set_grantedttl(in.lease.granted_ttl_seconds);
  for (const std::string& key : in.lease.keys) out->add_keys(key);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::LeaseLeasesResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  for (lease::LeaseId id : in.leases) out->add_leases()->set_id(id);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MemberAddResponse* out) {
  ToClusterHeader(in.header, cluster_id, out->mutable_header());
  ToProto(in.member, out->mutable_member());
  FillMembers(in.members, out);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MemberRemoveResponse* out) {
  ToClusterHeader(in.header, cluster_id, out->mutable_header());
  FillMembers(in.members, out);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MemberUpdateResponse* out) {
  ToClusterHeader(in.header, cluster_id, out->mutable_header());
  FillMembers(in.members, out);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MemberListResponse* out) {
  ToClusterHeader(in.header, cluster_id, out->mutable_header());
  FillMembers(in.members, out);
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MemberPromoteResponse* out) {
  ToClusterHeader(in.header, cluster_id, out->mutable_header());
  FillMembers(in.members, out);
}

void ToProto(const server::Response& in, uint64_t, etcdserverpb::AlarmResponse* out) {
  // etcd 3.4's maintenanceServer.Alarm hands on the applier's response, which has no header (3.5
  // fills one): etcd answers {} when there is no alarm.
  for (const server::Alarm& alarm : in.alarms) {
    etcdserverpb::AlarmMember* converted = out->add_alarms();
    converted->set_memberid(alarm.member_id);
    converted->set_alarm(alarm.type == server::AlarmType::kNoSpace ? etcdserverpb::NOSPACE
                                                                   : etcdserverpb::NONE);
  }
}

void KeepAnsweredAlarms(const etcdserverpb::AlarmRequest& request,
                        etcdserverpb::AlarmResponse* alarms) {
  // An activation or a deactivation answers with the (member, alarm) pair it changed.
  const bool pair = request.action() != etcdserverpb::AlarmRequest::GET;
  auto answered = [&](const etcdserverpb::AlarmMember& alarm) {
    if (pair) return alarm.memberid() == request.memberid() && alarm.alarm() == request.alarm();
    return request.alarm() == etcdserverpb::NONE || alarm.alarm() == request.alarm();
  };
  google::protobuf::RepeatedPtrField<etcdserverpb::AlarmMember>* list = alarms->mutable_alarms();
  list->erase(
      std::remove_if(list->begin(), list->end(),
                     [&](const etcdserverpb::AlarmMember& alarm) { return !answered(alarm); }),
      list->end());
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::DefragmentResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
}

void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::HashKVResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  // etcd's hash is a CRC-32; the core's is 64 bits wide: the low half goes on the wire, which
  // still agrees between members exactly when the stores agree.
  out->set_hash(static_cast<uint32_t>(in.hash.hash));
  out->set_compact_revision(in.hash.compact_revision);
}

void ToProto(const server::Response& in, uint64_t cluster_id, etcdserverpb::HashResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  out->set_hash(static_cast<uint32_t>(in.hash.hash));
}

void ToProto(const server::Response& in, uint64_t cluster_id,
             etcdserverpb::MoveLeaderResponse* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
}

void ToProto(const MemberStatusInfo& in, uint64_t cluster_id, etcdserverpb::StatusResponse* out) {
  server::ResponseHeader header;
  header.member_id = in.id;
  header.revision = in.revision;
  header.raft_term = in.term;
  ToHeader(header, cluster_id, out->mutable_header());
  out->set_version(kApiVersion);
  out->set_dbsize(static_cast<int64_t>(in.db_size_bytes));
  out->set_dbsizeinuse(static_cast<int64_t>(in.db_size_bytes));
  out->set_leader(in.leader);
  out->set_raftindex(in.commit_index);
  out->set_raftterm(in.term);
  out->set_raftappliedindex(in.applied_index);
  for (const std::string& error : in.errors) out->add_errors(error);
  out->set_islearner(in.is_learner);
}

void ToProto(const mvcc::WatchResponse& in, uint64_t cluster_id, raft::NodeId member_id,
             raft::Term term, etcdserverpb::WatchResponse* out) {
  server::ResponseHeader header;
  header.member_id = member_id;
  header.revision = in.header_revision;
  header.raft_term = term;
  ToHeader(header, cluster_id, out->mutable_header());
  out->set_watch_id(in.watch_id);
  out->set_created(in.created);
  out->set_canceled(in.canceled);
  out->set_compact_revision(in.compact_revision);
  out->set_cancel_reason(in.cancel_reason);
  for (const mvcc::Event& event : in.events) {
    mvccpb::Event* converted = out->add_events();
    converted->set_type(event.type == mvcc::Event::Type::kPut ? mvccpb::Event::PUT
                                                              : mvccpb::Event::DELETE);
    ToProto(event.kv, converted->mutable_kv());
    if (event.prev_kv.has_value()) ToProto(*event.prev_kv, converted->mutable_prev_kv());
  }
}

absl::Status ToTimeToLiveResponse(const etcdserverpb::LeaseTimeToLiveRequest& request,
                                  server::Response answer, uint64_t cluster_id,
                                  etcdserverpb::LeaseTimeToLiveResponse* out) {
  if (CodeOf(answer.status) == ErrorCode::kLeaseNotFound) {
    out->mutable_header()->set_cluster_id(cluster_id);
    out->set_id(request.id());
    out->set_ttl(-1);
    return absl::OkStatus();
  }
  if (!answer.status.ok()) return answer.status;
  if (!request.keys()) answer.lease.keys.clear();
  ToProto(answer, cluster_id, out);
  return absl::OkStatus();
}

absl::Status ToKeepAliveResponse(int64_t lease_id, server::Response answer, uint64_t cluster_id,
                                 etcdserverpb::LeaseKeepAliveResponse* out) {
  if (CodeOf(answer.status) == ErrorCode::kLeaseNotFound) {
    answer.status = absl::OkStatus();
    answer.lease.id = lease_id;
    answer.lease.remaining_ttl_seconds = 0;
  }
  if (!answer.status.ok()) return answer.status;
  ToProto(answer, cluster_id, out);
  return absl::OkStatus();
}

namespace {

server::Request AuthRequestOf(server::RequestType type, std::string name = "",
                              std::string password = "", std::string role = "") {
  server::Request r = RequestOf(type);
  r.auth.name = std::move(name);
  r.auth.password = std::move(password);
  r.auth.role = std::move(role);
  return r;
}

}  // namespace

absl::Status ToRequest(const etcdserverpb::AuthEnableRequest&, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kAuthEnable);
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthDisableRequest&, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kAuthDisable);
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthenticateRequest& in, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kAuthenticate, in.name(), in.password());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthUserAddRequest& in, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kUserAdd, in.name(), in.password());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthUserGetRequest& in, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kUserGet, in.name());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthUserListRequest&, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kUserList);
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthUserDeleteRequest& in, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kUserDelete, in.name());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthUserChangePasswordRequest& in,
                       server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kUserChangePassword, in.name(), in.password());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthUserGrantRoleRequest& in, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kUserGrantRole, in.user(), "", in.role());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthUserRevokeRoleRequest& in, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kUserRevokeRole, in.name(), "", in.role());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthRoleAddRequest& in, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kRoleAdd, "", "", in.name());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthRoleGetRequest& in, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kRoleGet, "", "", in.role());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthRoleListRequest&, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kRoleList);
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthRoleDeleteRequest& in, server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kRoleDelete, "", "", in.role());
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthRoleGrantPermissionRequest& in,
                       server::Request* out) {
  if (!authpb::Permission::Type_IsValid(in.perm().permtype())) {
    return Malformed(absl::StrCat("permission type ", in.perm().permtype()));
  }
  *out = AuthRequestOf(server::RequestType::kRoleGrantPermission, "", "", in.name());
  out->auth.permission.type = static_cast<auth::PermissionType>(in.perm().permtype());
  out->auth.permission.key = in.perm().key();
  out->auth.permission.range_end = in.perm().range_end();
  return absl::OkStatus();
}
absl::Status ToRequest(const etcdserverpb::AuthRoleRevokePermissionRequest& in,
                       server::Request* out) {
  *out = AuthRequestOf(server::RequestType::kRoleRevokePermission, "", "", in.role());
  out->auth.permission.key = in.key();
  out->auth.permission.range_end = in.range_end();
  return absl::OkStatus();
}

template <typename Resp>
void ToAuthProto(const server::Response& in, uint64_t cluster_id, Resp* out) {
  ToHeader(in.header, cluster_id, out->mutable_header());
  if constexpr (std::is_same_v<Resp, etcdserverpb::AuthenticateResponse>) {
    out->set_token(in.token);
  } else if constexpr (std::is_same_v<Resp, etcdserverpb::AuthUserGetResponse>) {
    for (const std::string& role : in.user.roles) out->add_roles(role);
  } else if constexpr (std::is_same_v<Resp, etcdserverpb::AuthUserListResponse>) {
    for (const std::string& name : in.names) out->add_users(name);
  } else if constexpr (std::is_same_v<Resp, etcdserverpb::AuthRoleListResponse>) {
    for (const std::string& name : in.names) out->add_roles(name);
  } else if constexpr (std::is_same_v<Resp, etcdserverpb::AuthRoleGetResponse>) {
    for (const auth::Permission& permission : in.role.permissions) {
      authpb::Permission* converted = out->add_perm();
      converted->set_permtype(static_cast<authpb::Permission::Type>(permission.type));
      converted->set_key(permission.key);
      converted->set_range_end(permission.range_end);
    }
  }
}

template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthEnableResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthDisableResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthenticateResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthUserAddResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthUserGetResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthUserListResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthUserDeleteResponse*);
template void ToAuthProto(const server::Response&, uint64_t,
                          etcdserverpb::AuthUserChangePasswordResponse*);
template void ToAuthProto(const server::Response&, uint64_t,
                          etcdserverpb::AuthUserGrantRoleResponse*);
template void ToAuthProto(const server::Response&, uint64_t,
                          etcdserverpb::AuthUserRevokeRoleResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthRoleAddResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthRoleGetResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthRoleListResponse*);
template void ToAuthProto(const server::Response&, uint64_t, etcdserverpb::AuthRoleDeleteResponse*);
template void ToAuthProto(const server::Response&, uint64_t,
                          etcdserverpb::AuthRoleGrantPermissionResponse*);
template void ToAuthProto(const server::Response&, uint64_t,
                          etcdserverpb::AuthRoleRevokePermissionResponse*);

RefusedWatch RefusedWatchResponses(const absl::Status& refused, int64_t revision,
                                   int64_t compact_revision) {
  RefusedWatch out;
  out.created.header_revision = revision;
  out.created.created = true;
  out.canceled.header_revision = revision;
  out.canceled.canceled = true;
  if (CodeOf(refused) == ErrorCode::kCompacted) {
    out.canceled.compact_revision = compact_revision;
  } else {
    // etcd's words for the refusal, not the core's detail.
    out.one_response = true;
    out.created.canceled = true;
    out.created.cancel_reason = GoRpcErrorText(refused);
  }
  return out;
}

std::string GoRpcErrorText(const absl::Status& status) {
  // google.golang.org/grpc/codes' String().
  static constexpr const char* kNames[] = {
      "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
      "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
      "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
      "DataLoss", "Unauthenticated"};
  const grpc::Status converted = ToGrpcStatus(status);
  const int code = static_cast<int>(converted.error_code());
  const std::string name = code >= 0 && code < static_cast<int>(std::size(kNames))
                               ? kNames[code]
                               : absl::StrCat("Code(", code, ")");
  return absl::StrCat("rpc error: code = ", name, " desc = ", converted.error_message());
}

void ToSlowWatcherCancel(size_t waiting_responses, size_t limit_responses,
                         etcdserverpb::WatchResponse* response) {
  response->clear_events();
  response->set_created(false);
  response->set_canceled(true);
  response->set_compact_revision(0);
  response->set_cancel_reason(absl::StrCat("watcher too slow: ", waiting_responses,
                                           " responses waiting (limit ", limit_responses, ")"));
}

struct SnapshotChunks::Hasher {
  Hasher() : ctx(EVP_MD_CTX_new()) {
    ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1;
  }
  ~Hasher() { EVP_MD_CTX_free(ctx); }
  EVP_MD_CTX* ctx;
  bool ok = false;
};

SnapshotChunks::SnapshotChunks(std::shared_ptr<SnapshotCopy> copy, size_t chunk_bytes,
                               const server::ResponseHeader& header, uint64_t cluster_id)
    : copy_(std::move(copy)),
      chunk_bytes_(std::max<size_t>(chunk_bytes, 1)),
      header_(header),
      cluster_id_(cluster_id),
      total_(copy_->size() + SHA256_DIGEST_LENGTH),
      hasher_(std::make_unique<Hasher>()) {}

SnapshotChunks::~SnapshotChunks() = default;

absl::StatusOr<bool> SnapshotChunks::Next(etcdserverpb::SnapshotResponse* out) {
  // total_ counts the digest too, so even an empty copy gives one response.
  if (offset_ == total_) return false;
  if (!hasher_->ok) return absl::InternalError("snapshot: cannot compute its SHA-256");
  const uint64_t data_bytes = copy_->size();
  const uint64_t n = std::min<uint64_t>(chunk_bytes_, total_ - offset_);
  std::string blob;
  if (offset_ < data_bytes) {
    if (absl::Status read = copy_->Read(offset_, n, &blob); !read.ok()) return read;
    if (EVP_DigestUpdate(hasher_->ctx, blob.data(), blob.size()) != 1) {
      return absl::InternalError("snapshot: cannot compute its SHA-256");
    }
  }
  if (offset_ + n > data_bytes) {
    if (digest_.empty()) {
      unsigned char md[SHA256_DIGEST_LENGTH];
      unsigned int md_bytes = 0;
      if (EVP_DigestFinal_ex(hasher_->ctx, md, &md_bytes) != 1) {
        return absl::InternalError("snapshot: cannot compute its SHA-256");
      }
      digest_.assign(reinterpret_cast<const char*>(md), md_bytes);
    }
    const uint64_t from = offset_ > data_bytes ? offset_ - data_bytes : 0;
    blob.append(digest_, from, offset_ + n - data_bytes - from);
  }
  offset_ += n;
  out->Clear();
  ToHeader(header_, cluster_id_, out->mutable_header());
  out->set_remaining_bytes(total_ - offset_);
  out->set_blob(std::move(blob));
  return true;
}

}  // namespace kvstore::net::etcd
