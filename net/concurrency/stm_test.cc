// STM against real kvnode processes: what each isolation level retries (one client forcing a
// conflict at a chosen point of another's transaction), then concurrent bank transfers on a
// three-member cluster that must conserve the money.

#include "net/concurrency/stm.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"
#include "net/concurrency/testing/cluster_fixture.h"
#include "net/concurrency/testing/kvnode_cluster.h"

namespace kvstore::net::concurrency {
namespace {

// A client and the event loop it runs on: its thread's own, or that of `share` (a thread has
// one event loop; two clients on it interleave their requests).
class Loop {
 public:
  explicit Loop(const std::vector<std::string>& endpoints, Loop* share = nullptr) {
    if (share == nullptr) {
      owned_io_ = std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
      io_ = owned_io_.get();
    } else {
      io_ = share->io_;
    }
    ClientOptions options;
    options.endpoints = endpoints;
    options.per_try_timeout = 2 * kj::SECONDS;
    options.endpoint_backoff_min = 100 * kj::MILLISECONDS;
    options.endpoint_backoff_max = 1 * kj::SECONDS;
    auto client = Client::Create(io_->provider->getNetwork(), io_->provider->getTimer(), options);
    EXPECT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }
  ClientContext context() { return {*client_, io_->provider->getTimer(), io_->waitScope}; }

  void Put(const std::string& key, const std::string& value) {
    server::Request put;
    put.type = server::RequestType::kPut;
    put.put.key = key;
    put.put.value = value;
    absl::StatusOr<server::Response> response = client_->Call(put, io_->waitScope);
    ASSERT_TRUE(response.ok()) << response.status();
  }
  std::vector<mvcc::KeyValue> Prefix(const std::string& prefix) {
    server::Request range;
    range.type = server::RequestType::kRange;
    range.range.key = prefix;
    range.range.range_end = mvcc::PrefixEnd(prefix);
    absl::StatusOr<server::Response> response = client_->Call(range, io_->waitScope);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->range.kvs : std::vector<mvcc::KeyValue>{};
  }
  std::string Value(const std::string& key) {
    std::vector<mvcc::KeyValue> kvs = Prefix(key);
    for (const mvcc::KeyValue& kv : kvs) {
      if (kv.key == key) return kv.value;
    }
    return "";
  }

 private:
  std::unique_ptr<kj::AsyncIoContext> owned_io_;
  kj::AsyncIoContext* io_ = nullptr;
  std::unique_ptr<Client> client_;
};

class StmTest : public testing::ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    if (HasFatalFailure()) return;
    loop_ = std::make_unique<Loop>(cluster_->endpoints());
    other_ = std::make_unique<Loop>(cluster_->endpoints(), loop_.get());
    prefix_ = TestKeyPrefix();
  }
  // `other_` shares the thread (and so the event loop) of `loop_`: a second client interleaving
  // writes inside an STM's apply.
  void TearDown() override {
    other_.reset();
    loop_.reset();
  }

  std::unique_ptr<Loop> loop_;
  std::unique_ptr<Loop> other_;
  std::string prefix_;
};

int64_t Number(const std::string& text) {
  int64_t n = 0;
  EXPECT_TRUE(absl::SimpleAtoi(text, &n)) << "not a number: \"" << text << "\"";
  return n;
}

// A key read, then rewritten by another client before the commit: every level but
// read-committed retries, and the retry sees the new value (no lost update).
TEST_F(StmTest, ReadKeyRewrittenBeforeCommitIsRetried) {
  for (Isolation isolation : {Isolation::kSerializableSnapshot, Isolation::kSerializable,
                              Isolation::kRepeatableReads, Isolation::kReadCommitted}) {
    SCOPED_TRACE(IsolationName(isolation));
    const std::string x = prefix_ + IsolationName(isolation);
    loop_->Put(x, "1");
    int runs = 0;
    absl::StatusOr<StmResult> result = RunStm(loop_->context(),
                                              [&](Stm& stm) {
                                                const int64_t value = Number(stm.Get(x));
                                                if (++runs == 1) other_->Put(x, "10");
                                                stm.Put(x, absl::StrCat(value + 1));
                                                return absl::OkStatus();
                                              },
                                              {.isolation = isolation});
    ASSERT_TRUE(result.ok()) << result.status();
    if (isolation == Isolation::kReadCommitted) {
      EXPECT_EQ(result->attempts, 1);
      EXPECT_EQ(loop_->Value(x), "2") << "read-committed loses the other client's update";
    } else {
      EXPECT_EQ(result->attempts, 2);
      EXPECT_EQ(loop_->Value(x), "11");
    }
  }
}

// Serializable reads every key at the first read's revision; repeatable-reads reads each key
// when first asked. A key written by another client between two reads is therefore stale under
// serializable (a conflict, retried) and current under repeatable-reads (no conflict).
TEST_F(StmTest, SerializableReadsOneSnapshotRepeatableReadsDoNot) {
  for (Isolation isolation : {Isolation::kSerializable, Isolation::kRepeatableReads}) {
    SCOPED_TRACE(IsolationName(isolation));
    const std::string a = prefix_ + IsolationName(isolation) + "/a";
    const std::string b = prefix_ + IsolationName(isolation) + "/b";
    const std::string sum = prefix_ + IsolationName(isolation) + "/sum";
    loop_->Put(a, "1");
    loop_->Put(b, "2");
    std::vector<std::string> seen_b;
    absl::StatusOr<StmResult> result =
        RunStm(loop_->context(),
               [&](Stm& stm) {
                 const int64_t a_value = Number(stm.Get(a));
                 if (seen_b.empty()) other_->Put(b, "20");
                 seen_b.push_back(stm.Get(b));
                 stm.Put(sum, absl::StrCat(a_value + Number(seen_b.back())));
                 return absl::OkStatus();
               },
               {.isolation = isolation});
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(loop_->Value(sum), "21");
    if (isolation == Isolation::kSerializable) {
      EXPECT_EQ(result->attempts, 2);
      EXPECT_EQ(seen_b, (std::vector<std::string>{"2", "20"}));
    } else {
      EXPECT_EQ(result->attempts, 1);
      EXPECT_EQ(seen_b, (std::vector<std::string>{"20"}));
    }
  }
}

// A key written but never read: only serializable-snapshot checks it was not modified after
// the snapshot (so no write skew on it); serializable commits over the other client's write.
TEST_F(StmTest, SerializableSnapshotAlsoGuardsKeysItOnlyWrites) {
  for (Isolation isolation : {Isolation::kSerializableSnapshot, Isolation::kSerializable}) {
    SCOPED_TRACE(IsolationName(isolation));
    const std::string a = prefix_ + IsolationName(isolation) + "/a";
    const std::string c = prefix_ + IsolationName(isolation) + "/c";
    loop_->Put(a, "1");
    int runs = 0;
    absl::StatusOr<StmResult> result = RunStm(loop_->context(),
                                              [&](Stm& stm) {
                                                const std::string a_value = stm.Get(a);
                                                if (++runs == 1) other_->Put(c, "other");
                                                stm.Put(c, "from-stm-" + a_value);
                                                return absl::OkStatus();
                                              },
                                              {.isolation = isolation});
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->attempts, isolation == Isolation::kSerializableSnapshot ? 2 : 1);
    EXPECT_EQ(loop_->Value(c), "from-stm-1");
  }
}

// Reads see the attempt's own writes; Del and Rev; an error from apply commits nothing.
TEST_F(StmTest, OwnWritesDeletesAndAbort) {
  const std::string k = prefix_ + "k";
  loop_->Put(k, "v");
  absl::StatusOr<StmResult> aborted = RunStm(loop_->context(), [&](Stm& stm) {
    stm.Put(k, "changed");
    EXPECT_EQ(stm.Get(k), "changed");
    return absl::FailedPreconditionError("changed my mind");
  });
  EXPECT_TRUE(absl::IsFailedPrecondition(aborted.status())) << aborted.status();
  EXPECT_EQ(loop_->Value(k), "v");

  absl::StatusOr<StmResult> deleted =
      RunStm(loop_->context(),
             [&](Stm& stm) {
               EXPECT_GT(stm.Rev(k), 0);
               EXPECT_EQ(stm.Rev(k + "-missing"), 0);
               stm.Del(k);
               EXPECT_EQ(stm.Get(k), "");
               return absl::OkStatus();
             },
             {.isolation = Isolation::kRepeatableReads, .prefetch = {k}});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->attempts, 1);
  EXPECT_TRUE(loop_->Prefix(k).empty());
}

constexpr int kAccounts = 6;
constexpr int64_t kInitialBalance = 100;
constexpr int kClients = 4;
constexpr int kTransfersPerClient = 60;
constexpr auto kBankTimeBudget = std::chrono::seconds(40);

struct ClientTally {
  int64_t committed = 0;  // transfers that moved money
  int64_t declined = 0;   // transfers refused for lack of funds (read-only commits)
  int64_t conflicts = 0;  // attempts retried
  int64_t errors = 0;     // RunStm failures (no endpoint, unknown outcome)
};

class BankTest : public StmTest, public ::testing::WithParamInterface<Isolation> {};

// N accounts, several clients (one thread, event loop and client each) moving random amounts
// between random accounts through the STM: however they interleave, the total is conserved and
// no balance goes negative.
TEST_P(BankTest, ConcurrentTransfersConserveMoney) {
  const Isolation isolation = GetParam();
  const std::string bank = absl::StrCat(prefix_, "accounts/");
  auto account = [&](int i) { return absl::StrCat(bank, i); };
  for (int i = 0; i < kAccounts; ++i) loop_->Put(account(i), absl::StrCat(kInitialBalance));

  std::vector<ClientTally> tallies(kClients);
  std::vector<std::thread> threads;
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + kBankTimeBudget;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      Loop loop(cluster_->endpoints());
      ClientTally& tally = tallies[c];
      uint64_t rng = 0x9E3779B97F4A7C15ull * (c + 1);
      auto next = [&rng] {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
      };
      for (int t = 0; t < kTransfersPerClient && std::chrono::steady_clock::now() < deadline; ++t) {
        const int from = next() % kAccounts;
        const int to = (from + 1 + next() % (kAccounts - 1)) % kAccounts;
        const int64_t amount = 1 + next() % 40;
        bool moved = false;
        absl::StatusOr<StmResult> result =
            RunStm(loop.context(),
                   [&](Stm& stm) {
                     moved = false;
                     int64_t from_balance = 0, to_balance = 0;
                     if (!absl::SimpleAtoi(stm.Get(account(from)), &from_balance) ||
                         !absl::SimpleAtoi(stm.Get(account(to)), &to_balance)) {
                       return stm.status().ok() ? absl::DataLossError("a balance is not a number")
                                                : absl::OkStatus();
                     }
                     if (from_balance < amount) return absl::OkStatus();
                     stm.Put(account(from), absl::StrCat(from_balance - amount));
                     stm.Put(account(to), absl::StrCat(to_balance + amount));
                     moved = true;
                     return absl::OkStatus();
                   },
                   {.isolation = isolation});
        if (!result.ok()) {
          ++tally.errors;
          std::fprintf(stderr, "client %d: %s\n", c, result.status().ToString().c_str());
          continue;
        }
        tally.conflicts += result->attempts - 1;
        ++(moved ? tally.committed : tally.declined);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  ClientTally total;
  for (const ClientTally& t : tallies) {
    total.committed += t.committed;
    total.declined += t.declined;
    total.conflicts += t.conflicts;
    total.errors += t.errors;
  }
  std::vector<mvcc::KeyValue> balances = loop_->Prefix(bank);
  ASSERT_EQ(balances.size(), static_cast<size_t>(kAccounts));
  int64_t sum = 0;
  for (const mvcc::KeyValue& kv : balances) {
    const int64_t balance = Number(kv.value);
    EXPECT_GE(balance, 0) << kv.key;
    sum += balance;
  }
  EXPECT_EQ(sum, kAccounts * kInitialBalance);
  EXPECT_GT(total.committed, kClients * kTransfersPerClient / 4) << "the workload barely ran";
  EXPECT_EQ(total.errors, 0);
  // Four clients over six accounts: some transactions must have met.
  EXPECT_GT(total.conflicts, 0);
  std::printf(
      "bank %s: %d clients, %lld transfers committed, %lld declined, %lld conflicts retried, "
      "%lld errors in %.1f s (%.1f transfers/s); total %lld\n",
      IsolationName(isolation), kClients, static_cast<long long>(total.committed),
      static_cast<long long>(total.declined), static_cast<long long>(total.conflicts),
      static_cast<long long>(total.errors), seconds, (total.committed + total.declined) / seconds,
      static_cast<long long>(sum));
}

INSTANTIATE_TEST_SUITE_P(Isolations, BankTest,
                         ::testing::Values(Isolation::kSerializableSnapshot,
                                           Isolation::kSerializable, Isolation::kRepeatableReads),
                         [](const ::testing::TestParamInfo<Isolation>& info) {
                           std::string name;
                           for (char ch : std::string(IsolationName(info.param))) {
                             if (ch != '-') name += ch;
                           }
                           return name;
                         });

}  // namespace
}  // namespace kvstore::net::concurrency
