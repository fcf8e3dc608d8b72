// Sessions and mutexes against a real three-member kvnode cluster: exclusion of a non-atomic
// read-modify-write under contention, fencing tokens in acquisition order, TryLock, a canceled
// wait, and a lock released by the expiry of its holder's lease.

#include "net/concurrency/mutex.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"
#include "net/concurrency/session.h"
#include "net/concurrency/testing/client_loop.h"
#include "net/concurrency/testing/cluster_fixture.h"
#include "net/concurrency/testing/kvnode_cluster.h"

namespace kvstore::net::concurrency {
namespace {

using Loop = testing::ClientLoop;

using MutexTest = testing::ClusterTest;

constexpr int kLockers = 4;
constexpr int kIncrementsPerLocker = 15;

// What one holder saw: its fencing token and the counter it read under the lock.
struct Holding {
  mvcc::Revision token = 0;
  int64_t counter_read = 0;
};

// Each locker reads the counter, waits, and writes it back plus one: without exclusion
// increments are lost. Under the lock the count is exact, and since each holder reads the
// previous holder's write, the counter values order the holdings: their tokens increase.
TEST_F(MutexTest, LockersIncrementACounterExactlyWithIncreasingTokens) {
  const std::string counter = "mutex-test/counter";
  std::mutex holdings_mutex;
  std::vector<Holding> holdings;
  std::vector<std::thread> threads;
  const auto started = std::chrono::steady_clock::now();
  for (int l = 0; l < kLockers; ++l) {
    threads.emplace_back([&] {
      Loop loop(cluster_->endpoints());
      std::unique_ptr<Session> session = loop.NewSession(10);
      ASSERT_NE(session, nullptr);
      Mutex mutex(*session, "mutex-test/lock");
      for (int i = 0; i < kIncrementsPerLocker; ++i) {
        ASSERT_TRUE(mutex.Lock().ok());
        server::Request get;
        get.type = server::RequestType::kRange;
        get.range.key = counter;
        absl::StatusOr<server::Response> read = loop.Call(get);
        ASSERT_TRUE(read.ok()) << read.status();
        int64_t value = 0;
        if (!read->range.kvs.empty()) {
          ASSERT_TRUE(absl::SimpleAtoi(read->range.kvs[0].value, &value));
        }
        loop.Sleep(2 * kj::MILLISECONDS);  // widen the race a missing exclusion would lose
        server::Request put;
        put.type = server::RequestType::kPut;
        put.put.key = counter;
        put.put.value = absl::StrCat(value + 1);
        ASSERT_TRUE(loop.Call(put).ok());
        {
          std::lock_guard<std::mutex> lock(holdings_mutex);
          holdings.push_back({mutex.token(), value});
        }
        ASSERT_TRUE(mutex.Unlock().ok());
      }
      EXPECT_TRUE(session->Close().ok());
    });
  }
  for (std::thread& thread : threads) thread.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  Loop loop(cluster_->endpoints());
  server::Request get;
  get.type = server::RequestType::kRange;
  get.range.key = counter;
  absl::StatusOr<server::Response> final_read = loop.Call(get);
  ASSERT_TRUE(final_read.ok());
  ASSERT_EQ(final_read->range.kvs.size(), 1u);
  EXPECT_EQ(final_read->range.kvs[0].value, absl::StrCat(kLockers * kIncrementsPerLocker));

  ASSERT_EQ(holdings.size(), static_cast<size_t>(kLockers * kIncrementsPerLocker));
  std::sort(holdings.begin(), holdings.end(),
            [](const Holding& a, const Holding& b) { return a.counter_read < b.counter_read; });
  for (size_t i = 0; i < holdings.size(); ++i) {
    EXPECT_EQ(holdings[i].counter_read, static_cast<int64_t>(i)) << "a lost or doubled increment";
    if (i > 0) {
      EXPECT_GT(holdings[i].token, holdings[i - 1].token)
          << "fencing token went backwards at holding " << i;
    }
  }
  std::printf(
      "mutex: %d lockers x %d increments in %.1f s (%.1f acquisitions/s); tokens %lld..%lld\n",
      kLockers, kIncrementsPerLocker, seconds, holdings.size() / seconds,
      static_cast<long long>(holdings.front().token),
      static_cast<long long>(holdings.back().token));
}

TEST_F(MutexTest, TryLockFailsWhileHeldAndLeavesNoKey) {
  Loop loop(cluster_->endpoints());
  std::unique_ptr<Session> first = loop.NewSession(10);
  std::unique_ptr<Session> second = loop.NewSession(10);
  Mutex held(*first, "trylock-test");
  Mutex contender(*second, "trylock-test");
  ASSERT_TRUE(held.Lock().ok());
  absl::StatusOr<bool> tried = contender.TryLock();
  ASSERT_TRUE(tried.ok()) << tried.status();
  EXPECT_FALSE(*tried);

  server::Request keys;
  keys.type = server::RequestType::kRange;
  keys.range.key = "trylock-test/";
  keys.range.range_end = mvcc::PrefixEnd("trylock-test/");
  absl::StatusOr<server::Response> queue = loop.Call(keys);
  ASSERT_TRUE(queue.ok());
  ASSERT_EQ(queue->range.kvs.size(), 1u) << "TryLock left its key in the queue";
  EXPECT_EQ(queue->range.kvs[0].key, held.key());
  EXPECT_EQ(queue->range.kvs[0].lease, first->lease());

  const mvcc::Revision first_token = held.token();
  ASSERT_TRUE(held.Unlock().ok());
  tried = contender.TryLock();
  ASSERT_TRUE(tried.ok()) << tried.status();
  EXPECT_TRUE(*tried);
  EXPECT_GT(contender.token(), first_token);
  EXPECT_TRUE(second->Close().ok());
  EXPECT_TRUE(first->Close().ok());
}

TEST_F(MutexTest, CanceledWaitRemovesItsKey) {
  Loop loop(cluster_->endpoints());
  std::unique_ptr<Session> first = loop.NewSession(10);
  std::unique_ptr<Session> second = loop.NewSession(10);
  Mutex held(*first, "cancel-test");
  Mutex waiter(*second, "cancel-test");
  ASSERT_TRUE(held.Lock().ok());
  absl::Status waited =
      waiter.Lock(loop.io.provider->getTimer().afterDelay(300 * kj::MILLISECONDS));
  EXPECT_TRUE(absl::IsCancelled(waited)) << waited;
  server::Request keys;
  keys.type = server::RequestType::kRange;
  keys.range.key = "cancel-test/";
  keys.range.range_end = mvcc::PrefixEnd("cancel-test/");
  absl::StatusOr<server::Response> queue = loop.Call(keys);
  ASSERT_TRUE(queue.ok());
  EXPECT_EQ(queue->range.kvs.size(), 1u);
  EXPECT_TRUE(first->Close().ok());
  EXPECT_TRUE(second->Close().ok());
}

// A holder that stops renewing (a crash) loses the lock when its lease expires: a waiter gets
// it with a larger token, and the old holder's fenced write is refused by the members.
TEST_F(MutexTest, ExpiredHolderIsFencedOut) {
  Loop loop(cluster_->endpoints());
  std::unique_ptr<Session> crashed = loop.NewSession(1);  // raised to the server's minimum
  Mutex old_holder(*crashed, "expiry-test");
  ASSERT_TRUE(old_holder.Lock().ok());
  const int64_t ttl_seconds = crashed->granted_ttl_seconds();
  const mvcc::Compare old_owner = old_holder.IsOwner();
  crashed.reset();  // renewals stop; the lease is not revoked

  std::unique_ptr<Session> successor = loop.NewSession(10);
  Mutex new_holder(*successor, "expiry-test");
  const auto waiting_since = std::chrono::steady_clock::now();
  ASSERT_TRUE(new_holder.Lock().ok());
  const double waited_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - waiting_since).count();
  EXPECT_LE(waited_seconds, ttl_seconds + 3.0);
  EXPECT_GT(new_holder.token(), old_owner.number);

  server::Request fenced;
  fenced.type = server::RequestType::kTxn;
  fenced.txn.compare.push_back(old_owner);
  mvcc::RequestOp write;
  write.kind = mvcc::RequestOp::Kind::kPut;
  write.put.key = "expiry-test-data";
  write.put.value = "from the old holder";
  fenced.txn.success.push_back(write);
  absl::StatusOr<server::Response> response = loop.Call(fenced);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_FALSE(response->txn.succeeded) << "the expired holder's write was accepted";

  fenced.txn.compare = {new_holder.IsOwner()};
  fenced.txn.success[0].put.value = "from the new holder";
  response = loop.Call(fenced);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->txn.succeeded);
  std::printf("expiry: lease TTL %lld s granted, the waiter held the lock after %.1f s\n",
              static_cast<long long>(ttl_seconds), waited_seconds);
  EXPECT_TRUE(successor->Close().ok());
}

// A session whose lease is revoked elsewhere notices at its next renewal.
TEST_F(MutexTest, SessionNoticesItsLeaseIsGone) {
  Loop loop(cluster_->endpoints());
  std::unique_ptr<Session> session = loop.NewSession(5);
  ASSERT_NE(session, nullptr);
  EXPECT_FALSE(session->lost());
  server::Request revoke;
  revoke.type = server::RequestType::kLeaseRevoke;
  revoke.lease_id = session->lease();
  ASSERT_TRUE(loop.Call(revoke).ok());
  session->Done()
      .exclusiveJoin(loop.io.provider->getTimer().afterDelay((session->granted_ttl_seconds() + 2) *
                                                             kj::SECONDS))
      .wait(loop.io.waitScope);
  EXPECT_TRUE(session->lost());
}

}  // namespace
}  // namespace kvstore::net::concurrency
