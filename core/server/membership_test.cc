// Member replace (one joint configuration change, left automatically) and member update (etcd's
// MemberUpdate), through the server core's public API on ServerCluster.

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "core/base/errors.h"
#include "core/base/probe.h"
#include "core/server/testing/server_cluster.h"
#include "gtest/gtest.h"

namespace kvstore::server {
namespace {

using testing::PutRequest;
using testing::ServerCluster;

Request Replace(raft::NodeId old_id, std::string name, std::vector<std::string> urls) {
  Request r;
  r.type = RequestType::kMemberReplace;
  r.member.id = old_id;
  r.member.name = std::move(name);
  r.member.peer_urls = std::move(urls);
  return r;
}

Request Update(raft::NodeId id, std::vector<std::string> urls) {
  Request r;
  r.type = RequestType::kMemberUpdate;
  r.member.id = id;
  r.member.peer_urls = std::move(urls);
  return r;
}

Request Typed(RequestType type) {
  Request r;
  r.type = type;
  return r;
}

void ExpectCode(const std::optional<Response>& response, ErrorCode code,
                const std::string& mention = "") {
  ASSERT_TRUE(response.has_value()) << "no response; wanted " << ErrorCodeName(code);
  EXPECT_EQ(CodeOf(response->status), code) << response->status;
  EXPECT_NE(response->status.message().find(mention), absl::string_view::npos)
      << response->status.message() << " does not mention " << mention;
}

Response CallOk(ServerCluster& cluster, raft::NodeId id, Request request) {
  std::optional<Response> response = cluster.Call(id, std::move(request));
  if (!response.has_value()) {
    ADD_FAILURE() << "member " << id << " gave no response";
    return Response{};
  }
  EXPECT_TRUE(response->status.ok()) << "member " << id << ": " << response->status;
  return *response;
}

std::vector<raft::NodeId> Ids(const std::vector<Member>& members) {
  std::vector<raft::NodeId> ids;
  for (const Member& m : members) ids.push_back(m.id);
  return ids;
}

std::vector<raft::NodeId> Sorted(std::vector<raft::NodeId> ids) {
  std::sort(ids.begin(), ids.end());
  return ids;
}

raft::NodeId FollowerOf(ServerCluster& cluster, raft::NodeId leader) {
  for (raft::NodeId id : cluster.ids()) {
    if (id != leader) return id;
  }
  return raft::kNoNode;
}

// Ticks until every live member in `ids` has applied what the leader has applied.
bool CaughtUp(ServerCluster& cluster, const std::vector<raft::NodeId>& ids) {
  for (int round = 0; round < 300; ++round) {
    const raft::NodeId leader = cluster.Leader();
    if (leader != raft::kNoNode) {
      bool all = true;
      for (raft::NodeId id : ids) {
        all = all && cluster.server(id).applied_index() == cluster.server(leader).applied_index();
      }
      if (all) return true;
    }
    cluster.TickAll();
  }
  return false;
}

// A follower is replaced: the leader enters the joint configuration (old voters AND new voters),
// the answer comes once
// the joint configuration is left, and the new member catches up with the data and serves writes.
TEST(MembershipTest, ReplaceAFollowerThroughAJointConfiguration) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId old_id = FollowerOf(cluster, leader);
  for (int i = 0; i < 20; ++i) CallOk(cluster, leader, PutRequest("k" + std::to_string(i), "v"));

  const Response response = CallOk(cluster, leader, Replace(old_id, "m4", {"mem://4"}));
  const raft::NodeId new_id = response.member.id;
  EXPECT_EQ(response.member.name, "m4");
  EXPECT_FALSE(response.member.is_learner);
  std::vector<raft::NodeId> expected_voters;
  for (raft::NodeId v : {1, 2, 3}) {
    if (v != old_id) expected_voters.push_back(v);
  }
  expected_voters.push_back(new_id);
  expected_voters = Sorted(expected_voters);
  // Answered once the joint configuration is left: the list is the new one.
  EXPECT_EQ(Sorted(Ids(response.members)), expected_voters);
  // The leader's log after the bootstrap: the joint entry (in and out at once), then the
  // leader's automatic leave.
  std::vector<std::string> transcript;
  for (const raft::Entry& entry : cluster.member(leader).log.entries()) {
    if (entry.type != raft::EntryType::kConfChange || entry.index <= 3) continue;
    auto change = raft::DecodeConfChange(entry.data.view());
    ASSERT_TRUE(change.ok());
    std::string line = change->IsLeaveJoint() ? "leave joint" : "enter joint:";
    for (const raft::ConfChangeSingle& single : change->changes) {
      line += single.type == raft::ConfChangeType::kRemoveNode
                  ? " remove " + std::to_string(single.node_id)
                  : (single.node_id == new_id ? " add new" : " add ?");
    }
    transcript.push_back(line);
  }
  EXPECT_EQ(transcript,
            (std::vector<std::string>{"enter joint: add new remove " + std::to_string(old_id),
                                      "leave joint"}));
  EXPECT_TRUE(cluster.server(leader).RaftConfState().voters_outgoing.empty());
  EXPECT_EQ(cluster.server(leader).RaftConfState().voters, expected_voters);

  cluster.Crash(old_id);
  cluster.StartJoiner(new_id);
  std::vector<raft::NodeId> members = expected_voters;
  ASSERT_TRUE(CaughtUp(cluster, members));
  for (raft::NodeId member : members) {
    EXPECT_EQ(Sorted(Ids(cluster.server(member).Members())), expected_voters) << member;
    EXPECT_EQ(cluster.server(member).RaftConfState().voters, expected_voters) << member;
  }
  EXPECT_EQ(cluster.server(new_id).store().Hash(0)->hash,
            cluster.server(leader).store().Hash(0)->hash);
  CallOk(cluster, new_id, PutRequest("from-m4", "v"));
}

// The leader itself is replaced: it stays leader while it is an outgoing voter, leaves the joint
// configuration, answers, and steps down; the remaining voters (the new one among them) elect.
TEST(MembershipTest, ReplaceTheLeader) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  CallOk(cluster, leader, PutRequest("before", "v"));
  const Response replaced = CallOk(cluster, leader, Replace(leader, "m4", {"mem://4"}));
  const raft::NodeId new_id = replaced.member.id;
  cluster.StartJoiner(new_id);
  cluster.Crash(leader);
  std::vector<raft::NodeId> remaining;
  for (raft::NodeId id : cluster.ids()) {
    if (id != leader) remaining.push_back(id);
  }
  const raft::NodeId successor = cluster.WaitForLeader();
  ASSERT_NE(successor, raft::kNoNode);
  EXPECT_NE(successor, leader);
  ASSERT_TRUE(CaughtUp(cluster, remaining));
  for (raft::NodeId id : remaining) {
    EXPECT_EQ(Sorted(Ids(cluster.server(id).Members())), Sorted(remaining)) << id;
  }
  CallOk(cluster, new_id, PutRequest("after", "v"));
}

// The refusals a replace gets before anything is proposed, with etcd's codes: an unknown member,
// a peer URL in use (by another member or by the one replaced), no URL, and one change at a time.
TEST(MembershipTest, ReplaceRefusals) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = FollowerOf(cluster, leader);
  ExpectCode(cluster.Call(leader, Replace(99, "m4", {"mem://4"})), ErrorCode::kMemberNotFound,
             "member replace: no member 99");
  ExpectCode(cluster.Call(leader, Replace(follower, "m4", {"mem://1"})), ErrorCode::kMemberExists,
             "mem://1");
  ExpectCode(cluster.Call(leader, Replace(follower, "m4", {"mem://" + std::to_string(follower)})),
             ErrorCode::kMemberExists, "is member " + std::to_string(follower));
  ExpectCode(cluster.Call(leader, Replace(follower, "m4", {})), ErrorCode::kInvalidArgument,
             "no peer URLs");
  // Two at once: the second is refused while the first (joint) is in flight.
  const RequestId first = cluster.server(leader).Submit(Replace(follower, "m4", {"mem://4"}));
  const RequestId second = cluster.server(leader).Submit(Replace(leader, "m5", {"mem://5"}));
  cluster.Stabilize();
  ASSERT_EQ(cluster.member(leader).responses.count(second), 1u);
  EXPECT_EQ(CodeOf(cluster.member(leader).responses.at(second).status),
            ErrorCode::kConfChangePending);
  for (int round = 0; round < 20 && cluster.member(leader).responses.count(first) == 0; ++round) {
    cluster.TickAll();
  }
  ASSERT_EQ(cluster.member(leader).responses.count(first), 1u);
  EXPECT_TRUE(cluster.member(leader).responses.at(first).status.ok());
  // The replaced member is gone: replacing it again finds nothing.
  ExpectCode(cluster.Call(leader, Replace(follower, "m6", {"mem://6"})),
             ErrorCode::kMemberNotFound);
}

// A learner is replaced by a learner (the role is kept), so the learner limit is not in the way.
TEST(MembershipTest, ReplaceALearnerKeepsTheRole) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  Request add = Typed(RequestType::kMemberAdd);
  add.member.name = "l4";
  add.member.peer_urls = {"mem://4"};
  add.member.is_learner = true;
  const raft::NodeId learner = CallOk(cluster, leader, add).member.id;
  const Response replaced = CallOk(cluster, leader, Replace(learner, "l5", {"mem://5"}));
  EXPECT_TRUE(replaced.member.is_learner);
  const raft::ConfState cs = cluster.server(leader).RaftConfState();
  EXPECT_EQ(cs.learners, std::vector<raft::NodeId>{replaced.member.id});
  EXPECT_TRUE(cs.voters_outgoing.empty());
  EXPECT_EQ(cluster.server(leader).Members().size(), 4u);
}

// A member's own list may be behind the log: a replace of a member that was removed meanwhile is
// refused when it applies, alike on every member, and the configuration does not change.
TEST(MembershipTest, ReplaceIsCheckedAgainWhenItApplies) {
  ServerCluster cluster({1, 2, 3, 4});
  const raft::NodeId leader = cluster.WaitForLeader();
  raft::NodeId behind = raft::kNoNode, gone = raft::kNoNode;
  for (raft::NodeId id : cluster.ids()) {
    if (id == leader) continue;
    if (behind == raft::kNoNode) {
      behind = id;
    } else if (gone == raft::kNoNode) {
      gone = id;
    }
  }
  cluster.Cut(leader, behind);
  CallOk(cluster, leader, Typed(RequestType::kMemberList));
  Request remove = Typed(RequestType::kMemberRemove);
  remove.member.id = gone;
  CallOk(cluster, leader, remove);
  ASSERT_EQ(cluster.server(behind).Members().size(), 4u) << "has not applied the removal";
  cluster.Heal();
  const RequestId id = cluster.server(behind).Submit(Replace(gone, "m5", {"mem://5"}));
  std::optional<Response> response;
  for (int round = 0; round < 50 && !response.has_value(); ++round) {
    cluster.TickAll();
    auto it = cluster.member(behind).responses.find(id);
    if (it != cluster.member(behind).responses.end()) response = it->second;
  }
  ExpectCode(response, ErrorCode::kMemberNotFound, "removed meanwhile");
  for (raft::NodeId member : cluster.ids()) {
    if (member == gone) continue;
    EXPECT_EQ(cluster.server(member).Members().size(), 3u) << member;
    EXPECT_EQ(cluster.server(member).RaftConfState().voters.size(), 3u) << member;
  }
}

// etcd's MemberUpdate: new peer URLs for a member, through the log, on every member; name and
// role are kept. Unknown members and URLs in use by another member are refused with etcd's
// errors (ErrIDNotFound, ErrPeerURLexists); a member may keep its own URL.
TEST(MembershipTest, UpdateChangesPeerUrlsEverywhere) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId follower = FollowerOf(cluster, leader);
  ExpectCode(cluster.Call(leader, Update(99, {"mem://x"})), ErrorCode::kMemberNotFound,
             "member update: no member 99");
  ExpectCode(cluster.Call(follower, Update(follower, {"mem://" + std::to_string(leader)})),
             ErrorCode::kMemberExists, "is member " + std::to_string(leader));
  ExpectCode(cluster.Call(leader, Update(follower, {})), ErrorCode::kInvalidArgument);
  const std::string own = "mem://" + std::to_string(follower);
  const Response updated = CallOk(cluster, follower, Update(follower, {own, "mem://extra"}));
  EXPECT_EQ(updated.member.peer_urls, (std::vector<std::string>{own, "mem://extra"}));
  EXPECT_EQ(updated.members.size(), 3u);
  ASSERT_TRUE(CaughtUp(cluster, cluster.ids()));
  for (raft::NodeId id : cluster.ids()) {
    for (const Member& m : cluster.server(id).Members()) {
      if (m.id != follower) continue;
      EXPECT_EQ(m.peer_urls, (std::vector<std::string>{own, "mem://extra"})) << id;
      EXPECT_EQ(m.name, "m" + std::to_string(follower)) << id;
      EXPECT_FALSE(m.is_learner) << id;
    }
  }
  // The freed URL is usable by a new member; the taken one is not.
  ExpectCode(cluster.Call(leader, Update(leader, {"mem://extra"})), ErrorCode::kMemberExists);
  // Survives a restart (the record is in the backend).
  cluster.Crash(follower);
  cluster.Restart(follower);
  ASSERT_TRUE(CaughtUp(cluster, cluster.ids()));
  for (const Member& m : cluster.server(follower).Members()) {
    if (m.id == follower) EXPECT_EQ(m.peer_urls.size(), 2u);
  }
}

// Raft's disruptive removed server (fuzz seed 120619): a member removed while it was down
// restarts believing it is a voter and campaigns at ever higher terms. With pre-vote and
// check-quorum off nothing in Raft stops its votes from deposing the leader; the members
// remember removed ids durably (in the backend, carried by snapshots) and drop their messages,
// as etcd's rafthttp answers a removed member 410 Gone.
TEST(MembershipTest, ARemovedMemberCannotDeposeTheLeader) {
  ServerCluster cluster({1, 2, 3, 4, 5}, [](ServerConfig& config) {
    config.pre_vote = false;
    config.check_quorum = false;
    config.snapshot_every_entries = 10;
    config.snapshot_catch_up_entries = 5;
  });
  const raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  std::vector<raft::NodeId> followers;
  for (raft::NodeId id : cluster.ids()) {
    if (id != leader) followers.push_back(id);
  }
  const raft::NodeId removed = followers[0];
  const raft::NodeId behind = followers[1];  // catches up by a snapshot after the removal
  cluster.Crash(removed);
  cluster.Crash(behind);
  Request remove = Typed(RequestType::kMemberRemove);
  remove.member.id = removed;
  CallOk(cluster, leader, remove);
  for (raft::NodeId id : {leader, followers[2], followers[3]}) {
    EXPECT_TRUE(cluster.server(id).IsMemberRemoved(removed)) << "member " << id;
    EXPECT_FALSE(cluster.server(id).IsMemberRemoved(behind)) << "member " << id;
  }
  for (int i = 0; i < 40; ++i) CallOk(cluster, leader, PutRequest("k" + std::to_string(i), "v"));

  // `behind` never applies the removal's entry (compacted): the snapshot tells it.
  const probe::Counts before_restore = probe::Snapshot();
  cluster.Restart(behind);
  ASSERT_TRUE(CaughtUp(cluster, {behind}));
  EXPECT_GT(probe::Since(before_restore)[static_cast<size_t>(probe::Id::server_snapshot_restored)],
            0u);
  EXPECT_TRUE(cluster.server(behind).IsMemberRemoved(removed));

  // A removed member's vote of a much higher term, straight to the leader: dropped, and
  // answered kMemberRemoved, which the host hands back to the sender (a 410 Gone).
  const raft::Term term = cluster.server(leader).hard_state().term;
  raft::Message vote;
  vote.type = raft::MessageType::kVote;
  vote.from = removed;
  vote.to = leader;
  vote.term = term + 100;
  vote.log_term = term + 99;
  vote.index = cluster.server(leader).last_index() + 100;
  const probe::Counts before_vote = probe::Snapshot();
  const absl::Status stepped = cluster.server(leader).Step(vote);
  EXPECT_EQ(CodeOf(stepped), ErrorCode::kMemberRemoved) << stepped;
  EXPECT_NE(stepped.message().find("has been permanently removed from the cluster"),
            absl::string_view::npos)
      << stepped;
  EXPECT_EQ(probe::Since(
                before_vote)[static_cast<size_t>(probe::Id::server_removed_member_message_dropped)],
            1u);
  EXPECT_TRUE(cluster.server(leader).is_leader());
  EXPECT_EQ(cluster.server(leader).hard_state().term, term);

  // The removed member itself restarts, still a voter in its own eyes, and campaigns for many
  // election timeouts: the leader keeps its term and leadership and serves writes.
  cluster.Restart(removed);
  const probe::Counts before_campaigns = probe::Snapshot();
  cluster.TickAll(200);
  EXPECT_GT(cluster.server(removed).hard_state().term, term + 3);  // it did campaign
  EXPECT_GT(
      probe::Since(
          before_campaigns)[static_cast<size_t>(probe::Id::server_removed_member_message_dropped)],
      0u);
  EXPECT_EQ(cluster.Leader(), leader);
  for (raft::NodeId id : {leader, behind, followers[2], followers[3]}) {
    EXPECT_EQ(cluster.server(id).hard_state().term, term) << "member " << id;
  }
  CallOk(cluster, leader, PutRequest("after", "v"));

  // The removed set is durable: a restarted member still knows it.
  const raft::NodeId restarted = followers[2];
  cluster.Crash(restarted);
  cluster.Restart(restarted);
  EXPECT_TRUE(cluster.server(restarted).IsMemberRemoved(removed));
  EXPECT_FALSE(cluster.server(restarted).IsMemberRemoved(leader));
  cluster.TickAll(50);
  EXPECT_EQ(cluster.Leader(), leader);
  EXPECT_EQ(cluster.server(restarted).hard_state().term, term);
}

// A replaced member is removed once the joint configuration is left, on every member.
TEST(MembershipTest, AReplacedMemberIsRemovedWhenTheJointConfigurationIsLeft) {
  ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  const raft::NodeId old_id = FollowerOf(cluster, leader);
  const Response response = CallOk(cluster, leader, Replace(old_id, "m4", {"mem://4"}));
  cluster.StartJoiner(response.member.id);
  ASSERT_TRUE(CaughtUp(cluster, {response.member.id}));
  for (raft::NodeId id : cluster.ids()) {
    if (id == old_id) continue;
    EXPECT_TRUE(cluster.server(id).IsMemberRemoved(old_id)) << "member " << id;
    EXPECT_FALSE(cluster.server(id).IsMemberRemoved(response.member.id)) << "member " << id;
  }
}

}  // namespace
}  // namespace kvstore::server
