// Unit tests of the Raft building blocks below the RawNode API: majority arithmetic, flow
// control windows, progress transitions, configuration change rules and the in-memory log.

#include <string>
#include <vector>

#include "core/raft/log.h"
#include "core/raft/progress.h"
#include "core/raft/quorum.h"
#include "core/raft/tracker.h"
#include "gtest/gtest.h"

namespace kvstore::raft {
namespace {

// ------------------------------------------------------------------------------------------
// Quorum (Raft thesis §4.3: joint decisions need both majorities).

TEST(Quorum, MajorityCommittedIndexIsTheMedianAcknowledgement) {
  MajorityConfig three({1, 2, 3});
  absl::btree_map<NodeId, Index> match = {{1, 10}, {2, 7}, {3, 3}};
  auto fn = [&](NodeId id) { return match.count(id) ? match[id] : Index{0}; };
  EXPECT_EQ(three.CommittedIndex(fn), 7u);
  MajorityConfig four({1, 2, 3, 4});
  match[4] = 1;
  // Four voters need three acknowledgements: the third largest.
  EXPECT_EQ(four.CommittedIndex(fn), 3u);
  EXPECT_EQ(MajorityConfig().CommittedIndex(fn), kIndexMax);
}

TEST(Quorum, JointCommittedIndexIsTheMinimumOfBothHalves) {
  absl::btree_map<NodeId, Index> match = {{1, 10}, {2, 10}, {3, 1}, {4, 2}, {5, 2}};
  auto fn = [&](NodeId id) { return match[id]; };
  JointConfig joint{MajorityConfig({1, 2, 3}), MajorityConfig({3, 4, 5})};
  EXPECT_EQ(joint.CommittedIndex(fn), 2u);
  JointConfig simple{MajorityConfig({1, 2, 3}), MajorityConfig()};
  EXPECT_EQ(simple.CommittedIndex(fn), 10u);
}

TEST(Quorum, VoteResults) {
  MajorityConfig three({1, 2, 3});
  EXPECT_EQ(three.Vote({}), VoteResult::kPending);
  EXPECT_EQ(three.Vote({{1, true}}), VoteResult::kPending);
  EXPECT_EQ(three.Vote({{1, true}, {2, true}}), VoteResult::kWon);
  EXPECT_EQ(three.Vote({{1, true}, {2, false}}), VoteResult::kPending);
  EXPECT_EQ(three.Vote({{1, false}, {2, false}}), VoteResult::kLost);
  // Votes of non-members do not count.
  EXPECT_EQ(three.Vote({{1, true}, {9, true}}), VoteResult::kPending);
  JointConfig joint{MajorityConfig({1, 2, 3}), MajorityConfig({4, 5, 6})};
  EXPECT_EQ(joint.Vote({{1, true}, {2, true}}), VoteResult::kPending);
  EXPECT_EQ(joint.Vote({{1, true}, {2, true}, {4, true}, {5, true}}), VoteResult::kWon);
  EXPECT_EQ(joint.Vote({{1, true}, {2, true}, {4, false}, {5, false}}), VoteResult::kLost);
}

// ------------------------------------------------------------------------------------------
// Inflights and Progress (etcd's flow control).

TEST(Inflights, CountLimit) {
  Inflights window(3, 0);
  window.Add(1, 10);
  window.Add(2, 10);
  EXPECT_FALSE(window.Full());
  window.Add(5, 10);
  EXPECT_TRUE(window.Full());
  window.FreeLE(2);
  EXPECT_EQ(window.count(), 1u);
  EXPECT_FALSE(window.Full());
  window.Add(7, 10);
  window.Add(9, 10);  // wraps around the ring
  EXPECT_TRUE(window.Full());
  window.FreeLE(100);
  EXPECT_EQ(window.count(), 0u);
}

TEST(Inflights, ByteLimit) {
  Inflights window(100, 1000);
  window.Add(1, 600);
  EXPECT_FALSE(window.Full());
  window.Add(2, 400);
  EXPECT_TRUE(window.Full());
  window.FreeFirstOne();
  EXPECT_FALSE(window.Full());
}

TEST(Progress, ProbeSendsOneAtATime) {
  Progress pr(5, 10, 0, false);
  EXPECT_FALSE(pr.IsPaused());
  pr.SentEntries(2, 6, 100);
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_TRUE(pr.MaybeUpdate(6));
  EXPECT_FALSE(pr.IsPaused());
  EXPECT_EQ(pr.next, 7u);
}

TEST(Progress, ReplicateAdvancesNextOptimistically) {
  Progress pr(5, 2, 0, false);
  pr.match = 4;
  pr.BecomeReplicate();
  pr.SentEntries(3, 7, 30);
  EXPECT_EQ(pr.next, 8u);
  EXPECT_FALSE(pr.IsPaused());
  pr.SentEntries(1, 8, 10);
  EXPECT_TRUE(pr.IsPaused());  // window of 2 full
  pr.MaybeUpdate(7);
  pr.inflights.FreeLE(7);
  EXPECT_FALSE(pr.inflights.Full());
}

TEST(Progress, RejectionsBackOff) {
  Progress pr(10, 10, 0, false);
  // Probe: only the outstanding append (prev index 9) may be answered.
  EXPECT_FALSE(pr.MaybeDecrTo(5, 3));
  EXPECT_TRUE(pr.MaybeDecrTo(9, 3));
  EXPECT_EQ(pr.next, 4u);
  // Replicate: a rejection at or below match is stale.
  pr.match = 6;
  pr.BecomeReplicate();
  EXPECT_FALSE(pr.MaybeDecrTo(6, 2));
  pr.next = 12;
  EXPECT_TRUE(pr.MaybeDecrTo(9, 7));
  EXPECT_EQ(pr.next, 7u);
}

TEST(Progress, SnapshotPausesThenProbesFromIt) {
  Progress pr(3, 10, 0, false);
  pr.BecomeSnapshot(50);
  EXPECT_TRUE(pr.IsPaused());
  pr.BecomeProbe();
  EXPECT_EQ(pr.next, 51u);
}

// ------------------------------------------------------------------------------------------
// Configuration changes (etcd's confchange rules).

ProgressTracker Tracker(const ConfState& cs) {
  ProgressTracker tracker(10, 0);
  EXPECT_TRUE(RestoreConfState(tracker, cs, 10).ok());
  return tracker;
}

ConfChangeSingle V(NodeId id) { return {ConfChangeType::kAddVoter, id}; }
ConfChangeSingle L(NodeId id) { return {ConfChangeType::kAddLearner, id}; }
ConfChangeSingle R(NodeId id) { return {ConfChangeType::kRemoveNode, id}; }

TEST(ConfChanger, SimpleChangesMoveOneVoter) {
  ProgressTracker tracker = Tracker(ConfState{{1, 2, 3}});
  ConfChanger changer(tracker, 10);
  auto added = changer.Simple({V(4)});
  ASSERT_TRUE(added.ok());
  EXPECT_EQ(added->config.voters.incoming.ids(), (std::vector<NodeId>{1, 2, 3, 4}));
  EXPECT_EQ(added->progress.at(4).next, 10u);
  EXPECT_FALSE(changer.Simple({V(4), V(5)}).ok());
  EXPECT_FALSE(changer.Simple({R(1), V(5)}).ok());
  // Learners do not move voters: any number at once.
  EXPECT_TRUE(changer.Simple({L(4), L(5)}).ok());
  ProgressTracker one = Tracker(ConfState{{1}});
  EXPECT_FALSE(ConfChanger(one, 10).Simple({R(1)}).ok()) << "removing the last voter";
}

TEST(ConfChanger, JointReplacesVotersAndLeaves) {
  ProgressTracker tracker = Tracker(ConfState{{1, 2, 3}});
  auto joint = ConfChanger(tracker, 10).EnterJoint(true, {V(4), V(5), R(2), R(3)});
  ASSERT_TRUE(joint.ok()) << joint.status();
  EXPECT_EQ(joint->config.ToConfState().voters, (std::vector<NodeId>{1, 4, 5}));
  EXPECT_EQ(joint->config.ToConfState().voters_outgoing, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_TRUE(joint->config.auto_leave);
  // Outgoing voters keep their progress until the joint state is left.
  EXPECT_EQ(joint->progress.count(2), 1u);
  tracker.config = joint->config;
  tracker.progress = joint->progress;
  EXPECT_FALSE(ConfChanger(tracker, 10).Simple({V(6)}).ok()) << "simple change while joint";
  EXPECT_FALSE(ConfChanger(tracker, 10).EnterJoint(false, {V(6)}).ok()) << "joint twice";
  auto left = ConfChanger(tracker, 10).LeaveJoint();
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->config.ToConfState(), (ConfState{{1, 4, 5}}));
  EXPECT_EQ(left->progress.count(2), 0u);
  EXPECT_FALSE(ConfChanger(Tracker(ConfState{{1}}), 10).LeaveJoint().ok());
}

TEST(ConfChanger, DemotingAnOutgoingVoterGoesThroughLearnersNext) {
  ProgressTracker tracker = Tracker(ConfState{{1, 2, 3}});
  auto joint = ConfChanger(tracker, 10).EnterJoint(false, {L(3)});
  ASSERT_TRUE(joint.ok()) << joint.status();
  ConfState cs = joint->config.ToConfState();
  EXPECT_EQ(cs.voters, (std::vector<NodeId>{1, 2}));
  EXPECT_EQ(cs.learners_next, (std::vector<NodeId>{3}));
  EXPECT_TRUE(cs.learners.empty());
  // Restoring the joint ConfState reproduces it exactly.
  EXPECT_EQ(Tracker(cs).config.ToConfState(), cs);
  tracker.config = joint->config;
  tracker.progress = joint->progress;
  auto left = ConfChanger(tracker, 10).LeaveJoint();
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->config.ToConfState().learners, (std::vector<NodeId>{3}));
  EXPECT_TRUE(left->progress.at(3).is_learner);
}

TEST(TrackerConfig, MatchesIsEqualityWithToConfState) {
  ProgressTracker tracker = Tracker(ConfState{{1, 2, 3}});
  auto joint = ConfChanger(tracker, 10).EnterJoint(true, {L(3), V(4), L(5)});
  ASSERT_TRUE(joint.ok()) << joint.status();
  const ConfState cs = joint->config.ToConfState();
  EXPECT_TRUE(joint->config.Matches(cs));
  // Each field on its own tells them apart.
  for (int field = 0; field < 5; ++field) {
    ConfState other = cs;
    switch (field) {
      case 0:
        other.voters.push_back(9);
        break;
      case 1:
        other.voters_outgoing.pop_back();
        break;
      case 2:
        other.learners.push_back(9);
        break;
      case 3:
        other.learners_next.clear();
        break;
      case 4:
        other.auto_leave = !other.auto_leave;
        break;
    }
    EXPECT_FALSE(other == cs) << field;
    EXPECT_FALSE(joint->config.Matches(other)) << "field " << field;
  }
  EXPECT_FALSE(tracker.config.Matches(cs));
}

TEST(ConfChanger, PromoteLearner) {
  ProgressTracker tracker = Tracker(ConfState{{1, 2, 3}, {}, {4}});
  EXPECT_TRUE(tracker.progress.at(4).is_learner);
  auto promoted = ConfChanger(tracker, 10).Simple({V(4)});
  ASSERT_TRUE(promoted.ok());
  EXPECT_FALSE(promoted->progress.at(4).is_learner);
  EXPECT_TRUE(promoted->config.learners.empty());
}

// ------------------------------------------------------------------------------------------
// The log.

Entry E(Term term, Index index) { return Entry{term, index, EntryType::kNormal, Bytes()}; }

absl::InlinedVector<Entry, 1> Es(std::vector<std::pair<Term, Index>> list) {
  absl::InlinedVector<Entry, 1> out;
  for (auto [t, i] : list) out.push_back(E(t, i));
  return out;
}

RaftLog LogWith(std::vector<Term> terms) {
  RaftLog log;
  std::vector<Entry> entries;
  for (size_t i = 0; i < terms.size(); ++i) entries.push_back(E(terms[i], i + 1));
  log.Restart(0, 0, std::move(entries), 0, 0);
  return log;
}

TEST(RaftLog, MaybeAppendTruncatesOnlyConflicts) {
  RaftLog log = LogWith({1, 1, 2, 2});
  Index last = 0;
  auto same = Es({{1, 2}, {2, 3}});
  ASSERT_TRUE(log.MaybeAppend(1, 1, 0, same, &last));
  EXPECT_EQ(last, 3u);
  EXPECT_EQ(log.last_index(), 4u) << "matching entries must not truncate the tail";
  auto conflict = Es({{3, 3}});
  ASSERT_TRUE(log.MaybeAppend(2, 1, 2, conflict, &last));
  EXPECT_EQ(log.last_index(), 3u);
  EXPECT_EQ(log.TermOr0(3), 3u);
  EXPECT_EQ(log.committed(), 2u);
  auto gap = Es({{3, 9}});
  EXPECT_FALSE(log.MaybeAppend(8, 3, 2, gap, &last));
}

TEST(RaftLog, FindConflictByTermSkipsHigherTerms) {
  RaftLog log = LogWith({1, 1, 4, 4, 5, 5});
  EXPECT_EQ(log.FindConflictByTerm(6, 3), (std::pair<Index, Term>{2, 1}));
  EXPECT_EQ(log.FindConflictByTerm(6, 5), (std::pair<Index, Term>{6, 5}));
  EXPECT_EQ(log.FindConflictByTerm(10, 4), (std::pair<Index, Term>{4, 4}));
}

TEST(RaftLog, CommitOnlyCurrentTermByCounting) {
  RaftLog log = LogWith({1, 2, 2});
  EXPECT_FALSE(log.MaybeCommit(2, 3)) << "Raft §5.4.2: entry of term 2 committed in term 3";
  EXPECT_TRUE(log.MaybeCommit(2, 2));
  EXPECT_EQ(log.committed(), 2u);
}

TEST(RaftLog, SliceRespectsByteLimitButReturnsOneEntry) {
  RaftLog log;
  std::vector<Entry> entries;
  for (Index i = 1; i <= 5; ++i) {
    entries.push_back(Entry{1, i, EntryType::kNormal, Bytes(std::string(100, 'x'))});
  }
  log.Restart(0, 0, std::move(entries), 0, 0);
  EXPECT_EQ(log.Slice(1, 5, 0).size(), 1u);
  EXPECT_EQ(log.Slice(1, 5, 2 * EntrySizeBytes(log.At(1))).size(), 2u);
  EXPECT_EQ(log.Slice(1, 5, 1 << 20).size(), 5u);
}

TEST(RaftLog, PersistenceTracksReplacedWrites) {
  RaftLog log = LogWith({1});
  log.Append(E(1, 2));
  log.Append(E(1, 3));
  EXPECT_EQ(log.TakeUnoffered().size(), 2u);
  // Entries 2..3 are replaced before their write completes.
  auto replacement = Es({{2, 2}});
  Index last = 0;
  ASSERT_TRUE(log.MaybeAppend(1, 1, 0, replacement, &last));
  log.PersistedTo(3, 1);
  EXPECT_EQ(log.persisted(), 1u) << "the old write's entries are gone";
  EXPECT_EQ(log.TakeUnoffered().size(), 1u);
  log.PersistedTo(2, 2);
  EXPECT_EQ(log.persisted(), 2u);
}

TEST(RaftLog, CompactKeepsTermOfCompactionPoint) {
  RaftLog log = LogWith({1, 1, 2, 3});
  log.CommitTo(4);
  log.AppliedTo(3);
  log.Compact(3);
  EXPECT_EQ(log.first_index(), 4u);
  EXPECT_EQ(log.TermOr0(3), 2u);
  Term term = 0;
  EXPECT_FALSE(log.TermAt(2, &term));
}

TEST(RaftLogDeathTest, TruncatingACommittedEntryIsAnInvariantViolation) {
  RaftLog log = LogWith({1, 1, 1});
  log.set_node(7);
  log.CommitTo(3);
  auto conflict = Es({{2, 3}});
  Index last = 0;
  EXPECT_DEATH(log.MaybeAppend(2, 1, 3, conflict, &last), "node 7: entry 3 .*conflicts");
}

}  // namespace
}  // namespace kvstore::raft
