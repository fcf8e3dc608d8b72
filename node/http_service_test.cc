// kvnode's HTTP endpoints on a real kvnode process (--listen-metrics-urls): /metrics passes
// Prometheus' own checker (Debian's promtool) and its values move with a put; /health answers
// as etcd 3.4 does, with and without a leader; /status.json describes the member; the listener
// reads requests as etcd's (Go's net/http: Connection: close, HTTP/1.0, head limits).
//
// Bounded: every wait has a deadline; the kvnode children are killed at the end.

#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "net/client.h"
#include "node/crash_process.h"
#include "node/http_testing.h"

namespace kvstore::node {
namespace {

using crash::ChildProcess;
using crash::Clock;
using testing::FreeLoopbackPort;
using testing::HttpAnswer;
using testing::HttpGet;
using testing::SampleValue;

constexpr char kPromtool[] = "/usr/bin/promtool";
// Lint findings promtool reports for etcd 3.4.23's own /metrics: metric names and types kvnode
// keeps as etcd has them so dashboards work (etcd declares the first two as gauges).
const std::set<std::string>& EtcdLintFindings() {
  static const auto* findings = new std::set<std::string>{
      "etcd_server_proposals_applied_total non-counter metrics should not have \"_total\" suffix",
      "etcd_server_proposals_committed_total non-counter metrics should not have \"_total\" "
      "suffix",
      "etcd_server_health_failures counter metrics should have \"_total\" suffix",
      "etcd_server_health_success counter metrics should have \"_total\" suffix",
  };
  return *findings;
}

// Runs promtool check metrics on `exposition`; an empty string when it finds nothing but etcd's
// own lint findings, otherwise what it said.
std::string PromtoolProblems(const std::string& exposition, const std::string& name) {
  if (access(kPromtool, X_OK) != 0) {
    return absl::StrCat(kPromtool, " is missing: install Debian's prometheus (tools/setup.sh)");
  }
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name, ".prom");
  std::ofstream(path) << exposition;
  auto result = testing::RunCommand({kPromtool, "check", "metrics"}, path, 30000);
  if (!result.ok()) return std::string(result.status().message());
  // promtool exits 0 when clean, 3 for lint findings only (1 for a parse error).
  if (result->exit_code != 0 && result->exit_code != 3) {
    return absl::StrCat("promtool exit ", result->exit_code, ": ", result->output);
  }
  std::string problems;
  for (absl::string_view line : absl::StrSplit(result->output, '\n', absl::SkipEmpty())) {
    if (EtcdLintFindings().count(std::string(line)) == 0) absl::StrAppend(&problems, line, "\n");
  }
  if (result->exit_code == 3 && result->output.empty()) return "promtool exit 3 and no output";
  return problems;
}

class KvnodeHttpTest : public ::testing::Test {
 protected:
  // One member (or the first of `cluster_size` founding members, the others never started).
  void StartKvnode(int cluster_size = 1) {
    dir_ = crash::FreshTestDir("http_service");
    client_port_ = FreeLoopbackPort();
    metrics_port_ = FreeLoopbackPort();
    const uint16_t peer_port = FreeLoopbackPort();
    std::string cluster = absl::StrCat("m1=http://127.0.0.1:", peer_port);
    for (int i = 2; i <= cluster_size; ++i) {
      absl::StrAppend(&cluster, ",m", i, "=http://127.0.0.1:", FreeLoopbackPort());
    }
    crash::SpawnOptions options;
    options.args = {"--name",
                    "m1",
                    "--data-dir",
                    dir_,
                    "--listen-client-urls",
                    absl::StrCat("http://127.0.0.1:", client_port_),
                    "--listen-peer-urls",
                    absl::StrCat("http://127.0.0.1:", peer_port),
                    "--initial-advertise-peer-urls",
                    absl::StrCat("http://127.0.0.1:", peer_port),
                    "--initial-cluster",
                    cluster,
                    "--listen-metrics-urls",
                    absl::StrCat("http://127.0.0.1:", metrics_port_),
                    "--heartbeat-interval",
                    "50",
                    "--election-timeout",
                    "500",
                    "--log-level",
                    "error"};
    auto child = ChildProcess::Spawn(crash::RunfilePath("node/kvnode"), options);
    ASSERT_TRUE(child.ok()) << child.status();
    kvnode_ = std::move(*child);
  }

  // GET `path` until `done` holds for the answer, for at most `budget`.
  absl::StatusOr<HttpAnswer> GetUntil(const std::string& path,
                                      const std::function<bool(const HttpAnswer&)>& done,
                                      std::chrono::milliseconds budget) {
    const Clock::time_point deadline = Clock::now() + budget;
    absl::StatusOr<HttpAnswer> answer = absl::DeadlineExceededError("not asked");
    while (Clock::now() < deadline) {
      answer = HttpGet(metrics_port_, path, 2000);
      if (answer.ok() && done(*answer)) return answer;
      usleep(100 * 1000);
    }
    if (answer.ok()) {
      return absl::DeadlineExceededError(
          absl::StrCat(path, " never as expected; last: ", answer->status, " ", answer->body));
    }
    return answer.status();
  }

  std::string Scrape() {
    auto answer = HttpGet(metrics_port_, "/metrics");
    EXPECT_TRUE(answer.ok()) << answer.status();
    if (!answer.ok()) return "";
    EXPECT_EQ(answer->status, 200);
    EXPECT_EQ(answer->headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    return answer->body;
  }

  double Value(const std::string& exposition, const std::string& series) {
    auto value = SampleValue(exposition, series);
    EXPECT_TRUE(value.ok()) << value.status() << "\n" << exposition;
    return value.ok() ? *value : -1;
  }

  std::string dir_;
  uint16_t client_port_ = 0;
  uint16_t metrics_port_ = 0;
  std::unique_ptr<ChildProcess> kvnode_;
};

TEST_F(KvnodeHttpTest, MetricsPassPromtoolAndMoveWithAPut) {
  StartKvnode();
  ASSERT_TRUE(
      GetUntil(
          "/health", [](const HttpAnswer& a) { return a.status == 200; }, std::chrono::seconds(20))
          .ok());
  // Settled: the leader change counted (once per tick) and the member's own proposals after
  // its election (its publish of its name and client URLs) applied: the counts stay put for
  // half a second.
  double last_committed = -1;
  auto last_change = std::chrono::steady_clock::now();
  auto settled = GetUntil(
      "/metrics",
      [&](const HttpAnswer& a) {
        auto changes = SampleValue(a.body, "etcd_server_leader_changes_seen_total");
        auto committed = SampleValue(a.body, "etcd_server_proposals_committed_total");
        auto applied = SampleValue(a.body, "etcd_server_proposals_applied_total");
        if (!changes.ok() || !committed.ok() || !applied.ok()) return false;
        const auto now = std::chrono::steady_clock::now();
        if (*committed != last_committed) {
          last_committed = *committed;
          last_change = now;
          return false;
        }
        return *changes >= 1 && *applied == *committed &&
               now - last_change >= std::chrono::milliseconds(500);
      },
      std::chrono::seconds(10));
  ASSERT_TRUE(settled.ok()) << settled.status();
  const std::string before = Scrape();
  EXPECT_EQ(PromtoolProblems(before, "before"), "");
  EXPECT_EQ(Value(before, "etcd_server_has_leader"), 1);
  EXPECT_EQ(Value(before, "etcd_server_is_leader"), 1);
  EXPECT_GE(Value(before, "etcd_server_leader_changes_seen_total"), 1);
  EXPECT_EQ(Value(before, "etcd_server_proposals_pending"), 0);
  EXPECT_EQ(Value(before, "etcd_cluster_version{cluster_version=\"3.4\"}"), 1);
  const double committed = Value(before, "etcd_server_proposals_committed_total");
  const double applied = Value(before, "etcd_server_proposals_applied_total");
  const double fsyncs = Value(before, "etcd_disk_wal_fsync_duration_seconds_count");
  EXPECT_GE(fsyncs, 1) << "the bootstrap entries were synced";
  EXPECT_GT(Value(before, "etcd_mvcc_db_total_size_in_bytes"), 0);
  EXPECT_GT(Value(before, "process_resident_memory_bytes"), 1 << 20);
  const double started = Value(before, "process_start_time_seconds");
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_GT(started, now - 600);
  EXPECT_LT(started, now + 5);

  kj::AsyncIoContext io = kj::setupAsyncIo();
  net::ClientOptions options;
  options.endpoints = {absl::StrCat("127.0.0.1:", client_port_)};
  auto client = net::Client::Create(io.provider->getNetwork(), io.provider->getTimer(), options);
  ASSERT_TRUE(client.ok()) << client.status();
  server::Request put;
  put.type = server::RequestType::kPut;
  put.put.key = "metrics";
  put.put.value = "move";
  auto response = (*client)->Call(put, io.waitScope);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_TRUE(response->status.ok()) << response->status;

  // The put's entry is committed and applied before its answer; the backend commits it durably
  // within its batch interval (100 ms), so wait for that one.
  auto after = GetUntil(
      "/metrics",
      [](const HttpAnswer& a) {
        auto commits = SampleValue(a.body, "etcd_disk_backend_commit_duration_seconds_count");
        return commits.ok() && *commits >= 1;
      },
      std::chrono::seconds(5));
  ASSERT_TRUE(after.ok()) << after.status();
  const std::string& text = after->body;
  EXPECT_EQ(PromtoolProblems(text, "after"), "");
  EXPECT_EQ(Value(text, "etcd_server_proposals_committed_total"), committed + 1);
  EXPECT_EQ(Value(text, "etcd_server_proposals_applied_total"), applied + 1);
  EXPECT_GT(Value(text, "etcd_disk_wal_fsync_duration_seconds_count"), fsyncs);
  EXPECT_EQ(Value(text, "etcd_server_proposals_pending"), 0);
  EXPECT_EQ(Value(text, "etcd_server_proposals_failed_total"), 0);
  EXPECT_EQ(Value(text,
                  "grpc_server_started_total{grpc_method=\"Put\",grpc_service="
                  "\"etcdserverpb.KV\",grpc_type=\"unary\"}"),
            1);
  EXPECT_EQ(Value(text,
                  "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\","
                  "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}"),
            1);
  EXPECT_EQ(Value(text, "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"),
            Value(text, "etcd_disk_wal_fsync_duration_seconds_count"));
}

TEST_F(KvnodeHttpTest, HealthAnswersAsEtcdWithALeader) {
  StartKvnode();
  auto health = GetUntil(
      "/health", [](const HttpAnswer& a) { return a.status == 200; }, std::chrono::seconds(20));
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->body, "{\"health\":\"true\"}");
  EXPECT_EQ(health->headers["content-type"], "text/plain; charset=utf-8");

  auto post = testing::HttpRequest(metrics_port_, "POST", "/health");
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->headers["allow"], "GET");
  EXPECT_EQ(post->body, "Method Not Allowed\n");
  EXPECT_EQ(post->headers["content-type"], "text/plain; charset=utf-8");
  EXPECT_EQ(post->headers["x-content-type-options"], "nosniff");

  // As etcd 3.4.23: Go's plain-text 404, and /metrics answers any method.
  auto missing = HttpGet(metrics_port_, "/no-such-page");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->body, "404 page not found\n");
  EXPECT_EQ(missing->headers["content-type"], "text/plain; charset=utf-8");
  EXPECT_EQ(missing->headers["x-content-type-options"], "nosniff");
  auto posted_metrics = testing::HttpRequest(metrics_port_, "POST", "/metrics");
  ASSERT_TRUE(posted_metrics.ok()) << posted_metrics.status();
  EXPECT_EQ(posted_metrics->status, 200);
  EXPECT_NE(posted_metrics->body.find("etcd_server_health_success"), std::string::npos);

  const std::string metrics = Scrape();
  EXPECT_GE(Value(metrics, "etcd_server_health_success"), 1);
}

TEST_F(KvnodeHttpTest, HealthIs503WithoutALeader) {
  StartKvnode(/*cluster_size=*/2);  // its peer never starts: no quorum, no leader
  auto health = GetUntil(
      "/health", [](const HttpAnswer& a) { return a.status != 0; }, std::chrono::seconds(20));
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 503);
  EXPECT_EQ(health->body, "{\"health\":\"false\"}\n");
  const std::string metrics = Scrape();
  EXPECT_EQ(Value(metrics, "etcd_server_has_leader"), 0);
  EXPECT_GE(Value(metrics, "etcd_server_health_failures"), 1);
}

TEST_F(KvnodeHttpTest, StatusJsonDescribesTheMember) {
  StartKvnode();
  auto status = GetUntil(
      "/status.json",
      [](const HttpAnswer& a) {
        return a.status == 200 && a.body.find("\"is_leader\":true") != std::string::npos;
      },
      std::chrono::seconds(20));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->headers["content-type"], "application/json");
  EXPECT_NE(status->body.find("\"name\":\"m1\""), std::string::npos) << status->body;
  EXPECT_NE(status->body.find("\"lag\":0"), std::string::npos) << status->body;
  EXPECT_NE(status->body.find("\"alarms\":[]"), std::string::npos) << status->body;
  auto page = HttpGet(metrics_port_, "/");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->headers["content-type"], "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("status.json"), std::string::npos);
}

// Sends `bytes` on a new connection to `port` and reads until the member ends the connection or
// is silent for a second: everything it sent, then "<EOF>" (it ended the connection), "<OPEN>"
// (silent) or "<RESET>".
std::string Conversation(uint16_t port, const std::string& bytes) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "(no socket)";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const timeval wait{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    answer = "(no connection)";
  } else {
    for (size_t sent = 0; sent < bytes.size();) {
      const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += n;
    }
    while (true) {
      char buffer[16384];
      const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n > 0) {
        answer.append(buffer, n);
        continue;
      }
      answer += n == 0 ? "<EOF>" : errno == EAGAIN || errno == EWOULDBLOCK ? "<OPEN>" : "<RESET>";
      break;
    }
  }
  close(fd);
  return answer;
}

// The metrics listener goes through the same guard as the client URLs (net/etcd/http_guard.h),
// so it answers as etcd 3.4.23's --listen-metrics-urls listener does (each answer below is
// etcd's for the same bytes, taken with raw requests against Debian's etcd, but for its Date
// header, which kvnode does not send).
TEST_F(KvnodeHttpTest, MetricsListenerReadsRequestsAsEtcds) {
  StartKvnode();
  ASSERT_TRUE(
      GetUntil(
          "/health", [](const HttpAnswer& a) { return a.status == 200; }, std::chrono::seconds(20))
          .ok());
  const std::string health = "Content-Length: 17\r\nContent-Type: text/plain; charset=utf-8\r\n";
  const std::string body = "{\"health\":\"true\"}";
  // HTTP/1.0: answered in HTTP/1.0, and the connection ends after the answer.
  EXPECT_EQ(Conversation(metrics_port_, "GET /health HTTP/1.0\r\n\r\n"),
            "HTTP/1.0 200 OK\r\n" + health + "\r\n" + body + "<EOF>");
  // Connection: close: said in the answer, and the connection ends after it.
  EXPECT_EQ(
      Conversation(metrics_port_, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
      "HTTP/1.1 200 OK\r\n" + health + "Connection: close\r\n\r\n" + body + "<EOF>");
  // HTTP/1.0 with keep-alive keeps the connection for the next request.
  EXPECT_EQ(Conversation(metrics_port_,
                         "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                         "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            "HTTP/1.0 200 OK\r\n" + health + "Connection: keep-alive\r\n\r\n" + body +
                "HTTP/1.1 200 OK\r\n" + health + "Connection: close\r\n\r\n" + body + "<EOF>");
  // HTTP/1.1 without it stays open.
  EXPECT_EQ(Conversation(metrics_port_, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
            "HTTP/1.1 200 OK\r\n" + health + "\r\n" + body + "<OPEN>");

  // Refused heads get Go's answers, as on the client URLs; the listener keeps serving.
  auto refusal = [](const std::string& status) {
    return "HTTP/1.1 " + status +
           "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" + status +
           "<EOF>";
  };
  // Over kvnode's head limit (100 KiB; Go's is 1 MiB + 4 KiB: etcd answers 431 from there on).
  EXPECT_EQ(Conversation(metrics_port_, "GET /health HTTP/1.1\r\nHost: x\r\nFoo: " +
                                            std::string(200000, 'a') + "\r\n\r\n"),
            refusal("431 Request Header Fields Too Large"));
  EXPECT_EQ(Conversation(metrics_port_, "GET /health HTTP/1.1\r\nHost: x\r\nFoo : x\r\n\r\n"),
            refusal("400 Bad Request: invalid header name"));
  EXPECT_EQ(Conversation(metrics_port_, "GET /health HTTP/1.1\r\n\r\n"),
            refusal("400 Bad Request: missing required Host header"));
  auto still = HttpGet(metrics_port_, "/health");
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->status, 200);
}

}  // namespace
}  // namespace kvstore::node
