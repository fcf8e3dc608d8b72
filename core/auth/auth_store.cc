#include "core/auth/auth_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/auth/password.h"
#include "core/base/encoding.h"
#include "core/base/errors.h"

namespace kvstore::auth {
namespace {

constexpr absl::string_view kEnabledKey = "auth/enabled";
constexpr absl::string_view kRevisionKey = "auth/revision";
constexpr absl::string_view kUserPrefix = "auth/user/";
constexpr absl::string_view kRolePrefix = "auth/role/";

std::string PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  end.back() = static_cast<char>(end.back() + 1);
  return end;
}

std::string EncodeUser(const User& user) {
  std::string out;
  PutLengthPrefixed(&out, user.password_hash);
  PutVarint(&out, user.roles.size());
  for (const std::string& role : user.roles) PutLengthPrefixed(&out, role);
  return out;
}

bool DecodeUser(absl::string_view name, absl::string_view in, User* user) {
  user->name = std::string(name);
  absl::string_view hash;
  uint64_t count = 0;
  if (!GetLengthPrefixed(&in, &hash) || !GetVarint(&in, &count)) return false;
  user->password_hash = std::string(hash);
  for (uint64_t i = 0; i < count; ++i) {
    absl::string_view role;
    if (!GetLengthPrefixed(&in, &role)) return false;
    user->roles.emplace_back(role);
  }
  return in.empty();
}

std::string EncodeRole(const Role& role) {
  std::string out;
  PutVarint(&out, role.permissions.size());
  for (const Permission& p : role.permissions) {
    out.push_back(static_cast<char>(p.type));
    PutLengthPrefixed(&out, p.key);
    PutLengthPrefixed(&out, p.range_end);
  }
  return out;
}

bool DecodeRole(absl::string_view name, absl::string_view in, Role* role) {
  role->name = std::string(name);
  uint64_t count = 0;
  if (!GetVarint(&in, &count)) return false;
  for (uint64_t i = 0; i < count; ++i) {
    if (in.empty()) return false;
    Permission p;
    const uint8_t type = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    if (type > static_cast<uint8_t>(PermissionType::kReadWrite)) return false;
    p.type = static_cast<PermissionType>(type);
    absl::string_view key, end;
    if (!GetLengthPrefixed(&in, &key) || !GetLengthPrefixed(&in, &end)) return false;
    p.key = std::string(key);
    p.range_end = std::string(end);
    role->permissions.push_back(std::move(p));
  }
  return in.empty();
}

bool Grants(PermissionType have, PermissionType need) {
  return have == PermissionType::kReadWrite || have == need;
}

// The interval [begin, end) named by etcd's (key, range_end); end nullopt: no upper bound.
std::pair<std::string, std::optional<std::string>> ToInterval(const std::string& key,
                                                              const std::string& range_end) {
  if (range_end.empty()) return {key, key + std::string(1, '\0')};
  if (range_end == std::string(1, '\0')) return {key, std::nullopt};
  return {key, range_end};
}

// a < b for interval ends, nullopt being +infinity.
bool EndLess(const std::optional<std::string>& a, const std::optional<std::string>& b) {
  if (!a.has_value()) return false;
  if (!b.has_value()) return true;
  return *a < *b;
}

template <typename Interval>
std::vector<Interval> Unify(std::vector<Interval> in) {
  std::sort(in.begin(), in.end(),
            [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
  std::vector<Interval> out;
  for (Interval& next : in) {
    // Empty or inverted intervals cover nothing.
    if (next.end.has_value() && *next.end <= next.begin) continue;
    if (!out.empty() && (!out.back().end.has_value() || next.begin <= *out.back().end)) {
      if (EndLess(out.back().end, next.end)) out.back().end = std::move(next.end);
      continue;
    }
    out.push_back(std::move(next));
  }
  return out;
}

template <typename Interval>
bool Covers(const std::vector<Interval>& unified, const std::string& key,
            const std::string& range_end) {
  auto [begin, end] = ToInterval(key, range_end);
  if (end.has_value() && *end <= begin) return true;  // an empty request range asks for nothing
  // The last interval starting at or before `begin` must reach past `end`: unified intervals
  // are disjoint and not adjacent, so no other one can continue it.
  auto it = std::upper_bound(unified.begin(), unified.end(), begin,
                             [](const std::string& k, const Interval& i) { return k < i.begin; });
  if (it == unified.begin()) return false;
  --it;
  return !EndLess(it->end, end);
}

struct PlainInterval {
  std::string begin;
  std::optional<std::string> end;
};

}  // namespace

bool RangeCovered(const std::string& key, const std::string& range_end,
                  const std::vector<Permission>& permissions, PermissionType type) {
  std::vector<PlainInterval> intervals;
  for (const Permission& p : permissions) {
    if (!Grants(p.type, type)) continue;
    auto [begin, end] = ToInterval(p.key, p.range_end);
    intervals.push_back(PlainInterval{std::move(begin), std::move(end)});
  }
  return Covers(Unify(std::move(intervals)), key, range_end);
}

absl::Status AuthStore::Restore() {
  users_.clear();
  roles_.clear();
  InvalidateCache();
  enabled_ = backend_->Get(mvcc::Bucket::kMeta, kEnabledKey).value_or("") == "1";
  revision_ = 0;
  if (auto stored = backend_->Get(mvcc::Bucket::kMeta, kRevisionKey); stored.has_value()) {
    absl::string_view in = *stored;
    if (!GetFixed64BigEndian(&in, &revision_) || !in.empty()) {
      return absl::DataLossError("auth: corrupt revision record");
    }
  }
  absl::Status corrupt;
  backend_->Range(mvcc::Bucket::kMeta, kUserPrefix, PrefixEnd(kUserPrefix),
                  [&](absl::string_view key, absl::string_view value) {
                    User user;
                    key.remove_prefix(kUserPrefix.size());
                    if (!DecodeUser(key, value, &user)) {
                      corrupt = absl::DataLossError(absl::StrCat("auth: corrupt user ", key));
                      return false;
                    }
                    users_[user.name] = std::move(user);
                    return true;
                  });
  if (!corrupt.ok()) return corrupt;
  backend_->Range(mvcc::Bucket::kMeta, kRolePrefix, PrefixEnd(kRolePrefix),
                  [&](absl::string_view key, absl::string_view value) {
                    Role role;
                    key.remove_prefix(kRolePrefix.size());
                    if (!DecodeRole(key, value, &role)) {
                      corrupt = absl::DataLossError(absl::StrCat("auth: corrupt role ", key));
                      return false;
                    }
                    roles_[role.name] = std::move(role);
                    return true;
                  });
  if (!corrupt.ok()) return corrupt;
  // etcd's NewAuthStore: a fresh store starts at revision 1, so revision 0 always means "no
  // identity". Written by every member alike when it first opens its backend.
  if (revision_ == 0) CommitRevision();
  return absl::OkStatus();
}

void AuthStore::CommitRevision() {
  ++revision_;
  std::string value;
  PutFixed64BigEndian(&value, revision_);
  backend_->Put(mvcc::Bucket::kMeta, kRevisionKey, value);
}

void AuthStore::PersistUser(const User& user) {
  backend_->Put(mvcc::Bucket::kMeta, absl::StrCat(kUserPrefix, user.name), EncodeUser(user));
}

void AuthStore::PersistRole(const Role& role) {
  backend_->Put(mvcc::Bucket::kMeta, absl::StrCat(kRolePrefix, role.name), EncodeRole(role));
}

absl::Status AuthStore::Enable() {
  if (enabled_) return absl::OkStatus();  // etcd: enabling twice is not an error
  auto root = users_.find(std::string(kRootUser));
  if (root == users_.end()) return AuthError(ErrorCode::kRootUserNotExist);
  if (!std::binary_search(root->second.roles.begin(), root->second.roles.end(),
                          std::string(kRootRole))) {
    return AuthError(ErrorCode::kRootRoleNotExist);
  }
  enabled_ = true;
  backend_->Put(mvcc::Bucket::kMeta, kEnabledKey, "1");
  InvalidateCache();
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::Disable() {
  if (!enabled_) return absl::OkStatus();
  enabled_ = false;
  backend_->Put(mvcc::Bucket::kMeta, kEnabledKey, "0");
  InvalidateCache();
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::UserAdd(const std::string& name, const std::string& password_hash) {
  if (name.empty()) return AuthError(ErrorCode::kUserEmpty);
  if (users_.count(name) > 0) return AuthError(ErrorCode::kUserExists);
  User user;
  user.name = name;
  user.password_hash = password_hash;
  PersistUser(user);
  users_[name] = std::move(user);
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::UserDelete(const std::string& name) {
  if (enabled_ && name == kRootUser) return AuthError(ErrorCode::kInvalidAuthMgmt);
  auto it = users_.find(name);
  if (it == users_.end()) return AuthError(ErrorCode::kUserNotFound);
  backend_->Delete(mvcc::Bucket::kMeta, absl::StrCat(kUserPrefix, name));
  users_.erase(it);
  InvalidateCache();
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::UserChangePassword(const std::string& name,
                                           const std::string& password_hash) {
  auto it = users_.find(name);
  if (it == users_.end()) return AuthError(ErrorCode::kUserNotFound);
  it->second.password_hash = password_hash;
  PersistUser(it->second);
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::UserGrantRole(const std::string& name, const std::string& role) {
  auto it = users_.find(name);
  if (it == users_.end()) return AuthError(ErrorCode::kUserNotFound);
  if (role != kRootRole && roles_.count(role) == 0) return AuthError(ErrorCode::kRoleNotFound);
  std::vector<std::string>& roles = it->second.roles;
  auto at = std::lower_bound(roles.begin(), roles.end(), role);
  if (at != roles.end() && *at == role) return absl::OkStatus();  // etcd: already granted is OK
  roles.insert(at, role);
  PersistUser(it->second);
  InvalidateCache();
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::UserRevokeRole(const std::string& name, const std::string& role) {
  if (enabled_ && name == kRootUser && role == kRootRole) {
    return AuthError(ErrorCode::kInvalidAuthMgmt);
  }
  auto it = users_.find(name);
  if (it == users_.end()) return AuthError(ErrorCode::kUserNotFound);
  std::vector<std::string>& roles = it->second.roles;
  auto at = std::lower_bound(roles.begin(), roles.end(), role);
  if (at == roles.end() || *at != role) return AuthError(ErrorCode::kRoleNotGranted);
  roles.erase(at);
  PersistUser(it->second);
  InvalidateCache();
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::RoleAdd(const std::string& name) {
  if (name.empty()) return AuthError(ErrorCode::kRoleEmpty);
  if (roles_.count(name) > 0) return AuthError(ErrorCode::kRoleExists);
  Role role;
  role.name = name;
  PersistRole(role);
  roles_[name] = std::move(role);
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::RoleDelete(const std::string& name) {
  if (enabled_ && name == kRootRole) return AuthError(ErrorCode::kInvalidAuthMgmt);
  auto it = roles_.find(name);
  if (it == roles_.end()) return AuthError(ErrorCode::kRoleNotFound);
  backend_->Delete(mvcc::Bucket::kMeta, absl::StrCat(kRolePrefix, name));
  roles_.erase(it);
  // etcd: the role is revoked from every user that held it.
  for (auto& [user_name, user] : users_) {
    auto at = std::lower_bound(user.roles.begin(), user.roles.end(), name);
    if (at == user.roles.end() || *at != name) continue;
    user.roles.erase(at);
    PersistUser(user);
  }
  InvalidateCache();
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::RoleGrantPermission(const std::string& role_name,
                                            const Permission& permission) {
  auto it = roles_.find(role_name);
  if (it == roles_.end()) return AuthError(ErrorCode::kRoleNotFound);
  std::vector<Permission>& perms = it->second.permissions;
  auto at = std::lower_bound(perms.begin(), perms.end(), permission,
                             [](const Permission& a, const Permission& b) {
                               return std::tie(a.key, a.range_end) < std::tie(b.key, b.range_end);
                             });
  if (at != perms.end() && at->key == permission.key && at->range_end == permission.range_end) {
    at->type = permission.type;  // etcd: granting the same range again replaces its type
  } else {
    perms.insert(at, permission);
  }
  PersistRole(it->second);
  InvalidateCache();
  CommitRevision();
  return absl::OkStatus();
}

absl::Status AuthStore::RoleRevokePermission(const std::string& role_name, const std::string& key,
                                             const std::string& range_end) {
  auto it = roles_.find(role_name);
  if (it == roles_.end()) return AuthError(ErrorCode::kRoleNotFound);
  std::vector<Permission>& perms = it->second.permissions;
  auto at = std::find_if(perms.begin(), perms.end(), [&](const Permission& p) {
    return p.key == key && p.range_end == range_end;
  });
  if (at == perms.end()) return AuthError(ErrorCode::kPermissionNotGranted);
  perms.erase(at);
  PersistRole(it->second);
  InvalidateCache();
  CommitRevision();
  return absl::OkStatus();
}

absl::StatusOr<User> AuthStore::GetUser(const std::string& name) const {
  auto it = users_.find(name);
  if (it == users_.end()) return AuthError(ErrorCode::kUserNotFound);
  User user = it->second;
  user.password_hash.clear();
  return user;
}

absl::StatusOr<Role> AuthStore::GetRole(const std::string& name) const {
  auto it = roles_.find(name);
  if (it != roles_.end()) return it->second;
  if (name == kRootRole) return Role{std::string(kRootRole), {}};
  return AuthError(ErrorCode::kRoleNotFound);
}

std::vector<std::string> AuthStore::UserNames() const {
  std::vector<std::string> out;
  for (const auto& [name, user] : users_) out.push_back(name);
  return out;
}

std::vector<std::string> AuthStore::RoleNames() const {
  std::vector<std::string> out;
  for (const auto& [name, role] : roles_) out.push_back(name);
  return out;
}

bool AuthStore::HasRole(const std::string& user, const std::string& role) const {
  auto it = users_.find(user);
  return it != users_.end() &&
         std::binary_search(it->second.roles.begin(), it->second.roles.end(), role);
}

absl::Status AuthStore::CheckPassword(const std::string& name, const std::string& password) const {
  auto it = users_.find(name);
  if (it == users_.end() || !VerifyPassword(password, it->second.password_hash)) {
    return AuthError(ErrorCode::kAuthFailed);
  }
  return absl::OkStatus();
}

const AuthStore::PermittedRanges& AuthStore::RangesOf(const User& user) const {
  auto cached = cache_.find(user.name);
  if (cached != cache_.end()) return cached->second;
  std::vector<Interval> read, write;
  for (const std::string& role_name : user.roles) {
    auto role = roles_.find(role_name);
    if (role == roles_.end()) continue;
    for (const Permission& p : role->second.permissions) {
      auto [begin, end] = ToInterval(p.key, p.range_end);
      if (Grants(p.type, PermissionType::kRead)) read.push_back(Interval{begin, end});
      if (Grants(p.type, PermissionType::kWrite)) write.push_back(Interval{begin, end});
    }
  }
  PermittedRanges ranges;
  ranges.read = Unify(std::move(read));
  ranges.write = Unify(std::move(write));
  return cache_.emplace(user.name, std::move(ranges)).first->second;
}

absl::Status AuthStore::IsOpPermitted(const AuthInfo& who, const std::string& key,
                                      const std::string& range_end, PermissionType type) const {
  if (!enabled_) return absl::OkStatus();
  if (who.revision == 0 || who.user.empty()) return AuthError(ErrorCode::kUserEmpty);
  if (who.revision < revision_) return AuthError(ErrorCode::kAuthOldRevision);
  auto it = users_.find(who.user);
  if (it == users_.end()) return AuthError(ErrorCode::kPermissionDenied);
  if (std::binary_search(it->second.roles.begin(), it->second.roles.end(),
                         std::string(kRootRole))) {
    return absl::OkStatus();
  }
  const PermittedRanges& ranges = RangesOf(it->second);
  const std::vector<Interval>& permitted =
      type == PermissionType::kRead ? ranges.read : ranges.write;
  if (Covers(permitted, key, range_end)) return absl::OkStatus();
  return AuthError(ErrorCode::kPermissionDenied);
}

absl::Status AuthStore::IsRangePermitted(const AuthInfo& who, const std::string& key,
                                         const std::string& range_end) const {
  return IsOpPermitted(who, key, range_end, PermissionType::kRead);
}

absl::Status AuthStore::IsPutPermitted(const AuthInfo& who, const std::string& key) const {
  return IsOpPermitted(who, key, "", PermissionType::kWrite);
}

absl::Status AuthStore::IsDeleteRangePermitted(const AuthInfo& who, const std::string& key,
                                               const std::string& range_end) const {
  return IsOpPermitted(who, key, range_end, PermissionType::kWrite);
}

absl::Status AuthStore::IsAdminPermitted(const AuthInfo& who) const {
  if (!enabled_) return absl::OkStatus();
  if (who.user.empty()) return AuthError(ErrorCode::kUserEmpty);
  auto it = users_.find(who.user);
  if (it == users_.end()) return AuthError(ErrorCode::kUserNotFound);
  if (!std::binary_search(it->second.roles.begin(), it->second.roles.end(),
                          std::string(kRootRole))) {
    return AuthError(ErrorCode::kPermissionDenied);
  }
  return absl::OkStatus();
}

}  // namespace kvstore::auth
