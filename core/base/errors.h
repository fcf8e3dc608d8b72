#ifndef KVSTORE_CORE_BASE_ERRORS_H_
#define KVSTORE_CORE_BASE_ERRORS_H_

// Client-visible errors: a stable code plus a message that names the offending value and the
// limit. The code travels unchanged through Raft, the simulator, RPC and the command line: it is
// carried as a payload of absl::Status (so any layer can pass a Status along) and its name is
// the wire form.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvstore {

enum class ErrorCode : uint16_t {
  kOk = 0,
  kEmptyKey = 1,
  kKeyTooLarge = 2,
  kValueTooLarge = 3,
  kRequestTooLarge = 4,
  kTooManyOps = 5,
  kDuplicateKey = 6,
  kLeaseNotFound = 7,
  kLeaseExists = 8,
  kLeaseTtlTooLarge = 9,
  kCompacted = 10,
  kFutureRevision = 11,
  kKeyNotFound = 12,
  kNoLeader = 13,
  kNotLeader = 14,
  kLearnerNotReady = 15,
  kTooManyLearners = 16,
  kMemberNotFound = 17,
  kMemberExists = 18,
  kNoSpace = 19,
  kTimeout = 20,
  kLeadershipChanged = 21,
  kInvalidArgument = 22,
  kWatchNotFound = 23,
  kConfChangePending = 24,
  kLearnerNotPromotable = 25,
  kStopped = 26,  // the member stopped (etcd's ErrStopped); another member may serve
  // Authentication and role-based access (etcd's auth errors, rpctypes): the message of each is
  // etcd's, e.g. "etcdserver: permission denied".
  kUserEmpty = 27,
  kUserNotFound = 28,
  kUserExists = 29,
  kRoleEmpty = 30,
  kRoleNotFound = 31,
  kRoleExists = 32,
  kAuthFailed = 33,
  kPermissionDenied = 34,
  kRoleNotGranted = 35,
  kPermissionNotGranted = 36,
  kAuthNotEnabled = 37,
  kInvalidAuthToken = 38,
  kInvalidAuthMgmt = 39,
  kAuthOldRevision = 40,
  kRootUserNotExist = 41,
  kRootRoleNotExist = 42,
  // A proposal refused while the applied index lags the committed index by more than
  // server::kMaxAppliedLagEntries (etcd's ErrTooManyRequests): the member is overloaded.
  kTooManyRequests = 43,
  // A move-leader whose transferee did not become leader within the request timeout (etcd's
  // ErrTimeoutLeaderTransfer): the transfer was aborted or is still under way.
  kLeaderTransferTimeout = 44,
  // A put with ignore_value and a value, or ignore_lease and a lease (etcd's checkPutRequest:
  // ErrGRPCValueProvided, ErrGRPCLeaseProvided).
  kValueProvided = 45,
  kLeaseProvided = 46,
  // This member left the cluster (etcd's ErrMemberRemoved, "the member has been permanently
  // removed from the cluster"): a member stops once it applies its own removal or a peer refuses
  // its messages as a removed member's (rafthttp's 410 Gone), and its data dir never serves again.
  kMemberRemoved = 47,
};

// "kCompacted" -> "COMPACTED": the stable wire name.
absl::string_view ErrorCodeName(ErrorCode code);
// Parses a wire name; kInvalidArgument for unknown names.
ErrorCode ErrorCodeFromName(absl::string_view name);

// A Status with the code attached. The canonical absl code is derived (kNoLeader ->
// Unavailable, kCompacted -> OutOfRange, ...) so generic layers still classify it sensibly.
absl::Status Error(ErrorCode code, absl::string_view message);
// The attached code; kOk for an OK status, kInvalidArgument for a status without one.
ErrorCode CodeOf(const absl::Status& status);

// etcd's message for an auth error code ("etcdserver: permission denied"); empty for others.
absl::string_view EtcdAuthMessage(ErrorCode code);
// Error(code, EtcdAuthMessage(code)): an auth refusal exactly as etcd words it.
absl::Status AuthError(ErrorCode code);

}  // namespace kvstore

#endif  // KVSTORE_CORE_BASE_ERRORS_H_
