#include "core/auth/password.h"

#include <crypt.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"

namespace kvstore::auth {

absl::StatusOr<std::string> HashPassword(absl::string_view password, absl::string_view salt_bytes,
                                         int cost) {
  if (salt_bytes.size() < kSaltBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("password hash: ", salt_bytes.size(), " salt bytes, ", kSaltBytes, " needed"));
  }
  if (cost < kMinBcryptCost || cost > kMaxBcryptCost) {
    return absl::InvalidArgumentError(absl::StrCat("password hash: bcrypt cost ", cost,
                                                   " is outside [", kMinBcryptCost, ", ",
                                                   kMaxBcryptCost, "]"));
  }
  if (password.size() > kMaxPasswordBytes || password.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("password of ", password.size(),
                                                   " bytes: bcrypt takes at most ",
                                                   kMaxPasswordBytes, " bytes and no NUL"));
  }
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2b$", static_cast<unsigned long>(cost), salt_bytes.data(),
                       static_cast<int>(kSaltBytes), setting, sizeof(setting)) == nullptr) {
    return absl::InternalError("password hash: crypt_gensalt_rn refused the salt");
  }
  // crypt_data is 32 KiB: on the heap, not the stack.
  auto data = std::make_unique<crypt_data>();
  const std::string text(password);
  const char* hash = crypt_r(text.c_str(), setting, data.get());
  if (hash == nullptr || hash[0] == '*') {
    return absl::InternalError("password hash: crypt_r failed");
  }
  return std::string(hash);
}

bool VerifyPassword(absl::string_view password, absl::string_view hash) {
  if (hash.empty() || password.size() > kMaxPasswordBytes ||
      password.find('\0') != absl::string_view::npos) {
    return false;
  }
  auto data = std::make_unique<crypt_data>();
  const std::string text(password);
  const std::string setting(hash);
  const char* computed = crypt_r(text.c_str(), setting.c_str(), data.get());
  if (computed == nullptr || computed[0] == '*') return false;
  const absl::string_view result(computed);
  if (result.size() != hash.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < hash.size(); ++i) {
    difference |= static_cast<unsigned char>(result[i] ^ hash[i]);
  }
  return difference == 0;
}

}  // namespace kvstore::auth
