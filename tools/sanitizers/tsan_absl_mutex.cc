// ThreadSanitizer builds only (--config=tsan links it into every binary through
// //tools/third_party:absl): tells TSan about Debian's absl::Mutex and absl::CondVar.
//
// Why: --config=tsan links Debian's shared libabsl_*.so, and gRPC's locks (grpc::internal::Mutex,
// grpc_core::Mutex, gpr_mu) are absl::Mutex, whose code in libabsl_synchronization.so is not
// built with -fsanitize=thread (it futex-waits and CASes on its own word), so TSan saw no
// happens-before through any of them: gRPC's C++ header code compiled into our binaries (the
// callback API's call objects, completion-queue tags) looked unordered between gRPC's threads.
//
// How: this file defines Mutex's and CondVar's out-of-line members under their mangled names.
// The executable's definitions come first in the dynamic linker's lookup order (ld exports a
// definition that a linked shared library references; a test that Bazel links dynamically loads
// this file's shared library before libabsl_synchronization.so), and libgrpc.so, libgrpc++.so and
// libgpr.so call these members through their PLTs, so every call (theirs and ours) lands here. Each
// forwards to the real member in libabsl_synchronization.so (dlsym(RTLD_NEXT)) and reports the
// lock to TSan with its mutex annotations (sanitizer/tsan_interface.h), keyed on the Mutex's
// address: a Lock after an Unlock acquires what the Unlock released, exactly as for a
// pthread mutex. CondVar::Wait* and Mutex::Await* release the mutex while they wait: TSan is told
// of an unlock before and a lock after. Signal needs nothing (the waiter re-locks the mutex).
// Every member that locks or unlocks is covered, so TSan's view of who holds a mutex never
// disagrees with absl's (a LockWhen unlocked by Unlock, say).
//
// Not covered: Abseil's SpinLock (libabsl_base) and gRPC's lock-free atomics inside libgrpc.so;
// what they order is still invisible (tsan_run.sh suppresses those libraries' own accesses).

#include <sanitizer/tsan_interface.h>

#include <atomic>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tools/sanitizers/interpose.h"

namespace {

using kvstore::sanitizers::Real;

// Calls counted for tools/sanitizers:tsan_absl_mutex_test (it checks that libgrpc's locks reach
// this file).
std::atomic<long> g_calls{0};

// Some members call others through the PLT (CondVar::WaitWithTimeout calls WaitWithDeadline,
// which lands here again): only the outermost call on a thread tells TSan.
thread_local int t_depth = 0;

class Outer {
 public:
  Outer() : outer_(t_depth++ == 0) {}
  ~Outer() { --t_depth; }
  Outer(const Outer&) = delete;
  Outer& operator=(const Outer&) = delete;
  explicit operator bool() const { return outer_; }

 private:
  const bool outer_;
};

void Locked(void* mu, unsigned flags) {
  __tsan_mutex_pre_lock(mu, flags);
  __tsan_mutex_post_lock(mu, flags, 0);
}

void Unlocked(void* mu, unsigned flags) {
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
}

// `this` of a member is its first argument in the SysV ABI; the others are the declared types.
using Plain = void (*)(void*);
using Try = bool (*)(void*);
using When = void (*)(void*, const absl::Condition&);
using WhenTimeout = bool (*)(void*, const absl::Condition&, absl::Duration);
using WhenDeadline = bool (*)(void*, const absl::Condition&, absl::Time);
using Wait = void (*)(void*, void*);
using WaitTimeout = bool (*)(void*, void*, absl::Duration);
using WaitDeadline = bool (*)(void*, void*, absl::Time);

#define KVSTORE_REAL(type, name)                   \
  static std::atomic<type> real_slot{nullptr};     \
  const type real = Real(real_slot, name);         \
  g_calls.fetch_add(1, std::memory_order_relaxed); \
  const Outer outer

}  // namespace

extern "C" {

long kvstore_tsan_absl_mutex_calls() { return g_calls.load(std::memory_order_relaxed); }

// absl::Mutex::Lock / ReaderLock / Unlock / ReaderUnlock.
void _ZN4absl7debian35Mutex4LockEv(void* mu) {
  KVSTORE_REAL(Plain, "_ZN4absl7debian35Mutex4LockEv");
  if (outer) __tsan_mutex_pre_lock(mu, 0);
  real(mu);
  if (outer) __tsan_mutex_post_lock(mu, 0, 0);
}

void _ZN4absl7debian35Mutex10ReaderLockEv(void* mu) {
  KVSTORE_REAL(Plain, "_ZN4absl7debian35Mutex10ReaderLockEv");
  if (outer) __tsan_mutex_pre_lock(mu, __tsan_mutex_read_lock);
  real(mu);
  if (outer) __tsan_mutex_post_lock(mu, __tsan_mutex_read_lock, 0);
}

void _ZN4absl7debian35Mutex6UnlockEv(void* mu) {
  KVSTORE_REAL(Plain, "_ZN4absl7debian35Mutex6UnlockEv");
  if (outer) __tsan_mutex_pre_unlock(mu, 0);
  real(mu);
  if (outer) __tsan_mutex_post_unlock(mu, 0);
}

void _ZN4absl7debian35Mutex12ReaderUnlockEv(void* mu) {
  KVSTORE_REAL(Plain, "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  if (outer) __tsan_mutex_pre_unlock(mu, __tsan_mutex_read_lock);
  real(mu);
  if (outer) __tsan_mutex_post_unlock(mu, __tsan_mutex_read_lock);
}

// TryLock / ReaderTryLock.
bool _ZN4absl7debian35Mutex7TryLockEv(void* mu) {
  KVSTORE_REAL(Try, "_ZN4absl7debian35Mutex7TryLockEv");
  if (outer) __tsan_mutex_pre_lock(mu, __tsan_mutex_try_lock);
  const bool locked = real(mu);
  if (outer)
    __tsan_mutex_post_lock(mu, __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed),
                           0);
  return locked;
}

bool _ZN4absl7debian35Mutex13ReaderTryLockEv(void* mu) {
  KVSTORE_REAL(Try, "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const unsigned flags = __tsan_mutex_read_lock | __tsan_mutex_try_lock;
  if (outer) __tsan_mutex_pre_lock(mu, flags);
  const bool locked = real(mu);
  if (outer) __tsan_mutex_post_lock(mu, flags | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  return locked;
}

// LockWhen and its variants: hold the mutex on return (the timed ones whether or not the
// condition became true).
void _ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE(void* mu, const absl::Condition& cond) {
  KVSTORE_REAL(When, "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  if (outer) __tsan_mutex_pre_lock(mu, 0);
  real(mu, cond);
  if (outer) __tsan_mutex_post_lock(mu, 0, 0);
}

void _ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE(void* mu,
                                                              const absl::Condition& cond) {
  KVSTORE_REAL(When, "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  if (outer) __tsan_mutex_pre_lock(mu, __tsan_mutex_read_lock);
  real(mu, cond);
  if (outer) __tsan_mutex_post_lock(mu, __tsan_mutex_read_lock, 0);
}

bool _ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    void* mu, const absl::Condition& cond, absl::Duration timeout) {
  KVSTORE_REAL(WhenTimeout,
               "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (outer) __tsan_mutex_pre_lock(mu, 0);
  const bool met = real(mu, cond, timeout);
  if (outer) __tsan_mutex_post_lock(mu, 0, 0);
  return met;
}

bool _ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    void* mu, const absl::Condition& cond, absl::Duration timeout) {
  KVSTORE_REAL(WhenTimeout,
               "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (outer) __tsan_mutex_pre_lock(mu, __tsan_mutex_read_lock);
  const bool met = real(mu, cond, timeout);
  if (outer) __tsan_mutex_post_lock(mu, __tsan_mutex_read_lock, 0);
  return met;
}

bool _ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    void* mu, const absl::Condition& cond, absl::Time deadline) {
  KVSTORE_REAL(WhenDeadline,
               "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (outer) __tsan_mutex_pre_lock(mu, 0);
  const bool met = real(mu, cond, deadline);
  if (outer) __tsan_mutex_post_lock(mu, 0, 0);
  return met;
}

bool _ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    void* mu, const absl::Condition& cond, absl::Time deadline) {
  KVSTORE_REAL(WhenDeadline,
               "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (outer) __tsan_mutex_pre_lock(mu, __tsan_mutex_read_lock);
  const bool met = real(mu, cond, deadline);
  if (outer) __tsan_mutex_post_lock(mu, __tsan_mutex_read_lock, 0);
  return met;
}

// Await*: called with the mutex held (as writer; absl does not allow Await under a reader lock
// that would change mode), released while waiting, held again on return.
void _ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE(void* mu, const absl::Condition& cond) {
  KVSTORE_REAL(When, "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  if (outer) Unlocked(mu, 0);
  real(mu, cond);
  if (outer) Locked(mu, 0);
}

bool _ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE(
    void* mu, const absl::Condition& cond, absl::Duration timeout) {
  KVSTORE_REAL(WhenTimeout,
               "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  if (outer) Unlocked(mu, 0);
  const bool met = real(mu, cond, timeout);
  if (outer) Locked(mu, 0);
  return met;
}

bool _ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE(
    void* mu, const absl::Condition& cond, absl::Time deadline) {
  KVSTORE_REAL(WhenDeadline,
               "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  if (outer) Unlocked(mu, 0);
  const bool met = real(mu, cond, deadline);
  if (outer) Locked(mu, 0);
  return met;
}

// ~Mutex is not wrapped: TSan's destroy annotation writes the mutex's address, which reported
// gRPC's objects freed by another thread after a refcount drop in libgrpc.so (uninstrumented
// atomics, e.g. its event engine's thread pool). The free that follows clears TSan's state for
// the mutex (a mutex in static or stack storage keeps it until the address is reused).

// CondVar::Wait*: the mutex (held on entry and on return) is released while waiting.
void _ZN4absl7debian37CondVar4WaitEPNS0_5MutexE(void* cv, void* mu) {
  KVSTORE_REAL(Wait, "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  if (outer) Unlocked(mu, 0);
  real(cv, mu);
  if (outer) Locked(mu, 0);
}

bool _ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE(void* cv, void* mu,
                                                                          absl::Duration timeout) {
  KVSTORE_REAL(WaitTimeout, "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  if (outer) Unlocked(mu, 0);
  const bool timed_out = real(cv, mu, timeout);
  if (outer) Locked(mu, 0);
  return timed_out;
}

bool _ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE(void* cv, void* mu,
                                                                       absl::Time deadline) {
  KVSTORE_REAL(WaitDeadline, "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  if (outer) Unlocked(mu, 0);
  const bool timed_out = real(cv, mu, deadline);
  if (outer) Locked(mu, 0);
  return timed_out;
}

}  // extern "C"
