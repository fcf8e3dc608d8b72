// Determinism and safety under a seeded random exchange among five nodes.
//
// A splitmix64 generator picks each step: tick a node, carry out a node's Ready, deliver, drop,
// duplicate or reorder an in-flight message, propose, crash or restart a node, transfer
// leadership, request a read index, or change the membership (a sixth node joins as a learner,
// is promoted, then removed). Every effect (each Ready's soft and hard state, persisted entries,
// messages, committed entries, read states) is folded into an FNV-1a 64 hash of its rendering.
//
// Determinism: the same seed gives a byte-identical hash; different seeds give different hashes.
// Safety, checked after every step: at most one leader per term (Raft §5.2, Election Safety);
// every node applies, index by index, the same entries as every other node (§5.4.3, State
// Machine Safety); a node's persisted term and commit never decrease. Liveness at the end: once
// every node is back and the network heals, a leader is elected and a last proposal is applied
// by every member.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "core/raft/raft.h"
#include "core/raft/testing/cluster.h"
#include "core/raft/types.h"
#include "gtest/gtest.h"

namespace kvstore::raft {
namespace {

using testing::Cluster;
using testing::NodeRecord;

constexpr int kStepCount = 3000;
constexpr uint64_t kSeedCount = 20;
// CI's sanitized pass (tools/fuzz.sh --test sets KVSTORE_SANITIZED) checks the first 6 seeds the
// same way: ASan and UBSan make each several times slower, and the plain pass checks all 20.
constexpr uint64_t kSanitizedSeedCount = 6;
// The network holds at most this many messages; beyond it the oldest is lost.
constexpr size_t kMaxInFlightMessages = 256;
// At most this many nodes are down at once, so a quorum usually exists.
constexpr int kMaxCrashedNodes = 2;
// Rounds of (tick every node, stabilize) allowed for the healed cluster to elect a leader.
constexpr int kMaxHealRounds = 100;
constexpr NodeId kJoiner = 6;

// splitmix64 (Steele, Lea, Flood 2014): tiny, and identical on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform enough in [0, bound) for bound far below 2^64.
  uint64_t Below(uint64_t bound) { return Next() % bound; }

 private:
  uint64_t state_;
};

// FNV-1a 64 over bytes; integers are fed as 8 little-endian bytes so the hash is the same on
// every platform (std::hash promises nothing of the kind).
class Fnv1a64 {
 public:
  void Add(absl::string_view bytes) {
    for (unsigned char c : bytes) {
      hash_ ^= c;
      hash_ *= 0x100000001B3ull;
    }
    // A separator, so ("ab", "c") and ("a", "bc") differ.
    hash_ ^= 0xFF;
    hash_ *= 0x100000001B3ull;
  }
  void Add(uint64_t value) {
    for (int i = 0; i < 8; ++i) {
      hash_ ^= (value >> (8 * i)) & 0xFF;
      hash_ *= 0x100000001B3ull;
    }
  }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xCBF29CE484222325ull;
};

std::string DescribeHardState(const HardState& hard_state) {
  return absl::StrCat("term=", hard_state.term, " vote=", hard_state.vote,
                      " commit=", hard_state.commit);
}

struct RunResult {
  uint64_t hash = 0;
  std::string violation;  // the first safety or liveness violation, empty if none
  Index committed_index = 0;
  int leader_terms = 0;
  int crashes = 0;
  int joiner_state = 0;
};

class RandomExchange {
 public:
  explicit RandomExchange(uint64_t seed, bool trace = false)
      : seed_(seed),
        trace_(trace),
        random_(seed),
        cluster_({1, 2, 3, 4, 5}, {}, [seed](Config& config) {
          config.random_seed = SplitMix64(seed ^ (config.id * 0xD1B54A32D192ED03ull)).Next();
        }) {
    cluster_.set_ready_observer([this](NodeId id, const Ready& ready) { ObserveReady(id, ready); });
    // The founding members applied the bootstrap entries before the observer was installed.
    for (NodeId id : cluster_.ids()) {
      applied_[id] = cluster_.record(id).applied_index;
      for (const Entry& entry : cluster_.record(id).applied) {
        committed_.emplace(entry.index, DescribeEntry(entry));
      }
    }
  }

  RunResult Run() {
    for (step_ = 0; step_ < kStepCount && result_.violation.empty(); ++step_) {
      TakeRandomStep();
      CheckLeaders();
    }
    if (result_.violation.empty()) HealAndCommit();
    result_.hash = hash_.value();
    result_.committed_index = committed_.empty() ? 0 : committed_.rbegin()->first;
    result_.leader_terms = static_cast<int>(leaders_.size());
    result_.joiner_state = joiner_state_;
    return result_;
  }

 private:
  // Every effect and action goes through here: hashed, and printed when tracing.
  void Emit(absl::string_view line) {
    hash_.Add(line);
    if (trace_) {
      absl::FPrintF(stderr, "%d: %.*s\n", step_, static_cast<int>(line.size()), line.data());
    }
  }
  void Record(absl::string_view action, uint64_t a = 0, uint64_t b = 0) {
    Emit(absl::StrCat(action, " ", a, " ", b));
  }
  void EmitStatus(const absl::Status& status) {
    Emit(status.ok() ? "ok" : absl::StrCat("status ", status.ToString()));
  }

  void Violation(const std::string& what) {
    if (!result_.violation.empty()) return;
    result_.violation = absl::StrCat("seed ", seed_, " step ", step_, ": ", what);
  }

  std::vector<NodeId> LiveNodes() {
    std::vector<NodeId> live;
    for (NodeId id : cluster_.ids()) {
      if (!cluster_.record(id).crashed) live.push_back(id);
    }
    return live;
  }

  NodeId PickLive() {
    std::vector<NodeId> live = LiveNodes();
    return live.empty() ? kNoNode : live[random_.Below(live.size())];
  }

  // The live node that believes it leads at the highest term, or kNoNode.
  NodeId CurrentLeader() {
    NodeId leader = kNoNode;
    Term leader_term = 0;
    for (NodeId id : LiveNodes()) {
      const Status status = cluster_.node(id).GetStatus();
      if (status.soft_state.role == Role::kLeader && status.hard_state.term >= leader_term) {
        leader = id;
        leader_term = status.hard_state.term;
      }
    }
    return leader;
  }

  void TakeRandomStep() {
    std::vector<Message>& in_flight = cluster_.in_flight();
    if (in_flight.size() > kMaxInFlightMessages) {
      Record("overflow");
      in_flight.erase(in_flight.begin());
    }
    const uint64_t roll = random_.Below(1000);
    if (roll < 200) {
      const NodeId id = PickLive();
      Record("tick", id);
      if (id != kNoNode) cluster_.Tick(id);
    } else if (roll < 420) {
      const NodeId id = PickLive();
      Record("ready", id);
      if (id != kNoNode) cluster_.ProcessReady(id);
    } else if (roll < 750) {
      if (in_flight.empty()) return Record("deliver-none");
      const size_t at = random_.Below(in_flight.size());
      Message message = std::move(in_flight[at]);
      in_flight.erase(in_flight.begin() + at);
      Record("deliver", at);
      Emit(DescribeMessage(message));
      NodeRecord& to = cluster_.record(message.to);
      if (to.crashed) return Violation("a message is in flight to a crashed node");
      EmitStatus(to.node->Step(std::move(message)));
    } else if (roll < 780) {
      if (in_flight.empty()) return Record("drop-none");
      const size_t at = random_.Below(in_flight.size());
      Record("drop", at);
      in_flight.erase(in_flight.begin() + at);
    } else if (roll < 800) {
      if (in_flight.empty()) return Record("duplicate-none");
      const size_t at = random_.Below(in_flight.size());
      Record("duplicate", at);
      in_flight.push_back(in_flight[at]);
    } else if (roll < 820) {
      if (in_flight.size() < 2) return Record("reorder-none");
      const size_t a = random_.Below(in_flight.size());
      const size_t b = random_.Below(in_flight.size());
      Record("reorder", a, b);
      std::swap(in_flight[a], in_flight[b]);
    } else if (roll < 940) {
      const NodeId id = PickLive();
      if (id == kNoNode) return Record("propose-none");
      const std::string data = absl::StrCat("s", seed_, "-p", ++proposals_);
      Record("propose", id);
      Emit(data);
      EmitStatus(cluster_.node(id).Propose(Bytes(data)));
    } else if (roll < 944) {
      const std::vector<NodeId> live = LiveNodes();
      if (cluster_.ids().size() - live.size() >= kMaxCrashedNodes) return Record("crash-none");
      const NodeId id = live[random_.Below(live.size())];
      Record("crash", id);
      cluster_.Crash(id);
      ++result_.crashes;
    } else if (roll < 964) {
      std::vector<NodeId> crashed;
      for (NodeId id : cluster_.ids()) {
        if (cluster_.record(id).crashed) crashed.push_back(id);
      }
      if (crashed.empty()) return Record("restart-none");
      const NodeId id = crashed[random_.Below(crashed.size())];
      Record("restart", id);
      Restart(id);
    } else if (roll < 974) {
      const NodeId leader = CurrentLeader();
      const NodeId transferee = 1 + random_.Below(5);
      Record("transfer", leader, transferee);
      if (leader != kNoNode) {
        EmitStatus(cluster_.node(leader).TransferLeader(transferee));
      }
    } else if (roll < 984) {
      const NodeId id = PickLive();
      Record("read-index", id);
      if (id != kNoNode) {
        EmitStatus(cluster_.node(id).ReadIndex(Bytes(absl::StrCat("r", step_))));
      }
    } else {
      ChangeMembership();
    }
  }

  // The joiner goes through learner, voter, removed; each step is proposed on the current leader
  // once the leader has applied the previous one.
  void ChangeMembership() {
    const NodeId leader = CurrentLeader();
    if (leader == kNoNode) return Record("conf-none");
    if (joiner_state_ == 0) {
      cluster_.AddEmptyNode(kJoiner);
      joiner_state_ = 1;
    }
    const ConfState& conf = cluster_.record(leader).conf_state;
    auto contains = [](const std::vector<NodeId>& ids, NodeId id) {
      return std::find(ids.begin(), ids.end(), id) != ids.end();
    };
    const bool learner = contains(conf.learners, kJoiner);
    const bool voter = contains(conf.voters, kJoiner);
    if (learner) joiner_state_ = std::max(joiner_state_, 2);
    if (voter) joiner_state_ = std::max(joiner_state_, 3);
    if (joiner_state_ == 3 && !voter && !learner) joiner_state_ = 4;
    ConfChange change;
    switch (joiner_state_) {
      case 1:
        change.changes.push_back({ConfChangeType::kAddLearner, kJoiner});
        break;
      case 2:
        change.changes.push_back({ConfChangeType::kAddVoter, kJoiner});
        break;
      case 3:
        change.changes.push_back({ConfChangeType::kRemoveNode, kJoiner});
        break;
      default:
        return Record("conf-done");
    }
    Record("conf", leader, static_cast<uint64_t>(joiner_state_));
    EmitStatus(cluster_.node(leader).ProposeConfChange(change));
  }

  void Restart(NodeId id) {
    cluster_.Restart(id);
    // The state machine survives (it applied up to applied_index before the crash).
    applied_[id] = cluster_.record(id).applied_index;
  }

  void ObserveReady(NodeId id, const Ready& ready) {
    Emit(absl::StrCat("ready ", id));
    if (ready.soft_state.has_value()) {
      Emit(absl::StrCat("soft leader=", ready.soft_state->leader,
                        " role=", RoleName(ready.soft_state->role)));
    }
    const PersistRequest& persist = ready.persist;
    Emit(absl::StrCat("persist ", persist.id));
    if (persist.snapshot != nullptr) {
      Emit(absl::StrCat("persist snapshot index=", persist.snapshot->metadata.index,
                        " term=", persist.snapshot->metadata.term, " ",
                        DescribeConfState(persist.snapshot->metadata.conf_state)));
    }
    for (const Entry& entry : persist.entries) Emit(absl::StrCat("append ", DescribeEntry(entry)));
    if (persist.hard_state.has_value()) {
      const HardState& hard_state = *persist.hard_state;
      Emit(DescribeHardState(hard_state));
      HardState& last = hard_states_[id];
      if (hard_state.term < last.term || hard_state.commit < last.commit) {
        Violation(absl::StrCat("node ", id, " persisted ", DescribeHardState(hard_state), " after ",
                               DescribeHardState(last)));
      }
      last = hard_state;
    }
    for (const Message& message : ready.messages) Emit(DescribeMessage(message));
    if (ready.apply_snapshot != nullptr) {
      const Index index = ready.apply_snapshot->metadata.index;
      Emit(absl::StrCat("apply snapshot index=", index));
      if (index < applied_[id]) {
        Violation(absl::StrCat("node ", id, " applies a snapshot at ", index, " after applying ",
                               applied_[id]));
      }
      applied_[id] = index;
    }
    for (const Entry& entry : ready.committed_entries) {
      std::string described = DescribeEntry(entry);
      Emit(absl::StrCat("apply ", described));
      if (entry.index != applied_[id] + 1) {
        Violation(absl::StrCat("node ", id, " applies ", described, " after index ", applied_[id]));
      }
      applied_[id] = entry.index;
      auto [it, inserted] = committed_.emplace(entry.index, described);
      if (!inserted && it->second != described) {
        Violation(absl::StrCat("node ", id, " applies ", described, " where another node applied ",
                               it->second));
      }
    }
    for (const ReadState& read_state : ready.read_states) {
      Emit(absl::StrCat("read index=", read_state.index, " ", read_state.context.view()));
    }
  }

  // Election Safety: at most one leader per term.
  void CheckLeaders() {
    for (NodeId id : LiveNodes()) {
      const Status status = cluster_.node(id).GetStatus();
      if (status.soft_state.role != Role::kLeader) continue;
      auto [it, inserted] = leaders_.emplace(status.hard_state.term, id);
      if (!inserted && it->second != id) {
        Violation(absl::StrCat("nodes ", it->second, " and ", id, " both lead term ",
                               status.hard_state.term));
      }
    }
  }

  // Restarts every node, heals the network and commits one more entry everywhere.
  void HealAndCommit() {
    step_ = kStepCount;
    for (NodeId id : cluster_.ids()) {
      if (cluster_.record(id).crashed) Restart(id);
    }
    cluster_.Heal();
    // A leadership transfer may be under way: proposals are refused until it ends or times out.
    const std::string data = absl::StrCat("s", seed_, "-final");
    NodeId leader = kNoNode;
    absl::Status proposed = absl::UnavailableError("no leader");
    for (int round = 0; round < kMaxHealRounds && !proposed.ok(); ++round) {
      for (NodeId id : cluster_.ids()) cluster_.Tick(id);
      cluster_.Stabilize();
      CheckLeaders();
      leader = cluster_.Leader();
      if (leader != kNoNode) proposed = cluster_.ProposeAndStabilize(leader, data);
    }
    if (!proposed.ok()) {
      return Violation(absl::StrCat("no proposal commits after healing: ", proposed.ToString()));
    }
    CheckLeaders();
    const Index final_index = cluster_.record(leader).applied_index;
    const ConfState& conf = cluster_.record(leader).conf_state;
    std::vector<NodeId> members = conf.voters;
    members.insert(members.end(), conf.learners.begin(), conf.learners.end());
    for (NodeId id : members) {
      if (cluster_.record(id).applied_index != final_index) {
        Violation(absl::StrCat("node ", id, " applied up to ", cluster_.record(id).applied_index,
                               ", leader ", leader, " up to ", final_index));
      }
    }
    const std::vector<Entry>& applied = cluster_.record(leader).applied;
    if (applied.empty() || applied.back().data.view() != data) {
      Violation("the final proposal is not the leader's last applied entry");
    }
  }

  const uint64_t seed_;
  const bool trace_;
  SplitMix64 random_;
  Cluster cluster_;
  Fnv1a64 hash_;
  RunResult result_;
  int step_ = 0;
  uint64_t proposals_ = 0;
  int joiner_state_ = 0;  // 0: absent, 1: joining as learner, 2: promoting, 3: removing, 4: gone
  std::map<NodeId, Index> applied_;
  std::map<NodeId, HardState> hard_states_;
  std::map<Index, std::string> committed_;  // index -> the entry every node must apply there
  std::map<Term, NodeId> leaders_;
};

// RAFT_TRACE_SEED=<seed> prints every action and effect of that seed's runs to stderr.
bool Traced(uint64_t seed) {
  const char* traced = std::getenv("RAFT_TRACE_SEED");
  return traced != nullptr && std::strtoull(traced, nullptr, 10) == seed;
}

RunResult RunSeed(uint64_t seed) { return RandomExchange(seed, Traced(seed)).Run(); }

// Runs `seed` twice: the effects must hash the same, and no safety check may fail.
RunResult CheckSeed(uint64_t seed) {
  const RunResult first = RunSeed(seed);
  const RunResult second = RunSeed(seed);
  EXPECT_TRUE(first.violation.empty()) << first.violation;
  EXPECT_EQ(first.hash, second.hash) << "seed " << seed << " is not deterministic";
  EXPECT_EQ(first.violation, second.violation);
  // The run exercised the protocol: leaders came and went, entries committed.
  EXPECT_GE(first.leader_terms, 1) << "seed " << seed;
  EXPECT_GT(first.committed_index, 1u) << "seed " << seed;
  absl::PrintF("seed %2llu: hash %016llx, committed %llu, %d leader terms, %d crashes, joiner %d\n",
               static_cast<unsigned long long>(seed), static_cast<unsigned long long>(first.hash),
               static_cast<unsigned long long>(first.committed_index), first.leader_terms,
               first.crashes, first.joiner_state);
  return first;
}

TEST(DeterminismTest, SameSeedSameEffectsAndSafety) {
  const uint64_t count =
      std::getenv("KVSTORE_SANITIZED") != nullptr ? kSanitizedSeedCount : kSeedCount;
  std::set<uint64_t> hashes;
  for (uint64_t seed = 1; seed <= count; ++seed) hashes.insert(CheckSeed(seed).hash);
  EXPECT_EQ(hashes.size(), count) << "different seeds gave the same effects";
}

TEST(DeterminismTest, DifferentSeedDifferentHash) { EXPECT_NE(RunSeed(1).hash, RunSeed(2).hash); }

// Found by seed 1 while founding members were bootstrapped from a snapshot at index 0: the
// leader's probe of an empty joiner matched at index 0 (term 0), so the joiner was sent entries
// from index 1, never saw the initial voters, and after "add learner", "add voter" believed
// itself the only voter: it elected itself and committed alone (with another interleaving, two
// leaders of one term). Founding members now carry the membership as entries 1..n
// (BootstrapState), which a joiner replays.
TEST(DeterminismTest, JoinerLearnsBootstrapConfiguration) {
  testing::Cluster cluster({1, 2, 3}, {}, nullptr, {4});
  cluster.ElectLeader(1);
  ConfChange add_learner;
  add_learner.changes.push_back({ConfChangeType::kAddLearner, 4});
  ASSERT_TRUE(cluster.node(1).ProposeConfChange(add_learner).ok());
  cluster.Stabilize();
  ConfChange add_voter;
  add_voter.changes.push_back({ConfChangeType::kAddVoter, 4});
  ASSERT_TRUE(cluster.node(1).ProposeConfChange(add_voter).ok());
  cluster.Stabilize();
  const std::vector<NodeId> voters = {1, 2, 3, 4};
  EXPECT_EQ(cluster.node(1).GetStatus().conf_state.voters, voters);
  EXPECT_EQ(cluster.node(4).GetStatus().conf_state.voters, voters)
      << DescribeConfState(cluster.node(4).GetStatus().conf_state);
  // Without the others' votes node 4 must not win, and must not commit anything alone.
  const Index commit_before = cluster.node(4).GetStatus().hard_state.commit;
  cluster.DropInFlight();
  cluster.Isolate(4);
  (void)cluster.node(4).Campaign();
  while (cluster.ProcessReady(4)) {
  }
  (void)cluster.node(4).Propose(Bytes("alone"));
  while (cluster.ProcessReady(4)) {
  }
  EXPECT_NE(cluster.node(4).GetStatus().soft_state.role, Role::kLeader);
  EXPECT_EQ(cluster.node(4).GetStatus().hard_state.commit, commit_before);
}

}  // namespace
}  // namespace kvstore::raft
