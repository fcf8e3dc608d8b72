#ifndef KVSTORE_NET_CROSS_THREAD_H_
#define KVSTORE_NET_CROSS_THREAD_H_

// ExecuteSync(executor, func): kj::Executor::executeSync (run `func` on the executor's event loop
// and wait for its result, unwrapping a promise), with the happens-before edges between the
// calling thread and the loop thread made visible to ThreadSanitizer. Every call into an event
// loop from another thread (gRPC handler threads, a test's thread) goes through it.
//
// Why: executeSync hands the call to the loop and the result back through Debian's libkj, whose
// futex mutex is not built with -fsanitize=thread, so TSan saw the loop thread write the result
// (an ExceptionOr<T> in the event on the caller's stack) and the caller read it with nothing
// ordering them. In a TSan build (ANNOTATE_TSAN below; nothing otherwise):
//   caller -> loop: the callable that the event holds releases its own address when the caller
//     moves it into the event, and acquires it first thing when the loop calls it, so the loop
//     sees everything the caller did before the call (the arguments it captured).
//   loop -> caller: the result travels in a Handoff, which releases the call's token when it is
//     destroyed; kj destroys the loop's temporaries only after it has stored the result into the
//     event, so this release comes after the loop's last write. The caller acquires the token
//     when executeSync returns.
//   The caller's own accesses between the move into the event and that return (kj's header code
//     that initialises, reads and destroys the event while libkj hands it over) are not checked
//     (__tsan_ignore_thread_begin/end): nothing of ours runs there, and the acquire that follows
//     orders everything after it.
// Exceptions (thrown by `func`, a rejected promise) travel in the Handoff too and are rethrown on
// the calling thread, as executeSync does. The same code runs in every build; only the
// annotations compile away.

#include <optional>
#include <type_traits>
#include <utility>

#include "kj/async.h"
#include "kj/debug.h"

#if defined(__SANITIZE_THREAD__)
#define KVSTORE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KVSTORE_TSAN 1
#endif
#endif

#ifdef KVSTORE_TSAN
extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
}
#endif

namespace kvstore::net {
namespace cross_thread_internal {

inline void Release(const void* address) {
#ifdef KVSTORE_TSAN
  __tsan_release(const_cast<void*>(address));
#else
  (void)address;
#endif
}

inline void Acquire(const void* address) {
#ifdef KVSTORE_TSAN
  __tsan_acquire(const_cast<void*>(address));
#else
  (void)address;
#endif
}

inline void IgnoreBegin() {
#ifdef KVSTORE_TSAN
  __tsan_ignore_thread_begin();
#endif
}

inline void IgnoreEnd() {
#ifdef KVSTORE_TSAN
  __tsan_ignore_thread_end();
#endif
}

// The caller's side of one call: its address is the loop -> caller token.
struct CallState {
  bool ignoring = false;  // between the move into the event and executeSync's return
};

// The loop's result (or exception) on its way back; see the header comment.
template <typename T>
class Handoff {
 public:
  Handoff(const CallState* state, T value) : state_(state), value_(kj::mv(value)) {}
  Handoff(const CallState* state, kj::Exception exception)
      : state_(state), exception_(kj::mv(exception)) {}
  Handoff(Handoff&& other) noexcept
      : state_(other.state_), value_(kj::mv(other.value_)), exception_(kj::mv(other.exception_)) {}
  Handoff& operator=(Handoff&&) = delete;
  ~Handoff() { Release(state_); }

  T Take() {
    KJ_IF_MAYBE (exception, exception_) {
      kj::throwFatalException(kj::mv(*exception));
    }
    return kj::mv(KJ_ASSERT_NONNULL(value_));
  }

 private:
  const CallState* state_;
  kj::Maybe<T> value_;
  kj::Maybe<kj::Exception> exception_;
};

// What the event holds and the loop calls.
template <typename Func, typename T>
class Call {
 public:
  Call(Func& func, CallState* state) : func_(&func), state_(state) {}
  // The move into the event, on the calling thread: the last thing the caller does before libkj
  // takes over.
  Call(Call&& other) noexcept : func_(other.func_), state_(other.state_) {
    Release(this);
    if (!state_->ignoring) {
      state_->ignoring = true;
      IgnoreBegin();
    }
  }
  Call& operator=(Call&&) = delete;

  // On the loop thread.
  kj::Promise<Handoff<T>> operator()() {
    Acquire(this);
    const CallState* state = state_;
    Func* func = func_;
    // .then() on a ready promise runs `func` in the loop's next turn, for any return type (a
    // value, void or a promise), and turns an exception into a rejection.
    return kj::Promise<void>(kj::READY_NOW)
        .then([func]() { return (*func)(); })
        .then([state](auto&&... value) { return Handoff<T>(state, T(kj::mv(value)...)); },
              [state](kj::Exception&& exception) { return Handoff<T>(state, kj::mv(exception)); });
  }

 private:
  Func* func_;
  CallState* state_;
};

}  // namespace cross_thread_internal

template <typename Func>
auto ExecuteSync(const kj::Executor& executor, Func&& func) {
  using namespace cross_thread_internal;
  using Result = kj::_::UnwrapPromise<kj::PromiseForResult<std::remove_reference_t<Func>&, void>>;
  using T = kj::_::FixVoid<Result>;
  CallState state;
  struct EndIgnore {
    CallState& state;
    ~EndIgnore() {
      if (state.ignoring) {
        state.ignoring = false;
        IgnoreEnd();
      }
      Acquire(&state);
    }
  };
  std::optional<Handoff<T>> handoff;
  {
    EndIgnore end{state};
    handoff.emplace(executor.executeSync(Call<std::remove_reference_t<Func>, T>(func, &state)));
  }
  if constexpr (std::is_void_v<Result>) {
    handoff->Take();
  } else {
    return handoff->Take();
  }
}

}  // namespace kvstore::net

#endif  // KVSTORE_NET_CROSS_THREAD_H_
