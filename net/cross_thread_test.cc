// ExecuteSync (cross_thread.h) against a real event loop on another thread: every kind of result
// comes back, exceptions cross as executeSync's do, and under --config=tsan the handoffs in both
// directions are ordered for ThreadSanitizer (this test's plain data would be reported otherwise).
// NewPromiseAndCrossThreadFulfiller: values, void and rejections from another thread reach the
// loop; under --config=tsan the hand-off is ordered, and the same hand-off through kj's own
// fulfiller is reported (a death test).

#include "net/cross_thread.h"

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kj/async.h"
#include "kj/debug.h"

#ifdef KVSTORE_TSAN
// TSan's exit code at a report (halt_on_error=1, set by tools/sanitizers/tsan_run.sh).
constexpr int kTsanExitCode = 66;
#endif

namespace kvstore::net {
namespace {

// An event loop on its own thread, with state only its thread touches.
class LoopThread {
 public:
  LoopThread() {
    std::promise<const kj::Executor*> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, &ready]() {
      kj::EventLoop loop;
      kj::WaitScope wait_scope(loop);
      auto stop = kj::newPromiseAndFulfiller<void>();
      stop_ = kj::mv(stop.fulfiller);
      ready.set_value(&kj::getCurrentThreadExecutor());
      stop.promise.wait(wait_scope);
    });
    executor_ = started.get();
  }
  ~LoopThread() {
    ExecuteSync(*executor_, [this]() { stop_->fulfill(); });
    thread_.join();
  }
  const kj::Executor& executor() const { return *executor_; }

  std::vector<std::string> log;  // the loop's thread only
  int count = 0;                 // the loop's thread only

 private:
  std::thread thread_;
  const kj::Executor* executor_ = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> stop_;
};

TEST(ExecuteSyncTest, ValuesVoidAndPromisesComeBackToTheCaller) {
  LoopThread loop;
  std::string input = "from the caller";
  std::string got = ExecuteSync(loop.executor(), [&]() {
    loop.log.push_back(input);
    return input + ", through the loop";
  });
  EXPECT_EQ(got, "from the caller, through the loop");

  ExecuteSync(loop.executor(), [&]() { ++loop.count; });
  int later = ExecuteSync(loop.executor(), [&]() {
    return kj::evalLater([&]() { return kj::evalLater([&]() { return loop.count * 10; }); });
  });
  EXPECT_EQ(later, 10);
  auto owned =
      ExecuteSync(loop.executor(), [&]() { return std::make_unique<std::string>(loop.log[0]); });
  EXPECT_EQ(*owned, "from the caller");
}

TEST(ExecuteSyncTest, ExceptionsAndRejectionsAreRethrownOnTheCallingThread) {
  LoopThread loop;
  try {
    ExecuteSync(loop.executor(), [&]() -> int { KJ_FAIL_REQUIRE("thrown on the loop", 7); });
    ADD_FAILURE() << "no exception";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("thrown on the loop"), std::string::npos)
        << e.getDescription().cStr();
  }
  try {
    ExecuteSync(loop.executor(), [&]() {
      return kj::evalLater([]() -> kj::Promise<void> { KJ_FAIL_REQUIRE("rejected later"); });
    });
    ADD_FAILURE() << "no exception";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("rejected later"), std::string::npos);
  }
  // The loop still serves.
  EXPECT_EQ(ExecuteSync(loop.executor(), []() { return 3; }), 3);
}

TEST(ExecuteSyncTest, CallsFromSeveralThreadsAreSerialisedOnTheLoop) {
  LoopThread loop;
  constexpr int kThreads = 4;
  constexpr int kCalls = 200;
  std::vector<std::thread> callers;
  std::vector<std::vector<std::string>> answers(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    callers.emplace_back([&, t]() {
      for (int i = 0; i < kCalls; ++i) {
        std::string name = "t" + std::to_string(t) + "." + std::to_string(i);
        answers[t].push_back(ExecuteSync(loop.executor(), [&]() {
          ++loop.count;
          loop.log.push_back(name);
          return name + "@" + std::to_string(loop.count);
        }));
      }
    });
  }
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(ExecuteSync(loop.executor(), [&]() { return loop.count; }), kThreads * kCalls);
  EXPECT_EQ(ExecuteSync(loop.executor(), [&]() { return loop.log.size(); }),
            static_cast<size_t>(kThreads * kCalls));
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(answers[t].size(), static_cast<size_t>(kCalls));
    EXPECT_EQ(answers[t][5].rfind("t" + std::to_string(t) + ".5@", 0), 0u) << answers[t][5];
  }
}

// Keeps the loop turning (never asleep in epoll, where waking it would order the threads through
// the eventfd TSan intercepts) until `stop` is set; relaxed, so it orders nothing either.
kj::Promise<void> SpinUntil(const std::atomic<bool>& stop) {
  return kj::evalLater([&stop]() -> kj::Promise<void> {
    if (stop.load(std::memory_order_relaxed)) return kj::READY_NOW;
    return SpinUntil(stop);
  });
}

// A string built on a thread of its own reaches a continuation on the loop through a cross-thread
// fulfiller made by `make` (ours or kj's) while the loop is busy; returns what the loop read.
template <typename MakePaf>
std::string HandOverFromAnotherThread(MakePaf make) {
  LoopThread loop;
  std::atomic<bool> fulfilled{false};
  kj::Promise<std::string> read = nullptr;  // the loop's thread only
  kj::Promise<void> spin = nullptr;         // the loop's thread only
  auto fulfiller = ExecuteSync(loop.executor(), [&]() {
    auto paf = make();
    read = paf.promise.then([](std::unique_ptr<std::string> value) { return *value; })
               .eagerlyEvaluate(nullptr);
    spin = SpinUntil(fulfilled).eagerlyEvaluate(nullptr);
    return kj::mv(paf.fulfiller);
  });
  std::thread worker([&]() {
    auto value = std::make_unique<std::string>(100, 'w');  // on the heap, written here
    fulfiller->fulfill(kj::mv(value));
    fulfiller = nullptr;
    fulfilled.store(true, std::memory_order_relaxed);
  });
  std::string got = ExecuteSync(loop.executor(), [&]() { return kj::mv(read); });
  worker.join();
  ExecuteSync(loop.executor(), [&]() { spin = nullptr; });
  return got;
}

TEST(CrossThreadFulfillerTest, AValueBuiltOnAnotherThreadReachesTheLoop) {
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(HandOverFromAnotherThread([]() {
                return NewPromiseAndCrossThreadFulfiller<std::unique_ptr<std::string>>();
              }),
              std::string(100, 'w'));
  }
}

TEST(CrossThreadFulfillerTest, VoidRejectionAndADroppedFulfillerReachTheLoop) {
  LoopThread loop;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> fulfillers[3];
  kj::Promise<std::string> outcomes[3] = {nullptr, nullptr, nullptr};
  ExecuteSync(loop.executor(), [&]() {
    for (int i = 0; i < 3; ++i) {
      auto paf = NewPromiseAndCrossThreadFulfiller<void>();
      outcomes[i] = paf.promise.then(
          []() { return std::string("fulfilled"); },
          [](kj::Exception&& e) { return std::string(e.getDescription().cStr()); });
      fulfillers[i] = kj::mv(paf.fulfiller);
    }
  });
  std::thread worker([&]() {
    EXPECT_TRUE(fulfillers[0]->isWaiting());
    fulfillers[0]->fulfill();
    EXPECT_FALSE(fulfillers[0]->isWaiting());
    fulfillers[1]->reject(KJ_EXCEPTION(FAILED, "refused on the worker"));
    fulfillers[2] = nullptr;  // never fulfilled: kj rejects the promise
  });
  worker.join();
  EXPECT_EQ(ExecuteSync(loop.executor(), [&]() { return kj::mv(outcomes[0]); }), "fulfilled");
  EXPECT_EQ(ExecuteSync(loop.executor(), [&]() { return kj::mv(outcomes[1]); }),
            "refused on the worker");
  EXPECT_NE(ExecuteSync(loop.executor(), [&]() { return kj::mv(outcomes[2]); }), "fulfilled");
}

#ifdef KVSTORE_TSAN
// The hand-off above through kj's own fulfiller: TSan reports the worker's writes (the value in
// the promise node, the string's bytes) against the loop's reads.
TEST(CrossThreadFulfillerTest, KjsOwnFulfillerIsReportedByTsan) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(HandOverFromAnotherThread([]() {
                return kj::newPromiseAndCrossThreadFulfiller<std::unique_ptr<std::string>>();
              }),
              testing::ExitedWithCode(kTsanExitCode), "ThreadSanitizer: data race");
}
#endif

}  // namespace
}  // namespace kvstore::net
