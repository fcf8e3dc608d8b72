// Many gRPC Watch and LeaseKeepAlive streams open at once on a real kvnode hold no thread each:
// the services run on gRPC's callback API, so 300 open Watch streams (one watcher each) keep the
// kvnode's thread count under a small bound while every watcher gets a put's event, and the
// count comes back once the streams close (their half-close answered with OK). The same for
// keep-alive streams, each renewing a lease. With a thread per stream (gRPC's synchronous API
// plus a writer thread each) the 300 streams took over 600 threads.
// Bounded: every stream has a deadline, every wait a time limit; loopback only.
// WATCH_STREAMS_KVNODE names another kvnode binary to run (to check an older build).

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "net/etcd/rpc.grpc.pb.h"
#include "node/crash_process.h"
#include "node/http_testing.h"

namespace kvstore::net::etcd {
namespace {

using node::crash::ChildProcess;
using node::crash::Clock;

constexpr int kWatchStreams = 300;
constexpr int kLeaseStreams = 200;
constexpr int kConnections = 6;  // the streams spread over them, under --max-concurrent-streams
// The kvnode's threads while the streams are open: its own (loop, storage, gRPC's pollers and
// callback executor) are about 20.
constexpr int kThreadBound = 64;
// Threads the kvnode may have more than before the streams, once they have closed.
constexpr int kThreadSlack = 8;
constexpr auto kStreamDeadline = std::chrono::seconds(60);

// The "Threads:" line of /proc/<pid>/status.
int Threads(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) != 0) continue;
    int threads = 0;
    EXPECT_TRUE(absl::SimpleAtoi(line.substr(8), &threads)) << line;
    return threads;
  }
  ADD_FAILURE() << "no thread count for " << pid;
  return 0;
}

std::shared_ptr<grpc::Channel> Channel(uint16_t port) {
  // Each channel its own connection (gRPC would share one between equal channels).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

template <typename Stream>
struct OpenStream {
  std::unique_ptr<grpc::ClientContext> context;
  std::unique_ptr<Stream> stream;
};

class WatchStreamsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = node::crash::FreshTestDir("watch_streams");
    client_port_ = node::testing::FreeLoopbackPort();
    const uint16_t peer_port = node::testing::FreeLoopbackPort();
    node::crash::SpawnOptions options;
    options.args = {"--name",
                    "s1",
                    "--data-dir",
                    dir,
                    "--listen-client-urls",
                    absl::StrCat("http://127.0.0.1:", client_port_),
                    "--listen-peer-urls",
                    absl::StrCat("http://127.0.0.1:", peer_port),
                    "--initial-advertise-peer-urls",
                    absl::StrCat("http://127.0.0.1:", peer_port),
                    "--initial-cluster",
                    absl::StrCat("s1=http://127.0.0.1:", peer_port),
                    "--heartbeat-interval",
                    "50",
                    "--election-timeout",
                    "500",
                    "--log-level",
                    "error"};
    const char* other = std::getenv("WATCH_STREAMS_KVNODE");
    auto child = ChildProcess::Spawn(
        other != nullptr ? std::string(other) : node::crash::RunfilePath("node/kvnode"), options);
    ASSERT_TRUE(child.ok()) << child.status();
    kvnode_ = std::move(*child);
    for (int i = 0; i < kConnections; ++i) channels_.push_back(Channel(client_port_));
    kv_ = etcdserverpb::KV::NewStub(channels_[0]);
    // Serving once a put succeeds (the member elected itself).
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
    grpc::Status put(grpc::StatusCode::UNAVAILABLE, "not tried");
    while (Clock::now() < deadline) {
      put = Put("ready", "1");
      if (put.ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(put.ok()) << "kvnode never served a put: " << put.error_message();
    // gRPC's threads settle once the connections are up: each channel makes one call first.
    for (auto& channel : channels_) {
      auto kv = etcdserverpb::KV::NewStub(channel);
      etcdserverpb::RangeRequest request;
      request.set_key("ready");
      etcdserverpb::RangeResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      context.set_wait_for_ready(true);
      ASSERT_TRUE(kv->Range(&context, request, &response).ok());
    }
    baseline_threads_ = Threads(kvnode_->pid());
  }

  void TearDown() override {
    if (kvnode_ != nullptr) kvnode_->Kill();
  }

  grpc::Status Put(const std::string& key, const std::string& value) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    context.set_wait_for_ready(true);
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    etcdserverpb::PutResponse response;
    return kv_->Put(&context, request, &response);
  }

  static std::unique_ptr<grpc::ClientContext> StreamContext() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + kStreamDeadline);
    return context;
  }

  // Waits (at most 10 s) until the kvnode has no more than kThreadSlack threads beyond the
  // baseline; its count then.
  int SettledThreads() {
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
    int threads = Threads(kvnode_->pid());
    while (threads > baseline_threads_ + kThreadSlack && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      threads = Threads(kvnode_->pid());
    }
    return threads;
  }

  uint16_t client_port_ = 0;
  std::unique_ptr<ChildProcess> kvnode_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  int baseline_threads_ = 0;
};

using WatchStream =
    grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;
using KeepAliveStream = grpc::ClientReaderWriter<etcdserverpb::LeaseKeepAliveRequest,
                                                 etcdserverpb::LeaseKeepAliveResponse>;

TEST_F(WatchStreamsTest, ManyWatchStreamsHoldNoThreadEach) {
  ASSERT_LT(baseline_threads_, kThreadBound);
  std::vector<std::unique_ptr<etcdserverpb::Watch::Stub>> stubs;
  for (auto& channel : channels_) stubs.push_back(etcdserverpb::Watch::NewStub(channel));
  std::vector<OpenStream<WatchStream>> streams(kWatchStreams);
  for (int i = 0; i < kWatchStreams; ++i) {
    streams[i].context = StreamContext();
    streams[i].stream = stubs[i % kConnections]->Watch(streams[i].context.get());
    etcdserverpb::WatchRequest create;
    create.mutable_create_request()->set_key("watched");
    ASSERT_TRUE(streams[i].stream->Write(create)) << "stream " << i;
  }
  for (int i = 0; i < kWatchStreams; ++i) {
    etcdserverpb::WatchResponse response;
    ASSERT_TRUE(streams[i].stream->Read(&response)) << "stream " << i;
    ASSERT_TRUE(response.created()) << response.DebugString();
    EXPECT_FALSE(response.canceled()) << response.DebugString();
    EXPECT_EQ(response.watch_id(), 0);  // each stream numbers its watchers from 0
  }
  const int open_threads = Threads(kvnode_->pid());
  std::printf("kvnode threads: %d before, %d with %d Watch streams open\n", baseline_threads_,
              open_threads, kWatchStreams);
  EXPECT_LT(open_threads, kThreadBound)
      << kWatchStreams << " Watch streams open (" << baseline_threads_ << " threads before)";

  ASSERT_TRUE(Put("watched", "v1").ok());
  for (int i = 0; i < kWatchStreams; ++i) {
    etcdserverpb::WatchResponse response;
    ASSERT_TRUE(streams[i].stream->Read(&response)) << "stream " << i;
    ASSERT_EQ(response.events_size(), 1) << response.DebugString();
    EXPECT_EQ(response.watch_id(), 0);
    EXPECT_EQ(response.events(0).kv().key(), "watched");
    EXPECT_EQ(response.events(0).kv().value(), "v1");
  }
  const int delivered_threads = Threads(kvnode_->pid());
  EXPECT_LT(delivered_threads, kThreadBound) << "after delivering one event to each stream";

  // The client half-closes each stream: the kvnode ends it with OK.
  for (auto& open : streams) ASSERT_TRUE(open.stream->WritesDone());
  for (int i = 0; i < kWatchStreams; ++i) {
    etcdserverpb::WatchResponse response;
    EXPECT_FALSE(streams[i].stream->Read(&response)) << response.DebugString();
    grpc::Status status = streams[i].stream->Finish();
    EXPECT_TRUE(status.ok()) << "stream " << i << ": " << status.error_message();
  }
  streams.clear();
  EXPECT_LE(SettledThreads(), baseline_threads_ + kThreadSlack);

  // The closed streams' watchers are gone: a new stream's watcher still gets events.
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stubs[0]->Watch(&context);
  etcdserverpb::WatchRequest create;
  create.mutable_create_request()->set_key("watched");
  ASSERT_TRUE(stream->Write(create));
  etcdserverpb::WatchResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.created());
  ASSERT_TRUE(Put("watched", "v2").ok());
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_EQ(response.events_size(), 1) << response.DebugString();
  EXPECT_EQ(response.events(0).kv().value(), "v2");
  context.TryCancel();
  (void)stream->Finish();
}

TEST_F(WatchStreamsTest, ManyKeepAliveStreamsHoldNoThreadEach) {
  ASSERT_LT(baseline_threads_, kThreadBound);
  auto lease = etcdserverpb::Lease::NewStub(channels_[0]);
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(60);
  etcdserverpb::LeaseGrantResponse granted;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Status status = lease->LeaseGrant(&context, grant, &granted);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_NE(granted.id(), 0);
  std::vector<std::unique_ptr<etcdserverpb::Lease::Stub>> stubs;
  for (auto& channel : channels_) stubs.push_back(etcdserverpb::Lease::NewStub(channel));
  std::vector<OpenStream<KeepAliveStream>> streams(kLeaseStreams);
  // Two renewals on each stream, the first of every stream before any second.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kLeaseStreams; ++i) {
      if (round == 0) {
        streams[i].context = StreamContext();
        streams[i].stream = stubs[i % kConnections]->LeaseKeepAlive(streams[i].context.get());
      }
      etcdserverpb::LeaseKeepAliveRequest request;
      request.set_id(granted.id());
      ASSERT_TRUE(streams[i].stream->Write(request)) << "stream " << i;
    }
    for (int i = 0; i < kLeaseStreams; ++i) {
      etcdserverpb::LeaseKeepAliveResponse response;
      ASSERT_TRUE(streams[i].stream->Read(&response)) << "stream " << i;
      EXPECT_EQ(response.id(), granted.id());
      EXPECT_EQ(response.ttl(), 60);
      EXPECT_GT(response.header().revision(), 0);
    }
  }
  EXPECT_LT(Threads(kvnode_->pid()), kThreadBound)
      << kLeaseStreams << " keep-alive streams open (" << baseline_threads_ << " threads before)";

  // An unknown lease is answered with TTL 0 (etcd's), and the stream stays open.
  {
    etcdserverpb::LeaseKeepAliveRequest request;
    request.set_id(granted.id() + 1);
    ASSERT_TRUE(streams[0].stream->Write(request));
    etcdserverpb::LeaseKeepAliveResponse response;
    ASSERT_TRUE(streams[0].stream->Read(&response));
    EXPECT_EQ(response.id(), granted.id() + 1);
    EXPECT_EQ(response.ttl(), 0);
  }

  for (auto& open : streams) ASSERT_TRUE(open.stream->WritesDone());
  for (int i = 0; i < kLeaseStreams; ++i) {
    etcdserverpb::LeaseKeepAliveResponse response;
    EXPECT_FALSE(streams[i].stream->Read(&response));
    grpc::Status status = streams[i].stream->Finish();
    EXPECT_TRUE(status.ok()) << "stream " << i << ": " << status.error_message();
  }
  streams.clear();
  EXPECT_LE(SettledThreads(), baseline_threads_ + kThreadSlack);
}

}  // namespace
}  // namespace kvstore::net::etcd
