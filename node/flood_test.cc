// A flood against a real kvnode, past every per-connection and per-request limit: a Watch stream
// opens more watchers than kMaxWatchersPerStream, one connection opens more gRPC streams than
// --max-concurrent-streams, clients send a burst of requests just under and over
// --max-request-bytes (gRPC and the JSON gateway). The member answers each limit with its error,
// keeps serving a normal client throughout, and its resident memory stays under a stated bound.
// With a small --max-watchers-per-connection, the watchers of all the Watch streams of one
// connection (gRPC) or of one native connection are bounded together, and give their slots back.

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
#include "core/base/errors.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"
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
// What one Watch stream whose client floods requests and reads nothing may add to the member's
// resident memory: at most 16 answers of its own and 1024 in all wait to be written, and gRPC
// buffers the requests its HTTP/2 receive window lets in (BDP probing grows it to a few MiB;
// 7 MiB in all were measured). Unheld, the test's 144,000 requests queue their answers:
// 23 MiB more for 90,000 were measured.
constexpr uint64_t kHeldStreamGrowthKib = 20 << 10;

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
    options.args.insert(options.args.end(), extra_args_.begin(), extra_args_.end());
    // The tests of etcd's answers run against etcd itself when FLOOD_TEST_ETCD names its binary
    // (by hand: bazel-bin/node/flood_test with FLOOD_TEST_ETCD=/usr/bin/etcd), to pin them.
    std::string program = crash::RunfilePath("node/kvnode");
    if (const char* etcd = std::getenv("FLOOD_TEST_ETCD"); etcd != nullptr && etcd_may_serve_) {
      program = etcd;
      options.args.insert(options.args.end(), {"--initial-cluster",
                                               absl::StrCat("default=http://127.0.0.1:", peer_port),
                                               "--logger", "zap"});
    }
    // Under AddressSanitizer (CI's sanitized pass) a freed block waits in a quarantine of
    // 256 MiB by default, which the member's peak RSS would count (375 MiB were measured): the
    // member gets a 16 MiB one, so the bound below measures its queues, not the sanitizer's
    // (139 MiB with it). The variable is read by the child's ASan runtime only.
    if (const char* asan = std::getenv("ASAN_OPTIONS"); asan != nullptr) {
      setenv("ASAN_OPTIONS", absl::StrCat(asan, ":quarantine_size_mb=16").c_str(), 1);
    }
    auto child = ChildProcess::Spawn(program, options);
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

  std::vector<std::string> extra_args_;  // more kvnode flags, set before SetUp
  bool etcd_may_serve_ = false;          // FLOOD_TEST_ETCD may replace kvnode (set before SetUp)
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

// A member with a small --max-watchers-per-connection.
constexpr size_t kMaxWatchersPerConnection = 5;

class WatchersPerConnectionTest : public FloodTest {
 protected:
  WatchersPerConnectionTest() {
    extra_args_ = {"--max-watchers-per-connection", absl::StrCat(kMaxWatchersPerConnection)};
  }
};

using WatchStream =
    grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;

// One Watch stream of a connection, with its context.
struct OpenStream {
  std::unique_ptr<grpc::ClientContext> context = std::make_unique<grpc::ClientContext>();
  std::unique_ptr<WatchStream> stream;

  explicit OpenStream(etcdserverpb::Watch::Stub& stub) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    stream = stub.Watch(context.get());
  }
  ~OpenStream() {
    context->TryCancel();
    (void)stream->Finish();
  }

  // Creates a watch on `key`: the creation's answer (a refusal is created and canceled).
  etcdserverpb::WatchResponse Create(const std::string& key) {
    etcdserverpb::WatchRequest request;
    request.mutable_create_request()->set_key(key);
    etcdserverpb::WatchResponse response;
    EXPECT_TRUE(stream->Write(request));
    EXPECT_TRUE(stream->Read(&response));
    EXPECT_TRUE(response.created()) << response.ShortDebugString();
    return response;
  }
  bool Created(const std::string& key) {
    etcdserverpb::WatchResponse response = Create(key);
    return response.created() && !response.canceled() && response.watch_id() >= 0;
  }
  // Whether the creation was refused for the connection's limit, as etcd refuses a creation:
  // watch id -1, created and canceled, with a reason naming the limit and its flag.
  bool RefusedForTheConnection(const std::string& key) {
    etcdserverpb::WatchResponse response = Create(key);
    const std::string reason =
        absl::StrCat("too many watchers on this connection (limit ", kMaxWatchersPerConnection,
                     ", --max-watchers-per-connection)");
    const bool refused = response.watch_id() == -1 && response.created() && response.canceled() &&
                         response.cancel_reason().find(reason) != std::string::npos;
    EXPECT_TRUE(refused) << response.ShortDebugString();
    return refused;
  }
  void Cancel(int64_t watch_id) {
    etcdserverpb::WatchRequest request;
    request.mutable_cancel_request()->set_watch_id(watch_id);
    etcdserverpb::WatchResponse response;
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_TRUE(response.canceled()) << response.ShortDebugString();
    EXPECT_EQ(response.watch_id(), watch_id);
  }
};

// Writes `request` on `stream` and reads the next response (an empty one if the stream ended).
etcdserverpb::WatchResponse Exchange(WatchStream& stream,
                                     const etcdserverpb::WatchRequest& request) {
  etcdserverpb::WatchResponse response;
  EXPECT_TRUE(stream.Write(request));
  EXPECT_TRUE(stream.Read(&response));
  return response;
}

etcdserverpb::WatchRequest CreateRequest(const std::string& key, int64_t watch_id = 0,
                                         const std::string& range_end = "",
                                         int64_t start_revision = 0) {
  etcdserverpb::WatchRequest request;
  request.mutable_create_request()->set_key(key);
  request.mutable_create_request()->set_range_end(range_end);
  request.mutable_create_request()->set_watch_id(watch_id);
  request.mutable_create_request()->set_start_revision(start_revision);
  return request;
}

etcdserverpb::WatchRequest CancelRequest(int64_t watch_id) {
  etcdserverpb::WatchRequest request;
  request.mutable_cancel_request()->set_watch_id(watch_id);
  return request;
}

etcdserverpb::WatchRequest ProgressRequest() {
  etcdserverpb::WatchRequest request;
  request.mutable_progress_request();
  return request;
}

// etcd's answers on the Watch stream, pinned against etcd 3.4.23 itself (FLOOD_TEST_ETCD).
class WatchAnswersTest : public FloodTest {
 protected:
  WatchAnswersTest() { etcd_may_serve_ = true; }
};

// etcd 3.4's recvLoop answers a WatchCancelRequest for an open watch with {header, watch_id,
// canceled} and nothing else, no cancel_reason; a cancel of an unknown id is not answered.
TEST_F(WatchAnswersTest, AClientsCancelIsAnsweredWithoutAReason) {
  auto stub = etcdserverpb::Watch::NewStub(Channel(endpoint_));
  OpenStream s(*stub);
  const etcdserverpb::WatchResponse created = s.Create("cancel/a");
  ASSERT_FALSE(created.canceled()) << created.ShortDebugString();
  etcdserverpb::WatchResponse answer = Exchange(*s.stream, CancelRequest(created.watch_id()));
  std::printf("cancel answered: %s\n", answer.ShortDebugString().c_str());
  EXPECT_EQ(answer.watch_id(), created.watch_id());
  EXPECT_TRUE(answer.canceled());
  EXPECT_FALSE(answer.created());
  EXPECT_EQ(answer.cancel_reason(), "");
  EXPECT_EQ(answer.compact_revision(), 0);
  EXPECT_EQ(answer.events_size(), 0);
  EXPECT_EQ(answer.header().revision(), created.header().revision());
  // Unknown ids (the one just canceled, one never used): no answer, so the next response is the
  // progress request's (etcd 3.4: watch id -1, for the whole stream).
  ASSERT_TRUE(s.stream->Write(CancelRequest(created.watch_id())));
  ASSERT_TRUE(s.stream->Write(CancelRequest(12345)));
  answer = Exchange(*s.stream, ProgressRequest());
  EXPECT_EQ(answer.watch_id(), -1) << answer.ShortDebugString();
  EXPECT_FALSE(answer.canceled()) << answer.ShortDebugString();
  EXPECT_FALSE(answer.created()) << answer.ShortDebugString();
}

// etcd's mvcc watchStream.Watch takes an automatic id (nextID++) only past its checks: a refused
// creation (a duplicate explicit id, an empty key range) leaves the next automatic id as it was.
// A compacted start revision is not refused there: the watch opens (its id is taken) and is
// canceled with the compact revision.
TEST_F(WatchAnswersTest, RefusedCreationsTakeNoAutomaticId) {
  auto stub = etcdserverpb::Watch::NewStub(Channel(endpoint_));
  OpenStream s(*stub);
  auto expect_created = [&](const etcdserverpb::WatchResponse& r, int64_t id) {
    EXPECT_TRUE(r.created()) << r.ShortDebugString();
    EXPECT_FALSE(r.canceled()) << r.ShortDebugString();
    EXPECT_EQ(r.watch_id(), id) << r.ShortDebugString();
  };
  auto expect_refused = [&](const etcdserverpb::WatchResponse& r, const std::string& reason) {
    std::printf("refused: %s\n", r.ShortDebugString().c_str());
    EXPECT_TRUE(r.created()) << r.ShortDebugString();
    EXPECT_TRUE(r.canceled()) << r.ShortDebugString();
    EXPECT_EQ(r.watch_id(), -1) << r.ShortDebugString();
    EXPECT_EQ(r.cancel_reason(), reason) << r.ShortDebugString();
  };
  expect_created(Exchange(*s.stream, CreateRequest("ids/a")), 0);
  expect_created(Exchange(*s.stream, CreateRequest("ids/b", 5)), 5);
  expect_refused(Exchange(*s.stream, CreateRequest("ids/c", 5)),
                 "mvcc: duplicate watch ID provided on the WatchStream");
  expect_created(Exchange(*s.stream, CreateRequest("ids/d")), 1);
  expect_refused(Exchange(*s.stream, CreateRequest("ids/f", 0, "ids/e")),
                 "mvcc: watcher range is empty");
  expect_created(Exchange(*s.stream, CreateRequest("ids/g")), 2);

  // A compacted start revision takes its id.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Put(*normal_, "ids/h", absl::StrCat(i)).ok());
  auto kv = etcdserverpb::KV::NewStub(Channel(endpoint_));
  etcdserverpb::RangeRequest range;
  range.set_key("ids/h");
  etcdserverpb::RangeResponse ranged;
  ASSERT_TRUE(kv->Range(Context().get(), range, &ranged).ok());
  etcdserverpb::CompactionRequest compact;
  compact.set_revision(ranged.header().revision());
  etcdserverpb::CompactionResponse compacted;
  ASSERT_TRUE(kv->Compact(Context().get(), compact, &compacted).ok());
  etcdserverpb::WatchResponse answer = Exchange(*s.stream, CreateRequest("ids/h", 0, "", 1));
  std::printf("compacted: %s\n", answer.ShortDebugString().c_str());
  EXPECT_EQ(answer.watch_id(), 3) << answer.ShortDebugString();
  while (answer.watch_id() == 3 && !answer.canceled() && s.stream->Read(&answer)) {
    std::printf("compacted: %s\n", answer.ShortDebugString().c_str());
  }
  EXPECT_TRUE(answer.canceled()) << answer.ShortDebugString();
  EXPECT_EQ(answer.compact_revision(), ranged.header().revision()) << answer.ShortDebugString();
  expect_created(Exchange(*s.stream, CreateRequest("ids/i")), 4);
}

// A client that floods one Watch stream with progress, create and cancel requests and never
// reads an answer: the member stops reading its requests once kMaxQueuedControlResponses answers
// wait to be written (etcd 3.4's recvLoop blocks on its ctrlStream), so HTTP/2 flow control holds
// the client back; the member's memory does not grow with the flood, and it serves everyone else.
// etcd 3.4's answers over gRPC where its enums take numbers they do not name, or where it checks
// what the core does not (net/etcd/convert.cc; the gateway's side is pinned in
// net/etcd/gateway_test.sh). Passes against etcd 3.4.23 itself (FLOOD_TEST_ETCD).
class ConversionAnswersTest : public FloodTest {
 protected:
  ConversionAnswersTest() { etcd_may_serve_ = true; }
};

TEST_F(ConversionAnswersTest, UnnamedEnumNumbersAndEmptyTxnOperations) {
  // A sort order the enum does not name: key order whatever the target (etcd's applier sorts
  // only for ASCEND and DESCEND); ASCEND by value is the contrast.
  ASSERT_TRUE(Put(*normal_, "sort/a", "2").ok());
  ASSERT_TRUE(Put(*normal_, "sort/b", "1").ok());
  auto range_keys = [&](int order, etcdserverpb::RangeRequest::SortTarget target) {
    etcdserverpb::RangeRequest request;
    request.set_key("sort/");
    request.set_range_end("sort0");
    request.set_sort_order(static_cast<etcdserverpb::RangeRequest::SortOrder>(order));
    request.set_sort_target(target);
    etcdserverpb::RangeResponse response;
    const grpc::Status status = normal_->Range(Context().get(), request, &response);
    std::string keys = status.ok() ? "" : "refused: " + status.error_message();
    for (const auto& kv : response.kvs()) keys += kv.key() + " ";
    return keys;
  };
  EXPECT_EQ(range_keys(99, etcdserverpb::RangeRequest::VALUE), "sort/a sort/b ");
  EXPECT_EQ(range_keys(-1, etcdserverpb::RangeRequest::MOD), "sort/a sort/b ");
  EXPECT_EQ(range_keys(etcdserverpb::RangeRequest::ASCEND, etcdserverpb::RangeRequest::VALUE),
            "sort/b sort/a ");

  // A TTL of 0 or below is granted with the member's minimum, as one of 1 second is.
  auto lease = etcdserverpb::Lease::NewStub(Channel(endpoint_));
  auto granted_ttl = [&](int64_t ttl) -> int64_t {
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(ttl);
    etcdserverpb::LeaseGrantResponse response;
    const grpc::Status status = lease->LeaseGrant(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << "TTL " << ttl << ": " << status.error_message();
    return response.ttl();
  };
  // etcd's minimum: ceil((3 * electionTicks / 2) * heartbeat) = 2 s at the defaults (100 ms,
  // 1000 ms); LeaseMinimumFollowsTheTicks below pins it at other flags.
  const int64_t min_ttl = granted_ttl(1);
  EXPECT_EQ(min_ttl, 2);
  EXPECT_EQ(granted_ttl(0), min_ttl);
  EXPECT_EQ(granted_ttl(-5), min_ttl);

  // A txn operation with no request: ErrGRPCKeyNotFound, in the branch not taken too; an
  // operation with no key before it is found first.
  auto txn_error = [&](const etcdserverpb::TxnRequest& request) {
    etcdserverpb::TxnResponse response;
    const grpc::Status status = normal_->Txn(Context().get(), request, &response);
    return absl::StrCat(status.error_code(), " ", status.error_message());
  };
  etcdserverpb::TxnRequest txn;
  txn.add_success();
  EXPECT_EQ(txn_error(txn), "3 etcdserver: key not found");
  txn.Clear();
  etcdserverpb::Compare* fails = txn.add_compare();
  fails->set_key("sort/a");
  fails->set_target(etcdserverpb::Compare::VERSION);
  fails->set_result(etcdserverpb::Compare::GREATER);
  fails->set_version(100);
  txn.add_success();
  EXPECT_EQ(txn_error(txn), "3 etcdserver: key not found");
  txn.Clear();
  txn.add_success()->mutable_request_put();  // a put with no key
  txn.add_success();
  EXPECT_EQ(txn_error(txn), "3 etcdserver: key is not provided");

  // An alarm type the enum does not name is taken; AlarmResponse has no header in etcd 3.4.
  auto maintenance = etcdserverpb::Maintenance::NewStub(Channel(endpoint_));
  for (int type : {0, 7}) {
    etcdserverpb::AlarmRequest request;
    request.set_action(etcdserverpb::AlarmRequest::GET);
    request.set_alarm(static_cast<etcdserverpb::AlarmType>(type));
    etcdserverpb::AlarmResponse response;
    const grpc::Status status = maintenance->Alarm(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << "alarm type " << type << ": " << status.error_message();
    EXPECT_FALSE(response.has_header()) << response.ShortDebugString();
    EXPECT_EQ(response.alarms_size(), 0) << response.ShortDebugString();
  }
}

// etcd 3.4's server.go: its lessor's minimum TTL is (3 * electionTicks / 2) heartbeats in whole
// ticks, rounded up to seconds: 7 s at --heartbeat-interval 1000 and --election-timeout 5000
// (8 s if the ticks were not whole: 1.5 * 5 s). A TTL below it, 0 or below is granted with it,
// and lease timetolive reports it as the granted TTL.
class LeaseMinimumTest : public ConversionAnswersTest {
 protected:
  LeaseMinimumTest() {
    extra_args_ = {"--heartbeat-interval", "1000", "--election-timeout", "5000"};
  }
};

TEST_F(LeaseMinimumTest, LeaseMinimumFollowsTheTicks) {
  auto lease = etcdserverpb::Lease::NewStub(Channel(endpoint_));
  for (int64_t ttl : {1, 6, 0, -1}) {
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(ttl);
    etcdserverpb::LeaseGrantResponse granted;
    const grpc::Status status = lease->LeaseGrant(Context().get(), request, &granted);
    ASSERT_TRUE(status.ok()) << "TTL " << ttl << ": " << status.error_message();
    EXPECT_EQ(granted.ttl(), 7) << "TTL " << ttl;
    etcdserverpb::LeaseTimeToLiveRequest asked;
    asked.set_id(granted.id());
    etcdserverpb::LeaseTimeToLiveResponse lives;
    ASSERT_TRUE(lease->LeaseTimeToLive(Context().get(), asked, &lives).ok());
    EXPECT_EQ(lives.grantedttl(), 7) << "TTL " << ttl;
    EXPECT_GT(lives.ttl(), 4) << "TTL " << ttl;
    EXPECT_LE(lives.ttl(), 7) << "TTL " << ttl;
  }
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(8);  // above the minimum: kept
  etcdserverpb::LeaseGrantResponse granted;
  ASSERT_TRUE(lease->LeaseGrant(Context().get(), request, &granted).ok());
  EXPECT_EQ(granted.ttl(), 8);
}

// etcd's applier answers an AlarmRequest from its alarm store: a GET lists the alarms of the
// request's type (alarmStore.Get; every alarm for NONE), a DEACTIVATE answers with the alarm it
// deactivated, that of the request's member and type, and deactivates nothing else. A small
// quota raises NOSPACE (the gateway's side is pinned in net/etcd/gateway_test.sh).
class AlarmAnswersTest : public ConversionAnswersTest {
 protected:
  AlarmAnswersTest() { extra_args_ = {"--quota-backend-bytes", "200000"}; }
};

TEST_F(AlarmAnswersTest, GetListsTheRequestedTypeAndDeactivateAnswersWithTheDeactivated) {
  const std::string value(8000, 'v');
  grpc::Status put;
  for (int i = 0; i < 200 && put.ok(); ++i) put = Put(*normal_, absl::StrCat("fill/", i), value);
  ASSERT_EQ(put.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << put.error_message();
  EXPECT_EQ(put.error_message(), "etcdserver: mvcc: database space exceeded");

  auto maintenance = etcdserverpb::Maintenance::NewStub(Channel(endpoint_));
  auto alarm = [&](etcdserverpb::AlarmRequest::AlarmAction action, int type, uint64_t member) {
    etcdserverpb::AlarmRequest request;
    request.set_action(action);
    request.set_alarm(static_cast<etcdserverpb::AlarmType>(type));
    request.set_memberid(member);
    etcdserverpb::AlarmResponse response;
    const grpc::Status status = maintenance->Alarm(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::string listed;
    for (const auto& a : response.alarms()) {
      absl::StrAppend(&listed, a.memberid() == 0 ? "0" : "member", ":",
                      etcdserverpb::AlarmType_Name(a.alarm()), " ");
    }
    return std::make_pair(response.alarms_size() == 1 ? response.alarms(0).memberid() : 0, listed);
  };
  constexpr auto kGet = etcdserverpb::AlarmRequest::GET;
  constexpr auto kDeactivate = etcdserverpb::AlarmRequest::DEACTIVATE;
  // kvnode answers the refused put at once and raises the alarm through the log right after
  // (etcd waits for the alarm to apply first): wait until it is listed, at most 5 s.
  std::pair<uint64_t, std::string> listed = alarm(kGet, etcdserverpb::NONE, 0);
  for (int i = 0; i < 100 && listed.second.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    listed = alarm(kGet, etcdserverpb::NONE, 0);
  }
  const auto [member, all] = listed;
  EXPECT_EQ(all, "member:NOSPACE ");
  ASSERT_NE(member, 0u);
  EXPECT_EQ(alarm(kGet, etcdserverpb::NOSPACE, 0).second, "member:NOSPACE ");
  EXPECT_EQ(alarm(kGet, etcdserverpb::CORRUPT, 0).second, "");
  EXPECT_EQ(alarm(kGet, 7, 0).second, "");
  // Another member's or another type's alarm: nothing deactivated, nothing answered.
  EXPECT_EQ(alarm(kDeactivate, etcdserverpb::NOSPACE, member + 1).second, "");
  EXPECT_EQ(alarm(kDeactivate, etcdserverpb::CORRUPT, member).second, "");
  EXPECT_EQ(alarm(kGet, etcdserverpb::NONE, 0).second, "member:NOSPACE ");
  // The member's NOSPACE: answered with it, and gone. (The space is freed first: kvnode, unlike
  // etcd, raises the alarm again by itself while the backend is over its quota.)
  {
    etcdserverpb::DeleteRangeRequest del;
    del.set_key("fill/");
    del.set_range_end("fill0");
    etcdserverpb::DeleteRangeResponse deleted;
    ASSERT_TRUE(normal_->DeleteRange(Context().get(), del, &deleted).ok());
    etcdserverpb::CompactionRequest compact;
    compact.set_revision(deleted.header().revision());
    compact.set_physical(true);
    etcdserverpb::CompactionResponse compacted;
    ASSERT_TRUE(normal_->Compact(Context().get(), compact, &compacted).ok());
    etcdserverpb::DefragmentResponse defragmented;
    ASSERT_TRUE(
        maintenance->Defragment(Context().get(), etcdserverpb::DefragmentRequest(), &defragmented)
            .ok());
  }
  EXPECT_EQ(alarm(kDeactivate, etcdserverpb::NOSPACE, member),
            std::make_pair(member, std::string("member:NOSPACE ")));
  EXPECT_EQ(alarm(kGet, etcdserverpb::NONE, 0).second, "");
  EXPECT_EQ(alarm(kDeactivate, etcdserverpb::NOSPACE, member).second, "");
}

TEST_F(FloodTest, AControlRequestFloodFromAClientThatNeverReadsIsHeldBack) {
  const auto started = Clock::now();
  const uint64_t rss_before_kib = StatusKib(node_->pid(), "VmRSS");
  // The client's receive window stays at 64 KiB (no BDP probing grows it): once that much of
  // the answers is unread, the member can write no more of them.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 10);
  auto stub = etcdserverpb::Watch::NewStub(
      grpc::CreateCustomChannel(endpoint_, grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  auto stream = stub->Watch(&context);
  // Each round: kProgressPerRound progress requests (9 bytes each, an answer each), then a create
  // with a large key (8 KiB, so the requests outgrow what HTTP/2's windows let gRPC buffer) and
  // its cancel.
  constexpr int kRounds = 8000;
  constexpr int kProgressPerRound = 16;
  constexpr int kRequests = (kProgressPerRound + 2) * kRounds;  // 144,000 requests, 64 MiB
  std::atomic<int> sent{0};
  std::thread flooder([&] {
    const etcdserverpb::WatchRequest progress = ProgressRequest();
    const etcdserverpb::WatchRequest create =
        CreateRequest(absl::StrCat("held/", std::string(8 << 10, 'k')), 1);
    const etcdserverpb::WatchRequest cancel = CancelRequest(1);
    for (int i = 0; i < kRounds; ++i) {
      for (int p = 0; p < kProgressPerRound; ++p) {
        if (!stream->Write(progress)) return;
        sent.fetch_add(1);
      }
      if (!stream->Write(create)) return;
      sent.fetch_add(1);
      if (!stream->Write(cancel)) return;
      sent.fetch_add(1);
    }
  });
  // Until the flooder is held back (no request sent for a second) or done.
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(15);
  int last = -1;
  Clock::time_point last_moved = Clock::now();
  while (Clock::now() < deadline && sent.load() < kRequests) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int now = sent.load();
    if (now != last) {
      last = now;
      last_moved = Clock::now();
    } else if (Clock::now() - last_moved > std::chrono::seconds(1)) {
      break;
    }
  }
  const int sent_when_held = sent.load();
  const uint64_t rss_held_kib = StatusKib(node_->pid(), "VmRSS");
  std::printf(
      "the flooder sent %d of %d requests before it was held back; kvnode RSS %lu KiB "
      "before, %lu KiB while held (%.1f s)\n",
      sent_when_held, kRequests, static_cast<unsigned long>(rss_before_kib),
      static_cast<unsigned long>(rss_held_kib),
      std::chrono::duration<double>(Clock::now() - started).count());
  EXPECT_LT(sent_when_held, kRequests) << "the member read every request of a client that reads "
                                          "no answer: its answers were queued without bound";
  // Under AddressSanitizer (CI's sanitized pass) the member's freed blocks wait in its 16 MiB
  // quarantine (set up above) and every allocation carries redzones and shadow: +36 MiB were
  // measured there for what is 5-9 MiB plain, so the bound is the quarantine plus twice the
  // plain one. Under ThreadSanitizer (--config=tsan) the shadow of the pages the member touches
  // comes on top: +25 MiB were measured there, so the bound is twice the plain one. The test's
  // point, that the member stops reading, is checked above in every build.
  const bool asan = std::getenv("ASAN_OPTIONS") != nullptr;
  const bool tsan = std::getenv("TSAN_OPTIONS") != nullptr;
  EXPECT_LT(rss_held_kib, rss_before_kib + (asan   ? (16 << 10) + 2 * kHeldStreamGrowthKib
                                            : tsan ? 2 * kHeldStreamGrowthKib
                                                   : kHeldStreamGrowthKib));

  // Everyone else is served meanwhile: a normal client, and a watcher on another connection.
  ExpectNormalClientServed("with a flooding stream held back");
  {
    auto other_stub = etcdserverpb::Watch::NewStub(Channel(endpoint_));
    OpenStream other(*other_stub);
    const etcdserverpb::WatchResponse created = other.Create("held/other");
    ASSERT_FALSE(created.canceled()) << created.ShortDebugString();
    ASSERT_TRUE(Put(*normal_, "held/other", "v").ok());
    etcdserverpb::WatchResponse event;
    ASSERT_TRUE(other.stream->Read(&event));
    ASSERT_EQ(event.events_size(), 1) << event.ShortDebugString();
    EXPECT_EQ(event.events(0).kv().key(), "held/other");
  }
  // The flooder's stream ends when its client cancels it, though the member waits on it.
  context.TryCancel();
  flooder.join();
  (void)stream->Finish();
  ExpectNormalClientServed("after the flooding stream was canceled");
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(30));
}

// The watchers of every Watch stream of one gRPC connection count against one bound: the
// creation past it is refused on whichever stream it comes; another connection has its own
// allowance; a canceled watch and a closed stream give their slots back.
TEST_F(WatchersPerConnectionTest, GrpcWatchersAreBoundedOverAllStreamsOfAConnection) {
  auto channel = Channel(endpoint_);
  auto stub = etcdserverpb::Watch::NewStub(channel);
  auto s1 = std::make_unique<OpenStream>(*stub);
  auto s2 = std::make_unique<OpenStream>(*stub);
  auto s3 = std::make_unique<OpenStream>(*stub);
  const etcdserverpb::WatchResponse first = s1->Create("a");
  ASSERT_FALSE(first.canceled()) << first.ShortDebugString();
  ASSERT_TRUE(s1->Created("b"));
  ASSERT_TRUE(s2->Created("c"));
  ASSERT_TRUE(s2->Created("d"));
  ASSERT_TRUE(s3->Created("e"));
  // The connection holds 5, no stream more than 2: the 6th is refused on every stream.
  EXPECT_TRUE(s3->RefusedForTheConnection("f"));
  EXPECT_TRUE(s1->RefusedForTheConnection("f"));
  auto s4 = std::make_unique<OpenStream>(*stub);
  EXPECT_TRUE(s4->RefusedForTheConnection("f"));

  // The refused creations held nothing, and other connections are served: a second
  // connection opens its own 5 (and no more), and a normal client reads and writes.
  {
    auto other_stub = etcdserverpb::Watch::NewStub(Channel(endpoint_));
    OpenStream other(*other_stub);
    for (size_t i = 0; i < kMaxWatchersPerConnection; ++i) {
      EXPECT_TRUE(other.Created(absl::StrCat("other/", i))) << i;
    }
    EXPECT_TRUE(other.RefusedForTheConnection("other/more"));
    ExpectNormalClientServed("with two connections at their watcher limit");
  }

  // A canceled watch gives its slot back, to any stream of the connection, once.
  s1->Cancel(first.watch_id());
  EXPECT_TRUE(s2->Created("g"));
  EXPECT_TRUE(s4->RefusedForTheConnection("h"));

  // A closed stream gives back the slots of its watches (s2's three), once the member has seen
  // it end.
  s2.reset();
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(5);
  bool created = false;
  while (!created && Clock::now() < deadline) {
    const etcdserverpb::WatchResponse response = s4->Create("i");
    created = !response.canceled();
    if (!created) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(created) << "the closed stream's slots did not come back";
  EXPECT_TRUE(s4->Created("j"));
  EXPECT_TRUE(s3->Created("k"));
  EXPECT_TRUE(s1->RefusedForTheConnection("l"));  // 1 + 1 + 3: the limit again
}

// The native Cap'n Proto API has the same flag's bound per connection (one client, one
// connection to its endpoint): the watch past it is refused TOO_MANY_REQUESTS, another
// connection is served, and a canceled watch gives its slot back.
TEST_F(WatchersPerConnectionTest, NativeWatchesAreBoundedPerConnection) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Timer& timer = io.provider->getTimer();
  net::ClientOptions options;
  options.endpoints = {endpoint_};
  auto client = net::Client::Create(io.provider->getNetwork(), timer, options);
  ASSERT_TRUE(client.ok()) << client.status();
  auto watch = [&](net::Client& c, const std::string& key) {
    mvcc::WatchRequest request;
    request.key = key;
    return c.WatchAsync(request, [](const mvcc::WatchResponse&) {}).wait(io.waitScope);
  };
  std::vector<std::unique_ptr<net::Client::Watch>> watches;
  for (size_t i = 0; i < kMaxWatchersPerConnection; ++i) {
    auto opened = watch(**client, absl::StrCat("native/", i));
    ASSERT_TRUE(opened.ok()) << i << ": " << opened.status();
    watches.push_back(std::move(*opened));
  }
  auto refused = watch(**client, "native/more");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(CodeOf(refused.status()), ErrorCode::kTooManyRequests) << refused.status();
  EXPECT_NE(refused.status().message().find(absl::StrCat(
                "too many watches on this connection (limit ", kMaxWatchersPerConnection, ")")),
            std::string::npos)
      << refused.status();

  auto other = net::Client::Create(io.provider->getNetwork(), timer, options);
  ASSERT_TRUE(other.ok()) << other.status();
  auto elsewhere = watch(**other, "native/elsewhere");
  EXPECT_TRUE(elsewhere.ok()) << elsewhere.status();

  absl::Status canceled = watches.back()->Cancel().wait(io.waitScope);
  EXPECT_TRUE(canceled.ok()) << canceled;
  watches.pop_back();
  auto again = watch(**client, "native/again");
  EXPECT_TRUE(again.ok()) << again.status();
  auto past = watch(**client, "native/past");
  EXPECT_EQ(CodeOf(past.status()), ErrorCode::kTooManyRequests) << past.status();
  if (elsewhere.ok()) elsewhere->reset();
  if (again.ok()) again->reset();
  watches.clear();
}

// A flood of watch creations on every stream one connection may open: the connection's bound
// holds over all of them at once, exactly, and the member keeps serving in bounded memory.
constexpr size_t kFloodWatchersPerConnection = 12000;

class ConnectionWatcherFloodTest : public FloodTest {
 protected:
  ConnectionWatcherFloodTest() {
    extra_args_ = {"--max-watchers-per-connection", absl::StrCat(kFloodWatchersPerConnection)};
  }
};

TEST_F(ConnectionWatcherFloodTest, EveryStreamOfAConnectionFloodsAndTheBoundHolds) {
  const auto started = Clock::now();
  auto channel = Channel(endpoint_);
  auto stub = etcdserverpb::Watch::NewStub(channel);
  constexpr size_t kPerStream = 2000;  // under the stream's 10,000; 8 of them past 12,000
  constexpr size_t kBatch = 250;       // well under the stream's response queue limit
  std::atomic<size_t> created{0};
  std::atomic<size_t> refused{0};
  std::atomic<size_t> other{0};
  std::vector<std::unique_ptr<OpenStream>> streams;
  for (int i = 0; i < kMaxConcurrentStreams; ++i) {
    streams.push_back(std::make_unique<OpenStream>(*stub));
  }
  const std::string reason =
      absl::StrCat("too many watchers on this connection (limit ", kFloodWatchersPerConnection);
  std::vector<std::thread> flooders;
  for (int i = 0; i < kMaxConcurrentStreams; ++i) {
    flooders.emplace_back([&, i] {
      WatchStream& stream = *streams[i]->stream;
      for (size_t sent = 0; sent < kPerStream; sent += kBatch) {
        for (size_t k = 0; k < kBatch; ++k) {
          etcdserverpb::WatchRequest request;
          request.mutable_create_request()->set_key(absl::StrCat("flood/", i, "/", sent + k));
          if (!stream.Write(request)) return;
        }
        // Each creation is answered once (no event comes: nothing is written under flood/).
        for (size_t k = 0; k < kBatch; ++k) {
          etcdserverpb::WatchResponse response;
          if (!stream.Read(&response)) return;
          if (response.created() && !response.canceled()) {
            created.fetch_add(1);
          } else if (response.created() && response.watch_id() == -1 &&
                     response.cancel_reason().find(reason) != std::string::npos) {
            refused.fetch_add(1);
          } else {
            other.fetch_add(1);
          }
        }
      }
    });
  }
  for (std::thread& t : flooders) t.join();
  EXPECT_EQ(created.load(), kFloodWatchersPerConnection);
  EXPECT_EQ(refused.load(), kMaxConcurrentStreams * kPerStream - kFloodWatchersPerConnection);
  EXPECT_EQ(other.load(), 0u);
  ExpectNormalClientServed("with a connection at its watcher bound");
  {
    auto other_stub = etcdserverpb::Watch::NewStub(Channel(endpoint_));
    OpenStream elsewhere(*other_stub);
    EXPECT_TRUE(elsewhere.Created("elsewhere"));
  }
  // Every stream closed: the connection's slots all come back (a new stream fills them again).
  streams.clear();
  OpenStream again(*stub);
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  bool served = false;
  while (!served && Clock::now() < deadline) {
    served = !again.Create("again").canceled();
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(served) << "the closed streams' slots did not come back";

  const uint64_t rss_peak_kib = StatusKib(node_->pid(), "VmHWM");
  std::printf("kvnode peak RSS %lu KiB (bound %lu KiB); %.1f s\n",
              static_cast<unsigned long>(rss_peak_kib), static_cast<unsigned long>(kRssBoundKib),
              std::chrono::duration<double>(Clock::now() - started).count());
  EXPECT_LT(rss_peak_kib, kRssBoundKib);
}

}  // namespace
}  // namespace kvstore::node
