#ifndef KVSTORE_CORE_BASE_ALLOC_COUNTER_H_
#define KVSTORE_CORE_BASE_ALLOC_COUNTER_H_

// Heap allocation counting for benchmarks: linking this library replaces the global operator
// new/delete (every variant) with versions that count calls and bytes while `g_counting` is set,
// attributed to `g_phase` (a benchmark's own enum of who is running). Single-threaded use only.

#include <cstdint>

namespace kvstore::alloc_counter {

inline constexpr int kMaxPhases = 8;

struct Counts {
  uint64_t calls[kMaxPhases] = {};
  uint64_t bytes[kMaxPhases] = {};
  uint64_t total_calls() const;
  uint64_t total_bytes() const;
};

extern bool g_counting;
extern int g_phase;
extern Counts g_counts;

// Clears the counts and starts counting in phase 0.
void Start();
void Stop();

}  // namespace kvstore::alloc_counter

#endif  // KVSTORE_CORE_BASE_ALLOC_COUNTER_H_
