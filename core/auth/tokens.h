#ifndef KVSTORE_CORE_AUTH_TOKENS_H_
#define KVSTORE_CORE_AUTH_TOKENS_H_

// etcd's simple tokens: an opaque string handed out by Authenticate, naming a user, valid for a
// TTL that every use restarts (etcd's simpleTokenTTLKeeper; --auth-token-ttl, 300 s). The token
// is chosen by the proposing member before it proposes (from random bytes the node supplies, or
// from the seed), so every member assigns the same string when the Authenticate entry applies.
// Tokens live in memory on each member, as in etcd: a restarted member forgets them and a
// client authenticates again ("invalid auth token"). Time is ticks.
//
// JWT (etcd's --auth-token=jwt) is a TokenProvider the driver hands the server core instead:
// a signed token carrying the user and the auth revision at issue, which any member verifies
// without shared state. Signing and verifying need a key file and a clock, so the provider lives
// outside core/ (net/jwt.h); the core only calls the interface below.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/auth/auth_store.h"

namespace kvstore::auth {

// Live tokens per member at most; an Authenticate past it evicts the token closest to expiry.
inline constexpr size_t kMaxSimpleTokens = 1 << 16;
// Letters of a simple token before its ".<counter>" suffix (etcd: 16).
inline constexpr size_t kSimpleTokenLetters = 16;

// The token string etcd's simple token provider would make: 16 letters from `random_bytes`
// (at least 16 bytes), ".", and `counter` (etcd: the Raft index).
std::string SimpleTokenString(absl::string_view random_bytes, uint64_t counter);

// A stateless token provider (etcd's TokenProvider for "jwt"): used by the server core in place
// of SimpleTokens when the driver supplies one. Called on the member's thread.
class TokenProvider {
 public:
  virtual ~TokenProvider() = default;
  // A token naming `user` at auth revision `revision` (etcd tokenJWT.assign: the revision is
  // the store's when the Authenticate entry applies). Fails only when the provider cannot sign
  // (a verify-only key).
  virtual absl::StatusOr<std::string> Assign(const std::string& user, uint64_t revision) = 0;
  // The user and auth revision a valid token carries (etcd tokenJWT.info); nullopt for a token
  // that is malformed, wrongly signed or expired ("invalid auth token"). The core refuses one
  // whose revision is older than the store's (ErrAuthOldRevision).
  virtual std::optional<AuthInfo> Info(absl::string_view token) = 0;
};

class SimpleTokens {
 public:
  explicit SimpleTokens(uint64_t ttl_ticks) : ttl_ticks_(ttl_ticks) {}

  void Assign(const std::string& token, const std::string& user, uint64_t now_tick);
  // The token's user, restarting its TTL; nullopt when unknown or expired.
  std::optional<std::string> Lookup(const std::string& token, uint64_t now_tick);
  // Forgets the tokens whose TTL ran out (at most `limit`, oldest first).
  void Expire(uint64_t now_tick, size_t limit);
  // A deleted user or a changed password ends the user's sessions (etcd invalidateUser).
  void InvalidateUser(absl::string_view user);
  void Clear();
  size_t size() const { return tokens_.size(); }

 private:
  struct Entry {
    std::string user;
    uint64_t expiry_tick = 0;
  };
  void Erase(absl::btree_map<std::string, Entry>::iterator it);

  uint64_t ttl_ticks_;
  absl::btree_map<std::string, Entry> tokens_;
  std::set<std::pair<uint64_t, std::string>> by_expiry_;
};

}  // namespace kvstore::auth

#endif  // KVSTORE_CORE_AUTH_TOKENS_H_
