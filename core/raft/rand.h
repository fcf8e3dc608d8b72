#ifndef KVSTORE_CORE_RAFT_RAND_H_
#define KVSTORE_CORE_RAFT_RAND_H_

#include <cstdint>

namespace kvstore::raft {

// splitmix64 (Steele, Lea, Flood 2014): a tiny seeded generator with identical output on every
// platform and standard library, which <random>'s distributions do not promise.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() { return Mix(state_ += 0x9E3779B97F4A7C15ull); }
  // Uniform in [0, bound) for bound > 0 (modulo bias is negligible for small bounds).
  uint64_t Uniform(uint64_t bound) { return Next() % bound; }
  // True with probability percent / 100.
  bool Percent(uint64_t percent) { return Uniform(100) < percent; }

  // The finalizer alone: a stateless, well-mixed 64-bit hash of one word.
  static uint64_t Mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

}  // namespace kvstore::raft

#endif  // KVSTORE_CORE_RAFT_RAND_H_
