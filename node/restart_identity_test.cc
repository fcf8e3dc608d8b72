// A restarted member takes its identity and membership from its data directory, as etcd takes
// them from its WAL (issue 13 §4): --initial-cluster counts at the first boot only. Three
// founding kvnode processes; each is killed and restarted with other flags: --initial-cluster
// (and its token) dropped, --initial-cluster changed (a wrong URL for a peer, another token),
// and a founding member moved to a new peer URL (member update, then a restart listening there
// with an --initial-cluster that names the new URL, from which the flags alone would derive
// another member id). Each time the member keeps its id, the cluster keeps three members, and the
// member serves writes the others made while it was down.
//
// Bounded: every wait has a deadline; the test takes a few seconds.

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "kj/async-io.h"
#include "kj/debug.h"
#include "net/client.h"
#include "node/http_testing.h"
#include "node/testing/cluster.h"

namespace kvstore::node {
namespace {

using testing::Cluster;
using testing::ClusterOptions;

class RestartIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterOptions options;
    options.members = 3;
    options.name = "restart_identity";
    auto cluster = Cluster::Create(options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = std::move(*cluster);
    ASSERT_TRUE(cluster_->StartAll().ok());
  }
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      for (size_t i = 0; i < cluster_->size(); ++i) {
        const auto& m = cluster_->member(i);
        if (m.running())
          std::printf("%s stderr:\n%s\n", m.name.c_str(), m.process->stderr_text().c_str());
      }
    }
    cluster_.reset();
  }

  std::unique_ptr<net::Client> NewClient(std::vector<std::string> endpoints) {
    net::ClientOptions options;
    options.endpoints = std::move(endpoints);
    options.per_try_timeout = 1 * kj::SECONDS;
    options.endpoint_backoff_min = 100 * kj::MILLISECONDS;
    options.endpoint_backoff_max = 300 * kj::MILLISECONDS;
    auto client =
        net::Client::Create(io_.provider->getNetwork(), io_.provider->getTimer(), options);
    KJ_ASSERT(client.ok(), client.status().ToString());
    return std::move(*client);
  }
  kj::TimePoint Now() { return io_.provider->getTimer().now(); }
  void Pause(int64_t ms) {
    io_.provider->getTimer().afterDelay(ms * kj::MILLISECONDS).wait(io_.waitScope);
  }

  // Calls member i alone until it answers OK (at most 10 s); the last answer.
  absl::StatusOr<server::Response> CallAt(size_t i, const server::Request& request) {
    auto client = NewClient({cluster_->member(i).endpoint()});
    const kj::TimePoint deadline = Now() + 10 * kj::SECONDS;
    absl::StatusOr<server::Response> response = absl::UnavailableError("not tried");
    while (Now() < deadline) {
      response = client->CallEndpointAsync(0, request).wait(io_.waitScope);
      if (response.ok()) break;
      Pause(100);
    }
    return response;
  }
  absl::StatusOr<net::EndpointStatus> StatusOf(size_t i) {
    auto client = NewClient({cluster_->member(i).endpoint()});
    const kj::TimePoint deadline = Now() + 10 * kj::SECONDS;
    absl::StatusOr<net::EndpointStatus> status = absl::UnavailableError("not tried");
    while (Now() < deadline) {
      status = client->StatusAsync(0).wait(io_.waitScope);
      if (status.ok()) break;
      Pause(100);
    }
    return status;
  }
  static server::Request Put(const std::string& key, const std::string& value) {
    server::Request put;
    put.type = server::RequestType::kPut;
    put.put.key = key;
    put.put.value = value;
    return put;
  }
  // "id=name@url" of every member as member i lists them, sorted.
  std::string MembersAt(size_t i) {
    server::Request list;
    list.type = server::RequestType::kMemberList;
    auto response = CallAt(i, list);
    if (!response.ok()) return response.status().ToString();
    std::set<std::string> members;
    for (const server::Member& m : response->members) {
      members.insert(absl::StrCat(absl::Hex(m.id), "=", m.name, "@",
                                  absl::StrJoin(m.peer_urls, ";"), m.is_learner ? " learner" : ""));
    }
    return absl::StrJoin(members, ",");
  }

  // Kills member i, writes `key` through the others, restarts it with `args`, and checks that
  // it comes back as `id`, serves the write (a serializable read of its own store, then a
  // linearizable put through it) and lists `members`.
  void RestartWith(size_t i, std::vector<std::string> args, raft::NodeId id,
                   const std::string& members, const std::string& key) {
    SCOPED_TRACE(
        absl::StrCat(cluster_->member(i).name, " restarted with ", absl::StrJoin(args, " ")));
    cluster_->Kill(i);
    std::vector<std::string> others;
    for (size_t j = 0; j < cluster_->size(); ++j) {
      if (j != i) others.push_back(cluster_->member(j).endpoint());
    }
    // The others elect a leader first if the killed member led.
    auto client = NewClient(others);
    const kj::TimePoint put_deadline = Now() + 10 * kj::SECONDS;
    absl::StatusOr<server::Response> put = absl::UnavailableError("not tried");
    while (Now() < put_deadline) {
      put = client->Call(Put(key, "written while down"), io_.waitScope);
      if (put.ok()) break;
      Pause(100);
    }
    ASSERT_TRUE(put.ok()) << put.status();
    ASSERT_TRUE(cluster_->StartWithArgs(i, std::move(args)).ok());
    auto status = StatusOf(i);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(status->member.id, id) << "the restarted member took another id";
    server::Request get;
    get.type = server::RequestType::kRange;
    get.range.key = key;
    get.range.serializable = true;
    const kj::TimePoint deadline = Now() + 10 * kj::SECONDS;
    absl::StatusOr<server::Response> read = absl::UnavailableError("not tried");
    while (Now() < deadline) {
      read = CallAt(i, get);
      if (read.ok() && !read->range.kvs.empty()) break;
      Pause(100);
    }
    ASSERT_TRUE(read.ok()) << read.status();
    ASSERT_EQ(read->range.kvs.size(), 1u) << "the restarted member lacks a write of its cluster";
    EXPECT_TRUE(CallAt(i, Put(key, "written through it")).ok());
    EXPECT_EQ(MembersAt(i), members);
    EXPECT_EQ(MembersAt((i + 1) % cluster_->size()), members);
  }

  // kj's objects have throwing destructors, which a gtest fixture's members may not have.
  struct Loop {
    kj::AsyncIoContext io = kj::setupAsyncIo();
  };
  std::unique_ptr<Loop> loop_ = std::make_unique<Loop>();
  kj::AsyncIoContext& io_ = loop_->io;
  std::unique_ptr<Cluster> cluster_;
};

// Removes FLAG and its value from args.
std::vector<std::string> Without(std::vector<std::string> args, const std::string& flag) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) {
      args.erase(args.begin() + i, args.begin() + i + 2);
      break;
    }
  }
  return args;
}
// Sets FLAG's value in args.
std::vector<std::string> With(std::vector<std::string> args, const std::string& flag,
                              const std::string& value) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == flag) args[i + 1] = value;
  }
  return args;
}

TEST_F(RestartIdentityTest, RestartsKeepTheirIdentityWhateverTheInitialClusterFlags) {
  ASSERT_TRUE(CallAt(0, Put("k", "v")).ok());
  std::vector<raft::NodeId> ids(3);
  for (size_t i = 0; i < 3; ++i) {
    auto status = StatusOf(i);
    ASSERT_TRUE(status.ok()) << status.status();
    ids[i] = status->member.id;
  }
  const std::string members = MembersAt(0);
  ASSERT_EQ(MembersAt(1), members);

  // --initial-cluster and its token dropped: the flags would make n1 a cluster of its own.
  RestartWith(0,
              Without(Without(cluster_->Args(0), "--initial-cluster"), "--initial-cluster-token"),
              ids[0], members, "dropped");

  // --initial-cluster changed: a wrong URL for n1 and another token. At a first boot that is
  // another cluster id (partition_test's wrong entry); at a restart the flags do not count.
  const std::string wrong_url = absl::StrCat("http://127.0.0.1:", testing::FreeLoopbackPort());
  std::string changed = cluster_->initial_cluster();
  const std::string n1_entry = absl::StrCat("n1=", cluster_->member(0).peer_url());
  changed.replace(changed.find(n1_entry), n1_entry.size(), absl::StrCat("n1=", wrong_url));
  RestartWith(1,
              With(With(cluster_->Args(1), "--initial-cluster", changed), "--initial-cluster-token",
                   "another-token"),
              ids[1], members, "changed");
  // and once more with --initial-cluster-state=existing, which a restart ignores as well.
  std::vector<std::string> existing = cluster_->Args(1);
  existing.push_back("--initial-cluster-state=existing");
  RestartWith(1, existing, ids[1], members, "existing");

  // A founding member moves: member update to a new peer URL, then a restart listening there.
  // Its flags now name the new URL everywhere, from which a first boot would derive another id.
  auto reserved = cluster_->ReservePort();
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  const uint16_t new_port = *reserved;
  const std::string old_url = cluster_->member(2).peer_url();
  const std::string new_url = absl::StrCat("http://127.0.0.1:", new_port);
  server::Request update;
  update.type = server::RequestType::kMemberUpdate;
  update.member.id = ids[2];
  update.member.peer_urls = {new_url};
  auto updated = CallAt(0, update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  testing::ClusterMember& n3 = cluster_->member(2);
  n3.listen_peer_port = new_port;
  n3.peer_port = new_port;
  std::string moved_cluster = cluster_->initial_cluster();
  const std::string n3_entry = absl::StrCat("n3=", old_url);
  moved_cluster.replace(moved_cluster.find(n3_entry), n3_entry.size(),
                        absl::StrCat("n3=", new_url));
  std::string moved_members = members;
  moved_members.replace(moved_members.find(old_url), old_url.size(), new_url);
  RestartWith(2, With(cluster_->Args(2), "--initial-cluster", moved_cluster), ids[2], moved_members,
              "moved");

  // A first boot still checks its flags (etcd's VerifyBootstrap): a fresh data directory whose
  // --initial-cluster does not name this member's advertised URL exits 2.
  auto slot = cluster_->AddMember();
  ASSERT_TRUE(slot.ok()) << slot.status();
  ASSERT_TRUE(cluster_
                  ->StartWithArgs(*slot, With(cluster_->Args(*slot),
                                              "--initial-advertise-peer-urls", wrong_url))
                  .ok());
  auto exit = cluster_->member(*slot).process->Wait(crash::Clock::now() + std::chrono::seconds(5));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->Exited(2)) << exit->Describe();
  EXPECT_NE(cluster_->member(*slot).process->stderr_text().find(
                "but --initial-advertise-peer-urls is " + wrong_url),
            std::string::npos)
      << cluster_->member(*slot).process->stderr_text();
  cluster_->Kill(*slot);
}

}  // namespace
}  // namespace kvstore::node
