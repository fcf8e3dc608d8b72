#include "core/base/probe.h"

#include <set>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace kvstore::probe {
namespace {

TEST(Probe, EveryProbeIsListedWithItsNameFileAndMeaning) {
  ASSERT_GT(kCount, 0u);
  std::set<std::string> names;
  for (const Info& info : All()) {
    EXPECT_TRUE(names.insert(std::string(info.name)).second) << "listed twice: " << info.name;
    EXPECT_NE(info.name.find('.'), absl::string_view::npos) << info.name;
    EXPECT_TRUE(absl::StartsWith(info.file, "core/")) << info.name << " in " << info.file;
    EXPECT_FALSE(info.what.empty()) << info.name;
  }
  EXPECT_EQ(names.size(), kCount);
  EXPECT_EQ(InfoOf(Id::raft_truncate_conflict).name, "raft.truncate_conflict");
  EXPECT_EQ(InfoOf(Id::raft_truncate_conflict).file, "core/raft/log.cc");
  EXPECT_EQ(InfoOf(Id::lease_revoke_with_keys).name, "lease.revoke_with_keys");
}

TEST(Probe, HitsCountPerProbeAndSinceSubtractsASnapshot) {
  const Counts before = Snapshot();
  CODE_PROBE(raft, truncate_conflict);
  CODE_PROBE(raft, truncate_conflict);
  CODE_PROBE(mvcc, txn_failure_branch);
  const Counts delta = Since(before);
  for (size_t i = 0; i < kCount; ++i) {
    const auto id = static_cast<Id>(i);
    const uint64_t want = id == Id::raft_truncate_conflict ? 2 : id == Id::mvcc_txn_failure_branch;
    EXPECT_EQ(delta[i], want) << All()[i].name;
  }
  // Counters only grow: a later snapshot holds the earlier hits.
  EXPECT_EQ(Snapshot()[static_cast<size_t>(Id::raft_truncate_conflict)],
            before[static_cast<size_t>(Id::raft_truncate_conflict)] + 2);
}

}  // namespace
}  // namespace kvstore::probe
