#ifndef KVSTORE_NET_CONVERT_H_
#define KVSTORE_NET_CONVERT_H_

// The one place where Cap'n Proto meets the core's structs, for both protocols: peer.capnp (Raft
// messages) and client.capnp (the native client API). Services and clients of net/ convert only
// through these functions.
//
// Two kinds of protection stand between a received message and the core:
//   1. Limits enforced before decoding. Every connection reads with the capnp::ReaderOptions
//      below. A message whose size exceeds the traversal limit is refused by the RPC layer before
//      any field is looked at (the connection fails; there is no call to answer); a message that
//      would make a reader traverse more than the limit (pointers aliasing one another) or nest
//      deeper than kNestingLimit throws on access, and the decoders turn that into an error.
//   2. Validation while decoding. Every enum is range-checked (SortOrder, SortTarget, Compare
//      result and target, Event type, Alarm type, EntryType, MessageType), transactions nest at
//      most server::kMaxTxnDepth deep (as the Raft log's codec allows), txn operations must be of
//      a known kind, and Raft messages must be well formed (see FromCapnp(rpc::Message)).
// A malformed message is a kInvalidArgument error naming the field ("malformed request: compare
// target 9"), never a crash. Sizes that the core limits by configuration (key, value, request
// bytes, txn ops) are left to the core, which answers with their own codes.
//
// Errors travel as values (client.capnp's Status): the stable code name of core/base/errors.h and
// the message without its "CODE: " prefix; StatusFromCapnp rebuilds the same absl::Status.
//
// Per-operation revisions: the wire carries one Header per reply, so the revision fields of
// RangeResponse, PutResponse, DeleteRangeResponse and TxnResponse (and of the operations inside a
// txn, which all run at the txn's revision) decode to the header's revision.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "capnp/message.h"
#include "core/lease/lessor.h"
#include "core/mvcc/types.h"
#include "core/mvcc/watch.h"
#include "core/raft/types.h"
#include "core/server/codec.h"
#include "core/server/server.h"
#include "net/client.capnp.h"
#include "net/connection.h"
#include "net/member_service.h"
#include "net/peer.capnp.h"

namespace kvstore::net {

// --- Limits enforced before decoding ------------------------------------------------------------

// What a request may carry beyond the member's max request bytes: the RPC envelope and the
// encoding's padding and pointers (etcd's grpcOverheadBytes, for the same purpose).
inline constexpr uint64_t kRequestEnvelopeBytes = 512 << 10;
// The largest reply a client accepts. The core bounds a range by count, not bytes, so this is
// generous; a larger range must be paged with `limit`.
inline constexpr uint64_t kMaxResponseBytes = kMaxSendBytes;
// The largest peer message (one `send` batch, one snapshot chunk). It must exceed a sender's
// batch limit (kPeerBatchBytes) plus one Raft message at its largest: max_size_per_msg (1 MiB)
// plus one entry, itself at most max request bytes (1.5 MiB by default).
inline constexpr uint64_t kMaxPeerMessageBytes = uint64_t{32} << 20;
// How deep a received message may nest. A txn level costs two (the ops list, then the op's txn),
// and the RPC envelope about six, so every txn the core accepts (server::kMaxTxnDepth) fits, and
// the decoder, not Cap'n Proto, refuses the next level with a clear error.
inline constexpr int kNestingLimit = 64;
static_assert(kNestingLimit >= 2 * (server::kMaxTxnDepth + 1) + 8,
              "a txn the core accepts must not hit Cap'n Proto's nesting limit");

// One snapshot chunk, both for a client's download (SnapshotStream.next) and between peers
// (SnapshotSink.write): small enough to interleave with other calls, large enough that per-call
// costs vanish.
inline constexpr uint64_t kSnapshotChunkBytes = 1 << 20;

// Reader options of a member's client connections: a request may be max_request_bytes plus the
// envelope (the core refuses anything above max_request_bytes with REQUEST_TOO_LARGE).
capnp::ReaderOptions RequestReaderOptions(
    uint64_t max_request_bytes = server::kDefaultMaxRequestBytes);
// Reader options of a client library's connections (replies: kMaxResponseBytes).
capnp::ReaderOptions ResponseReaderOptions();
// Reader options of peer connections, both directions (kMaxPeerMessageBytes).
capnp::ReaderOptions PeerReaderOptions();

// --- Raft messages (peer.capnp) -----------------------------------------------------------------

// Everything but a kSnap message's snapshot data, which travels through Peer.sendSnapshot.
void ToCapnp(const raft::Message& in, rpc::Message::Builder out);
// Validates: message and entry types in range; `to` and `from` set; a snapshot exactly on kSnap;
// kApp entries contiguous after `index`, their terms non-decreasing and at most the message's;
// the snapshot's configuration lists sorted, free of duplicates and of node 0, with voters.
// A kSnap message decodes with its metadata and empty data.
absl::StatusOr<raft::Message> FromCapnp(rpc::Message::Reader in);

// A member as Peer.members lists it.
void ToCapnp(const server::Member& in, rpc::PeerMember::Builder out);
absl::StatusOr<server::Member> FromCapnp(rpc::PeerMember::Reader in);

// A leader-only client request a follower forwards (Peer.forward): lease keep-alive, lease
// time-to-live or member promote. Decoding refuses any other type, and a lease or member id 0.
bool IsForwardable(server::RequestType type);
void ToCapnp(const server::Request& in, rpc::ForwardRequest::Builder out);
absl::StatusOr<server::Request> FromCapnp(rpc::ForwardRequest::Reader in);
// The leader's answer: its status and the fields of the request's type (the header is the
// forwarding member's own, as etcd fills it).
void ToCapnp(const server::Response& in, rpc::ForwardResponse::Builder out);
absl::StatusOr<server::Response> FromCapnp(rpc::ForwardResponse::Reader in,
                                           server::RequestType type);

// --- Values of the client API (client.capnp) ----------------------------------------------------

void ToCapnp(const absl::Status& in, rpc::Status::Builder out);
// The status a reply carries; an unknown code name is a kInvalidArgument naming it.
absl::Status StatusFromCapnp(rpc::Status::Reader in);

void ToCapnp(const server::ResponseHeader& in, rpc::Header::Builder out);
void ToCapnp(const mvcc::KeyValue& in, rpc::KeyValue::Builder out);
void ToCapnp(const mvcc::RangeRequest& in, rpc::RangeRequest::Builder out);
void ToCapnp(const mvcc::PutRequest& in, rpc::PutRequest::Builder out);
void ToCapnp(const mvcc::DeleteRangeRequest& in, rpc::DeleteRangeRequest::Builder out);
void ToCapnp(const mvcc::TxnRequest& in, rpc::TxnRequest::Builder out);
void ToCapnp(const mvcc::RangeResponse& in, rpc::RangeResponse::Builder out);
void ToCapnp(const mvcc::PutResponse& in, rpc::PutResponse::Builder out);
void ToCapnp(const mvcc::DeleteRangeResponse& in, rpc::DeleteRangeResponse::Builder out);
void ToCapnp(const mvcc::TxnResponse& in, rpc::TxnResponse::Builder out);
void ToCapnp(const mvcc::WatchRequest& in, rpc::WatchRequest::Builder out);
void ToCapnp(const mvcc::WatchResponse& in, rpc::WatchResponse::Builder out);
void ToCapnp(const server::Member& in, rpc::Member::Builder out);
void ToCapnp(const server::Alarm& in, rpc::Alarm::Builder out);
void ToCapnp(const lease::LeaseInfo& in, rpc::LeaseInfo::Builder out);

absl::StatusOr<server::ResponseHeader> FromCapnp(rpc::Header::Reader in);
absl::StatusOr<mvcc::KeyValue> FromCapnp(rpc::KeyValue::Reader in);
absl::StatusOr<mvcc::RangeRequest> FromCapnp(rpc::RangeRequest::Reader in);
absl::StatusOr<mvcc::PutRequest> FromCapnp(rpc::PutRequest::Reader in);
absl::StatusOr<mvcc::DeleteRangeRequest> FromCapnp(rpc::DeleteRangeRequest::Reader in);
absl::StatusOr<mvcc::TxnRequest> FromCapnp(rpc::TxnRequest::Reader in);
// `revision` fills the revision fields (see the file comment).
absl::StatusOr<mvcc::RangeResponse> FromCapnp(rpc::RangeResponse::Reader in,
                                              mvcc::Revision revision);
absl::StatusOr<mvcc::PutResponse> FromCapnp(rpc::PutResponse::Reader in, mvcc::Revision revision);
absl::StatusOr<mvcc::DeleteRangeResponse> FromCapnp(rpc::DeleteRangeResponse::Reader in,
                                                    mvcc::Revision revision);
absl::StatusOr<mvcc::TxnResponse> FromCapnp(rpc::TxnResponse::Reader in, mvcc::Revision revision);
// progressNotify asks for etcd's periodic progress notifications (the member sends them every
// --experimental-watch-progress-notify-interval); WatchHandle.requestProgress asks for one now.
absl::StatusOr<mvcc::WatchRequest> FromCapnp(rpc::WatchRequest::Reader in);
absl::StatusOr<mvcc::WatchResponse> FromCapnp(rpc::WatchResponse::Reader in);
// server::Member has no client URLs: clientUrls is left empty and ignored.
absl::StatusOr<server::Member> FromCapnp(rpc::Member::Reader in);
absl::StatusOr<server::Alarm> FromCapnp(rpc::Alarm::Reader in);
absl::StatusOr<lease::LeaseInfo> FromCapnp(rpc::LeaseInfo::Reader in);

// --- Client methods: server::Request from params, results from server::Response -----------------
//
// The member's side: ToRequest decodes a method's params into the request the core serves;
// FillResults writes the core's answer into the method's results (the status and header always,
// the method's fields when the status is OK). The client's side: FillParams encodes a request of
// the method's type, ToResponse decodes the results (an error only for malformed results; the
// member's error is the Response's status).

absl::StatusOr<server::Request> ToRequest(rpc::Kv::RangeParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Kv::PutParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Kv::DeleteRangeParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Kv::TxnParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Kv::CompactParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Lease::GrantParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Lease::RevokeParams::Reader in);
// Lease.keepAlive opens a stream for one lease; each KeepAlive.keepAlive renews it.
absl::StatusOr<server::Request> ToRequest(rpc::Lease::KeepAliveParams::Reader in);
// The core always lists a lease's keys; `keys` is honoured by FillResults' caller.
absl::StatusOr<server::Request> ToRequest(rpc::Lease::TimeToLiveParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Lease::LeasesParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberListParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberAddParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberRemoveParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberPromoteParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberReplaceParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Cluster::MemberUpdateParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::HashParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::DefragmentParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::AlarmListParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::AlarmDisarmParams::Reader in);
absl::StatusOr<server::Request> ToRequest(rpc::Maintenance::MoveLeaderParams::Reader in);
// Auth: the type must be one of kAuthEnable .. kRoleList (INVALID_ARGUMENT otherwise).
absl::StatusOr<server::Request> ToRequest(rpc::Auth::CallParams::Reader in);

void FillResults(const server::Response& in, rpc::Kv::RangeResults::Builder out);
void FillResults(const server::Response& in, rpc::Kv::PutResults::Builder out);
void FillResults(const server::Response& in, rpc::Kv::DeleteRangeResults::Builder out);
void FillResults(const server::Response& in, rpc::Kv::TxnResults::Builder out);
void FillResults(const server::Response& in, rpc::Kv::CompactResults::Builder out);
void FillResults(const server::Response& in, rpc::Lease::GrantResults::Builder out);
void FillResults(const server::Response& in, rpc::Lease::RevokeResults::Builder out);
// ttlSeconds: the renewed TTL, 0 when the lease is gone (LEASE_NOT_FOUND).
void FillResults(const server::Response& in, rpc::KeepAlive::KeepAliveResults::Builder out);
void FillResults(const server::Response& in, rpc::Lease::TimeToLiveResults::Builder out);
void FillResults(const server::Response& in, rpc::Lease::LeasesResults::Builder out);
void FillResults(const server::Response& in, rpc::Cluster::MemberListResults::Builder out);
void FillResults(const server::Response& in, rpc::Cluster::MemberAddResults::Builder out);
void FillResults(const server::Response& in, rpc::Cluster::MemberRemoveResults::Builder out);
void FillResults(const server::Response& in, rpc::Cluster::MemberPromoteResults::Builder out);
void FillResults(const server::Response& in, rpc::Cluster::MemberReplaceResults::Builder out);
void FillResults(const server::Response& in, rpc::Cluster::MemberUpdateResults::Builder out);
void FillResults(const server::Response& in, rpc::Maintenance::HashResults::Builder out);
void FillResults(const server::Response& in, rpc::Maintenance::DefragmentResults::Builder out);
void FillResults(const server::Response& in, rpc::Maintenance::AlarmListResults::Builder out);
void FillResults(const server::Response& in, rpc::Maintenance::AlarmDisarmResults::Builder out);
void FillResults(const server::Response& in, rpc::Maintenance::MoveLeaderResults::Builder out);
void FillResults(const server::Response& in, rpc::Auth::CallResults::Builder out);
// Maintenance.status is not a core request: it reports the member's MemberStatusInfo, with
// `version` (the server's software version).
void FillResults(const MemberStatusInfo& in, const std::string& version,
                 rpc::Maintenance::StatusResults::Builder out);

void FillParams(const server::Request& in, rpc::Kv::RangeParams::Builder out);
void FillParams(const server::Request& in, rpc::Kv::PutParams::Builder out);
void FillParams(const server::Request& in, rpc::Kv::DeleteRangeParams::Builder out);
void FillParams(const server::Request& in, rpc::Kv::TxnParams::Builder out);
void FillParams(const server::Request& in, rpc::Kv::CompactParams::Builder out);
void FillParams(const server::Request& in, rpc::Lease::GrantParams::Builder out);
void FillParams(const server::Request& in, rpc::Lease::RevokeParams::Builder out);
void FillParams(const server::Request& in, rpc::Lease::KeepAliveParams::Builder out);
void FillParams(const server::Request& in, rpc::Lease::TimeToLiveParams::Builder out);
void FillParams(const server::Request& in, rpc::Cluster::MemberAddParams::Builder out);
void FillParams(const server::Request& in, rpc::Cluster::MemberRemoveParams::Builder out);
void FillParams(const server::Request& in, rpc::Cluster::MemberPromoteParams::Builder out);
void FillParams(const server::Request& in, rpc::Cluster::MemberReplaceParams::Builder out);
void FillParams(const server::Request& in, rpc::Cluster::MemberUpdateParams::Builder out);
void FillParams(const server::Request& in, rpc::Maintenance::HashParams::Builder out);
void FillParams(const server::Request& in, rpc::Maintenance::MoveLeaderParams::Builder out);
void FillParams(const server::Request& in, rpc::Auth::CallParams::Builder out);

absl::StatusOr<server::Response> ToResponse(rpc::Kv::RangeResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Kv::PutResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Kv::DeleteRangeResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Kv::TxnResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Kv::CompactResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Lease::GrantResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Lease::RevokeResults::Reader in);
// `lease_id`: the stream's lease (the reply does not repeat it).
absl::StatusOr<server::Response> ToResponse(rpc::KeepAlive::KeepAliveResults::Reader in,
                                            lease::LeaseId lease_id);
absl::StatusOr<server::Response> ToResponse(rpc::Lease::TimeToLiveResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Lease::LeasesResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberListResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberAddResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberRemoveResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberPromoteResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberReplaceResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Cluster::MemberUpdateResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::HashResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::DefragmentResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::AlarmListResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::AlarmDisarmResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Maintenance::MoveLeaderResults::Reader in);
absl::StatusOr<server::Response> ToResponse(rpc::Auth::CallResults::Reader in);

// What Maintenance.status reports, decoded (the member's id comes from the header).
struct MemberStatusReply {
  absl::Status status;
  std::string version;
  MemberStatusInfo member;
};
absl::StatusOr<MemberStatusReply> ToMemberStatus(rpc::Maintenance::StatusResults::Reader in);

}  // namespace kvstore::net

#endif  // KVSTORE_NET_CONVERT_H_
