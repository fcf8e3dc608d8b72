#ifndef KVSTORE_NET_PREFIXED_STREAM_H_
#define KVSTORE_NET_PREFIXED_STREAM_H_

#include <algorithm>
#include <cstring>

#include "kj/async-io.h"

namespace kvstore::net {

// A stream whose first bytes were already read (to tell one protocol from another: the client
// port sniffs Cap'n Proto, gRPC and HTTP, the peer port a Raft stream from RPC): they are
// read again first.
class PrefixedStream final : public kj::AsyncIoStream {
 public:
  PrefixedStream(kj::Own<kj::AsyncIoStream> inner, kj::Array<kj::byte> prefix)
      : inner_(kj::mv(inner)), prefix_(kj::mv(prefix)) {}

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override {
    if (offset_ == prefix_.size()) return inner_->tryRead(buffer, min_bytes, max_bytes);
    const size_t n = std::min(max_bytes, prefix_.size() - offset_);
    std::memcpy(buffer, prefix_.begin() + offset_, n);
    offset_ += n;
    if (n >= min_bytes) return n;
    return inner_->tryRead(static_cast<char*>(buffer) + n, min_bytes - n, max_bytes - n)
        .then([n](size_t more) { return n + more; });
  }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner_->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner_->whenWriteDisconnected(); }
  void shutdownWrite() override { inner_->shutdownWrite(); }
  void abortRead() override { inner_->abortRead(); }
  void getsockopt(int level, int option, void* value, uint* length) override {
    inner_->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, uint length) override {
    inner_->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, uint* length) override {
    inner_->getsockname(addr, length);
  }
  void getpeername(struct sockaddr* addr, uint* length) override {
    inner_->getpeername(addr, length);
  }

 private:
  kj::Own<kj::AsyncIoStream> inner_;
  kj::Array<kj::byte> prefix_;
  size_t offset_ = 0;
};

}  // namespace kvstore::net

#endif  // KVSTORE_NET_PREFIXED_STREAM_H_
