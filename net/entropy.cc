#include "net/entropy.h"

#include <sys/random.h>

#include <cerrno>

#include "core/auth/password.h"
#include "core/raft/check.h"

namespace kvstore::net {

std::string AuthEntropy() {
  std::string bytes(auth::kSaltBytes, '\0');
  size_t filled = 0;
  while (filled < bytes.size()) {
    const ssize_t n = getrandom(bytes.data() + filled, bytes.size() - filled, 0);
    RAFT_CHECK(n > 0 || errno == EINTR) << "getrandom failed: errno " << errno;
    if (n > 0) filled += static_cast<size_t>(n);
  }
  return bytes;
}

void AddAuthEntropy(server::Request* request) {
  if (request->type == server::RequestType::kUserAdd ||
      request->type == server::RequestType::kUserChangePassword ||
      request->type == server::RequestType::kAuthenticate) {
    request->auth.entropy = AuthEntropy();
  }
}

}  // namespace kvstore::net
