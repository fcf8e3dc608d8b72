// The auth store alone: etcd v3.4's rules for users, roles, permissions, enable, and the checks.

#include <string>

#include "core/auth/auth_store.h"
#include "core/auth/password.h"
#include "core/auth/tokens.h"
#include "core/base/errors.h"
#include "core/mvcc/backend.h"
#include "gtest/gtest.h"

namespace kvstore::auth {
namespace {

const std::string kSalt = "0123456789abcdef";

Permission Perm(PermissionType type, std::string key, std::string range_end = "") {
  return Permission{type, std::move(key), std::move(range_end)};
}

TEST(PasswordTest, BcryptHashIsSaltedDeterministicAndVerifies) {
  auto hash = HashPassword("secret", kSalt, kMinBcryptCost);
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_EQ(hash->substr(0, 7), "$2b$04$");
  EXPECT_EQ(*hash, *HashPassword("secret", kSalt, kMinBcryptCost));
  EXPECT_NE(*hash, *HashPassword("secret", "fedcba9876543210", kMinBcryptCost));
  EXPECT_TRUE(VerifyPassword("secret", *hash));
  EXPECT_FALSE(VerifyPassword("Secret", *hash));
  EXPECT_FALSE(VerifyPassword("secret", ""));
  EXPECT_FALSE(HashPassword("secret", "short", kMinBcryptCost).ok());
  EXPECT_FALSE(HashPassword(std::string(73, 'x'), kSalt, kMinBcryptCost).ok());
}

TEST(TokensTest, TtlRestartsOnUseAndUsersAreInvalidated) {
  SimpleTokens tokens(10);
  const std::string token = SimpleTokenString("ABCDEFGHIJKLMNOP", 7);
  EXPECT_EQ(token.size(), kSimpleTokenLetters + 2);
  EXPECT_EQ(token.substr(kSimpleTokenLetters), ".7");
  tokens.Assign(token, "alice", 0);
  EXPECT_EQ(tokens.Lookup(token, 9).value_or(""), "alice");  // restarts: expires at 19
  EXPECT_EQ(tokens.Lookup(token, 18).value_or(""), "alice");
  tokens.Expire(27, 10);
  EXPECT_EQ(tokens.size(), 1u);
  tokens.Expire(28, 10);
  EXPECT_EQ(tokens.size(), 0u);
  tokens.Assign("t1", "alice", 0);
  tokens.Assign("t2", "bob", 0);
  tokens.InvalidateUser("alice");
  EXPECT_FALSE(tokens.Lookup("t1", 1).has_value());
  EXPECT_TRUE(tokens.Lookup("t2", 1).has_value());
}

TEST(AuthStoreTest, EnableNeedsRootUserWithRootRoleAndProtectsThem) {
  mvcc::MemoryBackend backend;
  AuthStore store(&backend);
  ASSERT_TRUE(store.Restore().ok());
  EXPECT_EQ(store.revision(), 1u);
  EXPECT_EQ(CodeOf(store.Enable()), ErrorCode::kRootUserNotExist);
  ASSERT_TRUE(store.UserAdd("root", "h").ok());
  EXPECT_EQ(store.Enable().message(),
            "ROOT_ROLE_NOT_EXIST: etcdserver: root user does not have root role");
  ASSERT_TRUE(store.UserGrantRole("root", "root").ok());  // role root need not be added
  ASSERT_TRUE(store.Enable().ok());
  EXPECT_TRUE(store.enabled());
  EXPECT_EQ(store.revision(), 4u);
  EXPECT_EQ(CodeOf(store.UserDelete("root")), ErrorCode::kInvalidAuthMgmt);
  EXPECT_EQ(CodeOf(store.UserRevokeRole("root", "root")), ErrorCode::kInvalidAuthMgmt);
  EXPECT_EQ(CodeOf(store.RoleDelete("root")), ErrorCode::kInvalidAuthMgmt);
  EXPECT_EQ(CodeOf(store.UserAdd("root", "h")), ErrorCode::kUserExists);
  EXPECT_EQ(CodeOf(store.UserAdd("", "h")), ErrorCode::kUserEmpty);
  EXPECT_EQ(CodeOf(store.RoleAdd("")), ErrorCode::kRoleEmpty);
  EXPECT_EQ(CodeOf(store.UserGrantRole("root", "nope")), ErrorCode::kRoleNotFound);
  EXPECT_EQ(CodeOf(store.UserRevokeRole("root", "nope")), ErrorCode::kRoleNotGranted);
  EXPECT_EQ(store.revision(), 4u);  // refusals change nothing
  ASSERT_TRUE(store.Disable().ok());
  EXPECT_EQ(store.revision(), 5u);
}

TEST(AuthStoreTest, KeyRangeAndPrefixPermissionsAreUnifiedAcrossRoles) {
  mvcc::MemoryBackend backend;
  AuthStore store(&backend);
  ASSERT_TRUE(store.Restore().ok());
  ASSERT_TRUE(store.UserAdd("root", "h").ok());
  ASSERT_TRUE(store.UserGrantRole("root", "root").ok());
  ASSERT_TRUE(store.UserAdd("u", "h").ok());
  ASSERT_TRUE(store.RoleAdd("a").ok());
  ASSERT_TRUE(store.RoleAdd("b").ok());
  ASSERT_TRUE(store.RoleGrantPermission("a", Perm(PermissionType::kRead, "k")).ok());
  ASSERT_TRUE(store.RoleGrantPermission("a", Perm(PermissionType::kReadWrite, "a", "c")).ok());
  ASSERT_TRUE(store.RoleGrantPermission("b", Perm(PermissionType::kWrite, "c", "e")).ok());
  ASSERT_TRUE(store.RoleGrantPermission("b", Perm(PermissionType::kRead, "p/", "p0")).ok());
  ASSERT_TRUE(store.RoleGrantPermission("b", Perm(PermissionType::kWrite, "z", {'\0'})).ok());
  ASSERT_TRUE(store.UserGrantRole("u", "a").ok());
  ASSERT_TRUE(store.UserGrantRole("u", "b").ok());
  ASSERT_TRUE(store.Enable().ok());
  const AuthInfo u{"u", store.revision()};
  EXPECT_TRUE(store.IsRangePermitted(u, "k", "").ok());
  EXPECT_EQ(CodeOf(store.IsPutPermitted(u, "k")), ErrorCode::kPermissionDenied);
  EXPECT_EQ(store.IsRangePermitted(u, "k", "l").message(),
            "PERMISSION_DENIED: etcdserver: permission denied");
  EXPECT_TRUE(store.IsPutPermitted(u, "b").ok());
  EXPECT_TRUE(store.IsDeleteRangePermitted(u, "a", "e").ok());  // [a,c) + [c,e) unified
  EXPECT_FALSE(store.IsDeleteRangePermitted(u, "a", "e\x01").ok());
  EXPECT_TRUE(store.IsRangePermitted(u, "p/x", "p/y").ok());
  EXPECT_FALSE(store.IsRangePermitted(u, "p", "p/y").ok());
  EXPECT_TRUE(store.IsPutPermitted(u, "zzz").ok());
  EXPECT_TRUE(store.IsDeleteRangePermitted(u, "z", std::string(1, '\0')).ok());
  EXPECT_FALSE(store.IsDeleteRangePermitted(u, "y", std::string(1, '\0')).ok());
  // Identity rules.
  EXPECT_EQ(CodeOf(store.IsRangePermitted(AuthInfo{}, "k", "")), ErrorCode::kUserEmpty);
  EXPECT_EQ(CodeOf(store.IsRangePermitted(AuthInfo{"u", store.revision() - 1}, "k", "")),
            ErrorCode::kAuthOldRevision);
  EXPECT_EQ(CodeOf(store.IsAdminPermitted(u)), ErrorCode::kPermissionDenied);
  EXPECT_TRUE(store.IsAdminPermitted(AuthInfo{"root", 1}).ok());
  EXPECT_TRUE(store.IsPutPermitted(AuthInfo{"root", store.revision()}, "anything").ok());
  // A revoked permission is gone at the next check, cache or not.
  ASSERT_TRUE(store.RoleRevokePermission("a", "k", "").ok());
  EXPECT_FALSE(store.IsRangePermitted(AuthInfo{"u", store.revision()}, "k", "").ok());
  EXPECT_EQ(CodeOf(store.RoleRevokePermission("a", "k", "")), ErrorCode::kPermissionNotGranted);
  // Deleting a role revokes it from its users.
  ASSERT_TRUE(store.RoleDelete("b").ok());
  EXPECT_EQ(store.GetUser("u")->roles, std::vector<std::string>{"a"});
}

TEST(AuthStoreTest, RestoreReadsBackEverything) {
  mvcc::MemoryBackend backend;
  {
    AuthStore store(&backend);
    ASSERT_TRUE(store.Restore().ok());
    ASSERT_TRUE(store.UserAdd("root", "hash").ok());
    ASSERT_TRUE(store.UserGrantRole("root", "root").ok());
    ASSERT_TRUE(store.RoleAdd("r").ok());
    ASSERT_TRUE(store.RoleGrantPermission("r", Perm(PermissionType::kWrite, "x", "y")).ok());
    ASSERT_TRUE(store.Enable().ok());
  }
  AuthStore store(&backend);
  ASSERT_TRUE(store.Restore().ok());
  EXPECT_TRUE(store.enabled());
  EXPECT_EQ(store.revision(), 6u);
  EXPECT_EQ(store.UserNames(), std::vector<std::string>{"root"});
  EXPECT_EQ(store.GetRole("r")->permissions.size(), 1u);
  EXPECT_EQ(store.GetRole("r")->permissions[0], Perm(PermissionType::kWrite, "x", "y"));
  EXPECT_TRUE(store.GetUser("root")->password_hash.empty());  // never handed out
}

TEST(RangeCoveredTest, AgreesWithTheCachedCheck) {
  std::vector<Permission> perms = {Perm(PermissionType::kReadWrite, "a", "b"),
                                   Perm(PermissionType::kRead, "b", "c")};
  EXPECT_TRUE(RangeCovered("a", "c", perms, PermissionType::kRead));
  EXPECT_FALSE(RangeCovered("a", "c", perms, PermissionType::kWrite));
  EXPECT_TRUE(RangeCovered("a", "", perms, PermissionType::kWrite));
}

}  // namespace
}  // namespace kvstore::auth
