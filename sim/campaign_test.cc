// Campaign shards split a seed range exactly once; summaries survive JSON; merging names the
// failures with their replay commands and says which shards are missing or present twice.

#include "sim/campaign.h"

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace kvstore::sim {
namespace {

std::vector<uint64_t> Seeds(uint64_t first, std::optional<uint64_t> count, Shard shard,
                            size_t at_most = 10'000) {
  std::vector<uint64_t> seeds;
  SeedSequence sequence(first, count, shard);
  while (seeds.size() < at_most) {
    const std::optional<uint64_t> seed = sequence.Next();
    if (!seed.has_value()) break;
    seeds.push_back(*seed);
  }
  return seeds;
}

TEST(ShardTest, SplitCoversARangeExactlyOnce) {
  const uint64_t top = std::numeric_limits<uint64_t>::max();
  for (uint64_t shards = 1; shards <= 7; ++shards) {
    for (uint64_t first : {uint64_t{0}, uint64_t{1}, uint64_t{5}, uint64_t{17}, top - 9}) {
      for (uint64_t count : {0, 1, 2, 7, 30}) {
        if (count > top - first + 1) continue;
        std::map<uint64_t, int> runs;
        for (uint64_t index = 0; index < shards; ++index) {
          uint64_t previous = 0;
          bool any = false;
          const std::vector<uint64_t> seeds = Seeds(first, count, Shard{index, shards});
          EXPECT_EQ(SeedsInShard(first, count, Shard{index, shards}), seeds.size());
          for (uint64_t seed : seeds) {
            EXPECT_EQ(seed % shards, index);
            if (any) {
              EXPECT_GT(seed, previous) << "in increasing order";
            }
            previous = seed;
            any = true;
            ++runs[seed];
          }
        }
        const std::string where = "first " + std::to_string(first) + ", count " +
                                  std::to_string(count) + ", " + std::to_string(shards) + " shards";
        EXPECT_EQ(runs.size(), count) << where;
        for (const auto& [seed, times] : runs) {
          EXPECT_GE(seed, first) << where;
          EXPECT_LE(seed - first, count - 1) << where;
          EXPECT_EQ(times, 1) << "seed " << seed << ", " << where;
        }
      }
    }
  }
}

TEST(ShardTest, TimeBoundedSequencesInterleave) {
  // Unbounded, each shard runs its residue class from `first` on: taken as far as a common
  // point, the shards' sequences cover everything below it once.
  const uint64_t first = 1'000'003;
  for (uint64_t shards = 1; shards <= 5; ++shards) {
    std::map<uint64_t, int> runs;
    for (uint64_t index = 0; index < shards; ++index) {
      for (uint64_t seed : Seeds(first, std::nullopt, Shard{index, shards}, 300)) {
        if (seed < first + 300) ++runs[seed];
      }
    }
    ASSERT_EQ(runs.size(), 300u) << shards << " shards";
    EXPECT_EQ(runs.begin()->first, first);
    for (const auto& [seed, times] : runs) EXPECT_EQ(times, 1) << seed;
  }
}

TEST(ShardTest, EndsAtTheTopOfTheSeedSpace) {
  const uint64_t top = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(Seeds(top - 2, std::nullopt, Shard{}), (std::vector<uint64_t>{top - 2, top - 1, top}));
  EXPECT_EQ(Seeds(top - 2, 100, Shard{}), (std::vector<uint64_t>{top - 2, top - 1}))
      << "a range [first, first + count) ends at the top";
  EXPECT_EQ(SeedsInShard(top - 2, 100, Shard{}), 2u);
  EXPECT_EQ(SeedsInShard(top - 2, 100, Shard{1, 2}), 1u);
  EXPECT_EQ(Shard({top % 3 == 0 ? 1u : 0u, 3}).First(top), std::nullopt);
}

TEST(ShardTest, ParsesIOverN) {
  auto shard = ParseShard("2/5");
  ASSERT_TRUE(shard.ok());
  EXPECT_EQ(shard->index, 2u);
  EXPECT_EQ(shard->count, 5u);
  EXPECT_EQ(shard->ToString(), "2/5");
  for (const char* bad : {"5/5", "1/0", "x", "1/2/3", "-1/2", "", "/2", "1/"}) {
    const auto parsed = ParseShard(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_TRUE(absl::StrContains(parsed.status().message(), "is not I/N")) << bad;
  }
}

TEST(NodeCountsTest, ParsedAndPickedPerSeed) {
  auto counts = ParseNodeCounts("3,5");
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(*counts, (std::vector<int>{3, 5}));
  EXPECT_FALSE(ParseNodeCounts("3,10").ok());
  EXPECT_FALSE(ParseNodeCounts("3,,5").ok());
  EXPECT_TRUE(absl::StrContains(ParseNodeCounts("0").status().message(), "'0'"));
  EXPECT_EQ(NodesForSeed(12, {7}), 7);
  // Each shard of two (a residue class) still gets both node counts, in about equal numbers.
  for (uint64_t index : {0u, 1u}) {
    std::map<int, int> picked;
    for (uint64_t seed : Seeds(100, 400, Shard{index, 2})) ++picked[NodesForSeed(seed, *counts)];
    EXPECT_GT(picked[3], 60) << "shard " << index;
    EXPECT_GT(picked[5], 60) << "shard " << index;
  }
}

TEST(PercentileTest, NearestRank) {
  EXPECT_EQ(Percentile({}, 0.5), 0u);
  EXPECT_EQ(Percentile({7}, 0.9), 7u);
  EXPECT_EQ(Percentile({5, 1, 4, 2, 3}, 0.5), 3u);
  EXPECT_EQ(Percentile({10, 20, 30, 40, 50, 60, 70, 80, 90, 100}, 0.9), 90u);
  EXPECT_EQ(Percentile({10, 20, 30, 40, 50, 60, 70, 80, 90, 100}, 1.0), 100u);
}

// One shard of a count-bounded campaign over [first, first + count), as `sim fuzz` records it;
// the seeds in `failing` fail.
pb::CampaignSummary RunShard(uint64_t first, uint64_t count, Shard shard,
                             const std::vector<uint64_t>& failing) {
  pb::CampaignSummary summary;
  summary.set_command_line("sim fuzz --seed=" + std::to_string(first) +
                           " --count=" + std::to_string(count) + " --shard=" + shard.ToString());
  summary.set_first_seed(first);
  summary.set_seed_count(count);
  summary.set_shard_index(shard.index);
  summary.set_shard_count(shard.count);
  summary.add_nodes(3);
  summary.add_nodes(5);
  summary.set_duration_ms(15'000);
  summary.set_search_steps_budget(5'000'000);
  for (uint64_t seed : Seeds(first, count, shard)) {
    const bool fails = std::find(failing.begin(), failing.end(), seed) != failing.end();
    RecordSeed(seed, NodesForSeed(seed, {3, 5}), !fails,
               fails ? std::vector<std::string>{"checker: @1200ms: n1 and n2 disagree"}
                     : std::vector<std::string>{},
               0.001 * static_cast<double>(seed % 7 + 1), 15'000, &summary);
  }
  summary.set_wall_seconds(2.5 + static_cast<double>(shard.index));
  return summary;
}

// Through the file format, as sim merge reads it.
NamedSummary ThroughJson(const std::string& name, const pb::CampaignSummary& summary) {
  auto parsed = SummaryFromJson(SummaryToJson(summary));
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return {name, parsed.ok() ? *parsed : pb::CampaignSummary()};
}

TEST(SummaryTest, JsonCarriesTheReplayCommandsAndAnEmptyProbeMap) {
  const pb::CampaignSummary summary = RunShard(40, 10, Shard{1, 2}, {43});
  const std::string json = SummaryToJson(summary);
  EXPECT_TRUE(absl::StrContains(json, "\"probe_hits\": {}")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"replay\": \"sim replay --seed=43 --nodes=")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"command_line\": \"sim fuzz --seed=40")) << json;
  const NamedSummary back = ThroughJson("s.json", summary);
  EXPECT_EQ(back.summary.DebugString(), summary.DebugString());

  EXPECT_FALSE(SummaryFromJson("{\"seeds_run\": ").ok());
  const auto bad_shard = SummaryFromJson("{\"shard_index\": 2, \"shard_count\": 2}");
  EXPECT_FALSE(bad_shard.ok());
  EXPECT_TRUE(absl::StrContains(bad_shard.status().message(), "2/2")) << bad_shard.status();
}

TEST(SummaryTest, ReportListsFailuresWithReplayAndIndentsNothing) {
  pb::CampaignSummary summary = RunShard(40, 10, Shard{0, 1}, {43, 47});
  (*summary.mutable_probe_hits())["raft.truncate_conflict"] = 3;
  const std::string report = FormatReport(summary);
  EXPECT_TRUE(absl::StrContains(report, "10 seeds run in 2.5 s")) << report;
  EXPECT_TRUE(absl::StrContains(report, "8 passed, 2 failed")) << report;
  EXPECT_TRUE(absl::StrContains(report, "FAILED seed 43 (")) << report;
  EXPECT_TRUE(absl::StrContains(report, "replay: sim replay --seed=47 --nodes=")) << report;
  EXPECT_TRUE(absl::StrContains(report, absl::StrCat("probes: 1 of ", probe::kCount, " hit\n")))
      << report;
  EXPECT_TRUE(absl::StrContains(report, "\nprobe raft.truncate_conflict ")) << report;
  // Every probe of the list has a row, the unhit ones with 0.
  EXPECT_TRUE(absl::StrContains(report, "\nprobe lease.revoke_with_keys ")) << report;
  EXPECT_TRUE(absl::StrContains(report, "\nall ")) << "a total row below the node counts\n"
                                                   << report;
  for (absl::string_view line : absl::StrSplit(report, '\n')) {
    EXPECT_FALSE(absl::StartsWith(line, " ")) << line;
  }
}

TEST(ProbeTest, HitsAddUpOverSeedsAndShardsAndListEveryProbe) {
  pb::CampaignSummary shard0, shard1;
  AddProbeHits(probe::Counts{}, &shard0);
  EXPECT_EQ(shard0.probe_hits_size(), static_cast<int>(probe::kCount));
  probe::Counts hits{};
  hits[static_cast<size_t>(probe::Id::raft_truncate_conflict)] = 2;
  AddProbeHits(hits, &shard0);
  AddProbeHits(hits, &shard0);
  hits[static_cast<size_t>(probe::Id::raft_joint_entered)] = 5;
  AddProbeHits(hits, &shard1);
  EXPECT_EQ(shard0.probe_hits().at("raft.truncate_conflict"), 4u);
  EXPECT_EQ(shard0.probe_hits().at("raft.joint_entered"), 0u);
  shard0.set_shard_index(0);
  shard0.set_shard_count(2);
  shard1.set_shard_index(1);
  shard1.set_shard_count(2);
  const MergeOutcome outcome =
      MergeSummaries({ThroughJson("s0.json", shard0), ThroughJson("s1.json", shard1)});
  EXPECT_EQ(outcome.merged.probe_hits().at("raft.truncate_conflict"), 6u);
  EXPECT_EQ(outcome.merged.probe_hits().at("raft.joint_entered"), 5u);
  EXPECT_EQ(outcome.merged.probe_hits().at("lease.revoke_with_keys"), 0u);
}

// A summary in which every probe was hit once, but `unhit`.
pb::CampaignSummary AllHitBut(const std::vector<probe::Id>& unhit) {
  probe::Counts hits;
  hits.fill(1);
  for (probe::Id id : unhit) hits[static_cast<size_t>(id)] = 0;
  pb::CampaignSummary summary;
  AddProbeHits(hits, &summary);
  return summary;
}

TEST(ProbeTest, AnUnhitProbeFailsUnlessListedAsRareWithAReason) {
  EXPECT_TRUE(UnhitProbes(AllHitBut({}), {}).empty());
  const pb::CampaignSummary summary =
      AllHitBut({probe::Id::raft_truncate_conflict, probe::Id::lease_revoke_with_keys});
  const std::vector<std::string> unhit = UnhitProbes(summary, {});
  ASSERT_EQ(unhit.size(), 2u);
  EXPECT_TRUE(absl::StartsWith(unhit[0], "raft.truncate_conflict (core/raft/log.cc: ")) << unhit[0];
  EXPECT_TRUE(absl::StartsWith(unhit[1], "lease.revoke_with_keys (core/server/server.cc: "))
      << unhit[1];

  auto listed = ParseExpectedRareProbes(
      "# comment\n\nlease.revoke_with_keys   no workload attaches keys to leases yet\n",
      "rare.txt");
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->at("lease.revoke_with_keys"), "no workload attaches keys to leases yet");
  const std::vector<std::string> still = UnhitProbes(summary, *listed);
  ASSERT_EQ(still.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(still[0], "raft.truncate_conflict ")) << still[0];

  // A summary without probe figures (an older sim) leaves every probe unhit.
  EXPECT_EQ(UnhitProbes(pb::CampaignSummary(), {}).size(), probe::kCount);
}

TEST(ProbeTest, ExpectedRareFileRefusesUnknownUnexplainedAndRepeatedProbes) {
  const auto unknown = ParseExpectedRareProbes("raft.no_such_probe because\n", "rare.txt");
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(absl::StrContains(unknown.status().message(), "rare.txt:1: 'raft.no_such_probe'"))
      << unknown.status();
  const auto unexplained = ParseExpectedRareProbes("# x\nraft.truncate_conflict\n", "rare.txt");
  ASSERT_FALSE(unexplained.ok());
  EXPECT_TRUE(absl::StrContains(unexplained.status().message(), "rare.txt:2: "))
      << unexplained.status();
  EXPECT_TRUE(absl::StrContains(unexplained.status().message(), "without a reason"))
      << unexplained.status();
  const auto twice =
      ParseExpectedRareProbes("raft.truncate_conflict a\nraft.truncate_conflict b\n", "rare.txt");
  ASSERT_FALSE(twice.ok());
  EXPECT_TRUE(absl::StrContains(twice.status().message(), "listed twice")) << twice.status();
}

TEST(MergeTest, TwoShardsWithAPlantedFailure) {
  const uint64_t first = 1'000, count = 40;
  const MergeOutcome outcome =
      MergeSummaries({ThroughJson("shard-0.json", RunShard(first, count, Shard{0, 2}, {})),
                      ThroughJson("shard-1.json", RunShard(first, count, Shard{1, 2}, {1'017}))});
  EXPECT_TRUE(outcome.problems.empty()) << outcome.problems.front();
  const pb::CampaignSummary& merged = outcome.merged;
  EXPECT_EQ(merged.seeds_run(), count);
  EXPECT_EQ(merged.seeds_passed(), count - 1);
  ASSERT_EQ(merged.failures_size(), 1);
  EXPECT_EQ(merged.failures(0).seed(), 1'017u);
  EXPECT_EQ(merged.failures(0).replay(), ReplayCommand(1'017, NodesForSeed(1'017, {3, 5}), 15'000));
  EXPECT_EQ(merged.wall_seconds(), 3.5) << "the slowest shard";
  uint64_t per_node_seeds = 0;
  for (const pb::NodeCountFigures& f : merged.by_nodes()) {
    per_node_seeds += f.seeds();
    EXPECT_EQ(static_cast<uint64_t>(f.cpu_ms_size()), f.seeds());
  }
  EXPECT_EQ(per_node_seeds, count);
  ASSERT_EQ(outcome.notes.size(), 1u);
  EXPECT_EQ(outcome.notes[0], "seeds 1000..1039 all run exactly once");
  EXPECT_TRUE(absl::StrContains(FormatReport(merged), "FAILED seed 1017"));
}

TEST(MergeTest, ReportsMissingAndOverlappingShards) {
  const MergeOutcome outcome = MergeSummaries({{"a.json", RunShard(0, 30, Shard{1, 4}, {})},
                                               {"b.json", RunShard(0, 30, Shard{1, 4}, {})},
                                               {"c.json", RunShard(0, 30, Shard{2, 4}, {})}});
  ASSERT_EQ(outcome.problems.size(), 2u);
  EXPECT_EQ(outcome.problems[0],
            "overlap: shard 1/4 appears in a.json and b.json (its seeds ran, and are counted, "
            "more than once)");
  EXPECT_EQ(outcome.problems[1], "2 of 4 shards missing: 0/4, 3/4");
  EXPECT_TRUE(outcome.notes.empty()) << outcome.notes.front();
}

TEST(MergeTest, RefusesShardsOfDifferentCampaigns) {
  const MergeOutcome outcome = MergeSummaries({{"a.json", RunShard(0, 30, Shard{0, 2}, {})},
                                               {"b.json", RunShard(5, 30, Shard{1, 2}, {})},
                                               {"c.json", RunShard(0, 30, Shard{1, 3}, {})}});
  ASSERT_EQ(outcome.problems.size(), 2u);
  EXPECT_EQ(outcome.problems[0],
            "a.json and b.json are not shards of one campaign (first seed 0 vs 5)");
  EXPECT_EQ(outcome.problems[1],
            "a.json and c.json are not shards of one campaign (shard count 2 vs 3)");
}

TEST(MergeTest, AShardStoppedByTimeLeavesTheRangeIncomplete) {
  pb::CampaignSummary cut = RunShard(0, 10, Shard{0, 2}, {});
  cut.set_seed_count(20);  // it stopped at its time bound halfway through its seeds
  cut.set_minutes(0.5);
  pb::CampaignSummary other = RunShard(0, 20, Shard{1, 2}, {});
  other.set_minutes(0.5);
  const MergeOutcome outcome = MergeSummaries({{"a.json", cut}, {"b.json", other}});
  ASSERT_EQ(outcome.problems.size(), 1u);
  EXPECT_EQ(outcome.problems[0],
            "shard 0/2 (a.json) ran 5 of its 10 seeds (stopped by its time bound)");
}

TEST(MergeTest, TimeBoundedShardsReportTheirContiguousCoverage) {
  // Shard 0 of 2 ran 0, 2, ..., 18 (10 seeds); shard 1 ran 1, 3, ..., 13 (7 seeds) and would
  // have run 15 next: seeds 0..14 all ran, and 2 more (16, 18) beyond.
  pb::CampaignSummary a = RunShard(0, 20, Shard{0, 2}, {});
  pb::CampaignSummary b = RunShard(0, 14, Shard{1, 2}, {});
  for (pb::CampaignSummary* s : {&a, &b}) {
    s->set_seed_count(0);
    s->set_minutes(1.5);
  }
  const MergeOutcome outcome = MergeSummaries({{"a.json", a}, {"b.json", b}});
  EXPECT_TRUE(outcome.problems.empty()) << outcome.problems.front();
  ASSERT_EQ(outcome.notes.size(), 1u);
  EXPECT_EQ(outcome.notes[0],
            "seeds 0..14 all run; 2 more beyond, with gaps (time-bounded shards stop at different "
            "seeds)");
  EXPECT_EQ(outcome.merged.seeds_run(), 17u);
}

}  // namespace
}  // namespace kvstore::sim
