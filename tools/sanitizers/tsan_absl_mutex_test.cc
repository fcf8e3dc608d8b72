// tsan_absl_mutex.cc under --config=tsan: libgpr's locks (gpr_mu, an absl::Mutex in Debian's
// gRPC) go through the interposer, and data handed between threads under them is ordered for
// ThreadSanitizer; the same hand-off through the real, uninstrumented absl::Mutex (called around
// the interposer) is reported. Skipped in other builds.

#include <dlfcn.h>

#include <string>
#include <thread>

#include "grpc/support/sync.h"
#include "grpc/support/time.h"
#include "gtest/gtest.h"
#include "tools/sanitizers/interpose.h"

#ifdef KVSTORE_TSAN
extern "C" long kvstore_tsan_absl_mutex_calls();
#endif

namespace {

#ifdef KVSTORE_TSAN

// A string built on one thread and read on another after a flag set under `mu`, with the waiter
// on `cv`: TSan sees the write and the read ordered only if it sees the lock.
struct Handoff {
  gpr_mu mu;
  gpr_cv cv;
  bool ready = false;
  std::string data;
};

TEST(TsanAbslMutexTest, LibgprLocksReachTheInterposer) {
  gpr_mu mu;
  gpr_mu_init(&mu);
  const long before = kvstore_tsan_absl_mutex_calls();
  gpr_mu_lock(&mu);  // libgpr.so -> absl::Mutex::Lock through libgpr's PLT
  gpr_mu_unlock(&mu);
  EXPECT_EQ(kvstore_tsan_absl_mutex_calls() - before, 2);
  gpr_mu_destroy(&mu);
}

TEST(TsanAbslMutexTest, DataHandedOverUnderGprMuAndCvIsOrdered) {
  // Several rounds, so that the reader both waits on the CondVar and finds the flag already set.
  for (int round = 0; round < 20; ++round) {
    Handoff h;
    gpr_mu_init(&h.mu);
    gpr_cv_init(&h.cv);
    std::thread writer([&h, round]() {
      h.data = "built on the writer, round " + std::to_string(round);
      gpr_mu_lock(&h.mu);
      h.ready = true;
      gpr_cv_signal(&h.cv);
      gpr_mu_unlock(&h.mu);
    });
    gpr_mu_lock(&h.mu);
    while (!h.ready) gpr_cv_wait(&h.cv, &h.mu, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    gpr_mu_unlock(&h.mu);
    // With halt_on_error=1 (tsan_run.sh) a report here would end the test.
    EXPECT_EQ(h.data, "built on the writer, round " + std::to_string(round));
    writer.join();
    gpr_cv_destroy(&h.cv);
    gpr_mu_destroy(&h.mu);
  }
}

// The real members in libabsl_synchronization.so, past the interposer (which a dynamically linked
// test loads from a shared library of its own, so RTLD_NEXT would find it again).
using MutexFn = void (*)(void*);

MutexFn RealMember(const char* name) {
  void* absl = dlopen("libabsl_synchronization.so.20220623", RTLD_NOW | RTLD_NOLOAD);
  return absl == nullptr ? nullptr : reinterpret_cast<MutexFn>(dlsym(absl, name));
}

void HandOverThroughTheRealMutex() {
  MutexFn lock = RealMember("_ZN4absl7debian35Mutex4LockEv");
  MutexFn unlock = RealMember("_ZN4absl7debian35Mutex6UnlockEv");
  // Not found: the child returns, and the death test fails.
  if (lock == nullptr || unlock == nullptr) return;
  Handoff h;
  gpr_mu_init(&h.mu);
  std::thread writer([&]() {
    h.data = "built on the writer, never seen by TSan's lock";
    lock(&h.mu);
    h.ready = true;
    unlock(&h.mu);
  });
  // Poll the flag under the real lock, as gRPC's threads would.
  while (true) {
    lock(&h.mu);
    const bool ready = h.ready;
    unlock(&h.mu);
    if (ready) break;
    std::this_thread::yield();
  }
  std::string copy = h.data;
  writer.join();
  gpr_mu_destroy(&h.mu);
}

TEST(TsanAbslMutexTest, TheSameHandOffThroughTheUninstrumentedMutexIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // tsan_run.sh sets halt_on_error=1: the child exits with TSan's exit code at the report.
  EXPECT_EXIT(HandOverThroughTheRealMutex(), testing::ExitedWithCode(66),
              "ThreadSanitizer: data race");
}

#else

TEST(TsanAbslMutexTest, OnlyUnderThreadSanitizer) { GTEST_SKIP() << "built without --config=tsan"; }

#endif

}  // namespace
