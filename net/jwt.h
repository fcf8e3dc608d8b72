#ifndef KVSTORE_NET_JWT_H_
#define KVSTORE_NET_JWT_H_

// etcd's JWT auth tokens (--auth-token=jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>,
// ttl=<duration>), signed and verified with OpenSSL. The server core stays pure: it calls
// auth::TokenProvider, which this implements with the key files and the wall clock.
//
// A token is etcd's (auth/jwt.go): the header {"alg":<method>,"typ":"JWT"} and the claims
// {"exp":<unix seconds>,"revision":<auth revision at issue>,"username":<user>}, each base64url
// without padding, then the signature over "<header>.<claims>". Any member with the public key
// verifies any member's token: JWT is stateless, unlike simple tokens. A token is refused (the
// core answers "etcdserver: invalid auth token") when it is malformed, signed with another
// method or key, or expired; one whose revision is older than the auth store's is refused by the
// core as old ("etcdserver: revision of auth store is old").
//
// Sign methods, as etcd's jwt-go: RS256/384/512 (RSA PKCS#1 v1.5), PS256/384/512 (RSA-PSS),
// ES256/384/512 (ECDSA on P-256/P-384/P-521; the signature is R||S), HS256/384/512 (HMAC with
// the priv-key file's bytes as the secret). PEM keys: PKCS#1, SEC1 or PKCS#8 private keys; PKIX
// public keys or a certificate. With only pub-key the provider verifies but cannot issue
// (etcd's verify-only mode).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/auth/tokens.h"

namespace kvstore::net {

// etcd's auth.DefaultTTL for JWTs (the ttl option; --auth-token-ttl is for simple tokens).
inline constexpr int64_t kDefaultJwtTtlSeconds = 5 * 60;
// Longer tokens are refused before any decoding (etcd's tokens are a few hundred bytes).
inline constexpr size_t kMaxJwtBytes = 8 * 1024;

// The value of --auth-token: "simple" (the default) or "jwt,<option>=<value>,...". Errors are
// etcd's "invalid auth options" with what was wrong; key files are not read here.
struct AuthTokenOptions {
  bool jwt = false;
  std::string public_key_file;   // pub-key
  std::string private_key_file;  // priv-key
  std::string sign_method;       // sign-method (required for jwt)
  int64_t ttl_seconds = kDefaultJwtTtlSeconds;
};
absl::StatusOr<AuthTokenOptions> ParseAuthTokenOptions(absl::string_view text);

class JwtProvider final : public auth::TokenProvider {
 public:
  // Seconds since the Unix epoch (the wall clock by default; tests pass their own).
  using Clock = std::function<int64_t()>;

  // Reads the key files of `options` (options.jwt must be set). Errors name the option, the file
  // and what was wrong (unreadable, not a key, the wrong kind of key, keys that do not match).
  static absl::StatusOr<std::unique_ptr<JwtProvider>> Create(const AuthTokenOptions& options,
                                                             Clock now = nullptr);
  // The same from PEM text (or the HMAC secret as private_pem); either may be empty, not both.
  static absl::StatusOr<std::unique_ptr<JwtProvider>> FromPem(absl::string_view sign_method,
                                                              const std::string& private_pem,
                                                              const std::string& public_pem,
                                                              int64_t ttl_seconds,
                                                              Clock now = nullptr);
  ~JwtProvider() override;

  absl::StatusOr<std::string> Assign(const std::string& user, uint64_t revision) override;
  std::optional<auth::AuthInfo> Info(absl::string_view token) override;

  // The token's user and revision, or why it is refused (for logs and tests); Info is this
  // without the why.
  absl::StatusOr<auth::AuthInfo> Verify(absl::string_view token) const;

 private:
  struct Keys;
  JwtProvider(std::unique_ptr<Keys> keys, int64_t ttl_seconds, Clock now);

  std::unique_ptr<Keys> keys_;
  int64_t ttl_seconds_;
  Clock now_;
};

}  // namespace kvstore::net

#endif  // KVSTORE_NET_JWT_H_
