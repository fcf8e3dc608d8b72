#ifndef KVSTORE_CORE_SERVER_CODEC_H_
#define KVSTORE_CORE_SERVER_CODEC_H_

// Conversions between the core's request values and their protobuf form in the Raft log.
// Decoding validates enums and nesting, so a malformed entry is an error value.

#include "absl/status/statusor.h"
#include "core/mvcc/types.h"
#include "core/server/requests.pb.h"

namespace kvstore::server {

// Nested transactions deeper than this are refused (bounded recursion).
inline constexpr int kMaxTxnDepth = 16;

void ToProto(const mvcc::RangeRequest& in, pb::RangeRequest* out);
void ToProto(const mvcc::PutRequest& in, pb::PutRequest* out);
void ToProto(const mvcc::DeleteRangeRequest& in, pb::DeleteRangeRequest* out);
void ToProto(const mvcc::TxnRequest& in, pb::TxnRequest* out);

absl::StatusOr<mvcc::RangeRequest> FromProto(const pb::RangeRequest& in);
mvcc::PutRequest FromProto(const pb::PutRequest& in);
// The same, moving the key and the value out of `in`.
mvcc::PutRequest FromProto(pb::PutRequest&& in);
mvcc::DeleteRangeRequest FromProto(const pb::DeleteRangeRequest& in);
absl::StatusOr<mvcc::TxnRequest> FromProto(const pb::TxnRequest& in, int depth = 0);
// The same, moving the keys and values of the txn's own puts out of `in`.
absl::StatusOr<mvcc::TxnRequest> FromProto(pb::TxnRequest&& in, int depth = 0);

}  // namespace kvstore::server

#endif  // KVSTORE_CORE_SERVER_CODEC_H_
