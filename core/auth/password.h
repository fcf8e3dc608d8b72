#ifndef KVSTORE_CORE_AUTH_PASSWORD_H_
#define KVSTORE_CORE_AUTH_PASSWORD_H_

// Slow salted password hashes: bcrypt ("$2b$") through libxcrypt's crypt_r, as etcd hashes with
// bcrypt. Both functions are pure: libxcrypt's own salt generation reads the system's random
// source, so the salt's random bytes are an argument here. The proposing member hashes (the
// node supplies random bytes with the request; a test or the simulator derives them from its
// seed) and only the hash enters the Raft log; every member verifies against the stored hash.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvstore::auth {

// bcrypt's cost is log2 of its rounds: etcd uses bcrypt.DefaultCost = 10 (about 50 ms a hash);
// 4 is bcrypt's minimum, for tests and the simulator.
inline constexpr int kDefaultBcryptCost = 10;
inline constexpr int kMinBcryptCost = 4;
inline constexpr int kMaxBcryptCost = 31;
// bcrypt reads 16 random bytes of salt.
inline constexpr size_t kSaltBytes = 16;
// bcrypt uses the first 72 bytes of a password; longer ones are refused rather than truncated.
inline constexpr size_t kMaxPasswordBytes = 72;

// "$2b$<cost>$<salt><hash>". `salt_bytes` must hold kSaltBytes bytes (more are ignored).
absl::StatusOr<std::string> HashPassword(absl::string_view password, absl::string_view salt_bytes,
                                         int cost);
// True when `password` hashes to `hash` under the hash's own salt and cost (constant time
// comparison of the results).
bool VerifyPassword(absl::string_view password, absl::string_view hash);

}  // namespace kvstore::auth

#endif  // KVSTORE_CORE_AUTH_PASSWORD_H_
