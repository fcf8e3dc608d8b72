// etcd's watch progress over the gRPC Watch service of a real kvnode: a watcher created with
// progress_notify gets an empty response at the current revision every
// --experimental-watch-progress-notify-interval while it has no events, a watcher without it
// gets none, and a WatchProgressRequest is answered at once (etcd 3.4: one response for the
// stream, watch id -1). Bounded: every stream has a deadline.

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "net/etcd/rpc.grpc.pb.h"
#include "node/crash_process.h"
#include "node/http_testing.h"

namespace kvstore::node {
namespace {

using crash::ChildProcess;
using crash::Clock;

constexpr int kProgressIntervalMs = 200;
constexpr auto kStreamDeadline = std::chrono::seconds(10);

class WatchProgressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = crash::FreshTestDir("watch_progress");
    const uint16_t client_port = testing::FreeLoopbackPort();
    const uint16_t peer_port = testing::FreeLoopbackPort();
    crash::SpawnOptions options;
    options.args = {"--name",
                    "w1",
                    "--data-dir",
                    dir,
                    "--listen-client-urls",
                    absl::StrCat("http://127.0.0.1:", client_port),
                    "--listen-peer-urls",
                    absl::StrCat("http://127.0.0.1:", peer_port),
                    "--initial-advertise-peer-urls",
                    absl::StrCat("http://127.0.0.1:", peer_port),
                    "--initial-cluster",
                    absl::StrCat("w1=http://127.0.0.1:", peer_port),
                    "--heartbeat-interval",
                    "50",
                    "--election-timeout",
                    "500",
                    "--experimental-watch-progress-notify-interval",
                    absl::StrCat(kProgressIntervalMs, "ms"),
                    "--log-level",
                    "error"};
    auto child = ChildProcess::Spawn(crash::RunfilePath("node/kvnode"), options);
    ASSERT_TRUE(child.ok()) << child.status();
    kvnode_ = std::move(*child);
    // kvnode listens a moment after it starts: reconnect quickly after a refused connection.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", client_port),
                                             grpc::InsecureChannelCredentials(), args);
    kv_ = etcdserverpb::KV::NewStub(channel);
    watch_ = etcdserverpb::Watch::NewStub(channel);
    // Serving once a put succeeds (the member elected itself).
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
    absl::StatusOr<int64_t> put = absl::UnavailableError("not tried");
    while (Clock::now() < deadline) {
      put = Put("ready");
      if (put.ok()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "kvnode never served a put: " << put.status();
  }

  void TearDown() override {
    if (kvnode_ != nullptr) kvnode_->Kill();
  }

  absl::StatusOr<int64_t> Put(const std::string& key) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    context.set_wait_for_ready(true);
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value("v");
    etcdserverpb::PutResponse response;
    grpc::Status status = kv_->Put(&context, request, &response);
    if (!status.ok()) return absl::UnavailableError(status.error_message());
    return response.header().revision();
  }

  static etcdserverpb::WatchRequest Create(const std::string& key, bool progress_notify) {
    etcdserverpb::WatchRequest request;
    request.mutable_create_request()->set_key(key);
    request.mutable_create_request()->set_progress_notify(progress_notify);
    return request;
  }

  static etcdserverpb::WatchRequest ProgressRequest() {
    etcdserverpb::WatchRequest request;
    request.mutable_progress_request();
    return request;
  }

  std::unique_ptr<ChildProcess> kvnode_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;
};

bool IsProgress(const etcdserverpb::WatchResponse& response) {
  return response.events_size() == 0 && !response.created() && !response.canceled();
}

TEST_F(WatchProgressTest, ProgressNotifyWatcherGetsProgressWhileQuiet) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kStreamDeadline);
  auto stream = watch_->Watch(&context);
  ASSERT_TRUE(stream->Write(Create("k", /*progress_notify=*/true)));
  etcdserverpb::WatchResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.created());
  const int64_t watch_id = response.watch_id();

  auto other = Put("other");
  ASSERT_TRUE(other.ok()) << other.status();
  // The next report after the put carries its revision.
  const Clock::time_point start = Clock::now();
  for (;;) {
    ASSERT_TRUE(stream->Read(&response)) << "no progress notification before the deadline";
    ASSERT_TRUE(IsProgress(response)) << response.DebugString();
    EXPECT_EQ(response.watch_id(), watch_id);
    if (response.header().revision() == *other) break;
    ASSERT_LT(response.header().revision(), *other);
  }
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(5 * kProgressIntervalMs));

  // An event, then progress again at its revision.
  auto mine = Put("k");
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_EQ(response.events_size(), 1) << response.DebugString();
  EXPECT_EQ(response.events(0).kv().key(), "k");
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(IsProgress(response)) << response.DebugString();
  EXPECT_EQ(response.watch_id(), watch_id);
  EXPECT_EQ(response.header().revision(), *mine);
  context.TryCancel();
}

TEST_F(WatchProgressTest, ProgressRequestIsAnsweredAtOnceAndPlainWatchersGetNoReports) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kStreamDeadline);
  auto stream = watch_->Watch(&context);
  ASSERT_TRUE(stream->Write(Create("k", /*progress_notify=*/false)));
  etcdserverpb::WatchResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.created());
  auto revision = Put("other");
  ASSERT_TRUE(revision.ok()) << revision.status();
  // Several report intervals pass; then the first response on the stream must be the answer to
  // the progress request (a periodic report would have come first).
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * kProgressIntervalMs));
  const Clock::time_point asked = Clock::now();
  ASSERT_TRUE(stream->Write(ProgressRequest()));
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_LT(Clock::now() - asked, std::chrono::milliseconds(kProgressIntervalMs));
  ASSERT_TRUE(IsProgress(response)) << response.DebugString();
  EXPECT_EQ(response.watch_id(), -1);
  EXPECT_EQ(response.header().revision(), *revision);
  EXPECT_NE(response.header().member_id(), 0u);
  context.TryCancel();
}

}  // namespace
}  // namespace kvstore::node
