// The client library against real servers on loopback (fake members behind ClientServer):
// requests and their errors, failover with a per-try timeout past an endpoint that never
// answers, which failures are retried and which are not, watches, keep-alives, snapshot
// downloads and status.

#include "net/client.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "gtest/gtest.h"
#include "net/client_service.h"
#include "net/convert.h"
#include "net/testing/fake_member.h"

namespace kvstore::net {
namespace {

using testing::FakeMember;
using testing::RunFor;
using testing::RunUntil;

server::Request Put(const std::string& key, const std::string& value) {
  server::Request r;
  r.type = server::RequestType::kPut;
  r.put.key = key;
  r.put.value = value;
  return r;
}

server::Request Range(const std::string& key) {
  server::Request r;
  r.type = server::RequestType::kRange;
  r.range.key = key;
  return r;
}

class ClientTest : public ::testing::Test {
 protected:
  ~ClientTest() noexcept override {}

  // Serves `member` on loopback; returns its address.
  std::string Serve(FakeMember& member) {
    servers_.push_back(ClientServer::Listen(network_, timer_, "127.0.0.1:0", member).wait(ws_));
    return absl::StrCat("127.0.0.1:", servers_.back()->port());
  }

  std::unique_ptr<Client> NewClient(std::vector<std::string> endpoints,
                                    kj::Duration per_try_timeout = 300 * kj::MILLISECONDS) {
    ClientOptions options;
    options.endpoints = std::move(endpoints);
    options.per_try_timeout = per_try_timeout;
    auto client = Client::Create(network_, timer_, std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return std::move(*client);
  }

  // Milliseconds `call` took on the loop.
  int64_t Timed(const std::function<void()>& call) {
    const kj::TimePoint start = timer_.now();
    call();
    return (timer_.now() - start) / kj::MILLISECONDS;
  }

  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  kj::WaitScope& ws_ = io_.waitScope;
  kj::Timer& timer_ = io_.provider->getTimer();
  kj::Network& network_ = io_.provider->getNetwork();
  FakeMember a_{1};
  FakeMember b_{2};
  std::vector<kj::Own<ClientServer>> servers_;
};

TEST_F(ClientTest, CreateRefusesBadEndpoints) {
  ClientOptions none;
  EXPECT_EQ(CodeOf(Client::Create(network_, timer_, none).status()), ErrorCode::kInvalidArgument);
  ClientOptions ftp;
  ftp.endpoints = {"ftp://127.0.0.1:2379"};
  auto refused = Client::Create(network_, timer_, ftp);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("expected http://host:port"), std::string::npos);
}

TEST_F(ClientTest, ListeningOnATakenPortRejects) {
  const std::string address = Serve(a_);
  bool refused = false;
  ClientServer::Listen(network_, timer_, address, b_)
      .then([](kj::Own<ClientServer>) {}, [&](kj::Exception&&) { refused = true; })
      .wait(ws_);
  EXPECT_TRUE(refused);
}

TEST_F(ClientTest, RequestsAndTheMembersErrors) {
  auto client = NewClient({absl::StrCat("http://", Serve(a_), "/")});
  auto put = client->Call(Put("k", "v"), ws_);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->put.revision, 2);
  auto got = client->Call(Range("k"), ws_);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->range.kvs.size(), 1u);
  EXPECT_EQ(got->range.kvs[0].value, "v");
  // The member's error is the result, with its code.
  server::Request revoke;
  revoke.type = server::RequestType::kLeaseRevoke;
  revoke.lease_id = 99;
  EXPECT_EQ(CodeOf(client->Call(revoke, ws_).status()), ErrorCode::kLeaseNotFound);
  // Every request type reaches the member.
  for (server::RequestType type :
       {server::RequestType::kDeleteRange, server::RequestType::kTxn, server::RequestType::kCompact,
        server::RequestType::kLeaseGrant, server::RequestType::kLeaseLeases,
        server::RequestType::kMemberList, server::RequestType::kAlarmList,
        server::RequestType::kAlarmDisarm, server::RequestType::kHash,
        server::RequestType::kDefragment}) {
    server::Request r;
    r.type = type;
    r.ttl_seconds = 10;
    auto answer = client->Call(r, ws_);
    EXPECT_TRUE(answer.ok()) << static_cast<int>(type) << ": " << answer.status();
    EXPECT_EQ(a_.CallsOf(type), 1u);
  }
  // A single keep-alive opens the stream and renews in one round trip.
  server::Request keep_alive;
  keep_alive.type = server::RequestType::kLeaseKeepAlive;
  keep_alive.lease_id = 1000;  // granted above
  auto renewed = client->Call(keep_alive, ws_);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->lease.id, 1000);
  EXPECT_EQ(renewed->lease.remaining_ttl_seconds, 10);
}

TEST_F(ClientTest, APartitionedEndpointCostsOnePerTryTimeout) {
  testing::SilentListener silent(network_, ws_);
  auto client = NewClient({silent.address(), Serve(a_)});
  absl::StatusOr<server::Response> got = absl::UnknownError("");
  const int64_t first_ms = Timed([&] { got = client->Call(Range("k"), ws_); });
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_GE(first_ms, 250);
  EXPECT_LT(first_ms, 1000);
  EXPECT_EQ(silent.accepted(), 1u);
  EXPECT_TRUE(client->InBackoff(0));
  // Now skipped: the next requests do not wait for it.
  const int64_t second_ms = Timed([&] { got = client->Call(Range("k"), ws_); });
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LT(second_ms, 300);  // less than one per-try timeout: not tried
}

TEST_F(ClientTest, AWriteThatNeverReachedAMemberIsRetried) {
  testing::SilentListener silent(network_, ws_);
  auto client = NewClient({silent.address(), Serve(a_)});
  auto put = client->Call(Put("k", "v"), ws_);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(a_.CallsOf(server::RequestType::kPut), 1u);
}

TEST_F(ClientTest, AWriteThatMayHaveAppliedIsNotRetried) {
  a_.hold_calls = true;  // the request arrives, the answer never comes
  auto client = NewClient({Serve(a_), Serve(b_)});
  auto put = client->Call(Put("k", "v"), ws_);
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(CodeOf(put.status()), ErrorCode::kTimeout);
  EXPECT_NE(put.status().message().find("its outcome is unknown"), std::string::npos)
      << put.status();
  EXPECT_EQ(a_.CallsOf(server::RequestType::kPut), 1u);
  EXPECT_EQ(b_.CallsOf(server::RequestType::kPut), 0u);
}

// A request over the member's reader limit (--max-request-bytes plus the envelope) ends its
// connection, but with a reason: the caller gets etcd's "request is too large" naming the
// sizes, not a broken pipe; the request is not sent elsewhere and the client keeps working.
TEST_F(ClientTest, ARequestOverTheMembersLimitIsRefusedAsTooLarge) {
  auto client = NewClient({Serve(a_), Serve(b_)}, 2000 * kj::MILLISECONDS);
  const std::string big(server::kDefaultMaxRequestBytes + kRequestEnvelopeBytes, 'x');
  auto put = client->Call(Put("big", big), ws_);
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(CodeOf(put.status()), ErrorCode::kRequestTooLarge) << put.status();
  EXPECT_NE(put.status().message().find("etcdserver: request is too large (a message of "),
            std::string::npos)
      << put.status();
  EXPECT_NE(
      put.status().message().find(absl::StrCat(
          "this member reads at most ", server::kDefaultMaxRequestBytes + kRequestEnvelopeBytes)),
      std::string::npos)
      << put.status();
  EXPECT_EQ(a_.CallsOf(server::RequestType::kPut) + b_.CallsOf(server::RequestType::kPut), 0u);
  // The next request gets a new connection and is served.
  auto small = client->Call(Put("small", "ok"), ws_);
  EXPECT_TRUE(small.ok()) << small.status();
}

TEST_F(ClientTest, AReadWithoutAnAnswerIsRetried) {
  a_.hold_calls = true;
  auto client = NewClient({Serve(a_), Serve(b_)});
  auto got = client->Call(Range("k"), ws_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(a_.CallsOf(server::RequestType::kRange), 1u);
  EXPECT_EQ(b_.CallsOf(server::RequestType::kRange), 1u);
}

TEST_F(ClientTest, NoLeaderIsRetriedElsewhereEvenForWrites) {
  a_.answer_all_with = Error(ErrorCode::kNoLeader, "election in progress");
  auto client = NewClient({Serve(a_), Serve(b_)});
  auto put = client->Call(Put("k", "v"), ws_);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(a_.CallsOf(server::RequestType::kPut), 1u);
  EXPECT_EQ(b_.CallsOf(server::RequestType::kPut), 1u);
  EXPECT_TRUE(client->InBackoff(0));
}

TEST_F(ClientTest, TimeoutAndStoppedAreRetriedForReadsOnly) {
  for (ErrorCode code : {ErrorCode::kTimeout, ErrorCode::kStopped, ErrorCode::kLeadershipChanged}) {
    FakeMember a(1);
    FakeMember b(2);
    a.answer_all_with = Error(code, "maybe applied");
    auto client = NewClient({Serve(a), Serve(b)});
    auto put = client->Call(Put("k", "v"), ws_);
    EXPECT_EQ(CodeOf(put.status()), code);
    EXPECT_EQ(b.CallsOf(server::RequestType::kPut), 0u);
    auto got = client->Call(Range("k"), ws_);
    EXPECT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(b.CallsOf(server::RequestType::kRange), 1u);
    servers_.clear();
  }
}

TEST_F(ClientTest, EveryEndpointDownIsUnavailableQuickly) {
  auto client =
      NewClient({testing::ClosedAddress(network_, ws_), testing::ClosedAddress(network_, ws_)});
  absl::StatusOr<server::Response> got = absl::UnknownError("");
  const int64_t ms = Timed([&] { got = client->Call(Put("k", "v"), ws_); });
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_NE(got.status().message().find("no endpoint answered"), std::string::npos);
  EXPECT_LT(ms, 300);  // refused at once: no per-try timeout spent
  // In backoff, both are still tried: a request never fails only because of old failures.
  EXPECT_TRUE(client->InBackoff(0) && client->InBackoff(1));
  EXPECT_FALSE(client->Call(Put("k", "v"), ws_).ok());
}

TEST_F(ClientTest, AWatchDeliversInOrderAndCancels) {
  auto client = NewClient({Serve(a_)});
  std::vector<mvcc::WatchResponse> seen;
  mvcc::WatchRequest request;
  request.key = "w";
  auto watch = client->WatchAsync(request, [&](const mvcc::WatchResponse& r) { seen.push_back(r); })
                   .wait(ws_);
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return seen.size() == 1; }));
  EXPECT_TRUE(seen[0].created);
  ASSERT_TRUE(client->Call(Put("w", "1"), ws_).ok());
  ASSERT_TRUE(client->Call(Put("w", "2"), ws_).ok());
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return seen.size() == 3; }));
  EXPECT_EQ(seen[1].events[0].kv.value, "1");
  EXPECT_EQ(seen[2].events[0].kv.value, "2");
  EXPECT_TRUE((*watch)->RequestProgress().wait(ws_).ok());
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return seen.size() == 4; }));
  EXPECT_TRUE(seen[3].progress);
  EXPECT_TRUE((*watch)->Cancel().wait(ws_).ok());
  ASSERT_TRUE(client->Call(Put("w", "3"), ws_).ok());
  RunFor(ws_, timer_, 20 * kj::MILLISECONDS);
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_EQ(a_.open_watches(), 0u);
}

TEST_F(ClientTest, AWatchEndsWithANoticeWhenItsConnectionBreaks) {
  auto client = NewClient({Serve(a_)});
  std::vector<mvcc::WatchResponse> seen;
  auto watch = client
                   ->WatchAsync(mvcc::WatchRequest{"w"},
                                [&](const mvcc::WatchResponse& r) { seen.push_back(r); })
                   .wait(ws_);
  ASSERT_TRUE(watch.ok()) << watch.status();
  servers_.clear();  // the member goes away
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return (*watch)->ended(); }));
  EXPECT_TRUE(seen.back().canceled);
  EXPECT_NE(seen.back().cancel_reason.find("lost"), std::string::npos) << seen.back().cancel_reason;
}

TEST_F(ClientTest, DroppingAWatchReleasesItOnTheMember) {
  auto client = NewClient({Serve(a_)});
  auto watch =
      client->WatchAsync(mvcc::WatchRequest{"w"}, [](const mvcc::WatchResponse&) {}).wait(ws_);
  ASSERT_TRUE(watch.ok()) << watch.status();
  EXPECT_EQ(a_.open_watches(), 1u);
  watch->reset();
  ASSERT_TRUE(RunUntil(ws_, timer_, [&] { return a_.open_watches() == 0; }));
}

TEST_F(ClientTest, KeepAliveFindsTheLeader) {
  a_.answer_all_with = Error(ErrorCode::kNotLeader, "keep-alive must be served by the leader");
  auto client = NewClient({Serve(a_), Serve(b_)});
  server::Request grant;
  grant.type = server::RequestType::kLeaseGrant;
  grant.lease_id = 5;
  grant.ttl_seconds = 30;
  ASSERT_TRUE(client->Call(grant, ws_).ok());
  std::unique_ptr<Client::KeepAlive> keep_alive = client->NewKeepAlive(5);
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<int64_t> ttl = keep_alive->Renew().wait(ws_);
    ASSERT_TRUE(ttl.ok()) << ttl.status();
    EXPECT_EQ(*ttl, 30);
  }
  // The leader was remembered: the follower was asked once.
  EXPECT_EQ(a_.CallsOf(server::RequestType::kLeaseKeepAlive), 1u);
  EXPECT_EQ(b_.CallsOf(server::RequestType::kLeaseKeepAlive), 3u);
  server::Request revoke;
  revoke.type = server::RequestType::kLeaseRevoke;
  revoke.lease_id = 5;
  ASSERT_TRUE(client->Call(revoke, ws_).ok());
  EXPECT_EQ(CodeOf(keep_alive->Renew().wait(ws_).status()), ErrorCode::kLeaseNotFound);
  EXPECT_EQ(CodeOf(client->NewKeepAlive(0)->Renew().wait(ws_).status()),
            ErrorCode::kInvalidArgument);
}

TEST_F(ClientTest, ASnapshotDownloadIsCheckedByItsCrc) {
  a_.snapshot_data = std::string((5 << 20) / 2, 's');
  a_.snapshot_data[12345] = 'x';
  auto client = NewClient({Serve(a_)});
  std::string received;
  absl::Status status = client
                            ->SnapshotAsync(0,
                                            [&](absl::string_view chunk) {
                                              received.append(chunk.data(), chunk.size());
                                              return absl::OkStatus();
                                            })
                            .wait(ws_);
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(received, a_.snapshot_data);
  // The caller can stop it.
  absl::Status stopped =
      client->SnapshotAsync(0, [](absl::string_view) { return absl::CancelledError("enough"); })
          .wait(ws_);
  EXPECT_EQ(stopped.code(), absl::StatusCode::kCancelled);
}

// A connection that pipelines requests the member does not answer (puts waiting for a leader)
// is read only until kMaxInflightCallBytesPerConnection of them are unanswered: the member stops
// reading it there (Cap'n Proto's flow limit), so its memory stays bounded, and it keeps serving
// other connections.
TEST_F(ClientTest, UnansweredCallsStopBeingReadAtTheConnectionsFlowLimit) {
  a_.hold_calls = true;
  const std::string endpoint = Serve(a_);
  auto flooder = NewClient({endpoint}, 30 * kj::SECONDS);
  constexpr size_t kValueBytes = 1 << 20;
  const size_t kCalls = kMaxInflightCallBytesPerConnection / kValueBytes + 32;
  std::vector<kj::Promise<absl::StatusOr<server::Response>>> calls;
  for (size_t i = 0; i < kCalls; ++i) {
    calls.push_back(
        flooder->CallEndpointAsync(0, Put(absl::StrCat("k", i), std::string(kValueBytes, 'v'))));
  }
  const size_t at_limit = kMaxInflightCallBytesPerConnection / kValueBytes;
  EXPECT_TRUE(RunUntil(
      ws_, timer_, [&] { return a_.calls.size() >= at_limit; }, 10 * kj::SECONDS))
      << a_.calls.size() << " calls read";
  RunFor(ws_, timer_, 500 * kj::MILLISECONDS);
  const size_t read = a_.calls.size();
  EXPECT_GE(read, at_limit);
  EXPECT_LE(read, at_limit + 2) << "read past the flow limit";
  // Another connection is served meanwhile, and the flooding one still is not read.
  a_.hold_calls = false;
  auto other = NewClient({endpoint}, 5 * kj::SECONDS);
  absl::StatusOr<server::Response> answered = other->Call(Range("k0"), ws_);
  EXPECT_TRUE(answered.ok()) << answered.status();
  RunFor(ws_, timer_, 200 * kj::MILLISECONDS);
  EXPECT_EQ(a_.CallsOf(server::RequestType::kPut), read);
}

// etcd's snapshot is an admin operation: the member asks its core whether the caller may (a
// local alarm list, refused as an admin check is) before it copies anything.
TEST_F(ClientTest, ASnapshotDownloadIsRefusedWhenTheCallerIsNotAnAdmin) {
  a_.snapshot_data = "data";
  a_.answer_all_with = Error(ErrorCode::kPermissionDenied, "etcdserver: permission denied");
  auto client = NewClient({Serve(a_)});
  int chunks = 0;
  absl::Status status = client
                            ->SnapshotAsync(
                                0,
                                [&](absl::string_view) {
                                  ++chunks;
                                  return absl::OkStatus();
                                },
                                "alice-token")
                            .wait(ws_);
  EXPECT_EQ(CodeOf(status), ErrorCode::kPermissionDenied) << status;
  EXPECT_EQ(status.message(), "PERMISSION_DENIED: etcdserver: permission denied") << status;
  EXPECT_EQ(chunks, 0);
  EXPECT_EQ(a_.calls, std::vector<server::RequestType>{server::RequestType::kAlarmList});
}

TEST_F(ClientTest, StatusOfOneEndpoint) {
  const std::string b = Serve(b_);
  auto client = NewClient({Serve(a_), b});
  auto status = client->StatusAsync(1).wait(ws_);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->member.id, 2u);
  EXPECT_EQ(status->version, kServerVersion);
  EXPECT_EQ(status->endpoint, b);
  EXPECT_EQ(CodeOf(client->StatusAsync(2).wait(ws_).status()), ErrorCode::kInvalidArgument);
  auto hash = client
                  ->CallEndpointAsync(1,
                                      [] {
                                        server::Request r;
                                        r.type = server::RequestType::kHash;
                                        return r;
                                      }())
                  .wait(ws_);
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_EQ(b_.CallsOf(server::RequestType::kHash), 1u);
  EXPECT_EQ(a_.CallsOf(server::RequestType::kHash), 0u);
}

}  // namespace
}  // namespace kvstore::net
