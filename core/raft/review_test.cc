// Review findings on the Raft core, each test pinned to one scenario. A comment headed "FIXED"
// names a bug the review found (the test failed until it was fixed and now keeps it fixed); the
// others pin subtle behaviour that is correct and worth keeping correct.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/raft/raft.h"
#include "core/raft/testing/cluster.h"
#include "core/raft/types.h"
#include "gtest/gtest.h"

namespace kvstore::raft {
namespace {

using ::kvstore::raft::testing::Cluster;

constexpr int kElectionTick = 10;  // Config's default

using MessageFilter = std::function<bool(Message&)>;
bool KeepAll(Message&) { return true; }

Status StatusOf(Cluster& c, NodeId id) { return c.node(id).GetStatus(); }
Term TermOf(Cluster& c, NodeId id) { return StatusOf(c, id).hard_state.term; }
Role RoleOf(Cluster& c, NodeId id) { return StatusOf(c, id).soft_state.role; }

// Cluster::Stabilize, except that every in-flight message passes `filter` before delivery.
void StabilizeWith(Cluster& c, const MessageFilter& filter) {
  for (int round = 0; round < 10000; ++round) {
    bool progress = false;
    for (NodeId id : c.ids()) {
      while (c.ProcessReady(id)) progress = true;
    }
    std::vector<Message> kept;
    for (Message& m : c.in_flight()) {
      if (filter(m)) kept.push_back(std::move(m));
    }
    c.in_flight() = std::move(kept);
    if (c.DeliverAll() > 0) progress = true;
    if (!progress) return;
  }
  ADD_FAILURE() << "cluster did not stabilize";
}

void HeartbeatRounds(Cluster& c, NodeId leader, int rounds, const MessageFilter& filter = KeepAll) {
  for (int i = 0; i < rounds; ++i) {
    c.Tick(leader, c.config(leader).heartbeat_tick);
    StabilizeWith(c, filter);
  }
}

std::shared_ptr<const Snapshot> SnapshotAt(Cluster& c, NodeId id, Index index) {
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->metadata.index = index;
  snapshot->metadata.term = TermOf(c, id);
  snapshot->metadata.conf_state = c.record(id).conf_state;
  snapshot->data = Bytes("image");
  return snapshot;
}

// Node 3 misses 10 entries that leader 1 then compacts away. Returns the compaction index.
Index LagAndCompact(Cluster& c) {
  c.ElectLeader(1);
  c.Cut(1, 3);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(c.ProposeAndStabilize(1, "e" + std::to_string(i)).ok());
  const Index applied = c.record(1).applied_index;
  EXPECT_TRUE(c.node(1).Compact(SnapshotAt(c, 1, applied), applied).ok());
  c.Heal();
  return applied;
}

// FIXED (raft.h PersistRequest contract + testing::MemoryStorage::Write, used by the simulator as
// its durable log): a snapshot installed by a follower replaces the follower's WHOLE log (Raft
// §7: "discard the entire log"; RaftLog::RestoreSnapshot clears every entry), but the contract
// says "the snapshot (replacing the log up to its index)" and MemoryStorage keeps any persisted
// entries after the snapshot index when they happen to be contiguous. A follower with a longer,
// divergent (stale-term) suffix therefore keeps that suffix on disk behind the snapshot; until
// the leader overwrites it, a restart loads it and RawNode::Create refuses the state ("restart
// entry ... has a lower term than its predecessor"): the member cannot come back.
TEST(ReviewSnapshotTest, InstalledSnapshotDiscardsDivergentPersistedSuffix) {
  Cluster c({1, 2, 3}, {}, [](Config& config) {
    config.pre_vote = false;
    config.check_quorum = false;
  });
  c.ElectLeader(1);
  // Node 1 keeps leading in isolation: 20 entries of its term that will never commit.
  c.Isolate(1);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(c.ProposeAndStabilize(1, "stale").ok());
  const Term stale_term = TermOf(c, 1);
  const Index stale_last = c.node(1).LastIndex();
  // Node 2 leads the majority, commits a few entries and compacts them (below stale_last).
  ASSERT_TRUE(c.node(2).Campaign().ok());
  c.Stabilize();
  ASSERT_EQ(RoleOf(c, 2), Role::kLeader);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.ProposeAndStabilize(2, "fresh").ok());
  const Index compacted = c.record(2).applied_index;
  ASSERT_LT(compacted, stale_last);
  ASSERT_TRUE(c.node(2).Compact(SnapshotAt(c, 2, compacted), compacted).ok());
  // Node 1 rejoins; it needs compacted entries, so it installs the snapshot.
  c.Heal();
  HeartbeatRounds(c, 2, 3);
  ASSERT_NE(c.record(1).storage.snapshot(), nullptr);
  ASSERT_EQ(c.record(1).storage.snapshot()->metadata.index, compacted);
  ASSERT_EQ(StatusOf(c, 1).last_index, compacted) << "Raft's own log is just the snapshot";
  std::vector<Index> divergent;
  for (const Entry& e : c.record(1).storage.entries()) {
    if (e.term == stale_term) divergent.push_back(e.index);
  }
  EXPECT_TRUE(divergent.empty()) << "storage still holds " << divergent.size()
                                 << " divergent entries (term " << stale_term << ") from index "
                                 << divergent.front() << " behind snapshot " << compacted;
  // The consequence: the member cannot restart from what is on disk.
  c.Crash(1);
  auto restarted = RawNode::Create(c.config(1), c.record(1).storage.Restart(compacted));
  EXPECT_TRUE(restarted.ok()) << restarted.status();
}

// FIXED (liveness; raft.h says of Ready::messages "lost or duplicated messages are tolerated"):
// a lost kSnap leaves the leader's progress for that follower in kSnapshot forever. Appends are
// paused in that state, heartbeat responses do not leave it, and the snapshot is never resent;
// only ReportSnapshot(peer, false) recovers, and nothing calls it (server::Server exposes neither
// ReportSnapshot nor ReportUnreachable, and neither the simulator nor any driver calls them). With
// check-quorum the leader stays in place, so the follower stays behind indefinitely.
TEST(ReviewSnapshotTest, LostSnapshotMessageIsEventuallyResent) {
  Cluster c({1, 2, 3});
  LagAndCompact(c);
  int dropped = 0;
  auto drop_first_snapshot = [&](Message& m) {
    if (m.type != MessageType::kSnap || dropped > 0) return true;
    ++dropped;
    return false;
  };
  ASSERT_TRUE(c.node(1).Propose(Bytes("after")).ok());
  StabilizeWith(c, drop_first_snapshot);
  for (int i = 0; i < 3 && dropped == 0; ++i) HeartbeatRounds(c, 1, 1, drop_first_snapshot);
  ASSERT_EQ(dropped, 1);
  // The transport lost it silently: no ReportSnapshot. Many heartbeats and election timeouts.
  HeartbeatRounds(c, 1, 10 * kElectionTick);
  ASSERT_EQ(RoleOf(c, 1), Role::kLeader);
  EXPECT_EQ(c.record(3).applied_index, c.record(1).applied_index)
      << "follower 3 stuck; leader's progress state "
      << ProgressStateName(StatusOf(c, 1).progress.at(3).state);
}

// Pins (correct today): a second snapshot arriving while the write of a first one is still in
// flight (asynchronous storage) supersedes it. The first write's acknowledgement releases its
// response but never hands the older snapshot to the state machine; the newer one is applied
// once its own write is durable, and the applied index jumps straight to it.
TEST(ReviewSnapshotTest, SnapshotArrivingWhileAnotherIsBeingWrittenSupersedesIt) {
  Config config;
  config.id = 1;
  RestartState restart;
  auto bootstrap = std::make_shared<Snapshot>();
  bootstrap->metadata.conf_state.voters = {1, 2, 3};
  restart.snapshot = bootstrap;
  auto created = RawNode::Create(config, std::move(restart));
  ASSERT_TRUE(created.ok()) << created.status();
  RawNode& node = **created;

  auto snap = [](Index index) {
    auto s = std::make_shared<Snapshot>();
    s->metadata.index = index;
    s->metadata.term = 2;
    s->metadata.conf_state.voters = {1, 2, 3};
    s->data = Bytes("image@" + std::to_string(index));
    Message m;
    m.type = MessageType::kSnap;
    m.from = 2;
    m.to = 1;
    m.term = 2;
    m.snapshot = s;
    return m;
  };
  auto app_resps = [](const Ready& ready) {
    std::vector<Index> out;
    for (const Message& m : ready.messages) {
      if (m.type == MessageType::kAppResp) out.push_back(m.index);
    }
    return out;
  };

  ASSERT_TRUE(node.Step(snap(10)).ok());
  const Ready& first = node.GetReady();
  ASSERT_NE(first.persist.snapshot, nullptr);
  EXPECT_EQ(first.persist.snapshot->metadata.index, 10u);
  EXPECT_EQ(first.apply_snapshot, nullptr);
  EXPECT_TRUE(app_resps(first).empty()) << "acknowledged before the snapshot is durable";
  const uint64_t first_write = first.persist.id;
  node.Advance();  // the write is still in flight

  ASSERT_TRUE(node.Step(snap(20)).ok());
  const Ready& second = node.GetReady();
  ASSERT_NE(second.persist.snapshot, nullptr);
  EXPECT_EQ(second.persist.snapshot->metadata.index, 20u);
  EXPECT_EQ(second.apply_snapshot, nullptr);
  const uint64_t second_write = second.persist.id;
  node.Advance();

  node.OnPersisted(first_write);
  ASSERT_TRUE(node.HasReady());
  const Ready& released = node.GetReady();
  EXPECT_EQ(released.apply_snapshot, nullptr) << "the superseded snapshot must not be applied";
  EXPECT_EQ(app_resps(released), std::vector<Index>{10});
  node.Advance();

  node.OnPersisted(second_write);
  ASSERT_TRUE(node.HasReady());
  const Ready& applied = node.GetReady();
  ASSERT_NE(applied.apply_snapshot, nullptr);
  EXPECT_EQ(applied.apply_snapshot->metadata.index, 20u);
  EXPECT_EQ(app_resps(applied), std::vector<Index>{20});
  node.Advance();
  EXPECT_EQ(node.GetStatus().applied, 20u);
  EXPECT_EQ(node.GetStatus().hard_state.commit, 20u);
}

// Pins (correct today; etcd #8334 TestPreVoteWithCheckQuorum): with pre-vote and check-quorum,
// once the leader is cut off a follower that still heard from it within the election timeout
// ignores a pre-vote, but a pre-candidate has forgotten its leader (lead = none), so when the
// other follower campaigns it grants the pre-vote and the vote: the cluster is not left without
// a leader.
TEST(ReviewElectionTest, PreVoteWithCheckQuorumElectsAfterLeaderIsCutOff) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  c.Isolate(1);
  ASSERT_TRUE(c.node(3).Campaign().ok());
  c.Stabilize();
  ASSERT_EQ(RoleOf(c, 3), Role::kPreCandidate) << "node 2 is within its lease: no answer";
  ASSERT_EQ(RoleOf(c, 2), Role::kFollower);
  ASSERT_TRUE(c.node(2).Campaign().ok());
  c.Stabilize();
  EXPECT_EQ(RoleOf(c, 2), Role::kLeader);
  EXPECT_EQ(RoleOf(c, 3), Role::kFollower);
  EXPECT_EQ(StatusOf(c, 3).soft_state.leader, 2u);
}

// FIXED (ReadIndex, raft.cc RaftState::HandleReadIndex; needs step_down_on_removal = false, which
// is etcd's default): the "single voter" shortcut answers a read at once with the local commit
// index whenever the configuration has exactly one voter, without checking that this voter is
// the leader itself. A leader removed from the configuration (and kept leading) whose only
// remaining voter is another node answers reads with no confirmation at all; cut off, it keeps
// answering stale read indexes while that voter leads a newer term and commits writes. etcd's
// IsSingleton() has the same flaw. Fix: take the shortcut only when the single voter is id_;
// otherwise go through the heartbeat quorum (whose acks from the real voter are counted).
TEST(ReviewReadIndexTest, RemovedLeaderDoesNotAnswerReadsWithoutQuorum) {
  Cluster c({1, 2}, {}, [](Config& config) { config.step_down_on_removal = false; });
  c.ElectLeader(1);
  ConfChange remove;
  remove.changes.push_back({ConfChangeType::kRemoveNode, 1});
  ASSERT_TRUE(c.node(1).ProposeConfChange(remove).ok());
  c.Stabilize();
  HeartbeatRounds(c, 1, 1);
  ASSERT_EQ(c.record(1).conf_state.voters, std::vector<NodeId>{2});
  ASSERT_EQ(RoleOf(c, 1), Role::kLeader);
  // Cut off; node 2, now the only voter, elects itself and commits a write.
  c.Isolate(1);
  ASSERT_TRUE(c.node(2).Campaign().ok());
  c.Stabilize();
  ASSERT_EQ(RoleOf(c, 2), Role::kLeader);
  ASSERT_TRUE(c.ProposeAndStabilize(2, "newer").ok());
  ASSERT_GT(StatusOf(c, 2).hard_state.commit, StatusOf(c, 1).hard_state.commit);
  ASSERT_EQ(RoleOf(c, 1), Role::kLeader);
  ASSERT_TRUE(c.node(1).ReadIndex(Bytes("stale?")).ok());
  c.Stabilize();
  EXPECT_TRUE(c.record(1).read_states.empty())
      << "node 1 answered a read at index " << c.record(1).read_states.front().index
      << " (node 2 leads term " << TermOf(c, 2) << " with commit "
      << StatusOf(c, 2).hard_state.commit << ")";
}

}  // namespace
}  // namespace kvstore::raft
