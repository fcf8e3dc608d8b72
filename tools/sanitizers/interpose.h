// Shared by the ThreadSanitizer interposers (tsan_absl_mutex.cc, tsan_grpc_cq.cc) and their tests.

#ifndef KVSTORE_TOOLS_SANITIZERS_INTERPOSE_H_
#define KVSTORE_TOOLS_SANITIZERS_INTERPOSE_H_

#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "net/tsan_build.h"  // KVSTORE_TSAN

namespace kvstore::sanitizers {

// The definition of `name` that the executable's own one interposes (the next one in lookup
// order: the shared library's), looked up on first use and kept in `slot`. Looked up lazily
// because libraries' static initialisers call the interposed functions before ours would run.
// Aborts, naming the symbol, if there is none (a library upgrade that renamed it).
template <typename Fn>
Fn Real(std::atomic<Fn>& slot, const char* name) {
  Fn fn = slot.load(std::memory_order_acquire);
  if (fn == nullptr) {
    fn = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
    if (fn == nullptr) {
      std::fprintf(stderr, "tsan interposer: %s not found after the executable\n", name);
      std::abort();
    }
    slot.store(fn, std::memory_order_release);
  }
  return fn;
}

}  // namespace kvstore::sanitizers

#endif  // KVSTORE_TOOLS_SANITIZERS_INTERPOSE_H_
