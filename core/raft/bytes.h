#ifndef KVSTORE_CORE_RAFT_BYTES_H_
#define KVSTORE_CORE_RAFT_BYTES_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/string_view.h"

namespace kvstore::raft {

// An immutable, reference-counted byte buffer: one heap allocation holds the count and the bytes.
// Copies share the buffer (an atomic increment), so an entry's payload travels from a proposal
// into the log, the messages to every follower and the driver's write queue without being copied.
// The empty value allocates nothing.
class Bytes {
 public:
  Bytes() = default;
  explicit Bytes(absl::string_view bytes) {
    if (bytes.empty()) return;
    void* memory = ::operator new(sizeof(Rep) + bytes.size());
    rep_ = new (memory) Rep{};
    rep_->refs.store(1, std::memory_order_relaxed);
    rep_->size = bytes.size();
    std::memcpy(rep_->data(), bytes.data(), bytes.size());
  }
  Bytes(const Bytes& other) : rep_(other.rep_) {
    if (rep_ != nullptr) rep_->refs.fetch_add(1, std::memory_order_relaxed);
  }
  Bytes(Bytes&& other) noexcept : rep_(std::exchange(other.rep_, nullptr)) {}
  Bytes& operator=(const Bytes& other) {
    Bytes copy(other);
    std::swap(rep_, copy.rep_);
    return *this;
  }
  Bytes& operator=(Bytes&& other) noexcept {
    Bytes moved(std::move(other));
    std::swap(rep_, moved.rep_);
    return *this;
  }
  ~Bytes() {
    if (rep_ != nullptr && rep_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      rep_->~Rep();
      ::operator delete(rep_);
    }
  }

  size_t size() const { return rep_ == nullptr ? 0 : rep_->size; }
  bool empty() const { return size() == 0; }
  const char* data() const { return rep_ == nullptr ? nullptr : rep_->data(); }
  absl::string_view view() const { return absl::string_view(data(), size()); }

  friend bool operator==(const Bytes& a, const Bytes& b) { return a.view() == b.view(); }
  friend bool operator!=(const Bytes& a, const Bytes& b) { return !(a == b); }

 private:
  struct Rep {
    std::atomic<uint32_t> refs;
    size_t size;
    char* data() { return reinterpret_cast<char*>(this + 1); }
  };
  Rep* rep_ = nullptr;
};

}  // namespace kvstore::raft

#endif  // KVSTORE_CORE_RAFT_BYTES_H_
