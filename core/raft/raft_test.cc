// Unit tests of the Raft core, one rule per test, through the public API only: RawNode directly
// for message-level checks on one node, testing::Cluster for several nodes. Each test names the
// rule it pins (Raft paper, Ongaro's thesis, or etcd-io/raft behaviour).

#include "core/raft/raft.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/raft/testing/cluster.h"
#include "core/raft/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvstore::raft {

// gtest printers: failures show the transcript form instead of raw bytes.
void PrintTo(const ConfState& conf_state, std::ostream* os) {
  *os << DescribeConfState(conf_state);
}
void PrintTo(const Entry& entry, std::ostream* os) { *os << DescribeEntry(entry); }
void PrintTo(const Message& message, std::ostream* os) { *os << DescribeMessage(message); }
void PrintTo(Role role, std::ostream* os) { *os << RoleName(role); }
void PrintTo(ProgressState state, std::ostream* os) { *os << ProgressStateName(state); }

namespace {

using ::kvstore::raft::testing::Cluster;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int kElectionTick = 10;  // Config's default

// A message filter for StabilizeWith: return false to drop the message; it may also edit it.
using MessageFilter = std::function<bool(Message&)>;
bool KeepAll(Message&) { return true; }

// ----------------------------------------------------------------------------------------------
// Single-node helpers (RawNode driven by hand).

std::vector<Entry> EntriesWithTerms(const std::vector<Term>& terms) {
  std::vector<Entry> entries;
  for (size_t i = 0; i < terms.size(); ++i) {
    Entry entry;
    entry.term = terms[i];
    entry.index = i + 1;
    entries.push_back(entry);
  }
  return entries;
}

// A snapshot at index 0 listing the voters: restarting from it gives a node that knows its
// cluster and has an empty log, which keeps message-level tests' indexes small.
std::shared_ptr<const Snapshot> BootstrapSnapshot(std::vector<NodeId> voters) {
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->metadata.conf_state.voters = std::move(voters);
  return snapshot;
}

std::unique_ptr<RawNode> NewNode(NodeId id, std::vector<NodeId> voters, HardState hard_state = {},
                                 std::vector<Entry> entries = {},
                                 const std::function<void(Config&)>& configure = nullptr) {
  Config config;
  config.id = id;
  config.random_seed = id;
  if (configure) configure(config);
  RestartState restart;
  restart.hard_state = hard_state;
  restart.snapshot = BootstrapSnapshot(std::move(voters));
  restart.entries = std::move(entries);
  auto node = RawNode::Create(config, std::move(restart));
  if (!node.ok()) {
    ADD_FAILURE() << "RawNode::Create: " << node.status();
    return nullptr;
  }
  return std::move(*node);
}

// Carries out every Ready of `node` as a synchronous driver would (each write acknowledged at
// once); returns the messages it sent.
std::vector<Message> Drain(RawNode& node) {
  std::vector<Message> sent;
  for (int i = 0; i < 100 && node.HasReady(); ++i) {
    const Ready& ready = node.GetReady();
    sent.insert(sent.end(), ready.messages.begin(), ready.messages.end());
    const uint64_t persist_id = ready.persist.id;
    node.Advance();
    if (persist_id != 0) node.OnPersisted(persist_id);
  }
  return sent;
}

std::vector<Message> OfType(const std::vector<Message>& messages, MessageType type) {
  std::vector<Message> out;
  for (const Message& m : messages) {
    if (m.type == type) out.push_back(m);
  }
  return out;
}

Message VoteRequest(NodeId from, NodeId to, Term term, Index last_index, Term last_term,
                    MessageType type = MessageType::kVote) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  m.index = last_index;
  m.log_term = last_term;
  return m;
}

// ----------------------------------------------------------------------------------------------
// Cluster helpers.

Status StatusOf(Cluster& c, NodeId id) { return c.node(id).GetStatus(); }
Term TermOf(Cluster& c, NodeId id) { return StatusOf(c, id).hard_state.term; }
Index CommitOf(Cluster& c, NodeId id) { return StatusOf(c, id).hard_state.commit; }
Role RoleOf(Cluster& c, NodeId id) { return StatusOf(c, id).soft_state.role; }
ProgressStatus ProgressOf(Cluster& c, NodeId leader, NodeId peer) {
  Status status = StatusOf(c, leader);
  auto it = status.progress.find(peer);
  if (it == status.progress.end()) {
    ADD_FAILURE() << "node " << leader << " has no progress for " << peer;
    return {};
  }
  return it->second;
}

// Payloads of the non-empty normal entries `id` applied, in order.
std::vector<std::string> AppliedData(Cluster& c, NodeId id) {
  std::vector<std::string> out;
  for (const Entry& e : c.record(id).applied) {
    if (e.type == EntryType::kNormal && !e.data.empty()) out.emplace_back(e.data.view());
  }
  return out;
}

// Entry `index` as `id` persisted it (nullptr when absent).
const Entry* StoredEntry(Cluster& c, NodeId id, Index index) {
  for (const Entry& e : c.record(id).storage.entries()) {
    if (e.index == index) return &e;
  }
  return nullptr;
}
// Its term, or 0 when absent.
Term StoredTerm(Cluster& c, NodeId id, Index index) {
  const Entry* entry = StoredEntry(c, id, index);
  return entry == nullptr ? 0 : entry->term;
}

// Cluster::Stabilize, except that every in-flight message passes `filter` before delivery.
// `after_ready(id)` runs after each Ready the cluster carries out.
void StabilizeWith(Cluster& c, const MessageFilter& filter,
                   const std::function<void(NodeId)>& after_ready = nullptr) {
  for (int round = 0; round < 10000; ++round) {
    bool progress = false;
    for (NodeId id : c.ids()) {
      while (c.ProcessReady(id)) {
        progress = true;
        if (after_ready) after_ready(id);
      }
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

// Heartbeat intervals of `leader`, each followed by stabilizing: how a leader finds and repairs
// a follower whose appends were lost (a heartbeat response triggers an append, as in etcd).
void HeartbeatRounds(Cluster& c, NodeId leader, int rounds, const MessageFilter& filter = KeepAll) {
  for (int i = 0; i < rounds; ++i) {
    c.Tick(leader, c.config(leader).heartbeat_tick);
    StabilizeWith(c, filter);
  }
}

// Campaigns until `id` leads (a first attempt may lose to votes already cast in its term).
bool CampaignUntilLeader(Cluster& c, NodeId id, const MessageFilter& filter = KeepAll) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (!c.node(id).Campaign().ok()) return false;
    StabilizeWith(c, filter);
    if (RoleOf(c, id) == Role::kLeader) return true;
  }
  return false;
}

// Ticks `candidates` one tick at a time, stabilizing in between, until one of them leads.
NodeId TickUntilLeader(Cluster& c, const std::vector<NodeId>& candidates) {
  for (int i = 0; i < 20 * kElectionTick; ++i) {
    for (NodeId id : candidates) c.Tick(id);
    c.Stabilize();
    for (NodeId id : candidates) {
      if (RoleOf(c, id) == Role::kLeader) return id;
    }
  }
  return kNoNode;
}

// Carries out one Ready of `id` like Cluster::ProcessReady, but leaves its write unacknowledged
// (an asynchronous storage write still in progress) and returns the write's id.
uint64_t ProcessReadyHoldingPersist(Cluster& c, NodeId id,
                                    const std::function<void(const Ready&)>& inspect = nullptr) {
  RawNode& node = c.node(id);
  if (!node.HasReady()) return 0;
  const Ready& ready = node.GetReady();
  if (inspect) inspect(ready);
  testing::NodeRecord& record = c.record(id);
  record.storage.Write(ready.persist);
  for (const Message& m : ready.messages) {
    if (!c.Blocked(m.from, m.to)) c.in_flight().push_back(m);
  }
  for (const Entry& e : ready.committed_entries) {
    EXPECT_EQ(e.type, EntryType::kNormal) << "this helper applies normal entries only";
    record.applied.push_back(e);
    record.applied_index = e.index;
  }
  const uint64_t persist_id = ready.persist.id;
  node.Advance();
  return persist_id;
}

ConfChange Change(ConfChangeTransition transition, std::vector<ConfChangeSingle> changes) {
  ConfChange change;
  change.transition = transition;
  change.changes = std::move(changes);
  return change;
}
ConfChange AddVoter(NodeId id) {
  return Change(ConfChangeTransition::kAuto, {{ConfChangeType::kAddVoter, id}});
}
ConfChange RemoveNode(NodeId id) {
  return Change(ConfChangeTransition::kAuto, {{ConfChangeType::kRemoveNode, id}});
}

ConfState Conf(std::vector<NodeId> voters, std::vector<NodeId> outgoing = {},
               std::vector<NodeId> learners = {}, bool auto_leave = false) {
  ConfState cs;
  cs.voters = std::move(voters);
  cs.voters_outgoing = std::move(outgoing);
  cs.learners = std::move(learners);
  cs.auto_leave = auto_leave;
  return cs;
}

std::string Payload(char fill, size_t size_bytes) { return std::string(size_bytes, fill); }

// ==============================================================================================
// Election (Raft §5.2, §5.4.1; thesis §4.2.3, §6.2, §9.6)

// Raft §5.2: election timeouts are drawn at random from [election_tick, 2 * election_tick).
TEST(ElectionTest, TimeoutIsRandomizedWithinOneToTwoElectionTicks) {
  std::set<int> seen;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    auto node = NewNode(1, {1, 2, 3}, {}, {}, [&](Config& c) { c.random_seed = seed; });
    ASSERT_NE(node, nullptr);
    Drain(*node);
    int ticks = 0;
    while (node->GetStatus().soft_state.role == Role::kFollower && ticks < 10 * kElectionTick) {
      node->Tick();
      ++ticks;
    }
    EXPECT_GE(ticks, kElectionTick) << "seed " << seed;
    EXPECT_LT(ticks, 2 * kElectionTick) << "seed " << seed;
    seen.insert(ticks);
  }
  EXPECT_GE(seen.size(), 5u) << "timeouts are not randomized";
}

// Raft §5.2: a follower that hears nothing for an election timeout campaigns and wins.
TEST(ElectionTest, FollowerCampaignsAfterElectionTimeout) {
  Cluster c({1, 2, 3});
  const Term term = TermOf(c, 2);
  int ticks = 0;
  while (RoleOf(c, 2) == Role::kFollower && ticks < 2 * kElectionTick) {
    c.Tick(2);
    ++ticks;
  }
  EXPECT_NE(RoleOf(c, 2), Role::kFollower);
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 2u);
  EXPECT_EQ(TermOf(c, 2), term + 1);
}

// Raft §5.2: each server votes for at most one candidate per term (first come, first served);
// a repeated request from the same candidate is granted again (etcd).
TEST(ElectionTest, OneVotePerTerm) {
  auto node = NewNode(1, {1, 2, 3});
  ASSERT_NE(node, nullptr);
  Drain(*node);

  ASSERT_TRUE(node->Step(VoteRequest(2, 1, 1, 0, 0)).ok());
  auto responses = OfType(Drain(*node), MessageType::kVoteResp);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].to, 2u);
  EXPECT_FALSE(responses[0].reject);

  ASSERT_TRUE(node->Step(VoteRequest(3, 1, 1, 0, 0)).ok());
  responses = OfType(Drain(*node), MessageType::kVoteResp);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].to, 3u);
  EXPECT_TRUE(responses[0].reject) << "second vote in term 1";

  ASSERT_TRUE(node->Step(VoteRequest(2, 1, 1, 0, 0)).ok());
  responses = OfType(Drain(*node), MessageType::kVoteResp);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_FALSE(responses[0].reject) << "the same candidate asks again";

  EXPECT_EQ(node->GetStatus().hard_state.vote, 2u);
  EXPECT_EQ(node->GetStatus().hard_state.term, 1u);
}

// Raft §5.1 / Figure 2: the vote is durable before the VoteResp leaves: the Ready carrying the
// new hard state holds no VoteResp; it appears only after OnPersisted of that write.
TEST(ElectionTest, VoteIsPersistedBeforeResponseLeaves) {
  auto node = NewNode(1, {1, 2, 3});
  ASSERT_NE(node, nullptr);
  Drain(*node);
  ASSERT_TRUE(node->Step(VoteRequest(2, 1, 1, 0, 0)).ok());

  ASSERT_TRUE(node->HasReady());
  const Ready& ready = node->GetReady();
  ASSERT_TRUE(ready.persist.hard_state.has_value());
  EXPECT_EQ(*ready.persist.hard_state, (HardState{1, 2, 0}));
  EXPECT_THAT(OfType(ready.messages, MessageType::kVoteResp), IsEmpty());
  const uint64_t persist_id = ready.persist.id;
  ASSERT_NE(persist_id, 0u);
  node->Advance();

  // Nothing else may release it while the write is outstanding.
  for (int i = 0; i < 10 && node->HasReady(); ++i) {
    const Ready& more = node->GetReady();
    EXPECT_THAT(OfType(more.messages, MessageType::kVoteResp), IsEmpty());
    node->Advance();
  }

  node->OnPersisted(persist_id);
  auto responses = OfType(Drain(*node), MessageType::kVoteResp);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].to, 2u);
  EXPECT_FALSE(responses[0].reject);
}

// Raft §5.4.1: a vote is denied to a candidate whose log is less up to date (older last term,
// or same last term and shorter).
TEST(ElectionTest, RejectsCandidateWithLessUpToDateLog) {
  auto node = NewNode(1, {1, 2, 3}, HardState{2, kNoNode, 0}, EntriesWithTerms({1, 2, 2}));
  ASSERT_NE(node, nullptr);
  Drain(*node);

  // Longer but older last term.
  ASSERT_TRUE(node->Step(VoteRequest(2, 1, 3, 5, 1)).ok());
  auto responses = OfType(Drain(*node), MessageType::kVoteResp);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_TRUE(responses[0].reject) << "older last term";

  // Same last term, shorter.
  ASSERT_TRUE(node->Step(VoteRequest(3, 1, 4, 2, 2)).ok());
  responses = OfType(Drain(*node), MessageType::kVoteResp);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_TRUE(responses[0].reject) << "shorter log";

  // As up to date: granted.
  ASSERT_TRUE(node->Step(VoteRequest(2, 1, 5, 3, 2)).ok());
  responses = OfType(Drain(*node), MessageType::kVoteResp);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_FALSE(responses[0].reject);
  EXPECT_EQ(node->GetStatus().hard_state.vote, 2u);
}

// Thesis §9.6: with pre-vote, a partitioned node keeps campaigning without raising its term, so
// on return it does not depose the healthy leader.
TEST(ElectionTest, PreVoteDoesNotRaiseTermOfIsolatedNode) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  const Term term = TermOf(c, 1);
  c.Isolate(3);
  for (int i = 0; i < 10 * kElectionTick; ++i) {
    c.Tick(3);
    c.Stabilize();
  }
  EXPECT_EQ(TermOf(c, 3), term);
  EXPECT_NE(RoleOf(c, 3), Role::kLeader);

  c.Heal();
  HeartbeatRounds(c, 1, 3);
  EXPECT_EQ(c.Leader(), 1u);
  for (NodeId id : {1, 2, 3}) EXPECT_EQ(TermOf(c, id), term) << "node " << id;
  EXPECT_EQ(RoleOf(c, 3), Role::kFollower);
}

// Thesis §6.2 (check-quorum): a leader that hears from no quorum for an election timeout steps
// down; one that keeps hearing from a quorum stays.
TEST(ElectionTest, CheckQuorumLeaderStepsDownWithoutQuorum) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  HeartbeatRounds(c, 1, 3 * kElectionTick);
  ASSERT_EQ(RoleOf(c, 1), Role::kLeader) << "stepped down while hearing from a quorum";

  c.Isolate(1);
  for (int i = 0; i < 2 * kElectionTick; ++i) {
    c.Tick(1);
    c.Stabilize();
  }
  EXPECT_EQ(RoleOf(c, 1), Role::kFollower);
}

// Thesis §4.2.3: a follower that heard from its leader within the election timeout ignores a
// vote request (no term change, no response), so a disruptive server cannot depose the leader.
TEST(ElectionTest, CheckQuorumFollowerWithinLeaseIgnoresVoteRequest) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  const Status before = StatusOf(c, 2);
  ASSERT_TRUE(c.node(2)
                  .Step(VoteRequest(3, 2, before.hard_state.term + 1, before.last_index,
                                    before.hard_state.term))
                  .ok());
  while (c.ProcessReady(2)) {
  }
  for (const Message& m : c.in_flight()) {
    EXPECT_FALSE(m.from == 2 && m.type == MessageType::kVoteResp) << DescribeMessage(m);
  }
  EXPECT_EQ(StatusOf(c, 2).hard_state, before.hard_state);
  EXPECT_EQ(StatusOf(c, 2).soft_state.leader, 1u);
}

// Raft Figure 2 (RequestVote results: "currentTerm, for candidate to update itself"): a vote
// request of an older term is refused with this node's term, and the candidate, learning it,
// becomes a follower of that term. (etcd ignores a stale MsgVote.)
TEST(ElectionTest, StaleVoteRequestIsRefusedWithTheNewerTerm) {
  auto voter = NewNode(1, {1, 2, 3}, HardState{5, 3, 0});
  ASSERT_NE(voter, nullptr);
  Drain(*voter);
  ASSERT_TRUE(voter->Step(VoteRequest(2, 1, 3, 0, 0)).ok());
  auto responses = OfType(Drain(*voter), MessageType::kVoteResp);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].to, 2u);
  EXPECT_TRUE(responses[0].reject);
  EXPECT_EQ(responses[0].term, 5u);
  EXPECT_EQ(voter->GetStatus().hard_state, (HardState{5, 3, 0})) << "term and vote unchanged";

  auto candidate = NewNode(2, {1, 2, 3}, HardState{2, kNoNode, 0}, {},
                           [](Config& config) { config.pre_vote = false; });
  ASSERT_NE(candidate, nullptr);
  Drain(*candidate);
  ASSERT_TRUE(candidate->Campaign().ok());
  Drain(*candidate);
  ASSERT_EQ(candidate->GetStatus().soft_state.role, Role::kCandidate);
  ASSERT_EQ(candidate->GetStatus().hard_state.term, 3u);
  ASSERT_TRUE(candidate->Step(Message(responses[0])).ok());
  Drain(*candidate);
  EXPECT_EQ(candidate->GetStatus().soft_state.role, Role::kFollower);
  EXPECT_EQ(candidate->GetStatus().hard_state.term, 5u);
}

// Fuzz seeds 163230 and 162233: a voter that missed the change adding a member knows only the
// old configuration, so its own campaigns never reach that member. Here node 3 (configuration
// {1, 2, 3}, far ahead in term: it campaigned while cut off) and node 4 (configuration {2, 3, 4},
// the longer log) are all that is left; 4 needs 3's vote, and 3 cannot win without 1 and 2.
// Node 4 learns 3's term from its refusals, campaigns above it and is elected. Before, 3 ignored
// every request of 4's lower term and 4 never learned 3's: no leader, for good.
TEST(ElectionTest, VoterThatMissedTheCandidatesAdditionElectsIt) {
  const auto no_pre_vote = [](Config& config) { config.pre_vote = false; };
  auto n3 = NewNode(3, {1, 2, 3}, HardState{27, 3, 0}, EntriesWithTerms({1, 2}), no_pre_vote);
  auto n4 = NewNode(4, {2, 3, 4}, HardState{6, 4, 0}, EntriesWithTerms({1, 2, 5, 5}), no_pre_vote);
  ASSERT_NE(n3, nullptr);
  ASSERT_NE(n4, nullptr);
  std::map<NodeId, RawNode*> nodes = {{3, n3.get()}, {4, n4.get()}};
  std::vector<Message> in_flight;
  int ticks = 0;
  for (; ticks < 100 * kElectionTick; ++ticks) {
    if (n4->GetStatus().soft_state.role == Role::kLeader) break;
    for (auto& [id, node] : nodes) {
      node->Tick();
      for (Message& m : Drain(*node)) in_flight.push_back(std::move(m));
    }
    // One round of delivery per tick, between 3 and 4 only: 1 and 2 are gone.
    std::vector<Message> delivering;
    delivering.swap(in_flight);
    for (Message& m : delivering) {
      auto to = nodes.find(m.to);
      if (to == nodes.end()) continue;
      ASSERT_TRUE(to->second->Step(std::move(m)).ok());
      for (Message& out : Drain(*to->second)) in_flight.push_back(std::move(out));
    }
  }
  EXPECT_EQ(n4->GetStatus().soft_state.role, Role::kLeader)
      << "after " << ticks << " ticks: node 3 at term " << n3->GetStatus().hard_state.term
      << ", node 4 at term " << n4->GetStatus().hard_state.term;
  EXPECT_LT(ticks, 10 * kElectionTick);
}

// Raft §5.1, §5.3: a deposed leader that was partitioned steps down when it hears the higher
// term, and its uncommitted entry is replaced by the new leader's log.
TEST(ElectionTest, StaleLeaderStepsDownAndLosesUncommittedEntry) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  c.Isolate(1);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "lost").ok());
  const NodeId successor = TickUntilLeader(c, {2, 3});
  ASSERT_NE(successor, kNoNode);
  ASSERT_TRUE(c.ProposeAndStabilize(successor, "kept").ok());

  c.Heal();
  HeartbeatRounds(c, successor, 3);
  EXPECT_EQ(RoleOf(c, 1), Role::kFollower);
  EXPECT_EQ(TermOf(c, 1), TermOf(c, successor));
  EXPECT_EQ(c.record(1).storage.entries(), c.record(successor).storage.entries());
  for (NodeId id : {1, 2, 3}) EXPECT_THAT(AppliedData(c, id), ElementsAre("kept")) << id;
}

// Raft §5.4.2 / thesis §6.4: a new leader appends an empty entry of its term at once.
TEST(ElectionTest, LeaderAppendsEmptyEntryOnElection) {
  Cluster c({1, 2, 3});
  const Index last = StatusOf(c, 1).last_index;
  c.ElectLeader(1);
  const Term term = TermOf(c, 1);
  const auto& log = c.record(1).storage.entries();
  ASSERT_FALSE(log.empty());
  const Entry& entry = log.back();
  EXPECT_EQ(entry.index, last + 1);
  EXPECT_EQ(entry.term, term);
  EXPECT_EQ(entry.type, EntryType::kNormal);
  EXPECT_TRUE(entry.data.empty());
  for (NodeId id : {1, 2, 3}) {
    EXPECT_EQ(c.record(id).applied_index, last + 1) << "node " << id;
  }
}

// ==============================================================================================
// Replication (Raft §5.3)

// Replaces `id`'s durable state (as if it had run before) and restarts it from there.
void ReplaceDurableState(Cluster& c, NodeId id, HardState hard_state,
                         const std::vector<Entry>& entries) {
  c.Crash(id);
  c.record(id).storage = testing::MemoryStorage();
  c.record(id).applied.clear();
  c.record(id).applied_index = 0;  // the configuration stays (Restart passes it explicitly)
  PersistRequest write;
  write.id = 1;
  write.hard_state = hard_state;
  write.entries = entries;
  c.record(id).storage.Write(write);
  c.Restart(id);
}

// Raft §5.3, Figure 7: whatever the follower holds (missing entries (a)(b), extra uncommitted
// entries (c)(d), or both (e)(f)), the leader's consistency check makes it converge.
TEST(ReplicationTest, Figure7FollowerLogsConvergeToLeader) {
  const std::vector<Term> leader_log = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  const std::vector<std::pair<std::string, std::vector<Term>>> followers = {
      {"a", {1, 1, 1, 4, 4, 5, 5, 6, 6}},
      {"b", {1, 1, 1, 4}},
      {"c", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6}},
      {"d", {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7}},
      {"e", {1, 1, 1, 4, 4, 4, 4}},
      {"f", {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3}},
  };
  for (const auto& [name, follower_log] : followers) {
    SCOPED_TRACE("Figure 7 (" + name + ")");
    // Node 3 starts empty: it gives the leader the vote that (c) and (d) deny it.
    Cluster c({1, 2, 3});
    ReplaceDurableState(c, 1, HardState{8, kNoNode, 0}, EntriesWithTerms(leader_log));
    ReplaceDurableState(c, 2, HardState{7, kNoNode, 0}, EntriesWithTerms(follower_log));
    ReplaceDurableState(c, 3, HardState{}, {});
    ASSERT_TRUE(CampaignUntilLeader(c, 1));
    ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
    EXPECT_EQ(c.record(2).storage.entries(), c.record(1).storage.entries());
    EXPECT_EQ(c.record(3).storage.entries(), c.record(1).storage.entries());
    EXPECT_THAT(AppliedData(c, 2), ElementsAre("x"));
  }
}

// Raft §5.3 optimization (etcd's two-sided findConflictByTerm): a rejection carries a hint that
// skips a whole term of conflicting entries, so a follower with 95 divergent entries, and an
// empty one 100 entries behind, each converge after a single rejection, not one per entry.
TEST(ReplicationTest, ConflictHintsConvergeInFewRoundTrips) {
  std::vector<Term> leader_log(100, 2);
  std::fill(leader_log.begin(), leader_log.begin() + 5, 1);
  Cluster c({1, 2, 3});
  ReplaceDurableState(c, 1, HardState{2, kNoNode, 0}, EntriesWithTerms(leader_log));
  ReplaceDurableState(c, 2, HardState{1, kNoNode, 0}, EntriesWithTerms(std::vector<Term>(100, 1)));
  ReplaceDurableState(c, 3, HardState{}, {});

  std::map<NodeId, int> rejections;
  std::map<NodeId, int> appends;
  auto count = [&](Message& m) {
    if (m.type == MessageType::kAppResp && m.reject) ++rejections[m.from];
    if (m.type == MessageType::kApp && m.from == 1) ++appends[m.to];
    return true;
  };
  ASSERT_TRUE(CampaignUntilLeader(c, 1, count));
  EXPECT_LE(rejections[2], 2) << "divergent follower";
  EXPECT_LE(rejections[3], 2) << "empty follower";
  EXPECT_LE(appends[2], 6);
  EXPECT_LE(appends[3], 6);
  EXPECT_EQ(c.record(2).storage.entries(), c.record(1).storage.entries());
  EXPECT_EQ(c.record(3).storage.entries(), c.record(1).storage.entries());
}

// etcd tracker.Progress: a follower is probed with one append at a time until its match index
// is known, then replicated to optimistically; an unreachable report sends it back to probe.
TEST(ReplicationTest, ProbeThenReplicateTransitions) {
  Cluster c({1, 2, 3});
  auto drop_app_resp = [](Message& m) { return m.type != MessageType::kAppResp; };
  ASSERT_TRUE(c.node(1).Campaign().ok());
  StabilizeWith(c, drop_app_resp);
  ASSERT_EQ(RoleOf(c, 1), Role::kLeader);
  EXPECT_EQ(ProgressOf(c, 1, 2).state, ProgressState::kProbe);

  // Probing: the first append is unanswered, so new entries are not sent.
  ASSERT_TRUE(c.node(1).Propose(Bytes("a")).ok());
  ASSERT_TRUE(c.node(1).Propose(Bytes("b")).ok());
  while (c.ProcessReady(1)) {
  }
  for (const Message& m : c.in_flight()) {
    EXPECT_FALSE(m.type == MessageType::kApp && m.to == 2) << DescribeMessage(m);
  }

  // A heartbeat response resumes probing; the accepted append switches to replicate.
  HeartbeatRounds(c, 1, 1);
  const ProgressStatus progress = ProgressOf(c, 1, 2);
  EXPECT_EQ(progress.state, ProgressState::kReplicate);
  EXPECT_EQ(progress.match, StatusOf(c, 1).last_index);
  EXPECT_THAT(AppliedData(c, 2), ElementsAre("a", "b"));

  c.node(1).ReportUnreachable(2);
  EXPECT_EQ(ProgressOf(c, 1, 2).state, ProgressState::kProbe);
}

// etcd Inflights: in replicate state at most max_inflight_msgs appends are unacknowledged; the
// rest wait until acknowledgements free the window.
TEST(ReplicationTest, InflightCountLimitPausesAppends) {
  Cluster c({1, 2, 3}, {}, [](Config& config) { config.max_inflight_msgs = 2; });
  c.ElectLeader(1);
  ASSERT_EQ(ProgressOf(c, 1, 2).state, ProgressState::kReplicate);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.node(1).Propose(Bytes(std::to_string(i))).ok());
    while (c.ProcessReady(1)) {
    }
  }
  int appends_to_2 = 0;
  for (const Message& m : c.in_flight()) {
    if (m.type == MessageType::kApp && m.to == 2 && !m.entries.empty()) ++appends_to_2;
  }
  EXPECT_EQ(appends_to_2, 2);
  EXPECT_EQ(ProgressOf(c, 1, 2).inflight_count, 2u);

  c.Stabilize();
  EXPECT_THAT(AppliedData(c, 2), ElementsAre("0", "1", "2", "3", "4"));
}

// Found by fuzz seed 835: a heartbeat response frees the oldest slot of a full window (its
// acknowledgement may be lost) and the freed slot is refilled; when that acknowledgement then
// arrives after all, it frees nothing, and the window must stay paused rather than take one
// append too many.
TEST(ReplicationTest, LateAcknowledgementOfAFreedSlotKeepsAFullWindowPaused) {
  Cluster c({1, 2}, {}, [](Config& config) { config.max_inflight_msgs = 2; });
  c.ElectLeader(1);
  ASSERT_EQ(ProgressOf(c, 1, 2).state, ProgressState::kReplicate);
  for (const char* data : {"a", "b"}) {
    ASSERT_TRUE(c.node(1).Propose(Bytes(data)).ok());
    while (c.ProcessReady(1)) {
    }
  }
  ASSERT_EQ(ProgressOf(c, 1, 2).inflight_count, 2u);
  // The follower takes both appends; its acknowledgements are held back.
  c.Deliver(1, 2);
  while (c.ProcessReady(2)) {
  }
  std::vector<Message> held;
  std::erase_if(c.in_flight(), [&](const Message& m) {
    if (m.type != MessageType::kAppResp) return false;
    held.push_back(m);
    return true;
  });
  ASSERT_EQ(held.size(), 2u);
  ASSERT_TRUE(c.node(1).Propose(Bytes("c")).ok());
  while (c.ProcessReady(1)) {
  }
  // A heartbeat round frees the oldest slot; "c" takes it.
  c.Tick(1);
  while (c.ProcessReady(1)) {
  }
  c.Deliver(1, 2);
  while (c.ProcessReady(2)) {
  }
  c.Deliver(2, 1);
  while (c.ProcessReady(1)) {
  }
  ASSERT_EQ(ProgressOf(c, 1, 2).inflight_count, 2u);
  // The acknowledgement of the freed slot arrives late.
  c.in_flight().push_back(held.front());
  c.Deliver(2, 1);
  ASSERT_TRUE(c.node(1).Propose(Bytes("d")).ok());
  while (c.ProcessReady(1)) {
  }
  EXPECT_LE(ProgressOf(c, 1, 2).inflight_count, 2u);
  c.Stabilize();
  EXPECT_THAT(AppliedData(c, 2), ElementsAre("a", "b", "c", "d"));
}

// etcd max_inflight_bytes: the window is also full once its appends carry that many bytes.
TEST(ReplicationTest, InflightBytesLimitPausesAppends) {
  Cluster c({1, 2, 3}, {}, [](Config& config) { config.max_inflight_bytes = 150; });
  c.ElectLeader(1);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.node(1).Propose(Bytes(Payload('a' + i, 100))).ok());
    while (c.ProcessReady(1)) {
    }
  }
  int appends_to_2 = 0;
  for (const Message& m : c.in_flight()) {
    if (m.type == MessageType::kApp && m.to == 2 && !m.entries.empty()) ++appends_to_2;
  }
  // 124 bytes (100 + header) fit under 150; the second append fills the window.
  EXPECT_EQ(appends_to_2, 2);
  c.Stabilize();
  EXPECT_EQ(AppliedData(c, 2).size(), 5u);
}

// etcd MaxSizePerMsg: catching up a follower sends several entries per append, but never more
// than max_size_per_msg_bytes (EntrySizeBytes) unless the append holds a single entry.
TEST(ReplicationTest, BatchingRespectsMaxSizePerMsg) {
  constexpr uint64_t kMaxBytes = 300;
  Cluster c({1, 2, 3}, {}, [](Config& config) { config.max_size_per_msg_bytes = kMaxBytes; });
  c.ElectLeader(1);
  auto drop_node_2 = [](Message& m) { return m.to != 2 && m.from != 2; };
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(c.node(1).Propose(Bytes(Payload('a' + i, 100))).ok());
    StabilizeWith(c, drop_node_2);
  }
  ASSERT_THAT(AppliedData(c, 2), IsEmpty());

  size_t most_entries = 0;
  auto check = [&](Message& m) {
    if (m.type == MessageType::kApp && m.to == 2 && !m.entries.empty()) {
      uint64_t bytes = 0;
      for (const Entry& e : m.entries) bytes += EntrySizeBytes(e);
      EXPECT_TRUE(m.entries.size() == 1 || bytes <= kMaxBytes) << DescribeMessage(m);
      most_entries = std::max(most_entries, m.entries.size());
    }
    return true;
  };
  HeartbeatRounds(c, 1, 3, check);
  EXPECT_EQ(AppliedData(c, 2).size(), 10u);
  EXPECT_EQ(most_entries, 2u) << "two 124-byte entries fit in 300 bytes, three do not";
}

// Raft §5.3: heartbeats carry the leader's commit index, and a follower that holds the entries
// commits (and applies) up to it from the heartbeat alone, answering with a heartbeat response.
TEST(ReplicationTest, FollowerCommitsFromHeartbeat) {
  auto node = NewNode(1, {1, 2, 3}, HardState{1, 2, 0}, EntriesWithTerms({1, 1, 1}));
  ASSERT_NE(node, nullptr);
  Drain(*node);
  Message heartbeat;
  heartbeat.type = MessageType::kHeartbeat;
  heartbeat.from = 2;
  heartbeat.to = 1;
  heartbeat.term = 1;
  heartbeat.commit = 2;
  ASSERT_TRUE(node->Step(heartbeat).ok());
  EXPECT_EQ(node->GetStatus().hard_state.commit, 2u);
  ASSERT_TRUE(node->HasReady());
  const Ready& ready = node->GetReady();
  ASSERT_EQ(ready.committed_entries.size(), 2u);
  EXPECT_EQ(ready.committed_entries.back().index, 2u);
  ASSERT_EQ(ready.messages.size(), 1u);
  EXPECT_EQ(ready.messages[0].type, MessageType::kHeartbeatResp);
  EXPECT_EQ(ready.messages[0].to, 2u);
  node->Advance();
}

// etcd sendHeartbeat: a heartbeat carries min(match, commit), so a follower never commits an
// index it may not hold.
TEST(ReplicationTest, HeartbeatCommitIsBoundedByFollowerMatch) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  auto drop_node_2 = [](Message& m) { return m.to != 2 && m.from != 2; };
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.node(1).Propose(Bytes("x")).ok());
    StabilizeWith(c, drop_node_2);
  }
  const Index commit = CommitOf(c, 1);
  const Index match_2 = ProgressOf(c, 1, 2).match;
  ASSERT_LT(match_2, commit);

  c.Tick(1, c.config(1).heartbeat_tick);
  while (c.ProcessReady(1)) {
  }
  int heartbeats = 0;
  for (const Message& m : c.in_flight()) {
    if (m.type != MessageType::kHeartbeat) continue;
    ++heartbeats;
    EXPECT_EQ(m.commit, m.to == 2 ? match_2 : commit) << DescribeMessage(m);
  }
  EXPECT_EQ(heartbeats, 2);
}

// ==============================================================================================
// Raft §5.4.2, Figure 8: a leader never commits an entry of an earlier term by counting
// replicas; it commits it only together with an entry of its own term.

class Figure8Test : public ::testing::Test {
 protected:
  // Pre-vote and check-quorum off: the paper's scenario, with elections on demand. Appends of
  // one entry each, so the network can deliver one entry but not the next.
  Figure8Test()
      : c_({1, 2, 3, 4, 5}, {}, [](Config& config) {
          config.pre_vote = false;
          config.check_quorum = false;
          config.max_size_per_msg_bytes = 1;
        }) {}

  // Builds the paper's state (c). The paper's terms 2, 3, 4 are term_a_, term_a_ + 1 and
  // term_a_ + 2 here, and its index 2 is index_a_ (the bootstrap entries come first). S1 leads
  // in term_a_ + 2 and has replicated "a" (index_a_, term_a_) to S1, S2, S3 (a majority), while
  // its own entry of term_a_ + 2 reached nobody.
  void BuildStateC() {
    // (a) S1 leads term_a_, replicates "a" at index_a_ to S2 only.
    c_.ElectLeader(1);
    ASSERT_EQ(RoleOf(c_, 1), Role::kLeader);
    term_a_ = TermOf(c_, 1);
    commit_a_ = CommitOf(c_, 1);  // S1's empty entry of term_a_, on every node
    index_a_ = commit_a_ + 1;
    c_.Cut(1, 3);
    c_.Cut(1, 4);
    c_.Cut(1, 5);
    ASSERT_TRUE(c_.ProposeAndStabilize(1, "a").ok());
    ASSERT_EQ(StoredTerm(c_, 2, index_a_), term_a_);
    ASSERT_EQ(CommitOf(c_, 1), commit_a_);

    // (b) S1 crashes; S5 wins term_a_ + 1 with S3 and S4 and appends at index_a_ only locally.
    c_.Heal();
    c_.Crash(1);
    c_.Cut(2, 5);
    auto drop_appends_of_5 = [](Message& m) {
      return !(m.type == MessageType::kApp && m.from == 5);
    };
    ASSERT_TRUE(CampaignUntilLeader(c_, 5, drop_appends_of_5));
    ASSERT_EQ(TermOf(c_, 5), term_a_ + 1);
    ASSERT_EQ(StoredTerm(c_, 5, index_a_), term_a_ + 1);
    ASSERT_EQ(StoredEntry(c_, 3, index_a_), nullptr);

    // (c) S5 crashes; S1 restarts and wins term_a_ + 2 with S2 and S3 (its first attempt, in
    // term_a_ + 1, loses S3's vote to S5). The network delivers S1's appends without entries of
    // its new term, so "a" reaches S3 but the new-term entry reaches nobody.
    c_.Crash(5);
    c_.Heal();
    c_.Restart(1);
    c_.Cut(1, 4);
    const Term old_term = term_a_;
    auto strip_current_term = [old_term](Message& m) {
      if (m.type == MessageType::kApp && m.from == 1) {
        m.entries.erase(std::remove_if(m.entries.begin(), m.entries.end(),
                                       [&](const Entry& e) { return e.term > old_term; }),
                        m.entries.end());
      }
      return true;
    };
    ASSERT_TRUE(CampaignUntilLeader(c_, 1, strip_current_term));
    ASSERT_EQ(TermOf(c_, 1), term_a_ + 2);
    for (NodeId id : {1, 2, 3}) {
      ASSERT_NE(StoredEntry(c_, id, index_a_), nullptr) << "node " << id;
      ASSERT_EQ(StoredEntry(c_, id, index_a_)->data.view(), "a") << "node " << id;
    }
    ASSERT_EQ(ProgressOf(c_, 1, 2).match, index_a_);
    ASSERT_EQ(ProgressOf(c_, 1, 3).match, index_a_);
  }

  Cluster c_;
  Term term_a_ = 0;
  Index commit_a_ = 0;
  Index index_a_ = 0;
};

// Figure 8 (c)-(d): "a" is on a majority but belongs to an earlier term, so S1 must not commit
// it; indeed S5 can still win a later term and overwrite it, and no node ever applies it.
TEST_F(Figure8Test, LeaderDoesNotCommitPreviousTermEntryByCountingReplicas) {
  BuildStateC();
  ASSERT_EQ(CommitOf(c_, 1), commit_a_) << "committed an earlier-term entry by counting replicas";
  for (NodeId id : {1, 2, 3}) EXPECT_THAT(AppliedData(c_, id), IsEmpty()) << "node " << id;

  // (d) S1 crashes; S5 (last log term term_a_ + 1) wins with S2, S3, S4 and overwrites "a".
  c_.Crash(1);
  c_.Heal();
  c_.Restart(5);
  ASSERT_TRUE(CampaignUntilLeader(c_, 5));
  c_.Stabilize();
  for (NodeId id : {2, 3, 4, 5}) {
    EXPECT_EQ(StoredTerm(c_, id, index_a_), term_a_ + 1) << "node " << id;
    EXPECT_THAT(AppliedData(c_, id), IsEmpty()) << "node " << id;
  }
  EXPECT_GE(CommitOf(c_, 5), index_a_ + 1);
}

// Figure 8 (e): once S1 replicates an entry of its own term to a majority, that entry and "a"
// before it commit together.
TEST_F(Figure8Test, PreviousTermEntryCommitsWithCurrentTermEntry) {
  BuildStateC();
  ASSERT_EQ(CommitOf(c_, 1), commit_a_);
  ASSERT_TRUE(c_.node(1).Propose(Bytes("c")).ok());
  c_.Stabilize();
  HeartbeatRounds(c_, 1, 2);
  EXPECT_EQ(CommitOf(c_, 1), index_a_ + 2);  // "a", S1's empty entry, "c"
  for (NodeId id : {1, 2, 3}) {
    EXPECT_THAT(AppliedData(c_, id), ElementsAre("a", "c")) << "node " << id;
  }
}

// ==============================================================================================
// Snapshots (Raft §7, thesis §5)

// Builds a cluster in which node 3 missed 10 entries that the leader then compacted away.
// Returns the compaction index.
Index LagAndCompact(Cluster& c) {
  c.ElectLeader(1);
  c.Cut(1, 3);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(c.ProposeAndStabilize(1, "e" + std::to_string(i)).ok());
  const Index applied = c.record(1).applied_index;
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->metadata.index = applied;
  snapshot->metadata.term = TermOf(c, 1);
  snapshot->metadata.conf_state = c.record(1).conf_state;
  snapshot->data = Bytes("image");
  EXPECT_TRUE(c.node(1).Compact(snapshot, applied).ok());
  EXPECT_EQ(StatusOf(c, 1).first_index, applied + 1);
  c.Heal();
  return applied;
}

// Raft §7 (InstallSnapshot): a follower that needs compacted entries receives the snapshot:
// first to persist (Ready::persist.snapshot), then to apply (Ready::apply_snapshot), and then
// catches up from the log.
TEST(SnapshotTest, LaggingFollowerReceivesSnapshotAndCatchesUp) {
  Cluster c({1, 2, 3});
  const Index compacted = LagAndCompact(c);

  int persisted_at = -1;
  int applied_at = -1;
  int ready_count = 0;
  c.set_ready_observer([&](NodeId id, const Ready& ready) {
    if (id != 3) return;
    if (ready.persist.snapshot != nullptr) {
      EXPECT_EQ(ready.persist.snapshot->metadata.index, compacted);
      persisted_at = ready_count;
    }
    if (ready.apply_snapshot != nullptr) {
      EXPECT_EQ(ready.apply_snapshot->metadata.index, compacted);
      EXPECT_EQ(ready.apply_snapshot->data.view(), "image");
      applied_at = ready_count;
    }
    ++ready_count;
  });
  ASSERT_TRUE(c.ProposeAndStabilize(1, "after").ok());
  HeartbeatRounds(c, 1, 2);
  c.set_ready_observer(nullptr);

  EXPECT_GE(persisted_at, 0) << "no Ready asked to persist the snapshot";
  EXPECT_GT(applied_at, persisted_at) << "applied before (or without) being durable";
  ASSERT_NE(c.record(3).storage.snapshot(), nullptr);
  EXPECT_EQ(c.record(3).storage.snapshot()->metadata.index, compacted);
  EXPECT_EQ(c.record(3).applied_index, c.record(1).applied_index);
  EXPECT_THAT(AppliedData(c, 3), ElementsAre("after"));
  EXPECT_EQ(StatusOf(c, 3).hard_state.commit, CommitOf(c, 1));
}

// etcd's merged snapshot: an application whose state machine is durable by itself compacts with
// data-less snapshots and, when Raft sends one, attaches its current state at its applied index
// instead. The follower installs that later snapshot and catches up from the entry after it.
TEST(SnapshotTest, OutgoingSnapshotReplacedByTheApplicationsCurrentState) {
  Cluster c({1, 2, 3});
  const Index compacted = LagAndCompact(c);
  Index merged_index = 0;
  int replaced = 0;
  c.set_ready_observer([&](NodeId id, const Ready& ready) {
    if (id != 1) return;
    bool sends = false;
    for (const Message& m : ready.messages) sends |= m.type == MessageType::kSnap;
    EXPECT_EQ(c.node(1).SendsSnapshot(), sends);
    if (!sends) return;
    // What the leader has applied once it carries out this Ready.
    const Index applied = ready.committed_entries.empty() ? c.record(1).applied_index
                                                          : ready.committed_entries.back().index;
    auto merged = std::make_shared<Snapshot>();
    merged->metadata.index = applied;
    merged->metadata.term = *c.node(1).LogTerm(applied);
    merged->metadata.conf_state = c.record(1).conf_state;
    merged->data = Bytes("current state");
    // Refused: past what is applied, a term the log does not have, older than the one sent.
    auto changed = [&](auto change) {
      auto copy = std::make_shared<Snapshot>(*merged);
      change(*copy);
      return c.node(1).ReplaceOutgoingSnapshots(copy).code();
    };
    EXPECT_EQ(changed([](Snapshot& s) { ++s.metadata.index; }), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(changed([](Snapshot& s) { ++s.metadata.term; }), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(changed([&](Snapshot& s) {
                s.metadata.index = compacted - 1;
                s.metadata.term = *c.node(1).LogTerm(compacted - 1);
              }),
              absl::StatusCode::kInvalidArgument);
    ASSERT_TRUE(c.node(1).ReplaceOutgoingSnapshots(merged).ok());
    for (const Message& m : ready.messages) {
      if (m.type == MessageType::kSnap) EXPECT_EQ(m.snapshot, merged);
    }
    merged_index = applied;
    ++replaced;
  });
  ASSERT_TRUE(c.ProposeAndStabilize(1, "after").ok());
  HeartbeatRounds(c, 1, 2);
  c.set_ready_observer(nullptr);

  ASSERT_EQ(replaced, 1);
  EXPECT_GT(merged_index, compacted);
  ASSERT_NE(c.record(3).storage.snapshot(), nullptr);
  EXPECT_EQ(c.record(3).storage.snapshot()->metadata.index, merged_index);
  EXPECT_EQ(c.record(3).storage.snapshot()->data.view(), "current state");
  EXPECT_EQ(c.record(3).applied_index, c.record(1).applied_index);
  EXPECT_EQ(StatusOf(c, 3).hard_state.commit, CommitOf(c, 1));
  // Outside a Ready there is nothing to replace.
  EXPECT_FALSE(c.node(1).SendsSnapshot());
  EXPECT_EQ(c.node(1).ReplaceOutgoingSnapshots(c.record(3).storage.snapshot()).code(),
            absl::StatusCode::kFailedPrecondition);
}

// etcd ReportSnapshot: a failed snapshot sends the peer back to probe (pending snapshot
// forgotten); it is retried and the follower still catches up.
TEST(SnapshotTest, ReportSnapshotFailureReturnsPeerToProbe) {
  Cluster c({1, 2, 3});
  const Index compacted = LagAndCompact(c);
  int dropped = 0;
  auto drop_snapshots = [&](Message& m) {
    if (m.type != MessageType::kSnap) return true;
    ++dropped;
    return false;
  };
  ASSERT_TRUE(c.node(1).Propose(Bytes("after")).ok());
  StabilizeWith(c, drop_snapshots);
  for (int i = 0; i < 3 && dropped == 0; ++i) HeartbeatRounds(c, 1, 1, drop_snapshots);
  ASSERT_EQ(dropped, 1);
  ProgressStatus progress = ProgressOf(c, 1, 3);
  EXPECT_EQ(progress.state, ProgressState::kSnapshot);
  EXPECT_EQ(progress.pending_snapshot, compacted);

  c.node(1).ReportSnapshot(3, /*succeeded=*/false);
  progress = ProgressOf(c, 1, 3);
  EXPECT_EQ(progress.state, ProgressState::kProbe);
  EXPECT_EQ(progress.pending_snapshot, 0u);

  HeartbeatRounds(c, 1, 3);
  EXPECT_EQ(c.record(3).applied_index, c.record(1).applied_index);
  EXPECT_THAT(AppliedData(c, 3), ElementsAre("after"));
}

// Raft §7: a follower restarted after installing a snapshot resumes from it (snapshot plus
// the entries after it), with its state unchanged.
TEST(SnapshotTest, FollowerRestartsFromInstalledSnapshot) {
  Cluster c({1, 2, 3});
  const Index compacted = LagAndCompact(c);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "after").ok());
  HeartbeatRounds(c, 1, 2);
  ASSERT_EQ(c.record(3).storage.snapshot()->metadata.index, compacted);
  const Status before = StatusOf(c, 3);
  c.Crash(3);
  c.Restart(3);
  const Status after = StatusOf(c, 3);
  EXPECT_EQ(after.hard_state, before.hard_state);
  EXPECT_EQ(after.first_index, compacted + 1);
  EXPECT_EQ(after.last_index, before.last_index);
  EXPECT_EQ(after.applied, before.applied);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "later").ok());
  HeartbeatRounds(c, 1, 2);
  EXPECT_THAT(AppliedData(c, 3), ElementsAre("after", "later"));
}

// RawNode::Compact contract: the snapshot may not be past the applied index.
TEST(SnapshotTest, CompactBeyondAppliedIsRefused) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->metadata.index = c.record(1).applied_index + 1;
  snapshot->metadata.term = TermOf(c, 1);
  snapshot->metadata.conf_state = c.record(1).conf_state;
  EXPECT_EQ(c.node(1).Compact(snapshot, snapshot->metadata.index).code(),
            absl::StatusCode::kInvalidArgument);
}

// ==============================================================================================
// Learners (thesis §4.2.1: non-voting members)

// Learners receive the log but never campaign (kUnavailable), even after long silence.
TEST(LearnerTest, ReceivesLogButNeverCampaigns) {
  Cluster c({1, 2}, {3});
  c.ElectLeader(1);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
  EXPECT_THAT(AppliedData(c, 3), ElementsAre("x"));

  const Term term = TermOf(c, 3);
  EXPECT_EQ(c.node(3).Campaign().code(), absl::StatusCode::kUnavailable);
  for (int i = 0; i < 10 * kElectionTick; ++i) {
    c.Tick(3);
    c.Stabilize();
  }
  EXPECT_EQ(RoleOf(c, 3), Role::kFollower);
  EXPECT_EQ(TermOf(c, 3), term);
  EXPECT_EQ(c.Leader(), 1u);
}

// Learners do not count toward the quorum: one voter commits alone.
TEST(LearnerTest, SingleVoterCommitsWithoutLearner) {
  Cluster c({1}, {2});
  c.ElectLeader(1);
  c.Cut(1, 2);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
  EXPECT_THAT(AppliedData(c, 1), ElementsAre("x"));
}

// Learners do not count toward the quorum: with one of two voters cut off, the learner's
// acknowledgement does not commit anything.
TEST(LearnerTest, LearnerAckDoesNotMakeQuorum) {
  Cluster c({1, 2}, {3});
  c.ElectLeader(1);
  const Index commit = CommitOf(c, 1);
  c.Cut(1, 2);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
  ASSERT_NE(StoredEntry(c, 3, commit + 1), nullptr) << "the learner did not get the entry";
  EXPECT_EQ(ProgressOf(c, 1, 3).match, commit + 1);
  EXPECT_EQ(CommitOf(c, 1), commit);
  EXPECT_THAT(AppliedData(c, 1), IsEmpty());
}

// etcd: ProposeConfChange(kAddVoter) on a learner promotes it; it can then lead.
TEST(LearnerTest, PromotedByAddVoter) {
  Cluster c({1, 2}, {3});
  c.ElectLeader(1);
  ASSERT_TRUE(c.node(1).ProposeConfChange(AddVoter(3)).ok());
  c.Stabilize();
  for (NodeId id : {1, 2, 3}) EXPECT_EQ(c.record(id).conf_state, Conf({1, 2, 3})) << id;
  ASSERT_TRUE(c.node(1).TransferLeader(3).ok());
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 3u);
}

// ==============================================================================================
// Membership changes (thesis §4)

// Thesis §4.1: a change of one voter applies directly, never through a joint configuration; a
// brand-new empty node joins and replicates.
TEST(MembershipTest, SimpleChangeAddsOneVoter) {
  Cluster c({1, 2, 3}, {}, nullptr, {4});
  c.ElectLeader(1);
  std::vector<ConfState> seen = {c.record(1).conf_state};
  ASSERT_TRUE(c.node(1).ProposeConfChange(AddVoter(4)).ok());
  StabilizeWith(c, KeepAll, [&](NodeId id) {
    if (id == 1 && !(c.record(1).conf_state == seen.back())) {
      seen.push_back(c.record(1).conf_state);
    }
  });
  EXPECT_THAT(seen, ElementsAre(Conf({1, 2, 3}), Conf({1, 2, 3, 4})));
  for (NodeId id : {1, 2, 3}) EXPECT_EQ(c.record(id).conf_state, Conf({1, 2, 3, 4})) << id;
  ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
  EXPECT_THAT(AppliedData(c, 4), ElementsAre("x"));
}

// Thesis §4.1: a node that joins empty learns the configuration it joins; it must not believe
// itself the only voter, or, cut off, it elects itself alone (two leaders).
TEST(MembershipTest, JoiningEmptyNodeLearnsFullConfiguration) {
  Cluster c({1, 2, 3}, {}, nullptr, {4});
  c.ElectLeader(1);
  ASSERT_TRUE(c.node(1).ProposeConfChange(AddVoter(4)).ok());
  c.Stabilize();
  EXPECT_EQ(c.record(4).conf_state, Conf({1, 2, 3, 4}));
  EXPECT_EQ(StatusOf(c, 4).conf_state, Conf({1, 2, 3, 4}));

  c.Isolate(4);
  for (int i = 0; i < 2 * kElectionTick; ++i) {
    c.Tick(4);
    c.Stabilize();
  }
  EXPECT_NE(RoleOf(c, 4), Role::kLeader) << "node 4 elected itself without a quorum";
  EXPECT_EQ(RoleOf(c, 1), Role::kLeader);
  // Two leaders: whatever node 4 commits alone diverges from the real cluster.
  (void)c.ProposeAndStabilize(4, "split");
  EXPECT_THAT(AppliedData(c, 4), ::testing::Not(::testing::Contains("split")));
}

// Thesis §4.3: changing two voters goes through a joint configuration, which the leader leaves
// automatically once it applies (auto_leave).
TEST(MembershipTest, JointConsensusEntersAndLeavesAutomatically) {
  Cluster c({1, 2, 3}, {4, 5});
  c.ElectLeader(1);
  std::vector<ConfState> seen = {c.record(1).conf_state};
  ASSERT_TRUE(c.node(1)
                  .ProposeConfChange(
                      Change(ConfChangeTransition::kAuto,
                             {{ConfChangeType::kAddVoter, 4}, {ConfChangeType::kRemoveNode, 3}}))
                  .ok());
  StabilizeWith(c, KeepAll, [&](NodeId id) {
    if (id == 1 && !(c.record(1).conf_state == seen.back())) {
      seen.push_back(c.record(1).conf_state);
    }
  });
  EXPECT_THAT(seen, ElementsAre(Conf({1, 2, 3}, {}, {4, 5}),
                                Conf({1, 2, 4}, {1, 2, 3}, {5}, /*auto_leave=*/true),
                                Conf({1, 2, 4}, {}, {5})));
  for (NodeId id : {1, 2, 4, 5}) EXPECT_EQ(c.record(id).conf_state, Conf({1, 2, 4}, {}, {5})) << id;
}

// Thesis §4.1 / etcd: one change at a time: a second is refused (kFailedPrecondition) until the
// first applies.
TEST(MembershipTest, SecondChangeWhilePendingIsRefused) {
  Cluster c({1, 2, 3}, {4, 5});
  c.ElectLeader(1);
  ASSERT_TRUE(c.node(1).ProposeConfChange(AddVoter(4)).ok());
  EXPECT_EQ(c.node(1).ProposeConfChange(AddVoter(5)).code(), absl::StatusCode::kFailedPrecondition);
  c.Stabilize();
  EXPECT_TRUE(c.node(1).ProposeConfChange(AddVoter(5)).ok());
  c.Stabilize();
  EXPECT_EQ(c.record(1).conf_state, Conf({1, 2, 3, 4, 5}));
}

// etcd ConfChangeTransitionJointExplicit: the joint configuration stays until the application
// proposes the leave; meanwhile other changes are refused, and a leave outside a joint state
// is refused too.
TEST(MembershipTest, ExplicitJointRequiresExplicitLeave) {
  Cluster c({1, 2, 3}, {4});
  c.ElectLeader(1);
  ASSERT_TRUE(c.node(1)
                  .ProposeConfChange(Change(ConfChangeTransition::kJointExplicit,
                                            {{ConfChangeType::kAddVoter, 4}}))
                  .ok());
  c.Stabilize();
  HeartbeatRounds(c, 1, 3);
  const ConfState joint = Conf({1, 2, 3, 4}, {1, 2, 3});
  for (NodeId id : {1, 2, 3, 4}) EXPECT_EQ(c.record(id).conf_state, joint) << id;
  EXPECT_EQ(c.node(1).ProposeConfChange(RemoveNode(2)).code(),
            absl::StatusCode::kFailedPrecondition);

  ASSERT_TRUE(c.node(1).ProposeConfChange(ConfChange{}).ok());
  c.Stabilize();
  for (NodeId id : {1, 2, 3, 4}) EXPECT_EQ(c.record(id).conf_state, Conf({1, 2, 3, 4})) << id;
  EXPECT_EQ(c.node(1).ProposeConfChange(ConfChange{}).code(),
            absl::StatusCode::kFailedPrecondition);
}

// Thesis §4.2.2 (step_down_on_removal): a leader that removes itself steps down once the change
// applies; the remaining voters elect a successor and keep committing.
TEST(MembershipTest, LeaderRemovingItselfStepsDownAfterApplying) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  ASSERT_TRUE(c.node(1).ProposeConfChange(RemoveNode(1)).ok());
  c.Stabilize();
  EXPECT_NE(RoleOf(c, 1), Role::kLeader);
  for (NodeId id : {1, 2, 3}) EXPECT_EQ(c.record(id).conf_state, Conf({2, 3})) << id;

  const NodeId successor = TickUntilLeader(c, {2, 3});
  ASSERT_NE(successor, kNoNode);
  ASSERT_TRUE(c.ProposeAndStabilize(successor, "after").ok());
  EXPECT_THAT(AppliedData(c, 2), ElementsAre("after"));
  EXPECT_THAT(AppliedData(c, 3), ElementsAre("after"));
}

// Thesis §4.2.2 with §4.3: a leader that is only in the outgoing half of a joint configuration
// still leads it (and proposes the automatic leave), then steps down once the leave applies.
TEST(MembershipTest, JointChangeRemovingLeaderStepsDownAfterLeaving) {
  Cluster c({1, 2, 3}, {4});
  c.ElectLeader(1);
  ASSERT_TRUE(c.node(1)
                  .ProposeConfChange(
                      Change(ConfChangeTransition::kAuto,
                             {{ConfChangeType::kAddVoter, 4}, {ConfChangeType::kRemoveNode, 1}}))
                  .ok());
  c.Stabilize();
  EXPECT_NE(RoleOf(c, 1), Role::kLeader);
  for (NodeId id : {1, 2, 3, 4}) EXPECT_EQ(c.record(id).conf_state, Conf({2, 3, 4})) << id;
  const NodeId successor = TickUntilLeader(c, {2, 3, 4});
  ASSERT_NE(successor, kNoNode);
  ASSERT_TRUE(c.ProposeAndStabilize(successor, "after").ok());
  EXPECT_THAT(AppliedData(c, 4), ElementsAre("after"));
}

// Fuzz seed 373 (3 nodes, at 57ac8e7), reduced: a leader that replaces itself must not step
// down before a quorum of the new configuration knows the change committed. Here 3 and 4 never
// hear a commit beyond the one before the change, 3 misses the leave entry, then 2 dies.
// Stepping down at once (the old rule) left 3 in the old configuration, needing 1's vote, which
// 1's longer log withholds, and 4 a learner in its own view: no leader, ever. The removed leader
// now leads on until 3 and 4 report the leave committed, then steps down, and they elect.
TEST(MembershipTest, RemovedLeaderLeadsUntilTheNewConfigurationKnowsTheChangeCommitted) {
  Cluster c({1, 2, 3}, {4});
  c.ElectLeader(1);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "before").ok());
  const Index before_change = CommitOf(c, 1);
  ASSERT_TRUE(c.node(1)
                  .ProposeConfChange(
                      Change(ConfChangeTransition::kAuto,
                             {{ConfChangeType::kAddVoter, 4}, {ConfChangeType::kRemoveNode, 1}}))
                  .ok());
  const Index joint = before_change + 1;  // the leave follows at joint + 1
  auto commit_news_lost = [&](Message& m) {
    if (m.from == 1 && (m.to == 3 || m.to == 4) &&
        (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat)) {
      m.commit = std::min(m.commit, before_change);
      if (m.to == 3) {
        while (!m.entries.empty() && m.entries.back().index > joint) m.entries.pop_back();
      }
    }
    return true;
  };
  StabilizeWith(c, commit_news_lost);
  EXPECT_EQ(c.record(1).conf_state, Conf({2, 3, 4})) << "1 applied its removal";
  EXPECT_EQ(c.record(2).conf_state, Conf({2, 3, 4}));
  EXPECT_EQ(CommitOf(c, 3), before_change);
  EXPECT_EQ(CommitOf(c, 4), before_change);
  EXPECT_EQ(RoleOf(c, 1), Role::kLeader) << "3 and 4 do not know the leave committed";
  EXPECT_EQ(c.node(1).Propose(Bytes("refused")).code(), absl::StatusCode::kAborted);

  c.Isolate(2);
  NodeId successor = kNoNode;
  for (int i = 0; i < 20 * kElectionTick && successor == kNoNode; ++i) {
    for (NodeId id : {1, 3, 4}) c.Tick(id);
    c.Stabilize();
    for (NodeId id : {3, 4}) {
      if (RoleOf(c, id) == Role::kLeader) successor = id;
    }
  }
  ASSERT_NE(successor, kNoNode) << "no leader after 2 died";
  EXPECT_NE(RoleOf(c, 1), Role::kLeader);
  ASSERT_TRUE(c.ProposeAndStabilize(successor, "after").ok());
  EXPECT_THAT(AppliedData(c, 3), ElementsAre("before", "after"));
  EXPECT_THAT(AppliedData(c, 4), ElementsAre("before", "after"));
}

// etcd confchange (learners_next): a voter demoted to learner through a joint configuration
// stays a voter of the outgoing half until the leave, then becomes a learner.
TEST(MembershipTest, DemotionThroughJointUsesLearnersNext) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  std::vector<ConfState> seen = {c.record(1).conf_state};
  ASSERT_TRUE(c.node(1)
                  .ProposeConfChange(Change(ConfChangeTransition::kJointImplicit,
                                            {{ConfChangeType::kAddLearner, 3}}))
                  .ok());
  StabilizeWith(c, KeepAll, [&](NodeId id) {
    if (id == 1 && !(c.record(1).conf_state == seen.back())) {
      seen.push_back(c.record(1).conf_state);
    }
  });
  ConfState joint = Conf({1, 2}, {1, 2, 3}, {}, /*auto_leave=*/true);
  joint.learners_next = {3};
  EXPECT_THAT(seen, ElementsAre(Conf({1, 2, 3}), joint, Conf({1, 2}, {}, {3})));
  EXPECT_EQ(c.node(3).Campaign().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
  EXPECT_THAT(AppliedData(c, 3), ElementsAre("x"));
}

// Thesis §4.2.3: a removed server that keeps ticking (it may never learn of its removal)
// cannot disrupt the cluster: it is not a voter, and check-quorum leases ignore it.
TEST(MembershipTest, RemovedNodeDoesNotDisruptCluster) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  const Term term = TermOf(c, 1);
  ASSERT_TRUE(c.node(1).ProposeConfChange(RemoveNode(3)).ok());
  c.Stabilize();
  EXPECT_EQ(c.record(1).conf_state, Conf({1, 2}));
  for (int i = 0; i < 5 * kElectionTick; ++i) {
    c.Tick(3);
    HeartbeatRounds(c, 1, 1);
  }
  EXPECT_EQ(RoleOf(c, 1), Role::kLeader);
  EXPECT_EQ(TermOf(c, 1), term);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
  EXPECT_THAT(AppliedData(c, 2), ElementsAre("x"));
}

// tracker.cc ConfChanger: a change that would leave no voter is bad input (kInvalidArgument),
// refused at proposal time instead of being ignored when applied.
TEST(MembershipTest, ChangeRemovingEveryVoterIsRefused) {
  Cluster c({1}, {2});
  c.ElectLeader(1);
  EXPECT_EQ(c.node(1).ProposeConfChange(RemoveNode(1)).code(), absl::StatusCode::kInvalidArgument);
  c.Stabilize();
  EXPECT_EQ(c.record(1).conf_state, Conf({1}, {}, {2}));
  EXPECT_TRUE(c.ProposeAndStabilize(1, "x").ok()) << "no change is left pending";
}

// The conf change codec round-trips every field.
TEST(ConfChangeCodecTest, RoundTrips) {
  std::vector<ConfChange> changes = {
      ConfChange{},
      AddVoter(7),
      Change(ConfChangeTransition::kJointImplicit,
             {{ConfChangeType::kAddVoter, 1}, {ConfChangeType::kAddLearner, 300}}),
      Change(ConfChangeTransition::kJointExplicit,
             {{ConfChangeType::kRemoveNode, ~uint64_t{0}}, {ConfChangeType::kAddVoter, 2}}),
  };
  changes.back().context = std::string("ctx\0\xff", 5);
  for (const ConfChange& change : changes) {
    auto decoded = DecodeConfChange(EncodeConfChange(change));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->transition, change.transition);
    ASSERT_EQ(decoded->changes.size(), change.changes.size());
    for (size_t i = 0; i < change.changes.size(); ++i) {
      EXPECT_EQ(decoded->changes[i].type, change.changes[i].type);
      EXPECT_EQ(decoded->changes[i].node_id, change.changes[i].node_id);
    }
    EXPECT_EQ(decoded->context, change.context);
  }
}

// Bad input is an error value, not a crash: garbage, every truncation of a valid encoding, and
// trailing bytes are all rejected with kInvalidArgument.
TEST(ConfChangeCodecTest, RejectsGarbage) {
  for (const std::string& garbage :
       {std::string(), std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11),
        std::string("garbage"), std::string("\x01\x07", 2)}) {
    EXPECT_EQ(DecodeConfChange(garbage).status().code(), absl::StatusCode::kInvalidArgument)
        << "accepted \"" << garbage << "\"";
  }
  ConfChange change = Change(ConfChangeTransition::kJointExplicit,
                             {{ConfChangeType::kAddVoter, 1000}, {ConfChangeType::kRemoveNode, 3}});
  change.context = "context";
  const std::string encoded = EncodeConfChange(change);
  for (size_t size = 0; size < encoded.size(); ++size) {
    EXPECT_FALSE(DecodeConfChange(encoded.substr(0, size)).ok()) << "truncated to " << size;
  }
  EXPECT_FALSE(DecodeConfChange(encoded + "x").ok()) << "trailing byte";
}

// EntersJoint (etcd ConfChangeV2.EnterJoint): more than one change, or an explicit joint
// transition, enters a joint configuration; auto_leave unless explicit.
TEST(ConfChangeCodecTest, EntersJoint) {
  bool auto_leave = false;
  EXPECT_FALSE(AddVoter(1).EntersJoint(&auto_leave));
  EXPECT_TRUE(Change(ConfChangeTransition::kAuto,
                     {{ConfChangeType::kAddVoter, 1}, {ConfChangeType::kAddVoter, 2}})
                  .EntersJoint(&auto_leave));
  EXPECT_TRUE(auto_leave);
  EXPECT_TRUE(Change(ConfChangeTransition::kJointExplicit, {{ConfChangeType::kAddVoter, 1}})
                  .EntersJoint(&auto_leave));
  EXPECT_FALSE(auto_leave);
  EXPECT_TRUE(ConfChange{}.IsLeaveJoint());
}

// ==============================================================================================
// Leadership transfer (thesis §3.10)

// Thesis §3.10: a transfer to an up-to-date voter sends it TimeoutNow; it wins the next term.
TEST(LeaderTransferTest, ToCaughtUpVoter) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  const Term term = TermOf(c, 1);
  ASSERT_TRUE(c.node(1).TransferLeader(2).ok());
  int timeout_now = 0;
  StabilizeWith(c, [&](Message& m) {
    if (m.type == MessageType::kTimeoutNow) {
      ++timeout_now;
      EXPECT_EQ(m.from, 1u);
      EXPECT_EQ(m.to, 2u);
    }
    return true;
  });
  EXPECT_EQ(timeout_now, 1);
  EXPECT_EQ(c.Leader(), 2u);
  EXPECT_EQ(TermOf(c, 2), term + 1);
  EXPECT_EQ(StatusOf(c, 1).lead_transferee, kNoNode);
}

// Thesis §3.10: a lagging transferee is first caught up; TimeoutNow follows its acknowledgement
// of the leader's last entry. Proposals are refused (kAborted) meanwhile.
TEST(LeaderTransferTest, ToLaggingVoterCatchesUpFirst) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  c.Cut(1, 3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
  c.Heal();
  const Index last = StatusOf(c, 1).last_index;
  ASSERT_LT(c.record(3).applied_index, last);

  ASSERT_TRUE(c.node(1).TransferLeader(3).ok());
  EXPECT_EQ(StatusOf(c, 1).lead_transferee, 3u);
  EXPECT_EQ(c.node(1).Propose(Bytes("refused")).code(), absl::StatusCode::kAborted);

  bool caught_up = false;
  int timeout_now = 0;
  auto watch = [&](Message& m) {
    if (m.type == MessageType::kAppResp && m.from == 3 && !m.reject && m.index >= last) {
      caught_up = true;
    }
    if (m.type == MessageType::kTimeoutNow) {
      ++timeout_now;
      EXPECT_TRUE(caught_up) << "TimeoutNow before the transferee caught up";
    }
    return true;
  };
  StabilizeWith(c, watch);
  for (int i = 0; i < kElectionTick / 2 && c.Leader() != 3; ++i) HeartbeatRounds(c, 1, 1, watch);
  EXPECT_EQ(timeout_now, 1);
  EXPECT_EQ(c.Leader(), 3u);
}

// etcd MsgTransferLeader: a follower asks the leader to hand leadership to it (forwarded).
TEST(LeaderTransferTest, RequestedByFollower) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  ASSERT_TRUE(c.node(3).TransferLeader(3).ok());
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 3u);
}

// Thesis §3.10: a transfer that does not finish within an election timeout is aborted, and the
// old leader accepts proposals again.
TEST(LeaderTransferTest, AbortedAfterElectionTimeoutWhenTransfereeUnreachable) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  c.Isolate(3);
  ASSERT_TRUE(c.node(1).TransferLeader(3).ok());
  EXPECT_EQ(c.node(1).Propose(Bytes("refused")).code(), absl::StatusCode::kAborted);

  HeartbeatRounds(c, 1, kElectionTick - 1);
  EXPECT_EQ(StatusOf(c, 1).lead_transferee, 3u) << "aborted before an election timeout";
  HeartbeatRounds(c, 1, 1);
  EXPECT_EQ(StatusOf(c, 1).lead_transferee, kNoNode);
  EXPECT_EQ(RoleOf(c, 1), Role::kLeader);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "accepted").ok());
  EXPECT_THAT(AppliedData(c, 2), ElementsAre("accepted"));
}

// etcd: only voters can lead; a transfer to a learner is refused (kFailedPrecondition).
TEST(LeaderTransferTest, ToLearnerIsRefused) {
  Cluster c({1, 2}, {3});
  c.ElectLeader(1);
  EXPECT_EQ(c.node(1).TransferLeader(3).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StatusOf(c, 1).lead_transferee, kNoNode);
  c.Stabilize();
  EXPECT_EQ(c.Leader(), 1u);
}

// ==============================================================================================
// ReadIndex (thesis §6.4)

// Thesis §6.4: the leader records its commit index and answers only once a heartbeat round
// confirms it still leads (a quorum acknowledges); cut off from the quorum, it never answers.
TEST(ReadIndexTest, LeaderAnswersAfterHeartbeatQuorum) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  const Index commit = CommitOf(c, 1);
  ASSERT_TRUE(c.node(1).ReadIndex(Bytes("r1")).ok());
  while (c.ProcessReady(1)) {
  }
  EXPECT_THAT(c.record(1).read_states, IsEmpty()) << "answered without a round trip";
  c.Stabilize();
  ASSERT_EQ(c.record(1).read_states.size(), 1u);
  EXPECT_EQ(c.record(1).read_states[0].index, commit);
  EXPECT_EQ(c.record(1).read_states[0].context.view(), "r1");

  c.Isolate(1);
  ASSERT_TRUE(c.node(1).ReadIndex(Bytes("r2")).ok());
  c.Stabilize();
  HeartbeatRounds(c, 1, 2);
  EXPECT_EQ(c.record(1).read_states.size(), 1u) << "answered without a quorum";
}

// With lease reads a node refuses votes during its first election timeout after a start (it may
// have promised its lease to a leader before a crash): lets it pass with every message lost, so
// at most pre-votes went out, which change no term.
void TickPastStartup(Cluster& c, std::initializer_list<NodeId> ids) {
  for (NodeId id : ids) c.Isolate(id);
  for (NodeId id : ids) c.Tick(id, c.config(id).election_tick);
  c.Stabilize();
  c.Heal();
  c.DropInFlight();
}

// Thesis §6.4 step 1: a new leader answers reads only once an entry of its own term is
// committed (before that its commit index may be stale), whether it confirms leadership by a
// heartbeat round or by its lease.
void ExpectReadWaitsForOwnTermCommit(ReadOnlyOption option) {
  Cluster c({1, 2, 3}, {}, [option](Config& config) { config.read_only_option = option; });
  auto drop_app_resp = [](Message& m) { return m.type != MessageType::kAppResp; };
  TickPastStartup(c, {1, 2, 3});
  ASSERT_TRUE(c.node(1).Campaign().ok());
  StabilizeWith(c, drop_app_resp);
  ASSERT_EQ(RoleOf(c, 1), Role::kLeader);
  const Index empty_entry = StatusOf(c, 1).last_index;
  ASSERT_LT(CommitOf(c, 1), empty_entry);

  ASSERT_TRUE(c.node(1).ReadIndex(Bytes("r")).ok());
  StabilizeWith(c, drop_app_resp);
  HeartbeatRounds(c, 1, 2, drop_app_resp);
  EXPECT_THAT(c.record(1).read_states, IsEmpty());

  HeartbeatRounds(c, 1, 2);
  ASSERT_EQ(CommitOf(c, 1), empty_entry);
  ASSERT_EQ(c.record(1).read_states.size(), 1u);
  EXPECT_EQ(c.record(1).read_states[0].index, empty_entry);
  EXPECT_EQ(c.record(1).read_states[0].context.view(), "r");
}

TEST(ReadIndexTest, NotAnsweredBeforeLeaderCommitsInItsTerm) {
  ExpectReadWaitsForOwnTermCommit(ReadOnlyOption::kSafe);
}

// Thesis §6.4 step 1 holds for a sole voter too. Its own copy counts only once durable, so after
// a restart its commit index lags entries of the earlier term that were committed (and
// acknowledged to clients) before the crash: here the persisted commit is 1 while entries 2 and
// 3 of term 1 may have been committed. A read answered from that commit index misses them; it
// must wait until the new term's first entry (index 4) is durable and so committed.
TEST(ReadIndexTest, SoleVoterAfterRestartWaitsForOwnTermCommit) {
  HardState hard_state;
  hard_state.term = 1;
  hard_state.vote = 1;
  hard_state.commit = 1;
  std::unique_ptr<RawNode> node = NewNode(1, {1}, hard_state, EntriesWithTerms({1, 1, 1}));
  ASSERT_NE(node, nullptr);
  ASSERT_TRUE(node->Campaign().ok());

  // Carries out the Readies without acknowledging any write (the test acknowledges them).
  std::vector<ReadState> read_states;
  std::vector<uint64_t> unacknowledged;
  auto process_readies = [&] {
    for (int i = 0; i < 100 && node->HasReady(); ++i) {
      const Ready& ready = node->GetReady();
      read_states.insert(read_states.end(), ready.read_states.begin(), ready.read_states.end());
      if (ready.persist.id != 0) unacknowledged.push_back(ready.persist.id);
      node->Advance();
    }
  };
  process_readies();
  // The vote for itself counts once durable; then it leads and appends its term's first entry,
  // which is left not durable.
  ASSERT_FALSE(unacknowledged.empty());
  node->OnPersisted(unacknowledged.back());
  process_readies();
  const Status leader = node->GetStatus();
  ASSERT_EQ(leader.soft_state.role, Role::kLeader);
  ASSERT_EQ(leader.hard_state.term, 2u);
  ASSERT_EQ(leader.last_index, 4u);
  ASSERT_EQ(leader.hard_state.commit, 1u) << "the earlier term's entries are not known committed";

  ASSERT_TRUE(node->ReadIndex(Bytes("r")).ok());
  process_readies();
  EXPECT_THAT(read_states, IsEmpty()) << "answered from a commit index that lags the log";

  ASSERT_FALSE(unacknowledged.empty());
  node->OnPersisted(unacknowledged.back());
  process_readies();
  ASSERT_EQ(node->GetStatus().hard_state.commit, 4u);
  ASSERT_EQ(read_states.size(), 1u);
  EXPECT_GE(read_states[0].index, 3u) << "the read must cover the earlier term's entries";
  EXPECT_EQ(read_states[0].index, 4u);
  EXPECT_EQ(read_states[0].context.view(), "r");
}

// etcd: a follower forwards ReadIndex to the leader and receives the read state back.
TEST(ReadIndexTest, FollowerForwardsAndReceivesReadState) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
  bool forwarded = false;
  ASSERT_TRUE(c.node(2).ReadIndex(Bytes("f")).ok());
  StabilizeWith(c, [&](Message& m) {
    if (m.type == MessageType::kReadIndex && m.from == 2 && m.to == 1) forwarded = true;
    return true;
  });
  EXPECT_TRUE(forwarded);
  ASSERT_EQ(c.record(2).read_states.size(), 1u);
  EXPECT_EQ(c.record(2).read_states[0].index, CommitOf(c, 1));
  EXPECT_EQ(c.record(2).read_states[0].context.view(), "f");
  EXPECT_THAT(c.record(1).read_states, IsEmpty());
}

Cluster LeaseCluster() {
  return Cluster({1, 2, 3}, {},
                 [](Config& config) { config.read_only_option = ReadOnlyOption::kLeaseBased; });
}

bool SendsHeartbeat(Cluster& c) {
  for (const Message& m : c.in_flight()) {
    if (m.type == MessageType::kHeartbeat) return true;
  }
  return false;
}

// Thesis §6.4.1: with lease-based reads the leader answers from its lease, no round trip, once
// a quorum acknowledged a heartbeat of its term.
TEST(ReadIndexTest, LeaseBasedAnswersWithoutRoundTrip) {
  Cluster c = LeaseCluster();
  TickPastStartup(c, {1, 2, 3});
  c.ElectLeader(1);
  HeartbeatRounds(c, 1, 1);  // acknowledged: the lease holds
  ASSERT_TRUE(c.node(1).ReadIndex(Bytes("l")).ok());
  ASSERT_TRUE(c.ProcessReady(1));
  EXPECT_FALSE(SendsHeartbeat(c)) << "a read on a lease needs no heartbeat round";
  ASSERT_EQ(c.record(1).read_states.size(), 1u);
  EXPECT_EQ(c.record(1).read_states[0].index, CommitOf(c, 1));
  EXPECT_EQ(c.record(1).read_states[0].context.view(), "l");
}

// The lease runs LeaseTicks from the sending of the last heartbeat a quorum acknowledged: later
// the leader confirms its leadership by a heartbeat round, as without leases.
TEST(ReadIndexTest, LeaseExpiresWithoutAcknowledgements) {
  Cluster c = LeaseCluster();
  TickPastStartup(c, {1, 2, 3});
  c.ElectLeader(1);
  HeartbeatRounds(c, 1, 1);
  auto drop_heartbeat_resp = [](Message& m) { return m.type != MessageType::kHeartbeatResp; };
  const int lease_ticks = LeaseTicks(c.config(1).election_tick);
  ASSERT_GT(lease_ticks, 0);
  for (int tick = 0; tick <= lease_ticks; ++tick) {
    c.Tick(1);
    StabilizeWith(c, drop_heartbeat_resp);
  }
  ASSERT_EQ(RoleOf(c, 1), Role::kLeader);
  ASSERT_TRUE(c.node(1).ReadIndex(Bytes("late")).ok());
  ASSERT_TRUE(c.ProcessReady(1));
  EXPECT_TRUE(SendsHeartbeat(c)) << "an expired lease needs a heartbeat round";
  EXPECT_THAT(c.record(1).read_states, IsEmpty());
  c.Stabilize();
  ASSERT_EQ(c.record(1).read_states.size(), 1u);
  EXPECT_EQ(c.record(1).read_states[0].context.view(), "late");
}

// A leader that sent TimeoutNow gave its lease away (the transferee's campaign ignores every
// follower's lease): reads take a heartbeat round for the rest of its term.
TEST(ReadIndexTest, LeaseGivenAwayByTransfer) {
  Cluster c = LeaseCluster();
  TickPastStartup(c, {1, 2, 3});
  c.ElectLeader(1);
  HeartbeatRounds(c, 1, 1);
  ASSERT_TRUE(c.node(1).TransferLeader(2).ok());
  // The TimeoutNow is lost, so the transferee never campaigns and node 1 stays leader.
  StabilizeWith(c, [](Message& m) { return m.type != MessageType::kTimeoutNow; });
  ASSERT_EQ(RoleOf(c, 1), Role::kLeader);
  HeartbeatRounds(c, 1, 1);
  ASSERT_TRUE(c.node(1).ReadIndex(Bytes("t")).ok());
  ASSERT_TRUE(c.ProcessReady(1));
  EXPECT_TRUE(SendsHeartbeat(c)) << "no lease after TimeoutNow";
}

// A node with lease reads refuses votes during its first election timeout after a start: before
// a crash it may have acknowledged a leader's heartbeat, whose lease still runs. Without lease
// reads it votes at once (etcd).
TEST(ReadIndexTest, LeaseReadsRefuseVotesRightAfterStart) {
  for (const bool lease : {true, false}) {
    SCOPED_TRACE(lease);
    Cluster c({1, 2, 3}, {}, [lease](Config& config) {
      config.pre_vote = false;
      if (lease) config.read_only_option = ReadOnlyOption::kLeaseBased;
    });
    ASSERT_TRUE(c.node(1).Campaign().ok());
    c.Stabilize();
    EXPECT_EQ(RoleOf(c, 1), lease ? Role::kCandidate : Role::kLeader);
  }
}

// The lease does not excuse a new leader from first committing an entry of its own term.
TEST(ReadIndexTest, LeaseBasedWaitsForOwnTermCommit) {
  ExpectReadWaitsForOwnTermCommit(ReadOnlyOption::kLeaseBased);
}

// Raft §5.2 with learners (etcd): a learner's vote never counts. A candidate of three voters
// granted a vote by a learner stays a candidate; the same grant from a voter elects it.
TEST(LearnerTest, LearnerVoteDoesNotCount) {
  for (const NodeId granter : {NodeId{4}, NodeId{3}}) {
    SCOPED_TRACE(granter);
    Cluster c({1, 2, 3}, {4}, [](Config& config) { config.pre_vote = false; });
    c.ElectLeader(1);
    ASSERT_TRUE(c.node(2).Campaign().ok());
    while (c.ProcessReady(2)) {
    }
    c.in_flight().clear();  // the vote requests are lost
    ASSERT_EQ(RoleOf(c, 2), Role::kCandidate);
    Message grant;
    grant.type = MessageType::kVoteResp;
    grant.from = granter;
    grant.to = 2;
    grant.term = StatusOf(c, 2).hard_state.term;
    ASSERT_TRUE(c.node(2).Step(grant).ok());
    while (c.ProcessReady(2)) {
    }
    EXPECT_EQ(RoleOf(c, 2), granter == 4 ? Role::kCandidate : Role::kLeader);
  }
}

// Thesis §6.4.1: a lease is only sound if the leader steps down when it loses the quorum, so
// lease-based reads without check_quorum are a configuration error.
TEST(ReadIndexTest, LeaseBasedWithoutCheckQuorumIsRejected) {
  Config config;
  config.id = 1;
  config.read_only_option = ReadOnlyOption::kLeaseBased;
  config.check_quorum = false;
  RestartState restart;
  restart.snapshot = BootstrapSnapshot({1, 2, 3});
  EXPECT_EQ(RawNode::Create(config, std::move(restart)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ==============================================================================================
// Proposal forwarding (etcd MsgProp)

// etcd: a follower forwards a proposal to its leader, which commits it.
TEST(ForwardingTest, FollowerForwardsProposalToLeader) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  bool forwarded = false;
  ASSERT_TRUE(c.node(2).Propose(Bytes("x")).ok());
  StabilizeWith(c, [&](Message& m) {
    if (m.type == MessageType::kProp && m.from == 2 && m.to == 1) forwarded = true;
    return true;
  });
  EXPECT_TRUE(forwarded);
  for (NodeId id : {1, 2, 3}) EXPECT_THAT(AppliedData(c, id), ElementsAre("x")) << id;
}

// etcd DisableProposalForwarding: a follower refuses proposals (kAborted) instead.
TEST(ForwardingTest, DisabledForwardingFailsWithAborted) {
  Cluster c({1, 2, 3}, {}, [](Config& config) { config.disable_proposal_forwarding = true; });
  c.ElectLeader(1);
  EXPECT_EQ(c.node(2).Propose(Bytes("x")).code(), absl::StatusCode::kAborted);
  c.Stabilize();
  EXPECT_THAT(AppliedData(c, 1), IsEmpty());
  EXPECT_TRUE(c.ProposeAndStabilize(1, "y").ok()) << "the leader still accepts";
}

// etcd ErrProposalDropped: with no leader known a proposal fails (kUnavailable).
TEST(ForwardingTest, NoLeaderFailsWithUnavailable) {
  Cluster c({1, 2, 3});
  EXPECT_EQ(c.node(1).Propose(Bytes("x")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(c.node(2).ReadIndex(Bytes("r")).code(), absl::StatusCode::kUnavailable);
}

// ==============================================================================================
// Asynchronous storage writes (thesis §10.2.1, etcd AsyncStorageWrites)

// Thesis §10.2.1: the leader sends appends in parallel with its own disk write: the Ready that
// asks it to persist new entries already carries the appends of those entries.
TEST(AsyncStorageTest, LeaderSendsAppendsBeforePersistingOwnEntries) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  ASSERT_TRUE(c.node(1).Propose(Bytes("x")).ok());
  const uint64_t persist_id = ProcessReadyHoldingPersist(c, 1, [](const Ready& ready) {
    ASSERT_EQ(ready.persist.entries.size(), 1u);
    EXPECT_EQ(ready.persist.entries[0].data.view(), "x");
    std::set<NodeId> sent_to;
    for (const Message& m : ready.messages) {
      if (m.type == MessageType::kApp && !m.entries.empty() &&
          m.entries.back().data.view() == "x") {
        sent_to.insert(m.to);
      }
    }
    EXPECT_THAT(sent_to, ElementsAre(2, 3));
  });
  ASSERT_NE(persist_id, 0u);
  c.node(1).OnPersisted(persist_id);
  c.Stabilize();
  for (NodeId id : {1, 2, 3}) EXPECT_THAT(AppliedData(c, id), ElementsAre("x")) << id;
}

// Raft §5.1 / raft.h durability rule: a follower acknowledges an append only once the entries
// are durable: the AppResp is not in the Ready that asks to persist them.
TEST(AsyncStorageTest, FollowerAcknowledgesAppendOnlyAfterPersisting) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  ASSERT_TRUE(c.node(1).Propose(Bytes("x")).ok());
  while (c.ProcessReady(1)) {
  }
  c.Deliver(1, 2);
  const uint64_t persist_id = ProcessReadyHoldingPersist(c, 2, [](const Ready& ready) {
    EXPECT_EQ(ready.persist.entries.size(), 1u);
    EXPECT_THAT(OfType(ready.messages, MessageType::kAppResp), IsEmpty());
  });
  ASSERT_NE(persist_id, 0u);
  while (c.node(2).HasReady()) ProcessReadyHoldingPersist(c, 2);
  for (const Message& m : c.in_flight()) {
    EXPECT_FALSE(m.from == 2 && m.type == MessageType::kAppResp) << DescribeMessage(m);
  }
  c.node(2).OnPersisted(persist_id);
  while (c.ProcessReady(2)) {
  }
  int acks = 0;
  for (const Message& m : c.in_flight()) {
    if (m.from == 2 && m.type == MessageType::kAppResp && !m.reject) ++acks;
  }
  EXPECT_EQ(acks, 1);
}

// etcd MaxCommittedSizePerReady: one Ready hands out at most that many bytes of committed
// entries (at least one entry), so a lagging state machine catches up in bounded steps.
TEST(AsyncStorageTest, CommittedEntriesPerReadyAreBounded) {
  constexpr uint64_t kMaxBytes = 300;
  Cluster c({1, 2, 3}, {},
            [](Config& config) { config.max_committed_size_per_ready_bytes = kMaxBytes; });
  c.ElectLeader(1);
  c.Cut(1, 3);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(c.node(1).Propose(Bytes(Payload('a' + i, 100))).ok());
  size_t most = 0;
  c.set_ready_observer([&](NodeId id, const Ready& ready) {
    uint64_t bytes = 0;
    for (const Entry& e : ready.committed_entries) bytes += EntrySizeBytes(e);
    EXPECT_TRUE(ready.committed_entries.size() <= 1 || bytes <= kMaxBytes)
        << "node " << id << ": " << ready.committed_entries.size() << " entries, " << bytes
        << " bytes";
    most = std::max(most, ready.committed_entries.size());
  });
  c.Stabilize();
  c.set_ready_observer(nullptr);
  EXPECT_EQ(AppliedData(c, 1).size(), 6u);
  EXPECT_EQ(AppliedData(c, 2).size(), 6u);
  EXPECT_EQ(most, 2u);
}

// Raft §5.1 / raft.h: a candidate's vote for itself counts only once it is durable: a single
// voter does not become leader before OnPersisted of the write carrying that vote.
TEST(AsyncStorageTest, CandidateCountsOwnVoteOnlyAfterPersisting) {
  auto node = NewNode(1, {1});
  ASSERT_NE(node, nullptr);
  ASSERT_TRUE(node->Campaign().ok());
  ASSERT_TRUE(node->HasReady());
  const Ready& ready = node->GetReady();
  ASSERT_TRUE(ready.persist.hard_state.has_value());
  EXPECT_EQ(ready.persist.hard_state->vote, 1u);
  const uint64_t persist_id = ready.persist.id;
  node->Advance();
  EXPECT_EQ(node->GetStatus().soft_state.role, Role::kCandidate);
  node->OnPersisted(persist_id);
  EXPECT_EQ(node->GetStatus().soft_state.role, Role::kLeader);
}

// Thesis §10.2.1: the leader counts its own copy toward commitment only once it is durable:
// with one follower acknowledging and the other cut off, nothing commits before OnPersisted.
TEST(AsyncStorageTest, LeaderCountsItselfOnlyAfterOnPersisted) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  c.Cut(1, 3);
  const Index commit = CommitOf(c, 1);
  ASSERT_TRUE(c.node(1).Propose(Bytes("x")).ok());
  const uint64_t persist_id = ProcessReadyHoldingPersist(c, 1);
  ASSERT_NE(persist_id, 0u);

  c.Deliver(1, 2);
  while (c.ProcessReady(2)) {
  }
  ASSERT_EQ(c.Deliver(2, 1), 1u);
  EXPECT_EQ(ProgressOf(c, 1, 2).match, commit + 1);
  EXPECT_EQ(StatusOf(c, 1).persisted_index, commit);
  EXPECT_EQ(CommitOf(c, 1), commit) << "counted its own unpersisted entry";

  c.node(1).OnPersisted(persist_id);
  EXPECT_EQ(CommitOf(c, 1), commit + 1);
  c.Stabilize();
  EXPECT_THAT(AppliedData(c, 1), ElementsAre("x"));
  EXPECT_THAT(AppliedData(c, 2), ElementsAre("x"));
}

// raft.h PersistRequest: writes complete in order; OnPersisted(id) covers id and every earlier
// write, and commitment follows exactly what is durable.
TEST(AsyncStorageTest, OutstandingWritesAcknowledgedInOrder) {
  Cluster c({1});
  c.ElectLeader(1);
  const Index base = CommitOf(c, 1);
  std::vector<uint64_t> ids;
  for (const char* data : {"a", "b", "c", "d"}) {
    ASSERT_TRUE(c.node(1).Propose(Bytes(data)).ok());
    ids.push_back(ProcessReadyHoldingPersist(c, 1));
    ASSERT_NE(ids.back(), 0u);
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(CommitOf(c, 1), base);

  c.node(1).OnPersisted(ids[0]);
  EXPECT_EQ(CommitOf(c, 1), base + 1);
  c.node(1).OnPersisted(ids[1]);
  EXPECT_EQ(CommitOf(c, 1), base + 2);
  c.node(1).OnPersisted(ids[3]);  // covers ids[2] too
  EXPECT_EQ(CommitOf(c, 1), base + 4);
  c.Stabilize();
  EXPECT_THAT(AppliedData(c, 1), ElementsAre("a", "b", "c", "d"));
}

// ==============================================================================================
// Restart (Raft §5.1: term, vote and log are durable)

// Raft Figure 2: a node restarted from its storage has the same term, vote, log and commit,
// and does not apply again what it had applied.
TEST(RestartTest, ResumesTermVoteLogAndCommit) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.ProposeAndStabilize(1, "x").ok());
  for (NodeId id : {1, 2}) {
    SCOPED_TRACE(id);
    const Status before = StatusOf(c, id);
    const std::vector<Entry> log = c.record(id).storage.entries();
    c.Crash(id);
    c.Restart(id);
    const Status after = StatusOf(c, id);
    EXPECT_EQ(after.hard_state, before.hard_state);
    EXPECT_EQ(after.last_index, before.last_index);
    EXPECT_EQ(after.applied, before.applied);
    EXPECT_EQ(after.conf_state, before.conf_state);
    EXPECT_EQ(after.soft_state.role, Role::kFollower);
    EXPECT_EQ(c.record(id).storage.entries(), log);
    if (c.node(id).HasReady()) {
      EXPECT_THAT(c.node(id).GetReady().committed_entries, IsEmpty()) << "re-applies entries";
      c.node(id).Advance();
    }
  }
}

// Raft §5.2 / Figure 2: the vote is durable: restarted in the same term, a node that voted for 2
// still refuses 3.
TEST(RestartTest, VoteSurvivesRestart) {
  auto node = NewNode(1, {1, 2, 3});
  ASSERT_NE(node, nullptr);
  ASSERT_TRUE(node->Step(VoteRequest(2, 1, 5, 0, 0)).ok());
  HardState durable;
  for (int i = 0; i < 10 && node->HasReady(); ++i) {
    const Ready& ready = node->GetReady();
    if (ready.persist.hard_state.has_value()) durable = *ready.persist.hard_state;
    const uint64_t persist_id = ready.persist.id;
    node->Advance();
    if (persist_id != 0) node->OnPersisted(persist_id);
  }
  ASSERT_EQ(durable, (HardState{5, 2, 0}));

  auto restarted = NewNode(1, {1, 2, 3}, durable);
  ASSERT_NE(restarted, nullptr);
  ASSERT_TRUE(restarted->Step(VoteRequest(3, 1, 5, 0, 0)).ok());
  auto responses = OfType(Drain(*restarted), MessageType::kVoteResp);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_TRUE(responses[0].reject);
  EXPECT_EQ(restarted->GetStatus().hard_state.vote, 2u);
}

// Async storage writes: the driver applied entries 1..3 but crashed before the hard state that
// committed them was durable (commit 1 on disk). Those entries were committed, so the node
// restarts with commit 3, applies nothing again, and writes the raised commit index. Applied
// beyond the persisted log is still refused: those entries are gone.
TEST(RestartTest, AppliedAheadOfDurableCommitRaisesCommit) {
  Config config;
  config.id = 1;
  config.random_seed = 1;
  RestartState restart;
  restart.hard_state = HardState{1, kNoNode, 1};
  restart.snapshot = BootstrapSnapshot({1, 2, 3});
  restart.entries = EntriesWithTerms({1, 1, 1});
  restart.applied = 3;
  auto node = RawNode::Create(config, restart);
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ((*node)->GetStatus().hard_state.commit, 3u);
  EXPECT_EQ((*node)->GetStatus().applied, 3u);
  ASSERT_TRUE((*node)->HasReady());
  const Ready& ready = (*node)->GetReady();
  EXPECT_THAT(ready.committed_entries, IsEmpty()) << "re-applies entries";
  ASSERT_TRUE(ready.persist.hard_state.has_value());
  EXPECT_EQ(ready.persist.hard_state->commit, 3u);
  (*node)->Advance();

  restart.applied = 4;
  auto lost = RawNode::Create(config, restart);
  ASSERT_FALSE(lost.ok());
  EXPECT_THAT(std::string(lost.status().message()), HasSubstr("beyond the last persisted index"));
}

// Raft §5.3: a node that crashed and missed entries rejoins after restart and catches up.
TEST(RestartTest, RestartedNodeRejoinsAndCatchesUp) {
  Cluster c({1, 2, 3});
  c.ElectLeader(1);
  ASSERT_TRUE(c.ProposeAndStabilize(1, "before").ok());
  c.Crash(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.ProposeAndStabilize(1, "during").ok());
  c.Restart(3);
  HeartbeatRounds(c, 1, 3);
  EXPECT_THAT(AppliedData(c, 3), ElementsAre("before", "during", "during", "during"));
  EXPECT_EQ(c.record(3).storage.entries(), c.record(1).storage.entries());
  EXPECT_EQ(c.Leader(), 1u);
}

// ==============================================================================================
// Invariants are crashes, not error values (STYLE.md rule 3)

// log.cc MaybeAppend (Raft §5.4, Leader Completeness): an append that would truncate a
// committed entry can only come from a broken leader; the node aborts rather than lose a
// committed entry. (Well-formed appends below the commit index are answered without touching
// the log, so the append here claims a different term for committed entry 2 itself.)
TEST(InvariantDeathTest, AppendConflictingWithCommittedEntryAborts) {
  auto node = NewNode(1, {1, 2, 3}, HardState{1, kNoNode, 2}, EntriesWithTerms({1, 1}));
  ASSERT_NE(node, nullptr);
  Drain(*node);
  Message m;
  m.type = MessageType::kApp;
  m.from = 2;
  m.to = 1;
  m.term = 2;
  m.index = 2;
  m.log_term = 1;
  m.entries.push_back(Entry{2, 2, EntryType::kNormal, Bytes("rewrite")});
  EXPECT_DEATH((void)node->Step(std::move(m)), "conflicts with committed entry");
}

// raft.h: a Ready is valid until Advance; taking another first is a driver bug that aborts.
TEST(InvariantDeathTest, GetReadyTwiceWithoutAdvanceAborts) {
  auto node = NewNode(1, {1, 2, 3});
  ASSERT_NE(node, nullptr);
  ASSERT_TRUE(node->Campaign().ok());
  ASSERT_TRUE(node->HasReady());
  (void)node->GetReady();
  EXPECT_DEATH((void)node->GetReady(), "GetReady before Advance");
}

// raft.cc ApplyConfChange: a committed change that cannot apply means the replicas'
// configurations diverged (leaders validate before proposing); the node stops.
TEST(InvariantDeathTest, ConfChangeThatCannotApplyAborts) {
  auto node = NewNode(1, {1, 2, 3});
  ASSERT_NE(node, nullptr);
  EXPECT_DEATH((void)node->ApplyConfChange(ConfChange{}), "committed conf change cannot apply");
}

// raft.h OnPersisted: acknowledging a write the node never handed out is a driver bug.
TEST(InvariantDeathTest, OnPersistedOfUnknownWriteAborts) {
  auto node = NewNode(1, {1, 2, 3});
  ASSERT_NE(node, nullptr);
  ASSERT_TRUE(node->Campaign().ok());
  const uint64_t persist_id = node->GetReady().persist.id;
  node->Advance();
  EXPECT_DEATH(node->OnPersisted(persist_id + 1), "persisted unknown write");
}

}  // namespace
}  // namespace kvstore::raft
