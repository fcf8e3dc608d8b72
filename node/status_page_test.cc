// The status page of a real three-member cluster, loaded in headless Chromium: after its refresh
// script has run, the DOM must show the members as the cluster lists them (names, ids, peer
// URLs), the leader the members agree on, and the leader's term and indexes as the members'
// own status reports them; each follower's lag is known on the leader's page only. A screenshot
// is kept in the test's outputs (outputs.zip).
//
// Bounded: waits have deadlines, Chromium runs under a timeout, children are killed at the end.

#include <stdlib.h>
#include <sys/stat.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

constexpr int kMembers = 3;
constexpr char kChromium[] = "/usr/bin/chromium";
// Virtual time Chromium gives the page before it dumps the DOM: the refresh script runs once at
// load and then every second.
constexpr char kVirtualTimeBudgetMs[] = "3000";
constexpr int kChromiumTimeoutMs = 90000;

struct Member {
  std::string name;
  uint16_t client_port = 0;
  uint16_t peer_port = 0;
  uint16_t metrics_port = 0;
  std::unique_ptr<ChildProcess> process;
};

std::string TestTmp(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
}

// Chromium's flags for a sandboxed, display-less test run (profile and caches under TEST_TMPDIR).
std::vector<std::string> ChromiumArgs(const std::string& profile) {
  return {kChromium,
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-dev-shm-usage",
          "--no-first-run",
          "--disable-extensions",
          "--disable-background-networking",
          absl::StrCat("--user-data-dir=", TestTmp(profile)),
          absl::StrCat("--virtual-time-budget=", kVirtualTimeBudgetMs)};
}

// The DOM of `url` after its scripts ran, as Chromium serialises it.
std::string DumpDom(const std::string& url, const std::string& profile) {
  std::vector<std::string> args = ChromiumArgs(profile);
  args.push_back("--dump-dom");
  args.push_back(url);
  auto result = testing::RunCommand(args, "", kChromiumTimeoutMs);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return "";
  EXPECT_EQ(result->exit_code, 0) << result->output;
  return result->output;
}

// The markup of the element that starts with `opening` (up to its closing `closing`).
std::string Element(const std::string& dom, const std::string& opening,
                    const std::string& closing) {
  const size_t start = dom.find(opening);
  if (start == std::string::npos) return "";
  const size_t end = dom.find(closing, start);
  return dom.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// The text of the element with id `id` (its attributes in whatever order Chromium wrote them).
std::string TextOf(const std::string& dom, const std::string& id) {
  const size_t at = dom.find(absl::StrCat("id=\"", id, "\""));
  if (at == std::string::npos) return "<no element " + id + ">";
  const size_t start = dom.find('>', at);
  const size_t end = dom.find('<', start);
  return dom.substr(start + 1, end - start - 1);
}

class StatusPageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kChromium, X_OK), 0)
        << kChromium << " is missing: install Debian's chromium (tools/setup.sh)";
    // Chromium writes its settings and caches under HOME and XDG dirs: keep them in the sandbox.
    const std::string home = TestTmp("home");
    mkdir(home.c_str(), 0700);
    setenv("HOME", home.c_str(), 1);
    setenv("XDG_CONFIG_HOME", home.c_str(), 1);
    setenv("XDG_CACHE_HOME", home.c_str(), 1);

    const std::string root = crash::FreshTestDir("status_page");
    std::vector<std::string> cluster;
    for (int i = 1; i <= kMembers; ++i) {
      Member m;
      m.name = absl::StrCat("n", i);
      m.client_port = FreeLoopbackPort();
      m.peer_port = FreeLoopbackPort();
      m.metrics_port = FreeLoopbackPort();
      cluster.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
      members_.push_back(std::move(m));
    }
    for (Member& m : members_) {
      crash::SpawnOptions options;
      options.args = {"--name",
                      m.name,
                      "--data-dir",
                      absl::StrCat(root, "/", m.name),
                      "--listen-client-urls",
                      absl::StrCat("http://127.0.0.1:", m.client_port),
                      "--listen-peer-urls",
                      absl::StrCat("http://127.0.0.1:", m.peer_port),
                      "--initial-advertise-peer-urls",
                      absl::StrCat("http://127.0.0.1:", m.peer_port),
                      "--initial-cluster",
                      absl::StrJoin(cluster, ","),
                      "--initial-cluster-token",
                      "status-page-test",
                      "--listen-metrics-urls",
                      absl::StrCat("http://127.0.0.1:", m.metrics_port),
                      "--heartbeat-interval",
                      "50",
                      "--election-timeout",
                      "500",
                      "--log-level",
                      "error"};
      auto child = ChildProcess::Spawn(crash::RunfilePath("node/kvnode"), options);
      ASSERT_TRUE(child.ok()) << child.status();
      m.process = std::move(*child);
      endpoints_.push_back(absl::StrCat("127.0.0.1:", m.client_port));
    }
  }

  std::vector<Member> members_;
  std::vector<std::string> endpoints_;
};

TEST_F(StatusPageTest, ShowsTheClustersMembersLeaderAndIndexes) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  kj::Timer& timer = io.provider->getTimer();
  net::ClientOptions options;
  options.endpoints = endpoints_;
  options.per_try_timeout = 1 * kj::SECONDS;
  auto client = net::Client::Create(io.provider->getNetwork(), timer, options);
  ASSERT_TRUE(client.ok()) << client.status();
  auto pause = [&](int64_t ms) { timer.afterDelay(ms * kj::MILLISECONDS).wait(io.waitScope); };

  // A few writes, so the indexes are more than the bootstrap's.
  for (int i = 0; i < 5; ++i) {
    server::Request put;
    put.type = server::RequestType::kPut;
    put.put.key = absl::StrCat("page-", i);
    put.put.value = "v";
    absl::StatusOr<server::Response> response = absl::UnavailableError("not tried");
    for (int attempt = 0; attempt < 50 && !(response.ok() && response->status.ok()); ++attempt) {
      response = (*client)->Call(put, io.waitScope);
      if (!(response.ok() && response->status.ok())) pause(100);
    }
    ASSERT_TRUE(response.ok() && response->status.ok())
        << (response.ok() ? response->status : response.status());
  }

  // The members as the cluster lists them.
  server::Request list;
  list.type = server::RequestType::kMemberList;
  auto listed = (*client)->Call(list, io.waitScope);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->members.size(), static_cast<size_t>(kMembers));

  // Wait (bounded) until every member agrees on the leader and has applied the leader's commit
  // index: the cluster is idle, so the page and the members' status describe the same state.
  // An entry that commits after the wait (a member's publish retried under load, as in one CI
  // run) moves the indexes under the page: then the wait and the page load are done again, at
  // most three times, until the leader's commit index after the load is the one waited for.
  std::vector<net::EndpointStatus> status(kMembers);
  std::optional<size_t> leader_index;
  std::string dom;
  for (int load = 0; load < 3; ++load) {
    leader_index.reset();
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(20);
    while (Clock::now() < deadline) {
      bool settled = true;
      for (size_t i = 0; i < members_.size(); ++i) {
        auto one = (*client)->StatusAsync(i).wait(io.waitScope);
        if (!one.ok()) {
          settled = false;
          break;
        }
        status[i] = *one;
      }
      if (settled) {
        leader_index.reset();
        for (size_t i = 0; i < members_.size(); ++i) {
          if (status[i].member.leader == status[i].member.id) leader_index = i;
        }
        settled = leader_index.has_value();
        for (size_t i = 0; settled && i < members_.size(); ++i) {
          const auto& lead = status[*leader_index].member;
          settled = status[i].member.leader == lead.id &&
                    status[i].member.applied_index == lead.commit_index &&
                    status[i].member.commit_index == lead.commit_index;
        }
      }
      if (settled) break;
      pause(100);
    }
    ASSERT_TRUE(leader_index.has_value()) << "no leader all members agree on";
    dom = DumpDom(absl::StrCat("http://127.0.0.1:", members_[*leader_index].metrics_port, "/"),
                  "chromium-leader");
    auto after = (*client)->StatusAsync(*leader_index).wait(io.waitScope);
    if (after.ok() && after->member.commit_index == status[*leader_index].member.commit_index)
      break;
  }
  const net::MemberStatusInfo& lead = status[*leader_index].member;
  ASSERT_GE(lead.commit_index, 5u);
  const std::string leader_hex = absl::StrCat(absl::Hex(lead.id));

  const Member& leader = members_[*leader_index];
  const std::string leader_url = absl::StrCat("http://127.0.0.1:", leader.metrics_port, "/");
  ASSERT_NE(dom.find("id=\"updated\">updated "), std::string::npos)
      << "the refresh script did not render:\n"
      << dom;
  EXPECT_NE(dom.find(absl::StrCat("data-leader-id=\"", leader_hex, "\"")), std::string::npos)
      << dom;
  EXPECT_EQ(TextOf(dom, "term"), absl::StrCat(lead.term));
  EXPECT_EQ(TextOf(dom, "commit-index"), absl::StrCat(lead.commit_index));
  EXPECT_EQ(TextOf(dom, "applied-index"), absl::StrCat(lead.applied_index));
  EXPECT_EQ(TextOf(dom, "alarms"), "none");
  EXPECT_EQ(TextOf(dom, "self-name"), leader.name);
  for (const server::Member& m : listed->members) {
    const std::string row =
        Element(dom, absl::StrCat("<tr data-member-id=\"", absl::Hex(m.id), "\""), "</tr>");
    ASSERT_FALSE(row.empty()) << "no row for member " << m.name << "\n" << dom;
    EXPECT_NE(row.find(absl::StrCat(">", m.name, "</td>")), std::string::npos) << row;
    ASSERT_EQ(m.peer_urls.size(), 1u);
    EXPECT_NE(row.find(absl::StrCat(">", m.peer_urls[0], "</td>")), std::string::npos) << row;
    // Idle and caught up: every follower has the leader's whole log.
    EXPECT_NE(row.find(absl::StrCat("member-match\">", lead.commit_index, "</td>")),
              std::string::npos)
        << row;
    EXPECT_NE(row.find("member-lag\">0</td>"), std::string::npos) << row;
    EXPECT_NE(row.find(m.id == lead.id ? ">leader (this member)</td>" : ">follower</td>"),
              std::string::npos)
        << row;
  }

  // The leader times its heartbeats to each follower (etcd_network_peer_round_trip_time_seconds).
  auto metrics = testing::HttpGet(leader.metrics_port, "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  for (const server::Member& m : listed->members) {
    if (m.id == lead.id) continue;
    auto round_trips = testing::SampleValue(
        metrics->body, absl::StrCat("etcd_network_peer_round_trip_time_seconds_count{To=\"",
                                    absl::Hex(m.id), "\"}"));
    ASSERT_TRUE(round_trips.ok()) << round_trips.status() << "\n" << metrics->body;
    EXPECT_GT(*round_trips, 0);
  }

  // A follower's page names the same leader; lags are the leader's knowledge.
  const size_t follower_index = (*leader_index + 1) % members_.size();
  const std::string follower_dom =
      DumpDom(absl::StrCat("http://127.0.0.1:", members_[follower_index].metrics_port, "/"),
              "chromium-follower");
  EXPECT_NE(follower_dom.find(absl::StrCat("data-leader-id=\"", leader_hex, "\"")),
            std::string::npos)
      << follower_dom;
  EXPECT_NE(follower_dom.find("member-lag\">unknown</td>"), std::string::npos) << follower_dom;

  // The screenshot, kept as a test artifact.
  const char* outputs = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  const std::string shot =
      absl::StrCat(outputs != nullptr ? outputs : TestTmp(""), "/status_page.png");
  std::vector<std::string> args = ChromiumArgs("chromium-screenshot");
  args.push_back("--window-size=1100,700");
  args.push_back(absl::StrCat("--screenshot=", shot));
  args.push_back(leader_url);
  auto taken = testing::RunCommand(args, "", kChromiumTimeoutMs);
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->exit_code, 0) << taken->output;
  struct stat info {};
  ASSERT_EQ(stat(shot.c_str(), &info), 0) << "no screenshot at " << shot << "\n" << taken->output;
  EXPECT_GT(info.st_size, 1000);
}

}  // namespace
}  // namespace kvstore::node
