#ifndef KVSTORE_NET_PREFIXED_STREAM_H_
#define KVSTORE_NET_PREFIXED_STREAM_H_

#include <algorithm>
#include <cstring>

#include "kj/async-io.h"
#include "net/forwarding_stream.h"

namespace kvstore::net {

// A stream whose first bytes were already read (to tell one protocol from another: the client
// port sniffs Cap'n Proto, gRPC and HTTP, the peer port a Raft stream from RPC): they are
// read again first.
class PrefixedStream final : public ForwardingStream {
 public:
  PrefixedStream(kj::Own<kj::AsyncIoStream> inner, kj::Array<kj::byte> prefix)
      : ForwardingStream(kj::mv(inner)), prefix_(kj::mv(prefix)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    if (offset_ == prefix_.size()) return inner().tryRead(buffer, min_bytes, max_bytes);
    const size_t n = std::min(max_bytes, prefix_.size() - offset_);
    std::memcpy(buffer, prefix_.begin() + offset_, n);
    offset_ += n;
    if (n >= min_bytes) return n;
    return inner()
        .tryRead(static_cast<char*>(buffer) + n, min_bytes - n, max_bytes - n)
        .then([n](size_t more) { return n + more; });
  }

 private:
  kj::Array<kj::byte> prefix_;
  size_t offset_ = 0;
};

}  // namespace kvstore::net

#endif  // KVSTORE_NET_PREFIXED_STREAM_H_
