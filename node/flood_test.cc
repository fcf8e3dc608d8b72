// A flood against a real kvnode, past every per-connection and per-request limit: a Watch stream
// opens more watchers than kMaxWatchersPerStream, one connection opens more gRPC streams than
// --max-concurrent-streams, clients send a burst of requests just under and over
// --max-request-bytes (gRPC and the JSON gateway). The member answers each limit with its error,
// keeps serving a normal client throughout, and its resident memory stays under a stated bound.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
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
#include "net/etcd/service.h"
#include "node/crash_process.h"
#include "node/http_testing.h"

namespace kvstore::node {
namespace {

using crash::ChildProcess;
using crash::Clock;
using crash::SpawnOptions;

constexpr uint64_t kMaxRequestBytes = 64 << 10;
constexpr int kMaxConcurrentStreams = 8;
// The member's resident memory at its peak, during the flood or after it (it starts near
// 30 MiB; the watchers and the data written account for a few tens more). The peak (VmHWM),
// not the memory left afterwards, is what shows the flood's queues stayed bounded.
constexpr uint64_t kRssBoundKib = 256 << 10;

// A "<field>:  N kB" line of /proc/<pid>/status: VmRSS (resident now), VmHWM (resident peak).
uint64_t StatusKib(pid_t pid, const std::string& field) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  const std::string prefix = field + ":";
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    uint64_t kib = 0;
    std::string number = line.substr(prefix.size());
    number.erase(number.find("kB"));
    EXPECT_TRUE(absl::SimpleAtoi(number, &kib)) << line;
    return kib;
  }
  ADD_FAILURE() << "no " << field << " for " << pid;
  return 0;
}

std::shared_ptr<grpc::Channel> Channel(const std::string& endpoint) {
  // Each channel its own connection (gRPC would share one between equal channels).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxSendMessageSize(8 << 20);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<grpc::ClientContext> Context(int timeout_ms = 5000) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  return context;
}

grpc::Status Put(etcdserverpb::KV::Stub& kv, const std::string& key, const std::string& value,
                 int timeout_ms = 5000) {
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  etcdserverpb::PutResponse response;
  return kv.Put(Context(timeout_ms).get(), request, &response);
}

grpc::Status Get(etcdserverpb::KV::Stub& kv, const std::string& key, std::string* value,
                 int timeout_ms = 5000) {
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  etcdserverpb::RangeResponse response;
  grpc::Status status = kv.Range(Context(timeout_ms).get(), request, &response);
  if (status.ok() && response.kvs_size() == 1) *value = response.kvs(0).value();
  return status;
}

// Whether something accepts TCP connections on 127.0.0.1:`port`.
bool Listening(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return connected;
}

// One HTTP/1.1 POST of `body` to the gateway; the status line of the answer and its body.
std::string HttpPost(uint16_t port, const std::string& path, const std::string& body) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return "connect failed";
  }
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  const std::string request =
      absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ", body.size(),
                   "\r\nConnection: close\r\n\r\n", body);
  // The member may answer before it has read the whole body: a failed write is not an error.
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  // Until the whole answer (its Content-Length) is in, or the connection ends.
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) {
    answer.append(buffer, n);
    const size_t end = answer.find("\r\n\r\n");
    const size_t length_at = answer.find("Content-Length: ");
    uint64_t length = 0;
    if (end != std::string::npos && length_at != std::string::npos && length_at < end &&
        absl::SimpleAtoi(
            answer.substr(length_at + 16, answer.find("\r\n", length_at) - length_at - 16),
            &length) &&
        answer.size() >= end + 4 + length) {
      break;
    }
  }
  close(fd);
  return answer;
}

class FloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = ::testing::TempDir() + "/flood_test";
    std::filesystem::remove_all(dir);
    client_port_ = testing::FreeLoopbackPort();
    const uint16_t peer_port = testing::FreeLoopbackPort();
    endpoint_ = absl::StrCat("127.0.0.1:", client_port_);
    SpawnOptions options;
    options.args = {"--data-dir",
                    dir,
                    "--listen-client-urls",
                    "http://" + endpoint_,
                    "--advertise-client-urls",
                    "http://" + endpoint_,
                    "--listen-peer-urls",
                    absl::StrCat("http://127.0.0.1:", peer_port),
                    "--initial-advertise-peer-urls",
                    absl::StrCat("http://127.0.0.1:", peer_port),
                    "--max-request-bytes",
                    absl::StrCat(kMaxRequestBytes),
                    "--max-concurrent-streams",
                    absl::StrCat(kMaxConcurrentStreams),
                    "--log-level",
                    "error"};
    // Under AddressSanitizer (CI's sanitized pass) a freed block waits in a quarantine of
    // 256 MiB by default, which the member's peak RSS would count (375 MiB were measured): the
    // member gets a 16 MiB one, so the bound below measures its queues, not the sanitizer's
    // (139 MiB with it). The variable is read by the child's ASan runtime only.
    if (const char* asan = std::getenv("ASAN_OPTIONS"); asan != nullptr) {
      setenv("ASAN_OPTIONS", absl::StrCat(asan, ":quarantine_size_mb=16").c_str(), 1);
    }
    auto child = ChildProcess::Spawn(crash::RunfilePath("node/kvnode"), options);
    ASSERT_TRUE(child.ok()) << child.status();
    node_ = std::move(*child);
    // gRPC backs off for seconds after a refused connection: connect once the port listens.
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
    while (!Listening(client_port_) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    normal_ = etcdserverpb::KV::NewStub(Channel(endpoint_));
    grpc::Status status;
    do {
      status = Put(*normal_, "normal", "0", 1000);
    } while (!status.ok() && Clock::now() < deadline);
    if (!status.ok())
      node_->ReadUntil(Clock::now() + std::chrono::seconds(1), [] { return false; });
    ASSERT_TRUE(status.ok()) << status.error_message() << "; kvnode: " << node_->stderr_text();
    std::printf("kvnode served after %.1f s\n",
                std::chrono::duration<double>(Clock::now() - node_->started_at()).count());
  }

  // The normal client, on its own connection, is served promptly.
  void ExpectNormalClientServed(const std::string& step) {
    const std::string value = absl::StrCat(++normal_writes_);
    const auto started = Clock::now();
    grpc::Status put = Put(*normal_, "normal", value, 3000);
    ASSERT_TRUE(put.ok()) << step << ": " << put.error_message();
    std::string got;
    grpc::Status get = Get(*normal_, "normal", &got, 3000);
    ASSERT_TRUE(get.ok()) << step << ": " << get.error_message();
    EXPECT_EQ(got, value) << step;
    EXPECT_LT(Clock::now() - started, std::chrono::seconds(2)) << step;
  }

  uint16_t client_port_ = 0;
  std::string endpoint_;
  std::unique_ptr<ChildProcess> node_;
  std::unique_ptr<etcdserverpb::KV::Stub> normal_;
  int normal_writes_ = 0;
};

TEST_F(FloodTest, LimitsAnswerTheirErrorsAndTheMemberKeepsServingInBoundedMemory) {
  const auto started = Clock::now();
  auto phase = [&](const char* name) {
    std::printf("%.1f s: %s\n", std::chrono::duration<double>(Clock::now() - started).count(),
                name);
  };
  const uint64_t rss_start_kib = StatusKib(node_->pid(), "VmRSS");

  // 1. Watchers past the per-stream limit: the extra creations are refused with the reason.
  {
    auto watch_stub = etcdserverpb::Watch::NewStub(Channel(endpoint_));
    grpc::ClientContext context;
    auto stream = watch_stub->Watch(&context);
    constexpr size_t kExtra = 20;
    const size_t total = net::etcd::kMaxWatchersPerStream + kExtra;
    std::atomic<size_t> created{0};
    std::atomic<size_t> refused{0};
    std::atomic<size_t> other_cancels{0};
    std::string refusal;
    std::thread reader([&] {
      etcdserverpb::WatchResponse response;
      while (created.load() < total && stream->Read(&response)) {
        if (!response.created()) continue;
        if (response.canceled()) {
          if (response.watch_id() == -1 &&
              response.cancel_reason().find("too many watchers on this stream") !=
                  std::string::npos) {
            if (refused.fetch_add(1) == 0) refusal = response.cancel_reason();
          } else if (response.cancel_reason().find("too many watchers") == std::string::npos) {
            other_cancels.fetch_add(1);
          }
          continue;  // its creation was answered; the created notice comes with it
        }
        created.fetch_add(1);
      }
    });
    // Batches the writer thread of the stream drains well before its queue limit.
    constexpr size_t kBatch = 500;
    auto answered = [&] { return created.load() + refused.load() + other_cancels.load(); };
    for (size_t sent = 0; sent < total;) {
      const size_t end = std::min(total, sent + kBatch);
      bool written = true;
      for (; sent < end && written; ++sent) {
        etcdserverpb::WatchRequest request;
        request.mutable_create_request()->set_key(absl::StrCat("w/", sent));
        written = stream->Write(request);
      }
      const auto batch_deadline = Clock::now() + std::chrono::seconds(10);
      while (answered() < sent && Clock::now() < batch_deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      if (!written || answered() != sent) {
        ADD_FAILURE() << "creations answered: " << answered() << " of " << sent;
        break;
      }
    }
    EXPECT_EQ(created.load(), net::etcd::kMaxWatchersPerStream);
    EXPECT_EQ(refused.load(), kExtra);
    EXPECT_EQ(other_cancels.load(), 0u);
    ExpectNormalClientServed("with 10,000 watchers open");
    context.TryCancel();
    reader.join();
    EXPECT_NE(refusal.find(absl::StrCat("limit ", net::etcd::kMaxWatchersPerStream)),
              std::string::npos)
        << refusal;
  }

  phase("watchers done");
  // 2. Streams past --max-concurrent-streams on one connection: the one past the limit waits
  // (HTTP/2 flow control) until a stream ends; other connections are not affected.
  {
    auto channel = Channel(endpoint_);
    auto watch_stub = etcdserverpb::Watch::NewStub(channel);
    auto kv = etcdserverpb::KV::NewStub(channel);
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<
        grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>>
        streams;
    for (int i = 0; i < kMaxConcurrentStreams; ++i) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      streams.push_back(watch_stub->Watch(contexts.back().get()));
      etcdserverpb::WatchRequest request;
      request.mutable_create_request()->set_key("s");
      ASSERT_TRUE(streams.back()->Write(request));
      etcdserverpb::WatchResponse response;
      ASSERT_TRUE(streams.back()->Read(&response));  // the stream is open at the member
      EXPECT_TRUE(response.created());
    }
    std::string value;
    grpc::Status waited = Get(*kv, "normal", &value, 500);
    EXPECT_EQ(waited.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << waited.error_message();
    ExpectNormalClientServed("with a connection at its stream limit");
    streams.back()->WritesDone();
    contexts.back()->TryCancel();
    (void)streams.back()->Finish();
    grpc::Status after = Get(*kv, "normal", &value, 3000);
    EXPECT_TRUE(after.ok()) << after.error_message();
    for (size_t i = 0; i + 1 < streams.size(); ++i) contexts[i]->TryCancel();
    for (size_t i = 0; i + 1 < streams.size(); ++i) (void)streams[i]->Finish();
  }

  phase("streams done");
  // 3. A burst of large requests from several connections: at the limit they are served, past
  // it refused with etcd's error; past gRPC's receive limit (max + 512 KiB) gRPC refuses them.
  {
    constexpr int kClients = 8;
    constexpr int kPutsPerClient = 30;
    std::atomic<int> served{0};
    std::atomic<int> too_large{0};
    std::atomic<int> grpc_refused{0};
    std::atomic<int> other{0};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        auto kv = etcdserverpb::KV::NewStub(Channel(endpoint_));
        for (int i = 0; i < kPutsPerClient; ++i) {
          const std::string key = absl::StrCat("big/", c, "/", i % 4);
          grpc::Status status;
          switch (i % 3) {
            case 0:  // fits: the value and the request's envelope stay under the limit
              status = Put(*kv, key, std::string(kMaxRequestBytes - 1024, 'v'));
              (status.ok() ? served : other).fetch_add(1);
              break;
            case 1:
              status = Put(*kv, key, std::string(kMaxRequestBytes + 1, 'v'));
              if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
                  status.error_message() == "etcdserver: request is too large") {
                too_large.fetch_add(1);
              } else {
                other.fetch_add(1);
              }
              break;
            default:
              status = Put(*kv, key, std::string(kMaxRequestBytes + (1 << 20), 'v'));
              (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ? grpc_refused : other)
                  .fetch_add(1);
              break;
          }
        }
      });
    }
    ExpectNormalClientServed("during the burst");
    for (std::thread& t : clients) t.join();
    EXPECT_EQ(served.load(), kClients * kPutsPerClient / 3);
    EXPECT_EQ(too_large.load(), kClients * kPutsPerClient / 3);
    EXPECT_EQ(grpc_refused.load(), kClients * kPutsPerClient / 3);
    EXPECT_EQ(other.load(), 0);
  }

  phase("burst done");
  // 4. The JSON gateway: a body past the limit is refused, one under it served.
  {
    // Past the gateway's body limit (max + 512 KiB) by less than what the HTTP server drains
    // after answering, so the answer is not lost to a reset.
    const std::string big =
        absl::StrCat("{\"key\":\"Zw==\",\"value\":\"",
                     std::string(kMaxRequestBytes + (512 << 10) + (16 << 10), 'A'), "\"}");
    const std::string refused = HttpPost(client_port_, "/v3/kv/put", big);
    EXPECT_NE(refused.find("HTTP/1.1 400"), std::string::npos) << refused.substr(0, 200);
    EXPECT_NE(refused.find("request is too large"), std::string::npos) << refused.substr(0, 400);
    const std::string small =
        HttpPost(client_port_, "/v3/kv/put", "{\"key\":\"Zw==\",\"value\":\"dmFsdWU=\"}");
    EXPECT_NE(small.find("HTTP/1.1 200"), std::string::npos) << small.substr(0, 200);
  }

  ExpectNormalClientServed("after the flood");
  const uint64_t rss_end_kib = StatusKib(node_->pid(), "VmRSS");
  const uint64_t rss_peak_kib = StatusKib(node_->pid(), "VmHWM");
  std::printf(
      "kvnode RSS: %lu KiB at start, %lu KiB at the peak, %lu KiB after the flood (bound %lu "
      "KiB); %.1f s\n",
      static_cast<unsigned long>(rss_start_kib), static_cast<unsigned long>(rss_peak_kib),
      static_cast<unsigned long>(rss_end_kib), static_cast<unsigned long>(kRssBoundKib),
      std::chrono::duration<double>(Clock::now() - started).count());
  EXPECT_LT(rss_peak_kib, kRssBoundKib);
  EXPECT_LE(rss_end_kib, rss_peak_kib);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(30));
}

// A client that creates and cancels watches on one long-lived stream (etcd's clientv3 keeps one
// stream per context and multiplexes its watches on it) leaves only its open watches at the
// member: a canceled watch is forgotten once its canceled notice is written, so its id is free
// again (etcd's watch stream allows that) and the cycles accumulate nothing.
TEST_F(FloodTest, WatchCreateCancelCyclesOnOneStreamAccumulateNothing) {
  auto watch_stub = etcdserverpb::Watch::NewStub(Channel(endpoint_));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream = watch_stub->Watch(&context);
  constexpr int64_t kId = 7;
  constexpr int kCycles = 2000;
  int cycles = 0;
  std::string failure;
  for (; cycles < kCycles && failure.empty(); ++cycles) {
    etcdserverpb::WatchRequest create;
    create.mutable_create_request()->set_key(absl::StrCat("cycle/", cycles));
    create.mutable_create_request()->set_watch_id(kId);
    etcdserverpb::WatchResponse response;
    if (!stream->Write(create) || !stream->Read(&response)) {
      failure = "the stream ended at a creation";
    } else if (!response.created() || response.canceled() || response.watch_id() != kId) {
      failure = absl::StrCat("creation answered: ", response.ShortDebugString());
    } else {
      etcdserverpb::WatchRequest cancel;
      cancel.mutable_cancel_request()->set_watch_id(kId);
      if (!stream->Write(cancel) || !stream->Read(&response)) {
        failure = "the stream ended at a cancel";
      } else if (!response.canceled() || response.watch_id() != kId) {
        failure = absl::StrCat("cancel answered: ", response.ShortDebugString());
      }
    }
  }
  EXPECT_TRUE(failure.empty()) << "cycle " << cycles << ": " << failure;
  EXPECT_EQ(cycles, kCycles);
  stream->WritesDone();
  context.TryCancel();
  (void)stream->Finish();
  ExpectNormalClientServed("after the create/cancel cycles");
}

}  // namespace
}  // namespace kvstore::node
