// Runs a three-voter Raft cluster in memory through the pure core: elects a leader, commits a
// few proposals, isolates the leader, elects another and shows every replica applied the same
// entries. Prints a transcript; exits non-zero if the replicas disagree.
//   raft_demo [--proposals=N]

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/raft/testing/cluster.h"

namespace {

using kvstore::raft::DescribeEntry;
using kvstore::raft::kNoNode;
using kvstore::raft::NodeId;
using kvstore::raft::testing::Cluster;

NodeId WaitForLeader(Cluster& cluster, NodeId avoid) {
  for (int tick = 0; tick < 200; ++tick) {
    for (NodeId id : cluster.ids()) {
      if (id != avoid) cluster.Tick(id);
    }
    cluster.Stabilize();
    const NodeId leader = cluster.Leader();
    if (leader != kNoNode && leader != avoid) return leader;
  }
  return kNoNode;
}

}  // namespace

int main(int argc, char** argv) {
  int proposals = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--proposals=", 12) == 0) {
      char* end = nullptr;
      const long value = std::strtol(argv[i] + 12, &end, 10);
      if (*end != '\0' || value < 0 || value > 100000) {
        std::fprintf(stderr, "raft_demo: --proposals must be an integer in [0, 100000]\n");
        return 2;
      }
      proposals = static_cast<int>(value);
    } else {
      std::fprintf(stderr, "raft_demo: unknown flag %s\nusage: raft_demo [--proposals=N]\n",
                   argv[i]);
      return 2;
    }
  }

  Cluster cluster({1, 2, 3});
  NodeId leader = WaitForLeader(cluster, kNoNode);
  if (leader == kNoNode) {
    std::fprintf(stderr, "raft_demo: no leader elected\n");
    return 1;
  }
  std::printf("leader elected: node %llu (term %llu)\n", static_cast<unsigned long long>(leader),
              static_cast<unsigned long long>(cluster.node(leader).GetStatus().hard_state.term));
  for (int i = 0; i < proposals; ++i) {
    auto status = cluster.ProposeAndStabilize(leader, absl::StrCat("put k", i, "=v", i));
    if (!status.ok()) {
      std::fprintf(stderr, "raft_demo: proposal failed: %s\n", status.ToString().c_str());
      return 1;
    }
  }
  std::printf("committed %d proposals through node %llu\n", proposals,
              static_cast<unsigned long long>(leader));

  cluster.Isolate(leader);
  const NodeId old_leader = leader;
  leader = WaitForLeader(cluster, old_leader);
  if (leader == kNoNode) {
    std::fprintf(stderr, "raft_demo: no new leader after isolating node %llu\n",
                 static_cast<unsigned long long>(old_leader));
    return 1;
  }
  std::printf("isolated node %llu; new leader: node %llu (term %llu)\n",
              static_cast<unsigned long long>(old_leader), static_cast<unsigned long long>(leader),
              static_cast<unsigned long long>(cluster.node(leader).GetStatus().hard_state.term));
  (void)cluster.ProposeAndStabilize(leader, "put after=failover");
  cluster.Heal();
  for (int i = 0; i < 30; ++i) {
    for (NodeId id : cluster.ids()) cluster.Tick(id);
    cluster.Stabilize();
  }

  const auto& reference = cluster.record(leader).applied;
  bool agree = true;
  for (NodeId id : cluster.ids()) {
    const auto& applied = cluster.record(id).applied;
    std::printf("node %llu applied %zu entries\n", static_cast<unsigned long long>(id),
                applied.size());
    if (applied.size() != reference.size()) agree = false;
    for (size_t i = 0; i < applied.size() && i < reference.size(); ++i) {
      if (!(applied[i] == reference[i])) agree = false;
    }
  }
  for (const auto& entry : reference) std::printf("  %s\n", DescribeEntry(entry).c_str());
  std::printf(agree ? "all replicas applied the same log\n" : "REPLICAS DISAGREE\n");
  return agree ? 0 : 1;
}
