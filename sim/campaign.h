#ifndef KVSTORE_SIM_CAMPAIGN_H_
#define KVSTORE_SIM_CAMPAIGN_H_

// Fuzz campaigns larger than one process: which seeds a shard runs, the summary a shard writes
// (sim/campaign.proto, as JSON), the report printed at the end of `sim fuzz`, and `sim merge`,
// which combines the summaries of a campaign's shards and says what is missing or run twice.
//
// A campaign is a seed range [first, first + count), or the open sequence first, first + 1, ...
// when it is bounded by wall time. Shard I of N runs the seeds s with s % N == I, so the N shards
// of one campaign run every seed of its range exactly once between them, on as many hosts as
// the scheduler has (sim/README.md: GNU parallel over ssh, a Kubernetes indexed Job).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/probe.h"
#include "sim/availability.h"
#include "sim/campaign.pb.h"

namespace kvstore::sim {

struct Shard {
  uint64_t index = 0;
  uint64_t count = 1;  // > 0; index < count

  bool Contains(uint64_t seed) const { return seed % count == index; }
  // The first seed >= `from` that this shard runs (nullopt past the end of the seed space).
  std::optional<uint64_t> First(uint64_t from) const;
  std::string ToString() const;  // "I/N"
};

// How many seeds of [first, first + count) shard `shard` runs.
uint64_t SeedsInShard(uint64_t first, uint64_t count, const Shard& shard);

// Parses "I/N" (0 <= I < N); the error names the text and the rule.
absl::StatusOr<Shard> ParseShard(absl::string_view text);

// The seeds a shard runs, in increasing order: those of [first, first + count) when `count` is
// set, else first, first + 1, ... without end (the caller stops it by time).
class SeedSequence {
 public:
  SeedSequence(uint64_t first, std::optional<uint64_t> count, Shard shard);
  // The next seed, or nullopt when the range is done.
  std::optional<uint64_t> Next();

 private:
  std::optional<uint64_t> next_;
  std::optional<uint64_t> end_;  // one past the last seed of the range; nullopt: unbounded
  uint64_t step_;
};

// Node counts such as "3,5" (each in [1, 9]); the error names the bad element.
absl::StatusOr<std::vector<int>> ParseNodeCounts(absl::string_view text);

// The node count seed `seed` runs with: one of `choices`, picked by a hash of the seed rather
// than by seed % size, so that every shard (itself a residue class) sees every node count.
int NodesForSeed(uint64_t seed, const std::vector<int>& choices);

// The command that replays one seed of a campaign.
std::string ReplayCommand(uint64_t seed, int nodes, int64_t duration_ms);

// Adds one seed's outcome to `summary` (seeds_run, passed, failures, per-node figures).
void RecordSeed(uint64_t seed, int nodes, bool passed, const std::vector<std::string>& failures,
                double cpu_seconds, int64_t duration_ms, pb::CampaignSummary* summary);

// Adds one seed's code probe hits (core/base/probe.h) to `summary`. Every probe of the list gets
// an entry, zero included, so a summary names the probes never hit.
void AddProbeHits(const probe::Counts& hits, pb::CampaignSummary* summary);

// Adds one seed's availability figures (sim/availability.h) to `summary`.
void AddAvailability(const AvailabilityFigures& figures, uint64_t seed,
                     pb::CampaignSummary* summary);

// Probes a campaign may leave unhit, each with the reason (testdata/sim/expected_rare_probes.txt):
// one probe per line, its name and then the reason; '#' starts a comment line. Refused, naming
// the file and line: a name that is no probe of the list, a probe without a reason, a probe
// listed twice.
absl::StatusOr<std::map<std::string, std::string>> ParseExpectedRareProbes(
    absl::string_view text, absl::string_view origin);

// The probes of the list that `summary` shows never hit and `expected_rare` does not excuse, as
// one line each: the probe's name, its file and what reaching it means.
std::vector<std::string> UnhitProbes(const pb::CampaignSummary& summary,
                                     const std::map<std::string, std::string>& expected_rare);

// The human-readable report: the campaign, the seeds run, a table per node count (seeds,
// passed, failed, CPU per seed: median, p90, max), the linearizability search's peak, the probe
// hits, and one line per failure with its replay command. No line starts with whitespace (tools
// that read `sim fuzz` output take indented lines for a seed's failure lines).
std::string FormatReport(const pb::CampaignSummary& summary);

std::string SummaryToJson(const pb::CampaignSummary& summary);
absl::StatusOr<pb::CampaignSummary> SummaryFromJson(absl::string_view json);

struct NamedSummary {
  std::string name;  // where it came from (its file), for the messages
  pb::CampaignSummary summary;
};

struct MergeOutcome {
  pb::CampaignSummary merged;  // the whole campaign: totals over the shards, as one shard of 1
  // Why the merged result is not one complete campaign: summaries of different campaigns, a
  // shard present twice (its seeds run twice), shards missing, a shard of a seed range that
  // stopped before its last seed. Empty when complete.
  std::vector<std::string> problems;
  std::vector<std::string> notes;  // which seeds were covered
};

MergeOutcome MergeSummaries(const std::vector<NamedSummary>& shards);

// The value at fraction `p` (0..1) of `values` by the nearest-rank method; 0 when empty.
uint32_t Percentile(std::vector<uint32_t> values, double p);

}  // namespace kvstore::sim

#endif  // KVSTORE_SIM_CAMPAIGN_H_
