// The member library on real files, one member: what it acknowledges is durable, a crash that
// takes the backend's latest batches is repaired by replaying the WAL exactly once, and
// compaction keeps the log small without losing anything a restart needs.

#include "node/member.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/base/errors.h"
#include "gtest/gtest.h"
#include "net/etcd/convert.h"
#include "store/posix_file_system.h"

namespace kvstore::node {
namespace {

// A MemoryBackend whose Flush fails once armed as LMDB's does on a full disk (mdb_txn_commit:
// ENOSPC): the batches since the last durable commit are lost, and reads see the durable state.
class FlushFailingBackend : public mvcc::MemoryBackend {
 public:
  using MemoryBackend::MemoryBackend;
  absl::Status Flush() override {
    if (!fail_flush) return MemoryBackend::Flush();
    Crash();
    return absl::DataLossError("mdb_txn_commit failed: No space left on device");
  }
  bool fail_flush = false;
};

// One member on a loop the test turns by hand: syncs queue until RunSyncs.
class Harness : public PeerTransport, public SyncExecutor, public ClientSink, public ReadyObserver {
 public:
  explicit Harness(uint64_t backend_commits_per_flush) : backend_(backend_commits_per_flush) {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = store::JoinPath(
        tmp != nullptr ? tmp : "/tmp",
        absl::StrCat("member_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    EXPECT_EQ(std::system(absl::StrCat("rm -rf '", dir_, "'").c_str()), 0);
  }

  void Boot(
      uint64_t wal_compact_entries = 10000,
      uint64_t max_committed_size_per_ready_bytes = server::kDefaultMaxCommittedSizePerReadyBytes) {
    MemberOptions options;
    options.server.id = 1;
    options.server.election_tick = 10;
    options.server.heartbeat_tick = 1;
    options.server.max_committed_size_per_ready_bytes = max_committed_size_per_ready_bytes;
    options.wal.segment_bytes = 8192;
    options.wal_compact_entries = wal_compact_entries;
    MemberIo io;
    io.transport = this;
    io.sync = this;
    io.sink = this;
    io.observer = this;
    std::vector<server::Member> founding = {server::Member{1, "one", {"http://127.0.0.1:2380"}}};
    auto member = Member::Open(options, &fs_, dir_, &backend_, io, founding);
    ASSERT_TRUE(member.ok()) << member.status();
    member_ = std::move(*member);
    member_->Drain();
    for (int i = 0; i < 100 && !member_->server().is_leader(); ++i) {
      member_->Tick();
      RunSyncs();
    }
    ASSERT_TRUE(member_->server().is_leader());
  }

  // A power loss: the process and every backend batch not yet durable are gone.
  void Crash() {
    member_.reset();
    pending_syncs_.clear();
    backend_.Crash();
  }

  void RunSyncs() {
    while (!pending_syncs_.empty()) {
      store::Wal::SyncBatch* batch = pending_syncs_.front();
      pending_syncs_.pop_front();
      member_->OnSyncDone(batch->Run());
    }
  }

  std::optional<server::Response> Put(const std::string& key, const std::string& value) {
    server::Request request;
    request.type = server::RequestType::kPut;
    request.put.key = key;
    request.put.value = value;
    const server::RequestId id = member_->Submit(std::move(request));
    RunSyncs();
    return Take(id);
  }

  std::optional<std::string> Get(const std::string& key) {
    server::Request request;
    request.type = server::RequestType::kRange;
    request.range.key = key;
    request.range.serializable = true;
    const server::RequestId id = member_->Submit(std::move(request));
    RunSyncs();
    auto response = Take(id);
    if (!response.has_value() || response->range.kvs.empty()) return std::nullopt;
    return response->range.kvs[0].value;
  }

  std::optional<server::Response> Take(server::RequestId id) {
    auto it = responses_.find(id);
    if (it == responses_.end()) return std::nullopt;
    server::Response response = std::move(it->second);
    responses_.erase(it);
    return response;
  }

  void Send(const raft::Message&) override {}
  void Start(store::Wal::SyncBatch* batch) override { pending_syncs_.push_back(batch); }
  void OnResponse(const server::Response& response) override {
    responses_[response.request_id] = response;
  }
  void OnWatchResponse(const mvcc::WatchResponse&) override {}
  void OnStop(const absl::Status& why) override { stop_ = why; }
  void OnReady(const server::Ready& ready) override {
    const absl::Span<const raft::Entry> entries = ready.raft->committed_entries;
    if (entries.empty()) return;
    uint64_t bytes = 0;
    for (const raft::Entry& entry : entries) bytes += raft::EntrySizeBytes(entry);
    applied_batches_.push_back(AppliedBatch{entries.size(), bytes});
  }
  void OnRecovered(const raft::RestartState&) override {}

  // The committed entries of one Ready: what the member applies as one backend batch.
  struct AppliedBatch {
    size_t entries = 0;
    uint64_t bytes = 0;  // raft::EntrySizeBytes
  };

  store::PosixFileSystem fs_;
  std::string dir_;
  FlushFailingBackend backend_;
  std::unique_ptr<Member> member_;
  std::deque<store::Wal::SyncBatch*> pending_syncs_;
  std::map<server::RequestId, server::Response> responses_;
  absl::Status stop_;
  std::vector<AppliedBatch> applied_batches_;
};

// The real wal_disk_full once read nothing for a key written long before: a member whose idle
// backend flush failed on a full disk went on serving until its process exited, its key index
// naming revisions its rolled-back backend no longer held.
TEST(MemberTest, AFailedBackendFlushStopsTheMemberBeforeItServesAnotherRead) {
  Harness h(/*backend_commits_per_flush=*/1000);
  h.Boot();
  ASSERT_TRUE(h.Put("k", "v1").has_value());
  ASSERT_EQ(h.Get("k"), "v1");
  h.backend_.fail_flush = true;
  const absl::Status flushed = h.member_->FlushBackend();
  EXPECT_EQ(flushed.code(), absl::StatusCode::kDataLoss) << flushed;
  EXPECT_TRUE(h.member_->stopped());
  EXPECT_EQ(h.stop_, flushed);
  EXPECT_NE(h.stop_.message().find("backend flush failed"), std::string::npos) << h.stop_;
  // No answer at all, where a member left serving answered an empty range.
  server::Request read;
  read.type = server::RequestType::kRange;
  read.range.key = "k";
  read.range.serializable = true;
  const server::RequestId id = h.member_->Submit(std::move(read));
  h.RunSyncs();
  EXPECT_EQ(h.Take(id), std::nullopt);
  // The restart replays the lost batch from the WAL.
  h.member_.reset();
  h.pending_syncs_.clear();
  h.backend_.fail_flush = false;
  h.Boot();
  EXPECT_EQ(h.Get("k"), "v1");
}

// etcd #14370: a single member must not answer a write before its entry is durable.
TEST(MemberTest, SingleMemberAnswersAWriteOnlyOnceItsEntryIsDurable) {
  Harness h(/*backend_commits_per_flush=*/1);
  h.Boot();
  server::Request request;
  request.type = server::RequestType::kPut;
  request.put.key = "k";
  request.put.value = "v";
  const server::RequestId id = h.member_->Submit(std::move(request));
  EXPECT_FALSE(h.Take(id).has_value()) << "answered before the WAL sync ran";
  ASSERT_FALSE(h.pending_syncs_.empty());
  const uint64_t durable_before = h.member_->wal().durable_last_index();
  h.RunSyncs();
  EXPECT_GT(h.member_->wal().durable_last_index(), durable_before);
  auto response = h.Take(id);
  ASSERT_TRUE(response.has_value());
  EXPECT_TRUE(response->status.ok()) << response->status;
  // A crash right after the answer keeps the write.
  h.Crash();
  h.Boot();
  EXPECT_EQ(h.Get("k"), "v");
}

TEST(MemberTest, CrashThatTakesBackendBatchesReplaysTheWalExactlyOnce) {
  Harness h(/*backend_commits_per_flush=*/1000);  // the backend never flushes on its own
  h.Boot();
  for (int i = 0; i < 20; ++i) {
    auto response = h.Put("counter", absl::StrCat(i));
    ASSERT_TRUE(response.has_value() && response->status.ok());
  }
  auto before = h.Put("last", "x");
  ASSERT_TRUE(before.has_value());
  const mvcc::Revision revision = before->header.revision;
  h.Crash();  // the backend loses every batch since the start
  h.Boot();
  EXPECT_EQ(h.Get("counter"), "19");
  EXPECT_EQ(h.Get("last"), "x");
  // Replayed once: the revision continues where it was, with no write applied twice.
  EXPECT_EQ(h.member_->server().store().current_revision(), revision);
}

// A restart replays what the backend lost in backend batches of at most
// max_committed_size_per_ready_bytes (a single larger entry alone), not in one batch as large as
// the log.
TEST(MemberTest, ARestartReplaysItsLogInBoundedBatches) {
  constexpr uint64_t kMaxBatchBytes = 4096;
  Harness h(/*backend_commits_per_flush=*/1000);  // the backend never flushes on its own
  h.Boot(/*wal_compact_entries=*/10000, kMaxBatchBytes);
  for (int i = 0; i < 200; ++i) {
    auto response = h.Put(absl::StrCat("key", i), std::string(100, 'a' + i % 26));
    ASSERT_TRUE(response.has_value() && response->status.ok());
  }
  auto big = h.Put("big", std::string(2 * kMaxBatchBytes, 'z'));
  ASSERT_TRUE(big.has_value() && big->status.ok());
  const mvcc::Revision revision = h.member_->server().store().current_revision();
  h.Crash();
  h.applied_batches_.clear();
  h.Boot(/*wal_compact_entries=*/10000, kMaxBatchBytes);
  size_t replayed = 0;
  for (const Harness::AppliedBatch& batch : h.applied_batches_) {
    replayed += batch.entries;
    if (batch.entries > 1) {
      EXPECT_LE(batch.bytes, kMaxBatchBytes);
    }
  }
  EXPECT_GT(replayed, 201u);
  EXPECT_EQ(h.member_->server().store().current_revision(), revision);
  EXPECT_EQ(h.Get("key199"), std::string(100, 'a' + 199 % 26));
  EXPECT_EQ(h.Get("big"), std::string(2 * kMaxBatchBytes, 'z'));
}

TEST(MemberTest, CompactionDropsSegmentsAndARestartNeedsNothingItDropped) {
  Harness h(/*backend_commits_per_flush=*/50);
  h.Boot(/*wal_compact_entries=*/100);
  uint64_t most_segments = 0;
  for (int i = 0; i < 600; ++i) {
    auto response = h.Put(absl::StrCat("key", i % 50), std::string(100, 'a' + i % 26));
    ASSERT_TRUE(response.has_value() && response->status.ok());
    most_segments = std::max(most_segments, h.member_->wal().segment_count());
  }
  EXPECT_GT(most_segments, 3u);
  EXPECT_LT(h.member_->wal().segment_count(), most_segments);
  EXPECT_GT(h.member_->wal().durable_snapshot_index(), 400u);
  const mvcc::Revision revision = h.member_->server().store().current_revision();
  h.Crash();
  h.Boot(/*wal_compact_entries=*/100);
  EXPECT_EQ(h.member_->server().store().current_revision(), revision);
  EXPECT_EQ(h.Get("key49"), std::string(100, 'a' + 599 % 26));
}

// Three members on one loop the test turns by hand: messages are delivered in the order sent,
// a member can be cut off (every message to or from it dropped), and a member's disk can stall
// (its WAL syncs wait, as behind a slow fsync, until the stall is lifted).
class ThreeMembers {
 public:
  struct Node final : PeerTransport, SyncExecutor, ClientSink {
    ThreeMembers* cluster = nullptr;
    raft::NodeId id = 0;
    mvcc::MemoryBackend backend{1};
    std::unique_ptr<Member> member;
    std::deque<store::Wal::SyncBatch*> syncs;
    std::map<server::RequestId, server::Response> responses;
    bool disk_stalled = false;

    void Send(const raft::Message& message) override { cluster->messages_.push_back(message); }
    void Start(store::Wal::SyncBatch* batch) override { syncs.push_back(batch); }
    void OnResponse(const server::Response& response) override {
      responses[response.request_id] = response;
    }
    void OnWatchResponse(const mvcc::WatchResponse&) override {}
    void OnStop(const absl::Status&) override {}
  };

  ThreeMembers() {
    const char* tmp = std::getenv("TEST_TMPDIR");
    const std::string dir = store::JoinPath(
        tmp != nullptr ? tmp : "/tmp",
        absl::StrCat("members_", ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    EXPECT_EQ(std::system(absl::StrCat("rm -rf '", dir, "'").c_str()), 0);
    std::vector<server::Member> founding;
    for (raft::NodeId id = 1; id <= 3; ++id) {
      founding.push_back(server::Member{
          id, absl::StrCat("n", id), {absl::StrCat("http://127.0.0.1:", 2380 + id)}});
    }
    for (raft::NodeId id = 1; id <= 3; ++id) {
      Node& node = nodes_[id];
      node.cluster = this;
      node.id = id;
      MemberOptions options;
      options.server.id = id;
      options.server.random_seed = id;
      options.server.election_tick = 10;
      options.server.heartbeat_tick = 1;
      MemberIo io;
      io.transport = &node;
      io.sync = &node;
      io.sink = &node;
      auto member = Member::Open(options, &fs_, store::JoinPath(dir, absl::StrCat("n", id)),
                                 &node.backend, io, founding);
      EXPECT_TRUE(member.ok()) << member.status();
      node.member = std::move(*member);
    }
    for (auto& [id, node] : nodes_) node.member->Drain();
  }

  Node& node(raft::NodeId id) { return nodes_.at(id); }

  // Delivers messages and runs the syncs of disks that are not stalled until nothing moves
  // (bounded: a livelock fails the test instead of hanging it).
  void Settle() {
    for (int round = 0; round < 100000; ++round) {
      bool moved = false;
      std::deque<raft::Message> messages;
      messages.swap(messages_);
      for (raft::Message& message : messages) {
        if (cut_.count(message.from) > 0 || cut_.count(message.to) > 0) continue;
        (void)nodes_.at(message.to).member->Step(std::move(message));
        moved = true;
      }
      for (auto& [id, node] : nodes_) {
        while (!node.disk_stalled && !node.syncs.empty()) {
          store::Wal::SyncBatch* batch = node.syncs.front();
          node.syncs.pop_front();
          node.member->OnSyncDone(batch->Run());
          moved = true;
        }
      }
      if (!moved) return;
    }
    ADD_FAILURE() << "the members never settled";
  }

  void Tick() {
    for (auto& [id, node] : nodes_) node.member->Tick();
    Settle();
  }

  raft::NodeId WaitForLeader() {
    for (int i = 0; i < 200; ++i) {
      for (auto& [id, node] : nodes_) {
        if (node.member->server().is_leader()) return id;
      }
      Tick();
    }
    return 0;
  }

  void Cut(raft::NodeId id) { cut_.insert(id); }
  void Heal() { cut_.clear(); }
  // The messages sent and not yet delivered, taken out of the network.
  std::deque<raft::Message> TakeMessages() { return std::exchange(messages_, {}); }

 private:
  store::PosixFileSystem fs_;
  std::map<raft::NodeId, Node> nodes_;
  std::deque<raft::Message> messages_;
  std::set<raft::NodeId> cut_;
};

server::Request PutRequest(const std::string& key, const std::string& value) {
  server::Request request;
  request.type = server::RequestType::kPut;
  request.put.key = key;
  request.put.value = value;
  return request;
}

// etcd's processInternalRaftRequestOnce through the member library: a follower whose disk
// stalls while it catches up learns a commit index far past what it can apply (it applies only
// what its own WAL holds durably). Past 5,000 entries of lag it refuses proposals with "too many
// requests" (gRPC RESOURCE_EXHAUSTED, "etcdserver: too many requests", as etcd 3.4 answers)
// instead of queueing them behind the backlog; serializable reads are still served; once the
// disk catches up it takes proposals again.
TEST(MemberTest, AFollowerWhoseApplyLagsCommitRefusesProposalsWithTooManyRequests) {
  ThreeMembers cluster;
  const raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  const raft::NodeId slow = leader == 3 ? 2 : 3;
  Member& leader_member = *cluster.node(leader).member;
  Member& slow_member = *cluster.node(slow).member;
  ThreeMembers::Node& slow_node = cluster.node(slow);

  // The slow follower is cut off while the other two commit a backlog larger than the limit.
  const uint64_t backlog_entries = server::kMaxAppliedLagEntries + 200;
  cluster.Cut(slow);
  for (uint64_t i = 0; i < backlog_entries; ++i) {
    leader_member.Submit(PutRequest(absl::StrCat("k", i % 16), absl::StrCat(i)));
  }
  cluster.Settle();
  ASSERT_GE(leader_member.server().applied_index(), backlog_entries);

  // It comes back with a stalled disk: the leader's catch-up append tells it the commit index,
  // but nothing it appends becomes durable, so nothing past what it had applies.
  slow_node.disk_stalled = true;
  cluster.Heal();
  for (int i = 0; i < 100; ++i) {
    if (slow_member.server().hard_state().commit >
        slow_member.server().applied_index() + server::kMaxAppliedLagEntries) {
      break;
    }
    cluster.Tick();
  }
  const raft::Index commit = slow_member.server().hard_state().commit;
  const raft::Index applied = slow_member.server().applied_index();
  ASSERT_GT(commit, applied + server::kMaxAppliedLagEntries)
      << "commit " << commit << " applied " << applied;

  const server::RequestId put = slow_member.Submit(PutRequest("refused", "v"));
  server::Request read;
  read.type = server::RequestType::kRange;
  read.range.key = "k0";
  read.range.serializable = true;
  const server::RequestId get = slow_member.Submit(std::move(read));
  ASSERT_EQ(slow_node.responses.count(put), 1u) << "a refusal is answered at once";
  const absl::Status& refused = slow_node.responses.at(put).status;
  EXPECT_EQ(CodeOf(refused), ErrorCode::kTooManyRequests) << refused;
  const grpc::Status on_the_wire = net::etcd::ToGrpcStatus(refused);
  EXPECT_EQ(on_the_wire.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(on_the_wire.error_message(), "etcdserver: too many requests");
  ASSERT_EQ(slow_node.responses.count(get), 1u);
  EXPECT_TRUE(slow_node.responses.at(get).status.ok()) << slow_node.responses.at(get).status;

  // The disk catches up: the follower applies the backlog and takes proposals again.
  slow_node.disk_stalled = false;
  cluster.Settle();
  EXPECT_EQ(slow_member.server().applied_index(), slow_member.server().hard_state().commit);
  const server::RequestId accepted = slow_member.Submit(PutRequest("accepted", "v"));
  for (int i = 0; i < 50 && slow_node.responses.count(accepted) == 0; ++i) cluster.Tick();
  ASSERT_EQ(slow_node.responses.count(accepted), 1u);
  EXPECT_TRUE(slow_node.responses.at(accepted).status.ok())
      << slow_node.responses.at(accepted).status;
}

// kvnode's runtime takes a turn's events first and carries out one Ready after them
// (Runtime::DrainSoon): requests submitted together leave the leader as one append per follower,
// and a follower that steps a frame's appends with StepDeferred writes them in one WAL sync.
TEST(MemberTest, EventsTakenInOneTurnCostOneReady) {
  ThreeMembers cluster;
  const raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, 0u);
  const raft::NodeId follower = leader == 3 ? 2 : 3;
  Member& leader_member = *cluster.node(leader).member;
  (void)cluster.TakeMessages();

  std::vector<server::RequestId> batch;
  for (int i = 0; i < 5; ++i) {
    batch.push_back(leader_member.server().Submit(PutRequest(absl::StrCat("b", i), "v")));
  }
  leader_member.Drain();
  std::deque<raft::Message> sent = cluster.TakeMessages();
  int appends_to_follower = 0;
  for (const raft::Message& m : sent) {
    if (m.type != raft::MessageType::kApp || m.to != follower) continue;
    ++appends_to_follower;
    EXPECT_EQ(m.entries.size(), 5u) << "the five proposals travel in one append";
  }
  EXPECT_EQ(appends_to_follower, 1);
  for (raft::Message& m : sent) (void)cluster.node(m.to).member->Step(std::move(m));
  cluster.Settle();

  // Three appends reach the follower in one frame (the leader drained after each request).
  for (int i = 0; i < 3; ++i) leader_member.Submit(PutRequest(absl::StrCat("f", i), "v"));
  std::deque<raft::Message> frame;
  for (raft::Message& m : cluster.TakeMessages()) {
    if (m.type == raft::MessageType::kApp && m.to == follower && !m.entries.empty()) {
      frame.push_back(std::move(m));
    }
  }
  ASSERT_EQ(frame.size(), 3u);
  const raft::Index last = frame.back().entries.back().index;
  ThreeMembers::Node& node = cluster.node(follower);
  ASSERT_TRUE(node.syncs.empty());
  for (raft::Message& m : frame) ASSERT_TRUE(node.member->StepDeferred(std::move(m)).ok());
  EXPECT_TRUE(node.syncs.empty()) << "nothing is carried out before the Drain";
  node.member->Drain();
  ASSERT_EQ(node.syncs.size(), 1u) << "one WAL sync for the frame";
  store::Wal::SyncBatch* sync = node.syncs.front();
  node.syncs.pop_front();
  node.member->OnSyncDone(sync->Run());
  raft::Index acknowledged = 0;
  for (const raft::Message& m : cluster.TakeMessages()) {
    if (m.type == raft::MessageType::kAppResp && m.from == follower && !m.reject) {
      acknowledged = std::max(acknowledged, m.index);
    }
  }
  EXPECT_EQ(acknowledged, last) << "the one sync made the whole frame durable";
}

}  // namespace
}  // namespace kvstore::node
