#ifndef KVSTORE_TOOLS_FUZZ_CAPNP_UTIL_H_
#define KVSTORE_TOOLS_FUZZ_CAPNP_UTIL_H_

// Reading a fuzzer's bytes as a Cap'n Proto message the way a connection does: the standard
// framing (segment table, then segments) in word-aligned memory, read with the reader limits the
// services use (net/convert.h). A message the framing or the root pointer refuses is dropped, as
// the RPC layer drops the connection; the decoders then run OUTSIDE any catch, so an exception
// escaping a decoder (which must turn every Cap'n Proto error into a status) is a finding.

#include <cstdint>
#include <cstring>
#include <memory>

#include "capnp/message.h"
#include "capnp/serialize.h"
#include "kj/array.h"
#include "kj/exception.h"

namespace kvstore::fuzz {

class CapnpInput {
 public:
  CapnpInput(const uint8_t* data, size_t size, capnp::ReaderOptions options)
      : words_(kj::heapArray<capnp::word>(size / sizeof(capnp::word))) {
    if (words_.size() > 0) std::memcpy(words_.begin(), data, words_.size() * sizeof(capnp::word));
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                   reader_ =
                       std::make_unique<capnp::FlatArrayMessageReader>(words_.asPtr(), options);
                 })) {
      (void)exception;
      reader_.reset();
    }
  }

  // The root as T, or false when the framing or the root pointer is refused.
  template <typename T>
  bool Root(typename T::Reader* out) {
    if (reader_ == nullptr) return false;
    bool ok = false;
    KJ_IF_MAYBE (exception, kj::runCatchingExceptions([&] {
                   *out = reader_->getRoot<T>();
                   ok = true;
                 })) {
      (void)exception;
      return false;
    }
    return ok;
  }

 private:
  kj::Array<capnp::word> words_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

// Serializes what `build` writes into a root of type T, for round trips and seeds.
template <typename T, typename F>
kj::Array<capnp::word> Serialize(F&& build) {
  capnp::MallocMessageBuilder builder;
  build(builder.initRoot<T>());
  return capnp::messageToFlatArray(builder);
}

}  // namespace kvstore::fuzz

#endif  // KVSTORE_TOOLS_FUZZ_CAPNP_UTIL_H_
