#ifndef KVSTORE_CORE_AUTH_AUTH_STORE_H_
#define KVSTORE_CORE_AUTH_AUTH_STORE_H_

// etcd's auth store (etcd/auth/store.go), pure: users, roles, key-range permissions, whether
// auth is enabled, and the auth revision. It is replicated state: every mutation is applied
// from the Raft log on every member, persisted in the backend's meta bucket (so it is part of
// the backend snapshot a lagging member receives, and survives restarts like the MVCC store and
// the leases), and bumps the revision by one.
//
// Rules, as etcd v3.4:
//   - The root role grants everything. Role "root" need not be added to be granted: the name
//     itself is the role (it may also be added, holding no permissions).
//   - Enable is refused unless user "root" exists (ErrRootUserNotExist) and holds role "root"
//     (ErrRootRoleNotExist). While enabled, user root cannot be deleted nor lose role root, and
//     role root cannot be deleted (ErrInvalidAuthMgmt).
//   - A permission covers one key (range_end empty), [key, range_end), or every key from key on
//     (range_end "\0"); a prefix is [prefix, PrefixEnd(prefix)). A request is permitted when
//     the union of the user's permissions of the needed type covers the whole requested range.
//   - While auth is disabled every check passes. While enabled, a request without a user is
//     refused (ErrUserEmpty) and one made at an auth revision older than the store's is refused
//     (ErrAuthOldRevision): its permissions were decided against a state that has changed, and
//     the client retries with a fresh identity.
//
// Checks read a per-user cache of the unified permitted ranges (etcd's rangePermCache); every
// mutation that can change what anyone may do drops the cache (InvalidateCache).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/mvcc/backend.h"

namespace kvstore::auth {

inline constexpr absl::string_view kRootUser = "root";
inline constexpr absl::string_view kRootRole = "root";
// Auth records live in the meta bucket under this prefix.
inline constexpr absl::string_view kMetaAuthPrefix = "auth/";

// etcd authpb.Permission_Type numbering.
enum class PermissionType : uint8_t { kRead = 0, kWrite = 1, kReadWrite = 2 };

struct Permission {
  PermissionType type = PermissionType::kRead;
  std::string key;
  std::string range_end;  // empty: one key; "\0": from key on
  bool operator==(const Permission& o) const {
    return type == o.type && key == o.key && range_end == o.range_end;
  }
};

struct Role {
  std::string name;
  std::vector<Permission> permissions;  // sorted by (key, range_end)
};

struct User {
  std::string name;
  std::string password_hash;       // bcrypt; never leaves the core in a response
  std::vector<std::string> roles;  // sorted
};

// Who makes a request, and at which auth revision its permissions were decided (etcd AuthInfo).
// revision 0 with an empty user: no identity.
struct AuthInfo {
  std::string user;
  uint64_t revision = 0;
};

class AuthStore {
 public:
  // `backend` (not owned) holds the records (meta bucket, kMetaAuthPrefix).
  explicit AuthStore(mvcc::Backend* backend) : backend_(backend) {}

  // Reads the records back (after the backend was opened or replaced by a snapshot). A fresh
  // backend starts at revision 1, as etcd's.
  absl::Status Restore();

  bool enabled() const { return enabled_; }
  uint64_t revision() const { return revision_; }

  // --- Replicated mutations (applied from the log). Each success bumps the revision. ---
  absl::Status Enable();
  absl::Status Disable();
  absl::Status UserAdd(const std::string& name, const std::string& password_hash);
  absl::Status UserDelete(const std::string& name);
  absl::Status UserChangePassword(const std::string& name, const std::string& password_hash);
  absl::Status UserGrantRole(const std::string& name, const std::string& role);
  absl::Status UserRevokeRole(const std::string& name, const std::string& role);
  absl::Status RoleAdd(const std::string& name);
  absl::Status RoleDelete(const std::string& name);
  absl::Status RoleGrantPermission(const std::string& role, const Permission& permission);
  absl::Status RoleRevokePermission(const std::string& role, const std::string& key,
                                    const std::string& range_end);

  // --- Reads ---
  absl::StatusOr<User> GetUser(const std::string& name) const;  // password_hash cleared
  absl::StatusOr<Role> GetRole(const std::string& name) const;
  std::vector<std::string> UserNames() const;
  std::vector<std::string> RoleNames() const;
  bool HasRole(const std::string& user, const std::string& role) const;
  // kAuthFailed unless the user exists and the password matches its hash (bcrypt: slow).
  absl::Status CheckPassword(const std::string& name, const std::string& password) const;

  // --- Checks (etcd IsRangePermitted / IsPutPermitted / IsDeleteRangePermitted /
  // IsAdminPermitted): OK, or kUserEmpty, kAuthOldRevision, kPermissionDenied. ---
  absl::Status IsRangePermitted(const AuthInfo& who, const std::string& key,
                                const std::string& range_end) const;
  absl::Status IsPutPermitted(const AuthInfo& who, const std::string& key) const;
  absl::Status IsDeleteRangePermitted(const AuthInfo& who, const std::string& key,
                                      const std::string& range_end) const;
  // Root role required (no revision check, as etcd's IsAdminPermitted); kUserNotFound if the
  // user is gone.
  absl::Status IsAdminPermitted(const AuthInfo& who) const;

 private:
  // [begin, end) with end nullopt for "to the last key".
  struct Interval {
    std::string begin;
    std::optional<std::string> end;
  };
  // A user's permitted ranges, unified (sorted, disjoint, not adjacent).
  struct PermittedRanges {
    std::vector<Interval> read;
    std::vector<Interval> write;
  };
  absl::Status IsOpPermitted(const AuthInfo& who, const std::string& key,
                             const std::string& range_end, PermissionType type) const;
  const PermittedRanges& RangesOf(const User& user) const;
  void InvalidateCache() { cache_.clear(); }
  void CommitRevision();
  void PersistUser(const User& user);
  void PersistRole(const Role& role);

  mvcc::Backend* backend_;
  bool enabled_ = false;
  uint64_t revision_ = 0;
  absl::btree_map<std::string, User> users_;
  absl::btree_map<std::string, Role> roles_;
  mutable absl::btree_map<std::string, PermittedRanges> cache_;
};

// The interval a request or permission names: range_end empty -> [key, key+"\0"), "\0" ->
// [key, end of keys), else [key, range_end).
bool RangeCovered(const std::string& key, const std::string& range_end,
                  const std::vector<Permission>& permissions, PermissionType type);

}  // namespace kvstore::auth

#endif  // KVSTORE_CORE_AUTH_AUTH_STORE_H_
