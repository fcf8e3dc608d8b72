#include "core/base/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace kvstore {
namespace {

constexpr absl::string_view kPayloadUrl = "kvstore/error_code";

struct CodeInfo {
  ErrorCode code;
  absl::string_view name;
  absl::StatusCode canonical;
};

constexpr CodeInfo kCodes[] = {
    {ErrorCode::kOk, "OK", absl::StatusCode::kOk},
    {ErrorCode::kEmptyKey, "EMPTY_KEY", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kKeyTooLarge, "KEY_TOO_LARGE", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kValueTooLarge, "VALUE_TOO_LARGE", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kRequestTooLarge, "REQUEST_TOO_LARGE", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kTooManyOps, "TOO_MANY_OPS", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kDuplicateKey, "DUPLICATE_KEY", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kLeaseNotFound, "LEASE_NOT_FOUND", absl::StatusCode::kNotFound},
    {ErrorCode::kLeaseExists, "LEASE_EXISTS", absl::StatusCode::kAlreadyExists},
    {ErrorCode::kLeaseTtlTooLarge, "LEASE_TTL_TOO_LARGE", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kCompacted, "COMPACTED", absl::StatusCode::kOutOfRange},
    {ErrorCode::kFutureRevision, "FUTURE_REVISION", absl::StatusCode::kOutOfRange},
    {ErrorCode::kKeyNotFound, "KEY_NOT_FOUND", absl::StatusCode::kNotFound},
    {ErrorCode::kNoLeader, "NO_LEADER", absl::StatusCode::kUnavailable},
    {ErrorCode::kNotLeader, "NOT_LEADER", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kLearnerNotReady, "LEARNER_NOT_READY", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kTooManyLearners, "TOO_MANY_LEARNERS", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kMemberNotFound, "MEMBER_NOT_FOUND", absl::StatusCode::kNotFound},
    {ErrorCode::kMemberExists, "MEMBER_EXISTS", absl::StatusCode::kAlreadyExists},
    {ErrorCode::kNoSpace, "NOSPACE", absl::StatusCode::kResourceExhausted},
    {ErrorCode::kTimeout, "TIMEOUT", absl::StatusCode::kDeadlineExceeded},
    {ErrorCode::kLeadershipChanged, "LEADERSHIP_CHANGED", absl::StatusCode::kUnavailable},
    {ErrorCode::kInvalidArgument, "INVALID_ARGUMENT", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kWatchNotFound, "WATCH_NOT_FOUND", absl::StatusCode::kNotFound},
    {ErrorCode::kConfChangePending, "CONF_CHANGE_PENDING", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kLearnerNotPromotable, "LEARNER_NOT_PROMOTABLE",
     absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kStopped, "STOPPED", absl::StatusCode::kUnavailable},
    {ErrorCode::kUserEmpty, "USER_EMPTY", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kUserNotFound, "USER_NOT_FOUND", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kUserExists, "USER_EXISTS", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kRoleEmpty, "ROLE_EMPTY", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kRoleNotFound, "ROLE_NOT_FOUND", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kRoleExists, "ROLE_EXISTS", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kAuthFailed, "AUTH_FAILED", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kPermissionDenied, "PERMISSION_DENIED", absl::StatusCode::kPermissionDenied},
    {ErrorCode::kRoleNotGranted, "ROLE_NOT_GRANTED", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kPermissionNotGranted, "PERMISSION_NOT_GRANTED",
     absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kAuthNotEnabled, "AUTH_NOT_ENABLED", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kInvalidAuthToken, "INVALID_AUTH_TOKEN", absl::StatusCode::kUnauthenticated},
    {ErrorCode::kInvalidAuthMgmt, "INVALID_AUTH_MGMT", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kAuthOldRevision, "AUTH_OLD_REVISION", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kRootUserNotExist, "ROOT_USER_NOT_EXIST", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kRootRoleNotExist, "ROOT_ROLE_NOT_EXIST", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::kTooManyRequests, "TOO_MANY_REQUESTS", absl::StatusCode::kResourceExhausted},
    {ErrorCode::kLeaderTransferTimeout, "LEADER_TRANSFER_TIMEOUT", absl::StatusCode::kUnavailable},
    {ErrorCode::kValueProvided, "VALUE_PROVIDED", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kLeaseProvided, "LEASE_PROVIDED", absl::StatusCode::kInvalidArgument},
    {ErrorCode::kMemberRemoved, "MEMBER_REMOVED", absl::StatusCode::kFailedPrecondition},
};

// etcd v3.4 etcdserver/api/v3rpc/rpctypes/error.go, word for word.
struct AuthMessage {
  ErrorCode code;
  absl::string_view message;
};

constexpr AuthMessage kAuthMessages[] = {
    {ErrorCode::kUserEmpty, "etcdserver: user name is empty"},
    {ErrorCode::kUserNotFound, "etcdserver: user name not found"},
    {ErrorCode::kUserExists, "etcdserver: user name already exists"},
    {ErrorCode::kRoleEmpty, "etcdserver: role name is empty"},
    {ErrorCode::kRoleNotFound, "etcdserver: role name not found"},
    {ErrorCode::kRoleExists, "etcdserver: role name already exists"},
    {ErrorCode::kAuthFailed, "etcdserver: authentication failed, invalid user ID or password"},
    {ErrorCode::kPermissionDenied, "etcdserver: permission denied"},
    {ErrorCode::kRoleNotGranted, "etcdserver: role is not granted to the user"},
    {ErrorCode::kPermissionNotGranted, "etcdserver: permission is not granted to the role"},
    {ErrorCode::kAuthNotEnabled, "etcdserver: authentication is not enabled"},
    {ErrorCode::kInvalidAuthToken, "etcdserver: invalid auth token"},
    {ErrorCode::kInvalidAuthMgmt, "etcdserver: invalid auth management"},
    {ErrorCode::kAuthOldRevision, "etcdserver: revision of auth store is old"},
    {ErrorCode::kRootUserNotExist, "etcdserver: root user does not exist"},
    {ErrorCode::kRootRoleNotExist, "etcdserver: root user does not have root role"},
};

const CodeInfo* Find(ErrorCode code) {
  for (const CodeInfo& info : kCodes) {
    if (info.code == code) return &info;
  }
  return nullptr;
}

}  // namespace

absl::string_view EtcdAuthMessage(ErrorCode code) {
  for (const AuthMessage& entry : kAuthMessages) {
    if (entry.code == code) return entry.message;
  }
  return "";
}

absl::Status AuthError(ErrorCode code) { return Error(code, EtcdAuthMessage(code)); }

absl::string_view ErrorCodeName(ErrorCode code) {
  const CodeInfo* info = Find(code);
  return info == nullptr ? "UNKNOWN" : info->name;
}

ErrorCode ErrorCodeFromName(absl::string_view name) {
  for (const CodeInfo& info : kCodes) {
    if (info.name == name) return info.code;
  }
  return ErrorCode::kInvalidArgument;
}

absl::Status Error(ErrorCode code, absl::string_view message) {
  const CodeInfo* info = Find(code);
  if (info == nullptr || code == ErrorCode::kOk) return absl::OkStatus();
  absl::Status status(info->canonical, absl::StrCat(info->name, ": ", message));
  status.SetPayload(kPayloadUrl, absl::Cord(info->name));
  return status;
}

ErrorCode CodeOf(const absl::Status& status) {
  if (status.ok()) return ErrorCode::kOk;
  auto payload = status.GetPayload(kPayloadUrl);
  if (!payload.has_value()) return ErrorCode::kInvalidArgument;
  return ErrorCodeFromName(std::string(*payload));
}

}  // namespace kvstore
