#ifndef KVSTORE_SIM_SPLITMIX64_H_
#define KVSTORE_SIM_SPLITMIX64_H_

#include <cstdint>

namespace kvstore::sim {

// splitmix64 (Steele, Lea, Flood 2014): a tiny seeded generator whose output is identical on every
// platform and standard library, which <random>'s distributions do not promise. The simulator's
// only source of randomness; every consumer takes a seed or a generator from its caller.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ull;
    return Mix(state_);
  }
  // Uniform in [0, bound) for bound > 0 (the modulo bias is negligible for the small bounds used).
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

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_SPLITMIX64_H_
