// Behaviours of the server core that a review found at risk, one test each, under a comment that
// says what must hold, why, and where the server does it.
//
// They run on a small driver of their own (Net below) rather than ServerCluster: it is the same
// loop (GetReady, persist, send, respond, Advance, OnPersisted) but lets a test drop chosen
// messages and stop between two Readies of one member, which the scenarios need.

#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/errors.h"
#include "core/mvcc/backend.h"
#include "core/raft/check.h"
#include "core/raft/testing/cluster.h"
#include "core/server/requests.pb.h"
#include "core/server/server.h"
#include "core/server/testing/server_cluster.h"
#include "gtest/gtest.h"

namespace kvstore::server {
namespace {

using raft::Message;
using raft::MessageType;
using raft::NodeId;
using testing::GetRequest;
using testing::PutRequest;

struct Peer {
  std::unique_ptr<Server> server;
  mvcc::MemoryBackend backend;
  raft::testing::MemoryStorage log;
  std::map<RequestId, Response> responses;
  bool up = true;
};

class Net {
 public:
  using ConfigFn = std::function<void(ServerConfig&)>;
  // Returns true to drop the message (checked at delivery).
  using DropFn = std::function<bool(const Message&)>;

  Net(std::vector<NodeId> ids, ConfigFn configure) : configure_(std::move(configure)) {
    std::vector<Member> founding;
    for (NodeId id : ids) {
      founding.push_back(Member{id, absl::StrCat("m", id), {absl::StrCat("mem://", id)}, false});
    }
    for (const Member& m : founding) {
      raft::RestartState restart = BootstrapState(founding);
      raft::PersistRequest bootstrap;
      bootstrap.hard_state = restart.hard_state;
      bootstrap.entries = restart.entries;
      peers_[m.id].log.Write(bootstrap);
      Start(m.id, std::move(restart), founding);
    }
    Stabilize();
  }

  Peer& peer(NodeId id) { return peers_.at(id); }
  Server& server(NodeId id) { return *peers_.at(id).server; }

  // Drop every message to or from `id` (on top of `drop`).
  void Isolate(NodeId id) { isolated_ = id; }
  void Heal() { isolated_ = raft::kNoNode; }
  DropFn drop;

  // Carries out one Ready of `id`, as ServerCluster does.
  bool ProcessReady(NodeId id) {
    Peer& p = peers_.at(id);
    if (!p.up || !p.server->HasReady()) return false;
    const Ready& ready = p.server->GetReady();
    p.log.Write(ready.raft->persist);
    for (const Message& m : ready.raft->messages) in_flight_.push_back(m);
    for (const Response& r : ready.responses) p.responses[r.request_id] = r;
    const uint64_t persist_id = ready.raft->persist.id;
    p.server->Advance();
    if (persist_id != 0) p.server->OnPersisted(persist_id);
    return true;
  }

  // Processes readies and delivers messages until quiet, or until `stop` (checked after each
  // delivery round) holds; returns whether it stopped on `stop`.
  bool Stabilize(const std::function<bool()>& stop = nullptr) {
    for (int round = 0; round < 100000; ++round) {
      bool progress = false;
      for (auto& [id, p] : peers_) {
        while (ProcessReady(id)) progress = true;
      }
      std::vector<Message> batch;
      batch.swap(in_flight_);
      for (Message& m : batch) {
        if (Dropped(m)) continue;
        progress = true;
        (void)peers_.at(m.to).server->Step(std::move(m));
      }
      if (stop && stop()) return true;
      if (!progress) return false;
    }
    RAFT_CHECK(false) << "net did not stabilize";
    return false;
  }

  bool TickAll(int rounds = 1, const std::function<bool()>& stop = nullptr) {
    for (int i = 0; i < rounds; ++i) {
      for (auto& [id, p] : peers_) {
        if (p.up) p.server->Tick();
      }
      if (Stabilize(stop)) return true;
    }
    return false;
  }

  void Tick(const std::vector<NodeId>& ids) {
    for (NodeId id : ids) {
      if (peers_.at(id).up) peers_.at(id).server->Tick();
    }
    Stabilize();
  }

  NodeId Leader() const {
    for (const auto& [id, p] : peers_) {
      if (p.up && p.server->is_leader()) return id;
    }
    return raft::kNoNode;
  }

  NodeId WaitForLeader(const std::vector<NodeId>& among, int max_rounds = 300) {
    for (int i = 0; i < max_rounds; ++i) {
      for (NodeId id : among) {
        if (peers_.at(id).up && peers_.at(id).server->is_leader()) return id;
      }
      Tick(among);
    }
    return raft::kNoNode;
  }

  std::optional<Response> Call(NodeId id, Request request, int max_rounds = 100) {
    const RequestId rid = server(id).Submit(std::move(request));
    for (int round = 0; round <= max_rounds; ++round) {
      Stabilize();
      auto it = peers_.at(id).responses.find(rid);
      if (it != peers_.at(id).responses.end()) return it->second;
      TickAll();
    }
    return std::nullopt;
  }

  void Crash(NodeId id) {
    Peer& p = peers_.at(id);
    p.up = false;
    p.server.reset();
    p.backend.Crash();
    p.responses.clear();
  }

  // A new, empty member (to be added with kMemberAdd under this id).
  void StartJoiner(NodeId id) { Start(id, raft::RestartState{}, {}); }

  // As ServerCluster::Restart and sim::Simulation::Restart do it.
  void Restart(NodeId id) {
    Peer& p = peers_.at(id);
    raft::RestartState restart = p.log.Restart(0);
    if (restart.snapshot != nullptr) restart.applied = restart.snapshot->metadata.index;
    Start(id, std::move(restart), {});
  }

 private:
  void Start(NodeId id, raft::RestartState restart, std::vector<Member> founding) {
    ServerConfig config;
    config.id = id;
    config.random_seed = id * 0x9E3779B97F4A7C15ull;
    if (configure_) configure_(config);
    Peer& p = peers_[id];
    auto server = Server::Create(config, &p.backend, std::move(restart), std::move(founding));
    RAFT_CHECK(server.ok()) << "member " << id << ": " << server.status().ToString();
    p.server = std::move(*server);
    p.up = true;
  }

  bool Dropped(const Message& m) const {
    auto it = peers_.find(m.to);
    if (it == peers_.end() || !it->second.up) return true;
    if (isolated_ != raft::kNoNode && (m.from == isolated_ || m.to == isolated_)) return true;
    return drop && drop(m);
  }

  ConfigFn configure_;
  std::map<NodeId, Peer> peers_;
  std::vector<Message> in_flight_;
  NodeId isolated_ = raft::kNoNode;
};

NodeId OtherThan(std::initializer_list<NodeId> excluded) {
  for (NodeId id : {1, 2, 3}) {
    bool skip = false;
    for (NodeId x : excluded) skip = skip || x == id;
    if (!skip) return id;
  }
  return raft::kNoNode;
}

// Value of `key` as `id` serves it from local state (serializable read), or "" when absent.
std::string LocalValue(Net& net, NodeId id, const std::string& key) {
  auto r = net.Call(id, GetRequest(key, /*serializable=*/true), 0);
  if (!r.has_value() || !r->status.ok() || r->range.kvs.empty()) return "";
  return r->range.kvs.front().value;
}

void SmallSnapshots(ServerConfig& c) {
  c.snapshot_every_entries = 5;
  c.snapshot_catch_up_entries = 0;
}

// A follower persists a snapshot it received in one Ready and applies it to its backend only in a
// later one (raft::Ready::apply_snapshot). After a crash between the two, the log storage holds the
// snapshot while the backend's consistent index is older, and Raft resumes with applied at least at
// the snapshot's index. So Init restores the backend from the snapshot first, as etcd's bootstrap
// opens the snapshot's backend when the consistent index is behind it (recoverSnapshotBackend);
// otherwise the snapshot's contents would never be applied and the member would silently diverge.
// server.cc Server::Impl::Init.
TEST(ReviewServerTest, CrashBetweenPersistingAndApplyingSnapshotKeepsItsData) {
  Net net({1, 2, 3}, SmallSnapshots);
  const NodeId leader = net.WaitForLeader({1, 2, 3});
  ASSERT_NE(leader, raft::kNoNode);
  const NodeId lagging = OtherThan({leader});
  net.Isolate(lagging);
  for (int i = 0; i < 12; ++i) {
    auto r = net.Call(leader, PutRequest(absl::StrCat("k", i), "v"));
    ASSERT_TRUE(r.has_value() && r->status.ok());
  }
  ASSERT_EQ(LocalValue(net, leader, "k0"), "v");
  ASSERT_EQ(LocalValue(net, lagging, "k0"), "");

  // Rejoin; stop as soon as the snapshot reaches the lagging member.
  bool snapshot_delivered = false;
  net.drop = [&](const Message& m) {
    if (m.type == MessageType::kSnap && m.to == lagging) snapshot_delivered = true;
    return false;
  };
  net.Heal();
  ASSERT_TRUE(net.TickAll(50, [&] { return snapshot_delivered; }));
  net.drop = nullptr;
  // One Ready: the snapshot is written to the Raft log storage (and acknowledged).
  ASSERT_TRUE(net.ProcessReady(lagging));
  ASSERT_NE(net.peer(lagging).log.snapshot(), nullptr);
  const raft::Index snapshot_index = net.peer(lagging).log.snapshot()->metadata.index;
  ASSERT_LT(net.server(lagging).applied_index(), snapshot_index) << "not applied yet";

  net.Crash(lagging);
  net.Restart(lagging);
  // The crash also lost the snapshot's acknowledgement (released only by OnPersisted, sent with
  // the next Ready), which by itself strands the leader's progress for the member in the
  // snapshot state (see LaggingMemberCatchesUpAfterALostSnapshot). Hand leadership to
  // the third member so replication to the restarted one starts afresh.
  const NodeId third = OtherThan({leader, lagging});
  Request move;
  move.type = RequestType::kMoveLeader;
  move.member.id = third;
  ASSERT_TRUE(net.Call(leader, move).has_value());
  net.TickAll(5);
  ASSERT_EQ(net.Leader(), third);
  ASSERT_TRUE(net.Call(third, PutRequest("after", "v")).has_value());
  net.TickAll(5);
  ASSERT_EQ(LocalValue(net, lagging, "after"), "v") << "the member caught up after restart";
  EXPECT_EQ(LocalValue(net, lagging, "k0"), "v")
      << "key k0 (inside the snapshot at " << snapshot_index << ") is missing on member "
      << lagging;
  EXPECT_EQ(net.server(lagging).store().current_revision(),
            net.server(third).store().current_revision());
}

// A member that restarts knows the term of its applied entry (Init reads it from the log), not only
// its index, and dates the snapshots it takes or sends by it. A member that leads right after a
// restart, before applying anything new, otherwise sends a snapshot dated term 0 that matches no
// log (found by sim fuzz seed 23 on 5 nodes). server.cc Server::Impl::Init.
TEST(ReviewServerTest, RestartedMemberLeadsAndSendsASnapshotBeforeApplyingAnything) {
  Net net({1, 2, 3, 4, 5}, SmallSnapshots);
  const NodeId leader = net.WaitForLeader({1, 2, 3, 4, 5});
  ASSERT_NE(leader, raft::kNoNode);
  std::vector<NodeId> others;
  for (NodeId id : {1, 2, 3, 4, 5}) {
    if (id != leader) others.push_back(id);
  }
  const NodeId restarted = others[0];
  const NodeId lagging = others[1];
  const auto cut_off = [](NodeId id) {
    return [id](const Message& m) { return m.from == id || m.to == id; };
  };
  // Both miss a dozen writes; the leader compacts past them.
  const auto lagging_cut = cut_off(lagging);
  const auto restarted_cut = cut_off(restarted);
  net.drop = [&](const Message& m) { return lagging_cut(m) || restarted_cut(m); };
  for (int i = 0; i < 12; ++i) {
    auto r = net.Call(leader, PutRequest(absl::StrCat("k", i), "v"));
    ASSERT_TRUE(r.has_value() && r->status.ok());
  }
  // One comes back, catches up by snapshot, and restarts with it in its log storage.
  net.drop = lagging_cut;
  ASSERT_TRUE(net.Call(leader, PutRequest("caught-up", "v")).has_value());
  net.TickAll(10);
  ASSERT_NE(net.peer(restarted).log.snapshot(), nullptr);
  ASSERT_EQ(LocalValue(net, restarted, "caught-up"), "v");
  net.Crash(restarted);
  net.Restart(restarted);
  // It takes over, but no acknowledgement of its first entry reaches it, so it applies nothing;
  // the lagging member comes back and needs a snapshot from it.
  net.drop = [&](const Message& m) {
    if (m.to == restarted && m.type == MessageType::kAppResp && m.from != lagging) return true;
    return lagging_cut(m) && net.Leader() != restarted;
  };
  Request move;
  move.type = RequestType::kMoveLeader;
  move.member.id = restarted;
  ASSERT_TRUE(net.Call(leader, move).has_value());
  ASSERT_TRUE(net.TickAll(20, [&] {
    return net.Leader() == restarted && net.peer(lagging).log.snapshot() != nullptr;
  })) << "the new leader sent the lagging member no snapshot";
  const raft::Snapshot& sent = *net.peer(lagging).log.snapshot();
  EXPECT_EQ(sent.metadata.term, net.server(restarted).LogTerm(sent.metadata.index));
  EXPECT_GT(sent.metadata.term, 0u);
  // Everything heals: the lagging member holds what it missed.
  net.drop = nullptr;
  ASSERT_TRUE(net.Call(net.WaitForLeader({1, 2, 3, 4, 5}), PutRequest("after", "v")).has_value());
  net.TickAll(10);
  EXPECT_EQ(LocalValue(net, lagging, "k0"), "v");
  EXPECT_EQ(LocalValue(net, lagging, "after"), "v");
}

// Every bucket of `id`'s backend but its member-local request epoch, as (bucket, key, value).
std::vector<std::string> BackendContents(Net& net, NodeId id) {
  std::vector<std::string> out;
  for (int bucket = 0; bucket < mvcc::kBucketCount; ++bucket) {
    net.peer(id).backend.Range(static_cast<mvcc::Bucket>(bucket), "", "",
                               [&](absl::string_view key, absl::string_view value) {
                                 if (key != "request_epoch") {
                                   out.push_back(absl::StrCat(bucket, "/", key, "=", value));
                                 }
                                 return true;
                               });
  }
  return out;
}

// RestoreSnapshot writes only what differs from the snapshot: keys the member holds but the
// snapshot lacks (revisions compacted while it lagged, a revoked lease) go, changed values are
// rewritten, and the member ends with exactly the leader's backend.
TEST(ReviewServerTest, SnapshotRestoreLeavesExactlyTheLeadersBackend) {
  Net net({1, 2, 3}, SmallSnapshots);
  const NodeId leader = net.WaitForLeader({1, 2, 3});
  ASSERT_NE(leader, raft::kNoNode);
  const NodeId lagging = OtherThan({leader});
  Request grant;
  grant.type = RequestType::kLeaseGrant;
  grant.ttl_seconds = 600;
  auto granted = net.Call(leader, grant);
  ASSERT_TRUE(granted.has_value() && granted->status.ok());
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(net.Call(leader, PutRequest(absl::StrCat("k", i), "old")).has_value());
  }
  ASSERT_EQ(LocalValue(net, lagging, "k5"), "old");
  net.Isolate(lagging);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(net.Call(leader, PutRequest(absl::StrCat("k", i), "new")).has_value());
  }
  ASSERT_TRUE(net.Call(leader, testing::DeleteRequest("k0")).has_value());
  Request compact;
  compact.type = RequestType::kCompact;
  compact.revision = net.server(leader).store().current_revision();
  auto compacted = net.Call(leader, compact);
  ASSERT_TRUE(compacted.has_value() && compacted->status.ok()) << compacted->status;
  Request revoke;
  revoke.type = RequestType::kLeaseRevoke;
  revoke.lease_id = granted->lease.id;
  auto revoked = net.Call(leader, revoke);
  ASSERT_TRUE(revoked.has_value() && revoked->status.ok());
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(net.Call(leader, PutRequest(absl::StrCat("pad", i), "v")).has_value());
  }
  bool snapshot_sent = false;
  net.drop = [&](const Message& m) {
    snapshot_sent |= m.type == MessageType::kSnap && m.to == lagging;
    return false;
  };
  net.Heal();
  net.TickAll(10);
  ASSERT_TRUE(snapshot_sent) << "the member caught up from the log, not a snapshot";
  EXPECT_EQ(LocalValue(net, lagging, "k0"), "");
  EXPECT_EQ(LocalValue(net, lagging, "k1"), "new");
  EXPECT_EQ(net.server(lagging).store().compact_revision(),
            net.server(leader).store().compact_revision());
  EXPECT_EQ(BackendContents(net, lagging), BackendContents(net, leader));
}

// A write this member proposed as leader at index i can reach it inside a snapshot: it lost
// leadership, a new leader committed entry i and compacted past it, and the member caught up by
// snapshot. The member cannot tell whether the snapshot holds its entry, so the write's outcome is
// unknown (TIMEOUT). It must not answer LEADERSHIP_CHANGED ("replaced after a leader change"),
// which clients and the simulator read as "not applied" and retry, applying the write twice.
// server.cc Server::Impl::RestoreSnapshot.
TEST(ReviewServerTest, WriteCommittedByNextLeaderAndReceivedBySnapshotIsNotReportedLost) {
  Net net({1, 2, 3}, [](ServerConfig& c) {
    SmallSnapshots(c);
    c.request_timeout_ticks = 100000;  // keep the write pending
  });
  const NodeId old_leader = net.WaitForLeader({1, 2, 3});
  ASSERT_NE(old_leader, raft::kNoNode);
  ASSERT_TRUE(net.Call(old_leader, PutRequest("warm", "up")).has_value());

  // The followers persist the write; their acknowledgements are lost, so the old leader never
  // learns it committed.
  net.drop = [&](const Message& m) {
    return m.to == old_leader && m.type == MessageType::kAppResp;
  };
  const RequestId write = net.server(old_leader).Submit(PutRequest("p", "1"));
  net.Stabilize();
  ASSERT_EQ(net.peer(old_leader).responses.count(write), 0u);

  // The old leader is cut off; the others elect a leader (it has the write) and move on far
  // enough to compact past it.
  net.drop = nullptr;
  net.Isolate(old_leader);
  const NodeId a = OtherThan({old_leader});
  const NodeId b = OtherThan({old_leader, a});
  const NodeId new_leader = net.WaitForLeader({a, b});
  ASSERT_NE(new_leader, raft::kNoNode);
  for (int i = 0; i < 12; ++i) {
    auto r = net.Call(new_leader, PutRequest(absl::StrCat("k", i), "v"));
    ASSERT_TRUE(r.has_value() && r->status.ok());
  }
  ASSERT_EQ(LocalValue(net, new_leader, "p"), "1") << "the write committed";

  // The old leader rejoins and catches up by snapshot; then one more entry applies.
  bool snapshot_received = false;
  net.drop = [&](const Message& m) {
    snapshot_received |= m.type == MessageType::kSnap && m.to == old_leader;
    return false;
  };
  net.Heal();
  net.TickAll(30);
  ASSERT_TRUE(net.Call(net.Leader(), PutRequest("after", "v")).has_value());
  net.TickAll(5);
  ASSERT_EQ(LocalValue(net, old_leader, "p"), "1");
  ASSERT_TRUE(snapshot_received) << "the old leader caught up from the log, not a snapshot";
  // It cannot tell whether its own entry is inside the snapshot, so it answers "outcome unknown"
  // (a timeout) rather than "replaced", which would invite a retry that applies the write twice.
  auto it = net.peer(old_leader).responses.find(write);
  ASSERT_NE(it, net.peer(old_leader).responses.end()) << "the write was never answered";
  EXPECT_EQ(CodeOf(it->second.status), ErrorCode::kTimeout)
      << "the write was applied (p=1 everywhere) but its proposer answered " << it->second.status;
}

// A snapshot message to a lagging member can be lost. The leader must send it again (the server's
// half of //core/raft:review_test ReviewSnapshotTest.LostSnapshotMessageIsEventuallyResent):
// a leader that kept the member's progress in the snapshot state forever, kept in place by
// check-quorum, would leave the member behind for good.
TEST(ReviewServerTest, LaggingMemberCatchesUpAfterALostSnapshot) {
  Net net({1, 2, 3}, SmallSnapshots);
  const NodeId leader = net.WaitForLeader({1, 2, 3});
  ASSERT_NE(leader, raft::kNoNode);
  const NodeId lagging = OtherThan({leader});
  net.Isolate(lagging);
  for (int i = 0; i < 12; ++i) {
    auto r = net.Call(leader, PutRequest(absl::StrCat("k", i), "v"));
    ASSERT_TRUE(r.has_value() && r->status.ok());
  }
  int dropped = 0;
  net.drop = [&](const Message& m) {
    if (m.type != MessageType::kSnap || dropped > 0) return false;
    ++dropped;
    return true;
  };
  net.Heal();
  net.TickAll(200);
  ASSERT_EQ(dropped, 1);
  ASSERT_EQ(net.Leader(), leader);
  EXPECT_EQ(net.server(lagging).applied_index(), net.server(leader).applied_index());
  EXPECT_EQ(LocalValue(net, lagging, "k0"), "v");
}

// Whether `m` carries a NOSPACE alarm proposal.
bool CarriesAlarm(const Message& m) {
  for (const raft::Entry& e : m.entries) {
    if (e.type != raft::EntryType::kNormal || e.data.empty()) continue;
    pb::InternalRequest request;
    if (request.ParseFromArray(e.data.data(), static_cast<int>(e.data.size())) &&
        request.has_alarm()) {
      return true;
    }
  }
  return false;
}

// A leader that refuses a write for its quota proposes its NOSPACE alarm (etcd's quotaAlarmer).
// The proposal can be lost: the leader is deposed before it commits and its uncommitted tail is
// overwritten. Nothing latches the proposal (an earlier version latched it until a leadership
// change, and a latch that stayed set kept the member from ever raising the alarm): the next
// refused write proposes it again, as etcd's quotaAlarmer does for every refused write (here the
// interim leader's backend is under the quota after a defragment, so no one else raises it).
TEST(ReviewServerTest, LeaderPastQuotaRaisesAlarmAgainAfterItsProposalWasLost) {
  constexpr uint64_t kQuota = 120000;
  Net net({1, 2, 3}, [](ServerConfig& c) { c.quota_bytes = kQuota; });
  const NodeId leader = net.WaitForLeader({1, 2, 3});
  ASSERT_NE(leader, raft::kNoNode);
  const NodeId a = OtherThan({leader});
  const NodeId b = OtherThan({leader, a});
  // 100 kB of garbage in every backend (overwritten, then compacted away: free until a
  // defragment); the two followers defragment, the leader does not.
  ASSERT_TRUE(net.Call(leader, PutRequest("big", std::string(100000, 'x')))->status.ok());
  ASSERT_TRUE(net.Call(leader, PutRequest("big", "s"))->status.ok());
  Request compact;
  compact.type = RequestType::kCompact;
  compact.revision = net.server(leader).store().current_revision();
  ASSERT_TRUE(net.Call(leader, compact)->status.ok());
  Request defragment;
  defragment.type = RequestType::kDefragment;
  ASSERT_TRUE(net.Call(a, defragment)->status.ok());
  ASSERT_TRUE(net.Call(b, defragment)->status.ok());
  ASSERT_LT(net.peer(leader).backend.SizeBytes(), kQuota);

  // 30 kB more would put the leader (only) past the quota: refused, and its alarm proposal is lost.
  int alarms_dropped = 0;
  net.drop = [&](const Message& m) {
    if (m.from != leader || !CarriesAlarm(m)) return false;
    ++alarms_dropped;
    return true;
  };
  auto refused = net.Call(leader, PutRequest("medium", std::string(30000, 'y')));
  ASSERT_TRUE(refused.has_value());
  ASSERT_EQ(CodeOf(refused->status), ErrorCode::kNoSpace) << refused->status;
  net.TickAll(3);
  ASSERT_GT(alarms_dropped, 0);
  ASSERT_LT(net.peer(a).backend.SizeBytes(), kQuota);
  ASSERT_LT(net.peer(b).backend.SizeBytes(), kQuota);

  // The leader is deposed; its uncommitted alarm entry is overwritten by the new leader's log.
  net.Isolate(leader);
  const NodeId interim = net.WaitForLeader({a, b});
  ASSERT_NE(interim, raft::kNoNode);
  net.drop = nullptr;
  net.Heal();
  net.TickAll(20);

  // Leadership comes back to the member whose backend is nearly full.
  Request move;
  move.type = RequestType::kMoveLeader;
  move.member.id = leader;
  ASSERT_TRUE(net.Call(interim, move)->status.ok());
  net.TickAll(10);
  ASSERT_EQ(net.Leader(), leader);
  ASSERT_TRUE(net.server(leader).Alarms().empty()) << "the lost alarm entry applied";
  // The next write that does not fit is refused and raises the alarm again.
  auto put = net.Call(leader, PutRequest("more", std::string(30000, 'z')));
  ASSERT_TRUE(put.has_value());
  EXPECT_EQ(CodeOf(put->status), ErrorCode::kNoSpace) << put->status;
  net.TickAll(3);
  for (NodeId id : {leader, a, b}) {
    EXPECT_FALSE(net.server(id).Alarms().empty())
        << "member " << id << ": leader " << leader << " refused a write for its quota but "
        << "NOSPACE was never raised";
  }
}

// A member added after the leader's latest snapshot must be able to join once the log before the
// add is compacted. A snapshot whose configuration predates the add is refused by the joiner ("from
// a cluster we are not part of"), and a leader that offered only that one would leave its progress
// for the joiner in the snapshot state forever. As etcd does (createMergedSnapshotMessage), the
// snapshot a leader sends is built from its applied state and configuration at send time, so the
// recipient is always in it. server.cc Server::Impl::GetReady (the merged snapshot).
TEST(ReviewServerTest, MemberAddedAfterLatestSnapshotCanJoin) {
  Net net({1, 2, 3}, SmallSnapshots);
  const NodeId leader = net.WaitForLeader({1, 2, 3});
  ASSERT_NE(leader, raft::kNoNode);
  // Write until the leader has just taken a snapshot and compacted up to its applied index.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(net.Call(leader, PutRequest(absl::StrCat("k", i), "v"))->status.ok());
    const raft::Status status = net.server(leader).RaftStatus();
    if (i >= 5 && status.first_index == status.applied + 1) break;
  }
  const raft::Status before = net.server(leader).RaftStatus();
  ASSERT_EQ(before.first_index, before.applied + 1) << "set-up: the log is compacted to applied";

  Request add;
  add.type = RequestType::kMemberAdd;
  add.member.name = "m4";
  add.member.peer_urls = {"mem://4"};
  add.member.is_learner = true;
  auto added = net.Call(leader, add);
  ASSERT_TRUE(added.has_value() && added->status.ok());
  const NodeId joiner = added->member.id;
  net.StartJoiner(joiner);
  // The joiner was not running when the leader first probed it (those messages were lost); hand
  // leadership to another founding member so that a fresh leader probes the running joiner.
  // Nothing new is snapshotted meanwhile.
  int snapshots_delivered = 0;
  net.drop = [&](const Message& m) {
    if (m.type == MessageType::kSnap && m.to == joiner) ++snapshots_delivered;
    return false;
  };
  const NodeId next_leader = OtherThan({leader});
  Request move;
  move.type = RequestType::kMoveLeader;
  move.member.id = next_leader;
  ASSERT_TRUE(net.Call(leader, move)->status.ok());
  net.TickAll(50);
  ASSERT_EQ(net.Leader(), next_leader);
  ASSERT_GE(snapshots_delivered, 1) << "the joiner received a snapshot";
  // More traffic: later snapshots do include the joiner.
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(net.Call(next_leader, PutRequest(absl::StrCat("later", i), "v"))->status.ok());
  }
  net.TickAll(100);
  const raft::Status status = net.server(next_leader).RaftStatus();
  EXPECT_EQ(net.server(joiner).applied_index(), net.server(next_leader).applied_index())
      << "joiner stuck; leader's progress for it: "
      << raft::ProgressStateName(status.progress.at(joiner).state) << ", pending snapshot "
      << status.progress.at(joiner).pending_snapshot << " (added at about index "
      << before.applied + 1 << ")";
}

}  // namespace
}  // namespace kvstore::server

namespace kvstore::server {
namespace {

// Has `follower` forward a put of k=a, lets it apply, then writes k=b through the leader.
// Returns the forwarded proposal, for a test to deliver again later as a duplicate.
raft::Message ApplyForwardedThenOverwrite(testing::ServerCluster& cluster, raft::NodeId leader,
                                          raft::NodeId follower) {
  cluster.server(follower).Submit(testing::PutRequest("k", "a"));
  EXPECT_TRUE(cluster.ProcessReadyOnce(follower));
  std::vector<raft::Message> forwarded;
  for (const raft::Message& m : cluster.in_flight()) {
    if (m.type == raft::MessageType::kProp) forwarded.push_back(m);
  }
  EXPECT_EQ(forwarded.size(), 1u);
  cluster.Stabilize();
  EXPECT_TRUE(cluster.Call(leader, testing::PutRequest("k", "b"))->status.ok());
  cluster.Stabilize();
  return forwarded.empty() ? raft::Message() : forwarded.front();
}

// Every member holds k=b, written twice (a=1, b=2): the duplicate of k=a took no effect.
void ExpectAppliedOnce(testing::ServerCluster& cluster) {
  for (raft::NodeId id : cluster.ids()) {
    auto get = cluster.Call(id, testing::GetRequest("k"));
    ASSERT_TRUE(get.has_value() && get->status.ok());
    ASSERT_EQ(get->range.kvs.size(), 1u);
    EXPECT_EQ(get->range.kvs[0].value, "b") << "member " << id;
    EXPECT_EQ(get->range.kvs[0].version, 2) << "member " << id;
  }
}

// Found by the simulator (fuzz seed 10029, 5 nodes): the network duplicated a proposal a
// follower had forwarded, the leader appended it twice, and the request took effect a second
// time after a later write (a phantom write). A member's request applies at most once.
TEST(ReviewServerTest, DuplicatedForwardedProposalAppliesOnce) {
  testing::ServerCluster cluster({1, 2, 3});
  const raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  const raft::NodeId follower = leader == 1 ? 2 : 1;
  const raft::Message forwarded = ApplyForwardedThenOverwrite(cluster, leader, follower);
  ASSERT_EQ(forwarded.type, raft::MessageType::kProp);

  // The duplicate arrives late.
  cluster.in_flight().push_back(forwarded);
  cluster.Stabilize();
  ExpectAppliedOnce(cluster);
}

// The window of applied request ids is durable (its own backend bucket): a duplicate that
// arrives after every member restarted is still recognised.
TEST(ReviewServerTest, DuplicateAfterRestartAppliesOnce) {
  testing::ServerCluster cluster({1, 2, 3});
  raft::NodeId leader = cluster.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  const raft::NodeId follower = leader == 1 ? 2 : 1;
  raft::Message duplicate = ApplyForwardedThenOverwrite(cluster, leader, follower);
  ASSERT_EQ(duplicate.type, raft::MessageType::kProp);

  for (raft::NodeId id : cluster.ids()) cluster.Crash(id);
  for (raft::NodeId id : cluster.ids()) cluster.Restart(id);
  leader = cluster.WaitForLeader();
  ASSERT_NE(leader, raft::kNoNode);
  // Forwarded to whoever leads now, from a member that is not it.
  duplicate.to = leader;
  duplicate.from = leader == follower ? (leader == 3 ? 1 : 3) : follower;
  cluster.in_flight().push_back(duplicate);
  cluster.Stabilize();
  ExpectAppliedOnce(cluster);
}

}  // namespace
}  // namespace kvstore::server
