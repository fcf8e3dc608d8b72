// ExecuteSync (cross_thread.h) against a real event loop on another thread: every kind of result
// comes back, exceptions cross as executeSync's do, and under --config=tsan the handoffs in both
// directions are ordered for ThreadSanitizer (this test's plain data would be reported otherwise).

#include "net/cross_thread.h"

#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kj/async.h"
#include "kj/debug.h"

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

}  // namespace
}  // namespace kvstore::net
