#ifndef KVSTORE_SIM_RANDOM_HISTORY_H_
#define KVSTORE_SIM_RANDOM_HISTORY_H_

// Linearizable histories by construction, for testing and benchmarking the checker: a seeded
// simulation of clients talking to a map of registers that is linearizable by definition (each
// operation takes effect atomically at one chosen tick between its invocation and its
// completion). Some requests time out (info: took effect or not, possibly after the client gave
// up), some are rejected (fail: no effect), and a cas whose expected value does not match is
// refused.

#include <cstddef>
#include <cstdint>

#include "sim/history.h"

namespace kvstore::sim {

struct RandomHistoryOptions {
  uint64_t seed = 1;
  int clients = 16;
  int keys = 100;  // named k000, k001, ... so that key order is numeric order
  size_t operations = 10'000;
  // The function mix, in percent of operations (the rest are reads).
  int write_percent = 25;
  int cas_percent = 15;
  int append_percent = 5;
  int delete_percent = 5;
  // Of all operations: completed with info (half of those still take effect), and rejected.
  int info_percent = 2;
  int fail_percent = 1;
  // Invocation to linearization point, and linearization point to completion: 1..this many ticks.
  int64_t max_latency_ticks = 20;
};

// Deterministic: the same options give the same history on every platform.
History GenerateRandomHistory(const RandomHistoryOptions& options);

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_RANDOM_HISTORY_H_
