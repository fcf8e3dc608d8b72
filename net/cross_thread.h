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
//
// NewPromiseAndCrossThreadFulfiller<T>(): kj::newPromiseAndCrossThreadFulfiller<T>, same types, for
// a loop that waits on work another thread finishes (the WAL's sync thread, gRPC's threads
// posting to kvnode's loop). libkj hands the fulfilled value over with the same uninstrumented
// futex, so TSan saw the other thread's write of the result (an ExceptionOr<T> in the promise
// node) and the loop's read unordered. Here both sides share a token (a small heap block that
// the promise's continuation and the fulfiller each own):
//   fulfilling thread: fulfill, reject and the fulfiller's destruction (which rejects a promise
//     still waiting) release the token first, so the loop sees everything the thread did before
//     (the value's contents), then run kj's header code that moves the value into the node
//     unchecked (__tsan_ignore_thread_begin/end), as ExecuteSync does for the caller's side;
//     isWaiting's read of the node is unchecked too (the loop frees the node in kj's code, before
//     the promise's acquire, and kj orders that with its own atomics);
//   loop thread: the returned promise acquires the token first thing when the node hands its
//     value or exception on, before any code of ours sees it.

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "kj/async.h"
#include "kj/debug.h"
#include "net/tsan_build.h"

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

namespace cross_thread_internal {

// Unchecked accesses for the life of the scope.
struct IgnoreScope {
  IgnoreScope() { IgnoreBegin(); }
  ~IgnoreScope() { IgnoreEnd(); }
  IgnoreScope(const IgnoreScope&) = delete;
  IgnoreScope& operator=(const IgnoreScope&) = delete;
};

using Token = std::shared_ptr<const char>;

// kj's fulfiller, wrapped: each call releases the token, then runs kj's unchecked.
template <typename T>
class TokenFulfiller final : public kj::CrossThreadPromiseFulfiller<T> {
 public:
  TokenFulfiller(kj::Own<kj::CrossThreadPromiseFulfiller<T>> inner, Token token)
      : inner_(kj::mv(inner)), token_(kj::mv(token)) {}
  ~TokenFulfiller() noexcept(false) {
    Release(token_.get());
    IgnoreScope unchecked;
    inner_ = nullptr;
  }

  void fulfill(kj::_::FixVoid<T>&& value) const override {
    Release(token_.get());
    IgnoreScope unchecked;
    inner_->fulfill(kj::mv(value));
  }
  void reject(kj::Exception&& exception) const override {
    Release(token_.get());
    IgnoreScope unchecked;
    inner_->reject(kj::mv(exception));
  }
  // kj's atomic read of the promise node's state: unchecked too, as the loop frees the node
  // right after taking the value, before the promise's acquire.
  bool isWaiting() const override {
    IgnoreScope unchecked;
    return inner_->isWaiting();
  }

 private:
  kj::Own<kj::CrossThreadPromiseFulfiller<T>> inner_;
  Token token_;
};

}  // namespace cross_thread_internal

template <typename T>
kj::PromiseCrossThreadFulfillerPair<T> NewPromiseAndCrossThreadFulfiller() {
  static_assert(std::is_same_v<kj::_::ReducePromises<T>, kj::Promise<T>>,
                "a promise for a promise is not supported here");
  using namespace cross_thread_internal;
  auto paf = kj::newPromiseAndCrossThreadFulfiller<T>();
  Token token = std::make_shared<const char>('\0');
  kj::Promise<T> promise = [&]() {
    if constexpr (std::is_void_v<T>) {
      return paf.promise.then([token]() { Acquire(token.get()); },
                              [token](kj::Exception&& exception) {
                                Acquire(token.get());
                                kj::throwFatalException(kj::mv(exception));
                              });
    } else {
      return paf.promise.then(
          [token](T value) {
            Acquire(token.get());
            return value;
          },
          [token](kj::Exception&& exception) -> T {
            Acquire(token.get());
            kj::throwFatalException(kj::mv(exception));
          });
    }
  }();
  return {kj::mv(promise), kj::heap<TokenFulfiller<T>>(kj::mv(paf.fulfiller), kj::mv(token))};
}

}  // namespace kvstore::net

#endif  // KVSTORE_NET_CROSS_THREAD_H_
