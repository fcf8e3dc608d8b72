#ifndef KVSTORE_NET_ENTROPY_H_
#define KVSTORE_NET_ENTROPY_H_

// Random bytes from the system for password salts and tokens. The core takes them as data (it is
// pure), so the RPC layers draw them where a request enters the member.

#include <string>

#include "core/server/server.h"

namespace kvstore::net {

// auth::kSaltBytes bytes from getrandom.
std::string AuthEntropy();

// Fills request->auth.entropy for the requests that hash a password or make a token.
void AddAuthEntropy(server::Request* request);

}  // namespace kvstore::net

#endif  // KVSTORE_NET_ENTROPY_H_
