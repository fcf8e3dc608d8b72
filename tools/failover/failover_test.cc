// The failover example as processes against a real kvnode: A becomes primary, B waits; A is
// killed (kill -9) or paused (SIGSTOP, then SIGCONT); B becomes primary once A's lease has
// expired, with a larger fencing token; the heartbeat key's history shows every write of A
// before B's token, and a write fenced with A's token is refused.

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"
#include "net/concurrency/testing/kvnode_cluster.h"
#include "node/crash_process.h"

namespace kvstore::failover {
namespace {

using net::concurrency::testing::KvnodeCluster;
using node::crash::ChildProcess;
using node::crash::Clock;

constexpr char kPrefix[] = "failover/lock";
constexpr char kHeartbeatKey[] = "failover/heartbeat";
constexpr int kHeartbeatMs = 200;
// Beyond the granted TTL, how long B may take to notice A's lease is gone and take over.
constexpr auto kTakeoverSlack = std::chrono::seconds(5);

std::vector<std::string> Words(const std::string& line) {
  return absl::StrSplit(line, ' ', absl::SkipEmpty());
}

// The words of the first line of `child` (from line `from` on) that starts with `start`.
std::optional<std::vector<std::string>> FindLine(const ChildProcess& child,
                                                 const std::string& start, size_t from = 0) {
  for (size_t i = from; i < child.lines().size(); ++i) {
    if (absl::StartsWith(child.lines()[i].text, start)) return Words(child.lines()[i].text);
  }
  return std::nullopt;
}

std::optional<std::vector<std::string>> WaitForLine(ChildProcess& child, const std::string& start,
                                                    Clock::duration within, size_t from = 0) {
  child.ReadUntil(Clock::now() + within, [&] { return FindLine(child, start, from).has_value(); });
  return FindLine(child, start, from);
}

int64_t Number(const std::string& text) {
  int64_t n = 0;
  EXPECT_TRUE(absl::SimpleAtoi(text, &n)) << text;
  return n;
}

// The test's own client runs on a thread of its own, with a fresh event loop each time: the
// test thread blocks in poll(2) reading the children's output, and a kj timer whose loop did
// not run for seconds would start a per-try timeout from a stale clock.
void WithClient(const std::vector<std::string>& endpoints,
                const std::function<void(net::Client&, kj::AsyncIoContext&)>& body) {
  std::thread thread([&] {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    net::ClientOptions options;
    options.endpoints = endpoints;
    options.per_try_timeout = 2 * kj::SECONDS;
    auto client = net::Client::Create(io.provider->getNetwork(), io.provider->getTimer(), options);
    ASSERT_TRUE(client.ok()) << client.status();
    body(**client, io);
  });
  thread.join();
}

class FailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = KvnodeCluster::Start({.members = 1, .name = "failover"});
    ASSERT_TRUE(started.ok()) << started.status();
    cluster_ = std::move(*started);
  }

  std::unique_ptr<ChildProcess> StartFailover(const std::string& name) {
    node::crash::SpawnOptions spawn;
    spawn.args = {"--endpoints=" + cluster_->EndpointsFlag(),
                  "--name=" + name,
                  "--ttl=2",
                  absl::StrCat("--prefix=", kPrefix),
                  absl::StrCat("--heartbeat-key=", kHeartbeatKey),
                  absl::StrCat("--heartbeat-ms=", kHeartbeatMs)};
    auto child = ChildProcess::Spawn(node::crash::RunfilePath("tools/failover/failover"), spawn);
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? std::move(*child) : nullptr;
  }

  // Every event under "failover/" (lock keys and heartbeats) in revision order, up to the
  // heartbeat key's current revision (watched from revision 1: nothing is compacted here).
  std::vector<mvcc::Event> History() {
    std::vector<mvcc::Event> history;
    WithClient(cluster_->endpoints(), [&](net::Client& client, kj::AsyncIoContext& io) {
      server::Request get;
      get.type = server::RequestType::kRange;
      get.range.key = kHeartbeatKey;
      absl::StatusOr<server::Response> current = client.Call(get, io.waitScope);
      ASSERT_TRUE(current.ok()) << current.status();
      ASSERT_FALSE(current->range.kvs.empty());
      const int64_t last = current->range.kvs[0].mod_revision;
      auto seen_last = kj::newPromiseAndFulfiller<void>();
      mvcc::WatchRequest watch;
      watch.key = "failover/";
      watch.range_end = mvcc::PrefixEnd(watch.key);
      watch.start_revision = 1;
      auto opened = client
                        .WatchAsync(watch,
                                    [&](const mvcc::WatchResponse& response) {
                                      for (const mvcc::Event& event : response.events) {
                                        history.push_back(event);
                                        if (event.kv.mod_revision >= last &&
                                            seen_last.fulfiller->isWaiting()) {
                                          seen_last.fulfiller->fulfill();
                                        }
                                      }
                                    })
                        .wait(io.waitScope);
      ASSERT_TRUE(opened.ok()) << opened.status();
      seen_last.promise.exclusiveJoin(io.provider->getTimer().afterDelay(5 * kj::SECONDS))
          .wait(io.waitScope);
      (*opened)->Cancel().wait(io.waitScope).IgnoreError();
    });
    return history;
  }

  // A's heartbeat as A would send it now, fenced with A's token: must be refused.
  void ExpectFencedOut(const std::string& lease_hex, int64_t token) {
    server::Request txn;
    txn.type = server::RequestType::kTxn;
    mvcc::Compare owner;
    owner.key = absl::StrCat(kPrefix, "/", lease_hex);
    owner.target = mvcc::Compare::Target::kCreate;
    owner.result = mvcc::Compare::Result::kEqual;
    owner.number = token;
    txn.txn.compare.push_back(owner);
    mvcc::RequestOp put;
    put.kind = mvcc::RequestOp::Kind::kPut;
    put.put.key = kHeartbeatKey;
    put.put.value = absl::StrCat("A ", token, " late");
    txn.txn.success.push_back(put);
    WithClient(cluster_->endpoints(), [&](net::Client& client, kj::AsyncIoContext& io) {
      absl::StatusOr<server::Response> response = client.Call(txn, io.waitScope);
      ASSERT_TRUE(response.ok()) << response.status();
      EXPECT_FALSE(response->txn.succeeded) << "a write fenced with A's token was accepted";
    });
  }

  // The history holds: the heartbeats' tokens never go backwards; every heartbeat of A lands
  // before A's lock key is deleted (the handover), every heartbeat of B after it.
  void ExpectHistoryFenced(const std::string& a_lease_hex, int64_t a_token, int64_t b_token) {
    const std::string a_key = absl::StrCat(kPrefix, "/", a_lease_hex);
    std::vector<mvcc::Event> events = History();
    int64_t handover = 0;
    for (const mvcc::Event& event : events) {
      if (event.kv.key == a_key && event.type == mvcc::Event::Type::kDelete) {
        handover = event.kv.mod_revision;
        break;
      }
    }
    ASSERT_GT(handover, 0) << "A's lock key was never deleted";
    int a_writes = 0, b_writes = 0;
    int64_t last_token = 0;
    for (const mvcc::Event& event : events) {
      if (event.kv.key != kHeartbeatKey || event.type != mvcc::Event::Type::kPut) continue;
      std::vector<std::string> words = Words(event.kv.value);
      ASSERT_GE(words.size(), 2u) << event.kv.value;
      const int64_t token = Number(words[1]);
      const int64_t revision = event.kv.mod_revision;
      EXPECT_GE(token, last_token) << "token went backwards at revision " << revision;
      last_token = token;
      if (words[0] == "A") {
        ++a_writes;
        EXPECT_EQ(token, a_token);
        EXPECT_LT(revision, handover) << "A's heartbeat landed after the handover";
      } else {
        ++b_writes;
        EXPECT_EQ(words[0], "B");
        EXPECT_EQ(token, b_token);
        EXPECT_GT(revision, handover);
      }
    }
    EXPECT_GT(a_writes, 0);
    EXPECT_GT(b_writes, 0);
    std::printf(
        "history: %d heartbeats of A (token %lld), handover at revision %lld, %d of B "
        "(token %lld)\n",
        a_writes, static_cast<long long>(a_token), static_cast<long long>(handover), b_writes,
        static_cast<long long>(b_token));
  }

  std::unique_ptr<KvnodeCluster> cluster_;
};

struct Primary {
  int64_t pid = 0;
  std::string lease_hex;
  int64_t ttl_seconds = 0;
  int64_t token = 0;
};

// Starts A, waits for it to be primary and heartbeating; then B, which must wait as standby.
void StartPair(FailoverTest* test, std::unique_ptr<ChildProcess>* a,
               std::unique_ptr<ChildProcess>* b, Primary* primary,
               const std::function<std::unique_ptr<ChildProcess>(const std::string&)>& start) {
  *a = start("A");
  ASSERT_NE(*a, nullptr);
  auto started = WaitForLine(**a, "started A", std::chrono::seconds(10));
  auto standby = WaitForLine(**a, "standby A", std::chrono::seconds(10));
  auto promoted = WaitForLine(**a, "primary A", std::chrono::seconds(10));
  ASSERT_TRUE(started && standby && promoted) << (*a)->stderr_text();
  primary->pid = Number((*started)[3]);
  primary->lease_hex = (*standby)[3];
  primary->ttl_seconds = Number((*standby)[5]);
  primary->token = Number((*promoted)[3]);
  ASSERT_TRUE(WaitForLine(**a, "heartbeat A", std::chrono::seconds(5)));

  *b = start("B");
  ASSERT_NE(*b, nullptr);
  ASSERT_TRUE(WaitForLine(**b, "standby B", std::chrono::seconds(10))) << (*b)->stderr_text();
  // B stays a standby while A lives.
  EXPECT_FALSE(WaitForLine(**b, "primary B", std::chrono::seconds(1)));
}

TEST_F(FailoverTest, StandbyTakesOverWhenThePrimaryIsKilled) {
  std::unique_ptr<ChildProcess> a, b;
  Primary primary;
  StartPair(this, &a, &b, &primary, [&](const std::string& n) { return StartFailover(n); });
  if (HasFatalFailure()) return;

  a->Kill();
  const auto killed_at = Clock::now();
  auto promoted =
      WaitForLine(*b, "primary B", std::chrono::seconds(primary.ttl_seconds) + kTakeoverSlack);
  ASSERT_TRUE(promoted) << "B did not take over; its output:\n" << b->stderr_text();
  const double takeover_seconds = std::chrono::duration<double>(Clock::now() - killed_at).count();
  const int64_t b_token = Number((*promoted)[3]);
  EXPECT_GT(b_token, primary.token);
  // A renewed at most a third of the TTL before it died: its lease outlived it by at least
  // two thirds of the TTL, and B waited for that.
  EXPECT_GE(takeover_seconds, primary.ttl_seconds * 2.0 / 3 - 0.5);
  ASSERT_TRUE(WaitForLine(*b, "heartbeat B", std::chrono::seconds(5)));

  ExpectFencedOut(primary.lease_hex, primary.token);
  ExpectHistoryFenced(primary.lease_hex, primary.token, b_token);
  std::printf("kill -9: A token %lld, B token %lld, takeover %.1f s after the kill (TTL %lld s)\n",
              static_cast<long long>(primary.token), static_cast<long long>(b_token),
              takeover_seconds, static_cast<long long>(primary.ttl_seconds));
}

// A paused primary (a long stall) resumes after B took over: its next heartbeat is refused by
// the members (fenced), and it queues again as a standby behind B.
TEST_F(FailoverTest, PausedPrimaryIsFencedWhenItResumes) {
  std::unique_ptr<ChildProcess> a, b;
  Primary primary;
  StartPair(this, &a, &b, &primary, [&](const std::string& n) { return StartFailover(n); });
  if (HasFatalFailure()) return;

  ASSERT_EQ(kill(static_cast<pid_t>(primary.pid), SIGSTOP), 0);
  const auto paused_at = Clock::now();
  auto promoted =
      WaitForLine(*b, "primary B", std::chrono::seconds(primary.ttl_seconds) + kTakeoverSlack);
  const double takeover_seconds = std::chrono::duration<double>(Clock::now() - paused_at).count();
  ASSERT_TRUE(promoted) << "B did not take over";
  const int64_t b_token = Number((*promoted)[3]);
  EXPECT_GT(b_token, primary.token);
  ASSERT_TRUE(WaitForLine(*b, "heartbeat B", std::chrono::seconds(5)));

  const size_t a_lines_before = a->lines().size();
  ASSERT_EQ(kill(static_cast<pid_t>(primary.pid), SIGCONT), 0);
  // A resumes: its next heartbeat is refused (fenced), unless a renewal timer fired first and it
  // noticed its lease was gone (lost); a heartbeat in flight when it stopped may land, before
  // the handover (the history check below).
  const bool ended = a->ReadUntil(Clock::now() + std::chrono::seconds(5), [&] {
    return FindLine(*a, "fenced A", a_lines_before) || FindLine(*a, "lost A", a_lines_before);
  });
  std::string after;
  for (size_t i = a_lines_before; i < a->lines().size(); ++i) after += a->lines()[i].text + "\n";
  EXPECT_TRUE(ended) << "A went on as primary after SIGCONT:\n" << after;
  const bool fenced = FindLine(*a, "fenced A", a_lines_before).has_value();
  EXPECT_TRUE(WaitForLine(*a, "standby A", std::chrono::seconds(5), a_lines_before));
  EXPECT_FALSE(WaitForLine(*a, "primary A", std::chrono::seconds(1), a_lines_before));
  EXPECT_FALSE(FindLine(*b, "fenced B") || FindLine(*b, "lost B"));

  ExpectFencedOut(primary.lease_hex, primary.token);
  ExpectHistoryFenced(primary.lease_hex, primary.token, b_token);
  std::printf(
      "pause: A token %lld, B token %lld, takeover %.1f s after the pause; A resumed "
      "and was %s\n",
      static_cast<long long>(primary.token), static_cast<long long>(b_token), takeover_seconds,
      fenced ? "fenced" : "lost");
}

}  // namespace
}  // namespace kvstore::failover
